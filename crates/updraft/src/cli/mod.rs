//! Command-line structure: one module per command group.
//!
//! - [`keys`]: `updraft keys generate`: signing key pairs as PEM files.
//! - [`manifest`]: `updraft manifest sign | verify | inspect`: SUIT envelopes.

pub mod keys;
pub mod manifest;

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
}

impl Cli {
    /// Run the chosen command.
    pub fn run(self) -> Result<()> {
        match self.command {
            Command::Keys(c) => c.run(),
            Command::Manifest(c) => c.run(),
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
