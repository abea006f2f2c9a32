//! docs/openapi.json stays true: it lists exactly the routes the server has, the server
//! serves it, real answers validate against its schemas, and schemathesis finds no server
//! error nor any answer that breaks it.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{Env, JWT_BEARER, Reply, Server, http, send};
use serde_json::Value;

fn doc() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

const METHODS: [&str; 6] = ["get", "post", "put", "patch", "delete", "options"];

/// (path, method) of every documented operation.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if item.get(m).is_some() {
                out.push((path.clone(), m.to_owned()));
            }
        }
    }
    out
}

#[test]
fn the_document_lists_exactly_the_routes_the_server_has() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|p| !is_admin(p))
        .collect();
    // The router is built from this list (server::app).
    let routed: BTreeSet<&str> = tokenauth::server::metrics::ROUTES
        .iter()
        .map(|(_, r)| *r)
        .collect();
    assert_eq!(documented, routed);

    // Every documented operation is answered by its route (not 404, not 405), and every
    // method the document leaves out of a route is 405.
    let env = Env::new();
    env.ok(&["init", "--issuer", "http://127.0.0.1/tenant"]);
    let server = env.serve(&[]);
    let ops = operations(&doc);
    for path in &documented {
        let url_path = path.replace("{issuer_path}", "tenant");
        for m in METHODS {
            let method = reqwest::Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
            let r = send(
                http()
                    .request(method, server.url(&url_path))
                    .header("origin", "https://elsewhere.example"),
            );
            if ops.contains(&(path.to_string(), m.to_owned())) {
                assert!(
                    r.status != 404 && r.status != 405,
                    "{m} {path}: {} {}",
                    r.status,
                    r.text
                );
            } else {
                assert_eq!(r.status, 405, "{m} {path} is not documented: {}", r.text);
            }
        }
    }
}

#[test]
fn get_openapi_json_serves_the_committed_document_with_this_server() {
    let env = Env::new();
    let server = env.serve(&[]);
    let r = send(http().get(server.url("/openapi.json")));
    assert_eq!(r.status, 200);
    let mut served = r.json;
    assert_eq!(
        served["servers"][0]["url"],
        format!("http://{}", server.addr)
    );
    let mut committed = doc();
    served["servers"] = Value::Null;
    committed["servers"] = Value::Null;
    assert_eq!(served, committed);
}

fn is_admin(path: &str) -> bool {
    path.starts_with("/admin/v1/")
}

/// A `$ref` to `#/components/…` resolved, or the value itself.
fn resolved<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => doc.pointer(pointer).expect("a $ref into the document"),
        None => v,
    }
}

/// Checks a real answer against the document's schema for its operation and status.
fn conforms(doc: &Value, path: &str, method: &str, r: &Reply) {
    let status = r.status.to_string();
    let response = resolved(doc, &doc["paths"][path][method]["responses"][&status]);
    assert!(
        response.is_object(),
        "{method} {path}: status {status} is not documented ({})",
        r.text
    );
    let content = &response["content"];
    let ctype = r.header("content-type").unwrap_or("");
    let (media, spec) = content
        .as_object()
        .unwrap()
        .iter()
        .next()
        .expect("a documented body");
    assert!(
        ctype.starts_with(media.as_str()),
        "{method} {path}: {ctype}"
    );
    let mut schema = spec["schema"].clone();
    schema["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let instance = if media == "application/json" {
        r.json.clone()
    } else {
        Value::String(r.text.clone())
    };
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:?} in {}",
        r.text
    );
    // Every answer carries its request id (info.description says so).
    assert!(
        r.header("x-request-id").is_some(),
        "{method} {path} {status}: no X-Request-Id"
    );
    for (name, _) in response["headers"].as_object().into_iter().flatten() {
        assert!(
            r.header(name).is_some(),
            "{method} {path} {status}: no {name}"
        );
    }
}

/// A server with the admin API, and a personal access token of `ops` (admin, write scope).
/// A token, not a key: schemathesis may revoke keys by a short id prefix.
struct AdminServer {
    env: Env,
    server: Server,
    token: String,
}

