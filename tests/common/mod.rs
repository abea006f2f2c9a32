//! Shared helpers for the integration tests: a temporary store and the real binary.
#![allow(dead_code)]

pub mod docs;
pub mod oidc;
pub mod web;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use assert_cmd::Command;
pub use tokenauth::store::postgres::ScratchDatabase;

/// The store's change-feed head (the newest change), read from PostgreSQL.
pub fn pg_generation(url: &str) -> i64 {
    let mut client = tokenauth::store::PgUrl::parse(url)
        .unwrap()
        .connect()
        .unwrap();
    client
        .query_one("SELECT coalesce(max(seq), 0) FROM changes", &[])
        .unwrap()
        .get(0)
}

/// The newest feed position a server's log says it applied or loaded.
fn logged_generation(log: &str) -> i64 {
    log.lines()
        .filter_map(|l| l.split("generation=").nth(1))
        .filter_map(|g| g.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .max()
        .unwrap_or(i64::MIN)
}

pub struct Env {
    pub dir: tempfile::TempDir,
    /// The PostgreSQL database this env's store lives in, for tests run on that backend.
    pub pg: Option<ScratchDatabase>,
    /// Logs of the servers started on this env, and whether each still runs: after a CLI
    /// change on PostgreSQL, `ok` waits until they have all loaded it.
    servers: Mutex<Vec<ServerWatch>>,
}

/// A server's log and whether it still runs.
type ServerWatch = (Arc<Mutex<String>>, Arc<AtomicBool>);

/// Which backend `Env::new` gives stores on, for the test running on this thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

thread_local! {
    static BACKEND: std::cell::Cell<Backend> = const { std::cell::Cell::new(Backend::Sqlite) };
}

/// Runs a test body with `Env::new` on `backend`; on PostgreSQL only when a server answers
/// (otherwise a notice says the test was skipped).
pub fn on_backend(backend: Backend, test: &str, body: impl FnOnce()) {
    if backend == Backend::Postgres && !postgres_available(test) {
        return;
    }
    BACKEND.with(|b| b.set(backend));
    body();
}

fn postgres_available(test: &str) -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *AVAILABLE.get_or_init(|| ScratchDatabase::create("the PostgreSQL tests").is_some());
    if !ok {
        eprintln!("skipped {test} on PostgreSQL: no server answers");
    }
    ok
}

// Not every test file runs tests on both backends.
#[allow(unused_macros)]
/// Each test twice: `name::sqlite` and `name::postgres` (the body's `Env::new()` gives a
/// store of that backend; PostgreSQL ones skip with a notice when no server answers).
macro_rules! on_both_backends {
    ($($(#[$meta:meta])* fn $name:ident() $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn body() $body
            #[test]
            fn sqlite() {
                $crate::common::on_backend($crate::common::Backend::Sqlite, stringify!($name), body);
            }
            #[test]
            fn postgres() {
                $crate::common::on_backend($crate::common::Backend::Postgres, stringify!($name), body);
            }
        }
    )*};
}
#[allow(unused_imports)]
pub(crate) use on_both_backends;

impl Env {
    pub fn new() -> Env {
        let pg = match BACKEND.with(|b| b.get()) {
            Backend::Sqlite => None,
            Backend::Postgres => {
                Some(ScratchDatabase::create("a test").expect("PostgreSQL answered before"))
            }
        };
        Env {
            dir: tempfile::tempdir().unwrap(),
            pg,
            servers: Default::default(),
        }
    }

