//! `tokenauth token …`: personal access tokens: create (shown once), list, edit, revoke.

use anyhow::{Context, bail};

use crate::admin::{CreatePat, EditPat, PatFilter};
use crate::cmd::{Ctx, ScopeArg, check_user_name, confirm, parse_expires, parse_origins};
use crate::iprange;
use crate::output::{self, or_dash, terminal_safe};

/// Manage personal access tokens: static bearer tokens for callers that cannot sign grants.
///
/// A personal access token (`tapat_…`) is sent as `Authorization: Bearer` like an access
/// token and checked by the same rules: its user enabled, not revoked, not expired, the caller
/// inside its IP ranges, enough scope. It is shown once, when created; the store keeps only
/// its SHA-256 hash. `rotate-secret USER` and `user disable USER` end a user's tokens at once.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth token create --user webhook --description 'GitHub webhook' --expires 90d
  tokenauth token list --user webhook
  tokenauth token revoke 3f9a1c2b --yes
  tokenauth --server https://auth.example.com --token \"$PAT\" token list")]
pub struct Args {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a personal access token and print it, this once
    ///
    /// The token goes to standard output (alone on its line, or in the JSON with --json); what
    /// it is for goes to standard error. Nothing can show the token again: tokenauth keeps
    /// only its hash. The user is created if absent.
    #[command(after_help = "Examples:
  tokenauth token create --user webhook --description 'GitHub webhook' --expires 90d
  tokenauth token create --user deployer --scope write --ip-range 10.0.0.0/8 --json
  tokenauth token create --user dashboard --origin https://app.example.com")]
    Create(CreateArgs),
    /// List personal access tokens, never the tokens themselves
    ///
    /// Shows each token's id (shortened to a prefix that `token edit` and `token revoke` take),
    /// user, description, scope, expiry and last use dates (last use is recorded at most once
    /// a minute) and state; --wide adds the IP ranges, origins, creation time and `tapat_…`
    /// with the token's last four characters, with full ids and times. Revoked tokens are
    /// hidden unless --all is given.
    #[command(after_help = "Example:\n  tokenauth token list --user webhook --json")]
    List {
        /// Only this user's tokens
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Include revoked tokens
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        table: output::TableArgs,
    },
    /// Change a token's description, scope, IP ranges or allowed origins
    ///
    /// Scope, IP range and origin changes take effect at once.
    #[command(after_help = "Examples:
  tokenauth token edit 3f9a1c2b --description 'nightly export' --scope read
  tokenauth token edit 3f9a1c2b --ip-range 192.0.2.0/24 --no-origin")]
    Edit(EditArgs),
    /// Revoke a personal access token: it stops working at once
    ///
    /// The token stays listed (with --all).
    #[command(after_help = "Example:\n  tokenauth token revoke 3f9a1c2b --yes")]
    Revoke {
        /// The token's id (or a unique prefix of at least 4 characters)
        #[arg(allow_hyphen_values = true)]
        id: String,
        /// Do not ask for confirmation
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The user the token acts for (created if absent)
    #[arg(long, value_name = "NAME")]
    pub user: String,

    /// The most the token may do; `write` implies `read`
    #[arg(long, value_enum, default_value_t = ScopeArg::Read)]
    pub scope: ScopeArg,

    /// What the token is for
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub description: String,

    /// When the token stops working: a duration from now (90d, 12h) or a date (2027-01-31)
    /// [default: never]
    #[arg(long, value_name = "DURATION|DATE")]
    pub expires: Option<String>,

    /// Addresses allowed to use the token: IPs or CIDR networks, comma-separated
    /// [default: anywhere]
    #[arg(long, value_name = "RANGES")]
    pub ip_range: Option<String>,

    /// A browser origin (scheme://host[:port]) whose pages may use the token from another
    /// site (repeatable) [default: none]
    #[arg(long, value_name = "ORIGIN")]
    pub origin: Vec<String>,

    /// Print the token and its metadata as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// The token's id (or a unique prefix of at least 4 characters)
    #[arg(allow_hyphen_values = true)]
    pub id: String,

    /// A new description
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,

    /// A new scope
    #[arg(long, value_enum)]
    pub scope: Option<ScopeArg>,

    /// New IP ranges, comma-separated IPs or CIDR networks
    #[arg(long, value_name = "RANGES", conflicts_with = "no_ip_range")]
    pub ip_range: Option<String>,

    /// Remove the IP restriction: the token works from anywhere
    #[arg(long)]
    pub no_ip_range: bool,

    /// Browser origins whose pages may use the token from another site, replacing the
    /// current list (repeatable)
    #[arg(long, value_name = "ORIGIN", conflicts_with = "no_origin")]
    pub origin: Vec<String>,

    /// Remove every allowed origin
    #[arg(long)]
    pub no_origin: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::Create(a) => create(ctx, a),
        TokenCommand::List { user, all, table } => list(ctx, user, all, table),
        TokenCommand::Edit(a) => edit(ctx, a),
        TokenCommand::Revoke { id, yes } => {
            let mut admin = ctx.admin()?;
            let pat = admin.pat(&id)?.pat;
            if pat.revoked.is_some() {
                eprintln!("Token {} was already revoked.", terminal_safe(&pat.id));
                return Ok(());
            }
            confirm(
                &format!(
                    "Revoke personal access token {} of user {} ('{}')?",
                    pat.id, pat.user, pat.description
                ),
                yes,
            )?;
            admin.revoke_pat(&pat.id)?;
            eprintln!(
                "Revoked token {} of user {}; it stops working now.",
                terminal_safe(&pat.id),
                terminal_safe(&pat.user)
            );
            Ok(())
        }
    }
}

