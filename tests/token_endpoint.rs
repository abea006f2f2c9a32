//! The token endpoint, end to end: issue-key → sign-grant → POST /token.

mod common;

use common::fresh_jti;
use common::now as real_now;

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::{Value, json};

use common::{Env, JWT_BEARER, Reply, Server, exchange, http, post_form, send};

// ---- helpers --------------------------------------------------------------------------------

fn key_file(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn private_pem(path: &Path) -> String {
    key_file(path)["private_key"].as_str().unwrap().to_owned()
}

/// Signs `claims` as a grant header would say (RS256, kid) with the key file's private key.
fn craft_with(key: &Path, alg: Algorithm, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = key_file(key)["key_id"].as_str().map(str::to_owned);
    let signer = EncodingKey::from_rsa_pem(private_pem(key).as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &signer).unwrap()
}

fn craft(key: &Path, claims: &Value) -> String {
    craft_with(key, Algorithm::RS256, claims)
}

fn b64json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// Asserts an RFC 6749 §5.2 refusal: status, error code, exact description, not cacheable.
#[track_caller]
fn assert_refused(reply: &Reply, status: u16, error: &str, description: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.json["error"], error, "{}", reply.text);
    assert_eq!(
        reply.json["error_description"], description,
        "{}",
        reply.text
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

#[track_caller]
fn assert_invalid_grant(reply: &Reply, description: &str) {
    assert_refused(reply, 400, "invalid_grant", description);
}

#[track_caller]
fn assert_issued(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["token_type"], "Bearer", "{}", reply.text);
    reply.json["access_token"].as_str().unwrap().to_owned()
}

/// A running server whose clock is fixed at `now`, with one key issued at `now`.
struct Fixture {
    // First, so the server stops before the store's folder is removed.
    server: Server,
    env: Env,
    now: i64,
    key_id: String,
    key: PathBuf,
}

impl Fixture {
    fn new(user: &str, key_args: &[&str]) -> Fixture {
        Fixture::at(real_now(), user, key_args)
    }

    fn at(now: i64, user: &str, key_args: &[&str]) -> Fixture {
        let env = Env::new();
        let server = env.serve_with_env(&[], &[("TOKENAUTH_NOW", &now.to_string())]);
        let (key_id, key) =
            env.issue_key_with_env(user, key_args, &[("TOKENAUTH_NOW", &now.to_string())]);
        Fixture {
            server,
            env,
            now,
            key_id,
            key,
        }
    }

    /// Another key, issued at the fixture's time.
    fn issue(&self, user: &str, key_args: &[&str]) -> (String, PathBuf) {
        self.env
            .issue_key_with_env(user, key_args, &[("TOKENAUTH_NOW", &self.now.to_string())])
    }

    /// `tokenauth sign-grant --key KEY ARGS…` at the fixture's time.
    fn sign(&self, key: &Path, args: &[&str]) -> String {
        let mut all = vec!["sign-grant", "--key", key.to_str().unwrap()];
        all.extend_from_slice(args);
        self.env
            .ok_with_env(&all, &[("TOKENAUTH_NOW", &self.now.to_string())])
            .trim()
            .to_owned()
    }

    fn grant(&self, args: &[&str]) -> String {
        self.sign(&self.key, args)
    }

    fn exchange(&self, assertion: &str) -> Reply {
        post_form(
            &self.server,
            &[("grant_type", JWT_BEARER), ("assertion", assertion)],
            None,
        )
    }

    /// The claims sign-grant would put in a grant for `key`, at the fixture's time.
    fn claims_for(&self, key: &Path) -> Value {
        let kf = key_file(key);
        json!({
            "iss": kf["client_id"],
            "sub": kf["user_id"],
            "aud": self.server.url("/token"),
            "iat": self.now,
            "exp": self.now + 300,
            "jti": fresh_jti(),
        })
    }

    fn claims(&self) -> Value {
        self.claims_for(&self.key)
    }

    /// A grant for the fixture's key with some claims changed (`null` removes one).
    fn craft(&self, changes: Value) -> String {
        let mut claims = self.claims();
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        craft(&self.key, &claims)
    }

    fn usage(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["usage-log", "--json"];
        all.extend_from_slice(args);
        self.env.json(&all).as_array().unwrap().clone()
    }
}

// ---- 1. the happy path ----------------------------------------------------------------------

// ---- 2. each rule, with its error and exact description --------------------------------------

// ---- 3. replays -----------------------------------------------------------------------------

// ---- client authentication that contradicts the grant --------------------------------------

fn exchange_with(f: &Fixture, extra: &[(&str, &str)], basic: Option<&str>) -> Reply {
    let grant = f.grant(&[]);
    let mut form = vec![("grant_type", JWT_BEARER), ("assertion", grant.as_str())];
    form.extend_from_slice(extra);
    let mut req = http().post(f.server.url("/token")).form(&form);
    if let Some(credentials) = basic {
        req = req.header(
            "authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            ),
        );
    }
    send(req)
}

// ---- X-Forwarded-For from a trusted proxy ----------------------------------------------------

fn exchange_forwarded(server: &Server, grant: &str, xff: &str) -> Reply {
    send(
        http()
            .post(server.url("/token"))
            .header("x-forwarded-for", xff)
            .form(&[("grant_type", JWT_BEARER), ("assertion", grant)]),
    )
}

// ---- 4. changes made while the server runs -----------------------------------------------------

// ---- 5. impersonation -------------------------------------------------------------------------

// ---- 6. the usage log -------------------------------------------------------------------------

// ---- 7. retention ---------------------------------------------------------------------------

// ---- 8. malformed requests ----------------------------------------------------------------------

#[track_caller]
fn assert_client_error(reply: &Reply, status: u16, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text);
    assert!(
        reply.json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {}",
        reply.text
    );
    assert!(
        reply.json["error_description"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{what}: {}",
        reply.text
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"), "{what}");
}

const FORM: &str = "application/x-www-form-urlencoded";

fn post_raw(
    server: &Server,
    content_type: Option<&str>,
    body: impl Into<reqwest::blocking::Body>,
) -> Reply {
    let mut req = http().post(server.url("/token")).body(body);
    if let Some(ct) = content_type {
        req = req.header(reqwest::header::CONTENT_TYPE, ct);
    }
    send(req)
}

/// Sends raw bytes to the server and reads its answer until it closes the connection.
fn raw_http(server: &Server, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(server.addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    conn.write_all(request).unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

// ---- 9. metadata and health ---------------------------------------------------------------------

common::on_both_backends! {
fn issue_sign_exchange_gives_a_bearer_token() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (_, key) = env.issue_key("ci-bot", &[]);
    let grant = env.ok(&["sign-grant", "--key", key.to_str().unwrap()]);
    let (status, body) = exchange(&server, grant.trim());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "read");
    let token = body["access_token"].as_str().unwrap();
    env.ok(&["verify", token]);
}

fn a_good_grant_gets_an_uncacheable_json_bearer_token() {
    let f = Fixture::new("ci-bot", &[]);
    let grant = f.grant(&[]);
    let reply = f.exchange(&grant);
    let token = assert_issued(&reply);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("pragma"), Some("no-cache"));
    let body = reply.json.as_object().unwrap();
    let mut fields: Vec<&str> = body.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["access_token", "expires_in", "scope", "token_type"]
    );
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "read");
    assert_eq!(body["token_type"], "Bearer");

    let verified = f.env.json(&["verify", &token, "--json"]);
    assert_eq!(verified["valid"], true, "{verified}");
    let claims = &verified["claims"];
    assert_eq!(claims["sub"], "ci-bot");
    assert_eq!(claims["key_id"], f.key_id.as_str());
    assert_eq!(claims["client_id"], key_file(&f.key)["client_id"]);
    assert_eq!(claims["scope"], "read");
    assert_eq!(claims["iat"], f.now);
    assert_eq!(claims["exp"], f.now + 3600);
}

