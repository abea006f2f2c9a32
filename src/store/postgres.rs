//! The PostgreSQL backend: the `postgres://` URL (its password never shown), connections
//! with timeouts and TLS, PostgreSQL's own errors, migrations, and change notifications.
//!
//! The synchronous `postgres` crate: the CLI is synchronous and the server only talks to
//! the database from its own threads (snapshot refresher, usage writer), never from the
//! request path, so an async driver or a pool would buy nothing here.

use std::cell::{Cell as StdCell, RefCell};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Statement};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::migrations::PG_MIGRATIONS;
use super::sql::{Cell, Param, Row, dollar_placeholders};
use super::{GrantUse, Result, StoreError, UsageRow};

/// How long connecting may take (unless the URL sets `connect_timeout`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// No statement runs longer; a hung database is an error, not a hung request or command.
const STATEMENT_TIMEOUT_MS: u64 = 15_000;
/// ... except a read of whole tables (a server's start, `store copy`): a million rows read
/// by a client that does something with each take longer than that.
const BULK_STATEMENT_TIMEOUT_MS: u64 = 600_000;
/// The channel the generation triggers notify.
pub const CHANNEL: &str = "tokenauth_changes";
/// Every admin write holds this transaction-level advisory lock (its key spells
/// "tokenaut"): writers queue instead of failing on serialization conflicts.
const BEGIN_ADMIN: &str = "BEGIN; SELECT pg_advisory_xact_lock(8389754676633777524)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyFull,
}

/// A `postgres://` URL: what to connect to, and how to print it (without the password).
#[derive(Clone)]
pub struct PgUrl {
    config: postgres::Config,
    tls: TlsMode,
    root_cert: Option<std::path::PathBuf>,
    shown: String,
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Display for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Whether a --db value names PostgreSQL rather than an SQLite file.
pub fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

impl PgUrl {
    pub fn parse(raw: &str) -> Result<PgUrl> {
        let bad = |shown: &str, reason: String| StoreError::BadUrl {
            url: shown.to_owned(),
            reason,
        };
        let mut url = url::Url::parse(raw).map_err(|e| {
            bad(
                "the postgres:// URL given",
                format!("{e} (percent-encode special characters in the password)"),
            )
        })?;
        let mut tls = TlsMode::Prefer;
        let mut root_cert = None;
        let mut kept: Vec<(String, String)> = Vec::new();
        let mut has_timeout = false;
        for (k, v) in url.query_pairs() {
            match &*k {
                "sslmode" => {
                    tls = match &*v {
                        "disable" => TlsMode::Disable,
                        "allow" | "prefer" => TlsMode::Prefer,
                        "require" => TlsMode::Require,
                        "verify-ca" | "verify-full" => TlsMode::VerifyFull,
                        other => {
                            return Err(bad(
                                &redact(&url),
                                format!(
                                    "sslmode '{other}' is unknown; use disable, prefer, require, verify-ca or verify-full"
                                ),
                            ));
                        }
                    }
                }
                "sslrootcert" => root_cert = Some(std::path::PathBuf::from(&*v)),
                _ => {
                    has_timeout |= k == "connect_timeout";
                    kept.push((k.into_owned(), v.into_owned()));
                }
            }
        }
        let shown = redact(&url);
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(&kept);
        }
        let mut config: postgres::Config = url
            .as_str()
            .parse()
            .map_err(|e: postgres::Error| bad(&shown, e.to_string()))?;
        if !has_timeout {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        if config.get_user().is_none() {
            return Err(bad(
                &shown,
                "it names no user; e.g. postgres://tokenauth:PASSWORD@db.example:5432/tokenauth"
                    .into(),
            ));
        }
        config
            .application_name("tokenauth")
            .tcp_user_timeout(Duration::from_secs(10))
            .keepalives_idle(Duration::from_secs(10))
            .ssl_mode(match tls {
                TlsMode::Disable => postgres::config::SslMode::Disable,
                TlsMode::Prefer => postgres::config::SslMode::Prefer,
                TlsMode::Require | TlsMode::VerifyFull => postgres::config::SslMode::Require,
            });
        Ok(PgUrl {
            config,
            tls,
            root_cert,
            shown,
        })
    }

    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or("")
    }

