//! What an ID token exchange costs in the token endpoint's own work, and how it grows with
//! the number of trusts of one issuer: `cargo bench --bench oidc`. The signature check is
//! the floor every exchange pays (a service key's grant pays the same RS256 verify); the
//! claim checks are measured at 1 to 10,000 trusts of one issuer, against every trust and
//! through the issuer's index. Prints microseconds per exchange; no timing is asserted.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tokenauth::grant::PrivateKey;
use tokenauth::oidc::{KeySet, TrustRules, Unverified, check};
use tokenauth::public_key::Alg;
use tokenauth::registry::{IssuerTrusts, TrustEntry};
use tokenauth::scope::Scope;
use tokenauth::store::Trust;

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

    // The claims, side by side: checking every trust of the issuer (as the first version
    // did) against the issuer's index, which checks only the trusts that bind the token's
    // value of their first exactly bound claim. The token matches only the last trust.
    println!(
        "{:>8} {:>18} {:>18} {:>10}",
        "trusts", "every trust µs", "indexed µs", "× verify"
    );
    let parsed: Vec<Unverified> = tokens
        .iter()
        .map(|t| Unverified::parse(t).unwrap())
        .collect();
    let users = vec!["deploy-bot".to_owned()];
    for trusts in [1usize, 10, 100, 1_000, 10_000] {
        let entries: Vec<Arc<TrustEntry>> = (0..trusts)
            .map(|i| {
                let repo = if i + 1 == trusts {
                    "acme/app".to_owned()
                } else {
                    format!("acme/app-{i}")
                };
                Arc::new(TrustEntry::from(Trust {
                    id: format!("trust-{i}"),
                    name: format!("t{i:05}"),
                    issuer: ISS.into(),
                    audience: AUD.into(),
                    claims: [
                        ("ref".to_owned(), "refs/heads/main".to_owned()),
                        ("repository".to_owned(), repo),
                    ]
                    .into(),
                    user_claim: None,
                    users: users.clone(),
                    scope: Scope::Read,
                    ip_ranges: Vec::new(),
                    origins: Vec::new(),
                    jwks_uri: None,
                    jwks: None,
                    max_age: 3_600,
                    created: 0,
                    expires: None,
                    last_used: None,
                }))
            })
            .collect();
        let index = IssuerTrusts::new(entries.clone());
        let rules = |t: &TrustEntry| -> bool {
            let t = &t.trust;
            let rules = TrustRules {
                issuer: &t.issuer,
                audience: &t.audience,
                claims: &t.claims,
                user_claim: None,
                users: &t.users,
                max_age: t.max_age,
            };
            check(&parsed[0], &rules, now).is_ok()
        };
        let rounds = (20_000 / trusts).clamp(20, TOKENS);
        let started = Instant::now();
        for _ in 0..rounds {
            assert_eq!(entries.iter().filter(|t| rules(t)).count(), 1);
        }
        let every = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
        let rounds = 20_000;
        let started = Instant::now();
        for u in parsed.iter().cycle().take(rounds) {
            let candidates = index.candidates(&u.claims);
            assert_eq!(candidates.iter().filter(|t| rules(t)).count(), 1);
        }
        let indexed = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
        println!(
            "{trusts:>8} {every:>18.2} {indexed:>18.2} {:>10.2}",
            indexed / verify
        );
    }
}
