//! The rollout policy of a campaign, its JSON shape and the parsers of its CLI/API forms.
//!
//! Every parser here takes text from a user (CLI flags, API JSON) and is bounded (input length,
//! number of phases, value ranges), never panics, and says what is wrong in its error. The JSON
//! forms of phase sizes, thresholds and the maintenance window are the same strings the CLI takes,
//! so one grammar serves both.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::window::MaintenanceWindow;

/// Most phases a policy may have.
pub const MAX_PHASES: usize = 100;
/// Longest text any policy parser accepts.
pub const MAX_INPUT_LEN: usize = 4096;
/// Highest start rate, in devices per minute.
pub const MAX_RATE_PER_MINUTE: u32 = 1_000_000;
/// Most retries per device (AWS IoT Jobs allows 10 as well).
pub const MAX_RETRIES: u32 = 10;
/// Longest per-device timeout or defer period: one year, in seconds.
pub const MAX_DURATION_S: u64 = 366 * 24 * 3600;
/// Largest device count a phase size or threshold may name.
pub const MAX_COUNT: u64 = 1_000_000_000_000;

/// A policy that does not hold together, or a CLI/API form that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    /// The policy field (or CLI flag) at fault.
    pub field: &'static str,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl PolicyError {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// The start of an input for an error message: at most 40 characters.
pub(crate) fn shown(input: &str) -> String {
    let mut s: String = input.chars().take(40).collect();
    if input.chars().nth(40).is_some() {
        s.push_str("...");
    }
    format!("{s:?}")
}

fn check_len(field: &'static str, input: &str) -> Result<(), PolicyError> {
    if input.len() > MAX_INPUT_LEN {
        return Err(PolicyError::new(
            field,
            format!("longer than {MAX_INPUT_LEN} bytes"),
        ));
    }
    Ok(())
}

/// A percentage with two decimals, held exactly in basis points (`10000` = 100 %).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(u32);

impl Percent {
    /// 100 %.
    pub const FULL: Percent = Percent(10_000);

    /// A percentage from basis points (hundredths of a percent); `None` above 100 %.
    pub fn from_basis_points(bp: u32) -> Option<Self> {
        (bp <= 10_000).then_some(Self(bp))
    }

    /// The value in basis points.
    pub fn basis_points(self) -> u32 {
        self.0
    }

    /// `ceil(self × n)`: the number of devices this share of `n` devices covers.
    pub fn of(self, n: u64) -> u64 {
        let n = u128::from(n);
        let covered = (n * u128::from(self.0)).div_ceil(10_000);
        // covered <= n, which came from a u64.
        u64::try_from(covered).unwrap_or(u64::MAX)
    }

    /// Whether `part` out of `whole` reaches this share (`part / whole >= self`); an empty
    /// `whole` reaches every share.
    pub fn reached_by(self, part: u64, whole: u64) -> bool {
        u128::from(part) * 10_000 >= u128::from(self.0) * u128::from(whole)
    }

    /// Parses `5%`, `0.5%`, `12.25%` (the `%` is required).
    pub fn parse(input: &str) -> Result<Self, String> {
        let s = input.trim();
        let Some(number) = s.strip_suffix('%') else {
            return Err(format!("{} is not a percentage like 5%", shown(input)));
        };
        let (int, frac) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || (number.contains('.') && !digits(frac)) {
            return Err(format!("{} is not a percentage like 5%", shown(input)));
        }
        if frac.len() > 2 {
            return Err(format!("{}: at most two decimals are kept", shown(input)));
        }
        if int.len() > 3 {
            return Err(format!("{} is above 100%", shown(input)));
        }
        let int: u32 = int
            .parse()
            .map_err(|_| format!("{} is not a percentage", shown(input)))?;
        let mut frac_bp: u32 = if frac.is_empty() {
            0
        } else {
            frac.parse()
                .map_err(|_| format!("{} is not a percentage", shown(input)))?
        };
        if frac.len() == 1 {
            frac_bp *= 10;
        }
        Percent::from_basis_points(int * 100 + frac_bp)
            .ok_or_else(|| format!("{} is above 100%", shown(input)))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (int, frac) = (self.0 / 100, self.0 % 100);
        if frac == 0 {
            write!(f, "{int}%")
        } else if frac % 10 == 0 {
            write!(f, "{int}.{}%", frac / 10)
        } else {
            write!(f, "{int}.{frac:02}%")
        }
    }
}

