//! One module per subcommand; this one holds what they share (the store location, the
//! clock, confirmation prompts).

pub mod audit;
pub mod edit_key;
pub mod generate;
pub mod get_token;
pub mod init;
pub mod issue_key;
pub mod keygen;
pub mod list_keys;
pub mod report;
pub mod request;
pub mod revoke_key;
pub mod rotate_secret;
pub mod serve;
pub mod sign_grant;
pub mod store;
pub mod token;
pub mod trust;
pub mod usage_log;
pub mod user;
pub mod verify;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::builder::{OsStringValueParser, TypedValueParser};

use crate::admin::{self, Admin, remote::Credential};
use crate::client::{Oidc, OidcSource};
use crate::clock::Clock;
use crate::output::terminal_safe;
use crate::service_key::{KEY_BASE64_VAR, KeyFile, KeySource};
use crate::store::{Location, Store, StoreError};

/// The key file and what a grant signed with it asks for: the same options on sign-grant,
/// get-token and request.
#[derive(Debug, Default, clap::Args)]
pub struct GrantArgs {
    /// The key file: its path, `-` for standard input, or its JSON itself
    ///
    /// A value whose first non-whitespace character is `{` is the key file's JSON (as CI
    /// systems hand secrets over: `--key "$KEY_JSON"`). Without --key and TOKENAUTH_KEY, the
    /// key file may be given base64-encoded in TOKENAUTH_KEY_BASE64 (standard or URL-safe
    /// alphabet; padding and line breaks optional). Key contents are never printed.
    // The value may be the key itself: hidden from --help, and allowed to start with `-` so
    // that clap never quotes it back as an unknown flag.
    #[arg(long, short, env = "TOKENAUTH_KEY", hide_env_values = true, allow_hyphen_values = true,
          value_name = "FILE", value_parser = OsStringValueParser::new().map(KeyArg))]
    pub key: Option<KeyArg>,

    /// Whether clap took --key from TOKENAUTH_KEY (set by `Cli::try_parse_with_sources`).
    #[arg(skip)]
    pub key_from_env: bool,

    /// Act as this user instead of the key's own (needs the impersonate permission)
    #[arg(long, value_name = "USER")]
    pub sub: Option<String>,

    /// Scopes to ask for, space-separated (read, write) [default: the key's scope]
    #[arg(long, value_name = "SCOPES")]
    pub scope: Option<String>,

    /// The private key, from a file of its own, for a key file without one (a key whose
    /// public half was registered with `issue-key --public-key`)
    #[arg(long, value_name = "FILE")]
    pub private_key: Option<PathBuf>,
}

impl GrantArgs {
    /// What get-token and request authenticate with: the job's ID token with `--oidc`, else
    /// the key file (read into `key`, which the credential borrows).
    pub fn credential<'a>(
        &'a self,
        oidc: Option<&'a Oidc>,
        key: &'a mut Option<KeyFile>,
    ) -> anyhow::Result<crate::client::Credential<'a>> {
        Ok(match oidc {
            Some(o) => crate::client::Credential::Oidc(o),
            None => crate::client::Credential::Key {
                key: key.insert(self.key_file()?),
                sub: self.sub.as_deref(),
            },
        })
    }

    /// Reads the key file from wherever it was given, with `--private-key` in it.
    pub fn key_file(&self) -> anyhow::Result<KeyFile> {
        let mut key = KeySource::resolve(
            self.key.as_ref().map(|k| k.0.clone()),
            self.key_from_env,
            std::env::var_os(KEY_BASE64_VAR),
        )?
        .read()?;
        if let Some(path) = &self.private_key {
            // Never the contents in an error: it is a private key.
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the private key {}: {}",
                    path.display(),
                    e.kind()
                )
            })?;
            key.private_key = Some(crate::secret::SecretString::new(text));
            key.private_key_from = Some(path.clone());
        }
        Ok(key)
    }
}

/// A CI job's OpenID Connect ID token instead of a key file: the same options on get-token
/// and request.
#[derive(Debug, clap::Args)]
pub struct OidcArgs {
    /// Get the token with the CI job's OpenID Connect ID token instead of a key file: github,
    /// gitlab, file:PATH or env:VAR
    ///
    /// github asks GitHub Actions for an ID token (the workflow needs `permissions: id-token:
    /// write`); gitlab reads TOKENAUTH_ID_TOKEN, declared with `id_tokens:` in .gitlab-ci.yml;
    /// file:PATH reads the file afresh each time (a Kubernetes projected service account
    /// token, a SPIFFE JWT-SVID); env:VAR reads a variable. The server must trust the token's
    /// issuer (`tokenauth trust add`). ID tokens are never printed or cached.
    #[arg(long, value_name = "SOURCE", value_parser = OidcSourceParser, hide_possible_values = true,
          conflicts_with_all = ["key", "sub", "private_key"])]
    pub oidc: Option<OidcSource>,

    /// With --oidc: the server's token endpoint (a key file names its own), e.g.
    /// https://auth.example.com/token; also from TOKENAUTH_TOKEN_URI
    #[arg(long, value_name = "URI")]
    pub token_uri: Option<String>,

    /// With --oidc github: the audience to ask GitHub for, which must be the trust's
    /// [default: the server's issuer, the token URI without its last path segment]
    #[arg(long, value_name = "AUD")]
    pub audience: Option<String>,

    /// With --oidc: the trust to use when several of the server's trusts of the token's issuer
    /// would match (sent as client_id)
    #[arg(long, value_name = "NAME")]
    pub trust: Option<String>,
}

