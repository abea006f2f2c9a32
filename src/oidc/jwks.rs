//! An issuer's JWKS: reading its signing keys (RSA for RS256, P-256 for ES256; the rest is
//! skipped) and verifying an ID token's signature with the right one.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs8::EncodePublicKey;
use rsa::traits::PublicKeyParts;
use serde_json::Value;

use crate::text::printable;

/// The most keys a JWKS may hold: real issuers publish a handful.
pub const MAX_KEYS: usize = 100;

/// The algorithms ID tokens may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdAlg {
    RS256,
    ES256,
}

impl IdAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            IdAlg::RS256 => "RS256",
            IdAlg::ES256 => "ES256",
        }
    }

    /// Exactly these names: RFC 7518 §3.1 is case-sensitive.
    pub fn from_name(name: &str) -> Option<IdAlg> {
        match name {
            "RS256" => Some(IdAlg::RS256),
            "ES256" => Some(IdAlg::ES256),
            _ => None,
        }
    }
}

impl std::fmt::Display for IdAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One usable signing key.
pub struct Jwk {
    pub kid: Option<String>,
    pub alg: IdAlg,
    key: ParsedPublicKey,
}

impl std::fmt::Debug for Jwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Jwk({}, {:?})", self.alg, self.kid)
    }
}

/// An issuer's usable signing keys.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

/// Why no key verified a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyMiss {
    /// No key has the token's kid (or, for a token without kid, no key has its algorithm):
    /// the issuer may have rotated its keys since they were fetched.
    #[error("no signing key of the issuer has the ID token's kid")]
    UnknownKid,
    /// The kid's key is of another algorithm than the token's header names.
    #[error("the ID token's kid names a key of another algorithm")]
    WrongKeyType,
    #[error("the ID token's signature does not verify")]
    BadSignature,
}

impl KeySet {
    /// Reads a JWKS document. Keys tokenauth cannot use (encryption keys, HMAC, other curves
    /// and algorithms, RSA under 2048 bits) are skipped; a document without any usable key
    /// is an error that says why each key was skipped.
    pub fn parse(text: &str) -> Result<KeySet, String> {
        let text = text.trim_start_matches('\u{feff}');
        let doc: Value = serde_json::from_str(text)
            .map_err(|_| "the JWKS is not JSON; give a document like {\"keys\": [...]}")?;
        let Some(list) = doc.get("keys").and_then(Value::as_array) else {
            return Err(
                "the JWKS has no \"keys\" array; give a document like {\"keys\": [...]}".into(),
            );
        };
        if list.len() > MAX_KEYS {
            return Err(format!(
                "the JWKS holds {} keys; at most {MAX_KEYS} are accepted",
                list.len()
            ));
        }
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (i, v) in list.iter().enumerate() {
            match read_key(v)? {
                Ok(key) => keys.push(key),
                Err(why) => {
                    let kid = v.get("kid").and_then(Value::as_str);
                    skipped.push(match kid {
                        Some(kid) => format!("key '{}' {why}", printable(kid)),
                        None => format!("key {} {why}", i + 1),
                    });
                }
            }
        }
        if keys.is_empty() {
            let why = if skipped.is_empty() {
                "it holds no key".to_owned()
            } else {
                skipped.join("; ")
            };
            return Err(format!(
                "the JWKS has no usable signing key ({why}); ID tokens are verified with RSA \
                 keys of 2048 bits or more (RS256) and P-256 keys (ES256)"
            ));
        }
        Ok(KeySet { keys })
    }

    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// Verifies a JWS signature (`message` = `header.payload` as sent) with the key named by
    /// `kid`, or, without a kid, with any key of `alg`.
    pub fn verify(
        &self,
        alg: IdAlg,
        kid: Option<&str>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), KeyMiss> {
        let named: Vec<&Jwk> = match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            None => self.keys.iter().filter(|k| k.alg == alg).collect(),
        };
        if named.is_empty() {
            return Err(KeyMiss::UnknownKid);
        }
        // The key decides the algorithm, never the token (RFC 8725 §3.1).
        let mut candidates = named.into_iter().filter(|k| k.alg == alg).peekable();
        if candidates.peek().is_none() {
            return Err(KeyMiss::WrongKeyType);
        }
        if candidates.any(|k| k.key.verify_sig(message, signature).is_ok()) {
            Ok(())
        } else {
            Err(KeyMiss::BadSignature)
        }
    }
}

