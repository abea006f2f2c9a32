//! `tokenauth request`: call an API with a bearer token, retrying once with a fresh token
//! when the API says the token is no longer good.

use std::io::{IsTerminal, Read, Write};

use anyhow::{Context, bail};
use reqwest::header::{HeaderName, HeaderValue};

use crate::client::{self, Getter};
use crate::cmd::{Ctx, GrantArgs, OidcArgs, TlsArgs};
use crate::secret::SecretString;
use crate::service_key::{self, KEY_BASE64_VAR};

/// Send an HTTP request with a bearer token from a key file (or a CI job's ID token, with
/// --oidc), or with a token as it is.
///
/// Prints the response body (with -i, the status line and headers first) and exits non-zero
/// on an HTTP error status. The body is printed byte for byte; only on a terminal, a body
/// that does not end in a newline gets one, so that the prompt starts on its own line. With a
/// key file or --oidc, when the API answers 401 with `invalid_token` (for example "Access token
/// expired"), the cached token is dropped, a new one is fetched and the request is sent once
/// more. With --token (a personal access token, or any bearer token), or TOKENAUTH_TOKEN when no
/// key is given, the token is sent as it is, once.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth request --key ci-bot.json https://api.example.com/builds
  tokenauth request --key ci-bot.json -X POST -H 'Content-Type: application/json' -d @build.json https://api.example.com/builds
  tokenauth request --oidc github --token-uri https://auth.example.com/token https://api.example.com/builds
  tokenauth request --token - https://api.example.com/builds < webhook.pat")]
pub struct Args {
    #[command(flatten)]
    pub grant: GrantArgs,

    #[command(flatten)]
    pub oidc: OidcArgs,

    #[command(flatten)]
    pub tls: TlsArgs,

    /// The HTTP method [default: GET, or POST with --data]
    #[arg(short = 'X', long, value_name = "METHOD")]
    pub method: Option<String>,

    /// A request header, 'Name: value' (repeatable)
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// The request body; @FILE reads a file, @- standard input
    #[arg(short = 'd', long, value_name = "DATA|@FILE")]
    pub data: Option<String>,

    /// Print the status line and response headers before the body
    #[arg(short = 'i', long)]
    pub include: bool,

    /// Always fetch a fresh token; neither read nor write the cache
    #[arg(long)]
    pub no_cache: bool,

