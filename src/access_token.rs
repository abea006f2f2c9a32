//! Access tokens (RFC 9068 JWTs, HS256 with the subject's own secret): issuing them and
//! deciding whether one is good right now.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header, Validation};

use crate::grant::Accepted;
use crate::iprange;
use crate::registry::Snapshot;
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

/// Issues a token for an accepted grant, signed with the subject's secret. Returns the
/// token and its claims.
pub fn issue(
    grant: &Accepted,
    snapshot: &Snapshot,
    lifetime: i64,
    now: i64,
    rng: &mut impl rand::RngCore,
) -> anyhow::Result<(String, Claims)> {
    let user = snapshot
        .user(&grant.subject)
        .ok_or_else(|| anyhow::anyhow!("user '{}' vanished", grant.subject))?;
    let mut jti = [0u8; 16];
    rng.fill_bytes(&mut jti);
    let claims = Claims {
        iss: snapshot.issuer.clone(),
        sub: grant.subject.clone(),
        aud: snapshot.issuer.clone(),
        client_id: grant.client_id.clone(),
        key_id: grant.key_id.clone(),
        jti: URL_SAFE_NO_PAD.encode(jti),
        iat: now,
        exp: now + lifetime,
        scope: grant.scope.granted().to_owned(),
    };
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some(TYP.to_owned());
    let token = jsonwebtoken::encode(&header, &claims, &user.signer)?;
    Ok((token, claims))
}

/// Why a token is not good. `Display` is the RFC 6750 `error_description`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Invalid {
    #[error("Malformed access token: {0}")]
    Malformed(String),
    #[error("Access token expired")]
    Expired,
    #[error("Invalid signature")]
    BadSignature,
    #[error("Access token has been revoked")]
    Revoked,
    #[error("Key has been revoked")]
    KeyRevoked,
    #[error("Key has expired")]
    KeyExpired,
    #[error("Unknown key")]
    UnknownKey,
    #[error("User '{0}' is disabled")]
    UserDisabled(String),
    #[error("Address {0} is not allowed to use this key")]
    AddressNotAllowed(IpAddr),
    #[error("Insufficient scope: '{0}' required")]
    InsufficientScope(Scope),
}

impl Invalid {
    /// The RFC 6750 error code.
    pub fn code(&self) -> &'static str {
        match self {
            Invalid::InsufficientScope(_) => "insufficient_scope",
            _ => "invalid_token",
        }
    }
}

#[derive(serde::Deserialize)]
struct Subject {
    sub: String,
}

/// Checks a token against the current snapshot: signature with the subject's current
/// secret, expiry, revoked jti, its key (not revoked or expired, `addr` inside the key's
/// current IP ranges when given), enabled users, and the `required` scope.
pub fn validate(
    token: &str,
    snapshot: &Snapshot,
    now: i64,
    addr: Option<IpAddr>,
    required: Option<Scope>,
) -> Result<Claims, Invalid> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| Invalid::Malformed(e.to_string()))?;
    if header.alg != Algorithm::HS256 {
        return Err(Invalid::Malformed(format!(
            "algorithm {:?} is not accepted",
            header.alg
        )));
    }
    if header.typ.as_deref().is_none_or(|t| {
        !t.eq_ignore_ascii_case(TYP) && !t.eq_ignore_ascii_case("application/at+jwt")
    }) {
        return Err(Invalid::Malformed("typ must be at+jwt".into()));
    }
    let sub = jsonwebtoken::dangerous::insecure_decode::<Subject>(token)
        .map_err(|e| Invalid::Malformed(e.to_string()))?
        .claims
        .sub;
    // An unknown subject is indistinguishable from a bad signature on purpose.
    let user = snapshot.user(&sub).ok_or(Invalid::BadSignature)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Claims>(token, &user.verifier, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => Invalid::BadSignature,
            _ => Invalid::Malformed(e.to_string()),
        })?
        .claims;
    if claims.exp <= now {
        return Err(Invalid::Expired);
    }
    if snapshot.token_revoked(&claims.jti) {
        return Err(Invalid::Revoked);
    }
    let key = &snapshot.key(&claims.key_id).ok_or(Invalid::UnknownKey)?.key;
    if key.revoked.is_some() {
        return Err(Invalid::KeyRevoked);
    }
    if key.expires.is_some_and(|e| e <= now) {
        return Err(Invalid::KeyExpired);
    }
    if user.user.disabled {
        return Err(Invalid::UserDisabled(sub));
    }
    if snapshot.user(&key.user).is_none_or(|u| u.user.disabled) {
        return Err(Invalid::UserDisabled(key.user.clone()));
    }
    if let Some(addr) = addr
        && !iprange::allows(&key.ip_ranges, addr)
    {
        return Err(Invalid::AddressNotAllowed(addr));
    }
    if let Some(required) = required
        && !claims.scope().covers(required)
    {
        return Err(Invalid::InsufficientScope(required));
    }
    Ok(claims)
}
