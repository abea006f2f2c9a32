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

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "options"];

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

/// Checks a real answer against the document's schema for its operation and status.
fn conforms(doc: &Value, path: &str, method: &str, r: &Reply) {
    let status = r.status.to_string();
    let response = &doc["paths"][path][method]["responses"][&status];
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

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_breaking_the_document() {
    let st = match schemathesis() {
        Ok(bin) => bin,
        Err(why) => {
            eprintln!(
                "skipping schemathesis: {why} (install python3-venv and allow pip, or set TOKENAUTH_SCHEMATHESIS_VENV)"
            );
            return;
        }
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
    // Run through the venv's python: a venv made under a temporary name and renamed has
    // scripts whose #! line names the old path.
    let python = st.parent().unwrap().join("python");
    let out = std::process::Command::new(python)
        .current_dir(env.path())
        .args(["-m", "schemathesis.cli", "run"])
        .arg(server.url("/openapi.json"))
        .args([
            "--max-examples",
            "30",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
            "--header",
            &format!("Authorization: Bearer {token}"),
            "--workers",
            "2",
            "--no-color",
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
    assert!(!server.log().contains("panicked"));
}
