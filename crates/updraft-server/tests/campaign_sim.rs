//! 10,000-device campaigns in simulated time: the engine of `updraft_server::campaign` driven by
//! simulated devices (seeded, deterministic), with no wall-clock waiting.
//!
//! The simulator keeps its own record of every device and checks the engine's decisions
//! against it as they come: no device started twice except by a retry, retries only after a
//! failure and within the retry count, no phase skipped or started before the previous one
//! finished (and met its threshold, or was approved), starts never above the rate in any 60 s,
//! no install triggered outside the maintenance window, timeouts only for devices silent past
//! the timeout, abort cancelling exactly the active devices that had not begun installing, and
//! the engine's counters equal to a recount of the simulated devices.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use updraft_server::campaign::{
    Actor, Campaign, CampaignStatus, Command, Decision, DeviceId, FailureKind, MemoryRoster,
    Outcome, Policy, Reason, Roster, Stage, ThresholdAction,
};

const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
/// 2026-11-30 12:00 UTC, a Monday.
const MONDAY_NOON: i64 = 1_795_996_800_000 + 12 * HOUR;
const DEVICES: i64 = 10_000;

/// splitmix64: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in lo..hi.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo) as u64) as i64
    }

    /// True with probability `per_mille` / 1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
}

/// What one attempt of a simulated device will do.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fate {
    /// Never reports: must time out.
    Hang,
    /// Refuses after fetching the deployment.
    Reject,
    /// Fails while downloading.
    FailDownload,
    /// Fails installing (after the install trigger).
    FailInstall,
    /// Defers its install for a while, then succeeds.
    DeferThenSucceed,
    /// Succeeds.
    Succeed,
}

#[derive(Clone, Copy, Debug)]
enum Ev {
    Report(Stage),
    End(Outcome),
}

/// The simulator's own view of one device.
#[derive(Clone, Debug, Default)]
struct Dev {
    phase: u32,
    starts: u32,
    retries: u32,
    /// Bumped at each assignment, cancel and timeout: pending events of an older epoch are
    /// dropped (that attempt is over).
    epoch: u32,
    fate: Option<Fate>,
    /// Running an attempt, at this stage.
    stage: Option<Stage>,
    last_report: i64,
    canceling: bool,
    waiting_retry: bool,
    /// Final result.
    result: Option<Outcome>,
    install_triggered: bool,
}

/// The fates of a scenario: per-mille chances, by device and attempt.
type FateFn = fn(&mut Rng, DeviceId, u32, i64) -> Fate;

struct Sim {
    c: Campaign,
    r: MemoryRoster,
    now: i64,
    rng: Rng,
    devs: Vec<Dev>,
    heap: BinaryHeap<Reverse<(i64, u64)>>,
    events: HashMap<u64, (DeviceId, u32, Ev)>,
    seq: u64,
    fate: FateFn,
    /// The independent check of the maintenance window, if the policy has one.
    window: Option<fn(i64) -> bool>,
    // What the engine decided, as observed.
    assignments: Vec<(i64, u32)>,
    installs: u64,
    phase_started: Vec<(u32, i64, Actor)>,
    awaiting: Vec<(u32, i64)>,
    approved: BTreeSet<u32>,
    changes: Vec<(i64, CampaignStatus, CampaignStatus, Reason)>,
    cancelled_by_abort: Vec<DeviceId>,
    timeouts: u64,
    /// The rate the policy says should be in force now (recomputed here from the ramp rule).
    expected_rate: Option<u32>,
    ramp_count: u64,
    next_ramp_at: u64,
    /// The campaign's state as the decisions so far said.
    sim_status: CampaignStatus,
    /// Final results of the simulated devices: finished (not cancelled), and failures of the
    /// kinds the error threshold counts.
    finished: u64,
    counted_failures: u64,
    /// The last final failure reached the error threshold: the engine must act on it in the
    /// same output.
    pending_trip: bool,
}

