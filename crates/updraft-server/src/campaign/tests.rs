//! Unit tests of the engine: every state against every command, and each policy rule.

use super::*;

const MIN: i64 = 60_000;

/// A campaign, its rows and a clock.
struct H {
    c: Campaign,
    r: MemoryRoster,
    now: i64,
}

fn alice() -> Actor {
    Actor::Admin("alice".into())
}

fn policy(phases: &str) -> Policy {
    Policy {
        phases: parse_phases(phases, false).unwrap(),
        ..Policy::immediate()
    }
}

impl H {
    fn new(policy: Policy, devices: i64) -> H {
        let mut h = H {
            c: Campaign::new(policy).unwrap(),
            r: MemoryRoster::new(),
            now: 1_000_000,
        };
        for d in 1..=devices {
            assert!(h.c.add_device(&mut h.r, d, h.now).unwrap().is_empty());
        }
        h
    }

    fn cmd(&mut self, command: Command) -> Result<Vec<Decision>, CampaignError> {
        let out = self.c.command(&mut self.r, command, alice(), self.now);
        self.check();
        out
    }

    fn start(&mut self) -> Vec<Decision> {
        self.cmd(Command::Start).unwrap()
    }

    fn tick(&mut self, dt: i64) -> Vec<Decision> {
        self.now += dt;
        let out = self.c.tick(&mut self.r, self.now);
        self.check();
        out
    }

    fn progress(&mut self, d: DeviceId, stage: Stage) -> Vec<Decision> {
        let out = self
            .c
            .device_progress(&mut self.r, d, stage, self.now)
            .unwrap();
        self.check();
        out
    }

    fn outcome(&mut self, d: DeviceId, o: Outcome) -> Vec<Decision> {
        let out = self.c.device_outcome(&mut self.r, d, o, self.now).unwrap();
        self.check();
        out
    }

    fn status(&self) -> CampaignStatus {
        self.c.status()
    }

    fn member(&self, d: DeviceId) -> Member {
        self.r.get(d).unwrap()
    }

    /// The counters equal a recount of the rows.
    fn check(&self) {
        let s = self.c.summary();
        let mut per_phase = vec![Counters::default(); s.phases.len()];
        let (mut queued, mut skipped) = (0, 0);
        for m in self.r.rows() {
            if m.phase == 0 {
                match m.status {
                    MemberStatus::Queued => queued += 1,
                    MemberStatus::Skipped => skipped += 1,
                    other => panic!("unstarted device {} is {other:?}", m.device),
                }
                continue;
            }
            let c = &mut per_phase[m.phase as usize - 1];
            c.members += 1;
            c.starts += u64::from(m.attempts);
            c.retries += u64::from(m.attempts - 1);
            match m.status {
                MemberStatus::Active => c.active += 1,
                MemberStatus::RetryWait => c.retry_wait += 1,
                MemberStatus::Canceling => c.canceling += 1,
                MemberStatus::Succeeded => c.succeeded += 1,
                MemberStatus::Failed => c.failed += 1,
                MemberStatus::Rejected => c.rejected += 1,
                MemberStatus::TimedOut => c.timed_out += 1,
                MemberStatus::Cancelled => c.cancelled += 1,
                other => panic!("started device {} is {other:?}", m.device),
            }
        }
        for (p, c) in s.phases.iter().zip(&per_phase) {
            assert_eq!(&p.counters, c, "phase {}", p.phase);
        }
        assert_eq!((s.queued, s.skipped), (queued, skipped));
        assert_eq!(s.members, self.r.len() as u64);
    }
}

fn started(out: &[Decision]) -> Vec<DeviceId> {
    out.iter()
        .flat_map(|d| match d {
            Decision::Start { devices, .. } => devices.clone(),
            _ => vec![],
        })
        .collect()
}

fn of_kind(out: &[Decision], f: impl Fn(&Decision) -> Option<Vec<DeviceId>>) -> Vec<DeviceId> {
    out.iter().filter_map(f).flatten().collect()
}

fn changes(out: &[Decision]) -> Vec<(CampaignStatus, CampaignStatus, Reason)> {
    out.iter()
        .filter_map(|d| match d {
            Decision::StateChanged(c) => Some((c.from, c.to, c.reason.clone())),
            _ => None,
        })
        .collect()
}

fn succeed(h: &mut H, devices: &[DeviceId]) -> Vec<Decision> {
    let mut out = Vec::new();
    for &d in devices {
        out.extend(h.outcome(d, Outcome::Succeeded));
    }
    out
}

// ----- every state x every command -----

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fixture {
    Draft,
    Scheduled,
    Running,
    RunningAwaitingApproval,
    Paused,
    PausedBelowThreshold,
    Completed,
    Aborted,
}

