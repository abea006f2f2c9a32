//! `tokenauth audit`: the admin audit trail, newest first, and `audit verify`, which checks
//! its hash chain.

use anyhow::bail;

use crate::admin::AuditQuery;
use crate::clock::{self, rfc3339};
use crate::cmd::Ctx;
use crate::output;
use crate::store::AuditRow;

/// Show who changed what: the admin audit trail, newest first.
///
/// Every change to users, keys, personal access tokens, secrets and settings leaves a row,
/// written in the change's own transaction: its time, its actor (the OS user and host for the
/// CLI; the user and key or token for the admin API), the action, the target and the fields
/// that changed, before and after. Private keys, tokens and secrets are never recorded. Rows
/// are kept for the store's audit retention (`init --audit-retention`, default 1 year).
/// Each row's hash covers the one before: `audit verify` finds an edited or deleted row.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
#[command(after_help = "Examples:
  tokenauth audit --since 7d
  tokenauth audit --actor alice --action key --json
  tokenauth audit --target 6dQx1b0zExampleKeyId
  tokenauth audit verify")]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,

    /// Only rows newer than this (e.g. 1h, 7d)
    #[arg(long, value_name = "DURATION", value_parser = clock::parse_duration)]
    pub since: Option<i64>,

    /// Only changes by this actor: as shown, or its user part (alice for alice@build-host)
    #[arg(long, value_name = "ACTOR")]
    pub actor: Option<String>,

    /// Only changes to this user, trust or setting, or to this key or token: its id or a
    /// unique prefix of it, as edit-key takes
    #[arg(long, value_name = "TARGET", allow_hyphen_values = true)]
    pub target: Option<String>,

    /// Only this action (key.issue) or family of actions (key, user, token, trust, settings)
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,

    /// At most this many rows
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub limit: u32,

    #[command(flatten)]
    pub table: output::TableArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the audit trail's hash chain; exit 1 naming the first edited or deleted row
    ///
    /// Each row's hash covers its contents and the previous row's hash, and the store keeps
    /// the newest row's: editing, deleting or reordering rows (the newest one too) breaks the
    /// chain. Rows pruned by the retention leave a checkpoint the chain starts from.
    #[command(after_help = "Examples:\n  tokenauth audit verify\n  tokenauth audit verify --json")]
    Verify {
        /// Print the verdict as JSON
        #[arg(long)]
        json: bool,
    },
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let mut admin = ctx.admin()?;
    if let Some(AuditCommand::Verify { json }) = args.command {
        let v = admin.verify_audit()?;
        if json {
            output::print_json(&v)?;
        }
        if let Some(problem) = v.problem {
            bail!("the audit trail was tampered with: {problem}");
        }
        if !json {
            let from = if v.checkpoint > 0 {
                format!(
                    " (after row {}, where pruning left a checkpoint)",
                    v.checkpoint
                )
            } else {
                String::new()
            };
            println!("Audit trail intact: {} rows checked{from}.", v.rows);
        }
        return Ok(());
    }
    let rows = admin.audit(&AuditQuery {
        since: args.since,
        actor: args.actor,
        target: args.target,
        action: args.action,
        limit: Some(args.limit),
    })?;
    if args.table.json {
        return output::print_json(&rows);
    }
    print_rows(&rows, &args.table);
    Ok(())
}

/// "field: before → after" per changed field.
fn describe(changes: &serde_json::Value) -> String {
    let Some(map) = changes.as_object() else {
        return changes.to_string();
    };
    let show = |field: &str, v: &serde_json::Value| match v {
        serde_json::Value::Number(n) if ["expires", "revoked"].contains(&field) => {
            n.as_i64().map_or_else(|| n.to_string(), rfc3339)
        }
        serde_json::Value::String(s) if s.is_empty() => "''".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    map.iter()
        .map(|(field, c)| match (c.get("from"), c.get("to")) {
            (Some(from), Some(to)) => {
                format!("{field}: {} → {}", show(field, from), show(field, to))
            }
            (None, Some(to)) => format!("{field}: {}", show(field, to)),
            _ => format!("{field}: {c}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn print_rows(rows: &[AuditRow], args: &output::TableArgs) {
    let mut t = args.table(&["#", "TIME", "ACTOR", "ACTION", "TARGET", "CHANGES"]);
    t.wrap(&["CHANGES"]);
    for r in rows {
        // Keys and tokens are named by id; users, trusts and settings by their names, whole.
        let by_id = r.action.starts_with("key.") || r.action.starts_with("token.");
        t.add_row(vec![
            r.id.to_string(),
            rfc3339(r.time),
            r.actor.clone(),
            r.action.clone(),
            if by_id {
                t.id(&r.target)
            } else {
                r.target.clone()
            },
            output::or_dash(Some(describe(&r.changes))),
        ]);
    }
    output::print_table(&t);
}
