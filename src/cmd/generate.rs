//! `tokenauth generate` (hidden): write the shell completions and man pages that are
//! committed under completions/ and man/.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Regenerate completions/ and man/ from the command-line definitions.
///
/// Run from the repository root after changing any command or help text:
/// `cargo run --release -- generate`. A test fails while the committed files are stale.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  cargo run --release -- generate --out-dir .")]
pub struct Args {
    /// The folder to write completions/ and man/ into
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub out_dir: PathBuf,
}

const SHELLS: [Shell; 5] = [
    Shell::Bash,
    Shell::Zsh,
    Shell::Fish,
    Shell::Elvish,
    Shell::PowerShell,
];

pub fn run(args: Args) -> anyhow::Result<()> {
    write_all(&args.out_dir)?;
    eprintln!(
        "Wrote {} and {}.",
        crate::output::terminal_safe(&args.out_dir.join("completions").to_string_lossy()),
        crate::output::terminal_safe(&args.out_dir.join("man").to_string_lossy())
    );
    Ok(())
}

/// Writes every completion script and man page under `out`.
pub fn write_all(out: &Path) -> anyhow::Result<()> {
    let completions = out.join("completions");
    let man = out.join("man");
    for dir in [&completions, &man] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    for shell in SHELLS {
        let mut cmd = Cli::command();
        clap_complete::generate_to(shell, &mut cmd, "tokenauth", &completions)
            .with_context(|| format!("writing {shell} completions"))?;
    }
    clap_mangen::generate_to(Cli::command(), &man).context("writing man pages")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| {
                        (
                            e.file_name().to_string_lossy().into_owned(),
                            std::fs::read(e.path()).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    #[test]
    fn committed_completions_and_man_pages_are_current() {
        let fresh = tempfile::tempdir().unwrap();
        write_all(fresh.path()).unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for sub in ["completions", "man"] {
            let want = files(&fresh.path().join(sub));
            let have = files(&root.join(sub));
            let names =
                |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
            assert_eq!(
                names(&have),
                names(&want),
                "{sub}/ has the wrong files; refresh with `cargo run --release -- generate` and commit"
            );
            for ((name, a), (_, b)) in have.iter().zip(&want) {
                assert!(
                    a == b,
                    "{sub}/{name} is stale; refresh with `cargo run --release -- generate` and commit"
                );
            }
        }
    }
}
