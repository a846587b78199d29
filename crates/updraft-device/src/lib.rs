//! The Updraft device update core (`no_std`, no allocation, sans-IO).
//!
//! A state machine that a firmware main loop, the Linux agent, a fleet simulator or a test
//! feeds with [`Event`]s and that answers with [`Action`]s. It reads no clock (time comes with
//! each event), opens no socket and has no globals. It does touch flash, through the
//! `embedded-storage` [`NorFlash`](embedded_storage::nor_flash::NorFlash) trait, because
//! power-loss safety lives in the order of its writes (the embassy-boot shape).
//!
//! # Map
//!
//! | module | concept |
//! | --- | --- |
//! | [`update`] | the core: [`UpdateCore`], [`Event`], [`Action`], [`Config`]; all transitions |
//! | [`object5`] | LwM2M /5 vocabulary: State, Update Result, Severity, URI checks, the refusal codes |
//! | [`auth`] | download / install authorization answers and the Maximum Defer Period rule |
//! | [`verify`] | streaming SHA-256 bounded by the signed size |
//! | [`journal`] | the resume journal (digest, token, durable offset) and the persisted envelope |
//! | [`boot`] | A/B boot state, trial boot, confirm / reject / revert, anti-rollback counter |
//! | [`record`] | two-copy CRC records: the power-loss-safe write every persistent state uses |
//! | [`layout`] | where slots and records live on the flash; the 32-byte program unit |
//! | [`stats`] | block counters |
//! | `sim` (feature `sim`) | simulated flash (NOR, or write-once per erase with a word size) with power cuts, and a simulated device harness |
//!
//! # Why it is safe
//!
//! * Nothing is written before the envelope verifies (signature, then vendor/class, sequence,
//!   size bound, expiry); image bytes are hashed as they arrive and nothing past the signed size
//!   is taken; a digest mismatch installs nothing.
//! * Every persistent state (boot state, journal, envelope) is a two-copy record whose newest
//!   valid copy is never erased ([`record`]); the journal's durable offset moves after each
//!   block, so a cut re-downloads at most one block on multiwrite NOR flash, at most one sector
//!   on any other ([`Layout::multiwrite`]).
//! * Flash is programmed in aligned 32-byte units, each once per erase ([`layout`]), so the
//!   core is correct on flash with ECC words (one program per 8 to 32-byte word) too.
//! * A damaged boot state is an error ([`boot::BootError::Corrupt`]), never a silent return to
//!   slot A with the anti-rollback counter at 0.
//! * A new image boots once in test mode and must confirm itself; the anti-rollback counter
//!   moves only at the confirm, so the old image stays bootable until then ([`boot`]).
//!
//! # Driving it from a firmware `main`
//!
//! ```no_run
//! use embedded_storage::nor_flash::NorFlash;
//! use updraft_device::{Action, Config, Decision, Event, UpdateCore, select_boot_slot};
//!
//! // What the board provides (transport, clock, reset, self-test): stand-ins here.
//! fn now() -> Option<u64> { None }
//! fn fetch(_uri: &str, _offset: u32, _buf: &mut [u8]) -> (usize, [u8; 8]) { (0, [0; 8]) }
//! fn notify_server(_a: &Action) {}
//! fn reset() -> ! { loop {} }
//! fn self_test_ok() -> bool { true }
//!
//! fn firmware_main<F: NorFlash>(flash: &mut F, config: Config<'_>) -> ! {
//!     // 1. The bootloader half (normally in the bootloader image): pick the slot to run.
//!     let _decision = select_boot_slot(flash, &config.layout);
//!     // 2. The core resumes whatever was in progress (download, deferral, trial).
//!     let Ok(mut core) = UpdateCore::start(flash, config, now()) else { reset() };
//!     if core.state() == updraft_device::State::Updating {
//!         let passed = self_test_ok();
//!         let _ = core.handle(flash, now(), Event::SelfTest { passed });
//!     }
//!     let mut buf = [0u8; 512];
//!     loop {
//!         // LwM2M writes/executes on /5 arrive as events too, e.g.
//!         // core.handle(flash, now(), Event::WritePackageUri("coaps://..."))
//!         while let Some(action) = core.poll_action() {
//!             let event_data;
//!             let event = match action {
//!                 Action::FetchManifest => {
//!                     let (n, _) = fetch(core.package_uri(), 0, &mut buf);
//!                     Event::ManifestFetched(&buf[..n])
//!                 }
//!                 Action::FetchBlock { offset, len } => {
//!                     let uri = core.image_uri().unwrap_or("");
//!                     let (n, etag) = fetch(uri, offset, &mut buf[..len as usize]);
//!                     event_data = etag;
//!                     Event::Block { offset, data: &buf[..n], token: &event_data }
//!                 }
//!                 Action::AuthorizeDownload { .. } => Event::DownloadAuthorization(Decision::Authorize),
//!                 Action::AuthorizeInstall { .. } => Event::InstallAuthorization(Decision::Defer),
//!                 Action::Reboot => reset(),
//!                 other => {
//!                     notify_server(&other); // Notify, Progress, ImageState, Completed
//!                     continue;
//!                 }
//!             };
//!             let _ = core.handle(flash, now(), event);
//!         }
//!     }
//! }
//! ```
#![no_std]
#![warn(missing_docs)]

#[cfg(any(test, feature = "sim"))]
extern crate std;

pub mod auth;
pub mod boot;
pub mod journal;
pub mod layout;
pub mod object5;
pub mod record;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod stats;
pub mod update;
pub mod verify;

pub use auth::Decision;
pub use boot::{BootDecision, ImageState, select_boot_slot};
pub use layout::{Layout, Region, Slot};
pub use object5::{OpError, Severity, State, UpdateResult};
pub use update::{Action, Config, DownloadFailure, Event, ResumeMode, UpdateCore};
