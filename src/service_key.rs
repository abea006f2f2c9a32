//! Service keys: RSA key generation, key ids, and the key file format (ftw.tokenauth's six
//! fields, plus `alg`).

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

use crate::secret::SecretString;

/// The only signing algorithm for RSA keys.
pub const RSA_ALG: &str = "RS256";

/// The file a client keeps: what it needs to sign grants and where to send them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KeyFile {
    pub key_id: String,
    pub client_id: String,
    pub user_id: String,
    /// ISO 8601 (RFC 3339) issue time.
    pub issued: String,
    pub token_uri: String,
    /// PKCS#1 PEM, as ftw.tokenauth writes it.
    pub private_key: SecretString,
    #[serde(default = "default_alg")]
    pub alg: String,
}

fn default_alg() -> String {
    RSA_ALG.to_owned()
}

/// A freshly generated key pair.
pub struct Generated {
    pub key_id: String,
    pub public_pem: String,
    pub private_pem: SecretString,
}

/// Generates an RSA key pair of `bits` bits.
pub fn generate(
    bits: usize,
    rng: &mut (impl rand::CryptoRng + rand::RngCore),
) -> anyhow::Result<Generated> {
    let private = rsa::RsaPrivateKey::new(rng, bits).context("generating the RSA key")?;
    let public = private.to_public_key();
    let public_pem = public
        .to_public_key_pem(LineEnding::LF)
        .context("encoding the public key")?;
    let private_pem = private
        .to_pkcs1_pem(LineEnding::LF)
        .context("encoding the private key")?;
    Ok(Generated {
        key_id: thumbprint(&public),
        public_pem,
        private_pem: SecretString::new(private_pem.to_string()),
    })
}

/// The RFC 7638 JWK thumbprint (SHA-256, base64url): stable for a given public key.
pub fn thumbprint(key: &rsa::RsaPublicKey) -> String {
    let b64 = |n: &rsa::BigUint| URL_SAFE_NO_PAD.encode(n.to_bytes_be());
    // Members in lexicographic order, no whitespace, as RFC 7638 §3 requires.
    let jwk = format!(
        r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
        b64(key.e()),
        b64(key.n())
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes()))
}

/// 128 random bits, hex.
pub fn new_client_id(rng: &mut impl rand::RngCore) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the key file with mode 0600 without ever leaving a partial file, and never over an
/// existing one.
pub fn write_key_file(path: &Path, key: &KeyFile) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if path.exists() {
        bail!(
            "refusing to overwrite {}; remove it or choose another --out",
            path.display()
        );
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".tokenauth-key-")
        .tempfile_in(dir)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot write key file {}: cannot create a file in {}: {}",
                path.display(),
                dir.display(),
                e.kind()
            )
        })?;
    let json = serde_json::to_string_pretty(key)?;
    tmp.write_all(json.as_bytes())
        .and_then(|()| tmp.write_all(b"\n"))
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write key file {}", path.display()))?;
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "refusing to overwrite {}; remove it or choose another --out",
                path.display()
            )
        } else {
            anyhow::anyhow!("cannot write key file {}: {}", path.display(), e.error)
        }
    })?;
    Ok(())
}

/// Reads a key file from a path, or from standard input for `-`.
pub fn read_key_file(path: &Path) -> anyhow::Result<KeyFile> {
    let (text, name) = if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the key file from standard input")?;
        (s, "standard input".to_owned())
    } else {
        let s = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?;
        (s, path.display().to_string())
    };
    parse_key_file(&text).with_context(|| format!("{name} is not a tokenauth key file"))
}

pub fn parse_key_file(text: &str) -> anyhow::Result<KeyFile> {
    let key: KeyFile = serde_json::from_str(text)?;
    if key.alg != RSA_ALG {
        bail!(
            "unsupported alg '{}'; tokenauth keys sign with {RSA_ALG}",
            key.alg
        );
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1's key and its thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let n = rsa::BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(n).unwrap());
        let key = rsa::RsaPublicKey::new(n, rsa::BigUint::from(65537u32)).unwrap();
        assert_eq!(
            thumbprint(&key),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn client_ids_are_128_bit_hex() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let id = new_client_id(&mut rng);
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, new_client_id(&mut rng));
    }

    #[test]
    fn key_file_needs_all_six_fields_and_keeps_extras_out() {
        let err = parse_key_file(r#"{"key_id":"k","client_id":"c"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
        let ok = parse_key_file(
            r#"{"key_id":"k","client_id":"c","user_id":"u","issued":"2026-01-01T00:00:00Z",
                "token_uri":"http://x/token","private_key":"pem","type":"extra"}"#,
        )
        .unwrap();
        assert_eq!(ok.alg, "RS256");
        assert_eq!(format!("{:?}", ok.private_key), "***");
    }
}
