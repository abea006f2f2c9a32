//! The admin plane, end to end through the real binary on temporary stores.

mod common;

use std::process::Stdio;

use common::{Env, mode, on_both_backends};

#[test]
fn store_is_created_with_its_folder_and_mode_0600() {
    let env = Env::new();
    env.ok(&["init"]);
    assert_eq!(mode(&env.db()), 0o600);
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every file in the store's folder with its bytes and mode: what a refused command must
/// leave as it was.
fn snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>, u32)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap(), mode(&p))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_store_other_users_may_read_is_refused_by_every_command_until_chmod_600() {
    let env = Env::new_sqlite();
    env.ok(&["user", "add", "alice"]);
    let db = env.db();
    chmod(&db, 0o644);
    let before = snapshot(db.parent().unwrap());
    let want = format!(
        "refusing the store {0}: other local users may read or change it ({0} has mode 0644); run `chmod 600 {0}`",
        db.display()
    );
    for args in [&["user", "list"][..], &["user", "add", "bob"], &["init"]] {
        let err = env.fails(args);
        assert_eq!(
            err.trim_end(),
            format!("tokenauth: error: {want}"),
            "{args:?}"
        );
    }
    // The server too, before it listens.
    let out = env
        .cmd()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .timeout(std::time::Duration::from_secs(20))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&want));
    assert_eq!(
        snapshot(db.parent().unwrap()),
        before,
        "a refused store was touched"
    );

    // Group-readable only, or world-writable only, is no better.
    for bad in [0o640, 0o602, 0o660] {
        chmod(&db, bad);
        let err = env.fails(&["user", "list"]);
        assert!(err.contains(&format!("has mode {bad:04o}")), "{err}");
    }
    chmod(&db, 0o600);
    assert!(env.ok(&["user", "list"]).contains("alice"));
    env.ok(&["user", "add", "bob"]);
    assert_eq!(mode(&db), 0o600);
}

/// The -wal holds the newest writes until a checkpoint, the -shm its index: either open to
/// others exposes the store as much as the main file does.
#[test]
fn a_store_whose_wal_or_shm_other_users_may_read_is_refused_naming_that_file() {
    let env = Env::new_sqlite();
    env.ok(&["user", "add", "alice"]);
    let db = env.db();
    let wal = db.with_extension("db-wal");
    let shm = db.with_extension("db-shm");
    // As SQLite leaves them while another connection has the store open.
    std::fs::write(&wal, "").unwrap();
    chmod(&wal, 0o644);
    let err = env.fails(&["user", "list"]);
    assert!(
        err.contains(&format!("({} has mode 0644)", wal.display()))
            && err
                .trim_end()
                .ends_with(&format!("run `chmod 600 {}`", wal.display())),
        "{err}"
    );
    std::fs::write(&shm, "").unwrap();
    chmod(&shm, 0o604);
    let err = env.fails(&["user", "list"]);
    assert!(
        err.contains(&format!(
            "({} has mode 0644, {} has mode 0604)",
            wal.display(),
            shm.display()
        )) && err.trim_end().ends_with(&format!(
            "run `chmod 600 {} {}`",
            wal.display(),
            shm.display()
        )),
        "{err}"
    );
    chmod(&wal, 0o600);
    chmod(&shm, 0o600);
    assert!(env.ok(&["user", "list"]).contains("alice"));
}

/// SQLite follows a symbolic link and keeps the -wal and -shm beside the real file: those are
/// the files judged (a link's own mode means nothing).
#[test]
fn a_store_reached_through_a_symlink_is_judged_by_the_files_sqlite_uses() {
    let env = Env::new_sqlite();
    env.ok(&["user", "add", "alice"]);
    let link = env.path().join("link.db");
    std::os::unix::fs::symlink(env.db(), &link).unwrap();
    let link_arg = link.to_str().unwrap();
    assert!(
        env.ok(&["--db", link_arg, "user", "list"])
            .contains("alice")
    );
    let wal = std::fs::canonicalize(env.db())
        .unwrap()
        .with_extension("db-wal");
    std::fs::write(&wal, "").unwrap();
    chmod(&wal, 0o644);
    let err = env.fails(&["--db", link_arg, "user", "list"]);
    assert!(
        err.contains(&format!("({} has mode 0644)", wal.display())),
        "{err}"
    );
}

#[test]
fn the_chmod_fix_names_a_path_with_spaces_as_one_shell_word() {
    let env = Env::new_sqlite();
    let db = env.path().join("my store.db");
    let db_arg = db.to_str().unwrap();
    env.ok(&["--db", db_arg, "user", "add", "alice"]);
    chmod(&db, 0o644);
    let err = env.fails(&["--db", db_arg, "user", "list"]);
    assert!(
        err.trim_end()
            .ends_with(&format!("run `chmod 600 '{}'`", db.display())),
        "{err}"
    );
}