fn a_token_never_outlives_its_key() {
    let f = Fixture::new("ci-bot", &["--expires", "10m"]);
    let reply = f.exchange(&f.grant(&[]));
    assert_issued(&reply);
    assert_eq!(reply.json["expires_in"], 600, "{}", reply.text);
}

fn the_audience_may_be_the_issuer_or_a_list_holding_the_token_uri() {
    let f = Fixture::new("ci-bot", &[]);
    let issuer = format!("http://{}", f.server.addr);
    assert_issued(&f.exchange(&f.grant(&["--aud", &issuer])));
    let list = json!(["http://other.example/token", f.server.url("/token")]);
    assert_issued(&f.exchange(&f.craft(json!({ "aud": list }))));
    assert_invalid_grant(
        &f.exchange(&f.craft(json!({ "aud": ["http://other.example/token"] }))),
        "Invalid audience",
    );
}

fn refuses_alg_none() {
    let f = Fixture::new("ci-bot", &[]);
    let header = b64json(&json!({ "alg": "none", "typ": "JWT" }));
    let unsigned = format!("{header}.{}.", b64json(&f.claims()));
    assert_invalid_grant(
        &f.exchange(&unsigned),
        "Algorithm 'none' is not allowed; grants are signed with RS256, ES256 or EdDSA (Ed25519)",
    );
}

fn refuses_hs256_signed_with_the_keys_public_key() {
    let f = Fixture::new("ci-bot", &[]);
    let public_pem = rsa::RsaPrivateKey::from_pkcs1_pem(&private_pem(&f.key))
        .unwrap()
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(f.key_id.clone());
    let forged = jsonwebtoken::encode(
        &header,
        &f.claims(),
        &EncodingKey::from_secret(public_pem.as_bytes()),
    )
    .unwrap();
    assert_invalid_grant(
        &f.exchange(&forged),
        "Algorithm 'HS256' is not allowed; grants are signed with RS256, ES256 or EdDSA (Ed25519)",
    );
}

fn refuses_rsa_algorithms_other_than_rs256() {
    let f = Fixture::new("ci-bot", &[]);
    for (alg, name) in [(Algorithm::RS512, "RS512"), (Algorithm::PS256, "PS256")] {
        let grant = craft_with(&f.key, alg, &f.claims());
        assert_invalid_grant(
            &f.exchange(&grant),
            &format!(
                "Algorithm '{name}' is not allowed; grants are signed with RS256, ES256 or EdDSA (Ed25519)"
            ),
        );
    }
}

fn refuses_an_expired_grant() {
    let f = Fixture::new("ci-bot", &[]);
    let past = (f.now - 1000).to_string();
    let args = [
        "sign-grant",
        "--key",
        f.key.to_str().unwrap(),
        "--lifetime",
        "300",
    ];
    let grant = f.env.ok_with_env(&args, &[("TOKENAUTH_NOW", &past)]);
    assert_invalid_grant(&f.exchange(grant.trim()), "Signature has expired");
    // exp must be after now: exp == now is already expired, now + 1 is not.
    assert_invalid_grant(
        &f.exchange(&f.craft(json!({ "exp": f.now }))),
        "Signature has expired",
    );
    assert_issued(&f.exchange(&f.craft(json!({ "exp": f.now + 1 }))));
}

fn refuses_a_grant_issued_over_an_hour_ago() {
    let f = Fixture::new("ci-bot", &[]);
    let old = f.craft(json!({ "iat": f.now - 4000, "exp": f.now + 100 }));
    assert_invalid_grant(
        &f.exchange(&old),
        "JWT was issued more than an hour in the past",
    );
    assert_invalid_grant(
        &f.exchange(&f.craft(json!({ "iat": f.now - 3601 }))),
        "JWT was issued more than an hour in the past",
    );
    assert_issued(&f.exchange(&f.craft(json!({ "iat": f.now - 3600 }))));
}

fn refuses_a_grant_issued_in_the_future() {
    let f = Fixture::new("ci-bot", &[]);
    assert_invalid_grant(
        &f.exchange(&f.craft(json!({ "iat": f.now + 600 }))),
        "JWT was issued in the future",
    );
    // 60 seconds of clock skew are tolerated, not more.
    assert_invalid_grant(
        &f.exchange(&f.craft(json!({ "iat": f.now + 61 }))),
        "JWT was issued in the future",
    );
    assert_issued(&f.exchange(&f.craft(json!({ "iat": f.now + 60 }))));
}

fn refuses_a_grant_expiring_more_than_a_day_ahead() {
    let f = Fixture::new("ci-bot", &[]);
    assert_invalid_grant(
        &f.exchange(&f.craft(json!({ "exp": f.now + 86_401 }))),
        "Grant expires more than a day in the future",
    );
    assert_invalid_grant(
        &f.exchange(&f.craft(json!({ "exp": f.now + 10 * 86_400 }))),
        "Grant expires more than a day in the future",
    );
    assert_issued(&f.exchange(&f.craft(json!({ "exp": f.now + 86_400 }))));
}

fn refuses_a_grant_before_its_nbf_and_honours_a_past_nbf() {
    let f = Fixture::new("ci-bot", &[]);
    assert_invalid_grant(
        &f.exchange(&f.craft(json!({ "nbf": f.now + 120 }))),
        "The token is not yet valid (nbf)",
    );
    assert_invalid_grant(
        &f.exchange(&f.craft(json!({ "nbf": f.now + 61 }))),
        "The token is not yet valid (nbf)",
    );
    assert_issued(&f.exchange(&f.craft(json!({ "nbf": f.now + 60 }))));
    assert_issued(&f.exchange(&f.craft(json!({ "nbf": f.now - 10 }))));
}

