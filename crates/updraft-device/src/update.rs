//! The update core: a sans-IO state machine tying object /5, authorization, the streaming
//! verifier, the resume journal and the boot state together.
//!
//! The runtime feeds [`Event`]s (with the current time, if known) to [`UpdateCore::handle`] and
//! drains [`Action`]s with [`UpdateCore::poll_action`] after every event. The core reads no
//! clock and opens no socket; it reads and writes the flash it is handed, because power-loss
//! safety is decided by the order of those writes.
//!
//! Internally the core is in one [`Step`]; the /5 State is a function of it. Every change of
//! State or Update Result goes through one place (`transition`), which queues the notify.

use embedded_storage::nor_flash::NorFlash;
use updraft_manifest::{Digest, MAX_ENVELOPE_LEN, Policy, PolicyError, PublicKey, Uuid};

use crate::auth::{Decision, effective};
use crate::boot::{self, BootError, BootState, Candidate, ImageState, Trial};
use crate::journal::{EnvelopeStore, Journal, Phase, Token};
use crate::layout::{Layout, LayoutError, PROGRAM_UNIT, Region, read_chunks};
use crate::object5::{
    MAX_URI_LEN, OpError, Protocols, Severity, State, UpdateResult, UriError, check_uri,
};
use crate::stats::Stats;
use crate::verify::{ImageVerifier, VerifyError};

/// What to do with a download interrupted by a reboot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeMode {
    /// Continue from the durable offset (default).
    Resume,
    /// Start again from byte 0 (same manifest, no new authorization).
    Restart,
    /// Give up: Idle with result 4 (connection lost).
    Unsupported,
}

/// Fixed configuration of a device.
#[derive(Clone, Copy, Debug)]
pub struct Config<'k> {
    /// Where slots and records live.
    pub layout: Layout,
    /// Keys a manifest must be signed with (any one of them).
    pub trusted_keys: &'k [PublicKey],
    /// This device's vendor id.
    pub vendor_id: Uuid,
    /// This device's class id.
    pub class_id: Uuid,
    /// Resume behaviour after a reboot.
    pub resume: ResumeMode,
    /// Bytes asked per pulled block; a multiple of the flash write size.
    pub block_size: u32,
    /// Protocols for Package URIs (/5/0/8).
    pub protocols: Protocols,
    /// Trigger the install (install authorization) as soon as the image is verified, without
    /// waiting for Execute /5/0/2 (for runtimes without LwM2M: DDI, MQTT).
    pub auto_execute: bool,
}

/// Why a pull transfer failed (reported by the runtime).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownloadFailure {
    /// The connection was lost (result 4). The journal is kept: a later resume continues.
    ConnectionLost,
    /// The resource does not exist (result 7, invalid URI).
    NotFound,
    /// The transport is not supported (result 9).
    UnsupportedProtocol,
}

/// An input to the core.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// Write /5/0/1 Package URI (empty resets).
    WritePackageUri(&'a str),
    /// Write /5/0/0 Package: one Block1 payload at `offset` of the push package
    /// (`u32 BE envelope length | envelope | image`). A single zero byte at offset 0 resets.
    WritePackage {
        /// Offset of `data` in the package.
        offset: u32,
        /// The payload.
        data: &'a [u8],
    },
    /// Execute /5/0/2 Update.
    Execute,
    /// Execute /5/0/10 Cancel.
    Cancel,
    /// Write /5/0/11 Severity.
    WriteSeverity(u8),
    /// Write /5/0/13 Maximum Defer Period (seconds; 0 = may not defer).
    WriteMaxDeferPeriod(u32),
    /// The envelope fetched from the Package URI (answer to [`Action::FetchManifest`]).
    ManifestFetched(&'a [u8]),
    /// Image bytes at `offset` (answer to [`Action::FetchBlock`]), with the transport's resume
    /// token (ETag; empty if none).
    Block {
        /// Offset in the image.
        offset: u32,
        /// The bytes.
        data: &'a [u8],
        /// Resume token of the resource.
        token: &'a [u8],
    },
    /// A pull transfer failed.
    DownloadFailed(DownloadFailure),
    /// The application's answer to [`Action::AuthorizeDownload`].
    DownloadAuthorization(Decision),
    /// The application's answer to [`Action::AuthorizeInstall`].
    InstallAuthorization(Decision),
    /// The self-test result of a trial image.
    SelfTest {
        /// Whether the new image works.
        passed: bool,
    },
    /// Continue a deferred or interrupted update now.
    Resume,
    /// The LwM2M registration was updated (continues deferred updates too).
    RegistrationUpdated,
}

/// An output of the core, for the runtime to carry out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Notify observers of /5/0/3 and /5/0/5 (and /5/0/12 changed to `changed_at`).
    Notify {
        /// /5/0/3.
        state: State,
        /// /5/0/5.
        result: UpdateResult,
        /// /5/0/12 Last State Change Time.
        changed_at: Option<u64>,
    },
    /// Fetch the envelope at [`UpdateCore::package_uri`]; answer with
    /// [`Event::ManifestFetched`].
    FetchManifest,
    /// Fetch `len` image bytes at `offset` from [`UpdateCore::image_uri`]; answer with
    /// [`Event::Block`].
    FetchBlock {
        /// Image offset.
        offset: u32,
        /// Bytes wanted.
        len: u32,
    },
    /// Ask the application whether to download; answer with [`Event::DownloadAuthorization`].
    AuthorizeDownload {
        /// Manifest sequence number.
        sequence: u64,
        /// Image size.
        image_size: u32,
        /// SUIT digest of the manifest.
        manifest_digest: Digest,
    },
    /// Ask the application whether to install; answer with [`Event::InstallAuthorization`].
    AuthorizeInstall {
        /// Manifest sequence number.
        sequence: u64,
        /// SUIT digest of the manifest.
        manifest_digest: Digest,
    },
    /// Download progress, about every 5 %.
    Progress {
        /// Percent done (a multiple of 5).
        percent: u8,
    },
    /// An image state to report (trial boot outcome).
    ImageState(ImageState),
    /// Reboot the device (after install, or to leave a rejected trial).
    Reboot,
    /// The update flow ended; the application can return to normal work.
    Completed(UpdateResult),
}

