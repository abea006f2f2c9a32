//! A test OpenID Connect issuer on 127.0.0.1 standing in for GitHub Actions and GitLab CI:
//! discovery, JWKS, GitHub's ID token request endpoint, ID tokens with the claims their docs
//! show, key rotation and outages; the hostile tokens (alg none, HMAC keyed with the public
//! key, ES256); and the small HTTP server it runs on, which also records what fake endpoints
//! are sent.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use rand::RngCore;
use serde_json::{Value, json};

const IO_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BODY: usize = 1 << 20;

// ---- a small HTTP server ---------------------------------------------------------------------

/// One request as an [`Http`] server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Every header in order, names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as an `application/x-www-form-urlencoded` form, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        serde_urlencoded::from_bytes(&self.body).unwrap()
    }

    /// The first value of form field `name`.
    pub fn form_field(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
}

/// What an [`Http`] server answers.
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn json(status: u16, body: &Value) -> Response {
        Response {
            status,
            body: body.to_string(),
        }
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// An HTTP/1.1 server on 127.0.0.1 port 0: one request per connection, each on its own
/// thread, every request recorded. Stopped and joined when dropped.
pub struct Http {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Http {
    pub fn start(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> Http {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut connections: Vec<JoinHandle<()>> = Vec::new();
                for stream in listener.incoming() {
                    // Drop wakes this accept with a connection of its own.
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (seen, handler) = (seen.clone(), handler.clone());
                    connections.retain(|c| !c.is_finished());
                    connections.push(std::thread::spawn(move || {
                        if let Err(e) = serve(stream, &seen, &*handler) {
                            eprintln!("test http {addr}: {e}");
                        }
                    }));
                }
                // Bounded: every connection has read and write timeouts.
                for c in connections {
                    let _ = c.join();
                }
            })
        };
        Http {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request (headers and a Content-Length body), answers it and closes.
fn serve(stream: TcpStream, seen: &Mutex<Vec<Request>>, handler: &Handler) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let Some((method, target, headers, body)) = super::web::read_request(&stream, MAX_BODY)? else {
        return Ok(());
    };
    let url = url::Url::parse(&format!("http://test{target}"))
        .unwrap_or_else(|_| url::Url::parse("http://test/").unwrap());
    let request = Request {
        method,
        path: url.path().to_owned(),
        query: url.query_pairs().into_owned().collect(),
        headers,
        body,
    };
    let reply = handler(&request);
    seen.lock().unwrap().push(request);
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.status,
        if reply.status == 200 { "OK" } else { "Not OK" },
        reply.body.len(),
        reply.body
    )?;
    stream.flush()
}

// ---- keys ------------------------------------------------------------------------------------

/// An RSA signing key and its JWK.
struct RsaKey {
    kid: String,
    signer: EncodingKey,
    n: String,
    e: String,
    /// SubjectPublicKeyInfo PEM, for the key-confusion attack.
    public_pem: String,
}

/// An EC P-256 signing key and its JWK.
struct EcKey {
    kid: String,
    signer: EncodingKey,
    x: String,
    y: String,
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A fresh RSA-2048 key, distinct from every other this process has used (a test that signs
/// with one issuer's key must never pass for another's). Generating one takes a good part of
/// a second, so the keys are kept in the target folder and reused by later runs: the n-th key
/// a process asks for is the n-th file.
fn rsa_key() -> RsaKey {
    use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
    use rsa::pkcs8::EncodePublicKey;
    use rsa::traits::PublicKeyParts;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("oidc-test-keys");
    let path = dir.join(format!("rsa-{}.der", NEXT.fetch_add(1, Ordering::Relaxed)));
    let private = match std::fs::read(&path)
        .ok()
        .and_then(|der| rsa::RsaPrivateKey::from_pkcs1_der(&der).ok())
    {
        Some(k) => k,
        None => {
            let k = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
            std::fs::create_dir_all(&dir).unwrap();
            // Renamed into place, so that a test binary running alongside reads a whole key.
            let tmp = dir.join(format!(".tmp-{}", random_hex(8)));
            std::fs::write(&tmp, k.to_pkcs1_der().unwrap().as_bytes()).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
            k
        }
    };
    let public = private.to_public_key();
    RsaKey {
        kid: random_hex(8),
        signer: EncodingKey::from_rsa_der(private.to_pkcs1_der().unwrap().as_bytes()),
        n: URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
        e: URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        public_pem: public
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap(),
    }
}

fn ec_key() -> EcKey {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    // The uncompressed point: 0x04, x, y.
    let point = pair.public_key().as_ref().to_vec();
    EcKey {
        kid: random_hex(8),
        signer: EncodingKey::from_ec_der(pair.to_pkcs8v1().unwrap().as_ref()),
        x: URL_SAFE_NO_PAD.encode(&point[1..33]),
        y: URL_SAFE_NO_PAD.encode(&point[33..65]),
    }
}

fn b64_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// `header.claims.signature` with `alg`'s signature made by `key`, whatever the header says.
fn sign(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!("{}.{}", b64_json(header), b64_json(claims));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{signature}")
}

// ---- the issuer ------------------------------------------------------------------------------

struct State {
    rsa: RsaKey,
    ec: EcKey,
    down: bool,
    fetches: usize,
    /// The audiences GitHub's ID token endpoint was asked for, in order.
    audiences: Vec<String>,
    /// Claim overrides for the ID tokens that endpoint mints.
    job_overrides: Value,
}

/// The audience GitHub gives an ID token asked for without one: the repository owner's URL.
pub const GITHUB_DEFAULT_AUDIENCE: &str = "https://github.com/octo-org";

/// A test OIDC issuer: `iss` is its base URL, `http://127.0.0.1:PORT`.
///
/// Serves `GET /.well-known/openid-configuration`, `GET /jwks` (the current RSA key and an EC
/// P-256 key) and `GET /token?audience=…` with `Authorization: bearer <request token>`, the
/// stand-in for GitHub's ACTIONS_ID_TOKEN_REQUEST_URL (`{"value": <ID token>}`, 401 for
/// another request token).
pub struct Issuer {
    http: Http,
    state: Arc<Mutex<State>>,
    request_token: String,
}

impl Issuer {
    pub fn start() -> Issuer {
        let state = Arc::new(Mutex::new(State {
            rsa: rsa_key(),
            ec: ec_key(),
            down: false,
            fetches: 0,
            audiences: Vec::new(),
            job_overrides: json!({}),
        }));
        let request_token = format!("ghs_req{}", random_hex(16));
        // The server learns its own address only once bound; the handler reads it from here.
        let base: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
        let http = {
            let (state, base, request_token) = (state.clone(), base.clone(), request_token.clone());
            Http::start(move |req| {
                let base = base.get().map(String::as_str).unwrap_or_default();
                answer(req, &state, base, &request_token)
            })
        };
        base.set(format!("http://{}", http.addr)).unwrap();
        Issuer {
            http,
            state,
            request_token,
        }
    }

    /// The issuer identifier, the `iss` of its tokens: `http://127.0.0.1:PORT`.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.http.addr)
    }

    pub fn url(&self, path: &str) -> String {
        self.http.url(path)
    }

    /// ACTIONS_ID_TOKEN_REQUEST_URL: like GitHub's, it already has a query string.
    pub fn request_url(&self) -> String {
        self.url("/token?api-version=2.0")
    }

    /// ACTIONS_ID_TOKEN_REQUEST_TOKEN.
    pub fn request_token(&self) -> &str {
        &self.request_token
    }

    /// The variables GitHub Actions sets in a job with `permissions: id-token: write`.
    pub fn github_env(&self) -> [(&'static str, String); 2] {
        [
            ("ACTIONS_ID_TOKEN_REQUEST_URL", self.request_url()),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", self.request_token.clone()),
        ]
    }

    /// The current RSA key's `kid`.
    pub fn kid(&self) -> String {
        self.state.lock().unwrap().rsa.kid.clone()
    }

    /// The EC key's `kid`.
    pub fn ec_kid(&self) -> String {
        self.state.lock().unwrap().ec.kid.clone()
    }

    /// The current RSA public key as SubjectPublicKeyInfo PEM.
    pub fn public_key_pem(&self) -> String {
        self.state.lock().unwrap().rsa.public_pem.clone()
    }

    /// The JWKS as served now (for `trust add --jwks-file`).
    pub fn jwks_json(&self) -> String {
        jwks(&self.state.lock().unwrap()).to_string()
    }

    /// A new RSA key with a new `kid`; the old one leaves the JWKS.
    pub fn rotate(&self) {
        let key = rsa_key();
        self.state.lock().unwrap().rsa = key;
    }

    /// While down, every request is answered 503.
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    /// How many discovery and JWKS requests arrived (answered or not).
    pub fn fetches(&self) -> usize {
        self.state.lock().unwrap().fetches
    }

    /// The audiences the ID token endpoint was asked for, in order (GitHub's default for a
    /// request without one).
    pub fn audiences_asked(&self) -> Vec<String> {
        self.state.lock().unwrap().audiences.clone()
    }

    /// Claim overrides (as [`Issuer::github_claims`] takes them) for the ID tokens the ID
    /// token endpoint mints from now on.
    pub fn set_job_claims(&self, overrides: Value) {
        self.state.lock().unwrap().job_overrides = overrides;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.http.requests()
    }

    /// The claims of a GitHub Actions ID token for `aud`, as the example in GitHub's "OpenID
    /// Connect" docs ("About security hardening with OpenID Connect") has them, but a unique
    /// `jti`, this issuer's `iss`, and times around now with the example's offsets (nbf
    /// 10 min before iat, exp 5 min after). `overrides` replace or add claims; a null removes
    /// one.
    pub fn github_claims(&self, aud: &str, overrides: Value) -> Value {
        github_claims(&self.issuer(), aud, overrides)
    }

    /// The claims of a GitLab CI ID token for `aud`. The values are the example payload of
    /// GitLab's "OpenID Connect (OIDC) Authentication Using ID Tokens" docs (the cloud
    /// services page: namespace mygroup, project mygroup/myproject, user myuser, pipeline and
    /// job 1212) with `ref` made `main` to agree with the documented `sub`; the claims that
    /// example predates (ref_path, runner_id, runner_environment, sha, project_visibility,
    /// ci_config_ref_uri, ci_config_sha, deployment_tier) have the values of GitLab's merge
    /// request that added them, or plausible ones. Times: exp an hour after iat and nbf 5 s
    /// before it, as in that merge request's sample (the docs' example has nbf after exp).
    pub fn gitlab_claims(&self, aud: &str, overrides: Value) -> Value {
        let iat = super::now();
        let sha = "714a629c0b401fdce83e847fc9589983fc6f46bc";
        let claims = json!({
            "namespace_id": "1",
            "namespace_path": "mygroup",
            "project_id": "22",
            "project_path": "mygroup/myproject",
            "user_id": "42",
            "user_login": "myuser",
            "user_email": "myuser@example.com",
            "pipeline_id": "1212",
            "pipeline_source": "web",
            "job_id": "1212",
            "ref": "main",
            "ref_type": "branch",
            "ref_path": "refs/heads/main",
            "ref_protected": "true",
            "environment": "production",
            "environment_protected": "true",
            "deployment_tier": "production",
            "runner_id": 1,
            "runner_environment": "gitlab-hosted",
            "sha": sha,
            "project_visibility": "private",
            "ci_config_ref_uri": "gitlab.example.com/mygroup/myproject//.gitlab-ci.yml@refs/heads/main",
            "ci_config_sha": sha,
            "jti": uuid(),
            "iss": self.issuer(),
            "iat": iat,
            "nbf": iat - 5,
            "exp": iat + 3600,
            "sub": "project_path:mygroup/myproject:ref_type:branch:ref:main",
            "aud": aud,
        });
        with_overrides(claims, overrides)
    }

    /// A GitHub Actions ID token (see [`Issuer::github_claims`]), RS256 with the current key.
    pub fn github_token(&self, aud: &str, overrides: Value) -> String {
        self.sign_claims(&self.github_claims(aud, overrides))
    }

    /// A GitLab CI ID token (see [`Issuer::gitlab_claims`]), RS256 with the current key.
    pub fn gitlab_token(&self, aud: &str, overrides: Value) -> String {
        self.sign_claims(&self.gitlab_claims(aud, overrides))
    }

    /// `claims` signed RS256 with the current key, header `alg`, `typ` and `kid` as GitHub's.
    pub fn sign_claims(&self, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid()});
        self.sign_raw(header, claims.clone())
    }

    /// `header` and `claims` as given, with an RS256 signature by the current key whatever
    /// the header says.
    pub fn sign_raw(&self, header: Value, claims: Value) -> String {
        let state = self.state.lock().unwrap();
        sign(&header, &claims, &state.rsa.signer, Algorithm::RS256)
    }

    /// `claims` signed ES256 with the EC key the JWKS holds (header kid: [`Issuer::ec_kid`]).
    pub fn es256_token(&self, claims: Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.ec_kid()});
        self.sign_raw_es256(header, claims)
    }

    /// `header` and `claims` as given, with an ES256 signature by the EC key.
    pub fn sign_raw_es256(&self, header: Value, claims: Value) -> String {
        let state = self.state.lock().unwrap();
        sign(&header, &claims, &state.ec.signer, Algorithm::ES256)
    }

    /// An unsigned token: `alg: none`, the current `kid`, an empty signature.
    pub fn alg_none_token(&self, claims: Value) -> String {
        let header = json!({"alg": "none", "typ": "JWT", "kid": self.kid()});
        format!("{}.{}.", b64_json(&header), b64_json(&claims))
    }

    /// The key-confusion attack: HS256 keyed with the JWKS text as served, with the RSA
    /// key's `kid`.
    pub fn hmac_with_jwks_token(&self, claims: Value) -> String {
        self.hmac_token(claims, self.jwks_json().as_bytes())
    }

    /// The key-confusion attack: HS256 keyed with the RSA public key's PEM.
    pub fn hmac_with_pem_token(&self, claims: Value) -> String {
        self.hmac_token(claims, self.public_key_pem().as_bytes())
    }

    fn hmac_token(&self, claims: Value, secret: &[u8]) -> String {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": self.kid()});
        sign(
            &header,
            &claims,
            &EncodingKey::from_secret(secret),
            Algorithm::HS256,
        )
    }
}

