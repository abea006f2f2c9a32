//! Personal access tokens, end to end: `tokenauth token …`, and every check that takes an
//! access token taking them by the same rules.

mod common;

use serde_json::{Value, json};

use common::{Env, Reply, Server, http, send};

/// Runs `token create` and returns (token, id).
fn create(env: &Env, user: &str, extra: &[&str], vars: &[(&str, &str)]) -> (String, String) {
    let mut args = vec!["token", "create", "--user", user, "--json"];
    args.extend_from_slice(extra);
    let v: Value = serde_json::from_str(&env.ok_with_env(&args, vars)).unwrap();
    (
        v["token"].as_str().unwrap().to_owned(),
        v["id"].as_str().unwrap().to_owned(),
    )
}

fn auth(server: &Server, token: &str) -> Reply {
    send(http().get(server.url("/auth")).bearer_auth(token))
}

fn assert_allowed(r: &Reply, user: &str, id: &str, scope: &str) {
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-auth-user"), Some(user));
    assert_eq!(r.header("x-auth-token-id"), Some(id));
    assert_eq!(r.header("x-auth-key-id"), None);
    assert_eq!(r.header("x-auth-scope"), Some(scope));
    assert_eq!(
        r.json,
        json!({ "user": user, "token_id": id, "scope": scope })
    );
}

/// A 401 invalid_token with exactly this description, in the body and the challenge.
fn assert_invalid(r: &Reply, description: &str) {
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(
        r.json,
        json!({ "error": "invalid_token", "error_description": description })
    );
    let www = r.header("www-authenticate").unwrap();
    assert!(
        www.contains(&format!("error_description=\"{description}\"")),
        "{www}"
    );
}

fn usage(env: &Env, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["usage-log", "--json"];
    all.extend_from_slice(args);
    env.json(&all).as_array().unwrap().clone()
}

/// The token itself is written nowhere: not the store, its WAL, the server's log (at
/// trace level), nor any `--json` output.
#[test]
fn a_pat_is_never_written_to_the_store_logs_or_json() {
    let env = Env::new();
    let server = env.serve_with_env(&[], &[("RUST_LOG", "tokenauth=trace")]);
    let (token, id) = create(&env, "hook", &["--scope", "write"], &[]);
    assert_allowed(&auth(&server, &token), "hook", &id, "read write");
    let write = send(
        http()
            .get(server.url("/auth?scope=write"))
            .bearer_auth(&token)
            .header("X-Original-Method", "DELETE"),
    );
    assert_eq!(write.status, 200);
    env.ok(&["token", "revoke", &id, "--yes"]);
    assert_eq!(auth(&server, &token).status, 401);
    let secret = &token[6..];
    let db = env.db();
    let mut places: Vec<(String, Vec<u8>)> = vec![("server log".into(), server.log().into_bytes())];
    for suffix in ["", "-wal", "-shm"] {
        let path = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        places.push((
            path.display().to_string(),
            std::fs::read(&path).unwrap_or_default(),
        ));
    }
    for args in [
        vec!["token", "list", "--all", "--json"],
        vec!["usage-log", "--json"],
        vec!["user", "list", "--json"],
    ] {
        places.push((args.join(" "), env.ok(&args).into_bytes()));
    }
    for (place, bytes) in &places {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the token is in {place}"
        );
    }
}

