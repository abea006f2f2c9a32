//! Prometheus metrics (`GET /metrics`): what is counted, under which bounded labels, and the
//! text rendering. Every label value is one of a fixed set of names written here, never
//! anything a caller sent. The handles used on every request are made at start, so that
//! counting is an atomic add: no lock, no allocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::access_token::Invalid;

/// The media type of the rendering (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The HTTP endpoints, by route template: what the latency histograms and the access log
/// name. `Admin` is every path of the admin API (`serve --admin-api`), `Unmatched` every path
/// no route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Token,
    Introspect,
    Revoke,
    Auth,
    Metadata,
    MetadataPath,
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    Admin,
    Unmatched,
}

/// The label of every admin API path.
const ADMIN_ROUTE: &str = "/admin/v1/*";

/// The route templates the router serves, as the OpenAPI document spells them.
pub const ROUTES: [(Endpoint, &str); 10] = [
    (Endpoint::Token, "/token"),
    (Endpoint::Introspect, "/introspect"),
    (Endpoint::Revoke, "/revoke"),
    (Endpoint::Auth, "/auth"),
    (
        Endpoint::Metadata,
        "/.well-known/oauth-authorization-server",
    ),
    (
        Endpoint::MetadataPath,
        "/.well-known/oauth-authorization-server/{issuer_path}",
    ),
    (Endpoint::Healthz, "/healthz"),
    (Endpoint::Readyz, "/readyz"),
    (Endpoint::Metrics, "/metrics"),
    (Endpoint::OpenApi, "/openapi.json"),
];

/// The routes, then the admin API, then `unmatched`.
const ENDPOINTS: usize = ROUTES.len() + 2;

impl Endpoint {
    /// The endpoint serving `path` (as the router would route it).
    pub fn of(path: &str) -> Endpoint {
        const META: &str = "/.well-known/oauth-authorization-server";
        match path {
            "/token" => Endpoint::Token,
            "/introspect" => Endpoint::Introspect,
            "/revoke" => Endpoint::Revoke,
            "/auth" => Endpoint::Auth,
            META => Endpoint::Metadata,
            "/healthz" => Endpoint::Healthz,
            "/readyz" => Endpoint::Readyz,
            "/metrics" => Endpoint::Metrics,
            "/openapi.json" => Endpoint::OpenApi,
            p if p
                .strip_prefix(META)
                .is_some_and(|r| r.len() > 1 && r.starts_with('/')) =>
            {
                Endpoint::MetadataPath
            }
            p if p == "/admin/v1" || p.starts_with("/admin/v1/") => Endpoint::Admin,
            _ => Endpoint::Unmatched,
        }
    }

    pub fn route(self) -> &'static str {
        label(self.index())
    }

    fn index(self) -> usize {
        match self {
            Endpoint::Admin => ROUTES.len(),
            Endpoint::Unmatched => ROUTES.len() + 1,
            e => ROUTES
                .iter()
                .position(|(r, _)| *r == e)
                .unwrap_or(ROUTES.len() + 1),
        }
    }
}

/// The label naming why a token was refused: the variant, never its text.
pub fn invalid_reason(invalid: &Invalid) -> &'static str {
    match invalid.reason() {
        Invalid::Malformed(_) => "malformed",
        Invalid::Expired => "expired",
        Invalid::BadSignature => "bad_signature",
        Invalid::Revoked => "token_revoked",
        Invalid::KeyRevoked => "key_revoked",
        Invalid::KeyExpired => "key_expired",
        Invalid::UnknownKey => "unknown_key",
        Invalid::TrustRemoved => "trust_removed",
        Invalid::TrustExpired => "trust_expired",
        Invalid::UserDisabled(_) => "user_disabled",
        Invalid::AddressNotAllowed(_) | Invalid::AddressUnknown => "address_not_allowed",
        Invalid::InsufficientScope(_) => "insufficient_scope",
        Invalid::OriginNotAllowed(_) => "origin_not_allowed",
        Invalid::MalformedPat(_) => "malformed_pat",
        Invalid::UnknownPat => "unknown_pat",
        Invalid::PatRevoked => "pat_revoked",
        Invalid::PatRotated => "pat_rotated",
        Invalid::Pat { .. } => "other",
    }
}

/// A histogram whose buckets are atomics (prometheus-client's own takes a lock on every
/// observation). Values are whole units (microseconds, rows); `scale` turns them into what
/// is exported (seconds, rows).
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramInner>);

