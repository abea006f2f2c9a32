//! The SQLite store: the only module that speaks SQL.

pub mod audit;
mod migrations;
mod pats;
mod probe;

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};

use crate::clock::Clock;
use crate::iprange;
use crate::origin;
use crate::scope::Scope;
use crate::secret::Secret;

use audit::Changes;
pub use audit::{AuditFilter, AuditRow, AuditVerdict};
pub use migrations::MIGRATIONS;
pub use pats::{Pat, PatChange};
pub use probe::ChangeProbe;

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the store {path}: {source}; check the path and its permissions, or pass another --db"
    )]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a tokenauth store (not an SQLite database, or corrupt); pass another --db"
    )]
    Corrupt { path: PathBuf },
    #[error(
        "the store {path} was written by a newer tokenauth (schema {found}, this build knows {known}); upgrade tokenauth"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("the store {path} stayed locked by another process for {}s; retry when it finishes", BUSY_TIMEOUT.as_secs())]
    Locked { path: PathBuf },
    #[error("the store {path} is read-only; check its permissions")]
    ReadOnly { path: PathBuf },
    #[error("user '{0}' already exists")]
    UserExists(String),
    #[error("no user named '{0}'; see `tokenauth user list`")]
    UnknownUser(String),
    #[error("no key with id '{0}'; see `tokenauth list-keys --all`")]
    UnknownKey(String),
    #[error("key id prefix '{0}' matches more than one key; give more characters")]
    AmbiguousKey(String),
    #[error("no personal access token with id '{0}'; see `tokenauth token list --all`")]
    UnknownPat(String),
    #[error("token id prefix '{0}' matches more than one token; give more characters")]
    AmbiguousPat(String),
    #[error(
        "user '{name}' still has {count} active key(s) or personal access token(s); revoke them first with `tokenauth revoke-key` and `tokenauth token revoke`"
    )]
    UserHasKeys { name: String, count: i64 },
    #[error("store error: {0}")]
    Sqlite(rusqlite::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub name: String,
    pub permissions: Vec<String>,
    pub disabled: bool,
    pub created: i64,
    pub active_keys: i64,
}

impl User {
    pub fn may(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }
}

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

/// One row of the usage log: an issuance or a refused attempt.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct UsageRow {
    pub time: i64,
    pub key_id: Option<String>,
    /// The personal access token a refused check used.
    pub pat_id: Option<String>,
    pub user: Option<String>,
    pub subject: Option<String>,
    pub address: String,
    pub user_agent: Option<String>,
    pub ok: bool,
    pub reason: Option<String>,
    /// An issuance from a grant without `jti` (counted so admins see who relies on them).
    pub no_jti: bool,
    #[serde(skip)]
    pub grant_jti: Option<String>,
    #[serde(skip)]
    pub grant_exp: Option<i64>,
    #[serde(skip)]
    pub token_jti: Option<String>,
    /// The grant this issuance uses up: the row is written only if no row before took it.
    #[serde(skip)]
    pub grant_use: Option<GrantUse>,
}

/// A grant's claim to be used once: its [`replay_key`] and its expiry. The store knows a
/// grant by both: the same jti under another expiry can only come from the key's holder, who
/// can sign new grants anyway, so only copies of a grant are replays worth refusing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantUse {
    pub key: [u8; 16],
    pub exp: i64,
}

/// What identifies a grant for replay checks: its client and its `jti`, or, for a grant
/// without one, its signature (so that an exact copy is refused just the same). A truncated
/// SHA-256: 128 bits keep collisions out of reach and the keys short.
pub fn replay_key(client_id: &str, jti: Option<&str>, signature: &[u8]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(client_id.as_bytes());
    match jti {
        Some(j) => {
            h.update(b"\0jti\0");
            h.update(j.as_bytes());
        }
        None => {
            h.update(b"\0sig\0");
            h.update(signature);
        }
    }
    let mut key = [0; 16];
    key.copy_from_slice(&h.finalize()[..16]);
    key
}

/// How long used-grant rows outlive their grant's expiry: a process whose clock is a little
/// behind still finds them.
const USED_GRANT_MARGIN: i64 = 120;

