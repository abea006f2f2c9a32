//! `tokenauth serve`: run the token endpoint and the resource-server checks.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ipnet::IpNet;

use crate::clock;
use crate::cmd::Ctx;
use crate::registry::DEFAULT_TOKEN_URI;
use crate::server::logwriter;
use crate::server::ratelimit::RateLimits;
use crate::server::tls::Tls;
use crate::server::{self, AppState, Config, Limits, ListenAddr, Listener, listen};

/// Run the token endpoint (RFC 7523 jwt-bearer) and the token checks for resource servers.
///
/// Endpoints: POST /token, POST /introspect (RFC 7662), POST /revoke (RFC 7009), GET /auth
/// (forward auth for nginx auth_request, Traefik, Caddy), GET
/// /.well-known/oauth-authorization-server (RFC 8414), GET /healthz (liveness), GET /readyz
/// (the store readable: 200, else 503), GET /metrics (Prometheus; on --metrics-listen
/// instead when given) and GET /openapi.json (the API description). Changes made with the
/// CLI (revoke-key, rotate-secret, edit-key, user disable) apply on the next request; on a
/// PostgreSQL store, which several servers may share, within milliseconds, and a server that
/// could not confirm its copy of the store for 1 s answers 503 until it can. Each change
/// reaches a server as itself, through the store's change feed: its cost does not grow with
/// the store. Stops
/// gracefully on Ctrl-C or SIGTERM.
///
/// With --tls-cert and --tls-key it serves HTTPS (TLS 1.2 and 1.3); SIGHUP reads both files
/// again, for new connections, without dropping open ones. Plain HTTP on a non-loopback
/// address is warned about at start.
///
/// Logs go to stderr, as text or JSON (--log-format), with one line per request (method,
/// route, status, latency, client address, key id and user where known, request id) unless
/// --no-access-log; tokens, grants and secrets are never logged. Every response carries
/// X-Request-Id: the caller's, when it is 1 to 128 characters of letters, digits and
/// -_.:@+=/, else a new one. Set RUST_LOG (e.g. RUST_LOG=tokenauth=debug) for more.
///
/// Slow and idle clients cannot hold connections: a request head must arrive within
/// --header-timeout of its first byte, a body within --body-timeout, an answer within
/// --request-timeout, and an idle kept-alive connection closes after --idle-timeout. At most
/// --max-connections are open at once. A grant is good for one exchange, also across several
/// servers on one store.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth serve
  tokenauth serve --listen 0.0.0.0:8080 --trusted-proxy 10.0.0.0/8 --token-lifetime 900
  tokenauth serve --admin-api
  tokenauth serve --listen unix:/run/tokenauth/tokenauth.sock --socket-mode 0660
  tokenauth serve --listen 0.0.0.0:8443 --tls-cert fullchain.pem --tls-key privkey.pem
  tokenauth serve --log-format json --metrics-listen 127.0.0.1:9100")]
pub struct Args {
    /// The address to listen on: HOST:PORT (port 0 picks a free port), or unix:PATH for a
    /// Unix socket that only a local proxy can reach; X-Forwarded-For from the socket is
    /// believed
    #[arg(
        long,
        env = "TOKENAUTH_LISTEN",
        hide_env_values = true,
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: ListenAddr,

    /// The Unix socket's file mode (octal), with --listen unix:PATH: who may connect
    /// [default: 0660]
    #[arg(long, value_name = "MODE", value_parser = listen::parse_mode)]
    pub socket_mode: Option<u32>,