fn admin_server() -> AdminServer {
    let env = Env::new();
    env.ok(&["user", "add", "ops"]);
    env.ok(&["user", "grant", "ops", "admin"]);
    let server = env.serve(&["--admin-api"]);
    let token = env.json(&[
        "token", "create", "--user", "ops", "--scope", "write", "--json",
    ])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    AdminServer { env, server, token }
}

impl AdminServer {
    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut req = http()
            .request(method, self.server.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        send(req)
    }
}

#[test]
fn the_admin_paths_and_methods_are_exactly_the_admin_routes() {
    let doc = doc();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(p, _)| is_admin(p))
        .map(|(p, item)| {
            let mut methods: Vec<&str> = METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .copied()
                .collect();
            // GET answers HEAD too; the document leaves HEAD implicit.
            if methods.contains(&"get") {
                methods.insert(1, "head");
            }
            (p.clone(), methods.join(", ").to_uppercase())
        })
        .collect();
    let routed: BTreeSet<(String, String)> = tokenauth::server::admin::ROUTES
        .iter()
        .map(|(p, m)| ((*p).to_owned(), (*m).to_owned()))
        .collect();
    assert_eq!(documented, routed);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let tagged = op["tags"].as_array().unwrap().contains(&"admin".into());
            assert_eq!(tagged, is_admin(path), "{m} {path}: the admin tag");
            if tagged {
                assert_eq!(
                    op["security"],
                    serde_json::json!([{ "bearer": [] }]),
                    "{m} {path}"
                );
                assert!(
                    op["description"]
                        .as_str()
                        .unwrap()
                        .contains("serve --admin-api"),
                    "{m} {path}"
                );
            }
        }
    }
}

