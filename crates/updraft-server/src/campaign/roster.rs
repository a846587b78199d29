//! The per-device rows of a campaign ([`Member`]) and the queries the engine runs on them
//! ([`Roster`]), with an in-memory implementation ([`MemoryRoster`]).
//!
//! A store backs [`Roster`] with one table, one row per (campaign, device), and one indexed
//! query per method (each is written out on the method). The engine asks for at most as many
//! rows as it will use, so a caller can also claim exactly those rows first
//! (`... LIMIT n FOR UPDATE SKIP LOCKED`), hand them to the engine in a [`MemoryRoster`] and
//! write back the rows the engine saved.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// A device, by the store's internal id.
pub type DeviceId = i64;
/// Unix time in milliseconds.
pub type UnixMs = i64;

/// Where a device is in its campaign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// In the target, not started yet.
    Queued,
    /// Assigned the release; see [`Member::stage`].
    Active,
    /// Failed or timed out with retries left; started again when the rate allows.
    RetryWait,
    /// The campaign was aborted and this device was told to cancel; waiting for its answer.
    Canceling,
    /// Final: runs the release (or, download-only, has it downloaded).
    Succeeded,
    /// Final: the update failed.
    Failed,
    /// Final: the device refused the update.
    Rejected,
    /// Final: the device stayed in one state too long.
    TimedOut,
    /// Final: cancelled (by the device, an operator, or the abort of the campaign).
    Cancelled,
    /// Final: never started, the campaign ended first.
    Skipped,
}

impl MemberStatus {
    /// Every status.
    pub const ALL: [MemberStatus; 10] = [
        Self::Queued,
        Self::Active,
        Self::RetryWait,
        Self::Canceling,
        Self::Succeeded,
        Self::Failed,
        Self::Rejected,
        Self::TimedOut,
        Self::Cancelled,
        Self::Skipped,
    ];

    /// A final status: the device is done with this campaign.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            Self::Queued | Self::Active | Self::RetryWait | Self::Canceling
        )
    }
}

/// How far an active device is with its current attempt, as it last reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Assigned by the engine; the device has not reported yet (with `consent`, it is asking
    /// its user).
    Assigned,
    /// The device fetched its deployment.
    Notified,
    /// Downloading.
    Downloading,
    /// Downloaded and verified; waiting for an install trigger.
    Downloaded,
    /// The device deferred (download or install).
    Deferred,
    /// Installing, or installed and rebooting into the new image: too late to cancel.
    Installing,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 6] = [
        Self::Assigned,
        Self::Notified,
        Self::Downloading,
        Self::Downloaded,
        Self::Deferred,
        Self::Installing,
    ];
}

/// One device in one campaign: what a row of the per-device table holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The device.
    pub device: DeviceId,
    /// Order of admission to the campaign (devices start in this order).
    pub seq: u64,
    /// The phase it was started in (1-based); 0 while queued or skipped.
    pub phase: u32,
    /// Where it is.
    pub status: MemberStatus,
    /// The last reported stage (meaningful while `Active` or `Canceling`).
    pub stage: Stage,
    /// The engine has triggered its install (within the maintenance window).
    pub install_triggered: bool,
    /// Starts so far (the first one and the retries).
    pub attempts: u32,
    /// When `status` or `stage` last changed, or the device last reported.
    pub since: UnixMs,
    /// When an active or canceling device times out, if a timeout applies.
    pub deadline: Option<UnixMs>,
}

impl Member {
    /// A device freshly admitted to the campaign.
    pub fn queued(device: DeviceId, seq: u64, now: UnixMs) -> Self {
        Self {
            device,
            seq,
            phase: 0,
            status: MemberStatus::Queued,
            stage: Stage::Assigned,
            install_triggered: false,
            attempts: 0,
            since: now,
            deadline: None,
        }
    }

    /// Waiting to be started (first start or retry).
    pub fn is_waiting(&self) -> bool {
        matches!(self.status, MemberStatus::Queued | MemberStatus::RetryWait)
    }

    /// Has a timeout running.
    pub fn is_due_candidate(&self) -> bool {
        matches!(self.status, MemberStatus::Active | MemberStatus::Canceling)
            && self.deadline.is_some()
    }

    /// Downloaded and waiting for the engine to trigger its install.
    pub fn is_install_pending(&self) -> bool {
        self.status == MemberStatus::Active
            && self.stage == Stage::Downloaded
            && !self.install_triggered
    }

    /// Active and not installing yet: an abort cancels it.
    pub fn is_cancellable(&self) -> bool {
        self.status == MemberStatus::Active && self.stage < Stage::Installing
    }
}

/// The per-device rows of one campaign, as the engine reads and writes them.
pub trait Roster {
    /// The row of `device`, if it is in the campaign.
    /// `SELECT * FROM campaign_members WHERE campaign = $1 AND device = $2`
    fn get(&self, device: DeviceId) -> Option<Member>;

    /// Inserts or replaces the row of `member.device`.
    /// `INSERT ... ON CONFLICT (campaign, device) DO UPDATE SET ...`
    fn save(&mut self, member: &Member);

    /// Up to `limit` rows waiting to be started: `retry_wait` rows first, then `queued`, each
    /// in `seq` order.
    /// `... WHERE status IN ('retry_wait','queued') ORDER BY status = 'queued', seq LIMIT $n`
    fn waiting(&self, limit: usize) -> Vec<Member>;

