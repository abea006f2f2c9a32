//! Access tokens (RFC 9068 JWTs, HS256 with the subject's own secret): issuing them and
//! deciding whether one is good right now.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header};

pub use crate::invalid::Invalid;
use crate::iprange::ClientAddr;
use crate::registry::{Credentials, UserEntry};
use crate::scope::Scope;

pub const TYP: &str = "at+jwt";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub key_id: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    pub scope: String,
    /// On an impersonation token (`sub` is not the key's owner), the owner's secret epoch at
    /// issue: rotating the owner's secret ends the token as rotating the subject's does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_epoch: Option<i64>,
}

impl Claims {
    /// The highest scope the token carries.
    pub fn scope(&self) -> Scope {
        Scope::parse_list(&self.scope)
            .ok()
            .flatten()
            .unwrap_or(Scope::Read)
    }
}

/// What a token is issued for: its subject, and the key (and client) that asked.
#[derive(Debug, Clone, Copy)]
pub struct Grant<'a> {
    pub subject: &'a str,
    pub client_id: &'a str,
    pub key_id: &'a str,
    pub scope: Scope,
    /// The key owner's secret epoch, when the subject is another user (impersonation).
    pub owner_epoch: Option<i64>,
}

/// Issues a token for a grant, signed with the subject's secret, by `issuer`. Returns the
/// token and its claims.
pub fn issue(
    grant: Grant,
    subject: &UserEntry,
    issuer: &str,
    lifetime: i64,
    now: i64,
    rng: &mut impl rand::RngCore,
) -> anyhow::Result<(String, Claims)> {
    let mut jti = [0u8; 16];
    rng.fill_bytes(&mut jti);
    let claims = Claims {
        iss: issuer.to_owned(),
        sub: grant.subject.to_owned(),
        aud: issuer.to_owned(),
        client_id: grant.client_id.to_owned(),
        key_id: grant.key_id.to_owned(),
        jti: URL_SAFE_NO_PAD.encode(jti),
        iat: now,
        exp: now + lifetime,
        scope: grant.scope.granted().to_owned(),
        owner_epoch: grant.owner_epoch,
    };
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some(TYP.to_owned());
    let token = jsonwebtoken::encode(&header, &claims, &subject.signer)?;
    Ok((token, claims))
}

#[derive(serde::Deserialize)]
struct TokenHeader {
    alg: String,
    typ: Option<String>,
}

/// What a part of a token must hold: (member, must be an integer rather than a string,
/// required).
type Shape = &'static [(&'static str, bool, bool)];

const HEADER_SHAPE: Shape = &[("alg", false, true), ("typ", false, false)];
const CLAIMS_SHAPE: Shape = &[
    ("iss", false, true),
    ("sub", false, true),
    ("aud", false, true),
    ("client_id", false, true),
    ("key_id", false, true),
    ("jti", false, true),
    ("iat", true, true),
    ("exp", true, true),
    ("scope", false, true),
    ("owner_epoch", true, false),
];

/// Base64url-decodes and parses one part of a compact JWS.
fn part<T: serde::de::DeserializeOwned>(b64: &str, what: &str, shape: Shape) -> Result<T, Invalid> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| Invalid::Malformed(format!("{what} is not base64url")))?;
    // The typed parse is the fast path; only a failure pays for finding out why, in our own
    // words (serde's can quote the caller's strings and count bytes).
    serde_json::from_slice(&bytes).map_err(|_| Invalid::Malformed(explain(&bytes, what, shape)))
}

