//! The audit trail and the key hygiene commands, through the real binary: the rows each admin
//! change leaves, tampering found by `audit verify`, retention, `list-keys` filters on a fixed
//! clock, `report --fail-on` and `usage-log --summary`.

mod common;

use common::Env;
use serde_json::Value;

const DAY: i64 = 86_400;
/// A fixed "now" for tests that move the clock (2026-01-01T00:00:00Z).
const T0: i64 = 1_767_225_600;

fn at(t: i64) -> String {
    t.to_string()
}

fn audit(env: &Env) -> Vec<Value> {
    env.json(&["audit", "--json", "--limit", "1000"])
        .as_array()
        .unwrap()
        .clone()
}

/// Runs `audit verify` and returns (exit code, stdout + stderr).
fn verify(env: &Env) -> (i32, String) {
    let out = env.cmd().args(["audit", "verify"]).output().unwrap();
    (
        out.status.code().unwrap(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn sql(env: &Env, statement: &str) {
    if let Some(pg) = &env.pg {
        tokenauth::store::PgUrl::parse(&pg.url)
            .unwrap()
            .connect()
            .unwrap()
            .batch_execute(statement)
            .unwrap();
        return;
    }
    let conn = rusqlite::Connection::open(env.db()).unwrap();
    conn.execute_batch(statement).unwrap();
}

#[test]
fn no_private_key_token_or_secret_reaches_the_audit_trail() {
    let env = Env::new();
    let (_, file) = env.issue_key("bob", &[]);
    let token = env.ok(&["token", "create", "--user", "bob"]);
    let token = token.trim();
    let key: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let pem = key["private_key"].as_str().unwrap();
    let conn = rusqlite::Connection::open(env.db()).unwrap();
    let dump: String = conn
        .query_row(
            "SELECT group_concat(actor || action || target || changes, ' ') FROM audit",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let pem_body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!dump.contains(&pem_body[..40]));
    assert!(!dump.contains(token) && !dump.contains(&token[6..20]));
    let hash: String = tokenauth::pat::hash(token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!dump.contains(&hash));
    let secret: Vec<u8> = conn
        .query_row(
            "SELECT secret FROM secrets WHERE user_name = 'bob'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!dump.contains(&hex));
    assert!(dump.contains("token.create") && dump.contains("key.issue"));
}

#[test]
fn verify_names_an_edited_row_whose_hash_was_recomputed() {
    let env = Env::new();
    for u in ["a", "b", "c"] {
        env.ok(&["user", "add", u]);
    }
    // Rewrite row 2 and its own hash: the next row still links to the old one.
    let conn = rusqlite::Connection::open(env.db()).unwrap();
    conn.execute("UPDATE audit SET hash = 'f00d' WHERE id = 2", [])
        .unwrap();
    drop(conn);
    let (code, text) = verify(&env);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("row 2 was edited"), "{text}");
}

// ---- key hygiene ----------------------------------------------------------------------------

fn ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["title"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

common::on_both_backends! {
fn every_admin_change_leaves_one_row_naming_actor_action_target_and_changes() {
    let env = Env::new();
    env.ok(&["init", "--token-uri", "https://auth.example.com/token"]);
    env.ok(&["user", "add", "alice"]);
    env.ok(&["user", "grant", "alice", "impersonate"]);
    env.ok(&["user", "revoke", "alice", "impersonate"]);
    env.ok(&["user", "disable", "alice"]);
    env.ok(&["user", "enable", "alice"]);
    let (key_id, _) = env.issue_key("bob", &["--ip-range", "10.0.0.0/8"]);
    env.ok(&["edit-key", &key_id, "--title", "nightly", "--no-ip-range"]);
    env.ok(&["revoke-key", &key_id, "--yes"]);
    env.ok(&["rotate-secret", "bob", "--yes"]);
    let pat = env.json(&["token", "create", "--user", "bob", "--json"]);
    let pat_id = pat["id"].as_str().unwrap();
    env.ok(&["token", "edit", pat_id, "--description", "hook"]);
    env.ok(&["token", "revoke", pat_id, "--yes"]);
    env.ok(&["user", "add", "gone"]);
    env.ok(&["user", "remove", "gone", "--yes"]);
    // No change, no row.
    env.ok(&["user", "enable", "alice"]);

    let rows = audit(&env);
    let seen: Vec<(String, String)> = rows
        .iter()
        .rev()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(&str, &str)> = vec![
        // init's; the default is never written.
        ("settings.set", "token_uri"),
        ("user.add", "alice"),
        ("user.grant", "alice"),
        ("user.revoke", "alice"),
        ("user.disable", "alice"),
        ("user.enable", "alice"),
        ("user.add", "bob"),
        ("key.issue", &key_id),
        ("key.edit", &key_id),
        ("key.revoke", &key_id),
        ("user.rotate-secret", "bob"),
        ("token.create", pat_id),
        ("token.edit", pat_id),
        ("token.revoke", pat_id),
        ("user.add", "gone"),
        ("user.remove", "gone"),
    ];
    let want: Vec<(String, String)> = want
        .into_iter()
        .map(|(a, t)| (a.to_owned(), t.to_owned()))
        .collect();
    assert_eq!(seen, want);

    // The CLI's actor is the OS user at the host.
    assert!(
        rows.iter()
            .all(|r| r["actor"].as_str().unwrap().contains('@')),
        "{rows:?}"
    );
    let edit = rows.iter().find(|r| r["action"] == "key.edit").unwrap();
    assert_eq!(
        edit["changes"],
        serde_json::json!({
            "title": { "from": "", "to": "nightly" },
            "ip_ranges": { "from": "10.0.0.0/8", "to": "" }
        })
    );
    let removed = rows.iter().find(|r| r["action"] == "user.remove").unwrap();
    assert_eq!(
        removed["changes"]["disabled"],
        serde_json::json!({ "from": false, "to": null })
    );
    let grant = rows.iter().find(|r| r["action"] == "user.grant").unwrap();
    assert_eq!(grant["changes"]["permissions"]["to"], "impersonate");

    // Filters, and the table.
    let keys = env.json(&["audit", "--action", "key", "--json"]);
    assert_eq!(keys.as_array().unwrap().len(), 3);
    let alice = env.json(&["audit", "--target", "alice", "--json"]);
    assert_eq!(alice.as_array().unwrap().len(), 5);
    assert_eq!(alice[0]["action"], "user.enable", "newest first");
    let actor = rows[0]["actor"].as_str().unwrap().to_owned();
    let user_part = actor.split('@').next().unwrap();
    assert_eq!(
        env.json(&["audit", "--actor", user_part, "--json"])
            .as_array()
            .unwrap()
            .len(),
        rows.len()
    );
    assert_eq!(
        env.json(&["audit", "--actor", "nobody-else", "--json"]),
        serde_json::json!([])
    );
    let table = env.ok(&["audit"]);
    assert!(table.contains("title: '' → nightly"), "{table}");
    let (code, text) = verify(&env);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("16 rows checked"), "{text}");
}

fn verify_names_an_edited_row() {
    let env = Env::new();
    for u in ["a", "b", "c", "d"] {
        env.ok(&["user", "add", u]);
    }
    assert_eq!(verify(&env).0, 0);
    sql(&env, "UPDATE audit SET target = 'mallory' WHERE id = 3");
    let (code, text) = verify(&env);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("row 3 was edited"), "{text}");
}

fn verify_names_a_deleted_row_and_a_deleted_newest_row() {
    let env = Env::new();
    for u in ["a", "b", "c", "d"] {
        env.ok(&["user", "add", u]);
    }
    // Rows: 1-4 the users.
    sql(&env, "DELETE FROM audit WHERE id = 4");
    let (code, text) = verify(&env);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("row 4 (the newest) was deleted"), "{text}");

    let env = Env::new();
    for u in ["a", "b", "c", "d"] {
        env.ok(&["user", "add", u]);
    }
    sql(&env, "DELETE FROM audit WHERE id = 3");
    let (code, text) = verify(&env);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("row 3 was deleted"), "{text}");
    let json = env
        .cmd()
        .args(["audit", "verify", "--json"])
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        (v["ok"].clone(), v["row"].clone()),
        (Value::Bool(false), 3.into())
    );
}

