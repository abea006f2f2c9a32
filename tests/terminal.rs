//! Stored and caller-supplied text never reaches the terminal raw: tables, messages, prompts
//! and the error line show controls and bidi controls escaped; `--json` keeps them exact.

mod common;

use common::{Env, JWT_BEARER, post_form};

/// Sets the terminal's title, turns text red, opens a C1 CSI, deletes, reverses what follows;
/// then a tab and a newline that would break a table row.
const TITLE: &str = "\x1b]0;pwned\x07\x1b[31mred\u{9b}31m\x7f\u{202e}txt.exe\tand\nmore";
const TITLE_SHOWN: &str =
    r"\u{1b}]0;pwned\u{7}\u{1b}[31mred\u{9b}31m\u{7f}\u{202e}txt.exe\u{9}and\u{a}more";

/// Invisible: format characters (Unicode Cf: bidi controls, zero-width ones, tags) and the
/// line and paragraph separators.
fn is_invisible(c: char) -> bool {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    matches!(
        c.general_category(),
        G::Format | G::LineSeparator | G::ParagraphSeparator
    )
}

/// Nothing in `out` but its own line breaks may act on a terminal or hide.
fn assert_no_raw(out: &str) {
    let raw: Vec<char> = out
        .chars()
        .filter(|&c| (c.is_control() && c != '\n') || is_invisible(c))
        .collect();
    assert!(raw.is_empty(), "raw {raw:?} in output: {out:?}");
}

/// Zero-width space, joiner, non-joiner, word joiner, invisible plus, byte-order mark, a tag
/// letter, a soft hyphen and a line separator, between the letters of `ci-bot`.
const HIDDEN: &str =
    "c\u{200b}i\u{200d}-\u{200c}b\u{2060}o\u{2064}t\u{feff}\u{e0041}\u{ad}\u{2028}.";
const HIDDEN_SHOWN: &str =
    r"c\u{200b}i\u{200d}-\u{200c}b\u{2060}o\u{2064}t\u{feff}\u{e0041}\u{ad}\u{2028}.";

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
    let row = line_with(&table, &key_id[..12]);
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

    // The server writes C0/C1 controls from what strangers send as `\u{…}` escapes before it
    // stores them (see `refuse`: dropped, `ad\0min` would read as `admin`); the bidi control
    // and the tab in the user agent are stored as sent.
    let stored_sub = "mallory\\u{1b}[2J\u{202e}gpj.exe";
    let rows = env.json(&["usage-log", "--json"]);
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["subject"], stored_sub);
    assert_eq!(rows[0]["user_agent"], "curl\tish");
    assert_eq!(
        rows[0]["reason"],
        format!("Impersonation not allowed: user 'bot' may not act as '{stored_sub}'")
    );

    let table = env.ok(&["usage-log", "--wide"]);
    assert_no_raw(&table);
    let row = line_with(&table, &key_id[..12]);
    let shown_sub = r"mallory\u{1b}[2J\u{202e}gpj.exe";
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
    env.ok(&["init"]);
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
    // The token names ci-bot's key and another subject: an impersonation token.
    env.ok(&["user", "grant", "ci-bot", "impersonate"]);
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
    env.ok(&["init"]);
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

