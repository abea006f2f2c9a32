//! Abuse by callers that hold nothing, and by one key's holder: rate limits per address and
//! per key, refusals counted in the usage log instead of written one by one, and a store
//! that cannot be written (full disk) answered with a clear 503 while checks go on.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{Env, JWT_BEARER, Reply, Server, http, send};

/// `grant` with one character of its signature changed: still base64url, no longer valid.
fn forge(grant: &str) -> String {
    let (head, sig) = grant.rsplit_once('.').unwrap();
    let mut sig: Vec<char> = sig.chars().collect();
    sig[10] = if sig[10] == 'A' { 'B' } else { 'A' };
    format!("{head}.{}", sig.into_iter().collect::<String>())
}

/// POSTs a grant to /token as if from `from` (the trusted proxy's X-Forwarded-For).
fn token_from(server: &Server, from: &str, assertion: &str) -> Reply {
    send(
        http()
            .post(server.url("/token"))
            .header("x-forwarded-for", from)
            .form(&[("grant_type", JWT_BEARER), ("assertion", assertion)]),
    )
}

/// A 429 from `bucket` ("this address" or "this key"), with a Retry-After of whole seconds.
fn assert_limited(r: &Reply, whose: &str, rule: &str) -> u64 {
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.json["error"], "slow_down", "{}", r.text);
    let description = r.json["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!(
            "Too many requests from {whose}: the limit is {rule}"
        )),
        "{description}"
    );
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(wait >= 1, "{wait}");
    assert!(
        description.ends_with(&format!("retry in {wait} s")),
        "{description}"
    );
    wait
}

#[test]
fn a_flood_from_one_address_gets_429_with_retry_after_while_another_address_is_served() {
    let env = Env::new();
    env.ok(&["user", "add", "ci"]);
    env.ok(&["user", "grant", "ci", "introspect"]);
    let server = env.serve(&[
        "--trusted-proxy",
        "127.0.0.1/32",
        "--admin-api",
        "--rate-limit",
        "address=1/min:20",
    ]);
    let (_, key) = env.issue_key("ci", &[]);
    let good = env.grants(&key, 3, &[]);
    let attacker = "198.51.100.7";
    // The burst is served (and refused for what it is), the rest is turned away unread.
    for i in 0..20 {
        let r = token_from(&server, attacker, &format!("junk{i}"));
        assert_eq!(r.status, 400, "request {i}: {}", r.text);
    }
    for _ in 0..10 {
        let r = token_from(&server, attacker, "junk");
        let wait = assert_limited(&r, "this address", "1 per minute (bursts of 20)");
        assert!(wait <= 60, "{wait}");
    }
    // Even a good grant from that address waits: the bucket is the address's.
    assert_limited(
        &token_from(&server, attacker, &good[0]),
        "this address",
        "1 per minute",
    );
    // Every limited route, for that address.
    for req in [
        http().post(server.url("/introspect")),
        http().post(server.url("/revoke")),
        http().get(server.url("/admin/v1/keys")),
    ] {
        let r = send(
            req.header("x-forwarded-for", attacker)
                .form(&[("token", "x")]),
        );
        assert_limited(&r, "this address", "1 per minute");
    }
    // Another address is served as if nothing happened.
    let other = "203.0.113.9";
    let r = token_from(&server, other, &good[1]);
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.json["access_token"].as_str().unwrap().to_owned();
    assert_eq!(token_from(&server, other, "junk").status, 400);
    // /auth, which resource servers call for every request, is not limited.
    let r = send(
        http()
            .get(server.url("/auth"))
            .header("x-forwarded-for", attacker)
            .bearer_auth(&token),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        server.metric("tokenauth_rate_limited_total{bucket=\"address\"}") >= 14.0,
        "{}",
        server.log()
    );
}

