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

/// The nginx recipe in `docs/proxies.md`, as printed, with this test's addresses: nginx on
/// `port`, `tokenauth` for `127.0.0.1:8080` (what follows `http://` in a `proxy_pass` before
/// the path: an address, or `unix:/path/to.sock:` for a Unix socket), `app` for
/// `127.0.0.1:3000`, and `extra` (more of the documented locations) added to its `server`
/// block. The recipe goes in an `http { }` block that keeps everything under `dir`.
fn nginx_conf(dir: &Path, port: u16, tokenauth: &str, app: SocketAddr, extra: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    let recipe = super::docs::blocks_of("docs/proxies.md", NGINX_SECTION, "nginx").swap_remove(0);
    let server = recipe
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
        .replace("127.0.0.1:8080", tokenauth)
        .replace("127.0.0.1:3000", &app.to_string());
    let close = server.rfind('}').expect("the recipe is a server { } block");
    let server = format!("{}{extra}\n{}", &server[..close], &server[close..]);
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

{server}
}}
"#
    )
}

/// The heading of the nginx recipe in `docs/proxies.md`.
pub const NGINX_SECTION: &str = "## Behind nginx (`auth_request`)";

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