    fn connector(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.tls_err(e.to_string()))?;
        let config = if self.tls == TlsMode::VerifyFull {
            let mut roots = rustls::RootCertStore::empty();
            match &self.root_cert {
                Some(path) => {
                    use rustls::pki_types::pem::PemObject;
                    let pem = std::fs::read(path).map_err(|e| {
                        self.tls_err(format!("cannot read sslrootcert {}: {e}", path.display()))
                    })?;
                    for cert in CertificateDer::pem_slice_iter(&pem) {
                        let cert = cert.map_err(|e| {
                            self.tls_err(format!("sslrootcert {}: {e}", path.display()))
                        })?;
                        roots
                            .add(cert)
                            .map_err(|e| self.tls_err(format!("{}: {e}", path.display())))?;
                    }
                }
                None => {
                    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            // libpq's `require` and `prefer` encrypt without checking who answers.
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
                .with_no_client_auth()
        };
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }

    fn tls_err(&self, reason: String) -> StoreError {
        StoreError::BadUrl {
            url: self.shown.clone(),
            reason,
        }
    }

    /// A new connection, with the statement timeout set.
    pub fn connect(&self) -> Result<Client> {
        self.wait(&self.start_connect())
    }

    /// Starts connecting on a thread of its own: the driver's `connect_timeout` covers
    /// only the TCP connect, and a server that accepts and never answers would hold the
    /// caller forever.
    fn start_connect(&self) -> mpsc::Receiver<Result<Client>> {
        let (tx, rx) = mpsc::channel();
        let url = self.clone();
        let spawned = std::thread::Builder::new()
            .name("pg-connect".into())
            .spawn(move || {
                let _ = tx.send(url.connect_now());
            });
        if let Err(e) = spawned {
            let (tx, failed) = mpsc::channel();
            let _ = tx.send(Err(StoreError::Unavailable {
                url: self.shown.clone(),
                reason: e.to_string(),
            }));
            return failed;
        }
        rx
    }

    /// Waits for an attempt up to the connect timeout.
    fn wait(&self, attempt: &mpsc::Receiver<Result<Client>>) -> Result<Client> {
        let limit = self
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT);
        attempt.recv_timeout(limit).unwrap_or_else(|_| {
            Err(StoreError::Unavailable {
                url: self.shown.clone(),
                reason: format!(
                    "no answer within {} s (connect_timeout)",
                    limit.as_secs_f64()
                ),
            })
        })
    }

    fn connect_now(&self) -> Result<Client> {
        let mut client = self
            .config
            .connect(self.connector()?)
            .map_err(|e| self.connect_err(e))?;
        client
            .batch_execute(&format!(
                "SET statement_timeout = {STATEMENT_TIMEOUT_MS}; SET client_min_messages = warning"
            ))
            .map_err(|e| map_err(e, &self.shown))?;
        Ok(client)
    }

    fn connect_err(&self, e: postgres::Error) -> StoreError {
        let url = self.shown.clone();
        if let Some(db) = e.as_db_error() {
            let code = db.code().code();
            if code.starts_with("28") {
                return StoreError::Login {
                    url,
                    user: self.user().to_owned(),
                    reason: db.message().to_owned(),
                };
            }
            if code == "3D000" {
                return StoreError::NoDatabase {
                    url,
                    reason: db.message().to_owned(),
                };
            }
        }
        let reason = describe(&e);
        if reason.contains("TLS handshake") {
            return StoreError::Tls { url, reason };
        }
        StoreError::Unavailable { url, reason }
    }
}

