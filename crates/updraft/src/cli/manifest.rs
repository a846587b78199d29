//! `updraft manifest sign | verify | inspect`.
//!
//! `sign` streams the image through SHA-256 (images can be large; nothing is held in memory) and
//! writes a signed SUIT envelope. `verify` checks an envelope against trusted public keys and,
//! with `--image`, that a file is the image it describes; with the device's policy
//! (`--vendor-id`, `--class`/`--class-id`, `--installed-seq`, `--now`, `--slot-size`) it also
//! applies the device core's acceptance rules, through the same function the core calls
//! (`Manifest::check_policy`). `inspect` shows the fields; without `--key` it says loudly that
//! the signature was NOT checked.

use super::{read_file, read_text};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};
use updraft_manifest::{
    Algorithm, Digest, Error, Manifest, ManifestSpec, Policy, PolicyError, PublicKey, SigningKey,
    Uuid, class_id, decode_unverified, sign, verify,
};

/// Manifest commands.
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Sign a firmware image: write a SUIT envelope describing it.
    Sign(Box<SignArgs>),
    /// Verify an envelope's signature (and, with --image, the image file).
    Verify {
        /// Trusted public key (SPKI PEM); repeat for several.
        #[arg(long = "key", required = true, value_name = "PUB.pem")]
        keys: Vec<PathBuf>,
        /// The envelope.
        envelope: PathBuf,
        /// Also check that this file has the manifest's digest and size.
        #[arg(long)]
        image: Option<PathBuf>,
        #[command(flatten)]
        device: DevicePolicyArgs,
    },
    /// Show what an envelope says.
    Inspect {
        /// The envelope.
        envelope: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Check the signature with this public key (repeatable); without it nothing is verified.
        #[arg(long = "key", value_name = "PUB.pem")]
        keys: Vec<PathBuf>,
    },
}

/// The policy of a device, for `manifest verify`: check an envelope as that device would.
#[derive(Debug, Default, clap::Args)]
pub struct DevicePolicyArgs {
    /// The device's vendor UUID (with --class or --class-id: check the envelope as a device does).
    #[arg(long = "vendor-id", value_name = "UUID")]
    vendor_id: Option<String>,
    /// The device's class UUID.
    #[arg(
        long = "class-id",
        value_name = "UUID",
        conflicts_with = "device_class"
    )]
    class_id: Option<String>,
    /// The device's class name (class id = UUIDv5(vendor id, NAME)).
    #[arg(long = "class", id = "device_class", value_name = "NAME")]
    class: Option<String>,
    /// Sequence number installed on the device (its anti-rollback counter; 0 when new).
    #[arg(long = "installed-seq", value_name = "N")]
    installed_seq: Option<u64>,
    /// The device's time: Unix seconds, RFC 3339, or `now`; without it expiry is not checked,
    /// as on a device without a clock.
    #[arg(long, value_name = "TIME")]
    now: Option<String>,
    /// Size of the device's update slot in bytes (the largest image it takes).
    #[arg(long = "slot-size", value_name = "BYTES")]
    slot_size: Option<u64>,
}

impl DevicePolicyArgs {
    fn given(&self) -> bool {
        self.vendor_id.is_some()
            || self.class_id.is_some()
            || self.class.is_some()
            || self.installed_seq.is_some()
            || self.now.is_some()
            || self.slot_size.is_some()
    }

    /// The device's policy, if any of its options was given (then vendor and class are needed,
    /// because a device always checks them).
    fn policy(&self) -> Result<Option<Policy>> {
        if !self.given() {
            return Ok(None);
        }
        let Some(vendor) = &self.vendor_id else {
            bail!(
                "checking against a device's policy needs the device's --vendor-id UUID (and --class NAME or --class-id UUID): a device always checks both"
            );
        };
        let vendor_id = parse_uuid(vendor, "vendor-id")?;
        let class_id = match (&self.class_id, &self.class) {
            (Some(id), _) => parse_uuid(id, "class-id")?,
            (None, Some(name)) => class_id(&vendor_id, name),
            (None, None) => bail!(
                "checking against a device's policy needs the device's class: --class NAME or --class-id UUID"
            ),
        };
        let now = match self.now.as_deref() {
            None => None,
            Some("now") => Some(
                std::time::SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            ),
            Some(t) => Some(parse_time(t, "now")?),
        };
        Ok(Some(Policy {
            vendor_id,
            class_id,
            installed_sequence: self.installed_seq.unwrap_or(0),
            max_image_size: self.slot_size.unwrap_or(u64::MAX),
            now,
        }))
    }
}

