//! The client against a token endpoint it must not trust (served by the test on 127.0.0.1)
//! and a token cache someone else controls: nothing a rogue answer or a planted cache file
//! holds reaches stdout, a shell, `$GITHUB_ENV` or the cache.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::Env;
use common::web::{Answer, Site};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_tokenauth");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A token endpoint that answers every request with 200 and `body`.
fn endpoint(body: String) -> Site {
    Site::start(move |_| Answer {
        status: 200,
        content_type: "application/json",
        body: body.clone(),
    })
}

/// A key file of a real key whose token_uri is `uri` (the grant is signed as for any server).
fn key_for(env: &Env, uri: &str) -> PathBuf {
    let (_, key) = env.issue_key("ci-bot", &[]);
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&key).unwrap()).unwrap();
    v["token_uri"] = uri.into();
    std::fs::write(&key, serde_json::to_vec(&v).unwrap()).unwrap();
    key
}

fn cache_dir(env: &Env) -> PathBuf {
    env.path().join("cache").join("tokenauth")
}

/// Everything in the cache folder but lock files (which exist before any token is fetched).
fn cache_entries(env: &Env) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(cache_dir(env)) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_none_or(|e| e != "lock"))
        .collect();
    v.sort();
    v
}

fn run(env: &Env, args: &[&str]) -> Output {
    env.cmd().args(args).output().unwrap()
}

/// Exit 1, nothing on stdout, exactly one `tokenauth: error:` line; returns it.
fn one_error(what: &str, out: &Output) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert!(
        out.stdout.is_empty(),
        "{what}: printed {:?}",
        text(&out.stdout)
    );
    assert!(err.starts_with("tokenauth: error: "), "{what}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{what}: not one line: {err}"
    );
    err.trim_end().to_owned()
}

/// What a rogue endpoint answers, and what the error must say about it.
fn rogue_answers() -> Vec<(&'static str, String, &'static str)> {
    let good = |field: &str, value: serde_json::Value| {
        let mut v = json!({
            "access_token": "eyJhbGciOiJIUzI1NiJ9.e30.c2ln",
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": "read",
        });
        v[field] = value;
        v.to_string()
    };
    let token = |t: &str| good("access_token", t.into());
    vec![
        (
            "quote, semicolon and newline",
            token("x'; touch /tmp/p; echo '\nGITHUB_TOKEN=evil"),
            "its access_token holds U+0027 at character 2",
        ),
        ("semicolon", token("a;b"), "';' (U+003B) at character 2"),
        (
            "newline",
            token("ab\nGITHUB_TOKEN=evil"),
            "U+000A at character 3",
        ),
        ("carriage return", token("ab\rc"), "U+000D at character 3"),
        ("space", token("ab c"), "U+0020 at character 3"),
        ("NUL", token("ab\0c"), "U+0000 at character 3"),
        ("non-ASCII", token("abcé"), "U+00E9 at character 4"),
        (
            "bidi control",
            token("ab\u{202E}c"),
            "U+202E at character 3",
        ),
        ("empty token", token(""), "its access_token is empty"),
        (
            "huge token",
            token(&"A".repeat(20_000)),
            "its access_token is 20000 bytes long, over the 8192 accepted",
        ),
        (
            "token not a string",
            good("access_token", json!(["a"])),
            "its access_token is an array, not a string",
        ),
        (
            "no token",
            json!({"token_type": "Bearer", "expires_in": 3600}).to_string(),
            "it has no access_token",
        ),
        (
            "expires_in -1",
            good("expires_in", json!(-1)),
            "its expires_in is -1;",
        ),
        (
            "expires_in 0",
            good("expires_in", json!(0)),
            "its expires_in is 0;",
        ),
        (
            "expires_in a string",
            good("expires_in", json!("3600")),
            "its expires_in is a string, not a number",
        ),
        (
            "expires_in 1e30",
            good("expires_in", json!(1e30)),
            "its expires_in is 1e+30, not a whole number",
        ),
        (
            "expires_in absurd",
            good("expires_in", json!(99_999_999_999_i64)),
            "its expires_in is 99999999999;",
        ),
        (
            "wrong token_type",
            good("token_type", json!("mac")),
            "its token_type is 'mac'; only Bearer tokens are supported",
        ),
        (
            "hostile token_type",
            good("token_type", json!("Bearer\nGITHUB_TOKEN=evil")),
            "its token_type is a 24-character string (not shown)",
        ),
        (
            "bad scope",
            good("scope", json!("read\nGITHUB_TOKEN=evil")),
            "its scope holds U+000A at character 5",
        ),
        (
            "non-JSON",
            "<html>GITHUB_TOKEN=evil</html>".to_owned(),
            "it is not JSON (syntax error at line 1, column 1)",
        ),
        (
            "JSON array",
            r#"["eyJhbGciOiJIUzI1NiJ9.e30.c2ln"]"#.to_owned(),
            "it is JSON but an array, not an object",
        ),
        (
            "JSON string",
            r#""eyJhbGciOiJIUzI1NiJ9.e30.c2ln""#.to_owned(),
            "it is JSON but a string, not an object",
        ),
        (
            "over 64 KiB",
            good("padding", json!("a".repeat(70_000))),
            "it is over 65536 bytes",
        ),
    ]
}

