//! A private key is never printed: every failing client command (`sign-grant`, `get-token`,
//! `request`), over bad key files handed over every way a key can be (a path, `-`, `--key
//! JSON`, `TOKENAUTH_KEY`, `TOKENAUTH_KEY_BASE64`), fails with one `tokenauth: error:` line
//! and prints none of the key's material on stderr or stdout. And every way works with a
//! good key.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use common::{Env, exchange, free_port};

const KEY_VAR: &str = "TOKENAUTH_KEY";
const B64_VAR: &str = "TOKENAUTH_KEY_BASE64";

/// Everything of a key file that must never be printed.
struct Material {
    /// Whole strings: the PEM's BEGIN/END lines and each base64 line, a JSON fragment.
    strings: Vec<String>,
    /// Every 16-character window of the PEM body and of the key file's base64.
    windows: HashSet<Vec<u8>>,
}

const WINDOW: usize = 16;

impl Material {
    fn new() -> Material {
        Material {
            strings: Vec::new(),
            windows: HashSet::new(),
        }
    }

    fn add_key_file(&mut self, path: &Path) {
        let text = std::fs::read_to_string(path).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let pem = v["private_key"].as_str().unwrap();
        let lines: Vec<&str> = pem.lines().collect();
        assert!(
            lines[0].starts_with("-----BEGIN") && lines.len() > 20,
            "{pem}"
        );
        self.strings.extend(lines.iter().map(|l| l.to_string()));
        let body: String = lines[1..lines.len() - 1].concat();
        self.add_windows(&body);
        for b64 in [STANDARD.encode(&text), URL_SAFE_NO_PAD.encode(&text)] {
            self.add_windows(&b64);
        }
        // The private key as it appears in the file's JSON.
        let at = text.find("\"private_key\"").unwrap();
        self.strings.push(text[at..at + 60].to_owned());
    }

    fn add_windows(&mut self, s: &str) {
        for w in s.as_bytes().windows(WINDOW) {
            self.windows.insert(w.to_vec());
        }
    }

    /// What of the material `out` holds, if anything.
    fn found_in(&self, out: &[u8]) -> Option<String> {
        let text = String::from_utf8_lossy(out);
        if let Some(s) = self.strings.iter().find(|s| text.contains(s.as_str())) {
            return Some(format!("{s:?}"));
        }
        if let Some(w) = out.windows(WINDOW).find(|w| self.windows.contains(*w)) {
            return Some(format!("the window {:?}", String::from_utf8_lossy(w)));
        }
        ["-----", "PRIVATE KEY"]
            .into_iter()
            .find(|s| text.contains(s))
            .map(|s| format!("{s:?}"))
    }