fn rfc3339(secs: u64) -> String {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// A sentence a person can act on for each policy refusal.
fn explain_policy(e: PolicyError, m: &Manifest<'_>, p: &Policy) -> anyhow::Error {
    match e {
        PolicyError::WrongVendor => anyhow::anyhow!(
            "a device refuses it: the manifest is for vendor {}, the device is vendor {}",
            m.vendor_id,
            p.vendor_id
        ),
        PolicyError::WrongClass => anyhow::anyhow!(
            "a device refuses it: the manifest is for class {}, the device's class is {}",
            m.class_id,
            p.class_id
        ),
        PolicyError::Rollback { installed, found } => anyhow::anyhow!(
            "a device refuses it as a rollback or replay: sequence {found} is not above the installed {installed} (sign it with --sequence {})",
            installed.saturating_add(1)
        ),
        PolicyError::TooLarge { size, max } => {
            anyhow::anyhow!("a device refuses it: the image is {size} bytes, the slot holds {max}")
        }
        PolicyError::Expired(at) => anyhow::anyhow!(
            "a device refuses it: the manifest expired at {} ({at}), the device's time is {}",
            rfc3339(at),
            p.now.map(rfc3339).unwrap_or_default()
        ),
    }
}

/// What a manifest says besides its sequence number and image: shared by `updraft manifest sign`
/// and `updraft release create`, so both sign the same way.
#[derive(Debug, clap::Args)]
pub struct ManifestArgs {
    /// Private key (PKCS#8 PEM) from `updraft keys generate`.
    #[arg(long, value_name = "KEY.pem")]
    pub key: PathBuf,
    /// Vendor UUID (required: devices refuse a manifest for another vendor).
    #[arg(long, value_name = "UUID")]
    vendor_id: String,
    /// Device class UUID.
    #[arg(
        long,
        value_name = "UUID",
        conflicts_with = "class",
        required_unless_present = "class"
    )]
    class_id: Option<String>,
    /// Device class name: the class id is UUIDv5(vendor id, NAME).
    #[arg(long, value_name = "NAME")]
    class: Option<String>,
    /// Human version string, e.g. 2.1.0.
    #[arg(long = "version", value_name = "V")]
    pub version: String,
    /// Where devices download the image.
    #[arg(long)]
    uri: Option<String>,
    /// Component identifier segment (repeat for a path, e.g. --component app --component b).
    #[arg(long = "component", value_name = "NAME")]
    components: Vec<String>,
    /// Do not install after this time: RFC 3339 (2027-01-31T00:00:00Z) or Unix seconds.
    #[arg(long, value_name = "TIME")]
    expires: Option<String>,
    /// For a delta image: the image it applies to (its digest goes in the manifest).
    #[arg(long, value_name = "FILE")]
    precursor: Option<PathBuf>,
}

/// Arguments of `updraft manifest sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    #[command(flatten)]
    manifest: ManifestArgs,
    /// Sequence number; devices install only sequence numbers above their current one.
    #[arg(long)]
    sequence: u64,
    /// The firmware image.
    image: PathBuf,
    /// Output file (default: IMAGE.suit).
    #[arg(short = 'o', long = "out", value_name = "OUT")]
    out: Option<PathBuf>,
}

/// A signed SUIT envelope and the image facts it carries.
#[derive(Debug)]
pub struct Signed {
    /// The envelope bytes, verified once with the signing key's public half.
    pub envelope: Vec<u8>,
    /// SHA-256 of the image.
    pub image_digest: Digest,
    /// Size of the image in bytes.
    pub image_size: u64,
    /// The sequence number signed.
    pub sequence: u64,
}

