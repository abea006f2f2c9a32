//! `tokenauth trust …`: trust relationships (keyless CI): add, list, show, edit, remove.

use std::path::{Path, PathBuf};

use crate::admin::{AddTrust, AdminError, EditTrust, TrustView};
use crate::clock::rfc3339;
use crate::cmd::{Ctx, ScopeArg, confirm};
use crate::iprange;
use crate::output::{self, or_dash, terminal_safe};
use crate::store::Trust;

/// Manage trust relationships: CI jobs get access tokens with their platform's own ID
/// token, and no stored secret (keyless CI).
///
/// A trust names an OIDC issuer (GitHub Actions, GitLab CI, a Kubernetes cluster), the
/// audience its ID tokens must carry and the claims they must have (`--claim NAME=VALUE`:
/// exact; `*` is a wildcard only where written). A job whose ID token passes gets an access
/// token of the trust's user, with the trust's scope, IP ranges and origins (`get-token
/// --oidc github`). The issuer's signing keys come from its discovery document, or
/// --jwks-uri, or a --jwks-file. Every change is audited; removing a trust ends the access
/// tokens it got at once.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth trust add gh-deploy --issuer https://token.actions.githubusercontent.com \\
      --audience https://auth.example.com --claim repository=acme/app \\
      --claim ref=refs/heads/main --user deploy-bot --scope write
  tokenauth trust list
  tokenauth trust show gh-deploy --json
  tokenauth trust edit gh-deploy --claim 'ref=refs/tags/v*'
  tokenauth trust remove gh-deploy --yes
  tokenauth --server https://auth.example.com --key admin.json trust list")]
