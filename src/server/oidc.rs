//! Keyless CI at POST /token: a CI platform's OIDC ID token, sent as an RFC 7523 assertion or
//! an RFC 8693 subject token, exchanged under the trust relationship whose bound claims it
//! satisfies.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::access_token;
use crate::grant::Refusal;
use crate::iprange::ClientAddr;
use crate::oidc::{self, KeysError, Source, TrustRules, Unverified};
use crate::registry::{Credentials, TrustEntry};
use crate::scope::Scope;
use crate::server::cors::CrossSite;
use crate::server::error::ApiError;
use crate::server::observe::Caller;
use crate::server::replay::{self, Seen};
use crate::server::token::{Issued, Use, caller_allowed, issue_once, refuse};
use crate::server::{SharedState, View};
use crate::store::UsageRow;
use crate::text::printable;

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The `iss` of an assertion, read without checking anything: only to tell an ID token (some
/// trust's issuer) from a service key's grant, which then goes its own way unchanged.
pub fn peek_issuer(assertion: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let payload = assertion.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Iss>(&bytes).ok()?.iss
}

/// RFC 8693's parameters, checked: the subject token, when the request is one tokenauth
/// answers.
pub fn subject_token(form: &HashMap<String, String>) -> Result<&str, ApiError> {
    let Some(token) = form.get("subject_token").filter(|t| !t.is_empty()) else {
        return Err(ApiError::invalid_request(
            "Missing parameter: subject_token",
        ));
    };
    match form.get("subject_token_type").map(String::as_str) {
        None => {
            return Err(ApiError::invalid_request(
                "Missing parameter: subject_token_type",
            ));
        }
        Some(ID_TOKEN_TYPE | JWT_TOKEN_TYPE) => {}
        Some(other) => {
            return Err(ApiError::invalid_request(format!(
                "Unsupported subject_token_type '{}'; use {ID_TOKEN_TYPE} or {JWT_TOKEN_TYPE}",
                printable(other)
            )));
        }
    }
    if let Some(t) = form.get("requested_token_type")
        && t != ACCESS_TOKEN_TYPE
    {
        return Err(ApiError::invalid_request(format!(
            "Unsupported requested_token_type '{}'; tokenauth issues {ACCESS_TOKEN_TYPE}",
            printable(t)
        )));
    }
    if form.contains_key("actor_token") || form.contains_key("actor_token_type") {
        return Err(ApiError::invalid_request(
            "Delegation (actor_token) is not supported; send the subject token alone",
        ));
    }
    Ok(token)
}

/// What the exchange knows of the request.
pub struct Request<'a> {
    pub id_token: &'a str,
    /// `client_id`: the trust to use when several of one issuer would match.
    pub trust: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub addr: ClientAddr,
    pub cross_site: Option<Extension<CrossSite>>,
    pub row: UsageRow,
}

