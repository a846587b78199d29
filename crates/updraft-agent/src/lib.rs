//! `updraft-agent`: the Updraft device runtime for Linux.
//!
//! It runs the `no_std` device core ([`updraft_device`]) on a Linux machine: the core's flash is
//! two slot files (or block devices) and a state file, its transport is hawkBit DDI over HTTP(S),
//! and its "reboot" is an `exec`.
//!
//! # The model: the firmware image is a program
//!
//! As in the Anjay Lite firmware-update tutorial, an image in a slot is an executable (a script
//! or an ELF binary). The agent has two steps, like a microcontroller's bootloader and firmware:
//!
//! 1. **`updraft-agent boot`** (the bootloader half, [`boot`]): `select_boot_slot` picks the slot
//!    (a pending trial is marked booted *before* it runs; a trial that booted and never
//!    confirmed is reverted). If that slot's image is executable, the agent `exec`s it with
//!    `--config PATH` and `UPDRAFT_AGENT` (this binary), `UPDRAFT_IMAGE`, `UPDRAFT_SLOT`,
//!    `UPDRAFT_TRIAL` in the environment. A raw image is not executed: the agent continues
//!    in-process with `run`.
//! 2. **The image runs.** A Linux "firmware" that embeds the agent simply execs
//!    `"$UPDRAFT_AGENT" run "$@"` (any other work it does is its own business); it answers
//!    `--version` (its version) and `--self-test` (exit 0 = works) when asked.
//! 3. **`updraft-agent run`** (the daemon, [`runtime`]): starts the core. On a trial boot the
//!    `self_test` hook runs (typically `"$UPDRAFT_IMAGE" --self-test`); a pass confirms the image
//!    (the anti-rollback counter moves only now) and reports `closed`/`success` with the version
//!    the image prints; a failure rejects it and reboots into the old image, which reports the
//!    failure. Then it polls DDI, downloads, verifies and installs new images.
//! 4. **Reboot.** After the install the core asks for a reboot: the agent `exec`s
//!    `updraft-agent boot --config PATH` (or runs the configured `reboot` command and exits).
//!    A crash or kill of the trial image before its confirm is a failed trial: the next `boot`
//!    reverts it.
//!
//! A service manager runs `updraft-agent boot --config /etc/updraft/agent.toml` and restarts it
//! when it exits; nothing else is needed.
//!
//! # Driving real agents from a test
//!
//! Each device is one config file with its own slots and state directory. A test provisions the
//! factory image (`updraft-agent provision --config C --image v1 --sequence 1`), then starts
//! `updraft-agent boot --config C` with `UPDRAFT_AGENT` set to the agent binary. The images are
//! small shell scripts (`--version` prints the version, `--self-test` exits 0 or 1, anything
//! else `exec`s `"$UPDRAFT_AGENT" run "$@"`). Every step from then on is an `exec`, so the
//! child's pid stays the device for its whole life: the test can SIGKILL it mid-download and
//! start `boot` again, and read `updraft-agent status --config C` at any time. Two devices are
//! two configs and two children (`tests/common` has the helpers and a DDI stand-in).
//! `tests/e2e.rs` runs the same fixture against the real `updraft serve` and CLI.
//!
//! # Map
//!
//! | module | what |
//! | --- | --- |
//! | [`config`] | the TOML config file, validated into [`config::AgentConfig`] |
//! | [`flash`] | [`flash::FileFlash`]: `NorFlash` over slot files and the state file; fsync ordering |
//! | [`ddi`] | the blocking hawkBit DDI client: poll, deployment, Range download, feedback |
//! | [`runtime`] | the `run` step: the daemon loop mapping core actions to DDI |
//! | [`boot`] | the `boot` step (slot selection, exec) and factory provisioning |
//! | [`hooks`] | authorize / self-test / reboot hook commands, image `--version` |
//! | [`state`] | `agent.json`: deployment in progress, unsent final reports, stats |
//! | [`status`] | `updraft-agent status`: what the state directory says |
//!
//! # Durability
//!
//! The core's records (boot state, journal, envelope) are power-loss safe by design; the file
//! backend keeps them so by writing through and syncing in order (see [`flash`]). A SIGKILL
//! mid-download resumes from the journal and re-downloads at most one block.
#![warn(missing_docs)]

pub mod boot;
pub mod config;
pub mod ddi;
pub mod flash;
pub mod hooks;
pub mod runtime;
pub mod state;
pub mod status;
