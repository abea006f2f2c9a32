//! `tokenauth store copy`: a whole store from one backend to another, verified.

use std::ffi::OsString;

use anyhow::{Context, bail};

use crate::cmd::{Ctx, cli_actor};
use crate::output::{self, terminal_safe};
use crate::public_key::PublicKey;
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
/// target, whose schema is created first, in batches of rows. Then the copy is verified:
/// every table holds as many rows as were read and the same digest of them (so secrets,
/// keys and hashes are byte for byte the same, and tokens already issued stay good), every
/// distinct public key parses into a verifier, and the audit chain checks out. Servers
/// running on the target load the whole store again. A target holding users, keys, tokens
/// or logs is refused unless --force, which replaces them. Stop `serve` on the source
/// first, or rows written meanwhile stay behind.
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
    let started = std::time::Instant::now();
    let report = source.copy_into(&mut target, args.force).with_context(|| {
        format!("copying {from} to {to} failed; nothing was kept in the target if the copy did not finish, and a finished copy that does not match must not be used: run it again with --force")
    })?;
    let keys = check_keys(&target).with_context(|| format!("the copy in {to}"))?;
    let (a, b) = (source.verify_audit()?, target.verify_audit()?);
    if a.ok != b.ok || a.rows != b.rows {
        bail!(
            "the audit chain in {to} differs from {from}'s ({} rows against {}); do not use the copy, and run it again with --force",
            b.rows,
            a.rows
        );
    }
    let took = started.elapsed().as_secs_f64();
    if args.json {
        return output::print_json(&serde_json::json!({
            "from": from.to_string(),
            "to": to.to_string(),
            "rows": report.tables.iter().map(|t| (t.table.to_string(), serde_json::json!(t.rows))).collect::<serde_json::Map<_, _>>(),
            "digests": report.tables.iter().map(|t| (t.table.to_string(), serde_json::json!(t.digest))).collect::<serde_json::Map<_, _>>(),
            "public_keys_checked": keys,
            "seconds": took,
            "verified": true,
        }));
    }
    let mut table = output::table(&["TABLE", "ROWS", "DIGEST"]);
    for t in &report.tables {
        table.add_row([t.table.to_string(), t.rows.to_string(), t.digest.clone()]);
    }
    output::print_table(&table);
    println!(
        "Copied {} to {} in {took:.1} s; verified: every table's rows and digest match, {keys} distinct public key(s) parse, the audit chain is intact.",
        terminal_safe(&from.to_string()),
        terminal_safe(&to.to_string())
    );
    Ok(())
}

/// Every distinct public key on the target parses into a verifier: key files go on working.
fn check_keys(target: &Store) -> anyhow::Result<usize> {
    let mut checked = 0;
    let mut bad = None;
    target.bulk(|| {
        target.each_distinct_public_key(|pem, alg| {
            checked += 1;
            let parsed = PublicKey::parse(pem)
                .map_err(|e| e.to_string())
                .and_then(|k| {
                    if k.alg.as_str() == alg {
                        Ok(())
                    } else {
                        Err(format!("the key is {} but stored as {alg}", k.alg))
                    }
                });
            if let Err(e) = parsed {
                bad.get_or_insert(e);
            }
        })
    })?;
    match bad {
        Some(e) => bail!("a public key in the copy does not parse: {e}"),
        None => Ok(checked),
    }
}
