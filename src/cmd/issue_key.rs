//! `tokenauth issue-key`: generate a service key, store its public half, write the key file.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::builder::TypedValueParser;
use rand::rngs::OsRng;

use crate::clock;
use crate::cmd::{Ctx, ScopeArg, check_user_name, parse_expires, parse_origins};
use crate::iprange;
use crate::output::{self, terminal_safe};
use crate::public_key::{Alg, PublicKey};
use crate::registry::DEFAULT_TOKEN_URI;
use crate::secret::Secret;
use crate::service_key::{self, Format, KeyFile};
use crate::store::Key;

/// Issue a service key for a user and write its key file.
///
/// Generates a key pair (RS256 by default, or ES256 or EdDSA), keeps only the public half
/// and the key's metadata in the store, and writes the key file (mode 0600) that a client
/// signs grants with. The private key is shown this once: tokenauth cannot recover it. With
/// --public-key the client keeps its own private key (made with `tokenauth keygen`) and the
/// key file has every field but `private_key`. --format google writes a Google
/// service-account file that google-auth loads unchanged. The user is created if absent.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth issue-key --user ci-bot --ip-range 10.0.0.0/8 --out ci-bot.json
  tokenauth issue-key --user deployer --scope write --expires 90d --title 'deploy job'
  tokenauth issue-key --user ci-bot --alg ES256 --out ci-bot.json
  tokenauth issue-key --user ci-bot --public-key ci-bot.pub --out ci-bot.json
  tokenauth issue-key --user etl --format google --out etl-service-account.json
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

    /// The signing algorithm: RS256 (RSA; what ftw.tokenauth clients sign with), ES256
    /// (P-256) or EdDSA (Ed25519). The key accepts grants of this algorithm only
    /// [default: RS256, or that of --public-key]
    #[arg(long, value_name = "ALG")]
    pub alg: Option<Alg>,

    /// RSA key size
    #[arg(long, default_value_t = 2048, value_parser = clap::builder::PossibleValuesParser::new(["2048", "3072", "4096"]).map(|s| s.parse::<usize>().unwrap_or(2048)))]
    pub bits: usize,

    /// Register this public key instead of generating a pair: a PEM public key, a JWK, or a
    /// JWKS holding one key (`-` reads standard input). The private key stays with the client
    #[arg(long, value_name = "FILE", conflicts_with_all = ["bits", "pkcs8"])]
    pub public_key: Option<PathBuf>,

    /// The key file's layout: tokenauth's, or a Google service-account file
    #[arg(long, value_enum, default_value_t = Format::Tokenauth)]
    pub format: Format,

    /// Write an RSA private key as PKCS#8 (BEGIN PRIVATE KEY), which more libraries read (Node's
    /// jose, Java), rather than PKCS#1 (BEGIN RSA PRIVATE KEY), which ftw.tokenauth clients
    /// read. ES256 and EdDSA keys, and --format google files, are always PKCS#8
    #[arg(long)]
    pub pkcs8: bool,

    /// Where to write the key file; `-` prints it to stdout [default: ./<user>-<short key id>.json]
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Print the key's metadata as JSON (not with --out -)
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    check_user_name(&args.user)?;
    if args.format == Format::Google && args.public_key.is_some() {
        bail!(
            "--format google needs the private key in the file (google-auth reads it there); \
             drop --public-key, or use --format tokenauth"
        );
    }
    if args.format == Format::Google && args.alg.is_some_and(|a| a != Alg::RS256) {
        bail!(
            "--format google keys are RS256: Google's libraries sign service-account grants with RSA"
        );
    }
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
    // The public key (and, unless the client brought its own, the private one) first: a
    // key that cannot be used must not reach the store.
    let (public, private_pem) = match &args.public_key {
        Some(path) => {
            let public = read_public_key(path)?;
            if let Some(alg) = args.alg.filter(|a| *a != public.alg) {
                bail!(
                    "--alg {alg} does not match the public key in {}, which is {}",
                    path.display(),
                    public.alg
                );
            }
            (public, None)
        }
        None => {
            let alg = args.alg.unwrap_or(Alg::RS256);
            // Google's libraries read PKCS#8 only.
            let pkcs8 = args.pkcs8 || args.format == Format::Google;
            let generated = service_key::generate(alg, args.bits, pkcs8, &mut OsRng)?;
            (generated.key, Some(generated.private_pem))
        }
    };
    if let Ok(existing) = store.key(&public.key_id()) {
        bail!(
            "this public key is already key {} of user {}; each key pair is registered once",
            existing.key_id,
            terminal_safe(&existing.user)
        );
    }
    // Only now, when the key is known to be good: a refused key leaves no user behind.
    if store.ensure_user(&args.user, &Secret::generate(&mut OsRng), now)? {
        eprintln!("Created user {}.", terminal_safe(&args.user));
    }
    let client_id = service_key::new_client_id(&mut OsRng);
    let client_email = (args.format == Format::Google).then(|| {
        let issuer = store
            .setting("issuer")
            .ok()
            .flatten()
            .unwrap_or_else(|| crate::registry::default_issuer(&token_uri));
        let host = url::Url::parse(&issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "tokenauth".to_owned());
        format!("{}.{}@{host}", safe_name(&args.user), &client_id[..8])
    });
    let key = Key {
        key_id: public.key_id(),
        client_id,
        user: args.user.clone(),
        title: args.title.clone(),
        alg: public.alg.as_str().to_owned(),
        public_key: public.pem(),
        ip_ranges,
        origins,
        format: args.format.as_str().to_owned(),
        client_email,
        scope: args.scope.into(),
        issued: now,
        expires,
        revoked: None,
        last_used: None,
    };
    let file = KeyFile {
        key_id: key.key_id.clone(),
        client_id: key.client_id.clone(),
        user_id: Some(key.user.clone()),
        issued: clock::rfc3339(now),
        token_uri,
        private_key: private_pem,
        private_key_file: None,
        private_key_from: None,
        alg: public.alg,
        format: args.format,
        name: String::new(),
    };
    let file = file.to_json(key.client_email.as_deref());
    let holds = if args.public_key.is_some() {
        "It holds no private key: sign with yours (get-token --private-key FILE)."
    } else {
        "It holds the private key, shown this once: tokenauth keeps only the public half."
    };

    if to_stdout {
        store.add_key(&key)?;
        println!("{}", serde_json::to_string_pretty(&file)?);
        eprintln!(
            "Issued key {} for {}. The key file is above. {holds}",
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
            "alg": key.alg,
            "format": key.format,
            "client_email": key.client_email,
            "ip_ranges": key.ip_ranges,
            "origins": key.origins,
            "expires": key.expires,
            "file": path,
        }))?;
    }
    eprintln!(
        "Issued {} key {} for {}; wrote {} (mode 0600).\n{holds}",
        key.alg,
        terminal_safe(&key.key_id),
        terminal_safe(&key.user),
        terminal_safe(&path.to_string_lossy())
    );
    Ok(())
}

/// A public key from a file (or standard input for `-`), refused with the reason.
fn read_public_key(path: &std::path::Path) -> anyhow::Result<PublicKey> {
    let text = if path == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin())
            .context("reading the public key from standard input")?
    } else {
        std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the public key {}: {}",
                path.display(),
                e.kind()
            )
        })?
    };
    PublicKey::parse(&text).map_err(|e| anyhow::anyhow!("--public-key {}: {e}", path.display()))
}

/// A user name as it may stand in a file name or an address.
fn safe_name(user: &str) -> String {
    user.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn default_file_name(user: &str, key_id: &str) -> PathBuf {
    let short: String = key_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect();
    PathBuf::from(format!("{}-{short}.json", safe_name(user)))
}