common::on_both_backends! {
fn create_prints_the_token_once_and_listings_show_only_its_prefix_and_last_four() {
    let env = Env::new();
    let out = env
        .cmd()
        .args([
            "token",
            "create",
            "--user",
            "hook",
            "--description",
            "GitHub webhook",
            "--expires",
            "90d",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(token.starts_with("tapat_") && token.len() == 55, "{token}");
    assert!(err.contains("shown this once"), "{err}");
    assert!(!err.contains(&token), "the token went to stderr too");
    env.ok(&["verify", &token]);

    let listed = env.json(&["token", "list", "--json"]);
    let row = &listed[0];
    assert_eq!(row["user"], "hook");
    assert_eq!(row["description"], "GitHub webhook");
    assert_eq!(row["scope"], "read");
    assert_eq!(row["state"], "active");
    assert_eq!(row["token"], format!("tapat_…{}", &token[51..]));
    assert!(row["expires"].as_i64().unwrap() > common::now() + 89 * 86_400);
    let table = env.ok(&["token", "list", "--wide"]);
    for text in [listed.to_string(), table.clone()] {
        assert!(!text.contains(&token[6..30]), "{text}");
    }
    assert!(
        table.contains(&format!("tapat_…{}", &token[51..])),
        "{table}"
    );
    assert!(table.contains("GitHub webhook"));
    // Filters and errors.
    assert_eq!(
        env.json(&["token", "list", "--user", "hook", "--json"])[0]["id"],
        row["id"]
    );
    let err = env.fails(&["token", "list", "--user", "nobody"]);
    assert!(err.contains("no user named 'nobody'"), "{err}");
    let err = env.fails(&["token", "revoke", "nope", "--yes"]);
    assert!(
        err.contains("no personal access token with id 'nope'"),
        "{err}"
    );
    let err = env.fails(&[
        "token",
        "create",
        "--user",
        "hook",
        "--expires",
        "2001-01-01",
    ]);
    assert!(err.contains("is in the past"), "{err}");
    let err = env.fails(&[
        "token",
        "create",
        "--user",
        "hook",
        "--ip-range",
        "10.0.0.1/8",
    ]);
    assert!(err.contains("did you mean 10.0.0.0/8"), "{err}");
    let err = env.fails(&["token", "create", "--user", "hook", "--origin", "*"]);
    assert!(err.contains("'*' is not an origin"), "{err}");
}

/// A mistyped token never reaches the store: here the store cannot even be opened.
fn a_checksum_typo_is_refused_before_any_store_lookup() {
    let env = Env::new();
    let (token, _) = create(&env, "hook", &[], &[]);
    let mut typo = token.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let blocked = env.path().join("not-a-folder");
    std::fs::write(&blocked, "").unwrap();
    let out = env
        .cmd()
        .env("TOKENAUTH_DB", blocked.join("store.db"))
        .args(["verify", &typo])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("Malformed personal access token: checksum does not match"),
        "{err}"
    );
    // The good token needs the store, which this path cannot open: so the typo was judged
    // without it.
    let out = env
        .cmd()
        .env("TOKENAUTH_DB", blocked.join("store.db"))
        .args(["verify", &token])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open the store"));

    let server = env.serve(&[]);
    assert_invalid(
        &auth(&server, &typo),
        "Malformed personal access token: checksum does not match; the token was mistyped or cut",
    );
    assert_invalid(
        &auth(&server, &token[..40]),
        "Malformed personal access token: a personal access token is 55 characters long",
    );
}

fn every_check_takes_a_pat_where_it_takes_an_access_token() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (token, id) = create(&env, "hook", &["--scope", "write"], &[]);
    let get = || http().get(server.url("/auth"));
    for req in [
        get().bearer_auth(&token),
        get().header("Cookie", format!("theme=dark; token={token}")),
        get().header("X-JWT-Auth-Token", &token),
        get().header("Authorization", format!("JWT token=\"{token}\"")),
    ] {
        assert_allowed(&send(req), "hook", &id, "read write");
    }

    // Introspection, with a PAT on both sides.
    let (caller, _) = create(&env, "auditor", &[], &[]);
    env.ok(&["user", "grant", "auditor", "introspect"]);
    let r = send(
        http()
            .post(server.url("/introspect"))
            .bearer_auth(&caller)
            .form(&[("token", token.as_str())]),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let fields = r.json.as_object().unwrap();
    assert_eq!(r.json["active"], true);
    assert_eq!(r.json["token_type"], "personal_access_token");
    assert_eq!(r.json["sub"], "hook");
    assert_eq!(r.json["username"], "hook");
    assert_eq!(r.json["scope"], "read write");
    assert_eq!(r.json["token_id"], id.as_str());
    assert!(r.json["iat"].is_i64() && r.json["iss"].is_string());
    assert!(
        !fields.contains_key("exp"),
        "a token without expiry has no exp"
    );
    assert!(!r.text.contains(&token), "introspection echoed the token");

    // verify, and request with the token as it is.
    let out = env.ok(&["verify", &token, "--scope", "write", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["token_id"], id.as_str());
    let body = env.ok(&["request", "--token", &token, &server.url("/auth")]);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["token_id"],
        id.as_str()
    );
    let body = env.ok_with_env(
        &["request", &server.url("/auth")],
        &[("TOKENAUTH_TOKEN", &token)],
    );
    assert!(body.contains(&id));
    let mut stdin_token = env.cmd();
    stdin_token
        .args(["request", "--token", "-", &server.url("/auth")])
        .write_stdin(format!("{token}\n"));
    assert!(stdin_token.output().unwrap().status.success());
    let err = env.fails(&[
        "request",
        "--token",
        &token,
        "--scope",
        "write",
        &server.url("/auth"),
    ]);
    assert!(err.contains("go with a key file"), "{err}");
    assert!(!err.contains(&token[6..]), "{err}");
}

fn an_expired_pat_gets_access_token_expired() {
    let env = Env::new();
    let server = env.serve(&[]);
    let earlier = (common::now() - 7_200).to_string();
    let (token, id) = create(
        &env,
        "hook",
        &["--expires", "1h"],
        &[("TOKENAUTH_NOW", &earlier)],
    );
    assert_invalid(&auth(&server, &token), "Access token expired");
    assert_eq!(
        env.json(&["token", "list", "--json"])[0]["state"],
        "expired"
    );
    // The refusal is in the usage log, with the token's id and never the token. It is
    // written by the usage writer's next batch, after the answer: poll, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let rows = loop {
        let rows = usage(&env, &["--failures"]);
        if !rows.is_empty() || std::time::Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["pat_id"], id.as_str());
    assert_eq!(rows[0]["user"], "hook");
    assert_eq!(rows[0]["reason"], "Access token expired");
    assert!(!serde_json::to_string(&rows).unwrap().contains(&token[6..]));
    assert_eq!(usage(&env, &[&id])[0]["pat_id"], id.as_str());
}

fn revocation_rotation_and_disabling_end_a_pat_on_the_next_check() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (token, id) = create(&env, "hook", &[], &[]);
    let (other, other_id) = create(&env, "hook", &[], &[]);
    assert_allowed(&auth(&server, &token), "hook", &id, "read");

    env.ok(&["user", "disable", "hook"]);
    assert_invalid(&auth(&server, &token), "User 'hook' is disabled");
    env.ok(&["user", "enable", "hook"]);
    assert_allowed(&auth(&server, &token), "hook", &id, "read");

    env.ok(&["token", "revoke", &id[..6], "--yes"]);
    assert_invalid(
        &auth(&server, &token),
        "Personal access token has been revoked",
    );
    assert_allowed(&auth(&server, &other), "hook", &other_id, "read");
    assert_eq!(
        env.json(&["token", "list", "--all", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id.as_str())
            .unwrap()["state"],
        "revoked"
    );
    assert!(
        env.json(&["token", "list", "--json"])
            .as_array()
            .unwrap()
            .len()
            == 1
    );

    env.ok(&["rotate-secret", "hook", "--yes"]);
    assert_invalid(
        &auth(&server, &other),
        "Personal access token was ended when its user's secret was rotated",
    );
    // A token made after the rotation works.
    let (fresh, fresh_id) = create(&env, "hook", &[], &[]);
    assert_allowed(&auth(&server, &fresh), "hook", &fresh_id, "read");

    // RFC 7009: holding the token is enough to revoke it.
    let r = send(
        http()
            .post(server.url("/revoke"))
            .form(&[("token", fresh.as_str())]),
    );
    assert_eq!(r.status, 200);
    assert_invalid(
        &auth(&server, &fresh),
        "Personal access token has been revoked",
    );

    // A user with a live token cannot be removed.
    create(&env, "keeper", &[], &[]);
    let err = env.fails(&["user", "remove", "keeper", "--yes"]);
    assert!(err.contains("personal access token"), "{err}");
}

fn ip_ranges_scope_and_edits_apply_to_pats_at_once() {
    let env = Env::new();
    let server = env.serve(&["--trusted-proxy", "127.0.0.1"]);
    let (token, id) = create(&env, "hook", &["--ip-range", "10.0.0.0/8"], &[]);
    let from = |addr: &str, method: &str| {
        send(
            http()
                .get(server.url("/auth"))
                .bearer_auth(&token)
                .header("X-Forwarded-For", addr)
                .header("X-Original-Method", method),
        )
    };
    assert_allowed(&from("10.1.2.3", "GET"), "hook", &id, "read");
    assert_invalid(
        &from("192.0.2.1", "GET"),
        "Address 192.0.2.1 is not allowed to use this key",
    );
    let r = from("10.1.2.3", "POST");
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.json["error"], "insufficient_scope");

    env.ok(&[
        "token",
        "edit",
        &id,
        "--scope",
        "write",
        "--no-ip-range",
        "--description",
        "now wider",
    ]);
    assert_allowed(&from("192.0.2.1", "POST"), "hook", &id, "read write");
    assert_eq!(
        env.json(&["token", "list", "--json"])[0]["description"],
        "now wider"
    );
    env.ok(&["token", "edit", &id, "--ip-range", "192.0.2.0/24"]);
    assert_invalid(
        &from("10.1.2.3", "GET"),
        "Address 10.1.2.3 is not allowed to use this key",
    );
    let err = env.fails(&["token", "edit", &id]);
    assert!(err.contains("nothing to change"), "{err}");
    // Refusals of a known token are logged with its reason.
    let reasons: Vec<String> = usage(&env, &["--failures"])
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        reasons.contains(&"Address 192.0.2.1 is not allowed to use this key".to_owned()),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"Insufficient scope: 'write' required".to_owned()),
        "{reasons:?}"
    );
}

