//! Reading requests: the client's address behind trusted proxies, access tokens from
//! headers and cookies, and strict form bodies.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::http::{HeaderMap, header};
use ipnet::IpNet;

use crate::server::error::ApiError;

/// The client address: the socket peer, or, when the peer is a trusted proxy, the rightmost
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |a: IpAddr| trusted.iter().any(|n| n.contains(&a));
    if !is_trusted(peer) {
        return peer;
    }
    let mut addr = peer;
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        // A hop we cannot read ends the walk: trust stops at the last address we could.
        let Ok(hop) = hop.parse::<IpAddr>() else {
            break;
        };
        addr = canonical(hop);
        if !is_trusted(addr) {
            break;
        }
    }
    addr
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
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(ApiError::invalid_request(format!(
                "Parameter '{}' given more than once",
                printable(&k)
            )));
        }
    }
    Ok(out)
}

/// A caller-supplied string made safe to echo in an error: printable, at most 64 chars.
pub fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

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

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            client_addr("9.9.9.9".parse().unwrap(), &h, &[]),
            "9.9.9.9".parse::<IpAddr>().unwrap()
        );
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
        assert_eq!(
            client_addr("127.0.0.1".parse().unwrap(), &h, &trusted),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        let junk = headers(&[("x-forwarded-for", "junk, 10.0.0.3")]);
        assert_eq!(
            client_addr("127.0.0.1".parse().unwrap(), &junk, &trusted),
            "10.0.0.3".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_addr(
                "::ffff:127.0.0.1".parse().unwrap(),
                &HeaderMap::new(),
                &trusted
            ),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
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
}
