//! Reading requests: the client's address behind trusted proxies, access tokens from
//! headers and cookies, and strict form bodies.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use ipnet::IpNet;

use crate::iprange::ClientAddr;
use crate::server::BODY_LIMIT;
use crate::server::error::ApiError;

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tcp(SocketAddr),
    /// A local process on the Unix socket: only a proxy the socket's mode lets in.
    Unix,
}

/// The client address: the socket peer, or, when the peer is a trusted proxy (or on the Unix
/// socket), the rightmost `X-Forwarded-For` hop that is not itself a trusted proxy. Hops may
/// carry a port (`1.2.3.4:5555`, `[2001:db8::1]:443`), as some load balancers write them.
/// A hop that still cannot be read makes the client unknown: trust never falls back to the
/// proxy's own address, which would let any client pass as the proxy.
pub fn client_addr(peer: Peer, headers: &HeaderMap, trusted: &[IpNet]) -> ClientAddr {
    let is_trusted = |a: IpAddr| trusted.iter().any(|n| n.contains(&a));
    let mut addr = match peer {
        Peer::Tcp(a) if !is_trusted(canonical(a.ip())) => return ClientAddr::Ip(canonical(a.ip())),
        Peer::Tcp(a) => ClientAddr::Ip(canonical(a.ip())),
        // Only the local proxy can use the socket; without its header the client is unknown.
        Peer::Unix => ClientAddr::Unknown,
    };
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            tracing::warn!(
                "X-Forwarded-For from a trusted proxy is not ASCII; the client's address is unknown"
            );
            return ClientAddr::Unknown;
        };
        hops.extend(value.split(',').map(str::trim));
    }
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            tracing::warn!(
                hop = %printable(hop),
                "unreadable X-Forwarded-For hop from a trusted proxy; the client's address is unknown"
            );
            return ClientAddr::Unknown;
        };
        let ip = canonical(ip);
        addr = ClientAddr::Ip(ip);
        if !is_trusted(ip) {
            break;
        }
    }
    addr
}

/// One `X-Forwarded-For` entry: an address, with or without a port (`[v6]:port` for IPv6).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    hop.strip_prefix('[')?
        .strip_suffix(']')?
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// The access token, looked for in this order: `Authorization: Bearer`, the `token` cookie,
/// the `X-JWT-Auth-Token` header, `Authorization: JWT token="…"`.
pub fn extract_token(headers: &HeaderMap) -> Option<String> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if let Some((scheme, rest)) = auth.and_then(|a| a.split_once(' '))
        && scheme.eq_ignore_ascii_case("bearer")
        && !rest.trim().is_empty()
    {
        return Some(rest.trim().to_owned());
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(|(name, _)| *name == "token")
        .map(|(_, value)| value.trim_matches('"'))
        .find(|value| !value.is_empty())
        .map(str::to_owned);
    if cookie.is_some() {
        return cookie;
    }
    if let Some(t) = headers
        .get("x-jwt-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        && !t.is_empty()
    {
        return Some(t.to_owned());
    }
    let (scheme, rest) = auth?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("jwt") {
        return None;
    }
    let value = rest.trim().strip_prefix("token=")?;
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    (!value.is_empty()).then(|| value.to_owned())
}

/// Parses an `application/x-www-form-urlencoded` body, refusing other content types and
/// repeated parameters (RFC 6749 §3.1).
pub fn form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, ApiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ctype.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(ApiError::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    params(body)
}

/// The parameters of a query string or form body, each name at most once: with a repeat,
/// whoever reads the first and whoever reads the last disagree (`/auth?scope=write&scope=read`
/// let a read token through where a proxy asked for write), so a repeat is a 400
/// `invalid_request` naming the parameter.
pub fn params(input: &[u8]) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(input) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(ApiError::invalid_request(format!(
                "Parameter '{}' given more than once",
                printable(&k)
            )));
        }
    }
    Ok(out)
}

/// Reads a request body of at most [`BODY_LIMIT`] bytes, all of it within `timeout` of the
/// end of the head: a body that trickles in is cut off (408), however steadily it trickles.
pub async fn read_body(body: Body, timeout: Duration) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, BODY_LIMIT);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            format!("Request body is larger than {BODY_LIMIT} bytes"),
        )),
        Ok(Err(_)) => Err(ApiError::invalid_request("Could not read the request body")),
        Err(_) => Err(ApiError::status(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request",
            format!(
                "Request body not received within {} s",
                timeout.as_secs_f64()
            ),
        )),
    }
}

/// The caller's User-Agent, for the usage log: at most 256 characters.
pub fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect())
}

