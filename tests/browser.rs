//! A real browser (Debian's headless Chromium) loads pages from loopback ports whose scripts
//! call tokenauth, on another port, with fetch(): directly, and through nginx with the
//! CORS recipe in docs/proxies.md. Pages on an origin the credential lists read the answers; the
//! browser keeps them from pages on other origins.
//!
//! Needs Debian's `chromium` package (and `nginx` for the nginx test); without them the
//! tests say so and pass.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::docs::blocks_of;
use common::web::{Answer, NGINX, Nginx, Site};
use common::{Env, JWT_BEARER};
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";
/// Wall-clock bound on one page load (about 2 s here).
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

fn chromium_installed(what: &str) -> bool {
    let there = Path::new(CHROMIUM).exists();
    if !there {
        eprintln!("chromium not installed; skipping {what} — install Debian's chromium package");
    }
    there
}

/// A site serving one page at `/` (and 404 elsewhere, e.g. /favicon.ico). The page is
/// set later, once it can name the site's origin in the store.
fn page_site() -> (Site, Arc<OnceLock<String>>) {
    let html = Arc::new(OnceLock::<String>::new());
    let page = html.clone();
    let site = Site::start(move |seen| match (seen.target.as_str(), page.get()) {
        ("/", Some(html)) => Answer {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: html.clone(),
        },
        _ => Answer {
            status: 404,
            content_type: "text/plain",
            body: "not found\n".into(),
        },
    });
    (site, html)
}

/// A page whose script runs `body` and then writes what each `step` saw into
/// `<pre id="result">` as JSON: `{"status", "body"}`, or `{"error"}` with the name of what
/// fetch() rejected with (a TypeError when the browser blocks the answer).
fn page(body: &str) -> String {
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>tokenauth browser test</title></head>
<body><pre id="result">pending</pre>
<script>
const result = {{}};
async function step(name, url, init) {{
  try {{
    const r = await fetch(url, init);
    result[name] = {{ status: r.status, body: await r.text() }};
  }} catch (e) {{
    result[name] = {{ error: e.name }};
  }}
  return result[name];
}}
async function main() {{
{body}
}}
main()
  .catch((e) => {{ result.script_error = String(e); }})
  .finally(() => {{ document.getElementById("result").textContent = JSON.stringify(result); }});
</script>
</body></html>
"#
    )
}

/// A JavaScript string literal.
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Loads `url` in a fresh headless Chromium and returns the page's result (see [`page`]).
fn load(url: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let dom_path = dir.path().join("dom.html");
    let log_path = dir.path().join("chromium.log");
    let child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            // Without these Chromium calls home, and this machine's closed network refuses
            // its connections.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        // Virtual time stands still while fetches are pending, so the DOM is dumped once the
        // page's fetches have settled, however long they took in real time.
        .args(["--virtual-time-budget=10000", "--dump-dom", url])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&dom_path).unwrap())
        .stderr(std::fs::File::create(&log_path).unwrap())
        // Its own process group: a hung browser is killed with its helper processes.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {CHROMIUM}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let mut child = child;
        let _ = tx.send(child.wait());
    });
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let status = match rx.recv_timeout(LOAD_TIMEOUT) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            let _ = waiter.join();
            panic!(
                "chromium did not finish {url} within {LOAD_TIMEOUT:?}; killed\n{}",
                log()
            );
        }
    };
    waiter.join().unwrap();
    let dom = std::fs::read_to_string(&dom_path).unwrap();
    assert!(status.success(), "chromium: {status}\n{dom}\n{}", log());
    let text = dom
        .split_once(r#"<pre id="result">"#)
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(text, _)| {
            text.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        })
        .unwrap_or_default();
    serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("no result from {url}:\n{dom}\n--- chromium ---\n{}", log()))
}

/// A step's body as JSON.
fn body(step: &Value) -> Value {
    serde_json::from_str(step["body"].as_str().unwrap_or("")).unwrap_or(Value::Null)
}