    /// Access-token lifetime in seconds
    #[arg(long, default_value_t = 3600, value_name = "SECONDS",
          value_parser = clap::value_parser!(i64).range(1..=86_400))]
    pub token_lifetime: i64,

    /// How long usage-log rows are kept (each key's newest row is always kept)
    #[arg(long, default_value = "7d", value_name = "DURATION", value_parser = parse_retention)]
    pub usage_retention: i64,

    /// How long the store's change feed keeps entries: a server that could not follow it for
    /// longer (stopped, cut off from the database) loads everything again when it can
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = clock::parse_duration)]
    pub feed_retention: i64,

    /// How long a trust's issuer keys stay in use after they could last be fetched: past
    /// that, while the issuer stays unreachable, its ID tokens are refused (fail closed)
    #[arg(long, default_value = "24h", value_name = "DURATION", value_parser = clock::parse_duration)]
    pub oidc_max_stale: i64,

    /// A proxy whose X-Forwarded-For is believed (an IP or CIDR network; repeatable)
    #[arg(long, value_name = "CIDR", value_parser = parse_proxy)]
    pub trusted_proxy: Vec<IpNet>,

    /// This site's own origin (repeatable): browser requests from it are same-site, and
    /// keys need not list it [default: the issuer's origin]
    #[arg(long, value_name = "URL", value_parser = parse_public_origin)]
    pub public_origin: Vec<String>,

    /// Refuse grants without a jti claim (without this flag, such a grant is good for one
    /// exchange: an exact copy is refused until it expires)
    #[arg(long)]
    pub require_jti: bool,

    /// Close a connection whose request head is not complete this long after its first byte
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_timeout)]
    pub header_timeout: Duration,

    /// Answer 408 when a request body is not complete this long after its head
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_timeout)]
    pub body_timeout: Duration,

    /// Close a kept-alive connection after this long without a request (longer than a
    /// proxy's upstream keep-alive, so that the proxy closes first)
    #[arg(long, default_value = "75s", value_name = "DURATION", value_parser = parse_timeout)]
    pub idle_timeout: Duration,

    /// Answer 503 when a request is not answered this long after its head
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_timeout)]
    pub request_timeout: Duration,

    /// Serve the remote admin API under /admin/v1 (JSON), for callers whose user holds the
    /// admin permission (write scope for changes) or, for their own keys and tokens,
    /// manage-own-keys; the CLI drives it with `tokenauth --server URL`
    #[arg(long)]
    pub admin_api: bool,

    /// Rate limits on /token, /revoke, /introspect and the admin API (repeatable): a token
    /// bucket per client address (IPv6: per /64) and one per key or personal access token
    /// (once the caller proved it holds it). Over a limit the answer is 429 with
    /// Retry-After. Give `address=COUNT/UNIT[:BURST]` or `key=COUNT/UNIT[:BURST]` (UNIT: s,
    /// min or h; BURST defaults to ten times COUNT), `address=off`, `key=off`, `off` for
    /// none, or `default`. [default: address=100/s:1000, key=50/s:500]
    #[arg(long, value_name = "LIMIT", value_parser = parse_rate_limit)]
    pub rate_limit: Vec<String>,

    /// Connections open at once; further ones wait in the listen backlog until one closes
    #[arg(long, default_value_t = 10_000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Serve HTTPS with this certificate chain (PEM, server certificate first); needs
    /// --tls-key. SIGHUP reloads both files without dropping connections
    #[arg(
        long,
        env = "TOKENAUTH_TLS_CERT",
        hide_env_values = true,
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(
        long,
        env = "TOKENAUTH_TLS_KEY",
        hide_env_values = true,
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Serve GET /metrics on this address (plain HTTP) instead of on --listen, e.g. to keep
    /// it off a public interface
    #[arg(
        long,
        env = "TOKENAUTH_METRICS_LISTEN",
        hide_env_values = true,
        value_name = "ADDR"
    )]
    pub metrics_listen: Option<ListenAddr>,

    /// Log lines as text or as JSON objects (one per line)
    #[arg(long, env = "TOKENAUTH_LOG_FORMAT", hide_env_values = true, value_enum,
          default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Do not log a line per request
    #[arg(long)]
    pub no_access_log: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines
    Text,
    /// One JSON object per line, fields at the top level
    Json,
}

fn parse_rate_limit(s: &str) -> Result<String, String> {
    RateLimits::default().apply(s)?;
    Ok(s.to_owned())
}

fn parse_public_origin(s: &str) -> Result<String, String> {
    crate::origin::parse(s).map_err(|e| e.to_string())
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s.trim()) {
        Ok(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(3600) => Ok(d),
        Ok(_) => Err(format!("'{s}' is out of range; use 100ms to 1h")),
        Err(e) => Err(format!(
            "'{s}' is not a duration ({e}); use e.g. 10s, 500ms, 2m"
        )),
    }
}