#[test]
fn a_keys_bucket_is_emptied_only_by_grants_its_key_signed() {
    let env = Env::new();
    let server = env.serve(&["--rate-limit", "key=1/h:3", "--rate-limit", "address=off"]);
    let (_, key) = env.issue_key("ci", &[]);
    let (_, other_key) = env.issue_key("deploy", &[]);
    let good = env.grants(&key, 5, &[]);
    // Grants naming the key but not signed by it: refused for that, and they take nothing
    // from the key's bucket, or anyone could lock a client out by its (public) client id.
    for g in &good[..2] {
        let forged = forge(g);
        for _ in 0..10 {
            let r = token_from(&server, "127.0.0.1", &forged);
            assert_eq!(r.status, 400, "{}", r.text);
            assert_eq!(r.json["error_description"], "Invalid signature");
        }
    }
    for g in &good[..3] {
        let r = token_from(&server, "127.0.0.1", g);
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let wait = assert_limited(
        &token_from(&server, "127.0.0.1", &good[3]),
        "this key",
        "1 per hour (bursts of 3)",
    );
    assert!((3500..=3600).contains(&wait), "{wait}");
    // The limited grant was not used up: it is still good once the bucket refills (not
    // waited for here), and other keys are served.
    for g in env.grants(&other_key, 3, &[]) {
        assert_eq!(token_from(&server, "127.0.0.1", &g).status, 200);
    }
    assert_eq!(
        server.metric("tokenauth_rate_limited_total{bucket=\"key\"}"),
        1.0
    );
}

#[test]
fn a_ci_fleets_traffic_never_meets_the_default_limits() {
    let env = Env::new();
    env.ok(&["user", "add", "ci"]);
    env.ok(&["user", "grant", "ci", "introspect"]);
    let server = env.serve(&["--rate-limit", "default"]);
    let (_, key) = env.issue_key("ci", &[]);
    // 150 jobs starting at once, all behind one address and sharing one key: each
    // exchanges a grant and introspects its token, back to back.
    let http = http();
    for g in env.grants(&key, 150, &[]) {
        let r = send(
            http.post(server.url("/token"))
                .form(&[("grant_type", JWT_BEARER), ("assertion", g.as_str())]),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        let token = r.json["access_token"].as_str().unwrap();
        let r = send(
            http.post(server.url("/introspect"))
                .bearer_auth(token)
                .form(&[("token", token)]),
        );
        assert_eq!(r.json["active"], true, "{}", r.text);
    }
    assert!(!server.log().contains("status=429"), "{}", server.log());
}

/// The usage log's rows, read with the CLI.
fn usage_rows(env: &Env) -> Vec<Value> {
    env.json(&["usage-log", "--json", "--limit", "100000"])
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn junk_from_anyone_leaves_a_usage_log_of_a_few_counted_rows() {
    const JUNK: usize = 100_000;
    let env = Env::new();
    env.ok(&["user", "add", "hook"]);
    let created = env.json(&["token", "create", "--user", "hook", "--json"]);
    let pat = created["token"].as_str().unwrap().to_owned();
    env.ok(&["token", "revoke", created["id"].as_str().unwrap(), "--yes"]);
    // One fixed minute, as a flood within a minute sees it.
    let now = common::now().to_string();
    let server = env.serve_with_env(&[], &[("TOKENAUTH_NOW", &now)]);
    let (_, key) = env.issue_key("ci", &[]);
    let forged = forge(&env.grants(&key, 1, &[])[0]);
    // Four kinds of junk: not a JWT, an unknown client, a bad signature, alg none.
    let kinds: [(&str, &str); 4] = [
        (
            "x",
            "Malformed assertion: a JWT has three dot-separated parts",
        ),
        (
            "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJub2JvZHkifQ.c2ln",
            "No associated key found",
        ),
        (&forged, "Invalid signature"),
        (
            "eyJhbGciOiJub25lIn0.e30.",
            "Algorithm 'none' is not allowed; grants are signed with RS256, ES256 or EdDSA (Ed25519)",
        ),
    ];
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (url, kinds) = (server.url("/token"), &kinds);
            s.spawn(move || {
                let http = http();
                for i in (t..JUNK).step_by(4) {
                    let (assertion, _) = kinds[i % 4];
                    let body = format!("grant_type={JWT_BEARER}&assertion={assertion}");
                    let r = http
                        .post(&url)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header("user-agent", format!("junk/{i}"))
                        .body(body)
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 400);
                }
            });
        }
    });
    let took = started.elapsed();
    // And a revoked personal access token, a thousand times at /auth.
    for _ in 0..1000 {
        let r = send(http().get(server.url("/auth")).bearer_auth(&pat));
        assert_eq!(r.status, 401);
    }
    // Refusals are committed without the caller waiting: poll until all are counted.
    let deadline = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let rows = usage_rows(&env);
        let counted: i64 = rows
            .iter()
            .filter(|r| r["ok"] == false)
            .map(|r| r["count"].as_i64().unwrap())
            .sum();
        if counted >= (JUNK + 1000) as i64 || Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let refused: Vec<&Value> = rows.iter().filter(|r| r["ok"] == false).collect();
    let by_reason: std::collections::BTreeMap<String, i64> = refused
        .iter()
        .map(|r| {
            (
                r["reason"].as_str().unwrap().to_owned(),
                r["count"].as_i64().unwrap(),
            )
        })
        .collect();
    println!(
        "{JUNK} junk requests in {took:.1?} ({:.0}/s): {} usage-log rows, {by_reason:?}",
        JUNK as f64 / took.as_secs_f64(),
        refused.len()
    );
    // The stated bound: one row per kind (address, key or token, reason) per minute.
    assert_eq!(refused.len(), 5, "{refused:#?}");
    for (_, reason) in &kinds {
        assert_eq!(by_reason[*reason], (JUNK / 4) as i64, "{by_reason:?}");
    }
    assert_eq!(by_reason["Personal access token has been revoked"], 1000);
    // Each row keeps its first refusal's details.
    for r in &refused {
        assert_eq!(r["address"], "127.0.0.1", "{r:#}");
        if r["pat_id"].is_null() {
            assert!(
                r["user_agent"].as_str().unwrap().starts_with("junk/"),
                "{r:#}"
            );
        }
    }
    assert_eq!(
        server.metric("tokenauth_refusals_counted_total "),
        (JUNK + 1000) as f64
    );
}

