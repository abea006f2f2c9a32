//! What an ID token exchange costs in the token endpoint's own work, and how it grows with
//! the number of trusts of one issuer: `cargo bench --bench oidc`. The signature check is
//! the floor every exchange pays (a service key's grant pays the same RS256 verify); each
//! trust of the token's issuer adds one claim check. Prints microseconds per exchange; no
//! timing is asserted.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;
use tokenauth::grant::PrivateKey;
use tokenauth::oidc::{KeySet, TrustRules, Unverified, check};
use tokenauth::public_key::Alg;

const ISS: &str = "https://token.actions.githubusercontent.com";
const AUD: &str = "https://auth.example.com";

fn main() {
    let generated =
        tokenauth::service_key::generate(Alg::RS256, 2048, true, &mut rand::rngs::OsRng).unwrap();
    let key = PrivateKey::parse(generated.private_pem.expose()).unwrap();
    let kid = generated.key.key_id();
    let keys = KeySet::parse(&json!({ "keys": [generated.key.jwk_json()] }).to_string()).unwrap();
    let now = 1_800_000_000;
    const TOKENS: usize = 2_000;
    let tokens: Vec<String> = (0..TOKENS)
        .map(|i| {
            let claims = json!({
                "iss": ISS, "aud": AUD, "iat": now, "nbf": now, "exp": now + 300,
                "jti": format!("j-{i}"), "repository": "acme/app", "ref": "refs/heads/main",
                "sub": "repo:acme/app:ref:refs/heads/main", "actor": "octocat",
            });
            key.sign_jws(
                &json!({ "alg": "RS256", "typ": "JWT", "kid": kid }),
                &claims,
            )
            .unwrap()
        })
        .collect();

    // The signature: parse and verify, as every exchange does once.
    let started = Instant::now();
    for t in &tokens {
        let u = Unverified::parse(t).unwrap();
        keys.verify(u.alg, u.kid.as_deref(), u.message(), u.signature())
            .unwrap();
    }
    let verify = started.elapsed().as_secs_f64() * 1e6 / TOKENS as f64;
    println!("parse + RS256 verify: {verify:.1} µs per exchange");

    // The claims: every trust of the issuer is checked; the token matches only the last.
    println!(
        "{:>8} {:>16} {:>12}",
        "trusts", "claims µs/exch", "× verify"
    );
    let parsed: Vec<Unverified> = tokens
        .iter()
        .map(|t| Unverified::parse(t).unwrap())
        .collect();
    for trusts in [1usize, 10, 100, 1_000, 10_000] {
        let rules: Vec<BTreeMap<String, String>> = (0..trusts)
            .map(|i| {
                let repo = if i + 1 == trusts {
                    "acme/app".to_owned()
                } else {
                    format!("acme/app-{i}")
                };
                [
                    ("repository".to_owned(), repo),
                    ("ref".to_owned(), "refs/heads/main".to_owned()),
                ]
                .into()
            })
            .collect();
        let users = vec!["deploy-bot".to_owned()];
        let rounds = (20_000 / trusts).clamp(1, TOKENS);
        let started = Instant::now();
        for u in parsed.iter().take(rounds) {
            let matched = rules
                .iter()
                .filter_map(|claims| {
                    let trust = TrustRules {
                        issuer: ISS,
                        audience: AUD,
                        claims,
                        user_claim: None,
                        users: &users,
                        max_age: 3_600,
                    };
                    check(u, &trust, now).ok()
                })
                .count();
            assert_eq!(matched, 1);
        }
        let per = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
        println!("{trusts:>8} {per:>16.2} {:>12.2}", per / verify);
    }
}
