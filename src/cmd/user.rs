//! `tokenauth user …`: add, list, remove, enable and disable users, and their permissions.

use crate::cmd::{Ctx, check_user_name, confirm};
use crate::output::{self, terminal_safe};
use crate::store::User;

/// Manage users: the accounts service keys act for.
///
/// Each user gets a fresh 256-bit secret when created; access tokens for the user are signed
/// with it, so `rotate-secret` ends them all at once.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth user add ci-bot
  tokenauth user grant deployer impersonate
  tokenauth user grant ops admin
  tokenauth user list --json
  tokenauth --server https://auth.example.com --key ops.json user list")]
pub struct Args {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user with a fresh random secret
    ///
    /// The secret (256 random bits) signs the user's access tokens; it never leaves the
    /// store. `issue-key` creates users on demand, so this is only needed ahead of time.
    #[command(after_help = "Example:\n  tokenauth user add ci-bot")]
    Add {
        /// The user's name
        name: String,
    },
    /// List users, their permissions and state
    ///
    /// Shows each user's permissions, number of active keys, whether it is disabled and
    /// when it was created.
    #[command(after_help = "Example:\n  tokenauth user list --json")]
    List {
        #[command(flatten)]
        table: output::TableArgs,
    },
    /// Remove a user that has no active keys
    ///
    /// Revoke the user's keys first; revoked keys and the usage log stay on record.
    #[command(after_help = "Example:\n  tokenauth user remove old-bot --yes")]
    Remove {
        /// The user's name
        name: String,
        /// Do not ask for confirmation
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Give a user a permission
    ///
    /// `impersonate` lets the user's keys sign grants for other users (`sub`); `introspect`
    /// lets the user's access tokens call the server's /introspect endpoint; `admin` lets the
    /// user's tokens drive the admin API (`serve --admin-api`), with write scope for changes;
    /// `manage-own-keys` lets them issue, list, edit and revoke the user's own keys and
    /// personal access tokens there, and read its own usage log.
    #[command(after_help = "Example:\n  tokenauth user grant deployer impersonate")]
    Grant {
        /// The user's name
        name: String,
        /// The permission
        permission: Permission,
    },
    /// Take a permission away from a user
    ///
    /// Takes effect at once: a running server refuses the next grant that needs it, and
    /// taking `impersonate` away ends the access tokens the user's keys got for other users.
    #[command(after_help = "Example:\n  tokenauth user revoke deployer impersonate")]
    Revoke {
        /// The user's name
        name: String,
        /// The permission
        permission: Permission,
    },
    /// Disable a user: grants are refused and its tokens stop working at once
    ///
    /// Keys and secret are kept, so `user enable` restores access without reissuing keys.
    #[command(after_help = "Example:\n  tokenauth user disable ci-bot")]
    Disable {
        /// The user's name
        name: String,
    },
    /// Enable a disabled user again
    ///
    /// Tokens that have not expired and keys that are not revoked work again at once.
    #[command(after_help = "Example:\n  tokenauth user enable ci-bot")]
    Enable {
        /// The user's name
        name: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Permission {
    /// Sign grants whose subject is another user
    Impersonate,
    /// Call /introspect with one's access tokens
    Introspect,
    /// Manage everything through the admin API
    Admin,
    /// Manage one's own keys and tokens through the admin API
    ManageOwnKeys,
}

impl Permission {
    fn as_str(self) -> &'static str {
        match self {
            Permission::Impersonate => "impersonate",
            Permission::Introspect => "introspect",
            Permission::Admin => "admin",
            Permission::ManageOwnKeys => "manage-own-keys",
        }
    }
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let mut admin = match args.command {
        UserCommand::Add { .. } => ctx.admin_creating()?,
        _ => ctx.admin()?,
    };
    // Names reach messages as typed or as stored; either may hold escape sequences.
    match args.command {
        UserCommand::Add { name } => {
            check_user_name(&name)?;
            admin.add_user(&name)?;
            eprintln!("Created user {}.", terminal_safe(&name));
        }
        UserCommand::List { table } => {
            let users = admin.users()?;
            if table.json {
                return output::print_json(&users);
            }
            print_users(&users, &table);
        }
        UserCommand::Remove { name, yes } => {
            admin.user(&name)?;
            confirm(&format!("Remove user {name}?"), yes)?;
            admin.remove_user(&name)?;
            eprintln!("Removed user {}.", terminal_safe(&name));
        }
        UserCommand::Grant { name, permission } => {
            admin.set_permission(&name, permission.as_str(), true)?;
            eprintln!(
                "User {} may now {}.",
                terminal_safe(&name),
                permission.as_str()
            );
        }
        UserCommand::Revoke { name, permission } => {
            admin.set_permission(&name, permission.as_str(), false)?;
            eprintln!(
                "User {} may no longer {}.",
                terminal_safe(&name),
                permission.as_str()
            );
        }
        UserCommand::Disable { name } => {
            admin.set_disabled(&name, true)?;
            eprintln!(
                "Disabled user {}; its grants are refused and its tokens stop working now.",
                terminal_safe(&name)
            );
        }
        UserCommand::Enable { name } => {
            admin.set_disabled(&name, false)?;
            eprintln!("Enabled user {}.", terminal_safe(&name));
        }
    }
    Ok(())
}

fn print_users(users: &[User], args: &output::TableArgs) {
    let mut t = args.table(&["USER", "PERMISSIONS", "ACTIVE KEYS", "STATE", "CREATED"]);
    t.wrap(&["PERMISSIONS"]);
    for u in users {
        t.add_row(vec![
            u.name.clone(),
            output::or_dash(Some(u.permissions.join(" "))),
            u.active_keys.to_string(),
            if u.disabled { "disabled" } else { "enabled" }.to_owned(),
            crate::clock::rfc3339(u.created),
        ]);
    }
    output::print_table(&t);
}
