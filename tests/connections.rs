//! Connection abuse: request heads that never end, bodies that trickle, idle kept-alive
//! connections, floods past the connection cap, and the Unix-socket listener.
//!
//! Everything talks to 127.0.0.1 or a socket in a temporary folder, opens a bounded number
//! of connections and stops on its own. The tests take one lock so that their floods never
//! overlap (the machine has 2 cores); timing bounds are generous for the same reason.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{Env, JWT_BEARER, Server};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// What timing bounds allow beyond the configured timeout on a noisy 2-core machine.
const SLACK: Duration = Duration::from_secs(3);

/// Open descriptors of a process.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// A client connection watched for the moment the server closes it.
struct Watched {
    stream: TcpStream,
    opened: Instant,
    closed: Option<Duration>,
    received: Vec<u8>,
}

impl Watched {
    fn open(addr: SocketAddr, first: &[u8]) -> Watched {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(first).unwrap();
        stream.set_nonblocking(true).unwrap();
        Watched {
            stream,
            opened: Instant::now(),
            closed: None,
            received: Vec::new(),
        }
    }

    /// Reads what is there; notes when the server closed the connection.
    fn poll(&mut self) {
        if self.closed.is_some() {
            return;
        }
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break self.closed = Some(self.opened.elapsed()),
                Ok(n) => self.received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break self.closed = Some(self.opened.elapsed()),
            }
        }
    }

    /// Sends a little more, unless the server has closed the connection.
    fn trickle(&mut self, bytes: &[u8]) {
        if self.closed.is_none() && self.stream.write_all(bytes).is_err() {
            self.closed = Some(self.opened.elapsed());
        }
    }
}