impl Sim {
    fn new(policy: Policy, seed: u64, fate: FateFn, window: Option<fn(i64) -> bool>) -> Sim {
        let expected_rate = policy.rate.as_ref().map(|r| {
            r.ramp
                .as_ref()
                .map_or(r.max_per_minute, |ramp| ramp.base_per_minute)
        });
        let next_ramp_at = policy
            .rate
            .as_ref()
            .and_then(|r| r.ramp.as_ref())
            .map_or(u64::MAX, |ramp| ramp.every);
        let mut sim = Sim {
            c: Campaign::new(policy).unwrap(),
            r: MemoryRoster::new(),
            now: MONDAY_NOON,
            rng: Rng(seed),
            devs: vec![Dev::default(); DEVICES as usize + 1],
            heap: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            fate,
            window,
            assignments: Vec::new(),
            installs: 0,
            phase_started: Vec::new(),
            awaiting: Vec::new(),
            approved: BTreeSet::new(),
            changes: Vec::new(),
            cancelled_by_abort: Vec::new(),
            timeouts: 0,
            expected_rate,
            ramp_count: 0,
            next_ramp_at,
            sim_status: CampaignStatus::Draft,
            finished: 0,
            counted_failures: 0,
            pending_trip: false,
        };
        for d in 1..=DEVICES {
            let out = sim.c.add_device(&mut sim.r, d, sim.now).unwrap();
            assert!(out.is_empty());
        }
        sim
    }

    fn policy(&self) -> &Policy {
        self.c.policy()
    }

    fn status(&self) -> CampaignStatus {
        self.c.status()
    }

    fn dev(&mut self, d: DeviceId) -> &mut Dev {
        &mut self.devs[d as usize]
    }