#[derive(Debug, Default)]
pub struct UsageFilter {
    pub key_id: Option<String>,
    pub user: Option<String>,
    pub since: Option<i64>,
    pub failures_only: bool,
    /// Only issuances from grants without `jti`.
    pub no_jti_only: bool,
    pub limit: i64,
}

/// A user's signing state, as the token plane needs it.
#[derive(Debug, Clone)]
pub struct UserAuth {
    pub user: User,
    pub secret: Secret,
    /// How many times the secret was rotated: personal access tokens made under another
    /// epoch are dead.
    pub epoch: i64,
}

/// What `edit-key` changes; `None` leaves a field alone.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct KeyChange {
    pub title: Option<String>,
    pub ip_ranges: Option<Vec<IpNet>>,
    pub origins: Option<Vec<String>>,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Who audit rows name as making the changes written through this connection.
    actor: String,
    /// The time audit rows carry.
    clock: Clock,
}

/// Who and when, for the audit row of a change being written.
struct AuditCtx {
    actor: String,
    now: i64,
    path: PathBuf,
}

impl AuditCtx {
    fn record(
        &self,
        tx: &rusqlite::Transaction<'_>,
        action: &str,
        target: &str,
        changes: Changes,
    ) -> Result<()> {
        audit::record(
            &self.actor,
            self.now,
            tx,
            &self.path,
            action,
            target,
            changes,
        )
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        map_err(e, &self.path)
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed, with mode 0600 and its folder) and migrates the store.
    /// Opens the store at `path` afresh, read-only and without creating it, and reads a
    /// table: whether the store is there and readable now (readiness). Open connections
    /// would answer from their page cache whatever became of the file.
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

    pub fn open(path: &Path) -> Result<Store> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
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
        let conn = Connection::open(path).map_err(|e| map_err(e, path))?;
        let mut store = Store {
            conn,
            path: path.to_owned(),
            actor: "unknown".to_owned(),
            clock: Clock::System,
        };
        store.configure().map_err(|e| store.err(e))?;
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
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

    fn audit_ctx(&self) -> AuditCtx {
        AuditCtx {
            actor: self.actor.clone(),
            now: self.clock.now(),
            path: self.path.clone(),
        }
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        map_err(e, &self.path)
    }

    fn configure(&mut self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
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
            .execute_batch("PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL;")?;
        Ok(())
    }