fn refuses_grants_missing_a_required_claim() {
    let f = Fixture::new("ci-bot", &[]);
    for claim in ["iss", "exp", "iat", "aud", "sub"] {
        let grant = f.craft(json!({ claim: null }));
        assert_invalid_grant(&f.exchange(&grant), &format!("Missing claim: {claim}"));
    }
    // Without a jti the grant is fine (the replay check needs one only when present).
    assert_issued(&f.exchange(&f.craft(json!({ "jti": null }))));
}

fn refuses_a_wrong_audience() {
    let f = Fixture::new("ci-bot", &[]);
    let grant = f.grant(&["--aud", "http://evil/token"]);
    assert_invalid_grant(&f.exchange(&grant), "Invalid audience");
}

fn refuses_an_unknown_issuer() {
    let f = Fixture::new("ci-bot", &[]);
    let grant = f.craft(json!({ "iss": "0123456789abcdef0123456789abcdef" }));
    assert_invalid_grant(&f.exchange(&grant), "No associated key found");
}

fn refuses_a_grant_signed_by_another_key() {
    let f = Fixture::new("ci-bot", &[]);
    let (_, other) = f.issue("ci-bot", &[]);
    // The claims name the fixture's key, the signature is the other key's.
    let forged = craft(&other, &f.claims());
    assert_invalid_grant(&f.exchange(&forged), "Invalid signature");
    // A signature taken from a good grant and pasted onto changed claims fails too.
    let good = f.grant(&[]);
    let sig = good.rsplit('.').next().unwrap();
    let header = good.split('.').next().unwrap();
    let mut claims = f.claims();
    claims["sub"] = json!("someone-else");
    let spliced = format!("{header}.{}.{sig}", b64json(&claims));
    assert_invalid_grant(&f.exchange(&spliced), "Invalid signature");
}

fn refuses_an_unsupported_grant_type() {
    let f = Fixture::new("ci-bot", &[]);
    let grant = f.grant(&[]);
    let reply = post_form(
        &f.server,
        &[("grant_type", "client_credentials"), ("assertion", &grant)],
        None,
    );
    assert_refused(
        &reply,
        400,
        "unsupported_grant_type",
        &format!(
            "Unsupported grant type 'client_credentials'; use {JWT_BEARER} (or urn:ietf:params:oauth:grant-type:token-exchange with an ID token)"
        ),
    );
    let reply = post_form(&f.server, &[("assertion", &grant)], None);
    assert_refused(
        &reply,
        400,
        "invalid_request",
        "Missing parameter: grant_type",
    );
}

fn refuses_a_request_without_an_assertion() {
    let f = Fixture::new("ci-bot", &[]);
    let reply = post_form(&f.server, &[("grant_type", JWT_BEARER)], None);
    assert_refused(
        &reply,
        400,
        "invalid_request",
        "Missing parameter: assertion",
    );
    let reply = post_form(
        &f.server,
        &[("grant_type", JWT_BEARER), ("assertion", "")],
        None,
    );
    assert_refused(
        &reply,
        400,
        "invalid_request",
        "Missing parameter: assertion",
    );
}

fn refuses_a_revoked_key() {
    let f = Fixture::new("ci-bot", &[]);
    let grant = f.grant(&[]);
    f.env.ok(&["revoke-key", &f.key_id, "--yes"]);
    assert_invalid_grant(&f.exchange(&grant), "Key has been revoked");
}

fn refuses_an_expired_key() {
    let issued = real_now() - 7200;
    let env = Env::new();
    let (_, key) = env.issue_key_with_env(
        "ci-bot",
        &["--expires", "1h"],
        &[("TOKENAUTH_NOW", &issued.to_string())],
    );
    let now = (issued + 7200).to_string();
    let server = env.serve_with_env(&[], &[("TOKENAUTH_NOW", &now)]);
    let args = [
        "sign-grant",
        "--key",
        key.to_str().unwrap(),
        "--aud",
        &server.url("/token"),
    ];
    let grant = env.ok_with_env(&args, &[("TOKENAUTH_NOW", &now)]);
    let reply = post_form(
        &server,
        &[("grant_type", JWT_BEARER), ("assertion", grant.trim())],
        None,
    );
    assert_invalid_grant(&reply, "Key has expired");
}

fn refuses_a_disabled_user() {
    let f = Fixture::new("ci-bot", &[]);
    f.env.ok(&["user", "disable", "ci-bot"]);
    assert_invalid_grant(&f.exchange(&f.grant(&[])), "User 'ci-bot' is disabled");
}

fn refuses_a_scope_beyond_the_keys_scope() {
    let f = Fixture::new("ci-bot", &["--scope", "read"]);
    let want = "Requested scope 'write' exceeds the key's scope 'read'";
    assert_refused(
        &f.exchange(&f.grant(&["--scope", "write"])),
        400,
        "invalid_scope",
        want,
    );
    assert_refused(
        &f.exchange(&f.grant(&["--scope", "read write"])),
        400,
        "invalid_scope",
        want,
    );
    let reply = post_form(
        &f.server,
        &[
            ("grant_type", JWT_BEARER),
            ("assertion", &f.grant(&[])),
            ("scope", "write"),
        ],
        None,
    );
    assert_refused(&reply, 400, "invalid_scope", want);
}

fn refuses_an_unknown_scope() {
    let f = Fixture::new("ci-bot", &["--scope", "write"]);
    let want = "Unknown scope 'admin'; scopes are 'read' and 'write'";
    assert_refused(
        &f.exchange(&f.grant(&["--scope", "read admin"])),
        400,
        "invalid_scope",
        want,
    );
    let reply = post_form(
        &f.server,
        &[
            ("grant_type", JWT_BEARER),
            ("assertion", &f.grant(&[])),
            ("scope", "admin"),
        ],
        None,
    );
    assert_refused(&reply, 400, "invalid_scope", want);
}

fn a_write_key_asked_for_read_gets_a_read_token() {
    let f = Fixture::new("ci-bot", &["--scope", "write"]);
    // By default the token gets the key's whole scope.
    let reply = f.exchange(&f.grant(&[]));
    assert_issued(&reply);
    assert_eq!(reply.json["scope"], "read write");

    let reply = f.exchange(&f.grant(&["--scope", "read"]));
    let token = assert_issued(&reply);
    assert_eq!(reply.json["scope"], "read");
    assert_eq!(
        f.env.json(&["verify", &token, "--json"])["claims"]["scope"],
        "read"
    );
    f.env.fails(&["verify", &token, "--scope", "write"]);

    // The request's scope parameter wins over the grant's scope claim.
    let grant = f.grant(&["--scope", "write"]);
    let reply = post_form(
        &f.server,
        &[
            ("grant_type", JWT_BEARER),
            ("assertion", &grant),
            ("scope", "read"),
        ],
        None,
    );
    assert_issued(&reply);
    assert_eq!(reply.json["scope"], "read");
}

