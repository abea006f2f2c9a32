//! The store: the only module that speaks SQL. One interface, two backends: an SQLite file
//! (the embedded default) or a PostgreSQL database (several `serve` replicas on one store).
//! Each query is written once; `sql` carries parameters and rows between them. Split by
//! concern: users and secrets, keys, personal access tokens, trust relationships, revoked
//! tokens, the usage log,
//! the change feed, the audit trail, and `store copy`.

pub mod audit;
mod copy;
mod error;
mod feed;
mod keys;
mod migrations;
mod pats;
pub mod postgres;
mod probe;
mod sql;
mod sqlite;
#[cfg(test)]
pub(crate) mod tests;
mod tokens;
mod trusts;
mod usage;
mod users;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;

use audit::Changes;
pub use audit::{AuditFilter, AuditRow, AuditVerdict};
pub use copy::CopyReport;
pub use error::{Result, StoreError};
pub use feed::{BATCH as FEED_BATCH, FeedBatch, FeedRead};
pub use keys::{Key, KeyChange};
pub use migrations::{MIGRATIONS, PG_MIGRATIONS};
pub use pats::{Pat, PatChange};
pub use postgres::PgUrl;
pub use probe::ChangeProbe;
use sql::{Param, Row, params};
pub use trusts::{Trust, TrustChange};
pub use usage::{GrantUse, UsageFilter, UsageRow, replay_key, replay_reason};
pub use users::{User, UserAuth};

/// Where the store lives: an SQLite file or a PostgreSQL database. Prints as the path or the
/// URL without its password.
#[derive(Debug, Clone)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(Arc<PgUrl>),
}

impl Location {
    /// A `--db` value: a `postgres://` URL, or else a path.
    pub fn parse(value: &std::ffi::OsStr) -> Result<Location> {
        match value.to_str() {
            Some(s) if postgres::is_url(s) => Ok(Location::Postgres(Arc::new(PgUrl::parse(s)?))),
            _ => Ok(Location::Sqlite(PathBuf::from(value))),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres(u) => write!(f, "{u}"),
        }
    }
}

enum Backend {
    Sqlite(sqlite::Db),
    Postgres(Box<postgres::Db>),
}

pub struct Store {
    db: Backend,
    /// Who audit rows name as making the changes written through this connection.
    actor: String,
    /// The time audit rows carry.
    clock: Clock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location().to_string())
            .finish()
    }
}

impl Store {
    /// Opens the store at `path` afresh, read-only and without creating it, and reads a
    /// table: whether the store is there and readable now (readiness). Open connections
    /// would answer from their page cache whatever became of the file.
    pub fn check_readable(path: &Path) -> Result<()> {
        sqlite::check_readable(path)
    }

    /// Opens (creating if needed, with mode 0600 and its folder) and migrates an SQLite store.
    pub fn open(path: &Path) -> Result<Store> {
        Ok(Store::new(Backend::Sqlite(sqlite::Db::open(path, true)?)))
    }

    fn new(db: Backend) -> Store {
        Store {
            db,
            actor: "unknown".to_owned(),
            clock: Clock::System,
        }
    }

    /// Names who makes the changes written through this connection, and the clock their
    /// audit rows read.
    pub fn set_actor(&mut self, actor: impl Into<String>, clock: Clock) {
        self.actor = actor.into();
        self.clock = clock;
    }

    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// Appends the audit row of a change, inside the change's transaction.
    fn record(&self, action: &str, target: &str, changes: Changes) -> Result<()> {
        audit::append(
            self,
            &self.actor,
            self.clock.now(),
            action,
            target,
            changes.into_value(),
        )
    }

    /// Opens the store at `location` and brings its schema up to date, creating an SQLite
    /// store that is not there yet.
    pub fn connect(location: &Location) -> Result<Store> {
        Store::connect_with(location, true)
    }

    /// [`Store::connect`] for a store that must be there already: a missing SQLite file is
    /// [`StoreError::Missing`], and neither it nor its folder is created. A PostgreSQL
    /// database is taken as it is (its tables are created if absent).
    pub fn connect_existing(location: &Location) -> Result<Store> {
        Store::connect_with(location, false)
    }

