//! POST /token: the RFC 7523 jwt-bearer grant exchanged for an access token (and, through
//! `oidc`, a CI platform's ID token).

use axum::body::Body;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::access_token;
use crate::grant::{self, Accepted, Refusal};
use crate::iprange::ClientAddr;
use crate::registry::Credentials;
use crate::server::cors::CrossSite;
use crate::server::error::ApiError;
use crate::server::metrics;
use crate::server::observe::Caller;
use crate::server::oidc;
use crate::server::replay::{self, Seen};
use crate::server::request::Peer;
use crate::server::request::{self, printable};
use crate::server::{SharedState, View};
use crate::store::{GrantUse, UsageRow, replay_reason};

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

pub async fn token(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    cross_site: Option<Extension<CrossSite>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // A refused grant's key and user, when known, for the access log.
    let mut who = None;
    match exchange(&state, peer, cross_site, headers, body, &mut who).await {
        Ok(resp) => {
            state.metrics.issued();
            Ok(resp)
        }
        Err(e) => {
            let (error, description) = e.code_and_description();
            state
                .metrics
                .refused(error, metrics::refusal_reason(error, description));
            let mut resp = e.into_response();
            if let Some(caller) = who {
                resp.extensions_mut().insert(caller);
            }
            Ok(resp)
        }
    }
}

async fn exchange(
    state: &SharedState,
    peer: Peer,
    cross_site: Option<Extension<CrossSite>>,
    headers: HeaderMap,
    body: Body,
    who: &mut Option<Caller>,
) -> Result<Response, ApiError> {
    let body = request::read_body(body, state.config.limits.body_timeout).await?;
    let form = request::form(&headers, &body)?;
    let token_exchange = match form.get("grant_type").map(String::as_str) {
        None => return Err(ApiError::invalid_request("Missing parameter: grant_type")),
        Some(JWT_BEARER) => false,
        Some(oidc::TOKEN_EXCHANGE) => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "unsupported_grant_type",
                format!(
                    "Unsupported grant type '{}'; use {JWT_BEARER} (or {} with an ID token)",
                    printable(other),
                    oidc::TOKEN_EXCHANGE
                ),
            ));
        }
    };
    let assertion = if token_exchange {
        oidc::subject_token(&form)?
    } else {
        match form.get("assertion").filter(|a| !a.is_empty()) {
            Some(a) => a.as_str(),
            None => return Err(ApiError::invalid_request("Missing parameter: assertion")),
        }
    };
    let client_auth = ClientAuth::read(&headers, &form)?;
    let addr = request::client_addr(peer, &headers, &state.config.trusted_proxies);
    let user_agent = request::user_agent(&headers);
    let now = state.now();
    let view = state.view()?;
    let row = UsageRow {
        time: now,
        address: addr.to_string(),
        user_agent,
        ..UsageRow::default()
    };
    // An ID token names its platform as issuer (an https URL), which is never a key's client
    // id: with no trusts at all, grants pay nothing for this.
    let id_token = token_exchange
        || (view.has_trusts()
            && oidc::peek_issuer(assertion).is_some_and(|iss| view.trusts_of(&iss).is_some()));
    if id_token {
        if let Some(what) = client_auth.unsupported {
            return Err(ApiError::InvalidClient {
                description: format!(
                    "Client authentication with {what} is not supported: the ID token authenticates the job"
                ),
                basic: false,
            });
        }
        let trust = client_auth
            .param
            .as_deref()
            .or(client_auth.basic.as_ref().map(|(id, _)| id.as_str()));
        let req = oidc::Request {
            id_token: assertion,
            trust,
            scope: form.get("scope").map(String::as_str),
            addr,
            cross_site,
            row,
        };
        let issued = oidc::exchange(state, &view, req, who).await?;
        return Ok(respond(state, issued, token_exchange));
    }

    let accepted =
        match grant::validate(assertion, form.get("scope").map(String::as_str), &view, now) {
            Ok(a) => a,
            Err(mut r) => {
                // An https issuer is a platform's ID token whose trust is gone (or never was).
                if r.key_id.is_none()
                    && r.description == "No associated key found"
                    && let Some(iss) = oidc::peek_issuer(assertion)
                    && (iss.starts_with("https://") || iss.starts_with("http://"))
                {
                    r.description = format!(
                        "No key or trust relationship accepts tokens of issuer '{}'",
                        printable(&iss)
                    );
                }
                return Err(refuse(state, who, &row, r).await);
            }
        };
    // Only now: the grant's signature proved its key, so nobody else can empty its bucket.
    state.limit_credential(&accepted.key_id)?;
    let known = |description: String| Refusal {
        error: "invalid_grant",
        description,
        key_id: Some(accepted.key_id.clone()),
        user: Some(accepted.user.clone()),
        subject: Some(accepted.subject.clone()),
    };
    if let Err(why) = client_auth.check(&accepted) {
        let basic = matches!(client_auth, ClientAuth { basic: Some(_), .. });
        refuse(state, who, &row, known(why.clone())).await;
        return Err(ApiError::InvalidClient {
            description: why,
            basic,
        });
    }
    let key = view
        .key(&accepted.key_id)
        .ok_or_else(|| ApiError::Internal("key vanished".into()))?;
    if let Err(why) = caller_allowed(&cross_site, &key.origins, addr, &key.ip_ranges, "key") {
        return Err(refuse(state, who, &row, known(why)).await);
    }
    if accepted.jti.is_none() && state.config.require_jti {
        return Err(refuse(
            state,
            who,
            &UsageRow {
                no_jti: true,
                ..row
            },
            known("Grant has no jti claim; this server requires one (RFC 7523 §3)".into()),
        )
        .await);
    }
    match state.first_use(accepted.replay_key, accepted.exp, &accepted.key_id) {
        Seen::First => {}
        Seen::Replayed => {
            let why = replay_reason(accepted.jti.is_some()).to_owned();
            return Err(refuse(state, who, &row, known(why)).await);
        }
        Seen::KeyFull => {
            let why = format!(
                "This key has {} used grants that have not expired yet; sign grants that expire within minutes, not hours",
                replay::PER_KEY
            );
            return Err(refuse(state, who, &row, known(why)).await);
        }
    }
    let row = UsageRow {
        key_id: Some(accepted.key_id.clone()),
        user: Some(accepted.user.clone()),
        subject: Some(accepted.subject.clone()),
        ..row
    };
    let used = Use {
        key: accepted.replay_key,
        exp: accepted.exp,
        jti: accepted.jti.clone(),
        replayed: replay_reason(accepted.jti.is_some()),
    };
    let issued = issue_once(state, &view, accepted.token_grant(), key.expires, row, used).await?;
    tracing::debug!(key_id = %accepted.key_id, sub = %accepted.subject, %addr, "token issued");
    Ok(respond(state, issued, false))
}