/// The variable `--token-uri` falls back to. Read by hand rather than by clap, so that it
/// being set where a key file is used is no conflict.
const TOKEN_URI_VAR: &str = "TOKENAUTH_TOKEN_URI";

impl OidcArgs {
    /// What `--oidc` asks for, checked; None without --oidc.
    pub fn oidc(&self) -> anyhow::Result<Option<Oidc>> {
        let Some(source) = self.oidc.clone() else {
            // Checked here, not by clap, which lets a conflicting --key satisfy `requires`.
            let given = [
                (self.token_uri.is_some(), "--token-uri"),
                (self.audience.is_some(), "--audience"),
                (self.trust.is_some(), "--trust"),
            ];
            if let Some((_, flag)) = given.iter().find(|(given, _)| *given) {
                bail!(
                    "{flag} goes with --oidc; with a key file, the key file names the token \
                     endpoint and whom the token is for"
                );
            }
            return Ok(None);
        };
        if std::env::var_os(KEY_BASE64_VAR).is_some() {
            bail!(
                "--oidc and {KEY_BASE64_VAR} both give a credential; unset {KEY_BASE64_VAR} or \
                 drop --oidc"
            );
        }
        let (token_uri, flag) = match &self.token_uri {
            Some(u) => (u.clone(), "--token-uri"),
            None => match std::env::var(TOKEN_URI_VAR) {
                Ok(u) if !u.trim().is_empty() => (u.trim().to_owned(), TOKEN_URI_VAR),
                _ => bail!(
                    "--oidc needs the server's token endpoint: pass --token-uri URI (or set \
                     {TOKEN_URI_VAR}), e.g. --token-uri https://auth.example.com/token"
                ),
            },
        };
        check_token_uri(flag, &token_uri)?;
        if self.audience.is_some() && source != OidcSource::Github {
            bail!(
                "--audience goes with --oidc github, which asks for a token; the ID token of \
                 --oidc {source} already names its audience (for GitLab, the `aud:` of its \
                 `id_tokens:` entry)"
            );
        }
        if let Some(a) = &self.audience
            && (a.is_empty() || a.chars().any(char::is_control))
        {
            bail!(
                "--audience '{}' is not an audience; e.g. https://auth.example.com",
                crate::text::printable(a)
            );
        }
        if let Some(t) = &self.trust
            && (!(1..=64).contains(&t.len())
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
        {
            bail!(
                "--trust '{}' is not a trust name: names are 1 to 64 letters, digits, '.', '_' \
                 and '-' (see `tokenauth trust list`)",
                crate::text::printable(t)
            );
        }
        Ok(Some(Oidc {
            source,
            token_uri,
            audience: self.audience.clone(),
            trust: self.trust.clone(),
        }))
    }
}

/// What an edit's `--ip-range RANGES` / `--no-ip-range` ask for: new ranges, none (every
/// address), or None to leave them alone.
pub fn ip_range_change(
    ip_range: Option<&str>,
    clear: bool,
) -> anyhow::Result<Option<Vec<ipnet::IpNet>>> {
    match (ip_range, clear) {
        (Some(r), _) => {
            let parsed = crate::iprange::parse(r).context("invalid --ip-range")?;
            if parsed.is_empty() {
                bail!("--ip-range is empty; to allow every address pass --no-ip-range");
            }
            Ok(Some(parsed))
        }
        (None, true) => Ok(Some(Vec::new())),
        (None, false) => Ok(None),
    }
}

/// An ID token goes to the token URI: over HTTPS, or plain HTTP to this machine only.
fn check_token_uri(flag: &str, value: &str) -> anyhow::Result<()> {
    let shown = crate::text::printable(value);
    let url = url::Url::parse(value)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{flag} '{shown}' is not an http(s) URL; e.g. https://auth.example.com/token"
            )
        })?;
    if url.scheme() == "http" && !crate::oidc::keys::is_loopback(&url) {
        bail!(
            "{flag} '{shown}' would send the ID token unencrypted; use https:// (plain http is for \
             localhost only)"
        );
    }
    Ok(())
}

