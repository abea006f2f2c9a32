//! tokenauth: parse the command line, run the command, print errors, exit.

use std::process::ExitCode;

use clap::Parser;
use tokenauth::{cli, cmd, output};

// The server allocates a little on every request; mimalloc keeps that off glibc's locks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go to stdout with 0; usage errors to stderr with 2.
        Err(e) => e.exit(),
    };
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => {
            if let Some(cmd::Quiet(code)) = err.downcast_ref::<cmd::Quiet>() {
                return ExitCode::from(*code);
            }
            // reqwest and io errors repeat their cause in the chain; keep one line.
            let msg = format!("{err:#}").replace('\n', " ");
            // Errors quote stored titles and the caller's arguments.
            eprintln!("tokenauth: error: {}", output::terminal_safe(&msg));
            ExitCode::FAILURE
        }
    }
}
