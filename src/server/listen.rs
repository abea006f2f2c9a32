//! Accepting connections: TCP or Unix-socket listeners, the cap on open connections, and the
//! timeouts that stop slow or idle clients from holding connections open.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::server::error::ApiError;
use crate::server::observe::Observer;
use crate::server::request::Peer;

/// What `serve --listen` names: `HOST:PORT` or `unix:/path/to.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(String),
    Unix(PathBuf),
}

impl std::str::FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<ListenAddr, String> {
        match s.strip_prefix("unix:") {
            Some("") => {
                Err("'unix:' needs a socket path, e.g. unix:/run/tokenauth/tokenauth.sock".into())
            }
            Some(path) => {
                let path = PathBuf::from(path);
                // sun_path holds 108 bytes including the terminating NUL.
                if path.as_os_str().len() > 107 {
                    return Err(format!(
                        "socket path {} is {} bytes long; Unix sockets allow at most 107",
                        path.display(),
                        path.as_os_str().len()
                    ));
                }
                Ok(ListenAddr::Unix(path))
            }
            None if s.trim().is_empty() => Err("empty listen address; e.g. 127.0.0.1:8080".into()),
            None => Ok(ListenAddr::Tcp(s.to_owned())),
        }
    }
}

/// Connection limits; every one is a `serve` flag.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From a request's first byte to the end of its head.
    pub header_timeout: Duration,
    /// From the end of the head to the end of the body.
    pub body_timeout: Duration,
    /// A kept-alive connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    /// From the end of the head to the end of the response.
    pub request_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            request_timeout: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }
}

pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixSocket),
}

/// A bound Unix socket; its file is removed when the listener is dropped, if it is still ours.
pub struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
    inode: u64,
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Listener {
    /// Binds `addr`; a Unix socket gets `mode` from its first moment on.
    pub async fn bind(addr: &ListenAddr, mode: u32) -> anyhow::Result<Listener> {
        match addr {
            ListenAddr::Tcp(a) => TcpListener::bind(a).await.map(Listener::Tcp).map_err(|e| {
                anyhow::anyhow!("cannot listen on {a}: {e}; is another server using it?")
            }),
            ListenAddr::Unix(path) => bind_unix(path, mode).map(Listener::Unix),
        }
    }

    /// How the log names it: `http://127.0.0.1:8080`, `https://…` or
    /// `unix:/run/tokenauth.sock`.
    pub fn describe(&self, tls: bool) -> String {
        let scheme = if tls { "https" } else { "http" };
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| format!("{scheme}://?"), |a| format!("{scheme}://{a}")),
            Listener::Unix(u) => format!("unix:{}", u.path.display()),
        }
    }

    /// The TCP address, when listening on TCP.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(_) => None,
        }
    }
}

fn bind_unix(path: &Path, mode: u32) -> anyhow::Result<UnixSocket> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        anyhow::bail!(
            "cannot listen on unix:{}: folder {} does not exist",
            path.display(),
            dir.display()
        );
    }
    match std::fs::symlink_metadata(path) {
        Err(_) => {}
        Ok(m) if !m.file_type().is_socket() => anyhow::bail!(
            "cannot listen on unix:{}: it exists and is not a socket; remove it or choose another path",
            path.display()
        ),
        Ok(_) if std::os::unix::net::UnixStream::connect(path).is_ok() => anyhow::bail!(
            "cannot listen on unix:{}: another server is listening on it",
            path.display()
        ),
        // A socket nobody listens on: left by a server that was killed.
        Ok(_) => {}
    }
    // Bound under a temporary name, given its mode, then renamed into place: there is no
    // moment at which the socket exists at `path` with the umask's looser mode.
    let tmp = dir.join(format!(
        ".tokenauth-{}-{}.sock",
        std::process::id(),
        rand::random::<u32>()
    ));
    let fail = |e: std::io::Error| anyhow::anyhow!("cannot listen on unix:{}: {e}", path.display());
    let listener = UnixListener::bind(&tmp).map_err(fail)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    let inode = std::fs::symlink_metadata(path).map_err(fail)?.ino();
    Ok(UnixSocket {
        listener,
        path: path.to_owned(),
        inode,
    })
}

