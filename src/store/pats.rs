//! Personal access tokens in the store: a row per token holding its SHA-256 hash, never the
//! token.

use ipnet::IpNet;

use super::audit::Changes;
use super::sql::{Row, params};
use super::{Result, Store, StoreError};
use crate::iprange;
use crate::origin;
use crate::scope::Scope;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Pat {
    pub id: String,
    pub user: String,
    #[serde(skip)]
    pub hash: [u8; 32],
    /// The token's last four characters, to tell tokens apart.
    pub last4: String,
    pub description: String,
    pub scope: Scope,
    pub ip_ranges: Vec<IpNet>,
    pub origins: Vec<String>,
    pub created: i64,
    pub expires: Option<i64>,
    pub revoked: Option<i64>,
    /// The user's secret epoch the token was made under; another means it was rotated.
    #[serde(skip)]
    pub secret_epoch: i64,
    pub last_used: Option<i64>,
    /// Ended by a rotation of its user's secret since it was made (read with the row; its
    /// `state` says so).
    #[serde(skip)]
    pub ended: bool,
}

impl Pat {
    pub fn state(&self, now: i64) -> &'static str {
        if self.revoked.is_some() {
            "revoked"
        } else if self.ended {
            "ended"
        } else if self.expires.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        }
    }
}

/// What `token edit` changes; `None` leaves a field alone.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct PatChange {
    pub description: Option<String>,
    pub scope: Option<Scope>,
    pub ip_ranges: Option<Vec<IpNet>>,
    pub origins: Option<Vec<String>>,
}

const COLUMNS: &str = "p.id, p.user_name, p.hash, p.last4, p.description, p.scope, p.ip_ranges,
    p.origins, p.created, p.expires, p.revoked, p.secret_epoch, p.last_used,
    CASE WHEN p.secret_epoch <> coalesce(
        (SELECT s.epoch FROM secrets s WHERE s.user_name = p.user_name), p.secret_epoch)
    THEN 1 ELSE 0 END";

fn from_row(r: &Row) -> Result<Pat> {
    let bad = |i, e: String| StoreError::Data(format!("column {i}: {e}"));
    let ranges: String = r.get(6)?;
    let scope: String = r.get(5)?;
    Ok(Pat {
        id: r.get(0)?,
        user: r.get(1)?,
        hash: r.get(2)?,
        last4: r.get(3)?,
        description: r.get(4)?,
        scope: scope
            .parse()
            .map_err(|e: crate::scope::ScopeError| bad(5, e.to_string()))?,
        ip_ranges: iprange::parse(&ranges).map_err(|e| bad(6, e.to_string()))?,
        origins: origin::from_stored(&r.get::<String>(7)?),
        created: r.get(8)?,
        expires: r.get(9)?,
        revoked: r.get(10)?,
        secret_epoch: r.get(11)?,
        last_used: r.get(12)?,
        ended: r.get(13)?,
    })
}

