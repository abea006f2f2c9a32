//! `tokenauth revoke-key`: stop a key and every token issued with it.

use crate::cmd::{Ctx, confirm};
use crate::output::terminal_safe;

/// Revoke a service key.
///
/// The key can no longer get tokens and every access token issued with it stops working at
/// once. The key stays listed (with --all) and its usage log is kept.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth revoke-key 6dQx1b0z --yes
  tokenauth --server https://auth.example.com --key admin.json revoke-key 6dQx1b0z --yes")]
pub struct Args {
    /// The key's id (or a unique prefix of at least 4 characters)
    #[arg(allow_hyphen_values = true)]
    pub key_id: String,

    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let mut admin = ctx.admin()?;
    let key = admin.key(&args.key_id)?.key;
    if key.revoked.is_some() {
        eprintln!("Key {} was already revoked.", terminal_safe(&key.key_id));
        return Ok(());
    }
    confirm(
        &format!(
            "Revoke key {} of user {} ('{}')?",
            key.key_id, key.user, key.title
        ),
        args.yes,
    )?;
    let done = admin.revoke_key(&key.key_id)?;
    if !done.revoked_now {
        eprintln!("Key {} was already revoked.", terminal_safe(&key.key_id));
        return Ok(());
    }
    eprintln!(
        "Revoked key {} of user {}; tokens issued with it stop working now.",
        terminal_safe(&key.key_id),
        terminal_safe(&key.user)
    );
    Ok(())
}
