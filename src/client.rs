//! The client plane: exchanging a grant, or a CI job's OIDC ID token, for an access token
//! (reqwest), checking what the token endpoint answered before anything prints or keeps it,
//! and the on-disk token cache that lets many CI steps share one token.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use crate::grant::{self, GrantRequest};
use crate::secret::SecretString;
use crate::service_key::KeyFile;

/// A token as the client keeps it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Token {
    pub access_token: SecretString,
    pub token_type: String,
    pub scope: String,
    /// Unix seconds, by the client's clock.
    pub expires_at: i64,
}

impl Token {
    /// Whether a token read back from the cache is one `fetch` could have returned at `now`:
    /// a cache file someone edited must not get into a shell either.
    pub fn check(&self, now: i64) -> Result<(), BadResponse> {
        check_access_token(self.access_token.expose())?;
        check_token_type(&serde_json::Value::String(self.token_type.clone()))?;
        check_scope(&self.scope)?;
        if self.expires_at - now > MAX_EXPIRES_IN {
            return Err(BadResponse::ExpiresIn(format!(
                "is {} s away",
                self.expires_at.saturating_sub(now)
            )));
        }
        Ok(())
    }
}

/// The longest access token accepted: far above a tokenauth JWT (about 400 bytes), within
/// what HTTP servers take in one header line.
pub const MAX_TOKEN_LEN: usize = 8192;
/// The longest lifetime accepted for a token: a year.
pub const MAX_EXPIRES_IN: i64 = 366 * 24 * 3600;
const MAX_SCOPE_LEN: usize = 1024;
/// A token response is a few hundred bytes; a rogue endpoint must not fill memory.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// What was wrong with a token endpoint's 200 answer. Messages never hold the bad value
/// itself: it may be built to act on a terminal or a shell.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadResponse {
    #[error("it is not JSON ({0})")]
    NotJson(String),
    #[error("it is JSON but {0}, not an object")]
    NotObject(&'static str),
    #[error("it is over {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("it has no access_token")]
    NoToken,
    #[error("its access_token is {0}, not a string")]
    TokenNotString(&'static str),
    #[error("its access_token is empty")]
    EmptyToken,
    #[error("its access_token is {0} bytes long, over the {MAX_TOKEN_LEN} accepted")]
    TokenTooLong(usize),
    #[error(
        "its access_token holds {0} at character {1}, which an RFC 6750 bearer token cannot \
         (letters, digits and -._~+/, then = padding only)"
    )]
    TokenChar(String, usize),
    #[error("its token_type is {0}; only Bearer tokens are supported")]
    NotBearer(String),
    #[error("its expires_in {0}; it must be a whole number of seconds from 1 to {MAX_EXPIRES_IN}")]
    ExpiresIn(String),
    #[error(
        "its scope {0}; RFC 6749 scopes are space-separated words of printable ASCII without \" or \\"
    )]
    Scope(String),
}

/// A token response whose every field passed [`parse_token_response`]'s checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`, however the endpoint spelt it.
    pub token_type: String,
    pub expires_in: i64,
    /// Empty when the endpoint named none.
    pub scope: String,
}

/// Reads a token endpoint's 200 answer, refusing anything that could do more than carry a
/// token when printed bare, as a header line, as a shell assignment or in `$GITHUB_ENV`.
/// Fields other than the four checked are ignored.
pub fn parse_token_response(body: &[u8]) -> Result<TokenResponse, BadResponse> {
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(BadResponse::TooLarge);
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| BadResponse::NotJson(json_error(&e)))?;
    let serde_json::Value::Object(map) = value else {
        return Err(BadResponse::NotObject(crate::service_key::json_type(
            &value,
        )));
    };
    let access_token = match map.get("access_token") {
        None => return Err(BadResponse::NoToken),
        Some(serde_json::Value::String(t)) => t.clone(),
        Some(other) => {
            return Err(BadResponse::TokenNotString(crate::service_key::json_type(
                other,
            )));
        }
    };
    check_access_token(&access_token)?;
    if let Some(t) = map.get("token_type") {
        check_token_type(t)?;
    }
    let expires_in = match map.get("expires_in") {
        None => return Err(BadResponse::ExpiresIn("is missing".into())),
        Some(serde_json::Value::Number(n)) => match n.as_i64() {
            Some(s) if (1..=MAX_EXPIRES_IN).contains(&s) => s,
            // A JSON number's text is digits, sign, dot and exponent only: safe to show.
            Some(_) => return Err(BadResponse::ExpiresIn(format!("is {n}"))),
            None if n.is_f64() => {
                return Err(BadResponse::ExpiresIn(format!(
                    "is {n}, not a whole number"
                )));
            }
            None => return Err(BadResponse::ExpiresIn(format!("is {n}"))),
        },
        Some(other) => {
            return Err(BadResponse::ExpiresIn(format!(
                "is {}, not a number",
                crate::service_key::json_type(other)
            )));
        }
    };
    let scope = match map.get("scope") {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(BadResponse::Scope(format!(
                "is {}, not a string",
                crate::service_key::json_type(other)
            )));
        }
    };
    check_scope(&scope)?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in,
        scope,
    })
}

