//! PostgreSQL only: connection errors, concurrent CLI writers, and several `serve` replicas
//! on one database (propagation of CLI changes, replays across replicas, a replica killed
//! and the database stopped under load). Skipped with a notice when no PostgreSQL answers.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{Backend, Env, JWT_BEARER, ScratchDatabase, Server, on_backend};

/// The hard bound a replica serves a stale snapshot within (`server::MAX_STALENESS`).
const BOUND: Duration = tokenauth::server::MAX_STALENESS;

fn pg_env(test: &str) -> Option<Env> {
    let mut env = None;
    on_backend(Backend::Postgres, test, || env = Some(Env::new()));
    env
}

fn pg_client(env: &Env) -> postgres::Client {
    tokenauth::store::PgUrl::parse(&env.pg.as_ref().unwrap().url)
        .unwrap()
        .connect()
        .unwrap()
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// POSTs a grant; (status, body, Retry-After) or None when the replica did not answer.
fn exchange(
    http: &reqwest::blocking::Client,
    server: &str,
    grant: &str,
) -> Option<(u16, serde_json::Value, Option<String>)> {
    let resp = http
        .post(format!("{server}/token"))
        .form(&[("grant_type", JWT_BEARER), ("assertion", grant)])
        .send()
        .ok()?;
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    Some((status, resp.json().unwrap_or_default(), retry))
}

fn auth_status(http: &reqwest::blocking::Client, server: &str, token: &str) -> u16 {
    http.get(format!("{server}/auth"))
        .bearer_auth(token)
        .send()
        .map_or(0, |r| r.status().as_u16())
}

/// An access token's `jti`.
fn token_jti(token: &str) -> String {
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    serde_json::from_slice::<serde_json::Value>(&payload).unwrap()["jti"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The token ids the usage log holds for issuances.
fn logged_token_jtis(env: &Env) -> std::collections::HashSet<String> {
    pg_client(env)
        .query(
            "SELECT token_jti FROM usage_log WHERE ok <> 0 AND token_jti IS NOT NULL",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[test]
fn bad_urls_unreachable_servers_and_failed_logins_are_one_line_errors_without_the_password() {
    let env = Env::new();
    let cases = [
        (
            "postgres://alice:s3cret@127.0.0.1:1/db",
            "cannot reach PostgreSQL at postgres://alice:***@127.0.0.1:1/db",
        ),
        (
            "postgres://alice:s3cret@127.0.0.1:5432/db?sslmode=maybe",
            "sslmode 'maybe' is unknown",
        ),
        (
            "postgres://alice:s3cret@127.0.0.1:99999/db",
            "is not a valid PostgreSQL URL",
        ),
        ("postgres://127.0.0.1/db", "names no user"),
    ];
    for (url, want) in cases {
        let err = env.fails(&["--db", url, "user", "list"]);
        assert!(err.contains(want), "{url}: {err}");
        assert!(!err.contains("s3cret"), "{url}: {err}");
    }
    if let Some(pg) = pg_env("failed_login") {
        let url = pg.pg.as_ref().unwrap().url.clone();
        let mut u = url::Url::parse(&url).unwrap();
        u.set_username("no_such_role").unwrap();
        u.set_password(Some("s3cret")).unwrap();
        let err = env.fails(&["--db", u.as_str(), "user", "list"]);
        assert!(
            err.contains("refused user 'no_such_role'")
                && err.contains("check the user and password"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
        u.set_username("postgres").unwrap();
        u.set_path("no_such_database_here");
        let err = env.fails(&["--db", u.as_str(), "user", "list"]);
        assert!(err.contains("createdb"), "{err}");
    }
}

#[test]
fn tls_modes_and_a_schema_of_its_own_work_as_in_libpq() {
    let Some(env) = pg_env("tls_modes_and_schemas") else {
        return;
    };
    let url = env.pg.as_ref().unwrap().url.clone();
    pg_client(&env)
        .batch_execute("CREATE SCHEMA tenant_a")
        .unwrap();
    let with = |query: &str| format!("{url}?{query}");
    // A certificate for another name (or none at all) fails verify-full with the fix named.
    let err = env.fails(&["--db", &with("sslmode=verify-full"), "user", "list"]);
    assert!(
        err.contains("TLS with PostgreSQL") && err.contains("sslrootcert"),
        "{err}"
    );
    // Encrypted where the server offers it: require is then the same as prefer.
    let encrypted = pg_client(&env)
        .query_one("SHOW ssl", &[])
        .unwrap()
        .get::<_, String>(0)
        == "on";
    if encrypted {
        env.ok(&["--db", &with("sslmode=require"), "user", "add", "alice"]);
    }
    env.ok(&[
        "--db",
        &with("sslmode=disable&options=-csearch_path%3Dtenant_a"),
        "user",
        "add",
        "bob",
    ]);
    let in_schema: i64 = pg_client(&env)
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'tenant_a' AND tablename = 'users'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(in_schema, 1);
    let users = env.json(&[
        "--db",
        &with("options=-csearch_path%3Dtenant_a"),
        "user",
        "list",
        "--json",
    ]);
    assert_eq!(users.as_array().unwrap().len(), 1, "{users}");
}

#[test]
fn a_connect_timeout_bounds_an_unanswering_server() {
    // A listener that accepts and never speaks: the handshake times out.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let env = Env::new();
    let start = Instant::now();
    let err = env.fails(&[
        "--db",
        &format!("postgres://u@127.0.0.1:{port}/db?connect_timeout=1&sslmode=disable"),
        "user",
        "list",
    ]);
    assert!(start.elapsed() < Duration::from_secs(5), "{err}");
    assert!(err.contains("cannot reach PostgreSQL"), "{err}");
    drop(listener);
}

#[test]
fn concurrent_cli_writers_on_postgres_all_succeed() {
    let Some(env) = pg_env("concurrent_cli_writers") else {
        return;
    };
    env.ok(&["init"]);
    let children: Vec<_> = (0..4)
        .map(|i| {
            let mut c = env.std_cmd(env!("CARGO_BIN_EXE_tokenauth"));
            c.args(["user", "add", &format!("user-{i}")])
                .stdout(std::process::Stdio::null());
            let mut rotate = env.std_cmd(env!("CARGO_BIN_EXE_tokenauth"));
            rotate
                .args(["rotate-secret", "--all-users", "--yes"])
                .stdout(std::process::Stdio::null());
            (c.spawn().unwrap(), rotate.spawn().unwrap())
        })
        .collect();
    for (mut a, mut b) in children {
        assert!(a.wait().unwrap().success());
        assert!(b.wait().unwrap().success());
    }
    assert_eq!(
        env.json(&["user", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

/// Three replicas on one database, a key, and a token from the first.
struct Replicas {
    env: Env,
    servers: Vec<Server>,
    key: std::path::PathBuf,
    key_id: String,
}

fn replicas(test: &str, env: Option<Env>) -> Option<Replicas> {
    let env = env.or_else(|| pg_env(test))?;
    let servers: Vec<Server> = (0..3).map(|_| env.serve(&[])).collect();
    // Issued after the last replica set the token URI that grants name as their audience.
    let (key_id, key) = env.issue_key("ci-bot", &[]);
    Some(Replicas {
        env,
        servers,
        key,
        key_id,
    })
}

#[test]
fn a_cli_revocation_is_refused_by_every_replica_within_the_bound() {
    let Some(r) = replicas("revocation_reaches_every_replica", None) else {
        return;
    };
    let http = client();
    let mut delays = Vec::new();
    for round in 0..5 {
        let (key_id, key) = r.env.issue_key(&format!("bot-{round}"), &[]);
        let grant = &r.env.grants(&key, 1, &["--lifetime", "3600"])[0];
        let (status, body, _) = exchange(&http, &r.servers[0].url(""), grant).unwrap();
        assert_eq!(status, 200, "{body}");
        let token = body["access_token"].as_str().unwrap().to_owned();
        for s in &r.servers {
            assert_eq!(auth_status(&http, &s.url(""), &token), 200);
        }
        // Straight through the binary: `Env::ok` would wait for the replicas itself.
        let out = r
            .env
            .cmd()
            .args(["revoke-key", &key_id, "--yes"])
            .output()
            .unwrap();
        let committed = Instant::now();
        assert!(out.status.success());
        for s in &r.servers {
            loop {
                let status = auth_status(&http, &s.url(""), &token);
                if status == 401 {
                    delays.push(committed.elapsed());
                    break;
                }
                assert_eq!(status, 200);
                assert!(
                    committed.elapsed() < BOUND,
                    "a replica still took a revoked key's token after {:?}",
                    committed.elapsed()
                );
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    delays.sort();
    eprintln!(
        "revocation refused by all replicas: p50 {:?}, max {:?} (n={})",
        percentile(&delays, 0.5),
        delays.last().unwrap(),
        delays.len()
    );
    assert!(*delays.last().unwrap() < BOUND);
}

#[test]
fn a_grant_used_at_one_replica_is_refused_at_the_others() {
    let Some(r) = replicas("replay_across_replicas", None) else {
        return;
    };
    let http = client();
    let batch = r.env.grants(&r.key, 3, &["--lifetime", "3600"]);
    for (i, grant) in batch.iter().enumerate() {
        let first = &r.servers[i % 3];
        let (status, body, _) = exchange(&http, &first.url(""), grant).unwrap();
        assert_eq!(status, 200, "{body}");
        for other in r.servers.iter().filter(|s| s.addr != first.addr) {
            let (status, body, _) = exchange(&http, &other.url(""), grant).unwrap();
            assert_eq!(status, 400, "{body}");
            assert_eq!(body["error"], "invalid_grant");
            assert_eq!(
                body["error_description"],
                "Grant has already been used (jti replayed)"
            );
        }
    }
    let rows = r.env.json(&["usage-log", &r.key_id, "--json"]);
    let ok = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ok"] == true)
        .count();
    assert_eq!(ok, 3, "{rows:#}");
}

#[test]
fn killing_a_replica_under_load_loses_no_answered_row_and_the_others_go_on() {
    let Some(mut r) = replicas("sigkill_under_load", None) else {
        return;
    };
    let batch = r.env.grants(&r.key, 600, &["--lifetime", "3600"]);
    let urls: Vec<String> = r.servers.iter().map(|s| s.url("")).collect();
    let next = Arc::new(Mutex::new(batch.into_iter().enumerate()));
    let killed = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (next, urls, killed, answered) =
                (next.clone(), urls.clone(), killed.clone(), answered.clone());
            std::thread::spawn(move || {
                let http = client();
                loop {
                    let Some((i, grant)) = next.lock().unwrap().next() else {
                        break;
                    };
                    let replica = i % 3;
                    let was_killed = killed.load(Ordering::SeqCst);
                    match exchange(&http, &urls[replica], &grant) {
                        Some((200, body, _)) => answered
                            .lock()
                            .unwrap()
                            .push(token_jti(body["access_token"].as_str().unwrap())),
                        Some((status, body, _)) => {
                            panic!("replica {replica} answered {status}: {body}")
                        }
                        // Only the killed replica may fail to answer.
                        None => assert!(
                            replica == 1 && (was_killed || killed.load(Ordering::SeqCst)),
                            "replica {replica} did not answer"
                        ),
                    }
                }
            })
        })
        .collect();
    while next.lock().unwrap().len() > 400 {
        std::thread::sleep(Duration::from_millis(2));
    }
    killed.store(true, Ordering::SeqCst);
    common::signal(r.servers[1].pid(), "KILL");
    r.servers[1].kill();
    for w in workers {
        w.join().unwrap();
    }
    let answered = answered.lock().unwrap();
    assert!(answered.len() >= 390, "only {} answered", answered.len());
    let logged = logged_token_jtis(&r.env);
    let missing: Vec<_> = answered.iter().filter(|j| !logged.contains(*j)).collect();
    assert!(
        missing.is_empty(),
        "answered without a usage row: {missing:?}"
    );
}

/// A PostgreSQL server of this test's own (Debian's binaries, a temp dir, a free port), so
/// that it can be stopped and started without touching the machine's.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: std::path::PathBuf,
}

impl PrivatePostgres {
    fn start(test: &str) -> Option<PrivatePostgres> {
        // Debian's layout: /usr/lib/postgresql/VERSION/bin, the newest version.
        let mut found: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .collect();
        found.sort();
        let Some(bin) = found.pop() else {
            eprintln!("skipped {test}: no /usr/lib/postgresql/*/bin/initdb (install postgresql)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let pg = PrivatePostgres {
            port: common::free_port(),
            dir,
            bin,
        };
        // initdb refuses to run as root: as the postgres user, in a folder it owns.
        if is_root() {
            assert!(
                std::process::Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(pg.dir.path())
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let data = pg.data();
        assert!(
            pg.run(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync"
                ]
            )
            .success()
        );
        pg.ctl_start();
        Some(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) -> std::process::ExitStatus {
        let exe = self.bin.join(program);
        let mut c = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            std::process::Command::new(exe)
        };
        c.args(args)
            .current_dir(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
    }

    fn ctl_start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        assert!(
            self.run(
                "pg_ctl",
                &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"]
            )
            .success()
        );
    }

    fn ctl_stop(&self) {
        assert!(
            self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"])
                .success()
        );
    }

    fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

#[test]
fn postgres_stopped_and_restarted_under_load_gives_only_503s_then_recovers() {
    let Some(pg) = PrivatePostgres::start("postgres_stopped_under_load") else {
        return;
    };
    let db = ScratchDatabase::create_on(&pg.url(), "postgres_stopped_under_load")
        .expect("the private server answers");
    let env = Env::on_postgres(db);
    let Some(r) = replicas("postgres_stopped_under_load", Some(env)) else {
        return;
    };
    let r = &r;
    let http = client();
    let (_, body, _) = exchange(
        &http,
        &r.servers[0].url(""),
        &r.env.grants(&r.key, 1, &["--lifetime", "3600"])[0],
    )
    .unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    let batch = r.env.grants(&r.key, 400, &["--lifetime", "3600"]);
    let stop = AtomicBool::new(false);
    let down = AtomicBool::new(false);
    struct Seen {
        token: Vec<(u16, bool)>,
        auth: Vec<(u16, bool)>,
        answered: Vec<String>,
        slowest: Duration,
    }
    let seen = Mutex::new(Seen {
        token: Vec::new(),
        auth: Vec::new(),
        answered: Vec::new(),
        slowest: Duration::ZERO,
    });
    let recovered = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            let http = client();
            for (i, grant) in batch.iter().enumerate() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let url = r.servers[i % 2].url("");
                let started = Instant::now();
                let (status, body, retry) =
                    exchange(&http, &url, grant).expect("a replica answers");
                let auth = auth_status(&http, &url, &token);
                let mut s = seen.lock().unwrap();
                s.slowest = s.slowest.max(started.elapsed());
                let is_down = down.load(Ordering::SeqCst);
                match status {
                    200 => s
                        .answered
                        .push(token_jti(body["access_token"].as_str().unwrap())),
                    503 => {
                        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
                        assert_eq!(retry.as_deref(), Some("1"));
                    }
                    other => panic!("/token answered {other}: {body}"),
                }
                assert!(matches!(auth, 200 | 503), "/auth answered {auth}");
                s.token.push((status, is_down));
                s.auth.push((auth, is_down));
                drop(s);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        down.store(true, Ordering::SeqCst);
        pg.ctl_stop();
        std::thread::sleep(BOUND + Duration::from_millis(800));
        pg.ctl_start();
        down.store(false, Ordering::SeqCst);
        let restarted = Instant::now();
        // Back in service by itself: an exchange and a check succeed on both replicas.
        let mut recovered = None;
        while restarted.elapsed() < Duration::from_secs(20) {
            let fresh = r.env.grants(&r.key, 2, &["--lifetime", "3600"]);
            let ok = r.servers.iter().zip(&fresh).all(|(s, g)| {
                exchange(&http, &s.url(""), g).is_some_and(|(status, _, _)| status == 200)
                    && auth_status(&http, &s.url(""), &token) == 200
            });
            if ok {
                recovered = Some(restarted.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::SeqCst);
        load.join().unwrap();
        recovered
    });
    let recovered = recovered.expect("the replicas recovered after PostgreSQL came back");
    let s = seen.lock().unwrap();
    eprintln!(
        "PostgreSQL down: {} exchanges ({} answered 503), {} checks ({} answered 503); recovered {recovered:?} after restart; slowest request {:?}",
        s.token.iter().filter(|(_, d)| *d).count(),
        s.token.iter().filter(|(st, _)| *st == 503).count(),
        s.auth.iter().filter(|(_, d)| *d).count(),
        s.auth.iter().filter(|(st, _)| *st == 503).count(),
        s.slowest
    );
    assert!(
        s.token.iter().any(|(st, d)| *st == 503 && *d),
        "no /token 503 while down"
    );
    assert!(
        s.auth.iter().any(|(st, d)| *st == 503 && *d),
        "no /auth 503 while down"
    );
    assert!(
        s.token.iter().any(|(st, d)| *st == 200 && !*d),
        "no exchange before the stop"
    );
    assert!(
        s.slowest < Duration::from_secs(6),
        "a request hung for {:?}",
        s.slowest
    );
    // Every token answered has its row; the store is whole.
    let logged = logged_token_jtis(&r.env);
    let missing: Vec<_> = s.answered.iter().filter(|j| !logged.contains(*j)).collect();
    assert!(
        missing.is_empty(),
        "answered without a usage row: {missing:?}"
    );
    let init = r.env.json(&["init", "--json"]);
    assert_eq!(
        init["schema_version"],
        tokenauth::store::PG_MIGRATIONS.len()
    );
}

#[test]
fn store_copy_moves_everything_both_ways_and_the_keys_still_verify_grants() {
    let Some(db) = ScratchDatabase::create("store_copy") else {
        return;
    };
    let pg_url = db.url.clone();
    // A store on SQLite with a key, a token, a used grant and usage rows.
    let sqlite = Env::new();
    let server = sqlite.serve(&[]);
    let (key_id, key) = sqlite.issue_key("ci-bot", &[]);
    let created = sqlite.json(&["token", "create", "--user", "ci-bot", "--json"]);
    let pat = created["token"].as_str().unwrap().to_owned();
    let http = client();
    let used = sqlite.grants(&key, 2, &["--lifetime", "3600"]);
    assert_eq!(exchange(&http, &server.url(""), &used[0]).unwrap().0, 200);
    drop(server);
    let db_path = sqlite.db();
    let copy = |from: &str, to: &str, extra: &[&str]| {
        let mut args = vec!["store", "copy", "--from", from, "--to", to, "--json"];
        args.extend_from_slice(extra);
        sqlite.json(&args)
    };
    let there = copy(db_path.to_str().unwrap(), &pg_url, &[]);
    assert_eq!(there["verified"], true);
    assert_eq!(there["rows"]["keys"], 1);
    assert_eq!(there["rows"]["used_grants"], 1);
    assert!(there["rows"]["usage_log"].as_i64().unwrap() >= 1);
    assert!(there["rows"]["audit"].as_i64().unwrap() >= 3);
    // A non-empty target is refused, and nothing in it changes.
    let err = sqlite.fails(&[
        "store",
        "copy",
        "--from",
        db_path.to_str().unwrap(),
        "--to",
        &pg_url,
    ]);
    assert!(err.contains("--force"), "{err}");

    // Served from PostgreSQL: the key still verifies grants, the used grant stays used, the
    // personal access token still works.
    let pg = Env::on_postgres(db);
    let server = pg.serve(&[]);
    let (status, body, _) = exchange(&http, &server.url(""), &used[0]).unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // The key file names the old server: sign for this one.
    let fresh = pg.ok(&[
        "sign-grant",
        "--key",
        key.to_str().unwrap(),
        "--aud",
        &server.url("/token"),
    ]);
    let (status, body, _) = exchange(&http, &server.url(""), fresh.trim()).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(auth_status(&http, &server.url(""), &pat), 200);
    drop(server);

    // And back, into a new SQLite file: the same counts both ways.
    let back = sqlite.path().join("back.db");
    let again = copy(&pg_url, back.to_str().unwrap(), &[]);
    let rows = pg.json(&[
        "store",
        "copy",
        "--from",
        &pg_url,
        "--to",
        back.to_str().unwrap(),
        "--force",
        "--json",
    ]);
    assert_eq!(rows["rows"], again["rows"]);
    let listed = sqlite.json(&["--db", back.to_str().unwrap(), "list-keys", "--json"]);
    assert_eq!(listed[0]["key_id"], key_id.as_str());
    assert!(
        sqlite
            .ok(&["--db", back.to_str().unwrap(), "audit", "verify"])
            .contains("intact")
    );
}
