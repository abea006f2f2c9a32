//! What operators watch: JSON access logs, request ids, GET /metrics (also on its own
//! address) and GET /readyz.

mod common;

use common::{Env, JWT_BEARER, Server, free_port, http, metric, send};

/// A server with a user, a key and a good token; returns (server, key file, token, grant
/// that was exchanged for it).
fn setup(env: &Env, extra: &[&str]) -> (Server, std::path::PathBuf, String, String) {
    env.ok(&["user", "add", "ci-bot"]);
    let server = env.serve(extra);
    let (_, key) = env.issue_key("ci-bot", &[]);
    let grant = env
        .ok(&["sign-grant", "--key", key.to_str().unwrap()])
        .trim()
        .to_owned();
    let r = send(
        http()
            .post(server.url("/token"))
            .form(&[("grant_type", JWT_BEARER), ("assertion", grant.as_str())]),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.json["access_token"].as_str().unwrap().to_owned();
    (server, key, token, grant)
}

/// The log's JSON lines from the access log, once `n` of them are there.
fn access_lines(server: &Server, n: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let lines: Vec<serde_json::Value> = server
            .log()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))
            })
            .filter(|v| v["target"] == "tokenauth::access")
            .collect();
        if lines.len() >= n || std::time::Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn json_access_log_has_one_line_per_request_with_its_fields_and_no_secrets() {
    let env = Env::new();
    let (server, _, token, grant) = setup(&env, &["--log-format", "json"]);
    let r = send(
        http()
            .get(server.url("/auth?scope=read"))
            .bearer_auth(&token)
            .header("x-request-id", "trace-42.a"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("trace-42.a"));
    // A request id that could break a log line is replaced by a fresh one.
    let r = send(
        http()
            .get(server.url("/auth"))
            .header("x-request-id", "bad id\"}")
            .bearer_auth("not-a-token"),
    );
    assert_eq!(r.status, 401);
    let fresh = r.header("x-request-id").unwrap().to_owned();
    assert!(fresh.len() == 32 && fresh.bytes().all(|b| b.is_ascii_hexdigit()));
    let r = send(http().get(server.url("/no/such?token=secretish")));
    assert_eq!(r.status, 404);
    // A refused grant whose key is known: the line names the key.
    let r = send(
        http()
            .post(server.url("/token"))
            .form(&[("grant_type", JWT_BEARER), ("assertion", grant.as_str())]),
    );
    assert_eq!(r.status, 400);

    let lines = access_lines(&server, 5);
    assert_eq!(lines.len(), 5, "{}", server.log());
    assert_eq!(lines[4]["status"], 400);
    assert_eq!(lines[4]["key_id"], lines[0]["key_id"]);
    assert_eq!(lines[4]["user"], "ci-bot");
    let token_line = &lines[0];
    assert_eq!(token_line["method"], "POST");
    assert_eq!(token_line["path"], "/token");
    assert_eq!(token_line["status"], 200);
    assert_eq!(token_line["user"], "ci-bot");
    assert!(token_line["key_id"].as_str().is_some_and(|k| !k.is_empty()));
    assert_eq!(token_line["client"], "127.0.0.1");
    assert_eq!(token_line["level"], "INFO");
    // Milliseconds to the microsecond, never float noise like 0.27708099999999997.
    let latency = token_line["latency_ms"].to_string();
    assert!(token_line["latency_ms"].as_f64().is_some(), "{latency}");
    assert!(
        latency.split_once('.').is_none_or(|(_, d)| d.len() <= 3),
        "{latency}"
    );
    assert!(token_line["request_id"].as_str().is_some());
    assert_eq!(lines[1]["path"], "/auth");
    assert_eq!(lines[1]["request_id"], "trace-42.a");
    assert_eq!(lines[1]["user"], "ci-bot");
    assert_eq!(lines[2]["status"], 401);
    assert_eq!(lines[2]["request_id"], fresh.as_str());
    // The route, never the raw path or its query.
    assert_eq!(lines[3]["path"], "unmatched");

    let log = server.log();
    assert!(!log.contains(&token), "the access token was logged");
    assert!(!log.contains(&grant), "the grant was logged");
    let signature = grant.rsplit('.').next().unwrap();
    assert!(!log.contains(signature));
    assert!(!log.contains("secretish"));
    assert!(!log.contains("not-a-token"));
}

#[test]
fn no_access_log_turns_the_request_lines_off() {
    let env = Env::new();
    let (server, _, token, _) = setup(&env, &["--no-access-log"]);
    let r = send(http().get(server.url("/auth")).bearer_auth(&token));
    assert_eq!(r.status, 200);
    // The request id is still echoed.
    assert!(r.header("x-request-id").is_some());
    assert!(
        !server.log().contains("tokenauth::access"),
        "{}",
        server.log()
    );
}

#[test]
fn metrics_count_issuances_refusals_and_validations_without_secrets() {
    let env = Env::new();
    let (server, key, token, grant) = setup(&env, &[]);
    // A replay, a bad signature, garbage, a good and a bad check.
    let replay = send(
        http()
            .post(server.url("/token"))
            .form(&[("grant_type", JWT_BEARER), ("assertion", grant.as_str())]),
    );
    assert_eq!(replay.status, 400);
    let mut forged = grant.clone();
    forged.truncate(grant.len() - 4);
    forged.push_str("AAAA");
    send(
        http()
            .post(server.url("/token"))
            .form(&[("grant_type", JWT_BEARER), ("assertion", forged.as_str())]),
    );
    send(
        http()
            .post(server.url("/token"))
            .form(&[("grant_type", "password"), ("assertion", "x")]),
    );
    assert_eq!(
        send(http().get(server.url("/auth")).bearer_auth(&token)).status,
        200
    );
    assert_eq!(
        send(http().get(server.url("/auth")).bearer_auth("garbage")).status,
        401
    );
    assert_eq!(send(http().get(server.url("/auth"))).status, 401);
    send(http().get(server.url("/token/secret-path-value")));

    let r = send(http().get(server.url("/metrics")));
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4"))
    );
    let m = r.text;
    assert_eq!(
        metric(&m, "tokenauth_tokens_issued_total "),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "tokenauth_token_refusals_total{error=\"invalid_grant\",reason=\"replay\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "tokenauth_token_refusals_total{error=\"invalid_grant\",reason=\"bad_signature\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "tokenauth_token_refusals_total{error=\"unsupported_grant_type\",reason=\"grant_type\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "tokenauth_validations_total{endpoint=\"auth\",outcome=\"valid\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "tokenauth_validations_total{endpoint=\"auth\",outcome=\"malformed\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "tokenauth_validations_total{endpoint=\"auth\",outcome=\"missing\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "tokenauth_http_request_duration_seconds_count{endpoint=\"/token\"}"
        ),
        Some(4.0)
    );
    assert_eq!(
        metric(
            &m,
            "tokenauth_http_request_duration_seconds_count{endpoint=\"unmatched\"}"
        ),
        Some(1.0)
    );
    for name in [
        "tokenauth_build_info{version=",
        "tokenauth_registry_loads_total 1",
        "tokenauth_registry_entries{kind=\"keys\"} ",
        "tokenauth_feed_entries_applied_total ",
        "tokenauth_usage_batch_rows_bucket",
        "tokenauth_usage_commit_duration_seconds_bucket",
        "tokenauth_replay_set_size ",
        "tokenauth_store_errors_total{kind=\"unavailable\"} 0",
        "tokenauth_store_errors_total{kind=\"unwritable\"} 0",
        "tokenauth_rate_limited_total{bucket=\"address\"} 0",
        "tokenauth_rate_limited_total{bucket=\"key\"} 0",
    ] {
        assert!(m.contains(name), "no {name} in {m}");
    }
    assert!(metric(&m, "tokenauth_replay_set_size ").unwrap() >= 1.0);
    // Nothing a caller sent, nor any secret.
    let key_text = std::fs::read_to_string(key).unwrap();
    let key_json: serde_json::Value = serde_json::from_str(&key_text).unwrap();
    for secret in [
        token.as_str(),
        grant.as_str(),
        "garbage",
        "secret-path-value",
        "password",
        "ci-bot",
        key_json["key_id"].as_str().unwrap(),
    ] {
        assert!(!m.contains(secret), "{secret} is in the metrics");
    }
}

#[test]
fn metrics_listen_serves_metrics_apart_and_the_main_listener_not() {
    let env = Env::new();
    let port = free_port();
    let server = env.serve(&["--metrics-listen", &format!("127.0.0.1:{port}")]);
    let main = send(http().get(server.url("/metrics")));
    assert_eq!(main.status, 404);
    assert_eq!(main.json["error"], "not_found");
    let apart = send(http().get(format!("http://127.0.0.1:{port}/metrics")));
    assert_eq!(apart.status, 200);
    assert!(apart.text.contains("tokenauth_build_info"));
    let other = send(http().get(format!("http://127.0.0.1:{port}/token")));
    assert_eq!(other.status, 404);
}

#[test]
fn readyz_is_ready_with_a_readable_store_and_503_when_it_is_not() {
    let env = Env::new();
    let server = env.serve(&[]);
    let r = send(http().get(server.url("/readyz")));
    assert_eq!(r.status, 200);
    assert_eq!(r.json["status"], "ready");
    // The store's file goes away under the running server (a volume unmounted, say).
    let moved = env.path().join("moved.db");
    std::fs::rename(env.db(), &moved).unwrap();
    let r = send(http().get(server.url("/readyz")));
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.json["error"], "temporarily_unavailable");
    assert!(r.json["error_description"].as_str().is_some());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = send(http().get(server.url("/metrics")));
    assert!(metric(&r.text, "tokenauth_store_errors_total{kind=\"other\"} ").unwrap() >= 1.0);
    // Back in place: ready again.
    std::fs::rename(&moved, env.db()).unwrap();
    assert_eq!(send(http().get(server.url("/readyz"))).status, 200);
}
