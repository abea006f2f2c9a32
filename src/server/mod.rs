//! The token plane: the axum app (`app(state) -> Router`) and `serve(listener, shutdown)`.

pub mod admin;
mod check;
pub mod cors;
pub mod error;
pub mod listen;
pub mod logwriter;
pub mod metrics;
pub mod observe;
pub mod request;
pub mod tls;
mod token;
mod usage;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ipnet::IpNet;

use crate::clock::Clock;
use crate::registry::Snapshot;
use crate::store::{ChangeProbe, Location, Store};
use error::ApiError;
pub use listen::{Extras, Limits, ListenAddr, Listener, Peer};
use metrics::{Endpoint, Metrics, ROUTES};
use observe::Observer;
pub use usage::UsageWriter;

/// Request bodies larger than this are refused (a grant is about 1 KiB).
pub const BODY_LIMIT: usize = 16 * 1024;
/// Replay-cache entries kept at most: beyond this, new grants skip the in-memory first check
/// (the store's still decides) rather than let memory grow without bound.
const REPLAY_CAP: usize = 2_000_000;

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
}

struct Reader {
    store: Store,
    data_version: i64,
    probe: Option<ChangeProbe>,
    /// The store's WAL-index header, read just before the last check that found the shared
    /// snapshot current: while it is unchanged, nothing was committed since.
    seen: Option<[u8; 48]>,
}

/// On PostgreSQL, a replica serves from a snapshot at most this old: a refresher thread
/// confirms it (LISTEN/NOTIFY, and a generation poll every [`POLL`]); when it cannot (the
/// database or the connection is gone), checks fail closed with 503 once this much time has
/// passed since the last confirmation.
pub const MAX_STALENESS: Duration = Duration::from_secs(1);
/// How often the refresher reads the generation when no notification came.
pub const POLL: Duration = Duration::from_millis(50);

/// The snapshot every handler reads, and (PostgreSQL) when it was last known current.
struct Live {
    snapshot: RwLock<Arc<Snapshot>>,
    /// Milliseconds since `base` at which a generation read that started then found the
    /// snapshot current; only moves forward.
    confirmed: AtomicU64,
    base: Instant,
}

impl Live {
    fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Installs `fresh` unless a newer one is there already; returns the newest.
    fn install(&self, fresh: Snapshot) -> Arc<Snapshot> {
        let mut shared = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        // Two connections may reload at once: never replace a newer snapshot with an older.
        if fresh.generation >= shared.generation {
            *shared = Arc::new(fresh);
        }
        shared.clone()
    }

    fn confirm(&self, started: Instant) {
        let ms = started.duration_since(self.base).as_millis() as u64;
        self.confirmed.fetch_max(ms, Ordering::Relaxed);
    }

    fn age(&self) -> Duration {
        let now = self.base.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.confirmed.load(Ordering::Relaxed)))
    }
}

