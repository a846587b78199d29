//! Command-line structure: one module per command group.
//!
//! - [`keys`]: `updraft keys generate`: signing key pairs as PEM files.
//! - [`manifest`]: `updraft manifest sign | verify | inspect`: SUIT envelopes.
//! - [`serve`]: `updraft serve`: the update server.
//! - [`devices`], [`release`], [`deploy`] (`deploy` and `status`), [`campaign`]: the management API from the
//!   shell, through [`client`] (server URL, admin token file, the server's error messages)
//!   and [`output`] (tables by default, `--json`, times in RFC 3339).

pub mod campaign;
pub mod client;
pub mod deploy;
pub mod devices;
pub mod keys;
pub mod manifest;
pub mod output;
pub mod release;
pub mod serve;
pub mod upload;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::Path;

/// Updraft: firmware over the air, safely.
#[derive(Debug, Parser)]
#[command(name = "updraft", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// SUIT manifests: sign an image, verify or inspect an envelope.
    #[command(subcommand)]
    Manifest(manifest::ManifestCommand),
    /// Run the update server (management API and hawkBit DDI device API).
    Serve(serve::ServeArgs),
    /// Register, list, tag and remove devices on a server.
    Devices(devices::DevicesArgs),
    /// Create (sign + upload), upload and list releases on a server.
    Release(release::ReleaseArgs),
    /// Assign a release to devices or a tag.
    Deploy(deploy::DeployArgs),
    /// Show deployments and their per-device status.
    Status(deploy::StatusArgs),
    /// Staged rollouts: phases, error threshold, rate, approvals, pause and abort.
    #[command(subcommand)]
    Campaign(campaign::CampaignCommand),
}

impl Cli {
    /// Run the chosen command.
    pub fn run(self) -> Result<()> {
        match self.command {
            Command::Keys(c) => c.run(),
            Command::Manifest(c) => c.run(),
            Command::Serve(args) => serve::run(args),
            Command::Devices(args) => devices::run(args),
            Command::Release(args) => release::run(args),
            Command::Deploy(args) => deploy::deploy(args),
            Command::Status(args) => deploy::status(args),
            Command::Campaign(command) => campaign::run(command),
        }
    }
}

/// Read a whole file, saying which file could not be read.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Read a text file (a PEM key), saying which file could not be read.
pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