/// RFC 6750 §2.1 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
/// None of these characters means anything to a shell, except `~` at the start of a word.
pub fn check_access_token(token: &str) -> Result<(), BadResponse> {
    if token.is_empty() {
        return Err(BadResponse::EmptyToken);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(BadResponse::TokenTooLong(token.len()));
    }
    let body_len = token.trim_end_matches('=').len();
    for (n, (i, c)) in token.char_indices().enumerate() {
        let ok = if i < body_len {
            c.is_ascii_alphanumeric() || "-._~+/".contains(c)
        } else {
            c == '=' && body_len > 0
        };
        if !ok {
            return Err(BadResponse::TokenChar(describe_char(c), n + 1));
        }
    }
    Ok(())
}

fn check_token_type(value: &serde_json::Value) -> Result<(), BadResponse> {
    match value {
        serde_json::Value::String(t) if t.eq_ignore_ascii_case("bearer") => Ok(()),
        serde_json::Value::String(t)
            if (1..=32).contains(&t.len())
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            Err(BadResponse::NotBearer(format!("'{t}'")))
        }
        serde_json::Value::String(t) => Err(BadResponse::NotBearer(format!(
            "a {}-character string (not shown)",
            t.chars().count()
        ))),
        other => Err(BadResponse::NotBearer(
            crate::service_key::json_type(other).to_owned(),
        )),
    }
}

/// RFC 6749 §3.3: `scope-token *( SP scope-token )`, `scope-token = 1*( %x21 / %x23-5B /
/// %x5D-7E )`. Empty means the endpoint named no scope.
fn check_scope(scope: &str) -> Result<(), BadResponse> {
    if scope.len() > MAX_SCOPE_LEN {
        return Err(BadResponse::Scope(format!(
            "is {} bytes long, over the {MAX_SCOPE_LEN} accepted",
            scope.len()
        )));
    }
    let mut previous = ' ';
    for (i, c) in scope.chars().enumerate() {
        let ok = match c {
            ' ' => previous != ' ',
            '!' | '#'..='[' | ']'..='~' => true,
            _ => false,
        };
        if !ok {
            return Err(BadResponse::Scope(format!(
                "holds {} at character {}",
                describe_char(c),
                i + 1
            )));
        }
        previous = c;
    }
    if scope.ends_with(' ') {
        return Err(BadResponse::Scope("ends with a space".into()));
    }
    Ok(())
}

/// A character as messages show it: printable ASCII quoted (but the quote itself), and every
/// character by its code point, so that nothing in the message acts on a terminal.
fn describe_char(c: char) -> String {
    if c.is_ascii_graphic() && c != '\'' {
        format!("'{c}' (U+{:04X})", u32::from(c))
    } else {
        format!("U+{:04X}", u32::from(c))
    }
}

/// serde_json's error by position only: some of its messages quote the input.
fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Eof => "it ends early",
        Category::Syntax => "syntax error",
        Category::Data => "unexpected data",
        Category::Io => "unreadable",
    };
    format!("{what} at line {}, column {}", e.line(), e.column())
}

#[derive(serde::Deserialize)]
struct ErrorResponse {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// The HTTP client of the client commands. Servers' certificates are verified against the
/// system's roots, plus the CA certificates in `ca_cert` (PEM) when given; there is no way
/// to turn verification off.
pub fn http_client(ca_cert: Option<&Path>) -> anyhow::Result<reqwest::blocking::Client> {
    let mut builder = reqwest::blocking::Client::builder()
        .user_agent(concat!("tokenauth/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30));
    if let Some(path) = ca_cert {
        builder = builder.tls_certs_merge(read_ca(path)?);
    }
    builder.build().context("building the HTTP client")
}

fn read_ca(path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the CA certificate {} (--ca-cert or TOKENAUTH_CA_CERT): {}",
            path.display(),
            e.kind()
        )
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default();
    if certs.is_empty() {
        bail!(
            "the CA certificate {} holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the CA's certificate in PEM",
            path.display()
        );
    }
    Ok(certs)
}

/// A connection error, with the fix when it is a certificate the client does not trust.
pub fn connect_error(what: &str, e: &reqwest::Error, ca_given: bool) -> anyhow::Error {
    let cause = root_cause(e);
    let lower = cause.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") {
        let hint = if ca_given {
            "the server's certificate is not signed by the system's roots nor by --ca-cert"
        } else {
            "if the server uses a private CA, pass its certificate with --ca-cert FILE (or TOKENAUTH_CA_CERT)"
        };
        return anyhow::anyhow!("cannot reach {what}: {cause}; {hint}");
    }
    anyhow::anyhow!("cannot reach {what}: {cause}")
}

/// Signs a grant and exchanges it at the key file's token URI.
pub fn fetch(
    key: &KeyFile,
    sub: Option<&str>,
    scope: Option<&str>,
    now: i64,
    ca_cert: Option<&Path>,
) -> anyhow::Result<Token> {
    let req = GrantRequest {
        sub: sub.map(str::to_owned),
        aud: None,
        lifetime: 60,
        scope: scope.map(str::to_owned),
        no_jti: false,
    };
    let assertion = grant::sign(key, &req, now, &mut rand::rngs::OsRng)?;
    let mut form = vec![
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", &assertion),
    ];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    let http = http_client(ca_cert)?;
    exchange(
        &http,
        &key.token_uri,
        &form,
        "the grant",
        now,
        ca_cert.is_some(),
    )
}

/// POSTs a token request and reads the answer: the token, or the endpoint's refusal of
/// `what` (the grant, the ID token) as an error.
fn exchange(
    http: &reqwest::blocking::Client,
    uri: &str,
    form: &[(&str, &str)],
    what: &str,
    now: i64,
    ca_given: bool,
) -> anyhow::Result<Token> {
    let resp = http
        .post(uri)
        .form(form)
        .send()
        .map_err(|e| connect_error(&format!("the token endpoint {uri}"), &e, ca_given))?;
    let status = resp.status();
    let mut body = Vec::new();
    resp.take(MAX_RESPONSE_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| anyhow::anyhow!("reading the answer of {uri}: {}", root_cause(&e)))?;
    if !status.is_success() {
        return Err(match serde_json::from_slice::<ErrorResponse>(&body) {
            Ok(e) => anyhow::anyhow!(
                "{uri} refused {what}: {}: {}",
                shortened(&e.error),
                shortened(&e.error_description)
            ),
            Err(_) => anyhow::anyhow!(
                "{uri} answered HTTP {status} without an OAuth error; is it a tokenauth server?"
            ),
        });
    }
    let t = parse_token_response(&body).map_err(|e| {
        anyhow::anyhow!("the token endpoint {uri} answered with a bad token response: {e}")
    })?;
    Ok(Token {
        access_token: SecretString::new(t.access_token),
        token_type: t.token_type,
        scope: t.scope,
        expires_at: now + t.expires_in,
    })
}

/// The variable GitLab CI sets from the `id_tokens:` entry in docs/ci.md.
pub const GITLAB_ID_TOKEN_VAR: &str = "TOKENAUTH_ID_TOKEN";
const GITHUB_URL_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
const GITHUB_TOKEN_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";
/// The longest ID token accepted: GitHub's are about 1.5 KB, and the token endpoint must
/// not be sent whatever a file or a rogue service holds.
pub const MAX_ID_TOKEN_LEN: usize = 16 * 1024;

/// Where `--oidc` takes the CI job's ID token from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OidcSource {
    /// Asked of GitHub Actions with ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN.
    Github,
    /// GitLab CI's `id_tokens:` variable TOKENAUTH_ID_TOKEN.
    Gitlab,
    /// A file, read afresh each time: the platform rotates it (Kubernetes projected service
    /// account tokens, SPIFFE JWT-SVIDs).
    File(PathBuf),
    Env(String),
}