/// Why the core could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError<E> {
    /// The layout does not fit the flash.
    Layout(LayoutError),
    /// The block size is zero or not a multiple of the write size.
    BlockSize,
    /// The flash failed.
    Flash(E),
    /// The boot state is damaged (no valid copy, area not erased): the core does not start on
    /// a guessed state (see [`boot`](crate::boot), failing closed).
    BootStateCorrupt,
}

/// Internal step; the /5 State is derived from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing in progress.
    Idle,
    /// Pull: waiting for the envelope.
    FetchingManifest,
    /// Push: receiving the length prefix and envelope.
    ReceivingPush,
    /// Waiting for download authorization.
    AwaitDownloadAuth,
    /// Download deferred.
    DownloadDeferred,
    /// Receiving image bytes.
    Downloading,
    /// Verified image waits for Execute.
    Downloaded,
    /// Waiting for install authorization.
    AwaitInstallAuth,
    /// Install deferred (installs at the next reboot).
    InstallDeferred,
    /// Trial marked or rejected; waiting for the reboot.
    Rebooting,
    /// Running a trial image; waiting for its self-test.
    Testing,
}

impl Step {
    fn state(self) -> State {
        match self {
            Step::Idle => State::Idle,
            Step::FetchingManifest
            | Step::ReceivingPush
            | Step::AwaitDownloadAuth
            | Step::DownloadDeferred
            | Step::Downloading => State::Downloading,
            Step::Downloaded | Step::AwaitInstallAuth | Step::InstallDeferred => State::Downloaded,
            Step::Rebooting | Step::Testing => State::Updating,
        }
    }
}

/// Facts of the verified manifest in progress (owned: the envelope may be reused).
#[derive(Clone, Copy, Debug)]
struct Pending {
    manifest_digest: Digest,
    image_digest: Digest,
    image_size: u32,
    sequence: u64,
    uri: Option<(u16, u16)>,
    version: Option<(u16, u16)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivery {
    Pull,
    Push,
}

const QUEUE: usize = 12;

/// The device update core. See the crate docs for a usage example.
pub struct UpdateCore<'k> {
    config: Config<'k>,
    step: Step,
    result: UpdateResult,
    severity: Severity,
    max_defer_period: u32,
    last_change: Option<u64>,
    boot: BootState,
    journal: Journal,
    pending: Option<Pending>,
    verifier: Option<ImageVerifier>,
    carry: [u8; PROGRAM_UNIT],
    carry_len: usize,
    delivery: Delivery,
    push_header: [u8; 4],
    push_consumed: u32,
    envelope_len: usize,
    journal_synced: bool,
    /// Every image write since the last resume completed and was journaled: the candidate
    /// slot is erased from the durable offset to the end of its sector.
    image_clean: bool,
    last_percent: u8,
    uri: [u8; MAX_URI_LEN],
    uri_len: usize,
    actions: [Option<Action>; QUEUE],
    head: usize,
    queued: usize,
    stats: Stats,
    envelope: [u8; MAX_ENVELOPE_LEN],
}

fn range_in(outer: &[u8], inner: &[u8]) -> Option<(u16, u16)> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    let end = start.checked_add(inner.len())?;
    (end <= outer.len()).then_some((u16::try_from(start).ok()?, u16::try_from(end).ok()?))
}

impl<'k> UpdateCore<'k> {
    /// Start the core after boot: load the boot state and the journal, report the trial
    /// outcome, and continue whatever was in progress (resume, re-ask deferred authorization).
    pub fn start<F: NorFlash>(
        flash: &mut F,
        config: Config<'k>,
        now: Option<u64>,
    ) -> Result<Self, StartError<F::Error>> {
        config
            .layout
            .check::<F>(flash.capacity())
            .map_err(StartError::Layout)?;
        if config.block_size == 0 || !config.block_size.is_multiple_of(F::WRITE_SIZE as u32) {
            return Err(StartError::BlockSize);
        }
        let boot = BootState::load(flash, &config.layout).map_err(|e| match e {
            BootError::Flash(e) => StartError::Flash(e),
            BootError::Corrupt | BootError::NoTrial => StartError::BootStateCorrupt,
        })?;
        let journal = Journal::load(flash, &config.layout).map_err(StartError::Flash)?;
        let mut core = UpdateCore {
            config,
            step: Step::Idle,
            result: UpdateResult::Initial,
            severity: Severity::Mandatory,
            max_defer_period: 0,
            last_change: now,
            boot,
            journal,
            pending: None,
            verifier: None,
            carry: [0xFF; PROGRAM_UNIT],
            carry_len: 0,
            delivery: Delivery::Pull,
            push_header: [0; 4],
            push_consumed: 0,
            envelope_len: 0,
            journal_synced: false,
            image_clean: false,
            last_percent: 0,
            uri: [0; MAX_URI_LEN],
            uri_len: 0,
            actions: [None; QUEUE],
            head: 0,
            queued: 0,
            stats: Stats::default(),
            envelope: [0; MAX_ENVELOPE_LEN],
        };
        core.push(Action::Notify {
            state: State::Idle,
            result: UpdateResult::Initial,
            changed_at: now,
        });
        // A flash failure while continuing is reported as a result, not a start failure.
        let _ = core.continue_after_boot(flash, now);
        Ok(core)
    }

