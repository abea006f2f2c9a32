//! The client plane, end to end: `get-token` (formats, the on-disk cache, expiry, locking,
//! corrupt entries, errors) and `request` (output, status, one retry after `invalid_token`)
//! against a real `tokenauth serve`.

mod common;

use common::now;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::{Env, free_port, http, mode, send};

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

const BIN: &str = env!("CARGO_BIN_EXE_tokenauth");

/// Runs the binary with extra environment variables; returns the whole output.
fn run(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut c = env.cmd();
    c.args(args);
    for (k, v) in vars {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Asserts exit code 1 with exactly one `tokenauth: error:` line on stderr; returns it.
fn one_error(out: &Output) -> String {
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "should exit 1: {err}\n{}",
        text(&out.stdout)
    );
    assert!(err.starts_with("tokenauth: error: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    err.trim_end().to_owned()
}

/// Asserts a bare JWT: three non-empty base64url parts, nothing else.
fn assert_jwt(token: &str) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token:?}");
    for p in parts {
        assert!(
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "not a JWT: {token:?}"
        );
    }
}

/// `get-token --key KEY` (plus `extra`) with extra environment variables: the bare token.
fn get_token(env: &Env, key: &Path, extra: &[&str], vars: &[(&str, &str)]) -> String {
    let mut args = vec!["get-token", "--key", arg(key)];
    args.extend_from_slice(extra);
    let out = env.ok_with_env(&args, vars);
    let token = out
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("no final newline: {out:?}"));
    assert_jwt(token);
    token.to_owned()
}

/// How many tokens the server issued (successful usage-log rows).
fn issuances(env: &Env) -> usize {
    let rows = env.json(&["usage-log", "--json", "--limit", "1000"]);
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ok"] == true)
        .count()
}

