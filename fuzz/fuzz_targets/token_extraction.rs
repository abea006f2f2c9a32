//! `server::request::extract_token` on arbitrary `Authorization`, `Cookie` and
//! `X-JWT-Auth-Token` headers, then `access_token::validate` on whatever it extracts.
//!
//! Input: lines, each a tag byte and a value:
//! - `a…`, `c…`, `x…`: an `Authorization`, `Cookie` or `X-JWT-Auth-Token` value (appended,
//!   if `HeaderValue` accepts it). In them `$A`, `$E`, `$R`, `$K`, `$C`, `$D`, `$X` stand
//!   for the fixture's access tokens (see `tokenauth_fuzz::fixture`), and `$P` for the token
//!   built from the `h`/`p`/`u` lines.
//! - `h<header>`, `p<payload>`, `u<user>`: `$P` is this header (default
//!   `{"alg":"HS256","typ":"at+jwt"}`) and payload, HS256-signed with this user's secret
//!   (default alice).
//! - `m<ops>`: edits applied to the extracted token before validation (4-byte ops).
//! - `i<address>`: the client address to check against the key's IP ranges.
//! - `s<scope>`: the scope the resource requires.
//! - `n<seconds>`: added to the fixture's "now".
#![no_main]

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue, header};
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use tokenauth::access_token;
use tokenauth::iprange;
use tokenauth::registry::Credentials;
use tokenauth::server::request::extract_token;
use tokenauth_fuzz::{NOW, edit, fixture, sign_raw};

fn substitute(value: &[u8], tokens: &[(u8, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'$' {
            if let Some((_, t)) = tokens.iter().find(|(c, _)| value.get(i + 1) == Some(c)) {
                out.extend_from_slice(t.as_bytes());
                i += 2;
                continue;
            }
        }
        out.push(value[i]);
        i += 1;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let registry = &fx.registry;
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let field = |tag: u8| {
        lines
            .iter()
            .rev()
            .find(|l| l.first() == Some(&tag))
            .map(|l| &l[1..])
    };

    let mut tokens: Vec<(u8, &str)> = fx
        .access_tokens
        .iter()
        .map(|(c, t)| (*c as u8, t.as_str()))
        .collect();
    let built;
    if let Some(payload) = field(b'p') {
        let header = field(b'h').unwrap_or(br#"{"alg":"HS256","typ":"at+jwt"}"#);
        let user = field(b'u').map_or("alice".into(), String::from_utf8_lossy);
        if let Some(user) = registry.user(&user) {
            built = sign_raw(header, payload, &user.signer, Algorithm::HS256);
            tokens.push((b'P', &built));
        }
    }

    let mut headers = HeaderMap::new();
    let mut values = Vec::new();
    for line in &lines {
        let name = match line.first() {
            Some(b'a') => header::AUTHORIZATION.as_str(),
            Some(b'c') => header::COOKIE.as_str(),
            Some(b'x') => "x-jwt-auth-token",
            _ => continue,
        };
        if let Ok(value) = HeaderValue::from_bytes(&substitute(&line[1..], &tokens)) {
            values.extend(value.to_str().ok().map(str::to_owned));
            headers.append(name, value);
        }
    }

    let Some(token) = extract_token(&headers) else {
        return;
    };
    assert!(
        !token.is_empty(),
        "extracted an empty token from {headers:?}"
    );
    assert!(
        values.iter().any(|v| v.contains(token.as_str())),
        "extracted {token:?}, which no header holds"
    );

    let token = match field(b'm') {
        Some(ops) => edit(&token, ops),
        None => token,
    };
    let now = NOW.saturating_add(
        field(b'n')
            .and_then(|n| std::str::from_utf8(n).ok()?.parse::<i64>().ok())
            .unwrap_or(0),
    );
    let addr = field(b'i').and_then(|a| std::str::from_utf8(a).ok()?.parse::<IpAddr>().ok());
    let required = field(b's').and_then(|s| std::str::from_utf8(s).ok()?.parse().ok());
    let caller = addr.map(tokenauth::iprange::ClientAddr::Ip);
    if let Ok(claims) = access_token::validate(&token, registry, now, caller, required) {
        assert!(claims.exp > now, "accepted an expired token");
        assert!(
            !registry.token_revoked(&claims.jti),
            "accepted a revoked token"
        );
        let key = registry.key(&claims.key_id).expect("accepted an unknown key");
        assert!(key.revoked.is_none(), "accepted a token of a revoked key");
        assert!(
            key.expires.is_none_or(|e| e > now),
            "accepted an expired key"
        );
        for name in [&claims.sub, &key.user] {
            let user = registry.user(name).expect("accepted an unknown user");
            assert!(!user.user.disabled, "accepted a disabled user");
        }
        if let Some(addr) = addr {
            assert!(iprange::allows(&key.ip_ranges, addr));
        }
        if let Some(required) = required {
            assert!(claims.scope().covers(required));
        }
    }
});
