//! The command line: global flags and the command enum. Help text is the doc comments.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::TypedValueParser;
use clap::parser::ValueSource;
use clap::{Args as _, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::cmd;

/// `--version`: what `-V` says (the crate version and, from a checkout, the commit: see
/// build.rs), then what a bug report needs to know about the build.
const LONG_VERSION: &str = concat!(
    env!("TOKENAUTH_VERSION"),
    "\nstores: SQLite, PostgreSQL",
    "\nfeatures: ",
    env!("TOKENAUTH_FEATURES")
);

/// Machine-to-machine authentication with service keys.
///
/// Admins issue and revoke service keys and rotate user secrets; CI scripts sign JWT grants
/// (RFC 7523) with a key file and exchange them for access tokens; `tokenauth serve` is the
/// token endpoint and tells resource servers whether a token is good.
#[derive(Debug, Parser)]
#[command(
    name = "tokenauth",
    version = env!("TOKENAUTH_VERSION"),
    long_version = LONG_VERSION,
    propagate_version = true,
    max_term_width = 100
)]
#[command(after_help = "Examples:
  tokenauth init --token-uri https://auth.example.com/token
  tokenauth issue-key --user ci-bot --ip-range 10.0.0.0/8 --out ci-bot.json
  tokenauth serve --listen 127.0.0.1:8080
  TOKEN=$(tokenauth get-token --key ci-bot.json)
  tokenauth --server https://auth.example.com --key admin.json issue-key --user ci")]
pub struct Cli {
    /// The store: an SQLite file, or a PostgreSQL URL for several servers on one store
    /// (postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full; also options=-csearch_path=S)
    /// [default: $XDG_DATA_HOME/tokenauth/tokenauth.db]
    #[arg(
        long,
        global = true,
        env = "TOKENAUTH_DB",
        hide_env_values = true,
        value_name = "PATH|URL"
    )]
    pub db: Option<PathBuf>,

    /// Run the admin commands (user, issue-key, list-keys, edit-key, revoke-key,
    /// rotate-secret, token, trust, audit, usage-log, report) on this server's admin API
    /// (`serve --admin-api`) instead of a local store, with --key or --token as the caller
    #[arg(
        long,
        env = "TOKENAUTH_SERVER",
        hide_env_values = true,
        value_name = "URL",
        help_heading = "Remote administration",
        value_parser = clap::builder::NonEmptyStringValueParser::new()
    )]
    pub server: Option<String>,

    #[command(flatten, next_help_heading = "Remote administration")]
    pub remote: cmd::GrantArgs,

    #[command(flatten, next_help_heading = "Remote administration")]
    pub remote_tls: cmd::TlsArgs,

    /// With --server: a bearer token to call the admin API with (a personal access token
    /// or an access token) instead of a key file
    #[arg(long, env = "TOKENAUTH_TOKEN", hide_env_values = true, value_name = "TOKEN",
          help_heading = "Remote administration",
          value_parser = clap::builder::NonEmptyStringValueParser::new().map(crate::secret::SecretString::new))]
    pub token: Option<crate::secret::SecretString>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Init(cmd::init::Args),
    User(cmd::user::Args),
    IssueKey(cmd::issue_key::Args),
    Keygen(cmd::keygen::Args),
    ListKeys(cmd::list_keys::Args),
    EditKey(cmd::edit_key::Args),
    RevokeKey(cmd::revoke_key::Args),
    RotateSecret(cmd::rotate_secret::Args),
    Token(cmd::token::Args),
    Trust(cmd::trust::Args),
    SignGrant(cmd::sign_grant::Args),
    Serve(cmd::serve::Args),
    GetToken(cmd::get_token::Args),
    Request(cmd::request::Args),
    Verify(cmd::verify::Args),
    UsageLog(cmd::usage_log::Args),
    Audit(cmd::audit::Args),
    Report(cmd::report::Args),
    Store(cmd::store::Args),
    /// `tokenauth generate`, which writes completions/ and man/, is no subcommand clap knows:
    /// the completion scripts would offer it, as clap_complete lists hidden subcommands too.
    /// `Cli::try_parse_with_sources` reads it.
    #[command(skip)]
    Generate(cmd::generate::Args),
}

