//! The deployment rules as pure functions: which status a device report moves an action to,
//! what a cancel request does, and what a device is offered next. No I/O; every front and the
//! management API go through these, so a rule exists once.

use crate::store::ActionStatus;

/// Why an update failed, protocol-neutral (LwM2M /5 results 2–9, DDI failure codes, MQTT
/// progress steps and the server's own timeouts map onto these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// No reason given.
    Unspecified,
    /// Not enough flash for the image (LwM2M result 2).
    NoSpace,
    /// Out of RAM during the download (LwM2M result 3).
    OutOfMemory,
    /// The connection was lost during the download (LwM2M result 4).
    ConnectionLost,
    /// Digest or signature check failed (LwM2M result 5).
    Integrity,
    /// The package type is not supported (LwM2M result 6).
    UnsupportedType,
    /// The package URI is invalid (LwM2M result 7).
    InvalidUri,
    /// Installing failed, or the new image failed its self-test (LwM2M result 8).
    UpdateFailed,
    /// The delivery protocol is not supported (LwM2M result 9).
    UnsupportedProtocol,
    /// Stuck in one state longer than the campaign allows.
    TimedOut,
}

impl FailureKind {
    /// Every kind.
    pub const ALL: [FailureKind; 10] = [
        Self::Unspecified,
        Self::NoSpace,
        Self::OutOfMemory,
        Self::ConnectionLost,
        Self::Integrity,
        Self::UnsupportedType,
        Self::InvalidUri,
        Self::UpdateFailed,
        Self::UnsupportedProtocol,
        Self::TimedOut,
    ];

    /// The name stored with the action and shown in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::NoSpace => "no_space",
            Self::OutOfMemory => "out_of_memory",
            Self::ConnectionLost => "connection_lost",
            Self::Integrity => "integrity",
            Self::UnsupportedType => "unsupported_type",
            Self::InvalidUri => "invalid_uri",
            Self::UpdateFailed => "update_failed",
            Self::UnsupportedProtocol => "unsupported_protocol",
            Self::TimedOut => "timed_out",
        }
    }
}

impl std::str::FromStr for FailureKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or(())
    }
}

/// What a device says about its deployment, whatever protocol it speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceReport {
    /// The device fetched the deployment (DDI `deploymentBase` GET, LwM2M URI written, MQTT
    /// upgrade delivered).
    Retrieved,
    /// Downloading, with the percentage when known.
    Downloading {
        /// 0..=100.
        percent: Option<u8>,
    },
    /// Busy, phase not said (DDI `proceeding` without progress): downloading until the image
    /// is downloaded, installing after.
    Working,
    /// The image is downloaded and verified.
    Downloaded,
    /// Installing.
    Installing,
    /// The device (or its user) deferred the update; it stays assigned.
    Deferred,
    /// The device runs the new release.
    Succeeded,
    /// The update failed.
    Failed(FailureKind),
    /// The device refused the update (policy, downgrade, user).
    Rejected,
    /// The device cancelled the update by itself.
    Cancelled,
    /// The device confirms a cancel the server asked for.
    CancelAccepted,
    /// The device cannot cancel now; the deployment goes on.
    CancelRefused,
}

impl DeviceReport {
    /// One of each kind (for exhaustive tests).
    pub const KINDS: [DeviceReport; 13] = [
        Self::Retrieved,
        Self::Downloading { percent: None },
        Self::Downloading { percent: Some(40) },
        Self::Working,
        Self::Downloaded,
        Self::Installing,
        Self::Deferred,
        Self::Succeeded,
        Self::Failed(FailureKind::Integrity),
        Self::Rejected,
        Self::Cancelled,
        Self::CancelAccepted,
        Self::CancelRefused,
    ];
}

/// Why a report changes nothing and is an error for the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The action is closed: no report is accepted any more.
    Closed,
    /// A cancel answer, but no cancel was asked for.
    NoCancelPending,
}

/// What a report does to an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Move to this status and progress.
    Move(ActionStatus, Option<i64>),
    /// Accepted, nothing to record (a repeat, or work reported while a cancel is pending).
    Keep,
    /// Refused.
    Refuse(Refusal),
}

/// The one transition function: what `report` does to an action in `status` with `progress`.
pub fn next(status: ActionStatus, progress: Option<i64>, report: DeviceReport) -> Decision {
    use ActionStatus as S;
    use DeviceReport as R;
    if status.is_final() {
        return Decision::Refuse(Refusal::Closed);
    }
    let (to, to_progress) = match report {
        R::CancelAccepted | R::CancelRefused if status != S::Canceling => {
            return Decision::Refuse(Refusal::NoCancelPending);
        }
        R::CancelAccepted => (S::Cancelled, None),
        // The device goes on with the deployment; it is asked again when it polls.
        R::CancelRefused => (S::Notified, None),
        // A final word from the device ends the action, a cancel pending or not.
        R::Succeeded => (S::Succeeded, None),
        R::Failed(_) => (S::Failed, None),
        R::Rejected => (S::Rejected, None),
        R::Cancelled => (S::Cancelled, None),
        // A device still working while a cancel is pending keeps the cancel pending.
        _ if status == S::Canceling => return Decision::Keep,
        R::Retrieved if status == S::Pending => (S::Notified, None),
        R::Retrieved => return Decision::Keep,
        R::Downloading { percent } => (S::Downloading, percent.map(|p| i64::from(p.min(100)))),
        R::Working if matches!(status, S::Downloaded | S::Updating) => (S::Updating, None),
        R::Working => (
            S::Downloading,
            progress.filter(|_| status == S::Downloading),
        ),
        R::Downloaded => (S::Downloaded, None),
        R::Installing => (S::Updating, None),
        R::Deferred => (S::Deferred, None),
    };
    if to == status && to_progress == progress {
        Decision::Keep
    } else {
        Decision::Move(to, to_progress)
    }
}

