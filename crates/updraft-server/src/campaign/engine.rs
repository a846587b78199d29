//! The campaign state machine: events and a clock in, decisions out.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::policy::{FailureKind, Policy, PolicyError, RampCriterion, ThresholdAction};
use super::roster::{DeviceId, Member, MemberStatus, Roster, Stage, UnixMs};

/// Most rows one step of the engine reads from the roster per query (starts, timeouts,
/// install triggers per tick; an abort loops over batches of this size).
pub const MAX_BATCH: usize = 1000;

/// The state of a campaign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    /// Being set up: the target can be filled, nothing starts.
    Draft,
    /// Starts by itself at its scheduled time.
    Scheduled,
    /// Starting devices phase by phase.
    Running,
    /// Starts no device; the started ones go on.
    Paused,
    /// Every device finished (final).
    Completed,
    /// Stopped; its not-installed devices were cancelled (final).
    Aborted,
}

impl CampaignStatus {
    /// Every state.
    pub const ALL: [CampaignStatus; 6] = [
        Self::Draft,
        Self::Scheduled,
        Self::Running,
        Self::Paused,
        Self::Completed,
        Self::Aborted,
    ];

    /// The name stored and shown in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Aborted => "aborted",
        }
    }

    /// A final state.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Aborted)
    }
}

/// Who made a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// The engine itself (schedule, thresholds, completion).
    Engine,
    /// An operator, by name.
    Admin(String),
}

/// Why a state changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// An operator's command.
    Command,
    /// The scheduled start time came.
    ScheduledTime,
    /// The error threshold was reached.
    ErrorThreshold {
        /// Failures of the counted kinds.
        failures: u64,
        /// Finished devices.
        finished: u64,
    },
    /// A finished phase's success rate stayed below its threshold; the next phase waits for an
    /// approval.
    BelowSuccessThreshold {
        /// The finished phase.
        phase: u32,
        /// Its succeeded devices.
        succeeded: u64,
        /// Its finished devices, not counting cancelled ones.
        counted: u64,
    },
    /// Every device finished.
    AllFinished,
}

/// One change of state, for the caller to store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    /// State before.
    pub from: CampaignStatus,
    /// State after.
    pub to: CampaignStatus,
    /// When (Unix ms).
    pub at: UnixMs,
    /// Who.
    pub by: Actor,
    /// Why.
    pub reason: Reason,
}

/// An operator's command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Start by itself at `at` (draft or scheduled: schedules or moves the time).
    Schedule {
        /// Unix ms.
        at: UnixMs,
    },
    /// Start now (draft or scheduled).
    Start,
    /// Stop starting devices (running).
    Pause,
    /// Start devices again (paused, unless the pause waits for an approval).
    Resume,
    /// Stop for good, cancelling the devices that have not installed.
    Abort,
    /// Let phase `phase` start: it awaits approval, or the previous one missed its success
    /// threshold and the operator overrides it.
    Approve {
        /// 1-based.
        phase: u32,
    },
    /// A dynamic campaign takes no more devices; it completes once those it has finish.
    Close,
}

impl Command {
    /// The command's name, as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Schedule { .. } => "schedule",
            Self::Start => "start",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Abort => "abort",
            Self::Approve { .. } => "approve",
            Self::Close => "close",
        }
    }

    /// Whether the command can apply in this state at all (further conditions: approve needs a
    /// phase waiting, resume a pause that is not waiting for an approval, close a dynamic
    /// campaign with an open target).
    pub fn allowed_in(&self, status: CampaignStatus) -> bool {
        use CampaignStatus as S;
        match self {
            Self::Schedule { .. } | Self::Start => matches!(status, S::Draft | S::Scheduled),
            Self::Pause => status == S::Running,
            Self::Resume => status == S::Paused,
            Self::Abort | Self::Close => !status.is_final(),
            Self::Approve { .. } => matches!(status, S::Running | S::Paused),
        }
    }
}

/// What a device's attempt ended with, as the fleet layer reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Runs the release.
    Succeeded,
    /// The update failed.
    Failed,
    /// The device refused it.
    Rejected,
    /// Cancelled (the device confirmed a cancel, or an operator cancelled this device).
    Cancelled,
    /// Timed out (a timeout decided outside the engine).
    TimedOut,
}