    fn connect_with(location: &Location, create: bool) -> Result<Store> {
        match location {
            Location::Sqlite(p) => Ok(Store::new(Backend::Sqlite(sqlite::Db::open(p, create)?))),
            Location::Postgres(u) => Ok(Store::new(Backend::Postgres(Box::new(
                postgres::Db::open(u.clone())?,
            )))),
        }
    }

    pub fn location(&self) -> Location {
        match &self.db {
            Backend::Sqlite(d) => Location::Sqlite(d.path().to_owned()),
            Backend::Postgres(d) => Location::Postgres(Arc::new(d.url().clone())),
        }
    }

    /// The SQLite file, when the store is one.
    pub fn path(&self) -> Option<&Path> {
        match &self.db {
            Backend::Sqlite(d) => Some(d.path()),
            Backend::Postgres(_) => None,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.db, Backend::Postgres(_))
    }

    // ---- the two backends -------------------------------------------------------------------

    fn exec(&self, sql: &str, params: &[Param]) -> Result<u64> {
        match &self.db {
            Backend::Sqlite(d) => d.exec(sql, params),
            Backend::Postgres(d) => d.exec(sql, params),
        }
    }

    fn rows(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        match &self.db {
            Backend::Sqlite(d) => d.rows(sql, params),
            Backend::Postgres(d) => d.rows(sql, params),
        }
    }

