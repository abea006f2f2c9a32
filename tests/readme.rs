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

#[test]
fn readme_walkthrough_runs_as_written() {
    let env = common::Env::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = walkthrough().replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    let bin_dir = assert_cmd::cargo::cargo_bin("tokenauth")
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
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
