//! The token endpoint, end to end: issue-key → sign-grant → POST /token.

mod common;

use common::{Env, exchange};

#[test]
fn issue_sign_exchange_gives_a_bearer_token() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (_, key) = env.issue_key("ci-bot", &[]);
    let grant = env.ok(&["sign-grant", "--key", key.to_str().unwrap()]);
    let (status, body) = exchange(&server, grant.trim());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "read");
    let token = body["access_token"].as_str().unwrap();
    env.ok(&["verify", token]);
}
