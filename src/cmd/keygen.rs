//! `tokenauth keygen`: make a key pair on the client, for `issue-key --public-key`.

use std::path::PathBuf;

use anyhow::bail;
use rand::rngs::OsRng;

use crate::output;
use crate::public_key::Alg;
use crate::service_key;

/// Make a key pair where the client runs: the private key never leaves this machine.
///
/// Writes the private key (PKCS#8 PEM, mode 0600; never over an existing file) and prints
/// the public key as PEM and as a JWK, for the admin's `tokenauth issue-key --public-key`.
/// The client then signs with `get-token --key KEYFILE --private-key FILE`, or with the
/// key file's `private_key_file` naming it.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth keygen --alg ES256 --out ci-bot.key > ci-bot.pub
  tokenauth keygen --alg EdDSA --out ci-bot.key --json
  tokenauth issue-key --user ci-bot --public-key ci-bot.pub --out ci-bot.json   # the admin")]
pub struct Args {
    /// The algorithm: RS256 (RSA), ES256 (P-256) or EdDSA (Ed25519)
    #[arg(long, default_value = "ES256", value_name = "ALG",
          value_parser = super::issue_key::alg_parser(), ignore_case = true)]
    pub alg: Alg,

    /// RSA key size, with --alg RS256
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u16).range(2048..=8192))]
    pub bits: u16,

    /// Where to write the private key
    #[arg(long, short, value_name = "FILE")]
    pub out: PathBuf,

    /// Print the public key, its key id and JWK as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.out == std::path::Path::new("-") {
        bail!("--out - would print the private key; give a file (it is created with mode 0600)");
    }
    let generated = service_key::generate(args.alg, args.bits.into(), true, &mut OsRng)?;
    service_key::write_private_file(
        &args.out,
        generated.private_pem.expose().as_bytes(),
        "private key",
    )?;
    let key = &generated.key;
    if args.json {
        output::print_json(&serde_json::json!({
            "alg": key.alg,
            "key_id": key.key_id(),
            "public_key": key.pem(),
            "jwk": key.jwk_json(),
            "private_key_file": args.out,
        }))?;
    } else {
        print!("{}", key.pem());
        println!("{}", serde_json::to_string_pretty(&key.jwk_json())?);
    }
    eprintln!(
        "Wrote the {} private key to {} (mode 0600); key id {}. Give the public key above to \
         your tokenauth admin: tokenauth issue-key --user NAME --public-key FILE",
        key.alg,
        crate::output::terminal_safe(&args.out.to_string_lossy()),
        key.key_id()
    );
    Ok(())
}
