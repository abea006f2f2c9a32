//! The registry: the token plane's in-memory copy of what checks need (users with their
//! signing keys, live service keys and personal access tokens, revoked token ids, the
//! settings). Loaded whole once, then kept current by applying the store's change feed: a
//! change costs what it changes. Revoked credentials leave it at once and expired ones after
//! [`GRACE`]; checks ask for them through [`Credentials`], which the server answers from the
//! registry and, for what is not there, from the store.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use aws_lc_rs::signature::ParsedPublicKey;
use ipnet::IpNet;
use jsonwebtoken::{DecodingKey, EncodingKey};

use crate::public_key::{Alg, PublicKey};
use crate::scope::Scope;
use crate::store::{FeedBatch, Key, Pat, Store, Trust, User, UserAuth};

pub const DEFAULT_TOKEN_URI: &str = "http://127.0.0.1:8080/token";

/// How long an expired key or token stays in memory: its refusals are worded from there
/// for that long, and from the store after.
pub const GRACE: i64 = 3_600;

/// What checks read: the registry in a server, the store itself in `verify`. Each answer is
/// the credential as it is now; a revoked or expired one may be answered too (to say so).
pub trait Credentials {
    fn settings(&self) -> Arc<Settings>;
    fn user(&self, name: &str) -> Option<Arc<UserEntry>>;
    fn key(&self, key_id: &str) -> Option<Arc<KeyEntry>>;
    /// The key a grant's issuer names: its client id, or a Google-format key's address.
    fn key_by_client(&self, client: &str) -> Option<Arc<KeyEntry>>;
    /// The personal access token with this SHA-256 hash.
    fn pat(&self, hash: &[u8; 32]) -> Option<Arc<PatEntry>>;
    fn token_revoked(&self, jti: &str) -> bool;
    /// The trust relationship with this id (all of them are in memory: they are few).
    fn trust(&self, id: &str) -> Option<Arc<TrustEntry>>;
    /// The trusts whose ID tokens carry this `iss`; None when there are none.
    fn trusts_of(&self, issuer: &str) -> Option<Arc<IssuerTrusts>>;
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub token_uri: String,
    pub issuer: String,
    /// Where people read about this server (RFC 8414 `service_documentation`).
    pub service_documentation: Option<String>,
}

impl Settings {
    pub fn from_rows(rows: &[(String, String)]) -> Settings {
        let get = |name: &str| rows.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let token_uri = get("token_uri").unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
        Settings {
            issuer: get("issuer").unwrap_or_else(|| default_issuer(&token_uri)),
            service_documentation: get("service_documentation"),
            token_uri,
        }
    }
}

pub struct UserEntry {
    pub user: User,
    /// How many times the secret was rotated: tokens made under another epoch are dead.
    pub epoch: i64,
    pub signer: EncodingKey,
    pub verifier: DecodingKey,
}

impl From<UserAuth> for UserEntry {
    fn from(a: UserAuth) -> UserEntry {
        UserEntry {
            signer: EncodingKey::from_secret(a.secret.expose()),
            verifier: DecodingKey::from_secret(a.secret.expose()),
            epoch: a.epoch,
            user: a.user,
        }
    }
}

/// A service key as checks need it: no title, no PEM, the public key parsed on first use.
pub struct KeyEntry {
    pub key_id: String,
    pub client_id: String,
    pub user: String,
    /// The only algorithm the key's grants may use (RFC 8725 §3.1).
    pub alg: Alg,
    pub scope: Scope,
    /// A key in Google's service-account format (see docs/key-files.md).
    pub google: bool,
    pub client_email: Option<String>,
    pub ip_ranges: Vec<IpNet>,
    pub origins: Vec<String>,
    pub expires: Option<i64>,
    /// Set only on a key read from the store to word a refusal: live ones are never revoked.
    pub revoked: Option<i64>,
    spki: Box<[u8]>,
    verifier: OnceLock<Option<ParsedPublicKey>>,
}

