//! JWT grants (RFC 7523): signing them on the client, validating them on the server
//! (RFC 7523 §3, RFC 8725).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::public_key::{Alg, PublicKey};
use crate::registry::Credentials;
use crate::scope::Scope;
use crate::service_key::{GOOGLE_AUDIENCE, KeyFile};
use crate::text::printable;

/// The longest a grant may live (`exp - now`).
pub const MAX_LIFETIME: i64 = 86_400;
/// How old `iat` may be.
pub const MAX_AGE: i64 = 3_600;
/// Clock skew tolerated for `iat` and `nbf` in the future.
pub const SKEW: i64 = 60;

/// What the client puts in a grant besides the key file's fields.
#[derive(Debug, Default)]
pub struct GrantRequest {
    pub sub: Option<String>,
    pub aud: Option<String>,
    pub lifetime: i64,
    pub scope: Option<String>,
    /// Leave out `jti`: the server then cannot refuse a replay (legacy servers, benchmarks).
    pub no_jti: bool,
}

/// Signs a grant: `iss`=client_id, `sub`=user (or the impersonated user), `aud`=token URI.
pub fn sign(
    key: &KeyFile,
    req: &GrantRequest,
    now: i64,
    rng: &mut impl rand::RngCore,
) -> anyhow::Result<String> {
    Signer::new(key)?.sign(req, now, rng)
}

/// A private key of any of the three algorithms, parsed once.
pub enum PrivateKey {
    Rsa(aws_lc_rs::signature::RsaKeyPair),
    Ecdsa(aws_lc_rs::signature::EcdsaKeyPair),
    Ed25519(aws_lc_rs::signature::Ed25519KeyPair),
}

impl PrivateKey {
    /// From PEM: PKCS#1 (`BEGIN RSA PRIVATE KEY`), PKCS#8 (`BEGIN PRIVATE KEY`) of an RSA,
    /// P-256 or Ed25519 key, or SEC 1 (`BEGIN EC PRIVATE KEY`). The error is in our own words:
    /// a parser's message may quote what it chokes on.
    pub fn parse(text: &str) -> Result<PrivateKey, &'static str> {
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_FIXED_SIGNING as P256, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair,
        };
        const UNUSABLE: &str =
            "is not a PEM private key of an RSA (2048 bits or more), P-256 or Ed25519 key";
        let pem = pem::parse(text.trim()).map_err(|_| UNUSABLE)?;
        let der = pem.contents();
        let key = match pem.tag() {
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(der).map(PrivateKey::Rsa).ok(),
            "EC PRIVATE KEY" => EcdsaKeyPair::from_private_key_der(&P256, der)
                .map(PrivateKey::Ecdsa)
                .ok(),
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(der)
                .map(PrivateKey::Rsa)
                .ok()
                .or_else(|| {
                    EcdsaKeyPair::from_pkcs8(&P256, der)
                        .map(PrivateKey::Ecdsa)
                        .ok()
                })
                .or_else(|| {
                    Ed25519KeyPair::from_pkcs8(der)
                        .map(PrivateKey::Ed25519)
                        .ok()
                }),
            _ => None,
        };
        key.ok_or(UNUSABLE)
    }

    pub fn alg(&self) -> Alg {
        match self {
            PrivateKey::Rsa(_) => Alg::RS256,
            PrivateKey::Ecdsa(_) => Alg::ES256,
            PrivateKey::Ed25519(_) => Alg::EdDSA,
        }
    }

    /// The public half, as a DER SubjectPublicKeyInfo.
    pub fn public_spki(&self) -> Option<Vec<u8>> {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::KeyPair;
        let der = match self {
            PrivateKey::Rsa(k) => k.public_key().as_der().ok()?.as_ref().to_vec(),
            PrivateKey::Ecdsa(k) => k.public_key().as_der().ok()?.as_ref().to_vec(),
            PrivateKey::Ed25519(k) => k.public_key().as_der().ok()?.as_ref().to_vec(),
        };
        Some(der)
    }

    /// A compact JWS over exactly this header and these claims (for tests and tools that
    /// must sign what tokenauth's own grants would never hold).
    pub fn sign_jws(&self, header: &Value, claims: &Value) -> Option<String> {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.sign(message.as_bytes())?;
        Some(format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// A JWS signature (RFC 7518: PKCS#1 v1.5 for RS256, r‖s for ES256).
    pub(crate) fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match self {
            PrivateKey::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &rng,
                    message,
                    &mut sig,
                )
                .ok()?;
                Some(sig)
            }
            PrivateKey::Ecdsa(k) => Some(k.sign(&rng, message).ok()?.as_ref().to_vec()),
            PrivateKey::Ed25519(k) => Some(k.sign(message).as_ref().to_vec()),
        }
    }
}