    /// [`UpdateCore::start`] into memory the caller provides, for firmware that counts its
    /// stack: `start` returns the core by value, and every move of it on the way to the main
    /// loop costs its size again in some frame (BENCHMARKS.md, "Stack"). The core is built in
    /// `place` and lives as long as that borrow.
    pub fn start_in<'p, F: NorFlash>(
        place: &'p mut core::mem::MaybeUninit<Self>,
        flash: &mut F,
        config: Config<'k>,
        now: Option<u64>,
    ) -> Result<&'p mut Self, StartError<F::Error>> {
        config
            .layout
            .check::<F>(flash.capacity())
            .map_err(StartError::Layout)?;
        if config.block_size == 0 || !config.block_size.is_multiple_of(F::WRITE_SIZE as u32) {
            return Err(StartError::BlockSize);
        }
        let boot = BootState::load(flash, &config.layout).map_err(|e| match e {
            BootError::Flash(e) => StartError::Flash(e),
            BootError::Corrupt | BootError::NoTrial => StartError::BootStateCorrupt,
        })?;
        let journal = Journal::load(flash, &config.layout).map_err(StartError::Flash)?;
        let core = place.write(UpdateCore {
            config,
            step: Step::Idle,
            result: UpdateResult::Initial,
            severity: Severity::Mandatory,
            max_defer_period: 0,
            last_change: now,
            boot,
            journal,
            pending: None,
            verifier: None,
            carry: [0xFF; PROGRAM_UNIT],
            carry_len: 0,
            delivery: Delivery::Pull,
            push_header: [0; 4],
            push_consumed: 0,
            envelope_len: 0,
            journal_synced: false,
            image_clean: false,
            last_percent: 0,
            uri: [0; MAX_URI_LEN],
            uri_len: 0,
            actions: [None; QUEUE],
            head: 0,
            queued: 0,
            stats: Stats::default(),
            envelope: [0; MAX_ENVELOPE_LEN],
        });
        core.push(Action::Notify {
            state: State::Idle,
            result: UpdateResult::Initial,
            changed_at: now,
        });
        // A flash failure while continuing is reported as a result, not a start failure.
        let _ = core.continue_after_boot(flash, now);
        Ok(core)
    }

    fn continue_after_boot<F: NorFlash>(
        &mut self,
        flash: &mut F,
        now: Option<u64>,
    ) -> Result<(), OpError> {
        if let Some(Trial::Booted(_)) = self.boot.trial {
            self.push(Action::ImageState(ImageState::Testing));
            self.transition(now, Step::Testing, UpdateResult::Initial);
            return Ok(());
        }
        let phase = self.journal.phase;
        if phase == Phase::None {
            return Ok(());
        }
        if let Some((image_state, digest)) = self.boot.last
            && digest == self.journal.manifest_digest
            && matches!(phase, Phase::Downloaded | Phase::InstallDeferred)
            && self.boot.trial.is_none()
        {
            let result = match image_state {
                ImageState::Accepted => UpdateResult::Success,
                ImageState::Aborted => UpdateResult::IntegrityFailure,
                ImageState::Rejected | ImageState::Testing => UpdateResult::UpdateFailed,
            };
            self.push(Action::ImageState(image_state));
            self.journal.clear();
            self.store_journal(flash, now)?;
            self.transition(now, Step::Rebooting, UpdateResult::Initial);
            self.finish(now, result);
            return Ok(());
        }
        if !self.restore_manifest(flash, now)? {
            return Ok(());
        }
        match phase {
            Phase::None => {}
            Phase::AwaitDownloadAuth | Phase::DownloadDeferred => {
                let result = if phase == Phase::DownloadDeferred {
                    UpdateResult::Deferred
                } else {
                    UpdateResult::Initial
                };
                self.transition(now, Step::AwaitDownloadAuth, result);
                self.ask_download();
            }
            Phase::Downloading => {
                let pull = self.pending.is_some_and(|p| p.uri.is_some());
                match self.config.resume {
                    ResumeMode::Resume | ResumeMode::Restart if pull => {
                        if self.config.resume == ResumeMode::Restart {
                            self.journal.offset = 0;
                            self.journal.token = Token::default();
                            self.journal_synced = false;
                        }
                        self.transition(now, Step::Downloading, UpdateResult::Initial);
                        self.resume_download(flash, now)?;
                    }
                    ResumeMode::Resume | ResumeMode::Restart => {
                        // The manifest names no URI (the runtime knows where the image is, e.g.
                        // a DDI artifact link) or it was pushed: nothing to ask for now. Keep
                        // the journal, as after a lost connection: the same manifest fetched
                        // again (pull) continues from the durable offset.
                        self.transition(now, Step::Downloading, UpdateResult::Initial);
                        self.finish(now, UpdateResult::ConnectionLost);
                    }
                    ResumeMode::Unsupported => {
                        self.transition(now, Step::Downloading, UpdateResult::Initial);
                        self.discard(flash, now, UpdateResult::ConnectionLost, false)?;
                    }
                }
            }
            Phase::Downloaded | Phase::InstallDeferred => {
                // Check the copy we will use: the candidate must still hash to the signed digest.
                let p = self.pending_or_fail(now)?;
                let slot = self.boot.candidate_slot();
                let digest = boot::slot_digest(flash, &self.config.layout, slot, p.image_size)
                    .map_err(|_| self.flash_error(now))?;
                if digest != p.image_digest {
                    self.transition(now, Step::Downloaded, UpdateResult::Initial);
                    return self.discard(flash, now, UpdateResult::IntegrityFailure, false);
                }
                if phase == Phase::InstallDeferred {
                    self.transition(now, Step::AwaitInstallAuth, UpdateResult::Deferred);
                    self.ask_install();
                } else {
                    self.transition(now, Step::Downloaded, UpdateResult::Initial);
                    if self.config.auto_execute {
                        self.execute(now)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Load and re-verify the persisted envelope of the journal; on failure the journal is
    /// discarded. Returns whether the manifest is in hand.
    fn restore_manifest<F: NorFlash>(
        &mut self,
        flash: &mut F,
        now: Option<u64>,
    ) -> Result<bool, OpError> {
        let len = EnvelopeStore::load(flash, &self.config.layout, &mut self.envelope)
            .map_err(|_| self.flash_error(now))?;
        let verified = len.map(|n| {
            self.envelope_len = n;
            self.verify_envelope(now)
        });
        match verified {
            Some(Ok(p)) if p.manifest_digest == self.journal.manifest_digest => {
                self.pending = Some(p);
                Ok(true)
            }
            _ => {
                self.journal.clear();
                self.store_journal(flash, now)?;
                Ok(false)
            }
        }
    }

    /// Handle one event. `now` is the current Unix time if the device knows it (used for the
    /// Last State Change Time, expiry and the defer period). An `Err` is the /5 operation's
    /// refusal (or `Internal` after a flash failure, which also sets result 8).
    pub fn handle<F: NorFlash>(
        &mut self,
        flash: &mut F,
        now: Option<u64>,
        event: Event<'_>,
    ) -> Result<(), OpError> {
        match event {
            Event::WritePackageUri(uri) => self.write_uri(flash, now, uri),
            Event::WritePackage { offset, data } => self.write_package(flash, now, offset, data),
            Event::Execute => match self.step {
                Step::Downloaded | Step::InstallDeferred | Step::AwaitInstallAuth => {
                    self.execute(now)
                }
                _ => Err(OpError::MethodNotAllowed),
            },
            Event::Cancel => match self.step {
                Step::Idle | Step::Rebooting | Step::Testing => Err(OpError::MethodNotAllowed),
                _ => self.discard(flash, now, UpdateResult::Cancelled, false),
            },
            Event::WriteSeverity(v) => {
                self.severity = Severity::from_u8(v).ok_or(OpError::BadRequest)?;
                Ok(())
            }
            Event::WriteMaxDeferPeriod(v) => {
                self.max_defer_period = v;
                Ok(())
            }
            Event::ManifestFetched(bytes) => {
                if self.step != Step::FetchingManifest {
                    return Ok(());
                }
                match self.envelope.get_mut(..bytes.len()) {
                    Some(dst) => {
                        dst.copy_from_slice(bytes);
                        self.envelope_len = bytes.len();
                        self.accept_envelope(flash, now)
                    }
                    None => self.discard(flash, now, UpdateResult::UnsupportedPackage, false),
                }
            }
            Event::Block {
                offset,
                data,
                token,
            } => self.on_block(flash, now, offset, data, token),
            Event::DownloadFailed(why) => {
                let active = matches!(self.step, Step::FetchingManifest)
                    || (self.step == Step::Downloading && self.delivery == Delivery::Pull);
                if !active {
                    return Ok(());
                }
                match why {
                    DownloadFailure::ConnectionLost if self.step == Step::Downloading => {
                        // Keep the journal: a resume, a reboot or the same manifest continues.
                        self.finish(now, UpdateResult::ConnectionLost);
                        Ok(())
                    }
                    DownloadFailure::ConnectionLost => {
                        self.discard(flash, now, UpdateResult::ConnectionLost, false)
                    }
                    DownloadFailure::NotFound => {
                        self.discard(flash, now, UpdateResult::InvalidUri, false)
                    }
                    DownloadFailure::UnsupportedProtocol => {
                        self.discard(flash, now, UpdateResult::UnsupportedProtocol, false)
                    }
                }
            }
            Event::DownloadAuthorization(d) => {
                if self.step != Step::AwaitDownloadAuth {
                    return Ok(());
                }
                match effective(d, self.max_defer_period, self.journal.deferred_since, now) {
                    Decision::Authorize => self.start_download(flash, now),
                    Decision::Reject => self.discard(flash, now, UpdateResult::Cancelled, true),
                    Decision::Defer => {
                        self.journal.phase = Phase::DownloadDeferred;
                        self.journal.deferred_since =
                            self.journal.deferred_since.or(now).or(Some(0));
                        self.store_journal(flash, now)?;
                        self.transition(now, Step::DownloadDeferred, UpdateResult::Deferred);
                        Ok(())
                    }
                }
            }
            Event::InstallAuthorization(d) => {
                if self.step != Step::AwaitInstallAuth {
                    return Ok(());
                }
                match effective(d, self.max_defer_period, self.journal.deferred_since, now) {
                    Decision::Authorize => self.install(flash, now, true),
                    Decision::Reject => self.discard(flash, now, UpdateResult::Cancelled, true),
                    Decision::Defer => self.install(flash, now, false),
                }
            }
            Event::SelfTest { passed } => self.self_test(flash, now, passed),
            Event::Resume | Event::RegistrationUpdated => self.resume(flash, now),
        }
    }

    /// The next action to carry out, oldest first. Drain after every event.
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.queued == 0 {
            return None;
        }
        let a = self.actions.get_mut(self.head).and_then(Option::take);
        self.head = (self.head + 1) % QUEUE;
        self.queued -= 1;
        a
    }

    /// /5/0/3 State.
    pub fn state(&self) -> State {
        self.step.state()
    }

    /// The internal step (finer than the /5 State).
    pub fn step(&self) -> Step {
        self.step
    }

    /// /5/0/5 Update Result.
    pub fn result(&self) -> UpdateResult {
        self.result
    }

    /// /5/0/11 Severity.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// /5/0/13 Maximum Defer Period.
    pub fn max_defer_period(&self) -> u32 {
        self.max_defer_period
    }

    /// /5/0/12 Last State Change Time.
    pub fn last_state_change_time(&self) -> Option<u64> {
        self.last_change
    }

    /// Download statistics.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The boot state as last read or written.
    pub fn boot_state(&self) -> &BootState {
        &self.boot
    }

    /// /5/0/1 Package URI (empty if none).
    pub fn package_uri(&self) -> &str {
        self.uri
            .get(..self.uri_len)
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    fn envelope_str(&self, range: Option<(u16, u16)>) -> Option<&str> {
        let (a, b) = range?;
        let bytes = self.envelope.get(usize::from(a)..usize::from(b))?;
        core::str::from_utf8(bytes).ok()
    }

    /// The image URI from the signed manifest (where blocks are fetched from).
    pub fn image_uri(&self) -> Option<&str> {
        self.envelope_str(self.pending?.uri)
    }

    /// /5/0/7 PkgVersion of the manifest in progress.
    pub fn pkg_version(&self) -> Option<&str> {
        self.envelope_str(self.pending?.version)
    }

    /// The resume token recorded for the download.
    pub fn resume_token(&self) -> &[u8] {
        self.journal.token.as_bytes()
    }

    /// Image bytes received and hashed so far, and the signed size.
    pub fn download_progress(&self) -> Option<(u32, u32)> {
        self.verifier.as_ref().map(|v| (v.received(), v.size()))
    }

    // ---- transitions -------------------------------------------------------------------

    fn push(&mut self, action: Action) {
        if self.queued == QUEUE {
            // The runtime did not drain: drop the oldest.
            self.head = (self.head + 1) % QUEUE;
            self.queued -= 1;
            self.stats.actions_dropped += 1;
        }
        let i = (self.head + self.queued) % QUEUE;
        if let Some(slot) = self.actions.get_mut(i) {
            *slot = Some(action);
        }
        self.queued += 1;
    }

    fn transition(&mut self, now: Option<u64>, step: Step, result: UpdateResult) {
        let old = (self.step.state(), self.result);
        self.step = step;
        self.result = result;
        if old != (step.state(), result) {
            if now.is_some() {
                self.last_change = now;
            }
            self.push(Action::Notify {
                state: step.state(),
                result,
                changed_at: self.last_change,
            });
        }
    }

    /// End of an update flow: Idle with `result`, and tell the application.
    fn finish(&mut self, now: Option<u64>, result: UpdateResult) {
        let was_busy = self.step != Step::Idle;
        self.transition(now, Step::Idle, result);
        if was_busy {
            self.push(Action::Completed(result));
        }
    }

    fn flash_error(&mut self, now: Option<u64>) -> OpError {
        self.verifier = None;
        self.carry_len = 0;
        // A failed write may have programmed words past the durable offset.
        self.image_clean = false;
        self.journal_synced = false;
        self.finish(now, UpdateResult::UpdateFailed);
        OpError::Internal
    }

    fn store_journal<F: NorFlash>(
        &mut self,
        flash: &mut F,
        now: Option<u64>,
    ) -> Result<(), OpError> {
        self.journal
            .store(flash, &self.config.layout)
            .map_err(|_| self.flash_error(now))?;
        self.journal_synced = true;
        Ok(())
    }

    /// Persist a new durable offset: an appended entry when the record on flash is otherwise
    /// current, else a full record.
    fn store_progress<F: NorFlash>(
        &mut self,
        flash: &mut F,
        now: Option<u64>,
    ) -> Result<(), OpError> {
        if self.journal_synced {
            // The record was written in this power cycle (`journal_synced` starts false), so
            // its entry slots are erased or hold this cycle's complete entries.
            match self.journal.append_offset(flash, &self.config.layout) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(_) => return Err(self.flash_error(now)),
            }
        }
        self.store_journal(flash, now)
    }

    fn pending_or_fail(&mut self, now: Option<u64>) -> Result<Pending, OpError> {
        match self.pending {
            Some(p) => Ok(p),
            None => Err(self.flash_error(now)),
        }
    }

    /// Drop the update in progress: Idle with `result`; remember the digest if rejected.
    fn discard<F: NorFlash>(
        &mut self,
        flash: &mut F,
        now: Option<u64>,
        result: UpdateResult,
        reject: bool,
    ) -> Result<(), OpError> {
        let digest = self.pending.map(|p| p.manifest_digest);
        self.pending = None;
        self.verifier = None;
        self.carry_len = 0;
        if let Some(Trial::Pending(_)) = self.boot.trial {
            self.boot.trial = None;
            self.boot
                .store(flash, &self.config.layout)
                .map_err(|_| self.flash_error(now))?;
        }
        let had_journal = self.journal.phase != Phase::None;
        self.journal.clear();
        if reject && let Some(d) = digest {
            self.journal.reject(d);
        }
        if had_journal || reject {
            self.store_journal(flash, now)?;
        }
        self.finish(now, result);
        Ok(())
    }

    // ---- manifest ----------------------------------------------------------------------

    fn verify_envelope(&self, now: Option<u64>) -> Result<Pending, UpdateResult> {
        let env = self
            .envelope
            .get(..self.envelope_len)
            .ok_or(UpdateResult::UnsupportedPackage)?;
        let v = updraft_manifest::verify(env, self.config.trusted_keys).map_err(|e| match e {
            // Not authenticated by a trusted key: an integrity failure.
            updraft_manifest::Error::BadSignature
            | updraft_manifest::Error::DigestMismatch
            | updraft_manifest::Error::NoKeyForAlgorithm(_) => UpdateResult::IntegrityFailure,
            // Anything the decoder cannot or will not read: not a package for us.
            _ => UpdateResult::UnsupportedPackage,
        })?;
        let m = &v.manifest;
        let slot: Region = self.config.layout.slot(self.boot.candidate_slot());
        let policy = Policy {
            vendor_id: self.config.vendor_id,
            class_id: self.config.class_id,
            installed_sequence: self.boot.installed_sequence,
            max_image_size: u64::from(slot.size),
            now,
        };
        m.check_policy(&policy).map_err(|e| match e {
            PolicyError::WrongVendor | PolicyError::WrongClass => UpdateResult::UnsupportedPackage,
            PolicyError::TooLarge { .. } => UpdateResult::NotEnoughFlash,
            PolicyError::Rollback { .. } | PolicyError::Expired(_) => {
                UpdateResult::IntegrityFailure
            }
        })?;
        if m.precursor_digest.is_some() {
            // Deltas are not supported: refusing them defends "delta on the wrong base".
            return Err(UpdateResult::UnsupportedPackage);
        }
        let image_size = u32::try_from(m.image_size)
            .ok()
            .filter(|s| *s <= slot.size)
            .ok_or(UpdateResult::NotEnoughFlash)?;
        Ok(Pending {
            manifest_digest: v.manifest_digest,
            image_digest: m.image_digest,
            image_size,
            sequence: m.sequence,
            uri: m.uri.and_then(|u| range_in(env, u.as_bytes())),
            version: m.version.and_then(|u| range_in(env, u.as_bytes())),
        })
    }

    /// The envelope in the buffer is complete: verify it before anything is written.
    fn accept_envelope<F: NorFlash>(
        &mut self,
        flash: &mut F,
        now: Option<u64>,
    ) -> Result<(), OpError> {
        let p = match self.verify_envelope(now) {
            Ok(p) => p,
            Err(result) => {
                // Nothing written: the journal of an older interrupted download stays.
                self.pending = None;
                self.finish(now, result);
                return Ok(());
            }
        };
        if self.journal.is_rejected(&p.manifest_digest) {
            self.pending = None;
            self.finish(now, UpdateResult::Cancelled);
            return Ok(());
        }
        self.pending = Some(p);
        let same = self.journal.manifest_digest == p.manifest_digest;
        if same
            && self.journal.phase == Phase::Downloading
            && self.config.resume == ResumeMode::Resume
            && self.delivery == Delivery::Pull
        {
            // The same manifest again after an interruption: already authorized, continue.
            self.transition(now, Step::Downloading, UpdateResult::Initial);
            return self.resume_download(flash, now);
        }
        let env = self.envelope.get(..self.envelope_len).unwrap_or(&[]);
        EnvelopeStore::store(flash, &self.config.layout, env).map_err(|_| self.flash_error(now))?;
        self.journal.clear();
        self.journal.phase = Phase::AwaitDownloadAuth;
        self.journal.manifest_digest = p.manifest_digest;
        self.store_journal(flash, now)?;
        self.transition(now, Step::AwaitDownloadAuth, UpdateResult::Initial);
        self.ask_download();
        Ok(())
    }

    fn ask_download(&mut self) {
        if let Some(p) = self.pending {
            self.push(Action::AuthorizeDownload {
                sequence: p.sequence,
                image_size: p.image_size,
                manifest_digest: p.manifest_digest,
            });
        }
    }

    fn ask_install(&mut self) {
        if let Some(p) = self.pending {
            self.push(Action::AuthorizeInstall {
                sequence: p.sequence,
                manifest_digest: p.manifest_digest,
            });
        }
    }

    // ---- /5 writes ---------------------------------------------------------------------

    fn write_uri<F: NorFlash>(
        &mut self,
        flash: &mut F,
        now: Option<u64>,
        uri: &str,
    ) -> Result<(), OpError> {
        if self.step.state() == State::Updating {
            return Err(OpError::MethodNotAllowed);
        }
        if uri.is_empty() {
            self.uri_len = 0;
            return self.discard(flash, now, UpdateResult::Initial, false);
        }
        if self.step != Step::Idle {
            return Err(OpError::BadRequest);
        }
        if let Err(e) = check_uri(uri, self.config.protocols) {
            let result = match e {
                UriError::Invalid => UpdateResult::InvalidUri,
                UriError::UnsupportedScheme => UpdateResult::UnsupportedProtocol,
            };
            self.transition(now, Step::Idle, result);
            return Err(OpError::BadRequest);
        }
        if let Some(dst) = self.uri.get_mut(..uri.len()) {
            dst.copy_from_slice(uri.as_bytes());
            self.uri_len = uri.len();
        }
        self.delivery = Delivery::Pull;
        self.transition(now, Step::FetchingManifest, UpdateResult::Initial);
        self.push(Action::FetchManifest);
        Ok(())
    }

    fn write_package<F: NorFlash>(
        &mut self,
        flash: &mut F,
        now: Option<u64>,
        offset: u32,
        data: &[u8],
    ) -> Result<(), OpError> {
        if self.step.state() == State::Updating {
            return Err(OpError::MethodNotAllowed);
        }
        if offset == 0 && data == [0] {
            return self.discard(flash, now, UpdateResult::Initial, false);
        }
        match self.step {
            Step::Idle if offset == 0 => {
                self.delivery = Delivery::Push;
                self.push_consumed = 0;
                self.envelope_len = 0;
                self.transition(now, Step::ReceivingPush, UpdateResult::Initial);
            }
            Step::ReceivingPush
            | Step::AwaitDownloadAuth
            | Step::DownloadDeferred
            | Step::Downloading
                if self.delivery == Delivery::Push => {}
            _ => {
                self.stats.blocks_dropped += 1;
                return Err(OpError::BadRequest);
            }
        }
        self.stats.blocks_received += 1;
        let consumed = match (self.step, &self.verifier) {
            (Step::Downloading, Some(v)) => 4 + self.envelope_len as u32 + v.received(),
            (Step::ReceivingPush, _) => self.push_consumed,
            _ => 4 + self.envelope_len as u32,
        };
        if offset > consumed {
            self.stats.blocks_dropped += 1;
            return Err(OpError::BadRequest);
        }
        let skip = (consumed - offset) as usize;
        let Some(mut rest) = data.get(skip..).filter(|r| !r.is_empty()) else {
            self.stats.blocks_dropped += 1; // a duplicate
            return Ok(());
        };
        if self.step == Step::ReceivingPush {
            while self.push_consumed < 4 {
                let Some((&b, tail)) = rest.split_first() else {
                    return Ok(());
                };
                if let Some(h) = self.push_header.get_mut(self.push_consumed as usize) {
                    *h = b;
                }
                self.push_consumed += 1;
                rest = tail;
            }
            let want = u32::from_be_bytes(self.push_header) as usize;
            if want == 0 || want > MAX_ENVELOPE_LEN {
                return self.discard(flash, now, UpdateResult::UnsupportedPackage, false);
            }
            let have = self.push_consumed as usize - 4;
            let take = rest.len().min(want.saturating_sub(have));
            let (part, tail) = rest.split_at(take);
            if let Some(dst) = self.envelope.get_mut(have..have + take) {
                dst.copy_from_slice(part);
            }
            self.push_consumed += take as u32;
            rest = tail;
            if have + take < want {
                return Ok(());
            }
            self.envelope_len = want;
            self.accept_envelope(flash, now)?;
        }
        if rest.is_empty() {
            return Ok(());
        }
        if self.step != Step::Downloading {
            // Authorization pending or deferred: the server retries this block later.
            return if self.step == Step::Idle {
                Ok(())
            } else {
                Err(OpError::ServiceUnavailable)
            };
        }
        self.process_image_bytes(flash, now, rest)
    }

    // ---- download ----------------------------------------------------------------------

    fn start_download<F: NorFlash>(
        &mut self,
        flash: &mut F,
        now: Option<u64>,
    ) -> Result<(), OpError> {
        let p = self.pending_or_fail(now)?;
        self.journal.phase = Phase::Downloading;
        self.journal.offset = 0;
        self.journal.token = Token::default();
        self.journal.deferred_since = None;
        self.store_journal(flash, now)?;
        // Offset 0 is a sector start: the first write erases it.
        self.image_clean = true;
        self.verifier = Some(ImageVerifier::new(p.image_size, p.image_digest));
        self.carry_len = 0;
        self.last_percent = 0;
        self.transition(now, Step::Downloading, UpdateResult::Initial);
        if p.image_size == 0 {
            return self.download_complete(flash, now);
        }
        self.fetch_next();
        Ok(())
    }

    /// Continue a journaled download: re-hash the durable prefix from the candidate slot and
    /// ask for the next block.
    fn resume_download<F: NorFlash>(
        &mut self,
        flash: &mut F,
        now: Option<u64>,
    ) -> Result<(), OpError> {
        let p = self.pending_or_fail(now)?;
        let mut v = ImageVerifier::new(p.image_size, p.image_digest);
        let mut offset = self.journal.offset.min(p.image_size);
        if !self.config.layout.multiwrite && !self.image_clean && offset < p.image_size {
            // The write a cut (or a flash error) interrupted may have programmed, or half
            // programmed, words after the durable offset; a word may not be programmed twice:
            // continue from the start of its sector, which the next write erases.
            let sector = F::ERASE_SIZE as u32;
            offset = offset / sector * sector;
        }
        self.image_clean = true;
        let slot = self.config.layout.slot(self.boot.candidate_slot());
        let mut ok = true;
        read_chunks(flash, slot.offset, offset, |b| ok &= v.update(b).is_ok())
            .map_err(|_| self.flash_error(now))?;
        if !ok {
            v = ImageVerifier::new(p.image_size, p.image_digest);
            self.journal.offset = 0;
        }
        self.journal.offset = v.received();
        self.last_percent = (u64::from(v.received()) * 100 / u64::from(p.image_size.max(1))) as u8;
        self.verifier = Some(v);
        self.carry_len = 0;
        self.delivery = Delivery::Pull;
        self.step = Step::Downloading;
        if v_complete(&self.verifier) {
            return self.download_complete(flash, now);
        }
        self.fetch_next();
        Ok(())
    }

    fn fetch_next(&mut self) {
        if self.delivery != Delivery::Pull {
            return;
        }
        if let Some(v) = &self.verifier {
            let offset = v.received();
            let len = (v.size() - offset).min(self.config.block_size);
            self.stats.blocks_queued += 1;
            self.push(Action::FetchBlock { offset, len });
        }
    }

    fn on_block<F: NorFlash>(
        &mut self,
        flash: &mut F,
        now: Option<u64>,
        offset: u32,
        data: &[u8],
        token: &[u8],
    ) -> Result<(), OpError> {
        self.stats.blocks_received += 1;
        if self.step != Step::Downloading || self.delivery != Delivery::Pull {
            self.stats.blocks_dropped += 1;
            return Ok(());
        }
        let known = self.journal.token.as_bytes();
        if !known.is_empty() && known != token {
            // The resource changed under the same manifest: start again from zero.
            let p = self.pending_or_fail(now)?;
            self.verifier = Some(ImageVerifier::new(p.image_size, p.image_digest));
            self.carry_len = 0;
            self.journal.offset = 0;
            self.journal.token = Token::new(token).unwrap_or_default();
            self.journal_synced = false;
            self.last_percent = 0;
            if offset != 0 {
                self.stats.blocks_dropped += 1;
                self.fetch_next();
                return Ok(());
            }
        } else if known.is_empty() && !token.is_empty() {
            self.journal.token = Token::new(token).unwrap_or_default();
            self.journal_synced = false;
        }
        let expected = self.verifier.as_ref().map_or(0, ImageVerifier::received);
        if offset != expected || data.is_empty() {
            // Not the block asked for (a duplicate or a runtime bug): drop it. The request in
            // flight stays in flight; `Event::Resume` asks again if the runtime lost it.
            self.stats.blocks_dropped += 1;
            return Ok(());
        }
        self.process_image_bytes(flash, now, data)?;
        if self.step == Step::Downloading {
            self.fetch_next();
        }
        Ok(())
    }

    /// Hash, write and journal the next image bytes (pull or push).
    fn process_image_bytes<F: NorFlash>(
        &mut self,
        flash: &mut F,
        now: Option<u64>,
        data: &[u8],
    ) -> Result<(), OpError> {
        let Some(v) = self.verifier.as_mut() else {
            return Err(self.flash_error(now));
        };
        if v.update(data) == Err(VerifyError::TooLong) {
            self.stats.blocks_dropped += 1;
            return self.discard(flash, now, UpdateResult::IntegrityFailure, false);
        }
        let (received, size, complete) = (v.received(), v.size(), v.is_complete());
        // Whole program units only, each written once (see `layout`): the rest is carried.
        let w = PROGRAM_UNIT;
        let slot = self.config.layout.slot(self.boot.candidate_slot());
        let mut pos = self.journal.offset;
        let mut rest = data;
        if self.carry_len > 0 {
            let take = (w - self.carry_len).min(rest.len());
            let (part, tail) = rest.split_at(take);
            if let Some(dst) = self.carry.get_mut(self.carry_len..self.carry_len + take) {
                dst.copy_from_slice(part);
            }
            self.carry_len += take;
            rest = tail;
            if self.carry_len == w {
                let chunk = self.carry;
                write_image(flash, slot, pos, chunk.get(..w).unwrap_or(&[]))
                    .map_err(|_| self.flash_error(now))?;
                pos += w as u32;
                self.carry_len = 0;
            }
        }
        let aligned = rest.len() - rest.len() % w;
        let (body, tail) = rest.split_at(aligned);
        write_image(flash, slot, pos, body).map_err(|_| self.flash_error(now))?;
        pos += aligned as u32;
        if let Some(dst) = self
            .carry
            .get_mut(self.carry_len..self.carry_len + tail.len())
        {
            dst.copy_from_slice(tail);
            self.carry_len += tail.len();
        }
        if complete && self.carry_len > 0 {
            let mut chunk = [0xFFu8; PROGRAM_UNIT];
            if let (Some(dst), Some(src)) = (
                chunk.get_mut(..self.carry_len),
                self.carry.get(..self.carry_len),
            ) {
                dst.copy_from_slice(src);
            }
            // The image's last, partial unit: padded to the write size only (nothing is ever
            // written after the image end, so the unit is still programmed once), so the slot
            // holds exactly the image on a flash with small writes (the agent's files).
            let tail = self.carry_len.div_ceil(F::WRITE_SIZE.max(1)) * F::WRITE_SIZE.max(1);
            write_image(flash, slot, pos, chunk.get(..tail.min(w)).unwrap_or(&[]))
                .map_err(|_| self.flash_error(now))?;
            pos += tail.min(w) as u32;
            self.carry_len = 0;
        }
        self.stats.blocks_processed += 1;
        self.journal.offset = pos.min(size);
        let percent = (u64::from(received) * 100 / u64::from(size.max(1))) as u8;
        if percent / 5 > self.last_percent / 5 {
            self.push(Action::Progress {
                percent: percent / 5 * 5,
            });
        }
        self.last_percent = percent;
        if complete {
            return self.download_complete(flash, now);
        }
        self.store_progress(flash, now)
    }

    fn download_complete<F: NorFlash>(
        &mut self,
        flash: &mut F,
        now: Option<u64>,
    ) -> Result<(), OpError> {
        let verdict = self.verifier.as_ref().map(ImageVerifier::finish);
        if verdict != Some(Ok(())) {
            return self.discard(flash, now, UpdateResult::IntegrityFailure, false);
        }
        self.journal.phase = Phase::Downloaded;
        self.store_journal(flash, now)?;
        self.transition(now, Step::Downloaded, UpdateResult::Initial);
        if self.config.auto_execute {
            self.execute(now)?;
        }
        Ok(())
    }

    // ---- install and trial -------------------------------------------------------------

    fn execute(&mut self, now: Option<u64>) -> Result<(), OpError> {
        let result = self.result;
        self.transition(now, Step::AwaitInstallAuth, result);
        self.ask_install();
        Ok(())
    }

    /// Mark the candidate for a trial boot; `now` requests the reboot, otherwise the install
    /// is deferred to the next reboot.
    fn install<F: NorFlash>(
        &mut self,
        flash: &mut F,
        now: Option<u64>,
        reboot_now: bool,
    ) -> Result<(), OpError> {
        let p = self.pending_or_fail(now)?;
        let candidate = Candidate {
            slot: self.boot.candidate_slot(),
            sequence: p.sequence,
            image_digest: p.image_digest,
            manifest_digest: p.manifest_digest,
            size: p.image_size,
        };
        if reboot_now {
            self.transition(now, Step::Rebooting, UpdateResult::Initial);
        }
        if self.boot.trial != Some(Trial::Pending(candidate)) {
            let before = self.boot.trial;
            self.boot.trial = Some(Trial::Pending(candidate));
            if self.boot.store(flash, &self.config.layout).is_err() {
                self.boot.trial = before;
                if !reboot_now {
                    return Err(self.flash_error(now));
                }
                // Updating -> Downloaded, result 8: the install failed, the verified image is
                // still in the candidate slot and can be installed again.
                self.transition(now, Step::Downloaded, UpdateResult::UpdateFailed);
                return Err(OpError::Internal);
            }
        }
        if reboot_now {
            self.push(Action::Reboot);
        } else {
            self.journal.phase = Phase::InstallDeferred;
            self.journal.deferred_since = self.journal.deferred_since.or(now).or(Some(0));
            self.store_journal(flash, now)?;
            self.transition(now, Step::InstallDeferred, UpdateResult::Deferred);
        }
        Ok(())
    }

    fn self_test<F: NorFlash>(
        &mut self,
        flash: &mut F,
        now: Option<u64>,
        passed: bool,
    ) -> Result<(), OpError> {
        if self.step != Step::Testing {
            return Err(OpError::MethodNotAllowed);
        }
        let layout = self.config.layout;
        if passed {
            self.boot = boot::confirm(flash, &layout).map_err(|_| self.flash_error(now))?;
            self.push(Action::ImageState(ImageState::Accepted));
            self.journal.clear();
            self.store_journal(flash, now)?;
            self.finish(now, UpdateResult::Success);
        } else {
            self.boot = boot::reject(flash, &layout).map_err(|_| self.flash_error(now))?;
            self.push(Action::ImageState(ImageState::Rejected));
            self.step = Step::Rebooting;
            self.push(Action::Reboot);
        }
        Ok(())
    }

    fn resume<F: NorFlash>(&mut self, flash: &mut F, now: Option<u64>) -> Result<(), OpError> {
        match self.step {
            Step::DownloadDeferred => {
                let result = self.result;
                self.transition(now, Step::AwaitDownloadAuth, result);
                self.ask_download();
                Ok(())
            }
            Step::InstallDeferred => self.execute(now),
            Step::Downloading => {
                self.fetch_next();
                Ok(())
            }
            Step::Idle if self.journal.phase == Phase::Downloading => {
                if self.pending.is_none() && !self.restore_manifest(flash, now)? {
                    return Ok(());
                }
                self.transition(now, Step::Downloading, UpdateResult::Initial);
                self.resume_download(flash, now)
            }
            _ => Ok(()),
        }
    }
}

fn v_complete(v: &Option<ImageVerifier>) -> bool {
    v.as_ref().is_some_and(ImageVerifier::is_complete)
}

/// Write image bytes at `pos` of `slot`, erasing each sector whose start the write covers
/// first (sectors are erased lazily, as the download reaches them).
fn write_image<F: NorFlash>(
    flash: &mut F,
    slot: Region,
    pos: u32,
    bytes: &[u8],
) -> Result<(), F::Error> {
    if bytes.is_empty() {
        return Ok(());
    }
    let erase = F::ERASE_SIZE as u32;
    let end = pos.saturating_add(bytes.len() as u32).min(slot.size);
    let mut s = pos.div_ceil(erase) * erase;
    while s < end {
        flash.erase(slot.offset + s, slot.offset + s + erase)?;
        s += erase;
    }
    flash.write(slot.offset + pos, bytes)
}