fn github_claims(iss: &str, aud: &str, overrides: Value) -> Value {
    let iat = super::now();
    let claims = json!({
        "jti": uuid(),
        "sub": "repo:octo-org/octo-repo:environment:prod",
        "environment": "prod",
        "aud": aud,
        "ref": "refs/heads/main",
        "sha": "example-sha",
        "repository": "octo-org/octo-repo",
        "repository_owner": "octo-org",
        "actor_id": "12",
        "repository_visibility": "private",
        "repository_id": "74",
        "repository_owner_id": "65",
        "run_id": "example-run-id",
        "run_number": "10",
        "run_attempt": "2",
        "runner_environment": "github-hosted",
        "actor": "octocat",
        "workflow": "example-workflow",
        "head_ref": "",
        "base_ref": "",
        "event_name": "workflow_dispatch",
        "ref_type": "branch",
        "job_workflow_ref": "octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main",
        "iss": iss,
        "nbf": iat - 600,
        "exp": iat + 300,
        "iat": iat,
    });
    with_overrides(claims, overrides)
}

/// `claims` with `overrides` (an object, or null for none) applied: null removes a claim,
/// anything else replaces or adds it.
fn with_overrides(mut claims: Value, overrides: Value) -> Value {
    let map = claims.as_object_mut().unwrap();
    match overrides {
        Value::Null => {}
        Value::Object(o) => {
            for (k, v) in o {
                if v.is_null() {
                    map.remove(&k);
                } else {
                    map.insert(k, v);
                }
            }
        }
        other => panic!("claim overrides are an object, not {other}"),
    }
    claims
}

