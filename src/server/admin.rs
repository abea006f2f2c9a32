//! The remote admin API (`serve --admin-api`): `/admin/v1/…`, JSON in and out, for callers
//! whose user holds the `admin` permission (write scope for changes) or, for their own keys
//! and tokens only, `manage-own-keys`. Errors have the server's one shape, `{"error",
//! "error_description"}`. Every change is audited under the caller's user and credential.

use std::sync::Mutex;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::admin::{
    AddTrust, Admin, AdminError, AuditQuery, CreatePat, EditKey, EditPat, EditTrust, IssueKey,
    KeyFilter, Local, PatFilter, ReportQuery, UsageQuery,
};
use crate::credential::Checked;
use crate::registry::Credentials;
use crate::scope::Scope;
use crate::server::SharedState;
use crate::server::check::check_bearer;
use crate::server::error::ApiError;
use crate::server::request::Peer;
use crate::server::request::{self, printable};

/// The admin side of the server: one store connection, used by one request at a time
/// (admin traffic is light, and key generation runs off the async workers).
pub struct AdminApi {
    local: Mutex<Local>,
}

impl AdminApi {
    pub fn new(local: Local) -> AdminApi {
        AdminApi {
            local: Mutex::new(local),
        }
    }
}

pub const PREFIX: &str = "/admin/v1";

/// Every admin route: its path template (as docs/openapi.json names it) and the methods it
/// answers, as an `Allow` header lists them. The one list: `dispatch` answers other methods
/// with 405 and this `Allow`, and the OpenAPI test holds the document to it.
pub const ROUTES: [(&str, &str); 20] = [
    ("/admin/v1/users", "GET, HEAD, POST"),
    ("/admin/v1/users/{name}", "GET, HEAD, DELETE"),
    ("/admin/v1/users/{name}/grant", "POST"),
    ("/admin/v1/users/{name}/revoke", "POST"),
    ("/admin/v1/users/{name}/disable", "POST"),
    ("/admin/v1/users/{name}/enable", "POST"),
    ("/admin/v1/rotate-secret", "POST"),
    ("/admin/v1/keys", "GET, HEAD, POST"),
    ("/admin/v1/keys/{id}", "GET, HEAD, PATCH"),
    ("/admin/v1/keys/{id}/revoke", "POST"),
    ("/admin/v1/tokens", "GET, HEAD, POST"),
    ("/admin/v1/tokens/{id}", "GET, HEAD, PATCH"),
    ("/admin/v1/tokens/{id}/revoke", "POST"),
    ("/admin/v1/trusts", "GET, HEAD, POST"),
    ("/admin/v1/trusts/{name}", "GET, HEAD, PATCH, DELETE"),
    ("/admin/v1/audit", "GET, HEAD"),
    ("/admin/v1/audit/verify", "GET, HEAD"),
    ("/admin/v1/usage", "GET, HEAD"),
    ("/admin/v1/usage/summary", "GET, HEAD"),
    ("/admin/v1/report", "GET, HEAD"),
];

/// What a path names.
#[derive(Debug, Clone, PartialEq)]
enum Route {
    Users,
    User(String),
    UserAction(String, &'static str),
    RotateSecret,
    Keys,
    Key(String),
    KeyRevoke(String),
    Tokens,
    Token(String),
    TokenRevoke(String),
    Trusts,
    Trust(String),
    Audit,
    AuditVerify,
    Usage,
    UsageSummary,
    Report,
}

impl Route {
    fn parse(segments: &[String]) -> Option<Route> {
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        Some(match s.as_slice() {
            ["users"] => Route::Users,
            ["users", n] => Route::User((*n).to_owned()),
            ["users", n, a @ ("grant" | "revoke" | "disable" | "enable")] => {
                let a: &'static str = match *a {
                    "grant" => "grant",
                    "revoke" => "revoke",
                    "disable" => "disable",
                    _ => "enable",
                };
                Route::UserAction((*n).to_owned(), a)
            }
            ["rotate-secret"] => Route::RotateSecret,
            ["keys"] => Route::Keys,
            ["keys", id] => Route::Key((*id).to_owned()),
            ["keys", id, "revoke"] => Route::KeyRevoke((*id).to_owned()),
            ["tokens"] => Route::Tokens,
            ["tokens", id] => Route::Token((*id).to_owned()),
            ["tokens", id, "revoke"] => Route::TokenRevoke((*id).to_owned()),
            ["trusts"] => Route::Trusts,
            ["trusts", n] => Route::Trust((*n).to_owned()),
            ["audit"] => Route::Audit,
            ["audit", "verify"] => Route::AuditVerify,
            ["usage"] => Route::Usage,
            ["usage", "summary"] => Route::UsageSummary,
            ["report"] => Route::Report,
            _ => return None,
        })
    }

