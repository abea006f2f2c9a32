//! Third-party OAuth clients, unchanged, against a real `serve`: the snippets in docs/clients.md for
//! google-auth, Authlib (`AssertionSession` and its RFC 8414 validator), Node's `jose` and
//! Go's `golang.org/x/oauth2/jwt`, run exactly as printed there.
//!
//! Python: `TOKENAUTH_TEST_PYTHON` names a Python with google-auth, Authlib and requests
//! (`.ci/run` makes a throwaway venv), else `python3` when it has them. Node:
//! `TOKENAUTH_TEST_NODE_MODULES` names a directory holding `node_modules/jose`. Go: `go` with
//! Debian's `golang-golang-x-oauth2-dev`. Without one of them its tests say so and pass.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::docs::blocks_of;
use common::{Env, Server};

const SECTION: &str = "## Using tokenauth from Python, Node and Go clients";

/// The section's one `lang` block containing `marker`.
fn snippet(lang: &str, marker: &str) -> String {
    let mut found: Vec<String> = blocks_of("docs/clients.md", SECTION, lang)
        .into_iter()
        .filter(|b| b.contains(marker))
        .collect();
    assert_eq!(found.len(), 1, "one {lang} snippet with {marker:?}");
    found.remove(0)
}

/// Runs `cmd` (bounded by `timeout`) and returns its stdout; panics with both streams when it
/// fails.
fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

fn bounded(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.arg("120").arg(program);
    cmd
}