/// A decision for the caller to carry out (and store, for state changes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Assign the release to these devices now (first attempt), in phase `phase`.
    Start {
        /// 1-based phase.
        phase: u32,
        /// The devices.
        devices: Vec<DeviceId>,
    },
    /// Assign the release again to these devices (their previous attempt failed or timed out).
    Retry {
        /// The devices.
        devices: Vec<DeviceId>,
    },
    /// These downloaded devices may install now (inside the maintenance window).
    Install {
        /// The devices.
        devices: Vec<DeviceId>,
    },
    /// Cancel the deployment of these devices (abort: none of them has begun installing; or
    /// one removed device).
    Cancel {
        /// The devices.
        devices: Vec<DeviceId>,
    },
    /// This device stayed in one state too long: close its attempt as failed (timed out).
    TimeOut {
        /// The device.
        device: DeviceId,
    },
    /// The campaign changed state.
    StateChanged(StateChange),
    /// Phase `phase` started: its devices start as the rate allows.
    PhaseStarted {
        /// 1-based.
        phase: u32,
        /// When.
        at: UnixMs,
        /// The engine, or the operator who approved it.
        by: Actor,
    },
    /// Phase `phase` waits for an operator's approval.
    AwaitingApproval {
        /// 1-based.
        phase: u32,
    },
}

/// Why the engine refused an input; a refused input changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CampaignError {
    /// The command does not apply in this state.
    #[error("cannot {command} a {} campaign", status.as_str())]
    Refused {
        /// The command.
        command: &'static str,
        /// The state it met.
        status: CampaignStatus,
    },
    /// Resume of a campaign whose next phase waits for an approval.
    #[error(
        "phase {phase} waits for an approval (the previous phase missed its success threshold): approve phase {phase} or abort"
    )]
    NeedsApproval {
        /// The waiting phase.
        phase: u32,
    },
    /// Approve of a phase that is not waiting.
    #[error("phase {phase} is not waiting for an approval{}", waiting.map(|w| format!(" (phase {w} is)")).unwrap_or_default())]
    NotAwaitingApproval {
        /// The phase named.
        phase: u32,
        /// The phase that is waiting, if one is.
        waiting: Option<u32>,
    },
    /// Close of a campaign that is not dynamic or is already closed.
    #[error("only a dynamic campaign with an open target can be closed")]
    NotDynamic,
    /// A device added to a running campaign whose target is fixed.
    #[error(
        "the campaign's target is fixed: devices join only in draft or scheduled, or while a dynamic campaign's target is open"
    )]
    TargetFixed,
    /// The device is not in the campaign.
    #[error("device {0} is not in this campaign")]
    UnknownDevice(DeviceId),
    /// The device is already in the campaign.
    #[error("device {0} is already in this campaign")]
    AlreadyMember(DeviceId),
    /// A report for a device that has no attempt running (late or repeated).
    #[error("device {device} is {status:?} in this campaign, not running an attempt")]
    NotActive {
        /// The device.
        device: DeviceId,
        /// Its status.
        status: MemberStatus,
    },
    /// `assigned` is the engine's stage, not a device report.
    #[error("a device cannot report the stage `assigned`")]
    AssignedIsNotAReport,
    /// The policy does not hold together.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// Counters of one phase (or, summed, of the campaign), maintained as events happen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Devices started in this phase.
    pub members: u64,
    /// Running an attempt.
    pub active: u64,
    /// Waiting for a retry.
    pub retry_wait: u64,
    /// Told to cancel (abort), no answer yet.
    pub canceling: u64,
    /// Final: succeeded.
    pub succeeded: u64,
    /// Final: failed.
    pub failed: u64,
    /// Final: rejected.
    pub rejected: u64,
    /// Final: timed out.
    pub timed_out: u64,
    /// Final: cancelled.
    pub cancelled: u64,
    /// Assignments made: first starts plus retries.
    pub starts: u64,
    /// Of which retries.
    pub retries: u64,
}

impl Counters {
    /// Devices that still have something to do.
    pub fn unfinished(&self) -> u64 {
        self.active + self.retry_wait + self.canceling
    }

    /// Devices that finished with a result: succeeded, failed, rejected or timed out
    /// (cancelled ones are not counted).
    pub fn finished(&self) -> u64 {
        self.succeeded + self.failed + self.rejected + self.timed_out
    }

    /// Final failures of `kind`.
    pub fn failures(&self, kind: FailureKind) -> u64 {
        match kind {
            FailureKind::Failed => self.failed,
            FailureKind::Rejected => self.rejected,
            FailureKind::TimedOut => self.timed_out,
        }
    }

    fn add(&mut self, o: &Counters) {
        self.members += o.members;
        self.active += o.active;
        self.retry_wait += o.retry_wait;
        self.canceling += o.canceling;
        self.succeeded += o.succeeded;
        self.failed += o.failed;
        self.rejected += o.rejected;
        self.timed_out += o.timed_out;
        self.cancelled += o.cancelled;
        self.starts += o.starts;
        self.retries += o.retries;
    }

