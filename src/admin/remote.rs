//! Admin operations on a remote server's `/admin/v1` API (`tokenauth --server URL …`), with
//! the caller's own access token (got with a key file, cached) or personal access token.

use reqwest::Method;
use serde::de::DeserializeOwned;

use super::*;
use crate::client::{self, Getter};
use crate::service_key::KeyFile;

/// How the CLI proves who it is to the server.
pub enum Credential {
    /// A bearer token as given: a personal access token or an access token.
    Token(SecretString),
    /// A key file: access tokens are got (and cached) as `get-token` gets them.
    Key {
        key: Box<KeyFile>,
        sub: Option<String>,
        scope: Option<String>,
    },
}

pub struct Remote {
    base: url::Url,
    http: reqwest::blocking::Client,
    credential: Credential,
    clock: crate::clock::Clock,
    /// Also trusted for HTTPS, at the admin API and at the key's token endpoint.
    ca_cert: Option<std::path::PathBuf>,
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl Remote {
    /// `server` is the server's base URL (`https://auth.example.com`, or with a path prefix).
    pub fn new(
        server: &str,
        credential: Credential,
        clock: crate::clock::Clock,
        ca_cert: Option<std::path::PathBuf>,
    ) -> anyhow::Result<Remote> {
        let mut base = url::Url::parse(server)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--server '{server}' is not an http(s) URL; e.g. https://auth.example.com"
                )
            })?;
        base.set_query(None);
        base.set_fragment(None);
        Ok(Remote {
            base,
            http: client::http_client(ca_cert.as_deref())?,
            credential,
            clock,
            ca_cert,
        })
    }

    fn url(&self, segments: &[&str], query: Option<String>) -> anyhow::Result<url::Url> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| anyhow::anyhow!("--server {} cannot take a path", self.base))?;
            path.pop_if_empty().extend(["admin", "v1"]).extend(segments);
        }
        url.set_query(query.as_deref().filter(|q| !q.is_empty()));
        Ok(url)
    }

    fn bearer(&self, fresh: bool) -> anyhow::Result<SecretString> {
        match &self.credential {
            Credential::Token(t) => Ok(t.clone()),
            Credential::Key { key, sub, scope } => {
                let getter = Getter {
                    credential: client::Credential::Key {
                        key,
                        sub: sub.as_deref(),
                    },
                    scope: scope.as_deref(),
                    use_cache: true,
                    min_valid: 60,
                    ca_cert: self.ca_cert.as_deref(),
                };
                if fresh {
                    getter.forget()?;
                }
                Ok(getter.get(self.clock.now())?.access_token)
            }
        }
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<String>,
        body: Option<serde_json::Value>,
    ) -> Result<T> {
        let url = self.url(segments, query)?;
        let shown = format!("{} {}", method, url.path());
        let mut retried = false;
        loop {
            let token = self.bearer(retried)?;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.expose());
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = req.send().map_err(|e| {
                anyhow::anyhow!("{shown} at {}: {}", self.base, client::root_cause(&e))
            })?;
            let status = resp.status();
            let text = resp.text().map_err(|e| {
                anyhow::anyhow!("reading the answer to {shown}: {}", client::root_cause(&e))
            })?;
            if status.is_success() {
                return serde_json::from_str(&text).map_err(|e| {
                    AdminError::Other(anyhow::anyhow!(
                        "the server's answer to {shown} is not what this tokenauth expects ({e}); are both the same version?"
                    ))
                });
            }
            let err: ErrorBody = serde_json::from_str(&text).unwrap_or(ErrorBody {
                error: String::new(),
                error_description: String::new(),
            });
            // An access token that expired or was ended by a rotation: get a new one, once.
            if status == reqwest::StatusCode::UNAUTHORIZED
                && err.error == "invalid_token"
                && !retried
                && matches!(self.credential, Credential::Key { .. })
            {
                retried = true;
                continue;
            }
            let description = if err.error_description.is_empty() {
                format!("{shown} answered {status}")
            } else {
                err.error_description
            };
            return Err(match status.as_u16() {
                404 if err.error == "not_found" && description.starts_with("No endpoint") => {
                    AdminError::Other(anyhow::anyhow!(
                        "{} has no admin API ({description}); start it with `tokenauth serve --admin-api`",
                        self.base
                    ))
                }
                404 => AdminError::NotFound(description),
                409 => AdminError::Conflict(description),
                401 | 403 => AdminError::Forbidden(format!("{} refused: {description}", self.base)),
                400..=499 => AdminError::Invalid(description),
                _ => AdminError::Other(anyhow::anyhow!("{shown}: {description} ({status})")),
            });
        }
    }

    fn get<T: DeserializeOwned>(&self, segments: &[&str], query: Option<String>) -> Result<T> {
        self.call(Method::GET, segments, query, None)
    }

    fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: impl Serialize,
    ) -> Result<T> {
        let body = serde_json::to_value(body).map_err(anyhow::Error::from)?;
        self.call(method, segments, None, Some(body))
    }
}