/// What makes a grant or ID token single-use, and what a replay is told.
pub(super) struct Use {
    pub key: [u8; 16],
    pub exp: i64,
    pub jti: Option<String>,
    pub replayed: &'static str,
}

/// Whether the caller may use a key or trust (`noun`) that lists `origins` and `ranges`: a
/// page on another site only when its origin is listed, and only from inside the ranges.
/// Err with the refusal, worded as a token check would word it.
pub(super) fn caller_allowed(
    cross_site: &Option<Extension<CrossSite>>,
    origins: &[String],
    addr: ClientAddr,
    ranges: &[ipnet::IpNet],
    noun: &str,
) -> Result<(), String> {
    if let Some(Extension(CrossSite(Some(origin)))) = cross_site
        && !origins.contains(origin)
    {
        return Err(format!("Origin {origin} is not allowed for this {noun}"));
    }
    match addr {
        _ if addr.allowed_by(ranges) => Ok(()),
        ClientAddr::Ip(ip) => Err(format!("Address {ip} is not allowed to use this {noun}")),
        ClientAddr::Unknown => Err(access_token::Invalid::AddressUnknown.to_string()),
    }
}

/// Issues the access token for a proved grant or ID token and records the issuance in `row`
/// (which names who), using the grant up. The store has the last word on replays: another
/// process on it may have taken this grant since our own check.
pub(super) async fn issue_once(
    state: &SharedState,
    view: &View<'_>,
    grant: access_token::Grant<'_>,
    // Of the key or trust: a token never outlives it.
    expires: Option<i64>,
    row: UsageRow,
    used: Use,
) -> Result<Issued, ApiError> {
    let now = state.now();
    let lifetime = match expires {
        Some(e) => state.config.token_lifetime.min(e - now),
        None => state.config.token_lifetime,
    };
    let subject = view
        .user(grant.subject)
        .ok_or_else(|| ApiError::Internal(format!("user '{}' vanished", grant.subject)))?;
    let (token, claims) = access_token::issue(
        grant,
        &subject,
        &view.settings().issuer,
        lifetime,
        now,
        &mut rand::thread_rng(),
    )?;
    let fresh = state
        .usage
        .record(UsageRow {
            ok: true,
            no_jti: used.jti.is_none(),
            grant_jti: used.jti,
            grant_exp: Some(used.exp),
            token_jti: Some(claims.jti.clone()),
            grant_use: Some(GrantUse {
                key: used.key,
                exp: used.exp,
            }),
            ..row
        })
        .await
        .inspect_err(|_| {
            // Not used after all: the client may retry the same grant.
            state.forget_use(used.key);
        })?;
    if !fresh {
        return Err(ApiError::bad_request("invalid_grant", used.replayed));
    }
    Ok(Issued {
        token,
        lifetime,
        scope: claims.scope,
        caller: Caller {
            key_id: Some(grant.key_id.to_owned()),
            user: Some(grant.subject.to_owned()),
        },
    })
}