    fn row(&self, sql: &str, params: &[Param]) -> Result<Option<Row>> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }

    /// The first column of every row.
    fn column<T: sql::FromCell>(&self, sql: &str, params: &[Param]) -> Result<Vec<T>> {
        self.rows(sql, params)?.iter().map(|r| r.get(0)).collect()
    }

    /// One value (a query that always returns a row).
    fn value<T: sql::FromCell>(&self, sql: &str, params: &[Param]) -> Result<T> {
        match self.row(sql, params)? {
            Some(r) => r.get(0),
            None => Err(StoreError::Data(format!("no row from: {sql}"))),
        }
    }

    /// Runs `f` in a write transaction: on SQLite one writer at a time (the lock taken up
    /// front); on PostgreSQL admin writes queue on an advisory lock, and a transaction that
    /// lost a conflict (deadlock, serialization) runs again.
    fn transaction<T>(&self, admin: bool, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let mut attempts = 0;
        loop {
            match &self.db {
                Backend::Sqlite(d) => d.begin()?,
                Backend::Postgres(d) => d.begin(admin)?,
            }
            let result = f().and_then(|v| {
                match &self.db {
                    Backend::Sqlite(d) => d.commit()?,
                    Backend::Postgres(d) => d.commit()?,
                }
                Ok(v)
            });
            match result {
                Ok(v) => return Ok(v),
                Err(e) => {
                    match &self.db {
                        Backend::Sqlite(d) => d.rollback(),
                        Backend::Postgres(d) => d.rollback(),
                    }
                    attempts += 1;
                    if !(matches!(e, StoreError::Conflict(_)) && attempts < 20) {
                        return Err(e);
                    }
                }
            }
        }
    }

    fn write<T>(&self, f: impl FnMut() -> Result<T>) -> Result<T> {
        self.transaction(true, f)
    }

    /// Runs `f` in a read transaction: every read in it sees the store as of one moment.
    pub fn read_transaction<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        match &self.db {
            Backend::Sqlite(d) => d.begin_read()?,
            Backend::Postgres(d) => d.begin_read()?,
        }
        let result = f();
        match (&result, &self.db) {
            (Ok(_), Backend::Sqlite(d)) => d.commit()?,
            (Ok(_), Backend::Postgres(d)) => d.commit()?,
            (Err(_), Backend::Sqlite(d)) => d.rollback(),
            (Err(_), Backend::Postgres(d)) => d.rollback(),
        }
        result
    }

    /// Runs `f`, which reads whole tables (a server's start, `store copy`), under a statement
    /// timeout of minutes rather than seconds on PostgreSQL.
    pub fn bulk<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        match &self.db {
            Backend::Sqlite(_) => f(),
            Backend::Postgres(d) => d.bulk(f),
        }
    }

    /// Calls `f` with each row as it is read, without holding them all (a million keys).
    fn each(&self, sql: &str, params: &[Param], f: impl FnMut(Row) -> Result<()>) -> Result<()> {
        match &self.db {
            Backend::Sqlite(d) => d.each(sql, params, f),
            Backend::Postgres(d) => d.each(sql, params, f),
        }
    }

    /// Marks the row of `table` whose `column` is `id` revoked at `now`, with an audit row of
    /// `action`, in one transaction; false when it already was (or there is no such row).
    fn revoke(
        &mut self,
        table: &str,
        column: &str,
        id: &str,
        now: i64,
        action: &str,
    ) -> Result<bool> {
        let sql =
            format!("UPDATE {table} SET revoked = ?2 WHERE {column} = ?1 AND revoked IS NULL");
        self.write(|| {
            let n = self.exec(&sql, &params![id, now])?;
            if n > 0 {
                self.record(
                    action,
                    id,
                    Changes::new().from_to("revoked", None::<i64>, now),
                )?;
            }
            Ok(n > 0)
        })
    }

    /// The rows of `select` whose `column` is `id` or, for 4 characters or more, starts with
    /// it: at most two, in `column` order (so an exact match comes first). A range on the
    /// column's index, never a scan of the table.
    fn by_id_or_prefix(&self, select: &str, column: &str, id: &str) -> Result<Vec<Row>> {
        let id = without_ellipsis(id);
        if id.chars().count() < 4 {
            return self.rows(&format!("{select} WHERE {column} = ?1"), &params![id]);
        }
        let (range, column) = self.prefix_range(column);
        let sql = format!("{select} WHERE {range} ORDER BY {column} LIMIT 2");
        self.rows(&sql, &params![id, prefix_end(id).as_str()])
    }

    /// The key and token ids that start with `prefix`: the first `limit` in order, and how
    /// many there are. Ranges on the ids' indexes, never a scan of a table.
    pub fn ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<(Vec<String>, i64)> {
        let prefix = without_ellipsis(prefix);
        let end = prefix_end(prefix);
        let (mut ids, mut count) = (Vec::new(), 0);
        for (table, column) in [("keys", "key_id"), ("pats", "id")] {
            let (range, ordered) = self.prefix_range(column);
            let found = self.rows(
                &format!("SELECT {column} FROM {table} WHERE {range} ORDER BY {ordered} LIMIT ?3"),
                &params![prefix, end.as_str(), limit as i64],
            )?;
            for row in found {
                ids.push(row.get::<String>(0)?);
            }
            count += self.value::<i64>(
                &format!("SELECT count(*) FROM {table} WHERE {range}"),
                &params![prefix, end.as_str()],
            )?;
        }
        ids.sort();
        ids.truncate(limit);
        Ok((ids, count))
    }

    /// The condition that `column` starts with `?1` (`?2` being [`prefix_end`] of it), and
    /// the column as the condition orders it. PostgreSQL compares text by the database's
    /// collation, where '-' and '_' may not sort by their bytes; "C" (with its own index)
    /// sorts as SQLite's BINARY does.
    fn prefix_range(&self, column: &str) -> (String, String) {
        let column = match &self.db {
            Backend::Sqlite(_) => column.to_owned(),
            Backend::Postgres(_) => format!("{column} COLLATE \"C\""),
        };
        (format!("{column} >= ?1 AND {column} < ?2"), column)
    }

    /// The schema version (`PRAGMA user_version` on SQLite).
    pub fn user_version(&self) -> Result<i64> {
        match &self.db {
            Backend::Sqlite(d) => d.user_version(),
            Backend::Postgres(d) => d.user_version(),
        }
    }

    /// Pretends a newer tokenauth migrated the store.
    #[cfg(test)]
    fn set_version_for_test(&self, version: i64) {
        match &self.db {
            Backend::Sqlite(_) => self
                .exec(&format!("PRAGMA user_version = {version}"), &[])
                .map(|_| ()),
            Backend::Postgres(_) => self
                .exec(
                    "UPDATE tokenauth_schema SET version = ?1",
                    &params![version],
                )
                .map(|_| ()),
        }
        .unwrap();
    }

    /// A cheap round trip: whether the store answers now.
    pub fn ready(&self) -> Result<()> {
        self.value::<i64>("SELECT 1", &[]).map(|_| ())
    }

    // ---- settings -------------------------------------------------------------------------

    pub fn setting(&self, name: &str) -> Result<Option<String>> {
        self.row("SELECT value FROM settings WHERE name = ?1", &params![name])?
            .map(|r| r.get(0))
            .transpose()
    }

    pub fn set_setting(&mut self, name: &str, value: &str) -> Result<()> {
        self.write(|| {
            let old = self.setting(name)?;
            if old.as_deref() == Some(value) {
                return Ok(());
            }
            self.exec(
                "INSERT INTO settings(name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                &params![name, value],
            )?;
            self.record(
                "settings.set",
                name,
                Changes::new().from_to("value", old, value),
            )
        })
    }

    // ---- change detection -----------------------------------------------------------------

    /// SQLite: changes whenever any other connection commits (cheap; no table read).
    /// PostgreSQL has no such counter: the feed's head is read instead.
    pub fn data_version(&self) -> Result<i64> {
        match &self.db {
            Backend::Sqlite(d) => d.data_version(),
            Backend::Postgres(_) => self.feed_head(),
        }
    }

    /// PostgreSQL: subscribes this connection to change notifications (see
    /// [`Store::wait_for_change`]). SQLite has none: a no-op.
    pub fn listen(&self) -> Result<()> {
        match &self.db {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(d) => d.listen(),
        }
    }

    /// PostgreSQL: waits up to `timeout` for a change notification (true when one came).
    /// SQLite: sleeps `timeout` and answers false.
    pub fn wait_for_change(&self, timeout: Duration) -> Result<bool> {
        match &self.db {
            Backend::Sqlite(_) => {
                std::thread::sleep(timeout);
                Ok(false)
            }
            Backend::Postgres(d) => d.wait_for_change(timeout),
        }
    }

    /// SQLite's `PRAGMA integrity_check`; on PostgreSQL, that every table the schema needs
    /// answers and the generation row exists. "ok" or the problems found.
    pub fn integrity_check(&self) -> Result<String> {
        match &self.db {
            Backend::Sqlite(d) => d.integrity_check(),
            Backend::Postgres(_) => {
                let mut problems = Vec::new();
                if self
                    .column::<i64>("SELECT pruned FROM feed_state", &[])?
                    .len()
                    != 1
                {
                    problems.push("the feed_state table must hold one row");
                }
                // Each table answers a read (one row at most: this must not cost a scan).
                let tables = copy::TABLES.iter().map(|(t, _)| *t);
                for table in tables.chain(["changes"]) {
                    let sql = format!("SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1) AS t");
                    if self.value::<i64>(&sql, &[]).is_err() {
                        problems.push(table);
                    }
                }
                Ok(if problems.is_empty() {
                    "ok".to_owned()
                } else {
                    problems.join(", ")
                })
            }
        }
    }

    /// The file's permission bits (for `init` to report); None on PostgreSQL.
    pub fn mode(&self) -> Option<u32> {
        match &self.db {
            Backend::Sqlite(d) => d.mode(),
            Backend::Postgres(_) => None,
        }
    }
}

