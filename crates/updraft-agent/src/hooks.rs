//! The application's hooks: shell commands for authorization, self-test and reboot, and asking
//! an executable image its version.
//!
//! Hooks run with `sh -c` and these environment variables: `UPDRAFT_IMAGE` (the running slot's
//! path), `UPDRAFT_SLOT` (`A` or `B`), `UPDRAFT_CONFIG` (the config file), plus
//! `UPDRAFT_PHASE`/`UPDRAFT_VERSION` for authorization.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// How long an authorize hook or `IMAGE --version` may take.
const SHORT: Duration = Duration::from_secs(30);
/// How long a self-test may take before it counts as failed.
const SELF_TEST: Duration = Duration::from_secs(300);

/// Run `cmd` (stdout captured if `capture`: keep such output small, the pipe is read after the
/// exit); kill it after `timeout` (`None` then, as for a spawn
/// failure). A hook that hangs must not hang the agent: an image that ignores `--version` and
/// starts its main loop would otherwise never return.
fn output_within(mut cmd: Command, timeout: Duration, capture: bool) -> Option<Output> {
    if capture {
        cmd.stdout(Stdio::piped());
    } else {
        cmd.stdout(Stdio::inherit());
    }
    let mut child = cmd.spawn().ok()?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().ok(),
            Ok(None) if start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => {
                tracing::warn!(?timeout, "hook command timed out; killed");
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Ask the `authorize` hook; no hook authorizes. The command gets `PHASE VERSION` appended as
/// arguments; its stdout (`authorize` / `reject` / `defer`) decides, else its exit code
/// (0 authorize, 2 defer, anything else reject).
pub fn authorize(config: &AgentConfig, running: Slot, phase: Phase, version: &str) -> Decision {
    let Some(cmd) = &config.hooks.authorize else {
        return Decision::Authorize;
    };
    let full = format!("{cmd} \"$@\"");
    let mut cmd = shell(config, &full, running);
    cmd.arg("updraft-authorize")
        .arg(phase.as_str())
        .arg(version)
        .env("UPDRAFT_PHASE", phase.as_str())
        .env("UPDRAFT_VERSION", version)
        .stderr(Stdio::inherit());
    let decision = match output_within(cmd, SHORT, true) {
        None => {
            tracing::warn!("authorize hook failed to run or timed out: rejecting");
            Decision::Reject
        }
        Some(out) => match String::from_utf8_lossy(&out.stdout).trim() {
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
    let mut c = shell(config, cmd, running);
    c.stderr(Stdio::inherit());
    match output_within(c, SELF_TEST, false) {
        Some(out) => out.status.success(),
        None => {
            tracing::warn!("self-test hook failed to run or timed out: failing");
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
    let mut cmd = Command::new(path);
    cmd.arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let out = output_within(cmd, SHORT, true)?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?.trim();
    (!line.is_empty() && line.len() <= 255).then(|| line.to_string())
}
