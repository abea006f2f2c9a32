//! What resource servers rely on, end to end against a real `tokenauth serve`: GET /auth
//! (forward auth), POST /introspect, POST /revoke, `tokenauth verify`, and the usage log.

mod common;

use common::now;

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Env, Server, exchange, http};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// `tokenauth sign-grant --key KEY`, with extra environment variables (e.g. TOKENAUTH_NOW).
fn grant(env: &Env, key: &Path, vars: &[(&str, &str)]) -> String {
    let mut cmd = env.cmd();
    cmd.args(["sign-grant", "--key", key.to_str().unwrap()]);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "sign-grant failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Signs a grant with `key` and exchanges it at `server`; returns the access token.
fn token(env: &Env, server: &Server, key: &Path) -> String {
    let (status, body) = exchange(server, &grant(env, key, &[]));
    assert_eq!(status, 200, "exchange refused: {body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// A token that expired an hour ago: issued by a server whose clock runs two hours behind
/// (TOKENAUTH_NOW), which is stopped again. Returns (token, key id, the past time used).
/// The key file's token URI points at the stopped server: issue fresh keys for new tokens.
fn expired_token(env: &Env, user: &str) -> (String, String, String) {
    let past = (now() - 7200).to_string();
    let mut server = env.serve_with_env(&[], &[("TOKENAUTH_NOW", &past)]);
    let (key_id, key) = env.issue_key(user, &[]);
    let (status, body) = exchange(&server, &grant(env, &key, &[("TOKENAUTH_NOW", &past)]));
    assert_eq!(status, 200, "exchange at the past clock refused: {body}");
    server.stop();
    let token = body["access_token"].as_str().unwrap().to_owned();
    let exp = claims(&token)["exp"].as_i64().unwrap();
    assert!(
        exp < now() - 3000,
        "token should have expired an hour ago: exp {exp}"
    );
    (token, key_id, past)
}

/// A running server with one key and a fresh token of it. `server` is declared first so it
/// stops before the temporary directory goes.
struct Setup {
    server: Server,
    env: Env,
    key_id: String,
    key: PathBuf,
    token: String,
}

fn setup(user: &str, serve_args: &[&str], key_args: &[&str]) -> Setup {
    let env = Env::new();
    let server = env.serve(serve_args);
    let (key_id, key) = env.issue_key(user, key_args);
    let token = token(&env, &server, &key);
    Setup {
        server,
        env,
        key_id,
        key,
        token,
    }
}

/// An HTTP answer: status, headers and the JSON body.
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

fn send(req: reqwest::blocking::RequestBuilder) -> Reply {
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
    Reply {
        status,
        headers,
        body,
    }
}

/// GET `path` (e.g. "/auth?scope=write") with the token as a Bearer header and extra headers.
fn auth_with(server: &Server, path: &str, token: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = http().get(server.url(path)).bearer_auth(token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req)
}

/// GET /auth with the token as a Bearer header.
fn auth(server: &Server, token: &str) -> Reply {
    auth_with(server, "/auth", token, &[])
}

/// POST a form to `path`, with an optional Bearer token.
fn post_form(server: &Server, path: &str, bearer: Option<&str>, form: &[(&str, &str)]) -> Reply {
    let mut req = http().post(server.url(path)).form(form);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    send(req)
}

/// Asserts a forward-auth success for `user` via `key_id`, with headers and body agreeing.
fn assert_allowed(r: &Reply, user: &str, key_id: &str, scope: &str) {
    assert_eq!(r.status, 200, "expected 200, got {}: {}", r.status, r.body);
    assert_eq!(r.header("x-auth-user"), Some(user));
    assert_eq!(r.header("x-auth-key-id"), Some(key_id));
    assert_eq!(r.header("x-auth-scope"), Some(scope));
    assert_eq!(
        r.body,
        json!({ "user": user, "key_id": key_id, "scope": scope })
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

/// Asserts an RFC 6750 §3 refusal: the status, a body of exactly `error` and
/// `error_description`, and a WWW-Authenticate challenge naming both.
fn assert_refused(r: &Reply, status: u16, error: &str, description: &str) {
    assert_eq!(r.status, status, "wrong status; body {}", r.body);
    assert_eq!(
        r.body,
        json!({ "error": error, "error_description": description })
    );
    let www = r.header("www-authenticate").expect("no WWW-Authenticate");
    assert!(
        www.starts_with("Bearer realm=\"tokenauth\""),
        "challenge: {www}"
    );
    assert!(
        www.contains(&format!("error=\"{error}\"")),
        "challenge: {www}"
    );
    assert!(
        www.contains(&format!("error_description=\"{description}\"")),
        "challenge: {www}"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

/// Like `assert_refused` for 401 invalid_token, when only the start of the description is
/// fixed (e.g. "Malformed access token: ...").
fn assert_invalid_token_starting(r: &Reply, description_start: &str) {
    assert_eq!(r.status, 401, "wrong status; body {}", r.body);
    assert_eq!(r.body["error"], "invalid_token", "{}", r.body);
    let d = r.body["error_description"].as_str().unwrap();
    assert!(
        d.starts_with(description_start),
        "description {d:?} should start with {description_start:?}"
    );
    let www = r.header("www-authenticate").expect("no WWW-Authenticate");
    assert!(www.contains("error=\"invalid_token\""), "challenge: {www}");
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT's three parts: header and claims as JSON, and the signature text.
fn split(token: &str) -> (Value, Value, String) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token}");
    let decode = |p: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    (decode(parts[0]), decode(parts[1]), parts[2].to_owned())
}

fn claims(token: &str) -> Value {
    split(token).1
}

/// header.claims, base64url-encoded, without a signature.
fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// A JWT with this header and these claims, HMAC-signed with `secret` using `alg`.
fn hmac_jwt(header: &Value, claims: &Value, secret: &[u8], alg: jsonwebtoken::Algorithm) -> String {
    let message = unsigned(header, claims);
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(secret),
        alg,
    )
    .unwrap();
    format!("{message}.{sig}")
}

/// The user's current signing secret, read straight from the test's own store, so tests
/// can build tokens that are correctly signed but wrong in some other way.
fn user_secret(env: &Env, user: &str) -> Vec<u8> {
    if let Some(pg) = &env.pg {
        let mut client = tokenauth::store::PgUrl::parse(&pg.url)
            .unwrap()
            .connect()
            .unwrap();
        return client
            .query_one("SELECT secret FROM secrets WHERE user_name = $1", &[&user])
            .unwrap()
            .get(0);
    }
    let conn =
        rusqlite::Connection::open_with_flags(env.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row(
        "SELECT secret FROM secrets WHERE user_name = ?1",
        [user],
        |r| r.get(0),
    )
    .unwrap()
}

/// Runs `tokenauth ARGS`, asserting exit code 1; returns (stdout, stderr).
fn exits_1(env: &Env, args: &[&str]) -> (String, String) {
    let out = env.cmd().args(args).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "tokenauth {args:?} should exit 1: {stdout} {stderr}"
    );
    (stdout, stderr)
}

// ---------------------------------------------------------------------------------------
// 1. Where the token may be
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// 2. No token
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// 3. Expired
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// 4. Forged
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// 5, 6. Changes made with the CLI while the server runs
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// 7. POST /revoke
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// 8. IP ranges and trusted proxies
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// 9. Disabled users
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// 10. Scopes
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// 11. Introspection
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// 12. tokenauth verify
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// 13. Usage log and last use
// ---------------------------------------------------------------------------------------

common::on_both_backends! {
fn auth_accepts_a_bearer_authorization_header() {
    let s = setup("ci-bot", &[], &[]);
    let r = send(
        http()
            .get(s.server.url("/auth"))
            .header("Authorization", format!("Bearer {}", s.token)),
    );
    assert_allowed(&r, "ci-bot", &s.key_id, "read");
}

fn auth_accepts_a_token_cookie() {
    let s = setup("ci-bot", &[], &[]);
    let r = send(http().get(s.server.url("/auth")).header(
        "Cookie",
        format!("session=abc; token={}; theme=dark", s.token),
    ));
    assert_allowed(&r, "ci-bot", &s.key_id, "read");
}

fn auth_accepts_an_x_jwt_auth_token_header() {
    let s = setup("ci-bot", &[], &[]);
    let r = send(
        http()
            .get(s.server.url("/auth"))
            .header("X-JWT-Auth-Token", &s.token),
    );
    assert_allowed(&r, "ci-bot", &s.key_id, "read");
}

fn auth_accepts_an_authorization_jwt_token_header() {
    let s = setup("ci-bot", &[], &[]);
    let r = send(
        http()
            .get(s.server.url("/auth"))
            .header("Authorization", format!("JWT token=\"{}\"", s.token)),
    );
    assert_allowed(&r, "ci-bot", &s.key_id, "read");
}

fn auth_uses_the_bearer_header_before_the_cookie_and_the_cookie_before_x_jwt_auth_token() {
    let s = setup("ci-bot", &[], &[]);
    let get = || http().get(s.server.url("/auth"));
    // A good Bearer wins over a bad cookie; a bad Bearer is not rescued by a good cookie.
    let r = send(
        get()
            .bearer_auth(&s.token)
            .header("Cookie", "token=garbage"),
    );
    assert_allowed(&r, "ci-bot", &s.key_id, "read");
    let r = send(
        get()
            .bearer_auth("garbage")
            .header("Cookie", format!("token={}", s.token)),
    );
    assert_invalid_token_starting(&r, "Malformed access token");
    // The same between the cookie and X-JWT-Auth-Token.
    let r = send(
        get()
            .header("Cookie", format!("token={}", s.token))
            .header("X-JWT-Auth-Token", "garbage"),
    );
    assert_allowed(&r, "ci-bot", &s.key_id, "read");
    let r = send(
        get()
            .header("Cookie", "token=garbage")
            .header("X-JWT-Auth-Token", &s.token),
    );
    assert_invalid_token_starting(&r, "Malformed access token");
}

fn auth_without_a_token_is_401_with_a_bare_bearer_challenge() {
    let env = Env::new();
    let server = env.serve(&[]);
    for req in [
        http().get(server.url("/auth")),
        http()
            .get(server.url("/auth"))
            .header("Authorization", "Basic Zm9vOmJhcg=="),
        http().get(server.url("/auth")).header("Cookie", "token="),
    ] {
        let r = send(req);
        assert_eq!(r.status, 401, "{}", r.body);
        // RFC 6750 §3.1: no error code in the challenge when no credentials came.
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"tokenauth\"")
        );
        assert_eq!(
            r.body,
            json!({ "error": "invalid_request", "error_description": "Missing access token" })
        );
    }
}

fn expired_token_is_401_access_token_expired() {
    let env = Env::new();
    let (token, _, past) = expired_token(&env, "ci-bot");
    // Control: at the clock it was issued by, the token is good; only time killed it.
    let out = env
        .cmd()
        .env("TOKENAUTH_NOW", &past)
        .args(["verify", &token])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = env.serve(&[]);
    let r = auth(&server, &token);
    assert_refused(&r, 401, "invalid_token", "Access token expired");
}

fn token_with_altered_claims_is_401_invalid_signature() {
    let s = setup("ci-bot", &[], &[]);
    let (header, mut claims, sig) = split(&s.token);
    claims["scope"] = json!("read write");
    let forged = format!("{}.{sig}", unsigned(&header, &claims));
    assert_refused(
        &auth(&s.server, &forged),
        401,
        "invalid_token",
        "Invalid signature",
    );
    let (_, mut claims, _) = split(&s.token);
    claims["exp"] = json!(claims["exp"].as_i64().unwrap() + 86_400);
    let forged = format!("{}.{sig}", unsigned(&header, &claims));
    assert_refused(
        &auth(&s.server, &forged),
        401,
        "invalid_token",
        "Invalid signature",
    );
    // The genuine token still works.
    assert_allowed(&auth(&s.server, &s.token), "ci-bot", &s.key_id, "read");
}

fn token_with_altered_signature_is_401_invalid_signature() {
    let s = setup("ci-bot", &[], &[]);
    let (header, claims, sig) = split(&s.token);
    let mut bytes = URL_SAFE_NO_PAD.decode(&sig).unwrap();
    bytes[0] ^= 1;
    let forged = format!("{}.{}", unsigned(&header, &claims), b64(&bytes));
    assert_refused(
        &auth(&s.server, &forged),
        401,
        "invalid_token",
        "Invalid signature",
    );
    // A truncated signature as well.
    let forged = format!("{}.{}", unsigned(&header, &claims), &sig[..sig.len() - 4]);
    assert_eq!(auth(&s.server, &forged).status, 401);
}

fn alg_none_and_other_algorithms_are_401_even_with_the_users_secret() {
    let s = setup("ci-bot", &[], &[]);
    let (_, claims, _) = split(&s.token);
    let none = format!(
        "{}.",
        unsigned(&json!({ "alg": "none", "typ": "at+jwt" }), &claims)
    );
    assert_invalid_token_starting(&auth(&s.server, &none), "Malformed access token");
    let none_sig = format!(
        "{}.c2ln",
        unsigned(&json!({ "alg": "none", "typ": "at+jwt" }), &claims)
    );
    assert_invalid_token_starting(&auth(&s.server, &none_sig), "Malformed access token");
    // HS512 with the user's real secret: the only accepted algorithm is HS256.
    let secret = user_secret(&s.env, "ci-bot");
    let hs512 = hmac_jwt(
        &json!({ "alg": "HS512", "typ": "at+jwt" }),
        &claims,
        &secret,
        jsonwebtoken::Algorithm::HS512,
    );
    assert_invalid_token_starting(&auth(&s.server, &hs512), "Malformed access token");
}

fn hs256_token_signed_with_another_secret_is_401_invalid_signature() {
    let s = setup("ci-bot", &[], &[]);
    let (header, claims, _) = split(&s.token);
    let forged = hmac_jwt(
        &header,
        &claims,
        b"not the secret of ci-bot, but 32+ bytes long",
        jsonwebtoken::Algorithm::HS256,
    );
    assert_refused(
        &auth(&s.server, &forged),
        401,
        "invalid_token",
        "Invalid signature",
    );
}

fn one_users_secret_cannot_sign_tokens_for_another_user() {
    let s = setup("victim", &[], &[]);
    let (_, mallory_key) = s.env.issue_key("mallory", &[]);
    let mallory_token = token(&s.env, &s.server, &mallory_key);
    // Mallory knows her own secret (say it leaked to her); she re-signs her claims as victim.
    let (header, mut claims, _) = split(&mallory_token);
    claims["sub"] = json!("victim");
    claims["key_id"] = json!(s.key_id);
    let forged = hmac_jwt(
        &header,
        &claims,
        &user_secret(&s.env, "mallory"),
        jsonwebtoken::Algorithm::HS256,
    );
    assert_refused(
        &auth(&s.server, &forged),
        401,
        "invalid_token",
        "Invalid signature",
    );
}

fn wrong_or_missing_typ_is_401_even_when_signed_with_the_users_secret() {
    let s = setup("ci-bot", &[], &[]);
    let (header, claims, _) = split(&s.token);
    let secret = user_secret(&s.env, "ci-bot");
    // Control: rebuilt with the real header and secret, the token is accepted, so the
    // refusals below are down to the typ alone.
    let rebuilt = hmac_jwt(&header, &claims, &secret, jsonwebtoken::Algorithm::HS256);
    assert_allowed(&auth(&s.server, &rebuilt), "ci-bot", &s.key_id, "read");
    for header in [
        json!({ "alg": "HS256", "typ": "JWT" }),
        json!({ "alg": "HS256" }),
    ] {
        let forged = hmac_jwt(&header, &claims, &secret, jsonwebtoken::Algorithm::HS256);
        assert_refused(
            &auth(&s.server, &forged),
            401,
            "invalid_token",
            "Malformed access token: typ must be at+jwt",
        );
    }
}

/// Before, serde's wording reached callers: "claims: missing field `iss` at line 1 column 12".
fn malformed_tokens_are_described_in_tokenauths_own_words() {
    let s = setup("ci-bot", &[], &[]);
    let (header, claims, _) = split(&s.token);
    let secret = user_secret(&s.env, "ci-bot");
    let mut no_iss = claims.clone();
    no_iss.as_object_mut().unwrap().remove("iss");
    let mut text_exp = claims.clone();
    text_exp["exp"] = json!("soon");
    for (claims, description) in [
        (no_iss, "Malformed access token: missing claim iss"),
        (
            text_exp,
            "Malformed access token: claim exp must be an integer",
        ),
        (
            json!("a string"),
            "Malformed access token: claims is not a JSON object",
        ),
    ] {
        let forged = hmac_jwt(&header, &claims, &secret, jsonwebtoken::Algorithm::HS256);
        let r = auth(&s.server, &forged);
        assert_refused(&r, 401, "invalid_token", description);
        let www = r.header("www-authenticate").unwrap();
        assert!(!www.contains("line") && !www.contains('`'), "{www}");
    }
}

fn rotate_secret_kills_issued_tokens_on_the_next_check_and_new_tokens_work() {
    let s = setup("ci-bot", &[], &[]);
    assert_allowed(&auth(&s.server, &s.token), "ci-bot", &s.key_id, "read");
    s.env.ok(&["rotate-secret", "ci-bot", "--yes"]);
    assert_refused(
        &auth(&s.server, &s.token),
        401,
        "invalid_token",
        "Invalid signature",
    );
    let fresh = token(&s.env, &s.server, &s.key);
    assert_allowed(&auth(&s.server, &fresh), "ci-bot", &s.key_id, "read");
    assert_refused(
        &auth(&s.server, &s.token),
        401,
        "invalid_token",
        "Invalid signature",
    );
}

fn rotating_one_users_secret_leaves_other_users_tokens_alone() {
    let s = setup("ci-bot", &[], &[]);
    let (other_id, other_key) = s.env.issue_key("other", &[]);
    let other = token(&s.env, &s.server, &other_key);
    s.env.ok(&["rotate-secret", "ci-bot", "--yes"]);
    assert_eq!(auth(&s.server, &s.token).status, 401);
    assert_allowed(&auth(&s.server, &other), "other", &other_id, "read");
}

fn revoke_key_kills_its_tokens_on_the_next_check() {
    let s = setup("ci-bot", &[], &[]);
    assert_allowed(&auth(&s.server, &s.token), "ci-bot", &s.key_id, "read");
    s.env.ok(&["revoke-key", &s.key_id, "--yes"]);
    assert_refused(
        &auth(&s.server, &s.token),
        401,
        "invalid_token",
        "Key has been revoked",
    );
}

fn revoked_token_is_401_on_the_next_check_and_other_tokens_of_the_key_still_work() {
    let s = setup("ci-bot", &[], &[]);
    let sibling = token(&s.env, &s.server, &s.key);
    let r = post_form(&s.server, "/revoke", None, &[("token", &s.token)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!({}));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_refused(
        &auth(&s.server, &s.token),
        401,
        "invalid_token",
        "Access token has been revoked",
    );
    assert_allowed(&auth(&s.server, &sibling), "ci-bot", &s.key_id, "read");
    // Revoking again is fine too (RFC 7009 §2.2).
    let r = post_form(&s.server, "/revoke", None, &[("token", &s.token)]);
    assert_eq!((r.status, r.body), (200, json!({})));
}

fn revoke_answers_200_for_unknown_or_garbage_tokens() {
    let s = setup("ci-bot", &[], &[]);
    let (header, claims, _) = split(&s.token);
    let unknown = hmac_jwt(
        &header,
        &claims,
        b"some other secret, 32 bytes or more",
        jsonwebtoken::Algorithm::HS256,
    );
    for t in ["garbage", "a.b.c", "", unknown.as_str()] {
        let r = post_form(&s.server, "/revoke", None, &[("token", t)]);
        assert_eq!((r.status, &r.body), (200, &json!({})), "token {t:?}");
    }
    // The forged twin did not revoke the genuine token's jti.
    assert_allowed(&auth(&s.server, &s.token), "ci-bot", &s.key_id, "read");
}

fn revoke_without_a_token_parameter_is_400_invalid_request() {
    let env = Env::new();
    let server = env.serve(&[]);
    let r = post_form(
        &server,
        "/revoke",
        None,
        &[("token_type_hint", "access_token")],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"], "invalid_request");
    assert_eq!(r.body["error_description"], "Missing parameter: token");
}

fn ip_range_changes_apply_to_issued_tokens_at_once() {
    let s = setup("ci-bot", &[], &[]);
    assert_allowed(&auth(&s.server, &s.token), "ci-bot", &s.key_id, "read");
    s.env
        .ok(&["edit-key", &s.key_id, "--ip-range", "10.0.0.0/8"]);
    assert_refused(
        &auth(&s.server, &s.token),
        401,
        "invalid_token",
        "Address 127.0.0.1 is not allowed to use this key",
    );
    s.env
        .ok(&["edit-key", &s.key_id, "--ip-range", "127.0.0.1"]);
    assert_allowed(&auth(&s.server, &s.token), "ci-bot", &s.key_id, "read");
    s.env
        .ok(&["edit-key", &s.key_id, "--ip-range", "192.0.2.0/24"]);
    assert_eq!(auth(&s.server, &s.token).status, 401);
    s.env.ok(&["edit-key", &s.key_id, "--no-ip-range"]);
    assert_allowed(&auth(&s.server, &s.token), "ci-bot", &s.key_id, "read");
}

fn behind_a_trusted_proxy_x_forwarded_for_is_the_address_checked() {
    let s = setup("ci-bot", &["--trusted-proxy", "127.0.0.1"], &[]);
    s.env
        .ok(&["edit-key", &s.key_id, "--ip-range", "10.0.0.0/8"]);
    let via = |xff: &str| auth_with(&s.server, "/auth", &s.token, &[("X-Forwarded-For", xff)]);
    assert_allowed(&via("10.1.2.3"), "ci-bot", &s.key_id, "read");
    // The rightmost untrusted hop counts, not what the client put first.
    assert_allowed(&via("192.0.2.1, 10.1.2.3"), "ci-bot", &s.key_id, "read");
    assert_refused(
        &via("192.0.2.1"),
        401,
        "invalid_token",
        "Address 192.0.2.1 is not allowed to use this key",
    );
    assert_refused(
        &via("10.1.2.3, 192.0.2.1"),
        401,
        "invalid_token",
        "Address 192.0.2.1 is not allowed to use this key",
    );
    // Without the header the proxy itself is the client.
    assert_refused(
        &auth(&s.server, &s.token),
        401,
        "invalid_token",
        "Address 127.0.0.1 is not allowed to use this key",
    );
}

fn trusted_proxy_lets_a_client_in_range_get_a_token() {
    let env = Env::new();
    let server = env.serve(&["--trusted-proxy", "127.0.0.1"]);
    let (key_id, key) = env.issue_key("ci-bot", &["--ip-range", "10.0.0.0/8"]);
    // From 127.0.0.1 itself the key cannot be used at all.
    let (status, body) = exchange(&server, &grant(&env, &key, &[]));
    assert_eq!(status, 400, "{body}");
    let r = send(
        http()
            .post(server.url("/token"))
            .header("X-Forwarded-For", "10.9.9.9")
            .form(&[
                ("grant_type", common::JWT_BEARER),
                ("assertion", &grant(&env, &key, &[])),
            ]),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.body["access_token"].as_str().unwrap();
    let r = auth_with(&server, "/auth", t, &[("X-Forwarded-For", "10.9.9.9")]);
    assert_allowed(&r, "ci-bot", &key_id, "read");
}

fn without_trusted_proxy_x_forwarded_for_is_ignored() {
    let s = setup("ci-bot", &[], &[]);
    s.env
        .ok(&["edit-key", &s.key_id, "--ip-range", "10.0.0.0/8"]);
    let r = auth_with(
        &s.server,
        "/auth",
        &s.token,
        &[("X-Forwarded-For", "10.1.2.3")],
    );
    assert_refused(
        &r,
        401,
        "invalid_token",
        "Address 127.0.0.1 is not allowed to use this key",
    );
    // And the other way round: a forged outside address does not lock a good client out.
    s.env
        .ok(&["edit-key", &s.key_id, "--ip-range", "127.0.0.1"]);
    let r = auth_with(
        &s.server,
        "/auth",
        &s.token,
        &[("X-Forwarded-For", "192.0.2.1")],
    );
    assert_allowed(&r, "ci-bot", &s.key_id, "read");
}

fn disabling_a_user_kills_its_tokens_on_the_next_check_and_enabling_revives_them() {
    let s = setup("ci-bot", &[], &[]);
    assert_allowed(&auth(&s.server, &s.token), "ci-bot", &s.key_id, "read");
    s.env.ok(&["user", "disable", "ci-bot"]);
    assert_refused(
        &auth(&s.server, &s.token),
        401,
        "invalid_token",
        "User 'ci-bot' is disabled",
    );
    s.env.ok(&["user", "enable", "ci-bot"]);
    assert_allowed(&auth(&s.server, &s.token), "ci-bot", &s.key_id, "read");
}

fn read_token_is_403_insufficient_scope_where_write_is_needed() {
    let s = setup("reader", &[], &[]);
    let check =
        |path: &str, headers: &[(&str, &str)]| auth_with(&s.server, path, &s.token, headers);
    let description = "Insufficient scope: 'write' required";
    for r in [
        check("/auth?scope=write", &[]),
        check("/auth?scope=read%20write", &[]),
        check("/auth", &[("X-Original-Method", "POST")]),
        check("/auth", &[("X-Forwarded-Method", "DELETE")]),
        check("/auth?scope=read", &[("X-Original-Method", "put")]),
    ] {
        assert_refused(&r, 403, "insufficient_scope", description);
        let www = r.header("www-authenticate").unwrap();
        assert!(www.contains("scope=\"read write\""), "challenge: {www}");
    }
    for r in [
        check("/auth", &[]),
        check("/auth?scope=read", &[]),
        check("/auth", &[("X-Forwarded-Method", "GET")]),
        check("/auth", &[("X-Original-Method", "HEAD")]),
        check("/auth", &[("X-Original-Method", "OPTIONS")]),
    ] {
        assert_allowed(&r, "reader", &s.key_id, "read");
    }
}

fn write_token_passes_scope_and_method_checks() {
    let s = setup("writer", &[], &["--scope", "write"]);
    for (path, headers) in [
        ("/auth?scope=write", &[][..]),
        ("/auth", &[("X-Original-Method", "POST")][..]),
        ("/auth", &[("X-Forwarded-Method", "GET")][..]),
        ("/auth?scope=read", &[][..]),
    ] {
        let r = auth_with(&s.server, path, &s.token, headers);
        assert_allowed(&r, "writer", &s.key_id, "read write");
    }
}

fn unknown_scope_parameter_is_400_invalid_request() {
    let s = setup("reader", &[], &[]);
    let r = auth_with(&s.server, "/auth?scope=admin", &s.token, &[]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"], "invalid_request");
}

fn introspect_needs_a_caller_token_with_the_introspect_permission() {
    let s = setup("ci-bot", &[], &[]);
    let (_, gw_key) = s.env.issue_key("gateway", &[]);
    let caller = token(&s.env, &s.server, &gw_key);
    let form = [("token", s.token.as_str())];
    // No caller token.
    let r = post_form(&s.server, "/introspect", None, &form);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"tokenauth\"")
    );
    assert_eq!(r.body["error"], "invalid_request");
    // A caller whose user lacks the permission.
    let r = post_form(&s.server, "/introspect", Some(&caller), &form);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["error"], "access_denied");
    assert!(
        r.body["error_description"]
            .as_str()
            .unwrap()
            .contains("introspect"),
        "{}",
        r.body
    );
    // The introspected token's own user has no permission either.
    let r = post_form(&s.server, "/introspect", Some(&s.token), &form);
    assert_eq!(r.status, 403, "{}", r.body);
    // A caller with a bad token.
    let r = post_form(&s.server, "/introspect", Some("garbage"), &form);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.body["error"], "invalid_token");
    // Granted while the server runs: takes effect on the next call.
    s.env.ok(&["user", "grant", "gateway", "introspect"]);
    let r = post_form(&s.server, "/introspect", Some(&caller), &form);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["active"], true);
    s.env.ok(&["user", "revoke", "gateway", "introspect"]);
    let r = post_form(&s.server, "/introspect", Some(&caller), &form);
    assert_eq!(r.status, 403, "{}", r.body);
}

fn introspect_describes_a_good_token_with_exactly_the_rfc_7662_fields() {
    let s = setup("ci-bot", &[], &[]);
    let (_, gw_key) = s.env.issue_key("gateway", &[]);
    s.env.ok(&["user", "grant", "gateway", "introspect"]);
    let caller = token(&s.env, &s.server, &gw_key);
    let r = post_form(
        &s.server,
        "/introspect",
        Some(&caller),
        &[("token", &s.token)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let c = claims(&s.token);
    let key_file: Value = serde_json::from_str(&std::fs::read_to_string(&s.key).unwrap()).unwrap();
    assert_eq!(
        r.body,
        json!({
            "active": true,
            "sub": "ci-bot",
            "username": "ci-bot",
            "client_id": key_file["client_id"],
            "scope": "read",
            "exp": c["exp"],
            "iat": c["iat"],
            "iss": format!("http://{}", s.server.addr),
            "jti": c["jti"],
            "key_id": s.key_id,
            "token_type": "Bearer",
        })
    );
    assert_eq!(
        r.body["exp"].as_i64().unwrap() - r.body["iat"].as_i64().unwrap(),
        3600
    );
    assert!(!r.body["jti"].as_str().unwrap().is_empty());
}

fn introspect_says_only_active_false_for_expired_revoked_or_garbage_tokens() {
    let env = Env::new();
    let (expired, _, _) = expired_token(&env, "old-bot");
    let server = env.serve(&[]);
    let (_, key) = env.issue_key("ci-bot", &[]);
    let (_, gw_key) = env.issue_key("gateway", &[]);
    env.ok(&["user", "grant", "gateway", "introspect"]);
    let caller = token(&env, &server, &gw_key);
    let revoked = token(&env, &server, &key);
    let r = post_form(&server, "/revoke", None, &[("token", &revoked)]);
    assert_eq!(r.status, 200);
    let (header, claims, _) = split(&token(&env, &server, &key));
    let forged = hmac_jwt(
        &header,
        &claims,
        b"an attacker's secret of 32 bytes or more",
        jsonwebtoken::Algorithm::HS256,
    );
    for (what, t) in [
        ("expired", expired.as_str()),
        ("revoked", revoked.as_str()),
        ("garbage", "garbage"),
        ("forged", forged.as_str()),
        ("empty", ""),
    ] {
        let r = post_form(&server, "/introspect", Some(&caller), &[("token", t)]);
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        assert_eq!(r.body, json!({ "active": false }), "{what}");
    }
}

fn introspect_with_client_ip_checks_the_keys_ranges() {
    let s = setup("ci-bot", &[], &["--ip-range", "127.0.0.1, 10.0.0.0/8"]);
    let (_, gw_key) = s.env.issue_key("gateway", &[]);
    s.env.ok(&["user", "grant", "gateway", "introspect"]);
    let caller = token(&s.env, &s.server, &gw_key);
    let ask = |ip: &str| {
        post_form(
            &s.server,
            "/introspect",
            Some(&caller),
            &[("token", &s.token), ("client_ip", ip)],
        )
    };
    assert_eq!(ask("10.1.2.3").body["active"], true);
    assert_eq!(ask("192.0.2.1").body, json!({ "active": false }));
    assert_eq!(ask("not-an-ip").status, 400);
}

fn verify_exits_0_for_a_good_token_and_says_whose_it_is() {
    let s = setup("ci-bot", &[], &[]);
    let out = s.env.ok(&["verify", &s.token]);
    assert!(
        out.starts_with(&format!(
            "valid: user ci-bot via key {} (scope 'read')",
            s.key_id
        )),
        "{out}"
    );
    let out = s
        .env
        .cmd()
        .args(["verify", "-"])
        .write_stdin(format!("{}\n", s.token))
        .output()
        .unwrap();
    assert!(out.status.success());
}

fn verify_exits_1_with_the_reason_for_expired_and_revoked_tokens() {
    let env = Env::new();
    let (expired, _, _) = expired_token(&env, "old-bot");
    let err = env.fails(&["verify", &expired]);
    assert_eq!(
        err.trim_end(),
        "tokenauth: error: token is not valid: Access token expired"
    );
    let server = env.serve(&[]);
    let (_, key) = env.issue_key("ci-bot", &[]);
    let t = token(&env, &server, &key);
    env.ok(&["verify", &t]);
    let r = post_form(&server, "/revoke", None, &[("token", &t)]);
    assert_eq!(r.status, 200);
    let err = env.fails(&["verify", &t]);
    assert_eq!(
        err.trim_end(),
        "tokenauth: error: token is not valid: Access token has been revoked"
    );
    let err = env.fails(&["verify", "garbage"]);
    assert!(err.contains("Malformed access token"), "{err}");
}

fn verify_checks_ip_and_scope_when_asked() {
    let s = setup("ci-bot", &[], &["--ip-range", "127.0.0.1"]);
    s.env.ok(&["verify", &s.token, "--ip", "127.0.0.1"]);
    let err = s.env.fails(&["verify", &s.token, "--ip", "10.0.0.1"]);
    assert!(
        err.contains("Address 10.0.0.1 is not allowed to use this key"),
        "{err}"
    );
    s.env.ok(&["verify", &s.token, "--scope", "read"]);
    let err = s.env.fails(&["verify", &s.token, "--scope", "write"]);
    assert!(
        err.contains("Insufficient scope: 'write' required"),
        "{err}"
    );
}

fn verify_json_prints_valid_and_the_claims_or_the_reason() {
    let s = setup("ci-bot", &[], &[]);
    let v = s.env.json(&["verify", &s.token, "--json"]);
    assert_eq!(v["valid"], true);
    assert_eq!(v["claims"], claims(&s.token));
    let (stdout, _) = exits_1(&s.env, &["verify", &s.token, "--json", "--scope", "write"]);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        v,
        json!({
            "valid": false,
            "error": "insufficient_scope",
            "reason": "Insufficient scope: 'write' required",
        })
    );
    s.env.ok(&["revoke-key", &s.key_id, "--yes"]);
    let (stdout, _) = exits_1(&s.env, &["verify", &s.token, "--json"]);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        v,
        json!({ "valid": false, "error": "invalid_token", "reason": "Key has been revoked" })
    );
}

fn usage_log_filters_by_key_user_failures_and_limit() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (alice_id, alice) = env.issue_key("alice", &[]);
    let (bob_id, bob) = env.issue_key("bob", &[]);
    token(&env, &server, &alice);
    let replayed = grant(&env, &alice, &[]);
    assert_eq!(exchange(&server, &replayed).0, 200);
    token(&env, &server, &bob);
    let (status, body) = exchange(&server, &replayed);
    assert_eq!(status, 400, "{body}");
    // Refused attempts are written without waiting; this issuance is answered only once its
    // row is committed, and the writer keeps order, so the refusal is in the store too.
    token(&env, &server, &bob);

    let rows = |args: &[&str]| -> Vec<Value> {
        let mut all = vec!["usage-log", "--json"];
        all.extend_from_slice(args);
        env.json(&all).as_array().unwrap().clone()
    };
    let all = rows(&[]);
    assert_eq!(all.len(), 5, "{all:#?}");

    let by_key = rows(&[&alice_id]);
    assert_eq!(by_key.len(), 3, "{by_key:#?}");
    assert!(by_key.iter().all(|r| r["key_id"] == alice_id.as_str()));
    assert_eq!(
        rows(&[&alice_id[..8]]),
        by_key,
        "a key id prefix selects the same rows"
    );

    let by_user = rows(&["--user", "bob"]);
    assert_eq!(by_user.len(), 2, "{by_user:#?}");
    assert!(
        by_user
            .iter()
            .all(|r| r["user"] == "bob" && r["key_id"] == bob_id.as_str() && r["ok"] == true)
    );

    let failures = rows(&["--failures"]);
    assert_eq!(failures.len(), 1, "{failures:#?}");
    let f = &failures[0];
    assert_eq!(f["ok"], false);
    assert_eq!(f["key_id"], alice_id.as_str());
    assert_eq!(f["user"], "alice");
    assert_eq!(f["address"], "127.0.0.1");
    assert!(
        f["reason"].as_str().unwrap().contains("already been used"),
        "{f}"
    );
    assert_eq!(rows(&[&bob_id, "--failures"]), Vec::<Value>::new());

    // Newest first: the limit keeps the last issuance (bob's).
    let newest = rows(&["--limit", "1"]);
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0]["user"], "bob");
    assert_eq!(newest[0]["ok"], true);
    assert_eq!(rows(&["--limit", "2"])[1], f.clone());

    let table = env.ok(&["usage-log", &alice_id, "--failures"]);
    assert!(
        table.contains("refused: Grant has already been used"),
        "{table}"
    );
    assert!(table.contains("OUTCOME"), "{table}");
}

