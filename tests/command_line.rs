//! The command line itself, through the real binary: environment variables, help, version,
//! and the committed completion scripts.

mod common;

use common::Env;

/// Every variable an option reads.
const VARIABLES: &[&str] = &[
    "TOKENAUTH_DB",
    "TOKENAUTH_SERVER",
    "TOKENAUTH_KEY",
    "TOKENAUTH_TOKEN",
    "TOKENAUTH_CA_CERT",
    "TOKENAUTH_LISTEN",
    "TOKENAUTH_TLS_CERT",
    "TOKENAUTH_TLS_KEY",
    "TOKENAUTH_METRICS_LISTEN",
    "TOKENAUTH_LOG_FORMAT",
];

/// `command` run with these variables set (the rest of VARIABLES unset): (exit code, stdout,
/// stderr).
fn run(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = env.cmd();
    for v in VARIABLES {
        cmd.env_remove(v);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn an_empty_tokenauth_server_leaves_the_admin_commands_on_the_local_store() {
    let env = Env::new_sqlite();
    let (key_id, _) = env.issue_key("ci-bot", &[]);
    let db = env.db();
    let db = db.to_str().unwrap();
    let (code, out, err) = run(
        &env,
        &["list-keys"],
        &[("TOKENAUTH_DB", db), ("TOKENAUTH_SERVER", "")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&key_id[..12]), "{out}");
}

#[test]
fn empty_variables_count_as_unset() {
    let env = Env::new_sqlite();
    let (key_id, _) = env.issue_key("ci-bot", &[]);
    let db = env.db();
    let empty = [
        ("TOKENAUTH_SERVER", ""),
        ("TOKENAUTH_TOKEN", ""),
        ("TOKENAUTH_CA_CERT", ""),
    ];
    let mut vars = vec![("TOKENAUTH_DB", db.to_str().unwrap())];
    vars.extend(empty);
    let (code, out, err) = run(&env, &["list-keys"], &vars);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&key_id[..12]), "{out}");

    // An empty TOKENAUTH_DB is the default store (under XDG_DATA_HOME), not a bad path: a
    // read command says there is none there yet, and `init` makes it.
    let default = env.path().join("data/tokenauth/tokenauth.db");
    let (code, _, err) = run(&env, &["list-keys", "--json"], &[("TOKENAUTH_DB", "")]);
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!(
            "there is no store at {} (the default location",
            default.display()
        )),
        "{err}"
    );
    let (code, _, err) = run(&env, &["init"], &[("TOKENAUTH_DB", "")]);
    assert_eq!(code, 0, "{err}");
    assert!(default.exists());

    // serve's variables too: an empty TOKENAUTH_LOG_FORMAT is the default, not a bad value.
    let (code, out, err) = run(
        &env,
        &["serve", "--help"],
        &[("TOKENAUTH_LOG_FORMAT", ""), ("TOKENAUTH_LISTEN", "")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[env: TOKENAUTH_LOG_FORMAT]"), "{out}");
}

#[test]
fn an_explicit_empty_server_or_token_is_an_error_naming_the_flag() {
    let env = Env::new_sqlite();
    for (flag, placeholder) in [("--server", "URL"), ("--token", "TOKEN")] {
        let (code, _, err) = run(&env, &[flag, "", "list-keys"], &[]);
        assert_eq!(code, 2, "{flag}: {err}");
        assert!(err.contains(&format!("'{flag} <{placeholder}>'")), "{err}");
    }
}

/// The help of the root and of the commands with options read from variables.
const HELP: &[&[&str]] = &[
    &["--help"],
    &["serve", "--help"],
    &["get-token", "--help"],
    &["request", "--help"],
    &["help", "list-keys"],
];

#[test]
fn help_names_the_variables_and_never_their_values() {
    let env = Env::new_sqlite();
    let secret = "s3cret-value-from-the-environment";
    let set: Vec<(&str, &str)> = VARIABLES.iter().map(|v| (*v, secret)).collect();
    let empty: Vec<(&str, &str)> = VARIABLES.iter().map(|v| (*v, "")).collect();
    for vars in [&[][..], &set, &empty] {
        let mut seen = String::new();
        for args in HELP {
            let (code, out, err) = run(&env, args, vars);
            assert_eq!(code, 0, "{args:?}: {err}");
            assert!(!out.contains(secret), "{args:?} shows a value: {out}");
            assert!(!out.contains("=]"), "{args:?} shows an empty value: {out}");
            seen.push_str(&out);
        }
        for v in VARIABLES {
            assert!(
                seen.contains(&format!("[env: {v}]")),
                "no help names {v} with {vars:?}"
            );
        }
    }
}

#[test]
fn version_names_the_commit_it_was_built_from_and_the_build() {
    let env = Env::new_sqlite();
    let (code, short, _) = run(&env, &["-V"], &[]);
    assert_eq!(code, 0);
    let prefix = format!("tokenauth {} (", env!("CARGO_PKG_VERSION"));
    let build = short
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("-V: {short:?}"));
    // This test runs in a checkout: the build names one of its commits, and its date.
    let (commit, date) = build.split_once(' ').unwrap();
    assert!(
        commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "{short}"
    );
    assert!(date.len() == 10 && date.as_bytes()[4] == b'-', "{short}");
    let known = std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "cat-file", "-t", commit])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&known.stdout).trim(), "commit");

    let (code, long, _) = run(&env, &["--version"], &[]);
    assert_eq!(code, 0);
    assert!(long.starts_with(&short), "{long}");
    assert!(long.contains("\nstores: SQLite, PostgreSQL\n"), "{long}");
    // The tests' build honours TOKENAUTH_NOW; a release build says `features: none`.
    assert!(long.ends_with("\nfeatures: test-clock\n"), "{long}");
}

