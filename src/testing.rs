//! For unit tests: a store in a temporary folder, and a registry loaded from it that answers
//! as a server's does (from the registry, and from the store for keys and tokens it does not
//! hold); and the one RSA key the fixtures share.

use std::sync::{Arc, Mutex, OnceLock};

use crate::public_key::Alg;
use crate::registry::{
    Credentials, KeyEntry, PatEntry, Registry, Settings, StoreCredentials, UserEntry,
};
use crate::scope::Scope;
use crate::service_key::{self, Generated};
use crate::store::{Key, Pat, Store};

pub struct Fixture {
    pub registry: Registry,
    store: Mutex<Store>,
    now: i64,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// A new store, set up by `setup`, and the registry loaded from it at `now`.
    pub fn new(now: i64, setup: impl FnOnce(&mut Store)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        setup(&mut store);
        Fixture {
            registry: Registry::load(&store, now).unwrap(),
            store: Mutex::new(store),
            now,
            _dir: dir,
        }
    }

    /// Changes the store, then brings the registry up to date through the feed.
    pub fn change(&mut self, f: impl FnOnce(&mut Store)) {
        let mut store = self.store.lock().unwrap();
        f(&mut store);
        while let crate::store::FeedRead::Batch(b) = store.read_feed(self.registry.seq()).unwrap() {
            if b.entries == 0 {
                return;
            }
            assert!(!b.reset, "a test store is never replaced");
            self.registry.apply(Registry::prepare(*b), self.now);
        }
        panic!("a test registry never falls behind the feed");
    }

    fn stored<T>(&self, f: impl FnOnce(&StoreCredentials) -> T) -> T {
        let store = self.store.lock().unwrap();
        f(&StoreCredentials {
            store: &store,
            now: self.now,
        })
    }
}

impl Credentials for Fixture {
    fn settings(&self) -> Arc<Settings> {
        self.registry.settings()
    }
    fn user(&self, name: &str) -> Option<Arc<UserEntry>> {
        self.registry.user(name)
    }
    fn key(&self, key_id: &str) -> Option<Arc<KeyEntry>> {
        self.registry
            .key(key_id)
            .or_else(|| self.stored(|s| s.key(key_id)))
    }
    fn key_by_client(&self, client: &str) -> Option<Arc<KeyEntry>> {
        self.registry
            .key_by_client(client)
            .or_else(|| self.stored(|s| s.key_by_client(client)))
    }
    fn pat(&self, hash: &[u8; 32]) -> Option<Arc<PatEntry>> {
        self.registry
            .pat(hash)
            .or_else(|| self.stored(|s| s.pat(hash)))
    }
    fn token_revoked(&self, jti: &str) -> bool {
        self.registry.token_revoked(jti)
    }
    fn trust(&self, id: &str) -> Option<Arc<crate::registry::TrustEntry>> {
        self.registry.trust(id)
    }
    fn trusts_of(&self, issuer: &str) -> Option<Arc<crate::registry::IssuerTrusts>> {
        self.registry.trusts_of(issuer)
    }
}

/// The one RSA key pair of the test binary (generating one is slow): every stored key
/// in the fixtures has its public half.
pub fn rsa_key() -> &'static Generated {
    static KEY: OnceLock<Generated> = OnceLock::new();
    KEY.get_or_init(|| {
        service_key::generate(Alg::RS256, 2048, false, &mut rand::rngs::OsRng)
            .expect("generating RSA key")
    })
}

/// `user`'s stored key (`key-<user>`, `client-<user>`, issued at `issued`), with the
/// public half of [`rsa_key`].
pub fn key(user: &str, scope: Scope, ip_ranges: &str, issued: i64, expires: Option<i64>) -> Key {
    Key {
        key_id: format!("key-{user}"),
        client_id: format!("client-{user}"),
        user: user.to_owned(),
        title: String::new(),
        alg: "RS256".to_owned(),
        public_key: rsa_key().key.pem(),
        ip_ranges: crate::iprange::parse(ip_ranges).unwrap(),
        origins: Vec::new(),
        format: "tokenauth".to_owned(),
        client_email: None,
        scope,
        issued,
        expires,
        revoked: None,
        last_used: None,
    }
}

/// A live personal access token `id` of `user`, whose hash is `hash` 32 times, made under
/// the user's first secret.
pub fn pat(id: &str, user: &str, hash: u8) -> Pat {
    Pat {
        id: id.into(),
        user: user.into(),
        hash: [hash; 32],
        last4: "abcd".into(),
        description: String::new(),
        scope: Scope::Read,
        ip_ranges: Vec::new(),
        origins: Vec::new(),
        created: 1,
        expires: None,
        revoked: None,
        secret_epoch: 0,
        last_used: None,
        ended: false,
    }
}

/// A trust relationship `name` for `user`, binding a GitHub repository and branch.
pub fn trust(name: &str, user: &str, created: i64) -> crate::store::Trust {
    crate::store::Trust {
        id: format!("trust-{name}"),
        name: name.to_owned(),
        issuer: "https://token.actions.githubusercontent.com".into(),
        audience: "https://auth.example".into(),
        claims: [
            ("repository".to_owned(), "acme/app".to_owned()),
            ("ref".to_owned(), "refs/heads/main".to_owned()),
        ]
        .into(),
        user_claim: None,
        users: vec![user.to_owned()],
        scope: Scope::Read,
        ip_ranges: Vec::new(),
        origins: Vec::new(),
        jwks_uri: None,
        jwks: None,
        max_age: 3_600,
        created,
        expires: None,
        last_used: None,
    }
}