/// Says what is wrong with a part that did not parse as `shape`.
fn explain(bytes: &[u8], what: &str, shape: Shape) -> String {
    let noun = if what == "header" { "member" } else { "claim" };
    let map = match serde_json::from_slice::<serde_json::Value>(bytes) {
        Err(_) => return format!("{what} is not JSON"),
        Ok(serde_json::Value::Object(m)) => m,
        Ok(_) => return format!("{what} is not a JSON object"),
    };
    for &(name, integer, required) in shape {
        match map.get(name) {
            None | Some(serde_json::Value::Null) if required => {
                return format!("missing {noun} {name}");
            }
            None | Some(serde_json::Value::Null) => {}
            Some(v) if integer && v.as_i64().is_none() => {
                return format!("{noun} {name} must be an integer");
            }
            Some(v) if !integer && !v.is_string() => {
                return format!("{noun} {name} must be a string");
            }
            Some(_) => {}
        }
    }
    format!("{what} does not have the expected {noun}s")
}

/// Checks a token against what `credentials` say now: signature with the subject's current
/// secret, expiry, revoked jti, its key (not revoked or expired, `addr` inside the key's
/// current IP ranges when given), enabled users, for impersonation the owner's permission
/// and secret epoch, and the `required` scope.
pub fn validate(
    token: &str,
    credentials: &dyn Credentials,
    now: i64,
    addr: Option<ClientAddr>,
    required: Option<Scope>,
) -> Result<Claims, Invalid> {
    // Each part is decoded once: this is the hot path of every resource-server check.
    let (message, signature) = token
        .rsplit_once('.')
        .ok_or_else(|| Invalid::Malformed("a JWT has three dot-separated parts".into()))?;
    let Some((header, payload)) = message.split_once('.').filter(|(_, p)| !p.contains('.')) else {
        return Err(Invalid::Malformed(
            "a JWT has three dot-separated parts".into(),
        ));
    };
    let header: TokenHeader = part(header, "header", HEADER_SHAPE)?;
    if header.alg != "HS256" {
        return Err(Invalid::Malformed(format!(
            "algorithm {} is not accepted",
            crate::text::printable(&header.alg)
        )));
    }
    if header.typ.as_deref().is_none_or(|t| {
        !t.eq_ignore_ascii_case(TYP) && !t.eq_ignore_ascii_case("application/at+jwt")
    }) {
        return Err(Invalid::Malformed("typ must be at+jwt".into()));
    }
    // Read before the signature check only to pick the secret; trusted only after it.
    let claims: Claims = part(payload, "claims", CLAIMS_SHAPE)?;
    // An unknown subject is indistinguishable from a bad signature on purpose; so the
    // signature's form is judged first, the same whether the subject exists or not.
    if URL_SAFE_NO_PAD.decode(signature).is_err() {
        return Err(Invalid::Malformed("signature is not base64url".into()));
    }
    let user = credentials.user(&claims.sub).ok_or(Invalid::BadSignature)?;
    match jsonwebtoken::crypto::verify(
        signature,
        message.as_bytes(),
        &user.verifier,
        Algorithm::HS256,
    ) {
        Ok(true) => {}
        Ok(false) => return Err(Invalid::BadSignature),
        Err(_) => return Err(Invalid::Malformed("signature is not base64url".into())),
    }
    if claims.exp <= now {
        return Err(Invalid::Expired);
    }
    if credentials.token_revoked(&claims.jti) {
        return Err(Invalid::Revoked);
    }
    // Key ids are hex: the prefix alone says which kind issued the token, so a trust's
    // token never costs a key lookup (a registry miss, then the store).
    if claims.key_id.starts_with(TRUST_ID_PREFIX) {
        let trust = credentials
            .trust(&claims.key_id)
            .ok_or(Invalid::TrustRemoved)?;
        let trust = &trust.trust;
        if trust.expires.is_some_and(|e| e <= now) {
            return Err(Invalid::TrustExpired);
        }
        if user.user.disabled {
            return Err(Invalid::UserDisabled(claims.sub.clone()));
        }
        // A trust edited to no longer name this user ends the user's tokens from it.
        if !trust.users.contains(&claims.sub) {
            return Err(Invalid::Revoked);
        }
        check_address(addr, &trust.ip_ranges)?;
        return check_scope(claims, required);
    }
    let key = credentials.key(&claims.key_id).ok_or(Invalid::UnknownKey)?;
    if key.revoked.is_some() {
        return Err(Invalid::KeyRevoked);
    }
    if key.expires.is_some_and(|e| e <= now) {
        return Err(Invalid::KeyExpired);
    }
    if user.user.disabled {
        return Err(Invalid::UserDisabled(claims.sub.clone()));
    }
    let owner = credentials
        .user(&key.user)
        .filter(|u| !u.user.disabled)
        .ok_or_else(|| Invalid::UserDisabled(key.user.clone()))?;
    // An impersonation token stands on its key owner as well as on its subject: taking
    // `impersonate` away or rotating the owner's secret ends it. A token from before the
    // epoch claim counts as the owner's first epoch: after any rotation it is refused.
    if claims.sub != key.user
        && (!owner.user.may("impersonate") || claims.owner_epoch.unwrap_or(0) != owner.epoch)
    {
        return Err(Invalid::Revoked);
    }
    check_address(addr, &key.ip_ranges)?;
    check_scope(claims, required)
}

