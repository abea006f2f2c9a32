//! `tokenauth serve`: run the token endpoint and the resource-server checks.

use std::io::IsTerminal;

use anyhow::Context;
use ipnet::IpNet;

use crate::clock;
use crate::cmd::Ctx;
use crate::server::{self, AppState, Config};

/// Run the token endpoint (RFC 7523 jwt-bearer) and the token checks for resource servers.
///
/// Endpoints: POST /token, POST /introspect (RFC 7662), POST /revoke (RFC 7009), GET /auth
/// (forward auth for nginx auth_request, Traefik, Caddy), GET
/// /.well-known/oauth-authorization-server (RFC 8414) and GET /healthz. Changes made with
/// the CLI (revoke-key, rotate-secret, edit-key, user disable) apply on the next request.
/// Stops gracefully on Ctrl-C or SIGTERM. Logs go to stderr; set RUST_LOG (e.g.
/// RUST_LOG=tokenauth=debug) for more.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth serve
  tokenauth serve --listen 0.0.0.0:8080 --trusted-proxy 10.0.0.0/8 --token-lifetime 900")]
pub struct Args {
    /// The address to listen on (port 0 picks a free port)
    #[arg(
        long,
        env = "TOKENAUTH_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: String,

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
    let config = Config {
        token_lifetime: args.token_lifetime,
        usage_retention: args.usage_retention,
        trusted_proxies: args.trusted_proxy,
    };
    let (state, writer) = AppState::open(&db, config, ctx.clock)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}; is another server using it?",
                    args.listen
                )
            })?;
        let addr = listener.local_addr()?;
        tracing::info!(store = %db.display(), "listening on http://{addr}");
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
