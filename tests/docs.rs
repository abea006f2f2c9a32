//! The README's and docs/'s recipes, run as printed, and their links, followed.

mod common;

use std::process::Command;

use common::docs::{blocks, blocks_of};

/// $PATH with the tokenauth under test first, as the README's set-up leaves it.
fn path_with_tokenauth() -> String {
    let bin_dir = assert_cmd::cargo::cargo_bin("tokenauth")
        .parent()
        .unwrap()
        .to_owned();
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn readme_walkthrough_runs_as_written() {
    let env = common::Env::new();
    let port = common::free_port();
    let walkthrough = blocks_of("README.md", "## Walk-through", "sh").swap_remove(0);
    let script = walkthrough.replace("127.0.0.1:8181", &format!("127.0.0.1:{port}"));
    let path = path_with_tokenauth();
    let out = Command::new("timeout")
        .args(["60", "bash", "-euo", "pipefail", "-c", &script])
        .current_dir(env.path())
        .env_clear()
        .env("PATH", path)
        .env("HOME", env.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "walk-through failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("\"access_token\""), "{stdout}");
    assert!(stdout.contains("\"user\":\"ci-bot\""), "{stdout}");
    assert!(stdout.contains("refused, as it should be"), "{stdout}");
    assert!(stderr.contains("Key has been revoked"), "{stderr}");
    assert!(stdout.contains("refused: Key has been revoked"), "{stdout}");
}

/// The shell a YAML recipe runs, as printed: its steps' `run:` commands (`run: |` blocks and
/// one-line `run:`s) in order, one string per step; else a `script:` list, or a container's
/// `sh -c` command, as one step.
fn steps_of(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut steps = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((_, run)) = line.split_once("run: ") else {
            continue;
        };
        if !line
            .trim_start()
            .trim_start_matches("- ")
            .starts_with("run: ")
        {
            continue;
        }
        if run.trim_end() != "|" {
            steps.push(run.to_owned());
            continue;
        }
        let base = indent(lines[i + 1]);
        steps.push(
            lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indent(l) >= base)
                .map(|l| l.get(base..).unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
    if !steps.is_empty() {
        return steps;
    }
    if let Some(i) = lines.iter().position(|l| l.trim() == "script:") {
        return vec![
            lines[i + 1..]
                .iter()
                .map_while(|l| l.trim().strip_prefix("- "))
                .collect::<Vec<_>>()
                .join("\n"),
        ];
    }
    let command = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("command: [\"sh\", \"-c\", \""))
        .expect("a recipe runs run: steps, a script: list or a sh -c command");
    vec![command.strip_suffix("\"]").unwrap().to_owned()]
}

/// One shell for a recipe's one step.
fn shell_of(yaml: &str) -> String {
    let mut steps = steps_of(yaml);
    assert_eq!(steps.len(), 1, "one step: {yaml}");
    steps.remove(0)
}

