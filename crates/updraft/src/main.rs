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
    /// Register, list, tag and remove devices on a server.
    Devices(cli::devices::DevicesArgs),
    /// Upload and list releases on a server.
    Release(cli::release::ReleaseArgs),
    /// Assign a release to devices or a tag.
    Deploy(cli::deploy::DeployArgs),
    /// Show deployments and their per-device status.
    Status(cli::deploy::StatusArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => cli::serve::run(args),
        Command::Devices(args) => cli::devices::run(args),
        Command::Release(args) => cli::release::run(args),
        Command::Deploy(args) => cli::deploy::deploy(args),
        Command::Status(args) => cli::deploy::status(args),
    }
}