fn last_use_is_recorded_in_the_background() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (token, id) = create(&env, "hook", &[], &[]);
    assert_eq!(
        env.json(&["token", "list", "--json"])[0]["last_used"],
        Value::Null
    );
    for _ in 0..20 {
        assert_allowed(&auth(&server, &token), "hook", &id, "read");
    }
    // Written by the usage writer's next batch, not by the request: poll, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let used = env.json(&["token", "list", "--json"])[0]["last_used"].as_i64();
        if let Some(t) = used {
            assert!((t - common::now()).abs() < 60, "{t}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "last use never recorded"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn a_pat_one_character_off_a_real_one_is_answered_as_any_unknown_pat() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (token, _) = create(&env, "hook", &[], &[]);
    let (caller, _) = create(&env, "auditor", &[], &[]);
    env.ok(&["user", "grant", "auditor", "introspect"]);
    // The real token with one random character changed and the checksum made good again:
    // the nearest a caller without the token gets to it.
    let body = &token[..token.len() - 6];
    let flipped = if body.ends_with('a') { 'b' } else { 'a' };
    let near = format!("{}{flipped}", &body[..body.len() - 1]);
    let near = format!("{near}{}", checksum(&near));
    let stranger = tokenauth::pat::generate(&mut rand::rngs::OsRng)
        .expose()
        .to_owned();
    let answers: Vec<String> = [&near, &stranger]
        .into_iter()
        .map(|t| {
            let introspected = send(
                http()
                    .post(server.url("/introspect"))
                    .bearer_auth(&caller)
                    .form(&[("token", t.as_str())]),
            );
            assert_eq!(introspected.text, r#"{"active":false}"#);
            auth(&server, t).comparable()
        })
        .collect();
    assert_invalid(&auth(&server, &near), "Unknown personal access token");
    assert_eq!(answers[0], answers[1]);
}
}

/// A personal access token's checksum, as `tokenauth::pat` makes it (CRC32 of `tapat_` and
/// the random part, as 6 base62 digits).
fn checksum(body: &str) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n = crc32fast::hash(body.as_bytes());
    let mut digits = [b'0'; 6];
    for d in digits.iter_mut().rev() {
        *d = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(digits.to_vec()).unwrap()
}

#[test]
fn token_list_and_report_show_tokens_a_rotation_ended_as_ended() {
    let env = Env::new();
    let (_, id) = create(&env, "ci", &["--scope", "write"], &[]);
    let state = |env: &Env| -> Vec<String> {
        env.json(&["token", "list", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["state"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(state(&env), ["active"]);
    let report = env.json(&["report", "--json"]);
    assert!(report.to_string().contains(&id), "{report}");
    env.ok(&["rotate-secret", "ci", "--yes"]);
    // The rotation ended it: listed as ended, and gone from the report's active findings.
    assert_eq!(state(&env), ["ended"]);
    assert!(env.ok(&["token", "list"]).contains("ended"));
    let report = env.json(&["report", "--json"]);
    assert!(!report.to_string().contains(&id), "{report}");
}