/// What an operator's cancel does to an action in `status`: `None` when there is nothing to do
/// (closed, or a cancel already pending). A device that has not fetched its deployment is
/// cancelled at once; any other is asked and confirms.
pub fn cancel(status: ActionStatus) -> Option<ActionStatus> {
    match status {
        s if s.is_final() => None,
        ActionStatus::Canceling => None,
        ActionStatus::Pending => Some(ActionStatus::Cancelled),
        _ => Some(ActionStatus::Canceling),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ActionStatus as S;
    use DeviceReport as R;

    fn short(d: Decision) -> String {
        match d {
            Decision::Move(s, Some(p)) => format!("{}:{p}", s.as_str()),
            Decision::Move(s, None) => s.as_str().to_string(),
            Decision::Keep => "keep".into(),
            Decision::Refuse(Refusal::Closed) => "closed".into(),
            Decision::Refuse(Refusal::NoCancelPending) => "no-cancel".into(),
        }
    }

    /// Every open status against every report kind, written out: the table is the spec.
    #[test]
    fn every_status_and_report_has_the_expected_outcome() {
        // Columns: the reports of DeviceReport::KINDS, in order.
        let table: [(S, [&str; 13]); 7] = [
            (
                S::Pending,
                [
                    "notified",
                    "downloading",
                    "downloading:40",
                    "downloading",
                    "downloaded",
                    "updating",
                    "deferred",
                    "succeeded",
                    "failed",
                    "rejected",
                    "cancelled",
                    "no-cancel",
                    "no-cancel",
                ],
            ),
            (
                S::Notified,
                [
                    "keep",
                    "downloading",
                    "downloading:40",
                    "downloading",
                    "downloaded",
                    "updating",
                    "deferred",
                    "succeeded",
                    "failed",
                    "rejected",
                    "cancelled",
                    "no-cancel",
                    "no-cancel",
                ],
            ),
            (
                S::Downloading,
                [
                    "keep",
                    "keep",
                    "downloading:40",
                    "keep",
                    "downloaded",
                    "updating",
                    "deferred",
                    "succeeded",
                    "failed",
                    "rejected",
                    "cancelled",
                    "no-cancel",
                    "no-cancel",
                ],
            ),
            (
                S::Downloaded,
                [
                    "keep",
                    "downloading",
                    "downloading:40",
                    "updating",
                    "keep",
                    "updating",
                    "deferred",
                    "succeeded",
                    "failed",
                    "rejected",
                    "cancelled",
                    "no-cancel",
                    "no-cancel",
                ],
            ),
            (
                S::Updating,
                [
                    "keep",
                    "downloading",
                    "downloading:40",
                    "keep",
                    "downloaded",
                    "keep",
                    "deferred",
                    "succeeded",
                    "failed",
                    "rejected",
                    "cancelled",
                    "no-cancel",
                    "no-cancel",
                ],
            ),
            (
                S::Deferred,
                [
                    "keep",
                    "downloading",
                    "downloading:40",
                    "downloading",
                    "downloaded",
                    "updating",
                    "keep",
                    "succeeded",
                    "failed",
                    "rejected",
                    "cancelled",
                    "no-cancel",
                    "no-cancel",
                ],
            ),
            (
                S::Canceling,
                [
                    "keep",
                    "keep",
                    "keep",
                    "keep",
                    "keep",
                    "keep",
                    "keep",
                    "succeeded",
                    "failed",
                    "rejected",
                    "cancelled",
                    "cancelled",
                    "notified",
                ],
            ),
        ];
        let mut seen = 0;
        for (status, row) in table {
            for (report, want) in R::KINDS.into_iter().zip(row) {
                assert_eq!(
                    short(next(status, None, report)),
                    want,
                    "{status:?} + {report:?}"
                );
                seen += 1;
            }
        }
        // Closed actions refuse everything.
        for status in S::ALL.into_iter().filter(|s| s.is_final()) {
            for report in R::KINDS {
                assert_eq!(
                    next(status, None, report),
                    Decision::Refuse(Refusal::Closed)
                );
                seen += 1;
            }
        }
        assert_eq!(seen, S::ALL.len() * R::KINDS.len(), "a status is missing");
    }

    #[test]
    fn progress_is_kept_when_it_does_not_change_and_clamped() {
        assert_eq!(
            next(
                S::Downloading,
                Some(40),
                R::Downloading { percent: Some(40) }
            ),
            Decision::Keep
        );
        assert_eq!(
            next(
                S::Downloading,
                Some(40),
                R::Downloading { percent: Some(200) }
            ),
            Decision::Move(S::Downloading, Some(100))
        );
        // Busy without a figure keeps the last percentage.
        assert_eq!(next(S::Downloading, Some(40), R::Working), Decision::Keep);
        assert_eq!(
            next(S::Downloading, Some(40), R::Downloading { percent: None }),
            Decision::Move(S::Downloading, None)
        );
    }

    #[test]
    fn cancel_closes_pending_at_once_asks_the_others_and_ignores_closed() {
        for status in S::ALL {
            let want = match status {
                S::Pending => Some(S::Cancelled),
                S::Canceling => None,
                s if s.is_final() => None,
                _ => Some(S::Canceling),
            };
            assert_eq!(cancel(status), want, "{status:?}");
        }
    }

    #[test]
    fn failure_kinds_round_trip_their_names() {
        for k in FailureKind::ALL {
            assert_eq!(k.as_str().parse::<FailureKind>(), Ok(k));
        }
        assert!("nope".parse::<FailureKind>().is_err());
    }
}