impl std::str::FromStr for OidcSource {
    type Err = String;

    fn from_str(s: &str) -> Result<OidcSource, String> {
        match s {
            "github" => return Ok(OidcSource::Github),
            "gitlab" => return Ok(OidcSource::Gitlab),
            _ => {}
        }
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err("file: needs the token file's path, e.g. \
                            file:/var/run/secrets/tokens/tokenauth-token"
                    .into());
            }
            return Ok(OidcSource::File(path.into()));
        }
        if let Some(var) = s.strip_prefix("env:") {
            if var.is_empty() || var.contains(['=', '\0']) {
                return Err("env: needs a variable name, e.g. env:ID_TOKEN".into());
            }
            return Ok(OidcSource::Env(var.to_owned()));
        }
        Err("the ID token source is github, gitlab, file:PATH or env:VAR".into())
    }
}

impl std::fmt::Display for OidcSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OidcSource::Github => f.write_str("github"),
            OidcSource::Gitlab => f.write_str("gitlab"),
            OidcSource::File(p) => write!(f, "file:{}", p.display()),
            OidcSource::Env(v) => write!(f, "env:{v}"),
        }
    }
}

/// An access token got with a CI job's ID token (`--oidc`) instead of a key file.
#[derive(Debug, Clone)]
pub struct Oidc {
    pub source: OidcSource,
    pub token_uri: String,
    /// The audience asked of GitHub; None: the server's issuer.
    pub audience: Option<String>,
    /// Which of the server's trusts, when several of the issuer's would match.
    pub trust: Option<String>,
}

/// What identifies the running job: GitHub's credential to ask for ID tokens, or the ID
/// token the platform gave it.
enum Job {
    Github {
        url: url::Url,
        request_token: SecretString,
    },
    IdToken(SecretString),
}

