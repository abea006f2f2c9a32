//! `store copy`: every table of one store into another (SQLite ↔ PostgreSQL), in one
//! transaction on the target, row for row (ids, hashes and secrets as they are).

use super::sql::{Cell, Param};
use super::{Result, Store, StoreError};

/// What is copied, parents before children; columns both backends' schemas share.
const TABLES: &[(&str, &str, &str)] = &[
    ("settings", "name, value", "name"),
    ("users", "name, permissions, disabled, created", "name"),
    ("secrets", "user_name, secret, rotated, epoch", "user_name"),
    (
        "keys",
        "key_id, client_id, user_name, title, alg, public_key, ip_ranges, scope, issued, expires, revoked, origins, format, client_email",
        "key_id",
    ),
    (
        "pats",
        "id, user_name, hash, last4, description, scope, ip_ranges, origins, created, expires, revoked, secret_epoch, last_used",
        "id",
    ),
    ("revoked_tokens", "jti, exp, revoked", "jti"),
    ("used_grants", "exp, key", "exp, key"),
    (
        "usage_log",
        "id, time, key_id, user_name, subject, address, user_agent, ok, reason, grant_jti, grant_exp, token_jti, no_jti, pat_id",
        "id",
    ),
    (
        "audit",
        "id, time, actor, action, target, changes, prev_hash, hash",
        "id",
    ),
];

impl<'a> From<&'a Cell> for Param<'a> {
    fn from(c: &'a Cell) -> Self {
        match c {
            Cell::Null => Param::Null,
            Cell::Int(i) => Param::Int(*i),
            Cell::Text(s) => Param::Text(s),
            Cell::Blob(b) => Param::Blob(b),
        }
    }
}

impl Store {
    /// Whether the store holds anything besides the settings every store starts with.
    pub fn is_empty(&self) -> Result<bool> {
        for (table, _, _) in TABLES.iter().filter(|(t, _, _)| *t != "settings") {
            let sql = format!("SELECT count(*) FROM {table}");
            if self.value::<i64>(&sql, &[])? > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Replaces everything in `target` with this store's rows, in one transaction: the
    /// target is never left half-copied. Refuses a target that holds users, keys, tokens or
    /// logs unless `force`.
    pub fn copy_into(&self, target: &mut Store, force: bool) -> Result<()> {
        if self.user_version()? != target.user_version()? {
            return Err(StoreError::Data(format!(
                "the stores are at schema {} and {}",
                self.user_version()?,
                target.user_version()?
            )));
        }
        if !force && !target.is_empty()? {
            return Err(StoreError::NotEmpty(target.location().to_string()));
        }
        // Read first: the source may be the same kind of database, never the same one.
        let mut data = Vec::with_capacity(TABLES.len());
        for (table, columns, order) in TABLES {
            data.push(self.rows(
                &format!("SELECT {columns} FROM {table} ORDER BY {order}"),
                &[],
            )?);
        }
        let state = self.row(
            "SELECT last_id, last_hash, checkpoint_id, checkpoint_hash FROM audit_state WHERE id = 1",
            &[],
        )?;
        target.write(|| {
            for (table, _, _) in TABLES.iter().rev() {
                target.exec(&format!("DELETE FROM {table}"), &[])?;
            }
            for ((table, columns, _), rows) in TABLES.iter().zip(&data) {
                let width = columns.split(',').count();
                let marks: Vec<String> = (1..=width).map(|i| format!("?{i}")).collect();
                let sql = format!(
                    "INSERT INTO {table}({columns}) VALUES ({})",
                    marks.join(", ")
                );
                for row in rows {
                    let params: Vec<Param> = row.0.iter().map(Param::from).collect();
                    target.exec(&sql, &params)?;
                }
            }
            if let Some(s) = &state {
                let params: Vec<Param> = s.0.iter().map(Param::from).collect();
                target.exec(
                    "UPDATE audit_state SET last_id = ?1, last_hash = ?2, checkpoint_id = ?3, checkpoint_hash = ?4 WHERE id = 1",
                    &params,
                )?;
            }
            if target.is_postgres() {
                // Rows came with their ids: new ones continue after them.
                target.exec(
                    "SELECT setval(pg_get_serial_sequence('usage_log', 'id'), coalesce(max(id), 0) + 1, false) FROM usage_log",
                    &[],
                )?;
            }
            Ok(())
        })
    }
}
