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
use serde_json::Value;
use updraft_manifest::PublicKey;

use super::client::{Api, ServerArgs, interpret};
use super::devices::segment;
use super::manifest::{ManifestArgs, load_signing_key, sign_image};
use super::output::{self, Columns};
use super::upload::{Part, post_multipart};

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
        /// Accept a sequence equal to the highest of the vendor and class when the image is the
        /// same as that release's (a re-sign, e.g. with a new key; the version stays unique).
        #[arg(long)]
        allow_resign: bool,
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
        /// Accept a sequence equal to the highest of the vendor and class when the image is the
        /// same as that release's (a re-sign, e.g. with a new key; the version stays unique).
        #[arg(long)]
        allow_resign: bool,
    },
    /// List releases.
    List,
    /// Show one release.
    Show {
        /// Version.
        version: String,
    },
}

const KEY_COLUMNS: Columns<'static> = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("ALGORITHM", "algorithm"),
    ("FINGERPRINT (SHA-256 of the SPKI)", "fingerprint"),
    ("CREATED", "created_at"),
];

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
    let answer = api.send(api.request(Method::POST, "/keys").json(&body))?;
    if server.json {
        return output::print_json(answer);
    }
    println!("the server now trusts this key for release uploads:");
    print!("{}", output::table(KEY_COLUMNS, &[answer]));
    Ok(())
}

/// `updraft keys list`: the server's trusted keys.
pub fn list_keys(server: &ServerArgs) -> anyhow::Result<()> {
    let api = Api::new(server)?;
    let answer = api.send(api.request(Method::GET, "/keys"))?;
    let items: Vec<Value> = answer
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            // The PEM is long and public; the fingerprint identifies the key.
            let mut k = k.clone();
            if let Some(o) = k.as_object_mut() {
                o.remove("pem");
            }
            k
        })
        .collect();
    if server.json {
        return output::print_json(output::list_json(items, None));
    }
    print!("{}", output::table(KEY_COLUMNS, &items));
    Ok(())
}

const RELEASE_COLUMNS: Columns<'static> = &[
    ("VERSION", "version"),
    ("SEQUENCE", "sequence"),
    ("SIZE", "image_size"),
    ("FILE", "filename"),
    ("SHA-256", "image_sha256"),
    ("CREATED", "created_at"),
];

const RELEASE_FIELDS: Columns<'static> = &[
    ("version", "version"),
    ("sequence", "sequence"),
    ("vendor id", "vendor_id"),
    ("class id", "class_id"),
    ("file", "filename"),
    ("size", "image_size"),
    ("sha-256", "image_sha256"),
    ("sha-1", "image_sha1"),
    ("md5", "image_md5"),
    ("manifest digest", "manifest_digest"),
    ("signed with key", "key_id"),
    ("created", "created_at"),
];

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
    let json = args.server.json;
    let answer = match args.command {
        ReleaseCommand::Upload {
            envelope,
            image,
            quiet,
            allow_resign,
        } => {
            let envelope_bytes = std::fs::read(&envelope)
                .with_context(|| format!("reading {}", envelope.display()))?;
            upload(&api, envelope_bytes, &image, quiet, allow_resign)?
        }
        ReleaseCommand::Create {
            manifest,
            sequence,
            image,
            quiet,
            allow_resign,
        } => create(&api, &manifest, sequence, &image, quiet, allow_resign)?,
        ReleaseCommand::List => {
            let answer = api.send(api.request(Method::GET, "/releases"))?;
            let items = answer.as_array().cloned().unwrap_or_default();
            if json {
                return output::print_json(output::list_json(items, None));
            }
            print!("{}", output::table(RELEASE_COLUMNS, &items));
            return Ok(());
        }
        ReleaseCommand::Show { version } => {
            api.send(api.request(Method::GET, &format!("/releases/{}", segment(&version))))?
        }
    };
    if json {
        return output::print_json(answer);
    }
    print!("{}", output::fields(&answer, RELEASE_FIELDS));
    Ok(())
}

/// `release create`: check the server trusts the key, pick the sequence, sign, upload.
fn create(
    api: &Api,
    manifest: &ManifestArgs,
    sequence: Option<u64>,
    image: &Path,
    quiet: bool,
    allow_resign: bool,
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
    upload(api, signed.envelope, image, quiet, allow_resign)
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

/// Stream `image` with its envelope to `POST /api/v1/releases`, with a progress bar. The
/// server's answer is read while sending ([`super::upload`]), so an early refusal is shown as
/// the server's reason, not as a broken pipe.
fn upload(
    api: &Api,
    envelope: Vec<u8>,
    image: &Path,
    quiet: bool,
    allow_resign: bool,
) -> anyhow::Result<Value> {
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
    let mut url = format!("{}/api/v1/releases", api.base());
    if allow_resign {
        url.push_str("?allow_same_sequence=true");
    }
    // The envelope goes first so the server verifies it before reading the image.
    let parts = vec![
        Part::Bytes {
            name: "envelope",
            data: &envelope,
        },
        Part::Stream {
            name: "image",
            file_name: &name,
            len,
            reader: Box::new(Progress {
                inner: file,
                bar: bar.clone(),
            }),
        },
    ];
    let result = post_multipart(&url, api.token(), parts)
        .with_context(|| format!("uploading to the server at {}", api.base()));
    bar.finish_and_clear();
    let answer = result?;
    interpret(answer.status, answer.body)
}
