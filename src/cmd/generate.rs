//! `tokenauth generate` (hidden): write the shell completions and man pages that are
//! committed under completions/ and man/.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap_complete::Shell;

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

/// `command` is the whole command line's definition (`Cli::command()`).
pub fn run(args: Args, command: clap::Command) -> anyhow::Result<()> {
    write_all(&args.out_dir, command)?;
    eprintln!(
        "Wrote {} and {}.",
        crate::output::terminal_safe(&args.out_dir.join("completions").to_string_lossy()),
        crate::output::terminal_safe(&args.out_dir.join("man").to_string_lossy())
    );
    Ok(())
}

/// Writes every completion script and man page of `command` under `out`.
pub fn write_all(out: &Path, command: clap::Command) -> anyhow::Result<()> {
    // The man pages name the version: the crate's alone, or they would change with every
    // commit.
    let command = command
        .version(env!("CARGO_PKG_VERSION"))
        .long_version(None::<&str>);
    let completions = out.join("completions");
    let man = out.join("man");
    for dir in [&completions, &man] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    for shell in SHELLS {
        let mut cmd = command.clone();
        clap_complete::generate_to(shell, &mut cmd, "tokenauth", &completions)
            .with_context(|| format!("writing {shell} completions"))?;
    }
    clap_mangen::generate_to(command, &man).context("writing man pages")?;
    Ok(())
}