#[test]
fn every_admin_operation_answers_and_conforms_and_other_methods_are_405() {
    let doc = doc();
    let a = admin_server();
    // Things for the paths to name: a user with keys, a token and a trust; one key the paths
    // do not revoke, so that removing the user is 409 and leaves it there for the paths after.
    let (key_id, _) = a.env.issue_key("carol", &[]);
    a.env.issue_key("carol", &[]);
    let token_id = a
        .env
        .json(&["token", "create", "--user", "carol", "--json"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    a.env.ok(&[
        "trust",
        "add",
        "carol",
        "--issuer",
        "https://ci.example",
        "--audience",
        "https://auth.example",
        "--claim",
        "repository=acme/app",
        "--user",
        "carol",
    ]);
    let mut paths: Vec<&String> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|p| is_admin(p))
        .collect();
    // Rotating every secret ends the caller's token too: last.
    paths.sort_by_key(|p| p.ends_with("/rotate-secret"));
    let ops = operations(&doc);
    for path in paths {
        let url_path = path.replace("{name}", "carol").replace(
            "{id}",
            if path.contains("/keys/") {
                &key_id
            } else {
                &token_id
            },
        );
        for m in METHODS {
            let r = a.send(m, &url_path, None);
            if ops.contains(&(path.to_string(), m.to_owned())) {
                assert!(
                    r.status != 404 && r.status != 405 && r.status != 401 && r.status < 500,
                    "{m} {path}: {} {}",
                    r.status,
                    r.text
                );
                conforms(&doc, path, m, &r);
            } else {
                assert_eq!(r.status, 405, "{m} {path} is not documented: {}", r.text);
                let routed = tokenauth::server::admin::ROUTES
                    .iter()
                    .find(|(p, _)| p == path)
                    .map(|(_, allow)| *allow);
                assert_eq!(r.header("allow"), routed, "{m} {path}: Allow");
            }
        }
    }
    assert!(!a.server.log().contains("panicked"));
}

#[test]
fn real_admin_answers_validate_against_the_schemas() {
    let doc = doc();
    let a = admin_server();
    let c = |m: &str, path: &str, template: &str, body: Option<Value>, status: u16| {
        let r = a.send(m, path, body);
        assert_eq!(r.status, status, "{m} {path}: {}", r.text);
        conforms(&doc, template, m, &r);
        r
    };
    let users = "/admin/v1/users";
    c(
        "post",
        users,
        users,
        Some(serde_json::json!({ "name": "carol" })),
        201,
    );
    c(
        "post",
        users,
        users,
        Some(serde_json::json!({ "name": "carol" })),
        409,
    );
    c(
        "post",
        users,
        users,
        Some(serde_json::json!({ "nom": "x" })),
        400,
    );
    let r = c("get", users, users, None, 200);
    assert_eq!(r.json.as_array().unwrap().len(), 2);
    c(
        "get",
        "/admin/v1/users/nobody",
        "/admin/v1/users/{name}",
        None,
        404,
    );
    let grant = "/admin/v1/users/{name}/grant";
    let permission = serde_json::json!({ "permission": "introspect" });
    c(
        "post",
        "/admin/v1/users/carol/grant",
        grant,
        Some(permission),
        200,
    );

    let keys = "/admin/v1/keys";
    let issue = serde_json::json!({
        "user": "carol", "title": "ci", "ip_range": "10.0.0.0/8",
        "origins": ["https://app.example"], "alg": "ES256", "expires": "30d",
    });
    let r = c("post", keys, keys, Some(issue), 201);
    let key_id = r.json["key"]["key_id"].as_str().unwrap().to_owned();
    let google = serde_json::json!({ "user": "dave", "format": "google" });
    let r = c("post", keys, keys, Some(google), 201);
    assert_eq!(r.json["user_created"], true);
    let r = c("get", "/admin/v1/keys?all=true&scope=read", keys, None, 200);
    assert_eq!(r.json.as_array().unwrap().len(), 2);
    c("get", "/admin/v1/keys?all=maybe", keys, None, 400);
    let edit = serde_json::json!({ "title": "renamed", "origins": null });
    let path = format!("/admin/v1/keys/{key_id}");
    c("patch", &path, "/admin/v1/keys/{id}", Some(edit), 200);
    let path = format!("/admin/v1/keys/{key_id}/revoke");
    c("post", &path, "/admin/v1/keys/{id}/revoke", None, 200);

    let tokens = "/admin/v1/tokens";
    let create = serde_json::json!({ "user": "carol", "description": "laptop" });
    let r = c("post", tokens, tokens, Some(create), 201);
    let token_id = r.json["id"].as_str().unwrap().to_owned();
    c("get", "/admin/v1/tokens?all=true", tokens, None, 200);
    let path = format!("/admin/v1/tokens/{token_id}/revoke");
    c("post", &path, "/admin/v1/tokens/{id}/revoke", None, 200);

    // Some use to show.
    let (_, key) = a.env.issue_key("svc", &[]);
    a.env
        .ok(&["get-token", "--key", key.to_str().unwrap(), "--no-cache"]);
    c(
        "get",
        "/admin/v1/audit?limit=5&action=key",
        "/admin/v1/audit",
        None,
        200,
    );
    c(
        "get",
        "/admin/v1/audit/verify",
        "/admin/v1/audit/verify",
        None,
        200,
    );
    let r = c("get", "/admin/v1/usage", "/admin/v1/usage", None, 200);
    assert!(!r.json.as_array().unwrap().is_empty(), "{}", r.text);
    let r = c(
        "get",
        "/admin/v1/usage/summary",
        "/admin/v1/usage/summary",
        None,
        200,
    );
    assert!(!r.json["keys"].as_array().unwrap().is_empty(), "{}", r.text);
    let r = c(
        "get",
        "/admin/v1/report?unused_for=0",
        "/admin/v1/report",
        None,
        200,
    );
    assert!(
        !r.json["write_without_ip_range"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Errors: 401 with its challenge, 403, 415; and 404 when the API is off.
    let r = send(http().get(a.server.url(users)));
    assert_eq!(r.status, 401);
    conforms(&doc, users, "get", &r);
    let read = a.env.json(&["token", "create", "--user", "ops", "--json"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = send(
        http()
            .post(a.server.url(users))
            .bearer_auth(&read)
            .json(&serde_json::json!({ "name": "x" })),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    conforms(&doc, users, "post", &r);
    let r = send(
        http()
            .post(a.server.url(users))
            .bearer_auth(&a.token)
            .body("name=x"),
    );
    assert_eq!(r.status, 415, "{}", r.text);
    conforms(&doc, users, "post", &r);
    let env = Env::new();
    let off = env.serve(&[]);
    let r = send(http().get(off.url(users)));
    assert_eq!(r.status, 404);
    conforms(&doc, users, "get", &r);
}

#[test]
fn real_answers_validate_against_the_schemas() {
    let doc = doc();
    let env = Env::new();
    env.ok(&["user", "add", "ci-bot"]);
    env.ok(&["user", "grant", "ci-bot", "introspect"]);
    let server = env.serve(&[]);
    let (_, key) = env.issue_key("ci-bot", &[]);
    let grant = env
        .ok(&["sign-grant", "--key", key.to_str().unwrap()])
        .trim()
        .to_owned();
    let form = |g: &str| {
        vec![
            ("grant_type", JWT_BEARER.to_owned()),
            ("assertion", g.to_owned()),
        ]
    };
    let r = send(http().post(server.url("/token")).form(&form(&grant)));
    conforms(&doc, "/token", "post", &r);
    let token = r.json["access_token"].as_str().unwrap().to_owned();
    let r = send(http().post(server.url("/token")).form(&form(&grant)));
    assert_eq!(r.status, 400);
    conforms(&doc, "/token", "post", &r);
    let r = send(http().post(server.url("/token")).body("x"));
    assert_eq!(r.status, 415);
    conforms(&doc, "/token", "post", &r);

    let r = send(http().get(server.url("/auth")).bearer_auth(&token));
    conforms(&doc, "/auth", "get", &r);
    let r = send(http().get(server.url("/auth")).bearer_auth("nope"));
    assert_eq!(r.status, 401);
    conforms(&doc, "/auth", "get", &r);
    let r = send(
        http()
            .get(server.url("/auth?scope=admin"))
            .bearer_auth(&token),
    );
    assert_eq!(r.status, 400);
    conforms(&doc, "/auth", "get", &r);

    for t in [token.as_str(), "garbage"] {
        let r = send(
            http()
                .post(server.url("/introspect"))
                .bearer_auth(&token)
                .form(&[("token", t)]),
        );
        assert_eq!(r.status, 200);
        conforms(&doc, "/introspect", "post", &r);
    }
    let r = send(http().post(server.url("/revoke")).form(&[("token", "x")]));
    conforms(&doc, "/revoke", "post", &r);
    for path in [
        "/.well-known/oauth-authorization-server",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        let r = send(http().get(server.url(path)));
        assert_eq!(r.status, 200, "{path}");
        conforms(&doc, path, "get", &r);
    }
    let r = send(http().get(server.url("/.well-known/oauth-authorization-server/other")));
    assert_eq!(r.status, 404);
    conforms(
        &doc,
        "/.well-known/oauth-authorization-server/{issuer_path}",
        "get",
        &r,
    );
}

// ---- schemathesis -----------------------------------------------------------------------------

/// A venv with schemathesis: $TOKENAUTH_SCHEMATHESIS_VENV when set, else one made (once)
/// under target/. None, with the reason, when it cannot be had.
fn schemathesis() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("TOKENAUTH_SCHEMATHESIS_VENV") {
        let bin = Path::new(&dir).join("bin/schemathesis");
        return bin
            .exists()
            .then_some(bin)
            .ok_or_else(|| "TOKENAUTH_SCHEMATHESIS_VENV has no bin/schemathesis".into());
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/schemathesis-venv");
    let bin = dir.join("bin/schemathesis");
    if bin.exists() {
        return Ok(bin);
    }
    let run = |cmd: &mut std::process::Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ))
        }
    };
    // Made beside its final place and renamed, so that a half-made venv is never reused.
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    run(std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&tmp))?;
    run(std::process::Command::new(tmp.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "schemathesis>=4,<5",
    ]))
    .inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&tmp);
    })?;
    // Another test process may have won the race: either copy is good.
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    // A venv's scripts name its own path: a renamed one runs through its python.
    bin.exists()
        .then_some(bin)
        .ok_or_else(|| "the venv has no bin/schemathesis".into())
}