/// Exchanges an ID token for an access token, or refuses it with the first rule it broke.
pub async fn exchange(
    state: &SharedState,
    view: &View<'_>,
    req: Request<'_>,
    who: &mut Option<Caller>,
) -> Result<Issued, ApiError> {
    let now = state.now();
    let mut base = req.row.clone();
    let row = &base;
    let refusal = |description: String, trust: Option<&TrustEntry>| Refusal {
        error: "invalid_grant",
        description,
        key_id: trust.map(|t| t.trust.id.clone()),
        user: None,
        subject: None,
    };
    let u = match Unverified::parse(req.id_token) {
        Ok(u) => u,
        Err(why) => return Err(refuse(state, who, row, refusal(why, None)).await),
    };
    let Some(of_issuer) = view.trusts_of(&u.iss) else {
        let why = format!(
            "No trust relationship accepts ID tokens of issuer '{}'",
            printable(&u.iss)
        );
        return Err(refuse(state, who, row, refusal(why, None)).await);
    };
    // A trust the client names that this issuer has not is said only once the signature
    // holds too: no probing for trust names with forged tokens.
    let mut unknown_name = None;
    let candidates = match req.trust {
        Some(name) => match of_issuer.named(name) {
            Some(t) => vec![t],
            None => {
                unknown_name = Some(name);
                Vec::new()
            }
        },
        None => of_issuer.candidates(&u.claims),
    };
    let single = (candidates.len() == 1).then(|| candidates[0].clone());
    // One trust in question: its refusals name it in the usage log.
    if let Some(t) = &single {
        base.trust = Some(t.trust.name.clone());
    }
    let row = &base;
    // The signature first: nothing the token says counts before it holds. Trusts of one
    // issuer nearly always share a source; each is verified once.
    let mut verified: Vec<Arc<TrustEntry>> = Vec::new();
    let mut first_error: Option<String> = None;
    let mut tried: Vec<(String, Result<(), KeysError>)> = Vec::new();
    // No candidate: every trust binds a value this token does not carry (or the client named
    // no trust of this issuer). It is said only once the signature holds, or a forger could
    // probe which values some trust binds.
    let pool = if candidates.is_empty() {
        of_issuer.all().to_vec()
    } else {
        candidates.clone()
    };
    for t in &pool {
        let source = match &t.source {
            Ok(s) => s,
            Err(e) => {
                first_error.get_or_insert_with(|| {
                    format!("The trust's stored JWKS is unusable ({e}); fix it with `trust edit`")
                });
                continue;
            }
        };
        let id = source_id(source, &t.trust);
        let result = match tried.iter().find(|(s, _)| *s == id) {
            Some((_, r)) => r.clone(),
            None => {
                let r = state.oidc_keys.verify(source, &u, now).await;
                tried.push((id, r.clone()));
                r
            }
        };
        match result {
            // Without candidates, one trust's keys holding is all that is asked.
            Ok(()) if candidates.is_empty() => {
                verified.push(t.clone());
                break;
            }
            Ok(()) => verified.push(t.clone()),
            Err(e) => {
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    if verified.is_empty() {
        let why = first_error.unwrap_or_else(|| "Invalid signature".into());
        return Err(refuse(state, who, row, refusal(why, single.as_deref())).await);
    }
    if let Some(name) = unknown_name {
        let why = format!(
            "No trust relationship named '{}' accepts ID tokens of this issuer",
            printable(name)
        );
        return Err(refuse(state, who, row, refusal(why, None)).await);
    }
    if candidates.is_empty() {
        let why = of_issuer.unmatched(&u.claims);
        // The issuer's only trust is the one the token missed: the usage log names it.
        let one = (of_issuer.len() == 1).then(|| of_issuer.all()[0].clone());
        let row = UsageRow {
            trust: one.as_ref().map(|t| t.trust.name.clone()),
            ..row.clone()
        };
        return Err(refuse(state, who, &row, refusal(why, one.as_deref())).await);
    }
    let mut matched = Vec::new();
    let mut failures = Vec::new();
    for t in &verified {
        let trust = &t.trust;
        if trust.expires.is_some_and(|e| e <= now) {
            failures.push((t.clone(), "The trust relationship has expired".to_owned()));
            continue;
        }
        let rules = TrustRules {
            issuer: &trust.issuer,
            audience: &trust.audience,
            claims: &trust.claims,
            user_claim: trust.user_claim.as_deref(),
            users: &trust.users,
            max_age: trust.max_age,
        };
        match oidc::check(&u, &rules, now) {
            Ok(m) => matched.push((t.clone(), m)),
            Err(f) => failures.push((t.clone(), f.description)),
        }
    }
    let (entry, m) = match matched.len() {
        1 => matched.pop().expect("one match"),
        0 => {
            // Each trust that could have taken the token says why it did not; a long list
            // is cut, not a description of kilobytes.
            const SHOWN: usize = 3;
            let why = match failures.as_slice() {
                [(_, why)] => why.clone(),
                many => {
                    let mut parts: Vec<String> = many
                        .iter()
                        .take(SHOWN)
                        .map(|(t, why)| format!("trust '{}': {why}", t.trust.name))
                        .collect();
                    if many.len() > SHOWN {
                        parts.push(format!("and {} more", many.len() - SHOWN));
                    }
                    parts.join("; ")
                }
            };
            let one = (failures.len() == 1).then(|| failures[0].0.clone());
            return Err(refuse(state, who, row, refusal(why, one.as_deref())).await);
        }
        _ => {
            let names: Vec<&str> = matched.iter().map(|(t, _)| t.trust.name.as_str()).collect();
            let why = format!(
                "The ID token satisfies trusts {}; name one with client_id (get-token --trust NAME)",
                names.join(", ")
            );
            return Err(refuse(state, who, row, refusal(why, None)).await);
        }
    };
    let trust = &entry.trust;
    // Only now: the token's signature and claims proved the trust, so nobody else can empty
    // its bucket.
    state.limit_credential(&trust.id)?;
    let claims_json = serde_json::to_string(&m.claims).ok();
    let known = |description: String| Refusal {
        error: "invalid_grant",
        description,
        key_id: Some(trust.id.clone()),
        user: Some(m.user.clone()),
        subject: Some(m.user.clone()),
    };
    let row = UsageRow {
        trust: Some(trust.name.clone()),
        claims: claims_json,
        ..req.row
    };
    match view.user(&m.user) {
        Some(u) if !u.user.disabled => {}
        Some(_) => {
            let why = format!("User '{}' is disabled", m.user);
            return Err(refuse(state, who, &row, known(why)).await);
        }
        None => {
            let why = format!("User '{}' does not exist", m.user);
            return Err(refuse(state, who, &row, known(why)).await);
        }
    }
    if let Err(why) = caller_allowed(
        &req.cross_site,
        &trust.origins,
        req.addr,
        &trust.ip_ranges,
        "trust",
    ) {
        return Err(refuse(state, who, &row, known(why)).await);
    }
    let scope = match Scope::parse_list(req.scope.unwrap_or("")) {
        Err(e) => {
            let r = Refusal {
                error: "invalid_scope",
                ..known(format!("Requested scope is not valid: {e}"))
            };
            return Err(refuse(state, who, &row, r).await);
        }
        Ok(None) => trust.scope,
        Ok(Some(s)) if trust.scope.covers(s) => s,
        Ok(Some(s)) => {
            let r = Refusal {
                error: "invalid_scope",
                ..known(format!(
                    "Requested scope '{s}' exceeds the trust's scope '{}'",
                    trust.scope
                ))
            };
            return Err(refuse(state, who, &row, r).await);
        }
    };
    match state.first_use(m.replay_key, m.exp, &trust.id) {
        Seen::First => {}
        Seen::Replayed => {
            return Err(refuse(state, who, &row, known(REPLAYED.into())).await);
        }
        Seen::KeyFull => {
            let why = format!(
                "This trust has {} used ID tokens that have not expired yet",
                replay::PER_KEY
            );
            return Err(refuse(state, who, &row, known(why)).await);
        }
    }
    let grant = access_token::Grant {
        subject: &m.user,
        client_id: &trust.name,
        key_id: &trust.id,
        scope,
        owner_epoch: None,
    };
    let row = UsageRow {
        key_id: Some(trust.id.clone()),
        user: Some(m.user.clone()),
        subject: Some(m.user.clone()),
        ..row
    };
    let used = Use {
        key: m.replay_key,
        exp: m.exp,
        jti: m.jti.clone(),
        replayed: REPLAYED,
    };
    let issued = issue_once(state, view, grant, trust.expires, row, used).await?;
    tracing::debug!(trust = %trust.name, sub = %m.user, addr = %req.addr, "token issued for an ID token");
    Ok(issued)
}

const REPLAYED: &str = "The ID token has already been used (each is good for one exchange)";

/// Which cached key set a source is: trusts of one issuer share it.
fn source_id(source: &Source, trust: &crate::store::Trust) -> String {
    match source {
        Source::Static(_) => format!("static:{}", trust.id),
        Source::JwksUri(u) => format!("jwks:{u}"),
        Source::Discovery { issuer } => format!("discovery:{issuer}"),
    }
}