impl Job {
    /// A digest that names the job in cache entries without holding its secret: a new job
    /// (a new ID token, or a new request token on a reused self-hosted runner) must never be
    /// served the token another job got.
    fn digest(&self) -> String {
        let mut h = Sha256::new();
        match self {
            Job::Github { url, request_token } => {
                h.update(url.as_str().as_bytes());
                h.update([0]);
                h.update(request_token.expose().as_bytes());
            }
            Job::IdToken(t) => h.update(t.expose().as_bytes()),
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl Oidc {
    /// The audience asked of GitHub: --audience, else the server's issuer (what a trust's
    /// audience defaults to).
    pub fn audience(&self) -> String {
        self.audience
            .clone()
            .unwrap_or_else(|| crate::registry::default_issuer(&self.token_uri))
    }

    fn job(&self) -> anyhow::Result<Job> {
        let id_token = match &self.source {
            OidcSource::Github => return github_job(),
            OidcSource::Gitlab => match std::env::var(GITLAB_ID_TOKEN_VAR) {
                Ok(t) if !t.trim().is_empty() => t,
                _ => bail!(
                    "--oidc gitlab reads the job's ID token from {GITLAB_ID_TOKEN_VAR}, which \
                     is not set; declare it in the job in .gitlab-ci.yml: `id_tokens: \
                     {{{GITLAB_ID_TOKEN_VAR}: {{aud: {}}}}}`",
                    self.audience()
                ),
            },
            OidcSource::Env(var) => match std::env::var_os(var) {
                Some(t) if !t.to_string_lossy().trim().is_empty() => {
                    t.into_string().map_err(|_| {
                        anyhow::anyhow!("--oidc env:{var}: {var} is not UTF-8, so not a JWT")
                    })?
                }
                _ => bail!("--oidc env:{var}: {var} is not set or empty; set it to the ID token"),
            },
            OidcSource::File(path) => read_id_token_file(path)?,
        };
        let id_token = id_token.trim();
        check_id_token(id_token).map_err(|e| {
            anyhow::anyhow!("the ID token from --oidc {} is not a JWT: {e}", self.source)
        })?;
        Ok(Job::IdToken(SecretString::new(id_token.to_owned())))
    }

    /// The cache entry's name parts for a token got with `job`.
    fn cache_parts(&self, job: &Job, scope: &str) -> Vec<String> {
        vec![
            "oidc".to_owned(),
            self.token_uri.clone(),
            self.source.to_string(),
            self.audience(),
            self.trust.clone().unwrap_or_default(),
            job.digest(),
            scope.to_owned(),
        ]
    }

    /// Exchanges the job's ID token (asked of GitHub first for `github`) at the token URI.
    fn fetch(
        &self,
        job: &Job,
        scope: Option<&str>,
        now: i64,
        ca_cert: Option<&Path>,
    ) -> anyhow::Result<Token> {
        let http = http_client(ca_cert)?;
        let asked;
        let id_token = match job {
            Job::IdToken(t) => t,
            Job::Github { url, request_token } => {
                asked = github_id_token(&http, url, request_token, &self.audience(), ca_cert)?;
                &asked
            }
        };
        let mut form = vec![
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", id_token.expose()),
        ];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        if let Some(t) = &self.trust {
            form.push(("client_id", t));
        }
        let what = format!("the ID token from --oidc {}", self.source);
        exchange(&http, &self.token_uri, &form, &what, now, ca_cert.is_some())
    }
}

fn github_job() -> anyhow::Result<Job> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let (Some(url), Some(request_token)) = (var(GITHUB_URL_VAR), var(GITHUB_TOKEN_VAR)) else {
        bail!(
            "--oidc github needs {GITHUB_URL_VAR} and {GITHUB_TOKEN_VAR}, which GitHub Actions \
             sets only inside a job whose workflow grants `permissions: id-token: write` (add \
             it to the workflow or the job; an explicit permissions block also needs \
             `contents: read` for actions/checkout)"
        );
    };
    // The URL carries GitHub's job identifiers: named by its origin only.
    let url = url::Url::parse(url.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            anyhow::anyhow!("{GITHUB_URL_VAR} is not an http(s) URL; is it GitHub Actions' own?")
        })?;
    Ok(Job::Github {
        url,
        request_token: SecretString::new(request_token.trim().to_owned()),
    })
}

/// Asks GitHub Actions' ID token service for an ID token for `audience`. Neither the request
/// token nor the answer's body gets into an error.
fn github_id_token(
    http: &reqwest::blocking::Client,
    url: &url::Url,
    request_token: &SecretString,
    audience: &str,
    ca_cert: Option<&Path>,
) -> anyhow::Result<SecretString> {
    let origin = url.origin().ascii_serialization();
    let service = format!("GitHub's ID token service {origin}");
    let mut url = url.clone();
    url.query_pairs_mut().append_pair("audience", audience);
    let resp = http
        .get(url)
        .header(
            reqwest::header::AUTHORIZATION,
            format!("bearer {}", request_token.expose()),
        )
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .map_err(|e| connect_error(&service, &e, ca_cert.is_some()))?;
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        bail!(
            "{service} refused {GITHUB_TOKEN_VAR} (HTTP {status}): it is good only in its own \
             job while the job runs; leave it and {GITHUB_URL_VAR} as GitHub Actions sets them"
        );
    }
    if !status.is_success() {
        bail!("{service} answered HTTP {status}; run the job again");
    }
    let mut body = Vec::new();
    resp.take(MAX_RESPONSE_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| anyhow::anyhow!("reading the answer of {service}: {}", root_cause(&e)))?;
    let missing = |why: &str| anyhow::anyhow!("{service} answered without an ID token: {why}");
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(missing(&format!(
            "the answer is over {MAX_RESPONSE_BYTES} bytes"
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| missing(&format!("the answer is not JSON ({})", json_error(&e))))?;
    let id_token = match value.get("value") {
        Some(serde_json::Value::String(t)) => t.clone(),
        Some(other) => {
            return Err(missing(&format!(
                "its value is {}, not a string",
                crate::service_key::json_type(other)
            )));
        }
        None => return Err(missing("the answer has no value")),
    };
    check_id_token(&id_token)
        .map_err(|e| anyhow::anyhow!("the ID token {service} answered is not a JWT: {e}"))?;
    Ok(SecretString::new(id_token))
}

/// Reads an ID token file, at most [`MAX_ID_TOKEN_LEN`] bytes of it (plus room for
/// whitespace) so that a wrong path (a log, a device) cannot fill memory.
fn read_id_token_file(path: &Path) -> anyhow::Result<String> {
    let shown = path.display();
    let file = File::open(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the ID token file {shown} (--oidc file:{shown}): {}",
            e.kind()
        )
    })?;
    let mut bytes = Vec::new();
    file.take(2 * MAX_ID_TOKEN_LEN as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot read the ID token file {shown}: {}", e.kind()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("the ID token file {shown} is not text, so not a JWT"))?;
    if text.trim().is_empty() {
        bail!("the ID token file {shown} is empty; is the token mounted yet?");
    }
    Ok(text)
}

/// Whether `token` has a JWT's shape: three non-empty base64url parts, at most
/// [`MAX_ID_TOKEN_LEN`] bytes. What is wrong is described, never shown.
pub fn check_id_token(token: &str) -> Result<(), String> {
    if token.len() > MAX_ID_TOKEN_LEN {
        return Err(format!(
            "it is {} bytes long, over the {MAX_ID_TOKEN_LEN} accepted",
            token.len()
        ));
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        let n = parts.len();
        let plural = if n == 1 { "" } else { "s" };
        return Err(format!(
            "it is {n} dot-separated part{plural}, not 3 (header.payload.signature)"
        ));
    }
    for (part, name) in parts.iter().zip(["header", "payload", "signature"]) {
        if part.is_empty() {
            return Err(format!("its {name} is empty"));
        }
        let bad = part
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'));
        if let Some((i, c)) = bad {
            return Err(format!(
                "its {name} holds {} at character {}, outside base64url",
                describe_char(c),
                i + 1
            ));
        }
    }
    Ok(())
}

/// An endpoint's error text, cut to a length that fits an error line.
fn shortened(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}… ({} characters)", &text[..i], text.chars().count()),
        None => text.to_owned(),
    }
}

