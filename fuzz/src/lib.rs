//! What the fuzz targets share: a registry loaded from a small, real store (built once per
//! process), with a real RSA service key, a validly signed grant and access tokens in every
//! state the validators tell apart, so that mutations of them reach past the signature
//! checks.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use jsonwebtoken::{Algorithm, EncodingKey};
use rand::rngs::OsRng;
use tokenauth::access_token::{self, Grant};
use tokenauth::grant::{self, GrantRequest};
use tokenauth::iprange;
use tokenauth::public_key::Alg;
use tokenauth::registry::{Credentials, DEFAULT_TOKEN_URI, Registry};
use tokenauth::scope::Scope;
use tokenauth::secret::Secret;
use tokenauth::service_key::{self, Format, KeyFile};
use tokenauth::store::{Key, Store};

/// The fixed "now" the fixture is built at and the targets validate at.
pub const NOW: i64 = 1_700_000_000;

pub struct Fixture {
    /// What the server checks against: live keys and tokens (a revoked key is not in it).
    pub registry: Registry,
    /// alice's key file (client id `client-alice`, key id `key-alice`).
    pub key_file: KeyFile,
    /// The one RSA private key; every stored key has its public half, so anything signed
    /// with it passes the signature check for any of the client ids below.
    pub rsa_signer: EncodingKey,
    /// A grant alice signed at [`NOW`], good for 300 s.
    pub grant: String,
    /// Access tokens by placeholder letter: see [`Fixture::access_tokens`]'s doc.
    pub access_tokens: BTreeMap<char, String>,
}

/// Users: alice (may impersonate), bob, carol (disabled), dave, erin (no key).
/// Keys (client id → state): `client-alice` (write, 10.0.0.0/8 and 2001:db8::/32),
/// `client-bob` (revoked), `client-carol` (owner disabled), `client-dave` (expired).
/// Access tokens: `A` alice's, good; `E` erin's through alice's key (impersonation), good;
/// `R` alice's, revoked; `K` bob's, key revoked; `C` carol's, user disabled; `D` dave's,
/// key expired; `X` alice's, expired.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| build().expect("building the fuzz fixture"))
}

fn build() -> anyhow::Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(&dir.path().join("fuzz.db"))?;
    for user in ["alice", "bob", "carol", "dave", "erin"] {
        store.add_user(user, &Secret::generate(&mut OsRng), NOW - 10_000)?;
    }
    store.set_permission("alice", "impersonate", true)?;

    let generated = service_key::generate(Alg::RS256, 2048, false, &mut OsRng)?;
    let key = |user: &str, scope: Scope, ip_ranges: &str, expires: Option<i64>| Key {
        key_id: format!("key-{user}"),
        client_id: format!("client-{user}"),
        user: user.to_owned(),
        title: String::new(),
        alg: "RS256".to_owned(),
        public_key: generated.key.pem(),
        ip_ranges: iprange::parse(ip_ranges).expect("fixture ranges"),
        origins: Vec::new(),
        format: "tokenauth".to_owned(),
        client_email: None,
        scope,
        issued: NOW - 10_000,
        expires,
        revoked: None,
        last_used: None,
    };
    store.add_key(&key(
        "alice",
        Scope::Write,
        "10.0.0.0/8, 2001:db8::/32",
        None,
    ))?;
    store.add_key(&key("bob", Scope::Read, "", None))?;
    store.add_key(&key("carol", Scope::Read, "", None))?;
    store.add_key(&key("dave", Scope::Read, "", Some(NOW - 10)))?;

    let key_file = KeyFile {
        key_id: "key-alice".into(),
        client_id: "client-alice".into(),
        user_id: Some("alice".into()),
        issued: tokenauth::clock::rfc3339(NOW - 10_000),
        token_uri: DEFAULT_TOKEN_URI.into(),
        private_key: Some(generated.private_pem.clone()),
        private_key_file: None,
        private_key_from: None,
        alg: Alg::RS256,
        format: Format::Tokenauth,
        name: "alice.json".into(),
    };
    let grant = grant::sign(
        &key_file,
        &GrantRequest {
            lifetime: 300,
            ..GrantRequest::default()
        },
        NOW,
        &mut OsRng,
    )?;

    // Tokens are signed with the users' secrets, which only a loaded registry holds.
    let first = Registry::load(&store, NOW)?;
    let issuer = first.settings().issuer.clone();
    let mut access_tokens = BTreeMap::new();
    let mut issue = |letter: char, key: &str, subject: &str, lifetime: i64, at: i64| {
        let user = first.user(subject).expect("a fixture user");
        let grant = Grant {
            subject,
            client_id: &format!("client-{key}"),
            key_id: &format!("key-{key}"),
            scope: Scope::Write,
            owner_epoch: (key != subject).then_some(0),
        };
        let (token, claims) = access_token::issue(grant, &user, &issuer, lifetime, at, &mut OsRng)?;
        access_tokens.insert(letter, token);
        anyhow::Ok(claims)
    };
    issue('A', "alice", "alice", 300, NOW)?;
    issue('E', "alice", "erin", 300, NOW)?;
    let revoked = issue('R', "alice", "alice", 300, NOW)?;
    issue('K', "bob", "bob", 300, NOW)?;
    issue('C', "carol", "carol", 300, NOW)?;
    issue('D', "dave", "dave", 300, NOW)?;
    issue('X', "alice", "alice", 300, NOW - 1_000)?;
    store.revoke_token(&revoked.jti, revoked.exp, NOW)?;
    store.revoke_key("key-bob", NOW - 100)?;
    store.set_disabled("carol", true)?;

    let registry = Registry::load(&store, NOW)?;
    let rsa_signer = EncodingKey::from_rsa_pem(generated.private_pem.expose().as_bytes())?;
    // The registry holds everything in memory: the store and its folder can go.
    drop(store);
    drop(dir);
    Ok(Fixture {
        registry,
        key_file,
        rsa_signer,
        grant,
        access_tokens,
    })
}

/// A compact JWS over exactly these header and payload bytes, signed with `key`.
pub fn sign_raw(header: &[u8], payload: &[u8], key: &EncodingKey, alg: Algorithm) -> String {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("signing");
    format!("{input}.{signature}")
}

/// Splits fuzz input into its first `n - 1` lines and the rest (fewer parts if it has fewer
/// lines).
pub fn lines(data: &[u8], n: usize) -> Vec<&[u8]> {
    data.splitn(n, |&b| b == b'\n').collect()
}

/// The fixture's text edited by 4-byte ops `[op, pos_hi, pos_lo, byte]`: set, insert,
/// remove, truncate at `pos` (modulo the length).
pub fn edit(original: &str, ops: &[u8]) -> String {
    let mut bytes = original.as_bytes().to_vec();
    for op in ops.chunks_exact(4) {
        let pos = usize::from(u16::from_be_bytes([op[1], op[2]])) % (bytes.len() + 1);
        match op[0] % 4 {
            0 if pos < bytes.len() => bytes[pos] = op[3],
            1 => bytes.insert(pos, op[3]),
            2 if pos < bytes.len() => {
                bytes.remove(pos);
            }
            3 => bytes.truncate(pos),
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