impl KeyEntry {
    /// None when the stored key is unusable (logged): its grants are refused as if unknown.
    pub fn from_key(key: Key) -> Option<KeyEntry> {
        let parsed = pem::parse(&key.public_key)
            .map_err(|e| e.to_string())
            .and_then(|p| Ok((key.alg.parse::<Alg>()?, p.into_contents())));
        let (alg, spki) = match parsed {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(key_id = %key.key_id, error = %e, "stored public key does not parse; key skipped");
                return None;
            }
        };
        Some(KeyEntry {
            google: key.format == "google",
            key_id: key.key_id,
            client_id: key.client_id,
            user: key.user,
            alg,
            scope: key.scope,
            client_email: key.client_email,
            ip_ranges: key.ip_ranges,
            origins: key.origins,
            expires: key.expires,
            revoked: key.revoked,
            spki: spki.into_boxed_slice(),
            verifier: OnceLock::new(),
        })
    }

    /// The public key, parsed on first use (then kept): a grant's verify is only the
    /// signature operation, not a DER parse (and for RSA a fresh Montgomery setup). None,
    /// logged once, when the stored key is unusable.
    pub fn verifier(&self) -> Option<&ParsedPublicKey> {
        self.verifier
            .get_or_init(|| match parse_public_key(&self.spki, self.alg) {
                Ok(k) => Some(k),
                Err(e) => {
                    tracing::warn!(key_id = %self.key_id, error = %e, "stored public key is unusable; its grants are refused");
                    None
                }
            })
            .as_ref()
    }

    fn live(&self, cutoff: i64) -> bool {
        self.revoked.is_none() && self.expires.is_none_or(|e| e > cutoff)
    }
}

/// A trust relationship as exchanges and checks need it: with where its issuer's keys come
/// from, an inline JWKS parsed once here (outside the registry's lock) rather than per token.
pub struct TrustEntry {
    pub trust: Trust,
    /// Err when the stored JWKS no longer parses (logged): the trust's tokens are refused.
    pub source: Result<crate::oidc::Source, String>,
}

impl From<Trust> for TrustEntry {
    fn from(trust: Trust) -> TrustEntry {
        use crate::oidc::{KeySet, Source};
        let source = match (&trust.jwks, &trust.jwks_uri) {
            (Some(text), _) => KeySet::parse(text)
                .map(|k| Source::Static(Arc::new(k)))
                .inspect_err(|e| {
                    tracing::warn!(trust = %trust.name, error = %e, "stored JWKS does not parse; the trust's tokens are refused");
                }),
            (None, Some(uri)) => Ok(Source::JwksUri(uri.clone())),
            (None, None) => Ok(Source::Discovery {
                issuer: trust.issuer.clone(),
            }),
        };
        TrustEntry { trust, source }
    }
}

/// The trusts of one issuer, indexed so that an exchange checks only those that could match:
/// each trust under one claim it binds exactly (`repository` = `acme/app`), so a token
/// costs a lookup per distinct claim name, not a check per trust (an organisation may trust
/// a thousand repositories on one issuer).
#[derive(Default)]
pub struct IssuerTrusts {
    /// By name.
    all: Vec<Arc<TrustEntry>>,
    /// Claim name → exact value → the trusts indexed under it.
    index: HashMap<String, HashMap<String, Vec<Arc<TrustEntry>>>>,
    /// Trusts that bind only globs: checked for every token.
    unindexed: Vec<Arc<TrustEntry>>,
}

impl IssuerTrusts {
    pub fn new(mut all: Vec<Arc<TrustEntry>>) -> IssuerTrusts {
        all.sort_by(|a, b| a.trust.name.cmp(&b.trust.name));
        // Each trust goes under its rarest exact (name, value): `ref=refs/heads/main` is
        // bound by most trusts, `repository=acme/app` by one.
        let mut shared: HashMap<(&str, &str), usize> = HashMap::new();
        for t in &all {
            for (name, value) in t.trust.claims.iter().filter(|(_, v)| !v.contains('*')) {
                *shared.entry((name, value)).or_default() += 1;
            }
        }
        let mut this = IssuerTrusts::default();
        for t in &all {
            let rarest = t
                .trust
                .claims
                .iter()
                .filter(|(_, v)| !v.contains('*'))
                .min_by_key(|(name, value)| shared[&(name.as_str(), value.as_str())]);
            match rarest {
                Some((name, value)) => this
                    .index
                    .entry(name.clone())
                    .or_default()
                    .entry(value.clone())
                    .or_default()
                    .push(t.clone()),
                None => this.unindexed.push(t.clone()),
            }
        }
        this.all = all;
        this
    }