    /// An env on SQLite, whichever backend the test runs on.
    pub fn new_sqlite() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            pg: None,
            servers: Default::default(),
        }
    }

    /// An env whose store is this PostgreSQL database.
    pub fn on_postgres(db: ScratchDatabase) -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            pg: Some(db),
            servers: Default::default(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The SQLite file (meaningful only for an env on SQLite).
    pub fn db(&self) -> PathBuf {
        self.path().join("store").join("tokenauth.db")
    }

    /// What --db / TOKENAUTH_DB names: the SQLite file or the PostgreSQL URL.
    pub fn db_arg(&self) -> std::ffi::OsString {
        match &self.pg {
            Some(pg) => pg.url.clone().into(),
            None => self.db().into(),
        }
    }

    /// On PostgreSQL, waits until every running server of this env has applied the store's
    /// newest change (they learn of changes asynchronously, within milliseconds).
    pub fn wait_for_servers(&self) {
        let Some(pg) = &self.pg else { return };
        let servers: Vec<_> = self
            .servers
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, alive)| alive.load(Ordering::Relaxed))
            .cloned()
            .collect();
        if servers.is_empty() {
            return;
        }
        let generation = pg_generation(&pg.url);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        for (log, alive) in servers {
            while alive.load(Ordering::Relaxed)
                && logged_generation(&log.lock().unwrap()) < generation
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "a server did not load generation {generation} within 5 s: {}",
                    log.lock().unwrap()
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }

    /// The binary, run in the temp dir on the temp store, with its own data and cache dirs.
    pub fn cmd(&self) -> Command {
        Command::from_std(self.std_cmd(env!("CARGO_BIN_EXE_tokenauth")))
    }

    /// `program` as a plain process (to spawn), with the environment `cmd` gives the binary.
    pub fn std_cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut c = std::process::Command::new(program);
        c.current_dir(self.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("XDG_DATA_HOME", self.path().join("data"))
            .env("XDG_CACHE_HOME", self.path().join("cache"))
            .env("TOKENAUTH_DB", self.db_arg());
        c
    }

    /// Runs with args, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "tokenauth {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        self.wait_for_servers();
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs with args, asserts exit code 1, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "tokenauth {args:?} should fail with 1: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.starts_with("tokenauth: error: "),
            "not one error line: {err}"
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "error is not one line: {err}"
        );
        err
    }

    /// Issues a key for `user` into `<user>.json` and returns (key id, key file path).
    pub fn issue_key(&self, user: &str, extra: &[&str]) -> (String, PathBuf) {
        let file = self.path().join(format!("{user}-{}.json", rand_suffix()));
        let mut args = vec![
            "issue-key",
            "--user",
            user,
            "--out",
            file.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        let v: serde_json::Value = serde_json::from_str(&self.ok(&args)).unwrap();
        (v["key_id"].as_str().unwrap().to_owned(), file)
    }

    /// `count` grants signed with the key file at `key`, one per line of `sign-grant`.
    pub fn grants(&self, key: &Path, count: u32, extra: &[&str]) -> Vec<String> {
        let count = count.to_string();
        let mut args = vec![
            "sign-grant",
            "--key",
            key.to_str().unwrap(),
            "--count",
            &count,
        ];
        args.extend_from_slice(extra);
        self.ok(&args).lines().map(str::to_owned).collect()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

/// The wall clock in Unix seconds, as the binary's clock reads it.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A jti no other grant of this test binary uses, so crafted grants never trip the replay
/// check by accident.
pub fn fresh_jti() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "test-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A real `tokenauth serve` on 127.0.0.1 port 0, stopped (SIGTERM) when dropped.
pub struct Server {
    child: std::process::Child,
    pub addr: std::net::SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    /// `https` when the server said it listens with TLS.
    pub scheme: &'static str,
    alive: Arc<AtomicBool>,
}

impl Env {
    /// Starts the server on this env's store, points the store's token URI at it, and waits
    /// until it listens.
    pub fn serve(&self, extra: &[&str]) -> Server {
        self.serve_with_env(extra, &[])
    }

    pub fn serve_with_env(&self, extra: &[&str], vars: &[(&str, &str)]) -> Server {
        self.spawn_server("127.0.0.1:0", extra, vars)
    }

    /// `serve_with_env` on a given port, so that a restarted server keeps its token URI (and
    /// the client's cache entries, which are keyed by it).
    pub fn serve_on_port(&self, port: u16, extra: &[&str], vars: &[(&str, &str)]) -> Server {
        self.spawn_server(&format!("127.0.0.1:{port}"), extra, vars)
    }

    /// The server on a Unix socket at `socket` (nothing is set up on TCP; the store's token
    /// URI is left alone).
    pub fn serve_unix(&self, socket: &Path, extra: &[&str]) -> Server {
        self.spawn_server(&format!("unix:{}", socket.display()), extra, &[])
    }

    /// The server on any `--listen` address.
    pub fn serve_at(&self, listen: &str, extra: &[&str], vars: &[(&str, &str)]) -> Server {
        self.spawn_server(listen, extra, vars)
    }

    fn spawn_server(&self, listen: &str, extra: &[&str], vars: &[(&str, &str)]) -> Server {
        use std::io::BufRead;
        self.ok(&["init"]);
        let mut cmd = self.std_cmd(env!("CARGO_BIN_EXE_tokenauth"));
        cmd.args(["serve", "--listen", listen]).args(extra);
        // Load and hostile-input tests send thousands of requests a second from 127.0.0.1,
        // far past the default limits; tests/limits.rs shows the limits, and that normal
        // traffic never meets the defaults.
        if !extra.contains(&"--rate-limit") {
            cmd.args(["--rate-limit", "off"]);
        }
        cmd.env("RUST_LOG", "tokenauth=info")
            .envs(vars.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                // Logged first, so that the line is in the log once the server counts as up.
                {
                    let mut l = sink.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
                if let Some(i) = line.find("listening on ") {
                    // Text or JSON lines; a Unix socket has no address: 0.0.0.0:0 stands
                    // for it.
                    let rest = &line[i + 13..];
                    let tls = rest.starts_with("https://");
                    let addr: std::net::SocketAddr = rest
                        .strip_prefix("http://")
                        .or_else(|| rest.strip_prefix("https://"))
                        .map(|a| {
                            a.split(|c: char| c.is_whitespace() || c == '"')
                                .next()
                                .unwrap()
                        })
                        .map_or(([0, 0, 0, 0], 0).into(), |a| a.parse().unwrap());
                    if let Some(tx) = tx.take() {
                        let _ = tx.send((addr, tls));
                    }
                }
            }
        });
        let (addr, tls) = match rx.recv_timeout(std::time::Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not start on {listen}: {}", log.lock().unwrap());
            }
        };
        let scheme = if tls { "https" } else { "http" };
        let alive = Arc::new(AtomicBool::new(true));
        self.servers
            .lock()
            .unwrap()
            .push((log.clone(), alive.clone()));
        // Made first, so that the server is stopped even if what follows panics.
        let server = Server {
            child,
            addr,
            log,
            scheme,
            alive,
        };
        if addr.port() != 0 {
            self.ok(&["init", "--token-uri", &format!("{scheme}://{addr}/token")]);
        }
        server
    }
}

