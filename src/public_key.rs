//! Service keys' public halves: the three algorithms (RS256, ES256, EdDSA), reading a key from
//! PEM, JWK or a one-key JWKS with clear refusals of weak or odd keys, and its RFC 7638 key id
//! and JWK form.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters, Jwk,
    OctetKeyPairParameters, RSAKeyParameters, ThumbprintHash,
};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use spki::der::asn1::{BitString, ObjectIdentifier};
use spki::der::{Any, Decode, Encode};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};

/// The signing algorithms a key may have; a key accepts grants of its own algorithm only
/// (RFC 8725 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Alg {
    RS256,
    ES256,
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 3] = [Alg::RS256, Alg::ES256, Alg::EdDSA];

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// How aws-lc verifies a JWS signature of this algorithm (ES256: the raw r‖s form).
    pub fn verification(self) -> &'static dyn aws_lc_rs::signature::VerificationAlgorithm {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256};
        match self {
            Alg::RS256 => &RSA_PKCS1_2048_8192_SHA256,
            Alg::ES256 => &ECDSA_P256_SHA256_FIXED,
            Alg::EdDSA => &ED25519,
        }
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Alg {
    /// The algorithm a JWS header's `alg` names, exactly (RFC 7518 §3.1 is case-sensitive).
    /// `Ed25519` is RFC 9864's fully-specified name for EdDSA over Ed25519, the only curve
    /// tokenauth's EdDSA keys use; current JOSE libraries (joserfc) warn on `EdDSA`.
    pub fn from_header(name: &str) -> Option<Alg> {
        match name {
            "Ed25519" => Some(Alg::EdDSA),
            _ => Alg::ALL.into_iter().find(|a| a.as_str() == name),
        }
    }
}

