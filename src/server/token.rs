//! POST /token: the RFC 7523 jwt-bearer grant exchanged for an access token.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::access_token;
use crate::grant::{self, Refusal};
use crate::iprange;
use crate::server::SharedState;
use crate::server::error::ApiError;
use crate::server::request::{self, printable};
use crate::store::UsageRow;

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Reads a body, turning extractor failures into JSON errors (413 for an oversized body).
pub fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                format!("Request body is larger than {} bytes", super::BODY_LIMIT),
            )
        } else {
            ApiError::invalid_request("Could not read the request body")
        }
    })
}

pub async fn token(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let form = request::form(&headers, &body(raw)?)?;
    match form.get("grant_type").map(String::as_str) {
        None => return Err(ApiError::invalid_request("Missing parameter: grant_type")),
        Some(JWT_BEARER) => {}
        Some(other) => {
            return Err(ApiError::bad_request(
                "unsupported_grant_type",
                format!(
                    "Unsupported grant type '{}'; use {JWT_BEARER}",
                    printable(other)
                ),
            ));
        }
    }
    let Some(assertion) = form.get("assertion").filter(|a| !a.is_empty()) else {
        return Err(ApiError::invalid_request("Missing parameter: assertion"));
    };
    let addr = request::client_addr(peer.ip(), &headers, &state.config.trusted_proxies);
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect::<String>());
    let now = state.now();
    let snap = state.snapshot()?;
    let row = UsageRow {
        time: now,
        address: addr.to_string(),
        user_agent,
        ..UsageRow::default()
    };

    let accepted =
        match grant::validate(assertion, form.get("scope").map(String::as_str), &snap, now) {
            Ok(a) => a,
            Err(r) => return Err(refuse(&state, &row, r).await),
        };
    let known = |description: String| Refusal {
        error: "invalid_grant",
        description,
        key_id: Some(accepted.key_id.clone()),
        user: Some(accepted.user.clone()),
        subject: Some(accepted.subject.clone()),
    };
    let key = snap
        .key(&accepted.key_id)
        .map(|k| &k.key)
        .ok_or_else(|| ApiError::Internal("key vanished".into()))?;
    if !iprange::allows(&key.ip_ranges, addr) {
        return Err(refuse(
            &state,
            &row,
            known(format!("Address {addr} is not allowed to use this key")),
        )
        .await);
    }
    if let Some(jti) = &accepted.jti
        && !state.first_use(&accepted.client_id, jti, accepted.exp)?
    {
        return Err(refuse(
            &state,
            &row,
            known("Grant has already been used (jti replayed)".into()),
        )
        .await);
    }
    // A token never outlives its key.
    let lifetime = match key.expires {
        Some(e) => state.config.token_lifetime.min(e - now),
        None => state.config.token_lifetime,
    };
    let (token, claims) =
        access_token::issue(&accepted, &snap, lifetime, now, &mut rand::thread_rng())?;
    state
        .usage
        .record(UsageRow {
            key_id: Some(accepted.key_id.clone()),
            user: Some(accepted.user.clone()),
            subject: Some(accepted.subject.clone()),
            ok: true,
            grant_jti: accepted.jti.clone(),
            grant_exp: Some(accepted.exp),
            token_jti: Some(claims.jti.clone()),
            ..row
        })
        .await
        .map_err(ApiError::Internal)?;
    tracing::debug!(key_id = %accepted.key_id, sub = %accepted.subject, %addr, "token issued");
    let mut resp = axum::Json(serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": claims.scope,
    }))
    .into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

/// Records a refused attempt (without the grant itself) and turns it into the response.
/// Descriptions and subjects can echo what the caller wrote (alg, sub, scope); they go back
/// in JSON and into the usage log, which `tokenauth usage-log` prints to a terminal, so
/// control characters (escape sequences) are dropped.
async fn refuse(state: &SharedState, row: &UsageRow, r: Refusal) -> ApiError {
    let clean = |s: String| -> String { s.chars().filter(|c| !c.is_control()).collect() };
    let description = clean(r.description);
    let failed = UsageRow {
        key_id: r.key_id,
        user: r.user,
        subject: r.subject.map(clean),
        ok: false,
        reason: Some(description.clone()),
        ..row.clone()
    };
    state.usage.record_later(failed).await;
    ApiError::bad_request(r.error, description)
}
