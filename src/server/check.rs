//! What resource servers call: GET /auth (forward auth), POST /introspect (RFC 7662) and
//! POST /revoke (RFC 7009).

use std::net::IpAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Extension, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::access_token;
use crate::credential::{self, Checked};
use crate::iprange::ClientAddr;
use crate::registry::Credentials;
use crate::scope::Scope;
use crate::server::cors::CrossSite;
use crate::server::error::ApiError;
use crate::server::metrics::{self, Check};
use crate::server::observe::Caller;
use crate::server::request::Peer;
use crate::server::request::{self, printable};
use crate::server::{SharedState, View, cors};
use crate::store::UsageRow;

/// Methods that only read: anything else needs the `write` scope.
fn reads_only(method: &str) -> bool {
    ["GET", "HEAD", "OPTIONS"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method))
}

pub async fn forward_auth(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = request::params(query.as_deref().unwrap_or("").as_bytes())?;
    let mut required = match query.get("scope") {
        None => None,
        Some(v) => Scope::parse_list(v).map_err(|e| {
            ApiError::invalid_request(format!(
                "Bad scope parameter: {}",
                printable(&e.to_string())
            ))
        })?,
    };
    let method = ["x-original-method", "x-forwarded-method"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()));
    if method.is_some_and(|m| !reads_only(m)) {
        required = required.max(Some(Scope::Write));
    }
    let addr = request::client_addr(peer, &headers, &state.config.trusted_proxies);
    let view = state.view()?;
    let origin = cors::cross_site_origin(&state, &view, &headers);
    let caller = check_bearer(&state, &view, &headers, addr, required, origin.as_deref())
        .await
        .inspect_err(|e| {
            let outcome = match e {
                ApiError::Bearer { missing: true, .. } => "missing",
                ApiError::Bearer { invalid, .. } => metrics::invalid_reason(invalid),
                _ => "error",
            };
            state.metrics.invalid(Check::Auth, outcome);
        })?;
    state.metrics.valid(Check::Auth);
    let (id_header, id_field, id) = match &caller {
        Checked::Access(c) => ("x-auth-key-id", "key_id", c.key_id.as_str()),
        Checked::Pat(p) => ("x-auth-token-id", "token_id", p.id.as_str()),
    };
    let mut body = serde_json::json!({ "user": caller.user(), "scope": caller.scope() });
    body[id_field] = id.into();
    let mut resp = axum::Json(body).into_response();
    let h = resp.headers_mut();
    for (name, value) in [
        ("x-auth-user", caller.user()),
        (id_header, id),
        ("x-auth-scope", caller.scope()),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    // For the proxy's CORS answer: only an origin the credential lists gets this far.
    if let Some(v) = origin.and_then(|o| HeaderValue::from_str(&o).ok()) {
        h.insert("x-auth-allow-origin", v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if state.config.access_log {
        resp.extensions_mut().insert(caller_of(&caller));
    }
    Ok(resp)
}

/// Checks the request's own bearer credential (an access token or a personal access token)
/// against `view`. A known personal access token that is refused is logged, with its reason;
/// a good one is noted as used, at most once a minute.
pub(super) async fn check_bearer(
    state: &SharedState,
    view: &View<'_>,
    headers: &HeaderMap,
    addr: ClientAddr,
    required: Option<Scope>,
    origin: Option<&str>,
) -> Result<Checked, ApiError> {
    let Some(token) = request::extract_token(headers) else {
        return Err(ApiError::Bearer {
            missing: true,
            invalid: access_token::Invalid::BadSignature,
        });
    };
    let now = state.now();
    match credential::check(&token, view, now, Some(addr), required, origin) {
        Ok(checked) => {
            if let Checked::Pat(p) = &checked {
                state.pat_used(p, now);
            }
            Ok(checked)
        }
        Err(invalid) => {
            if let access_token::Invalid::Pat { id, user, why } = &invalid {
                let row = UsageRow {
                    time: now,
                    pat_id: Some(id.clone()),
                    user: Some(user.clone()),
                    subject: Some(user.clone()),
                    address: addr.to_string(),
                    user_agent: request::user_agent(headers),
                    reason: Some(why.to_string()),
                    ..UsageRow::default()
                };
                state.usage.record_refusal(row).await;
            }
            Err(ApiError::Bearer {
                missing: false,
                invalid,
            })
        }
    }
}

/// RFC 7662. The caller authenticates with its own bearer credential (`Authorization:
/// Bearer`), whose user needs the `introspect` permission. The optional `client_ip` parameter
/// (an extension) also checks the token's IP ranges against that address.
pub async fn introspect(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    cross_site: Option<Extension<CrossSite>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let addr = request::client_addr(peer, &headers, &state.config.trusted_proxies);
    let view = state.view()?;
    // A page on another site may introspect only with a credential that lists its origin,
    // as at /auth: that some other key lists it only lets the browser show the answer.
    let origin = cross_site.and_then(|Extension(CrossSite(o))| o);
    let caller = check_bearer(&state, &view, &headers, addr, None, origin.as_deref()).await?;
    state.limit_credential(credential_id(&caller))?;
    if !view
        .user(caller.user())
        .is_some_and(|u| u.user.may("introspect"))
    {
        return Err(ApiError::status(
            StatusCode::FORBIDDEN,
            "access_denied",
            format!(
                "User '{}' lacks the introspect permission (tokenauth user grant NAME introspect)",
                caller.user()
            ),
        ));
    }
    let body = request::read_body(body, state.config.limits.body_timeout).await?;
    let form = request::form(&headers, &body)?;
    let Some(token) = form.get("token") else {
        return Err(ApiError::invalid_request("Missing parameter: token"));
    };
    let client_ip = match form.get("client_ip") {
        None => None,
        Some(ip) => Some(ClientAddr::Ip(ip.parse::<IpAddr>().map_err(|_| {
            ApiError::invalid_request(format!(
                "client_ip '{}' is not an IP address",
                printable(ip)
            ))
        })?)),
    };
    let checked = credential::check(token, &view, state.now(), client_ip, None, None);
    match &checked {
        Ok(_) => state.metrics.valid(Check::Introspect),
        Err(invalid) => state
            .metrics
            .invalid(Check::Introspect, metrics::invalid_reason(invalid)),
    }
    let body = match checked {
        Ok(Checked::Access(c)) => serde_json::json!({
            "active": true,
            "sub": c.sub,
            "username": c.sub,
            "client_id": c.client_id,
            "scope": c.scope,
            "exp": c.exp,
            "iat": c.iat,
            "iss": c.iss,
            "jti": c.jti,
            "key_id": c.key_id,
            "token_type": "Bearer",
        }),
        Ok(Checked::Pat(p)) => {
            let mut body = serde_json::json!({
                "active": true,
                "sub": p.user,
                "username": p.user,
                "scope": p.scope.granted(),
                "iat": p.created,
                "iss": view.settings().issuer,
                "token_id": p.id,
                "token_type": "personal_access_token",
            });
            if let Some(exp) = p.expires {
                body["exp"] = exp.into();
            }
            body
        }
        Err(_) => serde_json::json!({ "active": false }),
    };
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if state.config.access_log {
        resp.extensions_mut().insert(caller_of(&caller));
    }
    Ok(resp)
}

/// The caller's credential: its key id, or its personal access token's id.
pub(super) fn credential_id(checked: &Checked) -> &str {
    match checked {
        Checked::Access(c) => &c.key_id,
        Checked::Pat(p) => &p.id,
    }
}

/// Who made a request, for the access log: the credential's key id (or token id) and user.
fn caller_of(checked: &Checked) -> Caller {
    Caller {
        key_id: Some(credential_id(checked).to_owned()),
        user: Some(checked.user().to_owned()),
    }
}

/// RFC 7009. Holding a token is enough to revoke it, an access token or a personal access
/// token; the answer is 200 whether or not the token was known or valid, as §2.2 says.
pub async fn revoke(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = request::read_body(body, state.config.limits.body_timeout).await?;
    let form = request::form(&headers, &body)?;
    let Some(token) = form.get("token") else {
        return Err(ApiError::invalid_request("Missing parameter: token"));
    };
    let view = state.view()?;
    match credential::check(token, &view, state.now(), None, None, None) {
        Ok(Checked::Access(claims)) => {
            state.limit_credential(&claims.key_id)?;
            state.revoke_token(&claims.jti, claims.exp)?;
            tracing::info!(jti = %claims.jti, sub = %claims.sub, "access token revoked");
        }
        Ok(Checked::Pat(p)) => {
            state.limit_credential(&p.id)?;
            state.revoke_pat(&p.id)?;
            tracing::info!(token_id = %p.id, user = %p.user, "personal access token revoked");
        }
        Err(_) => {}
    }
    Ok((
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({})),
    )
        .into_response())
}