/// One JWK: `Ok(Ok(key))` usable, `Ok(Err(why))` skipped, `Err` refuses the whole document.
fn read_key(v: &Value) -> Result<Result<Jwk, String>, String> {
    let Some(obj) = v.as_object() else {
        return Ok(Err("is not a JSON object".into()));
    };
    // An issuer publishing private keys is compromised, and an admin's file that holds one
    // leaks it: neither is a set of keys to trust.
    if obj.contains_key("d") {
        return Err("the JWKS holds a private key (member 'd'); give the public keys only".into());
    }
    let text = |name: &str| obj.get(name).and_then(Value::as_str);
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Ok(Err("has a kid that is not a string".into())),
    };
    if let Some(usage) = obj.get("use")
        && usage.as_str() != Some("sig")
    {
        return Ok(Err("is not a signing key (use is not \"sig\")".into()));
    }
    if let Some(Value::Array(ops)) = obj.get("key_ops")
        && !ops.iter().any(|o| o.as_str() == Some("verify"))
    {
        return Ok(Err(
            "is not a verification key (key_ops lacks \"verify\")".into()
        ));
    }
    let bytes = |name: &str| -> Result<Vec<u8>, String> {
        let t = text(name).ok_or_else(|| format!("has no member '{name}'"))?;
        URL_SAFE_NO_PAD
            .decode(t.trim_end_matches('='))
            .map_err(|_| format!("has a member '{name}' that is not base64url"))
    };
    let kty = text("kty").unwrap_or_default();
    let alg_named = text("alg");
    let built = match (kty, text("crv")) {
        ("RSA", _) => {
            if alg_named.is_some_and(|a| a != "RS256") {
                return Ok(Err(format!(
                    "is an RSA key for {}, not RS256",
                    printable(alg_named.unwrap_or_default())
                )));
            }
            rsa_key(&bytes).map(|key| (IdAlg::RS256, key))
        }
        ("EC", Some("P-256")) => {
            if alg_named.is_some_and(|a| a != "ES256") {
                return Ok(Err(format!(
                    "is a P-256 key for {}, not ES256",
                    printable(alg_named.unwrap_or_default())
                )));
            }
            p256_key(&bytes).map(|key| (IdAlg::ES256, key))
        }
        ("EC", crv) => Err(format!(
            "is an EC key on {}; only P-256 is accepted",
            printable(crv.unwrap_or("no named curve"))
        )),
        ("oct", _) => Err("is a symmetric (HMAC) key".into()),
        ("", _) => Err("has no kty".into()),
        (other, _) => Err(format!("is a {} key", printable(other))),
    };
    Ok(built.map(|(alg, key)| Jwk { kid, alg, key }))
}

fn rsa_key(bytes: &dyn Fn(&str) -> Result<Vec<u8>, String>) -> Result<ParsedPublicKey, String> {
    let n = rsa::BigUint::from_bytes_be(&bytes("n")?);
    let e = rsa::BigUint::from_bytes_be(&bytes("e")?);
    // RS256 verification takes keys up to 8192 bits; `new` alone stops at 4096.
    let key = rsa::RsaPublicKey::new_with_max_size(n, e, 8192)
        .map_err(|_| "has n and e that are not an RSA public key of at most 8192 bits")?;
    let bits = key.n().bits();
    if bits < 2048 {
        return Err(format!(
            "is a {bits}-bit RSA key; RSA keys need at least 2048 bits"
        ));
    }
    let der = key
        .to_public_key_der()
        .map_err(|_| "is an RSA key that cannot be encoded")?;
    ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der.as_bytes())
        .map_err(|_| "is an RSA key that cannot be used".into())
}

