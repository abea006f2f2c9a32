//! The remote admin API (`serve --admin-api`) against a real server on port 0, driven by the
//! CLI with `--server` and by hand: permission refusals, every admin command, the audit rows
//! it leaves, and the 404 when the API is off.

mod common;

use std::path::{Path, PathBuf};

use common::{Env, Server, http, send};
use serde_json::{Value, json};

/// A server with the admin API and these callers: `ops` (admin, write), `auditor` (admin,
/// read), `nobody` (no permission), `self` (manage-own-keys, write) and `other` (a user
/// `self` must not touch).
struct Fixture {
    env: Env,
    server: Server,
    ops: (String, PathBuf),
    auditor: PathBuf,
    nobody: PathBuf,
    own: (String, PathBuf),
    other: String,
}

impl Fixture {
    fn new() -> Fixture {
        let env = Env::new();
        let server = env.serve(&["--admin-api"]);
        let ops = env.issue_key("ops", &["--scope", "write"]);
        env.ok(&["user", "grant", "ops", "admin"]);
        let auditor = env.issue_key("auditor", &[]).1;
        env.ok(&["user", "grant", "auditor", "admin"]);
        let nobody = env.issue_key("nobody", &["--scope", "write"]).1;
        let own = env.issue_key("self", &["--scope", "write"]);
        env.ok(&["user", "grant", "self", "manage-own-keys"]);
        let other = env.issue_key("other", &[]).0;
        Fixture {
            env,
            server,
            ops,
            auditor,
            nobody,
            own,
            other,
        }
    }

    fn url(&self) -> String {
        self.server.url("")
    }