/// A key file's private key, parsed once: each further grant costs only the signature
/// (jsonwebtoken parses the key again on every signature).
pub struct Signer<'k> {
    key: &'k KeyFile,
    private: PrivateKey,
    /// The base64url JWS header: the key's algorithm and id.
    header: String,
}

impl<'k> Signer<'k> {
    /// Signs with the key file's private key: `private_key` (which `--private-key` may have
    /// filled from a file of its own), or the file `private_key_file` names.
    pub fn new(key: &'k KeyFile) -> anyhow::Result<Signer<'k>> {
        let from_file;
        let (text, source): (&str, Option<&std::path::Path>) = match &key.private_key {
            Some(text) => (text.expose(), key.private_key_from.as_deref()),
            None => {
                let Some(path) = &key.private_key_file else {
                    anyhow::bail!(
                        "{} has no private key; pass --private-key FILE, or name the file in \
                         the key file's private_key_file",
                        key.name
                    );
                };
                from_file = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot read the private key {} (private_key_file of {}): {}",
                        path.display(),
                        key.name,
                        e.kind()
                    )
                })?;
                (from_file.as_str(), Some(path.as_path()))
            }
        };
        let private = PrivateKey::parse(text).map_err(|why| match source {
            Some(path) => anyhow::anyhow!("the private key {} {why}", path.display()),
            None => anyhow::anyhow!("the private_key of {} {why}", key.name),
        })?;
        if private.alg() != key.alg {
            anyhow::bail!(
                "{} is a {} key, but its private key is {}",
                key.name,
                key.alg,
                private.alg()
            );
        }
        // A private key kept apart may be the wrong one: say so here, not as a refused grant.
        if let Some(path) = source {
            let id = private
                .public_spki()
                .and_then(|der| PublicKey::from_spki(&der).ok())
                .map(|k| k.key_id());
            if id.as_deref() != Some(key.key_id.as_str()) {
                anyhow::bail!(
                    "the private key {} does not belong to key {} of {}",
                    path.display(),
                    key.key_id,
                    key.name
                );
            }
        }
        let header =
            serde_json::json!({ "typ": "JWT", "alg": key.alg.as_str(), "kid": key.key_id });
        Ok(Signer {
            key,
            private,
            header: URL_SAFE_NO_PAD.encode(header.to_string()),
        })
    }

    pub fn sign(
        &self,
        req: &GrantRequest,
        now: i64,
        rng: &mut impl rand::RngCore,
    ) -> anyhow::Result<String> {
        if !(1..=MAX_LIFETIME).contains(&req.lifetime) {
            anyhow::bail!(
                "grant lifetime {}s is out of range; use 1 to {MAX_LIFETIME} seconds",
                req.lifetime
            );
        }
        let key = self.key;
        let mut jti = [0u8; 16];
        rng.fill_bytes(&mut jti);
        let mut claims = serde_json::json!({
            "iss": key.client_id,
            "aud": req.aud.as_deref().unwrap_or(&key.token_uri),
            "iat": now,
            "exp": now + req.lifetime,
            "jti": URL_SAFE_NO_PAD.encode(jti),
        });
        // A Google file made elsewhere may not name its user: the server then takes the
        // key's own.
        if let Some(sub) = req.sub.as_ref().or(key.user_id.as_ref()) {
            claims["sub"] = Value::String(sub.clone());
        }
        if req.no_jti {
            claims.as_object_mut().map(|c| c.remove("jti"));
        }
        if let Some(scope) = &req.scope {
            claims["scope"] = Value::String(scope.clone());
        }
        let message = format!(
            "{}.{}",
            self.header,
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .private
            .sign(message.as_bytes())
            .ok_or_else(|| anyhow::anyhow!("cannot sign with the private key of {}", key.name))?;
        Ok(format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// Why a grant was refused: an RFC 6749 §5.2 error code, a specific description, and what
/// was known about the caller by then (for the usage log).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub error: &'static str,
    pub description: String,
    pub key_id: Option<String>,
    pub user: Option<String>,
    pub subject: Option<String>,
}

impl Refusal {
    fn grant(description: impl Into<String>) -> Refusal {
        Refusal {
            error: "invalid_grant",
            description: description.into(),
            key_id: None,
            user: None,
            subject: None,
        }
    }
}

/// A grant that passed every rule.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub key_id: String,
    pub client_id: String,
    pub user: String,
    pub subject: String,
    pub scope: Scope,
    pub jti: Option<String>,
    /// What makes this grant single-use (`store::replay_key`: its client and jti, or its
    /// signature when it has no jti).
    pub replay_key: [u8; 16],
    pub exp: i64,
    /// The key owner's secret epoch, when the subject is another user.
    pub owner_epoch: Option<i64>,
}

impl Accepted {
    /// What the access token for this grant is issued for.
    pub fn token_grant(&self) -> crate::access_token::Grant<'_> {
        crate::access_token::Grant {
            subject: &self.subject,
            client_id: &self.client_id,
            key_id: &self.key_id,
            scope: self.scope,
            owner_epoch: self.owner_epoch,
        }
    }
}

