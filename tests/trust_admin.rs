//! Trust relationships (keyless CI) through the real binary: `trust add/list/show/edit/remove`
//! on a local store and over the remote admin API, every refusal naming what is wrong, the
//! audit rows they leave, and who may manage them.

mod common;

use std::path::{Path, PathBuf};

use common::{Env, Server, http, send};
use serde_json::{Value, json};

const GITHUB: &str = "https://token.actions.githubusercontent.com";
const AUDIENCE: &str = "https://auth.example.com";

/// `trust add NAME` for GitHub with `claims` and `extra`, as arguments.
fn add(name: &str, claims: &[&str], extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "trust",
        "add",
        name,
        "--issuer",
        GITHUB,
        "--audience",
        AUDIENCE,
    ]
    .map(str::to_owned)
    .to_vec();
    for c in claims {
        args.extend(["--claim".to_owned(), (*c).to_owned()]);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The issue's example trust, for deploy-bot.
fn gh_deploy(extra: &[&str]) -> Vec<String> {
    let mut more = vec!["--user", "deploy-bot", "--scope", "write"];
    more.extend_from_slice(extra);
    add(
        "gh-deploy",
        &["repository=acme/app", "ref=refs/heads/main"],
        &more,
    )
}

/// A JWKS file holding one ES256 public key, made by `keygen`.
fn jwks_file(env: &Env) -> PathBuf {
    let key = env.path().join("issuer.key");
    let made = env.json(&["keygen", "--out", key.to_str().unwrap(), "--json"]);
    let path = env.path().join("issuer-jwks.json");
    std::fs::write(&path, json!({ "keys": [made["jwk"]] }).to_string()).unwrap();
    path
}

/// The audit rows of trusts, oldest first: (action, target, actor).
fn trust_audit(env: &Env) -> Vec<(String, String, String)> {
    let rows = env.json(&["audit", "--json", "--action", "trust", "--limit", "1000"]);
    let mut out: Vec<_> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (s("action"), s("target"), s("actor"))
        })
        .collect();
    out.reverse();
    out
}

/// A field's value in `trust show NAME`'s table.
fn shown(env: &Env, name: &str, field: &str) -> String {
    let table = env.ok(&["trust", "show", name]);
    table
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(field).filter(|v| v.starts_with("  ")))
        .unwrap_or_else(|| panic!("no {field} in {table}"))
        .trim()
        .to_owned()
}

