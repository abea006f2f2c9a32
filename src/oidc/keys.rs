//! Issuers' signing keys on the server: fetching them (discovery or a JWKS URI), caching them
//! per source, refetching on rotation, and failing closed once they are too stale.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use super::jwks::{KeyMiss, KeySet};
use super::token::Unverified;
use crate::text::printable;

/// The largest discovery or JWKS document read.
pub const MAX_BODY: usize = 1024 * 1024;

/// How the cache treats time. All in seconds but the timeout.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Keys older than this are fetched again (a failed fetch keeps them).
    pub refresh: i64,
    /// The least time between two fetches of one source, whatever asks for them (a token with
    /// an unknown kid, a refresh, a retry after a failure): strangers' tokens must not make
    /// the server hammer an issuer.
    pub refetch_interval: i64,
    /// How long after the last successful fetch its keys are still used.
    pub max_stale: i64,
    /// Per request, connecting and reading included.
    pub timeout: Duration,
}

impl Default for CacheConfig {
    fn default() -> CacheConfig {
        CacheConfig {
            refresh: 3600,
            refetch_interval: 60,
            max_stale: 86_400,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Where a trust's keys come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The trust's own JWKS document (`--jwks-file`): never fetched.
    Static(Arc<KeySet>),
    JwksUri(String),
    /// `{issuer}/.well-known/openid-configuration`, whose `jwks_uri` names the keys.
    Discovery {
        issuer: String,
    },
}

/// Why an ID token's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    /// The issuer's keys cannot be had: its tokens are refused (fail closed).
    #[error("{0}")]
    Unavailable(String),
    /// No key of the issuer has the token's kid (escaped), even after a refetch.
    #[error("{}", unknown_kid(.0.as_deref()))]
    UnknownKid(Option<String>),
    #[error("Invalid signature")]
    BadSignature,
    #[error("The ID token's kid names a key of another algorithm than its header's")]
    WrongKeyType,
}

fn unknown_kid(kid: Option<&str>) -> String {
    match kid {
        Some(kid) => format!("The ID token's key '{kid}' is not one of its issuer's signing keys"),
        None => "The ID token names no key (kid), and none of its issuer's signing keys is of \
                 its algorithm"
            .to_owned(),
    }
}

impl KeysError {
    fn from_miss(miss: KeyMiss, u: &Unverified) -> KeysError {
        match miss {
            KeyMiss::UnknownKid => KeysError::UnknownKid(u.kid.as_deref().map(printable)),
            KeyMiss::WrongKeyType => KeysError::WrongKeyType,
            KeyMiss::BadSignature => KeysError::BadSignature,
        }
    }
}

/// The keys of every fetched source, shared by all requests (put it in an `Arc`).
pub struct KeyCache {
    http: reqwest::Client,
    config: CacheConfig,
    /// Keyed by the URL fetched first. Sources come from trusts, never from tokens, so the
    /// map grows only with the admin's configuration.
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    fetches: AtomicU64,
}

struct Entry {
    state: Mutex<State>,
    /// Held while fetching: concurrent requests share one fetch.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default, Clone)]
struct State {
    keys: Option<Arc<KeySet>>,
    /// The last successful fetch.
    fetched: Option<i64>,
    /// The last fetch, successful or not.
    attempted: Option<i64>,
    /// The first failed fetch since the last successful one.
    failing_since: Option<i64>,
    error: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing under these locks can leave the data half-changed.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl KeyCache {
    pub fn new(config: CacheConfig) -> anyhow::Result<KeyCache> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("tokenauth/", env!("CARGO_PKG_VERSION")))
            // A redirect could lead anywhere, http included: issuers' URLs are exact.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .build()
            .map_err(|e| anyhow::anyhow!("building the HTTP client for OIDC keys: {e}"))?;
        Ok(KeyCache {
            http,
            config,
            entries: Mutex::new(HashMap::new()),
            fetches: AtomicU64::new(0),
        })
    }

