//! The `run` step: the daemon loop that drives the device core over DDI.
//!
//! Each turn: poll the controller base; on a cancel link answer it; on a deployment link fetch
//! the deployment and start it (write its `.suit` URL as the Package URI); then serve the core's
//! actions until it has none ([`Runtime::drain`]); then sleep the server's polling interval
//! plus jitter. A whole download runs inside one drain: each `FetchBlock` is one HTTP Range
//! request into the block buffer, answered with `Event::Block`.
//!
//! The core's actions become DDI feedback:
//!
//! | core | feedback |
//! | --- | --- |
//! | download authorized / rejected / deferred | `download` / `rejected` / `scheduled` |
//! | `Progress` (every 5 %) | `proceeding` with `progress {cnt: percent, of: 100}` |
//! | State Downloaded | `downloaded` |
//! | install authorized / rejected / deferred | `proceeding` / `rejected` / `scheduled` |
//! | `Completed(Success)` (after the trial image confirmed) | `closed` + `success`, installed version |
//! | manifest refused as a downgrade | `rejected` with the sequence numbers |
//! | any other failure | `closed` + `failure` with the reason |
//! | `Completed(ConnectionLost)` | `proceeding` (the journal is kept; the next poll resumes) |
//!
//! A cancel (`cancelAction`) is accepted with `closed` before the install (it is also looked for
//! at each progress report, so a download can be cancelled midway) and refused with `rejected`
//! once the new image is installed. A `configData` link is answered with the agent version,
//! vendor, class and installed version. Final reports are kept in `agent.json` until the server
//! acknowledges them (2xx or 410).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use updraft_device::boot::Trial;
use updraft_device::object5::Protocols;
use updraft_device::update::Step;
use updraft_device::{
    Action, Config, Decision, DownloadFailure, Event, ImageState, Layout, Slot, State, UpdateCore,
    UpdateResult,
};
use updraft_manifest::{MAX_ENVELOPE_LEN, Policy, PolicyError};

use crate::config::{AgentConfig, SECTOR};
use crate::ddi::{DdiClient, DdiError, Deployment, Feedback, PollAnswer};
use crate::flash::FileFlash;
use crate::hooks::{self, Phase};
use crate::state::AgentState;

/// Default polling interval when the server gives none.
const DEFAULT_POLL: Duration = Duration::from_secs(300);
/// Attempts per block before the download counts as interrupted.
const BLOCK_ATTEMPTS: u32 = 3;

/// The core's layout for a config.
pub fn layout(config: &AgentConfig) -> Layout {
    // The file flash is NOR-honest (`old & new`, no ECC words): a half-written block may be
    // written again, so a resume continues at the durable offset instead of rewinding to the
    // start of its sector (at most one block downloaded again after a kill).
    Layout {
        multiwrite: true,
        ..Layout::packed(config.slot_size, SECTOR)
    }
}

/// Open the file flash of a config.
pub fn open_flash(config: &AgentConfig) -> anyhow::Result<FileFlash> {
    FileFlash::open(
        &layout(config),
        &config.slot_a,
        &config.slot_b,
        &config.state_dir,
    )
    .context("opening the slots and state directory")
}

fn now() -> Option<u64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// A resume token for the core (at most 64 bytes): the ETag itself, or its SHA-256.
fn token_of(etag: &str) -> Vec<u8> {
    if etag.len() <= updraft_device::journal::MAX_TOKEN_LEN {
        etag.as_bytes().to_vec()
    } else {
        use sha2::Digest as _;
        sha2::Sha256::digest(etag.as_bytes()).to_vec()
    }
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Idle => "idle",
        State::Downloading => "downloading",
        State::Downloaded => "downloaded",
        State::Updating => "updating",
    }
}

/// The name of an Update Result, for logs and `status`.
pub fn result_name(r: UpdateResult) -> &'static str {
    match r {
        UpdateResult::Initial => "initial",
        UpdateResult::Success => "success",
        UpdateResult::NotEnoughFlash => "not enough flash",
        UpdateResult::OutOfRam => "out of RAM",
        UpdateResult::ConnectionLost => "connection lost",
        UpdateResult::IntegrityFailure => "integrity check failure",
        UpdateResult::UnsupportedPackage => "unsupported package",
        UpdateResult::InvalidUri => "invalid URI",
        UpdateResult::UpdateFailed => "update failed",
        UpdateResult::UnsupportedProtocol => "unsupported protocol",
        UpdateResult::Cancelled => "cancelled",
        UpdateResult::Deferred => "deferred",
    }
}