fn refuses_malformed_assertions_as_invalid_grants() {
    let f = Fixture::new("ci-bot", &[]);
    let claims = b64json(&f.claims());
    let cases = [
        (
            "not-a-jwt".to_owned(),
            "Malformed assertion: a JWT has three dot-separated parts",
        ),
        (
            "a.b.c.d".to_owned(),
            "Malformed assertion: a JWT has three dot-separated parts",
        ),
        (
            "!!!.e30.x".to_owned(),
            "Malformed assertion: header is not base64url",
        ),
        (
            format!("{}.e30.x", URL_SAFE_NO_PAD.encode("[1]")),
            "Malformed assertion: header is not a JSON object",
        ),
        (
            format!("{}.{claims}.x", b64json(&json!({}))),
            "Malformed assertion: header has no alg",
        ),
        (
            format!("{}.!!!.x", b64json(&json!({ "alg": "RS256" }))),
            "Malformed assertion: payload is not base64url",
        ),
        (
            format!(
                "{}.{claims}.x",
                b64json(&json!({ "alg": "RS256", "typ": "at+jwt" }))
            ),
            "Invalid token type: a grant's typ must be JWT",
        ),
        (
            format!(
                "{}.{claims}.x",
                b64json(&json!({ "alg": "RS256", "crit": ["exp"] }))
            ),
            "Unsupported critical header parameters",
        ),
    ];
    for (assertion, description) in cases {
        assert_invalid_grant(&f.exchange(&assertion), description);
    }
    assert_invalid_grant(
        &f.exchange(&f.craft(json!({ "exp": "tomorrow" }))),
        "Claim exp must be a number (seconds since the epoch)",
    );
    assert_invalid_grant(
        &f.exchange(&f.craft(json!({ "sub": 42 }))),
        "Claim sub must be a string",
    );
    assert_invalid_grant(
        &f.exchange(&f.craft(json!({ "jti": "" }))),
        "Claim jti must be a non-empty string",
    );
}

fn a_replayed_jti_is_refused() {
    let f = Fixture::new("ci-bot", &[]);
    let grant = f.grant(&[]);
    assert_issued(&f.exchange(&grant));
    assert_invalid_grant(
        &f.exchange(&grant),
        "Grant has already been used (jti replayed)",
    );
    // A different grant carrying the same jti is a replay as well.
    let jti = serde_json::from_slice::<Value>(
        &URL_SAFE_NO_PAD
            .decode(grant.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()["jti"]
        .clone();
    let again = f.craft(json!({ "jti": jti, "iat": f.now - 1 }));
    assert_invalid_grant(
        &f.exchange(&again),
        "Grant has already been used (jti replayed)",
    );
}

fn a_jti_is_a_replay_only_for_the_same_key() {
    let f = Fixture::new("ci-bot", &[]);
    let (_, other) = f.issue("deployer", &[]);
    let mut a = f.claims();
    let mut b = f.claims_for(&other);
    a["jti"] = json!("shared-jti");
    b["jti"] = json!("shared-jti");
    assert_issued(&f.exchange(&craft(&f.key, &a)));
    assert_issued(&f.exchange(&craft(&other, &b)));
}

fn a_replayed_jti_is_refused_after_a_restart() {
    let now = real_now().to_string();
    let env = Env::new();
    // A fixed issuer, accepted as the audience whatever port each server gets.
    env.ok(&["init", "--issuer", "http://auth.example"]);
    let (_, key) = env.issue_key("ci-bot", &[]);
    let args = [
        "sign-grant",
        "--key",
        key.to_str().unwrap(),
        "--aud",
        "http://auth.example",
    ];
    let grant = env.ok_with_env(&args, &[("TOKENAUTH_NOW", &now)]);
    let params = [("grant_type", JWT_BEARER), ("assertion", grant.trim())];

    let mut first = env.serve_with_env(&[], &[("TOKENAUTH_NOW", &now)]);
    assert_issued(&post_form(&first, &params, None));
    assert!(first.stop().success());

    let second = env.serve_with_env(&[], &[("TOKENAUTH_NOW", &now)]);
    assert_invalid_grant(
        &post_form(&second, &params, None),
        "Grant has already been used (jti replayed)",
    );
}

/// Before the store kept used grants, each server process had its own replay set: the same
/// grant got 200 from one server and 200 again from a second on the same store.
fn a_grant_is_good_for_one_exchange_across_two_servers_on_one_store() {
    let env = Env::new();
    env.ok(&["init", "--issuer", "http://auth.example"]);
    let (_, key) = env.issue_key("ci-bot", &[]);
    let a = env.serve(&[]);
    let b = env.serve(&[]);
    let sign = |extra: &[&str]| {
        let mut args = vec![
            "sign-grant",
            "--key",
            key.to_str().unwrap(),
            "--aud",
            "http://auth.example",
        ];
        args.extend_from_slice(extra);
        env.ok(&args).trim().to_owned()
    };
    let params = |g: &str| {
        vec![
            ("grant_type", JWT_BEARER.to_owned()),
            ("assertion", g.to_owned()),
        ]
    };
    let post = |server: &Server, g: &str| {
        let p = params(g);
        let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
        post_form(server, &p, None)
    };
    for (first, second) in [(&a, &b), (&b, &a)] {
        let grant = sign(&[]);
        assert_issued(&post(first, &grant));
        assert_invalid_grant(
            &post(second, &grant),
            "Grant has already been used (jti replayed)",
        );
        assert_invalid_grant(
            &post(first, &grant),
            "Grant has already been used (jti replayed)",
        );
    }
    // Sent to both at once, many times over: exactly one exchange succeeds.
    for no_jti in [false, true] {
        let grant = sign(if no_jti { &["--no-jti"] } else { &[] });
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (server, grant) = (if i % 2 == 0 { &a } else { &b }, &grant);
                    s.spawn(move || post(server, grant).status)
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "no_jti {no_jti}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 400),
            "{statuses:?}"
        );
    }
}

/// Before, a grant without jti could be exchanged again and again until it expired.
fn a_grant_without_jti_is_good_for_one_exchange_and_counted_in_the_usage_log() {
    let f = Fixture::new("legacy-bot", &[]);
    let grant = f.grant(&["--no-jti"]);
    assert_issued(&f.exchange(&grant));
    assert_invalid_grant(
        &f.exchange(&grant),
        "Grant has already been used (a grant without jti is good for one exchange)",
    );
    // Another grant without jti (other claims, so another signature) is a new grant.
    let other = f.craft(json!({ "jti": null, "exp": f.now + 299 }));
    assert_issued(&f.exchange(&other));
    let with_jti = f.grant(&[]);
    assert_issued(&f.exchange(&with_jti));
    let rows = f.usage(&["--no-jti"]);
    let oks = rows.iter().filter(|r| r["ok"] == true).count();
    assert_eq!(oks, 2, "two issuances from grants without jti: {rows:#?}");
    assert!(rows.iter().all(|r| r["no_jti"] == true), "{rows:#?}");
    assert_eq!(f.usage(&[]).iter().filter(|r| r["ok"] == true).count(), 3);
    let table = f.env.ok(&["usage-log", "--no-jti"]);
    assert!(table.contains("ok (grant without jti)"), "{table}");
}

fn require_jti_refuses_grants_without_one() {
    let env = Env::new();
    let server = env.serve(&["--require-jti"]);
    let (_, key) = env.issue_key("strict-bot", &[]);
    let sign = |extra: &[&str]| {
        let mut args = vec!["sign-grant", "--key", key.to_str().unwrap()];
        args.extend_from_slice(extra);
        env.ok(&args).trim().to_owned()
    };
    let reply = post_form(
        &server,
        &[
            ("grant_type", JWT_BEARER),
            ("assertion", &sign(&["--no-jti"])),
        ],
        None,
    );
    assert_invalid_grant(
        &reply,
        "Grant has no jti claim; this server requires one (RFC 7523 §3)",
    );
    let reply = post_form(
        &server,
        &[("grant_type", JWT_BEARER), ("assertion", &sign(&[]))],
        None,
    );
    assert_issued(&reply);
    let refused: Value = env.json(&["usage-log", "--json", "--no-jti", "--failures"]);
    assert_eq!(refused.as_array().unwrap().len(), 1, "{refused:#}");
}

/// Before, a `client_id` parameter or Basic credentials naming another client were ignored.
fn client_authentication_naming_another_client_is_invalid_client() {
    let f = Fixture::new("ci-bot", &[]);
    let (_, other) = f.issue("other-bot", &[]);
    let mine = key_file(&f.key)["client_id"].as_str().unwrap().to_owned();
    let theirs = key_file(&other)["client_id"].as_str().unwrap().to_owned();

    let reply = exchange_with(&f, &[("client_id", &theirs)], None);
    assert_refused(
        &reply,
        401,
        "invalid_client",
        &format!("Parameter client_id is '{theirs}', but the grant was signed by client '{mine}'"),
    );
    assert_eq!(reply.header("www-authenticate"), None);
    let reply = exchange_with(&f, &[], Some(&format!("{theirs}:")));
    assert_refused(
        &reply,
        401,
        "invalid_client",
        &format!(
            "Basic credentials name client '{theirs}', but the grant was signed by client '{mine}'"
        ),
    );
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Basic realm=\"tokenauth\"")
    );
    let reply = exchange_with(&f, &[], Some(&format!("{mine}:a-secret")));
    assert_refused(
        &reply,
        401,
        "invalid_client",
        "Client secrets are not used: send an empty secret or none",
    );
    let reply = exchange_with(&f, &[("client_secret", "s3cret")], None);
    assert_refused(
        &reply,
        401,
        "invalid_client",
        "Client authentication with client_secret is not supported: the grant itself authenticates the client",
    );
    let reply = exchange_with(
        &f,
        &[
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", "x.y.z"),
        ],
        None,
    );
    assert_eq!(
        (reply.status, reply.json["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let mut req = http().post(f.server.url("/token")).form(&[
        ("grant_type", JWT_BEARER),
        ("assertion", f.grant(&[]).as_str()),
    ]);
    req = req.header("authorization", "Basic !!!not-base64");
    let reply = send(req);
    assert_refused(
        &reply,
        401,
        "invalid_client",
        "Malformed Basic credentials: expected base64 of client_id:secret",
    );
    // The refusals are in the usage log with their reason.
    let refused = f.usage(&["--failures"]);
    assert!(
        refused.iter().any(|r| r["reason"]
            .as_str()
            .unwrap()
            .starts_with("Basic credentials name client")),
        "{refused:#?}"
    );
}