/// The URL with its password (in the authority or the query) replaced by `***`.
fn redact(url: &url::Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query_pairs().any(|(k, _)| k == "password") {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" { "***".into() } else { v };
                (k.into_owned(), v.into_owned())
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// An error's message with its causes ("error connecting to server: Connection refused").
fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_owned();
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

pub fn map_err(e: postgres::Error, url: &str) -> StoreError {
    let url = url.to_owned();
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return match code {
            "23505" => StoreError::Duplicate(db.message().to_owned()),
            "40001" | "40P01" => StoreError::Conflict(db.message().to_owned()),
            "53100" => StoreError::Full { store: url },
            "25006" => StoreError::ReadOnlyDatabase { url },
            // Timeouts and shutdowns: the database is (for now) out of reach.
            "57014" | "57P01" | "57P02" | "57P03" | "53300" => StoreError::Unavailable {
                url,
                reason: db.message().to_owned(),
            },
            c if c.starts_with("08") => StoreError::Unavailable {
                url,
                reason: db.message().to_owned(),
            },
            _ => StoreError::Postgres {
                url,
                message: db.message().to_owned(),
            },
        };
    }
    StoreError::Unavailable {
        url,
        reason: describe(&e),
    }
}

/// libpq's `sslmode=require`: the channel is encrypted, the certificate is not checked
/// (`verify-full` checks it).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                _ => Err(format!("an integer cannot go into a {ty} parameter").into()),
            },
            Param::Text(s) => s.to_sql(ty, out),
            Param::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::BOOL
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
                | Type::BYTEA
        )
    }

    to_sql_checked!();
}

impl<'a> postgres::types::FromSql<'a> for Cell {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match *ty {
            Type::INT8 => Cell::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Cell::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Cell::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Cell::Int(bool::from_sql(ty, raw)?.into()),
            Type::BYTEA => Cell::Blob(raw.to_vec()),
            _ => Cell::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(
        _: &Type,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Cell::Null)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::BOOL
                | Type::BYTEA
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
        )
    }
}

/// One connection, re-established on the next call after it broke (never inside a
/// transaction: that transaction is lost, and its caller told).
pub struct Db {
    url: Arc<PgUrl>,
    client: RefCell<Option<Client>>,
    /// A connection attempt that outlived its timeout: the next call waits on it again
    /// rather than start another (one attempt at a time, however long a server stalls).
    pending: RefCell<Option<mpsc::Receiver<Result<Client>>>>,
    statements: RefCell<HashMap<String, Statement>>,
    in_tx: StdCell<bool>,
    listening: StdCell<bool>,
}

impl Db {
    /// Connects and migrates.
    pub fn open(url: Arc<PgUrl>) -> Result<Db> {
        let client = url.connect()?;
        let db = Db {
            url,
            client: RefCell::new(Some(client)),
            pending: RefCell::new(None),
            statements: RefCell::new(HashMap::new()),
            in_tx: StdCell::new(false),
            listening: StdCell::new(false),
        };
        db.migrate()?;
        Ok(db)
    }

    pub fn url(&self) -> &PgUrl {
        &self.url
    }

    fn err(&self, e: postgres::Error) -> StoreError {
        map_err(e, &self.url.shown)
    }

