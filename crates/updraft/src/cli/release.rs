//! `updraft release`: upload a signed release (envelope + image, streamed with a progress bar)
//! and list releases.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use reqwest::blocking::multipart::{Form, Part};

use super::client::{Api, ServerArgs, print};
use super::devices::segment;

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
            let file = std::fs::File::open(&image)
                .with_context(|| format!("opening {}", image.display()))?;
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
            let form = Form::new()
                .part("envelope", Part::bytes(envelope_bytes))
                .part(
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
            result?
        }
        ReleaseCommand::List => api.send(api.request(Method::GET, "/releases"))?,
        ReleaseCommand::Show { version } => {
            api.send(api.request(Method::GET, &format!("/releases/{}", segment(&version))))?
        }
    };
    print(&answer)
}