/// The innermost error's message: reqwest's own repeats the URL, which may carry a password.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The token cache: one file per (token URI, key, subject, scope), or per (token URI, ID
/// token source, audience, trust, job, scope), under `$XDG_CACHE_HOME/tokenauth/`, each
/// 0600, with a lock file so that concurrent callers make one token request between them.
/// ID tokens are never stored: an entry's name holds only a digest of the job's.
///
/// A cache someone else could write would let them hand this user's CI any token, or hang it
/// on a lock: the folder must be this user's and writable by no one else, its files this
/// user's and private, and none of them a symbolic link (opened with `O_NOFOLLOW`, checked
/// on the open file). Otherwise the command fails naming the path and the fix; it never
/// follows the link or falls back silently.
pub struct Cache {
    dir: PathBuf,
}

/// What a cache path is, for messages.
#[derive(Clone, Copy)]
enum Kind {
    Folder,
    Entry,
    Lock,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Folder => "the token cache",
            Kind::Entry => "the token cache entry",
            Kind::Lock => "the token cache lock",
        }
    }
}

/// `path` as messages show it.
fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// The error for a failed open of a cache path.
fn open_error(kind: Kind, path: &Path, e: Errno) -> anyhow::Error {
    let p = shown(path);
    let what = kind.name();
    match e {
        Errno::LOOP => anyhow::anyhow!(
            "{what} {p} is a symbolic link; tokenauth does not follow links in its cache \
             (someone may have planted it): remove the link (rm {p}) or pass --no-cache"
        ),
        Errno::NOTDIR => {
            anyhow::anyhow!("{what} {p} is not a folder: remove it (rm {p}) or pass --no-cache")
        }
        _ => anyhow::anyhow!(
            "cannot open {what} {p}: {}; fix its permissions or pass --no-cache",
            std::io::Error::from(e)
        ),
    }
}

/// Refuses a cache path this user does not own or others may change: `meta` is the opened
/// file's (fstat), so a path swapped after the open cannot pass for it.
fn check_trusted(kind: Kind, path: &Path, meta: &std::fs::Metadata) -> anyhow::Result<()> {
    let p = shown(path);
    let what = kind.name();
    let right_type = match kind {
        Kind::Folder => meta.is_dir(),
        Kind::Entry | Kind::Lock => meta.is_file(),
    };
    if !right_type {
        bail!(
            "{what} {p} is not a {}: remove it (rm -r {p}) or pass --no-cache",
            match kind {
                Kind::Folder => "folder",
                Kind::Entry | Kind::Lock => "regular file",
            }
        );
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        let fix = match kind {
            Kind::Folder => "set XDG_CACHE_HOME to a folder of your own".to_owned(),
            Kind::Entry | Kind::Lock => format!("remove it (rm {p})"),
        };
        bail!(
            "{what} {p} belongs to another user (uid {}, not {me}); tokenauth does not trust \
             it: {fix}, or pass --no-cache",
            meta.uid()
        );
    }
    let mode = meta.mode() & 0o777;
    match kind {
        Kind::Folder if mode & 0o022 != 0 => bail!(
            "{what} {p} is writable by group or others (mode {mode:04o}), who could plant \
             tokens in it: make it private (chmod 700 {p}) or pass --no-cache"
        ),
        // Whoever can open a lock can hold it; whoever can read an entry has the token.
        Kind::Entry | Kind::Lock if mode & 0o077 != 0 => bail!(
            "{what} {p} is open to group or others (mode {mode:04o}); tokenauth makes its \
             cache files 0600 and does not trust this one: remove it (rm {p}) or pass --no-cache"
        ),
        _ => Ok(()),
    }
}