/// GETs /healthz every 50 ms on one kept-alive connection until `stop`; returns (answers,
/// failures).
fn steady_client(server: &Server, stop: &AtomicBool) -> (u32, Vec<String>) {
    let client = common::http();
    let (mut ok, mut failed) = (0, Vec::new());
    let cap = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) && Instant::now() < cap {
        let started = Instant::now();
        match client.get(server.url("/healthz")).send() {
            Ok(r) if r.status() == 200 && started.elapsed() < Duration::from_secs(2) => ok += 1,
            Ok(r) => failed.push(format!("{} after {:?}", r.status(), started.elapsed())),
            Err(e) => failed.push(e.to_string()),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (ok, failed)
}

#[test]
fn slow_heads_trickling_bodies_and_idle_connections_are_closed_while_others_are_served() {
    let _serial = serial();
    let env = Env::new();
    let server = env.serve(&[
        "--header-timeout",
        "1s",
        "--body-timeout",
        "1s",
        "--idle-timeout",
        "2500ms",
        "--request-timeout",
        "5s",
    ]);
    let baseline = fds(server.pid());
    let stop = AtomicBool::new(false);
    let (steady, mut heads, mut bodies, mut idle) = std::thread::scope(|s| {
        let steady = s.spawn(|| steady_client(&server, &stop));
        // A request head that never ends: one more header line every 300 ms.
        let mut heads: Vec<Watched> = (0..300)
            .map(|_| Watched::open(server.addr, b"GET /healthz HTTP/1.1\r\nHost: t\r\n"))
            .collect();
        // A body that trickles: one byte every 300 ms of a 1000-byte body.
        let mut bodies: Vec<Watched> = (0..50)
            .map(|_| {
                Watched::open(
                    server.addr,
                    b"POST /token HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type=",
                )
            })
            .collect();
        // A whole request, then silence on the kept-alive connection.
        let mut idle: Vec<Watched> = (0..50)
            .map(|_| Watched::open(server.addr, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"))
            .collect();
        let started = Instant::now();
        let mut last_trickle = Instant::now();
        let mut peak = 0;
        while started.elapsed() < Duration::from_secs(2) + 2 * SLACK {
            if last_trickle.elapsed() >= Duration::from_millis(300) {
                last_trickle = Instant::now();
                heads.iter_mut().for_each(|w| w.trickle(b"X-Slow: 1\r\n"));
                bodies.iter_mut().for_each(|w| w.trickle(b"a"));
            }
            for w in heads.iter_mut().chain(&mut bodies).chain(&mut idle) {
                w.poll();
            }
            peak = peak.max(fds(server.pid()));
            if heads
                .iter()
                .chain(&bodies)
                .chain(&idle)
                .all(|w| w.closed.is_some())
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("server descriptors: {baseline} before, at most {peak} during the flood");
        stop.store(true, Ordering::Relaxed);
        (steady.join().unwrap(), heads, bodies, idle)
    });

    let closed_within = |ws: &mut [Watched], what: &str, lo: Duration, hi: Duration| {
        let times: Vec<Duration> = ws
            .iter()
            .map(|w| {
                w.closed
                    .unwrap_or_else(|| panic!("a {what} connection was never closed"))
            })
            .collect();
        let (min, max) = (times.iter().min().unwrap(), times.iter().max().unwrap());
        println!("{what}: {} closed after {min:?} to {max:?}", ws.len());
        assert!(
            *min >= lo,
            "a {what} connection was closed early, after {min:?}"
        );
        assert!(*max <= hi, "a {what} connection stayed open {max:?}");
    };
    closed_within(
        &mut heads,
        "slow head",
        Duration::from_millis(900),
        Duration::from_secs(1) + SLACK,
    );
    closed_within(
        &mut bodies,
        "trickling body",
        Duration::from_millis(900),
        Duration::from_secs(1) + SLACK,
    );
    // Idle connections outlive the header timeout: the two limits are separate.
    closed_within(
        &mut idle,
        "idle",
        Duration::from_millis(2400),
        Duration::from_millis(2500) + SLACK,
    );
    for w in &bodies {
        let answer = String::from_utf8_lossy(&w.received);
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "trickling body got: {answer}"
        );
        assert!(answer.contains(r#""error":"invalid_request""#), "{answer}");
        assert!(
            answer.contains("Request body not received within 1 s"),
            "{answer}"
        );
    }
    for w in &idle {
        assert!(String::from_utf8_lossy(&w.received).starts_with("HTTP/1.1 200"));
    }
    let (ok, failed) = steady;
    println!("steady client: {ok} answers, {} failures", failed.len());
    assert!(
        failed.is_empty(),
        "a normal client was not served: {failed:?}"
    );
    assert!(ok >= 20, "the normal client got too few answers: {ok}");
    // Every descriptor the flood took is given back.
    let deadline = Instant::now() + SLACK;
    while fds(server.pid()) > baseline + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        fds(server.pid()) <= baseline + 2,
        "descriptors were not released"
    );
}

#[test]
fn past_the_connection_cap_newcomers_wait_and_established_clients_keep_being_served() {
    let _serial = serial();
    let env = Env::new();
    let server = env.serve(&["--max-connections", "20", "--header-timeout", "2s"]);
    let baseline = fds(server.pid());
    // An established client holds one of the 20 slots.
    let mut established = TcpStream::connect(server.addr).unwrap();
    established
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let ask = |s: &mut TcpStream| -> String {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(ask(&mut established).starts_with("HTTP/1.1 200"));

    // 40 slow heads: 19 take the remaining slots, 21 wait in the listen backlog.
    let mut slow: Vec<Watched> = (0..40)
        .map(|_| Watched::open(server.addr, b"GET /healthz HTTP/1.1\r\n"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut newcomer = TcpStream::connect(server.addr).expect("the backlog takes the connection");
    newcomer
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    newcomer
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut answer = Vec::new();
        let _ = newcomer.read_to_end(&mut answer);
        let _ = tx.send((started.elapsed(), answer));
    });
    let mut peak = 0;
    let mut established_answers = 0;
    let newcomer_answer = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the newcomer was never served"
        );
        peak = peak.max(fds(server.pid()));
        let t = Instant::now();
        let answer = ask(&mut established);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "established client: {answer}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "established client waited {:?}",
            t.elapsed()
        );
        established_answers += 1;
        slow.iter_mut().for_each(|w| w.trickle(b"X-Slow: 1\r\n"));
        if let Ok(done) = rx.try_recv() {
            break done;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (waited, answer) = newcomer_answer;
    println!(
        "descriptors: {baseline} before, at most {peak} with 41 connections against a cap of 20; \
         the newcomer waited {waited:?}; the established client got {established_answers} answers meanwhile"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "newcomer got {answer:?}"
    );
    // It waited for a slot: until the first slow heads timed out.
    assert!(
        waited >= Duration::from_millis(1500),
        "served past the cap after {waited:?}"
    );
    assert!(
        peak <= baseline + 20,
        "{peak} descriptors with a cap of 20 (baseline {baseline})"
    );
}

// ---- the Unix socket ------------------------------------------------------------------------

/// One request over the Unix socket (HTTP/1.1, `Connection: close`): (status, body).
fn over_socket(socket: &Path, request: &str) -> (u16, serde_json::Value) {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8(answer).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

fn token_request(grant: &str, forwarded_for: Option<&str>) -> String {
    let body = format!("grant_type={JWT_BEARER}&assertion={grant}");
    let xff = forwarded_for.map_or(String::new(), |a| format!("X-Forwarded-For: {a}\r\n"));
    format!(
        "POST /token HTTP/1.1\r\nHost: tokenauth\r\nConnection: close\r\n{xff}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn the_unix_socket_is_private_and_its_forwarded_for_is_believed() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let env = Env::new();
    env.ok(&["init", "--token-uri", "http://tokenauth/token"]);
    let (_, key) = env.issue_key("sock-bot", &["--ip-range", "10.9.9.9"]);
    let socket = env.path().join("tokenauth.sock");
    let mut server = env.serve_unix(&socket, &[]);
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert!(
        server
            .log()
            .contains(&format!("listening on unix:{}", socket.display()))
    );

    let grant = || {
        env.ok(&["sign-grant", "--key", key.to_str().unwrap()])
            .trim()
            .to_owned()
    };
    let (status, body) = over_socket(&socket, &token_request(&grant(), Some("10.9.9.9")));
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let (status, body) = over_socket(&socket, &token_request(&grant(), Some("1.2.3.4")));
    assert_eq!(
        (status, body["error_description"].as_str()),
        (400, Some("Address 1.2.3.4 is not allowed to use this key"))
    );
    // Without the proxy's header the client is unknown, not "the proxy".
    let (status, body) = over_socket(&socket, &token_request(&grant(), None));
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("The client's address is unknown"),
        "{body}"
    );
    let auth = |xff: &str| {
        over_socket(
            &socket,
            &format!(
                "GET /auth HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n{xff}\r\n"
            ),
        )
    };
    assert_eq!(auth("X-Forwarded-For: 10.9.9.9\r\n").0, 200);
    assert_eq!(auth("X-Forwarded-For: 10.9.9.10\r\n").0, 401);
    assert_eq!(auth("").0, 401);

    // A second server cannot take over a live socket.
    let out = env
        .cmd()
        .args(["serve", "--listen", &format!("unix:{}", socket.display())])
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another server is listening on it"));

    // A clean stop removes the socket; a killed server's stale socket is taken over.
    assert!(server.stop().success());
    assert!(!socket.exists(), "the socket outlived its server");
    let mut killed = env.serve_unix(&socket, &["--socket-mode", "0600"]);
    killed.kill();
    assert!(socket.exists());
    let again = env.serve_unix(&socket, &[]);
    assert_eq!(
        over_socket(
            &socket,
            "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .0,
        200
    );
    drop(again);

    // Never over a file that is not a socket.
    let file = env.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let out = env
        .cmd()
        .args(["serve", "--listen", &format!("unix:{}", file.display())])
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists and is not a socket"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn socket_mode_is_refused_with_a_tcp_listener() {
    let env = Env::new();
    let err = env.fails(&["serve", "--listen", "127.0.0.1:0", "--socket-mode", "0600"]);
    assert!(
        err.contains("--socket-mode applies only to --listen unix:PATH"),
        "{err}"
    );
}

/// A server that cannot answer in time (here: another process holds the store's write lock,
/// so the issuance's usage row cannot be committed) says so with a 503 the client may retry,
/// instead of holding the connection as long as the lock lasts.
#[test]
fn a_request_not_answered_within_the_request_timeout_gets_503_retry_after() {
    let _serial = serial();
    let env = Env::new();
    let server = env.serve(&["--request-timeout", "500ms"]);
    let (_, key) = env.issue_key("slow-bot", &[]);
    let grant = env
        .ok(&["sign-grant", "--key", key.to_str().unwrap()])
        .trim()
        .to_owned();
    let lock = rusqlite::Connection::open(env.db()).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    let reply = common::post_form(
        &server,
        &[("grant_type", JWT_BEARER), ("assertion", &grant)],
        None,
    );
    let waited = started.elapsed();
    lock.execute_batch("COMMIT").unwrap();
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.json["error"], "temporarily_unavailable");
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_millis(500) + SLACK,
        "answered after {waited:?}"
    );
    // Once the lock is gone, a fresh grant goes through.
    let grant = env
        .ok(&["sign-grant", "--key", key.to_str().unwrap()])
        .trim()
        .to_owned();
    let reply = common::post_form(
        &server,
        &[("grant_type", JWT_BEARER), ("assertion", &grant)],
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
}
