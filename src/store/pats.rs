//! Personal access tokens in the store: a row per token holding its SHA-256 hash, never the
//! token.

use ipnet::IpNet;
use rusqlite::{OptionalExtension, params};

use super::audit::Changes;
use super::{Result, Store, StoreError, map_err};
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
}

impl Pat {
    pub fn state(&self, now: i64) -> &'static str {
        if self.revoked.is_some() {
            "revoked"
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
    p.origins, p.created, p.expires, p.revoked, p.secret_epoch, p.last_used";

fn from_row(r: &rusqlite::Row) -> rusqlite::Result<Pat> {
    let bad = |i, e: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    };
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
        origins: origin::from_stored(&r.get::<_, String>(7)?),
        created: r.get(8)?,
        expires: r.get(9)?,
        revoked: r.get(10)?,
        secret_epoch: r.get(11)?,
        last_used: r.get(12)?,
    })
}

impl Store {
    /// Stores a new token made under the user's current secret epoch (which it takes from
    /// the store, in the same transaction, so a rotation cannot slip in between).
    pub fn add_pat(&mut self, pat: &Pat) -> Result<()> {
        let path = self.path.clone();
        let a = self.audit_ctx();
        let tx = self.write_tx()?;
        let epoch: i64 = tx
            .query_row(
                "SELECT epoch FROM secrets WHERE user_name = ?1",
                [&pat.user],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| map_err(e, &path))?
            .ok_or_else(|| StoreError::UnknownUser(pat.user.clone()))?;
        tx.execute(
            "INSERT INTO pats(id, user_name, hash, last4, description, scope, ip_ranges, origins,
                created, expires, secret_epoch) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                pat.id,
                pat.user,
                pat.hash,
                pat.last4,
                pat.description,
                pat.scope.as_str(),
                iprange::format(&pat.ip_ranges),
                origin::format(&pat.origins),
                pat.created,
                pat.expires,
                epoch
            ],
        )
        .map_err(|e| map_err(e, &path))?;
        // Never the token or its hash.
        let changes = Changes::new()
            .set("user", pat.user.as_str())
            .set("description", pat.description.as_str())
            .set("scope", pat.scope.as_str())
            .set("ip_ranges", iprange::format(&pat.ip_ranges))
            .set("origins", pat.origins.join(" "))
            .set("expires", pat.expires);
        a.record(&tx, "token.create", &pat.id, changes)?;
        tx.commit().map_err(|e| map_err(e, &path))
    }

    /// Tokens, newest first; revoked ones only with `include_revoked`.
    pub fn pats(&self, user: Option<&str>, include_revoked: bool) -> Result<Vec<Pat>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM pats p WHERE (?1 IS NULL OR p.user_name = ?1) AND (?2 OR p.revoked IS NULL)
             ORDER BY p.created DESC, p.id"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![user, include_revoked], from_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// Finds a token by its id or a unique prefix of at least 4 characters.
    pub fn pat(&self, id: &str) -> Result<Pat> {
        let sql = format!(
            "SELECT {COLUMNS} FROM pats p
             WHERE p.id = ?1 OR (length(?1) >= 4 AND substr(p.id, 1, length(?1)) = ?1)
             ORDER BY p.id = ?1 DESC LIMIT 2"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let found: Vec<Pat> = stmt
            .query_map([id], from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        match found.as_slice() {
            [] => Err(StoreError::UnknownPat(id.to_owned())),
            [one] => Ok(one.clone()),
            [first, ..] if first.id == id => Ok(first.clone()),
            _ => Err(StoreError::AmbiguousPat(id.to_owned())),
        }
    }

    /// Changes what `change` names, in one transaction.
    pub fn edit_pat(&mut self, id: &str, change: &PatChange) -> Result<()> {
        let path = self.path.clone();
        let a = self.audit_ctx();
        let tx = self.write_tx()?;
        let old = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM pats p WHERE p.id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .map_err(|e| map_err(e, &path))?
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
        let set = |sql: &str, value: &dyn rusqlite::ToSql| {
            tx.execute(sql, params![id, value])
                .map(|_| ())
                .map_err(|e| map_err(e, &path))
        };
        if let Some(d) = &change.description {
            set("UPDATE pats SET description = ?2 WHERE id = ?1", d)?;
        }
        if let Some(s) = change.scope {
            set("UPDATE pats SET scope = ?2 WHERE id = ?1", &s.as_str())?;
        }
        if let Some(r) = &change.ip_ranges {
            set(
                "UPDATE pats SET ip_ranges = ?2 WHERE id = ?1",
                &iprange::format(r),
            )?;
        }
        if let Some(o) = &change.origins {
            set(
                "UPDATE pats SET origins = ?2 WHERE id = ?1",
                &origin::format(o),
            )?;
        }
        if !changes.is_empty() {
            a.record(&tx, "token.edit", id, changes)?;
        }
        tx.commit().map_err(|e| map_err(e, &path))
    }

    /// Marks the token revoked; false when it already was.
    pub fn revoke_pat(&mut self, id: &str, now: i64) -> Result<bool> {
        let a = self.audit_ctx();
        let tx = self.write_tx()?;
        let n = tx
            .execute(
                "UPDATE pats SET revoked = ?2 WHERE id = ?1 AND revoked IS NULL",
                params![id, now],
            )
            .map_err(|e| a.err(e))?;
        if n > 0 {
            a.record(
                &tx,
                "token.revoke",
                id,
                Changes::new().from_to("revoked", None::<i64>, now),
            )?;
        }
        tx.commit().map_err(|e| a.err(e))?;
        if n == 0 {
            self.pat(id)?;
        }
        Ok(n > 0)
    }
}
