//! Admin operations as request and result types, behind one trait with two sides: `Local`
//! (a store on this machine) and `Remote` (a server's `/admin/v1` API). The CLI commands build
//! a request, call either, and print the result the same way; the server's admin API calls
//! `Local` for its callers.

pub mod local;
pub mod remote;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::public_key::Alg;
use crate::scope::Scope;
use crate::secret::SecretString;
use crate::service_key::Format;
use crate::store::{
    AuditFilter, AuditRow, AuditVerdict, Key, Pat, StoreError, Trust, UsageRow, User,
};

pub use local::Local;
pub use remote::Remote;

/// Why an admin operation was refused; the server answers each kind with its own status.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No such user, key or token (404).
    #[error("{0}")]
    NotFound(String),
    /// The change clashes with what exists (409).
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed or a value is bad (400).
    #[error("{0}")]
    Invalid(String),
    /// The caller may not do this (403; 401 for a missing or bad credential).
    #[error("{0}")]
    Forbidden(String),
    /// Anything else: the store, the network.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> AdminError {
        match e {
            StoreError::UnknownUser(_)
            | StoreError::UnknownKey(_)
            | StoreError::UnknownPat(_)
            | StoreError::UnknownTrust(_) => AdminError::NotFound(e.to_string()),
            StoreError::UserExists(_)
            | StoreError::UserHasKeys { .. }
            | StoreError::UserHasTrusts { .. }
            | StoreError::TrustExists(_) => AdminError::Conflict(e.to_string()),
            StoreError::AmbiguousKey(_) | StoreError::AmbiguousPat(_) => {
                AdminError::Invalid(e.to_string())
            }
            other => AdminError::Other(other.into()),
        }
    }
}

pub type Result<T, E = AdminError> = std::result::Result<T, E>;

/// A key as listings show it: the stored key plus its state now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyView {
    #[serde(flatten)]
    pub key: Key,
    pub state: String,
}

/// A personal access token as listings show it: never the token, only `tapat_…` and its
/// last four characters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatView {
    #[serde(flatten)]
    pub pat: Pat,
    pub state: String,
    pub token: String,
}

/// `issue-key`: what the new key is, as the command line gives it (values are parsed by the
/// operation, so local and remote refuse the same input with the same words).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueKey {
    pub user: String,
    #[serde(default)]
    pub title: String,
    /// Comma-separated IPs or networks; absent or empty: anywhere.
    #[serde(default)]
    pub ip_range: Option<String>,
    #[serde(default)]
    pub scope: Option<Scope>,
    /// A duration from now (90d) or a date.
    #[serde(default)]
    pub expires: Option<String>,
    #[serde(default)]
    pub origins: Vec<String>,
    #[serde(default)]
    pub alg: Option<Alg>,
    /// RSA key size: 2048, 3072 or 4096.
    #[serde(default)]
    pub bits: Option<usize>,
    /// A public key the client brought (PEM, JWK or JWKS text): no pair is generated.
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub format: Option<Format>,
    #[serde(default)]
    pub pkcs8: bool,
}

/// A new key and its key file, which holds the private key (unless the client brought its
/// own): returned this once. No `Debug`: it would print the private key.
#[derive(Serialize, Deserialize)]
pub struct Issued {
    pub key: KeyView,
    pub key_file: Value,
    pub user_created: bool,
}

/// `edit-key`: `None` leaves a field alone; `Some("")` / `Some([])` clear it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditKey {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub ip_range: Option<String>,
    #[serde(default)]
    pub origins: Option<Vec<String>>,
}

/// Key states a listing may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Active,
    Revoked,
    Expired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Revoked => "revoked",
            KeyState::Expired => "expired",
        }
    }
}

/// `list-keys` filters. Durations are seconds, counted back or ahead from the store's now.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFilter {
    #[serde(default)]
    pub user: Option<String>,
    /// Revoked keys too.
    #[serde(default)]
    pub all: bool,
    /// Only keys that expire within this many seconds (and have not yet).
    #[serde(default)]
    pub expiring_within: Option<i64>,
    /// Only keys not used for this many seconds (a never-used key counts from its issue).
    #[serde(default)]
    pub unused_for: Option<i64>,
    #[serde(default)]
    pub scope: Option<Scope>,
    #[serde(default)]
    pub state: Option<KeyState>,
}

/// `token create`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePat {
    pub user: String,
    #[serde(default)]
    pub scope: Option<Scope>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub expires: Option<String>,
    #[serde(default)]
    pub ip_range: Option<String>,
    #[serde(default)]
    pub origins: Vec<String>,
}

/// A new personal access token: the token itself, this once.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreatedPat {
    #[serde(flatten)]
    pub pat: Pat,
    pub token: SecretString,
    #[serde(default)]
    pub user_created: bool,
}