/// Checks a JSON answer against a schema of docs/openapi.json.
fn conforms(schema: &str, v: &Value) {
    let doc: Value = serde_json::from_str(include_str!("../docs/openapi.json")).unwrap();
    let mut s = json!({ "$ref": format!("#/components/schemas/{schema}") });
    s["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&s).unwrap();
    let errors: Vec<String> = validator.iter_errors(v).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{schema}: {errors:?} in {v}");
}

common::on_both_backends! {
fn trusts_are_added_listed_shown_edited_and_removed_with_audit_rows() {
    let env = Env::new();
    env.ok(&["user", "add", "deploy-bot"]);
    env.ok(&["user", "add", "alice"]);
    let added = env.json(&strs(&gh_deploy(&[
        "--ip-range",
        "10.0.0.0/8",
        "--origin",
        "https://app.example.com",
        "--expires",
        "30d",
        "--max-age",
        "10m",
        "--json",
    ])));
    conforms("AdminTrust", &added);
    let id = added["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("trust-"), "{id}");
    assert_eq!(added["issuer"], GITHUB);
    assert_eq!(
        added["claims"],
        json!({ "repository": "acme/app", "ref": "refs/heads/main" })
    );
    assert_eq!(added["users"], json!(["deploy-bot"]));
    assert_eq!(
        (&added["scope"], &added["max_age"], &added["state"]),
        (&json!("write"), &json!(600), &json!("active"))
    );
    assert_eq!(added["ip_ranges"], json!(["10.0.0.0/8"]));
    assert!(added["expires"].is_i64() && added["warnings"] == json!([]));

    let list = env.ok(&["trust", "list"]);
    let header = list.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>().join(" "),
        "NAME ISSUER BOUND CLAIMS USER(S) SCOPE STATE LAST USED"
    );
    for cell in [
        "gh-deploy",
        GITHUB,
        "ref=refs/heads/main, repository=acme/app",
        "deploy-bot",
        "write",
        "active",
    ] {
        assert!(list.contains(cell), "{cell}: {list}");
    }
    let one = env.json(&["trust", "show", "gh-deploy", "--json"]);
    assert_eq!(env.json(&["trust", "list", "--json"]), json!([one.clone()]));
    assert_eq!(one, added);
    for (field, value) in [
        ("ID", id.as_str()),
        ("BOUND CLAIMS", "ref=refs/heads/main, repository=acme/app"),
        ("USER CLAIM", "-"),
        ("IP RANGES", "10.0.0.0/8"),
        ("JWKS", "discovery"),
        ("MAX AGE", "10m"),
        ("WARNINGS", "-"),
    ] {
        assert_eq!(shown(&env, "gh-deploy", field), value, "{field}");
    }

    // Claims added, replaced and removed; users from a claim; limits cleared.
    let edited = env.json(&[
        "trust", "edit", "gh-deploy", "--claim", "environment=prod", "--claim",
        "ref=refs/tags/v*", "--remove-claim", "repository", "--user-claim", "actor", "--user",
        "alice", "--user", "deploy-bot", "--no-ip-range", "--no-origin", "--no-expiry",
        "--max-age", "1h", "--json",
    ]);
    conforms("AdminTrust", &edited);
    assert_eq!(
        edited["claims"],
        json!({ "environment": "prod", "ref": "refs/tags/v*" })
    );
    assert_eq!(
        (&edited["user_claim"], &edited["users"]),
        (&json!("actor"), &json!(["alice", "deploy-bot"]))
    );
    assert_eq!(
        (&edited["ip_ranges"], &edited["origins"], &edited["expires"], &edited["max_age"]),
        (&json!([]), &json!([]), &Value::Null, &json!(3600))
    );
    assert_eq!(edited["id"], id.as_str());
    assert!(env.ok(&["trust", "list"]).contains("alice, deploy-bot (from actor)"));

    // The three key sources; the JWKS document itself is never shown.
    let jwks = jwks_file(&env);
    let inline = env.json(&[
        "trust", "edit", "gh-deploy", "--jwks-file", jwks.to_str().unwrap(), "--json",
    ]);
    assert_eq!((&inline["jwks_keys"], inline.get("jwks")), (&json!(1), None));
    assert_eq!(shown(&env, "gh-deploy", "JWKS"), "inline (1 key)");
    let uri = "https://token.actions.githubusercontent.com/.well-known/jwks";
    let fetched = env.json(&["trust", "edit", "gh-deploy", "--jwks-uri", uri, "--json"]);
    assert_eq!((&fetched["jwks_uri"], &fetched["jwks_keys"]), (&json!(uri), &Value::Null));
    assert_eq!(shown(&env, "gh-deploy", "JWKS"), uri);
    let discovered = env.json(&["trust", "edit", "gh-deploy", "--discover", "--json"]);
    assert_eq!(discovered["jwks_uri"], Value::Null);
    assert_eq!(shown(&env, "gh-deploy", "JWKS"), "discovery");

    // Removal asks first; without a terminal to ask on it needs --yes.
    let err = env.fails(&["trust", "remove", "gh-deploy"]);
    assert!(err.contains("pass --yes"), "{err}");
    env.ok(&["trust", "remove", "gh-deploy", "--yes"]);
    let err = env.fails(&["trust", "show", "gh-deploy"]);
    assert!(err.contains("no trust relationship named 'gh-deploy'"), "{err}");
    assert_eq!(env.ok(&["trust", "list"]).lines().count(), 1);
    // The name again is a new trust: the old one's tokens stay dead.
    let again = env.json(&strs(&gh_deploy(&["--json"])));
    assert_ne!(again["id"], id.as_str());

    let actions: Vec<String> = trust_audit(&env)
        .into_iter()
        .map(|(action, target, _)| {
            assert_eq!(target, "gh-deploy");
            action
        })
        .collect();
    assert_eq!(
        actions,
        [
            "trust.add",
            "trust.edit",
            "trust.edit",
            "trust.edit",
            "trust.edit",
            "trust.remove",
            "trust.add"
        ]
    );
    // The JWKS document stays out of the audit trail too.
    let rows = env.ok(&["audit", "--json", "--action", "trust", "--limit", "1000"]);
    assert!(!rows.contains("\"kty\""), "{rows}");
}
}

#[test]
fn every_refusal_names_the_bad_value_and_changes_nothing() {
    let env = Env::new();
    env.ok(&["user", "add", "deploy-bot"]);
    env.ok(&["user", "add", "alice"]);
    env.ok(&strs(&gh_deploy(&[])));
    let empty = env.path().join("empty-jwks.json");
    std::fs::write(&empty, r#"{"keys": []}"#).unwrap();
    let junk = env.path().join("junk-jwks.json");
    std::fs::write(&junk, "not json").unwrap();
    let before = env.ok(&["audit", "--json", "--limit", "1000"]);
    let user = ["--user", "deploy-bot"];
    let repo = "repository=acme/app";
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            add("t", &[], &user),
            "a trust needs at least one bound claim besides iss and aud".into(),
        ),
        (
            add("t", &["repository=*", "ref=**"], &user),
            "--claim ref=** --claim repository=* binds nothing".into(),
        ),
        (
            add("t", &["iss=https://evil.example", repo], &user),
            "'iss' cannot be a bound claim".into(),
        ),
        (
            add("t", &["aud=x", repo], &user),
            "'aud' cannot be a bound claim".into(),
        ),
        (
            add("t", &["repository"], &user),
            "--claim 'repository' has no '='; write NAME=VALUE".into(),
        ),
        (
            add("t", &["ref=refs/heads/main", "ref=refs/heads/dev"], &user),
            "--claim ref is given twice ('ref=refs/heads/main' and 'ref=refs/heads/dev')".into(),
        ),
        (
            add("t", &[repo], &["--user", "ghost"]),
            "no user named 'ghost'".into(),
        ),
        (
            add("t", &[repo], &["--user", "deploy-bot", "--user", "alice"]),
            "2 users (deploy-bot, alice) without --user-claim".into(),
        ),
        (add("t", &[repo], &[]), "a trust needs --user USER".into()),
        (
            add("t", &[repo], &["--user-claim", "actor"]),
            "--user-claim actor needs the users it may name".into(),
        ),
        (
            add("gh-deploy", &[repo], &user),
            "a trust relationship named 'gh-deploy' already exists".into(),
        ),
        (add("a b", &[repo], &user), "invalid trust name 'a b'".into()),
        (
            add("t", &[repo], &["--user", "deploy-bot", "--max-age", "2d"]),
            "--max-age 2d is outside 1s to 24h".into(),
        ),
        (
            add("t", &[repo], &["--user", "deploy-bot", "--jwks-uri", "http://keys.example/jwks"]),
            "--jwks-uri: 'http://keys.example/jwks' is not an https URL".into(),
        ),
        (
            add(
                "t",
                &[repo],
                &["--user", "deploy-bot", "--jwks-file", empty.to_str().unwrap()],
            ),
            format!(
                "--jwks-file {}: the JWKS has no usable signing key",
                empty.display()
            ),
        ),
        (
            add(
                "t",
                &[repo],
                &["--user", "deploy-bot", "--jwks-file", junk.to_str().unwrap()],
            ),
            format!("--jwks-file {}: the JWKS is not JSON", junk.display()),
        ),
        (
            add("t", &[repo], &["--user", "deploy-bot", "--jwks-file", "missing.json"]),
            "cannot read the JWKS file missing.json".into(),
        ),
        (
            ["trust", "edit", "gh-deploy", "--issuer", "https://gitlab.com"]
                .map(str::to_owned)
                .to_vec(),
            format!(
                "--issuer https://gitlab.com: the issuer of trust 'gh-deploy' ({GITHUB}) cannot be changed; remove the trust"
            ),
        ),
        (
            ["trust", "edit", "gh-deploy", "--remove-claim", "repository", "--remove-claim", "ref"]
                .map(str::to_owned)
                .to_vec(),
            "--remove-claim repository --remove-claim ref leaves no bound claim".into(),
        ),
        (
            ["trust", "edit", "gh-deploy", "--remove-claim", "branch"]
                .map(str::to_owned)
                .to_vec(),
            "--remove-claim branch: trust 'gh-deploy' binds no such claim; it binds ref, repository"
                .into(),
        ),
        (
            ["trust", "edit", "gh-deploy", "--claim", "jti=x"]
                .map(str::to_owned)
                .to_vec(),
            "'jti' cannot be a bound claim".into(),
        ),
        (
            ["trust", "edit", "gh-deploy", "--user", "deploy-bot", "--user", "alice"]
                .map(str::to_owned)
                .to_vec(),
            "2 users (deploy-bot, alice) without --user-claim".into(),
        ),
        (
            ["trust", "edit", "gh-deploy"].map(str::to_owned).to_vec(),
            "nothing to change; pass --audience".into(),
        ),
        (
            ["trust", "edit", "nope", "--scope", "read"]
                .map(str::to_owned)
                .to_vec(),
            "no trust relationship named 'nope'".into(),
        ),
        (
            ["trust", "remove", "nope", "--yes"].map(str::to_owned).to_vec(),
            "no trust relationship named 'nope'".into(),
        ),
    ];
    for (args, want) in &cases {
        let err = env.fails(&strs(args));
        assert!(err.contains(want.as_str()), "{args:?}: {err}");
    }
    // An issuer must be https, except on a loopback host (a test issuer).
    let err = env.fails(&[
        "trust",
        "add",
        "t",
        "--issuer",
        "http://ci.example.com",
        "--audience",
        AUDIENCE,
        "--claim",
        repo,
        "--user",
        "deploy-bot",
    ]);
    assert!(
        err.contains("--issuer: 'http://ci.example.com' is not an https URL"),
        "{err}"
    );
    let err = env.fails(&[
        "trust",
        "add",
        "t",
        "--issuer",
        "https://ci.example.com/\n",
        "--audience",
        AUDIENCE,
        "--claim",
        repo,
        "--user",
        "deploy-bot",
    ]);
    assert!(err.contains("holds spaces or control characters"), "{err}");
    assert_eq!(env.ok(&["audit", "--json", "--limit", "1000"]), before);
    env.ok(&[
        "trust",
        "add",
        "local-ci",
        "--issuer",
        "http://127.0.0.1:8099",
        "--audience",
        AUDIENCE,
        "--claim",
        repo,
        "--user",
        "deploy-bot",
    ]);
}

