//! Allowed browser origins, at the HTTP level: same-site and cross-site requests to /auth,
//! /token, /introspect and /revoke, the CORS preflights, and the `--origin` options. (A real
//! browser drives the same rules in tests/browser.rs.)

mod common;

use serde_json::Value;

use common::{Env, JWT_BEARER, Reply, Server, http, send};

const APP: &str = "https://app.example.com";
const OTHER: &str = "https://other.example.com";

fn auth_from(server: &Server, token: &str, origin: Option<&str>) -> Reply {
    let mut req = http().get(server.url("/auth")).bearer_auth(token);
    if let Some(o) = origin {
        req = req.header("Origin", o);
    }
    send(req)
}

fn grant(env: &Env, key: &std::path::Path) -> String {
    env.ok(&["sign-grant", "--key", key.to_str().unwrap()])
        .trim()
        .to_owned()
}

fn token_from(server: &Server, grant: &str, origin: Option<&str>) -> Reply {
    let mut req = http()
        .post(server.url("/token"))
        .form(&[("grant_type", JWT_BEARER), ("assertion", grant)]);
    if let Some(o) = origin {
        req = req.header("Origin", o);
    }
    send(req)
}

#[test]
fn origins_are_parsed_strictly_and_stored_normalised() {
    let env = Env::new();
    let (key_id, _) = env.issue_key(
        "web",
        &[
            "--origin",
            "HTTPS://App.Example.com:443/",
            "--origin",
            "http://127.0.0.1:3000",
        ],
    );
    let keys = env.json(&["list-keys", "--json"]);
    assert_eq!(
        keys[0]["origins"],
        serde_json::json!([APP, "http://127.0.0.1:3000"])
    );
    for (bad, says) in [
        ("*", "'*' is not an origin"),
        ("https://*.example.com", "'*' is not an origin"),
        (
            "https://app.example.com/login",
            "has a path, query or fragment",
        ),
        (
            "https://me:pw@app.example.com",
            "has a user name or password",
        ),
        ("ftp://app.example.com", "is not http or https"),
        ("app.example.com", "is not an origin"),
    ] {
        let err = env.fails(&["issue-key", "--user", "web", "--origin", bad]);
        assert!(
            err.contains("invalid --origin") && err.contains(says),
            "{bad}: {err}"
        );
        let err = env.fails(&["edit-key", &key_id, "--origin", bad]);
        assert!(err.contains(says), "{bad}: {err}");
    }
    env.ok(&["edit-key", &key_id, "--no-origin"]);
    assert_eq!(
        env.json(&["list-keys", "--json"])[0]["origins"],
        serde_json::json!([])
    );
}

#[test]
fn auth_from_another_site_needs_the_origin_listed_and_says_so_for_the_proxy() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (key_id, key) = env.issue_key("web", &["--origin", APP]);
    let token = env
        .ok(&["get-token", "--key", key.to_str().unwrap()])
        .trim()
        .to_owned();

    let r = auth_from(&server, &token, Some(APP));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-auth-allow-origin"), Some(APP));
    let r = auth_from(&server, &token, Some(OTHER));
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(
        r.json,
        serde_json::json!({
            "error": "access_denied",
            "error_description": format!("Origin {OTHER} is not allowed for this token"),
        })
    );
    assert_eq!(r.header("x-auth-allow-origin"), None);
    // Same-site: no Origin, or the site's own (the issuer's origin by default).
    for origin in [None, Some(server.url("").as_str())] {
        let r = auth_from(&server, &token, origin);
        assert_eq!(r.status, 200, "{origin:?}: {}", r.text);
        assert_eq!(r.header("x-auth-allow-origin"), None);
    }
    // `null` (sandboxed frames, files) is never listed.
    assert_eq!(auth_from(&server, &token, Some("null")).status, 403);
    // Edits apply to tokens already issued.
    env.ok(&["edit-key", &key_id, "--origin", OTHER]);
    assert_eq!(auth_from(&server, &token, Some(APP)).status, 403);
    assert_eq!(auth_from(&server, &token, Some(OTHER)).status, 200);
    env.ok(&["edit-key", &key_id, "--no-origin"]);
    assert_eq!(auth_from(&server, &token, Some(OTHER)).status, 403);
    assert_eq!(auth_from(&server, &token, None).status, 200);
}