#[test]
fn a_rogue_endpoints_bad_answer_is_one_error_naming_it_and_nothing_is_printed_or_cached() {
    let env = Env::new();
    for (what, body, want) in rogue_answers() {
        let site = endpoint(body);
        let uri = site.url("/token");
        let key = key_for(&env, &uri);
        let k = key.to_str().unwrap();
        let api = site.url("/api");
        let commands: Vec<Vec<&str>> = vec![
            vec!["get-token", "--key", k],
            vec!["get-token", "--key", k, "--format", "token"],
            vec!["get-token", "--key", k, "--format", "json"],
            vec!["get-token", "--key", k, "--format", "header"],
            vec!["get-token", "--key", k, "--format", "env"],
            vec!["get-token", "--key", k, "--format", "env", "--no-cache"],
            vec!["request", "--key", k, &api],
        ];
        for args in &commands {
            let label = format!("{what}: {args:?}");
            let err = one_error(&label, &run(&env, args));
            assert!(
                err.starts_with(&format!(
                    "tokenauth: error: the token endpoint {uri} answered with a bad token \
                     response: "
                )),
                "{label}: {err}"
            );
            assert!(err.contains(want), "{label}: {err}");
            for leak in ["GITHUB_TOKEN", "touch /tmp/p", "AAAAAAAAAAAAAAAA"] {
                assert!(!err.contains(leak), "{label}: echoed the bad value: {err}");
            }
            assert!(
                cache_entries(&env).is_empty(),
                "{label}: cached {:?}",
                cache_entries(&env)
            );
        }
        // Every command asked the endpoint (the answer, not something before it, failed);
        // request never called the API with a token.
        let seen = site.seen();
        assert_eq!(seen.len(), commands.len(), "{what}");
        assert!(seen.iter().all(|s| s.target == "/token"), "{what}");
    }
}

#[test]
fn a_good_token_that_needs_quoting_survives_eval_and_the_exact_token_is_printed() {
    let env = Env::new();
    // `~` is a b64token character, and a shell assignment expands it at the start.
    let token = "~root/a.b-c_d+e==";
    let site = endpoint(
        json!({"access_token": token, "token_type": "bearer", "expires_in": 3600}).to_string(),
    );
    let key = key_for(&env, &site.url("/token"));
    let k = key.to_str().unwrap();

    let out = env.ok(&["get-token", "--key", k, "--no-cache", "--format", "env"]);
    let first = out.lines().next().unwrap();
    assert_eq!(first, format!("TOKENAUTH_TOKEN='{token}'"), "{out}");
    let out = env
        .std_cmd("sh")
        .args([
            "-c",
            r#"eval "$("$0" get-token --key "$1" --format env)" && printf '%s' "$TOKENAUTH_TOKEN""#,
            BIN,
            k,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), token);

    // The fresh answer was cached (token_type normalised) and every format prints the same.
    assert_eq!(env.ok(&["get-token", "--key", k]), format!("{token}\n"));
    assert_eq!(
        env.ok(&["get-token", "--key", k, "--format", "header"]),
        format!("Authorization: Bearer {token}\n")
    );
    let v = env.json(&["get-token", "--key", k, "--format", "json"]);
    assert_eq!(v["access_token"], token);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(site.seen().len(), 2, "the cached token was not reused");
}