#[test]
fn binding_only_the_organisation_is_added_with_a_warning() {
    let env = Env::new();
    env.ok(&["user", "add", "deploy-bot"]);
    let out = env
        .cmd()
        .args(strs(&add(
            "acme-wide",
            &["repository_owner=acme"],
            &["--user", "deploy-bot"],
        )))
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tokenauth: warning: this trust binds only repository_owner=acme"),
        "{err}"
    );
    let one = env.json(&["trust", "show", "acme-wide", "--json"]);
    assert!(
        one["warnings"][0]
            .as_str()
            .unwrap()
            .contains("whole organisation"),
        "{one}"
    );
    assert!(shown(&env, "acme-wide", "WARNINGS").starts_with("this trust binds only"));
    // Bound to a repository as well: no warning.
    let out = env
        .cmd()
        .args(strs(&add(
            "acme-app",
            &["repository_owner=acme", "repository=acme/app"],
            &["--user", "deploy-bot"],
        )))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
}

#[test]
fn a_user_a_trust_names_cannot_be_removed() {
    let env = Env::new();
    env.ok(&["user", "add", "deploy-bot"]);
    env.ok(&["user", "add", "alice"]);
    env.ok(&strs(&gh_deploy(&[])));
    let err = env.fails(&["user", "remove", "deploy-bot", "--yes"]);
    assert!(
        err.contains("user 'deploy-bot' is named by trust relationship(s) gh-deploy"),
        "{err}"
    );
    env.ok(&["trust", "edit", "gh-deploy", "--user", "alice"]);
    env.ok(&["user", "remove", "deploy-bot", "--yes"]);
}