/// Another user's store could have been filled with keys by that user. Root may use it:
/// root administers the service user's store in the documented setup (and can read any
/// file anyway). Needs root, to own files as another user and to run as one.
#[test]
fn a_store_another_user_owns_is_refused_unless_the_caller_is_root() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new_sqlite();
    env.ok(&["user", "add", "alice"]);
    let db = env.db();
    if std::fs::metadata(&db).unwrap().uid() != 0 {
        eprintln!("skipping: needs root, to give the store to another user");
        return;
    }
    let has_setpriv = std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_setpriv {
        eprintln!("skipping: needs setpriv (util-linux), to run as another user");
        return;
    }
    // nobody may reach the store's folder, and so stat the file, but not read it.
    for dir in [env.path(), db.parent().unwrap()] {
        chmod(dir, 0o755);
    }
    let out = env
        .std_cmd("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_tokenauth"))
        .args(["user", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "tokenauth: error: refusing the store {0}: {0} is owned by uid 0, not by this process's user (uid 65534); run tokenauth as uid 0, or make this user its owner with `chown 65534 {0}`",
            db.display()
        )
    );
    // Root uses the store whoever owns it; SQLite gives what root creates beside it the
    // store's owner.
    std::os::unix::fs::chown(&db, Some(65534), Some(65534)).unwrap();
    env.ok(&["user", "add", "bob"]);
    assert!(env.ok(&["user", "list"]).contains("bob"));
    for file in std::fs::read_dir(db.parent().unwrap()).unwrap() {
        let file = file.unwrap().path();
        assert_eq!(std::fs::metadata(&file).unwrap().uid(), 65534, "{file:?}");
    }
}

#[test]
fn default_store_location_is_under_xdg_data_home() {
    let env = Env::new();
    env.cmd()
        .env_remove("TOKENAUTH_DB")
        .args(["user", "add", "a"])
        .assert()
        .success();
    let db = env.path().join("data/tokenauth/tokenauth.db");
    assert_eq!(mode(&db), 0o600);
}

#[test]
fn corrupt_and_too_new_stores_are_refused() {
    let env = Env::new();
    let junk = env.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    chmod(&junk, 0o600);
    let err = env.fails(&["--db", junk.to_str().unwrap(), "user", "list"]);
    assert!(err.contains("not a tokenauth store"), "{err}");

    env.ok(&["init"]);
    let conn = rusqlite_free_bump_version(&env.db());
    assert!(conn);
    let err = env.fails(&["user", "list"]);
    assert!(err.contains("newer tokenauth"), "{err}");
}

/// Sets the store's user_version far ahead, with the sqlite3 shell if present or by
/// patching the header (offset 60, big-endian) otherwise.
fn rusqlite_free_bump_version(db: &std::path::Path) -> bool {
    // Checkpointed already: the header is in the main file.
    let mut bytes = std::fs::read(db).unwrap();
    bytes[60..64].copy_from_slice(&999u32.to_be_bytes());
    std::fs::write(db, bytes).unwrap();
    let _ = std::fs::remove_file(db.with_extension("db-wal"));
    let _ = std::fs::remove_file(db.with_extension("db-shm"));
    true
}

