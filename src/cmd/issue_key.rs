//! `tokenauth issue-key`: generate a service key, store its public half, write the key file.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::builder::TypedValueParser;

use crate::admin::{AdminError, IssueKey};
use crate::cmd::{Ctx, ScopeArg, check_user_name, parse_expires, parse_origins};
use crate::iprange;
use crate::output::{self, terminal_safe};
use crate::public_key::{Alg, PublicKey};
use crate::registry::DEFAULT_TOKEN_URI;
use crate::service_key::{self, Format};

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
  tokenauth issue-key --user ci-bot --out - | vault kv put secret/ci-bot key=-
  tokenauth --server https://auth.example.com --key admin.json issue-key --user ci --out ci.json")]
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
    #[arg(long, value_name = "ALG", value_parser = alg_parser(), ignore_case = true)]
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

/// --alg here and in keygen: the algorithms as possible values, which the completion scripts
/// offer (a plain `FromStr` value would complete file names).
pub fn alg_parser() -> impl TypedValueParser<Value = Alg> {
    clap::builder::PossibleValuesParser::new(Alg::ALL.map(Alg::as_str))
        .try_map(|s| s.parse::<Alg>())
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    check_user_name(&args.user)?;
    if args.format == Format::Google && args.public_key.is_some() {
        bail!(
            "--format google needs the private key in the file (google-auth reads it there); \
             drop --public-key, or use --format tokenauth"
        );
    }
    let to_stdout = args.out.as_deref() == Some(std::path::Path::new("-"));
    if to_stdout && args.json {
        bail!("--json cannot be combined with --out -, which prints the key file itself");
    }
    // Checked here too, so that nothing is generated for a request that will be refused.
    iprange::parse(args.ip_range.as_deref().unwrap_or("")).context("invalid --ip-range")?;
    parse_expires(args.expires.as_deref(), ctx.now())?;
    parse_origins(&args.origin)?;
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
    let public_key = match &args.public_key {
        Some(path) => Some(read_public_key(path)?),
        None => None,
    };
    let req = IssueKey {
        user: args.user.clone(),
        title: args.title.clone(),
        ip_range: args.ip_range.clone(),
        scope: Some(args.scope.into()),
        expires: args.expires.clone(),
        origins: args.origin.clone(),
        alg: args.alg,
        // Only what was asked for: a brought public key takes neither.
        bits: (args.public_key.is_none() && args.bits != 2048).then_some(args.bits),
        public_key: public_key.map(|(text, _)| text),
        format: Some(args.format),
        pkcs8: args.pkcs8,
    };
    let mut admin = ctx.admin_creating()?;
    let issued = admin
        .issue_key(&req)
        .map_err(|e| match (&e, &args.public_key) {
            // Name the file the key came from.
            (AdminError::Invalid(m), Some(path))
                if m.starts_with("--public-key") || m.starts_with("--alg") =>
            {
                anyhow::anyhow!(
                    "{}",
                    m.replacen(
                        "--public-key",
                        &format!("--public-key {}", path.display()),
                        1
                    )
                    .replacen(
                        "the public key,",
                        &format!("the public key in {},", path.display()),
                        1
                    )
                )
            }
            _ => anyhow::Error::from(e),
        })?;
    let key = &issued.key.key;
    if issued.user_created {
        eprintln!("Created user {}.", terminal_safe(&key.user));
    }
    let holds = if args.public_key.is_some() {
        "It holds no private key: sign with yours (get-token --private-key FILE)."
    } else {
        "It holds the private key, shown this once: tokenauth keeps only the public half."
    };

    if to_stdout {
        println!("{}", serde_json::to_string_pretty(&issued.key_file)?);
        eprintln!(
            "Issued key {} for {}. The key file is above. {holds}",
            terminal_safe(&key.key_id),
            terminal_safe(&key.user)
        );
        return warn_default_token_uri(ctx, &issued.key_file);
    }
    let path = args
        .out
        .unwrap_or_else(|| default_file_name(&key.user, &key.key_id));
    if let Err(e) = service_key::write_key_file(&path, &issued.key_file) {
        // A key whose private half was never written is useless: take it back.
        let undone = admin.revoke_key(&key.key_id).is_ok();
        return Err(e.context(if undone {
            format!("key {} was revoked again", key.key_id)
        } else {
            format!("key {} is in the store; revoke it", key.key_id)
        }));
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
    warn_default_token_uri(ctx, &issued.key_file)
}

/// A key issued before `init --token-uri` names the default token URI, which reaches only a
/// server on this machine's port 8080: said on stderr, so that `--json` stays as it is.
fn warn_default_token_uri(ctx: &Ctx, key_file: &serde_json::Value) -> anyhow::Result<()> {
    // A server issuing through its admin API warns at its own start instead.
    if ctx.remote() || key_file["token_uri"] != DEFAULT_TOKEN_URI {
        return Ok(());
    }
    if ctx.store()?.setting("token_uri")?.is_none() {
        eprintln!(
            "warning: this store has no token URI, so the key file names the default \
             {DEFAULT_TOKEN_URI}; if clients reach the server elsewhere, run \
             `tokenauth init --token-uri URL` before issuing keys, and issue this one again"
        );
    }
    Ok(())
}

/// A public key from a file (or standard input for `-`): its text, refused with the reason
/// when it does not parse.
fn read_public_key(path: &std::path::Path) -> anyhow::Result<(String, PublicKey)> {
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
    let key = PublicKey::parse(&text)
        .map_err(|e| anyhow::anyhow!("--public-key {}: {e}", path.display()))?;
    Ok((text, key))
}

fn default_file_name(user: &str, key_id: &str) -> PathBuf {
    let short: String = key_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect();
    PathBuf::from(format!(
        "{}-{short}.json",
        crate::admin::local::safe_name(user)
    ))
}