#[test]
fn a_tampered_cache_entry_is_never_printed_and_is_replaced_by_a_fresh_token() {
    let env = Env::new();
    let site = endpoint(
        json!({"access_token": "good.token", "token_type": "Bearer", "expires_in": 3600})
            .to_string(),
    );
    let key = key_for(&env, &site.url("/token"));
    let k = key.to_str().unwrap();
    assert_eq!(env.ok(&["get-token", "--key", k]), "good.token\n");
    let entries = cache_entries(&env);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let good: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&entries[0]).unwrap()).unwrap();

    let tamperings: Vec<(&str, &str, serde_json::Value)> = vec![
        (
            "injection",
            "access_token",
            json!("x'; touch /tmp/p; echo '\nGITHUB_TOKEN=evil"),
        ),
        ("empty token", "access_token", json!("")),
        ("other token type", "token_type", json!("mac")),
        (
            "scope with a newline",
            "scope",
            json!("read\nGITHUB_TOKEN=evil"),
        ),
        (
            "expiry ten years away",
            "expires_at",
            json!(common::now() + 315_360_000),
        ),
    ];
    for (n, (what, field, value)) in tamperings.into_iter().enumerate() {
        let mut v = good.clone();
        v[field] = value;
        std::fs::write(&entries[0], v.to_string()).unwrap();
        for format in ["token", "env", "header", "json"] {
            let out = run(&env, &["get-token", "--key", k, "--format", format]);
            assert!(out.status.success(), "{what}: {}", text(&out.stderr));
            let stdout = text(&out.stdout);
            assert!(stdout.contains("good.token"), "{what} {format}: {stdout}");
            for leak in ["GITHUB_TOKEN", "touch", "mac"] {
                assert!(!stdout.contains(leak), "{what} {format}: {stdout}");
            }
        }
        // One fresh token replaced the tampered entry; the three other formats read it.
        assert_eq!(site.seen().len(), n + 2, "{what}");
        let now: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&entries[0]).unwrap()).unwrap();
        assert_eq!(now["access_token"], "good.token", "{what}");
        assert_eq!(now["token_type"], "Bearer", "{what}");
    }
}

// ---- a cache someone else controls ----------------------------------------------------------

/// A file's content and modification time, to show that nothing wrote it.
fn stamp(path: &Path) -> (Vec<u8>, std::time::SystemTime) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    (std::fs::read(path).unwrap(), meta.modified().unwrap())
}

/// A folder's names with each file's stamp.
fn stamps(dir: &Path) -> Vec<(String, Vec<u8>, std::time::SystemTime)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let (bytes, mtime) = stamp(&e.path());
            (e.file_name().to_string_lossy().into_owned(), bytes, mtime)
        })
        .collect();
    v.sort();
    v
}

/// A good endpoint, a key for it, and the path of that key's cache entry (learnt by
/// fetching once, then removed so that the cache starts empty).
fn cached_once(env: &Env) -> (Site, PathBuf, PathBuf) {
    let site = endpoint(
        json!({"access_token": "good.token", "token_type": "Bearer", "expires_in": 3600})
            .to_string(),
    );
    let key = key_for(env, &site.url("/token"));
    env.ok(&["get-token", "--key", key.to_str().unwrap()]);
    let entries = cache_entries(env);
    assert_eq!(entries.len(), 1, "{entries:?}");
    std::fs::remove_file(&entries[0]).unwrap();
    std::fs::remove_file(entries[0].with_extension("lock")).unwrap();
    (site, key, entries[0].clone())
}