/// `token edit`: `None` leaves a field alone.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditPat {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub scope: Option<Scope>,
    #[serde(default)]
    pub ip_range: Option<String>,
    #[serde(default)]
    pub origins: Option<Vec<String>>,
}

/// `token list`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatFilter {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub all: bool,
}

/// A trust relationship as listings show it: never its JWKS document (the keys are public,
/// but a document of several keys would drown every listing), only how many usable keys it
/// holds; its state now; and what the admin should know about its rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrustView {
    #[serde(flatten, serialize_with = "without_jwks")]
    pub trust: Trust,
    /// With a JWKS document (`--jwks-file`): how many usable signing keys it holds.
    pub jwks_keys: Option<usize>,
    pub state: String,
    #[serde(default)]
    pub warnings: Vec<String>,
}

fn without_jwks<S: serde::Serializer>(trust: &Trust, s: S) -> Result<S::Ok, S::Error> {
    let mut v = serde_json::to_value(trust).map_err(serde::ser::Error::custom)?;
    if let Some(fields) = v.as_object_mut() {
        fields.remove("jwks");
    }
    v.serialize(s)
}

/// `trust add`: the trust as the command line gives it (values are parsed by the operation,
/// so local and remote refuse the same input with the same words).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddTrust {
    pub name: String,
    pub issuer: String,
    pub audience: String,
    /// `NAME=VALUE` each.
    #[serde(default)]
    pub claims: Vec<String>,
    #[serde(default)]
    pub user_claim: Option<String>,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub scope: Option<Scope>,
    /// Comma-separated IPs or networks; absent or empty: anywhere.
    #[serde(default)]
    pub ip_range: Option<String>,
    #[serde(default)]
    pub origins: Vec<String>,
    /// A duration from now (90d) or a date.
    #[serde(default)]
    pub expires: Option<String>,
    /// A duration (1h): how old an ID token may be.
    #[serde(default)]
    pub max_age: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// A JWKS document's text: the issuer's keys, never fetched.
    #[serde(default)]
    pub jwks: Option<String>,
}

/// `trust edit`: `None` leaves a field alone; `Some("")` / `Some([])` clear it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditTrust {
    /// Refused: a trust's issuer is what it is.
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
    /// `NAME=VALUE` each: adds the claim, or replaces its value.
    #[serde(default)]
    pub claims: Vec<String>,
    #[serde(default)]
    pub remove_claims: Vec<String>,
    #[serde(default)]
    pub user_claim: Option<String>,
    /// Replaces the list.
    #[serde(default)]
    pub users: Option<Vec<String>>,
    #[serde(default)]
    pub scope: Option<Scope>,
    #[serde(default)]
    pub ip_range: Option<String>,
    #[serde(default)]
    pub origins: Option<Vec<String>>,
    #[serde(default)]
    pub expires: Option<String>,
    #[serde(default)]
    pub max_age: Option<String>,
    /// Either key source replaces the other; both `""`: the issuer's discovery document.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub jwks: Option<String>,
}

/// What a revocation did: `revoked_now` is false when it already was revoked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revoked<T> {
    pub revoked_now: bool,
    pub item: T,
}

/// `usage-log`: rows, or with `summary` the per-key numbers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// A key's or token's id, or a unique prefix.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// Only rows of the last this many seconds.
    #[serde(default)]
    pub since: Option<i64>,
    #[serde(default)]
    pub failures: bool,
    #[serde(default)]
    pub no_jti: bool,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// One key's (or token's) use over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyUsage {
    pub key_id: Option<String>,
    pub token_id: Option<String>,
    pub user: Option<String>,
    pub issuances: i64,
    pub refusals: i64,
    pub refusals_by_reason: BTreeMap<String, i64>,
    pub first_use: Option<i64>,
    pub last_use: Option<i64>,
    /// Per UTC day from `from` on: issuances and refusals.
    pub per_day: Vec<DayCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayCount {
    /// The day's start, Unix seconds (UTC midnight).
    pub day: i64,
    pub issuances: i64,
    pub refusals: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageSummary {
    /// The period: from (a UTC midnight) to now.
    pub from: i64,
    pub to: i64,
    pub keys: Vec<KeyUsage>,
}

/// `audit`: `since` in seconds back from now.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    pub since: Option<i64>,
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// A credential the report flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// `key` or `token`.
    pub kind: String,
    pub id: String,
    pub user: String,
    pub title: String,
    pub scope: Scope,
    pub expires: Option<i64>,
    pub last_used: Option<i64>,
}

