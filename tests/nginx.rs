//! A real nginx in front of `tokenauth serve`: `auth_request` asks GET /auth about every
//! request, and only good tokens reach the upstream, which learns the user from X-Auth-User.
//!
//! Needs Debian's `nginx` package (/usr/sbin/nginx); without it the test says so and passes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Env, Reply, http, send};

const NGINX: &str = "/usr/sbin/nginx";
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    /// Every X-Auth-User header value, in order (nginx must send exactly one).
    auth_users: Vec<String>,
    auth_scope: Option<String>,
}

/// A tiny HTTP/1.x upstream on 127.0.0.1 that answers 200 with a body echoing the
/// X-Auth-User header it received. Stopped and joined when dropped.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // Non-blocking accepts, polled, so that the thread always notices `stop` in time.
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Err(e) = answer(stream, &seen) {
                                eprintln!("upstream: {e}");
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => {
                            eprintln!("upstream: accept: {e}");
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
            })
        };
        Upstream {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // Bounded: the loop polls `stop` every 10 ms and each connection has timeouts.
            let _ = t.join();
        }
    }
}

/// Reads one request (headers and a Content-Length body) and answers it, closing the
/// connection.
fn answer(stream: TcpStream, seen: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let mut auth_users = Vec::new();
    let mut auth_scope = None;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim().to_owned();
            match name.trim().to_ascii_lowercase().as_str() {
                "x-auth-user" => auth_users.push(value),
                "x-auth-scope" => auth_scope = Some(value),
                "content-length" => length = value.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    // Drain the body so that closing does not reset the connection under nginx.
    std::io::copy(
        &mut reader.by_ref().take(length as u64),
        &mut std::io::sink(),
    )?;
    let body = format!(
        "upstream saw X-Auth-User: {}\n",
        auth_users.first().map_or("(none)", String::as_str)
    );
    seen.lock().unwrap().push(Seen {
        method,
        target,
        auth_users,
        auth_scope,
    });
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// A real nginx master (one worker), not daemonized, everything under its own temp dir.
/// Stopped (SIGTERM, then SIGKILL after 10 s) when dropped.
struct Nginx {
    child: std::process::Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

/// The config under test. The `server` block is the recipe in docs-nginx.md.
/// `tokenauth` is what follows `http://` in a `proxy_pass` before the path: `127.0.0.1:8080`,
/// or `unix:/path/to.sock:` for a Unix socket.
fn nginx_conf(dir: &Path, port: u16, tokenauth: &str, app: SocketAddr) -> String {
    use std::os::unix::fs::MetadataExt;
    let d = dir.display();
    // As root the workers would run as `nobody`, who cannot enter the 0700 temp dir.
    let user = if std::fs::metadata(dir).unwrap().uid() == 0 {
        "user root;"
    } else {
        ""
    };
    format!(
        r#"{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;

events {{
    worker_connections 64;
}}

http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body_temp;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;

    server {{
        listen 127.0.0.1:{port};

        # Everything here needs a good token; write methods need the write scope.
        location / {{
            auth_request /_auth;
            auth_request_set $auth_user $upstream_http_x_auth_user;
            auth_request_set $auth_key_id $upstream_http_x_auth_key_id;
            auth_request_set $auth_scope $upstream_http_x_auth_scope;
            proxy_set_header X-Auth-User $auth_user;
            proxy_set_header X-Auth-Key-Id $auth_key_id;
            proxy_set_header X-Auth-Scope $auth_scope;
            proxy_pass http://{app};
        }}

        # Here even GET needs the write scope.
        location /admin/ {{
            auth_request /_auth_write;
            auth_request_set $auth_user $upstream_http_x_auth_user;
            proxy_set_header X-Auth-User $auth_user;
            proxy_pass http://{app};
        }}

        # Clients exchange grants through nginx too.
        location = /token {{
            proxy_pass http://{tokenauth}/token;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}

        location = /_auth {{
            internal;
            proxy_pass http://{tokenauth}/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}

        location = /_auth_write {{
            internal;
            proxy_pass http://{tokenauth}/auth?scope=write;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
}}
"#
    )
}

impl Nginx {
    /// Starts nginx on a free port; retries a few times in case another process takes the
    /// port between our probe and nginx's bind.
    fn start(tokenauth: &str, app: SocketAddr) -> Nginx {
        let mut last = String::new();
        for _ in 0..3 {
            match Nginx::try_start(tokenauth, app) {
                Ok(n) => return n,
                Err(log) => last = log,
            }
        }
        panic!("nginx did not start:\n{last}");
    }

    fn try_start(tokenauth: &str, app: SocketAddr) -> Result<Nginx, String> {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, nginx_conf(dir.path(), port, tokenauth, app)).unwrap();
        let error_log = dir.path().join("error.log");
        let mut child = std::process::Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(&error_log)
            .args(["-g", "daemon off;"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {NGINX}: {e}"))?;
        let read_log = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "nginx exited with {status}:\n{}",
                    read_log(&error_log)
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(Nginx { child, dir, addr });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("nginx did not listen:\n{}", read_log(&error_log)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SIGTERM: fast shutdown; the master stops its worker before exiting.
            common::signal(self.child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

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
    let server = env.serve(&["--trusted-proxy", "127.0.0.1"]);
    let upstream = Upstream::start();
    let nginx = Nginx::start(&server.addr.to_string(), upstream.addr);
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

    // Keys are issued after the server starts: it set the store's token URI to itself.
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
    assert_eq!(seen[0].auth_users, ["ci-bot"]);
    assert_eq!(seen[0].auth_scope.as_deref(), Some("read"));

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
    assert_eq!(last.auth_scope.as_deref(), Some("read write"));
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

    // Every request went through the real nginx.
    let access = std::fs::read_to_string(nginx.dir.path().join("access.log")).unwrap();
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
    let upstream = Upstream::start();
    let nginx = Nginx::start(&format!("unix:{}:", socket.display()), upstream.addr);
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