fn cache_dir(env: &Env) -> PathBuf {
    env.path().join("cache").join("tokenauth")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// The cache's token files (everything but lock files).
fn cache_entries(env: &Env) -> Vec<PathBuf> {
    files_in(&cache_dir(env))
        .into_iter()
        .filter(|p| p.extension().is_none_or(|e| e != "lock"))
        .collect()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

// ---- get-token: formats and key sources -----------------------------------------------------

#[test]
fn get_token_prints_every_format() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let (_, key) = env.issue_key("ci-bot", &[]);
    let k = arg(&key);

    // token: the bare JWT on one line, a real access token.
    let token = get_token(&env, &key, &[], &[]);
    env.ok(&["verify", &token]);
    assert_eq!(get_token(&env, &key, &["--format", "token"], &[]), token);

    // json, fresh from the server at a fixed client clock: exact times.
    let t = now();
    let fixed = t.to_string();
    let out = env.ok_with_env(
        &["get-token", "--key", k, "--format", "json", "--no-cache"],
        &[("TOKENAUTH_NOW", &fixed)],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let fresh = v["access_token"].as_str().unwrap();
    assert_jwt(fresh);
    assert_ne!(fresh, token, "--no-cache must not read the cache");
    env.ok(&["verify", fresh]);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3600);
    assert_eq!(v["expires_at"], t + 3600);
    assert_eq!(v["scope"], "read");
    // --no-cache did not write the cache either.
    assert_eq!(get_token(&env, &key, &[], &[]), token);

    // json from the cache: the same token, expires_at absolute and consistent with expires_in.
    let v = env.json(&["get-token", "--key", k, "--format", "json"]);
    let after = now();
    assert_eq!(v["access_token"], token.as_str());
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["scope"], "read");
    let expires_at = v["expires_at"].as_i64().unwrap();
    let expires_in = v["expires_in"].as_i64().unwrap();
    assert!(
        (t - 5..=after + 5).contains(&(expires_at - 3600)),
        "expires_at {expires_at} is not about now + 3600 ({after})"
    );
    assert!(
        (expires_at - after - 2..=expires_at - t + 2).contains(&expires_in),
        "expires_in {expires_in} does not match expires_at {expires_at}"
    );

    // header
    let out = env.ok(&["get-token", "--key", k, "--format", "header"]);
    assert_eq!(out, format!("Authorization: Bearer {token}\n"));

    // env: NAME=value lines, unquoted so that they also suit $GITHUB_ENV, and safe to eval.
    let out = env.ok(&["get-token", "--key", k, "--format", "env"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("TOKENAUTH_TOKEN={token}"), "{out}");
    for line in &lines {
        let (name, value) = line.split_once('=').unwrap();
        assert!(
            name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
            "{line}"
        );
        assert!(
            value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "not eval-safe: {line}"
        );
    }
    // … and eval works in a real shell (with the key from TOKENAUTH_KEY).
    let out = env
        .std_cmd("sh")
        .args([
            "-c",
            r#"eval "$("$0" get-token --format env)" && printf '%s\n' "$TOKENAUTH_TOKEN""#,
            BIN,
        ])
        .env("TOKENAUTH_KEY", k)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{token}\n"));

    // TOKENAUTH_KEY instead of --key.
    let out = env
        .cmd()
        .env("TOKENAUTH_KEY", k)
        .arg("get-token")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{token}\n"));

    // --key - reads the key file from standard input: the same cache entry…
    let key_text = std::fs::read_to_string(&key).unwrap();
    let out = env
        .cmd()
        .args(["get-token", "--key", "-"])
        .write_stdin(key_text.clone())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{token}\n"));
    // … and a working key for a fresh token.
    let out = env
        .cmd()
        .args(["get-token", "--key", "-", "--no-cache"])
        .write_stdin(key_text)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fresh = text(&out.stdout);
    let fresh = fresh.trim_end();
    assert_jwt(fresh);
    assert_ne!(fresh, token);
    env.ok(&["verify", fresh]);
}

// ---- get-token: the cache --------------------------------------------------------------------

#[test]
fn cached_token_is_reused_without_the_server() {
    let env = Env::new();
    let mut server = env.serve(&[]);
    let (_, key) = env.issue_key("ci-bot", &[]);
    let k = arg(&key);
    let token = get_token(&env, &key, &[], &[]);
    let token_uri = server.url("/token");
    assert_eq!(server.stop().code(), Some(0));

    assert_eq!(get_token(&env, &key, &[], &[]), token);
    let v = env.json(&["get-token", "--key", k, "--format", "json"]);
    assert_eq!(v["access_token"], token.as_str());
    assert_eq!(issuances(&env), 1);

    // The cache: a 0700 directory of 0600 files, one token file holding the token and no
    // private key material.
    let dir = cache_dir(&env);
    assert_eq!(mode(&dir), 0o700);
    let files = files_in(&dir);
    assert!(!files.is_empty());
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    let entries = cache_entries(&env);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(read_json(&entries[0])["access_token"], token.as_str());
    let key_file = read_json(&key);
    let pem = key_file["private_key"].as_str().unwrap();
    let pem_line = pem.lines().nth(1).unwrap();
    assert!(pem_line.len() > 40);
    for f in &files {
        let content = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        assert!(!content.contains("PRIVATE KEY"), "{}", f.display());
        assert!(!content.contains(pem_line), "{}", f.display());
    }

    // --no-cache must ask the (stopped) server, and says which URL it could not reach.
    let err = env.fails(&["get-token", "--key", k, "--no-cache"]);
    assert!(
        err.starts_with(&format!(
            "tokenauth: error: cannot reach the token endpoint {token_uri}: "
        )),
        "{err}"
    );
}

#[test]
fn token_near_expiry_is_refreshed() {
    let env = Env::new();
    let port = free_port();
    let t0 = now();
    let t0s = t0.to_string();
    let mut server = env.serve_on_port(port, &[], &[("TOKENAUTH_NOW", &t0s)]);
    let (_, key) = env.issue_key("ci-bot", &[]);
    let at = |t: i64| t.to_string();

    let first = get_token(&env, &key, &[], &[("TOKENAUTH_NOW", &t0s)]);
    assert_eq!(issuances(&env), 1);
    // Fresh: reused, including with --min-valid 0.
    assert_eq!(
        get_token(
            &env,
            &key,
            &["--min-valid", "0"],
            &[("TOKENAUTH_NOW", &t0s)]
        ),
        first
    );
    // 70 s left is more than the default --min-valid 60: still reused.
    assert_eq!(
        get_token(&env, &key, &[], &[("TOKENAUTH_NOW", &at(t0 + 3530))]),
        first
    );
    assert_eq!(issuances(&env), 1);
    server.stop();

    // 30 s left: --min-valid 0 still takes it (the server is down, so it must come from
    // the cache) …
    let t1 = at(t0 + 3570);
    assert_eq!(
        get_token(&env, &key, &["--min-valid", "0"], &[("TOKENAUTH_NOW", &t1)]),
        first
    );
    // … but --min-valid 40 does not, and without a server that is an error.
    let out = run(
        &env,
        &["get-token", "--key", arg(&key), "--min-valid", "40"],
        &[("TOKENAUTH_NOW", &t1)],
    );
    assert!(
        one_error(&out).contains("cannot reach the token endpoint"),
        "{}",
        text(&out.stderr)
    );

    // The same token URI, an hour later: the default --min-valid 60 fetches a new token.
    let _server = env.serve_on_port(port, &[], &[("TOKENAUTH_NOW", &t1)]);
    let second = get_token(&env, &key, &[], &[("TOKENAUTH_NOW", &t1)]);
    assert_ne!(second, first);
    assert_eq!(issuances(&env), 2);
    // … and caches it in place of the old one.
    assert_eq!(
        get_token(&env, &key, &[], &[("TOKENAUTH_NOW", &t1)]),
        second
    );
    let entries = cache_entries(&env);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let cached = read_json(&entries[0]);
    assert_eq!(cached["access_token"], second.as_str());
    assert_eq!(cached["expires_at"], t0 + 3570 + 3600);
    assert_eq!(issuances(&env), 2);
}

#[test]
fn concurrent_get_tokens_make_one_request() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let (_, key) = env.issue_key("ci-bot", &[]);
    let children: Vec<std::process::Child> = (0..20)
        .map(|_| {
            env.std_cmd(BIN)
                .args(["get-token", "--key", arg(&key)])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let tokens: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
            let t = text(&out.stdout).trim_end().to_owned();
            assert_jwt(&t);
            t
        })
        .collect();
    assert_eq!(tokens.len(), 20);
    assert!(
        tokens.iter().all(|t| *t == tokens[0]),
        "different tokens: {tokens:#?}"
    );
    assert_eq!(issuances(&env), 1);
    assert_eq!(cache_entries(&env).len(), 1);
}