    /// The route's path template, one of [`ROUTES`].
    fn template(&self) -> &'static str {
        match self {
            Route::Users => "/admin/v1/users",
            Route::User(_) => "/admin/v1/users/{name}",
            Route::UserAction(_, "grant") => "/admin/v1/users/{name}/grant",
            Route::UserAction(_, "revoke") => "/admin/v1/users/{name}/revoke",
            Route::UserAction(_, "disable") => "/admin/v1/users/{name}/disable",
            Route::UserAction(..) => "/admin/v1/users/{name}/enable",
            Route::RotateSecret => "/admin/v1/rotate-secret",
            Route::Keys => "/admin/v1/keys",
            Route::Key(_) => "/admin/v1/keys/{id}",
            Route::KeyRevoke(_) => "/admin/v1/keys/{id}/revoke",
            Route::Tokens => "/admin/v1/tokens",
            Route::Token(_) => "/admin/v1/tokens/{id}",
            Route::TokenRevoke(_) => "/admin/v1/tokens/{id}/revoke",
            Route::Trusts => "/admin/v1/trusts",
            Route::Trust(_) => "/admin/v1/trusts/{name}",
            Route::Audit => "/admin/v1/audit",
            Route::AuditVerify => "/admin/v1/audit/verify",
            Route::Usage => "/admin/v1/usage",
            Route::UsageSummary => "/admin/v1/usage/summary",
            Route::Report => "/admin/v1/report",
        }
    }

    /// The methods the route answers, as an Allow header lists them.
    fn allow(&self) -> &'static str {
        let template = self.template();
        ROUTES
            .iter()
            .find(|(t, _)| *t == template)
            .map_or("", |(_, allow)| allow)
    }
}

/// The path's segments after the prefix, percent-decoded.
fn segments(path: &str) -> Result<Option<Vec<String>>, ApiError> {
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return Ok(None);
    };
    let Some(rest) = rest.strip_prefix('/') else {
        return Ok(None);
    };
    rest.split('/')
        .map(|s| {
            let decoded = percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map_err(|_| ApiError::invalid_request("The path is not UTF-8 once decoded"))?;
            if decoded.is_empty() || decoded.chars().any(char::is_control) {
                return Err(ApiError::status(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("No endpoint at {}", printable(path)),
                ));
            }
            Ok(decoded.into_owned())
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> ApiError {
        match e {
            AdminError::NotFound(m) => ApiError::status(StatusCode::NOT_FOUND, "not_found", m),
            AdminError::Conflict(m) => ApiError::status(StatusCode::CONFLICT, "conflict", m),
            AdminError::Invalid(m) => ApiError::invalid_request(m),
            AdminError::Forbidden(m) => ApiError::status(StatusCode::FORBIDDEN, "access_denied", m),
            AdminError::Other(e) => ApiError::Internal(format!("{e:#}")),
        }
    }
}

/// Who calls, and what they may do.
struct Caller {
    user: String,
    actor: String,
    admin: bool,
}

impl Caller {
    /// Self-service: refuses what is not the caller's own.
    fn owns(&self, owner: &str) -> Result<(), AdminError> {
        if self.admin || owner == self.user {
            return Ok(());
        }
        Err(AdminError::Forbidden(format!(
            "User '{}' may manage only its own keys and tokens (manage-own-keys); this one belongs to another user",
            self.user
        )))
    }

    fn admin_only(&self) -> Result<(), AdminError> {
        if self.admin {
            return Ok(());
        }
        Err(AdminError::Forbidden(format!(
            "User '{}' lacks the admin permission (tokenauth user grant NAME admin); manage-own-keys covers only its own keys, tokens and usage log",
            self.user
        )))
    }
}

/// A route's query parameters. Repeats are refused first by the parser every route shares,
/// so that every query struct (and every name in it or not) answers them the same way.
fn query<T: DeserializeOwned + Default>(uri: &Uri) -> Result<T, ApiError> {
    match uri.query() {
        None | Some("") => Ok(T::default()),
        Some(q) => {
            request::params(q.as_bytes())?;
            serde_urlencoded::from_str(q).map_err(|e| {
                ApiError::invalid_request(format!(
                    "Bad query parameter: {}",
                    printable(&e.to_string())
                ))
            })
        }
    }
}

fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_request(format!(
            "The body is not the JSON this endpoint takes: {}",
            printable(&e.to_string())
        ))
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NameBody {
    name: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PermissionBody {
    permission: String,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    user: Option<String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Empty {}

fn ok<T: Serialize>(status: StatusCode, value: &T) -> Result<Response, AdminError> {
    let body = serde_json::to_vec(value).map_err(anyhow::Error::from)?;
    Ok((
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response())
}

/// Everything under `/admin/v1` when the admin API is on.
pub async fn dispatch(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError::status(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("No endpoint at {}", printable(uri.path())),
        )
    };
    let route = segments(uri.path())?
        .and_then(|s| Route::parse(&s))
        .ok_or_else(not_found)?;
    let allow = route.allow();
    let reads = method == Method::GET || method == Method::HEAD;
    let allowed = allow.split(", ").any(|m| m == method.as_str());
    if !allowed {
        let mut resp = ApiError::status(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            format!(
                "Method {} is not allowed on {}; use {allow}",
                printable(method.as_str()),
                printable(uri.path())
            ),
        )
        .into_response();
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return Ok(resp);
    }
    if state.admin.is_none() {
        return Err(not_found());
    }
    let addr = request::client_addr(peer, &headers, &state.config.trusted_proxies);
    let view = state.view()?;
    let required = (!reads).then_some(Scope::Write);
    let checked = check_bearer(&state, &view, &headers, addr, required, None).await?;
    state.limit_credential(super::check::credential_id(&checked))?;
    let user = checked.user().to_owned();
    let (is_admin, own) = view.user(&user).map_or((false, false), |u| {
        (u.user.may("admin"), u.user.may("manage-own-keys"))
    });
    if !is_admin && !own {
        return Err(ApiError::status(
            StatusCode::FORBIDDEN,
            "access_denied",
            format!(
                "User '{}' lacks the admin permission (tokenauth user grant NAME admin)",
                printable(&user)
            ),
        ));
    }
    let actor = match &checked {
        Checked::Access(c) => format!("{user} (key {})", c.key_id),
        Checked::Pat(p) => format!("{user} (token {})", p.id),
    };
    let caller = Caller {
        user,
        actor,
        admin: is_admin,
    };
    let body = request::read_body(body, state.config.limits.body_timeout).await?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        let ctype = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = ctype.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request",
                "Content-Type must be application/json",
            ));
        }
    }
    let op = Op::parse(&route, &method, &uri, &body)?;
    let worker = state.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let Some(api) = worker.admin.as_ref() else {
            return Err(AdminError::NotFound("The admin API is off".into()));
        };
        let mut local = api.local.lock().unwrap_or_else(|p| p.into_inner());
        let clock = local.clock;
        local.store.set_actor(caller.actor.clone(), clock);
        op.run(&mut local, &caller)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("admin request failed: {e}")))?;
    Ok(answer?)
}