impl ManifestCommand {
    /// Run the command.
    pub fn run(self) -> Result<()> {
        match self {
            ManifestCommand::Sign(args) => run_sign(*args),
            ManifestCommand::Verify {
                keys,
                envelope,
                image,
                device,
            } => run_verify(&keys, &envelope, image.as_deref(), &device),
            ManifestCommand::Inspect {
                envelope,
                json,
                keys,
            } => run_inspect(&envelope, json, &keys),
        }
    }
}

fn parse_uuid(s: &str, what: &str) -> Result<Uuid> {
    Uuid::parse_str(s).with_context(|| format!("--{what} {s:?}"))
}

/// Unix seconds, or an RFC 3339 time (`flag` names the option in errors).
fn parse_time(s: &str, flag: &str) -> Result<u64> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(secs);
    }
    let t = humantime::parse_rfc3339_weak(s).with_context(|| {
        format!("--{flag} {s:?}: expected RFC 3339 (2027-01-31T00:00:00Z) or Unix seconds")
    })?;
    Ok(t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0))
}

/// SHA-256 and size of a file, read in chunks.
fn hash_file(path: &Path) -> Result<(Digest, u64)> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hasher.finalize().into(), size))
}

/// Load a private signing key, with a hint when a public key was given instead.
pub fn load_signing_key(path: &Path) -> Result<SigningKey> {
    let pem = read_text(path)?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
        let hint = if pem.contains("PUBLIC KEY") {
            " (this is a public key; signing needs the private KEY.pem)"
        } else {
            ""
        };
        anyhow::anyhow!("{}: {e}{hint}", path.display())
    })
}

fn load_public_keys(paths: &[PathBuf]) -> Result<Vec<PublicKey>> {
    paths
        .iter()
        .map(|path| {
            let pem = read_text(path)?;
            PublicKey::from_public_key_pem(&pem).map_err(|e| {
                let hint = if pem.contains("PRIVATE KEY") {
                    " (this is a private key; pass the public KEY.pub.pem instead)"
                } else {
                    ""
                };
                anyhow::anyhow!("{}: {e}{hint}", path.display())
            })
        })
        .collect()
}

fn default_output(image: &Path) -> PathBuf {
    let mut name = image
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".suit");
    image.with_file_name(name)
}

/// Sign `image` as `sequence` with `key`: the one signing path of the CLI.
pub fn sign_image(
    key: &SigningKey,
    a: &ManifestArgs,
    sequence: u64,
    image: &Path,
) -> Result<Signed> {
    let vendor_id = parse_uuid(&a.vendor_id, "vendor-id")?;
    let class_id = match (&a.class_id, &a.class) {
        (Some(id), _) => parse_uuid(id, "class-id")?,
        (None, Some(name)) => class_id(&vendor_id, name),
        (None, None) => bail!("give --class-id UUID or --class NAME"),
    };
    let (image_digest, image_size) = hash_file(image)?;
    let precursor_digest = match &a.precursor {
        Some(p) => Some(hash_file(p)?.0),
        None => None,
    };
    let spec = ManifestSpec {
        sequence,
        vendor_id,
        class_id,
        component_id: a.components.iter().map(|c| c.as_bytes().to_vec()).collect(),
        image_digest,
        image_size,
        uri: a.uri.clone(),
        version: Some(a.version.clone()),
        precursor_digest,
        expires_at: a
            .expires
            .as_deref()
            .map(|t| parse_time(t, "expires"))
            .transpose()?,
    };
    spec.validate()
        .context("the manifest would not be accepted by devices")?;
    let envelope = sign(&spec, key);
    // Never hand out an envelope we would not accept ourselves.
    verify(&envelope, &[key.public_key()])
        .context("internal error: the signed envelope does not verify")?;
    Ok(Signed {
        envelope,
        image_digest,
        image_size,
        sequence,
    })
}

fn run_sign(a: SignArgs) -> Result<()> {
    let key = load_signing_key(&a.manifest.key)?;
    let signed = sign_image(&key, &a.manifest, a.sequence, &a.image)?;
    let out = a.out.clone().unwrap_or_else(|| default_output(&a.image));
    std::fs::write(&out, &signed.envelope)
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "signed {} ({} bytes, sha256 {}) as sequence {} version {} with {} -> {}",
        a.image.display(),
        signed.image_size,
        hex::encode(signed.image_digest),
        signed.sequence,
        a.manifest.version,
        key.algorithm(),
        out.display()
    );
    Ok(())
}