    fn migrate(&mut self) -> Result<()> {
        let known = MIGRATIONS.len() as i64;
        let found = self.user_version()?;
        if found > known {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found,
                known,
            });
        }
        if found == known {
            return Ok(());
        }
        let path = self.path.clone();
        let tx = self.write_tx()?;
        // Another process may have migrated while we waited for the lock.
        let mut version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| map_err(e, &path))?;
        if version > known {
            return Err(StoreError::TooNew {
                path: path.clone(),
                found: version,
                known,
            });
        }
        while version < known {
            tx.execute_batch(MIGRATIONS[version as usize])
                .map_err(|e| map_err(e, &path))?;
            version += 1;
            if version == 2 {
                backfill_used_grants(&tx).map_err(|e| map_err(e, &path))?;
            }
            tx.pragma_update(None, "user_version", version)
                .map_err(|e| map_err(e, &path))?;
        }
        tx.commit().map_err(|e| map_err(e, &path))
    }

    pub fn user_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Writes take the lock up front, so two writers queue on the busy timeout instead of
    /// failing with SQLITE_BUSY when a read transaction tries to upgrade.
    fn write_tx(&mut self) -> Result<rusqlite::Transaction<'_>> {
        let path = self.path.clone();
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| map_err(e, &path))
    }

    // ---- settings -------------------------------------------------------------------------

    pub fn setting(&self, name: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn set_setting(&mut self, name: &str, value: &str) -> Result<()> {
        let a = self.audit_ctx();
        let tx = self.write_tx()?;
        let old: Option<String> = tx
            .query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| a.err(e))?;
        if old.as_deref() == Some(value) {
            return Ok(());
        }
        tx.execute(
            "INSERT INTO settings(name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            params![name, value],
        )
        .map_err(|e| a.err(e))?;
        a.record(
            &tx,
            "settings.set",
            name,
            Changes::new().from_to("value", old, value),
        )?;
        tx.commit().map_err(|e| a.err(e))
    }

    /// Sets a setting only when it has no value yet.
    pub fn default_setting(&mut self, name: &str, value: &str) -> Result<()> {
        let a = self.audit_ctx();
        let tx = self.write_tx()?;
        let n = tx
            .execute(
                "INSERT OR IGNORE INTO settings(name, value) VALUES (?1, ?2)",
                params![name, value],
            )
            .map_err(|e| a.err(e))?;
        if n > 0 {
            a.record(
                &tx,
                "settings.set",
                name,
                Changes::new().set("value", value),
            )?;
        }
        tx.commit().map_err(|e| a.err(e))
    }

    // ---- change detection -----------------------------------------------------------------

    /// Changes whenever any other connection commits (cheap; no table read).
    pub fn data_version(&self) -> Result<i64> {
        self.conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| self.err(e))
    }

    /// Bumped by triggers on users, secrets, keys, settings and revoked tokens, but not by
    /// usage-log rows, so a server reloads its cache only when something it serves changed.
    pub fn generation(&self) -> Result<i64> {
        self.conn
            .prepare_cached("SELECT value FROM generation")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| self.err(e))
    }

    // ---- users ----------------------------------------------------------------------------

    pub fn add_user(&mut self, name: &str, secret: &Secret, now: i64) -> Result<()> {
        let path = self.path.clone();
        let a = self.audit_ctx();
        let tx = self.write_tx()?;
        let res = tx.execute(
            "INSERT INTO users(name, created) VALUES (?1, ?2)",
            params![name, now],
        );
        match res {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::ConstraintViolation =>
            {
                return Err(StoreError::UserExists(name.to_owned()));
            }
            other => other.map_err(|e| map_err(e, &path))?,
        };
        tx.execute(
            "INSERT INTO secrets(user_name, secret, rotated) VALUES (?1, ?2, ?3)",
            params![name, secret.expose(), now],
        )
        .map_err(|e| map_err(e, &path))?;
        a.record(&tx, "user.add", name, Changes::new())?;
        tx.commit().map_err(|e| map_err(e, &path))
    }

    /// Creates the user when absent; returns whether it did.
    pub fn ensure_user(&mut self, name: &str, secret: &Secret, now: i64) -> Result<bool> {
        match self.add_user(name, secret, now) {
            Ok(()) => Ok(true),
            Err(StoreError::UserExists(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    const USER_COLUMNS: &str = "u.name, u.permissions, u.disabled, u.created,
        (SELECT count(*) FROM keys k WHERE k.user_name = u.name AND k.revoked IS NULL)";

    fn user_from_row(r: &rusqlite::Row) -> rusqlite::Result<User> {
        let perms: String = r.get(1)?;
        Ok(User {
            name: r.get(0)?,
            permissions: perms.split_whitespace().map(str::to_owned).collect(),
            disabled: r.get(2)?,
            created: r.get(3)?,
            active_keys: r.get(4)?,
        })
    }

    pub fn users(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {} FROM users u ORDER BY u.name", Self::USER_COLUMNS);
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], Self::user_from_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    pub fn user(&self, name: &str) -> Result<User> {
        let sql = format!(
            "SELECT {} FROM users u WHERE u.name = ?1",
            Self::USER_COLUMNS
        );
        self.conn
            .query_row(&sql, [name], Self::user_from_row)
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| StoreError::UnknownUser(name.to_owned()))
    }

    pub fn remove_user(&mut self, name: &str) -> Result<()> {
        let path = self.path.clone();
        let a = self.audit_ctx();
        let tx = self.write_tx()?;
        let active: i64 = tx
            .query_row(
                "SELECT (SELECT count(*) FROM keys WHERE user_name = ?1 AND revoked IS NULL)
                      + (SELECT count(*) FROM pats WHERE user_name = ?1 AND revoked IS NULL)",
                [name],
                |r| r.get(0),
            )
            .map_err(|e| map_err(e, &path))?;
        if active > 0 {
            return Err(StoreError::UserHasKeys {
                name: name.to_owned(),
                count: active,
            });
        }
        let (perms, disabled): (String, bool) = tx
            .query_row(
                "SELECT permissions, disabled FROM users WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| map_err(e, &path))?
            .ok_or_else(|| StoreError::UnknownUser(name.to_owned()))?;
        tx.execute("DELETE FROM users WHERE name = ?1", [name])
            .map_err(|e| map_err(e, &path))?;
        // What the user was, so that the row says what went.
        a.record(
            &tx,
            "user.remove",
            name,
            Changes::new()
                .from_to("permissions", perms, None::<String>)
                .from_to("disabled", disabled, None::<bool>),
        )?;
        tx.commit().map_err(|e| map_err(e, &path))
    }

    pub fn set_permission(&mut self, name: &str, permission: &str, granted: bool) -> Result<()> {
        let path = self.path.clone();
        let a = self.audit_ctx();
        let tx = self.write_tx()?;
        let perms: String = tx
            .query_row(
                "SELECT permissions FROM users WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| map_err(e, &path))?
            .ok_or_else(|| StoreError::UnknownUser(name.to_owned()))?;
        let mut list: Vec<&str> = perms
            .split_whitespace()
            .filter(|p| *p != permission)
            .collect();
        if granted {
            list.push(permission);
        }
        list.sort_unstable();
        let new = list.join(" ");
        if new == perms {
            return Ok(());
        }
        tx.execute(
            "UPDATE users SET permissions = ?2 WHERE name = ?1",
            params![name, new],
        )
        .map_err(|e| map_err(e, &path))?;
        a.record(
            &tx,
            if granted { "user.grant" } else { "user.revoke" },
            name,
            Changes::new().from_to("permissions", perms, new),
        )?;
        tx.commit().map_err(|e| map_err(e, &path))
    }

    pub fn set_disabled(&mut self, name: &str, disabled: bool) -> Result<()> {
        let a = self.audit_ctx();
        let tx = self.write_tx()?;
        let was: bool = tx
            .query_row("SELECT disabled FROM users WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| a.err(e))?
            .ok_or_else(|| StoreError::UnknownUser(name.to_owned()))?;
        if was == disabled {
            return Ok(());
        }
        tx.execute(
            "UPDATE users SET disabled = ?2 WHERE name = ?1",
            params![name, disabled],
        )
        .map_err(|e| a.err(e))?;
        a.record(
            &tx,
            if disabled {
                "user.disable"
            } else {
                "user.enable"
            },
            name,
            Changes::new().from_to("disabled", was, disabled),
        )?;
        tx.commit().map_err(|e| a.err(e))
    }

    pub fn rotate_secret(&mut self, name: &str, secret: &Secret, now: i64) -> Result<()> {
        let a = self.audit_ctx();
        let tx = self.write_tx()?;
        let epoch: i64 = tx
            .query_row(
                "SELECT epoch FROM secrets WHERE user_name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| a.err(e))?
            .ok_or_else(|| StoreError::UnknownUser(name.to_owned()))?;
        tx.execute(
            "UPDATE secrets SET secret = ?2, rotated = ?3, epoch = epoch + 1 WHERE user_name = ?1",
            params![name, secret.expose(), now],
        )
        .map_err(|e| a.err(e))?;
        // The epoch, never the secret: it tells that a rotation happened and how many.
        a.record(
            &tx,
            "user.rotate-secret",
            name,
            Changes::new().from_to("secret_epoch", epoch, epoch + 1),
        )?;
        tx.commit().map_err(|e| a.err(e))
    }

    /// Every user with its current secret (for the token plane's cache).
    pub fn user_auths(&self) -> Result<Vec<UserAuth>> {
        let sql = format!(
            "SELECT {}, s.secret, s.epoch FROM users u JOIN secrets s ON s.user_name = u.name",
            Self::USER_COLUMNS
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let secret: Vec<u8> = r.get(5)?;
                Ok(UserAuth {
                    user: Self::user_from_row(r)?,
                    secret: Secret::new(secret),
                    epoch: r.get(6)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    // ---- keys -----------------------------------------------------------------------------

    pub fn add_key(&mut self, key: &Key) -> Result<()> {
        let a = self.audit_ctx();
        let tx = self.write_tx()?;
        tx.execute(
                "INSERT INTO keys(key_id, client_id, user_name, title, alg, public_key, ip_ranges, scope, issued, expires,
                    origins, format, client_email)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    key.key_id,
                    key.client_id,
                    key.user,
                    key.title,
                    key.alg,
                    key.public_key,
                    iprange::format(&key.ip_ranges),
                    key.scope.as_str(),
                    key.issued,
                    key.expires,
                    origin::format(&key.origins),
                    key.format,
                    key.client_email
                ],
            )
            .map_err(|e| a.err(e))?;
        let changes = Changes::new()
            .set("user", key.user.as_str())
            .set("client_id", key.client_id.as_str())
            .set("title", key.title.as_str())
            .set("alg", key.alg.as_str())
            .set("format", key.format.as_str())
            .set("scope", key.scope.as_str())
            .set("ip_ranges", iprange::format(&key.ip_ranges))
            .set("origins", key.origins.join(" "))
            .set("expires", key.expires);
        let changes = match &key.client_email {
            Some(e) => changes.set("client_email", e.as_str()),
            None => changes,
        };
        a.record(&tx, "key.issue", &key.key_id, changes)?;
        tx.commit().map_err(|e| a.err(e))
    }

    const KEY_COLUMNS: &str =
        "k.key_id, k.client_id, k.user_name, k.title, k.alg, k.public_key, k.ip_ranges,
        k.scope, k.issued, k.expires, k.revoked,
        (SELECT max(time) FROM usage_log l WHERE l.key_id = k.key_id AND l.ok), k.origins,
        k.format, k.client_email";

    fn key_from_row(r: &rusqlite::Row) -> rusqlite::Result<Key> {
        let ranges: String = r.get(6)?;
        let scope: String = r.get(7)?;
        let bad = |i, e: String| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
        };
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
            origins: origin::from_stored(&r.get::<_, String>(12)?),
            format: r.get(13)?,
            client_email: r.get(14)?,
        })
    }

    /// Keys, newest first; revoked ones only with `include_revoked`.
    pub fn keys(&self, user: Option<&str>, include_revoked: bool) -> Result<Vec<Key>> {
        let sql = format!(
            "SELECT {} FROM keys k WHERE (?1 IS NULL OR k.user_name = ?1) AND (?2 OR k.revoked IS NULL)
             ORDER BY k.issued DESC, k.key_id",
            Self::KEY_COLUMNS
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![user, include_revoked], Self::key_from_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// Finds a key by its id or a unique prefix of it.
    pub fn key(&self, id: &str) -> Result<Key> {
        let sql = format!(
            "SELECT {} FROM keys k WHERE k.key_id = ?1 OR (length(?1) >= 4 AND substr(k.key_id, 1, length(?1)) = ?1)
             ORDER BY k.key_id = ?1 DESC LIMIT 2",
            Self::KEY_COLUMNS
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let found: Vec<Key> = stmt
            .query_map([id], Self::key_from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        match found.as_slice() {
            [] => Err(StoreError::UnknownKey(id.to_owned())),
            [one] => Ok(one.clone()),
            [first, ..] if first.key_id == id => Ok(first.clone()),
            _ => Err(StoreError::AmbiguousKey(id.to_owned())),
        }
    }

    /// Changes what `change` names, in one transaction with its audit row.
    pub fn edit_key(&mut self, key_id: &str, change: &KeyChange) -> Result<()> {
        let a = self.audit_ctx();
        let tx = self.write_tx()?;
        let sql = format!(
            "SELECT {} FROM keys k WHERE k.key_id = ?1",
            Self::KEY_COLUMNS
        );
        let old = tx
            .query_row(&sql, [key_id], Self::key_from_row)
            .optional()
            .map_err(|e| a.err(e))?
            .ok_or_else(|| StoreError::UnknownKey(key_id.to_owned()))?;
        let mut changes = Changes::new();
        let set = |sql: &str, value: &str| {
            tx.execute(sql, params![key_id, value])
                .map(|_| ())
                .map_err(|e| a.err(e))
        };
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
            a.record(&tx, "key.edit", key_id, changes)?;
        }
        tx.commit().map_err(|e| a.err(e))
    }

    /// Marks the key revoked; returns false when it already was.
    pub fn revoke_key(&mut self, key_id: &str, now: i64) -> Result<bool> {
        let a = self.audit_ctx();
        let tx = self.write_tx()?;
        let n = tx
            .execute(
                "UPDATE keys SET revoked = ?2 WHERE key_id = ?1 AND revoked IS NULL",
                params![key_id, now],
            )
            .map_err(|e| a.err(e))?;
        if n > 0 {
            a.record(
                &tx,
                "key.revoke",
                key_id,
                Changes::new().from_to("revoked", None::<i64>, now),
            )?;
        }
        tx.commit().map_err(|e| a.err(e))?;
        if n == 0 {
            self.key(key_id)?;
        }
        Ok(n > 0)
    }

    // ---- revoked access tokens ------------------------------------------------------------

    pub fn revoke_token(&mut self, jti: &str, exp: i64, now: i64) -> Result<()> {
        let path = self.path.clone();
        let tx = self.write_tx()?;
        // Entries past their token's expiry can go: the token fails on expiry anyway.
        tx.execute("DELETE FROM revoked_tokens WHERE exp < ?1", [now])
            .map_err(|e| map_err(e, &path))?;
        tx.execute(
            "INSERT OR IGNORE INTO revoked_tokens(jti, exp, revoked) VALUES (?1, ?2, ?3)",
            params![jti, exp, now],
        )
        .map_err(|e| map_err(e, &path))?;
        tx.commit().map_err(|e| map_err(e, &path))
    }

    pub fn revoked_tokens(&self, now: i64) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT jti FROM revoked_tokens WHERE exp >= ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([now], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    // ---- usage log ------------------------------------------------------------------------

    /// Appends rows in one transaction, records when personal access tokens were last used
    /// (`touches`: id and time), then prunes rows older than `prune_before` (keeping each
    /// key's newest row) and used grants that have expired. A row with a `grant_use` first
    /// claims its grant: when an earlier row (from any process) took it, the row is written
    /// as a refused replay instead. Returns, per row, whether it was written as given.
    pub fn append_usage(
        &mut self,
        rows: &[UsageRow],
        touches: &[(String, i64)],
        now: i64,
        prune_before: Option<i64>,
    ) -> Result<Vec<bool>> {
        let path = self.path.clone();
        let tx = self.write_tx()?;
        let mut written = Vec::with_capacity(rows.len());
        {
            let mut claim = tx
                .prepare_cached(
                    "INSERT INTO used_grants(exp, key) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                )
                .map_err(|e| map_err(e, &path))?;
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO usage_log(time, key_id, user_name, subject, address, user_agent, ok, reason,
                        grant_jti, grant_exp, token_jti, no_jti, pat_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .map_err(|e| map_err(e, &path))?;
            for r in rows {
                let fresh = match &r.grant_use {
                    None => true,
                    Some(g) => {
                        claim
                            .execute(params![g.exp, g.key])
                            .map_err(|e| map_err(e, &path))?
                            == 1
                    }
                };
                let (ok, reason, token_jti) = if fresh {
                    (r.ok, r.reason.as_deref(), r.token_jti.as_deref())
                } else {
                    (false, Some(replay_reason(r.grant_jti.is_some())), None)
                };
                stmt.execute(params![
                    r.time,
                    r.key_id,
                    r.user,
                    r.subject,
                    r.address,
                    r.user_agent,
                    ok,
                    reason,
                    r.grant_jti,
                    r.grant_exp,
                    token_jti,
                    r.no_jti,
                    r.pat_id
                ])
                .map_err(|e| map_err(e, &path))?;
                written.push(fresh);
            }
            let mut touch = tx
                .prepare_cached(
                    "UPDATE pats SET last_used = ?2 WHERE id = ?1 AND (last_used IS NULL OR last_used < ?2)",
                )
                .map_err(|e| map_err(e, &path))?;
            for (id, time) in touches {
                touch
                    .execute(params![id, time])
                    .map_err(|e| map_err(e, &path))?;
            }
        }
        if let Some(cutoff) = prune_before {
            tx.execute(
                "DELETE FROM usage_log WHERE time < ?1
                   AND id NOT IN (SELECT max(id) FROM usage_log WHERE key_id IS NOT NULL GROUP BY key_id)",
                [cutoff],
            )
            .map_err(|e| map_err(e, &path))?;
            tx.execute(
                "DELETE FROM used_grants WHERE exp < ?1",
                [now.saturating_sub(USED_GRANT_MARGIN)],
            )
            .map_err(|e| map_err(e, &path))?;
        }
        tx.commit().map_err(|e| map_err(e, &path))?;
        Ok(written)
    }

    pub fn usage(&self, f: &UsageFilter) -> Result<Vec<UsageRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT time, key_id, user_name, subject, address, user_agent, ok, reason, no_jti, pat_id
                 FROM usage_log
                 WHERE (?1 IS NULL OR key_id = ?1 OR pat_id = ?1) AND (?2 IS NULL OR user_name = ?2 OR subject = ?2)
                   AND (?3 IS NULL OR time >= ?3) AND (NOT ?4 OR NOT ok) AND (NOT ?6 OR no_jti)
                 ORDER BY time DESC, id DESC LIMIT ?5",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                params![
                    f.key_id,
                    f.user,
                    f.since,
                    f.failures_only,
                    f.limit,
                    f.no_jti_only
                ],
                |r| {
                    Ok(UsageRow {
                        time: r.get(0)?,
                        key_id: r.get(1)?,
                        user: r.get(2)?,
                        subject: r.get(3)?,
                        address: r.get(4)?,
                        user_agent: r.get(5)?,
                        ok: r.get(6)?,
                        reason: r.get(7)?,
                        no_jti: r.get(8)?,
                        pat_id: r.get(9)?,
                        ..UsageRow::default()
                    })
                },
            )
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// Grants used and not yet expired: seeds a server's in-memory replay check when it
    /// starts.
    pub fn live_used_grants(&self, now: i64) -> Result<Vec<GrantUse>> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, exp FROM used_grants WHERE exp >= ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([now], |r| {
                Ok(GrantUse {
                    key: r.get(0)?,
                    exp: r.get(1)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
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

/// Migration 2's data part: the grants that issuances already logged used, so that they stay
/// used after the upgrade. (Pruned by expiry like the rest.)
fn backfill_used_grants(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let mut read = tx.prepare(
        "SELECT k.client_id, l.grant_jti, l.grant_exp FROM usage_log l JOIN keys k ON k.key_id = l.key_id
         WHERE l.ok AND l.grant_jti IS NOT NULL AND l.grant_exp IS NOT NULL",
    )?;
    let mut write =
        tx.prepare("INSERT INTO used_grants(exp, key) VALUES (?1, ?2) ON CONFLICT DO NOTHING")?;
    let mut rows = read.query([])?;
    while let Some(r) = rows.next()? {
        let (client, jti, exp): (String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        write.execute(params![exp, replay_key(&client, Some(&jti), &[])])?;
    }
    Ok(())
}

/// Why a row's grant claim failed: its grant was used before.
pub fn replay_reason(had_jti: bool) -> &'static str {
    if had_jti {
        "Grant has already been used (jti replayed)"
    } else {
        "Grant has already been used (a grant without jti is good for one exchange)"
    }
}

fn map_err(e: rusqlite::Error, path: &Path) -> StoreError {
    let path = path.to_owned();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt { path }
        }
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
            StoreError::Locked { path }
        }
        Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { path },
        Some(ErrorCode::CannotOpen) | Some(ErrorCode::PermissionDenied) => StoreError::Open {
            path,
            source: std::io::Error::other(e.to_string()),
        },
        _ => StoreError::Sqlite(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn migrations_bring_an_empty_file_to_the_latest_version() {
        let (_d, store) = temp_store();
        assert_eq!(store.user_version().unwrap(), MIGRATIONS.len() as i64);
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn generation_moves_on_user_changes_but_not_on_usage_rows() {
        let (_d, mut store) = temp_store();
        let g0 = store.generation().unwrap();
        store.add_user("a", &Secret::new(vec![1; 32]), 1).unwrap();
        let g1 = store.generation().unwrap();
        assert!(g1 > g0);
        store
            .append_usage(
                &[UsageRow {
                    time: 1,
                    address: "127.0.0.1".into(),
                    ok: true,
                    ..Default::default()
                }],
                &[],
                1,
                None,
            )
            .unwrap();
        assert_eq!(store.generation().unwrap(), g1);
    }

    #[test]
    fn pruning_keeps_each_keys_newest_row() {
        let (_d, mut store) = temp_store();
        let row = |t, k: &str| UsageRow {
            time: t,
            key_id: Some(k.into()),
            address: "127.0.0.1".into(),
            ok: true,
            ..Default::default()
        };
        store
            .append_usage(
                &[row(1, "a"), row(2, "a"), row(3, "b"), row(100, "b")],
                &[],
                100,
                None,
            )
            .unwrap();
        store.append_usage(&[], &[], 100, Some(50)).unwrap();
        let left = store
            .usage(&UsageFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        let times: Vec<i64> = left.iter().map(|r| r.time).collect();
        assert_eq!(times, vec![100, 2]);
    }

    fn grant_row(time: i64, client: &str, jti: &str, exp: i64) -> UsageRow {
        UsageRow {
            time,
            key_id: Some(format!("key-{client}")),
            address: "127.0.0.1".into(),
            ok: true,
            token_jti: Some(format!("token-{time}")),
            grant_jti: Some(jti.to_owned()),
            grant_use: Some(GrantUse {
                key: replay_key(client, Some(jti), &[]),
                exp,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_grant_is_used_once_across_connections_and_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut a = Store::open(&path).unwrap();
        let mut b = Store::open(&path).unwrap();
        // The same grant twice in one batch, then again from another connection.
        let written = a
            .append_usage(
                &[
                    grant_row(1, "c1", "x", 100),
                    grant_row(2, "c1", "x", 100),
                    // The same jti under another client is another grant.
                    grant_row(3, "c2", "x", 100),
                ],
                &[],
                1,
                None,
            )
            .unwrap();
        assert_eq!(written, vec![true, false, true]);
        let again = b
            .append_usage(
                &[grant_row(4, "c1", "x", 100), grant_row(5, "c1", "y", 100)],
                &[],
                4,
                None,
            )
            .unwrap();
        assert_eq!(again, vec![false, true]);
        let rows = a
            .usage(&UsageFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        let refused: Vec<(i64, Option<&str>)> = rows
            .iter()
            .filter(|r| !r.ok)
            .map(|r| (r.time, r.reason.as_deref()))
            .collect();
        assert_eq!(
            refused,
            vec![
                (4, Some("Grant has already been used (jti replayed)")),
                (2, Some("Grant has already been used (jti replayed)"))
            ]
        );
        assert_eq!(a.live_used_grants(1).unwrap().len(), 3);
    }

    #[test]
    fn replay_keys_tell_clients_jtis_and_signatures_apart() {
        let k = replay_key("c", Some("x"), &[]);
        assert_eq!(k, replay_key("c", Some("x"), b"ignored"));
        assert_ne!(k, replay_key("d", Some("x"), &[]));
        assert_ne!(k, replay_key("c", Some("y"), &[]));
        assert_ne!(replay_key("c", None, b"x"), k);
        assert_ne!(replay_key("c", None, b"x"), replay_key("c", None, b"y"));
    }

    #[test]
    fn used_grants_are_pruned_only_well_after_they_expire() {
        let (_d, mut store) = temp_store();
        store
            .append_usage(
                &[
                    grant_row(1, "c", "old", 10),
                    grant_row(1, "c", "new", 1_000),
                ],
                &[],
                1,
                None,
            )
            .unwrap();
        store
            .append_usage(&[], &[], 10 + USED_GRANT_MARGIN, Some(0))
            .unwrap();
        assert_eq!(store.live_used_grants(0).unwrap().len(), 2);
        store
            .append_usage(&[], &[], 11 + USED_GRANT_MARGIN, Some(0))
            .unwrap();
        let left = store.live_used_grants(0).unwrap();
        assert_eq!(
            left,
            vec![GrantUse {
                key: replay_key("c", Some("new"), &[]),
                exp: 1_000
            }]
        );
    }

    /// A store written before grants were kept: the grants its issuances used stay used.
    #[test]
    fn upgrading_keeps_the_grants_already_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(
                "PRAGMA user_version = 1;
                 INSERT INTO keys(key_id, client_id, user_name, alg, public_key, scope, issued)
                     VALUES ('k', 'c', 'u', 'RS256', 'pem', 'read', 0);
                 INSERT INTO usage_log(time, key_id, address, ok, grant_jti, grant_exp)
                     VALUES (1, 'k', '127.0.0.1', 1, 'j', 500), (2, 'k', '127.0.0.1', 0, 'r', 500);",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.live_used_grants(0).unwrap(),
            vec![GrantUse {
                key: replay_key("c", Some("j"), &[]),
                exp: 500
            }]
        );
    }
}