fn get_token(env: &Env, key: &Path) -> String {
    env.ok(&["get-token", "--key", key.to_str().unwrap(), "--no-cache"])
        .trim()
        .to_owned()
}

/// The usage-log rows the browser caused (by its user agent), once there are `count`:
/// refused attempts are committed after their answer.
fn browser_rows(env: &Env, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows: Vec<Value> = env
            .json(&["usage-log", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["user_agent"]
                    .as_str()
                    .is_some_and(|ua| ua.contains("Chrome/"))
            })
            .cloned()
            .collect();
        if rows.len() >= count || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_listed_origins_page_gets_a_token_and_introspects_and_the_browser_blocks_other_origins() {
    if !chromium_installed("the browser test") {
        return;
    }
    let started = Instant::now();
    let env = Env::new();
    let server = env.serve(&[]);
    let (site_a, page_a) = page_site();
    let (site_b, page_b) = page_site();
    let (origin_a, origin_b) = (site_a.origin(), site_b.origin());
    let (_, key) = env.issue_key("dashboard", &["--origin", &origin_a]);
    env.ok(&["user", "grant", "dashboard", "introspect"]);
    // A caller whose key lists no origin: on page A it may not introspect, although another
    // key lists A.
    let (_, other) = env.issue_key("auditor", &[]);
    env.ok(&["user", "grant", "auditor", "introspect"]);
    let other_token = get_token(&env, &other);
    // For page B, which cannot get its own.
    let key_token = get_token(&env, &key);

    // POST /token with a form body is a request a form could send: no preflight; the
    // browser sends it and then decides whether the page may read the answer. /introspect
    // with Authorization is preflighted: the browser asks with OPTIONS first.
    let script = |grant: &str| {
        format!(
            r#"const server = {server};
const form = {{ "Content-Type": "application/x-www-form-urlencoded" }};
const post = (headers, params) =>
  ({{ method: "POST", headers, body: new URLSearchParams(params).toString() }});
const t = await step("token", server + "/token",
  post(form, {{ grant_type: {jwt_bearer}, assertion: {grant} }}));
const token = t.status === 200 ? JSON.parse(t.body).access_token : {key_token};
await step("introspect", server + "/introspect",
  post({{ ...form, Authorization: "Bearer " + token }}, {{ token }}));
await step("introspect_other", server + "/introspect",
  post({{ ...form, Authorization: "Bearer " + {other_token} }}, {{ token }}));"#,
            server = js(&format!("http://{}", server.addr)),
            jwt_bearer = js(JWT_BEARER),
            grant = js(grant),
            key_token = js(&key_token),
            other_token = js(&other_token),
        )
    };
    let grant = || {
        env.ok(&["sign-grant", "--key", key.to_str().unwrap()])
            .trim()
            .to_owned()
    };
    page_a.set(page(&script(&grant()))).unwrap();
    page_b.set(page(&script(&grant()))).unwrap();

    let a = load(&site_a.url("/"));
    let context = || format!("\npage A: {a:#}\n--- tokenauth log ---\n{}", server.log());
    assert_eq!(a["token"]["status"], 200, "{}", context());
    let access_token = body(&a["token"])["access_token"].clone();
    assert!(access_token.is_string(), "{}", context());
    assert_eq!(a["introspect"]["status"], 200, "{}", context());
    let introspected = body(&a["introspect"]);
    assert_eq!(introspected["active"], true, "{}", context());
    assert_eq!(introspected["sub"], "dashboard", "{}", context());
    // The answer names the origin, and the page could read it because A is an origin some
    // key lists.
    assert_eq!(a["introspect_other"]["status"], 403, "{}", context());
    let refused = body(&a["introspect_other"]);
    assert_eq!(refused["error"], "access_denied", "{}", context());
    assert_eq!(
        refused["error_description"],
        format!("Origin {origin_a} is not allowed for this token"),
        "{}",
        context()
    );

    let b = load(&site_b.url("/"));
    let context = || format!("\npage B: {b:#}\n--- tokenauth log ---\n{}", server.log());
    for step in ["token", "introspect", "introspect_other"] {
        assert_eq!(
            b[step],
            serde_json::json!({ "error": "TypeError" }),
            "{step}{}",
            context()
        );
    }

    // The browser did send the pages' origins: tokenauth issued A's token and refused B's
    // grant naming B's origin.
    let rows = browser_rows(&env, 2);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let refused = rows.iter().find(|r| r["ok"] == false).unwrap();
    assert_eq!(
        refused["reason"],
        format!("Origin {origin_b} is not allowed for this key"),
        "{rows:#?}"
    );
    let issued = rows.iter().find(|r| r["ok"] == true).unwrap();
    assert_eq!(issued["user"], "dashboard", "{rows:#?}");
    eprintln!("browser test took {:?}", started.elapsed());
}

#[test]
fn through_nginx_a_listed_origins_page_reads_the_app_and_the_browser_blocks_other_origins() {
    if !chromium_installed("the browser test through nginx") {
        return;
    }
    if !Path::new(NGINX).exists() {
        eprintln!(
            "nginx not installed; skipping the browser test through nginx — install Debian's nginx package"
        );
        return;
    }
    let started = Instant::now();
    let env = Env::new();
    let server = env.serve(&["--trusted-proxy", "127.0.0.1"]);
    let app = Site::app();
    // The documented recipe as written, with the test's application address.
    let recipe = blocks_of("docs/proxies.md", "## Browser clients (CORS)", "nginx")
        .swap_remove(0)
        .replace("127.0.0.1:3000", &app.addr.to_string());
    let nginx = Nginx::start(&server.addr.to_string(), app.addr, &recipe);
    let (site_a, page_a) = page_site();
    let (site_b, page_b) = page_site();
    let (origin_a, origin_b) = (site_a.origin(), site_b.origin());
    let pat = env
        .ok(&[
            "token",
            "create",
            "--user",
            "dashboard",
            "--origin",
            &origin_a,
        ])
        .trim()
        .to_owned();

    // Authorization makes the request preflighted; nginx answers the OPTIONS itself.
    let script = format!(
        r#"await step("app", {url}, {{ headers: {{ Authorization: "Bearer " + {pat} }} }});"#,
        url = js(&nginx.url("/api/data")),
        pat = js(&pat),
    );
    page_a.set(page(&script)).unwrap();
    page_b.set(page(&script)).unwrap();
    let context = || {
        format!(
            "\n--- nginx access.log ---\n{}\n--- nginx error.log ---\n{}\n--- tokenauth log ---\n{}",
            nginx.access_log(),
            nginx.error_log(),
            server.log()
        )
    };

    let a = load(&site_a.url("/"));
    assert_eq!(a["app"]["status"], 200, "page A: {a:#}{}", context());
    assert_eq!(
        a["app"]["body"],
        "upstream saw X-Auth-User: dashboard\n",
        "page A: {a:#}{}",
        context()
    );
    let b = load(&site_b.url("/"));
    assert_eq!(
        b["app"],
        serde_json::json!({ "error": "TypeError" }),
        "page B: {b:#}{}",
        context()
    );

    // B's request went out, after its preflight, and tokenauth refused it: it never
    // reached the application.
    let seen = app.seen();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].header("origin"), Some(origin_a.as_str()));
    let access = nginx.access_log();
    for (line, count) in [
        ("\"OPTIONS /api/data HTTP/1.1\" 204", 2),
        ("\"GET /api/data HTTP/1.1\" 200", 1),
        ("\"GET /api/data HTTP/1.1\" 403", 1),
    ] {
        assert_eq!(access.matches(line).count(), count, "{line}{}", context());
    }
    let rows = browser_rows(&env, 1);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(
        rows[0]["reason"],
        format!("Origin {origin_b} is not allowed for this token"),
        "{rows:#?}"
    );
    eprintln!("browser test through nginx took {:?}", started.elapsed());
}
