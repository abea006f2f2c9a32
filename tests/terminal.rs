//! Stored and caller-supplied text never reaches the terminal raw: tables, messages, prompts
//! and the error line show controls and bidi controls escaped; `--json` keeps them exact.

mod common;

use common::{Env, JWT_BEARER, post_form};

/// Sets the terminal's title, turns text red, opens a C1 CSI, deletes, reverses what follows;
/// then a tab and a newline that would break a table row.
const TITLE: &str = "\x1b]0;pwned\x07\x1b[31mred\u{9b}31m\x7f\u{202e}txt.exe\tand\nmore";
const TITLE_SHOWN: &str =
    r"\u{1b}]0;pwned\u{7}\u{1b}[31mred\u{9b}31m\u{7f}\u{202e}txt.exe\u{9}and\u{a}more";

fn is_bidi(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Nothing in `out` but its own line breaks may act on a terminal.
fn assert_no_raw(out: &str) {
    let raw: Vec<char> = out
        .chars()
        .filter(|&c| (c.is_control() && c != '\n') || is_bidi(c))
        .collect();
    assert!(raw.is_empty(), "raw {raw:?} in output: {out:?}");
}

/// The one line of `out` that holds `needle`.
fn line_with<'a>(out: &'a str, needle: &str) -> &'a str {
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(lines.len(), 1, "want one line with {needle:?} in: {out}");
    lines[0]
}

/// Runs with args, asserts exit code 1, returns stderr (for errors that are not one line
/// before the fix, so `Env::fails` would stop too early).
fn stderr_of_failure(env: &Env, args: &[&str]) -> String {
    let out = env.cmd().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "tokenauth {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

/// A user stored under `name` as an older tokenauth (or a future remote admin) may have
/// written it, bypassing today's name check; returns its signing secret.
fn store_user(env: &Env, name: &str) -> Vec<u8> {
    let secret = vec![7u8; 32];
    let conn = rusqlite::Connection::open(env.db()).unwrap();
    conn.execute(
        "INSERT INTO users (name, created) VALUES (?1, ?2)",
        rusqlite::params![name, common::now()],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO secrets (user_name, secret, rotated) VALUES (?1, ?2, ?3)",
        rusqlite::params![name, secret, common::now()],
    )
    .unwrap();
    secret
}

#[test]
fn list_keys_escapes_every_control_in_a_title_and_json_keeps_it_exact() {
    let env = Env::new();
    let (key_id, _) = env.issue_key("ci-bot", &["--title", TITLE]);

    let table = env.ok(&["list-keys"]);
    assert_no_raw(&table);
    let row = line_with(&table, &key_id);
    assert!(row.contains(TITLE_SHOWN), "{row}");
    assert!(row.contains("ci-bot") && row.contains("active"), "{row}");

    let keys = env.json(&["list-keys", "--json"]);
    assert_eq!(keys[0]["title"], TITLE);
}

#[test]
fn usage_log_escapes_a_strangers_subject_and_json_keeps_what_was_stored() {
    let env = Env::new();
    let mut server = env.serve(&[]);
    let (key_id, key) = env.issue_key("bot", &[]);
    let sub = "mallory\x1b[2J\u{202e}gpj.exe";
    let grant = env.ok(&["sign-grant", "--key", key.to_str().unwrap(), "--sub", sub]);
    let reply = post_form(
        &server,
        &[("grant_type", JWT_BEARER), ("assertion", grant.trim())],
        Some("curl\tish"),
    );
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.json["error"], "invalid_grant");
    // Refusals are committed without waiting; a stopped server has flushed them.
    assert!(server.stop().success());

    // The server drops C0/C1 controls from what strangers send before it stores them (see
    // `refuse`); the bidi control and the tab in the user agent are stored as sent.
    let stored_sub = "mallory[2J\u{202e}gpj.exe";
    let rows = env.json(&["usage-log", "--json"]);
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["subject"], stored_sub);
    assert_eq!(rows[0]["user_agent"], "curl\tish");
    assert_eq!(
        rows[0]["reason"],
        format!("Impersonation not allowed: user 'bot' may not act as '{stored_sub}'")
    );

    let table = env.ok(&["usage-log"]);
    assert_no_raw(&table);
    let row = line_with(&table, &key_id[..12]);
    let shown_sub = r"mallory[2J\u{202e}gpj.exe";
    assert!(row.contains(&format!(" {shown_sub} ")), "{row}");
    assert!(row.contains(r"curl\u{9}ish"), "{row}");
    assert!(
        row.ends_with(&format!(
            "refused: Impersonation not allowed: user 'bot' may not act as '{shown_sub}'"
        )),
        "{row}"
    );
}

