//! The `boot` step (the bootloader half) and factory provisioning.
//!
//! `boot` runs [`select_boot_slot`] (which marks a pending trial as booted *before* running it,
//! or reverts a trial that never confirmed), then, if the selected slot holds an executable image
//! (`#!` or ELF), `exec`s it with `--config PATH` and these environment variables:
//!
//! * `UPDRAFT_AGENT`: this binary (an image that is a wrapper execs `$UPDRAFT_AGENT run "$@"`);
//! * `UPDRAFT_IMAGE`, `UPDRAFT_SLOT` (`A`/`B`), `UPDRAFT_TRIAL` (`1` on a trial boot).
//!
//! Otherwise (a raw image, an empty slot) the agent continues in-process with `run`.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::Context as _;
use updraft_device::{Slot, select_boot_slot};

use crate::config::AgentConfig;
use crate::hooks::{is_executable_image, slot_path};
use crate::runtime::{layout, open_flash};

/// The bootloader half: select the slot, exec its image or fall through to `run`.
pub fn boot(config: &AgentConfig) -> anyhow::Result<()> {
    let decision = {
        let mut flash = open_flash(config)?;
        select_boot_slot(&mut flash, &layout(config))
            .map_err(|e| anyhow::anyhow!("boot slot selection failed: {e}"))?
    };
    tracing::info!(slot = ?decision.slot, trial = decision.trial, image_state = ?decision.image_state, "boot");
    let image = slot_path(config, decision.slot);
    if is_executable_image(image) {
        // The slot file may have been written by another tool without the x bit.
        if let Ok(meta) = std::fs::metadata(image)
            && meta.permissions().mode() & 0o111 == 0
        {
            let mut p = meta.permissions();
            p.set_mode(p.mode() | 0o755);
            std::fs::set_permissions(image, p).context("making the image executable")?;
        }
        let agent = std::env::current_exe().context("finding the agent binary")?;
        let mut cmd = Command::new(image);
        cmd.arg("--config")
            .arg(&config.path)
            .env("UPDRAFT_IMAGE", image)
            .env(
                "UPDRAFT_SLOT",
                match decision.slot {
                    Slot::A => "A",
                    Slot::B => "B",
                },
            )
            .env("UPDRAFT_TRIAL", if decision.trial { "1" } else { "0" });
        if std::env::var_os("UPDRAFT_AGENT").is_none() {
            cmd.env("UPDRAFT_AGENT", agent);
        }
        tracing::info!(image = %image.display(), "exec image");
        let err = cmd.exec();
        return Err(err).with_context(|| format!("exec {}", image.display()));
    }
    crate::runtime::Runtime::start(config)?.run()
}

/// Replace this process with `updraft-agent boot --config PATH` (the "reboot"). Returns only
/// on failure.
pub fn exec_boot_step(config: &AgentConfig) -> std::io::Error {
    let exe = match std::env::var_os("UPDRAFT_AGENT") {
        Some(p) => std::path::PathBuf::from(p),
        None => match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => return e,
        },
    };
    tracing::info!(agent = %exe.display(), "rebooting: exec the boot step");
    Command::new(exe)
        .arg("boot")
        .arg("--config")
        .arg(&config.path)
        .exec()
}

/// Factory provisioning: write `image` into slot A and make it the active, confirmed image with
/// anti-rollback counter `sequence`.
pub fn provision(config: &AgentConfig, image: &[u8], sequence: u64) -> anyhow::Result<()> {
    use embedded_storage::nor_flash::NorFlash;
    let layout = layout(config);
    let size = u32::try_from(image.len())
        .ok()
        .filter(|n| *n <= layout.slot_a.size)
        .with_context(|| {
            format!(
                "the image ({} bytes) does not fit a slot of {} bytes",
                image.len(),
                layout.slot_a.size
            )
        })?;
    let mut flash = open_flash(config)?;
    let end = size.div_ceil(crate::config::SECTOR) * crate::config::SECTOR;
    flash
        .erase(
            layout.slot_a.offset,
            layout.slot_a.offset + end.max(crate::config::SECTOR),
        )
        .context("erasing slot A")?;
    flash
        .write(layout.slot_a.offset, image)
        .context("writing slot A")?;
    let digest = updraft_device::verify::sha256(image);
    updraft_device::boot::provision(&mut flash, &layout, Slot::A, digest, sequence)
        .context("writing the boot state")?;
    Ok(())
}
