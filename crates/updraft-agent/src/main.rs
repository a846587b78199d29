//! The `updraft-agent` binary: `boot`, `run`, `status`, `provision` (see the crate docs).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use updraft_agent::config::AgentConfig;

/// The Updraft device agent for Linux.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The bootloader step: select the slot, exec its image (or run in-process).
    Boot {
        /// The agent's config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// The daemon: self-test a trial image, then poll the server and update.
    Run {
        /// The agent's config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Print state, result, installed version and statistics from the state directory.
    Status {
        /// The agent's config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Factory provisioning: put IMAGE in slot A as the confirmed image.
    Provision {
        /// The agent's config file.
        #[arg(long)]
        config: PathBuf,
        /// The image file.
        #[arg(long)]
        image: PathBuf,
        /// The anti-rollback counter (the sequence number of the image's manifest).
        #[arg(long, default_value_t = 0)]
        sequence: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("updraft-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let path = match &cli.command {
        Command::Boot { config }
        | Command::Run { config }
        | Command::Status { config }
        | Command::Provision { config, .. } => config.clone(),
    };
    let config = AgentConfig::load(&path)?;
    let span = tracing::info_span!("agent", device = %config.controller_id);
    let _enter = span.enter();
    match cli.command {
        Command::Boot { .. } => updraft_agent::boot::boot(&config),
        Command::Run { .. } => updraft_agent::runtime::Runtime::start(&config)?.run(),
        Command::Status { .. } => {
            print!("{}", updraft_agent::status::report(&config)?);
            Ok(())
        }
        Command::Provision {
            image, sequence, ..
        } => {
            let bytes =
                std::fs::read(&image).with_context(|| format!("reading {}", image.display()))?;
            updraft_agent::boot::provision(&config, &bytes, sequence)?;
            println!(
                "provisioned {} ({} bytes) in slot A with sequence {sequence}",
                image.display(),
                bytes.len()
            );
            Ok(())
        }
    }
}