/// Everything the handlers share.
pub struct AppState {
    config: Config,
    clock: Clock,
    /// One per worker thread or so: on SQLite every check asks the store whether it
    /// changed, and one shared connection made the workers queue behind each other for it.
    /// On PostgreSQL only one, for the writes /revoke makes: checks never touch the database.
    readers: Vec<Mutex<Reader>>,
    postgres: bool,
    live: Arc<Live>,
    usage: UsageWriter,
    /// Replay key -> grant expiry: a fast first check for replays; the store's `used_grants`
    /// decides, across processes.
    replay: Mutex<HashMap<[u8; 16], i64>>,
    /// The admin API's store connection, when it is on.
    admin: Option<admin::AdminApi>,
    pub metrics: Arc<Metrics>,
    /// The SQLite store's file, for readiness checks.
    path: Option<std::path::PathBuf>,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    /// Opens the server's connections to the store and starts the usage writer (and, on
    /// PostgreSQL, the snapshot refresher).
    pub fn open(
        location: &Location,
        config: Config,
        clock: Clock,
    ) -> anyhow::Result<(SharedState, JoinHandle<()>)> {
        let postgres = location.is_postgres();
        let store = Store::connect(location)?;
        let now = clock.now();
        let base = Instant::now();
        let snapshot = Snapshot::load(&store, now, None)?;
        let loaded = snapshot.generation;
        let replay: HashMap<[u8; 16], i64> = store
            .live_used_grants(now)?
            .into_iter()
            .map(|g| (g.key, g.exp))
            .collect();
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
            // Unknown yet: the first check on each compares generations.
            readers.push(Mutex::new(Reader {
                probe: store.path().and_then(ChangeProbe::open),
                store,
                data_version: i64::MIN,
                seen: None,
            }));
        }
        let metrics = Arc::new(Metrics::new());
        let live = Arc::new(Live {
            snapshot: RwLock::new(Arc::new(snapshot)),
            confirmed: AtomicU64::new(0),
            base,
        });
        if postgres {
            tracing::info!(generation = loaded, "snapshot loaded");
            let refresher = Store::connect(location)?;
            refresher.listen()?;
            let live = live.clone();
            std::thread::Builder::new()
                .name("snapshot-refresher".into())
                .spawn(move || refresh(refresher, live, clock))
                .context("starting the snapshot refresher")?;
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
        let state = AppState {
            config,
            clock,
            readers,
            postgres,
            live,
            usage,
            replay: Mutex::new(replay),
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

    /// The current snapshot, reloaded first when the CLI (or anyone) changed the store. On
    /// PostgreSQL the refresher keeps it current, and a snapshot older than
    /// [`MAX_STALENESS`] is refused (503) rather than trusted.
    pub fn snapshot(&self) -> Result<Arc<Snapshot>, ApiError> {
        self.load_snapshot()
            .inspect_err(|_| self.metrics.store_error())
    }

    fn load_snapshot(&self) -> Result<Arc<Snapshot>, ApiError> {
        if self.postgres {
            let age = self.live.age();
            if age > MAX_STALENESS {
                return Err(ApiError::Unavailable(format!(
                    "the snapshot was last confirmed {} ms ago (limit {} ms): PostgreSQL or the notification connection is gone",
                    age.as_millis(),
                    MAX_STALENESS.as_millis()
                )));
            }
            return Ok(self.live.current());
        }
        let mut reader = self.reader();
        // Read before asking SQLite, so that a commit after this read changes it again.
        let header = reader.probe.as_ref().and_then(ChangeProbe::header);
        if header.is_some() && header == reader.seen {
            return Ok(self.live.current());
        }
        let dv = reader.store.data_version()?;
        if dv == reader.data_version {
            // Nothing committed since this connection last looked, and the shared snapshot
            // was current then and only moves forward.
            reader.seen = header;
            return Ok(self.live.current());
        }
        let seen = self.live.current();
        if reader.store.generation()? == seen.generation {
            reader.data_version = dv;
            reader.seen = header;
            return Ok(seen);
        }
        let fresh = Snapshot::load(&reader.store, self.now(), Some(&seen))?;
        self.metrics.snapshot_reloaded();
        tracing::debug!(
            generation = fresh.generation,
            "store changed; cache reloaded"
        );
        let newest = self.live.install(fresh);
        // Only now: a failed reload is retried on the next request.
        reader.data_version = dv;
        reader.seen = header;
        Ok(newest)
    }

    /// Runs a write on the reader connection; on PostgreSQL off the async workers (the
    /// driver blocks), and then reloads the snapshot, so that this replica's next check
    /// sees its own write without waiting for the notification.
    fn write(
        &self,
        f: impl FnOnce(&mut Store) -> crate::store::Result<()>,
    ) -> Result<(), ApiError> {
        let run = || -> Result<(), ApiError> {
            let mut reader = self.reader();
            f(&mut reader.store)?;
            if self.postgres {
                let started = Instant::now();
                let fresh = Snapshot::load(&reader.store, self.now(), Some(&self.live.current()))?;
                self.live.install(fresh);
                self.live.confirm(started);
            }
            // `PRAGMA data_version` does not move for a connection's own commits: without
            // this, the change would go unseen until some other connection wrote.
            reader.data_version = i64::MIN;
            Ok(())
        };
        if self.postgres {
            tokio::task::block_in_place(run)
        } else {
            run()
        }
    }

    /// Undoes `first_use` for a grant whose issuance was not recorded (the store failed), so
    /// that the client may retry it.
    fn forget_use(&self, key: [u8; 16]) {
        self.replay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }

    /// Records a grant's replay key; false when it was seen before and has not expired.
    fn first_use(&self, key: [u8; 16], exp: i64) -> bool {
        let now = self.now();
        let mut seen = self.replay.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= REPLAY_CAP {
            seen.retain(|_, e| *e >= now);
        }
        match seen.get(&key) {
            Some(e) if *e >= now => false,
            // Full of live grants: memory stays bounded and the store alone decides.
            _ if seen.len() >= REPLAY_CAP => true,
            _ => {
                seen.insert(key, exp);
                self.metrics.replay_set(seen.len());
                true
            }
        }
    }

    /// Whether the store's file is there and readable now (GET /readyz).
    /// For /readyz: a SQLite store opens and reads afresh (connections already open answer
    /// from their page cache, and would miss a store that has gone). On PostgreSQL the
    /// refresher reads the database every [`POLL`] anyway: the snapshot's age tells.
    fn store_reachable(&self) -> Result<(), ApiError> {
        if let Some(path) = &self.path {
            Store::check_readable(path).inspect_err(|_| self.metrics.store_error())?;
        }
        Ok(())
    }

    /// Notes that a personal access token was used: sent to the store at most once a minute.
    fn pat_used(&self, snap: &Snapshot, id: &str, now: i64) {
        if snap.pat_by_id(id).is_some_and(|e| e.claim_touch(now)) {
            self.usage.touch(id.to_owned(), now);
        }
    }

    /// Revokes a personal access token (POST /revoke).
    fn revoke_pat(&self, id: &str) -> Result<(), ApiError> {
        let now = self.now();
        self.write(|s| s.revoke_pat(id, now).map(|_| ()))
            .inspect_err(|_| self.metrics.store_error())
    }

    /// Writes a revoked token id (POST /revoke).
    fn revoke_token(&self, jti: &str, exp: i64) -> Result<(), ApiError> {
        let now = self.now();
        self.write(|s| s.revoke_token(jti, exp, now))
            .inspect_err(|_| self.metrics.store_error())
    }
}

/// The router: the token endpoint, the resource-server checks, metadata, health and
/// readiness, the API description and (unless served apart) the metrics.
pub fn app(state: SharedState) -> Router {
    let cors = || axum::middleware::from_fn_with_state(state.clone(), cors::layer);
    let mut router = if state.admin.is_some() {
        Router::new()
            .route(admin::PREFIX, axum::routing::any(admin::dispatch))
            .route(
                &format!("{}/{{*rest}}", admin::PREFIX),
                axum::routing::any(admin::dispatch),
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
                .layer(cors()),
            Endpoint::Introspect => post(check::introspect)
                .fallback(method_not_allowed)
                .layer(cors()),
            Endpoint::Revoke => post(check::revoke)
                .fallback(method_not_allowed)
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
    if !state.postgres {
        state.snapshot()?;
    }
    Ok(axum::Json(serde_json::json!({ "status": "ok" })).into_response())
}

/// Ready to serve: the store answers and the snapshot is current. 503 otherwise, so that a
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
    state.snapshot().map_err(unavailable)?;
    let mut resp = axum::Json(serde_json::json!({ "status": "ready" })).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Prometheus text format.
async fn metrics(State(state): State<SharedState>) -> Response {
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
    let snap = state.snapshot()?;
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
    let snap = state.snapshot()?;
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
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "introspection_endpoint_auth_methods_supported": ["bearer"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": ["read", "write"],
    });
    if let Some(url) = &snap.service_documentation {
        doc["service_documentation"] = url.as_str().into();
    }
    Ok(axum::Json(doc).into_response())
}

/// The PostgreSQL refresher: waits for a change notification (or [`POLL`]), reads the
/// generation, reloads the snapshot when it moved, and marks the snapshot confirmed as of
/// the moment the read began. Errors (the database gone) leave it unconfirmed, so checks
/// fail closed after [`MAX_STALENESS`]; the store reconnects on the next round by itself.
/// Ends when the server's state is gone.
fn refresh(store: Store, live: Arc<Live>, clock: Clock) {
    let mut failing = false;
    while Arc::strong_count(&live) > 1 {
        let started = Instant::now();
        let round = || -> anyhow::Result<()> {
            let current = live.current();
            if store.generation()? != current.generation {
                let fresh = Snapshot::load(&store, clock.now(), Some(&current))?;
                // Info: on PostgreSQL this is the moment admin changes reach this replica.
                tracing::info!(
                    generation = fresh.generation,
                    "store changed; snapshot reloaded"
                );
                live.install(fresh);
            }
            Ok(())
        };
        match round() {
            Ok(()) => {
                live.confirm(started);
                if std::mem::take(&mut failing) {
                    tracing::info!("store reachable again; snapshot current");
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %format!("{e:#}"), "cannot refresh the snapshot; checks fail closed after {} ms", MAX_STALENESS.as_millis());
                }
                std::thread::sleep(POLL);
                continue;
            }
        }
        if let Err(e) = store.wait_for_change(POLL) {
            tracing::debug!(error = %e, "change notifications interrupted");
            std::thread::sleep(POLL);
        }
    }
}
