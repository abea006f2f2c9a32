//! What can go wrong in the store, in terms callers branch on.

use std::path::PathBuf;

use super::sqlite::BUSY_TIMEOUT;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the store {path}: {source}; check the path and its permissions, or pass another --db"
    )]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A command that only reads or changes what is there was pointed at a file that does
    /// not exist: nothing was created.
    #[error(
        "there is no store at {path}; check the path, or create a store there with `tokenauth init`"
    )]
    Missing { path: PathBuf },
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
    #[error(
        "the disk holding the store {store} is full; nothing was changed: free space on its file system and retry"
    )]
    Full { store: String },
    #[error(
        "PostgreSQL at {url} takes no writes (a standby, or default_transaction_read_only); nothing was changed: point --db at the primary"
    )]
    ReadOnlyDatabase { url: String },
    /// Group or others may read or write the store's file (or its -wal or -shm): its
    /// secrets and hashes are not private. `exposed` names each file and its mode.
    #[error(
        "refusing the store {path}: other local users may read or change it ({exposed}); run `chmod 600 {fix}`"
    )]
    Exposed {
        path: PathBuf,
        exposed: String,
        fix: String,
    },
    /// The store's file belongs to another user, who could change its keys and secrets.
    #[error(
        "refusing the store {path}: {file} is owned by uid {owner}, not by this process's user (uid {me}); run tokenauth as uid {owner}, or make this user its owner with `chown {me} {fix}`"
    )]
    NotOwned {
        path: PathBuf,
        file: String,
        owner: u32,
        me: u32,
        fix: String,
    },
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
    #[error(
        "user '{name}' is named by trust relationship(s) {trusts}; remove them or their --user first with `tokenauth trust edit` or `tokenauth trust remove`"
    )]
    UserHasTrusts { name: String, trusts: String },
    #[error("no trust relationship named '{0}'; see `tokenauth trust list`")]
    UnknownTrust(String),
    #[error(
        "a trust relationship named '{0}' already exists; pick another name or `tokenauth trust edit {0}`"
    )]
    TrustExists(String),
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

    /// The store takes no writes until someone frees space or fixes its mount.
    pub fn is_unwritable(&self) -> bool {
        matches!(
            self,
            StoreError::Full { .. }
                | StoreError::ReadOnly { .. }
                | StoreError::ReadOnlyDatabase { .. }
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