#[test]
fn zero_width_characters_are_escaped_in_every_table_and_json_keeps_them() {
    let env = Env::new();
    // In a stored user name, a title, a token's description, a stranger's subject.
    env.ok(&["init"]);
    let legacy = format!("old-{HIDDEN}");
    store_user(&env, &legacy);
    let mut server = env.serve(&[]);
    let (key_id, key) = env.issue_key("ci-bot", &["--title", HIDDEN, "--scope", "write"]);
    let pat = env.json(&[
        "token",
        "create",
        "--user",
        "ci-bot",
        "--description",
        HIDDEN,
        "--json",
    ]);
    let grant = env.ok(&[
        "sign-grant",
        "--key",
        key.to_str().unwrap(),
        "--sub",
        HIDDEN,
    ]);
    let reply = post_form(
        &server,
        &[("grant_type", JWT_BEARER), ("assertion", grant.trim())],
        None,
    );
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(server.stop().success());

    let table = env.ok(&["list-keys"]);
    assert_no_raw(&table);
    assert!(
        line_with(&table, &key_id[..12]).contains(HIDDEN_SHOWN),
        "{table}"
    );
    assert_eq!(env.json(&["list-keys", "--json"])[0]["title"], HIDDEN);

    let table = env.ok(&["token", "list"]);
    assert_no_raw(&table);
    let id = pat["id"].as_str().unwrap();
    assert!(
        line_with(&table, &id[..12]).contains(HIDDEN_SHOWN),
        "{table}"
    );
    assert_eq!(
        env.json(&["token", "list", "--json"])[0]["description"],
        HIDDEN
    );

    let table = env.ok(&["user", "list"]);
    assert_no_raw(&table);
    line_with(&table, &format!("old-{HIDDEN_SHOWN}"));
    let users = env.json(&["user", "list", "--json"]);
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["name"] == legacy.as_str()),
        "{users}"
    );

    let table = env.ok(&["usage-log", "--wide"]);
    assert_no_raw(&table);
    let row = line_with(&table, &key_id[..12]);
    assert!(row.contains(&format!(" {HIDDEN_SHOWN} ")), "{row}");
    assert!(
        row.ends_with(&format!("may not act as '{HIDDEN_SHOWN}'")),
        "{row}"
    );
    assert_eq!(env.json(&["usage-log", "--json"])[0]["subject"], HIDDEN);
    let summary = env.ok(&["usage-log", "--summary"]);
    assert_no_raw(&summary);
    assert!(summary.contains(HIDDEN_SHOWN), "{summary}");

    let table = env.ok(&["audit"]);
    assert_no_raw(&table);
    assert!(
        line_with(&table, "key.issue").contains(HIDDEN_SHOWN),
        "{table}"
    );
    assert!(env.json(&["audit", "--json"]).to_string().contains(HIDDEN));

    // The key has write scope and no IP range: the report lists it, title and all.
    let report = env.ok(&["report"]);
    assert_no_raw(&report);
    let rows: Vec<&str> = report
        .lines()
        .filter(|l| l.contains(&key_id[..12]))
        .collect();
    assert!(!rows.is_empty(), "{report}");
    assert!(rows.iter().all(|r| r.contains(HIDDEN_SHOWN)), "{report}");
}