    fn slot(&mut self, status: MemberStatus) -> Option<&mut u64> {
        match status {
            MemberStatus::Active => Some(&mut self.active),
            MemberStatus::RetryWait => Some(&mut self.retry_wait),
            MemberStatus::Canceling => Some(&mut self.canceling),
            MemberStatus::Succeeded => Some(&mut self.succeeded),
            MemberStatus::Failed => Some(&mut self.failed),
            MemberStatus::Rejected => Some(&mut self.rejected),
            MemberStatus::TimedOut => Some(&mut self.timed_out),
            MemberStatus::Cancelled => Some(&mut self.cancelled),
            MemberStatus::Queued | MemberStatus::Skipped => None,
        }
    }
}

/// The start-rate limiter: starts per second over the last 61 seconds, so that any 60 s span
/// (which touches at most 61 whole seconds) holds at most the rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RateState {
    /// The rate now (devices per minute).
    per_minute: u32,
    /// (Unix second, starts in it), oldest first, at most 61 entries.
    recent: VecDeque<(i64, u32)>,
    /// Devices that met the ramp criterion so far.
    ramp_count: u64,
    /// The ramp count at which the rate goes up next.
    next_ramp_at: u64,
}

const WINDOW_S: i64 = 60;

impl RateState {
    fn budget(&self, now: UnixMs) -> usize {
        let second = now.div_euclid(1000);
        let mut in_window: u64 = 0;
        let mut this_second: u64 = 0;
        for &(s, n) in &self.recent {
            if s >= second - WINDOW_S {
                in_window += u64::from(n);
            }
            if s == second {
                this_second += u64::from(n);
            }
        }
        let per_second_cap = u64::from(self.per_minute.div_ceil(60));
        let left = u64::from(self.per_minute)
            .saturating_sub(in_window)
            .min(per_second_cap.saturating_sub(this_second));
        usize::try_from(left).unwrap_or(usize::MAX)
    }

    fn record(&mut self, now: UnixMs, n: usize) {
        if n == 0 {
            return;
        }
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        let second = now.div_euclid(1000);
        match self.recent.iter_mut().find(|(s, _)| *s == second) {
            Some((_, c)) => *c = c.saturating_add(n),
            None => self.recent.push_back((second, n)),
        }
        self.recent.retain(|&(s, _)| s >= second - WINDOW_S);
    }
}

/// A campaign's persistent state, apart from its per-device rows: small, and serialized as one
/// JSON value (or mapped to columns). Summaries read only this.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    policy: Policy,
    status: CampaignStatus,
    scheduled_at: Option<UnixMs>,
    last_change: Option<StateChange>,
    /// The highest phase started (1-based); 0 before the first.
    phase: u32,
    awaiting_approval: Option<u32>,
    /// The next phase, held after the previous one missed its success threshold.
    held: Option<u32>,
    /// A dynamic campaign's target no longer takes devices.
    closed: bool,
    /// Devices ever admitted.
    members: u64,
    /// Not started yet.
    queued: u64,
    /// Never started: the campaign ended first.
    skipped: u64,
    next_seq: u64,
    /// Attempts that the device acknowledged (its first report).
    notified: u64,
    phases: Vec<Counters>,
    rate: Option<RateState>,
}

/// One phase in a [`Summary`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseSummary {
    /// 1-based.
    pub phase: u32,
    /// Devices this phase covers today (its share of the target minus the earlier phases').
    pub target: u64,
    /// Its counters.
    pub counters: Counters,
}

/// What `campaign status` shows; built from counters, without reading device rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The state.
    pub status: CampaignStatus,
    /// The highest phase started (0: none yet).
    pub phase: u32,
    /// The phase waiting for an approval, if one is.
    pub awaiting_approval: Option<u32>,
    /// When a scheduled campaign starts.
    pub scheduled_at: Option<UnixMs>,
    /// A dynamic campaign still takes devices that join its target.
    pub target_open: bool,
    /// Devices in the target.
    pub members: u64,
    /// Not started yet.
    pub queued: u64,
    /// Never started because the campaign ended first.
    pub skipped: u64,
    /// The start rate now (devices per minute), if limited.
    pub rate_per_minute: Option<u32>,
    /// The sum over phases.
    pub totals: Counters,
    /// Each phase.
    pub phases: Vec<PhaseSummary>,
    /// The last change of state.
    pub last_change: Option<StateChange>,
}