impl Store {
    /// Stores a new token made under the user's current secret epoch (which it takes from
    /// the store, in the same transaction, so a rotation cannot slip in between).
    pub fn add_pat(&mut self, pat: &Pat) -> Result<()> {
        let ranges = iprange::format(&pat.ip_ranges);
        let origins = origin::format(&pat.origins);
        self.write(|| {
            let epoch: i64 = self
                .row(
                    "SELECT epoch FROM secrets WHERE user_name = ?1",
                    &params![&pat.user],
                )?
                .ok_or_else(|| StoreError::UnknownUser(pat.user.clone()))?
                .get(0)?;
            self.exec(
                "INSERT INTO pats(id, user_name, hash, last4, description, scope, ip_ranges, origins,
                    created, expires, secret_epoch) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                &params![
                    &pat.id,
                    &pat.user,
                    &pat.hash,
                    &pat.last4,
                    &pat.description,
                    pat.scope.as_str(),
                    &ranges,
                    &origins,
                    pat.created,
                    pat.expires,
                    epoch
                ],
            )?;
            // Never the token or its hash.
            let changes = Changes::new()
                .set("user", pat.user.as_str())
                .set("description", pat.description.as_str())
                .set("scope", pat.scope.as_str())
                .set("ip_ranges", ranges.as_str())
                .set("origins", pat.origins.join(" "))
                .set("expires", pat.expires);
            self.record("token.create", &pat.id, changes)
        })
    }

    /// Tokens, newest first; revoked ones only with `include_revoked`.
    pub fn pats(&self, user: Option<&str>, include_revoked: bool) -> Result<Vec<Pat>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM pats p WHERE (CAST(?1 AS TEXT) IS NULL OR p.user_name = ?1) AND (?2 <> 0 OR p.revoked IS NULL)
             ORDER BY p.created DESC, p.id"
        );
        self.rows(&sql, &params![user, include_revoked])?
            .iter()
            .map(from_row)
            .collect()
    }

    /// Finds a token by its id or a unique prefix of at least 4 characters.
    pub fn pat(&self, id: &str) -> Result<Pat> {
        let select = format!("SELECT {COLUMNS} FROM pats p");
        let found = self
            .by_id_or_prefix(&select, "p.id", id)?
            .iter()
            .map(from_row)
            .collect::<Result<Vec<Pat>>>()?;
        match super::pick(found, id, |p| &p.id) {
            Some(Ok(pat)) => Ok(pat),
            Some(Err(())) => Err(StoreError::AmbiguousPat(id.to_owned())),
            None => Err(StoreError::UnknownPat(id.to_owned())),
        }
    }

    /// Changes what `change` names, in one transaction.
    pub fn edit_pat(&mut self, id: &str, change: &PatChange) -> Result<()> {
        let scope = change.scope.map(|s| s.as_str());
        let ranges = change.ip_ranges.as_deref().map(iprange::format);
        let origins = change.origins.as_deref().map(origin::format);
        let sql = format!("SELECT {COLUMNS} FROM pats p WHERE p.id = ?1");
        self.write(|| {
            let old = self
                .row(&sql, &params![id])?
                .map(|r| from_row(&r))
                .transpose()?
                .ok_or_else(|| StoreError::UnknownPat(id.to_owned()))?;
            let mut changes = Changes::new();
            if let Some(d) = &change.description {
                changes = changes.from_to("description", old.description.as_str(), d.as_str());
            }
            if let Some(s) = change.scope {
                changes = changes.from_to("scope", old.scope.as_str(), s.as_str());
            }
            if let Some(r) = &change.ip_ranges {
                changes = changes.from_to(
                    "ip_ranges",
                    iprange::format(&old.ip_ranges),
                    iprange::format(r),
                );
            }
            if let Some(o) = &change.origins {
                changes = changes.from_to("origins", old.origins.join(" "), o.join(" "));
            }
            let set = |sql: &str, value: Option<&str>| match value {
                Some(v) => self.exec(sql, &params![id, v]).map(|_| ()),
                None => Ok(()),
            };
            set(
                "UPDATE pats SET description = ?2 WHERE id = ?1",
                change.description.as_deref(),
            )?;
            set("UPDATE pats SET scope = ?2 WHERE id = ?1", scope)?;
            set(
                "UPDATE pats SET ip_ranges = ?2 WHERE id = ?1",
                ranges.as_deref(),
            )?;
            set(
                "UPDATE pats SET origins = ?2 WHERE id = ?1",
                origins.as_deref(),
            )?;
            if !changes.is_empty() {
                self.record("token.edit", id, changes)?;
            }
            Ok(())
        })
    }

    /// Marks the token revoked; false when it already was.
    pub fn revoke_pat(&mut self, id: &str, now: i64) -> Result<bool> {
        let revoked = self.revoke("pats", "id", id, now, "token.revoke")?;
        if !revoked {
            self.pat(id)?;
        }
        Ok(revoked)
    }

    /// Tokens neither revoked, nor ended by a rotation, nor expired by `cutoff`, one at a
    /// time (a server's start).
    pub fn each_live_pat(&self, cutoff: i64, mut f: impl FnMut(Pat)) -> Result<()> {
        self.each(
            &format!(
                "SELECT {COLUMNS} FROM pats p JOIN secrets s ON s.user_name = p.user_name
                 WHERE p.revoked IS NULL AND (p.expires IS NULL OR p.expires > ?1)
                   AND p.secret_epoch = s.epoch"
            ),
            &params![cutoff],
            |r| {
                f(from_row(&r)?);
                Ok(())
            },
        )
    }

    /// The token with this SHA-256 hash, revoked or not.
    pub fn pat_by_hash(&self, hash: &[u8; 32]) -> Result<Option<Pat>> {
        self.row(
            &format!("SELECT {COLUMNS} FROM pats p WHERE p.hash = ?1"),
            &params![hash],
        )?
        .map(|r| from_row(&r))
        .transpose()
    }

    /// The tokens the change feed names between two positions, as they are now.
    pub(super) fn changed_pats(&self, after: i64, upto: i64) -> Result<Vec<Pat>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM pats p WHERE p.id IN ({})",
            super::CHANGED.replace("{entity}", "pat")
        );
        self.rows(&sql, &params![after, upto])?
            .iter()
            .map(from_row)
            .collect()
    }

    /// Hashes of unrevoked tokens that expired after `from` and by `to` (on the expiry
    /// index).
    pub fn pats_expired_between(&self, from: i64, to: i64) -> Result<Vec<[u8; 32]>> {
        self.column(
            "SELECT hash FROM pats WHERE expires > ?1 AND expires <= ?2 AND revoked IS NULL",
            &params![from, to],
        )
    }
}