    /// The trusts a token with these claims could satisfy (each of the others binds a
    /// claim the token does not have the value of), by name.
    pub fn candidates(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<Arc<TrustEntry>> {
        let mut found: Vec<Arc<TrustEntry>> = self.unindexed.clone();
        for (name, values) in &self.index {
            if let Some(value) = claims.get(name).and_then(crate::oidc::claim_text)
                && let Some(trusts) = values.get(value.as_ref())
            {
                found.extend(trusts.iter().cloned());
            }
        }
        found.sort_by(|a, b| a.trust.name.cmp(&b.trust.name));
        found
    }

    pub fn all(&self) -> &[Arc<TrustEntry>] {
        &self.all
    }

    /// Why a token with these claims has no candidate: the value of each claim the trusts
    /// are indexed by, which none binds (the token's values, never the trusts').
    pub fn unmatched(&self, claims: &serde_json::Map<String, serde_json::Value>) -> String {
        let mut names: Vec<&String> = self.index.keys().collect();
        names.sort();
        let said: Vec<String> = names
            .iter()
            .map(
                |name| match claims.get(*name).and_then(crate::oidc::claim_text) {
                    Some(v) => format!(
                        "claim '{}' is '{}'",
                        crate::text::printable(name),
                        crate::text::printable(&v.chars().take(64).collect::<String>())
                    ),
                    None => format!("claim '{}' is missing", crate::text::printable(name)),
                },
            )
            .collect();
        let mut text = said.join(" and ");
        if let Some(first) = text.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        format!("{text}, which no trust of this issuer accepts")
    }

    /// The trust of this issuer named `name`.
    pub fn named(&self, name: &str) -> Option<Arc<TrustEntry>> {
        self.all.iter().find(|t| t.trust.name == name).cloned()
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

pub struct PatEntry {
    pub pat: Pat,
    /// When its last use was last sent to the store (Unix seconds).
    last_touch: AtomicI64,
}

impl From<Pat> for PatEntry {
    fn from(pat: Pat) -> PatEntry {
        PatEntry {
            pat,
            last_touch: AtomicI64::new(i64::MIN),
        }
    }
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

/// A feed batch made ready to apply: everything that costs (PEM decoding, HMAC keys) done
/// before the registry is locked for writing.
pub struct Prepared {
    upto: i64,
    settings: Option<Settings>,
    removed_users: Vec<String>,
    users: Vec<UserEntry>,
    removed_keys: Vec<String>,
    keys: Vec<KeyEntry>,
    pats: Vec<Pat>,
    trust_ids: Vec<String>,
    trusts: Vec<TrustEntry>,
    revoked_tokens: Vec<(String, i64)>,
}

#[derive(Default)]
pub struct Registry {
    /// The feed position everything here is current to.
    seq: i64,
    settings: Arc<Settings>,
    users: HashMap<String, Arc<UserEntry>>,
    /// By key id, and by client id and Google address.
    keys: HashMap<String, Arc<KeyEntry>>,
    clients: HashMap<String, Arc<KeyEntry>>,
    /// By the SHA-256 of the token.
    pats: HashMap<[u8; 32], Arc<PatEntry>>,
    /// Revoked token ids, until their token's expiry (the heap says which goes next).
    revoked: HashMap<Arc<str>, i64>,
    revoked_expiry: BinaryHeap<Reverse<(i64, Arc<str>)>>,
    /// Trust relationships by id, and by issuer.
    trusts: HashMap<String, Arc<TrustEntry>>,
    issuers: HashMap<String, Arc<IssuerTrusts>>,
    /// Trust ids by issuer: what an issuer's index is rebuilt from.
    issuer_ids: HashMap<String, HashSet<String>>,
    /// How many live keys, tokens and trusts list each origin: CORS answers only these.
    origins: HashMap<String, u32>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings::from_rows(&[])
    }
}

impl Registry {
    /// Loads everything live as of one moment, and the feed position it is current to.
    pub fn load(store: &Store, now: i64) -> crate::store::Result<Registry> {
        let cutoff = now - GRACE;
        store.bulk(|| {
            store.read_transaction(|| {
                let mut reg = Registry {
                    seq: store.feed_head()?,
                    settings: Arc::new(Settings::from_rows(&store.settings()?)),
                    ..Registry::default()
                };
                store.each_user_auth(|a| {
                    reg.users.insert(a.user.name.clone(), Arc::new(a.into()));
                })?;
                store.each_live_key(cutoff, |k| {
                    if let Some(k) = KeyEntry::from_key(k) {
                        reg.insert_key(k);
                    }
                })?;
                store.each_live_pat(cutoff, |p| reg.insert_pat(PatEntry::from(p)))?;
                let mut issuers = HashSet::new();
                store.each_trust(|t| {
                    issuers.insert(t.issuer.clone());
                    reg.insert_trust(t.into());
                })?;
                // Each index once, not once per trust.
                for issuer in &issuers {
                    reg.reindex(issuer);
                }
                for (jti, exp) in store.revoked_tokens(now)? {
                    reg.revoke_token(jti, exp);
                }
                Ok(reg)
            })
        })
    }

    /// The feed position everything here is current to.
    pub fn seq(&self) -> i64 {
        self.seq
    }

    /// How many trust relationships there are.
    pub fn trust_count(&self) -> usize {
        self.trusts.len()
    }

    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.users.len(),
            self.keys.len(),
            self.pats.len(),
            self.revoked.len(),
        )
    }

    /// Whether some live key or token lists this (normalised) origin.
    pub fn origin_known(&self, origin: &str) -> bool {
        self.origins.contains_key(origin)
    }

    /// Readies a batch for [`Registry::apply`] without touching the registry.
    pub fn prepare(batch: FeedBatch) -> Prepared {
        let present: HashSet<&str> = batch.users.iter().map(|u| u.user.name.as_str()).collect();
        let removed_users = batch
            .user_names
            .iter()
            .filter(|n| !present.contains(n.as_str()))
            .cloned()
            .collect();
        let keys: Vec<KeyEntry> = batch
            .keys
            .into_iter()
            .filter_map(KeyEntry::from_key)
            .collect();
        let present: HashSet<&str> = keys.iter().map(|k| k.key_id.as_str()).collect();
        // Gone from the store, or no longer parsing: either way not a usable key.
        let removed_keys = batch
            .key_ids
            .iter()
            .filter(|id| !present.contains(id.as_str()))
            .cloned()
            .collect();
        Prepared {
            upto: batch.upto,
            settings: batch.settings.as_deref().map(Settings::from_rows),
            removed_users,
            users: batch.users.into_iter().map(UserEntry::from).collect(),
            removed_keys,
            keys,
            pats: batch.pats,
            trust_ids: batch.trust_ids,
            trusts: batch.trusts.into_iter().map(TrustEntry::from).collect(),
            revoked_tokens: batch.revoked_tokens,
        }
    }

    /// Applies a prepared batch: O(its size). Each credential it names is replaced by what
    /// the store holds now, or leaves when it is gone, revoked, ended or long expired.
    pub fn apply(&mut self, batch: Prepared, now: i64) {
        let cutoff = now - GRACE;
        if let Some(s) = batch.settings {
            self.settings = Arc::new(s);
        }
        for name in &batch.removed_users {
            self.users.remove(name);
        }
        // Users first: the tokens below are checked against their current secret epoch.
        for u in batch.users {
            self.users.insert(u.user.name.clone(), Arc::new(u));
        }
        for id in &batch.removed_keys {
            self.remove_key(id);
        }
        for k in batch.keys {
            self.remove_key(&k.key_id);
            if k.live(cutoff) {
                self.insert_key(k);
            }
        }
        for p in batch.pats {
            let old = self.remove_pat(&p.hash);
            let current = self.users.get(&p.user).map(|u| u.epoch) == Some(p.secret_epoch);
            if current && p.revoked.is_none() && p.expires.is_none_or(|e| e > cutoff) {
                let entry = PatEntry::from(p);
                if let Some(old) = old {
                    let touched = old.last_touch.load(Ordering::Relaxed);
                    entry.last_touch.store(touched, Ordering::Relaxed);
                }
                self.insert_pat(entry);
            }
        }
        // Named by id: gone from the store means removed; present means as it is now.
        let mut touched = HashSet::new();
        for id in &batch.trust_ids {
            if let Some(issuer) = self.remove_trust(id) {
                touched.insert(issuer);
            }
        }
        for t in batch.trusts {
            touched.insert(t.trust.issuer.clone());
            self.insert_trust(t);
        }
        for issuer in &touched {
            self.reindex(issuer);
        }
        for (jti, exp) in batch.revoked_tokens {
            if exp >= now {
                self.revoke_token(jti, exp);
            }
        }
        self.seq = self.seq.max(batch.upto);
    }

    /// Drops keys and tokens whose expiry passed long enough ago (`keys` and `pats`, from
    /// the store's expiry index): O(what goes).
    pub fn sweep(&mut self, keys: &[String], pats: &[[u8; 32]], now: i64) {
        for id in keys {
            if self.keys.get(id).is_some_and(|k| !k.live(now - GRACE)) {
                self.remove_key(id);
            }
        }
        for hash in pats {
            if self
                .pats
                .get(hash)
                .is_some_and(|p| p.pat.expires.is_some_and(|e| e <= now - GRACE))
            {
                self.remove_pat(hash);
            }
        }
    }

    /// When the next revoked token id can go (its token expires), if any.
    pub fn next_revoked_expiry(&self) -> Option<i64> {
        self.revoked_expiry.peek().map(|Reverse((exp, _))| *exp)
    }

    /// Drops revoked token ids whose tokens have expired: O(what goes).
    pub fn expire_revoked(&mut self, now: i64) {
        while let Some(Reverse((exp, _))) = self.revoked_expiry.peek()
            && *exp < now
        {
            let Some(Reverse((exp, jti))) = self.revoked_expiry.pop() else {
                break;
            };
            // Revoked again with a later expiry: that later entry removes it.
            if self.revoked.get(&jti) == Some(&exp) {
                self.revoked.remove(&jti);
            }
        }
    }

    fn revoke_token(&mut self, jti: String, exp: i64) {
        let jti: Arc<str> = jti.into();
        if self.revoked.get(&jti).is_none_or(|e| *e < exp) {
            self.revoked.insert(jti.clone(), exp);
            self.revoked_expiry.push(Reverse((exp, jti)));
        }
    }

    fn insert_key(&mut self, k: KeyEntry) {
        let k = Arc::new(k);
        self.count_origins(&k.origins, true);
        self.clients.insert(k.client_id.clone(), k.clone());
        // Google's libraries sign with the service account address as the issuer.
        if let Some(email) = &k.client_email {
            self.clients.insert(email.clone(), k.clone());
        }
        self.keys.insert(k.key_id.clone(), k);
    }

    fn remove_key(&mut self, key_id: &str) {
        if let Some(k) = self.keys.remove(key_id) {
            self.count_origins(&k.origins, false);
            self.clients.remove(&k.client_id);
            if let Some(email) = &k.client_email {
                self.clients.remove(email);
            }
        }
    }

    /// Adds a trust; its issuer's index is rebuilt by the caller, once per batch.
    fn insert_trust(&mut self, t: TrustEntry) {
        let t = Arc::new(t);
        self.count_origins(&t.trust.origins, true);
        self.issuer_ids
            .entry(t.trust.issuer.clone())
            .or_default()
            .insert(t.trust.id.clone());
        self.trusts.insert(t.trust.id.clone(), t);
    }

    /// Removes a trust; returns its issuer, whose index the caller rebuilds.
    fn remove_trust(&mut self, id: &str) -> Option<String> {
        let t = self.trusts.remove(id)?;
        self.count_origins(&t.trust.origins, false);
        if let Some(ids) = self.issuer_ids.get_mut(&t.trust.issuer) {
            ids.remove(id);
            if ids.is_empty() {
                self.issuer_ids.remove(&t.trust.issuer);
            }
        }
        Some(t.trust.issuer.clone())
    }

    /// Rebuilds one issuer's index: O(its trusts), once per batch that changed one of them.
    fn reindex(&mut self, issuer: &str) {
        let same: Vec<Arc<TrustEntry>> = self
            .issuer_ids
            .get(issuer)
            .into_iter()
            .flatten()
            .filter_map(|id| self.trusts.get(id).cloned())
            .collect();
        if same.is_empty() {
            self.issuers.remove(issuer);
        } else {
            self.issuers
                .insert(issuer.to_owned(), Arc::new(IssuerTrusts::new(same)));
        }
    }

    fn insert_pat(&mut self, p: PatEntry) {
        self.count_origins(&p.pat.origins, true);
        self.pats.insert(p.pat.hash, Arc::new(p));
    }

    fn remove_pat(&mut self, hash: &[u8; 32]) -> Option<Arc<PatEntry>> {
        let p = self.pats.remove(hash)?;
        self.count_origins(&p.pat.origins, false);
        Some(p)
    }

    fn count_origins(&mut self, origins: &[String], add: bool) {
        for o in origins {
            if add {
                *self.origins.entry(o.clone()).or_default() += 1;
            } else if let Some(n) = self.origins.get_mut(o) {
                *n -= 1;
                if *n == 0 {
                    self.origins.remove(o);
                }
            }
        }
    }
}

impl Credentials for Registry {
    fn settings(&self) -> Arc<Settings> {
        self.settings.clone()
    }

