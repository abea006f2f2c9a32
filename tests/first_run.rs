//! A newcomer's first commands: a mistyped or unset store path is refused by the commands
//! that only read or change what is there, and the default token URI is warned about where
//! it would send clients to the wrong place.

mod common;

use std::io::BufRead;

use common::Env;

/// Commands that read or change what a store holds: none of them may create one.
const READERS: &[&[&str]] = &[
    &["list-keys"],
    &["usage-log"],
    &["revoke-key", "abcd1234", "--yes"],
    &["edit-key", "abcd1234", "--title", "x"],
    &["rotate-secret", "ci-bot", "--yes"],
    &["user", "list"],
    &["user", "disable", "ci-bot"],
    &["user", "remove", "ci-bot", "--yes"],
    &["token", "list"],
    &["token", "revoke", "abcd1234", "--yes"],
    &["trust", "list"],
    &["trust", "show", "gh"],
    &["trust", "remove", "gh", "--yes"],
    &["audit"],
    &["audit", "verify"],
    &["report"],
    &["verify", "not-a-token"],
];

/// Runs `args` expecting the one-line error, returned.
fn refused(cmd: &mut assert_cmd::Command, args: &[&str]) -> String {
    let out = cmd.args(args).output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(err.starts_with("tokenauth: error: "), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    err
}

#[test]
fn read_commands_on_a_missing_store_fail_naming_its_path_and_source_and_create_nothing() {
    let env = Env::new_sqlite();
    // TOKENAUTH_DB names env.db(), in a folder that does not exist yet.
    for args in READERS {
        let err = refused(&mut env.cmd(), args);
        let db = env.db();
        assert!(
            err.contains(&format!(
                "there is no store at {} (named by TOKENAUTH_DB); nothing was created",
                db.display()
            )) && err.contains("`tokenauth init`"),
            "{args:?}: {err}"
        );
        assert!(
            !db.parent().unwrap().exists(),
            "{args:?} created the folder"
        );
    }

    let typo = env.path().join("typo").join("tokenauth.db");
    for args in [
        &["list-keys"][..],
        &["usage-log"],
        &["revoke-key", "abcd1234"],
    ] {
        let mut cmd = env.cmd();
        cmd.arg("--db").arg(&typo);
        let err = refused(&mut cmd, args);
        assert!(
            err.contains(&format!("no store at {} (named by --db)", typo.display()))
                && err.contains("check the path"),
            "{args:?}: {err}"
        );
        assert!(!env.path().join("typo").exists(), "{args:?}");
    }

    let mut cmd = env.cmd();
    cmd.env_remove("TOKENAUTH_DB");
    let err = refused(&mut cmd, &["list-keys"]);
    let default = env
        .path()
        .join("data")
        .join("tokenauth")
        .join("tokenauth.db");
    assert!(
        err.contains(&format!(
            "no store at {} (the default location: neither --db nor TOKENAUTH_DB is set)",
            default.display()
        )) && err.contains("pass --db PATH"),
        "{err}"
    );
    assert!(!env.path().join("data").exists());
}

#[test]
fn read_commands_work_once_init_created_the_store() {
    let env = Env::new_sqlite();
    env.ok(&["init"]);
    assert!(env.db().exists());
    assert_eq!(env.json(&["list-keys", "--json"]), serde_json::json!([]));
    env.ok(&["usage-log"]);
}

#[test]
fn issue_key_on_a_missing_store_creates_it_and_warns_that_the_key_file_names_the_default_token_uri()
{
    let env = Env::new_sqlite();
    let file = env.path().join("ci.json");
    let out = env
        .cmd()
        .args(["issue-key", "--user", "ci", "--json", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(env.db().exists());
    // Scripts reading --json are unaffected: the warning is on stderr only.
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["user"], "ci");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(
            "warning: this store has no token URI, so the key file names the default \
             http://127.0.0.1:8080/token; if clients reach the server elsewhere, run \
             `tokenauth init --token-uri URL` before issuing keys"
        ),
        "{err}"
    );
    let key: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(key["token_uri"], "http://127.0.0.1:8080/token");
}

#[test]
fn issue_key_after_init_names_the_chosen_token_uri_and_warns_of_nothing() {
    let env = Env::new_sqlite();
    env.ok(&["init", "--token-uri", "https://auth.example.com/token"]);
    let file = env.path().join("ci.json");
    let out = env
        .cmd()
        .args(["issue-key", "--user", "ci", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains("warning"), "{err}");
    let key: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(key["token_uri"], "https://auth.example.com/token");
}

#[test]
fn a_plain_init_leaves_the_token_uri_unset_and_says_it_is_the_default() {
    let env = Env::new_sqlite();
    let out = env.ok(&["init"]);
    assert!(
        out.contains(
            "token URI: http://127.0.0.1:8080/token (the default; set the URL clients reach with \
             --token-uri URL)"
        ),
        "{out}"
    );
    // Still the default, not a choice: issuing warns.
    let out = env
        .cmd()
        .args(["issue-key", "--user", "ci", "--out", "ci.json"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("this store has no token URI"));
}

/// Runs init with `args`, asserting success; its stderr.
fn init_stderr(env: &Env, args: &[&str]) -> String {
    let out = env.cmd().arg("init").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn changing_the_token_uri_under_active_keys_warns_naming_the_old_uri_and_the_fix() {
    let env = Env::new_sqlite();
    let old = "https://old.example.com/token";
    env.ok(&["init", "--token-uri", old]);
    env.issue_key("a", &[]);
    env.issue_key("b", &[]);
    let (revoked, _) = env.issue_key("c", &[]);
    env.ok(&["revoke-key", &revoked, "--yes"]);

    let err = init_stderr(&env, &["--token-uri", "https://new.example.com/token"]);
    assert!(
        err.contains(&format!(
            "warning: the token URI changed from {old} to https://new.example.com/token; the key \
             files of up to 2 active service key(s) name {old}, and the server will refuse their \
             grants (Invalid audience): re-issue those keys, or put the old URI back with \
             `tokenauth init --token-uri {old}`"
        )),
        "{err}"
    );
    // The same URI again, or other settings alone, change nothing.
    assert_eq!(
        init_stderr(&env, &["--token-uri", "https://new.example.com/token"]),
        ""
    );
    assert_eq!(init_stderr(&env, &["--audit-retention", "2y"]), "");
}

#[test]
fn leaving_the_default_token_uri_warns_about_keys_issued_under_it() {
    let env = Env::new_sqlite();
    env.issue_key("a", &[]);
    let err = init_stderr(&env, &["--token-uri", "https://auth.example.com/token"]);
    assert!(
        err.contains("changed from http://127.0.0.1:8080/token to https://auth.example.com/token")
            && err.contains("up to 1 active service key(s)"),
        "{err}"
    );
    // Choosing the default explicitly changes no key file.
    let env = Env::new_sqlite();
    env.issue_key("a", &[]);
    assert_eq!(
        init_stderr(&env, &["--token-uri", "http://127.0.0.1:8080/token"]),
        ""
    );
}

#[test]
fn changing_the_token_uri_with_no_active_key_warns_of_nothing() {
    let env = Env::new_sqlite();
    let (key, _) = env.issue_key("a", &[]);
    env.ok(&["revoke-key", &key, "--yes"]);
    assert_eq!(
        init_stderr(&env, &["--token-uri", "https://auth.example.com/token"]),
        ""
    );
}

/// Starts `serve --listen listen` on the env's store, as a user would (no `init` first),
/// and returns its log up to the line saying where it listens; the server is stopped.
fn serve_until_listening(env: &Env, listen: &str) -> String {
    let mut child = env
        .std_cmd(env!("CARGO_BIN_EXE_tokenauth"))
        .args(["serve", "--listen", listen])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = String::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        log.push_str(&line);
        log.push('\n');
        if line.contains("listening on ") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.contains("listening on "), "{log}");
    log
}

#[test]
fn serve_on_a_fresh_store_creates_it_and_warns_that_the_default_token_uri_misses_it() {
    let env = Env::new_sqlite();
    let log = serve_until_listening(&env, "127.0.0.1:0");
    assert!(env.db().exists());
    let addr = log
        .split("listening on http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap();
    assert!(
        log.contains(&format!(
            "this store has no token URI, so the server advertises (and key files name) the \
             default http://127.0.0.1:8080/token, but it listens on http://{addr}: run tokenauth \
             init --token-uri http://{addr}/token (the URL clients reach)"
        )),
        "{log}"
    );
}

#[test]
fn serve_on_a_unix_socket_with_the_default_token_uri_warns() {
    let env = Env::new_sqlite();
    let socket = env.path().join("t.sock");
    let log = serve_until_listening(&env, &format!("unix:{}", socket.display()));
    assert!(
        log.contains("this store has no token URI")
            && log.contains("init --token-uri http://HOST:PORT/token (the URL clients reach)"),
        "{log}"
    );
}

#[test]
fn serve_with_a_token_uri_set_warns_of_nothing() {
    let env = Env::new_sqlite();
    env.ok(&["init", "--token-uri", "https://auth.example.com/token"]);
    let log = serve_until_listening(&env, "127.0.0.1:0");
    assert!(!log.contains("token URI"), "{log}");
}
