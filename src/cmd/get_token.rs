//! `tokenauth get-token`: an access token for a key file or a CI job's ID token, cached
//! between calls.

use std::borrow::Cow;
use std::io::Write;

use anyhow::bail;

use crate::client::{self, Getter, Token};
use crate::cmd::{Ctx, GrantArgs, OidcArgs, TlsArgs};

/// Get an access token with a key file or a CI job's ID token, from the cache when it is still
/// good.
///
/// Signs a grant with the key file, exchanges it at the key file's token_uri and prints the
/// token; with --oidc, exchanges the CI job's OpenID Connect ID token at --token-uri instead,
/// with no key file at all. Tokens are cached per key (or ID token source and job), subject
/// and scope in $XDG_CACHE_HOME/tokenauth/ (files 0600, never holding the private key or the
/// ID token) and reused while they have more than --min-valid seconds left; concurrent calls
/// for the same key make a single token request.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  TOKEN=$(tokenauth get-token --key ci-bot.json)
  curl -H \"$(tokenauth get-token --key ci-bot.json --format header)\" https://api.example.com/
  tokenauth get-token --format env >> \"$GITHUB_ENV\"     # with TOKENAUTH_KEY set
  TOKENAUTH_KEY_BASE64=$(base64 -w0 ci-bot.json) tokenauth get-token
  eval \"$(tokenauth get-token --key ci-bot.json --format env)\"
  TOKEN=$(tokenauth get-token --oidc github --token-uri https://auth.example.com/token)")]
pub struct Args {
    #[command(flatten)]
    pub grant: GrantArgs,

    #[command(flatten)]
    pub oidc: OidcArgs,

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
    /// TOKENAUTH_TOKEN=… lines for eval or $GITHUB_ENV (quoted for the shell when needed)
    Env,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let oidc = args.oidc.oidc()?;
    let mut key = None;
    let credential = args.grant.credential(oidc.as_ref(), &mut key)?;
    let now = ctx.now();
    let getter = Getter {
        credential,
        scope: args.grant.scope.as_deref(),
        use_cache: !args.no_cache,
        min_valid: i64::from(args.min_valid),
        ca_cert: args.tls.ca_cert.as_deref(),
    };
    let token = getter.get(now)?;
    let text = render(args.format, &token, now)?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// What `get-token` prints in `format`. The token was checked when it was fetched or read
/// from the cache; it is checked again here because this text goes into shells, headers and
/// `$GITHUB_ENV`, where one stray character is an injection.
pub fn render(format: Format, token: &Token, now: i64) -> anyhow::Result<String> {
    let secret = token.access_token.expose();
    if let Err(e) = client::check_access_token(secret) {
        bail!("refusing to print the token: {e}");
    }
    Ok(match format {
        Format::Token => format!("{secret}\n"),
        Format::Header => format!("Authorization: Bearer {secret}\n"),
        Format::Env => format!(
            "TOKENAUTH_TOKEN={}\nTOKENAUTH_TOKEN_EXPIRES_AT={}\n",
            env_value(secret)?,
            token.expires_at
        ),
        Format::Json => {
            let v = serde_json::json!({
                "access_token": secret,
                "token_type": token.token_type,
                "expires_in": (token.expires_at - now).max(0),
                "expires_at": token.expires_at,
                "scope": token.scope,
            });
            format!("{}\n", serde_json::to_string_pretty(&v)?)
        }
    })
}

/// A value for a `NAME=value` line that both `eval` and `$GITHUB_ENV` read as one value:
/// no line break (which would start a new variable), quoted for the shell when needed.
fn env_value(value: &str) -> anyhow::Result<Cow<'_, str>> {
    if value.contains(['\n', '\r', '\0']) {
        bail!("refusing to print a value with a line break or NUL as an environment line");
    }
    Ok(sh_quote(value))
}

/// `s` as one word for a POSIX shell: as it is when it holds only characters no shell
/// treats specially (so that a token still suits `$GITHUB_ENV`, which takes quotes
/// literally), else in single quotes with each `'` written `'\''`. `~` is quoted because an
/// assignment expands it.
pub fn sh_quote(s: &str) -> Cow<'_, str> {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./+=@%,:".contains(&b));
    if plain {
        return Cow::Borrowed(s);
    }
    Cow::Owned(format!("'{}'", s.replace('\'', r"'\''")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;

    /// Hostile strings, each a would-be injection if printed as it is.
    const HOSTILE: &[&str] = &[
        "x'; touch /tmp/p; echo '",
        "x'\\''",
        "'",
        "''",
        "\\",
        "a b",
        "$(id)",
        "`id`",
        "${HOME}",
        "$HOME",
        "~root",
        "~",
        "a;b&c|d>e<f",
        "*?[]{}!#",
        "\"dq\"",
        "tab\there",
        "new\nline",
        "GITHUB_TOKEN=evil",
        "é漢🚀",
        "\u{1b}[31m",
        "",
        "-n",
        "--",
    ];

    /// Each hostile string, quoted into a shell assignment, comes back exactly: the proof is
    /// a real `sh`, not a model of one.
    #[test]
    fn sh_quote_round_trips_hostile_strings_through_a_real_shell() {
        for s in HOSTILE {
            let script = format!("v={}; printf '%s' \"$v\"", sh_quote(s));
            let out = std::process::Command::new("sh")
                .args(["-c", &script])
                .output()
                .unwrap();
            assert!(out.status.success(), "{s:?}: {script}");
            assert_eq!(String::from_utf8(out.stdout).unwrap(), *s, "{script}");
        }
    }

    #[test]
    fn sh_quote_leaves_token_characters_alone_and_quotes_the_rest() {
        assert_eq!(sh_quote("eyJh.eyJz-_x+/=="), "eyJh.eyJz-_x+/==");
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
        assert_eq!(sh_quote("~x"), "'~x'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn env_lines_never_hold_a_line_break() {
        for bad in ["a\nb", "a\rb", "a\0b", "\n"] {
            assert!(env_value(bad).is_err(), "{bad:?}");
        }
    }

    fn token(secret: &str) -> Token {
        Token {
            access_token: SecretString::new(secret.to_owned()),
            token_type: "Bearer".into(),
            scope: "read".into(),
            expires_at: 4_600,
        }
    }

    #[test]
    fn every_format_refuses_a_token_that_is_not_a_bearer_token() {
        for bad in [
            "x'; touch /tmp/p; echo '\nGITHUB_TOKEN=evil",
            "a b",
            "",
            "a\nb",
        ] {
            for format in [Format::Token, Format::Json, Format::Header, Format::Env] {
                assert!(render(format, &token(bad), 1_000).is_err(), "{bad:?}");
            }
        }
    }

    #[test]
    fn every_format_prints_a_good_token_on_its_own_lines() {
        let t = token("abc.DEF-_~+/==");
        assert_eq!(
            render(Format::Token, &t, 1_000).unwrap(),
            "abc.DEF-_~+/==\n"
        );
        assert_eq!(
            render(Format::Header, &t, 1_000).unwrap(),
            "Authorization: Bearer abc.DEF-_~+/==\n"
        );
        assert_eq!(
            render(Format::Env, &t, 1_000).unwrap(),
            "TOKENAUTH_TOKEN='abc.DEF-_~+/=='\nTOKENAUTH_TOKEN_EXPIRES_AT=4600\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &t, 1_000).unwrap()).unwrap();
        assert_eq!(json["access_token"], "abc.DEF-_~+/==");
        assert_eq!(json["expires_in"], 3600);
        assert_eq!(json["expires_at"], 4600);
    }
}
