//! Rate limits: a token bucket per client address and one per credential (service key or
//! personal access token) on the routes that cost work or writes: /token, /revoke,
//! /introspect and the admin API. `serve --rate-limit` tunes or turns them off.

use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::iprange::ClientAddr;
use crate::server::SharedState;
use crate::server::request::{Peer, client_addr};

/// One bucket's rule: `count` requests per `per`, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub count: u32,
    pub per: Duration,
    pub burst: u32,
}

impl Rule {
    fn quota(&self) -> Quota {
        // Parsing keeps both non-zero; the period is per.count, at least a nanosecond.
        let period = (self.per / self.count.max(1)).max(Duration::from_nanos(1));
        Quota::with_period(period)
            .expect("a non-zero period")
            .allow_burst(NonZeroU32::new(self.burst.max(1)).expect("non-zero"))
    }

    fn unit(&self) -> &'static str {
        match self.per.as_secs() {
            1 => "second",
            60 => "minute",
            _ => "hour",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} per {} (bursts of {})",
            self.count,
            self.unit(),
            self.burst
        )
    }
}

/// What `--rate-limit` set: each bucket's rule, or none (off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub address: Option<Rule>,
    pub credential: Option<Rule>,
}

impl Default for RateLimits {
    /// Far above what a CI fleet sends: an exchange per job, and one per token lifetime.
    fn default() -> RateLimits {
        RateLimits {
            address: Some(Rule {
                count: 100,
                per: Duration::from_secs(1),
                burst: 1000,
            }),
            credential: Some(Rule {
                count: 50,
                per: Duration::from_secs(1),
                burst: 500,
            }),
        }
    }
}

impl RateLimits {
    /// Applies one `--rate-limit` value: `off`, `default`, `address=off`, `key=off`,
    /// `address=COUNT/UNIT[:BURST]` or `key=COUNT/UNIT[:BURST]` (UNIT: s, min or h;
    /// BURST defaults to ten times COUNT).
    pub fn apply(&mut self, spec: &str) -> Result<(), String> {
        let spec = spec.trim();
        if spec == "default" {
            *self = RateLimits::default();
            return Ok(());
        }
        if spec == "off" {
            *self = RateLimits {
                address: None,
                credential: None,
            };
            return Ok(());
        }
        let fix = "use off, default, address=COUNT/UNIT[:BURST] or key=COUNT/UNIT[:BURST], e.g. address=100/s:1000 or key=off";
        let Some((which, rule)) = spec.split_once('=') else {
            return Err(format!("'{spec}' is not a rate limit; {fix}"));
        };
        let slot = match which.trim() {
            "address" => &mut self.address,
            "key" => &mut self.credential,
            other => {
                return Err(format!(
                    "'{other}' is not a rate-limit bucket (address or key); {fix}"
                ));
            }
        };
        *slot = match rule.trim() {
            "off" => None,
            rule => Some(rule.parse().map_err(|e| format!("{e}; {fix}"))?),
        };
        Ok(())
    }
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(s: &str) -> Result<Rule, String> {
        let (rate, burst) = match s.split_once(':') {
            Some((r, b)) => (r, Some(b)),
            None => (s, None),
        };
        let Some((count, unit)) = rate.split_once('/') else {
            return Err(format!("'{s}' has no unit (COUNT/s, COUNT/min or COUNT/h)"));
        };
        let positive = |what: &str, v: &str| -> Result<u32, String> {
            v.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{what} '{v}' in '{s}' is not a whole number above 0"))
        };
        let count = positive("count", count)?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => return Err(format!("unit '{other}' in '{s}' is not s, min or h")),
        };
        let burst = match burst {
            Some(b) => positive("burst", b)?,
            None => count.saturating_mul(10),
        };
        Ok(Rule { count, per, burst })
    }
}

/// Which bucket refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Address,
    Credential,
}

impl Bucket {
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Address => "address",
            Bucket::Credential => "key",
        }
    }
}