/// A parsed admin request, ready to run on the store.
enum Op {
    Users,
    AddUser(String),
    User(String),
    RemoveUser(String),
    Permission(String, String, bool),
    Disabled(String, bool),
    Rotate(Option<String>),
    Keys(KeyFilter),
    Issue(Box<IssueKey>),
    Key(String),
    EditKey(String, EditKey),
    RevokeKey(String),
    Tokens(PatFilter),
    CreateToken(CreatePat),
    Token(String),
    EditToken(String, EditPat),
    RevokeToken(String),
    Trusts,
    AddTrust(Box<AddTrust>),
    Trust(String),
    EditTrust(String, Box<EditTrust>),
    RemoveTrust(String),
    Audit(AuditQuery),
    AuditVerify,
    Usage(UsageQuery),
    UsageSummary(UsageQuery),
    Report(ReportQuery),
}

impl Op {
    fn parse(route: &Route, method: &Method, uri: &Uri, body: &[u8]) -> Result<Op, ApiError> {
        let get = *method == Method::GET || *method == Method::HEAD;
        Ok(match route {
            Route::Users if get => Op::Users,
            Route::Users => Op::AddUser(json_body::<NameBody>(body)?.name),
            Route::User(n) if get => Op::User(n.clone()),
            Route::User(n) => Op::RemoveUser(n.clone()),
            Route::UserAction(n, a @ ("grant" | "revoke")) => Op::Permission(
                n.clone(),
                json_body::<PermissionBody>(body)?.permission,
                *a == "grant",
            ),
            Route::UserAction(n, a) => {
                json_body::<Empty>(body)?;
                Op::Disabled(n.clone(), *a == "disable")
            }
            Route::RotateSecret => Op::Rotate(json_body::<RotateBody>(body)?.user),
            Route::Keys if get => Op::Keys(query(uri)?),
            Route::Keys => Op::Issue(Box::new(json_body(body)?)),
            Route::Key(id) if get => Op::Key(id.clone()),
            Route::Key(id) => Op::EditKey(id.clone(), json_body(body)?),
            Route::KeyRevoke(id) => {
                json_body::<Empty>(body)?;
                Op::RevokeKey(id.clone())
            }
            Route::Tokens if get => Op::Tokens(query(uri)?),
            Route::Tokens => Op::CreateToken(json_body(body)?),
            Route::Token(id) if get => Op::Token(id.clone()),
            Route::Token(id) => Op::EditToken(id.clone(), json_body(body)?),
            Route::TokenRevoke(id) => {
                json_body::<Empty>(body)?;
                Op::RevokeToken(id.clone())
            }
            Route::Trusts if get => {
                query::<Empty>(uri)?;
                Op::Trusts
            }
            Route::Trusts => Op::AddTrust(Box::new(json_body(body)?)),
            Route::Trust(n) if get => Op::Trust(n.clone()),
            Route::Trust(n) if *method == Method::PATCH => {
                Op::EditTrust(n.clone(), Box::new(json_body(body)?))
            }
            Route::Trust(n) => Op::RemoveTrust(n.clone()),
            Route::Audit => Op::Audit(query(uri)?),
            Route::AuditVerify => {
                query::<Empty>(uri)?;
                Op::AuditVerify
            }
            Route::Usage => Op::Usage(query(uri)?),
            Route::UsageSummary => Op::UsageSummary(query(uri)?),
            Route::Report => Op::Report(query(uri)?),
        })
    }