    fn user(&self, name: &str) -> Option<Arc<UserEntry>> {
        self.users.get(name).cloned()
    }

    fn key(&self, key_id: &str) -> Option<Arc<KeyEntry>> {
        self.keys.get(key_id).cloned()
    }

    fn key_by_client(&self, client: &str) -> Option<Arc<KeyEntry>> {
        self.clients.get(client).cloned()
    }

    fn pat(&self, hash: &[u8; 32]) -> Option<Arc<PatEntry>> {
        self.pats.get(hash).cloned()
    }

    fn token_revoked(&self, jti: &str) -> bool {
        self.revoked.contains_key(jti)
    }

    fn trust(&self, id: &str) -> Option<Arc<TrustEntry>> {
        self.trusts.get(id).cloned()
    }

    fn trusts_of(&self, issuer: &str) -> Option<Arc<IssuerTrusts>> {
        self.issuers.get(issuer).cloned()
    }
}

/// The store itself as [`Credentials`], a point lookup per question: for `verify`, and for
/// the server's questions about what its registry does not hold (revoked, long expired).
pub struct StoreCredentials<'a> {
    pub store: &'a Store,
    pub now: i64,
}

impl StoreCredentials<'_> {
    fn found<T>(&self, what: &str, r: crate::store::Result<Option<T>>) -> Option<T> {
        r.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "looking up {what} in the store failed");
            None
        })
    }
}