/// A refusal: which bucket, its rule, and when the next request would be let through.
#[derive(Debug, Clone)]
pub struct Limited {
    pub bucket: Bucket,
    pub rule: Rule,
    pub retry_after: Duration,
}

/// Buckets held at most per limiter. Past it, buckets back at full are swept away (at most
/// once a second); when a flood from very many addresses keeps more than this alive, every
/// caller shares one bucket until a sweep makes room. Memory stays bounded whatever callers
/// send.
const MAX_BUCKETS: usize = 100_000;

struct Keyed<K: Hash + Eq + Clone, C: Clock> {
    limiter: RateLimiter<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<C::Instant>>,
    rule: Rule,
    /// The shared bucket's key.
    overflow: K,
    started: C::Instant,
    /// When buckets were last swept, in nanoseconds since `started`.
    swept: AtomicU64,
}

impl<K: Hash + Eq + Clone, C: Clock> Keyed<K, C> {
    fn new(rule: Rule, overflow: K, clock: C) -> Keyed<K, C> {
        let started = clock.now();
        Keyed {
            limiter: RateLimiter::dashmap_with_clock(rule.quota(), clock),
            rule,
            overflow,
            started,
            swept: AtomicU64::new(0),
        }
    }

    fn check(&self, key: &K, bucket: Bucket) -> Result<(), Limited> {
        let mut key = key;
        if self.limiter.len() >= MAX_BUCKETS {
            let since = u64::from(self.limiter.clock().now().duration_since(self.started));
            let last = self.swept.load(Ordering::Relaxed);
            if since.saturating_sub(last) >= 1_000_000_000
                && self
                    .swept
                    .compare_exchange(last, since, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.limiter.retain_recent();
                self.limiter.shrink_to_fit();
            }
            if self.limiter.len() >= MAX_BUCKETS {
                key = &self.overflow;
            }
        }
        self.limiter.check_key(key).map_err(|not_until| Limited {
            bucket,
            rule: self.rule,
            retry_after: not_until.wait_time_from(self.limiter.clock().now()),
        })
    }
}

/// The server's buckets.
pub struct Limiter<C: Clock = DefaultClock> {
    address: Option<Keyed<IpAddr, C>>,
    credential: Option<Keyed<String, C>>,
}

