//! The `updraft` command line.
//!
//! `main` stays thin: it parses the arguments ([`cli::Cli`]), runs the command, and turns an
//! error into one readable message (with its causes) and a non-zero exit status. Each command
//! group lives in its own module under `cli/`, so later groups (`serve`, `release`, `devices`)
//! slot in beside `keys` and `manifest`.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
