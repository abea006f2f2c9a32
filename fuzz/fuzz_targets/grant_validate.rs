//! `grant::validate` must never panic, whatever the assertion and requested scope, and must
//! only accept grants that satisfy every rule.
//!
//! Input: a mode byte, then lines. `<scope>` is the token request's `scope` parameter, `-`
//! for none.
//! - `r<scope>\n<assertion>`: the assertion as given.
//! - `s<scope>\n<header>\n<payload>`: header and payload bytes as given, signed with the
//!   fixture's RSA key (so the claim rules after the signature check are reached).
//! - `h<scope>\n<header>`: the fixture's real grant with its header replaced.
//! - `p<scope>\n<payload>`: the fixture's real grant with its payload replaced.
//! - `m<edits>`: the real grant edited by 4-byte ops `[op, pos_hi, pos_lo, byte]`.
//! - anything else: the whole input is the assertion, with no requested scope.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use tokenauth::grant::{self, MAX_LIFETIME};
use tokenauth::registry::Credentials;
use tokenauth_fuzz::{NOW, edit, fixture, lines, sign_raw};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn scope(line: &[u8]) -> Option<String> {
    (line != b"-").then(|| text(line))
}

fn replace_part(grant: &str, index: usize, with: &[u8]) -> String {
    let mut parts: Vec<String> = grant.split('.').map(str::to_owned).collect();
    parts[index] = URL_SAFE_NO_PAD.encode(with);
    parts.join(".")
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let (assertion, requested) = match data.split_first() {
        Some((b'r', rest)) => match lines(rest, 2)[..] {
            [s, a] => (text(a), scope(s)),
            _ => return,
        },
        Some((b's', rest)) => match lines(rest, 3)[..] {
            [s, h, p] => (sign_raw(h, p, &fx.rsa_signer, Algorithm::RS256), scope(s)),
            _ => return,
        },
        Some((b'h', rest)) => match lines(rest, 2)[..] {
            [s, h] => (replace_part(&fx.grant, 0, h), scope(s)),
            _ => return,
        },
        Some((b'p', rest)) => match lines(rest, 2)[..] {
            [s, p] => (replace_part(&fx.grant, 1, p), scope(s)),
            _ => return,
        },
        Some((b'm', ops)) => (edit(&fx.grant, ops), None),
        _ => (text(data), None),
    };
    let registry = &fx.registry;
    match grant::validate(&assertion, requested.as_deref(), registry, NOW) {
        Ok(ok) => {
            let key = registry.key(&ok.key_id).expect("accepted an unknown key");
            assert_eq!(key.client_id, ok.client_id);
            assert_eq!(key.user, ok.user);
            assert!(key.revoked.is_none(), "accepted a revoked key");
            assert!(
                key.expires.is_none_or(|e| e > NOW),
                "accepted an expired key"
            );
            assert!(
                ok.exp > NOW && ok.exp <= NOW + MAX_LIFETIME,
                "bad exp {}",
                ok.exp
            );
            assert!(key.scope.covers(ok.scope), "scope beyond the key's");
            for name in [&ok.user, &ok.subject] {
                let user = registry.user(name).expect("accepted an unknown user");
                assert!(!user.user.disabled, "accepted a disabled user");
            }
            if ok.subject != ok.user {
                assert!(registry.user(&ok.user).unwrap().user.may("impersonate"));
            }
        }
        Err(refusal) => {
            assert!(
                matches!(refusal.error, "invalid_grant" | "invalid_scope"),
                "unexpected error code {}",
                refusal.error
            );
            assert!(!refusal.description.is_empty());
        }
    }
});
