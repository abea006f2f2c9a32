//! `server::request::form` on arbitrary bodies (with the form content type set), the
//! `server::request::params` it shares with query strings (`/auth`, the admin API), and
//! `server::request::client_addr` on arbitrary `X-Forwarded-For` values: an untrusted peer's
//! header is never believed, and a trusted proxy is never taken for the client because a hop
//! could not be read.
//!
//! Input: `<x-forwarded-for value>\n…\n\n<body>`: the lines before the first blank line are
//! `X-Forwarded-For` header values (those `HeaderValue` accepts), the rest is the body; with
//! no blank line the whole input is the body.
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use tokenauth::iprange::ClientAddr;
use tokenauth::server::Peer;
use tokenauth::server::error::ApiError;
use tokenauth::server::request::{client_addr, form, params};

fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// A hop as the server should read it: an address, with or without a port.
fn hop(h: &str) -> Option<IpAddr> {
    h.parse::<IpAddr>()
        .ok()
        .or_else(|| h.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| h.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

fn check_form(ctype: &'static str, body: &[u8]) -> Option<HashMap<String, String>> {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    match form(&headers, body) {
        Ok(map) => {
            // What was accepted survives a round trip through the encoder.
            let encoded = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(map.iter())
                .finish();
            let again = form(&headers, encoded.as_bytes()).expect("re-encoded form refused");
            assert_eq!(again, map);
            Some(map)
        }
        Err(ApiError::OAuth {
            status,
            error,
            description,
        }) => {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(error, "invalid_request");
            assert!(description.starts_with("Parameter '"), "{description}");
            None
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let (xff, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (&data[..0], data),
    };

    let plain = check_form("application/x-www-form-urlencoded", body);
    let with_charset = check_form("Application/X-WWW-Form-URLEncoded; charset=UTF-8", body);
    assert_eq!(plain, with_charset);
    // As a query string: the same answer, and what is accepted names each parameter once.
    match (params(body), &plain) {
        (Ok(map), Some(form)) => {
            assert_eq!(&map, form);
            assert_eq!(url::form_urlencoded::parse(body).count(), map.len());
        }
        (Err(_), None) => {}
        (got, want) => panic!("params gave {got:?}, form {want:?}"),
    }

    let mut headers = HeaderMap::new();
    let mut hops = Vec::new();
    let mut unreadable = false;
    for line in xff.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            match value.to_str() {
                Ok(s) => {
                    for h in s.split(',').map(str::trim) {
                        match hop(h) {
                            Some(ip) => hops.push(canonical(ip)),
                            None => unreadable = true,
                        }
                    }
                }
                Err(_) => unreadable = true,
            }
            headers.append("x-forwarded-for", value);
        }
    }
    let trusted: Vec<IpNet> = ["127.0.0.0/8", "10.0.0.0/8", "::1/128", "fd00::/8"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    for peer in [
        "127.0.0.1",
        "::ffff:127.0.0.1",
        "::1",
        "9.9.9.9",
        "2001:db8::1",
    ] {
        let ip = canonical(peer.parse().unwrap());
        let peer = Peer::Tcp(SocketAddr::new(peer.parse().unwrap(), 1234));
        let addr = client_addr(peer, &headers, &trusted);
        if !trusted.iter().any(|n| n.contains(&ip)) {
            assert_eq!(
                addr,
                ClientAddr::Ip(ip),
                "an untrusted peer's X-Forwarded-For was believed"
            );
        } else {
            match addr {
                ClientAddr::Unknown => assert!(unreadable, "unknown though every hop reads"),
                ClientAddr::Ip(a) if a == ip => assert!(
                    hops.is_empty() && !unreadable || hops.contains(&a),
                    "the proxy {a} was taken for the client"
                ),
                ClientAddr::Ip(a) => {
                    assert!(hops.contains(&a), "{a} is neither the peer nor a forwarded hop")
                }
            }
        }
        assert_eq!(client_addr(peer, &headers, &[]), ClientAddr::Ip(ip));
    }
    // The Unix socket: only the proxy can connect, so its header is believed; without one
    // (or with an unreadable one) the client is unknown.
    match client_addr(Peer::Unix, &headers, &trusted) {
        ClientAddr::Unknown => assert!(unreadable || hops.is_empty()),
        ClientAddr::Ip(a) => assert!(hops.contains(&a)),
    }
});