pub use crate::text::printable;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn tcp(addr: &str) -> Peer {
        Peer::Tcp(std::net::SocketAddr::new(addr.parse().unwrap(), 40_000))
    }

    fn ip(addr: &str) -> ClientAddr {
        ClientAddr::Ip(addr.parse().unwrap())
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(client_addr(tcp("9.9.9.9"), &h, &[]), ip("9.9.9.9"));
        let junk = headers(&[("x-forwarded-for", "junk")]);
        assert_eq!(client_addr(tcp("9.9.9.9"), &junk, &[]), ip("9.9.9.9"));
    }

    #[test]
    fn trusted_proxies_yield_the_rightmost_untrusted_hop() {
        let trusted: Vec<IpNet> = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 1.2.3.4"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        assert_eq!(client_addr(tcp("127.0.0.1"), &h, &trusted), ip("1.2.3.4"));
        // Garbage left of the client is never reached.
        let junk = headers(&[("x-forwarded-for", "junk, 1.2.3.4, 10.0.0.3")]);
        assert_eq!(
            client_addr(tcp("127.0.0.1"), &junk, &trusted),
            ip("1.2.3.4")
        );
        assert_eq!(
            client_addr(tcp("::ffff:127.0.0.1"), &HeaderMap::new(), &trusted),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn hops_with_ports_are_read() {
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        for (xff, want) in [
            ("1.2.3.4:5555", "1.2.3.4"),
            ("1.2.3.4, 5.6.7.8:80", "5.6.7.8"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("2001:db8::2", "2001:db8::2"),
            ("9.9.9.9, 127.0.0.1:1234", "9.9.9.9"),
        ] {
            let h = headers(&[("x-forwarded-for", xff)]);
            assert_eq!(
                client_addr(tcp("127.0.0.1"), &h, &trusted),
                ip(want),
                "{xff}"
            );
        }
    }

    /// Each of these was accepted as the proxy's own address before: with a key limited to
    /// 127.0.0.1, any client could pass.
    #[test]
    fn unreadable_hops_make_the_client_unknown_never_the_proxy() {
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        for xff in [
            "1.2.3.4, garbage",
            "garbage",
            "unknown",
            "1.2.3.4,,",
            "",
            "1.2.3.4:99999",
            "[1.2.3.4]:80",
            "fe80::1%eth0",
            "1.2.3.4 5.6.7.8",
        ] {
            let h = headers(&[("x-forwarded-for", xff)]);
            assert_eq!(
                client_addr(tcp("127.0.0.1"), &h, &trusted),
                ClientAddr::Unknown,
                "{xff:?}"
            );
        }
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"1.2.3.4\xff").unwrap(),
        );
        assert_eq!(
            client_addr(tcp("127.0.0.1"), &h, &trusted),
            ClientAddr::Unknown
        );
    }

    #[test]
    fn the_unix_socket_is_a_trusted_proxy() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(client_addr(Peer::Unix, &h, &[]), ip("1.2.3.4"));
        assert_eq!(
            client_addr(Peer::Unix, &HeaderMap::new(), &[]),
            ClientAddr::Unknown
        );
        let bad = headers(&[("x-forwarded-for", "nonsense")]);
        assert_eq!(client_addr(Peer::Unix, &bad, &[]), ClientAddr::Unknown);
    }

    #[test]
    fn tokens_are_found_in_the_documented_order() {
        let all = headers(&[
            ("authorization", "Bearer a"),
            ("cookie", "x=1; token=b"),
            ("x-jwt-auth-token", "c"),
        ]);
        assert_eq!(extract_token(&all).as_deref(), Some("a"));
        let no_bearer = headers(&[
            ("authorization", "JWT token=\"d\""),
            ("cookie", "token=b"),
            ("x-jwt-auth-token", "c"),
        ]);
        assert_eq!(extract_token(&no_bearer).as_deref(), Some("b"));
        assert_eq!(
            extract_token(&headers(&[
                ("authorization", "JWT token=\"d\""),
                ("x-jwt-auth-token", "c")
            ]))
            .as_deref(),
            Some("c")
        );
        assert_eq!(
            extract_token(&headers(&[("authorization", "JWT token=\"d\"")])).as_deref(),
            Some("d")
        );
        assert_eq!(
            extract_token(&headers(&[("authorization", "Basic Zm9vOmJhcg==")])),
            None
        );
        assert_eq!(
            extract_token(&headers(&[("authorization", "Bearer ")])),
            None
        );
    }

    /// Found by the `token_extraction` fuzz target: a quoted empty cookie was taken as an
    /// empty token (and hid a later source).
    #[test]
    fn empty_quoted_cookies_are_not_tokens() {
        assert_eq!(extract_token(&headers(&[("cookie", "token=\"\"")])), None);
        assert_eq!(
            extract_token(&headers(&[("cookie", "token=\"\"; token=e")])).as_deref(),
            Some("e")
        );
        assert_eq!(
            extract_token(&headers(&[
                ("cookie", "token=\"\""),
                ("x-jwt-auth-token", "c")
            ]))
            .as_deref(),
            Some("c")
        );
    }

    #[test]
    fn forms_refuse_duplicates_and_other_types() {
        let ok = headers(&[(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )]);
        assert_eq!(form(&ok, b"a=1&b=%20").unwrap()["b"], " ");
        assert!(form(&ok, b"a=1&a=2").is_err());
        assert!(form(&headers(&[("content-type", "application/json")]), b"{}").is_err());
        assert!(form(&HeaderMap::new(), b"a=1").is_err());
    }

    #[test]
    fn params_refuse_a_name_given_twice_however_it_is_spelled() {
        assert_eq!(params(b"scope=read&x=").unwrap()["x"], "");
        assert!(params(b"").unwrap().is_empty());
        for query in [
            &b"scope=write&scope=read"[..],
            b"scope=read&scope=read",
            b"scope&scope=read",
            b"sc%6Fpe=write&scope=read",
            b"a=1&scope=write&b=2&scope=",
        ] {
            let Err(ApiError::OAuth {
                status,
                error,
                description,
            }) = params(query)
            else {
                panic!("{} accepted", String::from_utf8_lossy(query));
            };
            assert_eq!(
                (status, error),
                (StatusCode::BAD_REQUEST, "invalid_request")
            );
            assert_eq!(description, "Parameter 'scope' given more than once");
        }
    }
}