fn retention_prunes_old_rows_and_verify_starts_at_the_checkpoint() {
    let env = Env::new();
    let now = |t: i64| vec![("TOKENAUTH_NOW", at(t))];
    let run = |args: &[&str], t: i64| {
        let vars = now(t);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.ok_with_env(args, &vars)
    };
    run(&["init", "--audit-retention", "2d"], T0);
    run(&["user", "add", "old"], T0);
    run(&["user", "add", "middle"], T0 + DAY);
    assert_eq!(audit(&env).len(), 3);
    // Three days on: the rows from T0 are past the retention; the one from T0 + 1d is not.
    run(&["user", "add", "new"], T0 + 3 * DAY);
    let targets: Vec<String> = audit(&env)
        .iter()
        .map(|r| r["target"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(targets, vec!["new", "middle"]);
    let (code, text) = verify(&env);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("2 rows checked (after row 2"), "{text}");
    // The checkpoint holds: deleting the first row after it is still found.
    sql(&env, "DELETE FROM audit WHERE target = 'middle'");
    let (code, text) = verify(&env);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("row 3 was deleted"), "{text}");
}

fn audit_retention_must_be_a_day_or_more() {
    let env = Env::new();
    let err = env
        .cmd()
        .args(["init", "--audit-retention", "1h"])
        .output()
        .unwrap();
    assert_eq!(err.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&err.stderr).contains("at least 1d"));
}