/// requests-oauthlib sends `Authorization: Basic` with the client id and an empty secret.
fn client_authentication_that_agrees_with_the_grant_is_accepted() {
    let f = Fixture::new("ci-bot", &[]);
    let mine = key_file(&f.key)["client_id"].as_str().unwrap().to_owned();
    assert_issued(&exchange_with(&f, &[("client_id", &mine)], None));
    assert_issued(&exchange_with(&f, &[], Some(&format!("{mine}:"))));
    assert_issued(&exchange_with(
        &f,
        &[("client_id", &mine), ("client_secret", "")],
        Some(&format!("{mine}:")),
    ));
    // Another scheme is not client authentication at all.
    let mut req = http().post(f.server.url("/token")).form(&[
        ("grant_type", JWT_BEARER),
        ("assertion", f.grant(&[]).as_str()),
    ]);
    req = req.header("authorization", "Bearer something");
    assert_issued(&send(req));
}

/// Before, a hop the server could not read ended the walk at the proxy's own address, so a
/// key limited to the proxy's network worked from anywhere.
fn forwarded_hops_with_ports_are_read_and_unreadable_ones_fail_closed() {
    let env = Env::new();
    let server = env.serve(&["--trusted-proxy", "127.0.0.1"]);
    let (_, local) = env.issue_key("local-bot", &["--ip-range", "127.0.0.1"]);
    let (_, anywhere) = env.issue_key("open-bot", &[]);
    let (_, ranged) = env.issue_key("ranged-bot", &["--ip-range", "1.2.3.4, 2001:db8::7"]);
    let sign = |key: &Path| {
        env.ok(&["sign-grant", "--key", key.to_str().unwrap()])
            .trim()
            .to_owned()
    };
    for (xff, client) in [
        ("1.2.3.4:5555", "1.2.3.4"),
        ("1.2.3.4, 5.6.7.8:80", "5.6.7.8"),
        ("[2001:db8::7]:443", "2001:db8::7"),
    ] {
        assert_invalid_grant(
            &exchange_forwarded(&server, &sign(&local), xff),
            &format!("Address {client} is not allowed to use this key"),
        );
    }
    assert_issued(&exchange_forwarded(&server, &sign(&ranged), "1.2.3.4:5555"));
    assert_issued(&exchange_forwarded(
        &server,
        &sign(&ranged),
        "[2001:db8::7]:443",
    ));
    for xff in ["1.2.3.4, garbage", "garbage", "1.2.3.4:99999", "unknown"] {
        assert_invalid_grant(
            &exchange_forwarded(&server, &sign(&local), xff),
            "The client's address is unknown (a trusted proxy sent an unreadable X-Forwarded-For) and this key is limited to IP ranges",
        );
    }
    // A key without IP ranges does not care where its caller is.
    let reply = exchange_forwarded(&server, &sign(&anywhere), "1.2.3.4, garbage");
    let token = assert_issued(&reply);
    let rows: Value = env.json(&["usage-log", "--json", "--user", "open-bot"]);
    assert_eq!(rows[0]["address"], "unknown");
    // /auth judges the same way.
    let token_local = assert_issued(&exchange_forwarded(&server, &sign(&local), "127.0.0.1"));
    for (t, xff, status) in [
        (&token_local, "1.2.3.4, garbage", 401),
        (&token_local, "127.0.0.1:9", 200),
        (&token, "junk", 200),
    ] {
        let reply = send(
            http()
                .get(server.url("/auth"))
                .bearer_auth(t)
                .header("x-forwarded-for", xff),
        );
        assert_eq!(reply.status, status, "{xff}: {}", reply.text);
    }
    assert!(
        server.log().contains("unreadable X-Forwarded-For hop"),
        "{}",
        server.log()
    );
}