    /// Runs `f` on a live connection, reconnecting first when the last one broke.
    fn with<T>(&self, f: impl FnOnce(&mut Client, &Self) -> Result<T>) -> Result<T> {
        let mut slot = self.client.borrow_mut();
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = None;
            self.statements.borrow_mut().clear();
            if self.in_tx.get() {
                return Err(StoreError::Unavailable {
                    url: self.url.shown.clone(),
                    reason: "the connection broke during a transaction".into(),
                });
            }
            let attempt = self
                .pending
                .borrow_mut()
                .take()
                .unwrap_or_else(|| self.url.start_connect());
            let mut client = match self.url.wait(&attempt) {
                Err(e) if matches!(attempt.try_recv(), Err(mpsc::TryRecvError::Empty)) => {
                    *self.pending.borrow_mut() = Some(attempt);
                    return Err(e);
                }
                other => other?,
            };
            if self.listening.get() {
                client
                    .batch_execute(&format!("LISTEN {CHANNEL}"))
                    .map_err(|e| self.err(e))?;
            }
            *slot = Some(client);
        }
        let client = slot.as_mut().expect("connected above");
        f(client, self)
    }

    fn statement(&self, client: &mut Client, sql: &str) -> Result<Statement> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let stmt = client
            .prepare(&dollar_placeholders(sql))
            .map_err(|e| self.err(e))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    pub fn batch(&self, sql: &str) -> Result<()> {
        self.with(|c, db| c.batch_execute(sql).map_err(|e| db.err(e)))
    }

    pub fn exec(&self, sql: &str, params: &[Param]) -> Result<u64> {
        self.with(|c, db| {
            let stmt = db.statement(c, sql)?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            c.execute(&stmt, &refs).map_err(|e| db.err(e))
        })
    }

    pub fn rows(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        self.with(|c, db| {
            let stmt = db.statement(c, sql)?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            let rows = c.query(&stmt, &refs).map_err(|e| db.err(e))?;
            rows.iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| r.try_get::<_, Cell>(i).map_err(|e| db.err(e)))
                        .collect::<Result<Vec<Cell>>>()
                        .map(Row)
                })
                .collect()
        })
    }

    /// Runs `f` with the statement timeout for reads of whole tables.
    pub fn bulk<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.batch(&format!(
            "SET statement_timeout = {BULK_STATEMENT_TIMEOUT_MS}"
        ))?;
        let result = f();
        // A connection that broke meanwhile comes back with the usual timeout anyway.
        let _ = self.batch(&format!("SET statement_timeout = {STATEMENT_TIMEOUT_MS}"));
        result
    }

    /// Streams the rows to `f` as they arrive, without holding them all.
    pub fn each(
        &self,
        sql: &str,
        params: &[Param],
        mut f: impl FnMut(Row) -> Result<()>,
    ) -> Result<()> {
        self.with(|c, db| {
            let stmt = db.statement(c, sql)?;
            let refs = params.iter().map(|p| p as &(dyn ToSql + Sync));
            let mut rows = c.query_raw(&stmt, refs).map_err(|e| db.err(e))?;
            while let Some(r) = rows.next().map_err(|e| db.err(e))? {
                let cells = (0..r.len())
                    .map(|i| r.try_get::<_, Cell>(i).map_err(|e| db.err(e)))
                    .collect::<Result<Vec<Cell>>>()?;
                f(Row(cells))?;
            }
            Ok(())
        })
    }

    /// Starts a transaction; `admin` ones queue on one advisory lock (the usage writer's do
    /// not: replicas append rows side by side, and the used-grants key decides replays).
    pub fn begin(&self, admin: bool) -> Result<()> {
        self.batch(if admin { BEGIN_ADMIN } else { "BEGIN" })?;
        self.in_tx.set(true);
        Ok(())
    }

    /// A read transaction: every read in it sees one snapshot.
    pub fn begin_read(&self) -> Result<()> {
        self.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        self.in_tx.set(true);
        Ok(())
    }

    pub fn commit(&self) -> Result<()> {
        let r = self.batch("COMMIT");
        self.in_tx.set(false);
        r
    }

    pub fn rollback(&self) {
        if self.in_tx.replace(false) {
            // A broken connection has no transaction left to roll back.
            let mut slot = self.client.borrow_mut();
            if let Some(c) = slot.as_mut().filter(|c| !c.is_closed()) {
                let _ = c.batch_execute("ROLLBACK");
            }
        }
    }

    /// The schema version, 0 for an empty database.
    pub fn user_version(&self) -> Result<i64> {
        let exists = self.rows("SELECT to_regclass('tokenauth_schema') IS NOT NULL", &[])?;
        if !exists
            .first()
            .map(|r| r.get::<bool>(0))
            .transpose()?
            .unwrap_or(false)
        {
            return Ok(0);
        }
        self.rows("SELECT version FROM tokenauth_schema", &[])?
            .first()
            .map_or(Ok(0), |r| r.get(0))
    }

    fn migrate(&self) -> Result<()> {
        let known = PG_MIGRATIONS.len() as i64;
        let too_new = |found| StoreError::TooNew {
            store: self.url.shown.clone(),
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
        self.begin(true)?;
        let run = || -> Result<()> {
            self.batch(
                "CREATE TABLE IF NOT EXISTS tokenauth_schema (version BIGINT NOT NULL);
                 INSERT INTO tokenauth_schema SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM tokenauth_schema)",
            )?;
            // Another process may have migrated while we waited for the lock.
            let mut version = self.user_version()?;
            if version > known {
                return Err(too_new(version));
            }
            while version < known {
                self.batch(PG_MIGRATIONS[version as usize])?;
                version += 1;
                self.exec(
                    "UPDATE tokenauth_schema SET version = ?1",
                    &[Param::Int(version)],
                )?;
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

    /// The usage writer's batch in two statements: claim every grant at once (the keys
    /// that went in are the fresh ones; a key twice in the batch is fresh the first time),
    /// then write every row at once, in order. Inside the caller's transaction.
    pub fn insert_usage(&self, rows: &[UsageRow]) -> Result<Vec<bool>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        self.with(|c, db| {
            let claims: Vec<&GrantUse> = rows.iter().filter_map(|r| r.grant_use.as_ref()).collect();
            let mut fresh: HashSet<(i64, Vec<u8>)> = HashSet::new();
            if !claims.is_empty() {
                let stmt = db.statement(
                    c,
                    "INSERT INTO used_grants(exp, key) SELECT * FROM unnest($1::bigint[], $2::bytea[])
                     ON CONFLICT DO NOTHING RETURNING exp, key",
                )?;
                let exps: Vec<i64> = claims.iter().map(|g| g.exp).collect();
                let keys: Vec<&[u8]> = claims.iter().map(|g| &g.key[..]).collect();
                for r in c.query(&stmt, &[&exps, &keys]).map_err(|e| db.err(e))? {
                    fresh.insert((r.get(0), r.get(1)));
                }
            }
            let written: Vec<bool> = rows
                .iter()
                .map(|r| {
                    r.grant_use
                        .as_ref()
                        .is_none_or(|g| fresh.remove(&(g.exp, g.key.to_vec())))
                })
                .collect();
            let col = |f: fn(&UsageRow) -> Option<&str>| -> Vec<Option<&str>> {
                rows.iter().map(f).collect()
            };
            let times: Vec<i64> = rows.iter().map(|r| r.time).collect();
            let ok: Vec<i64> = rows
                .iter()
                .zip(&written)
                .map(|(r, w)| i64::from(r.ok && *w))
                .collect();
            let reasons: Vec<Option<&str>> = rows
                .iter()
                .zip(&written)
                .map(|(r, w)| match w {
                    true => r.reason.as_deref(),
                    false => Some(super::replay_reason(r.grant_jti.is_some())),
                })
                .collect();
            let token_jtis: Vec<Option<&str>> = rows
                .iter()
                .zip(&written)
                .map(|(r, w)| r.token_jti.as_deref().filter(|_| *w))
                .collect();
            let grant_exps: Vec<Option<i64>> = rows.iter().map(|r| r.grant_exp).collect();
            let no_jti: Vec<i64> = rows.iter().map(|r| i64::from(r.no_jti)).collect();
            let stmt = db.statement(
                c,
                "INSERT INTO usage_log(time, key_id, user_name, subject, address, user_agent, ok, reason,
                    grant_jti, grant_exp, token_jti, no_jti, pat_id, trust, claims)
                 SELECT t, k, u, s, a, ua, o, r, gj, ge, tj, n, p, tr, cl FROM unnest($1::bigint[], $2::text[],
                    $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[], $9::text[],
                    $10::bigint[], $11::text[], $12::bigint[], $13::text[], $14::text[], $15::text[])
                    WITH ORDINALITY AS x(t, k, u, s, a, ua, o, r, gj, ge, tj, n, p, tr, cl, i) ORDER BY i",
            )?;
            c.execute(
                &stmt,
                &[
                    &times,
                    &col(|r| r.key_id.as_deref()),
                    &col(|r| r.user.as_deref()),
                    &col(|r| r.subject.as_deref()),
                    &col(|r| Some(r.address.as_str())),
                    &col(|r| r.user_agent.as_deref()),
                    &ok,
                    &reasons,
                    &col(|r| r.grant_jti.as_deref()),
                    &grant_exps,
                    &token_jtis,
                    &no_jti,
                    &col(|r| r.pat_id.as_deref()),
                    &col(|r| r.trust.as_deref()),
                    &col(|r| r.claims.as_deref()),
                ],
            )
            .map_err(|e| db.err(e))?;
            Ok(written)
        })
    }

    /// Subscribes this connection to change notifications (kept across reconnects).
    pub fn listen(&self) -> Result<()> {
        self.batch(&format!("LISTEN {CHANNEL}"))?;
        self.listening.set(true);
        Ok(())
    }

    /// Waits up to `timeout` for a change notification; true when one came. Errors when the
    /// connection is gone (the next call reconnects).
    pub fn wait_for_change(&self, timeout: Duration) -> Result<bool> {
        self.with(|c, db| {
            let mut n = c.notifications();
            let got = n
                .timeout_iter(timeout)
                .next()
                .map_err(|e| db.err(e))?
                .is_some();
            // Several commits may have notified: one reload answers them all.
            let mut more = n.iter();
            while more.next().map_err(|e| db.err(e))?.is_some() {}
            Ok(got)
        })
    }
}

