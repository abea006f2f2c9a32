//! `tokenauth rotate-secret`: replace users' signing secrets, ending their access tokens.

use crate::cmd::{Ctx, confirm};
use crate::output::terminal_safe;

/// Replace a user's signing secret: every access token of that user stops working, and so
/// do the tokens its keys issued for other users (impersonation).
///
/// Service keys are not affected: clients simply get new tokens.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth rotate-secret ci-bot
  tokenauth rotate-secret --all-users --yes
  tokenauth --server https://auth.example.com --key admin.json rotate-secret ci-bot --yes")]
#[command(group = clap::ArgGroup::new("who").required(true).args(["user", "all_users"]))]
pub struct Args {
    /// The user whose secret to replace
    pub user: Option<String>,

    /// Replace every user's secret
    #[arg(long)]
    pub all_users: bool,

    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let mut admin = ctx.admin()?;
    let question = match &args.user {
        Some(u) => {
            admin.user(u)?;
            format!("Rotate the secret of {u}, ending all its access tokens?")
        }
        None => format!(
            "Rotate the secrets of all {} users, ending every access token?",
            admin.users()?.len()
        ),
    };
    confirm(&question, args.yes)?;
    for u in admin.rotate_secret(args.user.as_deref())? {
        eprintln!(
            "Rotated the secret of {}; its access tokens stop working now.",
            terminal_safe(&u)
        );
    }
    Ok(())
}