/// A server with the admin API and these callers: `ops` (admin, write scope), `self`
/// (manage-own-keys) and `nobody` (no permission).
struct Remote {
    env: Env,
    server: Server,
    ops: (String, PathBuf),
    own: PathBuf,
    nobody: PathBuf,
}

impl Remote {
    fn new() -> Remote {
        let env = Env::new();
        let server = env.serve(&["--admin-api"]);
        let ops = env.issue_key("ops", &["--scope", "write"]);
        env.ok(&["user", "grant", "ops", "admin"]);
        let own = env.issue_key("self", &["--scope", "write"]).1;
        env.ok(&["user", "grant", "self", "manage-own-keys"]);
        let nobody = env.issue_key("nobody", &["--scope", "write"]).1;
        env.ok(&["user", "add", "deploy-bot"]);
        Remote {
            env,
            server,
            ops,
            own,
            nobody,
        }
    }

    /// `tokenauth --server URL --key KEY args…`: (exit code, stdout, stderr).
    fn run(&self, key: &Path, args: &[&str]) -> (i32, String, String) {
        let out = self
            .env
            .cmd()
            .args([
                "--server",
                &self.server.url(""),
                "--key",
                key.to_str().unwrap(),
            ])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn json(&self, args: &[&str]) -> Value {
        let (code, out, err) = self.run(&self.ops.1, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        self.env.wait_for_servers();
        serde_json::from_str(&out).unwrap()
    }

    fn refused(&self, key: &Path, args: &[&str]) -> String {
        let (code, _, err) = self.run(key, args);
        assert_eq!(code, 1, "{args:?} should fail: {err}");
        err
    }

    fn token(&self, key: &Path) -> String {
        self.env
            .ok(&["get-token", "--key", key.to_str().unwrap()])
            .trim()
            .to_owned()
    }
}

common::on_both_backends! {
fn the_remote_admin_api_manages_trusts_for_admins_only_with_the_same_words() {
    let r = Remote::new();
    let actor = format!("ops (key {})", r.ops.0);
    let jwks = jwks_file(&r.env);
    let added = r.json(&strs(&gh_deploy(&["--jwks-file", jwks.to_str().unwrap(), "--json"])));
    conforms("AdminTrust", &added);
    assert_eq!(added["jwks_keys"], 1);
    assert_eq!(added, r.env.json(&["trust", "show", "gh-deploy", "--json"]));
    assert_eq!(r.json(&["trust", "list", "--json"]), r.env.json(&["trust", "list", "--json"]));
    let (code, table, _) = r.run(&r.ops.1, &["trust", "show", "gh-deploy"]);
    assert_eq!((code, table), (0, r.env.ok(&["trust", "show", "gh-deploy"])));
    let edited = r.json(&["trust", "edit", "gh-deploy", "--claim", "environment=prod", "--json"]);
    assert_eq!(edited["claims"]["environment"], "prod");
    assert_eq!(
        trust_audit(&r.env),
        [
            ("trust.add".to_owned(), "gh-deploy".to_owned(), actor.clone()),
            ("trust.edit".to_owned(), "gh-deploy".to_owned(), actor.clone()),
        ]
    );

    // Refusals read the same as on the store itself.
    let empty = r.env.path().join("empty-jwks.json");
    std::fs::write(&empty, r#"{"keys": []}"#).unwrap();
    for args in [
        add("t", &["repository=*"], &["--user", "deploy-bot"]),
        add("t", &["iss=x", "repository=acme/app"], &["--user", "deploy-bot"]),
        add("t", &["repository=acme/app"], &["--user", "ghost"]),
        add("t", &["repository=acme/app"], &["--user", "deploy-bot", "--user", "ops"]),
        add("gh-deploy", &["repository=acme/app"], &["--user", "deploy-bot"]),
        add(
            "t",
            &["repository=acme/app"],
            &["--user", "deploy-bot", "--jwks-file", empty.to_str().unwrap()],
        ),
        ["trust", "edit", "gh-deploy", "--issuer", "https://gitlab.com"]
            .map(str::to_owned)
            .to_vec(),
        ["trust", "show", "nope"].map(str::to_owned).to_vec(),
    ] {
        let args = strs(&args);
        assert_eq!(r.refused(&r.ops.1, &args), r.env.fails(&args), "{args:?}");
    }

    // Trusts are for admins: manage-own-keys does not cover them, nor does no permission.
    for key in [&r.own, &r.nobody] {
        for args in [
            vec!["trust", "list"],
            vec!["trust", "show", "gh-deploy"],
            vec!["trust", "edit", "gh-deploy", "--scope", "read"],
            vec!["trust", "remove", "gh-deploy", "--yes"],
        ] {
            let err = r.refused(key, &args);
            assert!(err.contains("lacks the admin permission"), "{args:?}: {err}");
        }
        let err = r.refused(key, &strs(&add("t", &["repository=acme/app"], &["--user", "self"])));
        assert!(err.contains("lacks the admin permission"), "{err}");
    }
    let own = r.token(&r.own);
    for (method, path) in [
        (reqwest::Method::GET, "/admin/v1/trusts"),
        (reqwest::Method::GET, "/admin/v1/trusts/gh-deploy"),
        (reqwest::Method::DELETE, "/admin/v1/trusts/gh-deploy"),
    ] {
        let reply = send(http().request(method.clone(), r.server.url(path)).bearer_auth(&own));
        assert_eq!(
            (reply.status, reply.json["error"].as_str()),
            (403, Some("access_denied")),
            "{method} {path}"
        );
        conforms("Error", &reply.json);
    }

    // By hand: unknown trusts are 404, bad bodies 400, and the answers fit the document.
    let ops = r.token(&r.ops.1);
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut req = http().request(method, r.server.url(path)).bearer_auth(&ops);
        if let Some(b) = body {
            req = req.json(&b);
        }
        send(req)
    };
    use reqwest::Method;
    for (method, path, body, status) in [
        (Method::GET, "/admin/v1/trusts/nope", None, 404),
        (Method::PATCH, "/admin/v1/trusts/nope", Some(json!({ "scope": "read" })), 404),
        (Method::DELETE, "/admin/v1/trusts/nope", None, 404),
        (Method::GET, "/admin/v1/trusts?name=x", None, 400),
        (Method::POST, "/admin/v1/trusts", Some(json!({ "name": "t" })), 400),
        (
            Method::POST,
            "/admin/v1/trusts",
            Some(json!({
                "name": "t", "issuer": GITHUB, "audience": AUDIENCE,
                "claims": ["repository=acme/app"], "users": ["deploy-bot"], "extra": 1,
            })),
            400,
        ),
        (Method::PATCH, "/admin/v1/trusts/gh-deploy", Some(json!({ "issuer": GITHUB })), 400),
        (Method::PUT, "/admin/v1/trusts/gh-deploy", None, 405),
    ] {
        let reply = call(method.clone(), path, body.clone());
        assert_eq!(reply.status, status, "{method} {path} {body:?}: {}", reply.text);
        conforms("Error", &reply.json);
    }
    let reply = call(Method::GET, "/admin/v1/trusts/nope", None);
    assert_eq!(reply.json["error"], "not_found");
    assert!(
        reply.json["error_description"]
            .as_str()
            .unwrap()
            .contains("no trust relationship named 'nope'")
    );
    let reply = call(Method::PUT, "/admin/v1/trusts", None);
    assert_eq!(reply.header("allow"), Some("GET, HEAD, POST"));
    let created = call(
        Method::POST,
        "/admin/v1/trusts",
        Some(json!({
            "name": "gl-build", "issuer": "https://gitlab.com", "audience": AUDIENCE,
            "claims": ["project_path=acme/app", "ref_protected=true"], "users": ["deploy-bot"],
        })),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    conforms("AdminTrust", &created.json);
    let listed = call(Method::GET, "/admin/v1/trusts", None);
    assert_eq!(listed.json.as_array().unwrap().len(), 2);
    for t in listed.json.as_array().unwrap() {
        conforms("AdminTrust", t);
    }
    let patched = call(
        Method::PATCH,
        "/admin/v1/trusts/gl-build",
        Some(json!({ "max_age": "5m", "expires": "90d" })),
    );
    assert_eq!(patched.status, 200, "{}", patched.text);
    conforms("AdminTrust", &patched.json);
    let removed = call(Method::DELETE, "/admin/v1/trusts/gl-build", None);
    assert_eq!((removed.status, &removed.json["name"]), (200, &json!("gl-build")));
    conforms("AdminTrust", &removed.json);

    // The CLI removes it too, audited as the caller.
    let (code, _, err) = r.run(&r.ops.1, &["trust", "remove", "gh-deploy", "--yes"]);
    assert_eq!(code, 0, "{err}");
    r.env.wait_for_servers();
    let last = trust_audit(&r.env).pop().unwrap();
    assert_eq!(last, ("trust.remove".to_owned(), "gh-deploy".to_owned(), actor));
    assert!(r.env.json(&["trust", "list", "--json"]) == json!([]));
    assert!(!r.server.log().contains("panicked"));
}
}
