//! Trust relationships (keyless CI): which OIDC issuer's ID tokens, bound by which claims,
//! are exchanged for access tokens of which user. Removed by deleting the row (the audit
//! trail keeps it); a name added again gets a new id, so tokens of the old one stay dead.

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::audit::Changes;
use super::sql::{Row, params};
use super::{Result, Store, StoreError};
use crate::iprange;
use crate::origin;
use crate::scope::Scope;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Trust {
    /// `trust-…`: what access tokens carry as their `key_id`.
    pub id: String,
    pub name: String,
    /// The ID tokens' exact `iss`.
    pub issuer: String,
    /// The `aud` they must carry.
    pub audience: String,
    /// Bound claims: name → pattern (exact; `*` globs only where the admin wrote one).
    pub claims: BTreeMap<String, String>,
    /// The claim naming the subject; then `users` lists who it may name.
    pub user_claim: Option<String>,
    /// The user tokens are for (one), or with `user_claim` the users it may map to.
    pub users: Vec<String>,
    pub scope: Scope,
    pub ip_ranges: Vec<IpNet>,
    pub origins: Vec<String>,
    /// Where the issuer's keys are, instead of its discovery document's `jwks_uri`.
    pub jwks_uri: Option<String>,
    /// The issuer's keys as a JWKS document: nothing is fetched.
    pub jwks: Option<String>,
    /// How old (`iat`) an ID token may be, in seconds.
    pub max_age: i64,
    pub created: i64,
    pub expires: Option<i64>,
    pub last_used: Option<i64>,
}

impl Trust {
    pub fn state(&self, now: i64) -> &'static str {
        if self.expires.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        }
    }
}

/// What `trust edit` changes; `None` leaves a field alone.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrustChange {
    pub audience: Option<String>,
    pub claims: Option<BTreeMap<String, String>>,
    pub user_claim: Option<Option<String>>,
    pub users: Option<Vec<String>>,
    pub scope: Option<Scope>,
    pub ip_ranges: Option<Vec<IpNet>>,
    pub origins: Option<Vec<String>>,
    pub jwks_uri: Option<Option<String>>,
    pub jwks: Option<Option<String>>,
    pub max_age: Option<i64>,
    pub expires: Option<Option<i64>>,
}

const COLUMNS: &str = "t.id, t.name, t.issuer, t.audience, t.claims, t.user_claim, t.users,
    t.scope, t.ip_ranges, t.origins, t.jwks_uri, t.jwks, t.max_age, t.created, t.expires,
    (SELECT max(time) FROM usage_log l WHERE l.key_id = t.id AND l.ok <> 0)";

/// The same without the last use: what servers load.
const LEAN_COLUMNS: &str = "t.id, t.name, t.issuer, t.audience, t.claims, t.user_claim, t.users,
    t.scope, t.ip_ranges, t.origins, t.jwks_uri, t.jwks, t.max_age, t.created, t.expires, NULL";

fn from_row(r: &Row) -> Result<Trust> {
    let bad = |i, e: String| StoreError::Data(format!("trusts column {i}: {e}"));
    let claims: String = r.get(4)?;
    let users: String = r.get(6)?;
    let scope: String = r.get(7)?;
    let ranges: String = r.get(8)?;
    Ok(Trust {
        id: r.get(0)?,
        name: r.get(1)?,
        issuer: r.get(2)?,
        audience: r.get(3)?,
        claims: serde_json::from_str(&claims).map_err(|e| bad(4, e.to_string()))?,
        user_claim: r.get(5)?,
        users: users.split_whitespace().map(str::to_owned).collect(),
        scope: scope
            .parse()
            .map_err(|e: crate::scope::ScopeError| bad(7, e.to_string()))?,
        ip_ranges: iprange::parse(&ranges).map_err(|e| bad(8, e.to_string()))?,
        origins: origin::from_stored(&r.get::<String>(9)?),
        jwks_uri: r.get(10)?,
        jwks: r.get(11)?,
        max_age: r.get(12)?,
        created: r.get(13)?,
        expires: r.get(14)?,
        last_used: r.get(15)?,
    })
}