impl Cli {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let ctx = cmd::Ctx::new(
            self.db,
            self.server,
            self.remote,
            self.token,
            self.remote_tls,
        );
        match self.command {
            Command::Init(a) => cmd::init::run(&ctx, a),
            Command::User(a) => cmd::user::run(&ctx, a),
            Command::IssueKey(a) => cmd::issue_key::run(&ctx, a),
            Command::ListKeys(a) => cmd::list_keys::run(&ctx, a),
            Command::EditKey(a) => cmd::edit_key::run(&ctx, a),
            Command::RevokeKey(a) => cmd::revoke_key::run(&ctx, a),
            Command::RotateSecret(a) => cmd::rotate_secret::run(&ctx, a),
            Command::SignGrant(a) => cmd::sign_grant::run(&ctx, a),
            Command::Serve(a) => cmd::serve::run(&ctx, a),
            Command::GetToken(a) => cmd::get_token::run(&ctx, a),
            Command::Request(a) => cmd::request::run(&ctx, a),
            Command::Verify(a) => cmd::verify::run(&ctx, a),
            Command::UsageLog(a) => cmd::usage_log::run(&ctx, a),
            Command::Token(a) => cmd::token::run(&ctx, a),
            Command::Trust(a) => cmd::trust::run(&ctx, a),
            Command::Audit(a) => cmd::audit::run(&ctx, a),
            Command::Report(a) => cmd::report::run(&ctx, a),
            Command::Store(a) => cmd::store::run(&ctx, a),
            Command::Keygen(a) => cmd::keygen::run(a),
            Command::Generate(a) => cmd::generate::run(a, Cli::command()),
        }?;
        Ok(ExitCode::SUCCESS)
    }

    /// `Cli::try_parse`, plus what the parsed values cannot tell: whether --key came from
    /// TOKENAUTH_KEY, which errors name, and which must not be combined with
    /// TOKENAUTH_KEY_BASE64.
    pub fn try_parse_with_sources() -> Result<Cli, clap::Error> {
        let args: Vec<OsString> = std::env::args_os().collect();
        if args.get(1).is_some_and(|a| a == "generate") {
            return parse_generate(&args[1..]);
        }
        let (mut command, ignored) = ignore_empty_env(Cli::command());
        let matches = match command.try_get_matches_from_mut(&args) {
            Ok(m) => m,
            Err(e) if ignored && is_help(&e) => return Err(help_with_every_variable(&args, e)),
            Err(e) => return Err(admin_flag_after_subcommand(&mut command, &args, e)),
        };
        if let Some(e) = client_flag_before_subcommand(&mut command, &matches) {
            return Err(e);
        }
        let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
        if let (Some(grant), Some((_, sub))) = (cli.command.grant_args_mut(), matches.subcommand())
        {
            grant.key_from_env = sub.value_source("key") == Some(ValueSource::EnvVariable);
        }
        cli.remote.key_from_env = matches.value_source("key") == Some(ValueSource::EnvVariable);
        // Freeing every command and argument definition took a sixth of a cache-hit
        // `get-token`'s instructions; the process ends soon and the OS takes the memory back.
        std::mem::forget(command);
        std::mem::forget(matches);
        Ok(cli)
    }
}

/// `tokenauth generate ARGS`, parsed on its own.
fn parse_generate(args: &[OsString]) -> Result<Cli, clap::Error> {
    let mut command = cmd::generate::Args::augment_args(
        clap::Command::new("generate").bin_name("tokenauth generate"),
    );
    let matches = command.try_get_matches_from_mut(args)?;
    let args =
        cmd::generate::Args::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
    Ok(Cli {
        db: None,
        server: None,
        remote: cmd::GrantArgs::default(),
        remote_tls: cmd::TlsArgs::default(),
        token: None,
        command: Command::Generate(args),
    })
}

/// An empty variable counts as unset: `export TOKENAUTH_SERVER=` is a common way to switch
/// one off, and no option here has a meaningful empty value, but clap would take the empty
/// string as given (clap has no setting for this). TOKENAUTH_KEY keeps its empty value for
/// KeySource's own error: an empty key is most often a CI secret that did not arrive.
/// Returns the command and whether a variable was dropped.
fn ignore_empty_env(command: clap::Command) -> (clap::Command, bool) {
    // Rebuilding every argument list is work on every run, cache-hit `get-token` included;
    // only do it when there is something to drop.
    let any_empty = std::env::vars_os().any(|(name, value)| {
        value.is_empty() && name.as_encoded_bytes().starts_with(b"TOKENAUTH_")
    });
    if !any_empty {
        return (command, false);
    }
    (drop_empty_env(command), true)
}

/// Unlinks every argument from its variable when that is set but empty, TOKENAUTH_KEY aside.
fn drop_empty_env(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| match arg.get_env() {
            Some(name)
                if name != crate::service_key::KEY_VAR
                    && std::env::var_os(name).is_some_and(|v| v.is_empty()) =>
            {
                arg.env(None)
            }
            _ => arg,
        })
        .mut_subcommands(drop_empty_env)
}