/// Runs `script` under bash (strict mode, bounded) in `env`'s folder with the tokenauth under
/// test on PATH; panics with both streams unless it succeeds.
fn run_script(env: &common::Env, script: &str, vars: &[(&str, String)]) -> (String, String) {
    let out = env
        .std_cmd("timeout")
        .args(["60", "bash", "-euo", "pipefail", "-c", script])
        .env("PATH", path_with_tokenauth())
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{script}\nfailed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

#[test]
fn ci_recipes_with_a_key_file_run_as_printed() {
    use common::web::Site;
    let env = common::Env::new();
    let server = env.serve(&[]);
    let api = Site::app();
    let local = |text: &str| text.replace("https://api.example.com", &api.url(""));
    let (_, key) = env.issue_key("ci-bot", &[]);
    let key_json = std::fs::read_to_string(&key).unwrap();
    std::fs::write(env.path().join("build.json"), r#"{"ref":"main"}"#).unwrap();
    let recipes = blocks_of("docs/ci.md", "## Using tokenauth in CI", "yaml");
    assert_eq!(recipes.len(), 2, "GitHub Actions and GitLab CI");

    // GitHub Actions: each step its own shell; what a step appends to $GITHUB_ENV is in the
    // environment of the steps after it.
    let github_env = env.path().join("github-env");
    std::fs::write(&github_env, "").unwrap();
    let mut vars = vec![
        ("TOKENAUTH_KEY", key_json.clone()),
        ("GITHUB_ENV", github_env.display().to_string()),
    ];
    let steps = steps_of(&recipes[0]);
    assert_eq!(steps.len(), 3, "{steps:?}");
    let (out, _) = run_script(&env, &local(&steps[0]), &vars);
    let masked = out
        .trim()
        .strip_prefix("::add-mask::")
        .expect(&out)
        .to_owned();
    let exported = std::fs::read_to_string(&github_env).unwrap();
    for line in exported.lines() {
        let (name, value) = line.split_once('=').unwrap_or_else(|| panic!("{exported}"));
        vars.push((name.to_owned().leak(), value.to_owned()));
    }
    let token = vars
        .iter()
        .find(|(n, _)| *n == "TOKENAUTH_TOKEN")
        .expect(&exported)
        .1
        .clone();
    assert_eq!(
        masked, token,
        "the masked token is the one the later steps get"
    );
    for step in &steps[1..] {
        run_script(&env, &local(step), &vars);
    }
    let seen = api.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].target.as_str()),
        ("GET", "/builds")
    );
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(
        (seen[1].method.as_str(), seen[1].header("content-type")),
        ("POST", Some("application/json"))
    );
    let check = common::send(
        common::http()
            .get(server.url("/auth"))
            .header("Authorization", format!("Bearer {token}")),
    );
    assert_eq!(check.status, 200, "{}", check.text);

    // GitLab CI: the key file base64-encoded in TOKENAUTH_KEY_BASE64, one shell.
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&key_json);
    run_script(
        &env,
        &local(&shell_of(&recipes[1])),
        &[("TOKENAUTH_KEY_BASE64", encoded)],
    );
    let seen = api.seen();
    let targets: Vec<&str> = seen[2..].iter().map(|s| s.target.as_str()).collect();
    assert_eq!(targets, ["/builds", "/deploy"], "{seen:?}");
    assert!(seen[2..].iter().all(|s| {
        s.header("authorization")
            .is_some_and(|a| a.starts_with("Bearer "))
    }));
}

#[test]
fn a_key_whose_private_half_stays_on_the_client_works_as_printed() {
    let env = common::Env::new();
    let _server = env.serve(&[]);
    let recipe = blocks_of("docs/key-files.md", "### Three key-file formats", "sh").swap_remove(0);
    let (out, _) = run_script(&env, &recipe, &[]);
    assert!(out.trim().split('.').count() == 3, "an access token: {out}");
    let key: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.path().join("etl.json")).unwrap())
            .unwrap();
    assert!(key.get("private_key").is_none(), "{key}");
}

#[test]
fn the_remote_administration_walk_through_runs_as_printed() {
    let env = common::Env::new();
    let port = common::free_port();
    let recipe =
        blocks_of("docs/administration.md", "## Remote administration", "sh").swap_remove(0);
    let script = recipe.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    let (out, err) = run_script(&env, &script, &[]);
    // The key made over the API, the list, and the audit rows of both changes.
    assert!(env.path().join("ci.json").exists(), "{out}\n{err}");
    assert!(out.contains("ops"), "{out}");
    assert!(out.contains("key.issue"), "{out}");
}