#[test]
fn public_origins_are_same_site_and_pats_carry_origins_too() {
    let env = Env::new();
    let server = env.serve(&[
        "--public-origin",
        "https://auth.example.com",
        "--public-origin",
        APP,
    ]);
    let out = env.ok(&[
        "token", "create", "--user", "dash", "--origin", OTHER, "--json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let pat = v["token"].as_str().unwrap();
    assert_eq!(v["origins"], serde_json::json!([OTHER]));
    // The site's own origins need no listing.
    assert_eq!(auth_from(&server, pat, Some(APP)).status, 200);
    let r = auth_from(&server, pat, Some(OTHER));
    assert_eq!(
        (r.status, r.header("x-auth-allow-origin")),
        (200, Some(OTHER))
    );
    // The issuer's origin is no longer public once --public-origin names others.
    assert_eq!(auth_from(&server, pat, Some(&server.url(""))).status, 403);
    let id = v["id"].as_str().unwrap();
    env.ok(&["token", "edit", id, "--no-origin"]);
    assert_eq!(auth_from(&server, pat, Some(OTHER)).status, 403);
    // The refusal names the token in the usage log. Refusals are written by the usage
    // writer's next batch, after the answer: poll, bounded.
    let want = format!("Origin {OTHER} is not allowed for this token");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let rows = loop {
        let rows = env.json(&["usage-log", "--json", "--failures"]);
        if rows[0]["reason"] == want.as_str() || std::time::Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(rows[0]["pat_id"], id);
    assert_eq!(rows[0]["reason"], want.as_str());
}

#[test]
fn preflights_allow_only_origins_some_key_lists() {
    let env = Env::new();
    let server = env.serve(&[]);
    env.issue_key("web", &["--origin", APP]);
    let preflight = |path: &str, origin: &str| {
        send(
            http()
                .request(reqwest::Method::OPTIONS, server.url(path))
                .header("Origin", origin)
                .header("Access-Control-Request-Method", "POST"),
        )
    };
    for (path, headers) in [
        ("/token", "Content-Type"),
        ("/introspect", "Authorization, Content-Type"),
        ("/revoke", "Content-Type"),
    ] {
        let r = preflight(path, APP);
        assert_eq!(r.status, 204, "{path}");
        assert_eq!(r.header("access-control-allow-origin"), Some(APP), "{path}");
        assert_eq!(r.header("access-control-allow-methods"), Some("POST"));
        assert_eq!(r.header("access-control-allow-headers"), Some(headers));
        assert_eq!(r.header("access-control-max-age"), Some("600"));
        assert_eq!(r.header("vary"), Some("Origin"));
        let r = preflight(path, OTHER);
        assert_eq!(r.status, 204, "{path}");
        assert_eq!(r.header("access-control-allow-origin"), None, "{path}");
        assert_eq!(r.header("access-control-allow-methods"), None, "{path}");
        assert_eq!(r.header("vary"), Some("Origin"));
    }
    // A revoked key's origins are no longer answered.
    let keys = env.json(&["list-keys", "--json"]);
    env.ok(&["revoke-key", keys[0]["key_id"].as_str().unwrap(), "--yes"]);
    assert_eq!(
        preflight("/token", APP).header("access-control-allow-origin"),
        None
    );
}

#[test]
fn token_from_another_site_needs_the_grants_key_to_list_the_origin() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (_, web) = env.issue_key("web", &["--origin", APP]);
    let (_, batch) = env.issue_key("batch", &[]);

    let r = token_from(&server, &grant(&env, &web), Some(APP));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    assert_eq!(r.header("vary"), Some("Origin"));
    // Another key from the same page: refused, readable by the page (the origin is known).
    let r = token_from(&server, &grant(&env, &batch), Some(APP));
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json["error"], "invalid_grant");
    assert_eq!(
        r.json["error_description"],
        format!("Origin {APP} is not allowed for this key")
    );
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    // An origin no key lists: refused, and the browser may not even read why.
    let r = token_from(&server, &grant(&env, &web), Some(OTHER));
    assert_eq!(
        r.json["error_description"],
        format!("Origin {OTHER} is not allowed for this key")
    );
    assert_eq!(r.header("access-control-allow-origin"), None);
    // Without an Origin (a script, not a browser) origins play no part.
    assert_eq!(token_from(&server, &grant(&env, &batch), None).status, 200);
    let rows = env.json(&["usage-log", "--json", "--failures"]);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["reason"] == format!("Origin {APP} is not allowed for this key")),
        "{rows:#}"
    );
}

#[test]
fn introspect_and_revoke_answer_cors_for_known_origins() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (_, key) = env.issue_key("web", &["--origin", APP]);
    env.ok(&["user", "grant", "web", "introspect"]);
    let token = env
        .ok(&["get-token", "--key", key.to_str().unwrap()])
        .trim()
        .to_owned();
    let post = |path: &str, origin: &str| {
        send(
            http()
                .post(server.url(path))
                .bearer_auth(&token)
                .header("Origin", origin)
                .form(&[("token", token.as_str())]),
        )
    };
    let r = post("/introspect", APP);
    assert_eq!(
        (r.status, r.json["active"].clone()),
        (200, Value::Bool(true))
    );
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    let r = post("/introspect", OTHER);
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = post("/revoke", APP);
    assert_eq!(
        (r.status, r.header("access-control-allow-origin")),
        (200, Some(APP))
    );
}
