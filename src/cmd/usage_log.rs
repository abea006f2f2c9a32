//! `tokenauth usage-log`: token issuances and refused attempts, newest first.

use crate::clock::{self, rfc3339};
use crate::cmd::Ctx;
use crate::output::{self, or_dash};
use crate::store::{StoreError, UsageFilter};

/// Show the usage log: every token issuance and refused attempt, newest first.
///
/// Refused checks of personal access tokens are here too, with their reason (a token's
/// good uses only move its last-used time, shown by `token list`). Rows older than the
/// server's --usage-retention are pruned, but each key's newest row is always kept, so
/// `list-keys` can show its last use.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth usage-log
  tokenauth usage-log 6dQx1b0z --since 1d --failures
  tokenauth usage-log --user ci-bot --limit 20 --json
  tokenauth usage-log --no-jti --since 7d")]
pub struct Args {
    /// Only this key's or personal access token's rows (its id or a unique prefix)
    #[arg(allow_hyphen_values = true)]
    pub key_id: Option<String>,

    /// Only rows of this user (as the key's user or as the subject)
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Only rows newer than this (e.g. 1h, 7d)
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,

    /// Only refused attempts
    #[arg(long)]
    pub failures: bool,

    /// Only issuances from grants without a jti claim: the clients `serve --require-jti`
    /// would refuse
    #[arg(long)]
    pub no_jti: bool,

    /// At most this many rows
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub limit: u32,

    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let key_id = match args.key_id.as_deref() {
        None => None,
        Some(id) => Some(match store.key(id) {
            Ok(k) => k.key_id,
            Err(StoreError::UnknownKey(_)) => store
                .pat(id)
                .map_err(|_| anyhow::anyhow!("no key or personal access token with id '{id}'; see `tokenauth list-keys --all` and `tokenauth token list --all`"))?
                .id,
            Err(e) => return Err(e.into()),
        }),
    };
    let since = match &args.since {
        Some(s) => Some(
            ctx.now()
                - clock::parse_duration(s).map_err(|e| anyhow::anyhow!("invalid --since: {e}"))?,
        ),
        None => None,
    };
    let rows = store.usage(&UsageFilter {
        key_id,
        user: args.user,
        since,
        failures_only: args.failures,
        no_jti_only: args.no_jti,
        limit: i64::from(args.limit),
    })?;
    if args.json {
        return output::print_json(&rows);
    }
    let mut t = output::table(&[
        "TIME",
        "KEY",
        "USER",
        "SUBJECT",
        "ADDRESS",
        "USER AGENT",
        "OUTCOME",
    ]);
    for r in rows {
        t.add_row(vec![
            rfc3339(r.time),
            match (r.key_id, r.pat_id) {
                (Some(k), _) => k.chars().take(12).collect(),
                (None, Some(p)) => format!("token {p}"),
                (None, None) => "-".to_owned(),
            },
            or_dash(r.user),
            or_dash(r.subject),
            r.address,
            or_dash(r.user_agent),
            if r.ok && r.no_jti {
                "ok (grant without jti)".to_owned()
            } else if r.ok {
                "ok".to_owned()
            } else {
                format!("refused: {}", r.reason.unwrap_or_default())
            },
        ]);
    }
    output::print_table(&t);
    Ok(())
}
