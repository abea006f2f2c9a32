//! Keys of every algorithm, keys clients bring (keygen, --public-key, --private-key), both
//! key-file formats, what the server takes from keys in Google's format, and the RFC 8414
//! metadata.

mod common;

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use common::{Env, JWT_BEARER, Reply, Server, http, post_form, send};

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn key_file(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn get_token(env: &Env, key: &Path, extra: &[&str]) -> String {
    let mut args = vec!["get-token", "--no-cache", "--key", arg(key)];
    args.extend_from_slice(extra);
    env.ok(&args).trim().to_owned()
}

fn auth(server: &Server, token: &str) -> Reply {
    send(http().get(server.url("/auth")).bearer_auth(token))
}

fn exchange(server: &Server, grant: &str) -> Reply {
    post_form(
        server,
        &[("grant_type", JWT_BEARER), ("assertion", grant)],
        None,
    )
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A JWS over exactly this header and these claims, signed by the private key in `pem`
/// (which must be an `alg` key).
fn jws(pem: &str, alg: &str, header: &Value, claims: &Value) -> String {
    let key = tokenauth::grant::PrivateKey::parse(pem).unwrap();
    assert_eq!(key.alg().as_str(), alg);
    key.sign_jws(header, claims).unwrap()
}

#[test]
fn each_algorithm_signs_grants_that_its_key_accepts_and_no_other_algorithm() {
    let env = Env::new();
    let server = env.serve(&[]);
    for (alg, begin) in [
        ("RS256", "-----BEGIN RSA PRIVATE KEY-----"),
        ("ES256", "-----BEGIN PRIVATE KEY-----"),
        ("EdDSA", "-----BEGIN PRIVATE KEY-----"),
    ] {
        let user = format!("bot-{}", alg.to_lowercase());
        let (key_id, key) = env.issue_key(&user, &["--alg", alg]);
        let file = key_file(&key);
        assert_eq!(file["alg"], alg);
        assert!(
            file["private_key"].as_str().unwrap().starts_with(begin),
            "{alg}"
        );
        let token = get_token(&env, &key, &[]);
        let r = auth(&server, &token);
        assert_eq!(r.status, 200, "{alg}: {}", r.text);
        assert_eq!(r.header("x-auth-key-id"), Some(key_id.as_str()));
        // sign-grant and request sign with whatever the file holds, too.
        let grant = env.ok(&["sign-grant", "--key", arg(&key)]);
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(grant.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], alg);
        assert_eq!(exchange(&server, grant.trim()).status, 200);
        env.ok(&[
            "request",
            "--key",
            arg(&key),
            "--no-cache",
            &server.url("/auth"),
        ]);
        let listed = env.json(&["list-keys", "--json", "--user", &user]);
        assert_eq!(listed[0]["alg"], alg);
    }
    // An ES256 grant for an RS256 key is refused, even with a valid ES256 signature.
    let (_, rsa) = env.issue_key("mixed", &[]);
    let (_, ec) = env.issue_key("other-ec", &["--alg", "ES256"]);
    let rsa_file = key_file(&rsa);
    let now = common::now();
    let claims = json!({
        "iss": rsa_file["client_id"], "sub": "mixed", "aud": server.url("/token"),
        "iat": now, "exp": now + 60, "jti": common::fresh_jti(),
    });
    let forged = jws(
        key_file(&ec)["private_key"].as_str().unwrap(),
        "ES256",
        &json!({"alg": "ES256", "typ": "JWT"}),
        &claims,
    );
    let r = exchange(&server, &forged);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.json["error_description"],
        "Algorithm 'ES256' does not match this key, which signs with RS256"
    );
    let r = exchange(
        &server,
        &format!("{}.{}.", b64(&json!({"alg": "ES384"})), b64(&claims)),
    );
    assert_eq!(
        r.json["error_description"],
        "Algorithm 'ES384' is not allowed; grants are signed with RS256, ES256 or EdDSA (Ed25519)"
    );
}

#[test]
fn pkcs8_writes_an_rsa_key_that_more_libraries_read() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (_, key) = env.issue_key("pk8", &["--pkcs8"]);
    let pem = key_file(&key)["private_key"].as_str().unwrap().to_owned();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    assert_eq!(auth(&server, &get_token(&env, &key, &[])).status, 200);
    let err = env.fails(&[
        "issue-key",
        "--user",
        "x",
        "--alg",
        "ES256",
        "--format",
        "google",
    ]);
    assert!(err.contains("--format google keys are RS256"), "{err}");
}

