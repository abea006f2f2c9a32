//! `tokenauth verify`: check an access token or personal access token against the store,
//! without a server.

use std::net::IpAddr;

use clap::builder::TypedValueParser;

use crate::access_token::Invalid;
use crate::cmd::{Ctx, Quiet};
use crate::credential::{self, Checked};
use crate::output::{self, terminal_safe};
use crate::pat;
use crate::registry::StoreCredentials;
use crate::scope::Scope;

/// Check an access token or a personal access token against the store, without a server.
///
/// Applies the same rules as the server: for an access token its signature with the user's
/// current secret, expiry, revoked token ids and its key (not revoked or expired); for a
/// personal access token its checksum (before the store is read), revocation, expiry and
/// the user's secret rotations; for both, disabled users and, with --ip and --scope, the IP
/// ranges and the scope. Exits 0 when the token is good, 1 when not, saying why.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth verify \"$TOKEN\"
  tokenauth verify \"$TOKEN\" --ip 10.1.2.3 --scope write --json")]
pub struct Args {
    /// The access token or `tapat_…` personal access token (`-` reads it from standard input)
    pub token: String,

    /// Also check that this caller address is inside the key's IP ranges
    #[arg(long, value_name = "ADDR")]
    pub ip: Option<IpAddr>,

    /// Require this scope (read or write)
    #[arg(long, value_name = "SCOPE", value_parser = clap::builder::PossibleValuesParser::new(["read", "write"])
          .try_map(|s| s.parse::<Scope>()))]
    pub scope: Option<Scope>,

    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    ctx.local_only("verify")?;
    let token = if args.token == "-" {
        std::io::read_to_string(std::io::stdin())?.trim().to_owned()
    } else {
        args.token.trim().to_owned()
    };
    let now = ctx.now();
    // A mistyped personal access token is refused by its checksum, before the store is read.
    let result = match pat::is_pat(&token).then(|| pat::check_format(&token)) {
        Some(Err(e)) => Err(Invalid::MalformedPat(e)),
        _ => {
            let store = ctx.store()?;
            // Point lookups of what this token names: O(log n) however big the store.
            let credentials = StoreCredentials { store: &store, now };
            let addr = args.ip.map(crate::iprange::ClientAddr::Ip);
            credential::check(&token, &credentials, now, addr, args.scope, None)
        }
    };
    match result {
        Ok(Checked::Access(c)) => {
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
        Ok(Checked::Pat(p)) => {
            if args.json {
                output::print_json(&serde_json::json!({
                    "valid": true,
                    "token_type": "personal_access_token",
                    "token_id": p.id,
                    "user": p.user,
                    "scope": p.scope.granted(),
                    "created": p.created,
                    "expires": p.expires,
                }))?;
            } else {
                println!(
                    "valid: user {} via personal access token {} (scope '{}'), expires {}",
                    terminal_safe(&p.user),
                    terminal_safe(&p.id),
                    p.scope.granted(),
                    p.expires.map_or("never".to_owned(), crate::clock::rfc3339)
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