fn p256_key(bytes: &dyn Fn(&str) -> Result<Vec<u8>, String>) -> Result<ParsedPublicKey, String> {
    let (x, y) = (bytes("x")?, bytes("y")?);
    if x.len() != 32 || y.len() != 32 {
        return Err("has x and y that are not 32 bytes each".into());
    }
    // The uncompressed point 0x04‖x‖y; aws-lc checks that it is on the curve.
    let point = [&[4u8][..], &x, &y].concat();
    ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .map_err(|_| "has x and y that are not a point on P-256".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::test_keys::{self, TestKey};
    use serde_json::json;

    fn sign(key: &TestKey, message: &[u8]) -> Vec<u8> {
        key.sign(message)
    }

    #[test]
    fn rsa_and_p256_keys_verify_their_own_signatures_only() {
        let (rsa, ec) = (test_keys::rsa(), test_keys::ec());
        let set = KeySet::parse(&test_keys::jwks(&[rsa, ec])).unwrap();
        assert_eq!(set.keys().len(), 2);
        let m = b"header.payload";
        assert_eq!(
            set.verify(IdAlg::RS256, Some(&rsa.kid), m, &sign(rsa, m)),
            Ok(())
        );
        assert_eq!(
            set.verify(IdAlg::ES256, Some(&ec.kid), m, &sign(ec, m)),
            Ok(())
        );
        // Without a kid, every key of the algorithm is tried.
        assert_eq!(set.verify(IdAlg::ES256, None, m, &sign(ec, m)), Ok(()));
        assert_eq!(
            set.verify(IdAlg::RS256, Some(&rsa.kid), b"other", &sign(rsa, m)),
            Err(KeyMiss::BadSignature)
        );
        assert_eq!(
            set.verify(IdAlg::ES256, Some(&rsa.kid), m, &sign(ec, m)),
            Err(KeyMiss::WrongKeyType)
        );
        assert_eq!(
            set.verify(IdAlg::RS256, Some("rotated"), m, &sign(rsa, m)),
            Err(KeyMiss::UnknownKid)
        );
        let only_ec = KeySet::parse(&test_keys::jwks(&[ec])).unwrap();
        assert_eq!(
            only_ec.verify(IdAlg::RS256, None, m, &sign(rsa, m)),
            Err(KeyMiss::UnknownKid)
        );
    }

    #[test]
    fn unusable_keys_are_skipped_and_a_set_of_none_says_why() {
        let rsa = test_keys::rsa();
        let mut enc = rsa.jwk.clone();
        enc["use"] = json!("enc");
        enc["kid"] = json!("enc-key");
        let doc = json!({ "keys": [
            enc,
            { "kty": "oct", "k": "c2VjcmV0" },
            { "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" },
            { "kty": "EC", "crv": "P-384", "x": "AA", "y": "AA" },
            { "kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA" },
            { "kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32]) },
            { "kty": "RSA", "alg": "RS512", "n": "AQAB", "e": "AQAB" },
            { "kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xffu8; 128]), "e": "AQAB" },
            "not a key",
            rsa.jwk,
        ]});
        let set = KeySet::parse(&doc.to_string()).unwrap();
        assert_eq!(set.keys().len(), 1);
        assert_eq!(set.keys()[0].kid.as_deref(), Some(rsa.kid.as_str()));

        let mut all = doc["keys"].as_array().unwrap().clone();
        all.pop();
        let e = KeySet::parse(&json!({ "keys": all }).to_string()).unwrap_err();
        for why in [
            "key 'enc-key' is not a signing key",
            "key 2 is a symmetric (HMAC) key",
            "key 3 is a OKP key",
            "key 4 is an EC key on P-384",
            "key 5 has x and y that are not 32 bytes each",
            "key 6 has x and y that are not a point on P-256",
            "key 7 is an RSA key for RS512, not RS256",
            "key 8 is a 1024-bit RSA key",
            "key 9 is not a JSON object",
            "RSA keys of 2048 bits or more (RS256) and P-256 keys (ES256)",
        ] {
            assert!(e.contains(why), "{why} not in {e}");
        }
    }

    #[test]
    fn malformed_documents_are_errors_that_name_the_problem() {
        assert!(KeySet::parse("<html>").unwrap_err().contains("not JSON"));
        assert!(
            KeySet::parse("{}")
                .unwrap_err()
                .contains("no \"keys\" array")
        );
        assert!(
            KeySet::parse(r#"{"keys":{}}"#)
                .unwrap_err()
                .contains("no \"keys\" array")
        );
        assert!(
            KeySet::parse(r#"{"keys":[]}"#)
                .unwrap_err()
                .contains("it holds no key")
        );
        let many = json!({ "keys": vec![json!({"kty": "oct"}); 101] }).to_string();
        assert!(KeySet::parse(&many).unwrap_err().contains("holds 101 keys"));
        let mut private = test_keys::ec().jwk.clone();
        private["d"] = json!("AAAA");
        let e = KeySet::parse(&json!({ "keys": [private] }).to_string()).unwrap_err();
        assert!(e.contains("private key"), "{e}");
    }
}