fn parse_count(field: &'static str, s: &str) -> Result<u64, PolicyError> {
    if s.is_empty() || s.len() > 13 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PolicyError::new(
            field,
            format!("{} is not a device count, a percentage or `all`", shown(s)),
        ));
    }
    let n: u64 = s
        .parse()
        .map_err(|_| PolicyError::new(field, format!("{} is not a number", shown(s))))?;
    if n == 0 || n > MAX_COUNT {
        return Err(PolicyError::new(
            field,
            format!("{n} is outside 1..={MAX_COUNT}"),
        ));
    }
    Ok(n)
}

/// How many devices a phase covers, counted from the start of the campaign (cumulative):
/// `1%,10%,100%` and `50,500,all` both grow phase by phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhaseSize {
    /// The first `n` devices (or all of them, when there are fewer).
    Count(u64),
    /// This share of the target, rounded up (1 % of 50 devices is 1 device).
    Percent(Percent),
    /// Every device of the target.
    All,
}

impl PhaseSize {
    /// Parses `10%`, `50` or `all`.
    pub fn parse(input: &str) -> Result<Self, PolicyError> {
        check_len("phases", input)?;
        let s = input.trim();
        if s.eq_ignore_ascii_case("all") {
            return Ok(Self::All);
        }
        if s.ends_with('%') {
            let p = Percent::parse(s).map_err(|m| PolicyError::new("phases", m))?;
            if p.basis_points() == 0 {
                return Err(PolicyError::new("phases", "a phase of 0% starts no device"));
            }
            return Ok(Self::Percent(p));
        }
        parse_count("phases", s).map(Self::Count)
    }

    /// How many devices, cumulated, this phase covers out of `total`.
    pub fn cumulative(self, total: u64) -> u64 {
        match self {
            Self::Count(n) => n.min(total),
            Self::Percent(p) => p.of(total),
            Self::All => total,
        }
    }

    fn covers_all(self) -> bool {
        matches!(self, Self::All) || self == Self::Percent(Percent::FULL)
    }
}

impl fmt::Display for PhaseSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}"),
            Self::All => f.write_str("all"),
        }
    }
}

/// A JSON value that is a count (number) or a string form.
#[derive(Deserialize)]
#[serde(untagged)]
enum CountOrText {
    Count(u64),
    Text(String),
}

impl Serialize for PhaseSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Count(n) => s.serialize_u64(*n),
            other => s.collect_str(other),
        }
    }
}