/// An access token issued, and for whom (the access log's caller).
pub struct Issued {
    pub token: String,
    pub lifetime: i64,
    pub scope: String,
    pub caller: Caller,
}

/// The token response (RFC 6749 §5.1; RFC 8693 §2.2.1 adds `issued_token_type`).
fn respond(state: &SharedState, issued: Issued, token_exchange: bool) -> Response {
    let mut body = serde_json::json!({
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": issued.lifetime,
        "scope": issued.scope,
    });
    if token_exchange {
        body["issued_token_type"] = oidc::ACCESS_TOKEN_TYPE.into();
    }
    let mut resp = axum::Json(body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if state.config.access_log {
        resp.extensions_mut().insert(issued.caller);
    }
    resp
}

/// Client authentication sent along with the grant (RFC 6749 §2.3). tokenauth needs none:
/// the signed grant names and authenticates its client. Material that agrees with the grant
/// (requests-oauthlib sends `Authorization: Basic` with the client id and an empty secret)
/// is fine; material naming another client, or a secret tokenauth never issued, is refused
/// rather than ignored.
#[derive(Debug, Default)]
struct ClientAuth {
    /// From `Authorization: Basic`: (client id, secret).
    basic: Option<(String, String)>,
    /// The `client_id` form parameter.
    param: Option<String>,
    /// A non-empty `client_secret` parameter, or client-assertion parameters.
    unsupported: Option<&'static str>,
}

impl ClientAuth {
    fn read(
        headers: &HeaderMap,
        form: &std::collections::HashMap<String, String>,
    ) -> Result<ClientAuth, ApiError> {
        let mut auth = ClientAuth {
            param: form.get("client_id").cloned(),
            ..ClientAuth::default()
        };
        if form.get("client_secret").is_some_and(|s| !s.is_empty()) {
            auth.unsupported = Some("client_secret");
        }
        if form.contains_key("client_assertion") || form.contains_key("client_assertion_type") {
            auth.unsupported = Some("client_assertion");
        }
        let value = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        let Some(value) = value else {
            return Ok(auth);
        };
        let text = String::from_utf8_lossy(value);
        let Some((scheme, rest)) = text.trim().split_once(' ') else {
            return Ok(auth);
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return Ok(auth);
        }
        let malformed = || ApiError::InvalidClient {
            description: "Malformed Basic credentials: expected base64 of client_id:secret".into(),
            basic: true,
        };
        let decoded = STANDARD.decode(rest.trim()).map_err(|_| malformed())?;
        let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
        // RFC 6749 §2.3.1: both parts are form-urlencoded before they are joined.
        let unescape = |s: &str| -> String {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        auth.basic = Some((unescape(id), unescape(secret)));
        Ok(auth)
    }

    /// Err with the description when the material contradicts the grant's client.
    fn check(&self, grant: &Accepted) -> Result<(), String> {
        if let Some(what) = self.unsupported {
            return Err(format!(
                "Client authentication with {what} is not supported: the grant itself authenticates the client"
            ));
        }
        if let Some((id, secret)) = &self.basic {
            if *id != grant.client_id {
                return Err(format!(
                    "Basic credentials name client '{}', but the grant was signed by client '{}'",
                    printable(id),
                    grant.client_id
                ));
            }
            if !secret.is_empty() {
                return Err("Client secrets are not used: send an empty secret or none".into());
            }
        }
        if let Some(id) = &self.param
            && *id != grant.client_id
        {
            return Err(format!(
                "Parameter client_id is '{}', but the grant was signed by client '{}'",
                printable(id),
                grant.client_id
            ));
        }
        Ok(())
    }
}

/// Counts a refused attempt in the usage log (without the grant itself; one row per kind
/// and minute) and turns it into the response.
/// Descriptions and subjects can echo what the caller wrote (alg, sub, scope); they go back
/// in JSON and into the usage log, which `tokenauth usage-log` prints to a terminal, so
/// control characters (escape sequences) are written as `\u{…}` escapes.
pub(super) async fn refuse(
    state: &SharedState,
    who: &mut Option<Caller>,
    row: &UsageRow,
    r: Refusal,
) -> ApiError {
    let clean = |s: String| crate::text::escape_controls(&s);
    let description = clean(r.description);
    if state.config.access_log && r.key_id.is_some() {
        *who = Some(Caller {
            key_id: r.key_id.clone(),
            user: r.user.clone(),
        });
    }
    let failed = UsageRow {
        key_id: r.key_id,
        user: r.user,
        subject: r.subject.map(clean),
        ok: false,
        reason: Some(description.clone()),
        ..row.clone()
    };
    state.usage.record_refusal(failed).await;
    ApiError::bad_request(r.error, description)
}
