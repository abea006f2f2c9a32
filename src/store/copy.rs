//! `store copy`: every table of one store into another (SQLite ↔ PostgreSQL), in one
//! transaction on the target, row for row (ids, hashes and secrets as they are), streamed in
//! multi-row batches with the feed triggers quiet; then verified table by table, by row
//! count and a digest of the rows.

use sha2::{Digest, Sha256};

use super::sql::{Cell, Param, Row};
use super::{Result, Store, StoreError};

/// What is copied, parents before children; columns both backends' schemas share.
pub(super) const TABLES: &[(&str, &str)] = &[
    ("settings", "name, value"),
    ("users", "name, permissions, disabled, created"),
    ("secrets", "user_name, secret, rotated, epoch"),
    (
        "keys",
        "key_id, client_id, user_name, title, alg, public_key, ip_ranges, scope, issued, expires, revoked, origins, format, client_email",
    ),
    (
        "pats",
        "id, user_name, hash, last4, description, scope, ip_ranges, origins, created, expires, revoked, secret_epoch, last_used",
    ),
    (
        "trusts",
        "id, name, issuer, audience, claims, user_claim, users, scope, ip_ranges, origins, jwks_uri, jwks, max_age, created, expires",
    ),
    ("revoked_tokens", "jti, exp, revoked"),
    ("used_grants", "exp, key"),
    (
        "usage_log",
        "id, time, key_id, user_name, subject, address, user_agent, ok, reason, grant_jti, grant_exp, token_jti, no_jti, pat_id, count, refusal_group, trust, claims",
    ),
    (
        "audit",
        "id, time, actor, action, target, changes, prev_hash, hash",
    ),
    (
        "audit_state",
        "id, last_id, last_hash, checkpoint_id, checkpoint_hash",
    ),
];

/// Parameters in one INSERT at most: under SQLite's 32,766 and PostgreSQL's 65,535.
const MAX_PARAMS: usize = 8_000;

/// One table as copied: its rows and their digest (the same on both sides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopy {
    pub table: &'static str,
    pub rows: i64,
    pub digest: String,
}

/// What a verified copy holds.
#[derive(Debug, Clone)]
pub struct CopyReport {
    pub tables: Vec<TableCopy>,
}

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

/// A digest of a set of rows that does not depend on their order (the backends sort text
/// differently): the wrapping sum of each row's SHA-256, cut to 128 bits, and the count.
#[derive(Default)]
struct RowDigest {
    sum: u128,
    rows: i64,
}

impl RowDigest {
    fn add(&mut self, row: &Row) {
        let mut h = Sha256::new();
        for cell in &row.0 {
            // Tagged and length-prefixed, so that no two rows encode alike.
            match cell {
                Cell::Null => h.update([0]),
                Cell::Int(i) => {
                    h.update([1]);
                    h.update(i.to_be_bytes());
                }
                Cell::Text(s) => {
                    h.update([2]);
                    h.update((s.len() as u64).to_be_bytes());
                    h.update(s.as_bytes());
                }
                Cell::Blob(b) => {
                    h.update([3]);
                    h.update((b.len() as u64).to_be_bytes());
                    h.update(b);
                }
            }
        }
        let first: [u8; 16] = h.finalize()[..16].try_into().expect("16 bytes");
        self.sum = self.sum.wrapping_add(u128::from_be_bytes(first));
        self.rows += 1;
    }

    fn hex(&self) -> String {
        format!("{:032x}", self.sum)
    }
}

