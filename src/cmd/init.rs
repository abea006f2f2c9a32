//! `tokenauth init`: create the store and record the token URI and issuer.

use anyhow::bail;

use crate::cmd::Ctx;
use crate::output::{self, terminal_safe};
use crate::registry::{DEFAULT_TOKEN_URI, default_issuer};
use crate::store::audit::DEFAULT_AUDIT_RETENTION;

/// Create the store and record the token URI that key files will carry.
///
/// Commands that add things (issue-key, user add, token create, trust add, serve) create
/// the store on demand with the same defaults; the others refuse a store that is not there.
/// Run `init` to choose the token URI (the address clients will POST grants to) and the
/// issuer named in access tokens. Running it again updates the settings given and keeps
/// everything else; changing the token URI is warned about while key files name the old
/// one.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth init
  tokenauth --db /var/lib/tokenauth.db init --token-uri https://auth.example.com/token
  tokenauth init --audit-retention 2y")]
pub struct Args {
    /// The token endpoint's URL, written into every key file [default: http://127.0.0.1:8080/token]
    #[arg(long, value_name = "URL")]
    pub token_uri: Option<String>,

    /// The issuer named in access tokens and accepted as a grant audience [default: the
    /// token URI without its last path segment]
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,

    /// A page about this server for client developers, published in the RFC 8414 metadata
    #[arg(long, value_name = "URL")]
    pub service_documentation: Option<String>,

    /// How long admin audit rows are kept (e.g. 400d, 2y); older rows are pruned as new ones
    /// are written, and `audit verify` checks from where pruning stopped [default: 1y]
    #[arg(long, value_name = "DURATION", value_parser = parse_retention)]
    pub audit_retention: Option<i64>,

    /// Print the settings as JSON
    #[arg(long)]
    pub json: bool,
}

fn check_url(flag: &str, value: &str) -> anyhow::Result<()> {
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => bail!("{flag} '{value}' is not an http(s) URL; e.g. https://auth.example.com/token"),
    }
}

fn parse_retention(s: &str) -> Result<i64, String> {
    match crate::clock::parse_duration(s)? {
        d if d >= 86_400 => Ok(d),
        _ => Err(format!("'{s}' is too short; keep audit rows at least 1d")),
    }
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    ctx.local_only("init")?;
    if let Some(u) = &args.token_uri {
        check_url("--token-uri", u)?;
    }
    if let Some(u) = &args.issuer {
        check_url("--issuer", u)?;
    }
    if let Some(u) = &args.service_documentation {
        check_url("--service-documentation", u)?;
    }
    let mut store = ctx.store_creating()?;
    let token_uri_before = store.setting("token_uri")?;
    if let Some(u) = &args.token_uri {
        store.set_setting("token_uri", u)?;
    }
    if let Some(u) = &args.issuer {
        store.set_setting("issuer", u)?;
    }
    if let Some(u) = &args.service_documentation {
        store.set_setting("service_documentation", u)?;
    }
    if let Some(r) = args.audit_retention {
        store.set_setting("audit_retention", &r.to_string())?;
    }
    let audit_retention = store
        .setting("audit_retention")?
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(DEFAULT_AUDIT_RETENTION);
    let documentation = store.setting("service_documentation")?;
    let token_uri_set = store.setting("token_uri")?;
    let defaulted = token_uri_set.is_none();
    let token_uri = token_uri_set.unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
    let old = token_uri_before.as_deref().unwrap_or(DEFAULT_TOKEN_URI);
    if old != token_uri {
        let active = store.count_active_keys(ctx.now())?;
        if active > 0 {
            eprintln!(
                "warning: the token URI changed from {old} to {new}; the key files of up to \
                 {active} active service key(s) name {old}, and the server will refuse their \
                 grants (Invalid audience): re-issue those keys, or put the old URI back with \
                 `tokenauth init --token-uri {old}`",
                old = terminal_safe(old),
                new = terminal_safe(&token_uri),
            );
        }
    }
    let issuer = store
        .setting("issuer")?
        .unwrap_or_else(|| default_issuer(&token_uri));
    if args.json {
        return output::print_json(&serde_json::json!({
            "store": store.location().to_string(),
            "token_uri": token_uri,
            "issuer": issuer,
            "service_documentation": documentation,
            "audit_retention": audit_retention,
            "schema_version": store.user_version()?,
        }));
    }
    let location = terminal_safe(&store.location().to_string()).into_owned();
    match store.mode() {
        Some(mode) => println!("store:     {location} (mode {mode:o})"),
        None => println!("store:     {location} (PostgreSQL)"),
    }
    if defaulted {
        println!(
            "token URI: {token_uri} (the default; set the URL clients reach with --token-uri URL)"
        );
    } else {
        println!("token URI: {}", terminal_safe(&token_uri));
    }
    println!("issuer:    {}", terminal_safe(&issuer));
    if let Some(d) = &documentation {
        println!("documentation: {}", terminal_safe(d));
    }
    println!(
        "audit rows kept: {}",
        crate::clock::human_duration(audit_retention)
    );
    Ok(())
}