fn is_help(e: &clap::Error) -> bool {
    use clap::error::ErrorKind::{DisplayHelp, DisplayHelpOnMissingArgumentOrSubcommand};
    matches!(
        e.kind(),
        DisplayHelp | DisplayHelpOnMissingArgumentOrSubcommand
    )
}

/// Help as if no variable had been dropped by `ignore_empty_env`: it names every variable an
/// option reads, set or not. (Help shown for a missing subcommand keeps the dropped command's:
/// with the variables back, clap reports the missing subcommand instead.)
fn help_with_every_variable(args: &[OsString], dropped: clap::Error) -> clap::Error {
    match Cli::command().try_get_matches_from(args) {
        Err(e) if e.kind() == dropped.kind() => e,
        _ => dropped,
    }
}

/// The flags that exist both before the subcommand (for remote administration) and after
/// sign-grant, get-token and request (for their own grant): (clap id, flag).
const SHARED_FLAGS: &[(&str, &str)] = &[
    ("key", "--key"),
    ("sub", "--sub"),
    ("scope", "--scope"),
    ("private_key", "--private-key"),
    ("ca_cert", "--ca-cert"),
    ("token", "--token"),
];

/// `tokenauth --key k.json get-token`: the flag before the subcommand is the remote-admin
/// one, which the client commands never read; saying "no key file given" would send the user
/// looking in the wrong place.
fn client_flag_before_subcommand(
    command: &mut clap::Command,
    matches: &clap::ArgMatches,
) -> Option<clap::Error> {
    let (name, _) = matches.subcommand()?;
    if !matches!(name, "sign-grant" | "get-token" | "request") {
        return None;
    }
    let sub = command.find_subcommand(name)?;
    let (id, flag) = SHARED_FLAGS
        .iter()
        .find(|(id, _)| matches.value_source(id) == Some(ValueSource::CommandLine))?;
    let own = sub.get_arguments().find(|a| a.get_id() == *id);
    let msg = match own {
        Some(arg) => {
            let placeholder = arg
                .get_value_names()
                .and_then(|n| n.first())
                .map_or("VALUE".to_owned(), |n| n.to_string());
            let value = matches
                .get_raw(id)
                .and_then(|mut v| v.next())
                // A token is a secret whatever it looks like.
                .filter(|_| *id != "token")
                .map(|v| shown_value(v, &placeholder))
                .unwrap_or(placeholder);
            let what = if *id == "key" {
                "the remote-admin credential".to_owned()
            } else {
                "for remote administration (--server)".to_owned()
            };
            let takes = if *id == "key" {
                "its key file".to_owned()
            } else {
                format!("its own {flag}")
            };
            format!(
                "{flag} before the subcommand is {what}; {name} takes {takes} after the \
                 subcommand: tokenauth {name} {flag} {value}"
            )
        }
        None => format!(
            "{flag} before the subcommand is for remote administration (--server); {name} \
             does not take it: drop it"
        ),
    };
    Some(command.error(clap::error::ErrorKind::ArgumentConflict, msg))
}

/// `tokenauth --server URL list-keys --key admin.json`: clap's "unexpected argument" does
/// not say that the remote-admin credential goes before the subcommand.
fn admin_flag_after_subcommand(
    command: &mut clap::Command,
    args: &[OsString],
    e: clap::Error,
) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return e;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return e;
    };
    let (flag, placeholder) = match arg.split('=').next().unwrap_or_default() {
        "--key" | "-k" => ("--key", "FILE"),
        "--token" => ("--token", "TOKEN"),
        _ => return e,
    };
    // The subcommand path as typed (`user list`), for the corrected command line.
    let mut path = Vec::new();
    let mut current = &*command;
    for a in args.iter().skip(1) {
        let Some(a) = a.to_str() else { continue };
        if let Some(sub) = current.find_subcommand(a) {
            path.push(a.to_owned());
            current = sub;
        }
    }
    let path = if path.is_empty() {
        "COMMAND".to_owned()
    } else {
        path.join(" ")
    };
    let msg = format!(
        "{path} takes no {flag}; the remote-admin credential goes before the subcommand: \
         tokenauth --server URL {flag} {placeholder} {path}"
    );
    command.error(ErrorKind::ArgumentConflict, msg)
}