/// `report`: what an admin should look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub time: i64,
    pub expiring_within: i64,
    pub unused_for: i64,
    /// Active keys and tokens that expire within `expiring_within` seconds.
    pub expiring: Vec<Finding>,
    /// Active keys and tokens unused for `unused_for` seconds (never used: since issued).
    pub unused: Vec<Finding>,
    /// Active write-scoped keys and tokens usable from anywhere.
    pub write_without_ip_range: Vec<Finding>,
    /// Users who may impersonate others.
    pub impersonate: Vec<String>,
    /// Disabled users that still have active keys or tokens.
    pub disabled_with_keys: Vec<Finding>,
}

/// The report's finding kinds, as `--fail-on` names them.
pub const FINDINGS: [&str; 5] = [
    "expiring",
    "unused",
    "write-without-ip-range",
    "impersonate",
    "disabled-with-keys",
];

impl Report {
    /// How many findings of a kind (one of [`FINDINGS`]).
    pub fn count(&self, kind: &str) -> usize {
        match kind {
            "expiring" => self.expiring.len(),
            "unused" => self.unused.len(),
            "write-without-ip-range" => self.write_without_ip_range.len(),
            "impersonate" => self.impersonate.len(),
            "disabled-with-keys" => self.disabled_with_keys.len(),
            _ => 0,
        }
    }
}

/// `report`'s thresholds, in seconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    #[serde(default = "default_expiring")]
    pub expiring_within: i64,
    #[serde(default = "default_unused")]
    pub unused_for: i64,
}

fn default_expiring() -> i64 {
    30 * 86_400
}

fn default_unused() -> i64 {
    90 * 86_400
}

impl Default for ReportQuery {
    fn default() -> ReportQuery {
        ReportQuery {
            expiring_within: default_expiring(),
            unused_for: default_unused(),
        }
    }
}

/// Permissions a user may hold.
pub const PERMISSIONS: [&str; 4] = ["impersonate", "introspect", "admin", "manage-own-keys"];

/// What the CLI's admin commands do, on a local store or on a remote server.
pub trait Admin {
    fn users(&mut self) -> Result<Vec<User>>;
    fn user(&mut self, name: &str) -> Result<User>;
    fn add_user(&mut self, name: &str) -> Result<User>;
    fn remove_user(&mut self, name: &str) -> Result<()>;
    fn set_permission(&mut self, name: &str, permission: &str, granted: bool) -> Result<User>;
    fn set_disabled(&mut self, name: &str, disabled: bool) -> Result<User>;
    /// Rotates one user's secret, or every user's: returns whose.
    fn rotate_secret(&mut self, user: Option<&str>) -> Result<Vec<String>>;

    fn issue_key(&mut self, req: &IssueKey) -> Result<Issued>;
    fn keys(&mut self, filter: &KeyFilter) -> Result<Vec<KeyView>>;
    fn key(&mut self, id: &str) -> Result<KeyView>;
    fn edit_key(&mut self, id: &str, change: &EditKey) -> Result<KeyView>;
    fn revoke_key(&mut self, id: &str) -> Result<Revoked<KeyView>>;

    fn create_pat(&mut self, req: &CreatePat) -> Result<CreatedPat>;
    fn pats(&mut self, filter: &PatFilter) -> Result<Vec<PatView>>;
    fn pat(&mut self, id: &str) -> Result<PatView>;
    fn edit_pat(&mut self, id: &str, change: &EditPat) -> Result<PatView>;
    fn revoke_pat(&mut self, id: &str) -> Result<Revoked<PatView>>;

    fn add_trust(&mut self, req: &AddTrust) -> Result<TrustView>;
    fn trusts(&mut self) -> Result<Vec<TrustView>>;
    fn trust(&mut self, name: &str) -> Result<TrustView>;
    fn edit_trust(&mut self, name: &str, change: &EditTrust) -> Result<TrustView>;
    /// Returns the trust as it was.
    fn remove_trust(&mut self, name: &str) -> Result<TrustView>;

    fn audit(&mut self, query: &AuditQuery) -> Result<Vec<AuditRow>>;
    fn verify_audit(&mut self) -> Result<AuditVerdict>;
    fn usage(&mut self, query: &UsageQuery) -> Result<Vec<UsageRow>>;
    fn usage_summary(&mut self, query: &UsageQuery) -> Result<UsageSummary>;
    fn report(&mut self, query: &ReportQuery) -> Result<Report>;
}

impl AuditQuery {
    pub fn filter(&self, now: i64) -> AuditFilter {
        AuditFilter {
            since: self.since.map(|s| now.saturating_sub(s)),
            actor: self.actor.clone(),
            target: self.target.clone(),
            action: self.action.clone(),
            limit: i64::from(self.limit.unwrap_or(100)),
        }
    }
}
