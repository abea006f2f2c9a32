//! An in-memory snapshot of what the token plane checks against (keys, users, secrets,
//! revoked token ids, settings), loaded from the store and reloaded when it changes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use aws_lc_rs::signature::ParsedPublicKey;
use jsonwebtoken::{DecodingKey, EncodingKey};

use crate::public_key::{Alg, PublicKey};
use crate::store::{Key, Pat, Store, User};

pub const DEFAULT_TOKEN_URI: &str = "http://127.0.0.1:8080/token";

pub struct KeyEntry {
    pub key: Key,
    /// The only algorithm the key's grants may use (RFC 8725 §3.1).
    pub alg: Alg,
    /// The public key, parsed once: a grant's verify is then only the signature operation,
    /// not a DER parse (and for RSA a fresh Montgomery setup) per request.
    pub verifier: Arc<ParsedPublicKey>,
}

pub struct UserEntry {
    pub user: User,
    pub signer: EncodingKey,
    pub verifier: DecodingKey,
}

pub struct PatEntry {
    pub pat: Pat,
    /// Made under its user's current secret: a rotation ends it.
    pub current: bool,
    /// When its last use was last sent to the store (Unix seconds).
    last_touch: AtomicI64,
}

/// How often, at most, a personal access token's last use is written to the store: a busy
/// token costs a write a minute, not one per request.
pub const TOUCH_EVERY: i64 = 60;