/// What a trust's audit rows say about it (never the JWKS document itself, only whether
/// there is one).
fn described(t: &Trust) -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::json;
    vec![
        ("issuer", json!(t.issuer)),
        ("audience", json!(t.audience)),
        ("claims", json!(t.claims)),
        ("user_claim", json!(t.user_claim)),
        ("users", json!(t.users.join(" "))),
        ("scope", json!(t.scope.as_str())),
        ("ip_ranges", json!(iprange::format(&t.ip_ranges))),
        ("origins", json!(t.origins.join(" "))),
        ("jwks_uri", json!(t.jwks_uri)),
        ("jwks", json!(t.jwks.is_some())),
        ("max_age", json!(t.max_age)),
        ("expires", json!(t.expires)),
    ]
}

impl Store {
    /// Adds a trust; [`StoreError::TrustExists`] when its name is taken, and
    /// [`StoreError::UnknownUser`] when it names a user the store does not have.
    pub fn add_trust(&mut self, t: &Trust) -> Result<()> {
        let claims =
            serde_json::to_string(&t.claims).map_err(|e| StoreError::Data(e.to_string()))?;
        let users = t.users.join(" ");
        let ranges = iprange::format(&t.ip_ranges);
        let origins = origin::format(&t.origins);
        self.write(|| {
            self.users_exist(&t.users)?;
            if self
                .row("SELECT 1 FROM trusts WHERE name = ?1", &params![&t.name])?
                .is_some()
            {
                return Err(StoreError::TrustExists(t.name.clone()));
            }
            self.exec(
                "INSERT INTO trusts(id, name, issuer, audience, claims, user_claim, users, scope,
                    ip_ranges, origins, jwks_uri, jwks, max_age, created, expires)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                &params![
                    &t.id,
                    &t.name,
                    &t.issuer,
                    &t.audience,
                    &claims,
                    &t.user_claim,
                    &users,
                    t.scope.as_str(),
                    &ranges,
                    &origins,
                    &t.jwks_uri,
                    &t.jwks,
                    t.max_age,
                    t.created,
                    t.expires
                ],
            )?;
            let mut changes = Changes::new().set("id", t.id.as_str());
            for (field, value) in described(t) {
                changes = changes.set(field, value);
            }
            self.record("trust.add", &t.name, changes)
        })
    }

    /// Every trust, by name.
    pub fn trusts(&self) -> Result<Vec<Trust>> {
        self.rows(
            &format!("SELECT {COLUMNS} FROM trusts t ORDER BY t.name"),
            &[],
        )?
        .iter()
        .map(from_row)
        .collect()
    }

    /// The trust named `name`.
    pub fn trust(&self, name: &str) -> Result<Trust> {
        self.row(
            &format!("SELECT {COLUMNS} FROM trusts t WHERE t.name = ?1"),
            &params![name],
        )?
        .map(|r| from_row(&r))
        .transpose()?
        .ok_or_else(|| StoreError::UnknownTrust(name.to_owned()))
    }

    /// The trust whose id an access token carries, if it still exists.
    pub fn trust_by_id(&self, id: &str) -> Result<Option<Trust>> {
        self.row(
            &format!("SELECT {LEAN_COLUMNS} FROM trusts t WHERE t.id = ?1"),
            &params![id],
        )?
        .map(|r| from_row(&r))
        .transpose()
    }

    /// Changes a trust, with an audit row of what changed; returns it as it is now.
    pub fn edit_trust(&mut self, name: &str, change: &TrustChange) -> Result<Trust> {
        self.write(|| {
            let old = self.trust(name)?;
            let mut new = old.clone();
            let c = change.clone();
            if let Some(v) = c.audience {
                new.audience = v;
            }
            if let Some(v) = c.claims {
                new.claims = v;
            }
            if let Some(v) = c.user_claim {
                new.user_claim = v;
            }
            if let Some(v) = c.users {
                new.users = v;
            }
            if let Some(v) = c.scope {
                new.scope = v;
            }
            if let Some(v) = c.ip_ranges {
                new.ip_ranges = v;
            }
            if let Some(v) = c.origins {
                new.origins = v;
            }
            if let Some(v) = c.jwks_uri {
                new.jwks_uri = v;
            }
            if let Some(v) = c.jwks {
                new.jwks = v;
            }
            if let Some(v) = c.max_age {
                new.max_age = v;
            }
            if let Some(v) = c.expires {
                new.expires = v;
            }
            self.users_exist(&new.users)?;
            let claims =
                serde_json::to_string(&new.claims).map_err(|e| StoreError::Data(e.to_string()))?;
            self.exec(
                "UPDATE trusts SET audience = ?2, claims = ?3, user_claim = ?4, users = ?5,
                    scope = ?6, ip_ranges = ?7, origins = ?8, jwks_uri = ?9, jwks = ?10,
                    max_age = ?11, expires = ?12
                 WHERE id = ?1",
                &params![
                    &new.id,
                    &new.audience,
                    &claims,
                    &new.user_claim,
                    &new.users.join(" "),
                    new.scope.as_str(),
                    &iprange::format(&new.ip_ranges),
                    &origin::format(&new.origins),
                    &new.jwks_uri,
                    &new.jwks,
                    new.max_age,
                    new.expires
                ],
            )?;
            let mut changes = Changes::new();
            for ((field, was), (_, now)) in described(&old).into_iter().zip(described(&new)) {
                changes = changes.from_to(field, was, now);
            }
            // A JWKS replaced by another is a change even though both are "present".
            if old.jwks != new.jwks && old.jwks.is_some() && new.jwks.is_some() {
                changes = changes.from_to("jwks", "a JWKS document", "another JWKS document");
            }
            if !changes.is_empty() {
                self.record("trust.edit", name, changes)?;
            }
            Ok(new)
        })
    }

    /// Removes a trust: its ID tokens and the access tokens they got are refused from now.
    pub fn remove_trust(&mut self, name: &str) -> Result<Trust> {
        self.write(|| {
            let old = self.trust(name)?;
            self.exec("DELETE FROM trusts WHERE id = ?1", &params![&old.id])?;
            let mut changes = Changes::new().from_to("id", old.id.as_str(), None::<String>);
            for (field, value) in described(&old) {
                changes = changes.from_to(field, value, None::<String>);
            }
            self.record("trust.remove", name, changes)?;
            Ok(old)
        })
    }

    /// Calls `f` with every trust (a server's start).
    pub fn each_trust(&self, mut f: impl FnMut(Trust)) -> Result<()> {
        self.each(&format!("SELECT {LEAN_COLUMNS} FROM trusts t"), &[], |r| {
            f(from_row(&r)?);
            Ok(())
        })
    }

    /// The trusts the change feed names between two positions, as they are now.
    pub(super) fn changed_trusts(&self, after: i64, upto: i64) -> Result<Vec<Trust>> {
        let sql = format!(
            "SELECT {LEAN_COLUMNS} FROM trusts t WHERE t.id IN ({})",
            super::CHANGED.replace("{entity}", "trust")
        );
        self.rows(&sql, &params![after, upto])?
            .iter()
            .map(from_row)
            .collect()
    }

    /// Names of the trusts that name `user` (a user they name cannot be removed).
    pub(super) fn trusts_naming(&self, user: &str) -> Result<Vec<String>> {
        let rows = self.rows("SELECT name, users FROM trusts ORDER BY name", &[])?;
        let mut names = Vec::new();
        for r in &rows {
            let users: String = r.get(1)?;
            if users.split_whitespace().any(|u| u == user) {
                names.push(r.get(0)?);
            }
        }
        Ok(names)
    }

    fn users_exist(&self, users: &[String]) -> Result<()> {
        for u in users {
            if self
                .row("SELECT 1 FROM users WHERE name = ?1", &params![u])?
                .is_none()
            {
                return Err(StoreError::UnknownUser(u.clone()));
            }
        }
        Ok(())
    }
}