/// keygen's output, written to files: (private key path, public PEM path, JWK path, kid).
fn keygen(env: &Env, alg: &str, name: &str) -> (PathBuf, PathBuf, PathBuf, String) {
    let private = env.path().join(format!("{name}.key"));
    let v = env.json(&["keygen", "--alg", alg, "--out", arg(&private), "--json"]);
    assert_eq!(common::mode(&private), 0o600);
    assert_eq!(v["alg"], alg);
    let pem = env.path().join(format!("{name}.pub"));
    std::fs::write(&pem, v["public_key"].as_str().unwrap()).unwrap();
    let jwk = env.path().join(format!("{name}.jwk"));
    std::fs::write(&jwk, v["jwk"].to_string()).unwrap();
    assert_eq!(v["jwk"]["kid"], v["key_id"]);
    (private, pem, jwk, v["key_id"].as_str().unwrap().to_owned())
}

/// Registers `public` for `user` and gets a token with `private`: returns the key file.
fn register(
    env: &Env,
    server: &Server,
    user: &str,
    public: &Path,
    private: &Path,
    kid: &str,
) -> PathBuf {
    let (key_id, file) = env.issue_key(user, &["--public-key", arg(public)]);
    assert_eq!(key_id, kid, "{}", public.display());
    assert!(key_file(&file).get("private_key").is_none());
    let token = get_token(env, &file, &["--private-key", arg(private)]);
    let r = auth(server, &token);
    assert_eq!(r.status, 200, "{}: {}", public.display(), r.text);
    file
}