/// The daemon: the core, its flash, the DDI client and the agent's bookkeeping.
pub struct Runtime<'k> {
    config: &'k AgentConfig,
    flash: FileFlash,
    core: UpdateCore<'k>,
    ddi: DdiClient,
    state: AgentState,
    buf: Vec<u8>,
    /// The core's step before the last event (tells where a failure happened).
    feed_step: Step,
    last_image_state: Option<ImageState>,
    /// The last envelope fetched (to explain a refusal).
    envelope: Vec<u8>,
    /// A reason the runtime knows better than the core's result code.
    failure_detail: Option<String>,
    /// A cancel or an application rejection is being reported separately.
    quiet_completion: bool,
    /// The statistics of earlier processes (the core's count from zero at each start).
    stats_before: crate::state::StoredStats,
}

impl<'k> Runtime<'k> {
    /// Start the core on the files of `config` (after the `boot` step selected the slot).
    pub fn start(config: &'k AgentConfig) -> anyhow::Result<Runtime<'k>> {
        let mut flash = open_flash(config)?;
        let core_config = Config {
            layout: layout(config),
            trusted_keys: &config.trusted_keys,
            vendor_id: config.vendor_id,
            class_id: config.class_id,
            resume: config.resume,
            block_size: config.block_size,
            protocols: Protocols(Protocols::HTTP | Protocols::HTTPS),
            auto_execute: true,
        };
        let core = UpdateCore::start(&mut flash, core_config, now())
            .map_err(|e| anyhow::anyhow!("the update core could not start: {e:?}"))?;
        let mut core = core;
        let defer = u32::try_from(config.max_defer.as_secs()).unwrap_or(u32::MAX);
        // Not persisted by the core: given again at every start, before any deferral is asked.
        let _ = core.handle(&mut flash, now(), Event::WriteMaxDeferPeriod(defer));
        let mut state = AgentState::load(&config.state_dir);
        state.starts += 1;
        let stats_before = state.stats;
        Ok(Runtime {
            config,
            flash,
            feed_step: core.step(),
            core,
            ddi: DdiClient::new(config),
            state,
            buf: vec![0; config.block_size as usize],
            last_image_state: None,
            envelope: Vec::new(),
            failure_detail: None,
            quiet_completion: false,
            stats_before,
        })
    }

    /// The slot whose image is running: the trial candidate while testing, else the active one.
    pub fn running_slot(&self) -> Slot {
        let boot = self.core.boot_state();
        match boot.trial {
            Some(Trial::Booted(c)) => c.slot,
            _ => boot.active,
        }
    }

    /// The daemon loop; returns only on a fatal error (a reboot execs or exits).
    pub fn run(mut self) -> anyhow::Result<()> {
        tracing::info!(
            slot = ?self.running_slot(),
            state = state_name(self.core.state()),
            sequence = self.core.boot_state().installed_sequence,
            "agent started"
        );
        if self.state.installed_version.is_none() && self.core.step() != Step::Testing {
            self.state.installed_version =
                hooks::image_version(hooks::slot_path(self.config, self.running_slot()));
        }
        self.drain();
        if self.core.step() == Step::Testing {
            let passed = hooks::self_test(self.config, self.running_slot());
            tracing::info!(passed, "self-test of the trial image");
            if !passed {
                self.failure_detail = Some("self-test of the new image failed".into());
            }
            self.feed(Event::SelfTest { passed });
            self.drain();
        }
        self.save();
        loop {
            self.flush_feedback();
            let sleep = match self.ddi.poll() {
                Ok(answer) => {
                    let sleep = answer.sleep;
                    self.on_poll(answer);
                    sleep
                }
                Err(e) => {
                    tracing::warn!(error = %e, "poll failed");
                    None
                }
            };
            self.drain();
            self.save();
            std::thread::sleep(self.interval(sleep));
        }
    }

    fn interval(&self, server: Option<Duration>) -> Duration {
        let base = self.config.poll_interval.or(server).unwrap_or(DEFAULT_POLL);
        let max_jitter = self.config.poll_jitter.unwrap_or(base / 10);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter = max_jitter.mul_f64(f64::from(nanos % 1000) / 1000.0);
        base + jitter
    }

    fn save(&mut self) {
        self.state.state = state_name(self.core.state()).into();
        self.state.result = result_name(self.core.result()).into();
        self.state.stats = self.stats_before.plus(self.core.stats());
        if let Err(e) = self.state.save(&self.config.state_dir) {
            tracing::warn!(error = %e, "could not save agent state");
        }
    }

    fn feed(&mut self, event: Event<'_>) {
        self.feed_step = self.core.step();
        if let Err(e) = self.core.handle(&mut self.flash, now(), event) {
            tracing::debug!(error = ?e, "core refused the event");
        }
    }

    // ---- server side -------------------------------------------------------------------

    fn on_poll(&mut self, answer: PollAnswer) {
        if let Some(url) = &answer.config_data {
            let attributes = [
                ("updraft.agent", env!("CARGO_PKG_VERSION").to_string()),
                ("updraft.vendor_id", self.config.vendor_id.to_string()),
                ("updraft.class_id", self.config.class_id.to_string()),
                (
                    "updraft.installed_version",
                    self.state.installed_version.clone().unwrap_or_default(),
                ),
            ];
            if let Err(e) = self.ddi.config_data(url, &attributes) {
                tracing::warn!(error = %e, "configData not accepted");
            }
        }
        if let Some(url) = answer.cancel {
            match self.ddi.cancel_action(&url) {
                Ok(id) => self.on_cancel(&id),
                Err(e) => tracing::warn!(error = %e, "cancel action unreadable"),
            }
            return;
        }
        let Some(url) = answer.deployment else {
            return;
        };
        let d = match self.ddi.deployment(&url) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "deployment unreadable");
                return;
            }
        };
        if self.state.is_finished(&d.action_id) {
            return; // our final report is pending or on its way
        }
        let ours = self
            .state
            .deployment
            .as_ref()
            .is_some_and(|o| o.action_id == d.action_id);
        match self.core.step() {
            Step::Idle => self.start_deployment(d),
            Step::DownloadDeferred | Step::InstallDeferred if ours => {
                self.feed(Event::RegistrationUpdated);
            }
            Step::Rebooting | Step::Testing => {}
            _ if ours => {}
            _ => {
                // The server moved on to another action: drop ours, start the new one.
                tracing::info!(action = %d.action_id, "new deployment replaces the one in progress");
                self.quiet_completion = true;
                self.feed(Event::Cancel);
                self.drain();
                self.quiet_completion = false;
                if self.core.step() == Step::Idle {
                    self.start_deployment(d);
                }
            }
        }
    }

    fn start_deployment(&mut self, d: Deployment) {
        let same = self
            .state
            .deployment
            .as_ref()
            .is_some_and(|o| o.action_id == d.action_id && o.image_url == d.image_url);
        tracing::info!(action = %d.action_id, version = %d.version, resume = same, "deployment");
        if !same {
            self.state.etag = None;
        }
        self.state.deployment = Some(d.clone());
        self.failure_detail = None;
        self.last_image_state = None;
        self.save();
        self.send(&Feedback::new(
            "proceeding",
            "none",
            vec![format!("verifying the signed manifest of {}", d.version)],
        ));
        self.feed(Event::WritePackageUri(&d.manifest_url));
        if self.core.step() == Step::Idle {
            self.failure_detail = Some(format!(
                "the manifest URL is not usable as a Package URI ({} bytes)",
                d.manifest_url.len()
            ));
            self.completed(UpdateResult::InvalidUri);
        }
    }

    /// During a download (at each progress report): has the server asked to cancel?
    fn check_cancel(&mut self) {
        if let Ok(PollAnswer {
            cancel: Some(url), ..
        }) = self.ddi.poll()
        {
            match self.ddi.cancel_action(&url) {
                Ok(id) => self.on_cancel(&id),
                Err(e) => tracing::warn!(error = %e, "cancel action unreadable"),
            }
        }
    }

    fn on_cancel(&mut self, id: &str) {
        let cancellable = !matches!(self.core.step(), Step::Rebooting | Step::Testing);
        let fb = if cancellable {
            if self.core.step() != Step::Idle {
                self.quiet_completion = true;
                self.feed(Event::Cancel);
                self.drain();
                self.quiet_completion = false;
            }
            self.state.deployment = None;
            self.state.mark_finished(id);
            Feedback::new("closed", "success", vec!["cancelled before install".into()])
        } else {
            Feedback::new(
                "rejected",
                "none",
                vec!["the new image is already installed; too late to cancel".into()],
            )
        };
        tracing::info!(action = id, accepted = cancellable, "cancel request");
        if let Err(e) = self.ddi.cancel_feedback(id, &fb) {
            tracing::warn!(error = %e, "cancel feedback failed");
        }
        self.save();
    }

    /// Send progress-type feedback for the current deployment (best effort).
    fn send(&mut self, fb: &Feedback) {
        let Some(id) = self.state.deployment.as_ref().map(|d| d.action_id.clone()) else {
            return;
        };
        match self.ddi.feedback(&id, fb) {
            Ok(()) => {}
            Err(e) if e.is_gone() => {
                tracing::info!(action = %id, "the server closed the action");
            }
            Err(e) => tracing::warn!(error = %e, "feedback failed"),
        }
    }

    /// End the current action with a final report (kept until the server has it).
    fn finish_action(&mut self, fb: Feedback) {
        let Some(d) = self.state.deployment.take() else {
            tracing::info!(?fb, "update ended without a deployment to report to");
            return;
        };
        tracing::info!(action = %d.action_id, execution = %fb.execution, finished = %fb.finished, details = ?fb.details, "update finished");
        self.state.last_outcome = Some(format!(
            "action {}: {} {}: {}",
            d.action_id,
            fb.execution,
            fb.finished,
            fb.details.join("; ")
        ));
        self.state.mark_finished(&d.action_id);
        self.state.unsent.push((d.action_id, fb));
        self.state.etag = None;
        self.save();
        self.flush_feedback();
    }

    fn flush_feedback(&mut self) {
        if self.state.unsent.is_empty() {
            return;
        }
        let unsent = std::mem::take(&mut self.state.unsent);
        for (id, fb) in unsent {
            match self.ddi.feedback(&id, &fb) {
                Ok(()) => {}
                Err(e) if e.is_gone() || e.is_not_found() => {
                    tracing::info!(action = %id, error = %e, "final report not needed any more");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "final report failed; will retry");
                    self.state.unsent.push((id, fb));
                }
            }
        }
        self.save();
    }

    // ---- the core's actions ------------------------------------------------------------

    /// Carry out the core's actions until it has none.
    pub fn drain(&mut self) {
        while let Some(action) = self.core.poll_action() {
            self.on_action(action);
        }
    }

    fn version(&self) -> String {
        self.core
            .pkg_version()
            .map(str::to_string)
            .or_else(|| self.state.deployment.as_ref().map(|d| d.version.clone()))
            .unwrap_or_default()
    }

    fn on_action(&mut self, action: Action) {
        match action {
            Action::Notify { state, result, .. } => {
                tracing::debug!(
                    state = state_name(state),
                    result = result_name(result),
                    "state"
                );
                if state == State::Downloaded && result == UpdateResult::Initial {
                    self.send(&Feedback::new(
                        "downloaded",
                        "none",
                        vec!["image downloaded and verified".into()],
                    ));
                }
            }
            Action::FetchManifest => self.fetch_manifest(),
            Action::FetchBlock { offset, len } => self.fetch_block(offset, len),
            Action::AuthorizeDownload { sequence, .. } => {
                let version = self.version();
                let d =
                    hooks::authorize(self.config, self.running_slot(), Phase::Download, &version);
                self.decide(d, Phase::Download, &version, sequence);
            }
            Action::AuthorizeInstall { sequence, .. } => {
                let version = self.version();
                let window_closed = self.state.deployment.as_ref().is_some_and(|d| {
                    d.update == "skip" || d.maintenance_window.as_deref() == Some("unavailable")
                });
                let d = if window_closed {
                    Decision::Defer
                } else {
                    hooks::authorize(self.config, self.running_slot(), Phase::Install, &version)
                };
                self.decide(d, Phase::Install, &version, sequence);
            }
            Action::Progress { percent } => {
                tracing::info!(percent, "download progress");
                let mut fb = Feedback::new(
                    "proceeding",
                    "none",
                    vec![format!("downloading: {percent} %")],
                );
                fb.progress = Some((u32::from(percent), 100));
                self.send(&fb);
                self.save();
                self.check_cancel();
            }
            Action::ImageState(s) => {
                tracing::info!(image_state = ?s, "image state");
                self.last_image_state = Some(s);
            }
            Action::Reboot => self.reboot(),
            Action::Completed(r) => self.completed(r),
        }
    }

    /// Give the application's answer to the core and report what the core made of it (a
    /// deferral past the Maximum Defer Period counts as authorization).
    fn decide(&mut self, d: Decision, phase: Phase, version: &str, sequence: u64) {
        let name = match phase {
            Phase::Download => "download",
            Phase::Install => "install",
        };
        if d == Decision::Reject {
            self.quiet_completion = true;
            self.finish_action(Feedback::new(
                "rejected",
                "none",
                vec![format!("{name} of {version} rejected by the device")],
            ));
        }
        self.feed(match phase {
            Phase::Download => Event::DownloadAuthorization(d),
            Phase::Install => Event::InstallAuthorization(d),
        });
        match (d, self.core.step()) {
            (Decision::Reject, _) => {}
            (_, Step::DownloadDeferred | Step::InstallDeferred) => self.send(&Feedback::new(
                "scheduled",
                "none",
                vec![format!("{name} of {version} deferred by the device")],
            )),
            (_, Step::Downloading) => self.send(&Feedback::new(
                "download",
                "none",
                vec![format!("downloading {version} (sequence {sequence})")],
            )),
            (_, Step::Rebooting) => self.send(&Feedback::new(
                "proceeding",
                "none",
                vec![format!("installing {version}; rebooting into a trial boot")],
            )),
            _ => {}
        }
    }

    fn fetch_manifest(&mut self) {
        let url = self.core.package_uri().to_string();
        match self.ddi.fetch_small(&url, 2 * MAX_ENVELOPE_LEN as u64) {
            Ok(bytes) => {
                self.envelope = bytes;
                let env = std::mem::take(&mut self.envelope);
                self.feed(Event::ManifestFetched(&env));
                self.envelope = env;
            }
            Err(e) => {
                tracing::warn!(error = %e, "manifest fetch failed");
                let why = if e.is_not_found() || matches!(e, DdiError::Status { status: 403, .. }) {
                    DownloadFailure::NotFound
                } else {
                    DownloadFailure::ConnectionLost
                };
                self.failure_detail = Some(format!("manifest download failed: {e}"));
                self.feed(Event::DownloadFailed(why));
            }
        }
    }

    fn fetch_block(&mut self, offset: u32, len: u32) {
        let Some(url) = self.state.deployment.as_ref().map(|d| d.image_url.clone()) else {
            // Resumed from the journal without a deployment: the next poll brings it back.
            self.feed(Event::DownloadFailed(DownloadFailure::ConnectionLost));
            return;
        };
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize((len as usize).max(1), 0);
        let mut failure = DownloadFailure::ConnectionLost;
        for attempt in 1..=BLOCK_ATTEMPTS {
            let if_range = self.state.etag.clone();
            match self
                .ddi
                .fetch_block(&url, offset, &mut buf, if_range.as_deref())
            {
                Ok(block) if block.len == 0 => {
                    self.failure_detail = Some(format!(
                        "the image artifact ends at {offset} bytes, before the signed size"
                    ));
                    failure = DownloadFailure::NotFound;
                    break;
                }
                Ok(block) => {
                    let token = block.etag.as_deref().map(token_of).unwrap_or_default();
                    if block.etag.is_some() && block.etag != self.state.etag {
                        self.state.etag = block.etag.clone();
                        self.save();
                    }
                    let data = buf.get(..block.len).unwrap_or(&[]);
                    self.feed(Event::Block {
                        offset,
                        data,
                        token: &token,
                    });
                    self.buf = buf;
                    return;
                }
                Err(e)
                    if matches!(
                        e,
                        DdiError::Status {
                            status: 403 | 404 | 410,
                            ..
                        }
                    ) =>
                {
                    tracing::warn!(error = %e, "image download refused");
                    self.failure_detail = Some(format!("image download failed: {e}"));
                    failure = DownloadFailure::NotFound;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, offset, "block fetch failed");
                    std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
                }
            }
        }
        self.buf = buf;
        self.feed(Event::DownloadFailed(failure));
    }

    fn reboot(&mut self) {
        self.save();
        let slot = self.running_slot();
        if let Some(ok) = hooks::reboot(self.config, slot) {
            tracing::info!(ok, "reboot command ran; exiting");
            std::process::exit(if ok { 0 } else { 1 });
        }
        let err = crate::boot::exec_boot_step(self.config);
        tracing::error!(error = %err, "could not exec the boot step");
        std::process::exit(1);
    }

    /// Why a manifest was refused, from a second look at the envelope.
    fn manifest_refusal(&self) -> Option<(bool, String)> {
        let v = match updraft_manifest::verify(&self.envelope, &self.config.trusted_keys) {
            Ok(v) => v,
            Err(e) => return Some((false, format!("manifest refused: {e}"))),
        };
        let installed = self.core.boot_state().installed_sequence;
        let policy = Policy {
            vendor_id: self.config.vendor_id,
            class_id: self.config.class_id,
            installed_sequence: installed,
            max_image_size: u64::from(self.config.slot_size),
            now: now(),
        };
        match v.manifest.check_policy(&policy) {
            Ok(()) => None,
            Err(PolicyError::Rollback { installed, found }) => Some((
                true,
                format!(
                    "downgrade refused: manifest sequence {found} is not above the installed {installed}"
                ),
            )),
            Err(e) => Some((false, format!("manifest refused: {e}"))),
        }
    }

    fn completed(&mut self, r: UpdateResult) {
        tracing::info!(result = result_name(r), "update flow ended");
        if std::mem::take(&mut self.quiet_completion) {
            return;
        }
        let detail = self.failure_detail.take();
        let fb = match r {
            UpdateResult::Success => {
                let version =
                    hooks::image_version(hooks::slot_path(self.config, self.running_slot()))
                        .or_else(|| self.state.deployment.as_ref().map(|d| d.version.clone()))
                        .unwrap_or_default();
                self.state.installed_version = Some(version.clone());
                let mut fb = Feedback::new(
                    "closed",
                    "success",
                    vec![format!("installed version {version}")],
                );
                fb.code = Some(200);
                fb
            }
            UpdateResult::ConnectionLost => {
                self.send(&Feedback::new(
                    "proceeding",
                    "none",
                    vec![format!(
                        "download interrupted ({}); resuming at the next poll",
                        detail.unwrap_or_else(|| "connection lost".into())
                    )],
                ));
                return;
            }
            UpdateResult::Cancelled => Feedback::new(
                "rejected",
                "none",
                vec!["this manifest was rejected by the device before".into()],
            ),
            UpdateResult::UpdateFailed if self.last_image_state == Some(ImageState::Rejected) => {
                let running =
                    hooks::image_version(hooks::slot_path(self.config, self.running_slot()))
                        .or_else(|| self.state.installed_version.clone())
                        .unwrap_or_else(|| "unknown".into());
                Feedback::new(
                    "closed",
                    "failure",
                    vec![format!(
                        "self-test failed: the new image did not confirm itself; reverted to version {running}"
                    )],
                )
            }
            _ => {
                let refusal = (self.feed_step == Step::FetchingManifest)
                    .then(|| self.manifest_refusal())
                    .flatten();
                match refusal {
                    Some((true, why)) => Feedback::new("rejected", "none", vec![why]),
                    Some((false, why)) => Feedback::new("closed", "failure", vec![why]),
                    None => {
                        let why = match (r, self.last_image_state) {
                            (_, Some(ImageState::Aborted)) => {
                                "the installed image failed its boot-time digest check".to_string()
                            }
                            (UpdateResult::IntegrityFailure, _)
                                if self.feed_step == Step::Downloading =>
                            {
                                "integrity check failure: the image does not match the digest and size of the signed manifest".to_string()
                            }
                            _ => detail.unwrap_or_else(|| result_name(r).to_string()),
                        };
                        let mut fb = Feedback::new(
                            "closed",
                            "failure",
                            vec![format!("{} (result {})", why, r as u8)],
                        );
                        fb.code = Some(r as i64);
                        fb
                    }
                }
            }
        };
        self.finish_action(fb);
    }
}