/// A file that holds what a planted cache entry would: a token that must never be printed.
fn planted(env: &Env, name: &str) -> PathBuf {
    let path = env.path().join(name);
    let entry = json!({
        "access_token": "planted.token",
        "token_type": "Bearer",
        "scope": "read",
        "expires_at": common::now() + 3000,
    });
    std::fs::write(&path, entry.to_string()).unwrap();
    path
}

#[test]
fn a_symlinked_cache_folder_is_refused_and_its_target_never_written() {
    let env = Env::new();
    let (site, key, _) = cached_once(&env);
    let k = key.to_str().unwrap();
    let dir = cache_dir(&env);
    std::fs::remove_dir_all(&dir).unwrap();
    let target = env.path().join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    planted(&env, "elsewhere/canary");
    std::os::unix::fs::symlink(&target, &dir).unwrap();
    let before = stamps(&target);

    let want = format!(
        "tokenauth: error: the token cache {} is a symbolic link; tokenauth does not follow \
         links in its cache (someone may have planted it): remove the link (rm {}) or pass \
         --no-cache",
        dir.display(),
        dir.display()
    );
    for args in [
        vec!["get-token", "--key", k],
        vec!["get-token", "--key", k, "--format", "env"],
        vec!["request", "--key", k, &site.url("/api")],
    ] {
        let err = one_error(&format!("{args:?}"), &run(&env, &args));
        assert_eq!(err, want);
    }
    assert_eq!(stamps(&target), before, "the link's target was written");
    assert_eq!(site.seen().len(), 1, "a token was fetched past the refusal");
    // --no-cache does without the cache, and still leaves the target alone.
    assert_eq!(
        env.ok(&["get-token", "--key", k, "--no-cache"]),
        "good.token\n"
    );
    assert_eq!(stamps(&target), before);
}

#[test]
fn a_symlinked_cache_entry_or_lock_is_refused_and_never_followed() {
    let env = Env::new();
    let (site, key, entry) = cached_once(&env);
    let k = key.to_str().unwrap();
    let canary = planted(&env, "canary");
    let before = stamp(&canary);

    // An entry linked to a file holding a token: following it would print that token.
    std::os::unix::fs::symlink(&canary, &entry).unwrap();
    let err = one_error("entry", &run(&env, &["get-token", "--key", k]));
    assert_eq!(
        err,
        format!(
            "tokenauth: error: the token cache entry {} is a symbolic link; tokenauth does not \
             follow links in its cache (someone may have planted it): remove the link (rm {}) \
             or pass --no-cache",
            entry.display(),
            entry.display()
        )
    );
    std::fs::remove_file(&entry).unwrap();

    // A lock linked to that file, and one linked to a path that does not exist (which
    // O_CREAT would otherwise create).
    let lock = entry.with_extension("lock");
    let missing = env.path().join("never-created");
    for target in [&canary, &missing] {
        std::os::unix::fs::symlink(target, &lock).unwrap();
        let err = one_error("lock", &run(&env, &["get-token", "--key", k]));
        assert!(
            err.starts_with(&format!(
                "tokenauth: error: the token cache lock {} is a symbolic link;",
                lock.display()
            )),
            "{err}"
        );
        std::fs::remove_file(&lock).unwrap();
    }
    assert_eq!(stamp(&canary), before, "the link's target was written");
    assert!(!missing.exists(), "a lock link's target was created");
    assert_eq!(site.seen().len(), 1, "a token was fetched past a refusal");
    assert!(cache_entries(&env).is_empty());

    // With the links gone, the cache works again.
    assert_eq!(env.ok(&["get-token", "--key", k]), "good.token\n");
}