/// How connections are served beyond HTTP itself: TLS, and what each request leaves behind.
#[derive(Clone, Default)]
pub struct Extras {
    /// HTTPS: every connection's handshake goes through this acceptor first.
    pub tls: Option<TlsAcceptor>,
    /// Request ids, latency histograms and the access log.
    pub observer: Option<Arc<Observer>>,
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests in flight
/// finish (for at most the request timeout) and closes idle connections.
pub async fn serve(
    listener: Listener,
    router: Router,
    limits: Limits,
    extras: Extras,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        // A slot first: past the cap, new connections wait in the kernel's backlog, unread,
        // holding no descriptor of ours, while established clients keep being served.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break, // closed: never, but then there is nothing left to serve
            },
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            a = accept(&listener) => a,
            () = &mut shutdown => break,
        };
        let conn = Conn {
            router: router.clone(),
            limits,
            observer: extras.observer.clone(),
            slot,
            stop: stop_rx.clone(),
        };
        match accepted {
            Ok(Accepted::Tcp(stream, addr)) => match &extras.tls {
                None => {
                    tokio::spawn(connection(stream, Peer::Tcp(addr), conn));
                }
                Some(tls) => {
                    tokio::spawn(handshake(tls.clone(), stream, Peer::Tcp(addr), conn));
                }
            },
            Ok(Accepted::Unix(stream)) => match &extras.tls {
                None => {
                    tokio::spawn(connection(stream, Peer::Unix, conn));
                }
                Some(tls) => {
                    tokio::spawn(handshake(tls.clone(), stream, Peer::Unix, conn));
                }
            },
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // Out of descriptors, most likely: wait for some to be released rather than
                // spin on the error.
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it ends: all slots back means all ended.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let grace = limits.request_timeout + Duration::from_secs(1);
    if tokio::time::timeout(grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open after {}s; closing them",
            grace.as_secs()
        );
    }
    Ok(())
}