    fn schedule(&mut self, at: i64, d: DeviceId, ev: Ev) {
        let epoch = self.devs[d as usize].epoch;
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, (d, epoch, ev));
    }

    fn command(&mut self, command: Command) {
        let out = self
            .c
            .command(
                &mut self.r,
                command.clone(),
                Actor::Admin("op".into()),
                self.now,
            )
            .unwrap_or_else(|e| panic!("{command:?}: {e}"));
        if let Command::Approve { phase } = command {
            self.approved.insert(phase);
        }
        self.apply(out);
    }

    /// Carries out and checks the engine's decisions.
    fn apply(&mut self, out: Vec<Decision>) {
        let now = self.now;
        for decision in out {
            match decision {
                Decision::Start { phase, devices } => {
                    assert!(
                        matches!(self.status(), CampaignStatus::Running),
                        "start while {:?}",
                        self.status()
                    );
                    let current = self.phase_started.last().map(|p| p.0);
                    assert_eq!(
                        current,
                        Some(phase),
                        "start in a phase that is not the current one"
                    );
                    for d in devices {
                        let dev = self.dev(d);
                        assert_eq!(dev.starts, 0, "device {d} started twice");
                        dev.starts = 1;
                        dev.phase = phase;
                        self.assign(d);
                    }
                }
                Decision::Retry { devices } => {
                    assert!(matches!(self.status(), CampaignStatus::Running));
                    let retries = self.policy().retries;
                    for d in devices {
                        let dev = self.dev(d);
                        assert!(dev.waiting_retry, "device {d} retried without a failure");
                        assert!(dev.retries < retries, "device {d} retried too often");
                        dev.retries += 1;
                        dev.starts += 1;
                        dev.waiting_retry = false;
                        self.assign(d);
                    }
                }
                Decision::Install { devices } => {
                    if let Some(open) = self.window {
                        assert!(open(now), "install triggered outside the window at {now}");
                    }
                    for d in devices {
                        self.installs += 1;
                        let (fate, delay_install, delay_end) = (
                            self.devs[d as usize].fate,
                            self.rng.range(5 * SEC, 30 * SEC),
                            self.rng.range(MIN, 5 * MIN),
                        );
                        let dev = self.dev(d);
                        assert_eq!(
                            dev.stage,
                            Some(Stage::Downloaded),
                            "install of device {d} not downloaded"
                        );
                        assert!(
                            !dev.install_triggered,
                            "install of device {d} triggered twice"
                        );
                        dev.install_triggered = true;
                        // The wait for the window is not the device's: its timeout starts now.
                        dev.last_report = now;
                        match fate {
                            Some(Fate::DeferThenSucceed) => {
                                let defer = self.rng.range(MIN, HOUR);
                                self.schedule(now + delay_install, d, Ev::Report(Stage::Deferred));
                                self.schedule(
                                    now + delay_install + defer,
                                    d,
                                    Ev::Report(Stage::Installing),
                                );
                                self.schedule(
                                    now + delay_install + defer + delay_end,
                                    d,
                                    Ev::End(Outcome::Succeeded),
                                );
                            }
                            Some(Fate::FailInstall) => {
                                self.schedule(
                                    now + delay_install,
                                    d,
                                    Ev::Report(Stage::Installing),
                                );
                                self.schedule(
                                    now + delay_install + delay_end,
                                    d,
                                    Ev::End(Outcome::Failed),
                                );
                            }
                            _ => {
                                self.schedule(
                                    now + delay_install,
                                    d,
                                    Ev::Report(Stage::Installing),
                                );
                                self.schedule(
                                    now + delay_install + delay_end,
                                    d,
                                    Ev::End(Outcome::Succeeded),
                                );
                            }
                        }
                    }
                }
                Decision::Cancel { devices } => {
                    assert_eq!(self.status(), CampaignStatus::Aborted);
                    assert!(
                        self.cancelled_by_abort.is_empty(),
                        "one cancel list per abort"
                    );
                    for &d in &devices {
                        let delay = self.rng.range(SEC, 20 * SEC);
                        let dev = self.dev(d);
                        assert!(
                            dev.stage.is_some_and(|s| s < Stage::Installing) && !dev.canceling,
                            "cancel of device {d} at {:?}",
                            dev.stage
                        );
                        dev.canceling = true;
                        dev.epoch += 1;
                        self.schedule(now + delay, d, Ev::End(Outcome::Cancelled));
                    }
                    self.cancelled_by_abort = devices;
                }
                Decision::TimeOut { device } => {
                    let timeout = self.policy().device_timeout_s.unwrap() as i64 * SEC;
                    let defer = self.policy().max_defer_s.unwrap_or(0) as i64 * SEC;
                    let dev = self.dev(device);
                    let stage = dev.stage.expect("timeout of a device not running");
                    let limit = timeout + if stage == Stage::Deferred { defer } else { 0 };
                    let silent = now - dev.last_report;
                    assert!(
                        silent >= limit && silent < limit + SEC,
                        "device {device} timed out after {silent} ms silent at {stage:?} (limit {limit})"
                    );
                    dev.epoch += 1;
                    self.timeouts += 1;
                    self.closed(device, Outcome::TimedOut);
                }
                Decision::StateChanged(change) => {
                    assert_eq!(change.at, now);
                    assert_eq!(change.from, self.sim_status);
                    self.sim_status = change.to;
                    if let Reason::ErrorThreshold { failures, finished } = change.reason {
                        assert!(
                            self.pending_trip,
                            "error threshold acted on without a failure reaching it"
                        );
                        assert_eq!((failures, finished), (self.counted_failures, self.finished));
                        self.pending_trip = false;
                    }
                    if change.to == CampaignStatus::Aborted {
                        // Devices waiting for a retry have nothing running: they end cancelled.
                        for dev in self.devs.iter_mut().filter(|d| d.waiting_retry) {
                            dev.waiting_retry = false;
                            dev.result = Some(Outcome::Cancelled);
                        }
                    }
                    self.changes
                        .push((now, change.from, change.to, change.reason));
                }
                Decision::PhaseStarted { phase, at, by } => {
                    assert_eq!(at, now);
                    let previous = self.phase_started.last().map_or(0, |p| p.0);
                    assert_eq!(phase, previous + 1, "phase skipped");
                    if self.policy().phases[phase as usize - 1].approval {
                        assert!(
                            self.approved.contains(&phase),
                            "phase {phase} started unapproved"
                        );
                    }
                    if previous > 0 {
                        self.check_phase_finished(previous);
                        let threshold =
                            self.policy().phases[previous as usize - 1].success_threshold;
                        let (ok, counted) = self.phase_result(previous);
                        assert!(
                            threshold.reached_by(ok, counted) || self.approved.contains(&phase),
                            "phase {phase} started after {ok}/{counted} succeeded"
                        );
                    }
                    self.phase_started.push((phase, at, by));
                }
                Decision::AwaitingApproval { phase } => {
                    if phase > 1 {
                        self.check_phase_finished(phase - 1);
                    }
                    self.awaiting.push((phase, now));
                }
            }
        }
        assert!(
            !self.pending_trip,
            "the error threshold was reached and nothing happened"
        );
        assert_eq!(self.sim_status, self.status());
    }

    fn check_phase_finished(&self, phase: u32) {
        for (d, dev) in self.devs.iter().enumerate().skip(1) {
            if dev.phase == phase {
                assert!(
                    dev.result.is_some(),
                    "phase {phase} over while device {d} is not finished"
                );
            }
        }
    }

    /// (succeeded, finished not counting cancelled) of a phase, recounted.
    fn phase_result(&self, phase: u32) -> (u64, u64) {
        let mut ok = 0;
        let mut counted = 0;
        for dev in self.devs.iter().filter(|d| d.phase == phase) {
            match dev.result {
                Some(Outcome::Succeeded) => {
                    ok += 1;
                    counted += 1;
                }
                Some(Outcome::Cancelled) | None => {}
                Some(_) => counted += 1,
            }
        }
        (ok, counted)
    }

    /// A new attempt of device `d`: draw its fate and schedule its reports.
    fn assign(&mut self, d: DeviceId) {
        let now = self.now;
        self.assignments
            .push((now, self.expected_rate.unwrap_or(u32::MAX)));
        let attempt = self.devs[d as usize].starts;
        let fate = (self.fate)(&mut self.rng, d, attempt, now);
        let (a, b, c) = (
            self.rng.range(SEC, 30 * SEC),
            self.rng.range(10 * SEC, MIN),
            self.rng.range(30 * SEC, 5 * MIN),
        );
        let dev = self.dev(d);
        dev.epoch += 1;
        dev.fate = Some(fate);
        dev.stage = Some(Stage::Assigned);
        dev.last_report = now;
        dev.install_triggered = false;
        match fate {
            Fate::Hang => {}
            Fate::Reject => {
                self.schedule(now + a, d, Ev::Report(Stage::Notified));
                self.schedule(now + a + b, d, Ev::End(Outcome::Rejected));
            }
            Fate::FailDownload => {
                self.schedule(now + a, d, Ev::Report(Stage::Notified));
                self.schedule(now + a + b, d, Ev::Report(Stage::Downloading));
                self.schedule(now + a + b + c, d, Ev::End(Outcome::Failed));
            }
            Fate::FailInstall | Fate::DeferThenSucceed | Fate::Succeed => {
                self.schedule(now + a, d, Ev::Report(Stage::Notified));
                self.schedule(now + a + b, d, Ev::Report(Stage::Downloading));
                self.schedule(now + a + b + c, d, Ev::Report(Stage::Downloaded));
            }
        }
    }

    /// The attempt of `d` ended with `o`, as the engine decided it: a retry or a final result.
    fn closed(&mut self, d: DeviceId, o: Outcome) {
        let retries = self.policy().retries;
        let aborted = self.status().is_final();
        let dev = self.dev(d);
        let retry = matches!(o, Outcome::Failed | Outcome::TimedOut)
            && !dev.canceling
            && dev.retries < retries
            && !aborted;
        dev.stage = None;
        if retry {
            dev.waiting_retry = true;
            return;
        }
        dev.result = Some(o);
        if o == Outcome::Succeeded {
            self.ramp_succeeded();
        }
        if o != Outcome::Cancelled {
            self.finished += 1;
        }
        let Some(t) = self.c.policy().error_threshold.clone() else {
            return;
        };
        let kind = match o {
            Outcome::Failed => FailureKind::Failed,
            Outcome::Rejected => FailureKind::Rejected,
            Outcome::TimedOut => FailureKind::TimedOut,
            _ => return,
        };
        if !t.kinds.contains(&kind) {
            return;
        }
        self.counted_failures += 1;
        let acts = match t.action {
            ThresholdAction::Pause => self.sim_status == CampaignStatus::Running,
            ThresholdAction::Abort => {
                matches!(
                    self.sim_status,
                    CampaignStatus::Running | CampaignStatus::Paused
                )
            }
        };
        if acts
            && self.finished >= t.min_finished
            && t.limit.reached(self.counted_failures, self.finished)
        {
            self.pending_trip = true;
        }
    }

    fn ramp_succeeded(&mut self) {
        let Some(rate) = self.c.policy().rate.clone() else {
            return;
        };
        let Some(ramp) = rate.ramp else {
            return;
        };
        self.ramp_count += 1;
        let r = self.expected_rate.as_mut().unwrap();
        while self.ramp_count >= self.next_ramp_at && *r < rate.max_per_minute {
            let raised = (f64::from(*r) * ramp.increment_factor).floor() as u32;
            *r = raised.max(*r + 1).min(rate.max_per_minute);
            self.next_ramp_at += ramp.every;
        }
    }

    /// Delivers the device events due by `now`, then ticks the engine.
    fn step(&mut self) {
        while let Some(&Reverse((at, seq))) = self.heap.peek() {
            if at > self.now {
                break;
            }
            self.heap.pop();
            let (d, epoch, ev) = self.events.remove(&seq).unwrap();
            if epoch != self.devs[d as usize].epoch {
                continue;
            }
            let saved = self.now;
            self.now = at;
            let out = match ev {
                Ev::Report(stage) => {
                    let dev = self.dev(d);
                    dev.stage = Some(stage);
                    dev.last_report = at;
                    self.c.device_progress(&mut self.r, d, stage, at)
                }
                Ev::End(o) => {
                    let out = self.c.device_outcome(&mut self.r, d, o, at);
                    self.closed(d, o);
                    out
                }
            };
            let out = out.unwrap_or_else(|e| panic!("device {d} {ev:?}: {e}"));
            self.apply(out);
            self.check_rate_in_sync();
            self.now = saved;
        }
        let out = self.c.tick(&mut self.r, self.now);
        self.apply(out);
        self.check_rate_in_sync();
    }

    fn check_rate_in_sync(&self) {
        assert_eq!(self.c.rate_per_minute(), self.expected_rate, "ramp");
    }

    /// Runs in 1 s ticks until `done` or `limit` of simulated time passed.
    fn run_until(&mut self, limit: i64, done: impl Fn(&Sim) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            self.step();
            if done(self) {
                return true;
            }
            self.now += SEC;
        }
        false
    }

    fn run_for(&mut self, span: i64) {
        self.run_until(span, |_| false);
    }

    /// Checks the rate over every 60 s and one second, the counters against a recount, and
    /// that each device's starts match its retries.
    fn check_invariants(&self) {
        // Rate: assignments at t_i, at most rate(t_i) in (t_i - 60 s, t_i] and ceil(rate/60)
        // in t_i's second.
        let mut lo = 0;
        let mut sec_lo = 0;
        for (i, &(t, rate)) in self.assignments.iter().enumerate() {
            while self.assignments[lo].0 <= t - MIN {
                lo += 1;
            }
            while self.assignments[sec_lo].0.div_euclid(SEC) < t.div_euclid(SEC) {
                sec_lo += 1;
            }
            let in_minute = (i - lo + 1) as u64;
            assert!(
                in_minute <= u64::from(rate),
                "{in_minute} starts in the 60 s before {t}, rate {rate}"
            );
            let in_second = (i - sec_lo + 1) as u64;
            assert!(
                in_second <= u64::from(rate.div_ceil(60)),
                "{in_second} starts in one second"
            );
        }
        // Counters: the engine's against a recount of the simulated devices.
        let s = self.c.summary();
        let mut queued = 0;
        let mut skipped = 0;
        let mut per_phase = vec![[0u64; 10]; s.phases.len()];
        for (d, dev) in self.devs.iter().enumerate().skip(1) {
            assert_eq!(
                dev.starts,
                if dev.phase == 0 { 0 } else { 1 + dev.retries },
                "device {d}"
            );
            if dev.phase == 0 {
                if self.status() == CampaignStatus::Aborted {
                    skipped += 1;
                } else {
                    queued += 1;
                }
                continue;
            }
            let c = &mut per_phase[dev.phase as usize - 1];
            c[0] += 1;
            c[1] += u64::from(dev.starts);
            c[2] += u64::from(dev.retries);
            let slot = match (dev.result, dev.waiting_retry, dev.canceling) {
                (Some(Outcome::Succeeded), _, _) => 3,
                (Some(Outcome::Failed), _, _) => 4,
                (Some(Outcome::Rejected), _, _) => 5,
                (Some(Outcome::TimedOut), _, _) => 6,
                (Some(Outcome::Cancelled), _, _) => 7,
                (None, true, _) => 8,
                (None, false, true) => 9,
                (None, false, false) => {
                    assert!(
                        dev.stage.is_some(),
                        "device {d} neither running nor finished"
                    );
                    continue;
                }
            };
            c[slot] += 1;
        }
        for (p, c) in s.phases.iter().zip(&per_phase) {
            let e = &p.counters;
            let running = e.members - e.finished() - e.cancelled - e.retry_wait - e.canceling;
            assert_eq!(
                [
                    e.members,
                    e.starts,
                    e.retries,
                    e.succeeded,
                    e.failed,
                    e.rejected,
                    e.timed_out,
                    e.cancelled,
                    e.retry_wait,
                    e.canceling
                ],
                *c,
                "phase {} counters against the recount",
                p.phase
            );
            assert_eq!(running, e.active);
        }
        assert_eq!((s.queued, s.skipped), (queued, skipped));
        assert_eq!(s.members, DEVICES as u64);
        // The engine's rows agree with the simulator too.
        for (d, dev) in self.devs.iter().enumerate().skip(1) {
            let m = self.r.get(d as DeviceId).unwrap();
            assert_eq!((m.phase, m.attempts), (dev.phase, dev.starts), "device {d}");
        }
    }

    fn phase_sizes(&self) -> Vec<u64> {
        self.c
            .summary()
            .phases
            .iter()
            .map(|p| p.counters.members)
            .collect()
    }

    /// Devices of each phase are consecutive ids, in admission order.
    fn check_phase_membership(&self) {
        let mut last_phase = 0;
        for dev in self.devs.iter().skip(1) {
            if dev.phase == 0 {
                last_phase = u32::MAX;
                continue;
            }
            assert!(dev.phase >= last_phase, "devices start in admission order");
            last_phase = dev.phase;
        }
    }
}