fn parse_retention(s: &str) -> Result<i64, String> {
    clock::parse_duration(s).and_then(|d| {
        if d > 0 {
            Ok(d)
        } else {
            Err("retention must be positive".into())
        }
    })
}

fn parse_proxy(s: &str) -> Result<IpNet, String> {
    match crate::iprange::parse(s)
        .map_err(|e| e.to_string())?
        .as_slice()
    {
        [one] => Ok(*one),
        _ => Err(format!("'{s}': give one network per --trusted-proxy")),
    }
}

/// Logs go to stderr through a writer thread (server::logwriter), so that a request never
/// waits for the terminal or journal; the guard writes what is left when `serve` ends.
fn init_logging(format: LogFormat) -> logwriter::Guard {
    let (writer, guard) = logwriter::stderr();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("tokenauth=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder
            .fmt_fields(crate::output::LogFields)
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    guard
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    ctx.local_only("serve")?;
    let _log = init_logging(args.log_format);
    let db = ctx.location()?;
    // Create and migrate the store before the server opens it.
    let token_uri_set = ctx.store_creating()?.setting("token_uri")?.is_some();
    if args.socket_mode.is_some() && !matches!(args.listen, ListenAddr::Unix(_)) {
        anyhow::bail!("--socket-mode applies only to --listen unix:PATH");
    }
    let limits = Limits {
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        idle_timeout: args.idle_timeout,
        request_timeout: args.request_timeout,
        max_connections: descriptor_budget(args.max_connections as usize),
    };
    // Checked before anything is bound: a bad certificate is one clear error at start.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(Tls::load(cert, key)?)),
        _ => None,
    };
    if args.metrics_listen.as_ref() == Some(&args.listen) {
        anyhow::bail!("--metrics-listen must differ from --listen");
    }
    let mut rate_limits = RateLimits::default();
    for spec in &args.rate_limit {
        // Checked by the parser already.
        rate_limits
            .apply(spec)
            .map_err(|e| anyhow::anyhow!("--rate-limit: {e}"))?;
    }
    let config = Config {
        rate_limits,
        token_lifetime: args.token_lifetime,
        usage_retention: args.usage_retention,
        trusted_proxies: args.trusted_proxy,
        require_jti: args.require_jti,
        limits,
        public_origins: args.public_origin,
        access_log: !args.no_access_log,
        metrics_on_main: args.metrics_listen.is_none(),
        admin_api: args.admin_api,
        feed_retention: args.feed_retention,
        oidc_max_stale: args.oidc_max_stale,
    };
    let (state, writer) = AppState::open(&db, config, ctx.clock)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let listener = Listener::bind(&args.listen, args.socket_mode.unwrap_or(0o660)).await?;
        let metrics_listener = match &args.metrics_listen {
            Some(addr) => Some(Listener::bind(addr, 0o660).await?),
            None => None,
        };
        // Handled from the start: SIGHUP's default action would end the server.
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("handling SIGHUP")?;
        tokio::spawn(reload_on_hangup(hangup, tls.clone()));
        if tls.is_none()
            && let Some(addr) = listener.local_addr()
            && !addr.ip().is_loopback()
        {
            tracing::warn!(
                "plain HTTP on the non-loopback address {addr}, without TLS: tokens cross the network in the clear; use --tls-cert and --tls-key, or a TLS-terminating proxy in front"
            );
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        if let Some(ml) = metrics_listener {
            tracing::info!("metrics on {}/metrics", ml.describe(false));
            let mut stop = stop_rx.clone();
            let state = state.clone();
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = server::serve_metrics(ml, state, stopped).await {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            });
        }
        if crate::clock::TEST_CLOCK {
            // `cargo test` builds turn it on; a binary that reaches production this way must
            // show it.
            tracing::warn!(
                "this is a test build (feature test-clock): TOKENAUTH_NOW sets its clock; build with `cargo build --release` for production"
            );
        }
        if !token_uri_set
            && let Some(fix) = default_token_uri_misses(listener.local_addr(), tls.is_some())
        {
            tracing::warn!(
                "this store has no token URI, so the server advertises (and key files name) the default {DEFAULT_TOKEN_URI}, but it listens on {}: run tokenauth init --token-uri {fix} (the URL clients reach); a running server picks it up",
                listener.describe(tls.is_some())
            );
        }
        tracing::info!(store = %db, "listening on {}", listener.describe(tls.is_some()));
        let shutdown = async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        };
        server::serve(listener, state, tls.map(|t| t.acceptor()), shutdown)
            .await
            .context("serving")
    })?;
    // The app (and with it the usage writer's sender) is gone: the writer flushes and ends.
    drop(runtime);
    let _ = writer.join();
    tracing::info!("stopped");
    Ok(())
}

