//! The store: the only module that speaks SQL. One interface, two backends: an SQLite file
//! (the embedded default) or a PostgreSQL database (several `serve` replicas on one store).
//! Each query is written once; `sql` carries parameters and rows between them.

pub mod audit;
mod copy;
mod migrations;
mod pats;
pub mod postgres;
mod probe;
mod sql;
mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::clock::Clock;
use crate::iprange;
use crate::origin;
use crate::scope::Scope;
use crate::secret::Secret;

use audit::Changes;
pub use audit::{AuditFilter, AuditRow, AuditVerdict};
pub use migrations::{MIGRATIONS, PG_MIGRATIONS};
pub use pats::{Pat, PatChange};
pub use postgres::PgUrl;
pub use probe::ChangeProbe;
use sql::{Param, Row, params};
use sqlite::BUSY_TIMEOUT;

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
        "the store {store} was written by a newer tokenauth (schema {found}, this build knows {known}); upgrade tokenauth"
    )]
    TooNew {
        store: String,
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
    #[error("{url} is not a valid PostgreSQL URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "cannot reach PostgreSQL at {url}: {reason}; check that it runs and that the URL's host and port are right"
    )]
    Unavailable { url: String, reason: String },
    #[error(
        "TLS with PostgreSQL at {url} failed: {reason}; connect by the name its certificate carries, pass the certificate's CA as sslrootcert=PATH, or use sslmode=require"
    )]
    Tls { url: String, reason: String },
    #[error(
        "PostgreSQL at {url} refused user '{user}': {reason}; check the user and password in the URL (postgres://USER:PASSWORD@HOST/DB) and pg_hba.conf"
    )]
    Login {
        url: String,
        user: String,
        reason: String,
    },
    #[error(
        "PostgreSQL at {url}: {reason}; create it (createdb) or name another database in the URL"
    )]
    NoDatabase { url: String, reason: String },
    #[error("PostgreSQL at {url}: {message}")]
    Postgres { url: String, message: String },
    /// A unique key already holds the value (mapped to a specific error by the caller).
    #[error("already exists: {0}")]
    Duplicate(String),
    /// A transaction lost a conflict with another; retried by `Store::transaction`.
    #[error("store conflict: {0}")]
    Conflict(String),
    #[error("unreadable value in the store: {0}")]
    Data(String),
    #[error(
        "the store {0} already holds users, keys, tokens or logs; pass --force to replace them"
    )]
    NotEmpty(String),
}

impl StoreError {
    /// The database is out of reach for now (not the caller's fault, worth retrying).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
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
        Ok(Store::new(Backend::Sqlite(sqlite::Db::open(path)?)))
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