pub struct Args {
    #[command(subcommand)]
    pub command: TrustCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum TrustCommand {
    /// Trust an issuer's ID tokens that have the given claims
    ///
    /// At least one bound claim must restrict something (a value that is not only `*`), and
    /// iss, aud, exp, iat, nbf and jti cannot be bound (the trust's own rules cover them).
    /// Binding only the organisation (repository_owner=acme) is allowed with a warning: every
    /// repository in it could get tokens, pull requests' workflows included. The users must
    /// exist. Without --user-claim the tokens are for the one --user; with it, for the user
    /// that claim names, if it is one of the --user names.
    #[command(after_help = "Examples:
  # GitHub Actions: the main branch of acme/app deploys as deploy-bot
  tokenauth trust add gh-deploy --issuer https://token.actions.githubusercontent.com \\
      --audience https://auth.example.com --claim repository=acme/app \\
      --claim ref=refs/heads/main --user deploy-bot --scope write
  # GitLab CI: protected branches of one project
  tokenauth trust add gl-build --issuer https://gitlab.com --audience https://auth.example.com \\
      --claim project_path=acme/app --claim ref_protected=true --user builder
  # The user named by the actor claim, if it is alice or bob
  tokenauth trust add gh-release --issuer https://token.actions.githubusercontent.com \\
      --audience https://auth.example.com --claim repository=acme/app \\
      --claim environment=release --user-claim actor --user alice --user bob
  # Kubernetes: one service account; the keys from a file, nothing is fetched
  tokenauth trust add k8s-etl --issuer https://kubernetes.default.svc.cluster.local \\
      --audience https://auth.example.com --claim sub=system:serviceaccount:etl:runner \\
      --user etl --jwks-file cluster-jwks.json")]
    Add(AddArgs),
    /// List trust relationships
    ///
    /// Shows each trust's name, issuer, bound claims, user (or users and the claim naming
    /// them), scope, state and last use.
    #[command(after_help = "Examples:\n  tokenauth trust list\n  tokenauth trust list --json")]
    List {
        #[command(flatten)]
        table: output::TableArgs,
    },
    /// Show every field of a trust relationship
    ///
    /// The JWKS document of a trust added with --jwks-file is not shown, only how many usable
    /// keys it holds.
    #[command(after_help = "Example:\n  tokenauth trust show gh-deploy --json")]
    Show {
        /// The trust's name
        name: String,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Change a trust relationship's audience, claims, users, scope, limits or keys
    ///
    /// Takes effect at once, on access tokens the trust already got too (a user no longer
    /// named loses them). The changed trust must pass the rules `trust add` applies. The
    /// issuer cannot be changed: remove the trust and add it again.
    #[command(after_help = "Examples:
  tokenauth trust edit gh-deploy --claim 'ref=refs/tags/v*' --remove-claim environment
  tokenauth trust edit gh-deploy --ip-range 192.0.2.0/24 --max-age 10m
  tokenauth trust edit gh-release --user alice --user bob --user carol
  tokenauth trust edit k8s-etl --jwks-file cluster-jwks.json")]
    Edit(EditArgs),
    /// Remove a trust relationship: the access tokens it got stop working at once
    ///
    /// The audit trail keeps what it was. A trust added again under the same name is a new
    /// one: the removed one's tokens stay dead.
    #[command(after_help = "Example:\n  tokenauth trust remove gh-deploy --yes")]
    Remove {
        /// The trust's name
        name: String,
        /// Do not ask for confirmation
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print the removed trust as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The trust's name: 1 to 64 letters, digits, '.', '_' or '-'
    pub name: String,

    /// The issuer: exactly the `iss` of its ID tokens (https; http only on a loopback host)
    #[arg(long, value_name = "URL")]
    pub issuer: String,

    /// The `aud` the ID tokens must carry (what the job asks its platform for)
    #[arg(long, value_name = "AUD")]
    pub audience: String,

    /// A claim the ID token must have, with this value: exact, except that `*` matches any
    /// run of characters (repeatable; all must match)
    #[arg(long, value_name = "NAME=VALUE")]
    pub claim: Vec<String>,

    /// The user the access tokens are for; with --user-claim, a user the claim may name
    /// (repeatable)
    #[arg(long, value_name = "USER")]
    pub user: Vec<String>,

    /// Take the user from this claim of the ID token, limited to the --user names
    #[arg(long, value_name = "CLAIM")]
    pub user_claim: Option<String>,

    /// The most the access tokens may do; `write` implies `read`
    #[arg(long, value_enum, default_value_t = ScopeArg::Read)]
    pub scope: ScopeArg,

    /// Addresses allowed to use the trust: IPs or CIDR networks, comma-separated
    /// [default: anywhere]
    #[arg(long, value_name = "RANGES")]
    pub ip_range: Option<String>,

    /// A browser origin (scheme://host[:port]) whose pages may use the access tokens from
    /// another site (repeatable) [default: none]
    #[arg(long, value_name = "ORIGIN")]
    pub origin: Vec<String>,

    /// When the trust stops working: a duration from now (90d, 12h) or a date (2027-01-31)
    /// [default: never]
    #[arg(long, value_name = "DURATION|DATE")]
    pub expires: Option<String>,

    /// How old (since its `iat`) an ID token may be when exchanged, 1s to 24h [default: 1h]
    #[arg(long, value_name = "DURATION")]
    pub max_age: Option<String>,

    /// Fetch the issuer's keys from this URL instead of the one its discovery document names
    #[arg(long, value_name = "URL", conflicts_with = "jwks_file")]
    pub jwks_uri: Option<String>,

    /// The issuer's keys from this JWKS file: nothing is fetched (for an issuer the server
    /// cannot reach)
    #[arg(long, value_name = "FILE")]
    pub jwks_file: Option<PathBuf>,

    /// Print the trust as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// The trust's name
    pub name: String,

    /// Refused: a trust's issuer cannot be changed; remove the trust and add it again
    #[arg(long, value_name = "URL", hide = true)]
    pub issuer: Option<String>,

    /// A new audience
    #[arg(long, value_name = "AUD")]
    pub audience: Option<String>,

    /// Bind a claim, or change the value of one already bound (repeatable)
    #[arg(long, value_name = "NAME=VALUE")]
    pub claim: Vec<String>,

    /// Stop binding this claim (repeatable)
    #[arg(long, value_name = "NAME")]
    pub remove_claim: Vec<String>,

    /// The users, replacing the current list (repeatable)
    #[arg(long, value_name = "USER")]
    pub user: Vec<String>,

    /// Take the user from this claim of the ID token, limited to the trust's users
    #[arg(long, value_name = "CLAIM", conflicts_with = "no_user_claim")]
    pub user_claim: Option<String>,

    /// Stop taking the user from a claim: the tokens are for the trust's one user
    #[arg(long)]
    pub no_user_claim: bool,

    /// A new scope
    #[arg(long, value_enum)]
    pub scope: Option<ScopeArg>,

    /// New IP ranges, comma-separated IPs or CIDR networks
    #[arg(long, value_name = "RANGES", conflicts_with = "no_ip_range")]
    pub ip_range: Option<String>,

    /// Remove the IP restriction: the trust works from anywhere
    #[arg(long)]
    pub no_ip_range: bool,

    /// Browser origins whose pages may use the access tokens from another site, replacing
    /// the current list (repeatable)
    #[arg(long, value_name = "ORIGIN", conflicts_with = "no_origin")]
    pub origin: Vec<String>,

    /// Remove every allowed origin
    #[arg(long, alias = "no-origins")]
    pub no_origin: bool,

    /// A new maximum age of ID tokens, 1s to 24h
    #[arg(long, value_name = "DURATION")]
    pub max_age: Option<String>,

    /// A new expiry: a duration from now (90d) or a date (2027-01-31)
    #[arg(long, value_name = "DURATION|DATE", conflicts_with = "no_expiry")]
    pub expires: Option<String>,

    /// Remove the expiry: the trust works until removed
    #[arg(long)]
    pub no_expiry: bool,

    /// Fetch the issuer's keys from this URL (instead of a JWKS file or discovery)
    #[arg(long, value_name = "URL", conflicts_with_all = ["jwks_file", "discover"])]
    pub jwks_uri: Option<String>,

    /// The issuer's keys from this JWKS file from now on: nothing is fetched
    #[arg(long, value_name = "FILE", conflicts_with = "discover")]
    pub jwks_file: Option<PathBuf>,

    /// Find the issuer's keys through its discovery document again (drops --jwks-uri and
    /// the JWKS file)
    #[arg(long)]
    pub discover: bool,

    /// Print the changed trust as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    match args.command {
        TrustCommand::Add(a) => add(ctx, a),
        TrustCommand::List { table } => list(ctx, table),
        TrustCommand::Show { name, json } => show(ctx, &name, json),
        TrustCommand::Edit(a) => edit(ctx, a),
        TrustCommand::Remove { name, yes, json } => remove(ctx, &name, yes, json),
    }
}

fn add(ctx: &Ctx, a: AddArgs) -> anyhow::Result<()> {
    let jwks = a.jwks_file.as_deref().map(read_jwks).transpose()?;
    let view = ctx
        .admin_creating()?
        .add_trust(&AddTrust {
            name: a.name,
            issuer: a.issuer,
            audience: a.audience,
            claims: a.claim,
            user_claim: a.user_claim,
            users: a.user,
            scope: Some(a.scope.into()),
            ip_range: a.ip_range,
            origins: a.origin,
            expires: a.expires,
            max_age: a.max_age,
            jwks_uri: a.jwks_uri,
            jwks,
        })
        .map_err(|e| naming_file(e, a.jwks_file.as_deref()))?;
    if a.json {
        output::print_json(&view)?;
    }
    eprintln!(
        "Added trust relationship {} ({}): {}.",
        view.trust.name,
        view.trust.id,
        terminal_safe(&summary(&view.trust))
    );
    warn(&view);
    Ok(())
}

fn list(ctx: &Ctx, args: output::TableArgs) -> anyhow::Result<()> {
    let trusts = ctx.admin()?.trusts()?;
    if args.json {
        return output::print_json(&trusts);
    }
    let mut t = args.table(&[
        "NAME",
        "ISSUER",
        "BOUND CLAIMS",
        "USER(S)",
        "SCOPE",
        "STATE",
        "LAST USED",
    ]);
    t.wrap(&["ISSUER", "BOUND CLAIMS", "USER(S)"]);
    for v in &trusts {
        let trust = &v.trust;
        t.add_row(vec![
            trust.name.clone(),
            trust.issuer.clone(),
            claims(trust),
            users(trust),
            trust.scope.to_string(),
            v.state.clone(),
            or_dash(trust.last_used.map(rfc3339)),
        ]);
    }
    output::print_table(&t);
    Ok(())
}

fn show(ctx: &Ctx, name: &str, json: bool) -> anyhow::Result<()> {
    let v = ctx.admin()?.trust(name)?;
    if json {
        return output::print_json(&v);
    }
    let trust = &v.trust;
    let jwks = match (&trust.jwks_uri, v.jwks_keys) {
        (_, Some(n)) => format!("inline ({n} key{})", if n == 1 { "" } else { "s" }),
        (Some(uri), None) => uri.clone(),
        (None, None) => "discovery".to_owned(),
    };
    let mut t = output::table(&["FIELD", "VALUE"]);
    t.wrap(&["VALUE"]);
    for (field, value) in [
        ("NAME", trust.name.clone()),
        ("ID", trust.id.clone()),
        ("ISSUER", trust.issuer.clone()),
        ("AUDIENCE", trust.audience.clone()),
        ("BOUND CLAIMS", claims(trust)),
        ("USER CLAIM", or_dash(trust.user_claim.clone())),
        ("USER(S)", trust.users.join(", ")),
        ("SCOPE", trust.scope.to_string()),
        (
            "IP RANGES",
            or_dash(Some(iprange::format(&trust.ip_ranges))),
        ),
        ("ORIGINS", or_dash(Some(trust.origins.join(" ")))),
        ("JWKS", jwks),
        ("MAX AGE", crate::clock::human_duration(trust.max_age)),
        ("CREATED", rfc3339(trust.created)),
        ("EXPIRES", or_dash(trust.expires.map(rfc3339))),
        ("LAST USED", or_dash(trust.last_used.map(rfc3339))),
        ("STATE", v.state.clone()),
        ("WARNINGS", or_dash(Some(v.warnings.join(" ")))),
    ] {
        t.add_row([field.to_owned(), value]);
    }
    output::print_table(&t);
    Ok(())
}

fn edit(ctx: &Ctx, a: EditArgs) -> anyhow::Result<()> {
    let ip_range =
        super::ip_range_change(a.ip_range.as_deref(), a.no_ip_range)?.map(|r| iprange::format(&r));
    let origins = match (a.origin.is_empty(), a.no_origin) {
        (false, _) => Some(a.origin),
        (true, true) => Some(Vec::new()),
        (true, false) => None,
    };
    // `""` for both sources: back to the issuer's discovery document.
    let (jwks_uri, jwks) = if a.discover {
        (Some(String::new()), Some(String::new()))
    } else {
        (
            a.jwks_uri,
            a.jwks_file.as_deref().map(read_jwks).transpose()?,
        )
    };
    let change = EditTrust {
        issuer: a.issuer,
        audience: a.audience,
        claims: a.claim,
        remove_claims: a.remove_claim,
        user_claim: if a.no_user_claim {
            Some(String::new())
        } else {
            a.user_claim
        },
        users: (!a.user.is_empty()).then_some(a.user),
        scope: a.scope.map(Into::into),
        ip_range,
        origins,
        expires: if a.no_expiry {
            Some(String::new())
        } else {
            a.expires
        },
        max_age: a.max_age,
        jwks_uri,
        jwks,
    };
    let view = ctx
        .admin()?
        .edit_trust(&a.name, &change)
        .map_err(|e| naming_file(e, a.jwks_file.as_deref()))?;
    if a.json {
        output::print_json(&view)?;
    }
    eprintln!(
        "Updated trust relationship {}: {}.",
        view.trust.name,
        terminal_safe(&summary(&view.trust))
    );
    warn(&view);
    Ok(())
}

fn remove(ctx: &Ctx, name: &str, yes: bool, json: bool) -> anyhow::Result<()> {
    let mut admin = ctx.admin()?;
    let trust = admin.trust(name)?.trust;
    confirm(
        &format!(
            "Remove trust relationship {} ({})?",
            trust.name,
            summary(&trust)
        ),
        yes,
    )?;
    let view = admin.remove_trust(&trust.name)?;
    if json {
        output::print_json(&view)?;
    }
    eprintln!(
        "Removed trust relationship {}; the access tokens it got stop working now.",
        trust.name
    );
    Ok(())
}

/// The JWKS file's text; what is wrong with its content is the operation's to say.
fn read_jwks(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the JWKS file {}: {}",
            terminal_safe(&path.to_string_lossy()),
            e.kind()
        )
    })
}