/// The value of the first metric line starting with `line_start` in a /metrics text.
pub fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

impl Server {
    /// The value of a metric (the first line starting with `line_start`) from GET /metrics.
    pub fn metric(&self, line_start: &str) -> f64 {
        let text = http()
            .get(self.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        metric(&text, line_start).unwrap_or_else(|| panic!("no {line_start} in {text}"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.alive.store(false, Ordering::Relaxed);
        signal(self.child.id(), "TERM");
        self.child.wait().unwrap()
    }

    /// Stops the process where it is (SIGSTOP): CLI helpers no longer wait for it.
    pub fn pause(&self) {
        self.alive.store(false, Ordering::Relaxed);
        signal(self.child.id(), "STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.id(), "CONT");
        self.alive.store(true, Ordering::Relaxed);
    }

    pub fn kill(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), "TERM");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            self.kill();
        }
    }
}

pub fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// A blocking HTTP client for tests.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap()
}

/// POSTs a grant to /token; returns (status, JSON body).
pub fn exchange(server: &Server, assertion: &str) -> (u16, serde_json::Value) {
    let resp = http()
        .post(server.url("/token"))
        .form(&[("grant_type", JWT_BEARER), ("assertion", assertion)])
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap())
}

// ---- helpers for the token endpoint tests ----------------------------------------------------

impl Env {
    /// Runs with args and extra environment variables (e.g. `TOKENAUTH_NOW`), asserts success,
    /// returns stdout.
    pub fn ok_with_env(&self, args: &[&str], vars: &[(&str, &str)]) -> String {
        let mut cmd = self.cmd();
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "tokenauth {args:?} with {vars:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        self.wait_for_servers();
        String::from_utf8(out.stdout).unwrap()
    }

    /// `issue_key` with extra environment variables (e.g. `TOKENAUTH_NOW`).
    pub fn issue_key_with_env(
        &self,
        user: &str,
        extra: &[&str],
        vars: &[(&str, &str)],
    ) -> (String, PathBuf) {
        let file = self.path().join(format!("{user}-{}.json", rand_suffix()));
        let mut args = vec![
            "issue-key",
            "--user",
            user,
            "--out",
            file.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        let v: serde_json::Value = serde_json::from_str(&self.ok_with_env(&args, vars)).unwrap();
        (v["key_id"].as_str().unwrap().to_owned(), file)
    }
}

/// An HTTP answer: status, headers, the body as text and as JSON (`Null` when it is not JSON).
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: serde_json::Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The answer as bytes a caller sees: status, headers (but `date` and `x-request-id`,
    /// which differ on every request) and body; for comparing two answers.
    pub fn comparable(&self) -> String {
        let mut headers: Vec<String> = self
            .headers
            .iter()
            .filter(|(n, _)| *n != "date" && *n != "x-request-id")
            .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v.as_bytes())))
            .collect();
        headers.sort();
        format!("{} {}\n{}", self.status, headers.join("\n"), self.text)
    }
}

/// Sends a request and reads the whole answer.
pub fn send(req: reqwest::blocking::RequestBuilder) -> Reply {
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().unwrap();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    Reply {
        status,
        headers,
        text,
        json,
    }
}

/// POSTs form parameters to /token, with a User-Agent when given.
pub fn post_form(server: &Server, params: &[(&str, &str)], user_agent: Option<&str>) -> Reply {
    let mut req = http().post(server.url("/token")).form(params);
    if let Some(ua) = user_agent {
        req = req.header(reqwest::header::USER_AGENT, ua);
    }
    send(req)
}

// ---- helpers for the client tests ------------------------------------------------------------

/// A port that was free a moment ago (bound on 127.0.0.1:0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
