//! The token plane: the axum app (`app(state) -> Router`) and `serve(listener, shutdown)`.

pub mod admin;
mod check;
pub mod cors;
pub mod error;
pub mod listen;
mod live;
pub mod logwriter;
pub mod metrics;
mod misses;
pub mod observe;
mod oidc;
pub mod ratelimit;
pub mod replay;
pub mod request;
pub mod tls;
mod token;
mod usage;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Context;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ipnet::IpNet;

use crate::clock::Clock;
use crate::registry::{
    Credentials, KeyEntry, PatEntry, Registry, Settings, StoreCredentials, TrustEntry, UserEntry,
};
use crate::store::{ChangeProbe, Location, Store};
use error::ApiError;
pub use listen::{Extras, Limits, ListenAddr, Listener};
use live::Live;
pub use live::{MAX_STALENESS, POLL};
use metrics::{Endpoint, Metrics, ROUTES};
use observe::Observer;
use replay::{ReplaySet, Seen};
pub use request::Peer;
pub use usage::UsageWriter;

/// Request bodies larger than this are refused (a grant is about 1 KiB).
pub const BODY_LIMIT: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    pub token_lifetime: i64,
    pub usage_retention: i64,
    pub trusted_proxies: Vec<IpNet>,
    /// Refuse grants without a `jti` claim.
    pub require_jti: bool,
    pub limits: Limits,
    /// The site's own origins (normalised); empty: the issuer's origin.
    pub public_origins: Vec<String>,
    /// Serve the remote admin API under /admin/v1.
    pub admin_api: bool,
    /// One info line per request (target `tokenauth::access`).
    pub access_log: bool,
    /// Whether the main listener serves GET /metrics (false: a separate listener does).
    pub metrics_on_main: bool,
    /// Change-feed entries older than this (seconds) are pruned; a server that falls
    /// further behind loads everything again.
    pub feed_retention: i64,
    /// The buckets of `--rate-limit`.
    pub rate_limits: ratelimit::RateLimits,
    /// Seconds a trust issuer's keys are used after the last fetch that worked.
    pub oidc_max_stale: i64,
}

struct Reader {
    store: Store,
    data_version: i64,
    probe: Option<ChangeProbe>,
    /// The store's WAL-index header, read just before the last check that found the
    /// registry current: while it is unchanged, nothing was committed since.
    seen: Option<[u8; 48]>,
}

