//! `tokenauth list-keys`: the keys, as a table or JSON, with filters for key hygiene.

use crate::admin::{KeyFilter, KeyState, KeyView};
use crate::clock;
use crate::cmd::{Ctx, ScopeArg};
use crate::iprange;
use crate::output::{self, or_dash};

/// List service keys.
///
/// Shows each key's id (shortened to a prefix that edit-key and revoke-key take), user,
/// title, scope, expiry and last use dates and state; --wide adds the IP ranges, allowed
/// origins, algorithm (and Google format) and issue time, with full ids and times. Revoked
/// keys are hidden unless --all (or --state revoked) is given. The filters find keys that need
/// attention: soon expiring, unused (a key never used counts from its issue), write-scoped, of
/// one state.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth list-keys
  tokenauth list-keys --user ci-bot --all --json
  tokenauth list-keys --expiring-within 30d
  tokenauth list-keys --unused-for 90d --scope write
  tokenauth list-keys --state expired")]
pub struct Args {
    /// Only this user's keys
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Include revoked keys
    #[arg(long)]
    pub all: bool,

    /// Only keys that expire within this long from now (e.g. 30d), and have not yet
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub expiring_within: Option<i64>,

    /// Only keys unused for at least this long (e.g. 90d); a key never used counts from its
    /// issue
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub unused_for: Option<i64>,

    /// Only keys of this scope
    #[arg(long, value_enum)]
    pub scope: Option<ScopeArg>,

    /// Only keys in this state
    #[arg(long, value_enum)]
    pub state: Option<KeyState>,

    #[command(flatten)]
    pub table: output::TableArgs,
}

/// A duration on the command line, in seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    clock::parse_duration(s)
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let keys = ctx.admin()?.keys(&KeyFilter {
        user: args.user,
        all: args.all,
        expiring_within: args.expiring_within,
        unused_for: args.unused_for,
        scope: args.scope.map(Into::into),
        state: args.state,
    })?;
    if args.table.json {
        return output::print_json(&keys);
    }
    print_keys(&keys, &args.table);
    Ok(())
}

fn print_keys(keys: &[KeyView], args: &output::TableArgs) {
    const HEADER: [&str; 11] = [
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
    ];
    // Without --wide, what fits a row on one line of 80 columns: a short id, dates without
    // times, and not the columns a look at one's keys rarely needs.
    let mut t = args.table_with_wide_only(&HEADER, &["IP RANGES", "ORIGINS", "ALG", "ISSUED"]);
    t.wrap(&["TITLE", "IP RANGES", "ORIGINS"]);
    for v in keys {
        let k = &v.key;
        let cells = [
            t.id(&k.key_id),
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
            t.date(k.issued),
            or_dash(k.expires.map(|e| t.date(e))),
            or_dash(k.last_used.map(|u| t.date(u))),
            v.state.clone(),
        ];
        t.add_row(cells);
    }
    output::print_table(&t);
}
