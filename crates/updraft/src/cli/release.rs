//! `updraft release`: publish a release and list releases.
//!
//! `upload` sends an envelope signed earlier (`updraft manifest sign`, possibly on another
//! machine) with its image; `create` signs and uploads in one step, through the same signing
//! function as `manifest sign` and the same streamed upload as `upload`. Without `--sequence`,
//! `create` takes the server's highest release sequence plus one; vendor and class have no
//! default, because every device refuses a manifest for another vendor or class.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use reqwest::blocking::multipart::{Form, Part};
use serde_json::Value;
use updraft_manifest::PublicKey;

use super::client::{Api, ServerArgs, print};
use super::devices::segment;
use super::manifest::{ManifestArgs, load_signing_key, sign_image};

/// `updraft release ...`
#[derive(clap::Args, Debug)]
pub struct ReleaseArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: ReleaseCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ReleaseCommand {
    /// Upload an image with its signed SUIT envelope; the server verifies both.
    Upload {
        /// The signed SUIT envelope.
        #[arg(long)]
        envelope: PathBuf,
        /// The firmware image.
        image: PathBuf,
        /// Hide the progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Sign an image and upload it in one step (`manifest sign` + `release upload`).
    Create {
        #[command(flatten)]
        manifest: Box<ManifestArgs>,
        /// Sequence number; default: the server's highest release sequence + 1.
        #[arg(long)]
        sequence: Option<u64>,
        /// The firmware image.
        image: PathBuf,
        /// Hide the progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// List releases.
    List,
    /// Show one release.
    Show {
        /// Version.
        version: String,
    },
}

/// `updraft keys trust NAME PUB.pem`: add a trusted key on the server.
pub fn trust_key(
    server: &ServerArgs,
    name: &str,
    public_key: &std::path::Path,
) -> anyhow::Result<()> {
    let api = Api::new(server)?;
    let pem = std::fs::read_to_string(public_key)
        .with_context(|| format!("reading {}", public_key.display()))?;
    let body = serde_json::json!({"name": name, "pem": pem});
    print(&api.send(api.request(Method::POST, "/keys").json(&body))?)
}

/// Counts bytes read into a progress bar.
struct Progress<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Run `updraft release`.
pub fn run(args: ReleaseArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.server)?;
    let answer = match args.command {
        ReleaseCommand::Upload {
            envelope,
            image,
            quiet,
        } => {
            let envelope_bytes = std::fs::read(&envelope)
                .with_context(|| format!("reading {}", envelope.display()))?;
            upload(&api, envelope_bytes, &image, quiet)?
        }
        ReleaseCommand::Create {
            manifest,
            sequence,
            image,
            quiet,
        } => create(&api, &manifest, sequence, &image, quiet)?,
        ReleaseCommand::List => api.send(api.request(Method::GET, "/releases"))?,
        ReleaseCommand::Show { version } => {
            api.send(api.request(Method::GET, &format!("/releases/{}", segment(&version))))?
        }
    };
    print(&answer)
}

/// `release create`: check the server trusts the key, pick the sequence, sign, upload.
fn create(
    api: &Api,
    manifest: &ManifestArgs,
    sequence: Option<u64>,
    image: &Path,
    quiet: bool,
) -> anyhow::Result<Value> {
    let key = load_signing_key(&manifest.key)?;
    // The server would refuse the envelope anyway; asking first gives the fix and sends nothing.
    let public = key.public_key();
    let trusted = api.send(api.request(Method::GET, "/keys"))?;
    let is_trusted = trusted.as_array().is_some_and(|keys| {
        keys.iter().any(|k| {
            k["pem"]
                .as_str()
                .and_then(|pem| PublicKey::from_public_key_pem(pem).ok())
                .is_some_and(|k| k == public)
        })
    });
    if !is_trusted {
        bail!(
            "the server at {} does not trust {} ({}); trust its public half first: \
             updraft keys trust NAME {}",
            api.base(),
            manifest.key.display(),
            key.algorithm(),
            super::keys::public_key_path(&manifest.key).display()
        );
    }
    let sequence = match sequence {
        Some(s) => s,
        None => next_sequence(api)?,
    };
    let signed = sign_image(&key, manifest, sequence, image)?;
    eprintln!(
        "signed {} ({} bytes, sha256 {}) as sequence {} version {} with {}",
        image.display(),
        signed.image_size,
        hex::encode(signed.image_digest),
        signed.sequence,
        manifest.version,
        key.algorithm(),
    );
    upload(api, signed.envelope, image, quiet)
}

/// The server's highest release sequence plus one (1 on an empty server).
fn next_sequence(api: &Api) -> anyhow::Result<u64> {
    let releases = api.send(api.request(Method::GET, "/releases"))?;
    let releases = releases
        .as_array()
        .context("the server's release list is not a JSON array")?;
    let highest = releases
        .iter()
        .filter_map(|r| r["sequence"].as_u64())
        .max()
        .unwrap_or(0);
    highest
        .checked_add(1)
        .context("the server's highest sequence is the largest possible; pass --sequence")
}

/// Stream `image` with its envelope to `POST /api/v1/releases`, with a progress bar.
fn upload(api: &Api, envelope: Vec<u8>, image: &Path, quiet: bool) -> anyhow::Result<Value> {
    let file =
        std::fs::File::open(image).with_context(|| format!("opening {}", image.display()))?;
    let len = file.metadata()?.len();
    let name = image
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("firmware.bin")
        .to_string();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(len)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(format!("uploading {name}"));
    // The envelope goes first so the server verifies it before reading the image.
    let form = Form::new().part("envelope", Part::bytes(envelope)).part(
        "image",
        Part::reader_with_length(
            Progress {
                inner: file,
                bar: bar.clone(),
            },
            len,
        )
        .file_name(name),
    );
    let result = api.send(api.request(Method::POST, "/releases").multipart(form));
    bar.finish_and_clear();
    result
}