/// A refused JWKS, with the file it came from named.
fn naming_file(e: AdminError, file: Option<&Path>) -> anyhow::Error {
    match (&e, file) {
        (AdminError::Invalid(m), Some(path)) if m.starts_with("--jwks-file:") => {
            anyhow::anyhow!(
                "{}",
                m.replacen(
                    "--jwks-file",
                    &format!("--jwks-file {}", path.to_string_lossy()),
                    1
                )
            )
        }
        _ => e.into(),
    }
}

/// What a trust lets through, in one sentence.
fn summary(t: &Trust) -> String {
    let whom = match &t.user_claim {
        None => t.users.join(", "),
        Some(claim) => format!(
            "the user their {claim} claim names, if one of {}",
            t.users.join(", ")
        ),
    };
    format!(
        "ID tokens of {} for {} with {} get access tokens of {whom} (scope {})",
        t.issuer,
        t.audience,
        claims(t),
        t.scope
    )
}

fn claims(t: &Trust) -> String {
    let bound: Vec<String> = t.claims.iter().map(|(n, v)| format!("{n}={v}")).collect();
    bound.join(", ")
}

fn users(t: &Trust) -> String {
    match &t.user_claim {
        None => t.users.join(", "),
        Some(claim) => format!("{} (from {claim})", t.users.join(", ")),
    }
}

fn warn(view: &TrustView) {
    for w in &view.warnings {
        eprintln!("tokenauth: warning: {}", terminal_safe(w));
    }
}