fn list_keys_shows_last_used_after_an_exchange() {
    let env = Env::new();
    let server = env.serve(&[]);
    let (key_id, key) = env.issue_key("ci-bot", &[]);
    let (other_id, _) = env.issue_key("other", &[]);
    let last_used = |id: &str| -> Value {
        let keys = env.json(&["list-keys", "--json"]);
        keys.as_array()
            .unwrap()
            .iter()
            .find(|k| k["key_id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed: {keys}"))["last_used"]
            .clone()
    };
    assert_eq!(last_used(&key_id), Value::Null);
    let before = now();
    token(&env, &server, &key);
    let after = now();
    let used = last_used(&key_id)
        .as_i64()
        .expect("last_used should be set");
    assert!(
        (before..=after).contains(&used),
        "{before} <= {used} <= {after}"
    );
    assert_eq!(last_used(&other_id), Value::Null);
}

fn auth_and_introspect_answer_alike_for_a_user_that_exists_and_one_that_does_not() {
    let s = setup("ci-bot", &[], &[]);
    s.env.ok(&["user", "add", "parked"]);
    s.env.ok(&["user", "disable", "parked"]);
    let (_, gw_key) = s.env.issue_key("gateway", &[]);
    s.env.ok(&["user", "grant", "gateway", "introspect"]);
    let caller = token(&s.env, &s.server, &gw_key);
    let (header, claims, signature) = split(&s.token);
    // None of them signed with the named user's secret: the caller proved nothing.
    for sig in [signature.as_str(), "", "not*base64url", "A"] {
        let answers: Vec<(String, String)> = ["ci-bot", "parked", "nobody"]
            .into_iter()
            .map(|sub| {
                let mut claims = claims.clone();
                claims["sub"] = json!(sub);
                let forged = format!("{}.{sig}", unsigned(&header, &claims));
                let r = common::send(http().get(s.server.url("/auth")).bearer_auth(&forged));
                let introspected = common::send(
                    http()
                        .post(s.server.url("/introspect"))
                        .bearer_auth(&caller)
                        .form(&[("token", &forged)]),
                );
                assert_eq!(introspected.text, r#"{"active":false}"#, "{sub} {sig:?}");
                (sub.to_owned(), r.comparable())
            })
            .collect();
        assert!(answers[0].1.starts_with("401 "), "{}", answers[0].1);
        for (sub, a) in &answers[1..] {
            assert_eq!(a, &answers[0].1, "{sub} told apart from ci-bot with signature {sig:?}");
        }
    }
}

fn revoking_impersonate_from_the_keys_owner_ends_its_impersonation_tokens() {
    let s = Impersonation::new();
    s.env.ok(&["user", "revoke", "deployer", "impersonate"]);
    s.assert_ended("Access token has been revoked");
    // Its own token stood on nothing that changed.
    assert_allowed(&auth(&s.server, &s.own), "deployer", &s.key_id, "read");
    // Given back, the permission lets the same token live again: it was never revoked by id.
    s.env.ok(&["user", "grant", "deployer", "impersonate"]);
    assert_allowed(&auth(&s.server, &s.token), "app", &s.key_id, "read");
}

fn rotating_the_keys_owners_secret_ends_its_impersonation_tokens() {
    let s = Impersonation::new();
    s.env.ok(&["rotate-secret", "deployer", "--yes"]);
    s.assert_ended("Access token has been revoked");
    // A token issued after the rotation works.
    let fresh = s.impersonate();
    assert_allowed(&auth(&s.server, &fresh), "app", &s.key_id, "read");
    // Rotating the subject's secret still ends both, as it always did.
    s.env.ok(&["rotate-secret", "app", "--yes"]);
    assert_refused(
        &auth(&s.server, &fresh),
        401,
        "invalid_token",
        "Invalid signature",
    );
}
}

