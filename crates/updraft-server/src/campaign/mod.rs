//! Campaigns: a release rolled out to a target in phases, with a brake, as a deterministic
//! engine with no database, no clock and no I/O.
//!
//! # The model
//!
//! A campaign is a [`Policy`] (how to roll out), its state ([`Campaign`]: one small value,
//! serialized as JSON or mapped to columns) and one row per device ([`Member`], behind the
//! [`Roster`] trait, which a store backs with a table). The caller feeds it inputs, each with the
//! time `now` in Unix milliseconds, and carries out the [`Decision`]s it returns:
//!
//! | input | when |
//! | --- | --- |
//! | [`Campaign::add_device`] | the target is built (draft), or a device matches a dynamic target later |
//! | [`Campaign::remove_device`] | a device is deleted, or leaves a dynamic target |
//! | [`Campaign::command`] | an operator: schedule, start, pause, resume, abort, approve a phase, close a dynamic target |
//! | [`Campaign::tick`] | time passes: the scheduled start, timeouts, install triggers, starts as the rate allows |
//! | [`Campaign::device_progress`] | a device reported a [`Stage`] (any report restarts its timeout) |
//! | [`Campaign::device_outcome`] | a device's attempt ended ([`Outcome`]) |
//!
//! | decision | the caller |
//! | --- | --- |
//! | `Start { phase, devices }` | assigns the release to these devices (first attempt) |
//! | `Retry { devices }` | assigns it again (the previous attempt failed or timed out) |
//! | `Install { devices }` | lets these downloaded devices install (inside the maintenance window) |
//! | `Cancel { devices }` | cancels their deployments (abort: devices not installing yet; or a removed device) |
//! | `TimeOut { device }` | closes that device's attempt as failed: timed out |
//! | `StateChanged(change)` | stores the change: from, to, when, who, why |
//! | `PhaseStarted { phase, at, by }`, `AwaitingApproval { phase }` | stores / shows them |
//!
//! The same inputs in the same order give the same decisions: the engine reads no clock and
//! draws no random numbers, which is what lets `tests/campaign_sim.rs` run a 10,000-device
//! campaign over simulated hours in about a second.
//!
//! # States
//!
//! `draft` → (`schedule`) `scheduled` → (its time, or `start`) `running` ⇄ (`pause`/`resume`)
//! `paused`; `running` → `completed` when every device finished; any state but the two final
//! ones → (`abort`) `aborted`. The engine itself pauses (error threshold with action `pause`,
//! a phase below its success threshold), aborts (error threshold with action `abort`) and
//! completes. [`Command::allowed_in`] is the table; a refused input changes nothing.
//!
//! # Phases, gates and the brake
//!
//! Phase sizes are cumulative (`1%,10%,100%`: 1 % of the target, then up to 10 %, then all),
//! rounded up, and the last phase covers every device. Devices start in the order they were
//! added. Phase *n+1* starts when every device of phase *n* has finished (succeeded, failed,
//! rejected, timed out or cancelled, with its retries used up) and its success rate
//! (succeeded / finished, cancelled ones not counted) reaches the phase's `success_threshold`
//! (default 100 %). Below it, the campaign pauses and phase *n+1* needs an `approve` (an
//! operator's override; `resume` is refused). A phase with `approval` waits for `approve` too
//! ([`Decision::AwaitingApproval`]).
//!
//! The error threshold counts final failures of its `kinds` over the whole campaign; once at
//! least `min_finished` devices finished and the failures reach `limit` (a count, or a share of
//! the finished devices), the campaign pauses or aborts. It is checked at each new failure,
//! so after a resume the next failure that keeps the campaign over the limit pauses it again.
//!
//! Abort cancels the active devices that have not begun installing ([`Decision::Cancel`]; they
//! stay `canceling` until the device answers, and a device that installed anyway counts as
//! succeeded), leaves installing ones to finish, marks never-started devices `skipped` and
//! devices waiting for a retry `cancelled` (they have nothing running to cancel).
//!
//! # Rate, retries, timeouts, window
//!
//! - Rate: at most `max_per_minute` assignments (first starts and retries) in any 60 s, and at
//!   most `ceil(rate / 60)` in one second, so starts spread over the minute. The limiter keeps
//!   starts per second for the last 61 seconds. With a `ramp`, the rate starts at
//!   `base_per_minute` and is multiplied by `increment_factor` (rounded down, at least +1,
//!   capped at `max_per_minute`) each time another `every` devices were notified (first report
//!   of an attempt) or succeeded, as AWS IoT Jobs' `exponentialRate` does.
//! - Retries: a device that failed or timed out is assigned again, up to `retries` times, when
//!   the rate allows and the campaign runs; only its last result counts for thresholds.
//!   Rejections are not retried.
//! - Timeouts: with `device_timeout_s`, an active device that sends no report (or stays
//!   `deferred` past `max_defer_s`) for that long times out. No timeout runs while a
//!   downloaded device waits for the maintenance window: that wait is the campaign's.
//! - Window: with a `maintenance_window`, installs are triggered only while it is open
//!   ([`Campaign::install_allowed`]); a device downloaded outside it waits for the next
//!   opening. `install: skip` makes a download-only campaign.
//! - `download`, `install` (`forced`/`attempt`), `max_defer_s` and `consent` are carried to the
//!   fronts, which tell the device (DDI `deployment.download`/`update`, LwM2M /5/0/13, hawkBit's
//!   confirmation).
//!
//! # Persistence
//!
//! [`Campaign`] holds counters per phase and per outcome (so [`Campaign::summary`] reads no
//! device row), the rate limiter and the gates. A [`Member`] row holds the device, its order
//! of admission, phase, status, stage, attempts, the time of its last change and its deadline;
//! [`Roster`] lists the indexed queries the engine needs. A store runs each input in one
//! transaction: lock the campaign row (`SELECT ... FOR UPDATE`), run the input against the
//! member rows, write the campaign row and the saved member rows, commit. A claim of
//! [`Campaign::start_budget`] waiting rows with `FOR UPDATE SKIP LOCKED` can be handed to the
//! engine in a [`MemoryRoster`].
//!
//! # Wiring to the fleet layer
//!
//! | fleet report | engine input |
//! | --- | --- |
//! | retrieved / confirmed | `device_progress(Stage::Notified)` |
//! | downloading n % | `device_progress(Stage::Downloading)` |
//! | downloaded | `device_progress(Stage::Downloaded)` |
//! | deferred | `device_progress(Stage::Deferred)` |
//! | installing | `device_progress(Stage::Installing)` |
//! | succeeded / failed / rejected | `device_outcome(Succeeded / Failed / Rejected)` |
//! | cancel accepted | `device_outcome(Cancelled)` |
//! | cancel refused | nothing: the device goes on and reports again |
//!
//! A [`CampaignError::NotActive`] on a report is a late or repeated one: log it and drop it.
//! `TimeOut` closes the device's action as failed (timed out) with a compare-and-set on its
//! status; if the device's report won the race, feed that report instead. `Retry` opens a new
//! action for the same release. A polling front (DDI) answers `deploymentBase` with
//! `update: skip` and `maintenanceWindow: unavailable` while [`Campaign::install_allowed`] is
//! false and with the policy's `install` handling otherwise; a push front sends its install
//! trigger on `Install`.
//!
//! # The JSON shape of a policy
//!
//! ```json
//! {
//!   "phases": [
//!     {"size": "1%"},
//!     {"size": "10%", "success_threshold": "95%", "approval": true},
//!     {"size": "all"}
//!   ],
//!   "error_threshold": {"limit": "5%", "min_finished": 20,
//!                       "kinds": ["failed", "rejected", "timed_out"], "action": "pause"},
//!   "rate": {"max_per_minute": 1000,
//!            "ramp": {"base_per_minute": 10, "increment_factor": 2.0,
//!                     "criterion": "succeeded", "every": 50}},
//!   "device_timeout_s": 86400,
//!   "retries": 2,
//!   "download": "forced",
//!   "install": "attempt",
//!   "max_defer_s": 3600,
//!   "maintenance_window": "Mon-Fri 02:00-05:00 +01:00",
//!   "consent": false,
//!   "dynamic": false
//! }
//! ```
//!
//! Only `phases` is required. A phase `size` is a count (`50`, a JSON number or string), a
//! percentage string with up to two decimals (`"0.5%"`) or `"all"`; `success_threshold`
//! defaults to `"100%"`, `approval` to `false`. `limit` is a count or a percentage string;
//! `min_finished` defaults to 0, `kinds` to all three, `action` to `pause`. `increment_factor`
//! is in (1, 5]; `criterion` is `notified` or `succeeded`. `retries` is 0 to 10 (default 0);
//! `download` is `forced` or `attempt`, `install` `forced`, `attempt` or `skip` (default
//! `forced` for both). The window grammar is in [`window`]. Unknown fields are refused.
//! The CLI forms parse with [`parse_phases`], [`Limit::parse`], [`parse_rate`] and
//! [`MaintenanceWindow::parse`].

mod engine;
pub mod policy;
mod roster;
pub mod window;

pub use engine::{
    Actor, Campaign, CampaignError, CampaignStatus, Command, Counters, Decision, MAX_BATCH,
    Outcome, PhaseSummary, Reason, StateChange, Summary,
};
pub use policy::{
    ErrorThreshold, FailureKind, Handling, Limit, Percent, Phase, PhaseSize, Policy, PolicyError,
    Ramp, RampCriterion, Rate, ThresholdAction, parse_phases, parse_rate,
};
pub use roster::{DeviceId, Member, MemberStatus, MemoryRoster, Roster, Stage, UnixMs};
pub use window::MaintenanceWindow;

#[cfg(test)]
mod tests;
