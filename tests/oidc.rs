//! Keyless CI end to end: a test OIDC issuer on 127.0.0.1 stands in for GitHub Actions and
//! GitLab CI; `tokenauth trust add` plus a job with no secret gets a scoped access token,
//! and every rule of the exchange refuses what it should, with its reason.

mod common;

use serde_json::{Value, json};

use common::oidc::Issuer;
use common::{Env, Server, exchange, http, on_both_backends, post_form, send};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// `trust add NAME --issuer … --audience AUD` plus `extra`.
fn add_trust(env: &Env, issuer: &Issuer, name: &str, aud: &str, extra: &[&str]) {
    let iss = issuer.issuer();
    let mut args = vec!["trust", "add", name, "--issuer", &iss, "--audience", aud];
    args.extend_from_slice(extra);
    env.ok(&args);
}

/// The GitHub repository and branch the test issuer's tokens name, as a deploy trust binds them.
const GITHUB_DEPLOY: &[&str] = &[
    "--claim",
    "repository=octo-org/octo-repo",
    "--claim",
    "ref=refs/heads/main",
    "--user",
    "deploy-bot",
    "--scope",
    "write",
];

/// A server with user deploy-bot, and the server's own address as the audience.
fn setup(env: &Env) -> (Server, String) {
    env.ok(&["user", "add", "deploy-bot"]);
    let server = env.serve(&[]);
    let aud = server.url("");
    (server, aud)
}

/// /auth with `token`: the status and the X-Auth-User header.
fn check(server: &Server, token: &str, scope: &str) -> (u16, Option<String>) {
    let reply = send(
        http()
            .get(server.url(&format!("/auth?scope={scope}")))
            .bearer_auth(token),
    );
    (reply.status, reply.header("x-auth-user").map(str::to_owned))
}

fn refused(server: &Server, id_token: &str) -> String {
    let (status, body) = exchange(server, id_token);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let why = body["error_description"].as_str().unwrap().to_owned();
    assert!(
        !why.contains(id_token),
        "a refusal never echoes the token: {why}"
    );
    why
}

on_both_backends! {
    fn a_ci_job_with_no_secret_gets_a_scoped_token_and_the_usage_log_names_trust_and_claims() {
        let env = Env::new();
        let issuer = Issuer::start();
        let (server, aud) = setup(&env);
        add_trust(&env, &issuer, "gh-deploy", &aud, GITHUB_DEPLOY);
        let (status, body) = exchange(&server, &issuer.github_token(&aud, json!({})));
        assert_eq!(status, 200, "{body}");
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(body["scope"], "read write");
        assert_eq!(check(&server, token, "write"), (200, Some("deploy-bot".into())));
        // The client narrows the scope as with keys.
        let reply = post_form(
            &server,
            &[
                ("grant_type", common::JWT_BEARER),
                ("assertion", &issuer.github_token(&aud, json!({}))),
                ("scope", "read"),
            ],
            None,
        );
        assert_eq!(reply.json["scope"], "read", "{}", reply.text);
        let log = env.json(&["usage-log", "--json"]);
        let row = log
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["ok"] == true)
            .unwrap_or_else(|| panic!("an issuance row: {log}"));
        assert_eq!(row["trust"], "gh-deploy", "{row}");
        let claims: Value = serde_json::from_str(row["claims"].as_str().unwrap()).unwrap();
        assert_eq!(
            claims,
            json!({"ref": "refs/heads/main", "repository": "octo-org/octo-repo"})
        );
        assert_eq!(row["user"], "deploy-bot");
        let table = env.ok(&["usage-log"]);
        assert!(
            table.contains("trust gh-deploy")
                && table.contains("ok (ref=refs/heads/main, repository=octo-org/octo-repo)"),
            "{table}"
        );
    }

    fn a_removed_trust_is_refused_at_once_by_every_replica() {
        let env = Env::new();
        let issuer = Issuer::start();
        env.ok(&["user", "add", "deploy-bot"]);
        let (a, b) = (env.serve(&[]), env.serve(&[]));
        // One audience for both: the replicas stand behind one name.
        let aud = "https://auth.example.com";
        add_trust(&env, &issuer, "gh-deploy", aud, GITHUB_DEPLOY);
        let mut tokens = Vec::new();
        for server in [&a, &b] {
            let (status, body) = exchange(server, &issuer.github_token(aud, json!({})));
            assert_eq!(status, 200, "{body}");
            tokens.push(body["access_token"].as_str().unwrap().to_owned());
        }
        for server in [&a, &b] {
            for t in &tokens {
                assert_eq!(check(server, t, "write").0, 200);
            }
        }
        env.ok(&["trust", "remove", "gh-deploy", "--yes"]);
        for server in [&a, &b] {
            let why = refused(server, &issuer.github_token(aud, json!({})));
            assert!(why.contains("No key or trust relationship accepts"), "{why}");
            for t in &tokens {
                let reply = send(http().get(server.url("/auth")).bearer_auth(t));
                assert_eq!(reply.status, 401);
                assert!(
                    reply.header("www-authenticate").unwrap().contains("has been removed"),
                    "{:?}",
                    reply.header("www-authenticate")
                );
            }
        }
        // Added again under the same name: a new trust, the old tokens stay dead.
        add_trust(&env, &issuer, "gh-deploy", aud, GITHUB_DEPLOY);
        assert_eq!(check(&a, &tokens[0], "read").0, 401);
        assert_eq!(exchange(&a, &issuer.github_token(aud, json!({}))).0, 200);
    }
}