    /// How many fetches were made, successful or not (for a metric).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Verifies `u`'s signature with `source`'s keys: cached ones, fetched when absent or
    /// older than `refresh`, and fetched again once when the token's kid is unknown.
    pub async fn verify(&self, source: &Source, u: &Unverified, now: i64) -> Result<(), KeysError> {
        let check = |set: &KeySet| {
            set.verify(u.alg, u.kid.as_deref(), u.message(), u.signature())
                .map_err(|m| KeysError::from_miss(m, u))
        };
        let remote = match source {
            Source::Static(set) => return check(set),
            Source::JwksUri(uri) => Remote::Jwks(uri),
            Source::Discovery { issuer } => Remote::Discovery(issuer),
        };
        let entry = self.entry(&remote.cache_key());
        let keys = self.keys(&entry, &remote, now, false).await?;
        match check(&keys) {
            Err(KeysError::UnknownKid(_)) => {
                // The issuer may have rotated its keys since they were fetched.
                let fresh = self.keys(&entry, &remote, now, true).await?;
                check(&fresh)
            }
            other => other,
        }
    }

    fn entry(&self, key: &str) -> Arc<Entry> {
        let mut entries = lock(&self.entries);
        entries
            .entry(key.to_owned())
            .or_insert_with(|| {
                Arc::new(Entry {
                    state: Mutex::new(State::default()),
                    fetching: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    /// The source's keys, fetched first when due (`rotated`: the caller met an unknown kid).
    async fn keys(
        &self,
        entry: &Entry,
        remote: &Remote<'_>,
        now: i64,
        rotated: bool,
    ) -> Result<Arc<KeySet>, KeysError> {
        let due = |s: &State| {
            // Keys past max_stale are wanted again whatever `refresh` says (it may be longer).
            let wanted = rotated
                || s.fetched.is_none_or(|f| now - f >= self.config.refresh)
                || self.usable(s, now).is_none();
            let allowed = s
                .attempted
                .is_none_or(|a| now - a >= self.config.refetch_interval);
            wanted && allowed
        };
        let snapshot = lock(&entry.state).clone();
        if due(&snapshot) {
            // A routine refresh is nobody's to wait for: while one request fetches, the
            // others go on with the keys they have. Without usable keys, or after an unknown
            // kid, they wait for that fetch instead of making their own.
            let guard = if self.usable(&snapshot, now).is_some() && !rotated {
                entry.fetching.try_lock().ok()
            } else {
                Some(entry.fetching.lock().await)
            };
            // Whoever held the lock before may have just fetched.
            if let Some(_guard) = guard
                && due(&lock(&entry.state))
            {
                self.fetches.fetch_add(1, Ordering::Relaxed);
                let result = self.fetch(remote).await;
                let mut state = lock(&entry.state);
                state.attempted = Some(now);
                match result {
                    Ok(set) => {
                        state.keys = Some(Arc::new(set));
                        state.fetched = Some(now);
                        state.failing_since = None;
                        state.error = None;
                    }
                    Err(e) => {
                        tracing::warn!(source = remote.label(), error = %e, "fetching an OIDC issuer's signing keys failed");
                        state.failing_since.get_or_insert(now);
                        state.error = Some(e);
                    }
                }
            }
        }
        let state = lock(&entry.state);
        self.usable(&state, now).ok_or_else(|| {
            let since = state.fetched.or(state.failing_since).unwrap_or(now);
            KeysError::Unavailable(format!(
                "The signing keys of {} could not be fetched since {} ({}); its tokens are \
                 refused until they can be",
                remote.label(),
                crate::clock::rfc3339(since),
                state.error.as_deref().unwrap_or("no fetch has succeeded")
            ))
        })
    }

    fn usable(&self, state: &State, now: i64) -> Option<Arc<KeySet>> {
        state
            .fetched
            .filter(|f| now - f <= self.config.max_stale)
            .and(state.keys.clone())
    }

    async fn fetch(&self, remote: &Remote<'_>) -> Result<KeySet, String> {
        let jwks_uri = match remote {
            Remote::Jwks(uri) => (*uri).to_owned(),
            Remote::Discovery(issuer) => {
                https_or_loopback(issuer)?;
                let url = discovery_url(issuer);
                let body = self.get(&url).await?;
                let doc: Value = serde_json::from_slice(&body)
                    .map_err(|_| format!("{url} is not a JSON document"))?;
                // OpenID Connect Discovery §4.3: else anyone serving this document could
                // name keys for another issuer.
                match doc.get("issuer").and_then(Value::as_str) {
                    Some(named) if named == *issuer => {}
                    Some(named) => {
                        return Err(format!(
                            "{url} names the issuer '{}', not {issuer}",
                            printable(named)
                        ));
                    }
                    None => return Err(format!("{url} names no issuer")),
                }
                doc.get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{url} has no jwks_uri"))?
                    .to_owned()
            }
        };
        let body = self.get(&jwks_uri).await?;
        let text = std::str::from_utf8(&body).map_err(|_| format!("{jwks_uri} is not text"))?;
        KeySet::parse(text).map_err(|e| format!("{jwks_uri}: {e}"))
    }

    /// A GET of at most [`MAX_BODY`] bytes, 2xx only.
    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let url = https_or_loopback(url)?;
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                format!("GET {url}: no answer within {:?}", self.config.timeout)
            } else {
                format!("GET {url}: {}", crate::client::root_cause(&e))
            }
        };
        let mut response = self.http.get(url.clone()).send().await.map_err(failed)?;
        let status = response.status();
        if status.is_redirection() {
            return Err(format!(
                "GET {url}: HTTP {status}; redirects are not followed, give the final URL"
            ));
        }
        if !status.is_success() {
            return Err(format!("GET {url}: HTTP {status}"));
        }
        let too_big = || format!("GET {url}: the answer is larger than 1 MiB");
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY as u64)
        {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// A source that is fetched.
enum Remote<'a> {
    Jwks(&'a str),
    Discovery(&'a str),
}

impl Remote<'_> {
    fn cache_key(&self) -> String {
        match self {
            Remote::Jwks(uri) => (*uri).to_owned(),
            Remote::Discovery(issuer) => discovery_url(issuer),
        }
    }

    /// What messages call the source.
    fn label(&self) -> &str {
        match self {
            Remote::Jwks(s) | Remote::Discovery(s) => s,
        }
    }
}

fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Whether the URL's host is this machine (localhost, 127.0.0.0/8, ::1): where plain http
/// carries tokens to no one else.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Checks an issuer's URL (issuer, jwks_uri): https, or http on a loopback host only (a
/// test issuer on the same machine), without credentials in it.
pub fn https_or_loopback(url: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|_| {
        format!(
            "'{}' is not a URL; give an https URL, e.g. https://token.actions.githubusercontent.com",
            printable(url)
        )
    })?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "'{}' holds a user name or password; give the URL without them",
            printable(url)
        ));
    }
    if parsed.fragment().is_some() {
        return Err(format!(
            "'{}' has a #fragment; give the URL without it",
            printable(url)
        ));
    }
    let loopback = is_loopback(&parsed);
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(parsed),
        "http" if loopback => Ok(parsed),
        _ => Err(format!(
            "'{}' is not an https URL; an issuer's URLs must be https (http only on a loopback \
             host: localhost, 127.0.0.1 or [::1])",
            printable(url)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::test_keys::{self, TestKey};
    use serde_json::json;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const T: i64 = 1_800_000_000;

    /// What the pretend issuer serves; tests change it as they go.
    struct Served {
        jwks: String,
        down: bool,
        /// The discovery document's issuer, when not the server's own URL.
        issuer: Option<String>,
        jwks_uri: Option<String>,
    }

    struct Issuer {
        base: String,
        served: Arc<Mutex<Served>>,
        hits: Arc<AtomicUsize>,
    }

    impl Issuer {
        async fn start(keys: &[&TestKey]) -> Issuer {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let served = Arc::new(Mutex::new(Served {
                jwks: test_keys::jwks(keys),
                down: false,
                issuer: None,
                jwks_uri: None,
            }));
            let hits = Arc::new(AtomicUsize::new(0));
            let (s, h, b) = (served.clone(), hits.clone(), base.clone());
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    h.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(answer(socket, s.clone(), b.clone()));
                }
            });
            Issuer { base, served, hits }
        }