/// Everything the handlers share.
pub struct AppState {
    config: Config,
    clock: Clock,
    /// One per worker thread or so: on SQLite every check asks the store whether it
    /// changed, and one shared connection made the workers queue behind each other for it.
    /// On PostgreSQL only one, for the writes /revoke makes and the lookups of keys and
    /// tokens the registry does not hold.
    readers: Vec<Mutex<Reader>>,
    postgres: bool,
    live: Arc<Live>,
    usage: UsageWriter,
    /// Replay key -> grant expiry: a fast first check for replays; the store's `used_grants`
    /// decides, across processes.
    replay: Mutex<ReplaySet>,
    /// Revoked and expired keys and tokens a check asked for, as the store said.
    misses: misses::Misses,
    /// The admin API's store connection, when it is on.
    admin: Option<admin::AdminApi>,
    limiter: ratelimit::Limiter,
    /// Trust issuers' signing keys, fetched and cached.
    oidc_keys: crate::oidc::KeyCache,
    pub metrics: Arc<Metrics>,
    /// The SQLite store's file, for readiness checks.
    path: Option<std::path::PathBuf>,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    /// Opens the server's connections to the store, loads the registry, and starts the
    /// usage writer and the follower that keeps the registry current.
    pub fn open(
        location: &Location,
        config: Config,
        clock: Clock,
    ) -> anyhow::Result<(SharedState, JoinHandle<()>)> {
        let postgres = location.is_postgres();
        let store = Store::connect(location)?;
        let now = clock.now();
        let started = Instant::now();
        let metrics = Arc::new(Metrics::new());
        let registry = Registry::load(&store, now).context("loading the registry")?;
        let (users, keys, pats, revoked) = registry.counts();
        tracing::info!(
            generation = registry.seq(),
            users,
            keys,
            pats,
            revoked_tokens = revoked,
            took_ms = started.elapsed().as_millis() as u64,
            "registry loaded"
        );
        let live = Arc::new(Live::new(registry, metrics.clone()));
        live.confirm(started);
        let replay = ReplaySet::seeded(
            store
                .live_used_grants(now)?
                .into_iter()
                .map(|g| (g.key, g.exp)),
        );
        let count = if postgres {
            1
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
        };
        let mut readers = Vec::with_capacity(count);
        let mut first = Some(store);
        for _ in 0..count {
            let mut store = match first.take() {
                Some(s) => s,
                None => Store::connect(location)?,
            };
            // What these connections change: tokens revoked by whoever holds them.
            store.set_actor("token holder (POST /revoke)", clock);
            // Unknown yet: the first check on each compares feed positions.
            readers.push(Mutex::new(Reader {
                probe: store.path().and_then(ChangeProbe::open),
                store,
                data_version: i64::MIN,
                seen: None,
            }));
        }
        let follower = Store::connect(location)?;
        follower.listen()?;
        {
            let live = live.clone();
            let retention = config.feed_retention;
            std::thread::Builder::new()
                .name("feed-follower".into())
                .spawn(move || live::follow(follower, live, clock, retention))
                .context("starting the change-feed follower")?;
        }
        let (usage, writer) = UsageWriter::start(
            Store::connect(location)?,
            clock,
            config.usage_retention,
            metrics.clone(),
        );
        metrics.replay_set(replay.len());
        let admin = if config.admin_api {
            Some(admin::AdminApi::new(crate::admin::Local::new(
                Store::connect(location)?,
                clock,
            )))
        } else {
            None
        };
        let oidc_keys = crate::oidc::KeyCache::new(crate::oidc::CacheConfig {
            max_stale: config.oidc_max_stale,
            ..crate::oidc::CacheConfig::default()
        })?;
        let state = AppState {
            limiter: ratelimit::Limiter::new(config.rate_limits),
            oidc_keys,
            config,
            clock,
            readers,
            postgres,
            live,
            usage,
            replay: Mutex::new(replay),
            misses: misses::Misses::default(),
            admin,
            metrics,
            path: match location {
                Location::Sqlite(path) => Some(path.clone()),
                Location::Postgres(_) => None,
            },
        };
        Ok((Arc::new(state), writer))
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// A free store connection for reading, or the first one when all are busy.
    fn reader(&self) -> MutexGuard<'_, Reader> {
        for r in &self.readers {
            match r.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.readers[0].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What checks read, current: on SQLite, a store that moved on since this connection
    /// last looked is caught up with first (O(the changes)); on PostgreSQL the follower keeps
    /// it current, and a registry not confirmed for [`MAX_STALENESS`] is refused (503) rather
    /// than trusted.
    pub fn view(&self) -> Result<View<'_>, ApiError> {
        self.catch_up()
            .inspect_err(|e| self.metrics.store_error(e.store_kind()))?;
        Ok(View { state: self })
    }

    fn catch_up(&self) -> Result<(), ApiError> {
        if self.postgres {
            let age = self.live.age();
            if age > MAX_STALENESS {
                return Err(ApiError::Unavailable(format!(
                    "the registry was last confirmed current {} ms ago (limit {} ms): PostgreSQL or the notification connection is gone",
                    age.as_millis(),
                    MAX_STALENESS.as_millis()
                )));
            }
            return Ok(());
        }
        let mut reader = self.reader();
        // Read before asking SQLite, so that a commit after this read changes it again.
        let header = reader.probe.as_ref().and_then(ChangeProbe::header);
        if header.is_some() && header == reader.seen {
            return Ok(());
        }
        let dv = reader.store.data_version()?;
        if self.live.reloading() {
            self.live.catch_up(&reader.store, self.now(), None, false)?;
        } else if dv != reader.data_version {
            let head = reader.store.feed_head()?;
            let seq = self.live.read().seq();
            // Past the head means the store was put back under this server: a reload.
            if head != seq {
                let upto = (head > seq).then_some(head);
                self.live.catch_up(&reader.store, self.now(), upto, false)?;
            }
        }
        // Only now: a failed catch-up is retried on the next request.
        reader.data_version = dv;
        reader.seen = header;
        Ok(())
    }

    /// Runs a write on a reader connection (on PostgreSQL off the async workers: the driver
    /// blocks), then applies it to the registry, so that this server's next check sees it
    /// without waiting for the follower.
    fn write(
        &self,
        f: impl FnOnce(&mut Store) -> crate::store::Result<()>,
    ) -> Result<(), ApiError> {
        self.with_reader(|reader| {
            let started = Instant::now();
            f(&mut reader.store)?;
            match self.live.catch_up(&reader.store, self.now(), None, false) {
                Ok(_) if self.postgres => self.live.confirm(started),
                // Written; the registry follows once the follower has loaded it.
                Ok(_) | Err(live::CatchUpError::Reloading) => {}
                Err(live::CatchUpError::Store(e)) => return Err(e.into()),
            }
            Ok(())
        })
    }

    /// Runs `f` on a free reader connection; on PostgreSQL off the async workers.
    fn with_reader<T>(&self, f: impl FnOnce(&mut Reader) -> T) -> T {
        if self.postgres {
            tokio::task::block_in_place(|| f(&mut self.reader()))
        } else {
            f(&mut self.reader())
        }
    }

    /// Takes a token from a proved credential's bucket (a key id or a personal access
    /// token id).
    fn limit_credential(&self, id: &str) -> Result<(), ApiError> {
        self.limiter
            .credential(id)
            .map_err(|limited| self.rate_limited(limited))
    }

    /// Counts a 429 and makes it.
    fn rate_limited(&self, limited: ratelimit::Limited) -> ApiError {
        self.metrics.rate_limited(limited.bucket.name());
        ApiError::RateLimited(limited)
    }

    /// Undoes `first_use` for a grant whose issuance was not recorded (the store failed), so
    /// that the client may retry it.
    fn forget_use(&self, key: [u8; 16]) {
        self.replay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget(key);
    }

    /// Records a grant's replay key (signed by `key_id`): whether it was seen before and
    /// has not expired, or its key holds its whole share of the set.
    fn first_use(&self, key: [u8; 16], exp: i64, key_id: &str) -> Seen {
        let now = self.now();
        let mut set = self.replay.lock().unwrap_or_else(|p| p.into_inner());
        let seen = set.first_use(key, exp, key_id, now);
        self.metrics.replay_set(set.len());
        seen
    }

    /// Whether the store's file is there and readable now (GET /readyz).
    /// For /readyz: a SQLite store opens and reads afresh (connections already open answer
    /// from their page cache, and would miss a store that has gone). On PostgreSQL the
    /// follower reads the database every [`POLL`] anyway: the registry's age tells.
    fn store_reachable(&self) -> Result<(), ApiError> {
        if let Some(path) = &self.path {
            Store::check_readable(path)
                .map_err(ApiError::from)
                .inspect_err(|e| self.metrics.store_error(e.store_kind()))?;
        }
        Ok(())
    }

    /// Notes that a personal access token was used: sent to the store at most once a minute.
    fn pat_used(&self, pat: &crate::pat::PatUse, now: i64) {
        if self
            .live
            .read()
            .pat(&pat.hash)
            .is_some_and(|e| e.claim_touch(now))
        {
            self.usage.touch(pat.id.clone(), now);
        }
    }

    /// Revokes a personal access token (POST /revoke).
    fn revoke_pat(&self, id: &str) -> Result<(), ApiError> {
        let now = self.now();
        self.write(|s| s.revoke_pat(id, now).map(|_| ()))
            .inspect_err(|e| self.metrics.store_error(e.store_kind()))
    }

    /// Writes a revoked token id (POST /revoke).
    fn revoke_token(&self, jti: &str, exp: i64) -> Result<(), ApiError> {
        let now = self.now();
        self.write(|s| s.revoke_token(jti, exp, now))
            .inspect_err(|e| self.metrics.store_error(e.store_kind()))
    }
}

/// The router: the token endpoint, the resource-server checks, metadata, health and
/// readiness, the API description and (unless served apart) the metrics.
pub fn app(state: SharedState) -> Router {
    let cors = || axum::middleware::from_fn_with_state(state.clone(), cors::layer);
    let limit = || axum::middleware::from_fn_with_state(state.clone(), ratelimit::by_address);
    let mut router = if state.admin.is_some() {
        Router::new()
            .route(
                admin::PREFIX,
                axum::routing::any(admin::dispatch).layer(limit()),
            )
            .route(
                &format!("{}/{{*rest}}", admin::PREFIX),
                axum::routing::any(admin::dispatch).layer(limit()),
            )
    } else {
        Router::new()
    };
    // metrics::ROUTES is the one list of routes: the access log, the latency histograms and
    // the OpenAPI document's test all go by it.
    for (endpoint, route) in ROUTES {
        let handler = match endpoint {
            Endpoint::Token => post(token::token)
                .fallback(method_not_allowed)
                .layer(limit())
                .layer(cors()),
            Endpoint::Introspect => post(check::introspect)
                .fallback(method_not_allowed)
                .layer(limit())
                .layer(cors()),
            Endpoint::Revoke => post(check::revoke)
                .fallback(method_not_allowed)
                .layer(limit())
                .layer(cors()),
            Endpoint::Auth => get(check::forward_auth).fallback(method_not_allowed),
            Endpoint::Metadata | Endpoint::MetadataPath => {
                get(metadata).fallback(method_not_allowed)
            }
            Endpoint::Healthz => get(healthz).fallback(method_not_allowed),
            Endpoint::Readyz => get(readyz).fallback(method_not_allowed),
            Endpoint::OpenApi => get(openapi).fallback(method_not_allowed),
            Endpoint::Metrics if state.config.metrics_on_main => {
                get(metrics).fallback(method_not_allowed)
            }
            Endpoint::Metrics | Endpoint::Admin | Endpoint::Unmatched => continue,
        };
        // The document's `{issuer_path}` is a catch-all: it may hold slashes.
        let route = if endpoint == Endpoint::MetadataPath {
            "/.well-known/oauth-authorization-server/{*issuer_path}"
        } else {
            route
        };
        router = router.route(route, handler);
    }
    router
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// The router of `--metrics-listen`: GET /metrics only.
pub fn metrics_app(state: SharedState) -> Router {
    Router::new()
        .route("/metrics", get(metrics).fallback(method_not_allowed))
        .fallback(not_found)
        .with_state(state)
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown` resolves, then
/// lets in-flight requests finish.
pub async fn serve(
    listener: Listener,
    state: SharedState,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.config.limits;
    let extras = Extras {
        tls,
        observer: Some(Arc::new(Observer {
            metrics: state.metrics.clone(),
            access_log: state.config.access_log,
            trusted_proxies: state.config.trusted_proxies.clone(),
        })),
    };
    listen::serve(listener, app(state), limits, extras, shutdown).await
}

/// Serves the metrics alone on `listener` (`--metrics-listen`), plain HTTP, not counted in
/// the request metrics nor logged.
pub async fn serve_metrics(
    listener: Listener,
    state: SharedState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.config.limits;
    listen::serve(
        listener,
        metrics_app(state),
        limits,
        Extras::default(),
        shutdown,
    )
    .await
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let allow = match uri.path() {
        "/token" | "/introspect" | "/revoke" => "POST",
        _ => "GET, HEAD",
    };
    let mut resp = ApiError::status(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        format!(
            "Method {} is not allowed on {}; use {allow}",
            request::printable(method.as_str()),
            uri.path()
        ),
    )
    .into_response();
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::status(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("No endpoint at {}", request::printable(uri.path())),
    )
}

/// Liveness. On SQLite it also opens a read (as it always did); on PostgreSQL it does not
/// depend on the database (that is `/readyz`'s question).
async fn healthz(State(state): State<SharedState>) -> Result<Response, ApiError> {
    // A registry being loaded again (seconds, rarely) is /readyz's question, not liveness's.
    if !state.postgres && !state.live.reloading() {
        state.view()?;
    }
    Ok(axum::Json(serde_json::json!({ "status": "ok" })).into_response())
}

/// Ready to serve: the store answers and the registry is current. 503 otherwise, so that a
/// load balancer sends traffic elsewhere.
async fn readyz(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let unavailable = |e: ApiError| {
        let why = match e {
            ApiError::Internal(msg) => msg,
            other => format!("{other:?}"),
        };
        tracing::warn!(error = %why, "not ready");
        ApiError::status(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "Not ready: the store cannot be read; see the server log",
        )
    };
    state.store_reachable().map_err(unavailable)?;
    state.view().map_err(unavailable)?;
    let mut resp = axum::Json(serde_json::json!({ "status": "ready" })).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Prometheus text format.
async fn metrics(State(state): State<SharedState>) -> Response {
    state.metrics.oidc_key_fetches(state.oidc_keys.fetches());
    (
        [
            (header::CONTENT_TYPE, metrics::CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        state.metrics.render(),
    )
        .into_response()
}

/// The OpenAPI document (docs/openapi.json), with this server's issuer as its server.
async fn openapi(State(state): State<SharedState>) -> Result<Response, ApiError> {
    static DOC: &str = include_str!("../../docs/openapi.json");
    let snap = state.view()?.settings();
    let mut doc: serde_json::Value = serde_json::from_str(DOC)
        .map_err(|e| ApiError::Internal(format!("docs/openapi.json: {e}")))?;
    let base = snap
        .token_uri
        .rsplit_once('/')
        .map_or(snap.token_uri.as_str(), |(base, _)| base);
    doc["servers"] = serde_json::json!([{ "url": base }]);
    Ok(axum::Json(doc).into_response())
}

/// RFC 8414 authorization server metadata, at `/.well-known/oauth-authorization-server` and,
/// for an issuer with a path, at the path-aware location (§3.1) too.
async fn metadata(
    State(state): State<SharedState>,
    suffix: Option<axum::extract::Path<String>>,
) -> Result<Response, ApiError> {
    let snap = state.view()?.settings();
    if let Some(axum::extract::Path(suffix)) = suffix {
        let issuer_path = url::Url::parse(&snap.issuer)
            .map(|u| u.path().trim_matches('/').to_owned())
            .unwrap_or_default();
        if suffix.trim_matches('/') != issuer_path {
            return Err(ApiError::status(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "No metadata for issuer path /{}; this server's issuer is {}",
                    request::printable(suffix.trim_matches('/')),
                    snap.issuer
                ),
            ));
        }
    }
    // The other endpoints are the token endpoint's siblings, whatever prefix a proxy puts
    // them under.
    let base = snap
        .token_uri
        .rsplit_once('/')
        .map_or(snap.token_uri.as_str(), |(base, _)| base);
    let mut doc = serde_json::json!({
        "issuer": snap.issuer,
        "token_endpoint": snap.token_uri,
        "introspection_endpoint": format!("{base}/introspect"),
        "revocation_endpoint": format!("{base}/revoke"),
        "grant_types_supported": [token::JWT_BEARER],
        // RFC 8414 requires the member; there is no authorization endpoint, so no response
        // type returns credentials.
        "response_types_supported": ["none"],
        "token_endpoint_auth_methods_supported": ["none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "EdDSA", "Ed25519"],
        "introspection_endpoint_auth_methods_supported": ["bearer"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": ["read", "write"],
    });
    if let Some(url) = &snap.service_documentation {
        doc["service_documentation"] = url.as_str().into();
    }
    Ok(axum::Json(doc).into_response())
}

/// The registry as checks read it, current as of [`AppState::view`]: keys and tokens it does
/// not hold (revoked, long expired, or too new to have reached it) are asked of the store, at
/// a bounded rate, and the revoked and expired ones remembered.
#[derive(Clone, Copy)]
pub struct View<'a> {
    state: &'a AppState,
}

impl View<'_> {
    /// Whether any trust relationship exists.
    pub fn has_trusts(&self) -> bool {
        self.state.live.read().trust_count() > 0
    }

    /// Whether some live key or token lists this (normalised) origin.
    pub fn origin_known(&self, origin: &str) -> bool {
        self.state.live.read().origin_known(origin)
    }

    /// A key or token the registry lacks, from the cache or the store.
    fn missed<T: Clone>(
        &self,
        miss: misses::Miss,
        cached: impl FnOnce(&misses::Dead) -> Option<T>,
        look_up: impl FnOnce(&StoreCredentials) -> Option<T>,
        dead: impl FnOnce(&T, i64) -> bool,
        into: impl FnOnce(T) -> misses::Dead,
    ) -> Option<T> {
        let state = self.state;
        let misses = &state.misses;
        if let Some(found) = misses.cached(&miss).as_ref().and_then(cached) {
            state.metrics.registry_miss("cached");
            return Some(found);
        }
        if !misses.may_look_up() {
            state.metrics.registry_miss("limited");
            return None;
        }
        let now = state.now();
        let found = state.with_reader(|r| {
            look_up(&StoreCredentials {
                store: &r.store,
                now,
            })
        });
        state
            .metrics
            .registry_miss(if found.is_some() { "found" } else { "absent" });
        if let Some(f) = &found
            && dead(f, now)
        {
            misses.remember(miss, into(f.clone()));
        }
        found
    }
}

impl Credentials for View<'_> {
    fn settings(&self) -> Arc<Settings> {
        self.state.live.read().settings()
    }

    fn user(&self, name: &str) -> Option<Arc<UserEntry>> {
        self.state.live.read().user(name)
    }

    fn key(&self, key_id: &str) -> Option<Arc<KeyEntry>> {
        if let Some(k) = self.state.live.read().key(key_id) {
            return Some(k);
        }
        self.missed(
            misses::Miss::Key(key_id.to_owned()),
            misses::Dead::key,
            |s| s.key(key_id),
            |k, now| misses::key_is_dead(k, now),
            misses::Dead::Key,
        )
    }

    fn key_by_client(&self, client: &str) -> Option<Arc<KeyEntry>> {
        if let Some(k) = self.state.live.read().key_by_client(client) {
            return Some(k);
        }
        self.missed(
            misses::Miss::Client(client.to_owned()),
            misses::Dead::key,
            |s| s.key_by_client(client),
            |k, now| misses::key_is_dead(k, now),
            misses::Dead::Key,
        )
    }

    fn pat(&self, hash: &[u8; 32]) -> Option<Arc<PatEntry>> {
        if let Some(p) = self.state.live.read().pat(hash) {
            return Some(p);
        }
        let epoch_of = |user: &str| self.state.live.read().user(user).map(|u| u.epoch);
        self.missed(
            misses::Miss::Pat(*hash),
            misses::Dead::pat,
            |s| s.pat(hash),
            |p, now| misses::pat_is_dead(p, epoch_of(&p.pat.user), now),
            misses::Dead::Pat,
        )
    }

    fn token_revoked(&self, jti: &str) -> bool {
        self.state.live.read().token_revoked(jti)
    }

    fn trust(&self, id: &str) -> Option<Arc<TrustEntry>> {
        self.state.live.read().trust(id)
    }

    fn trusts_of(&self, issuer: &str) -> Option<Arc<crate::registry::IssuerTrusts>> {
        self.state.live.read().trusts_of(issuer)
    }
}