    /// Up to `limit` rows whose deadline has passed (`deadline <= now`), earliest first, among
    /// `active` and `canceling` rows.
    /// `... WHERE status IN ('active','canceling') AND deadline <= $now ORDER BY deadline LIMIT $n`
    fn due(&self, now: UnixMs, limit: usize) -> Vec<Member>;

    /// Up to `limit` rows downloaded and waiting for an install trigger, in `seq` order.
    /// `... WHERE status = 'active' AND stage = 'downloaded' AND NOT install_triggered`
    fn install_pending(&self, limit: usize) -> Vec<Member>;

    /// Up to `limit` active rows that have not reached `installing`, in `seq` order.
    /// `... WHERE status = 'active' AND stage <> 'installing' ORDER BY seq LIMIT $n`
    fn cancellable(&self, limit: usize) -> Vec<Member>;
}

/// A [`Roster`] in memory, indexed like the table would be: for tests, the simulator, and a
/// batch of claimed rows.
#[derive(Clone, Debug, Default)]
pub struct MemoryRoster {
    rows: HashMap<DeviceId, Member>,
    waiting: BTreeSet<(bool, u64, DeviceId)>,
    due: BTreeSet<(UnixMs, DeviceId)>,
    install_pending: BTreeSet<(u64, DeviceId)>,
    cancellable: BTreeSet<(u64, DeviceId)>,
}

impl MemoryRoster {
    /// An empty roster.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every row, in no particular order.
    pub fn rows(&self) -> impl Iterator<Item = &Member> {
        self.rows.values()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn index(&mut self, m: &Member, insert: bool) {
        let key = (m.status == MemberStatus::Queued, m.seq, m.device);
        let seq_key = (m.seq, m.device);
        fn edit<K: Ord>(set: &mut BTreeSet<K>, on: bool, insert: bool, k: K) {
            if on {
                if insert {
                    set.insert(k);
                } else {
                    set.remove(&k);
                }
            }
        }
        edit(&mut self.waiting, m.is_waiting(), insert, key);
        if let Some(d) = m.deadline {
            edit(&mut self.due, m.is_due_candidate(), insert, (d, m.device));
        }
        edit(
            &mut self.install_pending,
            m.is_install_pending(),
            insert,
            seq_key,
        );
        edit(&mut self.cancellable, m.is_cancellable(), insert, seq_key);
    }

    fn rows_of<'a>(&self, keys: impl Iterator<Item = &'a DeviceId>, limit: usize) -> Vec<Member> {
        keys.take(limit)
            .filter_map(|d| self.rows.get(d).cloned())
            .collect()
    }
}

impl Roster for MemoryRoster {
    fn get(&self, device: DeviceId) -> Option<Member> {
        self.rows.get(&device).cloned()
    }

    fn save(&mut self, member: &Member) {
        if let Some(old) = self.rows.remove(&member.device) {
            self.index(&old, false);
        }
        self.index(member, true);
        self.rows.insert(member.device, member.clone());
    }

    fn waiting(&self, limit: usize) -> Vec<Member> {
        self.rows_of(self.waiting.iter().map(|(_, _, d)| d), limit)
    }

    fn due(&self, now: UnixMs, limit: usize) -> Vec<Member> {
        self.rows_of(
            self.due.range(..=(now, DeviceId::MAX)).map(|(_, d)| d),
            limit,
        )
    }

    fn install_pending(&self, limit: usize) -> Vec<Member> {
        self.rows_of(self.install_pending.iter().map(|(_, d)| d), limit)
    }

    fn cancellable(&self, limit: usize) -> Vec<Member> {
        self.rows_of(self.cancellable.iter().map(|(_, d)| d), limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_every_change_of_a_row() {
        let mut r = MemoryRoster::new();
        let mut a = Member::queued(7, 2, 0);
        let b = Member::queued(8, 1, 0);
        r.save(&a);
        r.save(&b);
        assert_eq!(
            r.waiting(10).iter().map(|m| m.device).collect::<Vec<_>>(),
            vec![8, 7],
            "seq order"
        );
        a.status = MemberStatus::Active;
        a.stage = Stage::Downloaded;
        a.deadline = Some(100);
        r.save(&a);
        assert_eq!(r.waiting(10).len(), 1);
        assert_eq!(r.due(99, 10), vec![]);
        assert_eq!(r.due(100, 10), vec![a.clone()]);
        assert_eq!(r.install_pending(10), vec![a.clone()]);
        assert_eq!(r.cancellable(10), vec![a.clone()]);
        a.stage = Stage::Installing;
        a.install_triggered = true;
        a.deadline = Some(500);
        r.save(&a);
        assert_eq!(r.due(100, 10), vec![]);
        assert_eq!(r.due(500, 10), vec![a.clone()]);
        assert!(r.install_pending(10).is_empty());
        assert!(r.cancellable(10).is_empty());
        a.status = MemberStatus::RetryWait;
        r.save(&a);
        assert_eq!(
            r.waiting(10).iter().map(|m| m.device).collect::<Vec<_>>(),
            vec![7, 8],
            "retries come first"
        );
        assert!(r.due(i64::MAX, 10).is_empty());
        assert_eq!(r.waiting(1).len(), 1, "limit");
        assert_eq!(r.len(), 2);
    }
}
