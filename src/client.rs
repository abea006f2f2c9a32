//! The client plane: exchanging a grant for an access token (reqwest) and the on-disk token
//! cache that lets many CI steps share one token.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
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

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    expires_in: i64,
    #[serde(default)]
    scope: String,
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
    let uri = &key.token_uri;
    let resp = http_client(ca_cert)?
        .post(uri)
        .form(&form)
        .send()
        .map_err(|e| connect_error(&format!("the token endpoint {uri}"), &e, ca_cert.is_some()))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .with_context(|| format!("reading the answer of {uri}"))?;
    if !status.is_success() {
        return Err(match serde_json::from_slice::<ErrorResponse>(&body) {
            Ok(e) => anyhow::anyhow!(
                "{uri} refused the grant: {}: {}",
                e.error,
                e.error_description
            ),
            Err(_) => anyhow::anyhow!(
                "{uri} answered HTTP {status} without an OAuth error; is it a tokenauth server?"
            ),
        });
    }
    let t: TokenResponse = serde_json::from_slice(&body)
        .with_context(|| format!("{uri} answered 200 but not with a token response"))?;
    if !t.token_type.eq_ignore_ascii_case("bearer") {
        bail!(
            "{uri} issued a '{}' token; only Bearer tokens are supported",
            t.token_type
        );
    }
    Ok(Token {
        access_token: SecretString::new(t.access_token),
        token_type: t.token_type,
        scope: t.scope,
        expires_at: now + t.expires_in,
    })
}

/// The innermost error's message: reqwest's own repeats the URL, which may carry a password.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The token cache: one file per (token URI, key, subject, scope) under
/// `$XDG_CACHE_HOME/tokenauth/`, each 0600, with a lock file so that concurrent callers
/// make one token request between them.
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn open() -> anyhow::Result<Cache> {
        let dir = dirs::cache_dir()
            .context(
                "cannot find a cache directory (set XDG_CACHE_HOME or HOME, or pass --no-cache)",
            )?
            .join("tokenauth");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create the token cache {}", dir.display()))?;
        Ok(Cache { dir })
    }

    fn entry(&self, key: &KeyFile, sub: &str, scope: &str) -> PathBuf {
        let mut h = Sha256::new();
        for part in [key.token_uri.as_str(), &key.key_id, sub, scope] {
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
    /// corrupt file is simply no token.
    fn read(path: &std::path::Path, now: i64, min_valid: i64) -> Option<Token> {
        let bytes = std::fs::read(path).ok()?;
        let t: Token = serde_json::from_slice(&bytes).ok()?;
        (t.expires_at - now > min_valid).then_some(t)
    }

    fn write(path: &std::path::Path, token: &Token) -> anyhow::Result<()> {
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        tmp.write_all(&serde_json::to_vec(token)?)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// The cached token if still good for `min_valid` seconds, else a fresh one from `fetch`
    /// (stored for the next caller). Returns the token and whether it came from the cache.
    pub fn get(
        &self,
        key: &KeyFile,
        sub: &str,
        scope: &str,
        now: i64,
        min_valid: i64,
        fetch: impl FnOnce() -> anyhow::Result<Token>,
    ) -> anyhow::Result<(Token, bool)> {
        let path = self.entry(key, sub, scope);
        // The fast path takes no lock: files are replaced atomically, never written in place.
        if let Some(t) = Self::read(&path, now, min_valid) {
            return Ok((t, true));
        }
        let lock_path = path.with_extension("lock");
        let lock: File = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .with_context(|| format!("cannot open the cache lock {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        // Whoever held the lock may have fetched a token meanwhile.
        if let Some(t) = Self::read(&path, now, min_valid) {
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
    pub fn drop_token(&self, key: &KeyFile, sub: &str, scope: &str) {
        let _ = std::fs::remove_file(self.entry(key, sub, scope));
    }
}

/// Gets a token for `key`: from the cache when allowed and fresh enough, else from the
/// token endpoint.
pub struct Getter<'a> {
    pub key: &'a KeyFile,
    pub sub: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub use_cache: bool,
    pub min_valid: i64,
    /// Trusted besides the system's roots (--ca-cert).
    pub ca_cert: Option<&'a Path>,
}

impl Getter<'_> {
    fn subject(&self) -> &str {
        self.sub.or(self.key.user_id.as_deref()).unwrap_or("")
    }

    pub fn get(&self, now: i64) -> anyhow::Result<Token> {
        let fetch = || fetch(self.key, self.sub, self.scope, now, self.ca_cert);
        if !self.use_cache {
            return fetch();
        }
        let cache = Cache::open()?;
        Ok(cache
            .get(
                self.key,
                self.subject(),
                self.scope.unwrap_or(""),
                now,
                self.min_valid,
                fetch,
            )?
            .0)
    }

    pub fn forget(&self) -> anyhow::Result<()> {
        if self.use_cache {
            Cache::open()?.drop_token(self.key, self.subject(), self.scope.unwrap_or(""));
        }
        Ok(())
    }
}