impl<'de> Deserialize<'de> for PhaseSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match CountOrText::deserialize(d)? {
            CountOrText::Count(n) => parse_count("phases", &n.to_string()).map(PhaseSize::Count),
            CountOrText::Text(t) => PhaseSize::parse(&t),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        check_len("percent", &text).map_err(serde::de::Error::custom)?;
        Percent::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn full() -> Percent {
    Percent::FULL
}

fn is_full(p: &Percent) -> bool {
    *p == Percent::FULL
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One phase of a staged rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// The devices covered once this phase has started, cumulative.
    pub size: PhaseSize,
    /// The share of this phase's finished devices that must have succeeded for the next phase
    /// to start (default 100 %). Devices cancelled one by one are not counted.
    #[serde(default = "full", skip_serializing_if = "is_full")]
    pub success_threshold: Percent,
    /// The phase starts only after an operator approves it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub approval: bool,
}

/// Parses the `--phases` form (`1%,10%,100%` or `50,500,all`) into phases with the default
/// success threshold; `approve_phases` makes every phase after the first wait for an approval.
pub fn parse_phases(input: &str, approve_phases: bool) -> Result<Vec<Phase>, PolicyError> {
    check_len("phases", input)?;
    if input.trim().is_empty() {
        return Err(PolicyError::new("phases", "no phase given"));
    }
    let mut phases = Vec::new();
    for (i, part) in input.split(',').enumerate() {
        if i >= MAX_PHASES {
            return Err(PolicyError::new(
                "phases",
                format!("more than {MAX_PHASES} phases"),
            ));
        }
        phases.push(Phase {
            size: PhaseSize::parse(part)?,
            success_threshold: Percent::FULL,
            approval: approve_phases && i > 0,
        });
    }
    validate_phases(&phases)?;
    Ok(phases)
}

/// Phases grow strictly, use one kind of size (counts or percentages, `all` last), and the last
/// one covers the whole target so that every device gets a phase.
pub fn validate_phases(phases: &[Phase]) -> Result<(), PolicyError> {
    let err = |m: String| Err(PolicyError::new("phases", m));
    if phases.is_empty() {
        return err("no phase given".into());
    }
    if phases.len() > MAX_PHASES {
        return err(format!("more than {MAX_PHASES} phases"));
    }
    for (i, pair) in phases.windows(2).enumerate() {
        let (a, b) = (pair[0].size, pair[1].size);
        let n = i + 1;
        match (a, b) {
            (PhaseSize::Count(x), PhaseSize::Count(y)) if y <= x => {
                return err(format!(
                    "phase {} ({y}) must cover more devices than phase {n} ({x}): sizes are cumulative",
                    n + 1
                ));
            }
            (PhaseSize::Percent(x), PhaseSize::Percent(y)) if y <= x => {
                return err(format!(
                    "phase {} ({y}) must cover more than phase {n} ({x}): sizes are cumulative",
                    n + 1
                ));
            }
            (PhaseSize::Count(_), PhaseSize::Percent(_))
            | (PhaseSize::Percent(_), PhaseSize::Count(_)) => {
                return err(
                    "mix of device counts and percentages; use one kind (and `all` last)".into(),
                );
            }
            (_, _) if a.covers_all() => {
                return err(format!(
                    "phase {n} ({a}) already covers every device; it must be the last"
                ));
            }
            _ => {}
        }
    }
    let last = phases[phases.len() - 1].size;
    if !last.covers_all() {
        return err(format!(
            "the last phase ({last}) must be `all` or 100%, so that every device gets a phase"
        ));
    }
    Ok(())
}

/// A limit on failures: a count of devices or a share of the finished ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// This many failed devices.
    Count(u64),
    /// This share of the finished devices.
    Percent(Percent),
}

impl Limit {
    /// Parses `--error-threshold 5%` or `3`.
    pub fn parse(input: &str) -> Result<Self, PolicyError> {
        check_len("error_threshold", input)?;
        let s = input.trim();
        if s.ends_with('%') {
            let p = Percent::parse(s).map_err(|m| PolicyError::new("error_threshold", m))?;
            if p.basis_points() == 0 {
                return Err(PolicyError::new(
                    "error_threshold",
                    "0% would stop the campaign before any failure; give more than 0%",
                ));
            }
            return Ok(Self::Percent(p));
        }
        if s.is_empty() || s.len() > 13 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PolicyError::new(
                "error_threshold",
                format!(
                    "{} is not a count like 3 or a percentage like 5%",
                    shown(input)
                ),
            ));
        }
        match s.parse::<u64>() {
            Ok(n) if (1..=MAX_COUNT).contains(&n) => Ok(Self::Count(n)),
            _ => Err(PolicyError::new(
                "error_threshold",
                format!("{} is outside 1..={MAX_COUNT}", shown(input)),
            )),
        }
    }

    /// Whether `failures` out of `finished` devices reach the limit.
    pub fn reached(self, failures: u64, finished: u64) -> bool {
        match self {
            Self::Count(n) => failures >= n,
            Self::Percent(p) => failures > 0 && p.reached_by(failures, finished),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}"),
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Count(n) => s.serialize_u64(*n),
            Self::Percent(p) => s.collect_str(p),
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match CountOrText::deserialize(d)? {
            CountOrText::Count(n) => Limit::parse(&n.to_string()),
            CountOrText::Text(t) => Limit::parse(&t),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// A kind of final failure, as the error threshold counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The update failed on the device (download, verification, install or self-test).
    Failed,
    /// The device (or its user) refused the update.
    Rejected,
    /// The device stayed in one state longer than the per-device timeout.
    TimedOut,
}

impl FailureKind {
    /// Every kind.
    pub const ALL: [FailureKind; 3] = [Self::Failed, Self::Rejected, Self::TimedOut];
}

/// What a reached error threshold does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdAction {
    /// Stop starting devices until an operator resumes.
    Pause,
    /// Abort the campaign (cancels the devices that have not installed).
    Abort,
}