#[test]
fn each_rule_refuses_its_own_case_and_says_which() {
    let env = Env::new();
    let issuer = Issuer::start();
    let (server, aud) = setup(&env);
    add_trust(&env, &issuer, "gh-deploy", &aud, GITHUB_DEPLOY);
    let now = common::now();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong audience",
            issuer.github_token("https://elsewhere.example", json!({})),
            "audience",
        ),
        (
            "wrong repository",
            issuer.github_token(&aud, json!({"repository": "octo-org/other-repo"})),
            "Claim 'repository' is 'octo-org/other-repo'",
        ),
        (
            "wrong branch",
            issuer.github_token(&aud, json!({"ref": "refs/heads/dev"})),
            "Claim 'ref' is 'refs/heads/dev'",
        ),
        (
            "expired",
            issuer.github_token(
                &aud,
                json!({"iat": now - 900, "nbf": now - 900, "exp": now - 600}),
            ),
            "expired",
        ),
        (
            "issued in the future",
            issuer.github_token(
                &aud,
                json!({"iat": now + 600, "nbf": now + 600, "exp": now + 900}),
            ),
            "future",
        ),
        (
            "too old for the trust",
            issuer.github_token(&aud, json!({"iat": now - 7200, "exp": now + 300})),
            "at most",
        ),
        (
            "alg none",
            issuer.alg_none_token(issuer.github_claims(&aud, json!({}))),
            "Algorithm 'none'",
        ),
        (
            "HMAC keyed with the JWKS",
            issuer.hmac_with_jwks_token(issuer.github_claims(&aud, json!({}))),
            "Algorithm 'HS256'",
        ),
        (
            "HMAC keyed with the public key PEM",
            issuer.hmac_with_pem_token(issuer.github_claims(&aud, json!({}))),
            "Algorithm 'HS256'",
        ),
        (
            "forged signature",
            {
                let good = issuer.github_token(&aud, json!({}));
                let (head, _) = good.rsplit_once('.').unwrap();
                let other = issuer.github_token(&aud, json!({"repository": "x/y"}));
                format!("{head}.{}", other.rsplit_once('.').unwrap().1)
            },
            "signature",
        ),
        (
            "unknown issuer",
            issuer.github_token(&aud, json!({"iss": "https://token.actions.example"})),
            "No key or trust relationship accepts tokens of issuer 'https://token.actions.example'",
        ),
    ];
    for (what, token, says) in cases {
        let why = refused(&server, &token);
        assert!(why.contains(says), "{what}: {why}");
        // The trust's wanted values are config an attacker should not learn.
        if what != "wrong repository" {
            assert!(!why.contains("octo-org/octo-repo"), "{what}: {why}");
        }
    }
    // Replay: the same ID token twice.
    let token = issuer.github_token(&aud, json!({}));
    assert_eq!(exchange(&server, &token).0, 200);
    assert!(refused(&server, &token).contains("already been used"));
    let refusals = env.json(&["usage-log", "--failures", "--json"]);
    assert!(
        refusals.as_array().unwrap().iter().any(|r| r["reason"]
            .as_str()
            .unwrap()
            .contains("refs/heads/dev")
            && r["key_id"]
                .as_str()
                .is_some_and(|k| k.starts_with("trust-"))),
        "{refusals}"
    );
}

#[test]
fn an_es256_token_verifies_and_rsa_and_ec_keys_are_not_confused() {
    let env = Env::new();
    let issuer = Issuer::start();
    let (server, aud) = setup(&env);
    add_trust(&env, &issuer, "gh-deploy", &aud, GITHUB_DEPLOY);
    let claims = issuer.github_claims(&aud, json!({}));
    assert_eq!(exchange(&server, &issuer.es256_token(claims)).0, 200);
    // An ES256 header naming the RSA key's kid.
    let claims = issuer.github_claims(&aud, json!({}));
    let forged = issuer.sign_raw_es256(
        json!({"alg": "ES256", "typ": "JWT", "kid": issuer.kid()}),
        claims,
    );
    assert!(refused(&server, &forged).contains("another algorithm"));
}