/// A random UUID, as GitHub's and GitLab's `jti`: unique, so no test trips the single-use
/// check by accident.
fn uuid() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn jwks(state: &State) -> Value {
    json!({"keys": [
        {"kty": "RSA", "kid": state.rsa.kid, "use": "sig", "alg": "RS256",
         "n": state.rsa.n, "e": state.rsa.e},
        {"kty": "EC", "kid": state.ec.kid, "use": "sig", "alg": "ES256", "crv": "P-256",
         "x": state.ec.x, "y": state.ec.y},
    ]})
}

fn answer(req: &Request, state: &Mutex<State>, base: &str, request_token: &str) -> Response {
    let mut state = state.lock().unwrap();
    let discovery = req.path == "/.well-known/openid-configuration";
    if discovery || req.path == "/jwks" {
        state.fetches += 1;
    }
    if state.down {
        return Response::json(503, &json!({"message": "the test issuer is down"}));
    }
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/.well-known/openid-configuration") => {
            let claims = github_claims(base, "", Value::Null);
            let names: Vec<&String> = claims.as_object().unwrap().keys().collect();
            Response::json(
                200,
                &json!({
                    "issuer": base,
                    "jwks_uri": format!("{base}/jwks"),
                    "subject_types_supported": ["public"],
                    "response_types_supported": ["id_token"],
                    "claims_supported": names,
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "scopes_supported": ["openid"],
                }),
            )
        }
        ("GET", "/jwks") => Response::json(200, &jwks(&state)),
        ("GET", "/token") => {
            let presented = req
                .header("authorization")
                .and_then(|h| h.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim());
            if presented != Some(request_token) {
                return Response::json(401, &json!({"message": "Bad credentials"}));
            }
            let aud = req
                .query_param("audience")
                .unwrap_or(GITHUB_DEFAULT_AUDIENCE)
                .to_owned();
            state.audiences.push(aud.clone());
            let claims = github_claims(base, &aud, state.job_overrides.clone());
            let header = json!({"alg": "RS256", "typ": "JWT", "kid": state.rsa.kid});
            let token = sign(&header, &claims, &state.rsa.signer, Algorithm::RS256);
            Response::json(200, &json!({"value": token}))
        }
        _ => Response::json(404, &json!({"message": "Not Found"})),
    }
}
