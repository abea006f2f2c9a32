//! The admin audit trail: one row per change, written in the change's own transaction,
//! each row's hash chained to the one before, pruned behind a checkpoint.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::sql::{Row, params};
use super::{Result, Store};

/// How long audit rows are kept when the `audit_retention` setting is absent: a year.
pub const DEFAULT_AUDIT_RETENTION: i64 = 365 * 86_400;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditRow {
    pub id: i64,
    pub time: i64,
    /// Who: `os-user@host` for the CLI, `user (key ID)` or `user (token ID)` for the API.
    pub actor: String,
    /// What: e.g. `key.issue`, `user.grant`, `token.revoke`, `settings.set`.
    pub action: String,
    /// Which user, key, token or setting.
    pub target: String,
    /// The fields that changed: `{"field": {"from": …, "to": …}}` (no `from` for new things).
    pub changes: Value,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct AuditFilter {
    pub since: Option<i64>,
    /// The actor as recorded, or its user part (before `@` or ` (`).
    pub actor: Option<String>,
    pub target: Option<String>,
    /// An action (`key.issue`) or a family (`key`).
    pub action: Option<String>,
    pub limit: i64,
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditVerdict {
    pub ok: bool,
    /// Rows checked, from the checkpoint on.
    pub rows: i64,
    /// The id of the last row pruned (0 when none): the chain starts after it.
    pub checkpoint: i64,
    /// The first problem, naming the row.
    pub problem: Option<String>,
    /// The row the problem is about.
    pub row: Option<i64>,
}

/// A change's fields, before and after, as an audit row records them.
#[derive(Debug, Default, Clone)]
pub struct Changes(Map<String, Value>);

impl Changes {
    pub fn new() -> Changes {
        Changes::default()
    }

    /// A field of something new.
    pub fn set(mut self, field: &str, to: impl Into<Value>) -> Changes {
        self.0
            .insert(field.to_owned(), serde_json::json!({ "to": to.into() }));
        self
    }

    /// A field that went from `from` to `to` (left out when it did not change).
    pub fn from_to(mut self, field: &str, from: impl Into<Value>, to: impl Into<Value>) -> Changes {
        let (from, to) = (from.into(), to.into());
        if from != to {
            self.0.insert(
                field.to_owned(),
                serde_json::json!({ "from": from, "to": to }),
            );
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

/// What a row's hash covers, besides the previous hash: every column but the hashes.
fn canonical(id: i64, time: i64, actor: &str, action: &str, target: &str, changes: &str) -> String {
    serde_json::json!([id, time, actor, action, target, changes]).to_string()
}

fn chain_hash(prev: &str, canonical: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(canonical.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Appends an audit row inside the change's transaction (open on `store`), then prunes rows
/// older than the retention (keeping the new row), moving the checkpoint past them.
pub(super) fn append(
    store: &Store,
    actor: &str,
    now: i64,
    action: &str,
    target: &str,
    changes: Value,
) -> Result<()> {
    let head = store
        .row(
            "SELECT last_id, last_hash FROM audit_state WHERE id = 1",
            &[],
        )?
        .ok_or_else(|| super::StoreError::Data("the audit_state row is missing".into()))?;
    let (last_id, last_hash): (i64, String) = (head.get(0)?, head.get(1)?);
    let id = last_id + 1;
    let changes = changes.to_string();
    let hash = chain_hash(
        &last_hash,
        &canonical(id, now, actor, action, target, &changes),
    );
    store.exec(
        "INSERT INTO audit(id, time, actor, action, target, changes, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        &params![id, now, actor, action, target, &changes, &last_hash, &hash],
    )?;
    store.exec(
        "UPDATE audit_state SET last_id = ?1, last_hash = ?2 WHERE id = 1",
        &params![id, &hash],
    )?;
    let retention = store
        .setting("audit_retention")?
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(DEFAULT_AUDIT_RETENTION);
    let cutoff = now.saturating_sub(retention);
    let boundary = store.row(
        "SELECT id, hash FROM audit WHERE id = (SELECT max(id) FROM audit WHERE time < ?1 AND id < ?2)",
        &params![cutoff, id],
    )?;
    if let Some(b) = boundary {
        let (upto, hash): (i64, String) = (b.get(0)?, b.get(1)?);
        store.exec("DELETE FROM audit WHERE id <= ?1", &params![upto])?;
        store.exec(
            "UPDATE audit_state SET checkpoint_id = ?1, checkpoint_hash = ?2 WHERE id = 1",
            &params![upto, &hash],
        )?;
    }
    Ok(())
}

const COLUMNS: &str = "id, time, actor, action, target, changes, prev_hash, hash";

fn from_row(r: &Row) -> Result<AuditRow> {
    let changes: String = r.get(5)?;
    Ok(AuditRow {
        id: r.get(0)?,
        time: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        target: r.get(4)?,
        changes: serde_json::from_str(&changes).unwrap_or(Value::String(changes)),
        prev_hash: r.get(6)?,
        hash: r.get(7)?,
    })
}

impl Store {
    /// Audit rows, newest first.
    pub fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM audit
             WHERE (CAST(?1 AS BIGINT) IS NULL OR time >= ?1)
               AND (CAST(?2 AS TEXT) IS NULL OR actor = ?2 OR substr(actor, 1, length(?2) + 1) = ?2 || '@'
                    OR substr(actor, 1, length(?2) + 2) = ?2 || ' (')
               AND (CAST(?3 AS TEXT) IS NULL OR target = ?3)
               AND (CAST(?4 AS TEXT) IS NULL OR action = ?4 OR substr(action, 1, length(?4) + 1) = ?4 || '.')
             ORDER BY id DESC LIMIT ?5"
        );
        self.rows(
            &sql,
            &params![f.since, &f.actor, &f.target, &f.action, f.limit],
        )?
        .iter()
        .map(from_row)
        .collect()
    }

    /// Walks the chain from the checkpoint: the first row edited, deleted or out of place.
    pub fn verify_audit(&self) -> Result<AuditVerdict> {
        let state = self
            .row(
                "SELECT last_id, last_hash, checkpoint_id, checkpoint_hash FROM audit_state WHERE id = 1",
                &[],
            )?
            .ok_or_else(|| super::StoreError::Data("the audit_state row is missing".into()))?;
        let (last_id, last_hash, checkpoint, checkpoint_hash): (i64, String, i64, String) =
            (state.get(0)?, state.get(1)?, state.get(2)?, state.get(3)?);
        let rows = self.rows(&format!("SELECT {COLUMNS} FROM audit ORDER BY id"), &[])?;
        let mut verdict = AuditVerdict {
            ok: true,
            rows: 0,
            checkpoint,
            problem: None,
            row: None,
        };
        let fail = |mut v: AuditVerdict, row: i64, problem: String| {
            v.ok = false;
            v.row = Some(row);
            v.problem = Some(problem);
            Ok(v)
        };
        let (mut prev_id, mut prev_hash) = (checkpoint, checkpoint_hash);
        for r in &rows {
            let (id, time): (i64, i64) = (r.get(0)?, r.get(1)?);
            let (actor, action, target, changes, stored_prev, stored_hash): (
                String,
                String,
                String,
                String,
                String,
                String,
            ) = (
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            );
            if id <= prev_id {
                return fail(
                    verdict,
                    id,
                    format!(
                        "row {id} lies before the checkpoint (row {checkpoint}): it was inserted or renumbered"
                    ),
                );
            }
            if id > prev_id + 1 {
                let gone = if id == prev_id + 2 {
                    format!("row {} was deleted", prev_id + 1)
                } else {
                    format!("rows {} to {} were deleted", prev_id + 1, id - 1)
                };
                return fail(verdict, prev_id + 1, gone);
            }
            if stored_prev != prev_hash {
                // The row before was changed and its hash recomputed to match: the link
                // from this row still holds the old hash.
                return fail(
                    verdict,
                    prev_id,
                    format!("row {prev_id} was edited: row {id} links to another version of it"),
                );
            }
            let hash = chain_hash(
                &prev_hash,
                &canonical(id, time, &actor, &action, &target, &changes),
            );
            if hash != stored_hash {
                return fail(
                    verdict,
                    id,
                    format!("row {id} was edited: its contents do not match its hash"),
                );
            }
            verdict.rows += 1;
            prev_id = id;
            prev_hash = stored_hash;
        }
        if prev_id < last_id {
            let gone = if last_id == prev_id + 1 {
                format!("row {last_id} (the newest) was deleted")
            } else {
                format!(
                    "rows {} to {last_id} (the newest) were deleted",
                    prev_id + 1
                )
            };
            return fail(verdict, prev_id + 1, gone);
        }
        if prev_id > last_id || prev_hash != last_hash {
            return fail(
                verdict,
                prev_id,
                format!("row {prev_id} does not match the chain's recorded head (row {last_id})"),
            );
        }
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_keep_only_fields_that_changed() {
        let c = Changes::new()
            .from_to("title", "a", "a")
            .from_to("scope", "read", "write")
            .set("user", "bob");
        assert_eq!(
            c.into_value(),
            serde_json::json!({
                "scope": { "from": "read", "to": "write" },
                "user": { "to": "bob" }
            })
        );
    }

    #[test]
    fn a_rows_hash_covers_every_column_and_the_previous_hash() {
        let base = chain_hash("p", &canonical(1, 2, "a", "b", "c", "{}"));
        assert_eq!(base.len(), 64);
        for other in [
            chain_hash("q", &canonical(1, 2, "a", "b", "c", "{}")),
            chain_hash("p", &canonical(2, 2, "a", "b", "c", "{}")),
            chain_hash("p", &canonical(1, 3, "a", "b", "c", "{}")),
            chain_hash("p", &canonical(1, 2, "x", "b", "c", "{}")),
            chain_hash("p", &canonical(1, 2, "a", "x", "c", "{}")),
            chain_hash("p", &canonical(1, 2, "a", "b", "x", "{}")),
            chain_hash("p", &canonical(1, 2, "a", "b", "c", "{\"x\":1}")),
            // No ambiguity where one column ends and the next begins.
            chain_hash("p", &canonical(1, 2, "a\",\"b", "", "c", "{}")),
        ] {
            assert_ne!(other, base);
        }
    }
}
