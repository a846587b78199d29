//! Download and install authorization: the application answers authorize, reject or defer.
//!
//! A rejected manifest is discarded and its digest remembered, so it is never asked about
//! again. A deferral keeps the manifest (download) or the verified candidate (install) and is
//! continued on the next boot, the next registration update or an explicit resume. Deferral is
//! bounded by /5/0/13 Maximum Defer Period: 0 means the device may not defer, and once the
//! period since the first deferral has passed, a further deferral counts as authorization.

/// The application's answer to an authorization request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Authorize,
    /// Discard this manifest; never ask about it again.
    Reject,
    /// Not now; ask again later.
    Defer,
}

/// What a deferral request turns into under the Maximum Defer Period.
pub(crate) fn effective(
    decision: Decision,
    max_defer_period: u32,
    deferred_since: Option<u64>,
    now: Option<u64>,
) -> Decision {
    if decision != Decision::Defer {
        return decision;
    }
    if max_defer_period == 0 {
        return Decision::Authorize;
    }
    match (deferred_since, now) {
        (Some(since), Some(now)) if now.saturating_sub(since) >= u64::from(max_defer_period) => {
            Decision::Authorize
        }
        _ => Decision::Defer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_max_defer_period_turns_defer_into_authorize() {
        assert_eq!(
            effective(Decision::Defer, 0, None, Some(5)),
            Decision::Authorize
        );
        assert_eq!(effective(Decision::Reject, 0, None, None), Decision::Reject);
    }

    #[test]
    fn defer_is_allowed_until_the_period_has_passed() {
        assert_eq!(
            effective(Decision::Defer, 60, None, Some(100)),
            Decision::Defer
        );
        assert_eq!(
            effective(Decision::Defer, 60, Some(100), Some(159)),
            Decision::Defer
        );
        assert_eq!(
            effective(Decision::Defer, 60, Some(100), Some(160)),
            Decision::Authorize
        );
    }
}