impl Limiter {
    pub fn new(limits: RateLimits) -> Limiter {
        Limiter::with_clock(limits, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limiter<C> {
    pub fn with_clock(limits: RateLimits, clock: C) -> Limiter<C> {
        Limiter {
            address: limits
                .address
                .map(|r| Keyed::new(r, IpAddr::V6(Ipv6Addr::UNSPECIFIED), clock.clone())),
            credential: limits
                .credential
                .map(|r| Keyed::new(r, String::new(), clock.clone())),
        }
    }

    /// Takes a token from the caller's address bucket. IPv6 callers are counted by their
    /// /64 (one host usually holds the whole prefix); callers whose address is unknown
    /// share one bucket.
    pub fn address(&self, addr: ClientAddr) -> Result<(), Limited> {
        let Some(keyed) = &self.address else {
            return Ok(());
        };
        let ip = match addr {
            ClientAddr::Ip(IpAddr::V6(v6)) => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            ClientAddr::Ip(v4) => v4,
            ClientAddr::Unknown => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        };
        keyed.check(&ip, Bucket::Address)
    }

    /// Takes a token from a credential's bucket: a key id or a personal access token id,
    /// once the caller has proved it holds it (so nobody can drain another's bucket).
    pub fn credential(&self, id: &str) -> Result<(), Limited> {
        match &self.credential {
            Some(keyed) => keyed.check(&id.to_owned(), Bucket::Credential),
            None => Ok(()),
        }
    }
}

/// Middleware: the address bucket, before the route does any work.
pub async fn by_address(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    request: Request,
    next: Next,
) -> Response {
    let addr = client_addr(peer, request.headers(), &state.config.trusted_proxies);
    match state.limiter.address(addr) {
        Ok(()) => next.run(request).await,
        Err(limited) => state.rate_limited(limited).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn ip(s: &str) -> ClientAddr {
        ClientAddr::Ip(s.parse().unwrap())
    }

    fn limits(spec: &str) -> RateLimits {
        let mut l = RateLimits::default();
        for part in spec.split(' ') {
            l.apply(part).unwrap();
        }
        l
    }

    #[test]
    fn specs_parse_with_units_and_bursts_and_name_the_fix_when_wrong() {
        let l = limits("address=5/s:7 key=30/min");
        assert_eq!(
            l.address,
            Some(Rule {
                count: 5,
                per: Duration::from_secs(1),
                burst: 7
            })
        );
        assert_eq!(
            l.credential,
            Some(Rule {
                count: 30,
                per: Duration::from_secs(60),
                burst: 300
            })
        );
        assert_eq!(limits("key=off").credential, None);
        assert_eq!(
            limits("off"),
            RateLimits {
                address: None,
                credential: None
            }
        );
        for bad in [
            "address",
            "address=0/s",
            "address=5",
            "address=5/d",
            "key=5/s:0",
            "ip=5/s",
            "address=-1/s",
        ] {
            let e = RateLimits::default().apply(bad).unwrap_err();
            assert!(e.contains("address=COUNT/UNIT"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_burst_is_served_then_refused_with_the_wait_and_refilled_as_time_passes() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(limits("address=2/s:3"), clock.clone());
        for _ in 0..3 {
            l.address(ip("10.0.0.1")).unwrap();
        }
        let refused = l.address(ip("10.0.0.1")).unwrap_err();
        assert_eq!(refused.bucket, Bucket::Address);
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        // Another address has its own bucket.
        l.address(ip("10.0.0.2")).unwrap();
        clock.advance(Duration::from_millis(500));
        l.address(ip("10.0.0.1")).unwrap();
        assert!(l.address(ip("10.0.0.1")).is_err());
    }

    #[test]
    fn ipv6_hosts_are_counted_by_their_64_and_unknown_callers_share_a_bucket() {
        let l = Limiter::with_clock(limits("address=1/h:1"), FakeRelativeClock::default());
        l.address(ip("2001:db8:1:2::1")).unwrap();
        assert!(l.address(ip("2001:db8:1:2:ffff::9")).is_err());
        l.address(ip("2001:db8:1:3::1")).unwrap();
        l.address(ClientAddr::Unknown).unwrap();
        assert!(l.address(ClientAddr::Unknown).is_err());
    }

    #[test]
    fn credentials_have_their_own_buckets_and_off_lets_everything_through() {
        let l = Limiter::with_clock(
            limits("key=1/h:2 address=off"),
            FakeRelativeClock::default(),
        );
        l.credential("k1").unwrap();
        l.credential("k1").unwrap();
        let refused = l.credential("k1").unwrap_err();
        assert_eq!(refused.bucket, Bucket::Credential);
        assert_eq!(refused.retry_after, Duration::from_secs(3600));
        l.credential("k2").unwrap();
        for _ in 0..10_000 {
            l.address(ip("10.0.0.1")).unwrap();
        }
    }

    #[test]
    fn a_flood_from_many_addresses_keeps_the_buckets_bounded() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(limits("address=1/s:1"), clock.clone());
        for i in 0..(MAX_BUCKETS as u32 + 5_000) {
            let _ = l.address(ClientAddr::Ip(IpAddr::V4(i.into())));
        }
        let keyed = l.address.as_ref().unwrap();
        assert!(
            keyed.limiter.len() <= MAX_BUCKETS + 1,
            "{}",
            keyed.limiter.len()
        );
        // Once the buckets are full again a sweep makes room, and callers get their own.
        clock.advance(Duration::from_secs(2));
        l.address(ip("192.0.2.1")).unwrap();
        assert!(keyed.limiter.len() < 10, "{}", keyed.limiter.len());
        assert!(l.address(ip("192.0.2.1")).is_err());
        l.address(ip("192.0.2.2")).unwrap();
    }
}
