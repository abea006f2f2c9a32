//! Shared helpers for the integration tests: a temporary store and the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn db(&self) -> PathBuf {
        self.path().join("store").join("tokenauth.db")
    }

    /// The binary, run in the temp dir on the temp store, with its own data and cache dirs.
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("tokenauth").unwrap();
        c.current_dir(self.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("XDG_DATA_HOME", self.path().join("data"))
            .env("XDG_CACHE_HOME", self.path().join("cache"))
            .env("TOKENAUTH_DB", self.db());
        c
    }

    /// Runs with args, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "tokenauth {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs with args, asserts exit code 1, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "tokenauth {args:?} should fail with 1: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.starts_with("tokenauth: error: "),
            "not one error line: {err}"
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "error is not one line: {err}"
        );
        err
    }

    /// Issues a key for `user` into `<user>.json` and returns (key id, key file path).
    pub fn issue_key(&self, user: &str, extra: &[&str]) -> (String, PathBuf) {
        let file = self.path().join(format!("{user}-{}.json", rand_suffix()));
        let mut args = vec![
            "issue-key",
            "--user",
            user,
            "--out",
            file.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        let v: serde_json::Value = serde_json::from_str(&self.ok(&args)).unwrap();
        (v["key_id"].as_str().unwrap().to_owned(), file)
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
