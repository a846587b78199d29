//! The agent's configuration file (TOML), parsed once into [`AgentConfig`], whose fields can only
//! hold valid values.
//!
//! ```toml
//! [server]
//! url = "http://127.0.0.1:8080"      # hawkBit DDI server (http or https)
//! tenant = "DEFAULT"
//! controller_id = "sensor-17"
//! token = "..."                      # or token_file = "token" (TargetToken)
//!
//! [device]
//! vendor_id = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe"
//! class = "sensor-v1"                # a class name (UUIDv5 under the vendor), or class_id = "<uuid>"
//! trusted_keys = ["release.pub.pem"] # SPKI PEM public keys (Ed25519 or P-256)
//! slot_a = "slot-a.img"              # regular files or block devices
//! slot_b = "slot-b.img"
//! slot_size = 16777216               # bytes per slot (multiple of 4096); default: the block
//!                                    # device size, or 64 MiB for regular files
//! state_dir = "state"                # boot state, journal and agent state live here
//!
//! [hooks]                            # all optional, run with `sh -c`
//! authorize = "/usr/bin/may-update"  # gets `download|install VERSION` appended; prints
//!                                    # authorize/reject/defer, or exit 0 = authorize,
//!                                    # 1 = reject, 2 = defer
//! self_test = "\"$UPDRAFT_IMAGE\" --self-test"  # exit 0 = pass
//! reboot = "systemctl reboot"        # instead of exec'ing `updraft-agent boot`
//!
//! [update]                           # all optional
//! resume = "resume"                  # resume | restart | none
//! block_size = 16384                 # bytes per Range request
//! poll_interval = "2s"               # overrides the server's polling sleep
//! poll_jitter = "0s"                 # default: up to 10 % of the interval
//! max_defer = "24h"                  # how long `defer` is honoured; "0s": the device may not
//!                                    # defer (a deferral counts as authorization)
//! ```
//!
//! Relative paths are resolved against the directory of the config file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use updraft_device::ResumeMode;
use updraft_manifest::{PublicKey, Uuid};

/// The erase size the file flash reports (and that slot sizes must be a multiple of).
pub const SECTOR: u32 = 4096;

/// Why a config file was refused. Each message names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has a wrong or unknown field.
    #[error("config file {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A field has a value that is not allowed.
    #[error("config file {path}: `{field}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field, as `section.key`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    device: RawDevice,
    #[serde(default)]
    hooks: RawHooks,
    #[serde(default)]
    update: RawUpdate,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    url: String,
    #[serde(default = "default_tenant")]
    tenant: String,
    controller_id: String,
    token: Option<String>,
    token_file: Option<PathBuf>,
}