/// A tmpfs mounted at `dir` for the test's life (root only), unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_owned()))
    }

    fn fill(&self) {
        let filler = self.0.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        use std::io::Write;
        while f.write_all(&chunk).is_ok() {}
        // A few bytes at a time, until not even a page fits.
        while f.write_all(&chunk[..512]).is_ok() {}
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_is_a_clear_503_with_a_metric_while_checks_go_on() {
    let env = Env::new_sqlite();
    let Some(disk) = Tmpfs::mount(&env.path().join("store"), "4m") else {
        println!(
            "SKIPPED a_full_disk_is_a_clear_503_with_a_metric_while_checks_go_on: mounting a tmpfs needs root"
        );
        return;
    };
    let mut server = env.serve(&[]);
    let (_, key) = env.issue_key("ci", &[]);
    let (doomed, _) = env.issue_key("ci", &[]);
    let good = env.grants(&key, 3, &[]);
    let r = token_from(&server, "127.0.0.1", &good[0]);
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.json["access_token"].as_str().unwrap().to_owned();

    disk.fill();
    // No token can be issued without its usage row: a 503 that says why, and when to retry.
    let r = token_from(&server, "127.0.0.1", &good[1]);
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.json["error"], "temporarily_unavailable");
    assert!(
        r.json["error_description"]
            .as_str()
            .unwrap()
            .contains("cannot be written for now (disk full or read-only)"),
        "{}",
        r.text
    );
    assert_eq!(r.header("retry-after"), Some("30"));
    assert!(server.metric("tokenauth_store_errors_total{kind=\"unwritable\"}") >= 1.0);
    // The log names the cause (read from the server's stderr as it comes).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains("is full") {
        assert!(Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Checks only read: resource servers go on being answered.
    let r = send(http().get(server.url("/auth")).bearer_auth(&token));
    assert_eq!(r.status, 200, "{}", r.text);
    // The admin cannot revoke on a full disk either, and is told exactly why.
    let err = env.fails(&["revoke-key", &doomed, "--yes"]);
    assert!(
        err.contains("is full; nothing was changed: free space on its file system and retry"),
        "{err}"
    );

    disk.free();
    env.ok(&["revoke-key", &doomed, "--yes"]);
    // The grant refused with 503 was not used up: the client's retry is served.
    let r = token_from(&server, "127.0.0.1", &good[1]);
    assert_eq!(r.status, 200, "{}", r.text);

    server.stop();
}
