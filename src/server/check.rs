//! What resource servers call: GET /auth (forward auth), POST /introspect (RFC 7662) and
//! POST /revoke (RFC 7009).

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::access_token::{self, Claims};
use crate::iprange::ClientAddr;
use crate::registry::Snapshot;
use crate::scope::Scope;
use crate::server::SharedState;
use crate::server::error::ApiError;
use crate::server::listen::Peer;
use crate::server::request::{self, printable};

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
    let mut required = None;
    for (k, v) in url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        if k == "scope" {
            required = Scope::parse_list(&v).map_err(|e| {
                ApiError::invalid_request(format!(
                    "Bad scope parameter: {}",
                    printable(&e.to_string())
                ))
            })?;
        }
    }
    let method = ["x-original-method", "x-forwarded-method"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()));
    if method.is_some_and(|m| !reads_only(m)) {
        required = required.max(Some(Scope::Write));
    }
    let addr = request::client_addr(peer, &headers, &state.config.trusted_proxies);
    let (claims, _) = check_bearer(&state, &headers, addr, required)?;
    let mut resp = axum::Json(
        serde_json::json!({ "user": claims.sub, "key_id": claims.key_id, "scope": claims.scope }),
    )
    .into_response();
    let h = resp.headers_mut();
    for (name, value) in [
        ("x-auth-user", &claims.sub),
        ("x-auth-key-id", &claims.key_id),
        ("x-auth-scope", &claims.scope),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Checks the request's own bearer token; also returns the snapshot it was judged against,
/// so that a caller checking more sees the same state of the store without asking again.
fn check_bearer(
    state: &SharedState,
    headers: &HeaderMap,
    addr: ClientAddr,
    required: Option<Scope>,
) -> Result<(Claims, Arc<Snapshot>), ApiError> {
    let Some(token) = request::extract_token(headers) else {
        return Err(ApiError::Bearer {
            missing: true,
            invalid: access_token::Invalid::BadSignature,
        });
    };
    let snap = state.snapshot()?;
    let claims = access_token::validate(&token, &snap, state.now(), Some(addr), required).map_err(
        |invalid| ApiError::Bearer {
            missing: false,
            invalid,
        },
    )?;
    Ok((claims, snap))
}

/// RFC 7662. The caller authenticates with its own access token (`Authorization: Bearer`),
/// whose user needs the `introspect` permission. The optional `client_ip` parameter (an
/// extension) also checks the token's key IP ranges against that address.
pub async fn introspect(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let addr = request::client_addr(peer, &headers, &state.config.trusted_proxies);
    let (caller, snap) = check_bearer(&state, &headers, addr, None)?;
    if !snap
        .user(&caller.sub)
        .is_some_and(|u| u.user.may("introspect"))
    {
        return Err(ApiError::status(
            StatusCode::FORBIDDEN,
            "access_denied",
            format!(
                "User '{}' lacks the introspect permission (tokenauth user grant NAME introspect)",
                caller.sub
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
    let body = match access_token::validate(token, &snap, state.now(), client_ip, None) {
        Ok(c) => serde_json::json!({
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
        Err(_) => serde_json::json!({ "active": false }),
    };
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// RFC 7009. Holding a token is enough to revoke it; the answer is 200 whether or not the
/// token was known or valid, as §2.2 says.
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
    let snap = state.snapshot()?;
    if let Ok(claims) = access_token::validate(token, &snap, state.now(), None, None) {
        state.revoke_token(&claims.jti, claims.exp)?;
        tracing::info!(jti = %claims.jti, sub = %claims.sub, "access token revoked");
    }
    Ok((
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({})),
    )
        .into_response())
}
