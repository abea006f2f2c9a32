//! Browser callers on other sites (CORS): which requests are cross-site, the preflight
//! answers, and the allow headers, for origins some active key or token lists.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::origin;
use crate::registry::Credentials;
use crate::server::request::printable;
use crate::server::{SharedState, View};

/// How long browsers may keep a preflight answer.
const MAX_AGE: &str = "600";

/// The request's `Origin` when it is another site's: absent, or one of `--public-origin`
/// (default: the issuer's origin), means same-site, where origins play no part. An origin
/// that does not parse (`null`, from sandboxed frames and files) is cross-site and matches
/// no list.
pub fn cross_site_origin(
    state: &SharedState,
    view: &View<'_>,
    headers: &HeaderMap,
) -> Option<String> {
    let value = headers.get(header::ORIGIN)?;
    let text = String::from_utf8_lossy(value.as_bytes());
    let origin = origin::parse(&text).unwrap_or_else(|_| printable(&text));
    let public = &state.config.public_origins;
    let same_site = if public.is_empty() {
        // The issuer may carry a path: its origin is what a same-site page sends.
        url::Url::parse(&view.settings().issuer)
            .is_ok_and(|u| u.origin().ascii_serialization() == origin)
    } else {
        public.contains(&origin)
    };
    (!same_site).then_some(origin)
}

/// The cross-site origin of a request, for handlers behind [`layer`].
#[derive(Debug, Clone)]
pub struct CrossSite(pub Option<String>);

/// CORS for /token, /introspect and /revoke: answers preflights, and adds
/// `Access-Control-Allow-Origin` to answers for origins some active key or token lists.
/// Whether the one key a request uses lists the origin is for the handler to decide.
pub async fn layer(State(state): State<SharedState>, mut req: Request, next: Next) -> Response {
    if !req.headers().contains_key(header::ORIGIN) {
        return next.run(req).await;
    }
    let Ok(view) = state.view() else {
        return next.run(req).await;
    };
    let origin = cross_site_origin(&state, &view, req.headers());
    let allowed = origin
        .as_deref()
        .filter(|o| view.origin_known(o))
        .and_then(|o| HeaderValue::from_str(o).ok());
    let mut resp = if req.method() == Method::OPTIONS {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        if allowed.is_some() {
            let h = resp.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST"),
            );
            // /introspect takes the caller's own token in Authorization.
            let headers = if req.uri().path() == "/introspect" {
                "Authorization, Content-Type"
            } else {
                "Content-Type"
            };
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(headers),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(MAX_AGE),
            );
        }
        resp
    } else {
        req.extensions_mut().insert(CrossSite(origin));
        next.run(req).await
    };
    let h = resp.headers_mut();
    if let Some(origin) = allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    resp
}