#[test]
fn a_cache_folder_others_can_write_or_files_others_can_open_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let (site, key, entry) = cached_once(&env);
    let k = key.to_str().unwrap();
    let dir = cache_dir(&env);
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };

    for mode in [0o770, 0o702, 0o777] {
        chmod(&dir, mode);
        let err = one_error("folder", &run(&env, &["get-token", "--key", k]));
        assert_eq!(
            err,
            format!(
                "tokenauth: error: the token cache {} is writable by group or others (mode \
                 {mode:04o}), who could plant tokens in it: make it private (chmod 700 {}) or \
                 pass --no-cache",
                dir.display(),
                dir.display()
            )
        );
    }
    // Readable by others is not a way in: the files in it are private.
    chmod(&dir, 0o755);
    assert_eq!(env.ok(&["get-token", "--key", k]), "good.token\n");
    chmod(&dir, 0o700);

    // An entry or lock that others may open: read, it leaks the token; locked, it hangs us.
    let canary_token = planted(&env, "planted-entry");
    std::fs::copy(&canary_token, &entry).unwrap();
    chmod(&entry, 0o644);
    let err = one_error("entry", &run(&env, &["get-token", "--key", k]));
    assert_eq!(
        err,
        format!(
            "tokenauth: error: the token cache entry {} is open to group or others (mode \
             0644); tokenauth makes its cache files 0600 and does not trust this one: remove \
             it (rm {}) or pass --no-cache",
            entry.display(),
            entry.display()
        )
    );
    std::fs::remove_file(&entry).unwrap();
    let lock = entry.with_extension("lock");
    chmod(&lock, 0o606);
    let err = one_error("lock", &run(&env, &["get-token", "--key", k]));
    assert!(
        err.starts_with(&format!(
            "tokenauth: error: the token cache lock {} is open to group or others (mode 0606)",
            lock.display()
        )),
        "{err}"
    );
    assert_eq!(site.seen().len(), 2, "a token was fetched past a refusal");
}

#[test]
fn a_cache_folder_or_entry_owned_by_another_user_is_refused() {
    use std::os::unix::fs::OpenOptionsExt;
    if effective_uid() != 0 {
        eprintln!("skipped: needs root to give files to another user");
        return;
    }
    let env = Env::new();
    let (site, key, entry) = cached_once(&env);
    let k = key.to_str().unwrap();
    let dir = cache_dir(&env);
    let other = Some(4242);

    std::os::unix::fs::chown(&dir, other, None).unwrap();
    let err = one_error("folder", &run(&env, &["get-token", "--key", k]));
    assert_eq!(
        err,
        format!(
            "tokenauth: error: the token cache {} belongs to another user (uid 4242, not 0); \
             tokenauth does not trust it: set XDG_CACHE_HOME to a folder of your own, or pass \
             --no-cache",
            dir.display()
        )
    );
    std::os::unix::fs::chown(&dir, Some(0), None).unwrap();

    let planted_entry = planted(&env, "planted-entry");
    std::fs::copy(&planted_entry, &entry).unwrap();
    std::os::unix::fs::chown(&entry, other, None).unwrap();
    let err = one_error("entry", &run(&env, &["get-token", "--key", k]));
    assert!(
        err.starts_with(&format!(
            "tokenauth: error: the token cache entry {} belongs to another user (uid 4242, not \
             0); tokenauth does not trust it: remove it (rm {})",
            entry.display(),
            entry.display()
        )),
        "{err}"
    );
    std::fs::remove_file(&entry).unwrap();
    let lock = entry.with_extension("lock");
    std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&lock)
        .unwrap();
    std::os::unix::fs::chown(&lock, other, None).unwrap();
    let err = one_error("lock", &run(&env, &["get-token", "--key", k]));
    assert!(
        err.contains(&format!(
            "the token cache lock {} belongs to another user",
            lock.display()
        )),
        "{err}"
    );
    assert_eq!(site.seen().len(), 1, "a token was fetched past a refusal");
}

/// The test process's effective uid, as the binary compares it (without unsafe code: the
/// owner of a file just made).
fn effective_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().metadata().unwrap().uid()
}
