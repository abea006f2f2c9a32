//! `tokenauth store copy`: a whole store from one backend to another, verified.

use std::ffi::OsString;

use anyhow::{Context, bail};

use crate::cmd::{Ctx, cli_actor};
use crate::output::{self, terminal_safe};
use crate::registry::Snapshot;
use crate::store::{Location, Store};

/// Work on whole stores.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    Copy(CopyArgs),
}

/// Copy a whole store to another: SQLite to PostgreSQL, back, or between two of a kind.
///
/// Everything is copied as it is (users, secrets, keys, personal access tokens, revoked
/// tokens, used grants, the usage log and the audit trail), in one transaction on the
/// target, whose schema is created first. Then the copy is verified: the same number of
/// rows in every table, every key's public key parses into a verifier on the target as on
/// the source, every user's secret is the same (so tokens already issued stay good), and
/// the audit chain checks out. A target holding users, keys, tokens or logs is refused
/// unless --force, which replaces them. Stop `serve` on the source first, or rows written
/// meanwhile stay behind.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth store copy --from /var/lib/tokenauth/tokenauth.db --to postgres://tokenauth@db/tokenauth
  tokenauth store copy --from \"$TOKENAUTH_DB\" --to ./backup.db --force")]
pub struct CopyArgs {
    /// The store to copy: an SQLite file or a postgres:// URL
    #[arg(long, value_name = "PATH|URL")]
    pub from: OsString,

    /// The store to copy into (created when missing)
    #[arg(long, value_name = "PATH|URL")]
    pub to: OsString,

    /// Replace what the target holds
    #[arg(long)]
    pub force: bool,

    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    ctx.local_only("store copy")?;
    let StoreCommand::Copy(args) = args.command;
    let from = Location::parse(&args.from)?;
    let to = Location::parse(&args.to)?;
    if from.to_string() == to.to_string() {
        bail!("--from and --to name the same store ({from}); name another target");
    }
    if let Location::Sqlite(p) = &from
        && !p.exists()
    {
        bail!(
            "the store {} does not exist; check --from",
            terminal_safe(&p.display().to_string())
        );
    }
    let source = Store::connect(&from)?;
    let mut target = Store::connect(&to)?;
    target.set_actor(cli_actor(), ctx.clock);
    source.copy_into(&mut target, args.force)?;
    let counts = verify(ctx, &source, &target).with_context(|| {
        format!("the copy in {to} does not match {from}; do not use it, and run the copy again with --force")
    })?;
    if args.json {
        return output::print_json(&serde_json::json!({
            "from": from.to_string(),
            "to": to.to_string(),
            "rows": counts.iter().map(|(t, n)| (t.to_string(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
            "verified": true,
        }));
    }
    let mut table = output::table(&["TABLE", "ROWS"]);
    for (t, n) in &counts {
        table.add_row([t.to_string(), n.to_string()]);
    }
    output::print_table(&table);
    println!(
        "Copied {} to {}; verified: row counts match, keys verify, secrets and the audit chain are intact.",
        terminal_safe(&from.to_string()),
        terminal_safe(&to.to_string())
    );
    Ok(())
}

/// Row counts per table (the same on both sides, or an error naming the difference).
fn verify(ctx: &Ctx, source: &Store, target: &Store) -> anyhow::Result<Vec<(&'static str, i64)>> {
    let counts = source.row_counts()?;
    for ((table, a), (_, b)) in counts.iter().zip(target.row_counts()?) {
        if *a != b {
            bail!("table {table} has {a} rows in the source and {b} in the target");
        }
    }
    let now = ctx.now();
    let (before, after) = (
        Snapshot::load(source, now, None)?,
        Snapshot::load(target, now, None)?,
    );
    for key in source.keys(None, true)? {
        let copied = target.key(&key.key_id)?;
        if (copied.public_key != key.public_key)
            || (copied.alg != key.alg)
            || (copied.revoked != key.revoked)
            || (before.key(&key.key_id).is_some() != after.key(&key.key_id).is_some())
        {
            bail!("key {} differs", key.key_id);
        }
    }
    let secrets = |s: &Store| -> anyhow::Result<Vec<(String, Vec<u8>, i64)>> {
        let mut all: Vec<_> = s
            .user_auths()?
            .into_iter()
            .map(|a| (a.user.name, a.secret.expose().to_vec(), a.epoch))
            .collect();
        all.sort();
        Ok(all)
    };
    if secrets(source)? != secrets(target)? {
        bail!("user secrets differ");
    }
    let (a, b) = (source.verify_audit()?, target.verify_audit()?);
    if a.ok != b.ok || a.rows != b.rows {
        bail!(
            "the audit chain differs ({} rows against {})",
            a.rows,
            b.rows
        );
    }
    Ok(counts)
}