#[test]
fn a_rotated_key_is_fetched_once_and_then_accepted() {
    let env = Env::new();
    let issuer = Issuer::start();
    let (server, aud) = setup(&env);
    add_trust(&env, &issuer, "gh-deploy", &aud, GITHUB_DEPLOY);
    assert_eq!(
        exchange(&server, &issuer.github_token(&aud, json!({}))).0,
        200
    );
    let fetched = issuer.fetches();
    // Cached: a second token costs no fetch.
    assert_eq!(
        exchange(&server, &issuer.github_token(&aud, json!({}))).0,
        200
    );
    assert_eq!(issuer.fetches(), fetched);
    issuer.rotate();
    // A refetch right after the first fetch is held back a minute (an unknown kid must not
    // make the server hammer the issuer), so the clock moves on first: see the stale test.
    let why = refused(&server, &issuer.github_token(&aud, json!({})));
    assert!(
        why.contains("is not one of its issuer's signing keys"),
        "{why}"
    );
}

#[test]
fn keys_are_refetched_on_an_unknown_kid_served_while_the_issuer_is_down_and_fail_closed_after_the_stated_time()
 {
    let env = Env::new();
    let issuer = Issuer::start();
    env.ok(&["user", "add", "deploy-bot"]);
    let clock = env.path().join("clock");
    let t0 = common::now();
    let set_clock = |t: i64| std::fs::write(&clock, t.to_string()).unwrap();
    set_clock(t0);
    let now_var = format!("@{}", clock.display());
    let server = env.serve_with_env(
        &["--oidc-max-stale", "10m"],
        &[("TOKENAUTH_NOW", now_var.as_str())],
    );
    let aud = server.url("");
    add_trust(&env, &issuer, "gh-deploy", &aud, GITHUB_DEPLOY);
    let at = |t: i64| json!({"iat": t, "nbf": t - 5, "exp": t + 300});
    assert_eq!(exchange(&server, &issuer.github_token(&aud, at(t0))).0, 200);
    // Rotated: the unknown kid makes one refetch (a minute after the last), then it verifies.
    issuer.rotate();
    set_clock(t0 + 61);
    let (status, body) = exchange(&server, &issuer.github_token(&aud, at(t0 + 61)));
    assert_eq!(status, 200, "{body}");
    // Down: the cached keys carry on.
    issuer.set_down(true);
    let fetched = issuer.fetches();
    set_clock(t0 + 300);
    assert_eq!(
        exchange(&server, &issuer.github_token(&aud, at(t0 + 300))).0,
        200
    );
    // Past --oidc-max-stale since the last fetch that worked: refused, saying why.
    set_clock(t0 + 61 + 601);
    let why = refused(&server, &issuer.github_token(&aud, at(t0 + 662)));
    assert!(
        why.contains("could not be fetched since") && why.contains("refused until"),
        "{why}"
    );
    assert!(issuer.fetches() > fetched, "it tried the issuer again");
    // Back up: accepted again (the next attempt a minute later).
    issuer.set_down(false);
    set_clock(t0 + 61 + 601 + 61);
    let (status, body) = exchange(&server, &issuer.github_token(&aud, at(t0 + 723)));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_jwks_file_needs_no_fetch_and_token_exchange_answers_with_its_issued_type() {
    let env = Env::new();
    let issuer = Issuer::start();
    let (server, aud) = setup(&env);
    let jwks = env.path().join("jwks.json");
    std::fs::write(&jwks, issuer.jwks_json()).unwrap();
    let mut extra = GITHUB_DEPLOY.to_vec();
    extra.extend(["--jwks-file", jwks.to_str().unwrap()]);
    add_trust(&env, &issuer, "air-gapped", &aud, &extra);
    issuer.set_down(true);
    let token = issuer.github_token(&aud, json!({}));
    let reply = post_form(
        &server,
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", &token),
            ("subject_token_type", ID_TOKEN_TYPE),
            ("scope", "read"),
        ],
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(reply.json["scope"], "read");
    assert_eq!(issuer.fetches(), 0);
    // RFC 8693's other parameters are checked, not ignored.
    let token = issuer.github_token(&aud, json!({}));
    for (extra, says) in [
        (
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:saml2",
            ),
            "subject_token_type",
        ),
        (
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:refresh_token",
            ),
            "requested_token_type",
        ),
        (("actor_token", "x"), "actor_token"),
    ] {
        let mut params = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", token.as_str()),
        ];
        if extra.0 != "subject_token_type" {
            params.push(("subject_token_type", ID_TOKEN_TYPE));
        }
        params.push(extra);
        let reply = post_form(&server, &params, None);
        assert_eq!(reply.status, 400, "{}", reply.text);
        assert!(
            reply.json["error_description"]
                .as_str()
                .unwrap()
                .contains(says),
            "{}",
            reply.text
        );
    }
}