enum Accepted {
    Tcp(tokio::net::TcpStream, SocketAddr),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match listener {
        Listener::Tcp(l) => l.accept().await.map(|(s, a)| Accepted::Tcp(s, a)),
        Listener::Unix(u) => u.listener.accept().await.map(|(s, _)| Accepted::Unix(s)),
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Where a connection is between requests, and since when: what decides its deadline.
/// Hyper's own header timeout also runs while a kept-alive connection waits, so it cannot
/// give a short head deadline and a long idle one; this does.
struct Activity {
    /// `phase << 62 | milliseconds since `start``.
    state: AtomicU64,
    start: Instant,
}

const IDLE: u64 = 0;
const HEAD: u64 = 1;
const BUSY: u64 = 2;

impl Activity {
    fn new() -> Activity {
        Activity {
            state: AtomicU64::new(IDLE << 62),
            start: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 & ((1 << 62) - 1)
    }

    fn set(&self, phase: u64) {
        self.state
            .store(phase << 62 | self.now_ms(), Ordering::Release);
    }

    /// Bytes arrived: an idle connection has started sending a request head.
    fn read(&self) {
        let current = self.state.load(Ordering::Acquire);
        if current >> 62 == IDLE {
            let _ = self.state.compare_exchange(
                current,
                HEAD << 62 | self.now_ms(),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// When to look at the connection again: its deadline, but while idle at least every
    /// half header timeout, since a head may start meanwhile and bring its deadline forward
    /// (waking the supervisor on every head instead cost a timer per request).
    fn next_check(&self, limits: &Limits) -> Instant {
        let soon = Instant::now() + limits.header_timeout / 2;
        match self.deadline(limits) {
            Some(d) if self.state.load(Ordering::Acquire) >> 62 == HEAD => d,
            Some(d) => d.min(soon),
            None => soon,
        }
    }

    /// When the connection must be closed if nothing changes; `None` while a request is in
    /// flight (the request and body timeouts bound that).
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let s = self.state.load(Ordering::Acquire);
        let since = self.start + Duration::from_millis(s & ((1 << 62) - 1));
        match s >> 62 {
            IDLE => Some(since + limits.idle_timeout),
            HEAD => Some(since + limits.header_timeout),
            _ => None,
        }
    }
}

/// The connection's stream, noting every read for [`Activity`].
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What a connection's task needs besides its stream.
struct Conn {
    router: Router,
    limits: Limits,
    observer: Option<Arc<Observer>>,
    /// Held until the connection ends: what the cap on connections counts.
    slot: OwnedSemaphorePermit,
    stop: watch::Receiver<bool>,
}

/// The TLS handshake, bounded like a request head, then HTTP over the encrypted stream.
async fn handshake<S>(tls: TlsAcceptor, stream: S, peer: Peer, conn: Conn)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match tokio::time::timeout(conn.limits.header_timeout, tls.accept(stream)).await {
        Ok(Ok(stream)) => connection(stream, peer, conn).await,
        Ok(Err(e)) => tracing::debug!(?peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(?peer, "TLS handshake timed out"),
    }
}

async fn connection<S>(stream: S, peer: Peer, conn: Conn)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Conn {
        router,
        limits,
        observer,
        slot: _slot,
        mut stop,
    } = conn;
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            activity.set(BUSY);
            let probe = observer.as_ref().map(|o| o.begin(&req, peer));
            req.extensions_mut().insert(ConnectInfo(peer));
            let (router, activity, observer) = (router.clone(), activity.clone(), observer.clone());
            async move {
                let call = router.oneshot(req.map(Body::new));
                let mut resp = match tokio::time::timeout(limits.request_timeout, call).await {
                    Ok(Ok(resp)) => resp,
                    Ok(Err(never)) => match never {},
                    Err(_) => ApiError::Timeout(limits.request_timeout).into_response(),
                };
                if let (Some(o), Some(p)) = (&observer, probe) {
                    o.end(p, &mut resp);
                }
                activity.set(IDLE);
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let http = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(http);
    let mut stopping = false;
    loop {
        let check = activity.next_check(&limits);
        tokio::select! {
            result = http.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(check.into()) => {
                if activity.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(?peer, "connection timed out");
                    return;
                }
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                http.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The mode `--socket-mode` gives: octal, e.g. 660 or 0660.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("'{s}' is not an octal file mode like 0660"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_are_tcp_or_unix_paths() {
        assert_eq!(
            "127.0.0.1:0".parse::<ListenAddr>(),
            Ok(ListenAddr::Tcp("127.0.0.1:0".into()))
        );
        assert_eq!(
            "unix:/run/t.sock".parse::<ListenAddr>(),
            Ok(ListenAddr::Unix("/run/t.sock".into()))
        );
        assert!("unix:".parse::<ListenAddr>().is_err());
        let long = format!("unix:/{}", "a".repeat(120));
        assert!(
            long.parse::<ListenAddr>()
                .unwrap_err()
                .contains("at most 107")
        );
    }

    #[test]
    fn socket_modes_are_octal() {
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert!(parse_mode("888").is_err());
        assert!(parse_mode("7777").is_err());
    }

    #[test]
    fn idle_and_head_phases_have_their_own_deadlines() {
        let limits = Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            ..Limits::default()
        };
        let a = Activity::new();
        let idle = a.deadline(&limits).unwrap();
        assert!(idle >= a.start + Duration::from_secs(75));
        a.read();
        let head = a.deadline(&limits).unwrap();
        assert!(head < idle && head >= a.start + Duration::from_secs(10));
        // More bytes of the same head do not push the deadline back.
        a.read();
        assert_eq!(a.deadline(&limits), Some(head));
        a.set(BUSY);
        assert_eq!(a.deadline(&limits), None);
        a.set(IDLE);
        assert!(a.deadline(&limits).unwrap() >= a.start + Duration::from_secs(75));
    }
}
