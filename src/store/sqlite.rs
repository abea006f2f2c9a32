//! The SQLite backend: one file (0600, WAL; refused when other users may reach it), its
//! connection, and SQLite's own errors.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode};

use super::migrations::MIGRATIONS;
use super::sql::{Cell, Param, Row};
use super::{Result, StoreError};

/// How long a writer waits for another process's transaction before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Db {
    conn: Connection,
    path: PathBuf,
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Null => ValueRef::Null,
            Param::Int(i) => ValueRef::Integer(i),
            Param::Text(s) => ValueRef::Text(s.as_bytes()),
            Param::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn cell(v: ValueRef<'_>) -> Cell {
    match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Int(i),
        // Never stored by tokenauth; kept readable rather than refused.
        ValueRef::Real(f) => Cell::Int(f as i64),
        ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
    }
}

impl Db {
    /// Opens and migrates the store; when `create`, a missing one is created (with mode
    /// 0600, and its folder), else refused as [`StoreError::Missing`] leaving nothing behind.
    pub fn open(path: &Path, create: bool) -> Result<Db> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        if !create && !path.try_exists().map_err(open_err)? {
            return Err(StoreError::Missing {
                path: path.to_owned(),
            });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(open_err)?;
        }
        // Create the file ourselves so it is 0600 from the first byte; SQLite gives its
        // -wal and -shm files the main file's mode. Only when it is new: closing a descriptor
        // of a file drops every POSIX lock this process holds on it, including those of
        // SQLite connections already open on it here (a server has several).
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(open_err(e)),
        }
        // Before SQLite touches it: a refused store is left exactly as it was.
        check_private(path)?;
        let conn = Connection::open(path).map_err(|e| map_err(e, path))?;
        let db = Db {
            conn,
            path: path.to_owned(),
        };
        db.configure().map_err(|e| db.err(e))?;
        db.migrate()?;
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn err(&self, e: rusqlite::Error) -> StoreError {
        map_err(e, &self.path)
    }

    fn configure(&self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        self.conn.set_prepared_statement_cache_capacity(64);
        // Reading the header first turns "not a database" into an error here, not later.
        self.conn
            .query_row("PRAGMA schema_version", [], |_| Ok(()))?;
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Two processes switching a new store to WAL at once each hold a read lock the
            // other must wait for: SQLite answers one of them SQLITE_BUSY at once instead of
            // waiting (deadlock avoidance). The other finishes quickly, so try again.
            let start = std::time::Instant::now();
            loop {
                match self
                    .conn
                    .query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
                {
                    Err(e)
                        if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                            && start.elapsed() < BUSY_TIMEOUT =>
                    {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    other => break other?,
                }
            }
        }
        self.conn
            .execute_batch("PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL;")
    }

    fn migrate(&self) -> Result<()> {
        let known = MIGRATIONS.len() as i64;
        let too_new = |found| StoreError::TooNew {
            store: self.path.display().to_string(),
            found,
            known,
        };
        let found = self.user_version()?;
        if found > known {
            return Err(too_new(found));
        }
        if found == known {
            return Ok(());
        }
        self.begin()?;
        let run = || -> Result<()> {
            // Another process may have migrated while we waited for the lock.
            let mut version = self.user_version()?;
            if version > known {
                return Err(too_new(version));
            }
            while version < known {
                self.conn
                    .execute_batch(MIGRATIONS[version as usize])
                    .map_err(|e| self.err(e))?;
                version += 1;
                if version == 2 {
                    backfill_used_grants(&self.conn).map_err(|e| self.err(e))?;
                }
                self.conn
                    .pragma_update(None, "user_version", version)
                    .map_err(|e| self.err(e))?;
            }
            Ok(())
        };
        match run() {
            Ok(()) => self.commit(),
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    pub fn user_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Writes take the lock up front, so two writers queue on the busy timeout instead of
    /// failing with SQLITE_BUSY when a read transaction tries to upgrade.
    pub fn begin(&self) -> Result<()> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.err(e))
    }

    /// A read transaction: its reads see one snapshot of the store; no lock is held
    /// against writers (WAL).
    pub fn begin_read(&self) -> Result<()> {
        self.conn.execute_batch("BEGIN").map_err(|e| self.err(e))
    }

    pub fn commit(&self) -> Result<()> {
        self.conn.execute_batch("COMMIT").map_err(|e| self.err(e))
    }

    pub fn rollback(&self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    pub fn exec(&self, sql: &str, params: &[Param]) -> Result<u64> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut s| s.execute(rusqlite::params_from_iter(params)))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    pub fn rows(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        let run = || -> rusqlite::Result<Vec<Row>> {
            let mut stmt = self.conn.prepare_cached(sql)?;
            let width = stmt.column_count();
            let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let mut cells = Vec::with_capacity(width);
                for i in 0..width {
                    cells.push(cell(r.get_ref(i)?));
                }
                out.push(Row(cells));
            }
            Ok(out)
        };
        run().map_err(|e| self.err(e))
    }

    pub fn each(
        &self,
        sql: &str,
        params: &[Param],
        mut f: impl FnMut(Row) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let width = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let cells = (0..width)
                .map(|i| r.get_ref(i).map(cell))
                .collect::<rusqlite::Result<Vec<Cell>>>()
                .map_err(|e| self.err(e))?;
            f(Row(cells))?;
        }
        Ok(())
    }

    /// Changes whenever any other connection commits (cheap; no table read).
    pub fn data_version(&self) -> Result<i64> {
        self.conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| self.err(e))
    }

    /// `PRAGMA integrity_check`: "ok" or the problems found.
    pub fn integrity_check(&self) -> Result<String> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// The file's permission bits (for `init` to report).
    pub fn mode(&self) -> Option<u32> {
        std::fs::metadata(&self.path)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    }
}