impl Store {
    /// Whether the store holds anything besides the settings and bookkeeping every store
    /// starts with.
    pub fn is_empty(&self) -> Result<bool> {
        for (table, _) in TABLES
            .iter()
            .filter(|(t, _)| !matches!(*t, "settings" | "audit_state"))
        {
            let sql = format!("SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1) AS t");
            if self.value::<i64>(&sql, &[])? > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Replaces everything in `target` with this store's rows, in one transaction: the
    /// target is never left half-copied. Refuses a target that holds users, keys, tokens or
    /// logs unless `force`. Then reads the copy back and checks every table's row count and
    /// digest against what was read here.
    pub fn copy_into(&self, target: &mut Store, force: bool) -> Result<CopyReport> {
        // Whole tables are read on both sides.
        self.bulk(|| target.bulk(|| self.copy_verified(target, force)))
    }

    fn copy_verified(&self, target: &Store, force: bool) -> Result<CopyReport> {
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
        let copied = target.write(|| {
            // Servers on the target learn of the copy from one entry, not a million.
            target.quiet_feed(true)?;
            for (table, _) in TABLES.iter().rev() {
                target.exec(&format!("DELETE FROM {table}"), &[])?;
            }
            let mut copied = Vec::with_capacity(TABLES.len());
            for (table, columns) in TABLES {
                copied.push(self.copy_table(target, table, columns)?);
            }
            if target.is_postgres() {
                // Rows came with their ids: new ones continue after them.
                target.exec(
                    "SELECT setval(pg_get_serial_sequence('usage_log', 'id'), coalesce(max(id), 0) + 1, false) FROM usage_log",
                    &[],
                )?;
            }
            target.quiet_feed(false)?;
            target.reset_feed()?;
            Ok(copied)
        })?;
        for expected in &copied {
            let (_, columns) = TABLES
                .iter()
                .find(|(t, _)| *t == expected.table)
                .expect("a table copied");
            let found = target.digest(expected.table, columns)?;
            if found != *expected {
                return Err(StoreError::Data(format!(
                    "table {} holds {} rows (digest {}) in the copy, but {} rows (digest {}) were copied",
                    expected.table, found.rows, found.digest, expected.rows, expected.digest
                )));
            }
        }
        Ok(CopyReport { tables: copied })
    }

    /// Streams one table into `target` in multi-row INSERTs, digesting what it reads.
    fn copy_table(&self, target: &Store, table: &'static str, columns: &str) -> Result<TableCopy> {
        let width = columns.split(',').count();
        let per_insert = (MAX_PARAMS / width).max(1);
        let mut digest = RowDigest::default();
        let mut pending: Vec<Row> = Vec::with_capacity(per_insert);
        let flush = |rows: &mut Vec<Row>| -> Result<()> {
            if rows.is_empty() {
                return Ok(());
            }
            target.exec(&insert_sql(table, columns, width, rows.len()), &{
                let params: Vec<Param> = rows
                    .iter()
                    .flat_map(|r| r.0.iter().map(Param::from))
                    .collect();
                params
            })?;
            rows.clear();
            Ok(())
        };
        self.each(&format!("SELECT {columns} FROM {table}"), &[], |row| {
            digest.add(&row);
            pending.push(row);
            if pending.len() == per_insert {
                flush(&mut pending)?;
            }
            Ok(())
        })?;
        flush(&mut pending)?;
        Ok(TableCopy {
            table,
            rows: digest.rows,
            digest: digest.hex(),
        })
    }

    /// A table's row count and digest.
    fn digest(&self, table: &'static str, columns: &str) -> Result<TableCopy> {
        let mut digest = RowDigest::default();
        self.each(&format!("SELECT {columns} FROM {table}"), &[], |row| {
            digest.add(&row);
            Ok(())
        })?;
        Ok(TableCopy {
            table,
            rows: digest.rows,
            digest: digest.hex(),
        })
    }

    /// Every stored public key with its algorithm, once each (to check that they parse).
    pub fn each_distinct_public_key(&self, mut f: impl FnMut(&str, &str)) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        self.each("SELECT public_key, alg FROM keys", &[], |r| {
            let (pem, alg): (String, String) = (r.get(0)?, r.get(1)?);
            let id: [u8; 32] = Sha256::digest(format!("{alg}\n{pem}")).into();
            if seen.insert(id) {
                f(&pem, &alg);
            }
            Ok(())
        })
    }
}

/// `INSERT INTO table(columns) VALUES (?1, …), (…), …` for `rows` rows.
fn insert_sql(table: &str, columns: &str, width: usize, rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table}({columns}) VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("?{}", r * width + c + 1));
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_ignore_row_order_but_not_contents() {
        let rows = [
            Row(vec![Cell::Int(1), Cell::Text("a".into())]),
            Row(vec![Cell::Int(2), Cell::Blob(vec![1])]),
        ];
        let (mut a, mut b, mut c) = (
            RowDigest::default(),
            RowDigest::default(),
            RowDigest::default(),
        );
        a.add(&rows[0]);
        a.add(&rows[1]);
        b.add(&rows[1]);
        b.add(&rows[0]);
        c.add(&rows[0]);
        c.add(&Row(vec![Cell::Int(2), Cell::Text("\u{1}".into())]));
        assert_eq!(a.hex(), b.hex());
        assert_ne!(a.hex(), c.hex());
        assert_eq!(a.rows, 2);
    }

    #[test]
    fn inserts_number_their_parameters_row_by_row() {
        assert_eq!(
            insert_sql("t", "a, b", 2, 2),
            "INSERT INTO t(a, b) VALUES (?1, ?2), (?3, ?4)"
        );
    }
}