        fn set(&self, f: impl FnOnce(&mut Served)) {
            f(&mut self.served.lock().unwrap());
        }

        fn discovery(&self) -> Source {
            Source::Discovery {
                issuer: self.base.clone(),
            }
        }

        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }
    }

    /// One HTTP/1.1 exchange per connection, enough for reqwest.
    async fn answer(mut socket: tokio::net::TcpStream, served: Arc<Mutex<Served>>, base: String) {
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let request = String::from_utf8_lossy(&request);
        let path = request.split(' ').nth(1).unwrap_or("/").to_owned();
        let (status, extra, body) = {
            let s = served.lock().unwrap();
            match path.as_str() {
                _ if s.down => ("503 Service Unavailable", String::new(), String::new()),
                "/.well-known/openid-configuration" => {
                    let doc = json!({
                        "issuer": s.issuer.clone().unwrap_or(base.clone()),
                        "jwks_uri": s.jwks_uri.clone().unwrap_or(format!("{base}/jwks")),
                    });
                    ("200 OK", String::new(), doc.to_string())
                }
                "/jwks" => ("200 OK", String::new(), s.jwks.clone()),
                "/redirect" => (
                    "302 Found",
                    format!("Location: {base}/jwks\r\n"),
                    String::new(),
                ),
                "/big" => ("200 OK", String::new(), " ".repeat(MAX_BODY + 1)),
                "/chunked" => (
                    "200 OK",
                    "Transfer-Encoding: chunked\r\n".into(),
                    String::new(),
                ),
                _ => ("404 Not Found", String::new(), String::new()),
            }
        };
        let length = if extra.contains("chunked") {
            String::new()
        } else {
            format!("Content-Length: {}\r\n", body.len())
        };
        let head = format!("HTTP/1.1 {status}\r\n{extra}{length}Connection: close\r\n\r\n");
        if socket.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        if path == "/chunked" {
            // More than 1 MiB without a Content-Length: only counting stops it.
            let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
            for _ in 0..32 {
                if socket.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
            let _ = socket.write_all(b"0\r\n\r\n").await;
        } else {
            let _ = socket.write_all(body.as_bytes()).await;
        }
    }

    fn cache() -> KeyCache {
        KeyCache::new(CacheConfig::default()).unwrap()
    }

    fn token(key: &TestKey) -> Unverified {
        Unverified::parse(&key.token(&json!({ "iss": "https://issuer.example" }))).unwrap()
    }

    fn unavailable(r: Result<(), KeysError>) -> String {
        match r {
            Err(KeysError::Unavailable(m)) => m,
            other => panic!("not Unavailable: {other:?}"),
        }
    }

    #[tokio::test]
    async fn keys_are_fetched_once_then_cached_until_refresh() {
        let issuer = Issuer::start(&[test_keys::rsa(), test_keys::ec()]).await;
        let cache = cache();
        let source = issuer.discovery();
        cache
            .verify(&source, &token(test_keys::rsa()), T)
            .await
            .unwrap();
        assert_eq!(
            (cache.fetches(), issuer.hits()),
            (1, 2),
            "discovery, then the JWKS"
        );
        cache
            .verify(&source, &token(test_keys::ec()), T + 10)
            .await
            .unwrap();
        cache
            .verify(&source, &token(test_keys::rsa()), T + 3599)
            .await
            .unwrap();
        assert_eq!(cache.fetches(), 1);
        cache
            .verify(&source, &token(test_keys::rsa()), T + 3600)
            .await
            .unwrap();
        assert_eq!((cache.fetches(), issuer.hits()), (2, 4));

        // A forged signature is refused by the right key.
        let other = token(test_keys::rsa2());
        let mixed = format!(
            "{}.{}",
            std::str::from_utf8(token(test_keys::rsa()).message()).unwrap(),
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                other.signature()
            )
        );
        let mixed = Unverified::parse(&mixed).unwrap();
        assert_eq!(
            cache.verify(&source, &mixed, T + 3601).await,
            Err(KeysError::BadSignature)
        );
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_fetch() {
        let issuer = Issuer::start(&[test_keys::rsa()]).await;
        let cache = cache();
        let source = Source::JwksUri(format!("{}/jwks", issuer.base));
        let u = token(test_keys::rsa());
        let cache = Arc::new(cache);
        // Spawned: the verify future must be Send, as axum handlers need.
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (cache, source, u) = (cache.clone(), source.clone(), u.clone());
                tokio::spawn(async move { cache.verify(&source, &u, T).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!((cache.fetches(), issuer.hits()), (1, 1));
    }

    #[tokio::test]
    async fn an_unknown_kid_refetches_at_most_once_per_interval() {
        let issuer = Issuer::start(&[test_keys::rsa()]).await;
        let cache = cache();
        let source = issuer.discovery();
        cache
            .verify(&source, &token(test_keys::rsa()), T)
            .await
            .unwrap();
        issuer.set(|s| s.jwks = test_keys::jwks(&[test_keys::rsa2()]));
        // Within the interval of the first fetch, the new key is not fetched yet.
        let rotated = token(test_keys::rsa2());
        assert!(matches!(
            cache.verify(&source, &rotated, T + 30).await,
            Err(KeysError::UnknownKid(Some(_)))
        ));
        assert_eq!(cache.fetches(), 1);
        cache.verify(&source, &rotated, T + 61).await.unwrap();
        assert_eq!(cache.fetches(), 2);
        // The old key is gone now.
        assert!(matches!(
            cache
                .verify(&source, &token(test_keys::rsa()), T + 200)
                .await,
            Err(KeysError::UnknownKid(_))
        ));
        assert_eq!(cache.fetches(), 3);
        let e = cache
            .verify(&source, &token(test_keys::rsa()), T + 210)
            .await
            .unwrap_err();
        assert_eq!(cache.fetches(), 3, "no second refetch within the interval");
        assert_eq!(
            e.to_string(),
            format!(
                "The ID token's key '{}' is not one of its issuer's signing keys",
                test_keys::rsa().kid
            )
        );
    }

    #[tokio::test]
    async fn a_down_issuer_is_served_from_the_cache_until_max_stale() {
        let issuer = Issuer::start(&[test_keys::rsa()]).await;
        let cache = cache();
        let source = issuer.discovery();
        let u = token(test_keys::rsa());
        cache.verify(&source, &u, T).await.unwrap();
        issuer.set(|s| s.down = true);
        cache.verify(&source, &u, T + 3600).await.unwrap();
        assert_eq!(cache.fetches(), 2, "the refresh was tried");
        cache.verify(&source, &u, T + 3630).await.unwrap();
        assert_eq!(cache.fetches(), 2, "and is retried only after the interval");
        cache.verify(&source, &u, T + 86_400).await.unwrap();
        let message = unavailable(cache.verify(&source, &u, T + 86_401).await);
        assert_eq!(
            message,
            format!(
                "The signing keys of {} could not be fetched since {} (GET {}/.well-known/openid-configuration: HTTP 503 Service Unavailable); its tokens are refused until they can be",
                issuer.base,
                crate::clock::rfc3339(T),
                issuer.base
            )
        );
        issuer.set(|s| s.down = false);
        cache.verify(&source, &u, T + 86_500).await.unwrap();
    }

    #[tokio::test]
    async fn an_issuer_never_reached_is_refused_with_its_error() {
        let issuer = Issuer::start(&[test_keys::rsa()]).await;
        issuer.set(|s| s.down = true);
        let cache = cache();
        let u = token(test_keys::rsa());
        let message = unavailable(cache.verify(&issuer.discovery(), &u, T).await);
        assert!(
            message.contains(&format!("since {}", crate::clock::rfc3339(T))),
            "{message}"
        );
        // Nor is it asked again at every token.
        unavailable(cache.verify(&issuer.discovery(), &u, T + 1).await);
        assert_eq!(cache.fetches(), 1);
        // A port nobody listens on.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", closed.local_addr().unwrap());
        drop(closed);
        let message = unavailable(cache.verify(&Source::JwksUri(url.clone()), &u, T).await);
        assert!(message.contains(&format!("(GET {url}: ")), "{message}");
    }

    #[tokio::test]
    async fn what_a_source_serves_must_be_what_it_claims() {
        let issuer = Issuer::start(&[test_keys::rsa()]).await;
        let u = token(test_keys::rsa());
        issuer.set(|s| s.issuer = Some("https://token.actions.githubusercontent.com".into()));
        let message = unavailable(cache().verify(&issuer.discovery(), &u, T).await);
        assert!(
            message.contains("names the issuer 'https://token.actions.githubusercontent.com', not http://127.0.0.1:"),
            "{message}"
        );
        issuer.set(|s| {
            s.issuer = None;
            s.jwks_uri = Some("http://keys.example.com/jwks".into());
        });
        let message = unavailable(cache().verify(&issuer.discovery(), &u, T).await);
        assert!(
            message.contains("'http://keys.example.com/jwks' is not an https URL"),
            "{message}"
        );

        for (path, why) in [
            ("/big", "the answer is larger than 1 MiB"),
            ("/chunked", "the answer is larger than 1 MiB"),
            ("/redirect", "HTTP 302 Found; redirects are not followed"),
            ("/nothing", "HTTP 404 Not Found"),
        ] {
            let hits = issuer.hits();
            let source = Source::JwksUri(format!("{}{path}", issuer.base));
            let message = unavailable(cache().verify(&source, &u, T).await);
            assert!(message.contains(why), "{path}: {message}");
            assert_eq!(
                issuer.hits(),
                hits + 1,
                "{path}: one request, no redirect followed"
            );
        }
        issuer.set(|s| s.jwks = "{\"keys\": []}".into());
        let source = Source::JwksUri(format!("{}/jwks", issuer.base));
        let message = unavailable(cache().verify(&source, &u, T).await);
        assert!(
            message.contains("/jwks: the JWKS has no usable signing key"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn static_keys_are_never_fetched() {
        let set = Arc::new(KeySet::parse(&test_keys::jwks(&[test_keys::ec()])).unwrap());
        let cache = cache();
        let source = Source::Static(set);
        cache
            .verify(&source, &token(test_keys::ec()), T)
            .await
            .unwrap();
        assert_eq!(
            cache.verify(&source, &token(test_keys::rsa()), T).await,
            Err(KeysError::UnknownKid(Some(test_keys::rsa().kid.clone())))
        );
        assert_eq!(cache.fetches(), 0);
    }

    #[test]
    fn issuer_urls_are_https_or_on_this_machine() {
        for ok in [
            "https://token.actions.githubusercontent.com",
            "https://gitlab.example.com/",
            "http://127.0.0.1:8080",
            "http://127.5.0.1/x",
            "http://[::1]:9000/jwks",
            "http://localhost:3000",
            "http://LOCALHOST",
        ] {
            assert!(https_or_loopback(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com",
            "http://10.0.0.1",
            "http://localhost.evil.com",
            "ftp://127.0.0.1",
            "file:///etc/passwd",
            "https://user:pw@example.com",
            "https://example.com/#x",
            "token.actions.githubusercontent.com",
        ] {
            assert!(https_or_loopback(bad).is_err(), "{bad}");
        }
        assert_eq!(
            https_or_loopback("http://example.com").unwrap_err(),
            "'http://example.com' is not an https URL; an issuer's URLs must be https (http only on a loopback host: localhost, 127.0.0.1 or [::1])"
        );
    }
}