fn all_kinds() -> Vec<FailureKind> {
    FailureKind::ALL.to_vec()
}

/// The brake: too many failures pause or abort the campaign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorThreshold {
    /// Failures (of `kinds`) that trigger the action: a count, or a share of finished devices.
    pub limit: Limit,
    /// Checked only once at least this many devices have finished (succeeded or failed in any
    /// way), so that one early failure out of two does not read as 50 %.
    #[serde(default)]
    pub min_finished: u64,
    /// Which final failures count (default: all three).
    #[serde(default = "all_kinds")]
    pub kinds: Vec<FailureKind>,
    /// Pause (default) or abort.
    #[serde(default = "pause")]
    pub action: ThresholdAction,
}

fn pause() -> ThresholdAction {
    ThresholdAction::Pause
}

/// What raises the rate during an exponential ramp-up (AWS IoT Jobs' `rateIncreaseCriteria`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RampCriterion {
    /// Devices that acknowledged their deployment (first report of an attempt).
    Notified,
    /// Devices that succeeded.
    Succeeded,
}

/// Exponential ramp-up of the start rate (AWS IoT Jobs' `exponentialRate`): the rate starts at
/// `base_per_minute` and is multiplied by `increment_factor` (rounded down, at least +1 per
/// step, capped at the campaign's `max_per_minute`) each time another `every` devices meet the
/// criterion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    /// Devices per minute at the start.
    pub base_per_minute: u32,
    /// Multiplier per step, in (1, 5].
    pub increment_factor: f64,
    /// What is counted.
    pub criterion: RampCriterion,
    /// How many more devices must meet the criterion for each step.
    pub every: u64,
}

/// Start-rate limit: at most `max_per_minute` devices started (first starts and retries) in any
/// 60 s, spread over the minute (at most `ceil(rate / 60)` per second).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Devices per minute (the ceiling when ramping up).
    pub max_per_minute: u32,
    /// Optional exponential ramp-up from a lower base rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Ramp>,
}

/// Parses `--rate N/min` (`N/m` and `N per minute` are refused: one spelling).
pub fn parse_rate(input: &str) -> Result<u32, PolicyError> {
    check_len("rate", input)?;
    let s = input.trim();
    let Some(n) = s.strip_suffix("/min") else {
        return Err(PolicyError::new(
            "rate",
            format!("{} is not a rate like 100/min", shown(input)),
        ));
    };
    let n = n.trim();
    if n.is_empty() || n.len() > 7 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PolicyError::new(
            "rate",
            format!("{} is not a rate like 100/min", shown(input)),
        ));
    }
    match n.parse::<u32>() {
        Ok(r) if (1..=MAX_RATE_PER_MINUTE).contains(&r) => Ok(r),
        _ => Err(PolicyError::new(
            "rate",
            format!(
                "{} is outside 1..={MAX_RATE_PER_MINUTE} per minute",
                shown(input)
            ),
        )),
    }
}

/// How a device is asked to download or install (hawkBit DDI's `forced` / `attempt` / `skip`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Handling {
    /// Now, without asking the device's application.
    #[default]
    Forced,
    /// The device's application may defer or reject.
    Attempt,
    /// Not at all: for `install`, a download-only campaign (a device has succeeded once it
    /// reports the image downloaded). Not valid for `download`.
    Skip,
}

