//! `tokenauth verify`: check an access token against the store, without a server.

use std::net::IpAddr;

use crate::access_token;
use crate::cmd::{Ctx, Quiet};
use crate::output::{self, terminal_safe};
use crate::registry::Snapshot;
use crate::scope::Scope;

/// Check an access token against the store, without a server.
///
/// Applies the same rules as the server: signature with the user's current secret, expiry,
/// revoked token ids, the key (not revoked or expired, and with --ip its IP ranges),
/// disabled users and, with --scope, the scope. Exits 0 when the token is good, 1 when not,
/// saying why.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth verify \"$TOKEN\"
  tokenauth verify \"$TOKEN\" --ip 10.1.2.3 --scope write --json")]
pub struct Args {
    /// The access token (`-` reads it from standard input)
    pub token: String,

    /// Also check that this caller address is inside the key's IP ranges
    #[arg(long, value_name = "ADDR")]
    pub ip: Option<IpAddr>,

    /// Require this scope (read or write)
    #[arg(long, value_name = "SCOPE")]
    pub scope: Option<Scope>,

    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let token = if args.token == "-" {
        std::io::read_to_string(std::io::stdin())?.trim().to_owned()
    } else {
        args.token.trim().to_owned()
    };
    let store = ctx.store()?;
    let now = ctx.now();
    let snapshot = Snapshot::load(&store, now, None)?;
    let addr = args.ip.map(crate::iprange::ClientAddr::Ip);
    match access_token::validate(&token, &snapshot, now, addr, args.scope) {
        Ok(c) => {
            if args.json {
                output::print_json(&serde_json::json!({ "valid": true, "claims": c }))?;
            } else {
                println!(
                    "valid: user {} via key {} (scope '{}'), expires {}",
                    terminal_safe(&c.sub),
                    terminal_safe(&c.key_id),
                    terminal_safe(&c.scope),
                    crate::clock::rfc3339(c.exp)
                );
            }
            Ok(())
        }
        Err(why) => {
            if args.json {
                output::print_json(
                    &serde_json::json!({ "valid": false, "error": why.code(), "reason": why.to_string() }),
                )?;
                return Err(Quiet(1).into());
            }
            anyhow::bail!("token is not valid: {why}")
        }
    }
}