/// Opens a cache file without following a link or blocking on a FIFO, and checks it.
fn open_file(kind: Kind, path: &Path, flags: OFlags) -> anyhow::Result<Option<File>> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let file = match rustix::fs::open(path, flags, Mode::from_raw_mode(0o600)) {
        Ok(fd) => File::from(fd),
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(open_error(kind, path, e)),
    };
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read the metadata of {}", shown(path)))?;
    check_trusted(kind, path, &meta)?;
    Ok(Some(file))
}

impl Cache {
    pub fn open() -> anyhow::Result<Cache> {
        let dir = dirs::cache_dir()
            .context(
                "cannot find a cache directory (set XDG_CACHE_HOME or HOME, or pass --no-cache)",
            )?
            .join("tokenauth");
        Cache::open_at(dir)
    }

    /// The cache in `dir`, created 0700 when missing, refused when it is not trusted.
    pub fn open_at(dir: PathBuf) -> anyhow::Result<Cache> {
        let open = || {
            rustix::fs::open(
                &dir,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
        };
        let fd = match open() {
            Err(Errno::NOENT) => {
                let created = std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir);
                // Another process may have made it meanwhile; the open below checks it.
                if let Err(e) = created
                    && e.kind() != std::io::ErrorKind::AlreadyExists
                {
                    return Err(anyhow::anyhow!(
                        "cannot create the token cache {}: {e}; pass --no-cache to do without",
                        shown(&dir)
                    ));
                }
                open()
            }
            other => other,
        }
        .map_err(|e| {
            // O_DIRECTORY meets a link before O_NOFOLLOW does: ENOTDIR, not ELOOP. Either
            // way nothing was followed; this only picks the message.
            let link = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_symlink());
            open_error(Kind::Folder, &dir, if link { Errno::LOOP } else { e })
        })?;
        let meta = File::from(fd)
            .metadata()
            .with_context(|| format!("cannot read the metadata of {}", shown(&dir)))?;
        check_trusted(Kind::Folder, &dir, &meta)?;
        Ok(Cache { dir })
    }

    /// The entry for a token that `parts` (who asks, where, for what) name.
    fn entry(&self, parts: &[&str]) -> PathBuf {
        let mut h = Sha256::new();
        for part in parts {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let name: String = h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.dir.join(name)
    }

    /// A cached token with more than `min_valid` seconds left, if any. A missing, torn or
    /// corrupt file is simply no token, and so is one holding a token `fetch` would have
    /// refused (it is replaced); a file that is not to be trusted is an error.
    fn read(path: &Path, now: i64, min_valid: i64) -> anyhow::Result<Option<Token>> {
        let Some(file) = open_file(Kind::Entry, path, OFlags::RDONLY)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        if file
            .take(MAX_RESPONSE_BYTES as u64)
            .read_to_end(&mut bytes)
            .is_err()
        {
            return Ok(None);
        }
        let Ok(t) = serde_json::from_slice::<Token>(&bytes) else {
            return Ok(None);
        };
        Ok((t.check(now).is_ok() && t.expires_at - now > min_valid).then_some(t))
    }

    fn write(path: &Path, token: &Token) -> anyhow::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        // A new file (O_EXCL, 0600) renamed over the entry: a link there is replaced, never
        // followed.
        let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        tmp.write_all(&serde_json::to_vec(token)?)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// The cached token if still good for `min_valid` seconds, else a fresh one from `fetch`
    /// (stored for the next caller). Returns the token and whether it came from the cache.
    pub fn get(
        &self,
        parts: &[&str],
        now: i64,
        min_valid: i64,
        fetch: impl FnOnce() -> anyhow::Result<Token>,
    ) -> anyhow::Result<(Token, bool)> {
        let path = self.entry(parts);
        // The fast path takes no lock: files are replaced atomically, never written in place.
        if let Some(t) = Self::read(&path, now, min_valid)? {
            return Ok((t, true));
        }
        let lock_path = path.with_extension("lock");
        let lock = open_file(Kind::Lock, &lock_path, OFlags::WRONLY | OFlags::CREATE)?
            .with_context(|| format!("cannot create the cache lock {}", shown(&lock_path)))?;
        lock.lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        // Whoever held the lock may have fetched a token meanwhile.
        if let Some(t) = Self::read(&path, now, min_valid)? {
            return Ok((t, true));
        }
        let token = fetch()?;
        if let Err(e) = Self::write(&path, &token) {
            eprintln!(
                "tokenauth: warning: could not cache the token in {}: {e:#}",
                crate::output::terminal_safe(&self.dir.to_string_lossy())
            );
        }
        Ok((token, false))
    }

    /// Forgets a cached token (after a resource server refused it).
    pub fn drop_token(&self, parts: &[&str]) {
        // unlink removes a link itself, never its target.
        let _ = std::fs::remove_file(self.entry(parts));
    }
}

/// What a token is got with.
pub enum Credential<'a> {
    /// A key file, acting as its own user or as `sub`.
    Key {
        key: &'a KeyFile,
        sub: Option<&'a str>,
    },
    /// A CI job's ID token.
    Oidc(&'a Oidc),
}