/// A database of its own for one test, created on the server `TOKENAUTH_TEST_POSTGRES`
/// names (default `postgres://postgres@127.0.0.1:5432/postgres`) and dropped afterwards, so
/// tests run in parallel. For tests only.
#[doc(hidden)]
pub struct ScratchDatabase {
    admin: PgUrl,
    name: String,
    /// The new database's URL.
    pub url: String,
}

pub const TEST_SERVER_VAR: &str = "TOKENAUTH_TEST_POSTGRES";

impl ScratchDatabase {
    /// None (with a notice on stderr) when no server answers.
    pub fn create(test: &str) -> Option<ScratchDatabase> {
        let admin_url = std::env::var(TEST_SERVER_VAR)
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        Self::create_on(&admin_url, test)
    }

    /// A database on the server at `admin_url` (a URL naming an existing database).
    pub fn create_on(admin_url: &str, test: &str) -> Option<ScratchDatabase> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let admin = PgUrl::parse(admin_url).expect("TOKENAUTH_TEST_POSTGRES is a postgres:// URL");
        let mut client = match admin.connect() {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "skipped {test}: no PostgreSQL ({e}); set {TEST_SERVER_VAR} to a server's URL"
                );
                return None;
            }
        };
        let name = format!(
            "tokenauth_test_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("creating a test database");
        let mut url = url::Url::parse(admin_url).expect("a URL");
        url.set_path(&name);
        Some(ScratchDatabase {
            admin,
            name,
            url: url.to_string(),
        })
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = self.admin.clone();
        // Off any async runtime the test may be in (the driver blocks).
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = admin.connect() {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        })
        .join();
    }
}