    /// `tokenauth --server URL --key KEY args…`: (exit code, stdout, stderr).
    fn run(&self, key: &Path, args: &[&str]) -> (i32, String, String) {
        let out = self
            .env
            .cmd()
            .args(["--server", &self.url(), "--key", key.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, key: &Path, args: &[&str]) -> String {
        let (code, out, err) = self.run(key, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    }

    fn json(&self, key: &Path, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(key, args)).unwrap()
    }

    /// Fails with exit 1 and one error line; returns it.
    fn refused(&self, key: &Path, args: &[&str]) -> String {
        let (code, _, err) = self.run(key, args);
        assert_eq!(code, 1, "{args:?} should fail: {err}");
        assert!(err.starts_with("tokenauth: error: "), "{err}");
        err
    }

    fn token(&self, key: &Path) -> String {
        self.env
            .ok(&["get-token", "--key", key.to_str().unwrap()])
            .trim()
            .to_owned()
    }

    fn last_audit(&self) -> Value {
        self.env.json(&["audit", "--json", "--limit", "1"])[0].clone()
    }
}

common::on_both_backends! {
fn every_admin_command_works_over_the_api_and_is_audited_as_the_caller() {
    let f = Fixture::new();
    let ops = &f.ops.1;
    let actor = format!("ops (key {})", f.ops.0);
    let audited = |action: &str, target: &str| {
        let row = f.last_audit();
        assert_eq!(
            (
                row["action"].as_str(),
                row["target"].as_str(),
                row["actor"].as_str()
            ),
            (Some(action), Some(target), Some(actor.as_str())),
            "{row}"
        );
        row
    };

    // Users.
    f.ok(ops, &["user", "add", "carol"]);
    audited("user.add", "carol");
    f.ok(ops, &["user", "grant", "carol", "impersonate"]);
    let row = audited("user.grant", "carol");
    assert_eq!(row["changes"]["permissions"]["to"], "impersonate");
    f.ok(ops, &["user", "revoke", "carol", "impersonate"]);
    audited("user.revoke", "carol");
    f.ok(ops, &["user", "disable", "carol"]);
    audited("user.disable", "carol");
    f.ok(ops, &["user", "enable", "carol"]);
    audited("user.enable", "carol");
    // The same output as on the store itself.
    assert_eq!(
        f.json(ops, &["user", "list", "--json"]),
        f.env.json(&["user", "list", "--json"])
    );
    assert_eq!(f.ok(ops, &["user", "list"]), f.env.ok(&["user", "list"]));

    // Keys: the private key comes back once, in the creating response, and works.
    let file = f.env.path().join("carol.json");
    let issued = f.json(
        ops,
        &[
            "issue-key",
            "--user",
            "carol",
            "--title",
            "remote",
            "--ip-range",
            "127.0.0.0/8",
            "--out",
            file.to_str().unwrap(),
            "--json",
        ],
    );
    let key_id = issued["key_id"].as_str().unwrap().to_owned();
    audited("key.issue", &key_id);
    assert_eq!(common::mode(&file), 0o600);
    let kf: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(kf["private_key"].as_str().unwrap().contains("PRIVATE KEY"));
    f.env.ok(&["get-token", "--key", file.to_str().unwrap()]);
    // A public key the client keeps the private half of.
    let pubfile = f.env.path().join("brought.pub");
    let private = f.env.path().join("brought.pem");
    let public = f.env.ok(&[
        "keygen",
        "--alg",
        "ES256",
        "--out",
        private.to_str().unwrap(),
    ]);
    std::fs::write(&pubfile, public).unwrap();
    let brought = f.env.path().join("brought.json");
    f.ok(
        ops,
        &[
            "issue-key",
            "--user",
            "carol",
            "--public-key",
            pubfile.to_str().unwrap(),
            "--out",
            brought.to_str().unwrap(),
        ],
    );
    let kf: Value = serde_json::from_slice(&std::fs::read(&brought).unwrap()).unwrap();
    assert!(
        kf.get("private_key").is_none() && kf["alg"] == "ES256",
        "{kf}"
    );

    assert_eq!(
        f.json(ops, &["list-keys", "--user", "carol", "--json"]),
        f.env.json(&["list-keys", "--user", "carol", "--json"])
    );
    assert_eq!(
        f.json(ops, &["list-keys", "--scope", "write", "--json"])
            .as_array()
            .unwrap()
            .len(),
        3
    );
    f.ok(
        ops,
        &["edit-key", &key_id, "--title", "renamed", "--no-ip-range"],
    );
    let row = audited("key.edit", &key_id);
    assert_eq!(
        row["changes"]["title"],
        json!({ "from": "remote", "to": "renamed" })
    );
    f.ok(ops, &["revoke-key", &key_id, "--yes"]);
    audited("key.revoke", &key_id);
    assert_eq!(
        f.json(ops, &["list-keys", "--state", "revoked", "--json"])[0]["key_id"],
        key_id.as_str()
    );
    f.ok(ops, &["rotate-secret", "carol", "--yes"]);
    audited("user.rotate-secret", "carol");

    // Personal access tokens.
    let pat = f.json(
        ops,
        &[
            "token",
            "create",
            "--user",
            "carol",
            "--description",
            "hook",
            "--json",
        ],
    );
    let pat_id = pat["id"].as_str().unwrap().to_owned();
    assert!(pat["token"].as_str().unwrap().starts_with("tapat_"));
    audited("token.create", &pat_id);
    f.ok(ops, &["token", "edit", &pat_id, "--scope", "write"]);
    audited("token.edit", &pat_id);
    assert_eq!(
        f.json(ops, &["token", "list", "--user", "carol", "--json"]),
        f.env.json(&["token", "list", "--user", "carol", "--json"])
    );
    f.ok(ops, &["token", "revoke", &pat_id, "--yes"]);
    audited("token.revoke", &pat_id);

    // Reading: audit, verify, usage, summary, report.
    let rows = f.json(ops, &["audit", "--actor", "ops", "--json"]);
    assert!(rows.as_array().unwrap().len() >= 12, "{rows}");
    assert_eq!(rows, f.env.json(&["audit", "--actor", "ops", "--json"]));
    assert!(
        f.ok(ops, &["audit", "verify"])
            .contains("Audit trail intact")
    );
    let usage = f.json(ops, &["usage-log", "--json"]);
    assert!(
        usage
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["user"] == "carol")
    );
    let summary = f.json(ops, &["usage-log", "--summary", "--json"]);
    assert!(summary["keys"].as_array().unwrap().len() >= 2, "{summary}");
    let report = f.json(ops, &["report", "--json"]);
    assert!(report["write_without_ip_range"].as_array().unwrap().len() >= 3);
    let (code, _, err) = f.run(ops, &["report", "--fail-on", "write-without-ip-range"]);
    assert_eq!(code, 1, "{err}");

    // Removing a user, last.
    f.ok(ops, &["user", "add", "temp"]);
    f.ok(ops, &["user", "remove", "temp", "--yes"]);
    audited("user.remove", "temp");

    // A personal access token works as the caller too.
    let ops_pat = f.env.json(&[
        "token", "create", "--user", "ops", "--scope", "write", "--json",
    ]);
    let out = f
        .env
        .cmd()
        .args([
            "--server",
            &f.url(),
            "--token",
            ops_pat["token"].as_str().unwrap(),
            "user",
            "add",
            "dave",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        f.last_audit()["actor"],
        format!("ops (token {})", ops_pat["id"].as_str().unwrap()).as_str()
    );
}

fn callers_without_a_token_permission_or_write_scope_are_refused() {
    let f = Fixture::new();
    let before = f.env.json(&["audit", "--json"]);

    // No token at all.
    let r = send(http().get(f.server.url("/admin/v1/users")));
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|w| w.starts_with("Bearer"))
    );
    assert_eq!(r.json["error"], "invalid_request");
    // A bad one.
    let r = send(
        http()
            .get(f.server.url("/admin/v1/users"))
            .bearer_auth("not.a.token"),
    );
    assert_eq!(r.status, 401);

    // No admin permission.
    let err = f.refused(&f.nobody, &["user", "list"]);
    assert!(err.contains("lacks the admin permission"), "{err}");
    let r = send(
        http()
            .get(f.server.url("/admin/v1/keys"))
            .bearer_auth(f.token(&f.nobody)),
    );
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (403, Some("access_denied"))
    );