fn revoking_a_key_while_serving_refuses_its_next_grant() {
    let f = Fixture::new("ci-bot", &[]);
    assert_issued(&f.exchange(&f.grant(&[])));
    f.env.ok(&["revoke-key", &f.key_id, "--yes"]);
    assert_invalid_grant(&f.exchange(&f.grant(&[])), "Key has been revoked");
}

fn disabling_a_user_while_serving_refuses_its_next_grant() {
    let f = Fixture::new("ci-bot", &[]);
    assert_issued(&f.exchange(&f.grant(&[])));
    f.env.ok(&["user", "disable", "ci-bot"]);
    assert_invalid_grant(&f.exchange(&f.grant(&[])), "User 'ci-bot' is disabled");
    f.env.ok(&["user", "enable", "ci-bot"]);
    assert_issued(&f.exchange(&f.grant(&[])));
}

fn ip_range_edits_while_serving_apply_to_the_next_grant() {
    let f = Fixture::new("ci-bot", &[]);
    assert_issued(&f.exchange(&f.grant(&[])));
    f.env
        .ok(&["edit-key", &f.key_id, "--ip-range", "10.0.0.0/8"]);
    assert_invalid_grant(
        &f.exchange(&f.grant(&[])),
        "Address 127.0.0.1 is not allowed to use this key",
    );
    f.env.ok(&["edit-key", &f.key_id, "--no-ip-range"]);
    assert_issued(&f.exchange(&f.grant(&[])));
    f.env
        .ok(&["edit-key", &f.key_id, "--ip-range", "10.0.0.0/8, 127.0.0.1"]);
    assert_issued(&f.exchange(&f.grant(&[])));
}

fn impersonation_needs_the_permission_and_a_known_enabled_subject() {
    let f = Fixture::new("deployer", &[]);
    assert_invalid_grant(
        &f.exchange(&f.grant(&["--sub", "app"])),
        "Impersonation not allowed: user 'deployer' may not act as 'app'",
    );

    f.env.ok(&["user", "grant", "deployer", "impersonate"]);
    assert_invalid_grant(
        &f.exchange(&f.grant(&["--sub", "ghost"])),
        "Unknown subject 'ghost'",
    );

    f.env.ok(&["user", "add", "app"]);
    let reply = f.exchange(&f.grant(&["--sub", "app"]));
    let token = assert_issued(&reply);
    let verified = f.env.json(&["verify", &token, "--json"]);
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["claims"]["sub"], "app");
    assert_eq!(verified["claims"]["key_id"], f.key_id.as_str());
    let row = &f.usage(&[])[0];
    assert_eq!(
        (&row["user"], &row["subject"], &row["ok"]),
        (&json!("deployer"), &json!("app"), &json!(true))
    );

    f.env.ok(&["user", "disable", "app"]);
    assert_invalid_grant(
        &f.exchange(&f.grant(&["--sub", "app"])),
        "User 'app' is disabled",
    );
    f.env.ok(&["user", "revoke", "deployer", "impersonate"]);
    f.env.ok(&["user", "enable", "app"]);
    assert_invalid_grant(
        &f.exchange(&f.grant(&["--sub", "app"])),
        "Impersonation not allowed: user 'deployer' may not act as 'app'",
    );
}

fn an_issuance_is_logged_before_the_response() {
    let f = Fixture::new("ci-bot", &[]);
    let grant = f.grant(&[]);
    let reply = post_form(
        &f.server,
        &[("grant_type", JWT_BEARER), ("assertion", &grant)],
        Some("usage-test/1.0"),
    );
    assert_issued(&reply);
    // No waiting: the row is committed before the answer is sent.
    let rows = f.usage(&[]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["ok"], true);
    assert_eq!(row["time"], f.now);
    assert_eq!(row["key_id"], f.key_id.as_str());
    assert_eq!(row["user"], "ci-bot");
    assert_eq!(row["subject"], "ci-bot");
    assert_eq!(row["address"], "127.0.0.1");
    assert_eq!(row["user_agent"], "usage-test/1.0");
    assert_eq!(row["reason"], Value::Null);
    assert_eq!(f.env.json(&["list-keys", "--json"])[0]["last_used"], f.now);
}