/// Refuses a store that other local users could read or change: the file, or its `-wal` or
/// `-shm` (which hold recent writes), with any permission for group or others, or owned by
/// another user than this process's. Root may use a store another user owns: root can read
/// any file anyway, the documented setup has root administer the service user's store, and
/// SQLite gives the `-wal` and `-shm` root creates the store's owner.
///
/// The files are looked at by path (stat), never opened: closing a descriptor of the store
/// would drop the POSIX locks of this process's SQLite connections already on it.
fn check_private(path: &Path) -> Result<()> {
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    // SQLite resolves symbolic links and keeps the -wal and -shm beside the real file.
    let real = std::fs::canonicalize(path).map_err(open_err)?;
    let me = rustix::process::geteuid();
    let mut exposed = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut file = OsString::from(real.as_os_str());
        file.push(suffix);
        let file = PathBuf::from(file);
        let meta = match std::fs::metadata(&file) {
            Ok(m) => m,
            Err(e) if !suffix.is_empty() && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(open_err(e)),
        };
        if !me.is_root() && meta.uid() != me.as_raw() {
            return Err(StoreError::NotOwned {
                path: path.to_owned(),
                file: file.display().to_string(),
                owner: meta.uid(),
                me: me.as_raw(),
                fix: shell_word(&file),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            exposed.push((file, mode));
        }
    }
    if exposed.is_empty() {
        return Ok(());
    }
    Err(StoreError::Exposed {
        path: path.to_owned(),
        exposed: exposed
            .iter()
            .map(|(f, mode)| format!("{} has mode {mode:04o}", f.display()))
            .collect::<Vec<_>>()
            .join(", "),
        fix: exposed
            .iter()
            .map(|(f, _)| shell_word(f))
            .collect::<Vec<_>>()
            .join(" "),
    })
}

/// A path as one shell word, for a command the user may paste: single-quoted unless plain.
fn shell_word(path: &Path) -> String {
    let text = path.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        return text.into_owned();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Migration 2's data part: the grants that issuances already logged used, so that they stay
/// used after the upgrade. (Pruned by expiry like the rest.)
fn backfill_used_grants(conn: &Connection) -> rusqlite::Result<()> {
    let mut read = conn.prepare(
        "SELECT k.client_id, l.grant_jti, l.grant_exp FROM usage_log l JOIN keys k ON k.key_id = l.key_id
         WHERE l.ok AND l.grant_jti IS NOT NULL AND l.grant_exp IS NOT NULL",
    )?;
    let mut write =
        conn.prepare("INSERT INTO used_grants(exp, key) VALUES (?1, ?2) ON CONFLICT DO NOTHING")?;
    let mut rows = read.query([])?;
    while let Some(r) = rows.next()? {
        let (client, jti, exp): (String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        write.execute(rusqlite::params![
            exp,
            super::replay_key(&client, Some(&jti), &[])
        ])?;
    }
    Ok(())
}

pub fn map_err(e: rusqlite::Error, path: &Path) -> StoreError {
    let path = path.to_owned();
    if let rusqlite::Error::SqliteFailure(f, _) = &e
        && matches!(
            f.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        )
    {
        return StoreError::Duplicate(e.to_string());
    }
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt { path }
        }
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
            StoreError::Locked { path }
        }
        Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { path },
        Some(ErrorCode::DiskFull) => StoreError::Full {
            store: path.display().to_string(),
        },
        Some(ErrorCode::CannotOpen) | Some(ErrorCode::PermissionDenied) => StoreError::Open {
            path,
            source: std::io::Error::other(e.to_string()),
        },
        _ => StoreError::Sqlite(e),
    }
}

/// See [`super::Store::check_readable`].
pub fn check_readable(path: &Path) -> Result<()> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| map_err(e, path))?;
    conn.busy_timeout(std::time::Duration::from_secs(2))
        .and_then(|()| {
            conn.query_row(
                "SELECT count(*) FROM (SELECT 1 FROM settings LIMIT 1)",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|_| ())
        .map_err(|e| map_err(e, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_a_suggested_command_are_one_shell_word() {
        assert_eq!(
            shell_word(Path::new("/var/lib/t.db-wal")),
            "/var/lib/t.db-wal"
        );
        assert_eq!(shell_word(Path::new("my store.db")), "'my store.db'");
        assert_eq!(shell_word(Path::new("it's;rm.db")), r"'it'\''s;rm.db'");
        assert_eq!(shell_word(Path::new("")), "''");
    }
}