    fn run(self, a: &mut Local, c: &Caller) -> Result<Response, AdminError> {
        let o = StatusCode::OK;
        match self {
            Op::Users => {
                c.admin_only()?;
                ok(o, &a.users()?)
            }
            Op::AddUser(n) => {
                c.admin_only()?;
                ok(StatusCode::CREATED, &a.add_user(&n)?)
            }
            Op::User(n) => {
                c.admin_only()?;
                ok(o, &a.user(&n)?)
            }
            Op::RemoveUser(n) => {
                c.admin_only()?;
                a.remove_user(&n)?;
                ok(o, &serde_json::json!({ "removed": n }))
            }
            Op::Permission(n, p, granted) => {
                c.admin_only()?;
                ok(o, &a.set_permission(&n, &p, granted)?)
            }
            Op::Disabled(n, disabled) => {
                c.admin_only()?;
                ok(o, &a.set_disabled(&n, disabled)?)
            }
            Op::Rotate(user) => {
                c.admin_only()?;
                let rotated = a.rotate_secret(user.as_deref())?;
                ok(o, &serde_json::json!({ "rotated": rotated }))
            }
            Op::Keys(mut f) => {
                if !c.admin {
                    c.owns(f.user.as_deref().unwrap_or(&c.user))?;
                    f.user = Some(c.user.clone());
                }
                ok(o, &a.keys(&f)?)
            }
            Op::Issue(req) => {
                c.owns(&req.user)?;
                ok(StatusCode::CREATED, &a.issue_key(&req)?)
            }
            Op::Key(id) => {
                let k = a.key(&id)?;
                c.owns(&k.key.user)?;
                ok(o, &k)
            }
            Op::EditKey(id, change) => {
                c.owns(&a.key(&id)?.key.user)?;
                ok(o, &a.edit_key(&id, &change)?)
            }
            Op::RevokeKey(id) => {
                c.owns(&a.key(&id)?.key.user)?;
                ok(o, &a.revoke_key(&id)?)
            }
            Op::Tokens(mut f) => {
                if !c.admin {
                    c.owns(f.user.as_deref().unwrap_or(&c.user))?;
                    f.user = Some(c.user.clone());
                }
                ok(o, &a.pats(&f)?)
            }
            Op::CreateToken(req) => {
                c.owns(&req.user)?;
                ok(StatusCode::CREATED, &a.create_pat(&req)?)
            }
            Op::Token(id) => {
                let p = a.pat(&id)?;
                c.owns(&p.pat.user)?;
                ok(o, &p)
            }
            Op::EditToken(id, change) => {
                c.owns(&a.pat(&id)?.pat.user)?;
                ok(o, &a.edit_pat(&id, &change)?)
            }
            Op::RevokeToken(id) => {
                c.owns(&a.pat(&id)?.pat.user)?;
                ok(o, &a.revoke_pat(&id)?)
            }
            Op::Trusts => {
                c.admin_only()?;
                ok(o, &a.trusts()?)
            }
            Op::AddTrust(req) => {
                c.admin_only()?;
                ok(StatusCode::CREATED, &a.add_trust(&req)?)
            }
            Op::Trust(n) => {
                c.admin_only()?;
                ok(o, &a.trust(&n)?)
            }
            Op::EditTrust(n, change) => {
                c.admin_only()?;
                ok(o, &a.edit_trust(&n, &change)?)
            }
            Op::RemoveTrust(n) => {
                c.admin_only()?;
                ok(o, &a.remove_trust(&n)?)
            }
            Op::Audit(q) => {
                c.admin_only()?;
                ok(o, &a.audit(&q)?)
            }
            Op::AuditVerify => {
                c.admin_only()?;
                ok(o, &a.verify_audit()?)
            }
            Op::Usage(mut q) => {
                own_usage(a, c, &mut q)?;
                ok(o, &a.usage(&q)?)
            }
            Op::UsageSummary(mut q) => {
                own_usage(a, c, &mut q)?;
                ok(o, &a.usage_summary(&q)?)
            }
            Op::Report(q) => {
                c.admin_only()?;
                ok(o, &a.report(&q)?)
            }
        }
    }
}