fn committed(rel: &str) -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let text = std::fs::read_to_string(e.path()).unwrap();
            (e.file_name().to_string_lossy().into_owned(), text)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_completions_do_not_offer_the_hidden_generate_command() {
    let scripts = committed("completions");
    assert_eq!(scripts.len(), 5);
    for (name, text) in scripts {
        // The word, not "generated" in some help text.
        let offered = text.match_indices("generate").any(|(at, _)| {
            let around = [
                text[..at].chars().next_back(),
                text[at + 8..].chars().next(),
            ];
            !around.into_iter().flatten().any(char::is_alphanumeric)
        });
        assert!(!offered, "completions/{name} offers generate");
    }
}

#[test]
fn generated_completions_and_man_pages_do_not_depend_on_the_environment() {
    let env = Env::new_sqlite();
    let secret = "s3cret-value-from-the-environment";
    let set: Vec<(&str, &str)> = VARIABLES.iter().map(|v| (*v, secret)).collect();
    let empty: Vec<(&str, &str)> = VARIABLES.iter().map(|v| (*v, "")).collect();
    for (name, vars) in [("set", &set), ("empty", &empty)] {
        let out = env.path().join(name);
        let (code, _, err) = run(
            &env,
            &["generate", "--out-dir", out.to_str().unwrap()],
            vars,
        );
        assert_eq!(code, 0, "{err}");
        for sub in ["completions", "man"] {
            let fresh = std::fs::read_dir(out.join(sub)).unwrap().count();
            for (file, text) in committed(sub) {
                let generated = std::fs::read_to_string(out.join(sub).join(&file)).unwrap();
                assert!(
                    generated == text,
                    "{sub}/{file} differs with the variables {name}"
                );
            }
            assert_eq!(
                fresh,
                committed(sub).len(),
                "{sub} with the variables {name}"
            );
        }
    }
}

/// What the bash script completes after `option` in each command that has it.
fn bash_completes_after(option: &str) -> Vec<String> {
    let script = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions/tokenauth.bash"),
    )
    .unwrap();
    let case = format!("{option})");
    let lines: Vec<&str> = script.lines().collect();
    lines
        .iter()
        .zip(&lines[1..])
        .filter(|(l, _)| l.trim() == case)
        .map(|(_, next)| next.trim().to_owned())
        .collect()
}

#[test]
fn options_with_a_fixed_set_of_values_complete_to_those_values_not_file_names() {
    for (option, values, commands) in [
        ("--alg", "RS256 ES256 EdDSA", 2), // issue-key, keygen
        ("--oidc", "github gitlab", 2),    // get-token, request
        ("--log-format", "text json", 1),
    ] {
        let completes = bash_completes_after(option);
        assert_eq!(completes.len(), commands, "{option}: {completes:?}");
        for c in completes {
            assert_eq!(
                c,
                format!(r#"COMPREPLY=($(compgen -W "{values}" -- "${{cur}}"))"#),
                "{option}"
            );
        }
    }
    // verify's --scope is one of two; the grant's --scope (space-separated) is free text.
    assert!(
        bash_completes_after("--scope")
            .contains(&r#"COMPREPLY=($(compgen -W "read write" -- "${cur}"))"#.to_owned())
    );
}