/// The independent check of `Mon-Fri 22:00-06:00 +01:00`: open from 22:00 local on a weekday
/// to 06:00 local the next morning.
fn weeknights_cet(t: i64) -> bool {
    let local = t + HOUR;
    let days = local.div_euclid(24 * HOUR);
    let minute = local.rem_euclid(24 * HOUR) / MIN;
    // 1970-01-01 was a Thursday; 0 = Sunday .. 6 = Saturday.
    let weekday = (days + 4).rem_euclid(7);
    let yesterday = (weekday + 6) % 7;
    ((1..=5).contains(&weekday) && minute >= 22 * 60)
        || ((1..=5).contains(&yesterday) && minute < 6 * 60)
}

fn policy(json: serde_json::Value) -> Policy {
    let p: Policy = serde_json::from_value(json).unwrap();
    p.validate().unwrap();
    p
}

fn everyday_fate(rng: &mut Rng, _d: DeviceId, _attempt: u32, _now: i64) -> Fate {
    match rng.next() % 1000 {
        0..20 => Fate::Hang,
        20..25 => Fate::Reject,
        25..45 => Fate::FailDownload,
        45..55 => Fate::FailInstall,
        55..105 => Fate::DeferThenSucceed,
        _ => Fate::Succeed,
    }
}

