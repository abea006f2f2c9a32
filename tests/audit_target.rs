//! `audit --target` takes what the other commands take: a unique key-id prefix stands for the
//! key, on the local store and over the admin API; names match as given.

mod common;

use common::Env;
use serde_json::Value;

fn targets(rows: &Value) -> Vec<(String, String)> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The rows of the key `key_id` (issued, then retitled), newest first.
fn key_rows(key_id: &str) -> Vec<(String, String)> {
    vec![
        ("key.edit".to_owned(), key_id.to_owned()),
        ("key.issue".to_owned(), key_id.to_owned()),
    ]
}

#[test]
fn audit_target_takes_a_key_id_prefix_on_the_local_store() {
    let env = Env::new_sqlite();
    let (key_id, _) = env.issue_key("ci-bot", &[]);
    env.issue_key("ci-bot", &[]);
    env.ok(&["edit-key", &key_id[..8], "--title", "build"]);

    let rows = env.json(&["audit", "--target", &key_id[..8], "--json"]);
    assert_eq!(targets(&rows), key_rows(&key_id));
    // The whole id, and names, match as given.
    let rows = env.json(&["audit", "--target", &key_id, "--json"]);
    assert_eq!(targets(&rows), key_rows(&key_id));
    let rows = env.json(&["audit", "--target", "ci-bot", "--json"]);
    assert_eq!(
        targets(&rows),
        [("user.add".to_owned(), "ci-bot".to_owned())]
    );
    // Nothing recorded, no key: no rows, not an error.
    let rows = env.json(&["audit", "--target", "nobody", "--json"]);
    assert_eq!(targets(&rows), []);
}

#[test]
fn audit_target_takes_a_key_id_prefix_over_the_admin_api() {
    let env = Env::new_sqlite();
    let server = env.serve(&["--admin-api"]);
    let (_, ops) = env.issue_key("ops", &[]);
    env.ok(&["user", "grant", "ops", "admin"]);
    let (key_id, _) = env.issue_key("ci-bot", &[]);
    env.ok(&["edit-key", &key_id, "--title", "build"]);

    let url = server.url("");
    let rows = env.json(&[
        "--server",
        &url,
        "--key",
        ops.to_str().unwrap(),
        "audit",
        "--target",
        &key_id[..8],
        "--json",
    ]);
    assert_eq!(targets(&rows), key_rows(&key_id));
}