    /// Opens the store at `location` and brings its schema up to date.
    pub fn connect(location: &Location) -> Result<Store> {
        match location {
            Location::Sqlite(p) => Store::open(p),
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

    /// Sets a setting only when it has no value yet.
    pub fn default_setting(&mut self, name: &str, value: &str) -> Result<()> {
        self.write(|| {
            let n = self.exec(
                "INSERT INTO settings(name, value) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                &params![name, value],
            )?;
            if n > 0 {
                self.record("settings.set", name, Changes::new().set("value", value))?;
            }
            Ok(())
        })
    }

    // ---- change detection -----------------------------------------------------------------

    /// SQLite: changes whenever any other connection commits (cheap; no table read).
    /// PostgreSQL has no such counter: the generation is read instead.
    pub fn data_version(&self) -> Result<i64> {
        match &self.db {
            Backend::Sqlite(d) => d.data_version(),
            Backend::Postgres(_) => self.generation(),
        }
    }

    /// Bumped by triggers on users, secrets, keys, settings and revoked tokens, but not by
    /// usage-log rows, so a server reloads its cache only when something it serves changed.
    pub fn generation(&self) -> Result<i64> {
        self.value("SELECT value FROM generation", &[])
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

    // ---- users ----------------------------------------------------------------------------

    pub fn add_user(&mut self, name: &str, secret: &Secret, now: i64) -> Result<()> {
        self.write(|| {
            match self.exec(
                "INSERT INTO users(name, created) VALUES (?1, ?2)",
                &params![name, now],
            ) {
                Err(StoreError::Duplicate(_)) => {
                    return Err(StoreError::UserExists(name.to_owned()));
                }
                other => other?,
            };
            self.exec(
                "INSERT INTO secrets(user_name, secret, rotated) VALUES (?1, ?2, ?3)",
                &params![name, secret.expose(), now],
            )?;
            self.record("user.add", name, Changes::new())
        })
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

    fn user_from_row(r: &Row) -> Result<User> {
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
        self.rows(&sql, &[])?
            .iter()
            .map(Self::user_from_row)
            .collect()
    }

    pub fn user(&self, name: &str) -> Result<User> {
        let sql = format!(
            "SELECT {} FROM users u WHERE u.name = ?1",
            Self::USER_COLUMNS
        );
        self.row(&sql, &params![name])?
            .map(|r| Self::user_from_row(&r))
            .transpose()?
            .ok_or_else(|| StoreError::UnknownUser(name.to_owned()))
    }

    pub fn remove_user(&mut self, name: &str) -> Result<()> {
        self.write(|| {
            let active: i64 = self.value(
                "SELECT (SELECT count(*) FROM keys WHERE user_name = ?1 AND revoked IS NULL)
                      + (SELECT count(*) FROM pats WHERE user_name = ?1 AND revoked IS NULL)",
                &params![name],
            )?;
            if active > 0 {
                return Err(StoreError::UserHasKeys {
                    name: name.to_owned(),
                    count: active,
                });
            }
            let was = self
                .row(
                    "SELECT permissions, disabled FROM users WHERE name = ?1",
                    &params![name],
                )?
                .ok_or_else(|| StoreError::UnknownUser(name.to_owned()))?;
            let (perms, disabled): (String, bool) = (was.get(0)?, was.get(1)?);
            self.exec("DELETE FROM users WHERE name = ?1", &params![name])?;
            // What the user was, so that the row says what went.
            self.record(
                "user.remove",
                name,
                Changes::new()
                    .from_to("permissions", perms, None::<String>)
                    .from_to("disabled", disabled, None::<bool>),
            )
        })
    }

    pub fn set_permission(&mut self, name: &str, permission: &str, granted: bool) -> Result<()> {
        self.write(|| {
            let perms: String = self
                .row(
                    "SELECT permissions FROM users WHERE name = ?1",
                    &params![name],
                )?
                .ok_or_else(|| StoreError::UnknownUser(name.to_owned()))?
                .get(0)?;
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
            self.exec(
                "UPDATE users SET permissions = ?2 WHERE name = ?1",
                &params![name, &new],
            )?;
            self.record(
                if granted { "user.grant" } else { "user.revoke" },
                name,
                Changes::new().from_to("permissions", perms.as_str(), new.as_str()),
            )
        })
    }

    pub fn set_disabled(&mut self, name: &str, disabled: bool) -> Result<()> {
        self.write(|| {
            let was: bool = self
                .row("SELECT disabled FROM users WHERE name = ?1", &params![name])?
                .ok_or_else(|| StoreError::UnknownUser(name.to_owned()))?
                .get(0)?;
            if was == disabled {
                return Ok(());
            }
            self.exec(
                "UPDATE users SET disabled = ?2 WHERE name = ?1",
                &params![name, disabled],
            )?;
            self.record(
                if disabled {
                    "user.disable"
                } else {
                    "user.enable"
                },
                name,
                Changes::new().from_to("disabled", was, disabled),
            )
        })
    }

    pub fn rotate_secret(&mut self, name: &str, secret: &Secret, now: i64) -> Result<()> {
        self.write(|| {
            let epoch: i64 = self
                .row(
                    "SELECT epoch FROM secrets WHERE user_name = ?1",
                    &params![name],
                )?
                .ok_or_else(|| StoreError::UnknownUser(name.to_owned()))?
                .get(0)?;
            self.exec(
                "UPDATE secrets SET secret = ?2, rotated = ?3, epoch = epoch + 1 WHERE user_name = ?1",
                &params![name, secret.expose(), now],
            )?;
            // The epoch, never the secret: it tells that a rotation happened and how many.
            self.record(
                "user.rotate-secret",
                name,
                Changes::new().from_to("secret_epoch", epoch, epoch + 1),
            )
        })
    }

    /// Every user with its current secret (for the token plane's cache).
    pub fn user_auths(&self) -> Result<Vec<UserAuth>> {
        let sql = format!(
            "SELECT {}, s.secret, s.epoch FROM users u JOIN secrets s ON s.user_name = u.name",
            Self::USER_COLUMNS
        );
        self.rows(&sql, &[])?
            .iter()
            .map(|r| {
                Ok(UserAuth {
                    user: Self::user_from_row(r)?,
                    secret: Secret::new(r.get(5)?),
                    epoch: r.get(6)?,
                })
            })
            .collect()
    }

    // ---- keys -----------------------------------------------------------------------------

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
            self.record(
"key.issue", &key.key_id, changes)
        })
    }

    const KEY_COLUMNS: &str =
        "k.key_id, k.client_id, k.user_name, k.title, k.alg, k.public_key, k.ip_ranges,
        k.scope, k.issued, k.expires, k.revoked,
        (SELECT max(time) FROM usage_log l WHERE l.key_id = k.key_id AND l.ok <> 0), k.origins,
        k.format, k.client_email";

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

    /// Keys, newest first; revoked ones only with `include_revoked`.
    pub fn keys(&self, user: Option<&str>, include_revoked: bool) -> Result<Vec<Key>> {
        let sql = format!(
            "SELECT {} FROM keys k WHERE (CAST(?1 AS TEXT) IS NULL OR k.user_name = ?1) AND (?2 <> 0 OR k.revoked IS NULL)
             ORDER BY k.issued DESC, k.key_id",
            Self::KEY_COLUMNS
        );
        self.rows(&sql, &params![user, include_revoked])?
            .iter()
            .map(Self::key_from_row)
            .collect()
    }

    /// Finds a key by its id or a unique prefix of it.
    pub fn key(&self, id: &str) -> Result<Key> {
        let sql = format!(
            "SELECT {} FROM keys k WHERE k.key_id = ?1 OR (length(?1) >= 4 AND substr(k.key_id, 1, length(?1)) = ?1)
             ORDER BY k.key_id = ?1 DESC LIMIT 2",
            Self::KEY_COLUMNS
        );
        let found = self
            .rows(&sql, &params![id])?
            .iter()
            .map(Self::key_from_row)
            .collect::<Result<Vec<Key>>>()?;
        match found.as_slice() {
            [] => Err(StoreError::UnknownKey(id.to_owned())),
            [one] => Ok(one.clone()),
            [first, ..] if first.key_id == id => Ok(first.clone()),
            _ => Err(StoreError::AmbiguousKey(id.to_owned())),
        }
    }

    /// Changes what `change` names, in one transaction with its audit row.
    pub fn edit_key(&mut self, key_id: &str, change: &KeyChange) -> Result<()> {
        let sql = format!(
            "SELECT {} FROM keys k WHERE k.key_id = ?1",
            Self::KEY_COLUMNS
        );
        self.write(|| {
            let old = self
                .row(&sql, &params![key_id])?
                .map(|r| Self::key_from_row(&r))
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
        let n = self.write(|| {
            let n = self.exec(
                "UPDATE keys SET revoked = ?2 WHERE key_id = ?1 AND revoked IS NULL",
                &params![key_id, now],
            )?;
            if n > 0 {
                self.record(
                    "key.revoke",
                    key_id,
                    Changes::new().from_to("revoked", None::<i64>, now),
                )?;
            }
            Ok(n)
        })?;
        if n == 0 {
            self.key(key_id)?;
        }
        Ok(n > 0)
    }

    // ---- revoked access tokens ------------------------------------------------------------

    pub fn revoke_token(&mut self, jti: &str, exp: i64, now: i64) -> Result<()> {
        self.write(|| {
            // Entries past their token's expiry can go: the token fails on expiry anyway.
            self.exec("DELETE FROM revoked_tokens WHERE exp < ?1", &params![now])?;
            self.exec(
                "INSERT INTO revoked_tokens(jti, exp, revoked) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                &params![jti, exp, now],
            )
            .map(|_| ())
        })
    }

    pub fn revoked_tokens(&self, now: i64) -> Result<Vec<String>> {
        self.column(
            "SELECT jti FROM revoked_tokens WHERE exp >= ?1",
            &params![now],
        )
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
        // Not an admin write: replicas append side by side; the used-grants key decides.
        self.transaction(false, || {
            let written = match &self.db {
                // One round trip per statement: set-based there, not a pair per row.
                Backend::Postgres(d) => d.insert_usage(rows)?,
                Backend::Sqlite(_) => self.insert_usage(rows)?,
            };
            for (id, time) in touches {
                self.exec(
                    "UPDATE pats SET last_used = ?2 WHERE id = ?1 AND (last_used IS NULL OR last_used < ?2)",
                    &params![id, *time],
                )?;
            }
            if let Some(cutoff) = prune_before {
                self.exec(
                    "DELETE FROM usage_log WHERE time < ?1
                       AND id NOT IN (SELECT max(id) FROM usage_log WHERE key_id IS NOT NULL GROUP BY key_id)",
                    &params![cutoff],
                )?;
                self.exec(
                    "DELETE FROM used_grants WHERE exp < ?1",
                    &params![now.saturating_sub(USED_GRANT_MARGIN)],
                )?;
            }
            Ok(written)
        })
    }

    /// Claims each row's grant and writes the row (as a refused replay when the grant was
    /// taken): statement by statement, cheap in-process.
    fn insert_usage(&self, rows: &[UsageRow]) -> Result<Vec<bool>> {
        let mut written = Vec::with_capacity(rows.len());
        for r in rows {
            let fresh =
                match &r.grant_use {
                    None => true,
                    Some(g) => self.exec(
                        "INSERT INTO used_grants(exp, key) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                        &params![g.exp, &g.key],
                    )? == 1,
                };
            let (ok, reason, token_jti) = if fresh {
                (r.ok, r.reason.as_deref(), r.token_jti.as_deref())
            } else {
                (false, Some(replay_reason(r.grant_jti.is_some())), None)
            };
            self.exec(
                "INSERT INTO usage_log(time, key_id, user_name, subject, address, user_agent, ok, reason,
                    grant_jti, grant_exp, token_jti, no_jti, pat_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                &params![
                    r.time,
                    &r.key_id,
                    &r.user,
                    &r.subject,
                    &r.address,
                    &r.user_agent,
                    ok,
                    reason,
                    &r.grant_jti,
                    r.grant_exp,
                    token_jti,
                    r.no_jti,
                    &r.pat_id
                ],
            )?;
            written.push(fresh);
        }
        Ok(written)
    }

    pub fn usage(&self, f: &UsageFilter) -> Result<Vec<UsageRow>> {
        let rows = self.rows(
            "SELECT time, key_id, user_name, subject, address, user_agent, ok, reason, no_jti, pat_id
             FROM usage_log
             WHERE (CAST(?1 AS TEXT) IS NULL OR key_id = ?1 OR pat_id = ?1)
               AND (CAST(?2 AS TEXT) IS NULL OR user_name = ?2 OR subject = ?2)
               AND (CAST(?3 AS BIGINT) IS NULL OR time >= ?3) AND (?4 = 0 OR ok = 0) AND (?6 = 0 OR no_jti <> 0)
             ORDER BY time DESC, id DESC LIMIT ?5",
            &params![
                &f.key_id,
                &f.user,
                f.since,
                f.failures_only,
                f.limit,
                f.no_jti_only
            ],
        )?;
        rows.iter()
            .map(|r| {
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
            })
            .collect()
    }

    /// Grants used and not yet expired: seeds a server's in-memory replay check when it
    /// starts.
    pub fn live_used_grants(&self, now: i64) -> Result<Vec<GrantUse>> {
        self.rows(
            "SELECT key, exp FROM used_grants WHERE exp >= ?1",
            &params![now],
        )?
        .iter()
        .map(|r| {
            Ok(GrantUse {
                key: r.get(0)?,
                exp: r.get(1)?,
            })
        })
        .collect()
    }

    /// SQLite's `PRAGMA integrity_check`; on PostgreSQL, that every table the schema needs
    /// answers and the generation row exists. "ok" or the problems found.
    pub fn integrity_check(&self) -> Result<String> {
        match &self.db {
            Backend::Sqlite(d) => d.integrity_check(),
            Backend::Postgres(_) => {
                let mut problems = Vec::new();
                if self
                    .column::<i64>("SELECT value FROM generation", &[])?
                    .len()
                    != 1
                {
                    problems.push("the generation table must hold one row");
                }
                for (table, sql) in COUNT_TABLES {
                    if self.value::<i64>(sql, &[]).is_err() {
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

    /// Rows per table, in [`COUNT_TABLES`] order (what `store copy` verifies).
    pub fn row_counts(&self) -> Result<Vec<(&'static str, i64)>> {
        COUNT_TABLES
            .iter()
            .map(|(t, sql)| Ok((*t, self.value(sql, &[])?)))
            .collect()
    }

    /// The file's permission bits (for `init` to report); None on PostgreSQL.
    pub fn mode(&self) -> Option<u32> {
        match &self.db {
            Backend::Sqlite(d) => d.mode(),
            Backend::Postgres(_) => None,
        }
    }
}

/// The tables a store holds, each with its row count query.
const COUNT_TABLES: &[(&str, &str)] = &[
    ("settings", "SELECT count(*) FROM settings"),
    ("users", "SELECT count(*) FROM users"),
    ("secrets", "SELECT count(*) FROM secrets"),
    ("keys", "SELECT count(*) FROM keys"),
    ("pats", "SELECT count(*) FROM pats"),
    ("revoked_tokens", "SELECT count(*) FROM revoked_tokens"),
    ("used_grants", "SELECT count(*) FROM used_grants"),
    ("usage_log", "SELECT count(*) FROM usage_log"),
    ("audit", "SELECT count(*) FROM audit"),
];

/// Why a row's grant claim failed: its grant was used before.
pub fn replay_reason(had_jti: bool) -> &'static str {
    if had_jti {
        "Grant has already been used (jti replayed)"
    } else {
        "Grant has already been used (a grant without jti is good for one exchange)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    /// A new, empty store of one backend; `open` gives further connections to it.
    enum Temp {
        Sqlite(tempfile::TempDir),
        Postgres(Box<postgres::ScratchDatabase>),
    }

    impl Temp {
        fn location(&self) -> Location {
            match self {
                Temp::Sqlite(d) => Location::Sqlite(d.path().join("t.db")),
                Temp::Postgres(db) => Location::parse(db.url.as_ref()).unwrap(),
            }
        }

        fn open(&self) -> Store {
            Store::connect(&self.location()).unwrap()
        }
    }

    /// Each test once per backend: `name::sqlite` and `name::postgres` (skipped, with a
    /// notice, when no PostgreSQL answers).
    macro_rules! both {
        ($(fn $name:ident($db:ident) $body:block)*) => {$(
            mod $name {
                use super::*;
                fn run($db: Temp) $body
                #[test]
                fn sqlite() {
                    run(Temp::Sqlite(tempfile::tempdir().unwrap()));
                }
                #[test]
                fn postgres() {
                    if let Some(db) = postgres::ScratchDatabase::create(stringify!($name)) {
                        run(Temp::Postgres(Box::new(db)));
                    }
                }
            }
        )*};
    }

    both! {
        fn users_keys_and_tokens_read_back_as_written(db) {
            let mut store = db.open();
            let secret = Secret::new(vec![7; 32]);
            store.add_user("alice", &secret, 10).unwrap();
            assert!(matches!(
                store.add_user("alice", &secret, 11),
                Err(StoreError::UserExists(_))
            ));
            assert!(!store.ensure_user("alice", &secret, 11).unwrap());
            store.set_permission("alice", "impersonate", true).unwrap();
            store.set_disabled("alice", true).unwrap();
            let key = Key {
                key_id: "key-one-0001".into(),
                client_id: "client-1".into(),
                user: "alice".into(),
                title: "CI".into(),
                alg: "RS256".into(),
                public_key: "pem".into(),
                ip_ranges: iprange::parse("10.0.0.0/8").unwrap(),
                origins: vec!["https://a.example".into()],
                format: "tokenauth".into(),
                client_email: None,
                scope: Scope::Read,
                issued: 20,
                expires: Some(1_000),
                revoked: None,
                last_used: None,
            };
            store.add_key(&key).unwrap();
            store
                .edit_key(
                    "key-one-0001",
                    &KeyChange {
                        title: Some("CI bot".into()),
                        ..Default::default()
                    },
                )
                .unwrap();
            let found = store.key("key-one").unwrap();
            assert_eq!((found.title.as_str(), found.expires), ("CI bot", Some(1_000)));
            assert_eq!(found.ip_ranges, key.ip_ranges);
            assert_eq!(found.origins, key.origins);
            assert!(matches!(store.key("nope"), Err(StoreError::UnknownKey(_))));
            let user = store.user("alice").unwrap();
            assert!(user.disabled && user.may("impersonate") && user.active_keys == 1);
            assert!(matches!(
                store.remove_user("alice"),
                Err(StoreError::UserHasKeys { count: 1, .. })
            ));
            assert!(store.revoke_key("key-one-0001", 30).unwrap());
            assert!(!store.revoke_key("key-one-0001", 31).unwrap());
            assert_eq!(store.keys(Some("alice"), false).unwrap().len(), 0);
            assert_eq!(store.keys(None, true).unwrap()[0].revoked, Some(30));
            let pat = Pat {
                id: "pat-0001".into(),
                user: "alice".into(),
                hash: [3; 32],
                last4: "abcd".into(),
                description: "d".into(),
                scope: Scope::Read,
                ip_ranges: Vec::new(),
                origins: Vec::new(),
                created: 40,
                expires: None,
                revoked: None,
                secret_epoch: 0,
                last_used: None,
            };
            store.add_pat(&pat).unwrap();
            store.rotate_secret("alice", &Secret::new(vec![8; 32]), 50).unwrap();
            store
                .edit_pat(
                    "pat-0001",
                    &PatChange {
                        description: Some("new".into()),
                        ..Default::default()
                    },
                )
                .unwrap();
            let auths = store.user_auths().unwrap();
            assert_eq!((auths[0].epoch, auths[0].secret.expose()), (1, &[8u8; 32][..]));
            assert_eq!(store.pat("pat-").unwrap().description, "new");
            store.revoke_token("jti-1", 100, 60).unwrap();
            store.revoke_token("jti-1", 100, 60).unwrap();
            assert_eq!(store.revoked_tokens(60).unwrap(), vec!["jti-1".to_owned()]);
            assert!(store.revoke_pat("pat-0001", 70).unwrap());
            store.remove_user("alice").unwrap();
            assert!(matches!(store.user("alice"), Err(StoreError::UnknownUser(_))));
            store.set_setting("token_uri", "https://a/token").unwrap();
            store.default_setting("token_uri", "https://b/token").unwrap();
            assert_eq!(store.setting("token_uri").unwrap().as_deref(), Some("https://a/token"));
        }

        fn every_admin_change_leaves_a_chained_audit_row(db) {
            let mut store = db.open();
            store.set_actor("tester@host", crate::clock::Clock::Fixed(100));
            store.add_user("alice", &Secret::new(vec![1; 32]), 1).unwrap();
            store.set_permission("alice", "impersonate", true).unwrap();
            store.rotate_secret("alice", &Secret::new(vec![2; 32]), 2).unwrap();
            store.set_setting("issuer", "https://a.example").unwrap();
            let rows = store
                .audit(&AuditFilter {
                    limit: 10,
                    ..Default::default()
                })
                .unwrap();
            let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
            assert_eq!(
                actions,
                ["settings.set", "user.rotate-secret", "user.grant", "user.add"]
            );
            assert!(rows.iter().all(|r| r.actor == "tester@host" && r.time == 100));
            let only = store
                .audit(&AuditFilter {
                    actor: Some("tester".into()),
                    action: Some("user".into()),
                    limit: 10,
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(only.len(), 3);
            let verdict = store.verify_audit().unwrap();
            assert!(verdict.ok && verdict.rows == 4, "{verdict:?}");
        }

        fn a_store_of_a_newer_schema_is_refused(db) {
            let store = db.open();
            store.set_version_for_test(99);
            match Store::connect(&db.location()) {
                Err(StoreError::TooNew { found: 99, .. }) => {}
                other => panic!("not refused: {other:?}"),
            }
        }

        fn concurrent_admin_writers_all_succeed(db) {
            let location = db.location();
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let location = location.clone();
                    std::thread::spawn(move || {
                        let mut store = Store::connect(&location).unwrap();
                        for i in 0..10 {
                            let name = format!("u{t}-{i}");
                            store.add_user(&name, &Secret::new(vec![1; 32]), 1).unwrap();
                            store.set_permission(&name, "impersonate", true).unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let users = db.open().users().unwrap();
            assert_eq!(users.len(), 40);
            assert!(users.iter().all(|u| u.may("impersonate")));
        }

        fn migrations_bring_an_empty_file_to_the_latest_version(db) {
            let store = db.open();
            assert_eq!(store.user_version().unwrap(), MIGRATIONS.len() as i64);
            assert_eq!(store.integrity_check().unwrap(), "ok");
        }

        fn generation_moves_on_user_changes_but_not_on_usage_rows(db) {
            let mut store = db.open();
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

        fn pruning_keeps_each_keys_newest_row(db) {
            let mut store = db.open();
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

        fn used_grants_are_pruned_only_well_after_they_expire(db) {
            let mut store = db.open();
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

        fn a_grant_is_used_once_across_connections_and_batches(db) {
            let mut a = db.open();
            let mut b = db.open();
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
    fn replay_keys_tell_clients_jtis_and_signatures_apart() {
        let k = replay_key("c", Some("x"), &[]);
        assert_eq!(k, replay_key("c", Some("x"), b"ignored"));
        assert_ne!(k, replay_key("d", Some("x"), &[]));
        assert_ne!(k, replay_key("c", Some("y"), &[]));
        assert_ne!(replay_key("c", None, b"x"), k);
        assert_ne!(replay_key("c", None, b"x"), replay_key("c", None, b"y"));
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