    // Admin with read scope: reads yes, changes no.
    f.ok(&f.auditor, &["user", "list"]);
    f.ok(&f.auditor, &["audit"]);
    let err = f.refused(&f.auditor, &["user", "add", "eve"]);
    assert!(err.contains("scope"), "{err}");
    let r = send(
        http()
            .post(f.server.url("/admin/v1/users"))
            .bearer_auth(f.token(&f.auditor))
            .json(&json!({ "name": "eve" })),
    );
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (403, Some("insufficient_scope"))
    );

    // No credential on the command line.
    let out = f
        .env
        .cmd()
        .args(["--server", &f.url(), "user", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--server needs a credential"));

    // Nothing changed, so nothing was audited.
    assert_eq!(f.env.json(&["audit", "--json"]), before);
    assert!(f.env.ok(&["user", "list"]).contains("nobody"));
}

fn self_service_reaches_only_the_callers_own_keys_tokens_and_usage() {
    let f = Fixture::new();
    let me = &f.own.1;

    // Its own: issue, list, edit, revoke keys and tokens; read its usage.
    let file = f.env.path().join("mine.json");
    let issued = f.json(
        me,
        &[
            "issue-key",
            "--user",
            "self",
            "--out",
            file.to_str().unwrap(),
            "--json",
        ],
    );
    let mine = issued["key_id"].as_str().unwrap().to_owned();
    let row = f.last_audit();
    assert_eq!(row["actor"], format!("self (key {})", f.own.0).as_str());
    assert_eq!(
        (row["action"].as_str(), row["target"].as_str()),
        (Some("key.issue"), Some(mine.as_str()))
    );
    let listed = f.json(me, &["list-keys", "--json"]);
    let users: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["self", "self"]);
    f.ok(me, &["edit-key", &mine, "--title", "mine"]);
    f.ok(me, &["revoke-key", &mine, "--yes"]);
    let pat = f.json(me, &["token", "create", "--user", "self", "--json"]);
    let pat_id = pat["id"].as_str().unwrap();
    f.ok(me, &["token", "edit", pat_id, "--description", "x"]);
    f.ok(me, &["token", "list"]);
    f.ok(me, &["token", "revoke", pat_id, "--yes"]);
    let usage = f.json(me, &["usage-log", "--json"]);
    assert!(
        usage
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["user"] == "self" || r["subject"] == "self"),
        "{usage}"
    );
    f.json(me, &["usage-log", "--summary", "--json"]);

    // Another user's: refused with 403, and nothing changes.
    let before = f.env.json(&["audit", "--json"]);
    for args in [
        vec!["revoke-key", f.other.as_str(), "--yes"],
        vec!["edit-key", f.other.as_str(), "--title", "pwned"],
        vec!["issue-key", "--user", "other", "--out", "x.json"],
        vec!["token", "create", "--user", "other"],
        vec!["list-keys", "--user", "other"],
        vec!["usage-log", "--user", "other"],
        vec!["usage-log", f.other.as_str()],
        vec!["user", "list"],
        vec!["user", "grant", "self", "admin"],
        vec!["rotate-secret", "other", "--yes"],
        vec!["audit"],
        vec!["report"],
    ] {
        let err = f.refused(me, &args);
        assert!(err.contains("refused"), "{args:?}: {err}");
    }
    let r = send(
        http()
            .post(f.server.url(&format!("/admin/v1/keys/{}/revoke", f.other)))
            .bearer_auth(f.token(me))
            .json(&json!({})),
    );
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (403, Some("access_denied"))
    );
    assert_eq!(f.env.json(&["audit", "--json"]), before);
    assert_eq!(
        f.env.json(&["list-keys", "--user", "other", "--json"])[0]["state"],
        "active"
    );
}