    /// Send this bearer token instead of one got with a key file: a personal access token
    /// (`tapat_…`) or an access token; `-` reads it from standard input. Without it and
    /// without a key, TOKENAUTH_TOKEN is used
    #[arg(long, value_name = "TOKEN", allow_hyphen_values = true, conflicts_with = "oidc",
          value_parser = |s: &str| Ok::<_, String>(SecretString::new(s.to_owned())))]
    pub token: Option<SecretString>,

    /// The URL to call
    pub url: String,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(&args.url).map_err(|_| {
        if service_key::may_hold_secret(args.url.as_ref()) {
            anyhow::anyhow!(
                "the URL argument ({} characters) is not a URL; it is not shown because it may \
                 hold a secret (a key belongs in --key)",
                args.url.chars().count()
            )
        } else {
            anyhow::anyhow!("'{}' is not a URL", args.url)
        }
    })?;
    let shown_url = redacted(&url);
    let body = match args.data.as_deref() {
        None => None,
        Some("@-") => {
            let mut v = Vec::new();
            std::io::stdin()
                .read_to_end(&mut v)
                .context("reading the body from standard input")?;
            Some(v)
        }
        Some(d) if d.starts_with('@') => Some(
            std::fs::read(&d[1..])
                .with_context(|| format!("cannot read the body file {}", &d[1..]))?,
        ),
        Some(d) => Some(d.as_bytes().to_vec()),
    };
    let method_name = args
        .method
        .clone()
        .unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.to_owned());
    let method = reqwest::Method::from_bytes(method_name.to_ascii_uppercase().as_bytes())
        .map_err(|_| anyhow::anyhow!("'{method_name}' is not an HTTP method"))?;
    let mut headers = reqwest::header::HeaderMap::new();
    // Header values are often credentials: messages name the header, never its value.
    for (i, h) in args.headers.iter().enumerate() {
        let Some((name, value)) = h.split_once(':') else {
            bail!(
                "--header number {} is not 'Name: value' (not shown: it may hold a secret)",
                i + 1
            );
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            anyhow::anyhow!(
                "--header number {} has a bad header name (not shown: it may hold a secret)",
                i + 1
            )
        })?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| {
            anyhow::anyhow!("the value of --header '{name}' is not a valid header value")
        })?;
        headers.append(name, value);
    }
    if body.is_some() && !headers.contains_key(reqwest::header::CONTENT_TYPE) {
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
    }

    let ca_cert = args.tls.ca_cert.as_deref();
    let http = client::http_client(ca_cert)?;
    let send = |token: &str| {
        let mut req = http
            .request(method.clone(), url.clone())
            .headers(headers.clone())
            .bearer_auth(token);
        if let Some(b) = &body {
            req = req.body(b.clone());
        }
        let resp = req
            .send()
            .map_err(|e| client::connect_error(&shown_url, &e, ca_cert.is_some()))?;
        let head = (resp.version(), resp.status(), resp.headers().clone());
        let bytes = resp.bytes().map_err(|e| {
            anyhow::anyhow!(
                "reading the response of {shown_url}: {}",
                client::root_cause(&e)
            )
        })?;
        anyhow::Ok((head, bytes))
    };
    let oidc = args.oidc.oidc()?;
    let resp = match bearer_as_given(&args)? {
        Some(token) => send(token.expose())?,
        None => {
            let mut key = None;
            let credential = args.grant.credential(oidc.as_ref(), &mut key)?;
            let getter = Getter {
                credential,
                scope: args.grant.scope.as_deref(),
                use_cache: !args.no_cache,
                min_valid: 60,
                ca_cert,
            };
            let now = ctx.now();
            let mut resp = send(getter.get(now)?.access_token.expose())?;
            if token_refused(resp.0.1, &resp.0.2, &resp.1) {
                getter.forget()?;
                resp = send(getter.get(now)?.access_token.expose())?;
            }
            resp
        }
    };
    let ((version, status, resp_headers), bytes) = resp;
    let mut out = std::io::stdout().lock();
    if args.include {
        writeln!(out, "{version:?} {status}")?;
        for (name, value) in &resp_headers {
            writeln!(
                out,
                "{}: {}",
                name,
                String::from_utf8_lossy(value.as_bytes())
            )?;
        }
        writeln!(out)?;
    }
    out.write_all(&bytes)?;
    if ends_unterminated(&bytes, std::io::stdout().is_terminal()) {
        writeln!(out)?;
    }
    out.flush()?;
    if status.is_client_error() || status.is_server_error() {
        bail!("{shown_url} answered HTTP {status}");
    }
    Ok(())
}

/// The token to send as it is, when the caller gave one rather than a key: `--token`, or
/// TOKENAUTH_TOKEN when no key is given at all (a key from the environment wins over it, so
/// that `get-token --format env` output lying around does not stop a key from refreshing).
fn bearer_as_given(args: &Args) -> anyhow::Result<Option<SecretString>> {
    let key_given = args.grant.key.is_some()
        || args.oidc.oidc.is_some()
        || std::env::var_os(KEY_BASE64_VAR).is_some();
    let token = match &args.token {
        Some(_) if args.grant.key.is_some() && !args.grant.key_from_env => {
            bail!("--token and --key both given; pass one of them")
        }
        Some(t) => t.clone(),
        None if key_given => return Ok(None),
        None => match std::env::var("TOKENAUTH_TOKEN") {
            Ok(t) if !t.trim().is_empty() => SecretString::new(t),
            _ => return Ok(None),
        },
    };
    if args.grant.sub.is_some() || args.grant.scope.is_some() || args.no_cache {
        bail!("--sub, --scope and --no-cache go with a key file; a token is sent as it is");
    }
    if token.expose() == "-" {
        if args.data.as_deref() == Some("@-") {
            bail!("--token - and --data @- both read standard input; give one of them another way");
        }
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the token from standard input")?;
        return Ok(Some(SecretString::new(text.trim().to_owned())));
    }
    Ok(Some(SecretString::new(token.expose().trim().to_owned())))
}

/// Whether a newline follows the body: on a terminal, when the body does not end in one, so
/// that the prompt starts on a line of its own (as xh does). Piped or redirected, the body is
/// written exactly as it came.
fn ends_unterminated(body: &[u8], terminal: bool) -> bool {
    terminal && !body.is_empty() && !body.ends_with(b"\n")
}

/// A 401 whose challenge (or JSON body) says `invalid_token`: worth a fresh token.
fn token_refused(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> bool {
    let in_header = || {
        headers
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("invalid_token")))
    };
    let in_body = || {
        serde_json::from_slice::<serde_json::Value>(body)
            .is_ok_and(|v| v["error"] == "invalid_token")
    };
    status == reqwest::StatusCode::UNAUTHORIZED && (in_header() || in_body())
}

/// The URL as messages show it: a password in it is replaced by `***`.
fn redacted(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}