fn a_refusal_is_logged_with_its_reason_but_never_the_grant() {
    let f = Fixture::new("ci-bot", &[]);
    let (_, other) = f.issue("ci-bot", &[]);
    let forged = craft(&other, &f.claims());
    let reply = post_form(
        &f.server,
        &[("grant_type", JWT_BEARER), ("assertion", &forged)],
        Some("forger/2.0"),
    );
    assert_invalid_grant(&reply, "Invalid signature");
    let unknown = f.craft(json!({ "iss": "nobody" }));
    assert_invalid_grant(&f.exchange(&unknown), "No associated key found");
    // Refusals are written without holding up the answer; the writer keeps order, so once
    // an issuance (which waits for its row) is answered, the refusals before it are in.
    assert_issued(&f.exchange(&f.grant(&[])));

    let rows = f.usage(&[]);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let failures = f.usage(&["--failures"]);
    assert_eq!(failures.len(), 2, "{failures:?}");
    let forged_row = failures
        .iter()
        .find(|r| r["user_agent"] == "forger/2.0")
        .unwrap();
    assert_eq!(forged_row["ok"], false);
    assert_eq!(forged_row["reason"], "Invalid signature");
    assert_eq!(forged_row["key_id"], f.key_id.as_str());
    assert_eq!(forged_row["user"], "ci-bot");
    assert_eq!(forged_row["address"], "127.0.0.1");
    let unknown_row = failures
        .iter()
        .find(|r| r["user_agent"] != "forger/2.0")
        .unwrap();
    assert_eq!(unknown_row["reason"], "No associated key found");
    assert_eq!(unknown_row["key_id"], Value::Null);

    let text = serde_json::to_string(&rows).unwrap();
    let secrets: Vec<&str> = [forged.as_str(), unknown.as_str()]
        .into_iter()
        .flat_map(|g| {
            [
                g,
                g.split('.').nth(1).unwrap(),
                g.split('.').nth(2).unwrap(),
            ]
        })
        .collect();
    for s in &secrets {
        assert!(!text.contains(s), "usage log holds grant text {s}");
        assert!(
            !f.server.log().contains(s),
            "server log holds grant text {s}"
        );
    }
    // Nor is it anywhere in the store's files (database, WAL, shared memory); on
    // PostgreSQL the usage log above is all there is to read.
    if f.env.pg.is_some() {
        return;
    }
    let dir = f.env.db().parent().unwrap().to_owned();
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        files += 1;
        for s in &secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "store file holds grant text {s}"
            );
        }
    }
    assert!(files >= 1);
}

fn retention_pruning_keeps_each_keys_newest_row() {
    let env = Env::new();
    let past = real_now() - 30 * 86_400;
    let at_past = [("TOKENAUTH_NOW", past.to_string())];
    let at_past: Vec<(&str, &str)> = at_past.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let mut old_server = env.serve_with_env(&[], &at_past);
    let (k1, k1_file) = env.issue_key_with_env("alpha", &[], &at_past);
    let (k2, k2_file) = env.issue_key_with_env("beta", &[], &at_past);
    let old_grant = |file: &PathBuf| {
        env.ok_with_env(&["sign-grant", "--key", file.to_str().unwrap()], &at_past)
            .trim()
            .to_owned()
    };
    for (file, ua) in [
        (&k1_file, "k1-1"),
        (&k1_file, "k1-2"),
        (&k1_file, "k1-3"),
        (&k2_file, "k2-1"),
        (&k2_file, "k2-2"),
    ] {
        let reply = post_form(
            &old_server,
            &[("grant_type", JWT_BEARER), ("assertion", &old_grant(file))],
            Some(ua),
        );
        assert_issued(&reply);
    }
    assert!(old_server.stop().success());
    let rows = |key: &str| {
        env.json(&["usage-log", key, "--json"])
            .as_array()
            .unwrap()
            .clone()
    };
    assert_eq!(rows(&k1).len(), 3);
    assert_eq!(rows(&k2).len(), 2);

    let server = env.serve(&["--usage-retention", "7d"]);
    let grant = env.ok(&[
        "sign-grant",
        "--key",
        k1_file.to_str().unwrap(),
        "--aud",
        &server.url("/token"),
    ]);
    let reply = post_form(
        &server,
        &[("grant_type", JWT_BEARER), ("assertion", grant.trim())],
        Some("k1-new"),
    );
    assert_issued(&reply);

    let k1_rows = rows(&k1);
    assert_eq!(k1_rows.len(), 1, "{k1_rows:?}");
    assert_eq!(k1_rows[0]["user_agent"], "k1-new");
    assert!(k1_rows[0]["time"].as_i64().unwrap() > past + 29 * 86_400);
    let k2_rows = rows(&k2);
    assert_eq!(k2_rows.len(), 1, "{k2_rows:?}");
    assert_eq!(k2_rows[0]["user_agent"], "k2-2");
    assert_eq!(k2_rows[0]["time"], past);
    assert_eq!(
        env.json(&["usage-log", "--json"]).as_array().unwrap().len(),
        2
    );
}

fn malformed_bodies_get_json_client_errors_never_server_errors() {
    let f = Fixture::new("ci-bot", &[]);
    let garbage: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let grant = f.grant(&[]);

    let reply = post_raw(&f.server, Some(FORM), "");
    assert_refused(
        &reply,
        400,
        "invalid_request",
        "Missing parameter: grant_type",
    );

    let reply = post_raw(&f.server, Some(FORM), garbage.clone());
    assert_client_error(&reply, 400, "binary garbage");
    assert_eq!(reply.json["error"], "invalid_request");
    let reply = post_raw(
        &f.server,
        Some(FORM),
        format!("grant_type={JWT_BEARER}&assertion=%FF%FE%00"),
    );
    assert_client_error(&reply, 400, "undecodable assertion");
    assert_eq!(reply.json["error"], "invalid_grant");

    let dup = format!("grant_type={JWT_BEARER}&assertion={grant}&assertion={grant}");
    let reply = post_raw(&f.server, Some(FORM), dup);
    assert_refused(
        &reply,
        400,
        "invalid_request",
        "Parameter 'assertion' given more than once",
    );
    let dup = format!("grant_type={JWT_BEARER}&grant_type={JWT_BEARER}&assertion={grant}");
    assert_refused(
        &post_raw(&f.server, Some(FORM), dup),
        400,
        "invalid_request",
        "Parameter 'grant_type' given more than once",
    );

    let unsupported = "Content-Type must be application/x-www-form-urlencoded";
    let json_body = json!({ "grant_type": JWT_BEARER, "assertion": grant }).to_string();
    assert_refused(
        &post_raw(&f.server, Some("application/json"), json_body),
        415,
        "invalid_request",
        unsupported,
    );
    let form_body = format!("grant_type={JWT_BEARER}&assertion={grant}");
    assert_refused(
        &post_raw(&f.server, None, form_body.clone()),
        415,
        "invalid_request",
        unsupported,
    );
    assert_refused(
        &post_raw(&f.server, None, garbage.clone()),
        415,
        "invalid_request",
        unsupported,
    );
    assert_refused(
        &post_raw(&f.server, Some("text/plain"), form_body),
        415,
        "invalid_request",
        unsupported,
    );

    // None of that used the grant up: it still works, with a charset parameter too.
    assert_issued(&post_raw(
        &f.server,
        Some("application/x-www-form-urlencoded; charset=UTF-8"),
        format!("grant_type={JWT_BEARER}&assertion={grant}"),
    ));
}

