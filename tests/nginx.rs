//! A real nginx in front of `tokenauth serve`: `auth_request` asks GET /auth about every
//! request, and only good tokens reach the upstream, which learns the user from X-Auth-User.
//!
//! Needs Debian's `nginx` package (/usr/sbin/nginx); without it the test says so and passes.

mod common;

use std::path::Path;

use common::docs::blocks_of;
use common::web::{NGINX, NGINX_SECTION, Nginx, Site};
use common::{Env, Reply, http, send};

fn token(env: &Env, key: &Path, extra: &[&str]) -> String {
    let mut args = vec!["get-token", "--key", key.to_str().unwrap(), "--no-cache"];
    args.extend_from_slice(extra);
    env.ok(&args).trim().to_owned()
}

#[test]
fn nginx_auth_request_round_trip() {
    if !Path::new(NGINX).exists() {
        eprintln!(
            "nginx not installed; skipping nginx round trip — install Debian's nginx package"
        );
        return;
    }
    let env = Env::new();
    // The documented commands: `serve` with its flags (on the test's port), and `init` with
    // nginx's URL as the token URI.
    let recipe = blocks_of("docs/proxies.md", NGINX_SECTION, "sh").swap_remove(0);
    let line = |start: &str| -> Vec<String> {
        let line = recipe
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("the recipe runs {start}:\n{recipe}"));
        line.split_whitespace().skip(2).map(str::to_owned).collect()
    };
    let mut serve_flags = line("tokenauth serve");
    let listen = serve_flags.iter().position(|f| f == "--listen").unwrap();
    serve_flags.drain(listen..listen + 2);
    let serve_flags: Vec<&str> = serve_flags.iter().map(String::as_str).collect();
    let server = env.serve(&serve_flags);
    let upstream = Site::app();
    let nginx = Nginx::start(&server.addr.to_string(), upstream.addr, "");
    let init: Vec<String> = line("tokenauth init")
        .into_iter()
        .map(|a| a.replace("https://api.example.com", &nginx.url("")))
        .collect();
    let init: Vec<&str> = init.iter().map(String::as_str).collect();
    env.ok(&[&["init"], &init[..]].concat());
    let context = || {
        format!(
            "\n--- nginx error.log ---\n{}\n--- tokenauth log ---\n{}",
            nginx.error_log(),
            server.log()
        )
    };
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut req = http().get(nginx.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        send(req)
    };
    let expect = |r: &Reply, status: u16, what: &str| {
        assert_eq!(
            r.status,
            status,
            "{what}: {}\n{}{}",
            r.status,
            r.text,
            context()
        );
    };

    // The key files name nginx's /token, so every exchange below goes through nginx.
    let (reader_id, reader) = env.issue_key("ci-bot", &[]);
    let (_, writer) = env.issue_key("deployer", &["--scope", "write"]);
    let (_, local) = env.issue_key("local-bot", &["--ip-range", "127.0.0.1"]);
    let read_token = token(&env, &reader, &[]);
    let write_token = token(&env, &writer, &["--scope", "write"]);
    let local_token = token(&env, &local, &[]);
    let bearer = |t: &str| format!("Bearer {t}");

    // No token: nginx answers 401 with tokenauth's challenge, and the upstream never hears
    // of it, even when the client forges the user header.
    let r = get("/app/data", &[("X-Auth-User", "root")]);
    expect(&r, 401, "no token");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"tokenauth\""),
        "{}",
        context()
    );
    let r = get("/app/data", &[("Authorization", "Bearer not-a-token")]);
    expect(&r, 401, "a junk token");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|w| w.contains("error=\"invalid_token\"")),
        "{:?}",
        r.headers
    );
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());

    // A good token: 200, and the upstream saw the user (the forged header is replaced).
    let r = get(
        "/app/data?x=1",
        &[
            ("Authorization", &bearer(&read_token)),
            ("X-Auth-User", "root"),
        ],
    );
    expect(&r, 200, "a good token");
    assert!(r.text.contains("X-Auth-User: ci-bot"), "{}", r.text);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].target, "/app/data?x=1");
    assert_eq!(seen[0].all("x-auth-user"), ["ci-bot"]);
    assert_eq!(seen[0].header("x-auth-scope"), Some("read"));

    // The other places a token may travel, all forwarded by auth_request as they came.
    let r = get(
        "/",
        &[("Cookie", &format!("theme=dark; token={read_token}"))],
    );
    expect(&r, 200, "the token cookie");
    assert!(r.text.contains("X-Auth-User: ci-bot"), "{}", r.text);
    let r = get("/", &[("X-JWT-Auth-Token", &read_token)]);
    expect(&r, 200, "X-JWT-Auth-Token");
    let r = get(
        "/",
        &[("Authorization", &format!("JWT token=\"{write_token}\""))],
    );
    expect(&r, 200, "Authorization: JWT token=");
    assert!(r.text.contains("X-Auth-User: deployer"), "{}", r.text);

    // Write methods need the write scope: the subrequest's 403 becomes nginx's 403.
    let seen_before = upstream.seen().len();
    let post = |t: &str| {
        send(
            http()
                .post(nginx.url("/app/items"))
                .header("Authorization", bearer(t))
                .body("name=widget"),
        )
    };
    let r = post(&read_token);
    expect(&r, 403, "POST with a read token");
    let r = send(
        http()
            .delete(nginx.url("/app/items/1"))
            .header("Authorization", bearer(&read_token)),
    );
    expect(&r, 403, "DELETE with a read token");
    assert_eq!(upstream.seen().len(), seen_before, "{:?}", upstream.seen());
    let r = post(&write_token);
    expect(&r, 200, "POST with a write token");
    assert!(r.text.contains("X-Auth-User: deployer"), "{}", r.text);
    let last = upstream.seen().pop().unwrap();
    assert_eq!(last.method, "POST");
    assert_eq!(last.header("x-auth-scope"), Some("read write"));
    let r = send(
        http()
            .head(nginx.url("/app/data"))
            .header("Authorization", bearer(&read_token)),
    );
    expect(&r, 200, "HEAD with a read token");

    // ?scope=write on the auth location: even GET needs write there.
    let r = get("/admin/", &[("Authorization", &bearer(&read_token))]);
    expect(&r, 403, "GET /admin/ with a read token");
    let r = get("/admin/", &[("Authorization", &bearer(&write_token))]);
    expect(&r, 200, "GET /admin/ with a write token");
    assert!(r.text.contains("X-Auth-User: deployer"), "{}", r.text);

    // The client address: nginx overwrites X-Forwarded-For with the peer, so a forged one
    // cannot move a client into or out of a key's IP range...
    let r = get(
        "/",
        &[
            ("Authorization", &bearer(&local_token)),
            ("X-Forwarded-For", "10.9.9.9"),
        ],
    );
    expect(
        &r,
        200,
        "a 127.0.0.1-only key through nginx, forged X-Forwarded-For",
    );
    assert!(r.text.contains("X-Auth-User: local-bot"), "{}", r.text);
    // ...while tokenauth itself believes X-Forwarded-For from 127.0.0.1 (--trusted-proxy),
    // which is what makes nginx's overwrite matter.
    let r = send(
        http()
            .get(server.url("/auth"))
            .header("Authorization", bearer(&local_token))
            .header("X-Forwarded-For", "10.9.9.9"),
    );
    expect(
        &r,
        401,
        "direct /auth with X-Forwarded-For outside the key's range",
    );

    // Revoking the key takes effect on the very next request.
    env.ok(&["revoke-key", &reader_id, "--yes"]);
    let seen_before = upstream.seen().len();
    let r = get("/app/data", &[("Authorization", &bearer(&read_token))]);
    expect(&r, 401, "a token of a revoked key");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|w| w.contains("error=\"invalid_token\"")),
        "{:?}",
        r.headers
    );
    assert_eq!(upstream.seen().len(), seen_before, "{:?}", upstream.seen());
    // Other keys are untouched.
    let r = get("/", &[("Authorization", &bearer(&write_token))]);
    expect(&r, 200, "another key's token after the revocation");

    // Every request went through the real nginx, the exchanges too, and tokenauth saw the
    // client's address that nginx passed on.
    let access = nginx.access_log();
    assert!(access.contains("\"POST /token HTTP/1.1\" 200"), "{access}");
    let log = env.json(&["usage-log", "--json"]);
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|r| r["ok"] == true && r["address"] == "127.0.0.1"),
        "{log}"
    );
    assert!(
        access.contains("\"GET /app/data?x=1 HTTP/1.1\" 200"),
        "{access}"
    );
    assert!(
        access.contains("\"POST /app/items HTTP/1.1\" 403"),
        "{access}"
    );
}

