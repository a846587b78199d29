//! The `updraft` command line.

mod cli;

use clap::{Parser, Subcommand};

/// Updraft: firmware over the air, safely.
#[derive(Parser, Debug)]
#[command(name = "updraft", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the update server (management API and hawkBit DDI device API).
    Serve(cli::serve::ServeArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => cli::serve::run(args),
    }
}