/// A server where `deployer` (who may impersonate) holds a key, and a token it got for `app`;
/// `gateway` may introspect.
struct Impersonation {
    server: Server,
    env: Env,
    key_id: String,
    key: PathBuf,
    /// deployer's token acting as app.
    token: String,
    /// deployer's token for itself.
    own: String,
    /// gateway's token, to call /introspect with.
    gateway: String,
}

impl Impersonation {
    fn new() -> Impersonation {
        let env = Env::new();
        let server = env.serve(&[]);
        let (key_id, key) = env.issue_key("deployer", &[]);
        env.ok(&["user", "add", "app"]);
        env.ok(&["user", "grant", "deployer", "impersonate"]);
        let (_, gw_key) = env.issue_key("gateway", &[]);
        env.ok(&["user", "grant", "gateway", "introspect"]);
        let gateway = token(&env, &server, &gw_key);
        let own = token(&env, &server, &key);
        let mut s = Impersonation {
            server,
            env,
            key_id,
            key,
            token: String::new(),
            own,
            gateway,
        };
        s.token = s.impersonate();
        assert_eq!(claims(&s.token)["sub"], "app");
        assert_allowed(&auth(&s.server, &s.token), "app", &s.key_id, "read");
        assert_eq!(s.introspect(&s.token)["active"], true);
        s
    }

    /// A fresh token of deployer's key acting as app.
    fn impersonate(&self) -> String {
        let out = self.env.ok(&[
            "sign-grant",
            "--key",
            self.key.to_str().unwrap(),
            "--sub",
            "app",
        ]);
        let (status, body) = exchange(&self.server, out.trim());
        assert_eq!(status, 200, "impersonating exchange refused: {body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    fn introspect(&self, token: &str) -> Value {
        let r = post_form(
            &self.server,
            "/introspect",
            Some(&self.gateway),
            &[("token", token)],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// The impersonation token is refused by /auth with `description`, and inactive.
    fn assert_ended(&self, description: &str) {
        assert_refused(
            &auth(&self.server, &self.token),
            401,
            "invalid_token",
            description,
        );
        assert_eq!(self.introspect(&self.token), json!({ "active": false }));
    }
}