/// Parses --oidc. clap's own message quotes the value, which may be an ID token pasted in
/// by mistake (`--oidc "$TOKEN"`): such a value is described, not shown.
#[derive(Clone)]
struct OidcSourceParser;

impl clap::builder::TypedValueParser for OidcSourceParser {
    type Value = OidcSource;

    /// For the completion scripts; file:PATH and env:VAR are open-ended, so help keeps its own
    /// list of all four (`hide_possible_values`).
    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            ["github", "gitlab"]
                .map(clap::builder::PossibleValue::new)
                .into_iter(),
        ))
    }

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<OidcSource, clap::Error> {
        let text = value.to_string_lossy();
        text.parse().map_err(|why: String| {
            let token_like = text.len() > 64
                || text.starts_with("eyJ")
                || crate::service_key::may_hold_secret(value);
            let shown = if token_like {
                format!(
                    "<{} characters, not shown: it may be a token; pass a token in a variable \
                     with env:NAME>",
                    text.chars().count()
                )
            } else {
                format!("'{}'", crate::text::printable(&text))
            };
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("invalid value {shown} for '--oidc <SOURCE>': {why}\n"),
            )
            .with_cmd(cmd)
        })
    }
}

/// Whom client commands trust for HTTPS: the system's roots, plus --ca-cert.
#[derive(Debug, Default, clap::Args)]
pub struct TlsArgs {
    /// Also trust this CA certificate (PEM; the file may hold several) when checking the
    /// server's certificate, e.g. a private CA; the system's roots stay trusted
    #[arg(
        long,
        env = "TOKENAUTH_CA_CERT",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub ca_cert: Option<PathBuf>,
}

/// A --key value as given, which may be the key file itself: `Debug` hides it.
#[derive(Clone)]
pub struct KeyArg(pub OsString);

impl std::fmt::Debug for KeyArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// An error already reported on stdout/stderr: exit with this code, print nothing more.
#[derive(Debug)]
pub struct Quiet(pub u8);

impl std::fmt::Display for Quiet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Quiet {}

/// The variable --db falls back to.
const DB_VAR: &str = "TOKENAUTH_DB";

/// What every command may need.
pub struct Ctx {
    db: Option<PathBuf>,
    pub clock: Clock,
    /// `--server`, and who to call it as.
    server: Option<String>,
    remote: Option<GrantArgs>,
    token: Option<crate::secret::SecretString>,
    ca_cert: Option<PathBuf>,
}

impl Ctx {
    /// What the global flags say: the store, and for remote administration the server, the
    /// caller's credential and whom to trust for HTTPS.
    pub fn new(
        db: Option<PathBuf>,
        server: Option<String>,
        remote: GrantArgs,
        token: Option<crate::secret::SecretString>,
        tls: TlsArgs,
    ) -> Ctx {
        Ctx {
            db,
            clock: Clock::from_env(),
            server,
            remote: Some(remote),
            token,
            ca_cert: tls.ca_cert,
        }
    }

    /// The store named by --db / TOKENAUTH_DB (a path or a postgres:// URL), or the default
    /// SQLite file.
    pub fn location(&self) -> anyhow::Result<Location> {
        match &self.db {
            Some(p) => Ok(Location::parse(p.as_os_str())?),
            None => Ok(Location::Sqlite(
                dirs::data_dir()
                    .context(
                        "cannot find a data directory (set XDG_DATA_HOME or HOME, or pass --db PATH)",
                    )?
                    .join("tokenauth")
                    .join("tokenauth.db"),
            )),
        }
    }

    /// Opens the store, which must exist: a command that reads or changes what is there,
    /// pointed at a mistyped path, fails naming it and creates nothing. Changes made through
    /// it are audited as the OS user on this host.
    pub fn store(&self) -> anyhow::Result<Store> {
        self.open_store(false)
    }

    /// Opens the store, creating it on first use: for the commands that add things (init,
    /// issue-key, user add, token create, trust add, serve). Settings left unset stay unset,
    /// so that a default in use can be told apart from a choice.
    pub fn store_creating(&self) -> anyhow::Result<Store> {
        self.open_store(true)
    }

    fn open_store(&self, create: bool) -> anyhow::Result<Store> {
        let location = self.location()?;
        let opened = if create {
            Store::connect(&location)
        } else {
            Store::connect_existing(&location)
        };
        let mut store = opened.map_err(|e| match e {
            StoreError::Missing { path } => self.missing_store(&path),
            e => e.into(),
        })?;
        store.set_actor(cli_actor(), self.clock);
        Ok(store)
    }

