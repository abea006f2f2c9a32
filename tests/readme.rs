//! The README's walk-through, run for real.

mod common;

use std::process::Command;

fn walkthrough() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Walk-through")
        .nth(1)
        .expect("README has a Walk-through section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .expect("Walk-through has a ```sh block");
    block.split("```").next().unwrap().to_owned()
}

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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = walkthrough().replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
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

/// The code blocks of the README's section `heading`, in order, by their info string.
fn blocks(heading: &str) -> Vec<(String, String)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split(&format!("\n## {heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("README has a section {heading}"));
    let section = section.split("\n## ").next().unwrap();
    section
        .split("```")
        .skip(1)
        .step_by(2)
        .map(|b| {
            let (info, body) = b.split_once('\n').unwrap();
            (info.to_owned(), body.to_owned())
        })
        .collect()
}

/// The shell a YAML recipe runs: a `run: |` block's lines, a `script:` list, or a container's
/// `sh -c` command, as printed.
fn shell_of(yaml: &str) -> String {
    let lines: Vec<&str> = yaml.lines().collect();
    if let Some(i) = lines.iter().position(|l| l.trim_end().ends_with("run: |")) {
        let indent = |l: &str| l.len() - l.trim_start().len();
        let base = indent(lines[i + 1]);
        return lines[i + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || indent(l) >= base)
            .map(|l| l.get(base..).unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
    }
    if let Some(i) = lines.iter().position(|l| l.trim() == "script:") {
        return lines[i + 1..]
            .iter()
            .map_while(|l| l.trim().strip_prefix("- "))
            .collect::<Vec<_>>()
            .join("\n");
    }
    let command = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("command: [\"sh\", \"-c\", \""))
        .expect("a recipe runs a run: block, a script: list or a sh -c command");
    command.strip_suffix("\"]").unwrap().to_owned()
}

#[test]
fn readme_keyless_ci_recipes_run_as_printed() {
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
    let blocks = blocks("Keyless CI: trust the platform's ID token");
    let kinds: Vec<&str> = blocks.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["sh", "yaml", "yaml", "yaml", "sh"], "the recipes");
    std::fs::write(env.path().join("cluster-jwks.json"), cluster.jwks_json()).unwrap();
    let path = path_with_tokenauth();
    let run = |script: &str, vars: &[(&str, String)]| {
        let out = env
            .std_cmd("timeout")
            .args(["60", "bash", "-euo", "pipefail", "-c", script])
            .env("PATH", &path)
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
    };
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