/// A flag's value for a corrected command line: as given when it is a plain word that cannot
/// be a secret, else its placeholder.
fn shown_value(value: &std::ffi::OsStr, placeholder: &str) -> String {
    match value.to_str() {
        Some(v)
            if !v.is_empty()
                && v.len() <= 200
                && !crate::service_key::may_hold_secret(value)
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./@:+,".contains(&b)) =>
        {
            v.to_owned()
        }
        _ => placeholder.to_owned(),
    }
}

impl Command {
    fn grant_args_mut(&mut self) -> Option<&mut cmd::GrantArgs> {
        match self {
            Command::SignGrant(a) => Some(&mut a.grant),
            Command::GetToken(a) => Some(&mut a.grant),
            Command::Request(a) => Some(&mut a.grant),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn walk(cmd: &clap::Command, path: &str, problems: &mut Vec<String>) {
        let here = format!("{path} {}", cmd.get_name()).trim().to_owned();
        if cmd.get_about().is_none() {
            problems.push(format!("`{here}` has no one-line summary"));
        }
        let is_group = cmd.has_subcommands();
        if !is_group && here != "tokenauth" {
            if cmd.get_long_about().is_none() {
                problems.push(format!("`{here}` has no longer description"));
            }
            if !cmd
                .get_after_help()
                .is_some_and(|h| h.to_string().contains("Example"))
            {
                problems.push(format!("`{here}` has no example"));
            }
        }
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                problems.push(format!("`{here}` argument `{id}` has no help text"));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() != "help" {
                walk(sub, &here, problems);
            }
        }
    }

    /// Key ids are base64url: one in 64 starts with `-`, and must not be taken for a flag.
    #[test]
    fn key_ids_may_start_with_a_hyphen() {
        let key_id = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::RevokeKey(a) => (a.key_id, a.yes.to_string()),
            Command::EditKey(a) => (a.key_id, format!("{:?}", a.title)),
            Command::UsageLog(a) => (a.key_id.unwrap_or_default(), format!("{:?}", a.since)),
            _ => unreachable!(),
        };
        assert_eq!(
            key_id(&["tokenauth", "revoke-key", "-4cB0x", "--yes"]),
            ("-4cB0x".into(), "true".into())
        );
        assert_eq!(
            key_id(&["tokenauth", "edit-key", "-4cB0x", "--title", "t"]),
            ("-4cB0x".into(), "Some(\"t\")".into())
        );
        assert_eq!(
            key_id(&["tokenauth", "usage-log", "-4cB0x", "--since", "1d"]),
            ("-4cB0x".into(), "Some(\"1d\")".into())
        );
        // Flags still read as flags.
        assert_eq!(
            key_id(&["tokenauth", "usage-log", "--since", "1d"]),
            (String::new(), "Some(\"1d\")".into())
        );
    }

    #[test]
    fn every_command_and_argument_has_help_and_an_example() {
        let mut cmd = Cli::command();
        cmd.build();
        cmd.clone().debug_assert();
        let mut problems = Vec::new();
        walk(&cmd, "", &mut problems);
        assert!(
            problems.is_empty(),
            "help text missing:\n{}",
            problems.join("\n")
        );
    }

    /// Help names the variable an option reads, never its value: values may be secrets
    /// (TOKENAUTH_TOKEN, a PostgreSQL URL's password), and the man pages generated from the
    /// same definitions must not depend on the generator's environment.
    #[test]
    fn no_option_shows_its_variables_value() {
        fn walk(cmd: &clap::Command, shown: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if let Some(var) = arg.get_env()
                    && !arg.is_hide_env_values_set()
                {
                    shown.push(format!("{} --{}: {var:?}", cmd.get_name(), arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, shown);
            }
        }
        let mut shown = Vec::new();
        walk(&Cli::command(), &mut shown);
        assert!(shown.is_empty(), "add hide_env_values = true: {shown:?}");
    }

    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| {
                        (
                            e.file_name().to_string_lossy().into_owned(),
                            std::fs::read(e.path()).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    #[test]
    fn committed_completions_and_man_pages_are_current() {
        let fresh = tempfile::tempdir().unwrap();
        cmd::generate::write_all(fresh.path(), Cli::command()).unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for sub in ["completions", "man"] {
            let want = files(&fresh.path().join(sub));
            let have = files(&root.join(sub));
            let names =
                |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
            assert_eq!(
                names(&have),
                names(&want),
                "{sub}/ has the wrong files; refresh with `cargo run --release -- generate` and commit"
            );
            for ((name, a), (_, b)) in have.iter().zip(&want) {
                assert!(
                    a == b,
                    "{sub}/{name} is stale; refresh with `cargo run --release -- generate` and commit"
                );
            }
        }
    }
}
