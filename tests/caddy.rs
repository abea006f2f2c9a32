//! A real Caddy in front of `tokenauth serve`, configured with the documented `forward_auth`
//! recipe as written: only good tokens reach the application, write methods need write, the
//! `X-Auth-*` headers cannot be forged, and grants are exchanged through Caddy.
//!
//! Needs Debian's `caddy` package (/usr/bin/caddy); without it the test says so and passes.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use common::docs::blocks_of;
use common::web::{Site, wait_listening};
use common::{Env, JWT_BEARER, Reply, http, send};

const CADDY: &str = "/usr/bin/caddy";

/// A real `caddy run` on a free port with the documented Caddyfile, everything under its own
/// temp dir. Stopped (SIGTERM, then SIGKILL after 10 s) when dropped.
struct Caddy {
    child: std::process::Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Caddy {
    fn start(tokenauth: SocketAddr, app: SocketAddr) -> Caddy {
        let recipe = blocks_of(
            "docs/proxies.md",
            "## Behind Caddy (`forward_auth`)",
            "caddyfile",
        )
        .swap_remove(0);
        let mut last = String::new();
        // Another process may take the port between our probe and Caddy's bind.
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let site = recipe
                .replace("api.example.com", &format!("http://{addr}"))
                .replace("127.0.0.1:8080", &tokenauth.to_string())
                .replace("127.0.0.1:3000", &app.to_string());
            assert!(site.contains(&format!("http://{addr} {{")), "{site}");
            let conf = dir.path().join("Caddyfile");
            std::fs::write(
                &conf,
                format!("{{\n\tadmin off\n\tauto_https off\n}}\n\n{site}"),
            )
            .unwrap();
            let log = dir.path().join("caddy.log");
            let mut child = std::process::Command::new(CADDY)
                .args(["run", "--adapter", "caddyfile", "--config"])
                .arg(&conf)
                .env("HOME", dir.path())
                .env("XDG_DATA_HOME", dir.path().join("data"))
                .env("XDG_CONFIG_HOME", dir.path().join("config"))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            match wait_listening(&mut child, addr, "caddy", &log) {
                Ok(()) => return Caddy { child, dir, addr },
                Err(e) => last = e,
            }
        }
        panic!("caddy did not start:\n{last}");
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn log(&self) -> String {
        read(&self.dir.path().join("caddy.log"))
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

impl Drop for Caddy {
    fn drop(&mut self) {
        common::web::stop(&mut self.child);
    }
}

#[test]
fn caddy_forward_auth_round_trip_with_the_documented_recipe() {
    if !Path::new(CADDY).exists() {
        eprintln!(
            "caddy not installed; skipping Caddy round trip — install Debian's caddy package"
        );
        return;
    }
    let env = Env::new();
    let server = env.serve(&["--trusted-proxy", "127.0.0.1"]);
    let upstream = Site::app();
    let caddy = Caddy::start(server.addr, upstream.addr);
    let context = || {
        format!(
            "\n--- caddy log ---\n{}\n--- tokenauth log ---\n{}",
            caddy.log(),
            server.log()
        )
    };
    let expect = |r: &Reply, status: u16, what: &str| {
        assert_eq!(r.status, status, "{what}: {}\n{}", r.text, context());
    };
    let (reader_id, reader) = env.issue_key("ci-bot", &[]);
    let (_, writer) = env.issue_key("deployer", &["--scope", "write"]);
    let read_token = env
        .ok(&["get-token", "--no-cache", "--key", reader.to_str().unwrap()])
        .trim()
        .to_owned();
    let bearer = |t: &str| format!("Bearer {t}");
    let forged = [
        ("X-Auth-User", "root"),
        ("X-Auth-Key-Id", "forged-key"),
        ("X-Auth-Token-Id", "forged-token"),
        ("X-Auth-Scope", "write"),
    ];
    let get = |path: &str, token: Option<&str>| {
        let mut req = http().get(caddy.url(path));
        for (k, v) in forged {
            req = req.header(k, v);
        }
        if let Some(t) = token {
            req = req.header("Authorization", bearer(t));
        }
        send(req)
    };

    // No token, or a junk one: tokenauth's 401 and challenge, and the application hears nothing.
    let r = get("/app/data", None);
    expect(&r, 401, "no token");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"tokenauth\"")
    );
    let r = get("/app/data", Some("not-a-token"));
    expect(&r, 401, "a junk token");
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());

    // Grants are exchanged through Caddy, which names the client in X-Forwarded-For.
    let grant = env.ok(&["sign-grant", "--key", writer.to_str().unwrap()]);
    let r = send(
        http()
            .post(caddy.url("/token"))
            .form(&[("grant_type", JWT_BEARER), ("assertion", grant.trim())]),
    );
    expect(&r, 200, "an exchange through Caddy");
    let write_token = serde_json::from_str::<serde_json::Value>(&r.text).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // A good token: the application sees who called, never the forged headers.
    let r = get("/app/data?x=1", Some(&read_token));
    expect(&r, 200, "a good token");
    assert!(r.text.contains("X-Auth-User: ci-bot"), "{}", r.text);
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(seen.target, "/app/data?x=1");
    assert_eq!(seen.all("x-auth-user"), ["ci-bot"]);
    assert_eq!(seen.all("x-auth-scope"), ["read"]);
    assert!(seen.all("x-auth-key-id").is_empty(), "{seen:?}");
    assert!(seen.all("x-auth-token-id").is_empty(), "{seen:?}");

    // A personal access token works the same way.
    let pat = env.json(&["token", "create", "--user", "ci-bot", "--json"]);
    let r = get("/", pat["token"].as_str());
    expect(&r, 200, "a personal access token");
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(seen.all("x-auth-user"), ["ci-bot"]);
    assert_eq!(seen.all("x-auth-scope"), ["read"]);
    assert!(seen.all("x-auth-token-id").is_empty(), "{seen:?}");

    // Write methods need write (Caddy sends X-Forwarded-Method); /admin/ needs it for GET too.
    let before = upstream.seen().len();
    let post = |t: &str| {
        send(
            http()
                .post(caddy.url("/app/items"))
                .header("Authorization", bearer(t))
                .body("name=widget"),
        )
    };
    expect(&post(&read_token), 403, "POST with a read token");
    expect(
        &get("/admin/users", Some(&read_token)),
        403,
        "/admin/ with a read token",
    );
    assert_eq!(upstream.seen().len(), before, "{:?}", upstream.seen());
    let r = post(&write_token);
    expect(&r, 200, "POST with a write token");
    assert!(r.text.contains("X-Auth-User: deployer"), "{}", r.text);
    assert_eq!(upstream.seen().pop().unwrap().method, "POST");
    let r = get("/admin/users", Some(&write_token));
    expect(&r, 200, "/admin/ with a write token");

    // A revoked key's token stops at Caddy at once.
    env.ok(&["revoke-key", &reader_id, "--yes"]);
    let r = get("/app/data", Some(&read_token));
    expect(&r, 401, "a revoked key's token");
}
