//! `tokenauth list-keys`: the keys, as a table or JSON.

use crate::clock::rfc3339;
use crate::cmd::Ctx;
use crate::iprange;
use crate::output::{self, or_dash};

/// List service keys.
///
/// Shows each key's id, user, title, IP ranges, allowed origins, scope, algorithm (and
/// Google format), issue and expiry times, last use and state. Revoked keys are hidden unless --all is given.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth list-keys
  tokenauth list-keys --user ci-bot --all --json")]
pub struct Args {
    /// Only this user's keys
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Include revoked keys
    #[arg(long)]
    pub all: bool,

    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let store = ctx.store()?;
    if let Some(u) = &args.user {
        store.user(u)?;
    }
    let keys = store.keys(args.user.as_deref(), args.all)?;
    let now = ctx.now();
    if args.json {
        let rows: Vec<_> = keys
            .iter()
            .map(|k| {
                let mut v = serde_json::to_value(k).unwrap_or_default();
                v["state"] = k.state(now).into();
                v
            })
            .collect();
        return output::print_json(&rows);
    }
    let mut t = output::table(&[
        "KEY ID",
        "USER",
        "TITLE",
        "IP RANGES",
        "ORIGINS",
        "SCOPE",
        "ALG",
        "ISSUED",
        "EXPIRES",
        "LAST USED",
        "STATE",
    ]);
    for k in &keys {
        t.add_row(vec![
            k.key_id.clone(),
            k.user.clone(),
            or_dash(Some(k.title.clone())),
            or_dash(Some(iprange::format(&k.ip_ranges))),
            or_dash(Some(k.origins.join(" "))),
            k.scope.to_string(),
            if k.format == "google" {
                format!("{} (google)", k.alg)
            } else {
                k.alg.clone()
            },
            rfc3339(k.issued),
            or_dash(k.expires.map(rfc3339)),
            or_dash(k.last_used.map(rfc3339)),
            k.state(now).to_owned(),
        ]);
    }
    output::print_table(&t);
    Ok(())
}
