//! The application's hooks: shell commands for authorization, self-test and reboot, and asking
//! an executable image its version.
//!
//! Hooks run with `sh -c` and these environment variables: `UPDRAFT_IMAGE` (the running slot's
//! path), `UPDRAFT_SLOT` (`A` or `B`), `UPDRAFT_CONFIG` (the config file), plus
//! `UPDRAFT_PHASE`/`UPDRAFT_VERSION` for authorization.

use std::path::Path;
use std::process::{Command, Stdio};

use updraft_device::{Decision, Slot};

use crate::config::AgentConfig;

/// The phase an authorization is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Before the download.
    Download,
    /// Before the install (and reboot).
    Install,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Download => "download",
            Phase::Install => "install",
        }
    }
}

/// The path of a slot.
pub fn slot_path(config: &AgentConfig, slot: Slot) -> &Path {
    match slot {
        Slot::A => &config.slot_a,
        Slot::B => &config.slot_b,
    }
}

fn shell(config: &AgentConfig, cmd: &str, running: Slot) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(cmd)
        .env("UPDRAFT_IMAGE", slot_path(config, running))
        .env(
            "UPDRAFT_SLOT",
            match running {
                Slot::A => "A",
                Slot::B => "B",
            },
        )
        .env("UPDRAFT_CONFIG", &config.path)
        .stdin(Stdio::null());
    c
}

/// Ask the `authorize` hook; no hook authorizes. The command gets `PHASE VERSION` appended as
/// arguments; its stdout (`authorize` / `reject` / `defer`) decides, else its exit code
/// (0 authorize, 2 defer, anything else reject).
pub fn authorize(config: &AgentConfig, running: Slot, phase: Phase, version: &str) -> Decision {
    let Some(cmd) = &config.hooks.authorize else {
        return Decision::Authorize;
    };
    let full = format!("{cmd} \"$@\"");
    let out = shell(config, &full, running)
        .arg("updraft-authorize")
        .arg(phase.as_str())
        .arg(version)
        .env("UPDRAFT_PHASE", phase.as_str())
        .env("UPDRAFT_VERSION", version)
        .stderr(Stdio::inherit())
        .output();
    let decision = match out {
        Err(e) => {
            tracing::warn!(error = %e, "authorize hook could not run: rejecting");
            Decision::Reject
        }
        Ok(out) => match String::from_utf8_lossy(&out.stdout).trim() {
            "authorize" => Decision::Authorize,
            "reject" => Decision::Reject,
            "defer" => Decision::Defer,
            _ => match out.status.code() {
                Some(0) => Decision::Authorize,
                Some(2) => Decision::Defer,
                _ => Decision::Reject,
            },
        },
    };
    tracing::info!(phase = phase.as_str(), version, ?decision, "authorize hook");
    decision
}

/// Run the `self_test` hook; no hook passes.
pub fn self_test(config: &AgentConfig, running: Slot) -> bool {
    let Some(cmd) = &config.hooks.self_test else {
        return true;
    };
    match shell(config, cmd, running)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
    {
        Ok(s) => s.success(),
        Err(e) => {
            tracing::warn!(error = %e, "self-test hook could not run: failing");
            false
        }
    }
}

/// Run the `reboot` hook. Returns whether it ran and succeeded.
pub fn reboot(config: &AgentConfig, running: Slot) -> Option<bool> {
    let cmd = config.hooks.reboot.as_ref()?;
    Some(
        shell(config, cmd, running)
            .status()
            .map(|s| s.success())
            .unwrap_or(false),
    )
}

/// Whether the file starts like a program the kernel can exec (`#!` or ELF).
pub fn is_executable_image(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    match f.read(&mut magic) {
        Ok(n) if n >= 2 => magic.starts_with(b"#!") || (n == 4 && magic == *b"\x7fELF"),
        _ => false,
    }
}

/// `IMAGE --version` of an executable image: its first stdout line.
pub fn image_version(path: &Path) -> Option<String> {
    if !is_executable_image(path) {
        return None;
    }
    let out = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?.trim();
    (!line.is_empty() && line.len() <= 255).then(|| line.to_string())
}