    /// A store that is not there, named with where its path came from and the fix.
    fn missing_store(&self, path: &std::path::Path) -> anyhow::Error {
        let path = path.display();
        let from_env = |p: &PathBuf| std::env::var_os(DB_VAR).as_deref() == Some(p.as_os_str());
        match &self.db {
            None => anyhow::anyhow!(
                "there is no store at {path} (the default location: neither --db nor {DB_VAR} \
                 is set); nothing was created: pass --db PATH for an existing store, or create \
                 one here with `tokenauth init`"
            ),
            Some(p) => {
                let named_by = if from_env(p) { DB_VAR } else { "--db" };
                anyhow::anyhow!(
                    "there is no store at {path} (named by {named_by}); nothing was created: \
                     check the path, or create a store there with `tokenauth init`"
                )
            }
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Whether --server (or TOKENAUTH_SERVER) sends the admin commands to a server.
    pub fn remote(&self) -> bool {
        self.server.is_some()
    }

    /// Refuses --server for a command that works on this machine only.
    pub fn local_only(&self, command: &str) -> anyhow::Result<()> {
        if self.server.is_some() {
            bail!(
                "`{command}` works on a local store only; drop --server (or unset TOKENAUTH_SERVER)"
            );
        }
        Ok(())
    }

    /// Where the admin commands act: the local store (which must exist, as for
    /// [`Ctx::store`]), or with --server the server's admin API.
    pub fn admin(&self) -> anyhow::Result<Box<dyn Admin>> {
        self.open_admin(false)
    }

    /// [`Ctx::admin`] for the commands that add things: a local store is created on first
    /// use.
    pub fn admin_creating(&self) -> anyhow::Result<Box<dyn Admin>> {
        self.open_admin(true)
    }

    fn open_admin(&self, create: bool) -> anyhow::Result<Box<dyn Admin>> {
        let Some(server) = &self.server else {
            return Ok(Box::new(admin::Local::new(
                self.open_store(create)?,
                self.clock,
            )));
        };
        let credential = match (&self.token, &self.remote) {
            (Some(t), _) => Credential::Token(t.clone()),
            (None, Some(grant))
                if grant.key.is_some() || std::env::var_os(KEY_BASE64_VAR).is_some() =>
            {
                Credential::Key {
                    key: Box::new(grant.key_file()?),
                    sub: grant.sub.clone(),
                    scope: grant.scope.clone(),
                }
            }
            _ => bail!(
                "--server needs a credential: --key FILE (a key of a user with the admin or \
                 manage-own-keys permission) or --token TOKEN"
            ),
        };
        Ok(Box::new(admin::Remote::new(
            server,
            credential,
            self.clock,
            self.ca_cert.clone(),
        )?))
    }
}

/// Who the CLI's changes are audited as: the OS user and the host.
pub fn cli_actor() -> String {
    let user = whoami::username().unwrap_or_else(|_| "unknown".to_owned());
    let host = whoami::hostname().unwrap_or_else(|_| "unknown-host".to_owned());
    format!("{user}@{host}")
}

/// Asks before a destructive action: `--yes` skips the question; without a terminal to ask
/// on, the action is refused rather than taken silently.
pub fn confirm(question: &str, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    // Questions quote user names and key titles.
    let question = terminal_safe(question);
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        bail!("{question} needs confirmation and there is no terminal to ask on; pass --yes");
    }
    let ok = dialoguer::Confirm::new()
        .with_prompt(question.as_ref())
        .default(false)
        .interact()
        .context("reading the answer")?;
    if !ok {
        bail!("cancelled; nothing was changed");
    }
    Ok(())
}

/// A scope on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ScopeArg {
    /// Read-only access
    Read,
    /// Read and write access
    Write,
}

impl From<ScopeArg> for crate::scope::Scope {
    fn from(s: ScopeArg) -> crate::scope::Scope {
        match s {
            ScopeArg::Read => crate::scope::Scope::Read,
            ScopeArg::Write => crate::scope::Scope::Write,
        }
    }
}

pub use crate::validate::{check_user_name, parse_expires, parse_origins};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_with_format_characters_are_refused_naming_the_character() {
        for c in [
            '\u{202E}',
            '\u{200B}',
            '\u{200D}',
            '\u{2066}',
            '\u{FEFF}',
            '\u{AD}',
            '\u{E0041}',
        ] {
            let err = check_user_name(&format!("evil{c}"))
                .unwrap_err()
                .to_string();
            let escaped = c.escape_unicode().to_string();
            assert!(
                err.starts_with(&format!("invalid user name 'evil{escaped}': {escaped} ")),
                "{err}"
            );
            assert!(!err.contains(c), "{err:?}");
        }
    }

    #[test]
    fn ordinary_user_names_pass() {
        for name in [
            "ci-bot",
            "deploy.bot_2",
            "josé",
            "構築ボット",
            "🚀bot",
            r"CORP\ci-bot",
        ] {
            check_user_name(name).unwrap();
        }
        for bad in ["", "a b", "a\tb", "a\u{1b}b", "a\u{85}b"] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
    }
}
