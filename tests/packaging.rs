//! contrib/tokenauth.service, the Dockerfile and the binary itself: the unit passes
//! `systemd-analyze verify` and its command line really starts the server; the image is
//! multi-stage, non-root, keeps the store on a volume, and its health check works; the
//! binary needs only the C library.

mod common;

use std::path::Path;

use common::Env;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

const BIN: &str = env!("CARGO_BIN_EXE_tokenauth");

/// `Key=value` lines of a unit or Dockerfile-like text, comments left out.
fn settings<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .collect()
}

#[test]
fn the_systemd_unit_is_hardened_and_passes_systemd_analyze_verify() {
    let unit = read("contrib/tokenauth.service");
    for (key, want) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("StateDirectory", "tokenauth"),
        ("NoNewPrivileges", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(settings(&unit, key), vec![want], "{key}");
    }
    let exec = settings(&unit, "ExecStart");
    assert_eq!(exec.len(), 1);
    assert!(
        exec[0].contains("--db ${STATE_DIRECTORY}/tokenauth.db"),
        "{exec:?}"
    );

    let Ok(out) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!(
            "skipping systemd-analyze verify: systemd-analyze is not installed (Debian's systemd package)"
        );
        return;
    };
    assert!(out.status.success());
    // verify insists that ExecStart's program exists: point it at the built binary.
    let env = Env::new();
    let copy = env.path().join("tokenauth.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/tokenauth", BIN)).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Bad values are only warnings to systemd: none may name the unit.
    assert!(!stderr.contains("tokenauth.service"), "{stderr}");
    // systemd's own exposure score (0 best, 10 worst; under 2 is "OK"); --threshold counts
    // tenths.
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&copy)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exposure over 2: {}",
        report.lines().last().unwrap_or("")
    );
}

#[test]
fn the_units_command_line_and_environment_start_the_server() {
    let unit = read("contrib/tokenauth.service");
    let env = Env::new();
    let state = env.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let exec = settings(&unit, "ExecStart")[0]
        .replace("${STATE_DIRECTORY}", state.to_str().unwrap())
        .replace("/usr/local/bin/tokenauth", BIN);
    let mut words = exec.split_whitespace();
    let mut cmd = env.std_cmd(words.next().unwrap());
    cmd.args(words).env_remove("TOKENAUTH_DB");
    for e in settings(&unit, "Environment") {
        let (k, v) = e.split_once('=').unwrap();
        // Port 0 rather than the unit's 8080, which may be taken here.
        let v = v.replace("127.0.0.1:8080", "127.0.0.1:0");
        cmd.env(k, v);
    }
    let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    // The line saying where it listens (after the one saying what it loaded).
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let first = lines
        .by_ref()
        .take(5)
        .map(Result::unwrap)
        .find(|l| l.contains("listening on"))
        .unwrap_or_default();
    common::signal(child.id(), "TERM");
    let _ = child.wait();
    // TOKENAUTH_LOG_FORMAT=json: JSON lines; the store made under the state directory.
    let line: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert!(
        line["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("listening on http://127.0.0.1:")),
        "{first}"
    );
    assert!(state.join("tokenauth.db").exists());
}

/// Instructions of the Dockerfile (continuation lines joined), comments left out.
fn instructions(text: &str) -> Vec<(String, String)> {
    let joined = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    joined
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (op, rest) = l.trim().split_once(' ').unwrap_or((l.trim(), ""));
            (op.to_uppercase(), rest.trim().to_owned())
        })
        .collect()
}