/// What trust relationship ids start with: a token whose `key_id` has it and names no trust
/// was issued under one since removed.
pub const TRUST_ID_PREFIX: &str = "trust-";

fn check_address(addr: Option<ClientAddr>, ranges: &[ipnet::IpNet]) -> Result<(), Invalid> {
    match addr {
        Some(addr) if !addr.allowed_by(ranges) => Err(match addr {
            ClientAddr::Ip(ip) => Invalid::AddressNotAllowed(ip),
            ClientAddr::Unknown => Invalid::AddressUnknown,
        }),
        _ => Ok(()),
    }
}

fn check_scope(claims: Claims, required: Option<Scope>) -> Result<Claims, Invalid> {
    match required {
        Some(required) if !claims.scope().covers(required) => {
            Err(Invalid::InsufficientScope(required))
        }
        _ => Ok(claims),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::OnceLock;

    use jsonwebtoken::EncodingKey;
    use rand::rngs::OsRng;
    use serde_json::{Value, json};

    use super::*;
    use crate::secret::Secret;
    use crate::testing;

    /// The fixed "now" tokens are issued and validated at.
    const NOW: i64 = 1_700_000_000;

    struct Fixture {
        credentials: testing::Fixture,
        /// alice's write token, good, and its claims.
        good: (String, Claims),
        /// alice's read-only token, good.
        read_only: String,
        /// alice's, revoked by jti.
        revoked: String,
        /// alice's, issued at `NOW - 1000` for 300 s.
        expired: String,
        /// bob's, through his (since revoked) key.
        key_revoked: String,
        /// carol's (since disabled), through her own key.
        user_disabled: String,
        /// carol's (since disabled), through alice's key.
        subject_disabled: String,
        /// erin's, through carol's key (carol since disabled).
        key_owner_disabled: String,
        /// dave's, through his expired key.
        key_expired: String,
    }

    /// Users: alice, bob, carol (disabled after issuing), dave, erin (no key).
    /// Keys: `key-alice` (write, 10.0.0.0/8 and 2001:db8::/32), `key-bob` (revoked after
    /// issuing), `key-carol`, `key-dave` (expired).
    fn fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let mut credentials = testing::Fixture::new(NOW, |store| {
                for user in ["alice", "bob", "carol", "dave", "erin"] {
                    store
                        .add_user(user, &Secret::generate(&mut OsRng), NOW - 10_000)
                        .unwrap();
                }
                for (user, scope, ranges, expires) in [
                    ("alice", Scope::Write, "10.0.0.0/8, 2001:db8::/32", None),
                    ("bob", Scope::Write, "", None),
                    ("carol", Scope::Write, "", None),
                    ("dave", Scope::Write, "", Some(NOW - 10)),
                ] {
                    store
                        .add_key(&testing::key(user, scope, ranges, NOW - 10_000, expires))
                        .unwrap();
                }
            });
            let issuer = credentials.settings().issuer.clone();
            let issue_through = |key: &str, subject: &str, scope: Scope, at: i64| {
                let grant = Grant {
                    key_id: &format!("key-{key}"),
                    client_id: &format!("client-{key}"),
                    subject,
                    scope,
                    owner_epoch: (key != subject).then_some(0),
                };
                let user = credentials.user(subject).unwrap();
                issue(grant, &user, &issuer, 300, at, &mut OsRng).unwrap()
            };
            let issue_as = |user: &str, scope: Scope, at: i64| issue_through(user, user, scope, at);
            let good = issue_as("alice", Scope::Write, NOW);
            let read_only = issue_as("alice", Scope::Read, NOW).0;
            let (revoked, revoked_claims) = issue_as("alice", Scope::Write, NOW);
            let expired = issue_as("alice", Scope::Write, NOW - 1_000).0;
            let key_revoked = issue_as("bob", Scope::Write, NOW).0;
            let user_disabled = issue_as("carol", Scope::Write, NOW).0;
            let key_expired = issue_as("dave", Scope::Write, NOW).0;
            let subject_disabled = issue_through("alice", "carol", Scope::Write, NOW).0;
            let key_owner_disabled = issue_through("carol", "erin", Scope::Write, NOW).0;
            credentials.change(|store| {
                store
                    .revoke_token(&revoked_claims.jti, revoked_claims.exp, NOW)
                    .unwrap();
                store.revoke_key("key-bob", NOW - 100).unwrap();
                store.set_disabled("carol", true).unwrap();
            });
            Fixture {
                credentials,
                good,
                read_only,
                revoked,
                expired,
                key_revoked,
                user_disabled,
                subject_disabled,
                key_owner_disabled,
                key_expired,
            }
        })
    }

    fn check(token: &str) -> Result<Claims, Invalid> {
        validate(token, &fixture().credentials, NOW, None, None)
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The good token's (header, claims, signature) parts.
    fn good_parts() -> (&'static str, &'static str, &'static str) {
        let mut parts = fixture().good.0.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            panic!("issued token is not a three-part JWS");
        };
        (h, c, s)
    }

    /// The good token's claims as JSON.
    fn good_claims() -> Value {
        serde_json::to_value(&fixture().good.1).unwrap()
    }

    /// A compact JWS over exactly this header and these claims, signed with `key`.
    fn jws(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
        format!("{input}.{signature}")
    }

    fn signer(user: &str) -> EncodingKey {
        fixture().credentials.user(user).unwrap().signer.clone()
    }

    fn at_jwt() -> Value {
        json!({"alg": "HS256", "typ": "at+jwt"})
    }

    fn malformed(why: &str) -> Result<Claims, Invalid> {
        Err(Invalid::Malformed(why.to_owned()))
    }

    #[test]
    fn fresh_token_validates_and_returns_its_claims() {
        let (token, claims) = &fixture().good;
        assert_eq!(check(token).as_ref(), Ok(claims));
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.key_id, "key-alice");
        assert_eq!(claims.scope, "read write");
        assert_eq!(claims.exp, NOW + 300);
        // Good until the second it expires.
        assert_eq!(
            validate(token, &fixture().credentials, NOW + 299, None, None).as_ref(),
            Ok(claims)
        );
        // Its own secret, re-signed by hand, is just as good: the check is the signature.
        let again = jws(
            &at_jwt(),
            &good_claims(),
            &signer("alice"),
            Algorithm::HS256,
        );
        assert_eq!(check(&again).as_ref(), Ok(claims));
    }

    #[test]
    fn tampered_payload_is_a_bad_signature() {
        let (header, _, signature) = good_parts();
        for (name, value) in [
            ("sub", json!("erin")),
            ("sub", json!("bob")),
            ("scope", json!("read write admin")),
            ("exp", json!(NOW + 100_000)),
            ("key_id", json!("key-bob")),
        ] {
            let mut claims = good_claims();
            claims[name] = value.clone();
            let forged = format!(
                "{header}.{}.{signature}",
                b64(claims.to_string().as_bytes())
            );
            assert_eq!(
                check(&forged),
                Err(Invalid::BadSignature),
                "{name} = {value}"
            );
        }
    }

    #[test]
    fn token_signed_with_another_users_secret_is_a_bad_signature() {
        // alice's claims, signed with bob's secret; and bob's claims with alice's.
        let forged = jws(&at_jwt(), &good_claims(), &signer("bob"), Algorithm::HS256);
        assert_eq!(check(&forged), Err(Invalid::BadSignature));
        let mut bobs = good_claims();
        bobs["sub"] = json!("bob");
        let forged = jws(&at_jwt(), &bobs, &signer("alice"), Algorithm::HS256);
        assert_eq!(check(&forged), Err(Invalid::BadSignature));
    }

    #[test]
    fn unknown_subject_is_a_bad_signature() {
        let mut claims = good_claims();
        claims["sub"] = json!("mallory");
        let forged = jws(&at_jwt(), &claims, &signer("alice"), Algorithm::HS256);
        assert_eq!(check(&forged), Err(Invalid::BadSignature));
    }

    #[test]
    fn a_subject_that_exists_and_one_that_does_not_are_refused_alike() {
        let (header, _, signature) = good_parts();
        // Neither signed with the subject's secret: the caller proved nothing.
        for sig in [signature, "", "not*base64url", "A"] {
            let answers: Vec<_> = ["alice", "carol", "mallory"]
                .into_iter()
                .map(|sub| {
                    let mut claims = good_claims();
                    claims["sub"] = json!(sub);
                    let forged = format!("{header}.{}.{sig}", b64(claims.to_string().as_bytes()));
                    check(&forged)
                })
                .collect();
            assert!(
                answers.iter().all(|a| a == &answers[0]),
                "{sig:?}: {answers:?}"
            );
            assert!(answers[0].is_err());
        }
    }

    #[test]
    fn alg_other_than_hs256_is_malformed() {
        let alice = &signer("alice");
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let name = format!("{alg:?}");
            let token = jws(
                &json!({"alg": name, "typ": "at+jwt"}),
                &good_claims(),
                alice,
                alg,
            );
            assert_eq!(
                check(&token),
                malformed(&format!("algorithm {name} is not accepted"))
            );
        }
        let (_, claims, _) = good_parts();
        let none = format!("{}.{claims}.", b64(br#"{"alg":"none","typ":"at+jwt"}"#));
        assert_eq!(check(&none), malformed("algorithm none is not accepted"));
        // Echoed with its control characters escaped.
        let header = b64(br#"{"alg":"HS\u001b[2J256\r\n","typ":"at+jwt"}"#);
        let (_, _, signature) = good_parts();
        assert_eq!(
            check(&format!("{header}.{claims}.{signature}")),
            malformed(r"algorithm HS\u{1b}[2J256\u{d}\u{a} is not accepted")
        );
    }

    #[test]
    fn missing_or_wrong_typ_is_malformed() {
        let alice = &signer("alice");
        for header in [
            json!({"alg": "HS256"}),
            json!({"alg": "HS256", "typ": "JWT"}),
            json!({"alg": "HS256", "typ": "at+jwt2"}),
            json!({"alg": "HS256", "typ": null}),
        ] {
            let token = jws(&header, &good_claims(), alice, Algorithm::HS256);
            assert_eq!(check(&token), malformed("typ must be at+jwt"), "{header}");
        }
        // The media type form and any case are the same typ.
        for typ in ["application/at+jwt", "AT+JWT"] {
            let header = json!({"alg": "HS256", "typ": typ});
            let token = jws(&header, &good_claims(), alice, Algorithm::HS256);
            assert!(check(&token).is_ok(), "typ {typ}");
        }
    }

    #[test]
    fn token_without_exactly_three_parts_is_malformed() {
        let (header, claims, signature) = good_parts();
        let token = &fixture().good.0;
        for bad in [
            String::new(),
            "abc".to_owned(),
            format!("{header}.{claims}"),
            format!("{claims}.{signature}"),
            format!("{token}.{signature}"),
            format!("{header}.{header}.{claims}.{signature}"),
            format!("{token}."),
        ] {
            assert_eq!(
                check(&bad),
                malformed("a JWT has three dot-separated parts"),
                "token {bad:?}"
            );
        }
    }

    #[test]
    fn signature_that_is_not_base64_is_malformed_not_a_panic() {
        let (header, claims, signature) = good_parts();
        for bad in [
            "not*base64url".to_owned(),
            format!("{signature}="),
            format!("/{}", &signature[1..]),
            format!("{signature}\u{e9}"),
            "A".to_owned(),
        ] {
            assert_ne!(bad, signature);
            assert_eq!(
                check(&format!("{header}.{claims}.{bad}")),
                malformed("signature is not base64url"),
                "signature {bad:?}"
            );
        }
        // Well-formed base64url of the wrong bytes is a bad signature instead.
        assert_eq!(
            check(&format!("{header}.{claims}.")),
            Err(Invalid::BadSignature)
        );
    }

    #[test]
    fn expired_token_is_expired() {
        assert_eq!(check(&fixture().expired), Err(Invalid::Expired));
        // exp is the first second it is no longer good.
        let (token, claims) = &fixture().good;
        assert_eq!(
            validate(token, &fixture().credentials, claims.exp, None, None),
            Err(Invalid::Expired)
        );
    }

    #[test]
    fn revoked_jti_is_revoked() {
        assert_eq!(check(&fixture().revoked), Err(Invalid::Revoked));
    }

    #[test]
    fn token_through_revoked_key_is_key_revoked() {
        assert_eq!(check(&fixture().key_revoked), Err(Invalid::KeyRevoked));
    }

    #[test]
    fn token_through_expired_key_is_key_expired() {
        assert_eq!(check(&fixture().key_expired), Err(Invalid::KeyExpired));
    }

    #[test]
    fn token_naming_an_unknown_key_is_unknown_key() {
        let mut claims = good_claims();
        claims["key_id"] = json!("key-nobody");
        let token = jws(&at_jwt(), &claims, &signer("alice"), Algorithm::HS256);
        assert_eq!(check(&token), Err(Invalid::UnknownKey));
    }

    #[test]
    fn disabled_user_is_user_disabled() {
        // carol is disabled: as the subject, as the key's owner, or both.
        for token in [
            &fixture().user_disabled,
            &fixture().subject_disabled,
            &fixture().key_owner_disabled,
        ] {
            assert_eq!(check(token), Err(Invalid::UserDisabled("carol".into())));
        }
    }

    #[test]
    fn impersonation_ends_when_the_owner_loses_impersonate_or_rotates_its_secret() {
        let mut f = testing::Fixture::new(NOW, |store| {
            for user in ["alice", "erin"] {
                store
                    .add_user(user, &Secret::generate(&mut OsRng), NOW - 10_000)
                    .unwrap();
            }
            store.set_permission("alice", "impersonate", true).unwrap();
            store
                .add_key(&testing::key("alice", Scope::Write, "", NOW - 10_000, None))
                .unwrap();
        });
        // alice's key acting as erin, recording `owner_epoch` as given.
        let as_erin = |f: &testing::Fixture, owner_epoch: Option<i64>| {
            let grant = Grant {
                subject: "erin",
                client_id: "client-alice",
                key_id: "key-alice",
                scope: Scope::Read,
                owner_epoch,
            };
            let issuer = f.settings().issuer.clone();
            let erin = f.user("erin").unwrap();
            issue(grant, &erin, &issuer, 300, NOW, &mut OsRng)
                .unwrap()
                .0
        };
        let token = as_erin(&f, Some(0));
        // Issued before owners' epochs were recorded.
        let legacy = as_erin(&f, None);
        let check = |f: &testing::Fixture, t: &str| validate(t, f, NOW, None, None).map(|c| c.sub);
        assert_eq!(check(&f, &token), Ok("erin".into()));
        assert_eq!(check(&f, &legacy), Ok("erin".into()));
        f.change(|s| s.set_permission("alice", "impersonate", false).unwrap());
        assert_eq!(check(&f, &token), Err(Invalid::Revoked));
        assert_eq!(check(&f, &legacy), Err(Invalid::Revoked));
        f.change(|s| s.set_permission("alice", "impersonate", true).unwrap());
        assert_eq!(check(&f, &token), Ok("erin".into()));
        f.change(|s| {
            s.rotate_secret("alice", &Secret::generate(&mut OsRng), NOW)
                .unwrap()
        });
        assert_eq!(check(&f, &token), Err(Invalid::Revoked));
        assert_eq!(check(&f, &legacy), Err(Invalid::Revoked));
        assert_eq!(check(&f, &as_erin(&f, Some(1))), Ok("erin".into()));
    }

    #[test]
    fn address_outside_the_keys_ranges_is_not_allowed() {
        let token = &fixture().good.0;
        let at = |addr: &str| {
            let addr: IpAddr = addr.parse().unwrap();
            (
                addr,
                validate(
                    token,
                    &fixture().credentials,
                    NOW,
                    Some(ClientAddr::Ip(addr)),
                    None,
                ),
            )
        };
        for outside in ["192.168.1.1", "11.0.0.1", "2001:db9::1", "::1"] {
            let (addr, result) = at(outside);
            assert_eq!(result, Err(Invalid::AddressNotAllowed(addr)));
        }
        for inside in ["10.0.0.1", "10.255.255.255", "2001:db8::1"] {
            let (_, result) = at(inside);
            assert_eq!(result.as_ref(), Ok(&fixture().good.1), "{inside}");
        }
    }

    #[test]
    fn unknown_address_is_refused_by_keys_with_ip_ranges() {
        let snapshot = &fixture().credentials;
        // alice's key is limited to IP ranges.
        assert_eq!(
            validate(
                &fixture().good.0,
                snapshot,
                NOW,
                Some(ClientAddr::Unknown),
                None
            ),
            Err(Invalid::AddressUnknown)
        );
    }

    /// Library wording (`missing field \`iss\` at line 1 column 12`) used to reach callers.
    #[test]
    fn malformed_parts_are_described_in_our_own_words() {
        let alice = &signer("alice");
        let cases = [
            (json!({"sub": "alice"}), "missing claim iss"),
            (
                {
                    let mut c = good_claims();
                    c["exp"] = json!("tomorrow");
                    c
                },
                "claim exp must be an integer",
            ),
            (
                {
                    let mut c = good_claims();
                    c["scope"] = json!(["read"]);
                    c
                },
                "claim scope must be a string",
            ),
            (json!([1, 2]), "claims is not a JSON object"),
        ];
        for (claims, why) in cases {
            let token = jws(&at_jwt(), &claims, alice, Algorithm::HS256);
            assert_eq!(check(&token), malformed(why), "{claims}");
        }
        let (_, claims, signature) = good_parts();
        let no_alg = format!("{}.{claims}.{signature}", b64(br#"{"typ":"at+jwt"}"#));
        assert_eq!(check(&no_alg), malformed("missing member alg"));
        let not_json = format!("{}.{claims}.{signature}", b64(b"{alg"));
        assert_eq!(check(&not_json), malformed("header is not JSON"));
    }

    #[test]
    fn read_token_with_required_write_is_insufficient_scope() {
        let snapshot = &fixture().credentials;
        let read_only = &fixture().read_only;
        assert_eq!(
            validate(read_only, snapshot, NOW, None, Some(Scope::Write)),
            Err(Invalid::InsufficientScope(Scope::Write))
        );
        assert!(validate(read_only, snapshot, NOW, None, Some(Scope::Read)).is_ok());
        let write = &fixture().good.0;
        assert!(validate(write, snapshot, NOW, None, Some(Scope::Write)).is_ok());
    }
}