/// The rollout policy of a campaign: stored as JSON with the campaign, accepted by the API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The phases, in order (at least one; the last covers every device).
    pub phases: Vec<Phase>,
    /// Pause or abort on too many failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_threshold: Option<ErrorThreshold>,
    /// Start-rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// A device that stays in one state (or sends no report) this long has timed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_timeout_s: Option<u64>,
    /// How often a device that failed or timed out is assigned again (0 to 10).
    #[serde(default)]
    pub retries: u32,
    /// Download handling (`forced` or `attempt`).
    #[serde(default)]
    pub download: Handling,
    /// Install handling (`forced`, `attempt` or `skip` for download only).
    #[serde(default)]
    pub install: Handling,
    /// How long a device may defer (LwM2M /5/0/13); a deferred device times out only after this
    /// plus the per-device timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_defer_s: Option<u64>,
    /// Outside this window no install is triggered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<MaintenanceWindow>,
    /// The device must confirm before it downloads (hawkBit's confirmation, the device core's
    /// download authorization); carried to the fronts.
    #[serde(default)]
    pub consent: bool,
    /// Devices that match the target later join the campaign.
    #[serde(default)]
    pub dynamic: bool,
}

impl Policy {
    /// A one-phase policy (`all`), forced download and install, no brake: what `updraft deploy`
    /// does.
    pub fn immediate() -> Self {
        Self {
            phases: vec![Phase {
                size: PhaseSize::All,
                success_threshold: Percent::FULL,
                approval: false,
            }],
            error_threshold: None,
            rate: None,
            device_timeout_s: None,
            retries: 0,
            download: Handling::Forced,
            install: Handling::Forced,
            max_defer_s: None,
            maintenance_window: None,
            consent: false,
            dynamic: false,
        }
    }

    /// Checks that the policy holds together (the API must call it on a policy it received).
    pub fn validate(&self) -> Result<(), PolicyError> {
        validate_phases(&self.phases)?;
        if let Some(t) = &self.error_threshold {
            if t.kinds.is_empty() {
                return Err(PolicyError::new(
                    "error_threshold.kinds",
                    "no failure kind given: name failed, rejected and/or timed_out",
                ));
            }
            if t.kinds
                .iter()
                .enumerate()
                .any(|(i, k)| t.kinds[..i].contains(k))
            {
                return Err(PolicyError::new(
                    "error_threshold.kinds",
                    "a failure kind is named twice",
                ));
            }
            if t.min_finished > MAX_COUNT {
                return Err(PolicyError::new(
                    "error_threshold.min_finished",
                    format!("above {MAX_COUNT}"),
                ));
            }
            if let Limit::Count(0) | Limit::Percent(Percent(0)) = t.limit {
                return Err(PolicyError::new("error_threshold.limit", "must be above 0"));
            }
        }
        if let Some(rate) = &self.rate {
            if !(1..=MAX_RATE_PER_MINUTE).contains(&rate.max_per_minute) {
                return Err(PolicyError::new(
                    "rate.max_per_minute",
                    format!("outside 1..={MAX_RATE_PER_MINUTE}"),
                ));
            }
            if let Some(ramp) = &rate.ramp {
                if ramp.base_per_minute == 0 || ramp.base_per_minute > rate.max_per_minute {
                    return Err(PolicyError::new(
                        "rate.ramp.base_per_minute",
                        format!(
                            "{} must be between 1 and max_per_minute ({})",
                            ramp.base_per_minute, rate.max_per_minute
                        ),
                    ));
                }
                let f = ramp.increment_factor;
                if !(f.is_finite() && f > 1.0 && f <= 5.0) {
                    return Err(PolicyError::new(
                        "rate.ramp.increment_factor",
                        "must be above 1 and at most 5",
                    ));
                }
                if ramp.every == 0 || ramp.every > MAX_COUNT {
                    return Err(PolicyError::new(
                        "rate.ramp.every",
                        format!("outside 1..={MAX_COUNT}"),
                    ));
                }
            }
        }
        for (field, value) in [
            ("device_timeout_s", self.device_timeout_s),
            ("max_defer_s", self.max_defer_s),
        ] {
            if let Some(v) = value
                && !(1..=MAX_DURATION_S).contains(&v)
            {
                return Err(PolicyError::new(
                    field,
                    format!("{v} s is outside 1..={MAX_DURATION_S} s"),
                ));
            }
        }
        if self.retries > MAX_RETRIES {
            return Err(PolicyError::new(
                "retries",
                format!("{} is above {MAX_RETRIES}", self.retries),
            ));
        }
        if self.download == Handling::Skip {
            return Err(PolicyError::new(
                "download",
                "skip would never start an update; use forced or attempt",
            ));
        }
        Ok(())
    }