/// A dynamic campaign: phase 1 is device 1, phase 2 (approval) the rest.
fn fixture(f: Fixture) -> H {
    let mut p = policy("1,all");
    p.phases[1].approval = true;
    p.dynamic = true;
    let mut h = H::new(p, 3);
    match f {
        Fixture::Draft => {}
        Fixture::Scheduled => {
            h.cmd(Command::Schedule { at: h.now + MIN }).unwrap();
        }
        Fixture::Running => {
            h.start();
        }
        Fixture::RunningAwaitingApproval => {
            h.start();
            h.outcome(1, Outcome::Succeeded);
        }
        Fixture::Paused => {
            h.start();
            h.cmd(Command::Pause).unwrap();
        }
        Fixture::PausedBelowThreshold => {
            h.start();
            h.outcome(1, Outcome::Failed);
        }
        Fixture::Completed => {
            h.start();
            h.outcome(1, Outcome::Succeeded);
            h.cmd(Command::Approve { phase: 2 }).unwrap();
            succeed(&mut h, &[2, 3]);
            h.cmd(Command::Close).unwrap();
        }
        Fixture::Aborted => {
            h.start();
            h.cmd(Command::Abort).unwrap();
        }
    }
    h
}

#[test]
fn fixtures_are_in_the_state_they_name() {
    use CampaignStatus as S;
    for (f, s, awaiting) in [
        (Fixture::Draft, S::Draft, None),
        (Fixture::Scheduled, S::Scheduled, None),
        (Fixture::Running, S::Running, None),
        (Fixture::RunningAwaitingApproval, S::Running, Some(2)),
        (Fixture::Paused, S::Paused, None),
        (Fixture::PausedBelowThreshold, S::Paused, Some(2)),
        (Fixture::Completed, S::Completed, None),
        (Fixture::Aborted, S::Aborted, None),
    ] {
        let h = fixture(f);
        assert_eq!(
            (h.status(), h.c.awaiting_approval()),
            (s, awaiting),
            "{f:?}"
        );
    }
}