fn create(ctx: &Ctx, args: CreateArgs) -> anyhow::Result<()> {
    check_user_name(&args.user)?;
    // Checked before anything is made.
    parse_expires(args.expires.as_deref(), ctx.now())?;
    iprange::parse(args.ip_range.as_deref().unwrap_or("")).context("invalid --ip-range")?;
    parse_origins(&args.origin)?;
    let created = ctx.admin_creating()?.create_pat(&CreatePat {
        user: args.user,
        scope: Some(args.scope.into()),
        description: args.description,
        expires: args.expires,
        ip_range: args.ip_range,
        origins: args.origin,
    })?;
    let pat = &created.pat;
    if created.user_created {
        eprintln!("Created user {}.", terminal_safe(&pat.user));
    }
    if args.json {
        let mut v = serde_json::to_value(pat)?;
        v["token"] = created.token.expose().into();
        output::print_json(&v)?;
    } else {
        println!("{}", created.token.expose());
    }
    eprintln!(
        "Created personal access token {} for {} (scope {}). It is shown this once: tokenauth keeps only its hash.",
        pat.id,
        terminal_safe(&pat.user),
        pat.scope
    );
    Ok(())
}

fn list(ctx: &Ctx, user: Option<String>, all: bool, args: output::TableArgs) -> anyhow::Result<()> {
    let pats = ctx.admin()?.pats(&PatFilter { user, all })?;
    if args.json {
        return output::print_json(&pats);
    }
    const HEADER: [&str; 11] = [
        "ID",
        "USER",
        "DESCRIPTION",
        "SCOPE",
        "IP RANGES",
        "ORIGINS",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "STATE",
        "TOKEN",
    ];
    // Without --wide, what fits a row on one line of 80 columns, as in list-keys.
    let mut t = args.table_with_wide_only(&HEADER, &["IP RANGES", "ORIGINS", "CREATED", "TOKEN"]);
    t.wrap(&["DESCRIPTION", "IP RANGES", "ORIGINS"]);
    for v in &pats {
        let p = &v.pat;
        let cells = [
            t.id(&p.id),
            p.user.clone(),
            or_dash(Some(p.description.clone())),
            p.scope.to_string(),
            or_dash(Some(iprange::format(&p.ip_ranges))),
            or_dash(Some(p.origins.join(" "))),
            t.date(p.created),
            or_dash(p.expires.map(|e| t.date(e))),
            or_dash(p.last_used.map(|u| t.date(u))),
            v.state.clone(),
            v.token.clone(),
        ];
        t.add_row(cells);
    }
    output::print_table(&t);
    Ok(())
}

fn edit(ctx: &Ctx, args: EditArgs) -> anyhow::Result<()> {
    let ip_range = super::ip_range_change(args.ip_range.as_deref(), args.no_ip_range)?
        .map(|r| iprange::format(&r));
    let origins = match (args.origin.is_empty(), args.no_origin) {
        (false, _) => Some(parse_origins(&args.origin)?),
        (true, true) => Some(Vec::new()),
        (true, false) => None,
    };
    let change = EditPat {
        description: args.description,
        scope: args.scope.map(Into::into),
        ip_range,
        origins,
    };
    if change.description.is_none()
        && change.scope.is_none()
        && change.ip_range.is_none()
        && change.origins.is_none()
    {
        bail!(
            "nothing to change; pass --description, --scope, --ip-range, --no-ip-range, --origin or --no-origin"
        );
    }
    let p = ctx.admin()?.edit_pat(&args.id, &change)?.pat;
    eprintln!(
        "Updated token {}: description '{}', scope {}, IP ranges {}, origins {}.",
        terminal_safe(&p.id),
        terminal_safe(&p.description),
        p.scope,
        if p.ip_ranges.is_empty() {
            "anywhere".to_owned()
        } else {
            iprange::format(&p.ip_ranges)
        },
        if p.origins.is_empty() {
            "none (same site only)".to_owned()
        } else {
            p.origins.join(" ")
        }
    );
    Ok(())
}
