//! For unit tests: the signing keys of a pretend issuer (generated once per test binary) and
//! the ID tokens they sign.

use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::grant::PrivateKey;
use crate::public_key::Alg;

pub struct TestKey {
    pub kid: String,
    /// The public JWK, with kid, alg and use.
    pub jwk: Value,
    private: PrivateKey,
}

impl TestKey {
    fn generate(alg: Alg) -> TestKey {
        let generated =
            crate::service_key::generate(alg, 2048, true, &mut rand::rngs::OsRng).unwrap();
        TestKey {
            kid: generated.key.key_id(),
            jwk: generated.key.jwk_json(),
            private: PrivateKey::parse(generated.private_pem.expose()).unwrap(),
        }
    }

    /// A JWS signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.private.sign(message).unwrap()
    }

    /// An ID token with this key's alg and kid.
    pub fn token(&self, claims: &Value) -> String {
        let header = json!({ "typ": "JWT", "alg": self.private.alg().as_str(), "kid": self.kid });
        self.token_with_header(&header, claims)
    }

    /// An ID token with exactly this header.
    pub fn token_with_header(&self, header: &Value, claims: &Value) -> String {
        self.private.sign_jws(header, claims).unwrap()
    }
}

pub fn rsa() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::generate(Alg::RS256))
}

/// The RSA key an issuer rotates to.
pub fn rsa2() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::generate(Alg::RS256))
}

pub fn ec() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::generate(Alg::ES256))
}

/// A JWKS document of these keys' public halves.
pub fn jwks(keys: &[&TestKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}