#[derive(Debug)]
struct HistogramInner {
    /// Upper bounds in exported units; a last, unbounded bucket follows.
    bounds: &'static [f64],
    scale: f64,
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64], scale: f64) -> Histogram {
        Histogram(Arc::new(HistogramInner {
            bounds,
            scale,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }))
    }

    pub fn observe(&self, units: u64) {
        let h = &self.0;
        let value = units as f64 * h.scale;
        let i = h
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(h.bounds.len());
        h.counts[i].fetch_add(1, Ordering::Relaxed);
        h.sum.fetch_add(units, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let h = &self.0;
        // The encoder accumulates.
        let buckets: Vec<(f64, u64)> = h
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(h.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = h.sum.load(Ordering::Relaxed) as f64 * h.scale;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0,
];
const BATCH_BOUNDS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
const MICROS: f64 = 1e-6;

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    issued: Counter,
    refused: Family<Labels2, Counter>,
    /// Good tokens at /auth and /introspect: counted on every check, so made at start.
    valid: [Counter; 2],
    validations: Family<Labels2, Counter>,
    latency: Vec<Histogram>,
    registry_loads: Counter,
    feed_entries: Counter,
    registry_entries: Family<Labels1, Gauge>,
    registry_misses: Family<Labels1, Counter>,
    usage_batch: Histogram,
    usage_commit: Histogram,
    replay_set: Gauge,
    store_errors: Family<Labels1, Counter>,
    rate_limited: Family<Labels1, Counter>,
    refusals_logged: Counter,
    oidc_key_fetches: Counter,
    /// What the key cache had counted at the last scrape.
    oidc_key_fetches_seen: std::sync::atomic::AtomicU64,
}

/// Which check a validation was: /auth or /introspect.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    Auth,
    Introspect,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::Auth => "auth",
            Check::Introspect => "introspect",
        }
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tokenauth");
        registry.register(
            "build",
            "The running build: its version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        let issued = Counter::default();
        registry.register(
            "tokens_issued",
            "Access tokens issued at /token",
            issued.clone(),
        );
        let refused = Family::<Labels2, Counter>::default();
        registry.register(
            "token_refusals",
            "Requests at /token refused, by OAuth error code and reason",
            refused.clone(),
        );
        let validations = Family::<Labels2, Counter>::default();
        registry.register(
            "validations",
            "Tokens checked at /auth (the caller's) and /introspect (the one asked about), by outcome",
            validations.clone(),
        );
        let valid = [Check::Auth, Check::Introspect].map(|c| {
            validations
                .get_or_create(&[("endpoint", c.name()), ("outcome", "valid")])
                .clone()
        });
        let latency: Vec<Histogram> = (0..ENDPOINTS)
            .map(|_| Histogram::new(LATENCY_BOUNDS, MICROS))
            .collect();
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's head to its response, by route template",
            Latencies(latency.clone()),
        );
        let registry_loads = Counter::default();
        registry.register(
            "registry_loads",
            "Times the in-memory registry was loaded whole: at start, after falling behind the change feed, or after store copy replaced the store",
            registry_loads.clone(),
        );
        let feed_entries = Counter::default();
        registry.register(
            "feed_entries_applied",
            "Change-feed entries applied to the in-memory registry",
            feed_entries.clone(),
        );
        let registry_entries = Family::<Labels1, Gauge>::default();
        registry.register(
            "registry_entries",
            "What the in-memory registry holds, by kind: users, live keys and personal access tokens, revoked token ids",
            registry_entries.clone(),
        );
        let registry_misses = Family::<Labels1, Counter>::default();
        registry.register(
            "registry_misses",
            "Keys and tokens a check asked for that the registry does not hold, by how they were answered: from the store (found, absent), from the cache of revoked and expired ones (cached), or not looked up because lookups were over their rate (limited)",
            registry_misses.clone(),
        );
        let usage_batch = Histogram::new(BATCH_BOUNDS, 1.0);
        registry.register(
            "usage_batch_rows",
            "Rows per usage-log commit",
            usage_batch.clone(),
        );
        let usage_commit = Histogram::new(LATENCY_BOUNDS, MICROS);
        registry.register(
            "usage_commit_duration_seconds",
            "Time one usage-log commit took",
            usage_commit.clone(),
        );
        let replay_set = Gauge::default();
        registry.register(
            "replay_set_size",
            "Grants held in the in-memory replay set",
            replay_set.clone(),
        );
        let store_errors = Family::<Labels1, Counter>::default();
        registry.register(
            "store_errors",
            "Store operations that failed, by kind: unavailable (PostgreSQL out of reach), unwritable (disk full or read-only; tokens are not issued until fixed), other",
            store_errors.clone(),
        );
        let rate_limited = Family::<Labels1, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests answered 429, by the bucket that was empty: address or key",
            rate_limited.clone(),
        );
        let oidc_key_fetches = Counter::default();
        registry.register(
            "oidc_key_fetches",
            "Fetches of trust issuers' discovery documents and JWKS, successful or not",
            oidc_key_fetches.clone(),
        );
        let refusals_logged = Counter::default();
        registry.register(
            "refusals_counted",
            "Refusals counted in the usage log (one row per kind and minute; this counts each)",
            refusals_logged.clone(),
        );
        // Made at start so that an alert on them sees 0, not nothing.
        for kind in ["unavailable", "unwritable", "other"] {
            let _ = store_errors.get_or_create(&[("kind", kind)]);
        }
        for bucket in ["address", "key"] {
            let _ = rate_limited.get_or_create(&[("bucket", bucket)]);
        }
        Metrics {
            registry,
            issued,
            refused,
            valid,
            validations,
            latency,
            registry_loads,
            feed_entries,
            registry_entries,
            registry_misses,
            usage_batch,
            usage_commit,
            replay_set,
            store_errors,
            rate_limited,
            refusals_logged,
            oidc_key_fetches,
            oidc_key_fetches_seen: Default::default(),
        }
    }

    pub fn issued(&self) {
        self.issued.inc();
    }

    /// A refusal at /token: `error` is the response's OAuth code, `reason` one of
    /// [`refusal_reason`]'s names.
    pub fn refused(&self, error: &'static str, reason: &'static str) {
        self.refused
            .get_or_create(&[("error", error), ("reason", reason)])
            .inc();
    }

    pub fn valid(&self, check: Check) {
        self.valid[check as usize].inc();
    }

    pub fn invalid(&self, check: Check, outcome: &'static str) {
        self.validations
            .get_or_create(&[("endpoint", check.name()), ("outcome", outcome)])
            .inc();
    }

    pub fn request(&self, endpoint: Endpoint, took: Duration) {
        self.latency[endpoint.index()].observe_duration(took);
    }

    /// The registry was loaded whole.
    pub fn registry_loaded(&self, registry: &crate::registry::Registry) {
        self.registry_loads.inc();
        self.registry_sized(registry);
    }

    pub fn registry_sized(&self, registry: &crate::registry::Registry) {
        let (users, keys, pats, revoked) = registry.counts();
        for (kind, n) in [
            ("users", users),
            ("keys", keys),
            ("pats", pats),
            ("revoked_tokens", revoked),
        ] {
            self.registry_entries
                .get_or_create(&[("kind", kind)])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn feed_applied(&self, entries: usize) {
        self.feed_entries.inc_by(entries as u64);
    }

    /// A key or token not in the registry: `outcome` is found, absent, cached or limited.
    pub fn registry_miss(&self, outcome: &'static str) {
        self.registry_misses
            .get_or_create(&[("outcome", outcome)])
            .inc();
    }

    pub fn usage_committed(&self, rows: usize, took: Duration) {
        self.usage_batch.observe(rows as u64);
        self.usage_commit.observe_duration(took);
    }

    pub fn replay_set(&self, size: usize) {
        self.replay_set.set(i64::try_from(size).unwrap_or(i64::MAX));
    }

    /// A store operation failed: `kind` is unavailable, unwritable or other.
    pub fn store_error(&self, kind: &'static str) {
        self.store_errors.get_or_create(&[("kind", kind)]).inc();
    }

    pub fn rate_limited(&self, bucket: &'static str) {
        self.rate_limited.get_or_create(&[("bucket", bucket)]).inc();
    }

    /// The key cache's fetch count now (read at each scrape).
    pub fn oidc_key_fetches(&self, total: u64) {
        use std::sync::atomic::Ordering;
        let before = self.oidc_key_fetches_seen.swap(total, Ordering::Relaxed);
        self.oidc_key_fetches.inc_by(total.saturating_sub(before));
    }

    pub fn refusal_counted(&self) {
        self.refusals_logged.inc();
    }

    /// The text rendering for a scrape.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// The per-endpoint latency histograms as one metric with an `endpoint` label.
#[derive(Debug)]
struct Latencies(Vec<Histogram>);

/// The endpoint label of latency slot `i`.
fn label(i: usize) -> &'static str {
    match ROUTES.get(i) {
        Some((_, route)) => route,
        None if i == ROUTES.len() => ADMIN_ROUTE,
        None => "unmatched",
    }
}

impl TypedMetric for Latencies {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latencies {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (i, h) in self.0.iter().enumerate() {
            let labels = [("endpoint", label(i))];
            h.encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The bounded reason label of a refusal at /token, from its description. Unknown wording
/// lands in `other`: the label set stays fixed whatever the text says.
pub fn refusal_reason(error: &str, description: &str) -> &'static str {
    let d = description;
    let starts = |p: &str| d.starts_with(p);
    match error {
        "unsupported_grant_type" => return "grant_type",
        "invalid_scope" => return "scope",
        "invalid_client" => return "client_auth",
        "server_error" => return "internal",
        "temporarily_unavailable" => return "unavailable",
        _ => {}
    }
    if starts("Missing parameter")
        || starts("Parameter '")
        || starts("Content-Type")
        || starts("Request body")
        || starts("Could not read")
    {
        "request"
    } else if starts("No trust relationship") || starts("No key or trust relationship") {
        "unknown_trust"
    } else if starts("The signing keys of") {
        "issuer_keys"
    } else if starts("The ID token")
        || starts("Claim '")
        || starts("trust '")
        || starts("The trust")
        || starts("This trust")
    {
        "id_token"
    } else if starts("Malformed assertion") || starts("Claim ") || starts("Invalid token type") {
        "malformed"
    } else if starts("Missing claim") {
        "missing_claim"
    } else if starts("Algorithm") || starts("Unsupported critical") {
        "algorithm"
    } else if starts("No associated key") {
        "unknown_key"
    } else if starts("Invalid signature") {
        "bad_signature"
    } else if starts("Key has been revoked") {
        "key_revoked"
    } else if starts("Key has expired") {
        "key_expired"
    } else if starts("Signature has expired") {
        "expired"
    } else if starts("Grant expires more than") || starts("JWT was issued") || d.contains("(nbf)") {
        "time"
    } else if starts("Invalid audience") {
        "audience"
    } else if starts("User '") && d.ends_with("is disabled") {
        "user_disabled"
    } else if starts("Impersonation") || starts("Unknown subject") {
        "impersonation"
    } else if d.contains("already been used") || d.contains("used before") {
        "replay"
    } else if starts("This key has") {
        "key_grant_share"
    } else if d.contains("requires one") {
        "jti_required"
    } else if starts("Origin ") {
        "origin_not_allowed"
    } else if starts("Address ") || starts("The client's address") {
        "address_not_allowed"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_route_templates_never_raw_paths() {
        assert_eq!(Endpoint::of("/token"), Endpoint::Token);
        assert_eq!(
            Endpoint::of("/.well-known/oauth-authorization-server/tenant/a"),
            Endpoint::MetadataPath
        );
        assert_eq!(
            Endpoint::of("/.well-known/oauth-authorization-server/"),
            Endpoint::Unmatched
        );
        assert_eq!(Endpoint::of("/token/eyJhbGciOi"), Endpoint::Unmatched);
        assert_eq!(Endpoint::Unmatched.route(), "unmatched");
        // The admin API's paths hold ids: one label for them all.
        assert_eq!(
            Endpoint::of("/admin/v1/keys/abc/revoke").route(),
            "/admin/v1/*"
        );
        assert_eq!(Endpoint::of("/admin/v1"), Endpoint::Admin);
        assert_eq!(Endpoint::of("/admin/v10"), Endpoint::Unmatched);
        for (e, route) in ROUTES {
            assert_eq!(e.route(), route);
            if !route.contains('{') {
                assert_eq!(Endpoint::of(route), e);
            }
        }
    }

    #[test]
    fn histograms_count_into_the_right_bucket_and_render() {
        let m = Metrics::new();
        m.request(Endpoint::Auth, Duration::from_micros(300));
        m.request(Endpoint::Auth, Duration::from_secs(9));
        m.usage_committed(3, Duration::from_millis(2));
        let text = m.render();
        assert!(
            text.contains(
                "tokenauth_http_request_duration_seconds_bucket{endpoint=\"/auth\",le=\"0.0005\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "tokenauth_http_request_duration_seconds_bucket{endpoint=\"/auth\",le=\"+Inf\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("tokenauth_http_request_duration_seconds_count{endpoint=\"/auth\"} 2")
        );
        assert!(
            text.contains("tokenauth_usage_batch_rows_bucket{le=\"4\"} 1"),
            "{text}"
        );
        assert!(text.contains("tokenauth_build_info{version=\""), "{text}");
    }

    #[test]
    fn refusal_reasons_come_from_a_fixed_set() {
        assert_eq!(
            refusal_reason("invalid_grant", "Invalid signature"),
            "bad_signature"
        );
        assert_eq!(
            refusal_reason("invalid_grant", "Algorithm 'HS256' is not allowed; …"),
            "algorithm"
        );
        assert_eq!(
            refusal_reason("invalid_grant", "Signature has expired"),
            "expired"
        );
        assert_eq!(
            refusal_reason("invalid_request", "Missing parameter: assertion"),
            "request"
        );
        assert_eq!(
            refusal_reason("invalid_grant", "anything \u{1b}[31m else"),
            "other"
        );
    }
}