impl Campaign {
    /// A draft campaign with this policy (validated).
    pub fn new(policy: Policy) -> Result<Self, PolicyError> {
        policy.validate()?;
        let rate = policy.rate.as_ref().map(|r| RateState {
            per_minute: r
                .ramp
                .as_ref()
                .map_or(r.max_per_minute, |ramp| ramp.base_per_minute),
            recent: VecDeque::new(),
            ramp_count: 0,
            next_ramp_at: r.ramp.as_ref().map_or(u64::MAX, |ramp| ramp.every),
        });
        Ok(Self {
            phases: vec![Counters::default(); policy.phases.len()],
            policy,
            status: CampaignStatus::Draft,
            scheduled_at: None,
            last_change: None,
            phase: 0,
            awaiting_approval: None,
            held: None,
            closed: false,
            members: 0,
            queued: 0,
            skipped: 0,
            next_seq: 0,
            notified: 0,
            rate,
        })
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The state.
    pub fn status(&self) -> CampaignStatus {
        self.status
    }

    /// The highest phase started (1-based; 0 before the first).
    pub fn phase(&self) -> u32 {
        self.phase
    }

    /// The phase waiting for an approval, if any.
    pub fn awaiting_approval(&self) -> Option<u32> {
        self.awaiting_approval.or(self.held)
    }

    /// The start rate now, devices per minute (None: unlimited).
    pub fn rate_per_minute(&self) -> Option<u32> {
        self.rate.as_ref().map(|r| r.per_minute)
    }

    /// Whether an install may be triggered at `now` (the maintenance window, if any, is open).
    /// A polling front asks this to fill in its answer (DDI `maintenanceWindow`).
    pub fn install_allowed(&self, now: UnixMs) -> bool {
        self.policy
            .maintenance_window
            .as_ref()
            .is_none_or(|w| w.is_open(now))
    }

    /// The counters, summed and per phase.
    pub fn summary(&self) -> Summary {
        let mut totals = Counters::default();
        let mut phases = Vec::with_capacity(self.phases.len());
        let mut before = 0;
        for (i, (c, p)) in self.phases.iter().zip(&self.policy.phases).enumerate() {
            totals.add(c);
            let upto = p.size.cumulative(self.members);
            phases.push(PhaseSummary {
                phase: phase_no(i),
                target: upto.saturating_sub(before),
                counters: c.clone(),
            });
            before = before.max(upto);
        }
        Summary {
            status: self.status,
            phase: self.phase,
            awaiting_approval: self.awaiting_approval(),
            scheduled_at: self.scheduled_at,
            target_open: self.policy.dynamic && !self.closed && !self.status.is_final(),
            members: self.members,
            queued: self.queued,
            skipped: self.skipped,
            rate_per_minute: self.rate_per_minute(),
            totals,
            phases,
            last_change: self.last_change.clone(),
        }
    }

    /// Adds a device to the target (draft, scheduled, or while a dynamic campaign's target is
    /// open); a running campaign may start it at once.
    pub fn add_device(
        &mut self,
        roster: &mut impl Roster,
        device: DeviceId,
        now: UnixMs,
    ) -> Result<Vec<Decision>, CampaignError> {
        match self.status {
            CampaignStatus::Draft | CampaignStatus::Scheduled => {}
            CampaignStatus::Running | CampaignStatus::Paused
                if self.policy.dynamic && !self.closed => {}
            _ => return Err(CampaignError::TargetFixed),
        }
        if roster.get(device).is_some() {
            return Err(CampaignError::AlreadyMember(device));
        }
        roster.save(&Member::queued(device, self.next_seq, now));
        self.next_seq += 1;
        self.members += 1;
        self.queued += 1;
        let mut out = Vec::new();
        self.advance(roster, now, &mut out);
        Ok(out)
    }

    /// Takes a device out of the campaign (the device was deleted, or no longer matches a
    /// dynamic target): a queued one is skipped, one waiting for a retry is cancelled, an active
    /// one is told to cancel (`Cancel`, whatever its stage: the fleet layer decides whether the
    /// device can still stop). Its row stays, for the history and the counters. Removing a
    /// device that is canceling or finished changes nothing.
    pub fn remove_device(
        &mut self,
        roster: &mut impl Roster,
        device: DeviceId,
        now: UnixMs,
    ) -> Result<Vec<Decision>, CampaignError> {
        let mut m = roster
            .get(device)
            .ok_or(CampaignError::UnknownDevice(device))?;
        let mut out = Vec::new();
        match m.status {
            MemberStatus::Queued => {
                self.queued = self.queued.saturating_sub(1);
                self.skipped += 1;
                m.status = MemberStatus::Skipped;
            }
            MemberStatus::RetryWait => {
                if let Some(c) = self.counters(m.phase) {
                    c.retry_wait = c.retry_wait.saturating_sub(1);
                    c.cancelled += 1;
                }
                m.status = MemberStatus::Cancelled;
            }
            MemberStatus::Active => {
                if let Some(c) = self.counters(m.phase) {
                    c.active = c.active.saturating_sub(1);
                    c.canceling += 1;
                }
                m.status = MemberStatus::Canceling;
                m.deadline = self.deadline(m.stage, now);
                out.push(Decision::Cancel {
                    devices: vec![device],
                });
            }
            _ => return Ok(out),
        }
        m.since = now;
        roster.save(&m);
        self.advance(roster, now, &mut out);
        Ok(out)
    }

    /// Carries out an operator's command.
    pub fn command(
        &mut self,
        roster: &mut impl Roster,
        command: Command,
        by: Actor,
        now: UnixMs,
    ) -> Result<Vec<Decision>, CampaignError> {
        use CampaignStatus as S;
        if !command.allowed_in(self.status) {
            return Err(CampaignError::Refused {
                command: command.name(),
                status: self.status,
            });
        }
        let mut out = Vec::new();
        match command {
            Command::Schedule { at } => {
                self.scheduled_at = Some(at);
                self.set_status(S::Scheduled, now, by, Reason::Command, &mut out);
            }
            Command::Start => self.begin(now, by, Reason::Command, &mut out),
            Command::Pause => self.set_status(S::Paused, now, by, Reason::Command, &mut out),
            Command::Resume => {
                if let Some(phase) = self.held {
                    return Err(CampaignError::NeedsApproval { phase });
                }
                self.set_status(S::Running, now, by, Reason::Command, &mut out);
            }
            Command::Abort => self.abort(roster, now, by, Reason::Command, &mut out),
            Command::Approve { phase } => {
                if self.awaiting_approval == Some(phase) {
                    self.awaiting_approval = None;
                    self.start_phase(phase, now, by, &mut out);
                } else if self.held == Some(phase) && self.status == S::Paused {
                    self.held = None;
                    self.set_status(S::Running, now, by.clone(), Reason::Command, &mut out);
                    self.start_phase(phase, now, by, &mut out);
                } else {
                    return Err(CampaignError::NotAwaitingApproval {
                        phase,
                        waiting: self.awaiting_approval(),
                    });
                }
            }
            Command::Close => {
                if !self.policy.dynamic || self.closed {
                    return Err(CampaignError::NotDynamic);
                }
                self.closed = true;
            }
        }
        self.advance(roster, now, &mut out);
        Ok(out)
    }

    /// Time passes: the scheduled start, timeouts, install triggers when the window is open,
    /// and starts as the rate allows. Each kind of work is bounded by [`MAX_BATCH`] rows per
    /// call; a caller that got a full batch ticks again.
    pub fn tick(&mut self, roster: &mut impl Roster, now: UnixMs) -> Vec<Decision> {
        let mut out = Vec::new();
        if self.status == CampaignStatus::Scheduled && self.scheduled_at.is_some_and(|at| at <= now)
        {
            self.begin(now, Actor::Engine, Reason::ScheduledTime, &mut out);
        }
        for due in roster.due(now, MAX_BATCH) {
            // Read the row again: a timeout before it in this batch may have aborted the
            // campaign and changed it.
            let Some(m) = roster.get(due.device) else {
                continue;
            };
            if m.deadline.is_some_and(|d| d <= now) && m.is_due_candidate() {
                out.push(Decision::TimeOut { device: m.device });
                self.finish(roster, m, Outcome::TimedOut, now, &mut out);
            }
        }
        self.trigger_installs(roster, now, &mut out);
        self.advance(roster, now, &mut out);
        out
    }

    /// A device reported progress (any report restarts its timeout).
    pub fn device_progress(
        &mut self,
        roster: &mut impl Roster,
        device: DeviceId,
        stage: Stage,
        now: UnixMs,
    ) -> Result<Vec<Decision>, CampaignError> {
        if stage == Stage::Assigned {
            return Err(CampaignError::AssignedIsNotAReport);
        }
        let mut m = roster
            .get(device)
            .ok_or(CampaignError::UnknownDevice(device))?;
        if !matches!(m.status, MemberStatus::Active | MemberStatus::Canceling) {
            return Err(CampaignError::NotActive {
                device,
                status: m.status,
            });
        }
        let mut out = Vec::new();
        let first_report = m.stage == Stage::Assigned;
        m.stage = stage;
        m.since = now;
        m.deadline = self.deadline(stage, now);
        let active = m.status == MemberStatus::Active;
        if first_report && active {
            self.notified += 1;
            self.ramp(RampCriterion::Notified);
        }
        if active && stage == Stage::Downloaded {
            if self.policy.install == super::policy::Handling::Skip {
                self.finish(roster, m, Outcome::Succeeded, now, &mut out);
                self.advance(roster, now, &mut out);
                return Ok(out);
            }
            if !m.install_triggered {
                if self.may_trigger_installs(now) {
                    m.install_triggered = true;
                    out.push(Decision::Install {
                        devices: vec![device],
                    });
                } else {
                    // Waiting for the window is the campaign's doing, not the device's: no
                    // timeout runs until the install is triggered.
                    m.deadline = None;
                }
            }
        }
        roster.save(&m);
        self.advance(roster, now, &mut out);
        Ok(out)
    }

    /// A device's attempt ended.
    pub fn device_outcome(
        &mut self,
        roster: &mut impl Roster,
        device: DeviceId,
        outcome: Outcome,
        now: UnixMs,
    ) -> Result<Vec<Decision>, CampaignError> {
        let m = roster
            .get(device)
            .ok_or(CampaignError::UnknownDevice(device))?;
        if !matches!(m.status, MemberStatus::Active | MemberStatus::Canceling) {
            return Err(CampaignError::NotActive {
                device,
                status: m.status,
            });
        }
        let mut out = Vec::new();
        self.finish(roster, m, outcome, now, &mut out);
        self.advance(roster, now, &mut out);
        Ok(out)
    }

    /// How many waiting rows (retries first, then queued) the next tick at `now` would ask
    /// the roster for, so a store can claim them first. A phase that starts during the tick
    /// may ask for more.
    pub fn start_budget(&self, now: UnixMs) -> usize {
        if self.status != CampaignStatus::Running
            || self.awaiting_approval.is_some()
            || self.held.is_some()
            || self.phase == 0
        {
            return 0;
        }
        let retry_wait: u64 = self.phases.iter().map(|c| c.retry_wait).sum();
        let want = retry_wait.saturating_add(self.quota_left());
        let want = usize::try_from(want).unwrap_or(usize::MAX).min(MAX_BATCH);
        want.min(self.rate.as_ref().map_or(usize::MAX, |r| r.budget(now)))
    }

    // ----- internals -----

    fn deadline(&self, stage: Stage, now: UnixMs) -> Option<UnixMs> {
        let extra = if stage == Stage::Deferred {
            self.policy.max_defer_ms()
        } else {
            0
        };
        self.policy
            .timeout_ms()
            .map(|t| now.saturating_add(t).saturating_add(extra))
    }

    fn may_trigger_installs(&self, now: UnixMs) -> bool {
        matches!(
            self.status,
            CampaignStatus::Running | CampaignStatus::Paused
        ) && self.install_allowed(now)
    }

    fn set_status(
        &mut self,
        to: CampaignStatus,
        now: UnixMs,
        by: Actor,
        reason: Reason,
        out: &mut Vec<Decision>,
    ) {
        let change = StateChange {
            from: self.status,
            to,
            at: now,
            by,
            reason,
        };
        self.status = to;
        self.last_change = Some(change.clone());
        out.push(Decision::StateChanged(change));
    }

    fn begin(&mut self, now: UnixMs, by: Actor, reason: Reason, out: &mut Vec<Decision>) {
        self.set_status(CampaignStatus::Running, now, by.clone(), reason, out);
        if self.policy.phases.first().is_some_and(|p| p.approval) {
            self.awaiting_approval = Some(1);
            out.push(Decision::AwaitingApproval { phase: 1 });
        } else {
            self.start_phase(1, now, by, out);
        }
    }

    fn start_phase(&mut self, phase: u32, now: UnixMs, by: Actor, out: &mut Vec<Decision>) {
        self.phase = phase;
        out.push(Decision::PhaseStarted { phase, at: now, by });
    }

    fn counters(&mut self, phase: u32) -> Option<&mut Counters> {
        let i = usize::try_from(phase).ok()?.checked_sub(1)?;
        self.phases.get_mut(i)
    }

    /// Devices the current phase may still start: its cumulative share minus the devices
    /// started so far, at most the queued ones.
    fn quota_left(&self) -> u64 {
        let Some(i) = (self.phase as usize).checked_sub(1) else {
            return 0;
        };
        let Some(p) = self.policy.phases.get(i) else {
            return 0;
        };
        let started: u64 = self.phases.iter().take(i + 1).map(|c| c.members).sum();
        p.size
            .cumulative(self.members)
            .saturating_sub(started)
            .min(self.queued)
    }

    fn phase_done(&self, phase: u32) -> bool {
        let Some(i) = (phase as usize).checked_sub(1) else {
            return false;
        };
        let Some(c) = self.phases.get(i) else {
            return false;
        };
        let started: u64 = self.phases.iter().take(i + 1).map(|c| c.members).sum();
        // Later phases have no devices yet, so `started` also counts every started device.
        let target = self.policy.phases[i].size.cumulative(self.members);
        (started >= target || self.queued == 0) && c.unfinished() == 0
    }

    /// Gates, starts and completion, after any input.
    fn advance(&mut self, roster: &mut impl Roster, now: UnixMs, out: &mut Vec<Decision>) {
        // Each turn either starts a phase (at most one per phase) or ends the loop.
        for _ in 0..=self.policy.phases.len() {
            if self.status != CampaignStatus::Running
                || self.awaiting_approval.is_some()
                || self.held.is_some()
                || self.phase == 0
            {
                break;
            }
            self.start_devices(roster, now, out);
            let phase = self.phase;
            if (phase as usize) >= self.policy.phases.len() || !self.phase_done(phase) {
                break;
            }
            let i = phase as usize - 1;
            let c = &self.phases[i];
            let counted = c.members - c.cancelled;
            if !self.policy.phases[i]
                .success_threshold
                .reached_by(c.succeeded, counted)
            {
                let reason = Reason::BelowSuccessThreshold {
                    phase,
                    succeeded: c.succeeded,
                    counted,
                };
                self.held = Some(phase + 1);
                self.set_status(CampaignStatus::Paused, now, Actor::Engine, reason, out);
                break;
            }
            if self.policy.phases[i + 1].approval {
                self.awaiting_approval = Some(phase + 1);
                out.push(Decision::AwaitingApproval { phase: phase + 1 });
                break;
            }
            self.start_phase(phase + 1, now, Actor::Engine, out);
        }
        let last = self.policy.phases.len() as u32;
        if self.status == CampaignStatus::Running
            && self.phase == last
            && self.queued == 0
            && self.phases.iter().all(|c| c.unfinished() == 0)
            && (!self.policy.dynamic || self.closed)
        {
            self.set_status(
                CampaignStatus::Completed,
                now,
                Actor::Engine,
                Reason::AllFinished,
                out,
            );
        }
    }

    fn start_devices(&mut self, roster: &mut impl Roster, now: UnixMs, out: &mut Vec<Decision>) {
        let budget = self.start_budget(now);
        if budget == 0 {
            return;
        }
        let phase = self.phase;
        let mut quota = self.quota_left();
        let (mut started, mut retried) = (Vec::new(), Vec::new());
        for mut m in roster.waiting(budget) {
            match m.status {
                MemberStatus::RetryWait => {
                    let Some(c) = self.counters(m.phase) else {
                        continue;
                    };
                    c.retry_wait = c.retry_wait.saturating_sub(1);
                    c.retries += 1;
                    retried.push(m.device);
                }
                MemberStatus::Queued => {
                    if quota == 0 {
                        break;
                    }
                    quota = quota.saturating_sub(1);
                    self.queued = self.queued.saturating_sub(1);
                    m.phase = phase;
                    let Some(c) = self.counters(phase) else {
                        continue;
                    };
                    c.members += 1;
                    started.push(m.device);
                }
                _ => continue,
            }
            if let Some(c) = self.counters(m.phase) {
                c.active += 1;
                c.starts += 1;
            }
            m.status = MemberStatus::Active;
            m.stage = Stage::Assigned;
            m.install_triggered = false;
            m.attempts += 1;
            m.since = now;
            m.deadline = self.deadline(Stage::Assigned, now);
            roster.save(&m);
        }
        if let Some(rate) = &mut self.rate {
            rate.record(now, started.len() + retried.len());
        }
        if !retried.is_empty() {
            out.push(Decision::Retry { devices: retried });
        }
        if !started.is_empty() {
            out.push(Decision::Start {
                phase,
                devices: started,
            });
        }
    }

    fn trigger_installs(&mut self, roster: &mut impl Roster, now: UnixMs, out: &mut Vec<Decision>) {
        if self.policy.install == super::policy::Handling::Skip || !self.may_trigger_installs(now) {
            return;
        }
        let mut devices = Vec::new();
        for mut m in roster.install_pending(MAX_BATCH) {
            if !m.is_install_pending() {
                continue;
            }
            m.install_triggered = true;
            m.since = now;
            m.deadline = self.deadline(Stage::Downloaded, now);
            roster.save(&m);
            devices.push(m.device);
        }
        if !devices.is_empty() {
            out.push(Decision::Install { devices });
        }
    }

    fn ramp(&mut self, criterion: RampCriterion) {
        let Some(r) = self.policy.rate.as_ref() else {
            return;
        };
        let Some(ramp) = r.ramp.as_ref().filter(|ramp| ramp.criterion == criterion) else {
            return;
        };
        let Some(state) = self.rate.as_mut() else {
            return;
        };
        state.ramp_count += 1;
        while state.ramp_count >= state.next_ramp_at && state.per_minute < r.max_per_minute {
            let raised = (f64::from(state.per_minute) * ramp.increment_factor).floor() as u32;
            state.per_minute = raised.max(state.per_minute + 1).min(r.max_per_minute);
            state.next_ramp_at = state.next_ramp_at.saturating_add(ramp.every);
        }
    }

    /// Closes a device's attempt: a retry when one is left, else a final status.
    fn finish(
        &mut self,
        roster: &mut impl Roster,
        mut m: Member,
        outcome: Outcome,
        now: UnixMs,
        out: &mut Vec<Decision>,
    ) {
        let retry = matches!(outcome, Outcome::Failed | Outcome::TimedOut)
            && m.status == MemberStatus::Active
            && m.attempts <= self.policy.retries
            && !self.status.is_final();
        let to = if retry {
            MemberStatus::RetryWait
        } else {
            match outcome {
                Outcome::Succeeded => MemberStatus::Succeeded,
                Outcome::Failed => MemberStatus::Failed,
                Outcome::Rejected => MemberStatus::Rejected,
                Outcome::Cancelled => MemberStatus::Cancelled,
                Outcome::TimedOut => MemberStatus::TimedOut,
            }
        };
        if let Some(c) = self.counters(m.phase) {
            if let Some(n) = c.slot(m.status) {
                *n = n.saturating_sub(1);
            }
            if let Some(n) = c.slot(to) {
                *n += 1;
            }
        }
        m.status = to;
        m.since = now;
        m.deadline = None;
        roster.save(&m);
        if to == MemberStatus::Succeeded {
            self.ramp(RampCriterion::Succeeded);
        }
        let kind = match to {
            MemberStatus::Failed => Some(FailureKind::Failed),
            MemberStatus::Rejected => Some(FailureKind::Rejected),
            MemberStatus::TimedOut => Some(FailureKind::TimedOut),
            _ => None,
        };
        if let Some(kind) = kind {
            self.check_error_threshold(roster, kind, now, out);
        }
    }

    /// After a final failure of `kind`: pause or abort if the threshold is reached. Checked
    /// on each new failure only, so a resume goes on until the next failure that keeps the
    /// rate at or over the threshold.
    fn check_error_threshold(
        &mut self,
        roster: &mut impl Roster,
        kind: FailureKind,
        now: UnixMs,
        out: &mut Vec<Decision>,
    ) {
        let Some(t) = self.policy.error_threshold.clone() else {
            return;
        };
        if !t.kinds.contains(&kind) {
            return;
        }
        let applies = match t.action {
            ThresholdAction::Pause => self.status == CampaignStatus::Running,
            ThresholdAction::Abort => {
                matches!(
                    self.status,
                    CampaignStatus::Running | CampaignStatus::Paused
                )
            }
        };
        if !applies {
            return;
        }
        let mut totals = Counters::default();
        for c in &self.phases {
            totals.add(c);
        }
        let finished = totals.finished();
        let failures: u64 = t.kinds.iter().map(|k| totals.failures(*k)).sum();
        if finished < t.min_finished || !t.limit.reached(failures, finished) {
            return;
        }
        let reason = Reason::ErrorThreshold { failures, finished };
        match t.action {
            ThresholdAction::Pause => {
                self.set_status(CampaignStatus::Paused, now, Actor::Engine, reason, out);
            }
            ThresholdAction::Abort => self.abort(roster, now, Actor::Engine, reason, out),
        }
    }

    fn abort(
        &mut self,
        roster: &mut impl Roster,
        now: UnixMs,
        by: Actor,
        reason: Reason,
        out: &mut Vec<Decision>,
    ) {
        self.set_status(CampaignStatus::Aborted, now, by, reason, out);
        self.awaiting_approval = None;
        self.held = None;
        // Each batch moves its rows out of the query, so this ends; the bound is a guard
        // against a roster that does not.
        let rounds = self.members / MAX_BATCH as u64 + 2;
        let mut cancelled = Vec::new();
        for _ in 0..rounds {
            let rows = roster.cancellable(MAX_BATCH);
            if rows.is_empty() {
                break;
            }
            for mut m in rows {
                if !m.is_cancellable() {
                    continue;
                }
                if let Some(c) = self.counters(m.phase) {
                    c.active = c.active.saturating_sub(1);
                    c.canceling += 1;
                }
                m.status = MemberStatus::Canceling;
                m.since = now;
                m.deadline = self.deadline(m.stage, now);
                roster.save(&m);
                cancelled.push(m.device);
            }
        }
        if !cancelled.is_empty() {
            out.push(Decision::Cancel { devices: cancelled });
        }
        for _ in 0..rounds {
            let rows = roster.waiting(MAX_BATCH);
            if rows.is_empty() {
                break;
            }
            for mut m in rows {
                match m.status {
                    MemberStatus::Queued => {
                        self.queued = self.queued.saturating_sub(1);
                        self.skipped += 1;
                        m.status = MemberStatus::Skipped;
                    }
                    MemberStatus::RetryWait => {
                        if let Some(c) = self.counters(m.phase) {
                            c.retry_wait = c.retry_wait.saturating_sub(1);
                            c.cancelled += 1;
                        }
                        m.status = MemberStatus::Cancelled;
                    }
                    _ => continue,
                }
                m.since = now;
                roster.save(&m);
            }
        }
    }
}

fn phase_no(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}
