//! `tokenauth sign-grant`: print a signed RFC 7523 JWT grant.

use std::io::Write;

use rand::rngs::OsRng;

use crate::cmd::{Ctx, GrantArgs};
use crate::grant::{self, GrantRequest};

/// Sign a JWT grant (RFC 7523) with a key file and print it.
///
/// The grant carries iss=client_id, sub=the key's user (or --sub), aud=the token URI, iat,
/// exp and a random jti, signed with RS256. POST it to the token endpoint as
/// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<grant>`, or let
/// `tokenauth get-token` do all of that.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth sign-grant --key ci-bot.json
  TOKENAUTH_KEY=ci-bot.json tokenauth sign-grant --lifetime 60
  tokenauth sign-grant --key \"$CI_BOT_KEY_JSON\"          # the key file's JSON itself
  vault kv get -field=key secret/ci-bot | tokenauth sign-grant --key -
  tokenauth sign-grant --key ci-bot.json --count 1000 --lifetime 3600 > grants.txt")]
pub struct Args {
    #[command(flatten)]
    pub grant: GrantArgs,

    /// Seconds until the grant expires (at most 86400)
    #[arg(long, default_value_t = 300, value_name = "SECONDS",
          value_parser = clap::value_parser!(i64).range(1..=grant::MAX_LIFETIME))]
    pub lifetime: i64,

    /// The audience [default: the key file's token_uri]
    #[arg(long, value_name = "URL")]
    pub aud: Option<String>,

    /// Leave out the jti claim (for servers that reject jti). tokenauth still takes such a
    /// grant only once, by its signature, and `serve --require-jti` refuses it
    #[arg(long, conflicts_with = "count")]
    pub no_jti: bool,

    /// Print this many grants, one per line, each with its own jti (to hand a batch of
    /// single-use grants to a job, or to load-test the token endpoint)
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub count: u32,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let key = args.grant.key_file()?;
    let req = GrantRequest {
        sub: args.grant.sub,
        aud: args.aud,
        lifetime: args.lifetime,
        scope: args.grant.scope,
        no_jti: args.no_jti,
    };
    let signer = grant::Signer::new(&key)?;
    let now = ctx.now();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for _ in 0..args.count {
        writeln!(out, "{}", signer.sign(&req, now, &mut OsRng)?)?;
    }
    out.flush()?;
    Ok(())
}