/// Gets a token with a credential: from the cache when allowed and fresh enough, else from
/// the token endpoint.
pub struct Getter<'a> {
    pub credential: Credential<'a>,
    pub scope: Option<&'a str>,
    pub use_cache: bool,
    pub min_valid: i64,
    /// Trusted besides the system's roots (--ca-cert).
    pub ca_cert: Option<&'a Path>,
}

impl Getter<'_> {
    pub fn get(&self, now: i64) -> anyhow::Result<Token> {
        let scope = self.scope.unwrap_or("");
        match self.credential {
            Credential::Key { key, sub } => self.cached(&key_parts(key, sub, scope), now, || {
                fetch(key, sub, self.scope, now, self.ca_cert)
            }),
            Credential::Oidc(oidc) => {
                let job = oidc.job()?;
                self.cached(&oidc.cache_parts(&job, scope), now, || {
                    oidc.fetch(&job, self.scope, now, self.ca_cert)
                })
            }
        }
    }

    fn cached(
        &self,
        parts: &[String],
        now: i64,
        fetch: impl FnOnce() -> anyhow::Result<Token>,
    ) -> anyhow::Result<Token> {
        if !self.use_cache {
            return fetch();
        }
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        Ok(Cache::open()?.get(&parts, now, self.min_valid, fetch)?.0)
    }

    pub fn forget(&self) -> anyhow::Result<()> {
        if !self.use_cache {
            return Ok(());
        }
        let scope = self.scope.unwrap_or("");
        let parts = match self.credential {
            Credential::Key { key, sub } => key_parts(key, sub, scope),
            Credential::Oidc(oidc) => oidc.cache_parts(&oidc.job()?, scope),
        };
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        Cache::open()?.drop_token(&parts);
        Ok(())
    }
}

