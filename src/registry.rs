//! An in-memory snapshot of what the token plane checks against (keys, users, secrets,
//! revoked token ids, settings), loaded from the store and reloaded when it changes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use jsonwebtoken::{DecodingKey, EncodingKey};

use crate::store::{Key, Store, User};

pub const DEFAULT_TOKEN_URI: &str = "http://127.0.0.1:8080/token";

pub struct KeyEntry {
    pub key: Key,
    /// The RS256 public key, parsed once: a grant's verify is then only the RSA operation,
    /// not a DER parse and a fresh Montgomery setup per request.
    pub verifier: Arc<ParsedPublicKey>,
}

pub struct UserEntry {
    pub user: User,
    pub signer: EncodingKey,
    pub verifier: DecodingKey,
}

pub struct Snapshot {
    pub generation: i64,
    pub token_uri: String,
    pub issuer: String,
    keys_by_client: HashMap<String, Arc<KeyEntry>>,
    keys_by_id: HashMap<String, Arc<KeyEntry>>,
    users: HashMap<String, UserEntry>,
    revoked_tokens: HashSet<String>,
}

impl Snapshot {
    /// Loads everything; parsed public keys are reused from `previous` when unchanged, since
    /// parsing them is the expensive part.
    pub fn load(store: &Store, now: i64, previous: Option<&Snapshot>) -> anyhow::Result<Snapshot> {
        let generation = store.generation()?;
        let token_uri = store
            .setting("token_uri")?
            .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
        let issuer = store
            .setting("issuer")?
            .unwrap_or_else(|| default_issuer(&token_uri));
        let mut keys_by_client = HashMap::new();
        let mut keys_by_id = HashMap::new();
        for key in store.keys(None, true)? {
            let verifier = match previous.and_then(|p| p.keys_by_id.get(&key.key_id)) {
                Some(old) if old.key.public_key == key.public_key => old.verifier.clone(),
                _ => match parse_public_key(&key.public_key) {
                    Ok(k) => Arc::new(k),
                    Err(e) => {
                        tracing::warn!(key_id = %key.key_id, error = %e, "stored public key does not parse; key skipped");
                        continue;
                    }
                },
            };
            let entry = Arc::new(KeyEntry { key, verifier });
            keys_by_client.insert(entry.key.client_id.clone(), entry.clone());
            keys_by_id.insert(entry.key.key_id.clone(), entry);
        }
        let users = store
            .user_auths()?
            .into_iter()
            .map(|a| {
                let entry = UserEntry {
                    signer: EncodingKey::from_secret(a.secret.expose()),
                    verifier: DecodingKey::from_secret(a.secret.expose()),
                    user: a.user,
                };
                (entry.user.name.clone(), entry)
            })
            .collect();
        let revoked_tokens = store.revoked_tokens(now)?.into_iter().collect();
        Ok(Snapshot {
            generation,
            token_uri,
            issuer,
            keys_by_client,
            keys_by_id,
            users,
            revoked_tokens,
        })
    }

    pub fn key_by_client(&self, client_id: &str) -> Option<&KeyEntry> {
        self.keys_by_client.get(client_id).map(|k| &**k)
    }

    pub fn key(&self, key_id: &str) -> Option<&KeyEntry> {
        self.keys_by_id.get(key_id).map(|k| &**k)
    }

    pub fn user(&self, name: &str) -> Option<&UserEntry> {
        self.users.get(name)
    }

    pub fn token_revoked(&self, jti: &str) -> bool {
        self.revoked_tokens.contains(jti)
    }
}

/// A stored public key (SPKI or PKCS#1 PEM) ready for RS256 verification.
fn parse_public_key(pem: &str) -> anyhow::Result<ParsedPublicKey> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
    let key = rsa::RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(pem))?;
    let der = key.to_public_key_der()?;
    ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der.as_bytes())
        .map_err(|e| anyhow::anyhow!("aws-lc refused the key: {e}"))
}

/// The issuer is the token URI's origin ("http://127.0.0.1:8080").
pub fn default_issuer(token_uri: &str) -> String {
    url::Url::parse(token_uri).map_or_else(
        |_| token_uri.to_owned(),
        |u| u.origin().ascii_serialization(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn issuer_is_the_origin() {
        assert_eq!(
            super::default_issuer("http://127.0.0.1:8080/token"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            super::default_issuer("https://auth.example"),
            "https://auth.example"
        );
    }
}
