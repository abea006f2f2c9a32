//! Service keys: the public half and what it may do (user, scope, IP ranges, origins,
//! expiry, revocation). Keys are never deleted, only revoked.

use ipnet::IpNet;

use super::audit::Changes;
use super::sql::{Row, params};
use super::{Result, Store, StoreError};
use crate::iprange;
use crate::origin;
use crate::scope::Scope;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Key {
    pub key_id: String,
    pub client_id: String,
    pub user: String,
    pub title: String,
    pub alg: String,
    #[serde(skip)]
    pub public_key: String,
    pub ip_ranges: Vec<IpNet>,
    /// Browser origins that may use the key's tokens across sites.
    pub origins: Vec<String>,
    /// The key file's format: `tokenauth` or `google`.
    pub format: String,
    /// For Google-format keys: the service account address, accepted as a grant's `iss`.
    pub client_email: Option<String>,
    pub scope: Scope,
    pub issued: i64,
    pub expires: Option<i64>,
    pub revoked: Option<i64>,
    pub last_used: Option<i64>,
}

impl Key {
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

/// What `edit-key` changes; `None` leaves a field alone.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct KeyChange {
    pub title: Option<String>,
    pub ip_ranges: Option<Vec<IpNet>>,
    pub origins: Option<Vec<String>>,
}

const KEY_COLUMNS: &str =
    "k.key_id, k.client_id, k.user_name, k.title, k.alg, k.public_key, k.ip_ranges,
    k.scope, k.issued, k.expires, k.revoked,
    (SELECT max(time) FROM usage_log l WHERE l.key_id = k.key_id AND l.ok <> 0), k.origins,
    k.format, k.client_email";

/// The same without the last use, which costs a usage-log read per key: what checks need.
const LEAN_KEY_COLUMNS: &str =
    "k.key_id, k.client_id, k.user_name, k.title, k.alg, k.public_key, k.ip_ranges,
    k.scope, k.issued, k.expires, k.revoked, NULL, k.origins, k.format, k.client_email";

fn key_from_row(r: &Row) -> Result<Key> {
    let bad = |i, e: String| StoreError::Data(format!("column {i}: {e}"));
    let ranges: String = r.get(6)?;
    let scope: String = r.get(7)?;
    Ok(Key {
        key_id: r.get(0)?,
        client_id: r.get(1)?,
        user: r.get(2)?,
        title: r.get(3)?,
        alg: r.get(4)?,
        public_key: r.get(5)?,
        ip_ranges: iprange::parse(&ranges).map_err(|e| bad(6, e.to_string()))?,
        scope: scope
            .parse()
            .map_err(|e: crate::scope::ScopeError| bad(7, e.to_string()))?,
        issued: r.get(8)?,
        expires: r.get(9)?,
        revoked: r.get(10)?,
        last_used: r.get(11)?,
        origins: origin::from_stored(&r.get::<String>(12)?),
        format: r.get(13)?,
        client_email: r.get(14)?,
    })
}