fn list_keys_filters_on_a_fixed_clock() {
    let env = Env::new();
    let vars = |t: i64| [("TOKENAUTH_NOW", at(t))];
    let issue = |title: &str, extra: &[&str], t: i64| {
        let v = vars(t);
        let v: Vec<(&str, &str)> = v.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut args = vec!["--title", title];
        args.extend_from_slice(extra);
        env.issue_key_with_env(if title == "other" { "other" } else { "ci" }, &args, &v)
            .0
    };
    issue("soon", &["--expires", "10d"], T0);
    issue("later", &["--expires", "60d", "--scope", "write"], T0);
    issue("never", &[], T0);
    issue("other", &["--scope", "write"], T0 + 50 * DAY);
    let list = |args: &[&str], t: i64| {
        let v = vars(t);
        let v: Vec<(&str, &str)> = v.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut all = vec!["list-keys", "--json"];
        all.extend_from_slice(args);
        ids(&serde_json::from_str(&env.ok_with_env(&all, &v)).unwrap())
    };
    assert_eq!(list(&["--expiring-within", "30d"], T0), ["soon"]);
    assert_eq!(list(&["--expiring-within", "90d"], T0), ["later", "soon"]);
    // An expired key is not "expiring".
    assert_eq!(
        list(&["--expiring-within", "45d"], T0 + 20 * DAY),
        ["later"]
    );
    assert_eq!(list(&["--state", "expired"], T0 + 20 * DAY), ["soon"]);
    assert_eq!(
        list(&["--state", "active"], T0 + 20 * DAY),
        ["later", "never", "other"]
    );
    assert_eq!(
        list(&["--scope", "write"], T0 + 50 * DAY),
        ["later", "other"]
    );
    assert_eq!(list(&["--user", "other"], T0 + 50 * DAY), ["other"]);
    // Never used counts from the issue: "other" was issued 50 days later.
    assert_eq!(
        list(&["--unused-for", "90d"], T0 + 100 * DAY),
        ["later", "never", "soon"]
    );
    assert_eq!(list(&["--unused-for", "90d"], T0 + 140 * DAY).len(), 4);
    assert_eq!(
        list(
            &[
                "--unused-for",
                "90d",
                "--scope",
                "write",
                "--state",
                "expired"
            ],
            T0 + 100 * DAY
        ),
        ["later"]
    );
    // Revoked keys: only with --all or --state revoked.
    let key = env.json(&["list-keys", "--user", "other", "--json"])[0]["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.ok(&["revoke-key", &key, "--yes"]);
    assert_eq!(list(&["--state", "revoked"], T0 + 50 * DAY), ["other"]);
    assert!(!list(&[], T0 + 50 * DAY).contains(&"other".to_owned()));
    let bad = env
        .cmd()
        .args(["list-keys", "--expiring-within", "soon"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("'soon'"));
}

fn report_lists_findings_and_fails_on_the_kinds_named() {
    let env = Env::new();
    let t0 = at(T0);
    let vars = [("TOKENAUTH_NOW", t0.as_str())];
    env.issue_key_with_env("deployer", &["--scope", "write", "--title", "wide"], &vars);
    env.issue_key_with_env(
        "ci",
        &[
            "--expires",
            "10d",
            "--ip-range",
            "10.0.0.0/8",
            "--title",
            "soon",
        ],
        &vars,
    );
    env.ok_with_env(
        &[
            "token",
            "create",
            "--user",
            "hook",
            "--scope",
            "write",
            "--ip-range",
            "10.0.0.0/8",
        ],
        &vars,
    );
    env.ok(&["user", "grant", "deployer", "impersonate"]);
    env.ok(&["user", "disable", "ci"]);

    let report = env.json(&["report", "--json"]);
    let titles = |kind: &str| -> Vec<String> {
        report[kind]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                format!(
                    "{}:{}",
                    f["kind"].as_str().unwrap(),
                    f["user"].as_str().unwrap()
                )
            })
            .collect()
    };
    // Run at the real time, long after T0: the 10-day key has expired, all are unused.
    assert_eq!(titles("expiring"), Vec::<String>::new());
    let mut unused = titles("unused");
    unused.sort();
    assert_eq!(unused, ["key:deployer", "token:hook"]);
    assert_eq!(titles("write_without_ip_range"), ["key:deployer"]);
    assert_eq!(report["impersonate"], serde_json::json!(["deployer"]));
    assert_eq!(titles("disabled_with_keys"), Vec::<String>::new());

    // At T0 + 5d: the 10-day key is expiring; the disabled user still has it.
    let t5 = at(T0 + 5 * DAY);
    let at5 = [("TOKENAUTH_NOW", t5.as_str())];
    let r: Value = serde_json::from_str(&env.ok_with_env(&["report", "--json"], &at5)).unwrap();
    assert_eq!(r["expiring"][0]["title"], "soon");
    assert_eq!(r["disabled_with_keys"][0]["user"], "ci");
    assert_eq!(r["unused"], serde_json::json!([]));

    let code = |args: &[&str], vars: &[(&str, &str)]| {
        let mut c = env.cmd();
        c.args(args).envs(vars.iter().copied());
        let out = c.output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code(&["report"], &at5).0, 0);
    let (c, err) = code(&["report", "--fail-on", "expiring,unused"], &at5);
    assert_eq!(c, 1);
    assert!(
        err.contains("expiring (1)") && !err.contains("unused"),
        "{err}"
    );
    assert_eq!(code(&["report", "--fail-on", "unused"], &at5).0, 0);
    assert_eq!(
        code(&["report", "--fail-on", "write-without-ip-range"], &at5).0,
        1
    );
    assert_eq!(code(&["report", "--fail-on", "impersonate"], &at5).0, 1);
    assert_eq!(
        code(&["report", "--fail-on", "disabled-with-keys"], &at5).0,
        1
    );
    assert_eq!(code(&["report", "--fail-on", "bogus"], &at5).0, 2);
    let table = env.ok_with_env(&["report"], &at5);
    assert!(table.contains("Expiring within 30d: 1"), "{table}");
    assert!(
        table.contains("Users who may impersonate: deployer"),
        "{table}"
    );
}