fn query(q: &impl Serialize) -> Result<Option<String>> {
    serde_urlencoded::to_string(q)
        .map(Some)
        .map_err(|e| AdminError::Other(e.into()))
}

impl Admin for Remote {
    fn users(&mut self) -> Result<Vec<User>> {
        self.get(&["users"], None)
    }

    fn user(&mut self, name: &str) -> Result<User> {
        self.get(&["users", name], None)
    }

    fn add_user(&mut self, name: &str) -> Result<User> {
        self.send(
            Method::POST,
            &["users"],
            serde_json::json!({ "name": name }),
        )
    }

    fn remove_user(&mut self, name: &str) -> Result<()> {
        self.call::<serde_json::Value>(Method::DELETE, &["users", name], None, None)
            .map(drop)
    }

    fn set_permission(&mut self, name: &str, permission: &str, granted: bool) -> Result<User> {
        let verb = if granted { "grant" } else { "revoke" };
        self.send(
            Method::POST,
            &["users", name, verb],
            serde_json::json!({ "permission": permission }),
        )
    }

    fn set_disabled(&mut self, name: &str, disabled: bool) -> Result<User> {
        let verb = if disabled { "disable" } else { "enable" };
        self.send(Method::POST, &["users", name, verb], serde_json::json!({}))
    }

    fn rotate_secret(&mut self, user: Option<&str>) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Rotated {
            rotated: Vec<String>,
        }
        self.send::<Rotated>(
            Method::POST,
            &["rotate-secret"],
            serde_json::json!({ "user": user }),
        )
        .map(|r| r.rotated)
    }

    fn issue_key(&mut self, req: &IssueKey) -> Result<Issued> {
        self.send(Method::POST, &["keys"], req)
    }

    fn keys(&mut self, filter: &KeyFilter) -> Result<Vec<KeyView>> {
        self.get(&["keys"], query(filter)?)
    }

    fn key(&mut self, id: &str) -> Result<KeyView> {
        self.get(&["keys", id], None)
    }

    fn edit_key(&mut self, id: &str, change: &EditKey) -> Result<KeyView> {
        self.send(Method::PATCH, &["keys", id], change)
    }

    fn revoke_key(&mut self, id: &str) -> Result<Revoked<KeyView>> {
        self.send(Method::POST, &["keys", id, "revoke"], serde_json::json!({}))
    }

    fn create_pat(&mut self, req: &CreatePat) -> Result<CreatedPat> {
        self.send(Method::POST, &["tokens"], req)
    }

    fn pats(&mut self, filter: &PatFilter) -> Result<Vec<PatView>> {
        self.get(&["tokens"], query(filter)?)
    }

    fn pat(&mut self, id: &str) -> Result<PatView> {
        self.get(&["tokens", id], None)
    }

    fn edit_pat(&mut self, id: &str, change: &EditPat) -> Result<PatView> {
        self.send(Method::PATCH, &["tokens", id], change)
    }

    fn revoke_pat(&mut self, id: &str) -> Result<Revoked<PatView>> {
        self.send(
            Method::POST,
            &["tokens", id, "revoke"],
            serde_json::json!({}),
        )
    }

    fn add_trust(&mut self, req: &AddTrust) -> Result<TrustView> {
        self.send(Method::POST, &["trusts"], req)
    }

    fn trusts(&mut self) -> Result<Vec<TrustView>> {
        self.get(&["trusts"], None)
    }

    fn trust(&mut self, name: &str) -> Result<TrustView> {
        self.get(&["trusts", name], None)
    }

    fn edit_trust(&mut self, name: &str, change: &EditTrust) -> Result<TrustView> {
        self.send(Method::PATCH, &["trusts", name], change)
    }

    fn remove_trust(&mut self, name: &str) -> Result<TrustView> {
        self.call(Method::DELETE, &["trusts", name], None, None)
    }

    fn audit(&mut self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        self.get(&["audit"], query(q)?)
    }

    fn verify_audit(&mut self) -> Result<AuditVerdict> {
        self.get(&["audit", "verify"], None)
    }

    fn usage(&mut self, q: &UsageQuery) -> Result<Vec<UsageRow>> {
        self.get(&["usage"], query(q)?)
    }

    fn usage_summary(&mut self, q: &UsageQuery) -> Result<UsageSummary> {
        self.get(&["usage", "summary"], query(q)?)
    }

    fn report(&mut self, q: &ReportQuery) -> Result<Report> {
        self.get(&["report"], query(q)?)
    }
}