fn bad_requests_get_json_errors_and_unknown_things_404() {
    let f = Fixture::new();
    let token = f.token(&f.ops.1);
    let call = |method: reqwest::Method, path: &str, body: Option<&str>| {
        let mut req = http()
            .request(method, f.server.url(path))
            .bearer_auth(&token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        send(req)
    };
    use reqwest::Method;
    for (method, path, body, status) in [
        (Method::POST, "/admin/v1/users", Some("{"), 400),
        (Method::POST, "/admin/v1/users", Some("{\"name\": 5}"), 400),
        (
            Method::POST,
            "/admin/v1/users",
            Some("{\"name\": \"a b\"}"),
            400,
        ),
        (
            Method::POST,
            "/admin/v1/users",
            Some("{\"name\": \"x\", \"extra\": 1}"),
            400,
        ),
        (
            Method::POST,
            "/admin/v1/users",
            Some("{\"name\": \"ops\"}"),
            409,
        ),
        (
            Method::POST,
            "/admin/v1/users/ops/grant",
            Some("{\"permission\": \"root\"}"),
            400,
        ),
        (Method::GET, "/admin/v1/users/nobody-here", None, 404),
        (Method::GET, "/admin/v1/keys/zzzzzzzz", None, 404),
        (Method::GET, "/admin/v1/keys?state=odd", None, 400),
        (
            Method::GET,
            "/admin/v1/keys?expiring_within=soon",
            None,
            400,
        ),
        (
            Method::POST,
            "/admin/v1/keys",
            Some("{\"user\": \"x\", \"ip_range\": \"999.1.1.1\"}"),
            400,
        ),
        (
            Method::POST,
            "/admin/v1/keys",
            Some("{\"user\": \"x\", \"bits\": 1024}"),
            400,
        ),
        (
            Method::POST,
            "/admin/v1/keys",
            Some("{\"user\": \"x\", \"public_key\": \"junk\"}"),
            400,
        ),
        (
            Method::PATCH,
            "/admin/v1/keys/zzzzzzzz",
            Some("{\"title\": \"t\"}"),
            404,
        ),
        (Method::DELETE, "/admin/v1/users/ops", None, 409),
        (Method::PUT, "/admin/v1/users", None, 405),
        (Method::GET, "/admin/v1/keys/x/revoke", None, 405),
        (Method::GET, "/admin/v1/nothing", None, 404),
        (Method::GET, "/admin/v1/users/%ff", None, 400),
        (Method::GET, "/admin/v1/", None, 404),
        (Method::GET, "/admin/v1/audit/verify?x=1", None, 400),
    ] {
        let r = call(method.clone(), path, body);
        assert_eq!(r.status, status, "{method} {path} {body:?}: {}", r.text);
        assert!(
            r.json["error"].is_string() && r.json["error_description"].is_string(),
            "{}",
            r.text
        );
    }
    let r = send(
        http()
            .post(f.server.url("/admin/v1/users"))
            .bearer_auth(&token)
            .header("content-type", "text/plain")
            .body("{\"name\": \"t\"}"),
    );
    assert_eq!(r.status, 415);
    let r = call(reqwest::Method::PUT, "/admin/v1/keys", None);
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST"));
    // The CLI says where the fault is.
    let err = f.refused(&f.ops.1, &["revoke-key", "zzzzzzzz", "--yes"]);
    assert!(err.contains("no key with id 'zzzzzzzz'"), "{err}");
}

fn without_admin_api_the_admin_paths_are_404_and_the_cli_says_so() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (_, key) = env.issue_key("ops", &["--scope", "write"]);
    env.ok(&["user", "grant", "ops", "admin"]);
    let token = env.ok(&["get-token", "--key", key.to_str().unwrap()]);
    for path in ["/admin/v1", "/admin/v1/users", "/admin/v1/keys/x/revoke"] {
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let r = send(
                http()
                    .request(method, server.url(path))
                    .bearer_auth(token.trim()),
            );
            assert_eq!(
                (r.status, r.json["error"].as_str()),
                (404, Some("not_found")),
                "{path}"
            );
        }
    }
    let out = env
        .cmd()
        .args([
            "--server",
            &server.url(""),
            "--key",
            key.to_str().unwrap(),
            "user",
            "list",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--admin-api"), "{err}");
    // init and serve stay local.
    let out = env
        .cmd()
        .args(["--server", &server.url(""), "init"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("local store only"));
}
}