#[test]
fn the_dockerfile_builds_in_stages_runs_as_non_root_with_a_volume_and_a_working_health_check() {
    let ins = instructions(&read("Dockerfile"));
    let froms: Vec<usize> = ins
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| op == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(froms.len() >= 2, "not multi-stage");
    let last = &ins[*froms.last().unwrap()..];
    let get = |op: &str| {
        last.iter()
            .filter(|(o, _)| o == op)
            .map(|(_, r)| r.as_str())
            .collect::<Vec<_>>()
    };
    let user = get("USER");
    assert_eq!(user.len(), 1);
    let who = user[0].split(':').next().unwrap();
    assert!(who != "root" && who != "0", "runs as root");
    let env_line = get("ENV").join(" ");
    let db = env_line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("TOKENAUTH_DB="))
        .expect("TOKENAUTH_DB set");
    let volume = get("VOLUME").join(" ");
    let db_dir = Path::new(db).parent().unwrap().to_str().unwrap();
    assert!(volume.contains(db_dir), "the store {db} is not on a VOLUME");

    // The health check, run for real against a server, then against none.
    let health = get("HEALTHCHECK");
    assert_eq!(health.len(), 1);
    let json = &health[0][health[0].find("CMD [").unwrap() + 4..];
    let argv: Vec<String> = serde_json::from_str(json).unwrap();
    assert!(argv[argv.len() - 1].ends_with("/healthz"), "{argv:?}");
    let env = Env::new();
    let server = env.serve(&[]);
    let run = |url: &str| {
        let mut args: Vec<String> = argv[1..].to_vec();
        *args.last_mut().unwrap() = url.to_owned();
        env.cmd().args(&args).output().unwrap().status.success()
    };
    assert!(run(&server.url("/healthz")));
    let port = common::free_port();
    assert!(!run(&format!("http://127.0.0.1:{port}/healthz")));
}

/// `cargo test` turns the `test-clock` feature on through the dev-dependency on the crate
/// itself; nothing else may, or release builds (`cargo build --release`, `cargo install`)
/// would let `TOKENAUTH_NOW` move their clock. (.ci/run checks a plain release binary.)
#[test]
fn only_the_tests_turn_on_the_test_clock() {
    let manifest = read("Cargo.toml");
    let mut section = "";
    let mut mentions = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if !line.starts_with('#') && line.contains("test-clock") {
            mentions.push((section, line));
        }
    }
    assert_eq!(
        mentions,
        [
            ("[features]", "test-clock = []"),
            (
                "[dev-dependencies]",
                r#"tokenauth = { path = ".", features = ["test-clock"] }"#
            ),
        ]
    );
}

/// The binary the tests run honours TOKENAUTH_NOW, and says at start-up that it is a test
/// build, so that one that reaches production is seen.
#[test]
fn a_test_build_honours_tokenauth_now_and_its_server_says_so() {
    let env = Env::new();
    let (_, key) = env.issue_key("ci", &[]);
    let grant = env.ok_with_env(
        &["sign-grant", "--key", key.to_str().unwrap()],
        &[("TOKENAUTH_NOW", "1000")],
    );
    let payload = grant.trim().split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iat"], 1000);
    let server = env.serve(&[]);
    assert!(
        server
            .log()
            .contains("this is a test build (feature test-clock)"),
        "{}",
        server.log()
    );
}

/// The README tells CI runners to copy the one file: it must need nothing beyond the C
/// library (glibc's libc, libm, libgcc_s and the loader), which every glibc system has.
#[test]
fn the_binary_needs_only_the_c_library() {
    let Ok(out) = std::process::Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_tokenauth"))
        .output()
    else {
        eprintln!("skipping: no ldd to list the binary's libraries (Debian's libc-bin)");
        return;
    };
    let listing = String::from_utf8_lossy(&out.stdout);
    let allowed = [
        "linux-vdso.so",
        "libc.so",
        "libm.so",
        "libgcc_s.so",
        "ld-linux",
    ];
    let others: Vec<&str> = listing
        .lines()
        .map(str::trim)
        .filter(|l| !allowed.iter().any(|a| l.contains(a)))
        .collect();
    assert!(out.status.success(), "{listing}");
    assert!(
        others.is_empty(),
        "the binary needs more than the C library: {others:?}"
    );
}