    /// The per-device timeout in milliseconds.
    pub(crate) fn timeout_ms(&self) -> Option<i64> {
        self.device_timeout_s.map(|s| (s as i64) * 1000)
    }

    /// The maximum defer period in milliseconds (0 when none).
    pub(crate) fn max_defer_ms(&self) -> i64 {
        self.max_defer_s.map_or(0, |s| (s as i64) * 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sizes(p: &[Phase]) -> Vec<PhaseSize> {
        p.iter().map(|p| p.size).collect()
    }

    #[test]
    fn percent_phases_parse_cumulatively_with_rounding_up() {
        let p = parse_phases("1%,10%,100%", false).unwrap();
        assert_eq!(
            sizes(&p),
            vec![
                PhaseSize::Percent(Percent(100)),
                PhaseSize::Percent(Percent(1000)),
                PhaseSize::Percent(Percent::FULL)
            ]
        );
        assert_eq!(p[0].size.cumulative(50), 1, "1% of 50 rounds up to 1");
        assert_eq!(p[0].size.cumulative(10_000), 100);
        assert_eq!(p[1].size.cumulative(10_000), 1000);
        assert_eq!(p[2].size.cumulative(10_001), 10_001);
        assert_eq!(p[0].size.cumulative(0), 0);
    }

    #[test]
    fn count_phases_end_with_all_and_cap_at_the_target() {
        let p = parse_phases(" 50, 500 ,ALL", true).unwrap();
        assert_eq!(
            sizes(&p),
            vec![PhaseSize::Count(50), PhaseSize::Count(500), PhaseSize::All]
        );
        assert_eq!(p[1].size.cumulative(300), 300);
        assert!(!p[0].approval && p[1].approval && p[2].approval);
    }

    #[test]
    fn bad_phase_lists_are_refused_with_the_reason() {
        for (input, needle) in [
            ("", "no phase"),
            ("10%,5%,100%", "cumulative"),
            ("50,50,all", "cumulative"),
            ("10%,50,all", "mix"),
            ("10%,50%", "must be `all` or 100%"),
            ("all,100%", "must be the last"),
            ("100%,all", "must be the last"),
            ("0%,100%", "0%"),
            ("0,all", "outside"),
            ("1.234%,100%", "two decimals"),
            ("101%", "above 100%"),
            ("ten,all", "not a device count"),
            ("-5,all", "not a device count"),
            ("5%%,100%", "not a percentage"),
            (",", "not a device count"),
        ] {
            let e = parse_phases(input, false).unwrap_err();
            assert_eq!(e.field, "phases");
            assert!(e.message.contains(needle), "{input:?}: {e}");
        }
        let many = vec!["1"; MAX_PHASES + 1].join(",");
        assert!(
            parse_phases(&many, false)
                .unwrap_err()
                .message
                .contains("more than")
        );
        let long = "1".repeat(MAX_INPUT_LEN + 1);
        assert!(
            parse_phases(&long, false)
                .unwrap_err()
                .message
                .contains("longer")
        );
    }

    #[test]
    fn percentages_keep_two_decimals_exactly() {
        assert_eq!(Percent::parse("0.5%").unwrap().basis_points(), 50);
        assert_eq!(Percent::parse("12.25%").unwrap().basis_points(), 1225);
        assert_eq!(Percent::parse("100%").unwrap(), Percent::FULL);
        assert_eq!(
            Percent::parse("100.01%").unwrap_err(),
            "\"100.01%\" is above 100%"
        );
        assert!(Percent::parse("5").is_err());
        assert!(Percent::parse(".5%").is_err());
        assert!(Percent::parse("5.%").is_err());
        assert_eq!(Percent(50).to_string(), "0.5%");
        assert_eq!(Percent(1225).to_string(), "12.25%");
        assert_eq!(Percent(1205).to_string(), "12.05%");
        assert!(Percent(500).reached_by(5, 100));
        assert!(!Percent(500).reached_by(4, 100));
        assert!(Percent(500).reached_by(0, 0));
    }

    #[test]
    fn error_thresholds_are_counts_or_shares_of_finished_devices() {
        assert_eq!(Limit::parse("3").unwrap(), Limit::Count(3));
        assert_eq!(Limit::parse("5%").unwrap(), Limit::Percent(Percent(500)));
        assert!(Limit::parse("0").is_err());
        assert!(
            Limit::parse("0%")
                .unwrap_err()
                .message
                .contains("more than 0%")
        );
        assert!(
            Limit::parse("x")
                .unwrap_err()
                .message
                .contains("count like 3")
        );
        assert!(Limit::Count(3).reached(3, 3));
        assert!(!Limit::Count(3).reached(2, 100));
        assert!(Limit::Percent(Percent(500)).reached(5, 100));
        assert!(!Limit::Percent(Percent(500)).reached(4, 100));
        assert!(
            !Limit::Percent(Percent(500)).reached(0, 0),
            "no failure never trips"
        );
    }

    #[test]
    fn rates_are_devices_per_minute() {
        assert_eq!(parse_rate("100/min").unwrap(), 100);
        assert_eq!(parse_rate(" 1 /min").unwrap(), 1);
        assert_eq!(parse_rate("1000000/min").unwrap(), MAX_RATE_PER_MINUTE);
        for bad in [
            "0/min",
            "1000001/min",
            "100",
            "100/s",
            "/min",
            "-1/min",
            "1e3/min",
        ] {
            assert_eq!(parse_rate(bad).unwrap_err().field, "rate", "{bad}");
        }
    }

    fn full_policy() -> Policy {
        serde_json::from_value(serde_json::json!({
            "phases": [
                {"size": "1%"},
                {"size": "10%", "approval": true, "success_threshold": "95%"},
                {"size": "100%"}
            ],
            "error_threshold": {"limit": "5%", "min_finished": 20, "action": "abort"},
            "rate": {"max_per_minute": 100, "ramp": {
                "base_per_minute": 10, "increment_factor": 2.0,
                "criterion": "succeeded", "every": 50}},
            "device_timeout_s": 3600,
            "retries": 2,
            "download": "forced",
            "install": "attempt",
            "max_defer_s": 86400,
            "maintenance_window": "Mon-Fri 02:00-05:00 +01:00",
            "consent": true,
            "dynamic": true
        }))
        .unwrap()
    }

    #[test]
    fn policy_json_round_trips_and_fills_defaults() {
        let p = full_policy();
        p.validate().unwrap();
        assert_eq!(p.phases[1].success_threshold, Percent(9500));
        assert_eq!(p.phases[0].success_threshold, Percent::FULL);
        let t = p.error_threshold.as_ref().unwrap();
        assert_eq!(t.kinds, FailureKind::ALL.to_vec());
        assert_eq!(t.action, ThresholdAction::Abort);
        let back: Policy = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);

        let minimal: Policy =
            serde_json::from_value(serde_json::json!({"phases": [{"size": 50}, {"size": "all"}]}))
                .unwrap();
        minimal.validate().unwrap();
        assert_eq!(minimal.install, Handling::Forced);
        assert_eq!(minimal.retries, 0);
        assert_eq!(
            serde_json::to_value(&minimal).unwrap(),
            serde_json::json!({"phases": [{"size": 50}, {"size": "all"}],
                "retries": 0, "download": "forced", "install": "forced",
                "consent": false, "dynamic": false})
        );
    }

    #[test]
    fn policies_that_do_not_hold_together_are_refused() {
        let check = |f: &dyn Fn(&mut Policy), field: &str| {
            let mut p = full_policy();
            f(&mut p);
            assert_eq!(p.validate().unwrap_err().field, field);
        };
        check(&|p| p.retries = 11, "retries");
        check(&|p| p.device_timeout_s = Some(0), "device_timeout_s");
        check(&|p| p.max_defer_s = Some(MAX_DURATION_S + 1), "max_defer_s");
        check(&|p| p.download = Handling::Skip, "download");
        check(
            &|p| {
                p.rate
                    .as_mut()
                    .unwrap()
                    .ramp
                    .as_mut()
                    .unwrap()
                    .base_per_minute = 101
            },
            "rate.ramp.base_per_minute",
        );
        check(
            &|p| {
                p.rate
                    .as_mut()
                    .unwrap()
                    .ramp
                    .as_mut()
                    .unwrap()
                    .increment_factor = f64::NAN
            },
            "rate.ramp.increment_factor",
        );
        check(
            &|p| {
                p.rate
                    .as_mut()
                    .unwrap()
                    .ramp
                    .as_mut()
                    .unwrap()
                    .increment_factor = 1.0
            },
            "rate.ramp.increment_factor",
        );
        check(
            &|p| p.rate.as_mut().unwrap().ramp.as_mut().unwrap().every = 0,
            "rate.ramp.every",
        );
        check(
            &|p| p.rate.as_mut().unwrap().max_per_minute = 0,
            "rate.max_per_minute",
        );
        check(
            &|p| p.error_threshold.as_mut().unwrap().kinds.clear(),
            "error_threshold.kinds",
        );
        check(
            &|p| p.error_threshold.as_mut().unwrap().kinds = vec![FailureKind::Failed; 2],
            "error_threshold.kinds",
        );
        check(&|p| p.phases.truncate(2), "phases");
        let unknown = serde_json::from_value::<Policy>(
            serde_json::json!({"phases": [{"size": "all"}], "phasez": 1}),
        );
        assert!(unknown.unwrap_err().to_string().contains("unknown field"));
        let bad_size = serde_json::from_value::<Policy>(
            serde_json::json!({"phases": [{"size": "11"}, {"size": 0}]}),
        );
        assert!(bad_size.unwrap_err().to_string().contains("outside"));
    }

    proptest! {
        #[test]
        fn phase_parser_never_panics_on_any_text(s in "\\PC{0,64}") {
            let _ = parse_phases(&s, false);
            let _ = Limit::parse(&s);
            let _ = parse_rate(&s);
            let _ = Percent::parse(&s);
        }

        #[test]
        fn phase_parser_never_panics_on_phase_like_text(s in "[0-9a-l%., ]{0,40}") {
            if let Ok(phases) = parse_phases(&s, false) {
                // Whatever parses is valid and covers every device at the end.
                prop_assert!(validate_phases(&phases).is_ok());
                let total = 12_345u64;
                let last = phases[phases.len() - 1].size.cumulative(total);
                prop_assert_eq!(last, total);
                let mut prev = 0;
                for p in &phases {
                    let c = p.size.cumulative(total);
                    prop_assert!(c >= prev);
                    prev = c;
                }
            }
        }

        #[test]
        fn percent_display_parses_back(bp in 0u32..=10_000) {
            let p = Percent(bp);
            prop_assert_eq!(Percent::parse(&p.to_string()), Ok(p));
        }

        #[test]
        fn percent_of_rounds_up_and_stays_within_the_target(bp in 0u32..=10_000, n in 0u64..=u64::MAX) {
            let c = Percent(bp).of(n);
            prop_assert!(c <= n);
            // c is the smallest count whose share reaches bp.
            prop_assert!(Percent(bp).reached_by(c, n));
            if c > 0 {
                prop_assert!(!Percent(bp).reached_by(c - 1, n));
            }
        }

        #[test]
        fn phase_lists_display_and_parse_back(
            mut counts in proptest::collection::vec(1u64..1_000_000, 1..10)
        ) {
            counts.sort_unstable();
            counts.dedup();
            let text = counts.iter().map(u64::to_string).chain(["all".to_string()])
                .collect::<Vec<_>>().join(",");
            let phases = parse_phases(&text, false).unwrap();
            let shown = phases.iter().map(|p| p.size.to_string()).collect::<Vec<_>>().join(",");
            prop_assert_eq!(shown, text);
        }

        #[test]
        fn rates_parse_back(r in 1u32..=MAX_RATE_PER_MINUTE) {
            prop_assert_eq!(parse_rate(&format!("{r}/min")), Ok(r));
        }
    }
}