#[test]
fn a_client_keeps_its_private_key_and_the_admin_registers_the_public_one() {
    let env = Env::new();
    let server = env.serve(&[]);
    for alg in ["ES256", "EdDSA", "RS256"] {
        let name = alg.to_lowercase();
        // keygen prints the public key as PEM and as a JWK.
        let text = env.ok(&[
            "keygen",
            "--alg",
            alg,
            "--out",
            arg(&env.path().join(format!("{name}-x.key"))),
        ]);
        assert!(
            text.starts_with("-----BEGIN PUBLIC KEY-----") && text.contains("\"kty\""),
            "{text}"
        );

        // As PEM: then the file needs the private key from somewhere.
        let (private, pem, _, kid) = keygen(&env, alg, &format!("{name}-pem"));
        let file = register(&env, &server, &format!("{name}-pem"), &pem, &private, &kid);
        assert_eq!(
            env.json(&["list-keys", "--json", "--user", &format!("{name}-pem")])[0]["alg"],
            alg
        );
        let err = env.fails(&["get-token", "--no-cache", "--key", arg(&file)]);
        assert!(
            err.contains("has no private key; pass --private-key FILE"),
            "{err}"
        );
        // Or the key file names it, relative to itself (here run from elsewhere).
        let mut named = key_file(&file);
        named["private_key_file"] = json!(private.file_name().unwrap().to_str().unwrap());
        let named_path = env.path().join(format!("{name}-named.json"));
        std::fs::write(&named_path, named.to_string()).unwrap();
        let out = env
            .cmd()
            .current_dir("/")
            .args(["get-token", "--no-cache", "--key", arg(&named_path)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // As a JWK, and as a JWKS holding one key.
        let (private, _, jwk, kid) = keygen(&env, alg, &format!("{name}-jwk"));
        register(&env, &server, &format!("{name}-jwk"), &jwk, &private, &kid);
        let (private, _, jwk, kid) = keygen(&env, alg, &format!("{name}-jwks"));
        let jwks = env.path().join(format!("{name}.jwks"));
        std::fs::write(&jwks, json!({ "keys": [key_file(&jwk)] }).to_string()).unwrap();
        register(
            &env,
            &server,
            &format!("{name}-jwks"),
            &jwks,
            &private,
            &kid,
        );
    }
    // Somebody else's private key is refused before anything is sent.
    let (mine, pem, _, kid) = keygen(&env, "ES256", "mine");
    let (theirs, _, _, _) = keygen(&env, "ES256", "theirs");
    let file = register(&env, &server, "mine", &pem, &mine, &kid);
    let err = env.fails(&[
        "get-token",
        "--no-cache",
        "--key",
        arg(&file),
        "--private-key",
        arg(&theirs),
    ]);
    assert!(err.contains("does not belong to key"), "{err}");
    let (ed, _, _, _) = keygen(&env, "EdDSA", "ed");
    let err = env.fails(&[
        "get-token",
        "--no-cache",
        "--key",
        arg(&file),
        "--private-key",
        arg(&ed),
    ]);
    assert!(
        err.contains("is a ES256 key, but its private key is EdDSA"),
        "{err}"
    );
    // The same public key twice, or with another --alg.
    let err = env.fails(&["issue-key", "--user", "again", "--public-key", arg(&pem)]);
    assert!(err.contains("this public key is already key"), "{err}");
    let (_, pem2, _, _) = keygen(&env, "ES256", "fresh");
    let err = env.fails(&[
        "issue-key",
        "--user",
        "x",
        "--public-key",
        arg(&pem2),
        "--alg",
        "RS256",
    ]);
    assert!(
        err.contains("--alg RS256 does not match the public key"),
        "{err}"
    );
    let err = env.fails(&["keygen", "--out", "-"]);
    assert!(err.contains("would print the private key"), "{err}");
}

#[test]
fn weak_odd_and_private_keys_are_refused_as_public_keys() {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let env = Env::new();
    env.ok(&["init"]);
    let small = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).unwrap();
    let write = |name: &str, text: &str| {
        let p = env.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let weak = write(
        "weak.pem",
        &small
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    );
    let private = write("private.pem", &small.to_pkcs8_pem(LineEnding::LF).unwrap());
    let p384 = write(
        "p384.jwk",
        r#"{"kty":"EC","crv":"P-384","x":"iA7lWQLzVrKGEFjfGMfMHfTEZ2KnLiKU7JuNT3E7ygsfE7ygsfE7ygsfE7ygsfE7","y":"iA7lWQLzVrKGEFjfGMfMHfTEZ2KnLiKU7JuNT3E7ygsfE7ygsfE7ygsfE7ygsfE7"}"#,
    );
    let private_jwk = write(
        "private.jwk",
        r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}"#,
    );
    let two = write("two.jwks", r#"{"keys":[{"kty":"OKP"},{"kty":"OKP"}]}"#);
    let junk = write("junk.txt", "not a key at all");
    for (file, says) in [
        (
            &weak,
            "it is a 1024-bit RSA key; RSA keys need at least 2048 bits",
        ),
        (&private, "it holds a private key; give the public key only"),
        (&private_jwk, "it holds a private key"),
        (&p384, "it is an EC key on P-384; ES256 keys are on P-256"),
        (&two, "it is a JWKS with 2 keys; give one key"),
        (
            &junk,
            "it is not a public key in PEM (BEGIN PUBLIC KEY), a JWK or a JWKS",
        ),
    ] {
        let err = env.fails(&["issue-key", "--user", "odd", "--public-key", arg(file)]);
        assert!(err.contains(says), "{}: {err}", file.display());
        assert!(!err.contains("nWGxne"), "the private key was echoed: {err}");
    }
    assert_eq!(env.json(&["list-keys", "--json"]), json!([]));
    // A refused key leaves no user behind.
    assert_eq!(env.json(&["user", "list", "--json"]), json!([]));
}

#[test]
fn google_format_files_carry_what_google_auth_reads() {
    let env = Env::new();
    env.ok(&["init", "--token-uri", "https://auth.example.com/token"]);
    let (key_id, file) = env.issue_key("etl+job", &["--format", "google", "--scope", "write"]);
    assert_eq!(common::mode(&file), 0o600);
    let v = key_file(&file);
    assert_eq!(v["type"], "service_account");
    assert_eq!(v["private_key_id"], key_id.as_str());
    assert!(
        v["private_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    let email = v["client_email"].as_str().unwrap();
    let client_id = v["client_id"].as_str().unwrap();
    assert_eq!(
        email,
        format!("etl_job.{}@auth.example.com", &client_id[..8])
    );
    assert_eq!(v["token_uri"], "https://auth.example.com/token");
    assert_eq!(v["user_id"], "etl+job");
    let listed = env.json(&["list-keys", "--json"]);
    assert_eq!(listed[0]["format"], "google");
    assert_eq!(listed[0]["client_email"], email);
    let err = env.fails(&[
        "issue-key",
        "--user",
        "x",
        "--format",
        "google",
        "--public-key",
        arg(&file),
    ]);
    assert!(
        err.contains("--format google needs the private key"),
        "{err}"
    );
}

/// What google-auth sends for a service account: iss = client_email, aud = Google's token
/// endpoint, no sub, the scopes in a `scope` claim, no jti, kid = private_key_id.
fn google_grant(key: &Value, scope: &str, extra: Value) -> String {
    let now = common::now();
    let mut claims = json!({
        "iss": key["client_email"], "aud": "https://oauth2.googleapis.com/token",
        "iat": now, "exp": now + 3600, "scope": scope,
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    jws(
        key["private_key"].as_str().unwrap(),
        "RS256",
        &json!({"alg": "RS256", "typ": "JWT", "kid": key["private_key_id"]}),
        &claims,
    )
}

#[test]
fn keys_in_google_format_take_google_auths_grants_and_tokenauth_keys_do_not() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (_, file) = env.issue_key("etl", &["--format", "google"]);
    let google = key_file(&file);
    let r = exchange(&server, &google_grant(&google, "read", json!({})));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["scope"], "read");
    let token = r.json["access_token"].as_str().unwrap();
    assert_eq!(auth(&server, token).header("x-auth-user"), Some("etl"));
    // An empty scope is the key's; more than the key's, or unknown, is invalid_scope.
    assert_eq!(
        exchange(&server, &google_grant(&google, "", json!({}))).status,
        200
    );
    for (scope, description) in [
        (
            "write",
            "Requested scope 'write' exceeds the key's scope 'read'",
        ),
        (
            "https://www.googleapis.com/auth/cloud-platform",
            "Unknown scope 'https://www.googleapis.com/auth/cloud-platform'; scopes are 'read' and 'write'",
        ),
    ] {
        let r = exchange(&server, &google_grant(&google, scope, json!({})));
        assert_eq!(
            (
                r.json["error"].as_str(),
                r.json["error_description"].as_str()
            ),
            (Some("invalid_scope"), Some(description))
        );
    }
    // The client id works as the issuer too, and a sub, when given, is checked as usual.
    let r = exchange(
        &server,
        &google_grant(
            &google,
            "read",
            json!({"iss": google["client_id"], "sub": "someone-else"}),
        ),
    );
    assert_eq!(
        r.json["error_description"],
        "Impersonation not allowed: user 'etl' may not act as 'someone-else'"
    );
    // A tokenauth-format key takes none of this.
    let (_, plain) = env.issue_key("plain", &[]);
    let p = key_file(&plain);
    let now = common::now();
    let claims = json!({"iss": p["client_id"], "aud": "https://oauth2.googleapis.com/token", "iat": now, "exp": now + 60, "sub": "plain"});
    let header = json!({"alg": "RS256", "typ": "JWT"});
    let r = exchange(
        &server,
        &jws(
            p["private_key"].as_str().unwrap(),
            "RS256",
            &header,
            &claims,
        ),
    );
    assert_eq!(r.json["error_description"], "Invalid audience");
    let mut no_sub = claims.clone();
    no_sub["aud"] = json!(server.url("/token"));
    no_sub.as_object_mut().unwrap().remove("sub");
    let r = exchange(
        &server,
        &jws(
            p["private_key"].as_str().unwrap(),
            "RS256",
            &header,
            &no_sub,
        ),
    );
    assert_eq!(r.json["error_description"], "Missing claim: sub");
    // tokenauth's own client reads the Google file as well.
    assert_eq!(auth(&server, &get_token(&env, &file, &[])).status, 200);
}

#[test]
fn metadata_keeps_a_path_prefix_and_answers_at_the_path_aware_location() {
    let env = Env::new();
    let server = env.serve(&[]);
    let get = |path: &str| send(http().get(server.url(path)));
    let doc = get("/.well-known/oauth-authorization-server").json;
    assert_eq!(doc["issuer"], server.url(""));
    assert_eq!(doc["response_types_supported"], json!(["none"]));
    assert_eq!(
        doc["token_endpoint_auth_signing_alg_values_supported"],
        json!(["RS256", "ES256", "EdDSA", "Ed25519"])
    );
    assert!(doc.get("service_documentation").is_none());

    let base = format!("{}/auth-svc", server.url(""));
    env.ok(&[
        "init",
        "--token-uri",
        &format!("{base}/token"),
        "--issuer",
        &base,
        "--service-documentation",
        "https://docs.example.com/tokenauth",
    ]);
    let r = get("/.well-known/oauth-authorization-server/auth-svc");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["issuer"], base.as_str());
    assert_eq!(r.json["token_endpoint"], format!("{base}/token"));
    assert_eq!(
        r.json["introspection_endpoint"],
        format!("{base}/introspect")
    );
    assert_eq!(r.json["revocation_endpoint"], format!("{base}/revoke"));
    assert_eq!(
        r.json["service_documentation"],
        "https://docs.example.com/tokenauth"
    );
    let r = get("/.well-known/oauth-authorization-server/elsewhere");
    assert_eq!(r.status, 404);
    assert_eq!(r.json["error"], "not_found");
    // With the token URI under a prefix and no issuer set, the issuer keeps the prefix.
    let env2 = Env::new();
    env2.ok(&["init", "--token-uri", "https://h.example/prefix/token"]);
    let v = env2.json(&["init", "--json"]);
    assert_eq!(v["issuer"], "https://h.example/prefix");
}
