//! The client with a CI job's ID token (`get-token --oidc`, `request --oidc`): GitHub Actions
//! against the test issuer standing in for ACTIONS_ID_TOKEN_REQUEST_URL, GitLab's variable,
//! files and variables, the cache, and the errors; against a fake token endpoint that records
//! the form it is sent. Also the test issuer itself.

mod common;

use std::process::Output;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::Env;
use common::oidc::{Http, Issuer, Request, Response};
use serde_json::{Value, json};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// A token endpoint that hands out `tok-1`, `tok-2`, … and records every request.
fn token_endpoint() -> Http {
    let n = std::sync::atomic::AtomicUsize::new(0);
    Http::start(move |_| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        Response::json(
            200,
            &json!({"access_token": format!("tok-{i}"), "token_type": "Bearer",
                    "expires_in": 3600, "scope": "read"}),
        )
    })
}

fn run(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut c = env.cmd();
    c.args(args);
    for (k, v) in vars {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs, asserts success, returns stdout.
fn ok(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> String {
    let out = run(env, args, vars);
    assert!(
        out.status.success(),
        "tokenauth {args:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Asserts exit 1, nothing on stdout and one `tokenauth: error:` line; returns it.
fn one_error(out: &Output) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "should exit 1: {err}");
    assert!(out.stdout.is_empty(), "printed {:?}", text(&out.stdout));
    assert!(err.starts_with("tokenauth: error: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    err.trim_end().to_owned()
}

/// The token requests the endpoint got.
fn exchanges(endpoint: &Http) -> Vec<Request> {
    let requests = endpoint.requests();
    for r in &requests {
        assert_eq!(r.method, "POST");
    }
    requests
}

/// A JWT's payload.
fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn github_vars(issuer: &Issuer) -> Vec<(&'static str, String)> {
    issuer.github_env().to_vec()
}

fn as_refs<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

// ---- the test issuer -------------------------------------------------------------------------

#[test]
fn the_test_issuer_serves_discovery_and_a_jwks_that_verifies_its_tokens() {
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};

    let issuer = Issuer::start();
    let http = common::http();
    let get = |path: &str| -> (u16, Value) {
        let resp = http.get(issuer.url(path)).send().unwrap();
        (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
    };
    let (status, discovery) = get("/.well-known/openid-configuration");
    assert_eq!(status, 200);
    assert_eq!(discovery["issuer"], issuer.issuer());
    assert_eq!(discovery["jwks_uri"], issuer.url("/jwks"));
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    let (_, served) = get("/jwks");
    assert_eq!(served.to_string(), issuer.jwks_json());
    assert_eq!(issuer.fetches(), 2);

    let verify = |token: &str, jwks: &str, alg: Algorithm, aud: &str| -> Value {
        let set: JwkSet = serde_json::from_str(jwks).unwrap();
        let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        let key = DecodingKey::from_jwk(set.find(&kid).expect("kid in the JWKS")).unwrap();
        let mut v = Validation::new(alg);
        v.set_audience(&[aud]);
        v.set_issuer(&[issuer.issuer()]);
        decode::<Value>(token, &key, &v).unwrap().claims
    };
    let aud = "https://auth.example.com";
    let jwks = issuer.jwks_json();
    let gh = verify(
        &issuer.github_token(aud, json!({})),
        &jwks,
        Algorithm::RS256,
        aud,
    );
    assert_eq!(gh["sub"], "repo:octo-org/octo-repo:environment:prod");
    assert_eq!(gh["repository"], "octo-org/octo-repo");
    assert_eq!(gh["runner_environment"], "github-hosted");
    let iat = gh["iat"].as_i64().unwrap();
    assert!((iat - common::now()).abs() <= 5, "{gh}");
    assert_eq!(gh["exp"].as_i64().unwrap() - iat, 300);
    assert_eq!(gh["nbf"].as_i64().unwrap() - iat, -600);
    let gl = verify(
        &issuer.gitlab_token(aud, json!({})),
        &jwks,
        Algorithm::RS256,
        aud,
    );
    assert_eq!(
        gl["sub"],
        "project_path:mygroup/myproject:ref_type:branch:ref:main"
    );
    assert_eq!(gl["project_path"], "mygroup/myproject");
    let es = verify(
        &issuer.es256_token(issuer.gitlab_claims(aud, json!({}))),
        &jwks,
        Algorithm::ES256,
        aud,
    );
    assert_eq!(es["namespace_path"], "mygroup");
    assert_ne!(gh["jti"], gl["jti"]);

    // Overrides replace, add and (with null) remove claims.
    let claims = issuer.github_claims(
        aud,
        json!({"repository": "evil/app", "extra": 1, "environment": null}),
    );
    assert_eq!(claims["repository"], "evil/app");
    assert_eq!(claims["extra"], 1);
    assert!(claims.get("environment").is_none());

    // The hostile tokens: unsigned, and HS256 keyed with what the issuer publishes.
    let none = issuer.alg_none_token(claims.clone());
    assert!(none.ends_with('.'));
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(none.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "none");
    let hs = issuer.hmac_with_jwks_token(issuer.github_claims(aud, json!({})));
    let mut v = Validation::new(Algorithm::HS256);
    v.set_audience(&[aud]);
    decode::<Value>(&hs, &DecodingKey::from_secret(jwks.as_bytes()), &v).unwrap();
    let hs = issuer.hmac_with_pem_token(issuer.github_claims(aud, json!({})));
    let pem = issuer.public_key_pem();
    decode::<Value>(&hs, &DecodingKey::from_secret(pem.as_bytes()), &v).unwrap();

    // Rotation: a new kid, the old key gone from the JWKS; tokens of the new key verify.
    let old = issuer.kid();
    issuer.rotate();
    assert_ne!(issuer.kid(), old);
    let rotated = issuer.jwks_json();
    assert!(!rotated.contains(&old), "{rotated}");
    verify(
        &issuer.github_token(aud, json!({})),
        &rotated,
        Algorithm::RS256,
        aud,
    );

    // Down: everything 503, still counted.
    issuer.set_down(true);
    assert_eq!(get("/jwks").0, 503);
    assert_eq!(get("/.well-known/openid-configuration").0, 503);
    assert_eq!(issuer.fetches(), 4);
    issuer.set_down(false);
    assert_eq!(get("/jwks").0, 200);
}

#[test]
fn the_test_issuers_id_token_endpoint_checks_the_request_token() {
    let issuer = Issuer::start();
    let http = common::http();
    let url = format!(
        "{}&audience=https%3A%2F%2Fauth.example.com",
        issuer.request_url()
    );
    let resp = http
        .get(&url)
        .header(
            "Authorization",
            format!("bearer {}", issuer.request_token()),
        )
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let value: Value = resp.json().unwrap();
    let claims = payload(value["value"].as_str().unwrap());
    assert_eq!(claims["aud"], "https://auth.example.com");
    assert_eq!(claims["iss"], issuer.issuer());
    let resp = http
        .get(&url)
        .header("Authorization", "bearer wrong")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(issuer.audiences_asked(), ["https://auth.example.com"]);
}

// ---- --oidc github ---------------------------------------------------------------------------

#[test]
fn github_sends_the_jobs_id_token_as_a_jwt_bearer_assertion_for_the_servers_issuer() {
    let env = Env::new();
    let issuer = Issuer::start();
    let endpoint = token_endpoint();
    // The audience defaults to the issuer: the token URI without its last path segment.
    let uri = endpoint.url("/token");
    let vars = github_vars(&issuer);
    let out = ok(
        &env,
        &[
            "get-token",
            "--oidc",
            "github",
            "--token-uri",
            &uri,
            "--trust",
            "gh-deploy",
        ],
        &as_refs(&vars),
    );
    assert_eq!(out, "tok-1\n");
    let sent = exchanges(&endpoint);
    assert_eq!(sent.len(), 1);
    let form = &sent[0];
    assert_eq!(form.form_field("grant_type").unwrap(), JWT_BEARER);
    assert_eq!(form.form_field("client_id").unwrap(), "gh-deploy");
    assert_eq!(form.form_field("scope"), None);
    let assertion = form.form_field("assertion").unwrap();
    let claims = payload(&assertion);
    let server_issuer = format!("http://{}", endpoint.addr);
    assert_eq!(claims["aud"], server_issuer.as_str());
    assert_eq!(claims["iss"], issuer.issuer());
    assert_eq!(claims["repository"], "octo-org/octo-repo");
    assert_eq!(issuer.audiences_asked(), [server_issuer.as_str()]);
    // The request token went to GitHub's stand-in only, as a bearer token.
    let asked = issuer.requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0].header("authorization").unwrap(),
        format!("bearer {}", issuer.request_token())
    );
    assert_eq!(asked[0].query_param("api-version"), Some("2.0"));
    assert!(!text(&form.body).contains(issuer.request_token()));

    // --audience overrides the default; --scope and the formats work as with a key file.
    let out = ok(
        &env,
        &[
            "get-token",
            "--oidc",
            "github",
            "--token-uri",
            &uri,
            "--audience",
            "https://auth.example.com/ci",
            "--scope",
            "read",
            "--format",
            "json",
        ],
        &as_refs(&vars),
    );
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["access_token"], "tok-2");
    let sent = exchanges(&endpoint);
    assert_eq!(sent[1].form_field("scope").unwrap(), "read");
    assert_eq!(sent[1].form_field("client_id"), None);
    assert_eq!(
        payload(&sent[1].form_field("assertion").unwrap())["aud"],
        "https://auth.example.com/ci"
    );
    assert_eq!(issuer.audiences_asked()[1], "https://auth.example.com/ci");

    // A token URI deeper in a path: the issuer is its folder. TOKENAUTH_TOKEN_URI stands in
    // for --token-uri.
    let mut vars2 = as_refs(&vars);
    let deep = endpoint.url("/auth/token");
    vars2.push(("TOKENAUTH_TOKEN_URI", &deep));
    assert_eq!(
        ok(&env, &["get-token", "--oidc", "github"], &vars2),
        "tok-3\n"
    );
    assert_eq!(exchanges(&endpoint)[2].path, "/auth/token");
    assert_eq!(
        issuer.audiences_asked()[2],
        format!("http://{}/auth", endpoint.addr)
    );
}

#[test]
fn github_without_the_actions_variables_names_the_permission_to_grant() {
    let env = Env::new();
    let endpoint = token_endpoint();
    let uri = endpoint.url("/token");
    for vars in [
        vec![],
        vec![("ACTIONS_ID_TOKEN_REQUEST_URL", "http://127.0.0.1:9/token")],
        vec![("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "x")],
    ] {
        let err = one_error(&run(
            &env,
            &["get-token", "--oidc", "github", "--token-uri", &uri],
            &vars,
        ));
        assert!(err.contains("permissions: id-token: write"), "{err}");
        assert!(err.contains("ACTIONS_ID_TOKEN_REQUEST_URL"), "{err}");
        assert!(err.contains("only inside a job"), "{err}");
    }
    assert!(endpoint.requests().is_empty());
}

#[test]
fn a_request_token_github_refuses_is_an_error_that_echoes_no_secret() {
    let env = Env::new();
    let issuer = Issuer::start();
    let endpoint = token_endpoint();
    let uri = endpoint.url("/token");
    let wrong = "ghs_wrongRequestToken0123456789";
    let url = issuer.request_url();
    let out = run(
        &env,
        &["get-token", "--oidc", "github", "--token-uri", &uri],
        &[
            ("ACTIONS_ID_TOKEN_REQUEST_URL", &url),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", wrong),
        ],
    );
    let err = one_error(&out);
    assert!(
        err.contains("refused ACTIONS_ID_TOKEN_REQUEST_TOKEN (HTTP 401"),
        "{err}"
    );
    assert!(err.contains(&issuer.issuer()), "names the service: {err}");
    assert!(
        !err.contains(wrong) && !err.contains(issuer.request_token()),
        "{err}"
    );
    assert!(
        !err.contains("api-version"),
        "the URL beyond its origin: {err}"
    );
    assert!(endpoint.requests().is_empty());
}

#[test]
fn an_id_token_the_server_refuses_is_an_error_naming_the_reason_not_the_token() {
    let env = Env::new();
    let issuer = Issuer::start();
    let endpoint = Http::start(|_| {
        Response::json(
            400,
            &json!({"error": "invalid_grant",
                    "error_description": "the ID token's repository is 'octo-org/octo-repo'"}),
        )
    });
    let uri = endpoint.url("/token");
    let vars = github_vars(&issuer);
    let err = one_error(&run(
        &env,
        &["get-token", "--oidc", "github", "--token-uri", &uri],
        &as_refs(&vars),
    ));
    assert!(
        err.contains(&format!(
            "{uri} refused the ID token from --oidc github: invalid_grant: the ID token's \
             repository is 'octo-org/octo-repo'"
        )),
        "{err}"
    );
    let assertion = endpoint.requests()[0].form_field("assertion").unwrap();
    assert!(!err.contains(&assertion[..40]), "{err}");
}

// ---- gitlab, file: and env: ------------------------------------------------------------------

#[test]
fn gitlab_reads_tokenauth_id_token_and_without_it_shows_the_yaml_to_add() {
    let env = Env::new();
    let issuer = Issuer::start();
    let endpoint = token_endpoint();
    let uri = endpoint.url("/token");
    let err = one_error(&run(
        &env,
        &["get-token", "--oidc", "gitlab", "--token-uri", &uri],
        &[],
    ));
    let aud = format!("http://{}", endpoint.addr);
    assert!(
        err.contains(&format!(
            "`id_tokens: {{TOKENAUTH_ID_TOKEN: {{aud: {aud}}}}}`"
        )),
        "{err}"
    );
    assert!(err.contains(".gitlab-ci.yml"), "{err}");

    let id_token = issuer.gitlab_token(&aud, json!({}));
    let out = ok(
        &env,
        &["get-token", "--oidc", "gitlab", "--token-uri", &uri],
        &[("TOKENAUTH_ID_TOKEN", &id_token)],
    );
    assert_eq!(out, "tok-1\n");
    let sent = exchanges(&endpoint);
    assert_eq!(sent[0].form_field("assertion").unwrap(), id_token);
    assert_eq!(sent[0].form_field("grant_type").unwrap(), JWT_BEARER);

    // --audience is GitHub's: a GitLab token names its own.
    let err = one_error(&run(
        &env,
        &[
            "get-token",
            "--oidc",
            "gitlab",
            "--token-uri",
            &uri,
            "--audience",
            "x",
        ],
        &[("TOKENAUTH_ID_TOKEN", &id_token)],
    ));
    assert!(err.contains("--audience goes with --oidc github"), "{err}");
}

#[test]
fn file_and_env_sources_send_the_token_they_hold_and_refuse_what_is_no_jwt() {
    let env = Env::new();
    let issuer = Issuer::start();
    let endpoint = token_endpoint();
    let uri = endpoint.url("/token");
    let token = issuer
        .sign_claims(&json!({"iss": issuer.issuer(), "sub": "system:serviceaccount:ci:deployer"}));

    // A Kubernetes projected token: read afresh each time, trailing newline trimmed.
    let path = env.path().join("token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    let source = format!("file:{}", path.display());
    let args = [
        "get-token",
        "--oidc",
        &source,
        "--token-uri",
        &uri,
        "--no-cache",
    ];
    assert_eq!(ok(&env, &args, &[]), "tok-1\n");
    let rotated = issuer.sign_claims(&json!({"iss": issuer.issuer(), "sub": "rotated"}));
    std::fs::write(&path, &rotated).unwrap();
    assert_eq!(ok(&env, &args, &[]), "tok-2\n");
    let sent = exchanges(&endpoint);
    assert_eq!(sent[0].form_field("assertion").unwrap(), token);
    assert_eq!(sent[1].form_field("assertion").unwrap(), rotated);

    let env_args = [
        "get-token",
        "--oidc",
        "env:MY_ID_TOKEN",
        "--token-uri",
        &uri,
    ];
    assert_eq!(
        ok(&env, &env_args, &[("MY_ID_TOKEN", &format!("  {token}\n"))]),
        "tok-3\n"
    );
    assert_eq!(
        exchanges(&endpoint)[2].form_field("assertion").unwrap(),
        token
    );
    let err = one_error(&run(&env, &env_args, &[]));
    assert!(err.contains("MY_ID_TOKEN is not set"), "{err}");

    // What is not a JWT is described, never sent nor shown.
    let secret_junk = "Bearer s3cr3t-value.not-a-jwt";
    std::fs::write(&path, secret_junk).unwrap();
    let err = one_error(&run(&env, &args, &[]));
    assert!(
        err.contains(&format!(
            "the ID token from --oidc {source} is not a JWT: it is 2 dot-separated parts, not 3"
        )),
        "{err}"
    );
    assert!(!err.contains("s3cr3t"), "{err}");
    let unsigned = issuer.alg_none_token(json!({"sub": "x"}));
    let err = one_error(&run(&env, &env_args, &[("MY_ID_TOKEN", &unsigned)]));
    assert!(
        err.ends_with("is not a JWT: its signature is empty"),
        "{err}"
    );
    let missing = format!("file:{}", env.path().join("absent").display());
    let err = one_error(&run(
        &env,
        &["get-token", "--oidc", &missing, "--token-uri", &uri],
        &[],
    ));
    assert!(err.contains("cannot read the ID token file"), "{err}");
    assert_eq!(exchanges(&endpoint).len(), 3);

    // An ID token pasted where the source goes is not echoed.
    let out = run(
        &env,
        &["get-token", "--oidc", &token, "--token-uri", &uri],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("not shown") && err.contains("env:NAME"),
        "{err}"
    );
    assert!(!err.contains(&token[..30]), "{err}");
}

// ---- the cache -------------------------------------------------------------------------------

#[test]
fn the_cache_serves_a_second_call_of_the_same_job_without_a_second_exchange() {
    let env = Env::new();
    let issuer = Issuer::start();
    let endpoint = token_endpoint();
    let uri = endpoint.url("/token");
    let vars = github_vars(&issuer);
    let args = ["get-token", "--oidc", "github", "--token-uri", &uri];
    assert_eq!(ok(&env, &args, &as_refs(&vars)), "tok-1\n");
    assert_eq!(ok(&env, &args, &as_refs(&vars)), "tok-1\n");
    assert_eq!(exchanges(&endpoint).len(), 1);
    assert_eq!(
        issuer.audiences_asked().len(),
        1,
        "no second ID token asked"
    );

    // Another trust, scope or audience is another entry.
    let mut with_trust = args.to_vec();
    with_trust.extend(["--trust", "other"]);
    assert_eq!(ok(&env, &with_trust, &as_refs(&vars)), "tok-2\n");
    assert_eq!(ok(&env, &with_trust, &as_refs(&vars)), "tok-2\n");

    // A new job (a self-hosted runner's next job: a new request token) never gets the token
    // the previous job got.
    let next_job = Issuer::start();
    let vars2 = github_vars(&next_job);
    assert_eq!(ok(&env, &args, &as_refs(&vars2)), "tok-3\n");
    assert_eq!(exchanges(&endpoint).len(), 3);

    // --no-cache always asks.
    let mut no_cache = args.to_vec();
    no_cache.push("--no-cache");
    assert_eq!(ok(&env, &no_cache, &as_refs(&vars)), "tok-4\n");

    // The same ID token in a variable is served from the cache; a new one is a new entry.
    let t1 = issuer.github_token("aud", json!({}));
    let env_args = ["get-token", "--oidc", "env:ID", "--token-uri", &uri];
    assert_eq!(ok(&env, &env_args, &[("ID", &t1)]), "tok-5\n");
    assert_eq!(ok(&env, &env_args, &[("ID", &t1)]), "tok-5\n");
    let t2 = issuer.github_token("aud", json!({}));
    assert_eq!(ok(&env, &env_args, &[("ID", &t2)]), "tok-6\n");

    // No ID token or request token is kept in the cache.
    let dir = env.path().join("cache").join("tokenauth");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let content = text(&std::fs::read(&path).unwrap());
        for secret in [
            &t1[..],
            &t2,
            issuer.request_token(),
            next_job.request_token(),
        ] {
            assert!(
                !content.contains(secret),
                "{} holds a secret",
                path.display()
            );
        }
        assert_eq!(common::mode(&path), 0o600, "{}", path.display());
    }
}

// ---- request, and what --oidc does not go with -------------------------------------------------

#[test]
fn request_sends_the_token_got_with_the_id_token() {
    let env = Env::new();
    let issuer = Issuer::start();
    let endpoint = token_endpoint();
    let uri = endpoint.url("/token");
    let api = Http::start(|req| {
        let ok = req.header("authorization") == Some("Bearer tok-1");
        Response::json(if ok { 200 } else { 401 }, &json!({"ok": ok}))
    });
    let id_token = issuer.gitlab_token("aud", json!({}));
    let out = ok(
        &env,
        &[
            "request",
            "--oidc",
            "gitlab",
            "--token-uri",
            &uri,
            &api.url("/builds"),
        ],
        // TOKENAUTH_TOKEN lying around is not sent in place of the ID token's.
        &[
            ("TOKENAUTH_ID_TOKEN", &id_token),
            ("TOKENAUTH_TOKEN", "stale"),
        ],
    );
    assert_eq!(out, r#"{"ok":true}"#);
    assert_eq!(exchanges(&endpoint).len(), 1);
}

#[test]
fn oidc_with_a_key_or_a_subject_is_a_conflict() {
    let env = Env::new();
    let uri = "https://auth.example.com/token";
    for (args, vars, other) in [
        (vec!["--key", "ci-bot.json"], vec![], "--key"),
        (vec![], vec![("TOKENAUTH_KEY", "ci-bot.json")], "--key"),
        (vec!["--sub", "alice"], vec![], "--sub"),
        (vec!["--private-key", "k.pem"], vec![], "--private-key"),
    ] {
        let mut all = vec!["get-token", "--oidc", "github", "--token-uri", uri];
        all.extend(&args);
        let out = run(&env, &all, &vars);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!(
                "the argument '--oidc <SOURCE>' cannot be used with '{other}"
            )),
            "{args:?}: {err}"
        );
    }
    let out = run(
        &env,
        &[
            "request",
            "--oidc",
            "github",
            "--token",
            "t",
            "https://api.example.com/",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot be used with"));

    let err = one_error(&run(
        &env,
        &["get-token", "--oidc", "github", "--token-uri", uri],
        &[("TOKENAUTH_KEY_BASE64", "e30=")],
    ));
    assert!(
        err.contains("--oidc and TOKENAUTH_KEY_BASE64 both give a credential"),
        "{err}"
    );

    // --oidc needs a token URI, over HTTPS unless it is this machine.
    let err = one_error(&run(&env, &["get-token", "--oidc", "github"], &[]));
    assert!(
        err.contains("pass --token-uri URI (or set TOKENAUTH_TOKEN_URI)"),
        "{err}"
    );
    let err = one_error(&run(
        &env,
        &[
            "get-token",
            "--oidc",
            "github",
            "--token-uri",
            "http://auth.example.com/token",
        ],
        &[],
    ));
    assert!(
        err.contains("would send the ID token unencrypted; use https://"),
        "{err}"
    );
    // The options of --oidc need it.
    for flag in ["--trust", "--audience", "--token-uri"] {
        let err = one_error(&run(
            &env,
            &["get-token", "--key", "k.json", flag, "x"],
            &[],
        ));
        assert!(err.contains(&format!("{flag} goes with --oidc")), "{err}");
    }
}