impl std::str::FromStr for Alg {
    type Err = String;
    fn from_str(s: &str) -> Result<Alg, String> {
        Alg::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown algorithm '{s}'; use RS256, ES256 or EdDSA"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("it holds a private key; give the public key only (`tokenauth keygen` prints it)")]
    Private,
    #[error("it is not a public key in PEM (BEGIN PUBLIC KEY), a JWK or a JWKS")]
    Unreadable,
    #[error("it is a JWKS with {0} keys; give one key")]
    JwksCount(usize),
    #[error("it is a {0}-bit RSA key; RSA keys need at least 2048 bits")]
    WeakRsa(usize),
    #[error("it is an EC key on {0}; ES256 keys are on P-256")]
    Curve(String),
    #[error("it is a {0} key; tokenauth takes RSA (RS256), P-256 (ES256) and Ed25519 (EdDSA) keys")]
    Unsupported(String),
    #[error("its JWK is malformed: {0}")]
    BadJwk(String),
}

const RSA_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const ED25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// A validated public key.
#[derive(Clone)]
pub struct PublicKey {
    pub alg: Alg,
    /// DER SubjectPublicKeyInfo.
    spki: Vec<u8>,
    jwk: Jwk,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({}, {})", self.alg, self.key_id())
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn jwk(algorithm: AlgorithmParameters) -> Jwk {
    Jwk {
        common: CommonParameters::default(),
        algorithm,
    }
}

impl PublicKey {
    /// From a DER SubjectPublicKeyInfo, checking that tokenauth can use it.
    pub fn from_spki(der: &[u8]) -> Result<PublicKey, KeyError> {
        let info = SubjectPublicKeyInfoRef::from_der(der).map_err(|_| KeyError::Unreadable)?;
        let bits = info.subject_public_key.raw_bytes();
        let (alg, params) = match info.algorithm.oid {
            RSA_OID => {
                let key = rsa::RsaPublicKey::from_public_key_der(der)
                    .map_err(|_| KeyError::Unreadable)?;
                if key.size() * 8 < 2048 {
                    return Err(KeyError::WeakRsa(key.n().bits()));
                }
                let params = AlgorithmParameters::RSA(RSAKeyParameters {
                    key_type: Default::default(),
                    n: b64(&key.n().to_bytes_be()),
                    e: b64(&key.e().to_bytes_be()),
                });
                (Alg::RS256, params)
            }
            EC_OID => {
                let curve = info
                    .algorithm
                    .parameters
                    .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
                if curve != Some(P256_OID) {
                    let name = match curve.map(|c| c.to_string()).as_deref() {
                        Some("1.3.132.0.34") => "P-384".to_owned(),
                        Some("1.3.132.0.35") => "P-521".to_owned(),
                        Some("1.3.132.0.10") => "secp256k1".to_owned(),
                        Some(other) => format!("the curve {other}"),
                        None => "an unnamed curve".to_owned(),
                    };
                    return Err(KeyError::Curve(name));
                }
                // An uncompressed point: 0x04, x, y.
                if bits.len() != 65 || bits[0] != 4 {
                    return Err(KeyError::Unreadable);
                }
                let params = AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                    key_type: Default::default(),
                    curve: EllipticCurve::P256,
                    x: b64(&bits[1..33]),
                    y: b64(&bits[33..]),
                });
                (Alg::ES256, params)
            }
            ED25519_OID if bits.len() == 32 => {
                let params = AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                    key_type: Default::default(),
                    curve: EllipticCurve::Ed25519,
                    x: b64(bits),
                });
                (Alg::EdDSA, params)
            }
            oid => {
                let name = match oid.to_string().as_str() {
                    "1.3.101.113" => "Ed448".to_owned(),
                    "1.2.840.10040.4.1" => "DSA".to_owned(),
                    other => format!("OID {other}"),
                };
                return Err(KeyError::Unsupported(name));
            }
        };
        // aws-lc is what will verify with it: it must take it too.
        aws_lc_rs::signature::ParsedPublicKey::new(alg.verification(), der)
            .map_err(|_| KeyError::Unreadable)?;
        Ok(PublicKey {
            alg,
            spki: der.to_vec(),
            jwk: jwk(params),
        })
    }

    /// From what a client hands over: a PEM public key (SubjectPublicKeyInfo, or PKCS#1
    /// `BEGIN RSA PUBLIC KEY`), a JWK, or a JWKS holding exactly one key.
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        let text = text.trim_start_matches('\u{feff}').trim();
        if text.starts_with('{') {
            return PublicKey::from_jwk_text(text);
        }
        if text.contains("PRIVATE KEY") {
            return Err(KeyError::Private);
        }
        let pem = pem::parse(text).map_err(|_| KeyError::Unreadable)?;
        match pem.tag() {
            "PUBLIC KEY" => PublicKey::from_spki(pem.contents()),
            "RSA PUBLIC KEY" => {
                let key = rsa::RsaPublicKey::from_pkcs1_der(pem.contents())
                    .map_err(|_| KeyError::Unreadable)?;
                let der = key.to_public_key_der().map_err(|_| KeyError::Unreadable)?;
                PublicKey::from_spki(der.as_bytes())
            }
            _ => Err(KeyError::Unreadable),
        }
    }

    fn from_jwk_text(text: &str) -> Result<PublicKey, KeyError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| KeyError::Unreadable)?;
        let one = match value.get("keys") {
            Some(serde_json::Value::Array(keys)) if keys.len() == 1 => &keys[0],
            Some(serde_json::Value::Array(keys)) => return Err(KeyError::JwksCount(keys.len())),
            Some(_) => return Err(KeyError::Unreadable),
            None => &value,
        };
        PublicKey::from_jwk(one)
    }

    /// From a JWK (RFC 7517), rebuilt into a SubjectPublicKeyInfo so that every key goes
    /// through the same checks.
    fn from_jwk(v: &serde_json::Value) -> Result<PublicKey, KeyError> {
        let field = |name: &str| -> Result<Vec<u8>, KeyError> {
            let text = v
                .get(name)
                .and_then(|f| f.as_str())
                .ok_or_else(|| KeyError::BadJwk(format!("member '{name}' is missing")))?;
            URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .map_err(|_| KeyError::BadJwk(format!("member '{name}' is not base64url")))
        };
        // RSA "d", EC "d", OKP "d": the private part.
        if v.get("d").is_some() {
            return Err(KeyError::Private);
        }
        let kty = v.get("kty").and_then(|k| k.as_str()).unwrap_or_default();
        let crv = v.get("crv").and_then(|k| k.as_str()).unwrap_or_default();
        let spki = |oid, params: Option<Any>, bits: &[u8]| -> Result<Vec<u8>, KeyError> {
            SubjectPublicKeyInfoOwned {
                algorithm: AlgorithmIdentifierOwned {
                    oid,
                    parameters: params,
                },
                subject_public_key: BitString::from_bytes(bits)
                    .map_err(|_| KeyError::Unreadable)?,
            }
            .to_der()
            .map_err(|_| KeyError::Unreadable)
        };
        let der = match (kty, crv) {
            ("RSA", _) => {
                let n = rsa::BigUint::from_bytes_be(&field("n")?);
                let e = rsa::BigUint::from_bytes_be(&field("e")?);
                let key = rsa::RsaPublicKey::new_with_max_size(n, e, 16_384)
                    .map_err(|_| KeyError::BadJwk("n and e are not an RSA public key".into()))?;
                key.to_public_key_der()
                    .map_err(|_| KeyError::Unreadable)?
                    .into_vec()
            }
            ("EC", "P-256") => {
                let (x, y) = (field("x")?, field("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(KeyError::BadJwk(
                        "x and y are 32 bytes each on P-256".into(),
                    ));
                }
                let point = [&[4u8][..], &x, &y].concat();
                let curve = Any::encode_from(&P256_OID).map_err(|_| KeyError::Unreadable)?;
                spki(EC_OID, Some(curve), &point)?
            }
            ("EC", other) => return Err(KeyError::Curve(other.to_owned())),
            ("OKP", "Ed25519") => spki(ED25519_OID, None, &field("x")?)?,
            ("OKP", other) => return Err(KeyError::Unsupported(other.to_owned())),
            ("oct", _) => {
                return Err(KeyError::Unsupported(
                    "symmetric (oct), not a public".to_owned(),
                ));
            }
            ("", _) => return Err(KeyError::BadJwk("member 'kty' is missing".into())),
            (other, _) => return Err(KeyError::Unsupported(other.to_owned())),
        };
        PublicKey::from_spki(&der)
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url): a key's stable id.
    pub fn key_id(&self) -> String {
        self.jwk.thumbprint(ThumbprintHash::SHA256)
    }

    /// PEM SubjectPublicKeyInfo, as the store keeps it.
    pub fn pem(&self) -> String {
        pem::encode_config(
            &pem::Pem::new("PUBLIC KEY", self.spki.clone()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        )
    }

    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The JWK, with its key id, algorithm and use.
    pub fn jwk_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.jwk).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.retain(|_, value| !value.is_null());
            o.insert("kid".into(), self.key_id().into());
            o.insert("alg".into(), self.alg.as_str().into());
            o.insert("use".into(), "sig".into());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1's RSA key and thumbprint.
    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    #[test]
    fn the_rfc_7638_example_has_its_thumbprint() {
        let key = PublicKey::parse(&format!(
            r#"{{"kty":"RSA","e":"AQAB","alg":"RS256","kid":"2011-04-29","n":"{RFC7638_N}"}}"#
        ))
        .unwrap();
        assert_eq!(key.alg, Alg::RS256);
        assert_eq!(key.key_id(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        // The same key as PEM, and in a JWKS, has the same id.
        let again = PublicKey::parse(&key.pem()).unwrap();
        assert_eq!(again.key_id(), key.key_id());
        let jwks = serde_json::json!({ "keys": [key.jwk_json()] }).to_string();
        assert_eq!(PublicKey::parse(&jwks).unwrap().key_id(), key.key_id());
    }

    /// RFC 8037 A.3's Ed25519 key and thumbprint.
    #[test]
    fn the_rfc_8037_example_has_its_thumbprint() {
        let key = PublicKey::parse(
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
        )
        .unwrap();
        assert_eq!(key.alg, Alg::EdDSA);
        assert_eq!(key.key_id(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_eq!(PublicKey::parse(&key.pem()).unwrap().key_id(), key.key_id());
    }

    #[test]
    fn p256_keys_round_trip_between_jwk_and_pem() {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let der = pair.public_key().as_der().unwrap();
        let key = PublicKey::from_spki(der.as_ref()).unwrap();
        assert_eq!(key.alg, Alg::ES256);
        let from_jwk = PublicKey::parse(&key.jwk_json().to_string()).unwrap();
        assert_eq!(from_jwk.spki_der(), der.as_ref());
        assert_eq!(from_jwk.key_id(), key.key_id());
    }

    #[test]
    fn weak_odd_and_private_keys_are_refused_by_name() {
        use rsa::pkcs8::EncodePrivateKey;
        let mut rng = rand::rngs::OsRng;
        let small = rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap();
        let pem = small
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        assert_eq!(PublicKey::parse(&pem).unwrap_err(), KeyError::WeakRsa(1024));
        let private = small.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        assert_eq!(PublicKey::parse(&private).unwrap_err(), KeyError::Private);
        assert_eq!(
            PublicKey::parse(r#"{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c"}"#).unwrap_err(),
            KeyError::Private
        );
        assert_eq!(
            PublicKey::parse(r#"{"kty":"EC","crv":"P-384","x":"a","y":"b"}"#).unwrap_err(),
            KeyError::Curve("P-384".into())
        );
        assert_eq!(
            PublicKey::parse(r#"{"kty":"OKP","crv":"Ed448","x":"a"}"#).unwrap_err(),
            KeyError::Unsupported("Ed448".into())
        );
        assert_eq!(
            PublicKey::parse(r#"{"keys":[]}"#).unwrap_err(),
            KeyError::JwksCount(0)
        );
        assert!(matches!(
            PublicKey::parse(r#"{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}"#),
            Err(KeyError::BadJwk(_))
        ));
        assert_eq!(PublicKey::parse("hello").unwrap_err(), KeyError::Unreadable);
        // A P-384 key as PEM names its curve too.
        let p384 = "-----BEGIN PUBLIC KEY-----\nMHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEC1uWSXj2czCDwMTLWV5BFmwxdM6PX9p+\nPk9Yf9rIf374m5XP1U8q79dBhLSIuaojsvOT39UUcPJROSD1FqYLued0rXiooIii\n1D3jaW6pmGVJFhodzC31cy5sfOYotrzF\n-----END PUBLIC KEY-----\n";
        assert_eq!(
            PublicKey::parse(p384).unwrap_err(),
            KeyError::Curve("P-384".into())
        );
        assert_eq!("es256".parse::<Alg>(), Ok(Alg::ES256));
        assert!(
            "HS256"
                .parse::<Alg>()
                .unwrap_err()
                .contains("RS256, ES256 or EdDSA")
        );
    }
}