impl Credentials for StoreCredentials<'_> {
    fn settings(&self) -> Arc<Settings> {
        let rows = self.found("the settings", self.store.settings().map(Some));
        Arc::new(Settings::from_rows(&rows.unwrap_or_default()))
    }

    fn user(&self, name: &str) -> Option<Arc<UserEntry>> {
        self.found("a user", self.store.user_auth(name))
            .map(|a| Arc::new(a.into()))
    }

    fn key(&self, key_id: &str) -> Option<Arc<KeyEntry>> {
        self.found("a key", self.store.key_exact(key_id))
            .and_then(KeyEntry::from_key)
            .map(Arc::new)
    }

    fn key_by_client(&self, client: &str) -> Option<Arc<KeyEntry>> {
        self.found("a key", self.store.key_by_client(client))
            .and_then(KeyEntry::from_key)
            .map(Arc::new)
    }

    fn pat(&self, hash: &[u8; 32]) -> Option<Arc<PatEntry>> {
        self.found("a token", self.store.pat_by_hash(hash))
            .map(|p| Arc::new(p.into()))
    }

    fn token_revoked(&self, jti: &str) -> bool {
        // Unanswerable is revoked: fail closed.
        self.store.token_revoked(jti, self.now).unwrap_or(true)
    }

    fn trust(&self, id: &str) -> Option<Arc<TrustEntry>> {
        self.found("a trust", self.store.trust_by_id(id))
            .map(|t| Arc::new(t.into()))
    }

    fn trusts_of(&self, issuer: &str) -> Option<Arc<IssuerTrusts>> {
        let same: Vec<Arc<TrustEntry>> = self
            .found("the trusts", self.store.trusts().map(Some))
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.issuer == issuer)
            .map(|t| Arc::new(t.into()))
            .collect();
        (!same.is_empty()).then(|| Arc::new(IssuerTrusts::new(same)))
    }
}

