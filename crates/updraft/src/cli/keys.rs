//! `updraft keys generate`: a new signing key pair; `updraft keys trust`: make a server trust
//! the public half; `updraft keys list`: what a server trusts.
//!
//! The private key is written as PKCS#8 PEM (mode 0600 on Unix) and the public key as SPKI PEM
//! next to it (`KEY.pem` → `KEY.pub.pem`): devices and the server get the public file only.

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use updraft_manifest::{Algorithm, SigningKey};

/// Key commands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a signing key pair: KEY.pem (private) and KEY.pub.pem (public).
    Generate {
        /// Signature algorithm.
        #[arg(long, value_enum, default_value_t = Alg::Ed25519)]
        alg: Alg,
        /// Where to write the private key; the public key goes next to it as *.pub.pem.
        #[arg(long)]
        out: PathBuf,
        /// Overwrite existing key files.
        #[arg(long)]
        force: bool,
    },
    /// Make a server trust a public key for release uploads.
    Trust {
        /// A name for the key on the server.
        name: String,
        /// The public key (SPKI PEM, `KEY.pub.pem`).
        public_key: PathBuf,
        #[command(flatten)]
        server: super::client::ServerArgs,
    },
    /// List the keys a server trusts.
    List {
        #[command(flatten)]
        server: super::client::ServerArgs,
    },
}

/// Signature algorithm on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Alg {
    /// Ed25519 (COSE -19).
    Ed25519,
    /// ECDSA P-256 / SHA-256 (COSE -7).
    Es256,
}

impl From<Alg> for Algorithm {
    fn from(a: Alg) -> Self {
        match a {
            Alg::Ed25519 => Algorithm::Ed25519,
            Alg::Es256 => Algorithm::Es256,
        }
    }
}

impl KeysCommand {
    /// Run the command.
    pub fn run(self) -> Result<()> {
        match self {
            KeysCommand::Generate { alg, out, force } => generate(alg.into(), &out, force),
            KeysCommand::Trust {
                name,
                public_key,
                server,
            } => super::release::trust_key(&server, &name, &public_key),
            KeysCommand::List { server } => super::release::list_keys(&server),
        }
    }
}

/// `KEY.pem` → `KEY.pub.pem`; any other name gets `.pub.pem` appended.
pub fn public_key_path(private: &Path) -> PathBuf {
    let name = private
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".pem").unwrap_or(&name);
    private.with_file_name(format!("{stem}.pub.pem"))
}

fn generate(alg: Algorithm, out: &Path, force: bool) -> Result<()> {
    let public_path = public_key_path(out);
    if !force {
        for p in [out, public_path.as_path()] {
            if p.exists() {
                bail!(
                    "{} already exists; pass --force to overwrite it",
                    p.display()
                );
            }
        }
    }
    let key = SigningKey::generate(alg);
    let private_pem = key.to_pkcs8_pem().context("encoding the private key")?;
    let public_pem = key
        .public_key()
        .to_public_key_pem()
        .context("encoding the public key")?;
    write_private(out, private_pem.as_bytes())?;
    std::fs::write(&public_path, public_pem)
        .with_context(|| format!("cannot write {}", public_path.display()))?;
    println!("{alg} private key: {}", out.display());
    println!("{alg} public key:  {}", public_path.display());
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_sits_next_to_the_private_key() {
        assert_eq!(
            public_key_path(Path::new("k/release.pem")),
            Path::new("k/release.pub.pem")
        );
        assert_eq!(
            public_key_path(Path::new("release")),
            Path::new("release.pub.pem")
        );
    }
}