impl PatEntry {
    /// Whether a use at `now` should be written to the store; true at most once per
    /// [`TOUCH_EVERY`], whichever request asks first.
    pub fn claim_touch(&self, now: i64) -> bool {
        let last = self.last_touch.load(Ordering::Relaxed);
        now.saturating_sub(last) >= TOUCH_EVERY
            && self
                .last_touch
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

pub struct Snapshot {
    pub generation: i64,
    pub token_uri: String,
    pub issuer: String,
    /// Where people read about this server (RFC 8414 `service_documentation`).
    pub service_documentation: Option<String>,
    keys_by_client: HashMap<String, Arc<KeyEntry>>,
    keys_by_id: HashMap<String, Arc<KeyEntry>>,
    users: HashMap<String, UserEntry>,
    revoked_tokens: HashSet<String>,
    /// By the SHA-256 of the token.
    pats: HashMap<[u8; 32], Arc<PatEntry>>,
    pats_by_id: HashMap<String, Arc<PatEntry>>,
    /// Origins some active key or token lists: the ones CORS may answer at all.
    origins: HashSet<String>,
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
        let service_documentation = store.setting("service_documentation")?;
        let mut keys_by_client = HashMap::new();
        let mut keys_by_id = HashMap::new();
        for key in store.keys(None, true)? {
            let (alg, verifier) = match previous.and_then(|p| p.keys_by_id.get(&key.key_id)) {
                Some(old) if old.key.public_key == key.public_key && old.key.alg == key.alg => {
                    (old.alg, old.verifier.clone())
                }
                _ => match parse_public_key(&key.public_key, &key.alg) {
                    Ok((alg, k)) => (alg, Arc::new(k)),
                    Err(e) => {
                        tracing::warn!(key_id = %key.key_id, error = %e, "stored public key does not parse; key skipped");
                        continue;
                    }
                },
            };
            let entry = Arc::new(KeyEntry { key, alg, verifier });
            keys_by_client.insert(entry.key.client_id.clone(), entry.clone());
            // Google's libraries sign with the service account address as the issuer.
            if let Some(email) = &entry.key.client_email {
                keys_by_client.insert(email.clone(), entry.clone());
            }
            keys_by_id.insert(entry.key.key_id.clone(), entry);
        }
        let mut epochs = HashMap::new();
        let users = store
            .user_auths()?
            .into_iter()
            .map(|a| {
                epochs.insert(a.user.name.clone(), a.epoch);
                let entry = UserEntry {
                    signer: EncodingKey::from_secret(a.secret.expose()),
                    verifier: DecodingKey::from_secret(a.secret.expose()),
                    user: a.user,
                };
                (entry.user.name.clone(), entry)
            })
            .collect();
        let revoked_tokens = store.revoked_tokens(now)?.into_iter().collect();
        let mut pats = HashMap::new();
        for pat in store.pats(None, true)? {
            let last_touch = previous
                .and_then(|p| p.pats.get(&pat.hash))
                .map_or(i64::MIN, |old| old.last_touch.load(Ordering::Relaxed));
            let entry = PatEntry {
                current: epochs.get(&pat.user) == Some(&pat.secret_epoch),
                last_touch: AtomicI64::new(last_touch),
                pat,
            };
            pats.insert(entry.pat.hash, Arc::new(entry));
        }
        let pats_by_id = pats
            .values()
            .map(|e| (e.pat.id.clone(), e.clone()))
            .collect();
        let live = |revoked: Option<i64>, expires: Option<i64>| {
            revoked.is_none() && expires.is_none_or(|e| e > now)
        };
        let origins = keys_by_id
            .values()
            .filter(|k: &&Arc<KeyEntry>| live(k.key.revoked, k.key.expires))
            .flat_map(|k| k.key.origins.iter().cloned())
            .chain(
                pats.values()
                    .filter(|p| p.current && live(p.pat.revoked, p.pat.expires))
                    .flat_map(|p| p.pat.origins.iter().cloned()),
            )
            .collect();
        Ok(Snapshot {
            generation,
            token_uri,
            issuer,
            service_documentation,
            keys_by_client,
            keys_by_id,
            users,
            revoked_tokens,
            pats,
            pats_by_id,
            origins,
        })
    }

    /// The personal access token with this SHA-256 hash.
    pub fn pat(&self, hash: &[u8; 32]) -> Option<&PatEntry> {
        self.pats.get(hash).map(|p| &**p)
    }

    pub fn pat_by_id(&self, id: &str) -> Option<&PatEntry> {
        self.pats_by_id.get(id).map(|p| &**p)
    }

    /// Whether some active key or token lists this (normalised) origin.
    pub fn origin_known(&self, origin: &str) -> bool {
        self.origins.contains(origin)
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

/// A stored public key (PEM) ready to verify grants of its algorithm.
fn parse_public_key(pem: &str, alg: &str) -> anyhow::Result<(Alg, ParsedPublicKey)> {
    let key = PublicKey::parse(pem)?;
    if key.alg.as_str() != alg {
        anyhow::bail!("the key is {} but stored as {alg}", key.alg);
    }
    let parsed = ParsedPublicKey::new(key.alg.verification(), key.spki_der())
        .map_err(|e| anyhow::anyhow!("aws-lc refused the key: {e}"))?;
    Ok((key.alg, parsed))
}

/// The issuer is where the token endpoint lives: its URI without the last path segment
/// ("http://127.0.0.1:8080/token" → "http://127.0.0.1:8080", "https://h/auth/token" →
/// "https://h/auth").
pub fn default_issuer(token_uri: &str) -> String {
    url::Url::parse(token_uri).map_or_else(
        |_| token_uri.to_owned(),
        |u| {
            let dir = u.path().rsplit_once('/').map_or("", |(dir, _)| dir);
            format!("{}{dir}", u.origin().ascii_serialization())
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tokens_use_is_written_at_most_once_a_minute() {
        let entry = super::PatEntry {
            pat: crate::store::Pat {
                id: "p".into(),
                user: "u".into(),
                hash: [0; 32],
                last4: "abcd".into(),
                description: String::new(),
                scope: crate::scope::Scope::Read,
                ip_ranges: Vec::new(),
                origins: Vec::new(),
                created: 0,
                expires: None,
                revoked: None,
                secret_epoch: 0,
                last_used: None,
            },
            current: true,
            last_touch: super::AtomicI64::new(i64::MIN),
        };
        assert!(entry.claim_touch(1_000));
        assert!(!entry.claim_touch(1_000));
        assert!(!entry.claim_touch(1_059));
        assert!(entry.claim_touch(1_060));
        assert!(!entry.claim_touch(1_100));
    }

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
        assert_eq!(
            super::default_issuer("https://example.com/auth/token"),
            "https://example.com/auth"
        );
    }
}