#[test]
fn staged_campaign_with_ramp_window_retries_timeouts_and_a_pause_completes_correctly() {
    let p = policy(serde_json::json!({
        "phases": [
            {"size": "1%", "success_threshold": "90%"},
            {"size": "10%", "success_threshold": "90%"},
            {"size": "50%", "success_threshold": "90%"},
            {"size": "all"}
        ],
        "error_threshold": {"limit": "10%", "min_finished": 50},
        "rate": {"max_per_minute": 300, "ramp": {
            "base_per_minute": 30, "increment_factor": 2.0, "criterion": "succeeded", "every": 100}},
        "device_timeout_s": 1800,
        "retries": 2,
        "max_defer_s": 7200,
        "maintenance_window": "Mon-Fri 22:00-06:00 +01:00"
    }));
    let mut sim = Sim::new(p, 1, everyday_fate, Some(weeknights_cet));
    sim.command(Command::Start);
    // Run into phase 4, then pause for an hour.
    assert!(sim.run_until(4 * 24 * HOUR, |s| s.c.phase() == 4
        && s.c.summary().queued < 4000));
    sim.check_invariants();
    sim.command(Command::Pause);
    let paused_at = sim.now;
    let before = sim.assignments.len();
    let outcomes_before = sim.c.summary().totals.finished();
    sim.run_for(HOUR);
    assert_eq!(
        sim.assignments.len(),
        before,
        "no start or retry while paused"
    );
    assert!(
        sim.c.summary().totals.finished() > outcomes_before,
        "started devices go on while paused"
    );
    sim.check_invariants();
    sim.command(Command::Resume);
    let _ = paused_at;
    assert!(
        sim.run_until(7 * 24 * HOUR, |s| s.status() == CampaignStatus::Completed),
        "campaign did not complete: {:?}",
        sim.c.summary()
    );
    sim.check_invariants();
    sim.check_phase_membership();

    let s = sim.c.summary();
    assert_eq!(sim.phase_sizes(), vec![100, 900, 4000, 5000]);
    // The campaign's own state stays small: counters, not a list of devices.
    let state = serde_json::to_string(&sim.c).unwrap();
    assert!(state.len() < 4096, "{} bytes: {state}", state.len());
    assert_eq!(
        sim.phase_started.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(
        sim.phase_started
            .iter()
            .all(|p| p.2 != Actor::Admin("op".into()) || p.0 == 1)
    );
    // Every simulated path happened: timeouts and retries, installs, the ramp to its maximum.
    assert!(sim.timeouts > 100, "timeouts: {}", sim.timeouts);
    assert!(s.totals.retries > 300, "retries: {}", s.totals.retries);
    assert!(
        s.totals.timed_out < s.totals.retries,
        "most timed-out devices were retried"
    );
    assert!(sim.installs >= s.totals.succeeded);
    assert_eq!(sim.c.rate_per_minute(), Some(300));
    assert_eq!(
        s.totals.succeeded + s.totals.failed + s.totals.rejected + s.totals.timed_out,
        DEVICES as u64
    );
    assert!(s.totals.succeeded > 9900, "{s:?}");
    // The window did its job: some device waited through the Monday afternoon for it.
    let first_install_night = MONDAY_NOON + 9 * HOUR; // Monday 22:00 +01:00
    assert!(
        sim.phase_started[1].1 > first_install_night,
        "phase 2 waited for phase 1's installs"
    );
    assert_eq!(
        sim.changes.iter().map(|c| (c.1, c.2)).collect::<Vec<_>>(),
        vec![
            (CampaignStatus::Draft, CampaignStatus::Running),
            (CampaignStatus::Running, CampaignStatus::Paused),
            (CampaignStatus::Paused, CampaignStatus::Running),
            (CampaignStatus::Running, CampaignStatus::Completed),
        ]
    );
}

/// A bad batch: devices above 2,000 fail one time in five.
fn bad_batch_fate(rng: &mut Rng, d: DeviceId, _attempt: u32, _now: i64) -> Fate {
    let fail = if d > 2000 { 200 } else { 10 };
    if rng.chance(fail) {
        if rng.chance(500) {
            Fate::FailDownload
        } else {
            Fate::FailInstall
        }
    } else {
        Fate::Succeed
    }
}

#[test]
fn the_error_threshold_pauses_resume_goes_on_until_the_next_failure_and_abort_cancels_the_not_installed()
 {
    let p = policy(serde_json::json!({
        "phases": [{"size": "1%", "success_threshold": "90%"}, {"size": "all"}],
        "error_threshold": {"limit": "5%", "min_finished": 200},
        "rate": {"max_per_minute": 600},
        "device_timeout_s": 600
    }));
    let mut sim = Sim::new(p, 2, bad_batch_fate, None);
    sim.command(Command::Start);
    let tripped = |s: &Sim| -> (u64, u64) {
        let t = s.c.summary().totals;
        (t.failed + t.rejected + t.timed_out, t.finished())
    };
    assert!(sim.run_until(24 * HOUR, |s| s.status() == CampaignStatus::Paused));
    sim.check_invariants();
    let (failures, finished) = tripped(&sim);
    let (_, _, _, reason) = sim.changes.last().unwrap().clone();
    assert_eq!(reason, Reason::ErrorThreshold { failures, finished });
    assert!(finished >= 200 && failures * 100 >= 5 * finished);
    // (That it tripped at the first failure that reached the threshold, and not later, is
    // checked at every failure by `Sim::closed` and `Sim::apply`.)

    let before = sim.assignments.len();
    sim.run_for(10 * MIN);
    assert_eq!(sim.assignments.len(), before, "no start while paused");
    sim.check_invariants();

    sim.command(Command::Resume);
    assert!(
        sim.run_until(HOUR, |s| s.status() == CampaignStatus::Paused),
        "paused again"
    );
    let (failures2, finished2) = tripped(&sim);
    assert!(failures2 > failures, "the next failure paused it again");
    assert_eq!(
        sim.changes.last().unwrap().3,
        Reason::ErrorThreshold {
            failures: failures2,
            finished: finished2
        }
    );
    sim.check_invariants();

    // Abort: the expected cancel set is recounted from the simulated devices.
    sim.command(Command::Resume);
    sim.run_for(30 * SEC);
    let expected: Vec<DeviceId> = (1..=DEVICES)
        .filter(|&d| {
            let dev = &sim.devs[d as usize];
            dev.result.is_none()
                && !dev.waiting_retry
                && dev.stage.is_some_and(|s| s < Stage::Installing)
        })
        .collect();
    let installing: Vec<DeviceId> = (1..=DEVICES)
        .filter(|&d| sim.devs[d as usize].stage == Some(Stage::Installing))
        .collect();
    assert!(!expected.is_empty() && !installing.is_empty());
    let queued_before = sim.c.summary().queued;
    assert!(queued_before > 0);
    sim.command(Command::Abort);
    assert_eq!(
        sim.cancelled_by_abort, expected,
        "abort cancels exactly the not-installed devices"
    );
    let after = sim.assignments.len();
    let installs = sim.installs;
    assert!(sim.run_until(HOUR, |s| {
        s.devs
            .iter()
            .skip(1)
            .all(|d| d.result.is_some() || d.phase == 0)
    }));
    assert_eq!(sim.assignments.len(), after, "nothing starts after abort");
    assert_eq!(sim.installs, installs, "no install triggered after abort");
    for d in installing {
        let result = sim.devs[d as usize].result;
        assert!(
            matches!(result, Some(Outcome::Succeeded | Outcome::Failed)),
            "installing device {d} left to finish: {result:?}"
        );
    }
    for &d in &expected {
        assert_eq!(sim.devs[d as usize].result, Some(Outcome::Cancelled));
    }
    let s = sim.c.summary();
    assert_eq!(s.skipped, queued_before);
    assert_eq!(s.totals.cancelled, expected.len() as u64);
    sim.check_invariants();
}

/// Everyone rejects one time in twenty (not counted by the threshold); after 4,000 devices
/// are started, failures jump to one in ten.
fn late_failures_fate(rng: &mut Rng, d: DeviceId, _attempt: u32, _now: i64) -> Fate {
    if rng.chance(50) {
        return Fate::Reject;
    }
    let fail = if d > 4000 { 100 } else { 5 };
    if rng.chance(fail) {
        Fate::FailDownload
    } else {
        Fate::Succeed
    }
}

#[test]
fn approvals_gate_each_phase_and_the_error_threshold_aborts_by_itself() {
    let p = policy(serde_json::json!({
        "phases": [
            {"size": "1%", "success_threshold": "80%"},
            {"size": "10%", "success_threshold": "80%", "approval": true},
            {"size": "all", "approval": true}
        ],
        "error_threshold": {"limit": "3%", "min_finished": 500, "kinds": ["failed", "timed_out"],
                            "action": "abort"},
        "rate": {"max_per_minute": 1200},
        "device_timeout_s": 900
    }));
    let mut sim = Sim::new(p, 3, late_failures_fate, None);
    sim.command(Command::Start);
    for phase in [2, 3] {
        assert!(sim.run_until(6 * HOUR, |s| s.awaiting.last().map(|a| a.0) == Some(phase)));
        let before = sim.assignments.len();
        sim.run_for(30 * MIN);
        assert_eq!(
            sim.assignments.len(),
            before,
            "phase {phase} waits for its approval"
        );
        assert_eq!(sim.c.awaiting_approval(), Some(phase));
        sim.check_invariants();
        sim.command(Command::Approve { phase });
        assert!(sim.assignments.len() > before);
        assert_eq!(
            sim.phase_started.last().unwrap().2,
            Actor::Admin("op".into())
        );
    }
    assert!(sim.run_until(24 * HOUR, |s| s.status() == CampaignStatus::Aborted));
    let (_, from, _, reason) = sim.changes.last().unwrap().clone();
    assert_eq!(from, CampaignStatus::Running);
    let Reason::ErrorThreshold { failures, finished } = reason else {
        panic!("{reason:?}");
    };
    let t = sim.c.summary().totals;
    // Exact at the moment of the abort (checked in `Sim::apply`); devices installing went on.
    assert!(failures <= t.failed + t.timed_out && finished <= t.finished());
    assert!(t.rejected > 100, "rejections happened and were not counted");
    assert!(failures * 100 >= 3 * finished && finished >= 500);
    assert!(!sim.cancelled_by_abort.is_empty());
    assert!(sim.run_until(HOUR, |s| {
        s.devs
            .iter()
            .skip(1)
            .all(|d| d.result.is_some() || d.phase == 0)
    }));
    sim.check_invariants();
    assert_eq!(sim.phase_sizes()[..2], [100, 900]);
}
