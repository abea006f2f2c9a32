//! `tokenauth issue-key`: generate a service key, store its public half, write the key file.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::builder::TypedValueParser;
use rand::rngs::OsRng;

use crate::clock;
use crate::cmd::{Ctx, ScopeArg, check_user_name, parse_expires, parse_origins};
use crate::iprange;
use crate::output::{self, terminal_safe};
use crate::registry::DEFAULT_TOKEN_URI;
use crate::secret::Secret;
use crate::service_key::{self, KeyFile, RSA_ALG};
use crate::store::Key;

/// Issue a service key for a user and write its key file.
///
/// Generates an RSA key pair, keeps only the public half and the key's metadata in the
/// store, and writes the key file (mode 0600) that a client signs grants with. The private
/// key is shown this once: tokenauth cannot recover it. The user is created if absent.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth issue-key --user ci-bot --ip-range 10.0.0.0/8 --out ci-bot.json
  tokenauth issue-key --user deployer --scope write --expires 90d --title 'deploy job'
  tokenauth issue-key --user ci-bot --out - | vault kv put secret/ci-bot key=-")]
pub struct Args {
    /// The user the key acts for (created if absent)
    #[arg(long, value_name = "NAME")]
    pub user: String,

    /// A note saying what the key is for
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub title: String,

    /// Addresses allowed to use the key: IPs or CIDR networks, comma-separated
    /// (e.g. "192.168.1.1, 10.0.0.0/8, 2001:db8::/32") [default: anywhere]
    #[arg(long, value_name = "RANGES")]
    pub ip_range: Option<String>,

    /// The most the key's tokens may do; `write` implies `read`
    #[arg(long, value_enum, default_value_t = ScopeArg::Read)]
    pub scope: ScopeArg,

    /// When the key stops working: a duration from now (90d, 12h) or a date (2027-01-31)
    /// [default: never]
    #[arg(long, value_name = "DURATION|DATE")]
    pub expires: Option<String>,

    /// A browser origin (scheme://host[:port]) whose pages may use the key's tokens from
    /// another site (repeatable) [default: none]
    #[arg(long, value_name = "ORIGIN")]
    pub origin: Vec<String>,

    /// RSA key size
    #[arg(long, default_value_t = 2048, value_parser = clap::builder::PossibleValuesParser::new(["2048", "3072", "4096"]).map(|s| s.parse::<usize>().unwrap_or(2048)))]
    pub bits: usize,

    /// Where to write the key file; `-` prints it to stdout [default: ./<user>-<short key id>.json]
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Print the key's metadata as JSON (not with --out -)
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    check_user_name(&args.user)?;
    let to_stdout = args.out.as_deref() == Some(std::path::Path::new("-"));
    if to_stdout && args.json {
        bail!("--json cannot be combined with --out -, which prints the key file itself");
    }
    let ip_ranges =
        iprange::parse(args.ip_range.as_deref().unwrap_or("")).context("invalid --ip-range")?;
    let now = ctx.now();
    let expires = parse_expires(args.expires.as_deref(), now)?;
    let origins = parse_origins(&args.origin)?;
    if let Some(out) = args.out.as_ref().filter(|_| !to_stdout) {
        if out.exists() {
            bail!(
                "refusing to overwrite {}; remove it or choose another --out",
                out.display()
            );
        }
        let dir = out
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !dir.is_dir() {
            bail!(
                "cannot write key file {}: folder {} does not exist",
                out.display(),
                dir.display()
            );
        }
    }

    let mut store = ctx.store()?;
    let token_uri = store
        .setting("token_uri")?
        .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
    if store.ensure_user(&args.user, &Secret::generate(&mut OsRng), now)? {
        eprintln!("Created user {}.", terminal_safe(&args.user));
    }
    let generated = service_key::generate(args.bits, &mut OsRng)?;
    let key = Key {
        key_id: generated.key_id.clone(),
        client_id: service_key::new_client_id(&mut OsRng),
        user: args.user.clone(),
        title: args.title.clone(),
        alg: RSA_ALG.to_owned(),
        public_key: generated.public_pem,
        ip_ranges,
        origins,
        scope: args.scope.into(),
        issued: now,
        expires,
        revoked: None,
        last_used: None,
    };
    let file = KeyFile {
        key_id: key.key_id.clone(),
        client_id: key.client_id.clone(),
        user_id: key.user.clone(),
        issued: clock::rfc3339(now),
        token_uri,
        private_key: generated.private_pem,
        alg: RSA_ALG.to_owned(),
    };

    if to_stdout {
        store.add_key(&key)?;
        println!("{}", serde_json::to_string_pretty(&file)?);
        eprintln!(
            "Issued key {} for {}. The key file above holds the private key, shown this once.",
            terminal_safe(&key.key_id),
            terminal_safe(&key.user)
        );
        return Ok(());
    }
    let path = args
        .out
        .unwrap_or_else(|| default_file_name(&key.user, &key.key_id));
    // The file first: a key in the store whose private half was never written is useless.
    service_key::write_key_file(&path, &file)?;
    if let Err(e) = store.add_key(&key) {
        let _ = std::fs::remove_file(&path);
        return Err(e.into());
    }
    if args.json {
        output::print_json(&serde_json::json!({
            "key_id": key.key_id,
            "client_id": key.client_id,
            "user": key.user,
            "scope": key.scope,
            "ip_ranges": key.ip_ranges,
            "origins": key.origins,
            "expires": key.expires,
            "file": path,
        }))?;
    }
    eprintln!(
        "Issued key {} for {}; wrote {} (mode 0600).\nIt holds the private key, shown this once: tokenauth keeps only the public half.",
        terminal_safe(&key.key_id),
        terminal_safe(&key.user),
        terminal_safe(&path.to_string_lossy())
    );
    Ok(())
}

fn default_file_name(user: &str, key_id: &str) -> PathBuf {
    let safe: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let short: String = key_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect();
    PathBuf::from(format!("{safe}-{short}.json"))
}