/// A sentence a person can act on for each way verification fails.
fn explain(e: Error, keys: &[PublicKey]) -> anyhow::Error {
    match e {
        Error::BadSignature => anyhow::anyhow!(
            "signature does not verify with the given key(s): the envelope was signed with another key, or altered"
        ),
        Error::DigestMismatch => {
            anyhow::anyhow!(
                "the manifest was altered after signing: it does not match its signed digest"
            )
        }
        Error::NoKeyForAlgorithm(alg) => {
            let given: Vec<&str> = keys.iter().map(|k| k.algorithm().name()).collect();
            anyhow::anyhow!(
                "the envelope is signed with {alg}, but the given key(s) are {}",
                given.join(", ")
            )
        }
        other => anyhow::anyhow!("not a valid Updraft SUIT envelope: {other}"),
    }
}

fn run_verify(
    key_paths: &[PathBuf],
    envelope_path: &Path,
    image: Option<&Path>,
    device: &DevicePolicyArgs,
) -> Result<()> {
    let policy = device.policy()?;
    let keys = load_public_keys(key_paths)?;
    let bytes = read_file(envelope_path)?;
    let v = verify(&bytes, &keys)
        .map_err(|e| explain(e, &keys))
        .with_context(|| format!("{} refused", envelope_path.display()))?;
    let key_path = key_paths
        .get(v.key_index)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    println!(
        "{}: signature OK ({}, key {}), sequence {}, version {}",
        envelope_path.display(),
        keys.get(v.key_index)
            .map(|k| k.algorithm().name())
            .unwrap_or("?"),
        key_path,
        v.manifest.sequence,
        v.manifest.version.unwrap_or("-"),
    );
    if let Some(image) = image {
        let (digest, size) = hash_file(image)?;
        if size != v.manifest.image_size {
            bail!(
                "{} does not match the manifest: it is {size} bytes, the manifest says {}",
                image.display(),
                v.manifest.image_size
            );
        }
        if digest != v.manifest.image_digest {
            bail!(
                "{} does not match the manifest: sha256 {}, the manifest says {}",
                image.display(),
                hex::encode(digest),
                hex::encode(v.manifest.image_digest)
            );
        }
        println!(
            "{}: image OK ({size} bytes, sha256 {})",
            image.display(),
            hex::encode(digest)
        );
    }
    if let Some(p) = policy {
        let m = &v.manifest;
        // The device core's own check (vendor, class, anti-rollback, size, expiry).
        m.check_policy(&p)
            .map_err(|e| explain_policy(e, m, &p))
            .with_context(|| format!("{} refused by the device policy", envelope_path.display()))?;
        // The core also refuses delta images (it installs whole images only).
        if m.precursor_digest.is_some() {
            bail!(
                "{} refused by the device policy: a device refuses it: it is a delta image (it names a precursor), and the device core installs whole images only",
                envelope_path.display()
            );
        }
        let expiry = match (m.expires_at, p.now) {
            (Some(at), Some(_)) => format!("expires {} (checked)", rfc3339(at)),
            (Some(at), None) => format!("expires {} (not checked: no --now)", rfc3339(at)),
            (None, _) => "never expires".to_owned(),
        };
        println!(
            "{}: device policy OK (vendor {}, class {}, sequence {} above installed {}, {} bytes{}, {expiry})",
            envelope_path.display(),
            p.vendor_id,
            p.class_id,
            m.sequence,
            p.installed_sequence,
            m.image_size,
            if p.max_image_size == u64::MAX {
                String::new()
            } else {
                format!(" within a {}-byte slot", p.max_image_size)
            },
        );
    }
    Ok(())
}