fn decode_part(part: &str, what: &str) -> Result<Map<String, Value>, Refusal> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Refusal::grant(format!("Malformed assertion: {what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Refusal::grant(format!(
            "Malformed assertion: {what} is not a JSON object"
        ))),
    }
}

fn int_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, Refusal> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 1e15)
                    .map(|f| f as i64)
            })
            .map(Some)
            .ok_or_else(|| {
                Refusal::grant(format!(
                    "Claim {name} must be a number (seconds since the epoch)"
                ))
            }),
    }
}

fn str_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<&'a str, Refusal> {
    match claims.get(name) {
        None => Err(Refusal::grant(format!("Missing claim: {name}"))),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Refusal::grant(format!("Claim {name} must be a string"))),
    }
}

/// Validates `assertion` as design.md's grant rules say. `requested_scope` is the token
/// request's `scope` parameter, which wins over the grant's own `scope` claim.
pub fn validate(
    assertion: &str,
    requested_scope: Option<&str>,
    credentials: &dyn Credentials,
    now: i64,
) -> Result<Accepted, Refusal> {
    let parts: Vec<&str> = assertion.split('.').collect();
    if parts.len() != 3 {
        return Err(Refusal::grant(
            "Malformed assertion: a JWT has three dot-separated parts",
        ));
    }
    let header = decode_part(parts[0], "header")?;
    // Exactly these names (RFC 7518 §3.1 is case-sensitive); which one a grant may use is
    // its key's, checked once the key is known.
    let Some(name) = header.get("alg").and_then(Value::as_str) else {
        return Err(Refusal::grant("Malformed assertion: header has no alg"));
    };
    let Some(alg) = Alg::from_header(name) else {
        // Anyone can send this, before any signature check: echo it tamed.
        return Err(Refusal::grant(format!(
            "Algorithm '{}' is not allowed; grants are signed with RS256, ES256 or EdDSA (Ed25519)",
            printable(name)
        )));
    };
    if let Some(typ) = header.get("typ")
        && !typ.as_str().is_some_and(|t| t.eq_ignore_ascii_case("JWT"))
    {
        return Err(Refusal::grant(
            "Invalid token type: a grant's typ must be JWT",
        ));
    }
    if header.contains_key("crit") {
        return Err(Refusal::grant("Unsupported critical header parameters"));
    }
    let unverified = decode_part(parts[1], "payload")?;
    let iss = str_claim(&unverified, "iss")?;
    let Some(key) = credentials.key_by_client(iss) else {
        return Err(Refusal::grant("No associated key found"));
    };
    let refuse = |error: &'static str, description: String, subject: Option<&str>| Refusal {
        error,
        description,
        key_id: Some(key.key_id.clone()),
        user: Some(key.user.clone()),
        subject: subject.map(str::to_owned),
    };
    // RFC 8725 §3.1: the key decides the algorithm, never the token.
    if alg != key.alg {
        return Err(refuse(
            "invalid_grant",
            format!(
                "Algorithm '{name}' does not match this key, which signs with {}",
                key.alg
            ),
            None,
        ));
    }
    // Keys in Google's format take what google-auth sends unchanged (see docs/key-files.md).
    let google = key.google;

    // The payload parsed above is exactly the signed bytes: once the signature holds, it
    // is the verified claim set, so nothing is decoded twice.
    let message = &assertion[..parts[0].len() + 1 + parts[1].len()];
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).map_err(|_| {
        refuse(
            "invalid_grant",
            "Malformed assertion: signature is not base64url".into(),
            None,
        )
    })?;
    // A stored key that does not parse verifies nothing (logged once when first used).
    let Some(verifier) = key.verifier() else {
        return Err(Refusal::grant("No associated key found"));
    };
    if verifier.verify_sig(message.as_bytes(), &signature).is_err() {
        return Err(refuse("invalid_grant", "Invalid signature".into(), None));
    }
    let claims = unverified;
    let claim_err = |r: Refusal| refuse(r.error, r.description, None);
    if key.revoked.is_some() {
        return Err(refuse("invalid_grant", "Key has been revoked".into(), None));
    }
    if key.expires.is_some_and(|e| e <= now) {
        return Err(refuse("invalid_grant", "Key has expired".into(), None));
    }

    let exp = int_claim(&claims, "exp")
        .map_err(claim_err)?
        .ok_or_else(|| claim_err(Refusal::grant("Missing claim: exp")))?;
    if exp <= now {
        return Err(refuse(
            "invalid_grant",
            "Signature has expired".into(),
            None,
        ));
    }
    if exp > now + MAX_LIFETIME {
        return Err(refuse(
            "invalid_grant",
            "Grant expires more than a day in the future".into(),
            None,
        ));
    }
    let iat = int_claim(&claims, "iat")
        .map_err(claim_err)?
        .ok_or_else(|| claim_err(Refusal::grant("Missing claim: iat")))?;
    if iat < now - MAX_AGE {
        return Err(refuse(
            "invalid_grant",
            "JWT was issued more than an hour in the past".into(),
            None,
        ));
    }
    if iat > now + SKEW {
        return Err(refuse(
            "invalid_grant",
            "JWT was issued in the future".into(),
            None,
        ));
    }
    if let Some(nbf) = int_claim(&claims, "nbf").map_err(claim_err)?
        && nbf > now + SKEW
    {
        return Err(refuse(
            "invalid_grant",
            "The token is not yet valid (nbf)".into(),
            None,
        ));
    }
    let settings = credentials.settings();
    let audience_ok = |a: &Value| {
        a.as_str().is_some_and(|a| {
            a == settings.token_uri || a == settings.issuer || (google && a == GOOGLE_AUDIENCE)
        })
    };
    match claims.get("aud") {
        None => return Err(refuse("invalid_grant", "Missing claim: aud".into(), None)),
        Some(Value::Array(list)) if list.iter().any(audience_ok) => {}
        Some(a) if audience_ok(a) => {}
        Some(_) => return Err(refuse("invalid_grant", "Invalid audience".into(), None)),
    }
    let sub = match claims.get("sub") {
        None if google => key.user.as_str(),
        _ => str_claim(&claims, "sub").map_err(claim_err)?,
    };
    let owner = credentials.user(&key.user);
    if owner.as_ref().is_none_or(|u| u.user.disabled) {
        return Err(refuse(
            "invalid_grant",
            format!("User '{}' is disabled", key.user),
            Some(sub),
        ));
    }
    let owner_epoch = (sub != key.user).then(|| owner.as_ref().map_or(0, |u| u.epoch));
    if sub != key.user {
        if !owner.is_some_and(|u| u.user.may("impersonate")) {
            return Err(refuse(
                "invalid_grant",
                format!(
                    "Impersonation not allowed: user '{}' may not act as '{sub}'",
                    key.user
                ),
                Some(sub),
            ));
        }
        match credentials.user(sub) {
            None => {
                return Err(refuse(
                    "invalid_grant",
                    format!("Unknown subject '{sub}'"),
                    Some(sub),
                ));
            }
            Some(u) if u.user.disabled => {
                return Err(refuse(
                    "invalid_grant",
                    format!("User '{sub}' is disabled"),
                    Some(sub),
                ));
            }
            Some(_) => {}
        }
    }
    let jti = match claims.get("jti") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => Some(s.clone()),
        Some(_) => {
            return Err(refuse(
                "invalid_grant",
                "Claim jti must be a non-empty string".into(),
                Some(sub),
            ));
        }
    };
    let claim_scope = match claims.get("scope") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => {
            return Err(refuse(
                "invalid_scope",
                "Claim scope must be a string".into(),
                Some(sub),
            ));
        }
    };
    let scope = match Scope::parse_list(requested_scope.or(claim_scope).unwrap_or("")) {
        Err(e) => {
            return Err(refuse(
                "invalid_scope",
                capitalise(&e.to_string()),
                Some(sub),
            ));
        }
        Ok(None) => key.scope,
        Ok(Some(s)) if key.scope.covers(s) => s,
        Ok(Some(s)) => {
            return Err(refuse(
                "invalid_scope",
                format!(
                    "Requested scope '{s}' exceeds the key's scope '{}'",
                    key.scope
                ),
                Some(sub),
            ));
        }
    };
    // The decoded signature, not its text: base64url has one spelling per byte string here,
    // but hashing what was verified leaves no room for a second one.
    let replay_key = crate::store::replay_key(&key.client_id, jti.as_deref(), &signature);
    Ok(Accepted {
        key_id: key.key_id.clone(),
        client_id: key.client_id.clone(),
        user: key.user.clone(),
        subject: sub.to_owned(),
        scope,
        jti,
        replay_key,
        exp,
        owner_epoch,
    })
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::OnceLock;

    use jsonwebtoken::{Algorithm, EncodingKey};
    use rand::rngs::OsRng;
    use serde_json::{Value, json};

    use super::*;
    use crate::registry::DEFAULT_TOKEN_URI;
    use crate::secret::Secret;
    use crate::service_key::{Format, KeyFile};
    use crate::store::Key;
    use crate::testing;

    /// The fixed "now" everything is signed and validated at.
    const NOW: i64 = 1_700_000_000;

    fn test_key(user: &str, scope: Scope, expires: Option<i64>) -> Key {
        testing::key(user, scope, "", NOW - 10_000, expires)
    }

    struct Fixture {
        credentials: testing::Fixture,
        signer: EncodingKey,
    }

    /// Users: alice (may impersonate), bob, dave, erin (no key).
    /// Keys by client id: `client-alice` (write), `client-bob` (read), `client-dave`
    /// (read, revoked).
    fn fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let credentials = testing::Fixture::new(NOW, |store| {
                for user in ["alice", "bob", "dave", "erin"] {
                    store
                        .add_user(user, &Secret::generate(&mut OsRng), NOW - 10_000)
                        .unwrap();
                }
                store.set_permission("alice", "impersonate", true).unwrap();
                for (user, scope) in [
                    ("alice", Scope::Write),
                    ("bob", Scope::Read),
                    ("dave", Scope::Read),
                ] {
                    store.add_key(&test_key(user, scope, None)).unwrap();
                }
                store.revoke_key("key-dave", NOW - 100).unwrap();
            });
            let signer =
                EncodingKey::from_rsa_pem(testing::rsa_key().private_pem.expose().as_bytes())
                    .unwrap();
            Fixture {
                credentials,
                signer,
            }
        })
    }

    fn key_file(user: &str) -> KeyFile {
        KeyFile {
            key_id: format!("key-{user}"),
            client_id: format!("client-{user}"),
            user_id: Some(user.to_owned()),
            issued: crate::clock::rfc3339(NOW - 10_000),
            token_uri: DEFAULT_TOKEN_URI.into(),
            private_key: Some(testing::rsa_key().private_pem.clone()),
            private_key_file: None,
            private_key_from: None,
            alg: Alg::RS256,
            format: Format::Tokenauth,
            name: format!("{user}.json"),
        }
    }

    /// A grant signed by `user`'s key file at `NOW`, good for 300 s.
    fn signed_grant(user: &str, req: GrantRequest) -> String {
        let req = GrantRequest {
            lifetime: if req.lifetime == 0 { 300 } else { req.lifetime },
            ..req
        };
        sign(&key_file(user), &req, NOW, &mut OsRng).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A compact JWS over exactly this header and these claims.
    fn jws(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
        format!("{input}.{signature}")
    }

    /// Alice's claims at `NOW`, good for 300 s.
    fn claims() -> Value {
        json!({
            "iss": "client-alice",
            "sub": "alice",
            "aud": DEFAULT_TOKEN_URI,
            "iat": NOW,
            "exp": NOW + 300,
            "jti": "grant-1",
        })
    }

    /// `claims` as a validly RS256-signed grant.
    fn rs256(claims: &Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT"});
        jws(&header, claims, &fixture().signer, Algorithm::RS256)
    }

    fn check(assertion: &str) -> Result<Accepted, Refusal> {
        validate(assertion, None, &fixture().credentials, NOW)
    }

    /// The refusal's (error, description).
    fn refused(assertion: &str) -> (&'static str, String) {
        let r = check(assertion).expect_err("the grant should be refused");
        (r.error, r.description)
    }

    fn invalid_grant(description: &str) -> (&'static str, String) {
        ("invalid_grant", description.to_owned())
    }

    fn with(mut claims: Value, name: &str, value: Value) -> Value {
        claims[name] = value;
        claims
    }

    #[test]
    fn good_grant_is_accepted_with_its_key_user_subject_scope_and_exp() {
        let accepted = check(&signed_grant("alice", GrantRequest::default())).unwrap();
        assert_eq!(accepted.key_id, "key-alice");
        assert_eq!(accepted.client_id, "client-alice");
        assert_eq!(accepted.user, "alice");
        assert_eq!(accepted.subject, "alice");
        assert_eq!(accepted.scope, Scope::Write);
        assert_eq!(accepted.exp, NOW + 300);
        assert!(accepted.jti.is_some_and(|j| !j.is_empty()));

        // The request's scope parameter wins over the grant's own scope claim.
        let grant = signed_grant(
            "alice",
            GrantRequest {
                scope: Some("write".into()),
                ..GrantRequest::default()
            },
        );
        let accepted = validate(&grant, Some("read"), &fixture().credentials, NOW).unwrap();
        assert_eq!(accepted.scope, Scope::Read);
    }

    #[test]
    fn swapped_payload_is_refused_as_invalid_signature() {
        let grant = signed_grant("alice", GrantRequest::default());
        let parts: Vec<&str> = grant.split('.').collect();
        for other in [
            with(claims(), "sub", json!("erin")),
            with(claims(), "scope", json!("write")),
            with(claims(), "exp", json!(NOW + 3_000)),
        ] {
            let forged = format!(
                "{}.{}.{}",
                parts[0],
                b64(other.to_string().as_bytes()),
                parts[2]
            );
            let r = check(&forged).unwrap_err();
            assert_eq!((r.error, r.description), invalid_grant("Invalid signature"));
            assert_eq!(r.key_id.as_deref(), Some("key-alice"));
            assert_eq!(r.user.as_deref(), Some("alice"));
        }
        // And the original, untouched, is fine: the refusal is about the swap.
        assert!(check(&grant).is_ok());
    }

    #[test]
    fn signature_that_is_not_base64url_is_malformed() {
        let grant = signed_grant("alice", GrantRequest::default());
        let (message, signature) = grant.rsplit_once('.').unwrap();
        for bad in [
            "not*base64url".to_owned(),
            format!("{signature}="),
            format!("+{}", &signature[1..]),
            "A".to_owned(),
        ] {
            assert_ne!(bad, signature);
            assert_eq!(
                refused(&format!("{message}.{bad}")),
                invalid_grant("Malformed assertion: signature is not base64url"),
                "signature {bad:?}"
            );
        }
    }

    #[test]
    fn assertion_without_exactly_three_parts_is_refused() {
        let grant = signed_grant("alice", GrantRequest::default());
        let (two, _) = grant.rsplit_once('.').unwrap();
        let four = format!("{grant}.{}", b64(b"{}"));
        for bad in ["", "abc", two, &four, &format!("{grant}.")] {
            assert_eq!(
                refused(bad),
                invalid_grant("Malformed assertion: a JWT has three dot-separated parts"),
                "assertion {bad:?}"
            );
        }
    }

    #[test]
    fn algorithms_other_than_rs256_are_refused_by_name() {
        let c = claims();
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(c.to_string().as_bytes())
        );
        // The classic confusion: HS256 keyed with the (public) PEM.
        let public_as_secret = EncodingKey::from_secret(testing::rsa_key().key.pem().as_bytes());
        let hs256 = jws(
            &json!({"alg": "HS256", "typ": "JWT"}),
            &c,
            &public_as_secret,
            Algorithm::HS256,
        );
        let rs512 = jws(
            &json!({"alg": "RS512", "typ": "JWT"}),
            &c,
            &fixture().signer,
            Algorithm::RS512,
        );
        for (grant, alg) in [(none, "none"), (hs256, "HS256"), (rs512, "RS512")] {
            assert_eq!(
                refused(&grant),
                invalid_grant(&format!(
                    "Algorithm '{alg}' is not allowed; grants are signed with RS256, ES256 or EdDSA (Ed25519)"
                ))
            );
        }
        // The same claims, RS256-signed, pass: the algorithm is what was refused.
        assert!(check(&rs256(&c)).is_ok());
    }

    #[test]
    fn rfc_9864s_ed25519_names_eddsa_and_is_held_to_the_key_like_any_alg() {
        let header = json!({"alg": "Ed25519", "typ": "JWT"});
        let grant = jws(&header, &claims(), &fixture().signer, Algorithm::RS256);
        assert_eq!(
            refused(&grant),
            invalid_grant("Algorithm 'Ed25519' does not match this key, which signs with RS256")
        );
        // Case matters, as for every JWS alg.
        let header = json!({"alg": "ed25519", "typ": "JWT"});
        let grant = jws(&header, &claims(), &fixture().signer, Algorithm::RS256);
        assert!(
            refused(&grant)
                .1
                .starts_with("Algorithm 'ed25519' is not allowed")
        );
    }

    #[test]
    fn alg_with_control_characters_is_echoed_with_them_escaped() {
        let header = json!({"alg": "RS\u{1b}[2J256\r\n\u{0}x", "typ": "JWT"});
        let grant = jws(&header, &claims(), &fixture().signer, Algorithm::RS256);
        let (error, description) = refused(&grant);
        assert_eq!(error, "invalid_grant");
        assert_eq!(
            description,
            r"Algorithm 'RS\u{1b}[2J256\u{d}\u{a}\u{0}x' is not allowed; grants are signed with RS256, ES256 or EdDSA (Ed25519)"
        );
        assert!(!description.chars().any(char::is_control));
    }

    #[test]
    fn unknown_issuer_has_no_key() {
        let grant = rs256(&with(claims(), "iss", json!("client-mallory")));
        let r = check(&grant).unwrap_err();
        assert_eq!(
            (r.error, r.description),
            invalid_grant("No associated key found")
        );
        assert_eq!(r.key_id, None);
    }

    #[test]
    fn expired_grant_is_refused() {
        for exp in [NOW, NOW - 1, NOW - 10_000] {
            let grant = rs256(&with(claims(), "exp", json!(exp)));
            assert_eq!(
                refused(&grant),
                invalid_grant("Signature has expired"),
                "exp {exp}"
            );
        }
        assert!(check(&rs256(&with(claims(), "exp", json!(NOW + 1)))).is_ok());
    }

    #[test]
    fn grant_expiring_more_than_a_day_ahead_is_refused() {
        for exp in [NOW + MAX_LIFETIME + 1, NOW + 10 * MAX_LIFETIME] {
            let grant = rs256(&with(claims(), "exp", json!(exp)));
            assert_eq!(
                refused(&grant),
                invalid_grant("Grant expires more than a day in the future"),
                "exp {exp}"
            );
        }
        let exactly_a_day = rs256(&with(claims(), "exp", json!(NOW + MAX_LIFETIME)));
        assert_eq!(check(&exactly_a_day).unwrap().exp, NOW + MAX_LIFETIME);
    }

    #[test]
    fn grant_issued_over_an_hour_ago_is_refused() {
        let grant = rs256(&with(claims(), "iat", json!(NOW - MAX_AGE - 1)));
        assert_eq!(
            refused(&grant),
            invalid_grant("JWT was issued more than an hour in the past")
        );
        // Still refused when it is the client's own signing that is old.
        let old = sign(
            &key_file("alice"),
            &GrantRequest {
                lifetime: 2 * MAX_AGE,
                ..GrantRequest::default()
            },
            NOW - MAX_AGE - 1,
            &mut OsRng,
        )
        .unwrap();
        assert_eq!(
            refused(&old),
            invalid_grant("JWT was issued more than an hour in the past")
        );
        assert!(check(&rs256(&with(claims(), "iat", json!(NOW - MAX_AGE)))).is_ok());
    }

    #[test]
    fn grant_issued_in_the_future_beyond_skew_is_refused() {
        let grant = rs256(&with(claims(), "iat", json!(NOW + SKEW + 1)));
        assert_eq!(
            refused(&grant),
            invalid_grant("JWT was issued in the future")
        );
        assert!(check(&rs256(&with(claims(), "iat", json!(NOW + SKEW)))).is_ok());
    }

    #[test]
    fn wrong_audience_is_refused() {
        for aud in [
            json!("https://elsewhere.example/token"),
            json!(format!("{DEFAULT_TOKEN_URI}/")),
            json!(["https://elsewhere.example/token"]),
            json!([]),
            json!(42),
        ] {
            let grant = rs256(&with(claims(), "aud", aud.clone()));
            assert_eq!(
                refused(&grant),
                invalid_grant("Invalid audience"),
                "aud {aud}"
            );
        }
        let issuer = fixture().credentials.settings().issuer.clone();
        for aud in [
            json!(issuer),
            json!(["https://elsewhere.example/token", DEFAULT_TOKEN_URI]),
        ] {
            assert!(
                check(&rs256(&with(claims(), "aud", aud.clone()))).is_ok(),
                "aud {aud}"
            );
        }
    }

    #[test]
    fn revoked_key_is_refused() {
        let r = check(&signed_grant("dave", GrantRequest::default())).unwrap_err();
        assert_eq!(
            (r.error, r.description),
            invalid_grant("Key has been revoked")
        );
        assert_eq!(r.key_id.as_deref(), Some("key-dave"));
        assert_eq!(r.user.as_deref(), Some("dave"));
    }

    #[test]
    fn impersonation_needs_the_permission() {
        let as_erin = |user| {
            let req = GrantRequest {
                sub: Some("erin".into()),
                ..GrantRequest::default()
            };
            signed_grant(user, req)
        };
        let r = check(&as_erin("bob")).unwrap_err();
        assert_eq!(
            (r.error, r.description),
            invalid_grant("Impersonation not allowed: user 'bob' may not act as 'erin'")
        );
        assert_eq!(r.user.as_deref(), Some("bob"));
        assert_eq!(r.subject.as_deref(), Some("erin"));

        let accepted = check(&as_erin("alice")).unwrap();
        assert_eq!(accepted.key_id, "key-alice");
        assert_eq!(accepted.user, "alice");
        assert_eq!(accepted.subject, "erin");
    }

    #[test]
    fn scope_above_the_keys_is_refused_with_invalid_scope() {
        let exceeds = (
            "invalid_scope",
            "Requested scope 'write' exceeds the key's scope 'read'".to_owned(),
        );
        let plain = signed_grant("bob", GrantRequest::default());
        let r = validate(&plain, Some("read write"), &fixture().credentials, NOW).unwrap_err();
        assert_eq!((r.error, r.description), exceeds.clone());
        assert_eq!(r.key_id.as_deref(), Some("key-bob"));

        let in_claim = signed_grant(
            "bob",
            GrantRequest {
                scope: Some("write".into()),
                ..GrantRequest::default()
            },
        );
        assert_eq!(refused(&in_claim), exceeds);

        // Within the key's scope, or none asked for: the key's own scope.
        let read = validate(&plain, Some("read"), &fixture().credentials, NOW).unwrap();
        assert_eq!(read.scope, Scope::Read);
        assert_eq!(check(&plain).unwrap().scope, Scope::Read);
    }
}