/// A key file's cache entry name parts: the token URI, the key, the subject and the scope.
fn key_parts(key: &KeyFile, sub: Option<&str>, scope: &str) -> Vec<String> {
    let subject = sub.or(key.user_id.as_deref()).unwrap_or("");
    [key.token_uri.as_str(), &key.key_id, subject, scope]
        .map(str::to_owned)
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(token: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": "read",
        }))
        .unwrap()
    }

    fn with(field: &str, value: serde_json::Value) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(&answer("abc".into())).unwrap();
        v[field] = value;
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn a_good_answer_is_read_whatever_the_case_of_bearer() {
        let mut v: serde_json::Value =
            serde_json::from_slice(&answer("eyJ0.eyJz-_~+/x==".into())).unwrap();
        v["token_type"] = "bEaReR".into();
        v["refresh_token"] = "ignored".into();
        let t = parse_token_response(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(
            t,
            TokenResponse {
                access_token: "eyJ0.eyJz-_~+/x==".into(),
                token_type: "Bearer".into(),
                expires_in: 3600,
                scope: "read".into(),
            }
        );
        // token_type and scope may be left out.
        let t = parse_token_response(br#"{"access_token":"a","expires_in":1}"#).unwrap();
        assert_eq!((t.token_type.as_str(), t.scope.as_str()), ("Bearer", ""));
    }

    #[test]
    fn tokens_outside_b64token_are_refused_naming_the_character_not_showing_it() {
        let cases: &[(&str, &str)] = &[
            ("x'; touch /tmp/p; echo '", "holds U+0027 at character 2"),
            ("a;b", "';' (U+003B) at character 2"),
            ("a\nGITHUB_TOKEN=evil", "U+000A at character 2"),
            ("a\rb", "U+000D at character 2"),
            ("a b", "U+0020 at character 2"),
            ("a\0b", "U+0000 at character 2"),
            ("abé", "U+00E9 at character 3"),
            ("a\u{202E}b", "U+202E at character 2"),
            ("a=b", "'=' (U+003D) at character 2"),
            ("=", "'=' (U+003D) at character 1"),
            ("$(id)", "'$' (U+0024) at character 1"),
        ];
        for (token, want) in cases {
            let err = parse_token_response(&answer((*token).into()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{token:?}: {err}");
            assert!(
                token.len() < 4 || !err.contains(token),
                "{token:?} echoed: {err}"
            );
            assert!(!err.contains(['\n', '\r', '\0']), "{err:?}");
        }
        assert_eq!(
            parse_token_response(&answer("".into())),
            Err(BadResponse::EmptyToken)
        );
        assert_eq!(
            parse_token_response(&answer("a".repeat(MAX_TOKEN_LEN + 1).into())),
            Err(BadResponse::TokenTooLong(MAX_TOKEN_LEN + 1))
        );
        assert!(parse_token_response(&answer("a".repeat(MAX_TOKEN_LEN).into())).is_ok());
        assert_eq!(
            parse_token_response(&answer(42.into())),
            Err(BadResponse::TokenNotString("a number"))
        );
        assert_eq!(
            parse_token_response(br#"{"expires_in":1}"#),
            Err(BadResponse::NoToken)
        );
    }

    #[test]
    fn expires_in_must_be_a_whole_number_of_seconds_up_to_a_year() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            ((-1).into(), "is -1;"),
            (0.into(), "is 0;"),
            ("3600".into(), "is a string, not a number"),
            (serde_json::json!(1e30), "is 1e+30, not a whole number"),
            (serde_json::json!(3600.5), "is 3600.5, not a whole number"),
            ((MAX_EXPIRES_IN + 1).into(), "is 31622401;"),
            (u64::MAX.into(), "is 18446744073709551615"),
            (serde_json::Value::Null, "is null, not a number"),
        ];
        for (value, want) in cases {
            let err = parse_token_response(&with("expires_in", value.clone()))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("its expires_in "), "{value}: {err}");
            assert!(err.contains(want), "{value}: {err}");
        }
        let mut v: serde_json::Value = serde_json::from_slice(&answer("a".into())).unwrap();
        v.as_object_mut().unwrap().remove("expires_in");
        assert_eq!(
            parse_token_response(&serde_json::to_vec(&v).unwrap()),
            Err(BadResponse::ExpiresIn("is missing".into()))
        );
        assert!(parse_token_response(&with("expires_in", MAX_EXPIRES_IN.into())).is_ok());
    }

    #[test]
    fn other_token_types_and_bad_scopes_are_refused_without_echoing_them() {
        assert_eq!(
            parse_token_response(&with("token_type", "mac".into())),
            Err(BadResponse::NotBearer("'mac'".into()))
        );
        let err = parse_token_response(&with("token_type", "Bearer\nX=1".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("a 10-character string (not shown)"), "{err}");
        for (scope, want) in [
            ("read\nX=1", "holds U+000A at character 5"),
            ("read  write", "holds U+0020 at character 6"),
            (" read", "holds U+0020 at character 1"),
            ("read ", "ends with a space"),
            ("a\"b", "holds '\"' (U+0022) at character 2"),
            ("a\\b", "holds '\\' (U+005C) at character 2"),
            ("lés", "holds U+00E9 at character 2"),
        ] {
            let err = parse_token_response(&with("scope", scope.into()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{scope:?}: {err}");
        }
        assert!(parse_token_response(&with("scope", "read write:x urn:a/b".into())).is_ok());
        assert!(parse_token_response(&with("scope", 7.into())).is_err());
    }

    #[test]
    fn answers_that_are_not_a_json_object_are_refused() {
        for body in [
            &b"<html>"[..],
            b"",
            b"{",
            b"\xff\xfe",
            b"{\"access_token\":\"a\xff\"}",
        ] {
            assert!(
                matches!(parse_token_response(body), Err(BadResponse::NotJson(_))),
                "{body:?}"
            );
        }
        for (body, kind) in [
            (&b"[]"[..], "an array"),
            (b"\"tok\"", "a string"),
            (b"null", "null"),
            (b"42", "a number"),
        ] {
            assert_eq!(
                parse_token_response(body),
                Err(BadResponse::NotObject(kind))
            );
        }
        let big = format!(
            r#"{{"access_token":"a","expires_in":1,"x":"{}"}}"#,
            "a".repeat(MAX_RESPONSE_BYTES)
        );
        assert_eq!(
            parse_token_response(big.as_bytes()),
            Err(BadResponse::TooLarge)
        );
    }

    #[test]
    fn id_tokens_must_have_a_jwts_shape_and_are_described_not_shown() {
        assert_eq!(check_id_token("eyJh.eyJz.c2ln-_"), Ok(()));
        let cases: &[(&str, &str)] = &[
            ("", "it is 1 dot-separated part,"),
            ("secret-value", "it is 1 dot-separated part,"),
            ("a.b.c.d", "it is 4 dot-separated parts"),
            ("a..c", "its payload is empty"),
            ("a.b.", "its signature is empty"),
            (
                "a.b=.c",
                "its payload holds '=' (U+003D) at character 2, outside base64url",
            ),
            ("a.b.c\nX=1", "its signature holds U+000A at character 2"),
            ("Bearer a.b.c", "its header holds U+0020 at character 7"),
        ];
        for (token, want) in cases {
            let err = check_id_token(token).unwrap_err();
            assert!(err.starts_with(want), "{token:?}: {err}");
        }
        let big = format!("a.{}.c", "b".repeat(MAX_ID_TOKEN_LEN));
        assert!(
            check_id_token(&big)
                .unwrap_err()
                .contains("over the 16384 accepted")
        );
    }

    #[test]
    fn oidc_sources_parse_and_print_back() {
        for text in [
            "github",
            "gitlab",
            "file:/var/run/secrets/tokens/t",
            "env:ID_TOKEN",
        ] {
            let source: OidcSource = text.parse().unwrap();
            assert_eq!(source.to_string(), text);
        }
        for bad in [
            "",
            "GitHub ",
            "file:",
            "env:",
            "env:A=B",
            "k8s",
            "eyJh.eyJz.c2ln",
        ] {
            assert!(bad.parse::<OidcSource>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_cached_token_is_checked_like_a_fresh_one() {
        let t = |secret: &str, expires_at: i64| Token {
            access_token: SecretString::new(secret.to_owned()),
            token_type: "Bearer".into(),
            scope: "read".into(),
            expires_at,
        };
        assert!(t("abc", 1_000 + 3600).check(1_000).is_ok());
        assert!(t("a'b", 1_000 + 3600).check(1_000).is_err());
        assert!(t("abc", 1_000 + MAX_EXPIRES_IN + 1).check(1_000).is_err());
        let mut other = t("abc", 1_000 + 3600);
        other.token_type = "mac".into();
        assert!(other.check(1_000).is_err());
        other = t("abc", 1_000 + 3600);
        other.scope = "a\nb".into();
        assert!(other.check(1_000).is_err());
    }
}