/// What `inspect --json` prints.
#[derive(Debug, Serialize)]
struct Inspection {
    signature: &'static str,
    algorithm: &'static str,
    verified_with: Option<String>,
    manifest_digest: String,
    sequence: u64,
    version: Option<String>,
    vendor_id: String,
    class_id: String,
    component_id: Vec<String>,
    image_digest: String,
    image_size: u64,
    uri: Option<String>,
    precursor_digest: Option<String>,
    expires_at: Option<u64>,
    expires_at_rfc3339: Option<String>,
}

impl Inspection {
    fn new(
        m: &Manifest<'_>,
        manifest_digest: &Digest,
        alg: Algorithm,
        verified_with: Option<String>,
    ) -> Self {
        Inspection {
            signature: if verified_with.is_some() {
                "verified"
            } else {
                "not_checked"
            },
            algorithm: alg.name(),
            verified_with,
            manifest_digest: hex::encode(manifest_digest),
            sequence: m.sequence,
            version: m.version.map(str::to_owned),
            vendor_id: m.vendor_id.to_string(),
            class_id: m.class_id.to_string(),
            component_id: m.component_id.segments().iter().map(hex::encode).collect(),
            image_digest: hex::encode(m.image_digest),
            image_size: m.image_size,
            uri: m.uri.map(str::to_owned),
            precursor_digest: m.precursor_digest.map(hex::encode),
            expires_at: m.expires_at,
            expires_at_rfc3339: m
                .expires_at
                .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
                .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        }
    }
}

fn run_inspect(envelope_path: &Path, json: bool, key_paths: &[PathBuf]) -> Result<()> {
    let bytes = read_file(envelope_path)?;
    let inspection = if key_paths.is_empty() {
        let u = decode_unverified(&bytes)
            .map_err(|e| anyhow::anyhow!("not a valid Updraft SUIT envelope: {e}"))
            .with_context(|| format!("{} refused", envelope_path.display()))?;
        Inspection::new(&u.manifest, &u.manifest_digest, u.algorithm, None)
    } else {
        let keys = load_public_keys(key_paths)?;
        let v = verify(&bytes, &keys)
            .map_err(|e| explain(e, &keys))
            .with_context(|| format!("{} refused", envelope_path.display()))?;
        let key = key_paths
            .get(v.key_index)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let alg = keys
            .get(v.key_index)
            .map(PublicKey::algorithm)
            .unwrap_or(Algorithm::Ed25519);
        Inspection::new(&v.manifest, &v.manifest_digest, alg, Some(key))
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
        return Ok(());
    }
    let i = &inspection;
    match &i.verified_with {
        Some(k) => println!("signature:        verified ({}, key {k})", i.algorithm),
        None => println!(
            "signature:        NOT checked (claims {}; pass --key PUB.pem to verify)",
            i.algorithm
        ),
    }
    println!("manifest digest:  {}", i.manifest_digest);
    println!("sequence:         {}", i.sequence);
    println!("version:          {}", i.version.as_deref().unwrap_or("-"));
    println!("vendor id:        {}", i.vendor_id);
    println!("class id:         {}", i.class_id);
    println!(
        "component:        [{}]",
        i.component_id
            .iter()
            .map(|s| format!("h'{s}'"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("image digest:     sha256 {}", i.image_digest);
    println!("image size:       {} bytes", i.image_size);
    println!("uri:              {}", i.uri.as_deref().unwrap_or("-"));
    println!(
        "precursor digest: {}",
        i.precursor_digest.as_deref().unwrap_or("-")
    );
    match (&i.expires_at, &i.expires_at_rfc3339) {
        (Some(s), Some(t)) => println!("expires:          {t} ({s})"),
        (Some(s), None) => println!("expires:          {s}"),
        _ => println!("expires:          never"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_accepts_unix_seconds_and_rfc3339() {
        assert_eq!(parse_time("1700000000", "now").unwrap(), 1_700_000_000);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", "now").unwrap(),
            1_700_000_000
        );
        let err = parse_time("next tuesday", "now").unwrap_err();
        assert!(format!("{err:#}").contains("--now"), "{err:#}");
    }

    #[test]
    fn default_output_appends_suit() {
        assert_eq!(
            default_output(Path::new("out/fw.bin")),
            Path::new("out/fw.bin.suit")
        );
    }
}