/// A stored public key (DER SubjectPublicKeyInfo) ready to verify grants of its algorithm.
fn parse_public_key(spki: &[u8], alg: Alg) -> anyhow::Result<ParsedPublicKey> {
    let key = PublicKey::from_spki(spki)?;
    if key.alg != alg {
        anyhow::bail!("the key is {} but stored as {alg}", key.alg);
    }
    ParsedPublicKey::new(key.alg.verification(), key.spki_der())
        .map_err(|e| anyhow::anyhow!("aws-lc refused the key: {e}"))
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
    use super::*;
    use crate::secret::Secret;
    use crate::testing::{self, Fixture};

    const NOW: i64 = 1_700_000_000;

    fn pat(id: &str, user: &str, hash: u8, origins: &[&str], expires: Option<i64>) -> Pat {
        Pat {
            origins: origins.iter().map(|o| o.to_string()).collect(),
            expires,
            ..testing::pat(id, user, hash)
        }
    }

    fn with_alice() -> Fixture {
        Fixture::new(NOW, |s| {
            s.add_user("alice", &Secret::new(vec![1; 32]), NOW).unwrap();
            let mut key = testing::key("alice", Scope::Write, "", NOW, None);
            key.origins = vec!["https://a.example".into()];
            s.add_key(&key).unwrap();
            s.add_pat(&pat("p1", "alice", 1, &["https://a.example"], None))
                .unwrap();
        })
    }

    #[test]
    fn each_change_reaches_the_registry_as_itself() {
        let mut f = with_alice();
        let seq = f.registry.seq();
        assert_eq!(f.registry.counts(), (1, 1, 1, 0));
        f.change(|s| {
            s.edit_key(
                "key-alice",
                &crate::store::KeyChange {
                    ip_ranges: Some(crate::iprange::parse("10.0.0.0/8").unwrap()),
                    ..Default::default()
                },
            )
            .unwrap();
            s.set_disabled("alice", true).unwrap();
            s.revoke_token("j1", NOW + 60, NOW).unwrap();
        });
        assert!(f.registry.seq() > seq);
        let key = f.registry.key("key-alice").unwrap();
        assert_eq!(crate::iprange::format(&key.ip_ranges), "10.0.0.0/8");
        assert!(Arc::ptr_eq(
            &key,
            &f.registry.key_by_client("client-alice").unwrap()
        ));
        assert!(f.registry.user("alice").unwrap().user.disabled);
        assert!(f.registry.token_revoked("j1"));
        // A revoked key leaves memory; asked for, the store says it was revoked.
        f.change(|s| assert!(s.revoke_key("key-alice", NOW).unwrap()));
        assert!(f.registry.key("key-alice").is_none());
        assert!(f.registry.key_by_client("client-alice").is_none());
        assert_eq!(f.key("key-alice").unwrap().revoked, Some(NOW));
        assert_eq!(f.registry.counts(), (1, 0, 1, 1));
    }

    #[test]
    fn a_rotation_ends_the_users_tokens_in_memory() {
        let mut f = with_alice();
        assert!(f.registry.pat(&[1; 32]).is_some());
        f.change(|s| {
            s.rotate_secret("alice", &Secret::new(vec![2; 32]), NOW)
                .unwrap()
        });
        assert!(f.registry.pat(&[1; 32]).is_none());
        assert_eq!(f.registry.user("alice").unwrap().epoch, 1);
        // A token made after the rotation lives.
        f.change(|s| s.add_pat(&pat("p2", "alice", 2, &[], None)).unwrap());
        assert_eq!(f.registry.pat(&[2; 32]).unwrap().pat.secret_epoch, 1);
    }

    #[test]
    fn origins_count_while_a_live_credential_lists_them() {
        let mut f = with_alice();
        assert!(f.registry.origin_known("https://a.example"));
        f.change(|s| assert!(s.revoke_pat("p1", NOW).unwrap()));
        assert!(
            f.registry.origin_known("https://a.example"),
            "the key lists it"
        );
        f.change(|s| assert!(s.revoke_key("key-alice", NOW).unwrap()));
        assert!(!f.registry.origin_known("https://a.example"));
    }

    #[test]
    fn expired_credentials_and_revoked_ids_leave_after_their_time() {
        let mut f = Fixture::new(NOW, |s| {
            s.add_user("alice", &Secret::new(vec![1; 32]), NOW).unwrap();
            s.add_key(&testing::key("alice", Scope::Read, "", NOW, Some(NOW + 10)))
                .unwrap();
            s.add_pat(&pat("p1", "alice", 1, &[], Some(NOW + 10)))
                .unwrap();
            s.revoke_token("j1", NOW + 100, NOW).unwrap();
        });
        let (keys, pats) = (vec!["key-alice".to_owned()], vec![[1u8; 32]]);
        // Expired, but within the grace: kept, to word the refusal.
        f.registry.sweep(&keys, &pats, NOW + GRACE);
        assert_eq!(f.registry.counts(), (1, 1, 1, 1));
        assert_eq!(f.registry.next_revoked_expiry(), Some(NOW + 100));
        f.registry.expire_revoked(NOW + 100);
        assert_eq!(
            f.registry.counts(),
            (1, 1, 1, 1),
            "j1's token lives until then"
        );
        f.registry.expire_revoked(NOW + 101);
        assert_eq!(f.registry.counts(), (1, 1, 1, 0), "j1's token has expired");
        assert_eq!(f.registry.next_revoked_expiry(), None);
        f.registry.sweep(&keys, &pats, NOW + 10 + GRACE);
        assert_eq!(f.registry.counts(), (1, 0, 0, 0));
    }

    #[test]
    fn a_tokens_use_is_written_at_most_once_a_minute() {
        let entry = super::PatEntry::from(crate::store::Pat {
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
            ended: false,
        });
        assert!(entry.claim_touch(1_000));
        assert!(!entry.claim_touch(1_000));
        assert!(!entry.claim_touch(1_059));
        assert!(entry.claim_touch(1_060));
        assert!(!entry.claim_touch(1_100));
    }

    #[test]
    fn trusts_load_and_follow_the_feed_into_their_issuers_index() {
        let repo = |name: &str, r: &str| {
            let mut t = testing::trust(name, "alice", NOW);
            t.claims.insert("repository".into(), r.into());
            t
        };
        let mut f = Fixture::new(NOW, |s| {
            s.add_user("alice", &Secret::new(vec![1; 32]), NOW).unwrap();
            s.add_trust(&repo("app", "acme/app")).unwrap();
            s.add_trust(&repo("web", "acme/web")).unwrap();
        });
        let iss = "https://token.actions.githubusercontent.com";
        let token = |r: &str| serde_json::json!({"ref": "refs/heads/main", "repository": r});
        let found = |f: &Fixture, r: &str| -> Vec<String> {
            f.registry.trusts_of(iss).map_or(Vec::new(), |t| {
                t.candidates(token(r).as_object().unwrap())
                    .iter()
                    .map(|t| t.trust.name.clone())
                    .collect()
            })
        };
        assert_eq!(f.registry.trusts_of(iss).unwrap().len(), 2);
        assert_eq!(found(&f, "acme/web"), ["web"]);
        f.change(|s| {
            s.remove_trust("web").unwrap();
            s.add_trust(&repo("api", "acme/api")).unwrap();
        });
        assert_eq!(found(&f, "acme/web"), Vec::<String>::new());
        assert_eq!(found(&f, "acme/api"), ["api"]);
        f.change(|s| {
            s.remove_trust("app").unwrap();
            s.remove_trust("api").unwrap();
        });
        assert!(f.registry.trusts_of(iss).is_none());
        assert_eq!(f.registry.trust_count(), 0);
    }

    #[test]
    fn an_issuers_trusts_are_found_by_their_rarest_bound_value() {
        let trust = |name: &str, repo: &str| {
            let mut t = testing::trust(name, "deploy", NOW);
            t.claims.insert("repository".into(), repo.into());
            Arc::new(TrustEntry::from(t))
        };
        let mut glob = testing::trust("glob", "deploy", NOW);
        glob.claims = [("repository".to_owned(), "acme/*".to_owned())].into();
        let trusts = IssuerTrusts::new(vec![
            trust("app", "acme/app"),
            trust("web", "acme/web"),
            trust("web-too", "acme/web"),
            Arc::new(TrustEntry::from(glob)),
        ]);
        let names = |claims: serde_json::Value| -> Vec<String> {
            trusts
                .candidates(claims.as_object().unwrap())
                .iter()
                .map(|t| t.trust.name.clone())
                .collect()
        };
        // Every trust binds ref=refs/heads/main: the repository is what tells them apart.
        let main = |repo: &str| serde_json::json!({"ref": "refs/heads/main", "repository": repo});
        assert_eq!(names(main("acme/web")), ["glob", "web", "web-too"]);
        assert_eq!(names(main("acme/app")), ["app", "glob"]);
        assert_eq!(names(main("other/app")), ["glob"]);
        assert_eq!(trusts.named("web-too").unwrap().trust.name, "web-too");
        // One trust: indexed under one of its claims (ties go by name), told apart by it.
        let only_exact = IssuerTrusts::new(vec![trust("app", "acme/app")]);
        let dev = serde_json::json!({"ref": "refs/heads/\u{1b}dev", "repository": "acme/app"});
        assert!(only_exact.candidates(dev.as_object().unwrap()).is_empty());
        assert_eq!(
            only_exact.unmatched(dev.as_object().unwrap()),
            "Claim 'ref' is 'refs/heads/\\u{1b}dev', which no trust of this issuer accepts"
        );
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