/// Runs schemathesis on the server's document with this token and extra options; fails the
/// test on any server error or answer that breaks the document.
fn run_schemathesis(st: &Path, env: &Env, server: &Server, token: &str, extra: &[&str]) {
    // Run through the venv's python: a venv made under a temporary name and renamed has
    // scripts whose #! line names the old path.
    let python = st.parent().unwrap().join("python");
    let out = std::process::Command::new(python)
        .current_dir(env.path())
        .args(["-m", "schemathesis.cli", "run"])
        .arg(server.url("/openapi.json"))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
            "--header",
            &format!("Authorization: Bearer {token}"),
            "--no-color",
        ])
        .args(extra)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis {extra:?} failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
    assert!(!server.log().contains("panicked"));
}

fn schemathesis_or_skip() -> Option<PathBuf> {
    schemathesis()
        .inspect_err(|why| {
            eprintln!(
                "skipping schemathesis: {why} (install python3-venv and allow pip, or set TOKENAUTH_SCHEMATHESIS_VENV)"
            );
        })
        .ok()
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_breaking_the_document() {
    let Some(st) = schemathesis_or_skip() else {
        return;
    };
    let env = Env::new();
    env.ok(&["user", "add", "auditor"]);
    env.ok(&["user", "grant", "auditor", "introspect"]);
    let server: Server = env.serve(&[]);
    let (_, key) = env.issue_key("auditor", &[]);
    let token = env
        .ok(&["get-token", "--key", key.to_str().unwrap(), "--no-cache"])
        .trim()
        .to_owned();
    run_schemathesis(
        &st,
        &env,
        &server,
        &token,
        &[
            "--max-examples",
            "30",
            "--workers",
            "2",
            "--exclude-tag",
            "admin",
        ],
    );
}

/// Admin operations that can lock the caller out (revoke its token, take its permission,
/// disable its user, rotate its secret): each runs apart, with the caller restored first.
const LOCKING_OUT: [&str; 5] = [
    "/admin/v1/tokens/{id}",
    "/admin/v1/tokens/{id}/revoke",
    "/admin/v1/users/{name}/revoke",
    "/admin/v1/users/{name}/disable",
    "/admin/v1/rotate-secret",
];

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_breaking_the_admin_api() {
    let Some(st) = schemathesis_or_skip() else {
        return;
    };
    let a = admin_server();
    // Something for ids and names to hit.
    a.env.issue_key("carol", &[]);
    a.env.ok(&["token", "create", "--user", "carol"]);
    let caller = || {
        a.env.ok(&["user", "enable", "ops"]);
        a.env.ok(&["user", "grant", "ops", "admin"]);
        a.env.json(&[
            "token", "create", "--user", "ops", "--scope", "write", "--json",
        ])["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // One worker: Python 3.11's ast.parse, which hypothesis calls, is not thread-safe
    // ("SystemError: AST constructor recursion depth mismatch").
    let bounded = ["--max-examples", "10", "--workers", "1"];
    let mut rest = [bounded.as_slice(), &["--include-tag", "admin"]].concat();
    for path in LOCKING_OUT {
        rest.extend(["--exclude-path", path]);
    }
    run_schemathesis(&st, &a.env, &a.server, &a.token, &rest);
    // It got past the credential checks: it changed things, as the caller.
    let actions: Vec<String> = a
        .env
        .json(&["audit", "--json", "--limit", "10000"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["actor"].as_str().unwrap().starts_with("ops (token "))
        .map(|r| r["action"].as_str().unwrap().to_owned())
        .collect();
    for action in ["key.issue", "token.create"] {
        assert!(
            actions.iter().any(|a| a == action),
            "no {action} in {actions:?}"
        );
    }
    for path in LOCKING_OUT {
        let token = caller();
        run_schemathesis(
            &st,
            &a.env,
            &a.server,
            &token,
            &[bounded.as_slice(), &["--include-path", path]].concat(),
        );
    }
}