#[test]
fn edit_key_and_revoke_key_messages_escape_the_title() {
    let env = Env::new();
    let (key_id, _) = env.issue_key("ci-bot", &[]);

    // Key ids are base64url and may start with '-': they go after `--`.
    let out = env
        .cmd()
        .args(["edit-key", "--title", TITLE, "--", &key_id])
        .output()
        .unwrap();
    assert!(out.status.success());
    let said = String::from_utf8(out.stderr).unwrap();
    assert_no_raw(&said);
    assert!(
        said.starts_with(&format!("Updated key {key_id}: title '{TITLE_SHOWN}',")),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1, "{said}");

    // Without a terminal the confirmation question ends up in the error line.
    let err = stderr_of_failure(&env, &["revoke-key", "--", &key_id]);
    assert_no_raw(&err);
    assert!(
        err.contains(&format!(
            "Revoke key {key_id} of user ci-bot ('{TITLE_SHOWN}')?"
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn stored_user_names_are_escaped_in_tables_messages_and_prompts() {
    let env = Env::new();
    env.ok(&["user", "list"]);
    let name = "old\x1b[31m\u{202e}bot";
    let shown = r"old\u{1b}[31m\u{202e}bot";
    store_user(&env, name);

    let table = env.ok(&["user", "list"]);
    assert_no_raw(&table);
    assert!(line_with(&table, shown).contains("enabled"), "{table}");
    assert_eq!(env.json(&["user", "list", "--json"])[0]["name"], name);

    for (args, said) in [
        (
            vec!["user", "disable", name],
            format!("Disabled user {shown};"),
        ),
        (
            vec!["user", "enable", name],
            format!("Enabled user {shown}."),
        ),
        (
            vec!["user", "grant", name, "introspect"],
            format!("User {shown} may now introspect."),
        ),
        (
            vec!["rotate-secret", name, "--yes"],
            format!("Rotated the secret of {shown};"),
        ),
    ] {
        let out = env.cmd().args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_no_raw(&err);
        assert!(err.starts_with(&said), "{args:?}: {err}");
    }

    let err = stderr_of_failure(&env, &["user", "remove", name]);
    assert_no_raw(&err);
    assert!(err.contains(&format!("Remove user {shown}?")), "{err}");
}

#[test]
fn verify_escapes_the_user_and_scope_it_prints() {
    let env = Env::new();
    let (key_id, key) = env.issue_key("ci-bot", &[]);
    let kf: serde_json::Value = serde_json::from_slice(&std::fs::read(&key).unwrap()).unwrap();
    let name = "old\x1b[31m\u{202e}bot";
    let secret = store_user(&env, name);
    let now = common::now();
    let claims = serde_json::json!({
        "iss": "http://127.0.0.1:8080",
        "sub": name,
        "aud": "http://127.0.0.1:8080",
        "client_id": kf["client_id"],
        "key_id": key_id,
        "jti": common::fresh_jti(),
        "iat": now,
        "exp": now + 600,
        "scope": "read\x1b[2J\u{2066}",
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();

    let out = env.ok(&["verify", &token]);
    assert_no_raw(&out);
    assert!(
        out.starts_with(&format!(
            r"valid: user old\u{{1b}}[31m\u{{202e}}bot via key {key_id} (scope 'read\u{{1b}}[2J\u{{2066}}'), expires "
        )),
        "{out}"
    );
    let v = env.json(&["verify", &token, "--json"]);
    assert_eq!(v["claims"]["sub"], name);
    assert_eq!(v["claims"]["scope"], "read\x1b[2J\u{2066}");
}

#[test]
fn the_error_line_escapes_a_hostile_argument_and_stays_one_line() {
    let env = Env::new();
    let err = env.fails(&["revoke-key", "\x1b[2J"]);
    assert_no_raw(&err);
    assert!(err.contains(r"no key with id '\u{1b}[2J'"), "{err}");

    let (key_id, _) = env.issue_key("ci-bot", &[]);
    let err = env.fails(&[
        "edit-key",
        "--ip-range",
        "10.0.0.0/8,\u{202e}\x1b[2J",
        "--",
        &key_id,
    ]);
    assert_no_raw(&err);
    assert!(err.contains(r"\u{202e}\u{1b}[2J"), "{err}");
}

#[test]
fn new_user_names_with_format_characters_are_refused_naming_the_character() {
    let env = Env::new();
    let err = env.fails(&["user", "add", "evil\u{202e}"]);
    assert_no_raw(&err);
    assert!(
        err.starts_with(r"tokenauth: error: invalid user name 'evil\u{202e}': \u{202e} "),
        "{err}"
    );
    // Zero-width characters are not bidi controls, but they make one name look like another.
    let err = env.fails(&["issue-key", "--user", "ci\u{200d}bot", "--out", "k.json"]);
    assert!(
        err.contains(r"invalid user name 'ci\u{200d}bot': \u{200d} "),
        "{err}"
    );
    assert!(!err.contains('\u{200d}'), "{err:?}");
    assert_eq!(env.json(&["user", "list", "--json"]), serde_json::json!([]));
}

#[test]
fn init_and_issue_key_escape_paths_and_urls() {
    let env = Env::new();
    let dir = env.path().join("store\x1b[31m");
    let db = dir.join("t\u{202e}.db");
    // The URL parser drops tabs, so this URL is accepted and stored as typed.
    let uri = "https://auth.example\t.com/token";
    let out = env
        .cmd()
        .args(["--db", db.to_str().unwrap(), "init", "--token-uri", uri])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8(out.stdout).unwrap();
    assert_no_raw(&out);
    assert!(
        out.contains(r"store\u{1b}[31m/t\u{202e}.db (mode 600)"),
        "{out}"
    );
    assert!(
        out.contains(r"token URI: https://auth.example\u{9}.com/token"),
        "{out}"
    );

    let file = env.path().join("k\x1b[2J.json");
    let out = env
        .cmd()
        .args([
            "issue-key",
            "--user",
            "ci-bot",
            "--out",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let said = String::from_utf8(out.stderr).unwrap();
    assert_no_raw(&said);
    assert!(said.contains(r"k\u{1b}[2J.json (mode 0600)"), "{said}");
}
