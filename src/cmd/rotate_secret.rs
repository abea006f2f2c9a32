//! `tokenauth rotate-secret`: replace users' signing secrets, ending their access tokens.

use rand::rngs::OsRng;

use crate::cmd::{Ctx, confirm};
use crate::output::terminal_safe;
use crate::secret::Secret;

/// Replace a user's signing secret: every access token of that user stops working.
///
/// Service keys are not affected: clients simply get new tokens.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth rotate-secret ci-bot
  tokenauth rotate-secret --all-users --yes")]
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
    let mut store = ctx.store()?;
    let users: Vec<String> = match &args.user {
        Some(u) => vec![store.user(u)?.name],
        None => store.users()?.into_iter().map(|u| u.name).collect(),
    };
    let question = match &args.user {
        Some(u) => format!("Rotate the secret of {u}, ending all its access tokens?"),
        None => format!(
            "Rotate the secrets of all {} users, ending every access token?",
            users.len()
        ),
    };
    confirm(&question, args.yes)?;
    for u in &users {
        store.rotate_secret(u, &Secret::generate(&mut OsRng), ctx.now())?;
        eprintln!(
            "Rotated the secret of {}; its access tokens stop working now.",
            terminal_safe(u)
        );
    }
    Ok(())
}
