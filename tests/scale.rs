//! A change costs what it changes, on a store of 20,000 credentials, on both backends: a
//! revocation under load is refused within the bound; `/auth` stays fast while `/revoke` is
//! called in a loop, and no change reloads the registry; revoked tokens leave memory; a
//! server that falls behind the change feed's retention loads everything again and
//! recovers; a server killed while changes arrive loses nothing; `store copy` of the whole
//! store is verified both ways. The million-credential figures come from bench/scale.

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use sha2::Digest;

/// Credentials in each test's store, besides the few the test makes itself.
const CREDENTIALS: usize = 20_000;
/// The bound a replica applies a change within (`server::MAX_STALENESS`); on SQLite the
/// next request sees it.
const BOUND: Duration = Duration::from_secs(1);

/// One test at a time: each loads a server with requests, and latencies mean little when
/// another does the same on the same two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Fills the env's store with `n` synthetic credentials (half keys, half personal access
/// tokens, over n/100 users; nine in ten live, the rest revoked or expired), built in an
/// SQLite file and put in place with `store copy`. Returns the copy's JSON report.
fn fill(env: &Env, n: usize) -> serde_json::Value {
    let source = env.path().join("synthetic.db");
    // A real key, whose public half every synthetic key shares.
    let out = env
        .cmd()
        .env("TOKENAUTH_DB", &source)
        .args(["issue-key", "--user", "filler", "--alg", "EdDSA", "--json"])
        .args(["--out", env.path().join("filler.json").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut db = rusqlite::Connection::open(&source).unwrap();
    let (pem, alg): (String, String) = db
        .query_row("SELECT public_key, alg FROM keys", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let now = now();
    let tx = db.transaction().unwrap();
    let users = (n / 100).max(10);
    for u in 0..users {
        tx.execute(
            "INSERT INTO users(name, created) VALUES (?1, ?2)",
            rusqlite::params![format!("user-{u}"), now],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO secrets(user_name, secret, rotated) VALUES (?1, ?2, ?3)",
            rusqlite::params![
                format!("user-{u}"),
                sha2::Sha256::digest(u.to_be_bytes()).to_vec(),
                now
            ],
        )
        .unwrap();
    }
    // Nine in ten live, one in twenty revoked, one in twenty expired.
    let state = |i: usize| match i % 20 {
        0 => (Some(now - 10), None),
        1 => (None, Some(now - 10)),
        _ => (None, None::<i64>),
    };
    for i in 0..n / 2 {
        let (revoked, expires) = state(i);
        tx.execute(
            "INSERT INTO keys(key_id, client_id, user_name, alg, public_key, scope, issued, expires, revoked)
             VALUES (?1, ?2, ?3, ?4, ?5, 'read', ?6, ?7, ?8)",
            rusqlite::params![
                format!("synthetic-key-{i:07}"),
                format!("synthetic-client-{i:07}"),
                format!("user-{}", i % users),
                alg,
                pem,
                now - 100,
                expires,
                revoked
            ],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO pats(id, user_name, hash, last4, scope, created, expires, revoked, secret_epoch)
             VALUES (?1, ?2, ?3, 'abcd', 'read', ?4, ?5, ?6, 0)",
            rusqlite::params![
                format!("{i:016x}"),
                format!("user-{}", i % users),
                sha2::Sha256::digest(format!("synthetic-{i}")).to_vec(),
                now - 100,
                expires,
                revoked
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    drop(db);
    let report = env.json(&[
        "store",
        "copy",
        "--from",
        source.to_str().unwrap(),
        "--to",
        env.db_arg().to_str().unwrap(),
        "--force",
        "--json",
    ]);
    assert_eq!(report["rows"]["keys"], n / 2 + 1, "{report}");
    report
}

fn auth_status(http: &reqwest::blocking::Client, server: &Server, token: &str) -> u16 {
    http.get(server.url("/auth"))
        .bearer_auth(token)
        .send()
        .map_or(0, |r| r.status().as_u16())
}

/// A server's metric (the first line starting so), from GET /metrics, once the server has
/// caught up with the store (on SQLite, a request does that; /metrics alone does not).
fn metric(http: &reqwest::blocking::Client, server: &Server, line_start: &str) -> f64 {
    http.get(server.url("/healthz")).send().unwrap();
    server.metric(line_start)
}

fn live_keys(http: &reqwest::blocking::Client, server: &Server) -> f64 {
    metric(http, server, "tokenauth_registry_entries{kind=\"keys\"}")
}

/// Waits, bounded, until `done` holds.
fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn token_of(env: &Env, key: &std::path::Path) -> String {
    env.ok(&["get-token", "--key", key.to_str().unwrap()])
        .trim()
        .to_owned()
}

/// Access tokens from `count` grants signed with `key`, exchanged at `server`.
fn tokens(env: &Env, server: &Server, key: &std::path::Path, count: usize) -> Vec<String> {
    let http = http();
    env.ok(&[
        "sign-grant",
        "--key",
        key.to_str().unwrap(),
        "--count",
        &count.to_string(),
    ])
    .lines()
    .map(|grant| {
        let resp = http
            .post(server.url("/token"))
            .form(&[("grant_type", JWT_BEARER), ("assertion", grant)])
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.json::<serde_json::Value>().unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    })
    .collect()
}

/// Changes the store behind tokenauth's back, as one statement (the feed triggers still
/// name every row).
fn sql(env: &Env, statement: &str) -> u64 {
    match &env.pg {
        Some(pg) => tokenauth::store::PgUrl::parse(&pg.url)
            .unwrap()
            .connect()
            .unwrap()
            .execute(statement, &[])
            .unwrap(),
        None => rusqlite::Connection::open(env.db())
            .unwrap()
            .execute(statement, [])
            .unwrap() as u64,
    }
}

fn query_i64(env: &Env, query: &str) -> i64 {
    match &env.pg {
        Some(pg) => tokenauth::store::PgUrl::parse(&pg.url)
            .unwrap()
            .connect()
            .unwrap()
            .query_one(query, &[])
            .unwrap()
            .get(0),
        None => rusqlite::Connection::open(env.db())
            .unwrap()
            .query_row(query, [], |r| r.get(0))
            .unwrap(),
    }
}

on_both_backends! {
    fn a_revocation_under_load_is_refused_within_the_bound() {
        let _one = one_at_a_time();
        let env = Env::new();
        fill(&env, CREDENTIALS);
        let server = env.serve(&[]);
        let (_, busy_key) = env.issue_key("busy", &[]);
        let busy = token_of(&env, &busy_key);
        let stop = AtomicBool::new(false);
        let answered = AtomicUsize::new(0);
        let mut delays = Vec::new();
        std::thread::scope(|s| {
            // Load: /auth as fast as one client goes, all of it good.
            s.spawn(|| {
                let http = http();
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(auth_status(&http, &server, &busy), 200);
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            });
            let http = http();
            for round in 0..8 {
                let (key_id, key) = env.issue_key(&format!("bot-{round}"), &[]);
                let token = token_of(&env, &key);
                assert_eq!(auth_status(&http, &server, &token), 200);
                // Straight through the binary: `Env::ok` would wait for the server itself.
                let out = env.cmd().args(["revoke-key", &key_id, "--yes"]).output().unwrap();
                let committed = Instant::now();
                assert!(out.status.success());
                loop {
                    let status = auth_status(&http, &server, &token);
                    if status == 401 {
                        delays.push(committed.elapsed());
                        break;
                    }
                    assert_eq!(status, 200);
                    // SQLite: the very next request sees the change.
                    assert!(env.pg.is_some(), "the request after revoke-key returned took the key");
                    assert!(committed.elapsed() < BOUND, "still taken after {BOUND:?}");
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        delays.sort();
        eprintln!(
            "revocation refused at {} credentials under load ({} checks answered): p50 {:?}, max {:?}",
            CREDENTIALS,
            answered.load(Ordering::Relaxed),
            percentile(&delays, 0.5),
            delays.last().unwrap()
        );
        // Each revocation reached the server as itself: it loaded the registry only once.
        assert_eq!(metric(&http(), &server, "tokenauth_registry_loads_total"), 1.0);
    }

    fn auth_stays_fast_while_revoke_is_called_in_a_loop() {
        let _one = one_at_a_time();
        let env = Env::new();
        fill(&env, CREDENTIALS);
        let server = env.serve(&[]);
        let (_, key) = env.issue_key("ci-bot", &[]);
        let mut pool = tokens(&env, &server, &key, 301);
        let checked = pool.pop().unwrap();
        let http = http();
        let timed = |n: usize| -> Vec<Duration> {
            let mut took: Vec<Duration> = (0..n)
                .map(|_| {
                    let start = Instant::now();
                    assert_eq!(auth_status(&http, &server, &checked), 200);
                    start.elapsed()
                })
                .collect();
            took.sort();
            took
        };
        let quiet = timed(1_000);
        let revoked = AtomicUsize::new(0);
        let busy = std::thread::scope(|s| {
            s.spawn(|| {
                let revoker = common::http();
                for token in &pool {
                    let status = revoker
                        .post(server.url("/revoke"))
                        .form(&[("token", token.as_str())])
                        .send()
                        .unwrap()
                        .status();
                    assert_eq!(status.as_u16(), 200);
                    revoked.fetch_add(1, Ordering::Relaxed);
                }
            });
            timed(1_000)
        });
        assert_eq!(revoked.load(Ordering::Relaxed), 300);
        eprintln!(
            "/auth at {CREDENTIALS} credentials: quiet p50 {:?} p99 {:?}; while /revoke runs in a loop p50 {:?} p99 {:?}",
            percentile(&quiet, 0.5),
            percentile(&quiet, 0.99),
            percentile(&busy, 0.5),
            percentile(&busy, 0.99),
        );
        for token in pool.iter().step_by(50) {
            assert_eq!(auth_status(&http, &server, token), 401);
        }
        // Every revocation was applied as one entry; nothing reloaded the registry (a
        // reload at this size costs a hundred milliseconds).
        assert_eq!(metric(&http, &server, "tokenauth_registry_loads_total"), 1.0);
        assert_eq!(
            metric(&http, &server, "tokenauth_registry_entries{kind=\"revoked_tokens\"}"),
            300.0
        );
        assert!(metric(&http, &server, "tokenauth_feed_entries_applied_total") >= 300.0);
        assert!(
            percentile(&busy, 0.99) < Duration::from_millis(100),
            "/auth p99 {:?} while /revoke runs",
            percentile(&busy, 0.99)
        );
    }

    fn revoked_and_expired_tokens_leave_memory() {
        let _one = one_at_a_time();
        let env = Env::new();
        fill(&env, CREDENTIALS);
        // Tokens live 2 s here, so that their revocations can be seen to go.
        let server = env.serve(&["--token-lifetime", "2"]);
        let http = http();
        env.ok(&["user", "add", "ci-bot"]);
        let pats = |http: &reqwest::blocking::Client| {
            metric(http, &server, "tokenauth_registry_entries{kind=\"pats\"}")
        };
        let baseline = pats(&http);
        let (_, key) = env.issue_key("ci-bot", &[]);
        let rss = |pid: u32| -> u64 {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
                .unwrap()
        };
        let mut sizes = Vec::new();
        for _round in 0..4 {
            let mut made = Vec::new();
            for _ in 0..20 {
                let created = env.json(&["token", "create", "--user", "ci-bot", "--json"]);
                made.push(created["token"].as_str().unwrap().to_owned());
            }
            assert_eq!(pats(&http), baseline + 20.0);
            made.extend(tokens(&env, &server, &key, 30));
            for token in &made {
                let resp = http
                    .post(server.url("/revoke"))
                    .form(&[("token", token.as_str())])
                    .send()
                    .unwrap();
                assert_eq!(resp.status().as_u16(), 200);
            }
            // Revoked tokens leave at once; revoked access-token ids when the tokens expire.
            assert_eq!(pats(&http), baseline);
            sizes.push(rss(server.pid()));
        }
        eventually("revoked token ids leave memory", Duration::from_secs(10), || {
            metric(&http, &server, "tokenauth_registry_entries{kind=\"revoked_tokens\"}") == 0.0
        });
        eprintln!("server RSS after each round of 50 tokens made and revoked: {sizes:?} kB");
        assert!(
            sizes[3] < sizes[1] + 16 * 1024,
            "the server grew by {} kB over two rounds",
            sizes[3] - sizes[1]
        );
    }

    fn a_server_behind_the_feeds_retention_loads_everything_and_recovers() {
        let _one = one_at_a_time();
        let env = Env::new();
        fill(&env, CREDENTIALS);
        let behind = env.serve(&[]);
        let (key_id, key) = env.issue_key("ci-bot", &[]);
        let token = token_of(&env, &key);
        let http = http();
        assert_eq!(auth_status(&http, &behind, &token), 200);
        behind.pause();
        let head = query_i64(&env, "SELECT coalesce(max(seq), 0) FROM changes");
        env.ok(&["revoke-key", &key_id, "--yes"]);
        // This one prunes every entry but the newest as soon as it starts.
        let mut pruner = env.serve(&["--feed-retention", "0s"]);
        eventually("the feed is pruned past the paused server", Duration::from_secs(10), || {
            query_i64(&env, "SELECT pruned FROM feed_state") > head
        });
        assert_eq!(auth_status(&http, &pruner, &token), 401);
        pruner.stop();
        behind.resume();
        let resumed = Instant::now();
        eventually("the paused server refuses the revoked key", Duration::from_secs(10), || {
            // 503 until it has loaded everything again: never the stale answer on SQLite,
            // and on PostgreSQL not past the bound since the follower last confirmed it.
            match auth_status(&http, &behind, &token) {
                401 => true,
                503 => false,
                200 if env.pg.is_some() => false,
                other => panic!("answered {other}"),
            }
        });
        eprintln!("a server behind the feed caught up {:?} after it resumed", resumed.elapsed());
        assert!(
            behind.log().contains("fell behind the change feed's retention"),
            "{}",
            behind.log()
        );
        assert_eq!(metric(&http, &behind, "tokenauth_registry_loads_total"), 2.0);
        // And it goes on following the feed as before (it is the token endpoint now).
        env.ok(&["init", "--token-uri", &behind.url("/token")]);
        let (key_id, key) = env.issue_key("second", &[]);
        let token = token_of(&env, &key);
        assert_eq!(auth_status(&http, &behind, &token), 200);
        env.ok(&["revoke-key", &key_id, "--yes"]);
        eventually("a later revocation", BOUND, || auth_status(&http, &behind, &token) == 401);
    }

    fn a_server_killed_while_changes_arrive_loses_nothing() {
        let _one = one_at_a_time();
        let env = Env::new();
        fill(&env, CREDENTIALS);
        let mut killed = env.serve(&[]);
        let survivor = env.serve(&[]);
        let (_, key) = env.issue_key("ci-bot", &[]);
        let token = token_of(&env, &key);
        let http = http();
        let before = live_keys(&http, &survivor);
        // Three feed batches' worth of revocations in one transaction, and ci-bot's key
        // among them; the server is killed while it applies them.
        let n = sql(
            &env,
            "UPDATE keys SET revoked = 1 WHERE revoked IS NULL AND (key_id LIKE 'synthetic-key-%7'
                OR key_id LIKE 'synthetic-key-%3' OR key_id LIKE 'synthetic-key-%5'
                OR user_name = 'ci-bot')",
        );
        assert!(n > 2_048, "{n} keys revoked");
        killed.kill();
        eventually("the survivor applies every revocation", Duration::from_secs(10), || {
            live_keys(&http, &survivor) == before - n as f64
        });
        assert_eq!(auth_status(&http, &survivor, &token), 401);
        let restarted = env.serve(&[]);
        assert_eq!(live_keys(&http, &restarted), before - n as f64);
        assert_eq!(auth_status(&http, &restarted, &token), 401);
    }

    fn store_copy_of_the_whole_store_is_verified_both_ways() {
        let _one = one_at_a_time();
        let env = Env::new();
        // Into this backend's store (from SQLite) ...
        let there = fill(&env, CREDENTIALS);
        let mut server = env.serve(&[]);
        let port = server.addr.port();
        let (_, key) = env.issue_key("ci-bot", &[]);
        server.stop();
        // ... and back out into SQLite.
        let copy = Env::new_sqlite();
        let started = Instant::now();
        let report = env.json(&[
            "store",
            "copy",
            "--from",
            env.db_arg().to_str().unwrap(),
            "--to",
            copy.db().to_str().unwrap(),
            "--json",
        ]);
        eprintln!("store copy of {CREDENTIALS} credentials back to SQLite: {:?}", started.elapsed());
        assert_eq!(report["verified"], true);
        // Untouched since the first copy: the same bytes after two.
        assert_eq!(report["digests"]["pats"], there["digests"]["pats"]);
        assert_eq!(report["rows"]["keys"], CREDENTIALS / 2 + 2);
        // The copy is a working store: a server on it (where the key file says the token
        // endpoint is) takes the key's grants.
        let server = copy.serve_on_port(port, &[], &[]);
        let grant = copy.ok(&["sign-grant", "--key", key.to_str().unwrap()]);
        let (status, body) = exchange(&server, grant.trim());
        assert_eq!(status, 200, "{body}");
    }
}