impl Store {
    pub fn add_key(&mut self, key: &Key) -> Result<()> {
        let ranges = iprange::format(&key.ip_ranges);
        let origins = origin::format(&key.origins);
        self.write(|| {
            self.exec(
                "INSERT INTO keys(key_id, client_id, user_name, title, alg, public_key, ip_ranges, scope, issued, expires,
                    origins, format, client_email)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                &params![
                    &key.key_id,
                    &key.client_id,
                    &key.user,
                    &key.title,
                    &key.alg,
                    &key.public_key,
                    &ranges,
                    key.scope.as_str(),
                    key.issued,
                    key.expires,
                    &origins,
                    &key.format,
                    &key.client_email
                ],
            )?;
            let changes = Changes::new()
                .set("user", key.user.as_str())
                .set("client_id", key.client_id.as_str())
                .set("title", key.title.as_str())
                .set("alg", key.alg.as_str())
                .set("format", key.format.as_str())
                .set("scope", key.scope.as_str())
                .set("ip_ranges", ranges.as_str())
                .set("origins", key.origins.join(" "))
                .set("expires", key.expires);
            let changes = match &key.client_email {
                Some(e) => changes.set("client_email", e.as_str()),
                None => changes,
            };
            self.record("key.issue", &key.key_id, changes)
        })
    }

    /// Keys, newest first; revoked ones only with `include_revoked`.
    pub fn keys(&self, user: Option<&str>, include_revoked: bool) -> Result<Vec<Key>> {
        let sql = format!(
            "SELECT {} FROM keys k WHERE (CAST(?1 AS TEXT) IS NULL OR k.user_name = ?1) AND (?2 <> 0 OR k.revoked IS NULL)
             ORDER BY k.issued DESC, k.key_id",
            KEY_COLUMNS
        );
        self.rows(&sql, &params![user, include_revoked])?
            .iter()
            .map(key_from_row)
            .collect()
    }

    /// Finds a key by its id or a unique prefix of at least 4 characters.
    pub fn key(&self, id: &str) -> Result<Key> {
        let select = format!("SELECT {KEY_COLUMNS} FROM keys k");
        let found = self
            .by_id_or_prefix(&select, "k.key_id", id)?
            .iter()
            .map(key_from_row)
            .collect::<Result<Vec<Key>>>()?;
        match super::pick(found, id, |k| &k.key_id) {
            Some(Ok(key)) => Ok(key),
            Some(Err(())) => Err(StoreError::AmbiguousKey(id.to_owned())),
            None => Err(StoreError::UnknownKey(id.to_owned())),
        }
    }

    /// Changes what `change` names, in one transaction with its audit row.
    pub fn edit_key(&mut self, key_id: &str, change: &KeyChange) -> Result<()> {
        let sql = format!("SELECT {} FROM keys k WHERE k.key_id = ?1", KEY_COLUMNS);
        self.write(|| {
            let old = self
                .row(&sql, &params![key_id])?
                .map(|r| key_from_row(&r))
                .transpose()?
                .ok_or_else(|| StoreError::UnknownKey(key_id.to_owned()))?;
            let mut changes = Changes::new();
            let set = |sql: &str, value: &str| self.exec(sql, &params![key_id, value]).map(|_| ());
            if let Some(t) = &change.title {
                set("UPDATE keys SET title = ?2 WHERE key_id = ?1", t)?;
                changes = changes.from_to("title", old.title.as_str(), t.as_str());
            }
            if let Some(r) = &change.ip_ranges {
                let new = iprange::format(r);
                set("UPDATE keys SET ip_ranges = ?2 WHERE key_id = ?1", &new)?;
                changes = changes.from_to("ip_ranges", iprange::format(&old.ip_ranges), new);
            }
            if let Some(o) = &change.origins {
                set(
                    "UPDATE keys SET origins = ?2 WHERE key_id = ?1",
                    &origin::format(o),
                )?;
                changes = changes.from_to("origins", old.origins.join(" "), o.join(" "));
            }
            if !changes.is_empty() {
                self.record("key.edit", key_id, changes)?;
            }
            Ok(())
        })
    }

    /// Marks the key revoked; returns false when it already was.
    pub fn revoke_key(&mut self, key_id: &str, now: i64) -> Result<bool> {
        let revoked = self.revoke("keys", "key_id", key_id, now, "key.revoke")?;
        if !revoked {
            self.key(key_id)?;
        }
        Ok(revoked)
    }

    /// Keys neither revoked nor expired by `cutoff`, one at a time (a server's start).
    pub fn each_live_key(&self, cutoff: i64, mut f: impl FnMut(Key)) -> Result<()> {
        self.each(
            &format!(
                "SELECT {LEAN_KEY_COLUMNS} FROM keys k
                 WHERE k.revoked IS NULL AND (k.expires IS NULL OR k.expires > ?1)"
            ),
            &params![cutoff],
            |r| {
                f(key_from_row(&r)?);
                Ok(())
            },
        )
    }

    /// How many keys are neither revoked nor expired at `now`.
    pub fn count_active_keys(&self, now: i64) -> Result<i64> {
        self.value(
            "SELECT count(*) FROM keys WHERE revoked IS NULL AND (expires IS NULL OR expires > ?1)",
            &params![now],
        )
    }

    /// The key with exactly this id, revoked or not.
    pub fn key_exact(&self, key_id: &str) -> Result<Option<Key>> {
        self.row(
            &format!("SELECT {LEAN_KEY_COLUMNS} FROM keys k WHERE k.key_id = ?1"),
            &params![key_id],
        )?
        .map(|r| key_from_row(&r))
        .transpose()
    }

    /// The key a grant's issuer names: its client id or, for Google-format keys, its
    /// service account address. Revoked or not.
    pub fn key_by_client(&self, client: &str) -> Result<Option<Key>> {
        // Two lookups, each on its own unique index (an OR would not use both).
        for column in ["client_id", "client_email"] {
            let sql = format!("SELECT {LEAN_KEY_COLUMNS} FROM keys k WHERE k.{column} = ?1");
            if let Some(r) = self.row(&sql, &params![client])? {
                return key_from_row(&r).map(Some);
            }
        }
        Ok(None)
    }

    /// The keys the change feed names between two positions, as they are now.
    pub(super) fn changed_keys(&self, after: i64, upto: i64) -> Result<Vec<Key>> {
        let sql = format!(
            "SELECT {LEAN_KEY_COLUMNS} FROM keys k WHERE k.key_id IN ({})",
            super::CHANGED.replace("{entity}", "key")
        );
        self.rows(&sql, &params![after, upto])?
            .iter()
            .map(key_from_row)
            .collect()
    }

    /// Ids of unrevoked keys that expired after `from` and by `to` (on the expiry index).
    pub fn keys_expired_between(&self, from: i64, to: i64) -> Result<Vec<String>> {
        self.column(
            "SELECT key_id FROM keys WHERE expires > ?1 AND expires <= ?2 AND revoked IS NULL",
            &params![from, to],
        )
    }
}