fn usage_summary_counts_issuances_and_refusals_per_key_with_a_daily_chart() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (key_id, file) = env.issue_key("ci", &[]);
    let (quiet_id, _) = env.issue_key("quiet", &[]);
    let f = file.to_str().unwrap();
    env.ok(&["get-token", "--key", f, "--no-cache"]);
    env.ok(&["get-token", "--key", f, "--no-cache"]);
    // Refused: impersonation without the permission.
    let out = env
        .cmd()
        .args(["get-token", "--key", f, "--no-cache", "--sub", "quiet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    drop(server);

    let s = env.json(&["usage-log", "--summary", "--json"]);
    let keys = s["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{s}");
    let k = &keys[0];
    assert_eq!(k["key_id"], key_id.as_str());
    assert_eq!(
        (k["issuances"].as_i64(), k["refusals"].as_i64()),
        (Some(2), Some(1))
    );
    let reasons = k["refusals_by_reason"].as_object().unwrap();
    assert_eq!(reasons.len(), 1);
    assert_eq!(reasons.values().next().unwrap(), 1);
    assert!(k["first_use"].as_i64().unwrap() <= k["last_use"].as_i64().unwrap());
    let days = k["per_day"].as_array().unwrap();
    assert_eq!(days.len(), 8, "7 days back and today");
    let today = days.last().unwrap();
    assert_eq!(
        (today["issuances"].as_i64(), today["refusals"].as_i64()),
        (Some(2), Some(1))
    );

    let table = env.ok(&["usage-log", "--summary", "--since", "3d"]);
    assert!(table.contains("|···█|"), "{table}");
    assert!(
        table.contains(&key_id[..12]) && !table.contains(&quiet_id[..12]),
        "{table}"
    );
    assert!(table.contains("1× "), "{table}");
    let only = env.json(&["usage-log", "--summary", "--json", &quiet_id]);
    assert_eq!(only["keys"], serde_json::json!([]));
}
}
