//! `client::parse_token_response` on arbitrary bodies, then every `get-token --format` of
//! what it accepted: an accepted token is a bounded RFC 6750 b64token, its expiry and scope
//! are sane, and no format prints a line break, a control character or a shell
//! metacharacter outside quotes; a refusal never quotes a control character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenauth::client::{self, MAX_EXPIRES_IN, MAX_TOKEN_LEN, Token};
use tokenauth::cmd::get_token::{Format, render, sh_quote};
use tokenauth::secret::SecretString;

const NOW: i64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let t = match client::parse_token_response(data) {
        Ok(t) => t,
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.chars().any(char::is_control), "{msg:?}");
            return;
        }
    };
    let tok = t.access_token.as_str();
    assert!(!tok.is_empty() && tok.len() <= MAX_TOKEN_LEN);
    let body = tok.trim_end_matches('=');
    assert!(!body.is_empty());
    assert!(
        body.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
    );
    assert!((1..=MAX_EXPIRES_IN).contains(&t.expires_in));
    assert_eq!(t.token_type, "Bearer");
    assert!(t.scope.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'));

    let token = Token {
        access_token: SecretString::new(t.access_token.clone()),
        token_type: t.token_type.clone(),
        scope: t.scope.clone(),
        expires_at: NOW + t.expires_in,
    };
    // What the cache would hand back reads the same.
    token.check(NOW).expect("an accepted answer fails the cache's check");
    for (format, lines) in [
        (Format::Token, 1),
        (Format::Header, 1),
        (Format::Env, 2),
        (Format::Json, 0),
    ] {
        let out = render(format, &token, NOW).expect("an accepted token is not printable");
        assert!(out.ends_with('\n'));
        assert!(!out.contains('\r') && !out.contains('\0'));
        if lines > 0 {
            assert_eq!(out.lines().count(), lines, "{out:?}");
        }
        match format {
            Format::Token => assert_eq!(out, format!("{tok}\n")),
            Format::Header => assert_eq!(out, format!("Authorization: Bearer {tok}\n")),
            Format::Env => {
                let first = out.lines().next().unwrap();
                assert_eq!(first, format!("TOKENAUTH_TOKEN={}", sh_quote(tok)));
            }
            Format::Json => {
                let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                assert_eq!(v["access_token"], tok);
            }
        }
    }
    // A quoted word either has only plain characters or is one single-quoted string with
    // each `'` closed, escaped and reopened.
    let q = sh_quote(tok);
    if q != tok {
        let inner = q.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')).unwrap();
        assert_eq!(inner.replace(r"'\''", "'"), tok);
    }
});