#[test]
fn corrupt_cache_entries_are_ignored_and_rewritten() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let (_, key) = env.issue_key("ci-bot", &[]);
    let mut previous = get_token(&env, &key, &[], &[]);
    let entries = cache_entries(&env);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let good = std::fs::read(&entries[0]).unwrap();
    let corruptions: [(&str, Vec<u8>); 3] = [
        ("garbage", b"\x00\xffnot a token{{{\n".to_vec()),
        ("truncated JSON", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
    ];
    for (n, (what, bytes)) in corruptions.into_iter().enumerate() {
        for f in cache_entries(&env) {
            std::fs::write(&f, &bytes).unwrap();
        }
        let out = run(&env, &["get-token", "--key", arg(&key)], &[]);
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stderr.is_empty(), "{what}: {}", text(&out.stderr));
        let token = text(&out.stdout).trim_end().to_owned();
        assert_jwt(&token);
        assert_ne!(
            token, previous,
            "{what}: the corrupt entry was not replaced"
        );
        assert_eq!(issuances(&env), n + 2, "{what}");
        let entries = cache_entries(&env);
        assert_eq!(entries.len(), 1, "{what}: {entries:?}");
        assert_eq!(read_json(&entries[0])["access_token"], token.as_str());
        assert_eq!(mode(&entries[0]), 0o600);
        // And it is used again.
        assert_eq!(get_token(&env, &key, &[], &[]), token);
        previous = token;
    }
}

// ---- get-token: errors -----------------------------------------------------------------------

#[test]
fn unreachable_token_endpoint_is_one_clear_error() {
    let env = Env::new();
    let uri = format!("http://127.0.0.1:{}/token", free_port());
    env.ok(&["init", "--token-uri", &uri]);
    let (_, key) = env.issue_key("ci-bot", &[]);
    for extra in [&[][..], &["--no-cache"][..]] {
        let mut args = vec!["get-token", "--key", arg(&key)];
        args.extend_from_slice(extra);
        let err = env.fails(&args);
        let prefix = format!("tokenauth: error: cannot reach the token endpoint {uri}: ");
        assert!(err.starts_with(&prefix), "{err}");
        assert!(err.trim_end().len() > prefix.len(), "no cause: {err}");
    }
    assert!(cache_entries(&env).is_empty());
}

