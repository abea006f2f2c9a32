//! A tiny HTTP server (an application behind nginx, or a page for a browser) and a real
//! nginx, for the tests that put tokenauth behind a proxy or in front of a browser.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const NGINX: &str = "/usr/sbin/nginx";
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections a [`Site`] takes in its life; a test makes a handful.
const MAX_CONNECTIONS: usize = 64;

/// One request as a [`Site`] saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// Every header in order, names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// Every value of header `name` (lower case), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }
}

/// What a [`Site`] answers.
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

type Respond = dyn Fn(&Seen) -> Answer + Send + Sync;

/// A tiny HTTP/1.x server on 127.0.0.1: one request per connection, each on its own thread
/// (a browser may open a connection and send nothing on it, which must not hold up the
/// next one). Stopped and joined when dropped.
pub struct Site {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Site {
    pub fn start(respond: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Site {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // Non-blocking accepts, polled, so that the thread always notices `stop` in time.
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let respond: Arc<Respond> = Arc::new(respond);
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut connections = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) if connections.len() < MAX_CONNECTIONS => {
                            let (seen, respond) = (seen.clone(), respond.clone());
                            connections.push(std::thread::spawn(move || {
                                if let Err(e) = answer(stream, &seen, &*respond) {
                                    eprintln!("site {addr}: {e}");
                                }
                            }));
                        }
                        Ok(_) => eprintln!("site {addr}: over {MAX_CONNECTIONS} connections"),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => {
                            eprintln!("site {addr}: accept: {e}");
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
                // Bounded: every connection has read and write timeouts.
                for c in connections {
                    let _ = c.join();
                }
            })
        };
        Site {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// The application behind nginx: 200 with a body naming the X-Auth-User it received.
    pub fn app() -> Site {
        Site::start(|seen| Answer {
            status: 200,
            content_type: "text/plain",
            body: format!(
                "upstream saw X-Auth-User: {}\n",
                seen.header("x-auth-user").unwrap_or("(none)")
            ),
        })
    }

    /// This site's origin, as a browser on one of its pages sends it.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // Bounded: the loop polls `stop` every 10 ms and each connection has timeouts.
            let _ = t.join();
        }
    }
}

/// One HTTP/1.1 request off `stream`: method, target, headers (names in lower case) and a
/// Content-Length body of at most `max_body` bytes; None when the peer closed first.
#[allow(clippy::type_complexity)]
pub fn read_request(
    stream: &TcpStream,
    max_body: usize,
) -> std::io::Result<Option<(String, String, Vec<(String, String)>, Vec<u8>)>> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(None);
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
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
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
            if name == "content-length" {
                length = value.parse().unwrap_or(0);
            }
            headers.push((name, value));
        }
    }
    let mut body = Vec::new();
    reader
        .take(length.min(max_body) as u64)
        .read_to_end(&mut body)?;
    Ok(Some((method, target, headers, body)))
}

/// Reads one request (headers and a Content-Length body) and answers it, closing the
/// connection.
fn answer(stream: TcpStream, seen: &Mutex<Vec<Seen>>, respond: &Respond) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    // A browser's spare connection, closed unused, reads as no request. The body is read
    // (not left unread) so that closing does not reset the connection under nginx.
    let Some((method, target, headers, _body)) = read_request(&stream, usize::MAX)? else {
        return Ok(());
    };
    let request = Seen {
        method,
        target,
        headers,
    };
    let reply = respond(&request);
    seen.lock().unwrap().push(request);
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.status,
        if reply.status == 200 { "OK" } else { "Not OK" },
        reply.content_type,
        reply.body.len(),
        reply.body
    )?;
    stream.flush()
}

/// A real nginx master (one worker), not daemonized, everything under its own temp dir.
/// Stopped (SIGTERM, then SIGKILL after 10 s) when dropped.
pub struct Nginx {
    child: std::process::Child,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
}

/// The config under test. The `server` block is the README's recipe ("Behind nginx"), with
/// `extra` (more of the README's locations) added to it. `tokenauth` is what follows
/// `http://` in a `proxy_pass` before the path: `127.0.0.1:8080`, or `unix:/path/to.sock:`
/// for a Unix socket.
fn nginx_conf(dir: &Path, port: u16, tokenauth: &str, app: SocketAddr, extra: &str) -> String {
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
{extra}
    }}
}}
"#
    )
}

impl Nginx {
    /// Starts nginx on a free port; retries a few times in case another process takes the
    /// port between our probe and nginx's bind.
    pub fn start(tokenauth: &str, app: SocketAddr, extra: &str) -> Nginx {
        let mut last = String::new();
        for _ in 0..3 {
            match Nginx::try_start(tokenauth, app, extra) {
                Ok(n) => return n,
                Err(log) => last = log,
            }
        }
        panic!("nginx did not start:\n{last}");
    }

    fn try_start(tokenauth: &str, app: SocketAddr, extra: &str) -> Result<Nginx, String> {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, nginx_conf(dir.path(), port, tokenauth, app, extra)).unwrap();
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
        wait_listening(&mut child, addr, "nginx", &error_log)?;
        Ok(Nginx { child, dir, addr })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Waits (up to 20 s) until the proxy `child` we started listens on `addr`. On failure it is
/// stopped, and the error holds its `log`.
pub fn wait_listening(
    child: &mut std::process::Child,
    addr: SocketAddr,
    name: &str,
    log: &Path,
) -> Result<(), String> {
    let read_log = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{name} exited with {status}:\n{}", read_log()));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{name} did not listen:\n{}", read_log()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a proxy we started: SIGTERM (a fast shutdown; nginx's master stops its worker
/// first), then SIGKILL after 10 s.
pub fn stop(child: &mut std::process::Child) {
    if let Ok(None) = child.try_wait() {
        super::signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The first ```` ```nginx ```` block of the README section headed `heading` (a `## ` or
/// `### ` title), so that the tests run the README's recipes as written.
pub fn readme_nginx_block(heading: &str) -> String {
    readme_blocks(heading, "nginx").swap_remove(0)
}

/// Every ```` ```lang ```` block of the README section headed `heading` (up to the next `## `
/// title), in order; panics when there is none.
pub fn readme_blocks(heading: &str, lang: &str) -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split_once(&format!("{heading}\n"))
        .unwrap_or_else(|| panic!("README has no section {heading:?}"))
        .1;
    let section = section.split("\n## ").next().unwrap();
    let blocks: Vec<String> = section
        .split(&format!("```{lang}\n"))
        .skip(1)
        .map(|b| b.split_once("```").unwrap().0.to_owned())
        .collect();
    assert!(
        !blocks.is_empty(),
        "README section {heading:?} has no {lang} block"
    );
    blocks
}
