//! Puts the build into `tokenauth --version`: the git commit it was built from, when built
//! from a checkout, and the enabled features. Never fails the build: without git, or outside
//! a checkout (a package from crates.io), the version is the crate's alone.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let version = match commit(&dir) {
        Some(commit) => format!("{version} ({commit})"),
        None => version,
    };
    println!("cargo:rustc-env=TOKENAUTH_VERSION={version}");
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(name, _)| {
            let feature = name.strip_prefix("CARGO_FEATURE_")?;
            Some(feature.to_lowercase().replace('_', "-"))
        })
        .collect();
    features.sort();
    let features = if features.is_empty() {
        "none".to_owned()
    } else {
        features.join(", ")
    };
    println!("cargo:rustc-env=TOKENAUTH_FEATURES={features}");
}

/// "abc1234 2026-12-04": the checked-out commit and its date, or None.
fn commit(dir: &Path) -> Option<String> {
    // A package unpacked inside some other repository is no checkout of this crate.
    git(dir, &["ls-files", "--error-unmatch", "Cargo.toml"])?;
    watch_head(dir);
    git(dir, &["log", "-1", "--format=%h %cs"])
}

/// Reruns this script when the commit changes, and only then: HEAD (a checkout, a detached
/// commit) and the branch it points to. Paths come from git, which knows where a worktree
/// keeps them. Cargo reruns every build for a path that does not exist, so only existing
/// ones are named; a branch only in packed-refs gets its loose file in refs/heads/.
fn watch_head(dir: &Path) {
    let path = |name: &str| git(dir, &["rev-parse", "--git-path", name]).map(|p| dir.join(p));
    let mut watched = vec![path("HEAD")];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        let loose = path(&branch);
        watched.push(match loose {
            Some(p) if !p.exists() => p.parent().map(Path::to_path_buf),
            other => other,
        });
        watched.push(path("packed-refs"));
    }
    for p in watched.into_iter().flatten().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}