#[test]
fn refused_grant_shows_the_servers_reason() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (key_id, key) = env.issue_key("ci-bot", &[]);
    env.ok(&["revoke-key", &key_id, "--yes"]);
    let err = env.fails(&["get-token", "--key", arg(&key)]);
    assert!(err.contains("invalid_grant: Key has been revoked"), "{err}");
    assert!(err.contains(&server.url("/token")), "{err}");
    assert!(cache_entries(&env).is_empty());
}

// ---- request ---------------------------------------------------------------------------------

#[test]
fn request_prints_the_body() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (key_id, key) = env.issue_key("ci-bot", &[]);
    let v = env.json(&["request", "--key", arg(&key), &server.url("/auth")]);
    assert_eq!(v["user"], "ci-bot");
    assert_eq!(v["key_id"], key_id.as_str());
    assert_eq!(v["scope"], "read");
    // The token went to the cache: a second request needs no new one.
    env.ok(&["request", "--key", arg(&key), &server.url("/auth")]);
    assert_eq!(issuances(&env), 1);
}

#[test]
fn request_include_prints_status_and_headers() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (_, key) = env.issue_key("ci-bot", &[]);
    let out = env.ok(&["request", "-i", "--key", arg(&key), &server.url("/auth")]);
    let (head, body) = out
        .split_once("\n\n")
        .unwrap_or_else(|| panic!("no blank line after the headers: {out}"));
    let mut lines = head.lines();
    assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"), "{out}");
    let headers: Vec<&str> = lines.collect();
    assert!(headers.contains(&"x-auth-user: ci-bot"), "{out}");
    assert!(headers.contains(&"cache-control: no-store"), "{out}");
    assert!(headers.contains(&"content-type: application/json"), "{out}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["user"], "ci-bot");
}

#[test]
fn request_fails_on_an_error_status_but_prints_the_body() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (_, key) = env.issue_key("ci-bot", &[]);
    let url = server.url("/auth?scope=write");
    let out = run(&env, &["request", "--key", arg(&key), &url], &[]);
    let err = one_error(&out);
    assert!(err.contains("HTTP 403"), "{err}");
    assert!(err.contains(&url), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"], "insufficient_scope");
    // A 403 is not a reason for a new token.
    assert_eq!(issuances(&env), 1);
}

#[test]
fn request_retries_once_with_a_new_token_after_invalid_token() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (_, key) = env.issue_key("ci-bot", &[]);
    let old = get_token(&env, &key, &[], &[]);
    env.ok(&["rotate-secret", "ci-bot", "--yes"]);
    // The cached token no longer works.
    let r = send(http().get(server.url("/auth")).bearer_auth(&old));
    assert_eq!(r.status, 401);
    assert_eq!(r.json["error"], "invalid_token");

    let v = env.json(&["request", "--key", arg(&key), &server.url("/auth")]);
    assert_eq!(v["user"], "ci-bot");
    assert_eq!(issuances(&env), 2);
    // The new token replaced the refused one in the cache.
    let new = get_token(&env, &key, &[], &[]);
    assert_ne!(new, old);
    let r = send(http().get(server.url("/auth")).bearer_auth(&new));
    assert_eq!(r.status, 200);
    assert_eq!(issuances(&env), 2);
}