#[test]
fn a_gitlab_user_claim_maps_only_to_the_users_the_trust_names() {
    let env = Env::new();
    let issuer = Issuer::start();
    env.ok(&["user", "add", "myuser"]);
    env.ok(&["user", "add", "other"]);
    let server = env.serve(&[]);
    let aud = server.url("");
    add_trust(
        &env,
        &issuer,
        "gl-project",
        &aud,
        &[
            "--claim",
            "project_path=mygroup/myproject",
            "--claim",
            "ref_protected=true",
            "--user-claim",
            "user_login",
            "--user",
            "myuser",
        ],
    );
    let (status, body) = exchange(&server, &issuer.gitlab_token(&aud, json!({})));
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(check(&server, token, "read"), (200, Some("myuser".into())));
    let why = refused(
        &server,
        &issuer.gitlab_token(&aud, json!({"user_login": "other"})),
    );
    assert!(why.contains("not one of this trust's users"), "{why}");
    let why = refused(
        &server,
        &issuer.gitlab_token(&aud, json!({"ref_protected": "false"})),
    );
    assert!(why.contains("ref_protected"), "{why}");
}

#[test]
fn two_trusts_that_both_match_need_the_client_to_name_one() {
    let env = Env::new();
    let issuer = Issuer::start();
    let (server, aud) = setup(&env);
    env.ok(&["user", "add", "reader"]);
    add_trust(&env, &issuer, "gh-deploy", &aud, GITHUB_DEPLOY);
    add_trust(
        &env,
        &issuer,
        "gh-any-branch",
        &aud,
        &[
            "--claim",
            "repository=octo-org/octo-repo",
            "--user",
            "reader",
        ],
    );
    let why = refused(&server, &issuer.github_token(&aud, json!({})));
    assert!(
        why.contains("gh-any-branch, gh-deploy") && why.contains("--trust"),
        "{why}"
    );
    let reply = post_form(
        &server,
        &[
            ("grant_type", common::JWT_BEARER),
            ("assertion", &issuer.github_token(&aud, json!({}))),
            ("client_id", "gh-any-branch"),
        ],
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    // A name the issuer has no trust of is said only for a token its issuer signed.
    let named = |token: &str, name: &str| {
        post_form(
            &server,
            &[
                ("grant_type", common::JWT_BEARER),
                ("assertion", token),
                ("client_id", name),
            ],
            None,
        )
    };
    let reply = named(&issuer.github_token(&aud, json!({})), "nope");
    assert!(
        reply.json["error_description"]
            .as_str()
            .unwrap()
            .contains("No trust relationship named 'nope'"),
        "{}",
        reply.text
    );
    let outsider = Issuer::start();
    let forged = outsider.sign_claims(&issuer.github_claims(&aud, json!({})));
    let reply = named(&forged, "nope");
    assert!(!reply.text.contains("nope"), "{}", reply.text);
    // A branch only one trust takes needs no name.
    let dev = issuer.github_token(&aud, json!({"ref": "refs/heads/dev"}));
    assert_eq!(exchange(&server, &dev).0, 200);
}

#[test]
fn get_token_oidc_github_in_a_job_with_no_secret_gets_a_token_and_calls_the_api() {
    let env = Env::new();
    let issuer = Issuer::start();
    let (server, aud) = setup(&env);
    add_trust(&env, &issuer, "gh-deploy", &aud, GITHUB_DEPLOY);
    let token_uri = server.url("/token");
    let vars = issuer.github_env();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let token = env.ok_with_env(
        &["get-token", "--oidc", "github", "--token-uri", &token_uri],
        &vars,
    );
    assert_eq!(
        check(&server, token.trim(), "write"),
        (200, Some("deploy-bot".into()))
    );
    assert_eq!(issuer.audiences_asked(), std::slice::from_ref(&aud));
    let out = env.ok_with_env(
        &[
            "request",
            "--oidc",
            "github",
            "--token-uri",
            &token_uri,
            &server.url("/auth?scope=write"),
        ],
        &vars,
    );
    assert!(!out.contains("error"), "{out}");
}