/// Self-service reads only its own usage: rows of its user, and of its own keys.
fn own_usage(a: &mut Local, c: &Caller, q: &mut UsageQuery) -> Result<(), AdminError> {
    if c.admin {
        return Ok(());
    }
    c.owns(q.user.as_deref().unwrap_or(&c.user))?;
    if let Some(id) = &q.key {
        let owner = match a.key(id) {
            Ok(k) => k.key.user,
            Err(AdminError::NotFound(_)) => a.pat(id)?.pat.user,
            Err(e) => return Err(e),
        };
        c.owns(&owner)?;
    }
    q.user = Some(c.user.clone());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path of the template, its parameters filled in.
    fn path_of(template: &str) -> String {
        template
            .replace("{name}", "carol")
            .replace("{id}", "abcd1234")
    }

    /// Every query struct, Option, bool and defaulted fields alike, and names no struct has.
    #[test]
    fn every_query_refuses_a_repeated_parameter_by_name() {
        fn refused<T: DeserializeOwned + Default>(q: &str, name: &str) {
            let uri: Uri = format!("/admin/v1/x?{q}").parse().unwrap();
            match query::<T>(&uri) {
                Err(ApiError::OAuth {
                    status,
                    error,
                    description,
                }) => {
                    assert_eq!(
                        (status, error),
                        (StatusCode::BAD_REQUEST, "invalid_request")
                    );
                    assert_eq!(
                        description,
                        format!("Parameter '{name}' given more than once"),
                        "{q}"
                    );
                }
                Err(other) => panic!("{q}: {other:?}"),
                Ok(_) => panic!("{q} accepted"),
            }
        }
        refused::<KeyFilter>("user=a&user=b", "user");
        refused::<KeyFilter>("all=true&all=false", "all");
        refused::<KeyFilter>("scope=write&scope=read", "scope");
        refused::<KeyFilter>("expiring_within=1&expiring_within=2", "expiring_within");
        refused::<PatFilter>("user=a&all=true&user=a", "user");
        refused::<UsageQuery>("limit=1&limit=2", "limit");
        refused::<UsageQuery>("failures=true&failures=true", "failures");
        refused::<AuditQuery>("since=1&since=1", "since");
        refused::<ReportQuery>("unused_for=1&unused_for=2", "unused_for");
        refused::<Empty>("x=1&x=2", "x");
        // One of each is still read.
        let uri: Uri = "/admin/v1/keys?user=a&all=true".parse().unwrap();
        let f = query::<KeyFilter>(&uri).unwrap();
        assert_eq!((f.user.as_deref(), f.all), (Some("a"), true));
    }

    #[test]
    fn every_listed_route_parses_back_to_its_own_template_and_methods() {
        for (template, allow) in ROUTES {
            let route = segments(&path_of(template))
                .unwrap()
                .and_then(|s| Route::parse(&s))
                .unwrap_or_else(|| panic!("{template} does not parse"));
            assert_eq!(route.template(), template);
            assert_eq!(route.allow(), allow);
            assert!(!allow.is_empty() && allow.split(", ").all(|m| m == m.to_uppercase()));
        }
    }

    #[test]
    fn paths_outside_the_list_are_no_route() {
        for path in [
            "/admin/v1/users/carol/rename",
            "/admin/v1/keys/abcd/revoke/now",
            "/admin/v1/audit/verify/x",
            "/admin/v1/nothing",
            "/admin/v1/usage/summary/x",
            "/admin/v1/trusts/gh/remove",
        ] {
            let route = segments(path).unwrap().and_then(|s| Route::parse(&s));
            assert_eq!(route, None, "{path}");
        }
    }
}
