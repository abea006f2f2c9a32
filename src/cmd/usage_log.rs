//! `tokenauth usage-log`: token issuances and refused attempts, newest first.

use crate::admin::{UsageQuery, UsageSummary};
use crate::clock::{self, rfc3339};
use crate::cmd::Ctx;
use crate::output::{self, or_dash};

/// Show the usage log: every token issuance and refused attempt, newest first.
///
/// Refused checks of personal access tokens are here too, with their reason (a token's
/// good uses only move its last-used time, shown by `token list`). Refusals are counted:
/// the first of a kind (client address, key or token, reason) in a minute is a row, and
/// repeats within that minute add to its count (`refused ×N`, `count` in --json), so junk
/// requests cannot fill the disk. Rows older than the
/// server's --usage-retention are pruned, but each key's newest row is always kept, so
/// `list-keys` can show its last use. The table shows time, key, user, address and
/// outcome; --wide adds the subject (another user's, when one with `impersonate` asked) and
/// the client's user agent.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth usage-log
  tokenauth usage-log 6dQx1b0z --since 1d --failures
  tokenauth usage-log --user ci-bot --limit 20 --json
  tokenauth usage-log --no-jti --since 7d
  tokenauth usage-log --summary --since 14d
  tokenauth usage-log --summary --json")]
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

    /// Per key or token: issuances, refusals by reason, first and last use, and a bar per
    /// day (UTC) over --since [default: 7d]; with --json the numbers
    #[arg(long)]
    pub summary: bool,

    /// At most this many rows
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub limit: u32,

    #[command(flatten)]
    pub table: output::TableArgs,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let since = match &args.since {
        Some(s) => {
            Some(clock::parse_duration(s).map_err(|e| anyhow::anyhow!("invalid --since: {e}"))?)
        }
        None => None,
    };
    let query = UsageQuery {
        key: args.key_id,
        user: args.user,
        since,
        failures: args.failures,
        no_jti: args.no_jti,
        limit: Some(args.limit),
    };
    let mut admin = ctx.admin()?;
    if args.summary {
        let summary = admin.usage_summary(&query)?;
        if args.table.json {
            return output::print_json(&summary);
        }
        print_summary(&summary, &args.table);
        return Ok(());
    }
    let rows = admin.usage(&query)?;
    if args.table.json {
        return output::print_json(&rows);
    }
    // Without --wide, what leaves the outcome room at 80 columns: who the token was for
    // (when a user with `impersonate` asked for another) and the client software are there
    // with --wide.
    let mut t = args.table.table_with_wide_only(
        &[
            "TIME",
            "KEY",
            "USER",
            "SUBJECT",
            "ADDRESS",
            "USER AGENT",
            "OUTCOME",
        ],
        &["SUBJECT", "USER AGENT"],
    );
    t.wrap(&["SUBJECT", "USER AGENT", "OUTCOME"]);
    for r in rows {
        t.add_row(vec![
            rfc3339(r.time),
            match (r.trust, r.key_id, r.pat_id) {
                (Some(t), _, _) => format!("trust {t}"),
                (None, Some(k), _) => t.id(&k),
                (None, None, Some(p)) => format!("token {}", t.id(&p)),
                (None, None, None) => "-".to_owned(),
            },
            or_dash(r.user),
            or_dash(r.subject),
            r.address,
            or_dash(r.user_agent),
            if r.ok && r.no_jti {
                "ok (grant without jti)".to_owned()
            } else if r.ok
                && let Some(claims) = r.claims.as_deref().and_then(matched_claims)
            {
                format!("ok ({claims})")
            } else if r.ok {
                "ok".to_owned()
            } else if r.count > 1 {
                format!(
                    "refused ×{} in this minute: {}",
                    r.count,
                    r.reason.unwrap_or_default()
                )
            } else {
                format!("refused: {}", r.reason.unwrap_or_default())
            },
        ]);
    }
    output::print_table(&t);
    Ok(())
}

/// Eight heights of bar: plain text that survives CI logs.
const BARS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One character per day, scaled to the busiest day of the period; a day with any use shows
/// at least the lowest bar.
pub fn bar_chart(counts: &[i64]) -> String {
    let max = counts.iter().copied().max().unwrap_or(0);
    counts
        .iter()
        .map(|&c| {
            if c <= 0 || max <= 0 {
                '·'
            } else {
                let h = ((c * 8 + max - 1) / max).clamp(1, 8);
                BARS[h as usize]
            }
        })
        .collect()
}

fn print_summary(s: &UsageSummary, args: &output::TableArgs) {
    println!(
        "Usage from {} to {}, per key; the chart has a column per day (UTC), oldest first.",
        &rfc3339(s.from)[..10],
        rfc3339(s.to)
    );
    let mut t = args.table(&[
        "KEY",
        "USER",
        "ISSUED",
        "REFUSED",
        "FIRST USE",
        "LAST USE",
        "PER DAY",
        "REFUSALS BY REASON",
    ]);
    t.wrap(&["REFUSALS BY REASON"]);
    for k in &s.keys {
        let per_day: Vec<i64> = k.per_day.iter().map(|d| d.issuances + d.refusals).collect();
        t.add_row(vec![
            match (&k.key_id, &k.token_id) {
                (Some(id), _) => t.id(id),
                (None, Some(p)) => format!("token {}", t.id(p)),
                (None, None) => "-".to_owned(),
            },
            or_dash(k.user.clone()),
            k.issuances.to_string(),
            k.refusals.to_string(),
            or_dash(k.first_use.map(rfc3339)),
            or_dash(k.last_use.map(rfc3339)),
            format!("|{}|", bar_chart(&per_day)),
            or_dash(Some(
                k.refusals_by_reason
                    .iter()
                    .map(|(r, n)| format!("{n}× {r}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
        ]);
    }
    output::print_table(&t);
}

/// An ID token's matched claims as the usage log stores them (a JSON object), as
/// `name=value, …`.
fn matched_claims(json: &str) -> Option<String> {
    let map: std::collections::BTreeMap<String, String> = serde_json::from_str(json).ok()?;
    Some(
        map.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn bars_scale_to_the_busiest_day_and_show_any_use() {
        assert_eq!(super::bar_chart(&[0, 1, 4, 8, 100]), "·▁▁▁█");
        assert_eq!(super::bar_chart(&[2, 4, 0]), "▄█·");
        assert_eq!(super::bar_chart(&[0, 0]), "··");
    }
}