#[test]
fn every_command_in_every_state_gives_the_table_result_and_refusals_change_nothing() {
    use CampaignStatus as S;
    use Fixture as F;
    let commands = [
        Command::Schedule { at: 5_000_000 },
        Command::Start,
        Command::Pause,
        Command::Resume,
        Command::Abort,
        Command::Approve { phase: 2 },
        Command::Close,
    ];
    // Rows: fixture; columns: the commands above. None = refused.
    let table: [(F, [Option<S>; 7]); 8] = [
        (
            F::Draft,
            [
                Some(S::Scheduled),
                Some(S::Running),
                None,
                None,
                Some(S::Aborted),
                None,
                Some(S::Draft),
            ],
        ),
        (
            F::Scheduled,
            [
                Some(S::Scheduled),
                Some(S::Running),
                None,
                None,
                Some(S::Aborted),
                None,
                Some(S::Scheduled),
            ],
        ),
        (
            F::Running,
            [
                None,
                None,
                Some(S::Paused),
                None,
                Some(S::Aborted),
                None,
                Some(S::Running),
            ],
        ),
        (
            F::RunningAwaitingApproval,
            [
                None,
                None,
                Some(S::Paused),
                None,
                Some(S::Aborted),
                Some(S::Running),
                Some(S::Running),
            ],
        ),
        (
            F::Paused,
            [
                None,
                None,
                None,
                Some(S::Running),
                Some(S::Aborted),
                None,
                Some(S::Paused),
            ],
        ),
        (
            F::PausedBelowThreshold,
            [
                None,
                None,
                None,
                None,
                Some(S::Aborted),
                Some(S::Running),
                Some(S::Paused),
            ],
        ),
        (F::Completed, [None; 7]),
        (F::Aborted, [None; 7]),
    ];
    for (f, row) in table {
        for (command, expected) in commands.iter().zip(row) {
            let mut h = fixture(f);
            let before = serde_json::to_value(&h.c).unwrap();
            let rows_before: Vec<Member> = {
                let mut v: Vec<_> = h.r.rows().cloned().collect();
                v.sort_by_key(|m| m.device);
                v
            };
            let result = h.cmd(command.clone());
            match (expected, result) {
                (Some(to), Ok(out)) => {
                    assert_eq!(h.status(), to, "{f:?} {command:?}");
                    let from = fixture(f).status();
                    if from != to || matches!(command, Command::Schedule { .. }) {
                        assert!(
                            changes(&out).iter().any(|(a, b, _)| (*a, *b) == (from, to)),
                            "{f:?} {command:?}: the change is returned: {out:?}"
                        );
                        let last = h.c.summary().last_change.unwrap();
                        assert_eq!(last.by, alice(), "{f:?} {command:?}: who");
                        assert_eq!(last.at, h.now, "{f:?} {command:?}: when");
                    }
                }
                (None, Err(e)) => {
                    assert!(!e.to_string().is_empty());
                    assert_eq!(
                        serde_json::to_value(&h.c).unwrap(),
                        before,
                        "{f:?} {command:?}"
                    );
                    let mut rows: Vec<_> = h.r.rows().cloned().collect();
                    rows.sort_by_key(|m| m.device);
                    assert_eq!(rows, rows_before, "{f:?} {command:?}");
                }
                (expected, got) => panic!("{f:?} {command:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }
    // The table agrees with `allowed_in` wherever the state alone decides.
    for s in CampaignStatus::ALL {
        assert_eq!(Command::Abort.allowed_in(s), !s.is_final());
        assert_eq!(
            Command::Start.allowed_in(s),
            matches!(s, S::Draft | S::Scheduled)
        );
    }
}

#[test]
fn refusals_name_the_command_and_state() {
    let mut h = fixture(Fixture::Completed);
    assert_eq!(
        h.cmd(Command::Pause).unwrap_err().to_string(),
        "cannot pause a completed campaign"
    );
    let mut h = fixture(Fixture::PausedBelowThreshold);
    assert!(
        h.cmd(Command::Resume)
            .unwrap_err()
            .to_string()
            .contains("approve phase 2")
    );
    let mut h = fixture(Fixture::RunningAwaitingApproval);
    assert_eq!(
        h.cmd(Command::Approve { phase: 3 }).unwrap_err(),
        CampaignError::NotAwaitingApproval {
            phase: 3,
            waiting: Some(2)
        }
    );
}

// ----- phases and gates -----

#[test]
fn phases_start_in_order_each_after_the_previous_one_finished() {
    let mut h = H::new(policy("10%,50%,100%"), 10);
    let out = h.start();
    assert_eq!(started(&out), vec![1]);
    assert!(out.contains(&Decision::PhaseStarted {
        phase: 1,
        at: h.now,
        by: alice()
    }));
    assert!(
        started(&h.tick(1000)).is_empty(),
        "phase 2 waits for phase 1"
    );
    h.progress(1, Stage::Downloading);
    let out = h.outcome(1, Outcome::Succeeded);
    assert!(out.iter().any(|d| matches!(
        d,
        Decision::PhaseStarted {
            phase: 2,
            by: Actor::Engine,
            ..
        }
    )));
    assert_eq!(started(&out), vec![2, 3, 4, 5]);
    assert_eq!(h.member(3).phase, 2);
    let out = succeed(&mut h, &[2, 3, 4]);
    assert!(started(&out).is_empty(), "device 5 still runs");
    let out = h.outcome(5, Outcome::Succeeded);
    assert_eq!(started(&out), (6..=10).collect::<Vec<_>>());
    let out = succeed(&mut h, &[6, 7, 8, 9, 10]);
    assert_eq!(
        changes(&out),
        vec![(
            CampaignStatus::Running,
            CampaignStatus::Completed,
            Reason::AllFinished
        )]
    );
    let s = h.c.summary();
    assert_eq!(
        s.phases
            .iter()
            .map(|p| (p.target, p.counters.succeeded))
            .collect::<Vec<_>>(),
        vec![(1, 1), (4, 4), (5, 5)]
    );
}

#[test]
fn a_phase_below_its_success_threshold_pauses_until_approved() {
    let mut p = policy("2,all");
    p.phases[0].success_threshold = Percent::parse("50%").unwrap();
    let mut h = H::new(p.clone(), 4);
    h.start();
    h.outcome(1, Outcome::Failed);
    let out = h.outcome(2, Outcome::Succeeded);
    assert_eq!(started(&out), vec![3, 4], "50% reaches 50%");

    p.phases[0].success_threshold = Percent::parse("51%").unwrap();
    let mut h = H::new(p, 4);
    h.start();
    h.outcome(1, Outcome::Failed);
    let out = h.outcome(2, Outcome::Succeeded);
    assert_eq!(
        changes(&out),
        vec![(
            CampaignStatus::Running,
            CampaignStatus::Paused,
            Reason::BelowSuccessThreshold {
                phase: 1,
                succeeded: 1,
                counted: 2
            }
        )]
    );
    assert!(started(&h.tick(MIN)).is_empty());
    assert!(matches!(
        h.cmd(Command::Resume),
        Err(CampaignError::NeedsApproval { phase: 2 })
    ));
    let out = h.cmd(Command::Approve { phase: 2 }).unwrap();
    assert_eq!(started(&out), vec![3, 4]);
    assert!(out.contains(&Decision::PhaseStarted {
        phase: 2,
        at: h.now,
        by: alice()
    }));
}

#[test]
fn cancelled_devices_do_not_count_against_the_success_threshold() {
    let mut h = H::new(policy("2,all"), 3);
    h.start();
    h.outcome(1, Outcome::Cancelled);
    let out = h.outcome(2, Outcome::Succeeded);
    assert_eq!(started(&out), vec![3]);
}

#[test]
fn approval_phases_wait_for_the_operator() {
    let mut h = H::new(
        Policy {
            phases: parse_phases("1,2,all", true).unwrap(),
            ..Policy::immediate()
        },
        4,
    );
    h.start();
    let out = h.outcome(1, Outcome::Succeeded);
    assert_eq!(out, vec![Decision::AwaitingApproval { phase: 2 }]);
    assert!(started(&h.tick(10 * MIN)).is_empty());
    // Pausing while waiting keeps the wait; approving while paused starts the phase once resumed.
    h.cmd(Command::Pause).unwrap();
    let out = h.cmd(Command::Approve { phase: 2 }).unwrap();
    assert!(started(&out).is_empty(), "paused: nothing starts");
    assert_eq!(h.c.phase(), 2);
    assert_eq!(started(&h.cmd(Command::Resume).unwrap()), vec![2]);
    assert_eq!(
        h.outcome(2, Outcome::Succeeded),
        vec![Decision::AwaitingApproval { phase: 3 }]
    );
    assert_eq!(
        started(&h.cmd(Command::Approve { phase: 3 }).unwrap()),
        vec![3, 4]
    );
}

#[test]
fn a_first_phase_with_approval_waits_at_start() {
    let mut p = policy("all");
    p.phases[0].approval = true;
    let mut h = H::new(p, 2);
    let out = h.start();
    assert!(out.contains(&Decision::AwaitingApproval { phase: 1 }));
    assert!(started(&out).is_empty());
    assert_eq!(
        started(&h.cmd(Command::Approve { phase: 1 }).unwrap()),
        vec![1, 2]
    );
}

#[test]
fn empty_phases_pass_through_and_an_empty_campaign_completes() {
    // 1% and 2% of 10 devices are both 1 device: phase 2 is empty and passes.
    let mut h = H::new(policy("1%,2%,100%"), 10);
    h.start();
    let out = h.outcome(1, Outcome::Succeeded);
    let phases: Vec<u32> = out
        .iter()
        .filter_map(|d| match d {
            Decision::PhaseStarted { phase, .. } => Some(*phase),
            _ => None,
        })
        .collect();
    assert_eq!(phases, vec![2, 3], "no phase skipped");
    assert_eq!(started(&out).len(), 9);

    let mut h = H::new(policy("all"), 0);
    let out = h.start();
    assert_eq!(h.status(), CampaignStatus::Completed, "{out:?}");
}

// ----- error threshold -----

#[test]
fn the_error_threshold_waits_for_min_finished_then_pauses_and_pauses_again_after_resume() {
    let mut p = policy("all");
    p.error_threshold = Some(ErrorThreshold {
        limit: Limit::parse("2").unwrap(),
        min_finished: 3,
        kinds: vec![FailureKind::Failed],
        action: ThresholdAction::Pause,
    });
    p.rate = Some(Rate {
        max_per_minute: 60,
        ramp: None,
    });
    let mut h = H::new(p, 10);
    assert_eq!(started(&h.start()), vec![1]);
    h.tick(1000);
    h.tick(1000);
    h.tick(1000);
    h.outcome(1, Outcome::Failed);
    h.outcome(2, Outcome::Rejected);
    assert_eq!(
        h.status(),
        CampaignStatus::Running,
        "rejections are not counted, 2 finished"
    );
    let out = h.outcome(3, Outcome::Failed);
    assert_eq!(
        changes(&out),
        vec![(
            CampaignStatus::Running,
            CampaignStatus::Paused,
            Reason::ErrorThreshold {
                failures: 2,
                finished: 3
            }
        )]
    );
    assert!(started(&h.tick(1000)).is_empty(), "paused: no start");
    assert_eq!(started(&h.cmd(Command::Resume).unwrap()), vec![5]);
    h.outcome(4, Outcome::Succeeded);
    assert_eq!(
        h.status(),
        CampaignStatus::Running,
        "a success does not pause"
    );
    let out = h.outcome(5, Outcome::Failed);
    assert_eq!(changes(&out)[0].1, CampaignStatus::Paused);
}

#[test]
fn the_error_threshold_can_abort_by_percentage() {
    let mut p = policy("all");
    p.error_threshold = Some(ErrorThreshold {
        limit: Limit::parse("50%").unwrap(),
        min_finished: 2,
        kinds: FailureKind::ALL.to_vec(),
        action: ThresholdAction::Abort,
    });
    let mut h = H::new(p, 6);
    assert_eq!(started(&h.start()).len(), 6);
    h.outcome(1, Outcome::TimedOut);
    assert_eq!(
        h.status(),
        CampaignStatus::Running,
        "1 finished < min_finished"
    );
    h.outcome(2, Outcome::Succeeded);
    h.outcome(3, Outcome::Succeeded);
    h.progress(4, Stage::Installing);
    let out = h.outcome(5, Outcome::Failed);
    assert_eq!(
        changes(&out),
        vec![(
            CampaignStatus::Running,
            CampaignStatus::Aborted,
            Reason::ErrorThreshold {
                failures: 2,
                finished: 4
            }
        )]
    );
    assert_eq!(
        of_kind(&out, |d| match d {
            Decision::Cancel { devices } => Some(devices.clone()),
            _ => None,
        }),
        vec![6]
    );
    assert_eq!(
        h.member(4).status,
        MemberStatus::Active,
        "installing: left alone"
    );
}

// ----- abort -----

#[test]
fn abort_cancels_exactly_the_devices_that_have_not_installed() {
    let mut p = policy("all");
    p.retries = 1;
    p.rate = Some(Rate {
        max_per_minute: 300,
        ramp: None,
    });
    let mut h = H::new(p, 20);
    h.start();
    h.tick(1000);
    h.tick(1000);
    // 5 per second: 15 devices started in 3 seconds.
    assert_eq!(h.c.summary().queued, 5);
    h.progress(1, Stage::Installing);
    h.progress(2, Stage::Downloaded);
    h.outcome(3, Outcome::Succeeded);
    h.outcome(4, Outcome::Failed); // retry_wait: the rate budget of this second is used up
    assert_eq!(h.member(4).status, MemberStatus::RetryWait);
    let out = h.cmd(Command::Abort).unwrap();
    let cancel = of_kind(&out, |d| match d {
        Decision::Cancel { devices } => Some(devices.clone()),
        _ => None,
    });
    let mut expected: Vec<DeviceId> = vec![2];
    expected.extend(5..=15);
    assert_eq!(cancel, expected);
    assert_eq!(h.member(1).status, MemberStatus::Active);
    assert_eq!(h.member(4).status, MemberStatus::Cancelled);
    assert!((16..=20).all(|d| h.member(d).status == MemberStatus::Skipped));
    assert_eq!(h.c.summary().skipped, 5);
    // Answers after the abort still count; no retry after abort.
    h.outcome(1, Outcome::Failed);
    assert_eq!(h.member(1).status, MemberStatus::Failed);
    h.outcome(2, Outcome::Cancelled);
    h.outcome(5, Outcome::Succeeded); // the cancel lost the race
    assert_eq!(h.member(5).status, MemberStatus::Succeeded);
    assert!(h.tick(MIN).is_empty());
}

// ----- rate and ramp -----

#[test]
fn the_rate_spreads_starts_and_never_exceeds_the_limit_in_any_minute() {
    let mut p = policy("all");
    p.rate = Some(Rate {
        max_per_minute: 90,
        ramp: None,
    });
    let mut h = H::new(p, 500);
    let mut times = Vec::new();
    let mut record = |out: &[Decision], now: i64| times.extend(started(out).iter().map(|_| now));
    let out = h.start();
    record(&out, h.now);
    for _ in 0..400 {
        let out = h.tick(500);
        record(&out, h.now);
    }
    assert_eq!(times.len(), 500 - h.c.summary().queued as usize);
    for (i, &t) in times.iter().enumerate() {
        let in_minute = times[..=i].iter().filter(|&&s| s > t - MIN).count();
        assert!(
            in_minute <= 90,
            "{in_minute} starts in the minute before {t}"
        );
        let in_second = times
            .iter()
            .filter(|&&s| s.div_euclid(1000) == t.div_euclid(1000))
            .count();
        assert!(in_second <= 2, "ceil(90/60) = 2 per second");
    }
    // 200 s of ticks: the limit is used, 90 per 61 s.
    assert!(times.len() >= 270, "{}", times.len());
}

#[test]
fn the_ramp_multiplies_the_rate_every_n_successes_up_to_the_maximum() {
    let mut p = policy("all");
    p.rate = Some(Rate {
        max_per_minute: 10,
        ramp: Some(Ramp {
            base_per_minute: 1,
            increment_factor: 2.5,
            criterion: RampCriterion::Succeeded,
            every: 2,
        }),
    });
    let mut h = H::new(p, 100);
    h.start();
    assert_eq!(h.c.rate_per_minute(), Some(1));
    h.outcome(1, Outcome::Succeeded);
    assert_eq!(h.c.rate_per_minute(), Some(1));
    for _ in 0..61 {
        h.tick(1000);
    }
    h.outcome(2, Outcome::Succeeded);
    assert_eq!(h.c.rate_per_minute(), Some(2), "floor(1 x 2.5) = 2");
    let mut d = 3;
    let mut seen = vec![];
    while d < 12 {
        for out in [h.tick(1000)] {
            for s in started(&out) {
                h.outcome(s, Outcome::Succeeded);
                d += 1;
                seen.push(h.c.rate_per_minute().unwrap());
            }
        }
    }
    // 4 successes: 5; 6: 12 capped to 10.
    assert!(seen.contains(&5) && seen.contains(&10), "{seen:?}");
    assert!(seen.iter().all(|&r| r <= 10));
}

#[test]
fn the_notified_ramp_counts_first_reports() {
    let mut p = policy("all");
    p.rate = Some(Rate {
        max_per_minute: 100,
        ramp: Some(Ramp {
            base_per_minute: 2,
            increment_factor: 2.0,
            criterion: RampCriterion::Notified,
            every: 1,
        }),
    });
    let mut h = H::new(p, 5);
    h.start();
    h.progress(1, Stage::Notified);
    assert_eq!(h.c.rate_per_minute(), Some(4));
    h.progress(1, Stage::Downloading);
    assert_eq!(
        h.c.rate_per_minute(),
        Some(4),
        "a second report of one attempt is not counted"
    );
}

// ----- retries and timeouts -----

#[test]
fn failed_devices_are_retried_up_to_the_retry_count() {
    let mut p = policy("all");
    p.retries = 2;
    let mut h = H::new(p, 1);
    h.start();
    let out = h.outcome(1, Outcome::Failed);
    assert_eq!(
        of_kind(&out, |d| match d {
            Decision::Retry { devices } => Some(devices.clone()),
            _ => None,
        }),
        vec![1]
    );
    h.outcome(1, Outcome::Failed);
    assert_eq!(h.member(1).attempts, 3);
    h.outcome(1, Outcome::Failed);
    assert_eq!(h.member(1).status, MemberStatus::Failed);
    assert_eq!(h.status(), CampaignStatus::Completed);
    let s = h.c.summary();
    assert_eq!(
        (s.totals.starts, s.totals.retries, s.totals.failed),
        (3, 2, 1)
    );

    let mut p = policy("all");
    p.retries = 2;
    let mut h = H::new(p, 1);
    h.start();
    h.outcome(1, Outcome::Rejected);
    assert_eq!(
        h.member(1).status,
        MemberStatus::Rejected,
        "rejections are not retried"
    );
}

#[test]
fn a_device_silent_past_its_timeout_times_out_and_a_deferral_gets_the_defer_period_too() {
    let mut p = policy("all");
    p.device_timeout_s = Some(600);
    p.max_defer_s = Some(3600);
    p.retries = 1;
    let mut h = H::new(p, 2);
    h.start();
    h.tick(599_000);
    h.progress(2, Stage::Deferred);
    assert!(h.tick(999).is_empty());
    let out = h.tick(1);
    assert_eq!(out[0], Decision::TimeOut { device: 1 });
    assert!(out.contains(&Decision::Retry { devices: vec![1] }));
    assert_eq!(h.member(1).attempts, 2);
    let out = h.tick(600_000);
    assert!(out.contains(&Decision::TimeOut { device: 1 }));
    assert_eq!(
        h.member(1).status,
        MemberStatus::TimedOut,
        "retries used up"
    );
    // Device 2 deferred at t0+599 s: it times out at +3600 s +600 s after that.
    assert!(!h.tick(3_598_000).contains(&Decision::TimeOut { device: 2 }));
    assert!(h.tick(1000).contains(&Decision::TimeOut { device: 2 }));
    // A late report of a closed attempt is refused and changes nothing.
    let before = h.c.summary();
    assert!(matches!(
        h.c.device_outcome(&mut h.r, 1, Outcome::Succeeded, h.now),
        Err(CampaignError::NotActive {
            device: 1,
            status: MemberStatus::TimedOut
        })
    ));
    assert_eq!(h.c.summary(), before);
}

// ----- window, skip, dynamic, schedule -----

#[test]
fn installs_are_triggered_only_inside_the_maintenance_window() {
    // 2026-11-30 00:00 UTC is a Monday.
    let monday = 1_795_996_800_000;
    let mut p = policy("all");
    p.maintenance_window = Some(MaintenanceWindow::parse("Mon 02:00-03:00 UTC").unwrap());
    let mut h = H::new(p, 2);
    h.now = monday;
    h.start();
    assert!(!h.c.install_allowed(h.now));
    let out = h.progress(1, Stage::Downloaded);
    assert!(out.is_empty(), "outside the window");
    assert!(h.tick(2 * 3_600_000 - 1).is_empty());
    assert_eq!(h.tick(1), vec![Decision::Install { devices: vec![1] }]);
    assert!(h.tick(1000).is_empty(), "triggered once");
    assert_eq!(
        h.progress(2, Stage::Downloaded),
        vec![Decision::Install { devices: vec![2] }]
    );
}

#[test]
fn a_download_only_campaign_succeeds_at_downloaded() {
    let mut p = policy("all");
    p.install = Handling::Skip;
    let mut h = H::new(p, 1);
    h.start();
    let out = h.progress(1, Stage::Downloaded);
    assert!(!out.iter().any(|d| matches!(d, Decision::Install { .. })));
    assert_eq!(h.member(1).status, MemberStatus::Succeeded);
    assert_eq!(h.status(), CampaignStatus::Completed);
}

#[test]
fn dynamic_campaigns_take_devices_that_join_until_closed() {
    let mut p = policy("all");
    p.dynamic = true;
    let mut h = H::new(p, 1);
    h.start();
    h.outcome(1, Outcome::Succeeded);
    assert_eq!(
        h.status(),
        CampaignStatus::Running,
        "open target: not complete"
    );
    let out = h.c.add_device(&mut h.r, 2, h.now).unwrap();
    assert_eq!(started(&out), vec![2]);
    assert_eq!(
        h.c.add_device(&mut h.r, 2, h.now),
        Err(CampaignError::AlreadyMember(2))
    );
    assert!(h.c.summary().target_open);
    h.cmd(Command::Close).unwrap();
    assert!(!h.c.summary().target_open);
    assert_eq!(
        h.c.add_device(&mut h.r, 3, h.now),
        Err(CampaignError::TargetFixed)
    );
    let out = h.outcome(2, Outcome::Succeeded);
    assert_eq!(changes(&out)[0].1, CampaignStatus::Completed);

    let mut h = H::new(policy("all"), 1);
    h.start();
    assert_eq!(
        h.c.add_device(&mut h.r, 9, h.now),
        Err(CampaignError::TargetFixed)
    );
}

#[test]
fn removed_devices_keep_their_row_and_the_counters_stay_right() {
    let mut p = policy("2,all");
    p.retries = 1;
    p.rate = Some(Rate {
        max_per_minute: 60,
        ramp: None,
    });
    let mut h = H::new(p, 5);
    h.start();
    h.tick(1000);
    // Devices 1 and 2 active (phase 1); 3..=5 queued.
    assert!(h.c.remove_device(&mut h.r, 4, h.now).unwrap().is_empty());
    assert_eq!(h.member(4).status, MemberStatus::Skipped);
    h.check();
    let out = h.c.remove_device(&mut h.r, 1, h.now).unwrap();
    assert_eq!(out, vec![Decision::Cancel { devices: vec![1] }]);
    h.check();
    assert_eq!(
        h.c.remove_device(&mut h.r, 1, h.now).unwrap(),
        vec![],
        "idempotent"
    );
    h.outcome(1, Outcome::Cancelled);
    h.outcome(2, Outcome::Failed);
    assert_eq!(
        h.member(2).status,
        MemberStatus::RetryWait,
        "rate: no retry in this second"
    );
    h.c.remove_device(&mut h.r, 2, h.now).unwrap();
    assert_eq!(h.member(2).status, MemberStatus::Cancelled);
    h.check();
    // Phase 1 is over (two cancelled devices pass its threshold); 3 and 5 start, 4 does not.
    let mut all = Vec::new();
    for _ in 0..130 {
        all.extend(started(&h.tick(1000)));
    }
    assert_eq!(all, vec![3, 5]);
    succeed(&mut h, &[3, 5]);
    assert_eq!(h.status(), CampaignStatus::Completed);
    assert_eq!(h.c.summary().skipped, 1);
    assert_eq!(
        h.c.remove_device(&mut h.r, 9, h.now),
        Err(CampaignError::UnknownDevice(9))
    );
}

#[test]
fn a_scheduled_campaign_starts_at_its_time() {
    let mut h = H::new(policy("all"), 1);
    let at = h.now + 10 * MIN;
    h.cmd(Command::Schedule { at }).unwrap();
    assert!(h.tick(10 * MIN - 1).is_empty());
    let out = h.tick(1);
    assert_eq!(
        changes(&out),
        vec![(
            CampaignStatus::Scheduled,
            CampaignStatus::Running,
            Reason::ScheduledTime
        )]
    );
    assert_eq!(started(&out), vec![1]);
    assert_eq!(h.c.summary().last_change.unwrap().by, Actor::Engine);
}

#[test]
fn bad_reports_are_refused() {
    let mut h = H::new(policy("all"), 1);
    assert_eq!(
        h.c.device_progress(&mut h.r, 1, Stage::Downloading, 0),
        Err(CampaignError::NotActive {
            device: 1,
            status: MemberStatus::Queued
        })
    );
    assert_eq!(
        h.c.device_outcome(&mut h.r, 7, Outcome::Succeeded, 0),
        Err(CampaignError::UnknownDevice(7))
    );
    h.start();
    assert_eq!(
        h.c.device_progress(&mut h.r, 1, Stage::Assigned, 0),
        Err(CampaignError::AssignedIsNotAReport)
    );
}

#[test]
fn state_restored_from_json_goes_on_exactly_like_the_original() {
    let mut p = policy("10%,100%");
    p.rate = Some(Rate {
        max_per_minute: 120,
        ramp: None,
    });
    p.retries = 1;
    p.device_timeout_s = Some(30);
    let mut a = H::new(p, 50);
    a.start();
    for _ in 0..5 {
        a.tick(1000);
    }
    a.outcome(1, Outcome::Failed);
    let json = serde_json::to_string(&a.c).unwrap();
    let mut b = H {
        c: serde_json::from_str(&json).unwrap(),
        r: a.r.clone(),
        now: a.now,
    };
    for step in 0..200 {
        let (x, y) = (a.tick(1000), b.tick(1000));
        assert_eq!(x, y, "step {step}");
        for d in started(&x) {
            if d % 3 == 0 {
                assert_eq!(
                    a.outcome(d, Outcome::Succeeded),
                    b.outcome(d, Outcome::Succeeded)
                );
            }
        }
    }
    assert_eq!(a.c, b.c);
}

#[test]
fn decisions_and_summaries_serialize_to_the_documented_json() {
    let d = Decision::Start {
        phase: 1,
        devices: vec![4, 5],
    };
    assert_eq!(
        serde_json::to_value(&d).unwrap(),
        serde_json::json!({"decision": "start", "phase": 1, "devices": [4, 5]})
    );
    let c = Decision::StateChanged(StateChange {
        from: CampaignStatus::Running,
        to: CampaignStatus::Paused,
        at: 5,
        by: Actor::Engine,
        reason: Reason::ErrorThreshold {
            failures: 3,
            finished: 10,
        },
    });
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        serde_json::json!({"decision": "state_changed", "from": "running", "to": "paused", "at": 5,
            "by": "engine", "reason": {"kind": "error_threshold", "failures": 3, "finished": 10}})
    );
    assert_eq!(
        serde_json::to_value(Actor::Admin("bob".into())).unwrap(),
        serde_json::json!({"admin": "bob"})
    );
    assert_eq!(
        serde_json::to_value(Command::Approve { phase: 2 }).unwrap(),
        serde_json::json!({"command": "approve", "phase": 2})
    );
}

// ----- any input sequence -----

mod any_inputs {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[derive(Debug, Clone)]
    enum Op {
        Add(DeviceId),
        Cmd(u8, u32),
        Tick(i64),
        Progress(DeviceId, usize),
        Outcome(DeviceId, u8),
        Remove(DeviceId),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1i64..15).prop_map(Op::Add),
            (0u8..7, 1u32..4).prop_map(|(c, p)| Op::Cmd(c, p)),
            (0i64..90_000).prop_map(Op::Tick),
            (1i64..15, 1usize..6).prop_map(|(d, s)| Op::Progress(d, s)),
            (1i64..15, 0u8..5).prop_map(|(d, o)| Op::Outcome(d, o)),
            (1i64..15).prop_map(Op::Remove),
        ]
    }

    fn command(c: u8, phase: u32, now: i64) -> Command {
        match c {
            0 => Command::Schedule { at: now + 30_000 },
            1 => Command::Start,
            2 => Command::Pause,
            3 => Command::Resume,
            4 => Command::Abort,
            5 => Command::Approve { phase },
            _ => Command::Close,
        }
    }

    fn outcome(o: u8) -> Outcome {
        [
            Outcome::Succeeded,
            Outcome::Failed,
            Outcome::Rejected,
            Outcome::Cancelled,
            Outcome::TimedOut,
        ][usize::from(o) % 5]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn any_input_sequence_keeps_counters_rate_and_starts_right(
            ops in proptest::collection::vec(op(), 0..150),
            retries in 0u32..3,
            rate in proptest::option::of(1u32..100),
            dynamic: bool,
            approval: bool,
            abort_on_errors: bool,
        ) {
            let mut p = policy("10%,50%,all");
            p.phases[0].success_threshold = Percent::parse("50%").unwrap();
            p.phases[1].approval = approval;
            p.retries = retries;
            p.dynamic = dynamic;
            p.device_timeout_s = Some(60);
            p.max_defer_s = Some(30);
            p.rate = rate.map(|r| Rate {
                max_per_minute: r,
                ramp: Some(Ramp {
                    base_per_minute: 1,
                    increment_factor: 2.0,
                    criterion: RampCriterion::Succeeded,
                    every: 1,
                }),
            });
            p.error_threshold = Some(ErrorThreshold {
                limit: Limit::Count(3),
                min_finished: 2,
                kinds: FailureKind::ALL.to_vec(),
                action: if abort_on_errors { ThresholdAction::Abort } else { ThresholdAction::Pause },
            });
            p.maintenance_window = Some(MaintenanceWindow::parse("daily 00:00-12:00 UTC").unwrap());
            let mut h = H::new(p, 0);
            let mut ever_started = HashSet::new();
            let mut assignments: Vec<(i64, u32)> = Vec::new();
            for op in ops {
                let was_final = h.status().is_final();
                let now = h.now;
                let out = match op {
                    Op::Add(d) => h.c.add_device(&mut h.r, d, now).unwrap_or_default(),
                    Op::Cmd(c, phase) => h
                        .c
                        .command(&mut h.r, command(c, phase, now), alice(), now)
                        .unwrap_or_default(),
                    Op::Tick(dt) => {
                        h.now += dt;
                        h.c.tick(&mut h.r, h.now)
                    }
                    Op::Progress(d, s) => h
                        .c
                        .device_progress(&mut h.r, d, Stage::ALL[s], now)
                        .unwrap_or_default(),
                    Op::Outcome(d, o) => h
                        .c
                        .device_outcome(&mut h.r, d, outcome(o), now)
                        .unwrap_or_default(),
                    Op::Remove(d) => h.c.remove_device(&mut h.r, d, now).unwrap_or_default(),
                };
                h.check();
                let rate_now = h.c.rate_per_minute().unwrap_or(u32::MAX);
                for decision in &out {
                    match decision {
                        Decision::Start { devices, .. } => {
                            prop_assert!(!was_final);
                            for d in devices {
                                prop_assert!(ever_started.insert(*d), "device {} started twice", d);
                                prop_assert_eq!(h.member(*d).attempts, 1);
                                assignments.push((h.now, rate_now));
                            }
                        }
                        Decision::Retry { devices } => {
                            prop_assert!(!was_final);
                            for d in devices {
                                let a = h.member(*d).attempts;
                                prop_assert!(a >= 2 && a <= retries + 1);
                                assignments.push((h.now, rate_now));
                            }
                        }
                        Decision::Install { .. } => {
                            prop_assert!(h.c.install_allowed(h.now));
                        }
                        _ => {}
                    }
                }
            }
            for (i, &(t, r)) in assignments.iter().enumerate() {
                let n = assignments[..=i].iter().filter(|a| a.0 > t - MIN).count() as u64;
                prop_assert!(n <= u64::from(r), "{} starts in the minute before {}", n, t);
            }
        }
    }
}

#[test]
fn the_policy_example_in_the_module_docs_parses_and_validates() {
    let docs = include_str!("mod.rs");
    let start = docs.find("//! ```json\n").unwrap() + "//! ```json\n".len();
    let end = start + docs[start..].find("//! ```\n").unwrap();
    let json: String = docs[start..end]
        .lines()
        .map(|l| l.trim_start_matches("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let p: Policy = serde_json::from_str(&json).unwrap();
    p.validate().unwrap();
    assert_eq!(p.phases.len(), 3);
    assert!(p.phases[1].approval);
    assert_eq!(p.rate.unwrap().ramp.unwrap().every, 50);
    assert_eq!(
        p.maintenance_window.unwrap().to_string(),
        "Mon-Fri 02:00-05:00 +01:00"
    );
}
