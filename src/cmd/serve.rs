//! `tokenauth serve`: run the token endpoint and the resource-server checks.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use ipnet::IpNet;

use crate::clock;
use crate::cmd::Ctx;
use crate::server::{self, AppState, Config, Limits, ListenAddr, Listener, listen};

/// Run the token endpoint (RFC 7523 jwt-bearer) and the token checks for resource servers.
///
/// Endpoints: POST /token, POST /introspect (RFC 7662), POST /revoke (RFC 7009), GET /auth
/// (forward auth for nginx auth_request, Traefik, Caddy), GET
/// /.well-known/oauth-authorization-server (RFC 8414) and GET /healthz. Changes made with
/// the CLI (revoke-key, rotate-secret, edit-key, user disable) apply on the next request.
/// Stops gracefully on Ctrl-C or SIGTERM. Logs go to stderr; set RUST_LOG (e.g.
/// RUST_LOG=tokenauth=debug) for more.
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
  tokenauth serve --listen unix:/run/tokenauth/tokenauth.sock --socket-mode 0660")]
pub struct Args {
    /// The address to listen on: HOST:PORT (port 0 picks a free port), or unix:PATH for a
    /// Unix socket that only a local proxy can reach; X-Forwarded-For from the socket is
    /// believed
    #[arg(
        long,
        env = "TOKENAUTH_LISTEN",
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

    /// Connections open at once; further ones wait in the listen backlog until one closes
    #[arg(long, default_value_t = 10_000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
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

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    ctx.local_only("serve")?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("tokenauth=info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let db = ctx.db_path()?;
    // Create and migrate the store (with its default settings) before the server opens it.
    drop(ctx.store()?);
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
    let config = Config {
        token_lifetime: args.token_lifetime,
        usage_retention: args.usage_retention,
        trusted_proxies: args.trusted_proxy,
        require_jti: args.require_jti,
        limits,
        public_origins: args.public_origin,
        admin_api: args.admin_api,
    };
    let (state, writer) = AppState::open(&db, config, ctx.clock)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let listener = Listener::bind(&args.listen, args.socket_mode.unwrap_or(0o660)).await?;
        tracing::info!(store = %db.display(), "listening on {}", listener.describe());
        server::serve(listener, state, shutdown_signal())
            .await
            .context("serving")
    })?;
    // The app (and with it the usage writer's sender) is gone: the writer flushes and ends.
    drop(runtime);
    let _ = writer.join();
    tracing::info!("stopped");
    Ok(())
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