/// A Python that has google-auth, Authlib and requests, or a printed notice why not.
fn python() -> Option<PathBuf> {
    let python = std::env::var_os("TOKENAUTH_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| "python3".into());
    let has = Command::new(&python)
        .args(["-c", "import google.auth, authlib, requests"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        eprintln!(
            "skipping: {} lacks google-auth, Authlib or requests; set TOKENAUTH_TEST_PYTHON to \
             a Python that has them (.ci/run makes a venv: pip install google-auth authlib \
             requests)",
            python.display()
        );
        return None;
    }
    Some(python)
}

fn run_python(python: &Path, code: &str, vars: &[(&str, &str)], what: &str) -> String {
    let mut cmd = bounded(python);
    cmd.args(["-c", code]).envs(vars.iter().copied());
    run(cmd, what)
}

/// As `run_python`, and the snippet must not write to stderr either: no warnings.
fn run_python_quietly(python: &Path, code: &str, vars: &[(&str, &str)], what: &str) -> String {
    let out = bounded(python)
        .args(["-c", code])
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "{what} failed or warned ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// The snippet's output for a call to `/auth`: the status, then `/auth`'s JSON answer,
/// which is returned.
fn assert_authorised(out: &str, user: &str, what: &str) -> serde_json::Value {
    let (status, body) = out.trim().split_once(' ').unwrap_or((out, ""));
    assert_eq!(status, "200", "{what}: {out}");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["user"], user, "{what}: {out}");
    body
}

#[test]
fn google_auth_loads_a_google_format_key_file_and_calls_the_api_unchanged() {
    let Some(python) = python() else { return };
    let env = Env::new();
    let server = env.serve(&[]);
    let (key_id, key) = env.issue_key("etl", &["--format", "google"]);
    let code = snippet("python", "service_account.Credentials");
    let auth = server.url("/auth");
    let vars = [("KEY_FILE", key.to_str().unwrap()), ("API_URL", &auth)];
    let out = run_python(&python, &code, &vars, "the google-auth snippet");
    let body = assert_authorised(&out, "etl", "google-auth");
    assert_eq!(body["key_id"], key_id.as_str());
    assert_eq!(body["scope"], "read");

    // Google's way of signing reached the server as it is: no jti, no sub, its audience.
    let log = env.json(&["usage-log", "--json"]);
    let row = &log.as_array().unwrap()[0];
    assert_eq!(row["key_id"], key_id.as_str(), "{log}");
    assert_eq!(row["ok"], true, "{log}");
    assert_eq!(row["no_jti"], true, "{log}");

    // A scope the key does not have is refused by the server, and google-auth says so.
    let write = code.replace(r#"scopes=["read"]"#, r#"scopes=["write"]"#);
    assert_ne!(write, code);
    let mut cmd = bounded(&python);
    cmd.args(["-c", &write]).envs(vars);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("invalid_scope"), "{stderr}");
}

#[test]
fn authlib_assertion_session_works_with_a_key_of_each_algorithm() {
    let Some(python) = python() else { return };
    let env = Env::new();
    let server = env.serve(&[]);
    let code = snippet("python", "AssertionSession(");
    let auth = server.url("/auth");
    for alg in ["RS256", "ES256", "EdDSA"] {
        let user = format!("bot-{}", alg.to_lowercase());
        let (_, key) = env.issue_key(&user, &["--alg", alg]);
        let vars = [("KEY_FILE", key.to_str().unwrap()), ("API_URL", &auth)];
        let out = run_python_quietly(
            &python,
            &code,
            &vars,
            &format!("the Authlib snippet, {alg}"),
        );
        assert_authorised(&out, &user, alg);
    }
}

fn validate_metadata(python: &Path, server: &Server, path: &str) -> String {
    let code = snippet("python", "AuthorizationServerMetadata(");
    let url = server.url(path);
    let vars = [("METADATA_URL", url.as_str())];
    run_python_quietly(
        python,
        &code,
        &vars,
        &format!("Authlib's validator on {path}"),
    )
}

#[test]
fn authlibs_metadata_validator_accepts_the_document_also_under_a_path_prefix() {
    let Some(python) = python() else { return };
    let env = Env::new();
    let server = env.serve(&[]);
    let out = validate_metadata(&python, &server, "/.well-known/oauth-authorization-server");
    assert_eq!(
        out.trim(),
        format!("valid metadata for http://{}", server.addr)
    );

    // The token endpoint under a prefix: the document at the path-aware location.
    env.ok(&[
        "init",
        "--token-uri",
        &format!("http://{}/auth/token", server.addr),
        "--service-documentation",
        "https://docs.example.com/tokenauth",
    ]);
    let out = validate_metadata(
        &python,
        &server,
        "/.well-known/oauth-authorization-server/auth",
    );
    assert_eq!(
        out.trim(),
        format!("valid metadata for http://{}/auth", server.addr)
    );

    // Plain http passes only on loopback, as the docs say: an issuer elsewhere fails.
    env.ok(&["init", "--issuer", "http://auth.example.com"]);
    let code = snippet("python", "AuthorizationServerMetadata(");
    let url = server.url("/.well-known/oauth-authorization-server");
    let out = bounded(&python)
        .args(["-c", &code])
        .env("METADATA_URL", &url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("MUST use \"https\" scheme"),
        "{stderr}"
    );
}

#[test]
fn node_jose_signs_grants_with_pkcs8_keys_of_each_algorithm() {
    let Some(modules) = std::env::var_os("TOKENAUTH_TEST_NODE_MODULES")
        .map(PathBuf::from)
        .filter(|d| d.join("node_modules/jose").is_dir())
    else {
        eprintln!(
            "skipping: TOKENAUTH_TEST_NODE_MODULES does not name a directory with \
             node_modules/jose (.ci/run makes one: npm install --prefix DIR jose)"
        );
        return;
    };
    let env = Env::new();
    let server = env.serve(&[]);
    // Saved under the name its first line gives, in a folder below node_modules' (where
    // `import` finds jose), and run as that line says.
    let code = snippet("js", "importPKCS8");
    let name = code
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("// "))
        .and_then(|l| l.split_once(':'))
        .map(|(name, _)| name.to_owned())
        .expect("the snippet's first line names its file");
    assert!(
        code.lines()
            .next()
            .unwrap()
            .ends_with(&format!("node {name}"))
    );
    let folder = modules.join(format!("tokenauth-snippet-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join(&name), &code).unwrap();
    let auth = server.url("/auth");
    for (alg, extra) in [
        ("RS256", &["--pkcs8"][..]),
        ("ES256", &[][..]),
        ("EdDSA", &[][..]),
    ] {
        let user = format!("node-{}", alg.to_lowercase());
        let mut args = vec!["--alg", alg];
        args.extend_from_slice(extra);
        let (_, key) = env.issue_key(&user, &args);
        let mut cmd = bounded("node");
        cmd.arg(&name)
            .current_dir(&folder)
            .env("KEY_FILE", &key)
            .env("API_URL", &auth);
        let out = run(cmd, &format!("the jose snippet, {alg}"));
        assert_authorised(&out, &user, alg);
    }
    let _ = std::fs::remove_dir_all(&folder);
}

#[test]
fn go_oauth2_jwt_config_gets_a_token_with_an_rs256_key() {
    const GOPATH: &str = "/usr/share/gocode";
    let has_go = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_go
        || !Path::new(GOPATH)
            .join("src/golang.org/x/oauth2/jwt")
            .is_dir()
    {
        eprintln!(
            "skipping: needs `go` and golang.org/x/oauth2 in {GOPATH} (Debian's golang-go and \
             golang-golang-x-oauth2-dev)"
        );
        return;
    }
    let env = Env::new();
    let server = env.serve(&[]);
    let (_, key) = env.issue_key("go-bot", &[]);
    let dir = env.path().join("go");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("main.go"), snippet("go", "oauth2/jwt")).unwrap();
    let mut cmd = bounded("go");
    // GOPATH mode: the packages come from Debian's tree, nothing from the network.
    cmd.args(["run", "main.go"])
        .current_dir(&dir)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOCACHE", dir.join("cache"))
        .env("GOFLAGS", "")
        .env("KEY_FILE", &key)
        .env("API_URL", server.url("/auth"));
    let out = run(cmd, "the Go snippet");
    assert_authorised(&out, "go-bot", "x/oauth2/jwt");
}
