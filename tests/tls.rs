//! `serve --tls-cert/--tls-key`: HTTPS with certificates made here (rcgen), checked with the
//! real curl and with the client commands' --ca-cert; reloading on SIGHUP.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Env, Server, signal};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A private CA: its certificate (PEM) and what signs with it.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

impl Ca {
    /// A server certificate for 127.0.0.1 and localhost: (chain PEM, key PEM).
    fn server_cert(&self) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "tokenauth test");
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Writes the CA and a server certificate from it into `dir`; returns (ca, cert, key) paths.
fn files(dir: &Path, ca: &Ca, tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    let (cert, key) = ca.server_cert();
    (
        write(dir, &format!("ca-{tag}.pem"), &ca.pem),
        write(dir, &format!("cert-{tag}.pem"), &cert),
        write(dir, &format!("key-{tag}.pem"), &key),
    )
}

fn serve_tls(env: &Env, cert: &Path, key: &Path) -> Server {
    let server = env.serve(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(server.scheme, "https", "{}", server.log());
    server
}

/// A client that trusts this CA alone (not the system's roots).
fn client_trusting(ca_pem: &str) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn have_curl() -> bool {
    let found = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipping the curl part: curl is not installed (apt-get install curl)");
    }
    found
}

#[test]
fn https_works_with_curl_and_get_token_given_the_private_ca_and_is_refused_without_it() {
    let env = Env::new();
    let authority = ca("tokenauth test CA");
    let (ca_file, cert, key) = files(env.path(), &authority, "a");
    env.ok(&["user", "add", "ci-bot"]);
    let server = serve_tls(&env, &cert, &key);
    let (_, key_file) = env.issue_key("ci-bot", &[]);
    let key_arg = key_file.to_str().unwrap();
    let ca_arg = ca_file.to_str().unwrap();

    if have_curl() {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--fail", "--cacert", ca_arg])
            .arg(server.url("/healthz"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl --cacert: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("\"ok\""));
        // Without the CA, curl refuses the certificate.
        let out = std::process::Command::new("curl")
            .args(["-sS", "--fail"])
            .arg(server.url("/healthz"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        // TLS 1.2 at least: a TLS 1.1 hello (which OpenSSL sends at security level 0) is
        // answered with an alert by the server, not refused by curl itself.
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--fail",
                "--cacert",
                ca_arg,
                "--tlsv1",
                "--tls-max",
                "1.1",
            ])
            .args(["--ciphers", "DEFAULT:@SECLEVEL=0"])
            .arg(server.url("/healthz"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "TLS 1.1 was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("alert"), "not refused by the server: {err}");
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--fail",
                "--cacert",
                ca_arg,
                "--tlsv1.2",
                "--tls-max",
                "1.2",
            ])
            .arg(server.url("/healthz"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "TLS 1.2: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // get-token with --ca-cert: a token over HTTPS.
    let token = env.ok(&[
        "get-token",
        "--key",
        key_arg,
        "--no-cache",
        "--ca-cert",
        ca_arg,
    ]);
    assert!(token.trim().starts_with("ey"), "{token}");
    // TOKENAUTH_CA_CERT does the same, for request too.
    let out = env.ok_with_env(
        &["request", "--key", key_arg, &server.url("/auth")],
        &[("TOKENAUTH_CA_CERT", ca_arg)],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["user"], "ci-bot");

    // Without it, the private CA is not trusted: one clear error naming the fix.
    let err = env.fails(&["get-token", "--key", key_arg, "--no-cache"]);
    assert!(err.contains("certificate"), "{err}");
    assert!(err.contains("--ca-cert"), "{err}");
    let err = env.fails(&["request", "--token", "x", &server.url("/auth")]);
    assert!(err.contains("--ca-cert"), "{err}");

    // A file that is no certificate is refused as such.
    let junk = write(env.path(), "junk.pem", "not a certificate\n");
    let err = env.fails(&[
        "get-token",
        "--key",
        key_arg,
        "--no-cache",
        "--ca-cert",
        junk.to_str().unwrap(),
    ]);
    assert!(err.contains("holds no PEM certificate"), "{err}");
}

#[test]
fn bad_missing_or_mismatched_certificates_are_one_clear_error_at_start() {
    let env = Env::new();
    let a = ca("CA a");
    let (_, cert, key) = files(env.path(), &a, "a");
    let (_, _, other_key) = files(env.path(), &a, "b");
    let junk = write(env.path(), "junk.pem", "hello\n");
    let missing = env.path().join("missing.pem");
    let serve = |cert: &Path, key: &Path| {
        env.fails(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
    };
    let err = serve(&missing, &key);
    assert!(
        err.contains("cannot read the TLS certificate") && err.contains("missing.pem"),
        "{err}"
    );
    let err = serve(&cert, &missing);
    assert!(err.contains("cannot read the TLS key"), "{err}");
    let err = serve(&junk, &key);
    assert!(err.contains("holds no PEM certificate"), "{err}");
    let err = serve(&cert, &junk);
    assert!(err.contains("holds no PEM private key"), "{err}");
    // The certificate as its own key: no key in it.
    let err = serve(&cert, &cert);
    assert!(err.contains("holds no PEM private key"), "{err}");
    let err = serve(&cert, &other_key);
    assert!(err.contains("do not go together"), "{err}");
    // The key's contents are never printed.
    let key_text = std::fs::read_to_string(&other_key).unwrap();
    let body_line = key_text.lines().nth(1).unwrap();
    assert!(!err.contains(body_line));
    // One without the other is a usage error.
    let out = env
        .cmd()
        .args(["serve", "--tls-cert", cert.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Waits until the server's log has `n` lines containing `text`.
fn wait_for_log(server: &Server, text: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.log().matches(text).count() < n {
        assert!(
            Instant::now() < deadline,
            "no '{text}' in the log: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections_and_keeps_old_ones() {
    let env = Env::new();
    let (a, b) = (ca("CA a"), ca("CA b"));
    let (_, cert, key) = files(env.path(), &a, "live");
    let server = serve_tls(&env, &cert, &key);
    let old = client_trusting(&a.pem);
    // A kept-alive connection made with certificate A.
    assert_eq!(
        old.get(server.url("/healthz")).send().unwrap().status(),
        200
    );

    // Certificate B replaces A in the same files; a failed reload first keeps A.
    std::fs::write(&key, "broken\n").unwrap();
    signal(server.pid(), "HUP");
    wait_for_log(&server, "not reloaded", 1);
    assert_eq!(
        client_trusting(&a.pem)
            .get(server.url("/healthz"))
            .send()
            .unwrap()
            .status(),
        200
    );
    let (b_cert, b_key) = b.server_cert();
    std::fs::write(&cert, b_cert).unwrap();
    std::fs::write(&key, b_key).unwrap();
    signal(server.pid(), "HUP");
    wait_for_log(&server, "TLS certificate reloaded", 1);

    // New connections see B: a client trusting B alone gets in, one trusting A alone not.
    assert_eq!(
        client_trusting(&b.pem)
            .get(server.url("/healthz"))
            .send()
            .unwrap()
            .status(),
        200
    );
    let refused = client_trusting(&a.pem).get(server.url("/healthz")).send();
    assert!(refused.is_err(), "a new connection still got certificate A");
    // The old connection was not dropped: its client trusts A alone, so it could not have
    // connected anew.
    assert_eq!(
        old.get(server.url("/healthz")).send().unwrap().status(),
        200
    );
    // Still running after the signals.
    assert!(server.log().contains("listening on https://"));
}

#[test]
fn plain_http_on_a_non_loopback_address_warns_once_at_start() {
    let env = Env::new();
    let server = env.serve_at("0.0.0.0:0", &[], &[]);
    let log = server.log();
    assert_eq!(log.matches("without TLS").count(), 1, "{log}");
    drop(server);
    let local = env.serve(&[]);
    assert!(!local.log().contains("without TLS"), "{}", local.log());
}