/// When the default token URI would not reach a server listening on `addr` (None: a Unix
/// socket), the token URI to suggest instead, as far as it is known here.
fn default_token_uri_misses(addr: Option<SocketAddr>, tls: bool) -> Option<String> {
    let scheme = if tls { "https" } else { "http" };
    let Some(addr) = addr else {
        return Some(format!("{scheme}://HOST:PORT/token"));
    };
    let default = url::Url::parse(DEFAULT_TOKEN_URI).ok()?;
    let reached = |ip: std::net::IpAddr| {
        // A server on every address is reached at the loopback one, too.
        (ip.is_unspecified() || default.host_str() == Some(ip.to_string().as_str()))
            && default.port() == Some(addr.port())
            && default.scheme() == scheme
    };
    if reached(addr.ip()) {
        return None;
    }
    let host = match addr.ip() {
        ip if ip.is_unspecified() => "HOST".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    Some(format!("{scheme}://{host}:{}/token", addr.port()))
}

/// Each connection holds a descriptor: raises the process's soft limit as far as the hard
/// limit allows, and lowers the cap when even that is too few, so that the cap is reached
/// before the descriptors run out.
fn descriptor_budget(wanted: usize) -> usize {
    // The store's connections, the listener, stdio and the runtime's own.
    const RESERVE: u64 = 64;
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let room = usize::try_from(limit.saturating_sub(RESERVE)).unwrap_or(usize::MAX);
    if wanted > room {
        tracing::warn!(
            max_connections = room,
            "the open-file limit is {limit}; --max-connections lowered to {room} (raise `ulimit -n` for more)"
        );
        return room.max(1);
    }
    wanted
}

/// SIGHUP: read the TLS certificate and key again. New connections get the new pair;
/// established ones keep theirs. A pair that fails to load leaves the old one in place.
async fn reload_on_hangup(mut hangup: tokio::signal::unix::Signal, tls: Option<Arc<Tls>>) {
    while hangup.recv().await.is_some() {
        match &tls {
            None => tracing::info!("SIGHUP: no TLS certificate to reload"),
            Some(tls) => match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                Err(e) => tracing::error!(
                    error = %format!("{e:#}"),
                    "SIGHUP: TLS certificate not reloaded; keeping the old one"
                ),
            },
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn misses(addr: &str, tls: bool) -> Option<String> {
        default_token_uri_misses(Some(addr.parse().unwrap()), tls)
    }

    #[test]
    fn the_default_token_uri_reaches_plain_http_on_port_8080_of_loopback_or_every_address() {
        for addr in ["127.0.0.1:8080", "0.0.0.0:8080", "[::]:8080"] {
            assert_eq!(misses(addr, false), None, "{addr}");
        }
    }

    #[test]
    fn elsewhere_the_suggested_token_uri_names_what_is_known_of_the_address() {
        let cases = [
            ("127.0.0.1:9000", false, "http://127.0.0.1:9000/token"),
            ("127.0.0.1:8080", true, "https://127.0.0.1:8080/token"),
            ("0.0.0.0:9000", false, "http://HOST:9000/token"),
            ("127.0.0.2:8080", false, "http://127.0.0.2:8080/token"),
            ("[::1]:8080", false, "http://[::1]:8080/token"),
            ("10.1.2.3:8080", false, "http://10.1.2.3:8080/token"),
        ];
        for (addr, tls, fix) in cases {
            assert_eq!(misses(addr, tls).as_deref(), Some(fix), "{addr} {tls}");
        }
        assert_eq!(
            default_token_uri_misses(None, true).as_deref(),
            Some("https://HOST:PORT/token")
        );
    }
}