/// The ids of one kind of entity the change feed names between two positions (`?1`, `?2`):
/// what each concern's `changed_*` query reads its rows by.
const CHANGED: &str = "SELECT id FROM changes WHERE entity = '{entity}' AND seq > ?1 AND seq <= ?2";

/// Of what [`Store::by_id_or_prefix`] found: the one whose id is `id`, else the only one;
/// None when there is none, and `Some(Err(()))` when several share the prefix.
fn pick<T>(found: Vec<T>, id: &str, id_of: impl Fn(&T) -> &str) -> Option<Result<T, ()>> {
    let exact = found.iter().position(|f| id_of(f) == id);
    let mut found = found;
    match (exact, found.len()) {
        (Some(i), _) => Some(Ok(found.swap_remove(i))),
        (None, 0) => None,
        (None, 1) => found.pop().map(Ok),
        (None, _) => Some(Err(())),
    }
}

/// The least string above every string that starts with `prefix` (in code point order, which
/// is UTF-8 byte order): the prefix with its last character moved up by one.
/// Tables shorten ids to a prefix and `…`; one copied with its `…` is that prefix.
fn without_ellipsis(id: &str) -> &str {
    id.strip_suffix('…').unwrap_or(id)
}

fn prefix_end(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        // The next scalar value (surrogates are not chars).
        let next = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return chars.into_iter().collect();
        }
    }
    // Only char::MAX all along: nothing sorts above, so any bound above every id will do.
    format!("{prefix}\u{10FFFF}")
}