/// The same recipe over a Unix socket: no `--trusted-proxy`, yet nginx's X-Forwarded-For is
/// believed, because only the proxy can reach the socket.
#[test]
fn nginx_reaches_tokenauth_over_a_unix_socket_and_its_forwarded_for_is_believed() {
    if !Path::new(NGINX).exists() {
        eprintln!(
            "nginx not installed; skipping the Unix-socket round trip — install Debian's nginx package"
        );
        return;
    }
    let env = Env::new();
    let socket = env.path().join("tokenauth.sock");
    let server = env.serve_unix(&socket, &[]);
    let upstream = Site::app();
    let nginx = Nginx::start(&format!("unix:{}:", socket.display()), upstream.addr, "");
    let context = || {
        format!(
            "\n--- nginx error.log ---\n{}\n--- tokenauth log ---\n{}",
            nginx.error_log(),
            server.log()
        )
    };
    // Key files point at nginx, the only way in.
    env.ok(&["init", "--token-uri", &nginx.url("/token")]);
    let (_, local) = env.issue_key("local-bot", &["--ip-range", "127.0.0.1"]);
    let (_, remote) = env.issue_key("remote-bot", &["--ip-range", "10.0.0.0/8"]);
    // nginx overwrites the forged header with the real peer, 127.0.0.1.
    let local_token = token(&env, &local, &[]);
    let out = env
        .cmd()
        .args(["get-token", "--no-cache", "--key", remote.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Address 127.0.0.1 is not allowed to use this key"),
        "{err}{}",
        context()
    );
    let r = send(
        http()
            .get(nginx.url("/app/data"))
            .header("Authorization", format!("Bearer {local_token}"))
            .header("X-Forwarded-For", "10.1.1.1"),
    );
    assert_eq!(r.status, 200, "{}{}", r.text, context());
    assert!(r.text.contains("X-Auth-User: local-bot"), "{}", r.text);
    // Rows name the client nginx saw.
    let rows: serde_json::Value = env.json(&["usage-log", "--json", "--user", "local-bot"]);
    assert_eq!(rows[0]["address"], "127.0.0.1", "{rows:#}");
}