#[test]
fn server_text_logs_escape_invisible_characters_and_json_logs_keep_them() {
    for format in ["text", "json"] {
        let env = Env::new();
        env.ok(&["init"]);
        // A user stored before names were checked, whom ci-bot's key acts for.
        let name = format!("old-{HIDDEN}\u{202e}\x1b[2J");
        let shown = format!(r"old-{HIDDEN_SHOWN}\u{{202e}}\u{{1b}}[2J");
        store_user(&env, &name);
        let mut server = env.serve_with_env(
            &["--log-format", format],
            &[("RUST_LOG", "tokenauth=debug")],
        );
        let (_, key) = env.issue_key("ci-bot", &[]);
        env.ok(&["user", "grant", "ci-bot", "impersonate"]);
        let grant = env.ok(&["sign-grant", "--key", key.to_str().unwrap(), "--sub", &name]);
        let reply = post_form(
            &server,
            &[("grant_type", JWT_BEARER), ("assertion", grant.trim())],
            None,
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        let token = reply.json["access_token"].as_str().unwrap();
        let http = common::http();
        let auth = http.get(server.url("/auth")).bearer_auth(token).send();
        assert_eq!(auth.unwrap().status(), 200);
        let revoke = http
            .post(server.url("/revoke"))
            .form(&[("token", token)])
            .send();
        assert_eq!(revoke.unwrap().status(), 200);
        assert!(server.stop().success());
        let log = server.log();
        if format == "text" {
            assert_no_raw(&log);
            for said in ["token issued", "access token revoked", r#"path="/auth""#] {
                let line = line_with(&log, said);
                assert!(line.contains(&shown), "{format}: {line}");
            }
        } else {
            let lines: Vec<serde_json::Value> = log
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
            for (said, field) in [
                ("token issued", "sub"),
                ("access token revoked", "sub"),
                ("request", "user"),
            ] {
                let line = lines
                    .iter()
                    .find(|l| l["message"] == said && !l[field].is_null())
                    .unwrap_or_else(|| panic!("no {said:?} line in {log}"));
                assert_eq!(line[field], name.as_str(), "{line}");
            }
        }
    }
}

// ---- table width -----------------------------------------------------------------------------

/// What a table shows of an id: a prefix of 12 characters and an ellipsis.
fn short(id: &str) -> String {
    format!("{}…", &id[..12])
}

/// Runs tokenauth with COLUMNS set; returns stdout.
fn ok_in_columns(env: &Env, columns: &str, args: &[&str]) -> String {
    let out = env
        .cmd()
        .env("COLUMNS", columns)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn assert_fits(out: &str, columns: usize) {
    for line in out.lines() {
        assert!(
            line.chars().count() <= columns,
            "longer than {columns}: {line:?} in\n{out}"
        );
    }
}

/// Runs tokenauth with its standard output on a fresh pseudo-terminal `columns` wide (0: one
/// that reports no size, as some CI runners' do), in a session of its own so that no other
/// terminal can answer for it; returns what it printed, `\r\n` read back as `\n`.
fn on_a_terminal(env: &Env, args: &[&str], columns: u16) -> String {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;

    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};

    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let terminal = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
        .open(name.to_str().unwrap())
        .unwrap();
    rustix::termios::tcsetwinsize(
        &terminal,
        rustix::termios::Winsize {
            ws_row: 24,
            ws_col: columns,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .unwrap();
    let mut cmd = env.std_cmd(env!("CARGO_BIN_EXE_tokenauth"));
    cmd.args(args)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(terminal)
        .stderr(std::process::Stdio::piped());
    // SAFETY: setsid is async-signal-safe, and nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| rustix::process::setsid().map(drop).map_err(Into::into));
    }
    let out = cmd.output().unwrap();
    // The last copy of the terminal's end went with `cmd`: reading now ends (EIO on Linux)
    // once everything printed is read.
    drop(cmd);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut printed = Vec::new();
    let mut master = std::fs::File::from(master);
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = master.read(&mut buf) {
        printed.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(printed).unwrap().replace("\r\n", "\n")
}

#[test]
fn at_80_columns_a_key_row_fits_one_line_with_a_short_id_that_edit_and_revoke_take() {
    let env = Env::new();
    let (key_id, _) = env.issue_key("ci-bot", &["--title", "nightly build", "--expires", "90d"]);
    env.issue_key("deploy-bot", &["--title", "deploys", "--scope", "write"]);

    for table in [
        ok_in_columns(&env, "80", &["list-keys"]),
        on_a_terminal(&env, &["list-keys"], 80),
    ] {
        assert_fits(&table, 80);
        let row = line_with(&table, &short(&key_id));
        assert!(!row.contains(&key_id), "{row}");
        for cell in ["ci-bot", "nightly build", "read", "active"] {
            assert!(row.contains(cell), "{cell:?} not in {row}");
        }
        assert!(
            line_with(&table, "deploy-bot").contains("deploys"),
            "{table}"
        );
    }

    // The id as shown, copied with its ellipsis or without, is a prefix the commands take
    // back.
    let prefix = &key_id[..12];
    env.ok(&["edit-key", "--title", "renamed", "--", &short(&key_id)]);
    env.ok(&["revoke-key", "--yes", "--", prefix]);
    let keys = env.json(&["list-keys", "--all", "--json"]);
    let key = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == key_id.as_str())
        .unwrap();
    assert_eq!(key["title"], "renamed");
    assert_eq!(key["state"], "revoked");
}

#[test]
fn at_80_columns_token_list_fits_and_wraps_only_the_description() {
    let env = Env::new();
    let description = "GitHub webhook for the nightly release pipeline of the web shop";
    let pat = env.json(&[
        "token",
        "create",
        "--user",
        "webhook",
        "--description",
        description,
        "--json",
    ]);
    let id = pat["id"].as_str().unwrap();
    let table = ok_in_columns(&env, "80", &["token", "list"]);
    assert_fits(&table, 80);
    let row = line_with(&table, &short(id));
    for cell in ["webhook", "read", "active", "GitHub"] {
        assert!(row.contains(cell), "{cell:?} not in {row}");
    }
    let words: Vec<&str> = table
        .split_whitespace()
        .skip_while(|w| *w != "GitHub")
        .filter(|w| description.contains(*w))
        .collect();
    assert_eq!(words.join(" "), description, "{table}");

    env.ok(&["token", "revoke", "--yes", &id[..12]]);
    assert_eq!(
        env.json(&["token", "list", "--all", "--json"])[0]["state"],
        "revoked"
    );
}

#[test]
fn piped_or_on_a_terminal_of_no_size_a_table_keeps_its_natural_width() {
    let env = Env::new();
    let title = "the nightly build of the web shop, its release pipeline and all its stages";
    let (key_id, _) = env.issue_key("ci-bot", &["--title", title]);
    // No COLUMNS and no terminal width: nothing to squeeze the cells into.
    for table in [
        env.ok(&["list-keys"]),
        on_a_terminal(&env, &["list-keys"], 0),
    ] {
        assert_eq!(table.lines().count(), 2, "{table}");
        let row = line_with(&table, &short(&key_id));
        assert!(row.contains(title) && row.contains("ci-bot"), "{row}");
    }
    let users = on_a_terminal(&env, &["user", "list"], 0);
    assert!(line_with(&users, "ci-bot").contains("enabled"), "{users}");
}

#[test]
fn wide_shows_full_ids_times_and_every_column_on_one_line_and_json_stays_whole() {
    let env = Env::new();
    let (key_id, _) = env.issue_key(
        "ci-bot",
        &["--title", "nightly build", "--ip-range", "10.0.0.0/8"],
    );
    let table = ok_in_columns(&env, "80", &["list-keys", "--wide"]);
    let header = table.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>().join(" "),
        "KEY ID USER TITLE IP RANGES ORIGINS SCOPE ALG ISSUED EXPIRES LAST USED STATE"
    );
    let row = line_with(&table, &key_id);
    assert!(
        row.contains("nightly build") && row.contains("10.0.0.0/8"),
        "{row}"
    );
    assert!(row.chars().count() > 80, "{row}");
    let issued = env.json(&["list-keys", "--json"])[0]["issued"]
        .as_i64()
        .unwrap();
    assert!(row.contains(&tokenauth::clock::rfc3339(issued)), "{row}");
    assert_eq!(
        env.json(&["list-keys", "--json"])[0]["key_id"],
        key_id.as_str()
    );

    let table = ok_in_columns(&env, "80", &["audit", "--wide", "--action", "key"]);
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(line_with(&table, &key_id).contains("key.issue"), "{table}");

    let out = env
        .cmd()
        .args(["list-keys", "--wide", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("'--wide' cannot be used with '--json'"),
        "{err}"
    );
}

// ---- request -----------------------------------------------------------------------------

#[test]
fn request_ends_a_body_without_a_newline_with_one_only_on_a_terminal() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (_, key) = env.issue_key("ci-bot", &[]);
    let args = [
        "request",
        "--key",
        key.to_str().unwrap(),
        &server.url("/auth"),
    ];
    let piped = env.ok(&args);
    assert!(piped.starts_with('{') && piped.ends_with('}'), "{piped:?}");
    let shown = on_a_terminal(&env, &args, 80);
    assert_eq!(shown, format!("{piped}\n"));
}

// ---- durations ---------------------------------------------------------------------------

#[test]
fn durations_read_as_people_say_them_and_as_the_options_take_them() {
    let env = Env::new();
    let kept = |args: &[&str]| {
        let out = env.ok(args);
        line_with(&out, "audit rows kept").to_owned()
    };
    // The default, a 365-day year, not "11months 30days 3h 50m 24s".
    assert_eq!(kept(&["init"]), "audit rows kept: 365d");
    assert_eq!(
        kept(&["init", "--audit-retention", "400d"]),
        "audit rows kept: 400d"
    );
    assert_eq!(
        kept(&["init", "--audit-retention", "1y"]),
        "audit rows kept: 1y"
    );
    let report = env.ok(&["report", "--expiring-within", "12h"]);
    assert!(report.starts_with("Expiring within 12h: 0\n"), "{report}");
}

#[test]
fn at_80_columns_the_usage_log_keeps_its_outcome_readable() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let (key_id, key) = env.issue_key("ci-bot", &[]);
    env.ok(&["get-token", "--no-cache", "--key", key.to_str().unwrap()]);
    env.ok(&["revoke-key", "--yes", &key_id]);
    env.fails(&["get-token", "--no-cache", "--key", key.to_str().unwrap()]);
    let table = ok_in_columns(&env, "80", &["usage-log"]);
    assert!(table.lines().all(|l| l.chars().count() <= 80), "{table}");
    assert!(!table.contains("USER AGENT"), "{table}");
    // The reason wraps between words, never inside one.
    let words: Vec<&str> = table.split_whitespace().collect();
    for word in ["refused:", "Key", "has", "been", "revoked", "ok"] {
        assert!(words.contains(&word), "{word:?} whole in:\n{table}");
    }
    let wide = ok_in_columns(&env, "80", &["usage-log", "--wide"]);
    assert!(
        wide.contains("USER AGENT") && wide.contains(&key_id),
        "{wide}"
    );
}
