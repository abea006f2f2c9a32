//! What every request leaves behind: its request id (taken from `X-Request-Id` or made up,
//! and echoed), its latency in the per-route histogram, and one access-log line.

use std::sync::Arc;
use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue, Method, Request, Response};
use ipnet::IpNet;

use crate::iprange::ClientAddr;
use crate::server::metrics::{Endpoint, Metrics};
use crate::server::request::{self, Peer};

pub const REQUEST_ID: &str = "x-request-id";
/// Longest request id taken from a caller; longer ones are replaced.
const MAX_ID: usize = 128;

/// Who the request was for, when a handler knows: put in the response's extensions (only
/// while the access log is on) for the log line.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: Option<String>,
    pub user: Option<String>,
}

/// Shared by every connection of a listener.
pub struct Observer {
    pub metrics: Arc<Metrics>,
    pub access_log: bool,
    pub trusted_proxies: Vec<IpNet>,
}

/// A request on its way: what the log line and the histogram need once it is answered.
pub struct Probe {
    start: Instant,
    endpoint: Endpoint,
    method: Method,
    id: HeaderValue,
    /// Only while the access log is on.
    client: Option<ClientAddr>,
}

impl Observer {
    pub fn begin<B>(&self, req: &Request<B>, peer: Peer) -> Probe {
        Probe {
            start: Instant::now(),
            endpoint: Endpoint::of(req.uri().path()),
            method: req.method().clone(),
            id: request_id(req.headers()),
            client: self
                .access_log
                .then(|| request::client_addr(peer, req.headers(), &self.trusted_proxies)),
        }
    }

    pub fn end<B>(&self, probe: Probe, resp: &mut Response<B>) {
        let took = probe.start.elapsed();
        self.metrics.request(probe.endpoint, took);
        if let Some(client) = probe.client {
            let caller = resp.extensions_mut().remove::<Caller>();
            let (key_id, user) = caller.map_or((None, None), |c| (c.key_id, c.user));
            tracing::info!(
                target: "tokenauth::access",
                method = %probe.method,
                path = probe.endpoint.route(),
                status = resp.status().as_u16(),
                latency_ms = millis(took),
                client = %client,
                key_id = key_id.as_deref(),
                user = user.as_deref(),
                request_id = probe.id.to_str().unwrap_or(""),
                "request"
            );
        }
        resp.headers_mut().insert(REQUEST_ID, probe.id);
    }
}

/// The caller's `X-Request-Id` when it is a sane one (1 to 128 characters of letters,
/// digits and `-_.:@+=/`), else a fresh random one: ids end up in logs, so nothing that
/// could forge or break a line is taken.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    let given = headers.get(REQUEST_ID).filter(|v| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_ID
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.:@+=/".contains(c))
    });
    match given {
        Some(v) => v.clone(),
        None => {
            // 32 hex digits written in place: no formatting machinery per request.
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let mut n = rand::random::<u128>();
            let mut id = [0u8; 32];
            for b in id.iter_mut().rev() {
                *b = HEX[(n & 0xf) as usize];
                n >>= 4;
            }
            HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        }
    }
}

/// A latency in milliseconds, to the microsecond: `0.277`, not `0.27708099999999997`.
fn millis(took: std::time::Duration) -> f64 {
    (took.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_logged_in_milliseconds_to_three_decimals() {
        use std::time::Duration;
        assert_eq!(millis(Duration::from_nanos(277_081)).to_string(), "0.277");
        assert_eq!(millis(Duration::from_nanos(277_500)).to_string(), "0.278");
        assert_eq!(millis(Duration::from_millis(1500)).to_string(), "1500");
        assert_eq!(
            millis(Duration::from_nanos(12_345_678)).to_string(),
            "12.346"
        );
        assert_eq!(millis(Duration::ZERO).to_string(), "0");
    }

    fn id_for(value: &[u8]) -> String {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_bytes(value).unwrap());
        request_id(&h).to_str().unwrap().to_owned()
    }

    #[test]
    fn sane_request_ids_are_kept_and_others_replaced() {
        assert_eq!(id_for(b"abc-123_x.y:z"), "abc-123_x.y:z");
        for bad in [
            &b"a b"[..],
            b"a\"b",
            b"{\"x\":1}",
            &[b'a'; 129][..],
            b"caf\xc3\xa9",
        ] {
            let id = id_for(bad);
            assert_eq!(id.len(), 32, "{bad:?} -> {id}");
            assert!(id.bytes().all(|c| c.is_ascii_hexdigit()));
        }
        let none = request_id(&HeaderMap::new());
        assert_eq!(none.len(), 32);
        assert_ne!(none, request_id(&HeaderMap::new()));
    }
}