    fn assert_absent(&self, what: &str, out: &Output) {
        for (stream, bytes) in [("stderr", &out.stderr), ("stdout", &out.stdout)] {
            if let Some(found) = self.found_in(bytes) {
                panic!(
                    "{what}: {stream} holds key material ({found}):\n{}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
    }
}

/// How the key reaches tokenauth.
#[derive(Clone, Copy, Debug)]
enum Via {
    Path,
    Stdin,
    Flag,
    KeyVar,
    Base64Var,
}

const ALL_WAYS: [Via; 5] = [
    Via::Path,
    Via::Stdin,
    Via::Flag,
    Via::KeyVar,
    Via::Base64Var,
];

/// One run's inputs besides the command.
#[derive(Default)]
struct Input {
    name: String,
    key_arg: Option<String>,
    vars: Vec<(&'static str, String)>,
    stdin: Option<String>,
    /// What the error must say, e.g. which input is wrong.
    names: Vec<String>,
}

/// Base64 wrapped at 76 columns, as `base64` prints it.
fn wrapped_base64(text: &str) -> String {
    let b64 = STANDARD.encode(text);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    lines.join("\n") + "\n"
}

fn deliver(env: &Env, name: &str, content: &str, via: Via, names_source: bool) -> Input {
    let mut input = Input {
        name: format!("{name} via {via:?}"),
        ..Input::default()
    };
    let source = match via {
        Via::Path => {
            static N: AtomicUsize = AtomicUsize::new(0);
            let file = format!("case-{}.json", N.fetch_add(1, Ordering::Relaxed));
            std::fs::write(env.path().join(&file), content).unwrap();
            input.key_arg = Some(file.clone());
            file
        }
        Via::Stdin => {
            input.key_arg = Some("-".into());
            input.stdin = Some(content.into());
            "standard input".into()
        }
        Via::Flag => {
            input.key_arg = Some(content.into());
            "--key".into()
        }
        Via::KeyVar => {
            input.vars.push((KEY_VAR, content.into()));
            KEY_VAR.into()
        }
        Via::Base64Var => {
            input.vars.push((B64_VAR, wrapped_base64(content)));
            B64_VAR.into()
        }
    };
    if names_source {
        input.names.push(source);
    }
    input
}

const COMMANDS: [&str; 3] = ["sign-grant", "get-token", "request"];

/// Runs `command` with `input`; the whole output.
fn run(env: &Env, command: &str, input: &Input, url: &str) -> Output {
    let mut c = env.cmd();
    c.arg(command);
    if let Some(k) = &input.key_arg {
        c.args(["--key", k]);
    }
    if command == "request" {
        c.arg(url);
    }
    for (k, v) in &input.vars {
        c.env(k, v);
    }
    if let Some(s) = &input.stdin {
        c.write_stdin(s.clone());
    }
    c.timeout(Duration::from_secs(30)).output().unwrap()
}

/// Serde's phrasings, which quote values: tokenauth must say it in its own words.
const SERDE_WORDS: [&str; 7] = [
    "invalid type",
    "EOF while parsing",
    "expected value",
    "expected `",
    "trailing characters",
    "missing field `",
    "control character",
];

fn assert_fails_cleanly(what: &str, out: &Output, material: &Material, names: &[String]) {
    material.assert_absent(what, out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what} should fail with 1: {err}"
    );
    assert!(err.starts_with("tokenauth: error: "), "{what}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{what}: not one line: {err}"
    );
    for w in SERDE_WORDS {
        assert!(!err.contains(w), "{what}: serde's words: {err}");
    }
    for n in names {
        assert!(
            err.contains(n.as_str()),
            "{what}: the error does not say {n:?}: {err}"
        );
    }
}

/// The pretty JSON of `v` with `field` set to `value` (or removed when `None`).
fn edited(v: &Value, field: &str, value: Option<Value>) -> String {
    let mut v = v.clone();
    let o = v.as_object_mut().unwrap();
    match value {
        Some(x) => o.insert(field.to_owned(), x),
        None => o.remove(field),
    };
    serde_json::to_string_pretty(&v).unwrap()
}

/// Bad key files made from a real one: (name, text, whether the error can name the source).
/// Errors found while signing (a private_key that is a string but no usable key) come from
/// deep in the client and name the field rather than the source.
fn bad_key_files(text: &str) -> Vec<(String, String, bool)> {
    let v: Value = serde_json::from_str(text).unwrap();
    let pem = v["private_key"].as_str().unwrap().to_owned();
    let mut out: Vec<(String, String, bool)> = Vec::new();
    let mut add = |name: &str, text: String, names: bool| out.push((name.into(), text, names));

    // A private_key that is a string, but not a usable key.
    let body_start = pem.find('\n').unwrap() + 1;
    let cut = pem.len() / 2;
    add(
        "truncated private_key",
        edited(&v, "private_key", Some(json!(pem[..cut]))),
        false,
    );
    let mut garbled = pem.clone();
    garbled.replace_range(body_start + 200..body_start + 260, &"A".repeat(60));
    add(
        "garbled private_key (valid base64)",
        edited(&v, "private_key", Some(json!(garbled))),
        false,
    );
    let mut broken = pem.clone();
    broken.replace_range(body_start + 100..body_start + 104, "!@#$");
    add(
        "private_key with bad base64",
        edited(&v, "private_key", Some(json!(broken))),
        false,
    );
    add(
        "private_key without its END line",
        edited(
            &v,
            "private_key",
            Some(json!(pem[..pem.find("-----END").unwrap()])),
        ),
        false,
    );
    add(
        "private_key that is only its body",
        edited(&v, "private_key", Some(json!(pem.lines().nth(1).unwrap()))),
        false,
    );

    // Missing fields.
    for field in [
        "key_id",
        "client_id",
        "user_id",
        "issued",
        "token_uri",
        "private_key",
    ] {
        add(&format!("missing {field}"), edited(&v, field, None), true);
    }

    // Wrong types for every field, with the private key inside the wrong value where it fits.
    let fields = [
        "key_id",
        "client_id",
        "user_id",
        "issued",
        "token_uri",
        "private_key",
        "alg",
    ];
    for field in fields {
        for (kind, value) in [
            ("a number", json!(42)),
            ("an array", json!([pem])),
            ("an object", json!({ "pem": pem })),
        ] {
            add(
                &format!("{field} as {kind}"),
                edited(&v, field, Some(value)),
                true,
            );
        }
    }
    for (kind, value) in [("null", Value::Null), ("a boolean", json!(true))] {
        add(
            &format!("private_key as {kind}"),
            edited(&v, "private_key", Some(value)),
            true,
        );
    }
    // Other fields holding the private key.
    for field in ["token_uri", "alg"] {
        add(
            &format!("the PEM in {field}"),
            edited(&v, field, Some(json!(pem))),
            true,
        );
    }

    // Syntax errors just after (and inside) the private key, in the file as issue-key wrote it.
    let start = text.find("\"private_key\": \"").unwrap() + "\"private_key\": \"".len();
    let end = start + text[start..].find('"').unwrap();
    let after = end + 1;
    add(
        "two commas after private_key",
        format!("{},,{}", &text[..after], &text[after..]),
        true,
    );
    add(
        "semicolon after private_key",
        format!("{};{}", &text[..after], &text[after + 1..]),
        true,
    );
    add(
        "private_key without its closing quote",
        format!("{}{}", &text[..end], &text[after..]),
        true,
    );
    add(
        "file cut just after private_key",
        text[..after].to_owned(),
        true,
    );
    add(
        "file cut inside private_key",
        text[..start + 300].to_owned(),
        true,
    );
    add(
        "raw newlines inside private_key",
        format!(
            "{}{}{}",
            &text[..start],
            text[start..end].replace("\\n", "\n"),
            &text[end..]
        ),
        true,
    );
    add(
        "bad escape inside private_key",
        format!("{}\\q{}", &text[..start + 100], &text[start + 100..]),
        true,
    );
    add("trailing garbage", format!("{text}{pem}"), true);

    // Not a key file at all.
    add("the PEM alone", pem.clone(), true);
    add(
        "a JSON array holding the PEM",
        json!([pem]).to_string(),
        true,
    );
    add("empty", String::new(), true);
    out
}

#[test]
fn failing_client_commands_never_print_key_material() {
    let env = Env::new();
    let server = env.serve(&[]);
    let url = server.url("/auth");
    let mut material = Material::new();

    let (_, good) = env.issue_key("ci-bot", &[]);
    material.add_key_file(&good);
    let good_text = std::fs::read_to_string(&good).unwrap();
    let good_json: Value = serde_json::from_str(&good_text).unwrap();
    let pem = good_json["private_key"].as_str().unwrap().to_owned();

    let (revoked_id, revoked) = env.issue_key("ci-bot", &[]);
    material.add_key_file(&revoked);
    env.ok(&["revoke-key", &revoked_id, "--yes"]);
    let revoked_text = std::fs::read_to_string(&revoked).unwrap();

    let unreachable_uri = format!("http://127.0.0.1:{}/token", free_port());
    let unreachable_text = edited(&good_json, "token_uri", Some(json!(unreachable_uri)));

    let mut cases: Vec<(Input, [bool; 3])> = Vec::new();
    let parse_fails = [true; 3];
    for (name, text, names) in bad_key_files(&good_text) {
        for via in ALL_WAYS {
            cases.push((deliver(&env, &name, &text, via, names), parse_fails));
        }
    }
    // Good key files the token endpoint cannot or will not take: sign-grant still works.
    let network_fails = [false, true, true];
    for via in ALL_WAYS {
        let mut unreachable = deliver(&env, "unreachable token_uri", &unreachable_text, via, false);
        unreachable.names = vec![unreachable_uri.clone()];
        cases.push((unreachable, network_fails));
        let mut refused = deliver(&env, "revoked key", &revoked_text, via, false);
        refused.names = vec!["Key has been revoked".into()];
        cases.push((refused, network_fails));
    }

    // Values that are neither a file, '-', nor JSON, and may hold a secret.
    let compact_b64 = URL_SAFE_NO_PAD.encode(&good_text);
    let not_shown = "it is not shown because it may hold a secret";
    let secret_values = [
        ("the PEM", pem.clone(), "PEM private key"),
        (
            "the PEM on one line",
            pem.replace('\n', " "),
            "PEM private key",
        ),
        (
            "the key file base64-encoded, wrapped",
            wrapped_base64(&good_text),
            B64_VAR,
        ),
        (
            "the key file base64-encoded, URL-safe, one line",
            compact_b64.clone(),
            B64_VAR,
        ),
        (
            "a long PEM body line",
            pem.lines().skip(1).take(20).collect::<String>(),
            "it is not shown",
        ),
    ];
    for (name, value, hint) in &secret_values {
        for (via, source) in [(Via::Flag, "--key"), (Via::KeyVar, KEY_VAR)] {
            let mut input = deliver(&env, name, value, via, false);
            input.names = vec![
                format!("the {source} value ("),
                not_shown.into(),
                hint.to_string(),
            ];
            cases.push((input, parse_fails));
        }
    }

    // TOKENAUTH_KEY_BASE64 that is not base64 of a key file.
    for (name, value) in [
        ("the PEM as TOKENAUTH_KEY_BASE64", pem.clone()),
        (
            "the key file's JSON as TOKENAUTH_KEY_BASE64",
            good_text.clone(),
        ),
        ("the PEM base64-encoded", wrapped_base64(&pem)),
        (
            "binary base64-encoded",
            STANDARD.encode([0xff, 0xfe, 0x00, 0x80]),
        ),
        (
            "truncated base64 of the key file",
            compact_b64[..compact_b64.len() / 2 + 1].to_owned(),
        ),
        ("an empty TOKENAUTH_KEY_BASE64", String::new()),
    ] {
        cases.push((
            Input {
                name: name.into(),
                vars: vec![(B64_VAR, value)],
                names: vec![B64_VAR.into()],
                ..Input::default()
            },
            parse_fails,
        ));
    }

    // Both variables set: refused, whatever they hold.
    for (name, key_value) in [
        ("both variables, TOKENAUTH_KEY JSON", good_text.clone()),
        (
            "both variables, TOKENAUTH_KEY a path",
            good.to_str().unwrap().to_owned(),
        ),
        ("both variables, TOKENAUTH_KEY empty", String::new()),
    ] {
        cases.push((
            Input {
                name: name.into(),
                vars: vec![(KEY_VAR, key_value), (B64_VAR, wrapped_base64(&good_text))],
                names: vec!["set only one".into()],
                ..Input::default()
            },
            parse_fails,
        ));
    }

    // Paths that are no key file: shown, as paths are.
    for (name, key_arg) in [
        ("a missing path", "no-such-key.json"),
        ("a directory", "."),
        ("an empty value", ""),
    ] {
        for via in [Via::Flag, Via::KeyVar] {
            let mut input = deliver(&env, name, key_arg, via, false);
            input.names = vec![match (name, via) {
                ("an empty value", Via::Flag) => "the --key value is empty".into(),
                ("an empty value", _) => "the TOKENAUTH_KEY value is empty".into(),
                _ => format!("cannot read key file {key_arg}"),
            }];
            cases.push((input, parse_fails));
        }
    }
    // No key at all: one error naming all three ways.
    cases.push((
        Input {
            name: "no key".into(),
            names: vec!["--key".into(), format!("{KEY_VAR} "), B64_VAR.into()],
            ..Input::default()
        },
        parse_fails,
    ));

    assert!(cases.len() > 250, "{} cases", cases.len());
    for (input, fails) in &cases {
        for (command, fails) in COMMANDS.iter().zip(fails) {
            let what = format!("{command} with {}", input.name);
            let out = run(&env, command, input, &url);
            if *fails {
                assert_fails_cleanly(&what, &out, &material, &input.names);
            } else {
                assert!(
                    out.status.success(),
                    "{what}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                material.assert_absent(&what, &out);
            }
        }
    }
    // No token reached the cache (only lock files are there).
    let cache = env.path().join("cache").join("tokenauth");
    let tokens: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_none_or(|e| e != "lock"))
        .collect();
    assert!(tokens.is_empty(), "{tokens:?}");
}

#[test]
fn usage_errors_and_misplaced_keys_never_print_key_material() {
    let env = Env::new();
    let (_, key) = env.issue_key("ci-bot", &[]);
    let mut material = Material::new();
    material.add_key_file(&key);
    let text = std::fs::read_to_string(&key).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let pem = v["private_key"].as_str().unwrap().to_owned();
    let k = key.to_str().unwrap();

    // clap's usage errors quote the argument they could not place.
    let usage: Vec<(&str, Vec<&str>)> = vec![
        ("JSON without --key", vec!["get-token", &text]),
        ("PEM without --key", vec!["sign-grant", &pem]),
        (
            "PEM as --lifetime",
            vec!["sign-grant", "--key", k, "--lifetime", &pem],
        ),
        (
            "JSON as --format",
            vec!["get-token", "--key", k, "--format", &text],
        ),
        (
            "JSON after the URL",
            vec!["request", "--key", k, "http://127.0.0.1:9/", &text],
        ),
        ("PEM as the URL", vec!["request", "--key", k, &pem]),
    ];
    for (what, args) in usage {
        let out = env.cmd().args(&args).output().unwrap();
        material.assert_absent(what, &out);
        assert_eq!(out.status.code(), Some(2), "{what}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not shown"), "{what}: {err}");
    }

    // A key where request expects its URL.
    for (what, url) in [
        ("JSON as the URL", text.clone()),
        (
            "PEM body as the URL",
            pem.lines().skip(1).collect::<String>(),
        ),
    ] {
        let out = env
            .cmd()
            .args(["request", "--key", k, &url])
            .output()
            .unwrap();
        assert_fails_cleanly(what, &out, &material, &["the URL argument".into()]);
    }
}

#[test]
fn help_never_shows_key_material_from_the_environment() {
    let env = Env::new();
    let (_, key) = env.issue_key("ci-bot", &[]);
    let mut material = Material::new();
    material.add_key_file(&key);
    let text = std::fs::read_to_string(&key).unwrap();
    for command in COMMANDS {
        for help in ["--help", "-h"] {
            let out = env
                .cmd()
                .args([command, help])
                .env(KEY_VAR, &text)
                .env(B64_VAR, wrapped_base64(&text))
                .output()
                .unwrap();
            let what = format!("{command} {help}");
            assert!(out.status.success(), "{what}");
            material.assert_absent(&what, &out);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let words = stdout.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(words.contains("[env: TOKENAUTH_KEY]"), "{what}: {stdout}");
            assert!(!stdout.contains("key_id"), "{what}: {stdout}");
        }
    }
}

// ---- every way works with a good key ----------------------------------------------------------

#[test]
fn sign_grant_and_get_token_take_the_key_every_way() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (_, key) = env.issue_key("ci-bot", &[]);
    // An extra field (allowed) whose characters make standard and URL-safe base64 differ.
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let mut comment = "??????~~~~~~".to_owned();
    let text = loop {
        v["comment"] = json!(comment);
        let text = serde_json::to_string_pretty(&v).unwrap();
        // A length that base64 pads.
        if !text.len().is_multiple_of(3) {
            break text;
        }
        comment.push('~');
    };
    let compact = serde_json::to_string(&v).unwrap();
    let standard = STANDARD.encode(&text);
    let url_safe = URL_SAFE_NO_PAD.encode(&text);
    assert!(
        standard.contains(['+', '/']) && standard.ends_with('='),
        "{standard}"
    );
    assert!(url_safe.contains(['-', '_']), "{url_safe}");
    let url_safe_wrapped: String = url_safe
        .as_bytes()
        .chunks(64)
        .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
        .collect();

    let ways: Vec<(&str, Input)> = vec![
        ("path", deliver(&env, "", &text, Via::Path, false)),
        ("stdin", deliver(&env, "", &text, Via::Stdin, false)),
        ("--key JSON", deliver(&env, "", &text, Via::Flag, false)),
        (
            "--key compact JSON",
            deliver(&env, "", &compact, Via::Flag, false),
        ),
        (
            "--key JSON after whitespace",
            deliver(&env, "", &format!("\n  {text}"), Via::Flag, false),
        ),
        (
            "TOKENAUTH_KEY=JSON",
            deliver(&env, "", &text, Via::KeyVar, false),
        ),
        (
            "TOKENAUTH_KEY=path",
            Input {
                vars: vec![(KEY_VAR, key.to_str().unwrap().to_owned())],
                ..Input::default()
            },
        ),
        (
            "--key path over TOKENAUTH_KEY",
            Input {
                key_arg: Some(key.to_str().unwrap().to_owned()),
                vars: vec![(KEY_VAR, "no-such-file.json".into())],
                ..Input::default()
            },
        ),
        (
            "TOKENAUTH_KEY=-",
            Input {
                vars: vec![(KEY_VAR, "-".into())],
                stdin: Some(text.clone()),
                ..Input::default()
            },
        ),
        (
            "TOKENAUTH_KEY_BASE64 standard, wrapped",
            deliver(&env, "", &text, Via::Base64Var, false),
        ),
        (
            "TOKENAUTH_KEY_BASE64 standard, one line",
            Input {
                vars: vec![(B64_VAR, standard.clone())],
                ..Input::default()
            },
        ),
        (
            "TOKENAUTH_KEY_BASE64 standard, without padding",
            Input {
                vars: vec![(B64_VAR, standard.trim_end_matches('=').to_owned())],
                ..Input::default()
            },
        ),
        (
            "TOKENAUTH_KEY_BASE64 URL-safe, wrapped with CRLF",
            Input {
                vars: vec![(B64_VAR, url_safe_wrapped)],
                ..Input::default()
            },
        ),
        (
            "--key wins over TOKENAUTH_KEY_BASE64",
            Input {
                key_arg: Some(key.to_str().unwrap().to_owned()),
                vars: vec![(B64_VAR, "not base64!".into())],
                ..Input::default()
            },
        ),
    ];
    for (what, input) in &ways {
        let out = run(&env, "sign-grant", input, "");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "sign-grant with {what}: {stderr}");
        let grant = String::from_utf8(out.stdout).unwrap();
        let (status, body) = exchange(&server, grant.trim_end());
        assert_eq!(status, 200, "sign-grant with {what}: {body}");

        let mut c = env.cmd();
        c.args(["get-token", "--no-cache"]);
        if let Some(k) = &input.key_arg {
            c.args(["--key", k]);
        }
        for (k, v) in &input.vars {
            c.env(k, v);
        }
        if let Some(s) = &input.stdin {
            c.write_stdin(s.clone());
        }
        let out = c.timeout(Duration::from_secs(30)).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "get-token with {what}: {stderr}");
        let token = String::from_utf8(out.stdout).unwrap();
        env.ok(&["verify", token.trim_end()]);
    }
}