#[test]
fn request_gives_up_after_a_second_refusal() {
    let env = Env::new();
    // Token server A lives two hours in the past: its tokens are expired in real time.
    let past = (now() - 7200).to_string();
    let a = env.serve_with_env(&[], &[("TOKENAUTH_NOW", &past)]);
    let (_, key) = env.issue_key("ci-bot", &[]);
    // Resource server B, in real time, on the same store.
    let b = env.serve(&[]);
    // Starting B pointed the store at B; A must keep accepting grants addressed to A.
    env.ok(&["init", "--token-uri", &a.url("/token")]);

    // The client shares A's clock, so A accepts its grants.
    let url = b.url("/auth");
    let out = run(
        &env,
        &["request", "--key", arg(&key), &url],
        &[("TOKENAUTH_NOW", &past)],
    );
    let err = one_error(&out);
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(err.contains(&url), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"], "invalid_token");
    // One retry, no loop.
    assert_eq!(issuances(&env), 2);
}

// ---- --key before or after the subcommand ---------------------------------------------------

/// The first line of a usage error (exit 2), after asserting that nothing went to stdout.
fn usage_error(out: &Output) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    err.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn key_before_a_client_subcommand_is_named_as_the_remote_admin_credential() {
    let env = Env::new();
    let (_, key) = env.issue_key("ci-bot", &[]);
    let k = arg(&key);
    for sub in ["get-token", "sign-grant", "request"] {
        let mut args = vec!["--key", k, sub];
        if sub == "request" {
            args.push("http://127.0.0.1:9/");
        }
        assert_eq!(
            usage_error(&run(&env, &args, &[])),
            format!(
                "error: --key before the subcommand is the remote-admin credential; {sub} takes \
                 its key file after the subcommand: tokenauth {sub} --key {k}"
            )
        );
    }
    // Also when the subcommand has a key of its own from the environment: the flag before
    // it would be silently ignored.
    assert_eq!(
        usage_error(&run(&env, &["-k", k, "get-token"], &[("TOKENAUTH_KEY", k)])),
        format!(
            "error: --key before the subcommand is the remote-admin credential; get-token takes \
             its key file after the subcommand: tokenauth get-token --key {k}"
        )
    );
    // A key given as JSON is not repeated in the advice.
    let json = std::fs::read_to_string(&key).unwrap();
    let out = run(&env, &["--key", &json, "get-token"], &[]);
    assert_eq!(
        usage_error(&out),
        "error: --key before the subcommand is the remote-admin credential; get-token takes \
         its key file after the subcommand: tokenauth get-token --key FILE"
    );
    assert!(
        !text(&out.stderr).contains("key_id"),
        "{}",
        text(&out.stderr)
    );
    // The other shared flags say the same of themselves; a token is never repeated.
    assert_eq!(
        usage_error(&run(&env, &["--scope", "write", "get-token"], &[])),
        "error: --scope before the subcommand is for remote administration (--server); \
         get-token takes its own --scope after the subcommand: tokenauth get-token --scope write"
    );
    assert_eq!(
        usage_error(&run(
            &env,
            &["--token", "tapat_secret", "request", "http://127.0.0.1:9/"],
            &[]
        )),
        "error: --token before the subcommand is for remote administration (--server); \
         request takes its own --token after the subcommand: tokenauth request --token TOKEN"
    );
    // From the environment, the same variable feeds both: no complaint.
    let out = run(&env, &["get-token"], &[("TOKENAUTH_KEY", k)]);
    assert!(
        text(&out.stderr).contains("cannot reach the token endpoint"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn key_after_an_admin_subcommand_is_named_as_belonging_before_it() {
    let env = Env::new();
    let (_, key) = env.issue_key("ci-bot", &[]);
    let k = arg(&key);
    let cases: [(&[&str], &str); 4] = [
        (
            &["--server", "http://127.0.0.1:9", "list-keys", "--key", k],
            "error: list-keys takes no --key; the remote-admin credential goes before the \
             subcommand: tokenauth --server URL --key FILE list-keys",
        ),
        (
            &["--server", "http://127.0.0.1:9", "user", "list", "-k", k],
            "error: user list takes no --key; the remote-admin credential goes before the \
             subcommand: tokenauth --server URL --key FILE user list",
        ),
        (
            &["list-keys", "--key=ci.json"],
            "error: list-keys takes no --key; the remote-admin credential goes before the \
             subcommand: tokenauth --server URL --key FILE list-keys",
        ),
        (
            &["list-keys", "--token", "tapat_secret"],
            "error: list-keys takes no --token; the remote-admin credential goes before the \
             subcommand: tokenauth --server URL --token TOKEN list-keys",
        ),
    ];
    for (args, want) in cases {
        let out = run(&env, args, &[]);
        assert_eq!(usage_error(&out), want, "{args:?}");
        assert!(!text(&out.stderr).contains("tapat_secret"));
    }
}