fn bodies_over_16_kib_are_refused_with_413() {
    let f = Fixture::new("ci-bot", &[]);
    let padded = |len: usize| {
        let mut body = format!("grant_type={JWT_BEARER}&assertion=");
        body.push_str(&"x".repeat(len - body.len()));
        body
    };
    let too_large = "Request body is larger than 16384 bytes";
    // Exactly the limit is read (and refused for what it says), one byte more is not read.
    let reply = post_raw(&f.server, Some(FORM), padded(16 * 1024));
    assert_invalid_grant(
        &reply,
        "Malformed assertion: a JWT has three dot-separated parts",
    );
    assert_refused(
        &post_raw(&f.server, Some(FORM), padded(16 * 1024 + 1)),
        413,
        "invalid_request",
        too_large,
    );
    assert_refused(
        &post_raw(&f.server, Some(FORM), padded(200 * 1024)),
        413,
        "invalid_request",
        too_large,
    );
    // A chunked body (no Content-Length) is cut off at the limit as well.
    let body = padded(16 * 1024 + 1);
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: {}\r\nContent-Type: {FORM}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        f.server.addr
    );
    let request = format!("{head}{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let answer = raw_http(&f.server, request.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    let json_body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(
        json_body,
        json!({ "error": "invalid_request", "error_description": too_large })
    );
}

fn wrong_methods_get_405_with_allow_post() {
    let f = Fixture::new("ci-bot", &[]);
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let reply = send(http().request(method.clone(), f.server.url("/token")));
        assert_refused(
            &reply,
            405,
            "invalid_request",
            &format!("Method {method} is not allowed on /token; use POST"),
        );
        assert_eq!(reply.header("allow"), Some("POST"), "{method}");
    }
    let reply = send(http().post(f.server.url("/nowhere")));
    assert_refused(&reply, 404, "not_found", "No endpoint at /nowhere");
}

fn metadata_lists_the_endpoints_and_the_jwt_bearer_grant() {
    let f = Fixture::new("ci-bot", &[]);
    let reply = send(http().get(f.server.url("/.well-known/oauth-authorization-server")));
    assert_eq!(reply.status, 200, "{}", reply.text);
    let m = &reply.json;
    assert_eq!(m["issuer"], format!("http://{}", f.server.addr));
    assert_eq!(m["token_endpoint"], f.server.url("/token"));
    assert_eq!(m["introspection_endpoint"], f.server.url("/introspect"));
    assert_eq!(m["revocation_endpoint"], f.server.url("/revoke"));
    let grants = m["grant_types_supported"].as_array().unwrap();
    assert!(grants.contains(&json!(JWT_BEARER)), "{m}");
    assert!(
        m["token_endpoint_auth_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("RS256"))
    );
}

fn healthz_answers_200() {
    let f = Fixture::new("ci-bot", &[]);
    let reply = send(http().get(f.server.url("/healthz")));
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["status"], "ok");
}

/// Client ids are not secret (RFC 6749 §2.2; they are every grant's `iss`, in key files and
/// in tokens), so an unknown one is named as such; user names are, until the signature holds.
fn before_the_signature_holds_a_refusal_tells_nothing_of_the_subject() {
    let f = Fixture::new("deployer", &[]);
    f.env.ok(&["user", "grant", "deployer", "impersonate"]);
    f.env.ok(&["user", "add", "app"]);
    f.env.ok(&["user", "add", "parked"]);
    f.env.ok(&["user", "disable", "parked"]);
    // The caller holds some key, but not deployer's.
    let (_, other) = f.issue("stranger", &[]);
    for (iss, description) in [
        (key_file(&f.key)["client_id"].clone(), "Invalid signature"),
        (json!("0123456789abcdef0123456789abcdef"), "No associated key found"),
    ] {
        let answers: Vec<(&str, String)> = ["deployer", "app", "parked", "ghost"]
            .into_iter()
            .map(|sub| {
                let mut claims = f.claims();
                claims["iss"] = iss.clone();
                claims["sub"] = json!(sub);
                let reply = f.exchange(&craft(&other, &claims));
                assert_invalid_grant(&reply, description);
                (sub, reply.comparable())
            })
            .collect();
        for (sub, a) in &answers[1..] {
            assert_eq!(a, &answers[0].1, "{sub} told apart from deployer ({description})");
        }
    }
}

/// Usage rows may be kept for less time than a grant lives; the store's used-grant set, not
/// the usage log, remembers which grants were used, so pruning rows reopens no replay.
fn a_used_grant_stays_used_after_its_usage_row_is_pruned_and_the_server_restarts() {
    let t0 = real_now() - 3_600;
    let at = |t: i64| [("TOKENAUTH_NOW", t.to_string())];
    let env = Env::new();
    // A fixed issuer, accepted as the audience whatever port each server gets.
    env.ok(&["init", "--issuer", "http://auth.example"]);
    let (key_id, key) = env.issue_key_with_env("ci-bot", &[], &[("TOKENAUTH_NOW", &t0.to_string())]);
    let sign = |t: i64, extra: &[&str]| {
        let mut args = vec![
            "sign-grant",
            "--key",
            key.to_str().unwrap(),
            "--aud",
            "http://auth.example",
            "--lifetime",
            "3000",
        ];
        args.extend_from_slice(extra);
        let vars = at(t);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.ok_with_env(&args, &vars).trim().to_owned()
    };
    let serve = |t: i64, extra: &[&str]| {
        let vars = at(t);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.serve_with_env(extra, &vars)
    };
    let exchange = |server: &Server, grant: &str| {
        post_form(
            server,
            &[("grant_type", JWT_BEARER), ("assertion", grant)],
            None,
        )
    };
    let with_jti = sign(t0, &[]);
    let without_jti = sign(t0, &["--no-jti"]);
    let mut first = serve(t0, &[]);
    assert_issued(&exchange(&first, &with_jti));
    assert_issued(&exchange(&first, &without_jti));
    assert!(first.stop().success());

    // Half an hour on, both grants still in their lifetime: a server keeping a minute of
    // usage prunes their rows when it next writes one.
    let later = t0 + 1_800;
    let mut pruner = serve(later, &["--usage-retention", "1m"]);
    assert_issued(&exchange(&pruner, &sign(later, &[])));
    assert!(pruner.stop().success());
    let rows = env.json(&["usage-log", &key_id, "--json"]);
    assert_eq!(rows.as_array().unwrap().len(), 1, "not pruned: {rows}");
    assert_eq!(rows[0]["time"], later, "{rows}");

    let restarted = serve(later, &["--usage-retention", "1m"]);
    let second = serve(later, &["--usage-retention", "1m"]);
    for server in [&restarted, &second] {
        assert_invalid_grant(
            &exchange(server, &with_jti),
            "Grant has already been used (jti replayed)",
        );
        let reply = exchange(server, &without_jti);
        assert_eq!(reply.status, 400, "{}", reply.text);
        assert!(
            reply.json["error_description"]
                .as_str()
                .unwrap()
                .starts_with("Grant has already been used"),
            "{}",
            reply.text
        );
    }
}
}
