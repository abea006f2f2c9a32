//! tokenauth: parse the command line, run the command, print errors, exit.

use std::process::ExitCode;

use clap::error::ContextValue;
use tokenauth::{cli, cmd, output, service_key};

// The server allocates a little on every request: glibc's malloc and free took 9% of its time
// in exchanges, mimalloc's take 5%. Built without transparent huge
// pages: zeroing a 2 MiB page on the first allocation cost every CLI process about a
// millisecond, as long as a whole cache-hit `get-token` takes now.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse_with_sources() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match cli.run() {
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

/// Help and version go to stdout with 0; usage errors to stderr with 2. clap quotes the
/// arguments it could not place (whole, or the part before a `=`), and a key pasted in the
/// wrong place would be printed: what may hold a secret is left out of the message.
fn usage_error(e: clap::Error) -> ExitCode {
    let secrets: Vec<String> = std::env::args_os()
        .skip(1)
        .filter(|a| service_key::may_hold_secret(a))
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if !e.use_stderr() || secrets.is_empty() {
        e.exit();
    }
    let mut quoted: Vec<String> = Vec::new();
    for (_, value) in e.context() {
        match value {
            ContextValue::String(s) => quoted.push(s.clone()),
            ContextValue::Strings(v) => quoted.extend(v.iter().cloned()),
            _ => {}
        }
    }
    let mut hidden: Vec<&String> = secrets.iter().collect();
    hidden.extend(quoted.iter().filter(|q| {
        service_key::may_hold_secret(q.as_ref())
            || (q.len() >= 16 && secrets.iter().any(|s| s.contains(q.as_str())))
    }));
    hidden.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut text = e.to_string();
    for s in hidden {
        let shown = format!(
            "<{} characters, not shown: may hold a secret>",
            s.chars().count()
        );
        text = text.replace(s.as_str(), &shown);
    }
    // Should clap have quoted a secret some other way, say less rather than leak it.
    let leaks = secrets.iter().flat_map(|s| s.lines()).any(|l| {
        let l = l.trim();
        l.len() >= 16 && text.contains(l)
    });
    if leaks {
        text = "error: the command line is not valid; an argument that may hold a secret is not \
                shown\n\nFor more information, try '--help'.\n"
            .to_owned();
    }
    eprint!("{text}");
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
}