impl Drop for Db {
    /// The driver closes a connection by blocking on its own runtime, which panics on a
    /// thread that drives async tasks (a server dropping its state): close it elsewhere.
    fn drop(&mut self) {
        if let Some(client) = self.client.get_mut().take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = std::thread::Builder::new()
                .name("pg-close".into())
                .spawn(move || drop(client));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_print_without_their_password() {
        let u =
            PgUrl::parse("postgres://alice:s3cret@db.example:6543/auth?sslmode=require").unwrap();
        assert_eq!(
            u.to_string(),
            "postgres://alice:***@db.example:6543/auth?sslmode=require"
        );
        assert!(!format!("{u:?}").contains("s3cret"));
        let q = PgUrl::parse("postgres://alice@h/db?password=s3cret").unwrap();
        assert!(!q.to_string().contains("s3cret"), "{q}");
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        let e = PgUrl::parse("postgres://a:pw@h/db?sslmode=sometimes")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sslmode 'sometimes'"), "{e}");
        assert!(!e.contains("pw@"), "{e}");
        let e = PgUrl::parse("postgres://h/db").unwrap_err().to_string();
        assert!(e.contains("names no user"), "{e}");
        let e = PgUrl::parse("postgres://a@h:99999/db")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a valid PostgreSQL URL"), "{e}");
    }

    #[test]
    fn search_path_options_pass_through() {
        let u =
            PgUrl::parse("postgres://a@h/db?options=-csearch_path%3Dt1&sslmode=disable").unwrap();
        assert_eq!(u.tls, TlsMode::Disable);
        assert_eq!(u.config.get_options(), Some("-csearch_path=t1"));
    }
}