#[test]
fn unwritable_store_location_is_a_clear_error() {
    let env = Env::new();
    std::fs::write(env.path().join("file"), "").unwrap();
    let err = env.fails(&["--db", "file/sub/t.db", "user", "list"]);
    assert!(
        err.contains("cannot open the store") && err.contains("file/sub/t.db"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    env.cmd().args(["no-such-command"]).assert().code(2);
    env.cmd().args(["issue-key"]).assert().code(2);
    env.cmd()
        .args(["issue-key", "--user", "a", "--bits", "1024"])
        .assert()
        .code(2);
}

#[test]
fn concurrent_writers_never_see_database_is_locked() {
    let env = Env::new();
    env.ok(&["init"]);
    let children: Vec<_> = (0..2)
        .map(|p| {
            let script = (0..15)
                .map(|i| format!("\"$0\" user add u{p}-{i} && \"$0\" user grant u{p}-{i} impersonate && \"$0\" rotate-secret u{p}-{i} --yes"))
                .collect::<Vec<_>>()
                .join(" && ");
            let bin = assert_cmd::cargo::cargo_bin("tokenauth");
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .arg(bin)
                .env("TOKENAUTH_DB", env.db())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && !err.contains("locked"), "{err}");
    }
    assert_eq!(
        env.json(&["user", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        30
    );
}

#[test]
fn first_use_by_two_processes_at_once_migrates_once() {
    for _ in 0..5 {
        let env = Env::new();
        let bin = assert_cmd::cargo::cargo_bin("tokenauth");
        let children: Vec<_> = (0..3)
            .map(|i| {
                std::process::Command::new(&bin)
                    .args(["user", "add", &format!("u{i}")])
                    .env("TOKENAUTH_DB", env.db())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(
            env.json(&["user", "list", "--json"])
                .as_array()
                .unwrap()
                .len(),
            3
        );
    }
}

on_both_backends! {
fn issue_list_edit_revoke_round_trip() {
    let env = Env::new();
    let (key_id, _) = env.issue_key("ci-bot", &["--title", "build", "--ip-range", "10.0.0.0/8"]);

    let keys = env.json(&["list-keys", "--json"]);
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert_eq!(keys[0]["key_id"], key_id.as_str());
    assert_eq!(keys[0]["title"], "build");
    assert_eq!(keys[0]["ip_ranges"][0], "10.0.0.0/8");
    assert_eq!(keys[0]["state"], "active");

    env.ok(&[
        "edit-key",
        &key_id,
        "--title",
        "nightly",
        "--ip-range",
        "192.168.1.1, 2001:db8::/32",
    ]);
    let keys = env.json(&["list-keys", "--json"]);
    assert_eq!(keys[0]["title"], "nightly");
    assert_eq!(
        keys[0]["ip_ranges"],
        serde_json::json!(["192.168.1.1/32", "2001:db8::/32"])
    );

    env.ok(&["edit-key", &key_id[..8], "--no-ip-range"]);
    assert_eq!(
        env.json(&["list-keys", "--json"])[0]["ip_ranges"],
        serde_json::json!([])
    );

    env.ok(&["revoke-key", &key_id, "--yes"]);
    assert_eq!(env.json(&["list-keys", "--json"]), serde_json::json!([]));
    let all = env.json(&["list-keys", "--all", "--json"]);
    assert_eq!(all[0]["state"], "revoked");

    let table = env.ok(&["list-keys", "--all"]);
    assert!(
        table.contains("KEY ID") && table.contains(&key_id[..12]) && table.contains("revoked"),
        "{table}"
    );
}

fn key_file_has_the_ftw_tokenauth_fields_and_mode_0600() {
    let env = Env::new();
    env.ok(&["init", "--token-uri", "https://auth.example.com/token"]);
    let (key_id, file) = env.issue_key("ci-bot", &[]);
    assert_eq!(mode(&file), 0o600);
    let kf: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    for field in [
        "key_id",
        "client_id",
        "user_id",
        "issued",
        "token_uri",
        "private_key",
    ] {
        assert!(kf[field].is_string(), "missing {field}: {kf}");
    }
    assert_eq!(kf["key_id"], key_id.as_str());
    assert_eq!(kf["user_id"], "ci-bot");
    assert_eq!(kf["token_uri"], "https://auth.example.com/token");
    assert_eq!(kf["client_id"].as_str().unwrap().len(), 32);
    assert!(
        kf["private_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN RSA PRIVATE KEY-----")
    );
    assert!(kf["issued"].as_str().unwrap().ends_with('Z'));
}

fn default_key_file_name_is_user_and_short_key_id() {
    let env = Env::new();
    let out = env
        .cmd()
        .args(["issue-key", "--user", "ci-bot"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Created user ci-bot") && stderr.contains("shown this once"),
        "{stderr}"
    );
    let files: Vec<_> = std::fs::read_dir(env.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|n| n.starts_with("ci-bot-") && n.ends_with(".json"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(stderr.contains(&files[0]), "{stderr}");
}

fn bad_ip_ranges_are_refused_naming_the_bad_part() {
    let env = Env::new();
    for (ranges, part) in [
        (
            "10.0.0.1/8",
            "'10.0.0.1/8' has host bits set; did you mean 10.0.0.0/8?",
        ),
        ("10.0.0.0/8, bogus", "'bogus'"),
        ("300.1.1.1", "'300.1.1.1'"),
        ("10.0.0.0/40", "'10.0.0.0/40'"),
        ("10.0.0.0/8,,1.2.3.4", "empty entry"),
    ] {
        let err = env.fails(&[
            "issue-key",
            "--user",
            "u",
            "--ip-range",
            ranges,
            "--out",
            "k.json",
        ]);
        assert!(err.contains(part), "{ranges}: {err}");
    }
    assert!(!env.path().join("k.json").exists());
    let (key_id, _) = env.issue_key("u", &[]);
    let err = env.fails(&["edit-key", &key_id, "--ip-range", "1.2.3.4/33"]);
    assert!(err.contains("'1.2.3.4/33'"), "{err}");
}

fn refuses_to_overwrite_a_key_file() {
    let env = Env::new();
    env.ok(&["init"]);
    let path = env.path().join("k.json");
    std::fs::write(&path, "precious").unwrap();
    let err = env.fails(&["issue-key", "--user", "u", "--out", "k.json"]);
    assert!(
        err.contains("refusing to overwrite") && err.contains("k.json"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    assert_eq!(env.json(&["list-keys", "--json"]), serde_json::json!([]));
}

fn unwritable_key_path_leaves_no_key_behind() {
    let env = Env::new();
    env.ok(&["init"]);
    let err = env.fails(&["issue-key", "--user", "u", "--out", "no/such/dir/k.json"]);
    assert!(err.contains("no/such/dir"), "{err}");
    assert_eq!(env.json(&["list-keys", "--json"]), serde_json::json!([]));
}

fn out_dash_prints_the_key_file() {
    let env = Env::new();
    let kf: serde_json::Value =
        serde_json::from_str(&env.ok(&["issue-key", "--user", "u", "--out", "-"])).unwrap();
    assert_eq!(kf["user_id"], "u");
    assert_eq!(
        env.json(&["list-keys", "--json"])[0]["key_id"],
        kf["key_id"]
    );
}

fn json_output_parses_for_every_listing() {
    let env = Env::new();
    env.issue_key("a", &["--scope", "write", "--expires", "30d"]);
    let users = env.json(&["user", "list", "--json"]);
    assert_eq!(users[0]["name"], "a");
    assert_eq!(users[0]["active_keys"], 1);
    let keys = env.json(&["list-keys", "--user", "a", "--json"]);
    assert_eq!(keys[0]["scope"], "write");
    assert!(
        keys[0]["expires"].as_i64().unwrap() > keys[0]["issued"].as_i64().unwrap() + 29 * 86_400
    );
    let init = env.json(&["init", "--json"]);
    assert_eq!(init["token_uri"], "http://127.0.0.1:8080/token");
}

fn users_permissions_and_states() {
    let env = Env::new();
    env.ok(&["user", "add", "a"]);
    assert!(
        env.fails(&["user", "add", "a"])
            .contains("user 'a' already exists")
    );
    env.ok(&["user", "grant", "a", "impersonate"]);
    env.ok(&["user", "disable", "a"]);
    let u = env.json(&["user", "list", "--json"]);
    assert_eq!(u[0]["permissions"], serde_json::json!(["impersonate"]));
    assert_eq!(u[0]["disabled"], true);
    env.ok(&["user", "revoke", "a", "impersonate"]);
    env.ok(&["user", "enable", "a"]);
    let u = env.json(&["user", "list", "--json"]);
    assert_eq!(u[0]["permissions"], serde_json::json!([]));
    assert_eq!(u[0]["disabled"], false);
    assert!(
        env.fails(&["user", "disable", "ghost"])
            .contains("no user named 'ghost'")
    );
    assert!(
        env.fails(&["user", "add", "two words"])
            .contains("invalid user name")
    );
}

fn removing_a_user_needs_its_keys_revoked_first() {
    let env = Env::new();
    let (key_id, _) = env.issue_key("a", &[]);
    assert!(
        env.fails(&["user", "remove", "a", "--yes"])
            .contains("still has 1 active key")
    );
    env.ok(&["revoke-key", &key_id, "--yes"]);
    env.ok(&["user", "remove", "a", "--yes"]);
    assert_eq!(env.json(&["user", "list", "--json"]), serde_json::json!([]));
    // The revoked key (and its usage log) are kept.
    assert_eq!(env.json(&["list-keys", "--all", "--json"])[0]["user"], "a");
}

fn destructive_commands_refuse_without_a_terminal_or_yes() {
    let env = Env::new();
    let (key_id, _) = env.issue_key("a", &[]);
    let err = env.fails(&["revoke-key", &key_id]);
    assert!(err.contains("--yes"), "{err}");
    assert!(env.fails(&["rotate-secret", "a"]).contains("--yes"));
    assert_eq!(env.json(&["list-keys", "--json"])[0]["state"], "active");
}

fn rotate_secret_needs_a_user_or_all_users() {
    let env = Env::new();
    env.ok(&["user", "add", "a"]);
    env.ok(&["user", "add", "b"]);
    env.cmd().args(["rotate-secret"]).assert().code(2);
    env.ok(&["rotate-secret", "a", "--yes"]);
    env.ok(&["rotate-secret", "--all-users", "--yes"]);
    assert!(
        env.fails(&["rotate-secret", "ghost", "--yes"])
            .contains("no user named 'ghost'")
    );
}

fn unknown_and_ambiguous_keys_have_clear_errors() {
    let env = Env::new();
    env.ok(&["init"]);
    assert!(
        env.fails(&["revoke-key", "nope", "--yes"])
            .contains("no key with id 'nope'")
    );
    assert!(
        env.fails(&["edit-key", "nope", "--title", "x"])
            .contains("no key with id 'nope'")
    );
    env.cmd().args(["edit-key"]).assert().code(2);
}
}
