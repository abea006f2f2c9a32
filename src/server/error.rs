//! The server's one error type, answered as RFC 6749 §5.2 or RFC 6750 §3 responses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::access_token::Invalid;

#[derive(Debug)]
pub enum ApiError {
    /// RFC 6749 §5.2 (token endpoint) and other JSON errors.
    OAuth {
        status: StatusCode,
        error: &'static str,
        description: String,
    },
    /// RFC 6750 §3: a resource request with a missing, bad or too weak token.
    Bearer { missing: bool, invalid: Invalid },
    /// RFC 6749 §5.2 `invalid_client`: 401, with a Basic challenge when the client tried
    /// Basic authentication.
    InvalidClient { description: String, basic: bool },
    /// The request took longer than the server allows; the client may retry.
    Timeout(std::time::Duration),
    /// The store is out of reach (PostgreSQL down) or the snapshot too old to trust: 503
    /// with Retry-After; the client may retry.
    Unavailable(String),
    /// Over a rate limit: 429 with Retry-After.
    RateLimited(super::ratelimit::Limited),
    /// The store cannot take writes (its disk is full, or it is read-only): 503 with
    /// Retry-After; checks that only read go on.
    Unwritable(String),
    /// The store failed: not the caller's fault.
    Internal(String),
}

pub const REALM: &str = "tokenauth";

impl ApiError {
    pub fn bad_request(error: &'static str, description: impl Into<String>) -> ApiError {
        ApiError::OAuth {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> ApiError {
        ApiError::bad_request("invalid_request", description)
    }

    pub fn status(
        status: StatusCode,
        error: &'static str,
        description: impl Into<String>,
    ) -> ApiError {
        ApiError::OAuth {
            status,
            error,
            description: description.into(),
        }
    }
}

impl ApiError {
    /// The `error` code the response will carry, and its description where one is fixed.
    pub fn code_and_description(&self) -> (&'static str, &str) {
        match self {
            ApiError::OAuth {
                error, description, ..
            } => (error, description),
            ApiError::Bearer { missing: true, .. } => ("invalid_request", ""),
            ApiError::Bearer { invalid, .. } => (invalid.code(), ""),
            ApiError::InvalidClient { description, .. } => ("invalid_client", description),
            ApiError::Timeout(_) | ApiError::Unavailable(_) | ApiError::Unwritable(_) => {
                ("temporarily_unavailable", "")
            }
            ApiError::RateLimited(_) => ("slow_down", ""),
            ApiError::Internal(_) => ("server_error", ""),
        }
    }
}

impl ApiError {
    /// The kind of store failure this is, for the store_errors metric.
    pub fn store_kind(&self) -> &'static str {
        match self {
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Unwritable(_) => "unwritable",
            _ => "other",
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        ApiError::Internal(format!("{e:#}"))
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        if e.is_unavailable() {
            ApiError::Unavailable(e.to_string())
        } else if e.is_unwritable() {
            ApiError::Unwritable(e.to_string())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<super::live::CatchUpError> for ApiError {
    fn from(e: super::live::CatchUpError) -> ApiError {
        match e {
            super::live::CatchUpError::Store(e) => e.into(),
            reloading => ApiError::Unavailable(reloading.to_string()),
        }
    }
}

impl From<super::usage::WriteFailed> for ApiError {
    fn from(e: super::usage::WriteFailed) -> ApiError {
        match e.kind {
            super::usage::Failure::Unavailable => ApiError::Unavailable(e.message),
            super::usage::Failure::Unwritable => ApiError::Unwritable(e.message),
            super::usage::Failure::Other => ApiError::Internal(e.message),
        }
    }
}

/// RFC 6750 §3: error_description is a quoted-string of printable ASCII without `"` or `\`.
fn quoted(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, description, www) = match self {
            ApiError::OAuth {
                status,
                error,
                description,
            } => (status, error, description, None),
            ApiError::Bearer { missing: true, .. } => (
                StatusCode::UNAUTHORIZED,
                "invalid_request",
                "Missing access token".to_owned(),
                // RFC 6750 §3.1: no error code when the request carried no credentials.
                Some(format!("Bearer realm=\"{REALM}\"")),
            ),
            // A good token from a page whose origin its key does not list: nothing to do
            // with authentication, so no challenge.
            ApiError::Bearer { invalid, .. }
                if matches!(invalid.reason(), Invalid::OriginNotAllowed(_)) =>
            {
                (
                    StatusCode::FORBIDDEN,
                    invalid.code(),
                    invalid.to_string(),
                    None,
                )
            }
            ApiError::Bearer { invalid, .. } => {
                let status = match invalid.reason() {
                    Invalid::InsufficientScope(_) => StatusCode::FORBIDDEN,
                    _ => StatusCode::UNAUTHORIZED,
                };
                let description = invalid.to_string();
                let mut www = format!(
                    "Bearer realm=\"{REALM}\", error=\"{}\", error_description=\"{}\"",
                    invalid.code(),
                    quoted(&description)
                );
                if let Invalid::InsufficientScope(s) = invalid.reason() {
                    www.push_str(&format!(", scope=\"{}\"", s.granted()));
                }
                (status, invalid.code(), description, Some(www))
            }
            ApiError::InvalidClient { description, basic } => (
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                description,
                basic.then(|| format!("Basic realm=\"{REALM}\"")),
            ),
            ApiError::Timeout(limit) => {
                let mut resp = ApiError::status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    format!(
                        "The request took longer than {} s; retry",
                        limit.as_secs_f64()
                    ),
                )
                .into_response();
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return resp;
            }
            ApiError::Unavailable(msg) => {
                tracing::warn!(error = %msg, "store unavailable; answered 503");
                let mut resp = ApiError::status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "The token store is unreachable for now; retry shortly",
                )
                .into_response();
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return resp;
            }
            ApiError::Unwritable(msg) => {
                tracing::error!(error = %msg, "the store takes no writes; answered 503");
                let mut resp = ApiError::status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "The token store cannot be written for now (disk full or read-only); tokens are not issued until it can, checks go on",
                )
                .into_response();
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
                return resp;
            }
            ApiError::RateLimited(limited) => {
                // RFC 6585 §4 and RFC 9110 §10.2.3: whole seconds, rounded up.
                let wait = limited.retry_after.as_secs_f64().ceil().max(1.0) as u64;
                let whose = match limited.bucket {
                    super::ratelimit::Bucket::Address => "this address",
                    super::ratelimit::Bucket::Credential => "this key",
                };
                let mut resp = ApiError::status(
                    StatusCode::TOO_MANY_REQUESTS,
                    "slow_down",
                    format!(
                        "Too many requests from {whose}: the limit is {}; retry in {wait} s",
                        limited.rule
                    ),
                )
                .into_response();
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(wait));
                return resp;
            }
            ApiError::Internal(msg) => {
                tracing::error!(error = %msg, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "Internal error; see the server log".to_owned(),
                    None,
                )
            }
        };
        // Descriptions may echo what the caller sent (e.g. a token header's alg): no
        // control characters, as in the WWW-Authenticate challenge.
        let description: String = description.chars().filter(|c| !c.is_control()).collect();
        let body = serde_json::json!({ "error": error, "error_description": description });
        let mut resp = (status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(www) = www.and_then(|w| HeaderValue::from_str(&w).ok()) {
            h.insert(header::WWW_AUTHENTICATE, www);
        }
        resp
    }
}
