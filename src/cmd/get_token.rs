//! `tokenauth get-token`: an access token for a key file, cached between calls.

use crate::client::Getter;
use crate::cmd::{Ctx, GrantArgs, TlsArgs};
use crate::output;

/// Get an access token with a key file, from the cache when it is still good.
///
/// Signs a grant with the key file, exchanges it at the key file's token_uri and prints the
/// token. Tokens are cached per key, subject and scope in $XDG_CACHE_HOME/tokenauth/ (files
/// 0600, never holding the private key) and reused while they have more than --min-valid
/// seconds left; concurrent calls for the same key make a single token request.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  TOKEN=$(tokenauth get-token --key ci-bot.json)
  curl -H \"$(tokenauth get-token --key ci-bot.json --format header)\" https://api.example.com/
  tokenauth get-token --format env >> \"$GITHUB_ENV\"     # with TOKENAUTH_KEY set
  TOKENAUTH_KEY_BASE64=$(base64 -w0 ci-bot.json) tokenauth get-token
  eval \"$(tokenauth get-token --key ci-bot.json --format env)\"")]
pub struct Args {
    #[command(flatten)]
    pub grant: GrantArgs,

    #[command(flatten)]
    pub tls: TlsArgs,

    /// What to print
    #[arg(long, value_enum, default_value_t = Format::Token)]
    pub format: Format,

    /// Always ask the server; neither read nor write the cache
    #[arg(long)]
    pub no_cache: bool,

    /// Reuse a cached token only while it has more than this many seconds left
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub min_valid: u32,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// The bare token
    Token,
    /// The token response plus an absolute expires_at
    Json,
    /// An `Authorization: Bearer …` header line
    Header,
    /// TOKENAUTH_TOKEN=… lines for eval or $GITHUB_ENV
    Env,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let key = args.grant.key_file()?;
    let now = ctx.now();
    let getter = Getter {
        key: &key,
        sub: args.grant.sub.as_deref(),
        scope: args.grant.scope.as_deref(),
        use_cache: !args.no_cache,
        min_valid: i64::from(args.min_valid),
        ca_cert: args.tls.ca_cert.as_deref(),
    };
    let token = getter.get(now)?;
    let secret = token.access_token.expose();
    match args.format {
        Format::Token => println!("{secret}"),
        Format::Header => println!("Authorization: Bearer {secret}"),
        Format::Env => {
            println!("TOKENAUTH_TOKEN={secret}");
            println!("TOKENAUTH_TOKEN_EXPIRES_AT={}", token.expires_at);
        }
        Format::Json => output::print_json(&serde_json::json!({
            "access_token": secret,
            "token_type": token.token_type,
            "expires_in": (token.expires_at - now).max(0),
            "expires_at": token.expires_at,
            "scope": token.scope,
        }))?,
    }
    Ok(())
}