fn default_tenant() -> String {
    "DEFAULT".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    vendor_id: String,
    class_id: Option<String>,
    class: Option<String>,
    trusted_keys: Vec<PathBuf>,
    slot_a: PathBuf,
    slot_b: PathBuf,
    slot_size: Option<u64>,
    state_dir: PathBuf,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    authorize: Option<String>,
    self_test: Option<String>,
    reboot: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUpdate {
    resume: Option<String>,
    block_size: Option<u32>,
    poll_interval: Option<String>,
    poll_jitter: Option<String>,
    max_defer: Option<String>,
}

/// Optional shell commands the agent calls out to.
#[derive(Clone, Debug, Default)]
pub struct Hooks {
    /// Download / install authorization.
    pub authorize: Option<String>,
    /// Self-test of a trial image (exit 0 = pass). Without it a trial image passes.
    pub self_test: Option<String>,
    /// Reboot command, instead of exec'ing the `boot` step.
    pub reboot: Option<String>,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// Server URL without a trailing slash.
    pub server_url: String,
    /// hawkBit tenant.
    pub tenant: String,
    /// Controller (device) id.
    pub controller_id: String,
    /// Target token.
    pub token: String,
    /// Keys a manifest must be signed with.
    pub trusted_keys: Vec<PublicKey>,
    /// This device's vendor id.
    pub vendor_id: Uuid,
    /// This device's class id.
    pub class_id: Uuid,
    /// Slot A path.
    pub slot_a: PathBuf,
    /// Slot B path.
    pub slot_b: PathBuf,
    /// Bytes per slot (a multiple of [`SECTOR`]).
    pub slot_size: u32,
    /// State directory.
    pub state_dir: PathBuf,
    /// Hook commands.
    pub hooks: Hooks,
    /// Resume mode after a restart.
    pub resume: ResumeMode,
    /// Bytes per Range request.
    pub block_size: u32,
    /// Poll interval override.
    pub poll_interval: Option<Duration>,
    /// Jitter override (default: up to 10 % of the interval).
    pub poll_jitter: Option<Duration>,
    /// Maximum Defer Period (/5/0/13) given to the core: how long deferrals are honoured.
    pub max_defer: Duration,
}

impl AgentConfig {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Validate config text; `path` names the file in errors and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<AgentConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |field: &'static str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            message,
        };
        // Absolute paths: the slots are exec'd (a bare "a" would be looked up in PATH) and the
        // config path is handed on across exec.
        let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };

        let server_url = raw.server.url.trim_end_matches('/').to_string();
        if !(server_url.starts_with("http://") || server_url.starts_with("https://")) {
            return Err(invalid(
                "server.url",
                format!("{server_url:?} is not an http:// or https:// URL"),
            ));
        }
        for (field, value) in [
            ("server.tenant", &raw.server.tenant),
            ("server.controller_id", &raw.server.controller_id),
        ] {
            if value.is_empty()
                || !value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(invalid(
                    field,
                    format!("{value:?} must be non-empty ASCII letters, digits, '-', '_' or '.'"),
                ));
            }
        }
        let token = match (raw.server.token, raw.server.token_file) {
            (Some(t), None) => t,
            (None, Some(f)) => {
                let f = resolve(&f);
                std::fs::read_to_string(&f)
                    .map_err(|e| invalid("server.token_file", format!("{}: {e}", f.display())))?
                    .trim()
                    .to_string()
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "server.token",
                    "give `token` or `token_file`, not both".into(),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "server.token",
                    "missing: give `token` or `token_file`".into(),
                ));
            }
        };
        if token.is_empty() || token.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(invalid(
                "server.token",
                "must be non-empty, without spaces or control characters".into(),
            ));
        }

        let d = raw.device;
        let vendor_id = Uuid::parse_str(&d.vendor_id)
            .map_err(|e| invalid("device.vendor_id", format!("{:?}: {e:?}", d.vendor_id)))?;
        let class_id = match (&d.class_id, &d.class) {
            (Some(id), None) => Uuid::parse_str(id)
                .map_err(|e| invalid("device.class_id", format!("{id:?}: {e:?}")))?,
            (None, Some(name)) if !name.is_empty() => updraft_manifest::class_id(&vendor_id, name),
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "device.class_id",
                    "give `class_id` or `class`, not both".into(),
                ));
            }
            _ => {
                return Err(invalid(
                    "device.class",
                    "missing: give `class` (a name) or `class_id` (a UUID)".into(),
                ));
            }
        };
        if d.trusted_keys.is_empty() {
            return Err(invalid(
                "device.trusted_keys",
                "at least one public key file is needed".into(),
            ));
        }
        let mut trusted_keys = Vec::new();
        for k in &d.trusted_keys {
            let k = resolve(k);
            let pem = std::fs::read_to_string(&k)
                .map_err(|e| invalid("device.trusted_keys", format!("{}: {e}", k.display())))?;
            let key = PublicKey::from_public_key_pem(&pem)
                .map_err(|e| invalid("device.trusted_keys", format!("{}: {e}", k.display())))?;
            trusted_keys.push(key);
        }
        let slot_a = resolve(&d.slot_a);
        let slot_b = resolve(&d.slot_b);
        if slot_a == slot_b {
            return Err(invalid(
                "device.slot_b",
                "slot A and slot B must be different paths".into(),
            ));
        }
        let slot_size = match d.slot_size {
            Some(s) => s,
            None => default_slot_size(&slot_a, &slot_b),
        };
        let slot_size = u32::try_from(slot_size)
            .ok()
            .filter(|s| *s > 0 && s.is_multiple_of(SECTOR) && *s <= u32::MAX / 4)
            .ok_or_else(|| {
                invalid(
                    "device.slot_size",
                    format!("{slot_size} must be a positive multiple of {SECTOR} below 1 GiB"),
                )
            })?;

        let u = raw.update;
        let resume = match u.resume.as_deref() {
            None | Some("resume") => ResumeMode::Resume,
            Some("restart") => ResumeMode::Restart,
            Some("none") => ResumeMode::Unsupported,
            Some(other) => {
                return Err(invalid(
                    "update.resume",
                    format!("{other:?} is not one of resume, restart, none"),
                ));
            }
        };
        let block_size = u.block_size.unwrap_or(16 * 1024);
        if !(512..=1024 * 1024).contains(&block_size) {
            return Err(invalid(
                "update.block_size",
                format!("{block_size} must be between 512 and 1048576 bytes"),
            ));
        }
        let duration = |field: &'static str, v: Option<String>| {
            v.map(|s| {
                humantime::parse_duration(&s).map_err(|e| {
                    invalid(field, format!("{s:?} is not a duration like \"2s\": {e}"))
                })
            })
            .transpose()
        };
        let poll_interval = duration("update.poll_interval", u.poll_interval)?;
        let poll_jitter = duration("update.poll_jitter", u.poll_jitter)?;
        let max_defer =
            duration("update.max_defer", u.max_defer)?.unwrap_or(Duration::from_secs(24 * 3600));
        if max_defer.as_secs() > u64::from(u32::MAX) {
            return Err(invalid(
                "update.max_defer",
                format!("{max_defer:?} is too long"),
            ));
        }

        Ok(AgentConfig {
            path: path.to_path_buf(),
            server_url,
            tenant: raw.server.tenant,
            controller_id: raw.server.controller_id,
            token,
            trusted_keys,
            vendor_id,
            class_id,
            slot_a,
            slot_b,
            slot_size,
            state_dir: resolve(&d.state_dir),
            hooks: Hooks {
                authorize: raw.hooks.authorize,
                self_test: raw.hooks.self_test,
                reboot: raw.hooks.reboot,
            },
            resume,
            block_size,
            poll_interval,
            poll_jitter,
            max_defer,
        })
    }
}

/// The smaller block device size if both slots are block devices, else 64 MiB.
fn default_slot_size(a: &Path, b: &Path) -> u64 {
    let dev = |p: &Path| crate::flash::block_device_size(p);
    match (dev(a), dev(b)) {
        (Some(x), Some(y)) => x.min(y) / u64::from(SECTOR) * u64::from(SECTOR),
        _ => 64 * 1024 * 1024,
    }
}
