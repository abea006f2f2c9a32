//! JWT grants (RFC 7523): signing them on the client, validating them on the server
//! (RFC 7523 §3, RFC 8725).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use crate::registry::Snapshot;
use crate::scope::Scope;
use crate::service_key::KeyFile;

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
    if !(1..=MAX_LIFETIME).contains(&req.lifetime) {
        anyhow::bail!(
            "grant lifetime {}s is out of range; use 1 to {MAX_LIFETIME} seconds",
            req.lifetime
        );
    }
    let mut jti = [0u8; 16];
    rng.fill_bytes(&mut jti);
    let mut claims = serde_json::json!({
        "iss": key.client_id,
        "sub": req.sub.as_deref().unwrap_or(&key.user_id),
        "aud": req.aud.as_deref().unwrap_or(&key.token_uri),
        "iat": now,
        "exp": now + req.lifetime,
        "jti": URL_SAFE_NO_PAD.encode(jti),
    });
    if req.no_jti {
        claims.as_object_mut().map(|c| c.remove("jti"));
    }
    if let Some(scope) = &req.scope {
        claims["scope"] = Value::String(scope.clone());
    }
    let signer = EncodingKey::from_rsa_pem(key.private_key.expose().as_bytes()).map_err(|e| {
        anyhow::anyhow!("the key file's private_key is not a usable RSA PEM key: {e}")
    })?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.key_id.clone());
    Ok(jsonwebtoken::encode(&header, &claims, &signer)?)
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
    pub exp: i64,
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
    snapshot: &Snapshot,
    now: i64,
) -> Result<Accepted, Refusal> {
    let parts: Vec<&str> = assertion.split('.').collect();
    if parts.len() != 3 {
        return Err(Refusal::grant(
            "Malformed assertion: a JWT has three dot-separated parts",
        ));
    }
    let header = decode_part(parts[0], "header")?;
    match header.get("alg").and_then(Value::as_str) {
        Some("RS256") => {}
        Some(other) => {
            // Anyone can send this, before any signature check: echo it tamed.
            return Err(Refusal::grant(format!(
                "Algorithm '{}' is not allowed; grants must be signed with RS256",
                crate::server::request::printable(other)
            )));
        }
        None => return Err(Refusal::grant("Malformed assertion: header has no alg")),
    }
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
    let Some(entry) = snapshot.key_by_client(iss) else {
        return Err(Refusal::grant("No associated key found"));
    };
    let key = &entry.key;
    let refuse = |error: &'static str, description: String, subject: Option<&str>| Refusal {
        error,
        description,
        key_id: Some(key.key_id.clone()),
        user: Some(key.user.clone()),
        subject: subject.map(str::to_owned),
    };

    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims =
        match jsonwebtoken::decode::<Map<String, Value>>(assertion, &entry.verifier, &validation) {
            Ok(data) => data.claims,
            Err(e) => {
                let why = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                        "Invalid signature".to_owned()
                    }
                    _ => format!("Malformed assertion: {e}"),
                };
                return Err(refuse("invalid_grant", why, None));
            }
        };
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
    let audience_ok = |a: &Value| {
        a.as_str()
            .is_some_and(|a| a == snapshot.token_uri || a == snapshot.issuer)
    };
    match claims.get("aud") {
        None => return Err(refuse("invalid_grant", "Missing claim: aud".into(), None)),
        Some(Value::Array(list)) if list.iter().any(audience_ok) => {}
        Some(a) if audience_ok(a) => {}
        Some(_) => return Err(refuse("invalid_grant", "Invalid audience".into(), None)),
    }
    let sub = str_claim(&claims, "sub").map_err(claim_err)?;
    let owner = snapshot.user(&key.user);
    if owner.is_none_or(|u| u.user.disabled) {
        return Err(refuse(
            "invalid_grant",
            format!("User '{}' is disabled", key.user),
            Some(sub),
        ));
    }
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
        match snapshot.user(sub) {
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
    Ok(Accepted {
        key_id: key.key_id.clone(),
        client_id: key.client_id.clone(),
        user: key.user.clone(),
        subject: sub.to_owned(),
        scope,
        jti,
        exp,
    })
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}