#[test]
fn keyless_ci_recipes_run_as_printed() {
    use common::oidc::Issuer;
    use serde_json::json;
    let env = common::Env::new();
    let (github, gitlab, cluster) = (Issuer::start(), Issuer::start(), Issuer::start());
    let server = env.serve(&[]);
    let auth = server.url("");
    let api = server.url("/auth");
    // The test issuers and this server stand in for the platforms and auth.example.com.
    let local = |text: &str| {
        text.replace(
            "https://token.actions.githubusercontent.com",
            &github.issuer(),
        )
        .replace("https://gitlab.com", &gitlab.issuer())
        .replace(
            "https://kubernetes.default.svc.cluster.local",
            &cluster.issuer(),
        )
        .replace("https://api.example.com/status", &api)
        .replace("https://auth.example.com", &auth)
        .replace("/var/run/secrets/tokenauth/token", "k8s-token")
    };
    let blocks = blocks("docs/ci.md", "## Keyless CI: trust the platform's ID token");
    let kinds: Vec<&str> = blocks.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["sh", "yaml", "yaml", "yaml", "sh"], "the recipes");
    std::fs::write(env.path().join("cluster-jwks.json"), cluster.jwks_json()).unwrap();
    let run = |script: &str, vars: &[(&str, String)]| run_script(&env, script, vars);
    let (listed, _) = run(&local(&blocks[0].1), &[]);
    for name in ["gh-deploy", "gl-deploy", "k8s-deployer"] {
        assert!(listed.contains(name), "{listed}");
    }
    // What each platform's job would get from it.
    let acme_app = json!({
        "repository": "acme/app",
        "repository_owner": "acme",
        "ref": "refs/heads/main",
        "job_workflow_ref": "acme/app/.github/workflows/deploy.yml@refs/heads/main",
    });
    github.set_job_claims(acme_app.clone());
    let (out, _) = run(&local(&shell_of(&blocks[1].1)), &github.github_env());
    assert!(out.is_empty() || !out.contains("error"), "{out}");
    assert_eq!(github.audiences_asked(), std::slice::from_ref(&auth));
    let id_token = gitlab.gitlab_token(&auth, json!({}));
    run(
        &local(&shell_of(&blocks[2].1)),
        &[("TOKENAUTH_ID_TOKEN", id_token)],
    );
    let sa = cluster.sign_claims(&json!({
        "iss": cluster.issuer(),
        "aud": [auth.clone()],
        "sub": "system:serviceaccount:ci:deployer",
        "kubernetes.io": {"namespace": "ci", "serviceaccount": {"name": "deployer"}},
        "iat": common::now(),
        "nbf": common::now(),
        "exp": common::now() + 600,
    }));
    std::fs::write(env.path().join("k8s-token"), sa).unwrap();
    run(&local(&shell_of(&blocks[3].1)), &[]);
    // Every job got deploy-bot's token through its own trust.
    let log = env.json(&["usage-log", "--json"]);
    for trust in ["gh-deploy", "gl-deploy", "k8s-deployer"] {
        assert!(
            log.as_array()
                .unwrap()
                .iter()
                .any(|r| r["ok"] == true && r["trust"] == trust && r["user"] == "deploy-bot"),
            "{trust}: {log}"
        );
    }
    // The RFC 8693 example, with a fresh GitHub token.
    let (out, _) = run(
        &local(&blocks[4].1),
        &[("ID_TOKEN", github.github_token(&auth, acme_app))],
    );
    assert!(out.contains("issued_token_type"), "{out}");
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// A document's text outside fenced code blocks, line by line.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

#[test]
fn every_link_in_the_readme_and_docs_reaches_a_file_and_heading() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    let anchors = |path: &std::path::Path| -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap();
        prose(&text)
            .into_iter()
            .filter(|l| l.starts_with('#'))
            .map(|l| anchor(l.trim_start_matches('#')))
            .collect()
    };
    let mut bad = Vec::new();
    let mut links = 0;
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        // Paragraphs joined, so that links broken over lines are read whole.
        let joined = prose(&text).join(" ");
        for (at, _) in joined.match_indices("](") {
            let target: String = joined[at + 2..]
                .chars()
                .take_while(|c| *c != ')' && !c.is_whitespace())
                .collect();
            if target.contains(':') && !target.starts_with('#') {
                continue; // https:, mailto:
            }
            links += 1;
            let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let file = if file.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(file)
            };
            let name = doc.strip_prefix(root).unwrap().display().to_string();
            if !file.exists() {
                bad.push(format!("{name}: {target}: no such file"));
            } else if !fragment.is_empty() && !anchors(&file).iter().any(|a| a == fragment) {
                bad.push(format!("{name}: {target}: no such heading"));
            }
        }
    }
    assert!(
        links > 30,
        "only {links} links found: is the reader broken?"
    );
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

#[test]
fn the_readme_stays_short_and_points_into_docs() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines < 250,
        "README.md has {lines} lines; reference belongs in docs/"
    );
    for section in [
        "## Install",
        "## Set up",
        "## Walk-through",
        "## Recipes",
        "## Documentation",
    ] {
        assert!(
            readme.contains(&format!("\n{section}\n")),
            "README lacks {section}"
        );
    }
}
