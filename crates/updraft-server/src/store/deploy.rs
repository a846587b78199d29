//! Rollouts, per-device actions, their events, and the `work_changed` outbox.
//!
//! The store carries out the fleet layer's decisions; it decides nothing about which status
//! follows which. Every status change is compare-and-set on the status it was decided from
//! (`WHERE status = $from`), so a change decided on a stale read is refused ([`Applied::Stale`])
//! instead of overwriting a newer one. Work over many devices is set-based: ids go to the
//! database in chunks of [`CHUNK`], never one query per device.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{
    ACTION_COLUMNS, ACTION_FROM, Action, ActionEvent, ActionStatus, Applied, Result, Rollout,
    Store, StoreError, Transition, now_ms,
};

/// How many ids go into one statement.
pub const CHUNK: usize = 500;

/// Why a targeted device got no action.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Skip {
    /// Internal device id.
    #[serde(skip)]
    pub device_id: i64,
    /// The device's controller id.
    pub controller_id: String,
    /// Why.
    pub reason: &'static str,
}

/// Reason of a [`Skip`]: the device has an open deployment.
pub const SKIP_BUSY: &str = "the device has an open deployment";
/// Reason of a [`Skip`]: the device already runs the release.
pub const SKIP_INSTALLED: &str = "the device already runs this release";

/// What an assignment did.
#[derive(Clone, Debug)]
pub struct AssignOutcome {
    /// The actions created, as `(action id, device id)`.
    pub created: Vec<(i64, i64)>,
    /// The devices that got none, and why (deleted devices are dropped silently).
    pub skipped: Vec<Skip>,
}

/// A claimed entry of the `work_changed` outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkChange {
    /// Internal device id.
    pub device_id: i64,
    /// The change's sequence number (pass it back to [`Store::ack_work_change`]).
    pub seq: i64,
}

/// `$first, $first+1, ... ` for `n` placeholders.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn counter_column(status: ActionStatus) -> Option<&'static str> {
    match status {
        ActionStatus::Succeeded => Some("succeeded"),
        ActionStatus::Failed => Some("failed"),
        ActionStatus::Rejected => Some("rejected"),
        ActionStatus::Cancelled => Some("cancelled"),
        _ => None,
    }
}

/// Upsert the outbox rows of these devices (inside the caller's transaction).
async fn mark_changed(tx: &mut Transaction<'_, Any>, device_ids: &[i64], now: i64) -> Result<()> {
    for chunk in device_ids.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO work_changed (device_id, changed_at, seq, lease_until) \
             SELECT id, $1, 1, 0 FROM devices WHERE id IN ({}) \
             ON CONFLICT (device_id) DO UPDATE SET changed_at = excluded.changed_at, \
             seq = work_changed.seq + 1, lease_owner = NULL, lease_until = 0",
            placeholders(2, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(now);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Events, device states and counters for actions that just moved to `t.status` (inside the
/// caller's transaction). `moved` holds `(action id, device id, rollout id)`.
async fn record_moved(
    tx: &mut Transaction<'_, Any>,
    moved: &[(i64, i64, i64)],
    from: Option<ActionStatus>,
    t: &Transition,
    now: i64,
) -> Result<()> {
    for chunk in moved.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO action_events (action_id, at, status, progress, message) \
             SELECT id, $1, $2, $3, $4 FROM actions WHERE id IN ({})",
            placeholders(5, chunk.len())
        );
        let mut q = sqlx::query(&sql)
            .bind(now)
            .bind(t.status.as_str())
            .bind(t.progress)
            .bind(t.message.clone());
        for (action, _, _) in chunk {
            q = q.bind(*action);
        }
        q.execute(&mut **tx).await?;

        let sql = if t.status == ActionStatus::Succeeded {
            format!(
                "UPDATE devices SET update_state = $1, current_version = (SELECT r.version \
                 FROM actions a JOIN releases r ON r.id = a.release_id \
                 WHERE a.device_id = devices.id AND a.id IN ({list})) WHERE id IN ({list2})",
                list = placeholders(2, chunk.len()),
                list2 = placeholders(2 + chunk.len(), chunk.len()),
            )
        } else {
            format!(
                "UPDATE devices SET update_state = $1 WHERE id IN ({})",
                placeholders(2, chunk.len())
            )
        };
        let mut q = sqlx::query(&sql).bind(t.status.as_str());
        if t.status == ActionStatus::Succeeded {
            for (action, _, _) in chunk {
                q = q.bind(*action);
            }
        }
        for (_, device, _) in chunk {
            q = q.bind(*device);
        }
        q.execute(&mut **tx).await?;
    }
    // Changes of state on a campaign's actions feed its engine (consumed by the campaign's
    // tick); a progress figure alone does not.
    if t.status != ActionStatus::Pending && !t.quiet && from != Some(t.status) {
        for chunk in moved.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO campaign_events (campaign_id, device_id, action_id, status, failure_kind, at) \
                 SELECT o.campaign_id, a.device_id, a.id, $1, $2, $3 FROM actions a \
                 JOIN rollouts o ON o.id = a.rollout_id \
                 WHERE o.campaign_id IS NOT NULL AND a.id IN ({})",
                placeholders(4, chunk.len())
            );
            let mut q = sqlx::query(&sql)
                .bind(t.status.as_str())
                .bind(t.failure_kind.clone())
                .bind(now);
            for (action, _, _) in chunk {
                q = q.bind(*action);
            }
            q.execute(&mut **tx).await?;
        }
    }
    if let Some(column) = counter_column(t.status) {
        let mut per_rollout: std::collections::BTreeMap<i64, i64> = Default::default();
        for (_, _, rollout) in moved {
            *per_rollout.entry(*rollout).or_default() += 1;
        }
        for (rollout, n) in per_rollout {
            sqlx::query(&format!(
                "UPDATE rollouts SET {column} = {column} + $1 WHERE id = $2"
            ))
            .bind(n)
            .bind(rollout)
            .execute(&mut **tx)
            .await?;
        }
    }
    if t.notify {
        let devices: Vec<i64> = moved.iter().map(|(_, d, _)| *d).collect();
        mark_changed(tx, &devices, now).await?;
    }
    Ok(())
}

/// Move the open actions of `rollout_id` held by `device_ids` that are in `from` to
/// `t.status`, set-based and compare-and-set on `from`, inside the caller's transaction.
/// Returns the moved `(action id, device id)`.
pub(crate) async fn transition_devices_in(
    tx: &mut Transaction<'_, Any>,
    rollout_id: i64,
    device_ids: &[i64],
    from: ActionStatus,
    t: &Transition,
    now: i64,
) -> Result<Vec<(i64, i64)>> {
    let final_ = t.status.is_final();
    let mut out = Vec::new();
    for chunk in device_ids.chunks(CHUNK) {
        let sql = format!(
            "UPDATE actions SET status = $1, progress = $2, reason = COALESCE($3, reason), \
             active = $4, updated_at = $5, failure_kind = COALESCE($8, failure_kind) \
             WHERE rollout_id = $6 AND active = 1 AND status = $7 AND device_id IN ({}) \
             RETURNING id, device_id",
            placeholders(9, chunk.len())
        );
        let mut q = sqlx::query(&sql)
            .bind(t.status.as_str())
            .bind(t.progress)
            .bind(if final_ { t.message.clone() } else { None })
            .bind(if final_ { 0i64 } else { 1i64 })
            .bind(now)
            .bind(rollout_id)
            .bind(from.as_str())
            .bind(if final_ { t.failure_kind.clone() } else { None });
        for d in chunk {
            q = q.bind(*d);
        }
        let rows = q.fetch_all(&mut **tx).await?;
        let mut moved = Vec::with_capacity(rows.len());
        for r in &rows {
            let (a, d): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
            moved.push((a, d, rollout_id));
            out.push((a, d));
        }
        record_moved(tx, &moved, Some(from), t, now).await?;
    }
    Ok(out)
}

/// [`Store::assign`] inside the caller's transaction.
pub(crate) async fn assign_in(
    tx: &mut Transaction<'_, Any>,
    rollout_id: i64,
    device_ids: &[i64],
    now: i64,
) -> Result<AssignOutcome> {
    let row = sqlx::query(
        "SELECT o.release_id, r.version FROM rollouts o JOIN releases r ON r.id = o.release_id \
         WHERE o.id = $1",
    )
    .bind(rollout_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::Corrupt("rollouts.id"))?;
    let release_id: i64 = row.try_get(0)?;
    let version: String = row.try_get(1)?;
    let mut created = Vec::new();
    let mut skipped = Vec::new();
    for chunk in device_ids.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO actions (rollout_id, device_id, release_id, status, active, created_at, updated_at) \
             SELECT $1, d.id, $2, $3, 1, $4, $4 FROM devices d \
             WHERE d.id IN ({}) AND d.deleted_at IS NULL \
             AND (d.current_version IS NULL OR d.current_version <> $5) \
             AND NOT EXISTS (SELECT 1 FROM actions a WHERE a.device_id = d.id AND a.active = 1) \
             RETURNING id, device_id",
            placeholders(6, chunk.len())
        );
        let mut q = sqlx::query(&sql)
            .bind(rollout_id)
            .bind(release_id)
            .bind(ActionStatus::Pending.as_str())
            .bind(now)
            .bind(version.clone());
        for id in chunk {
            q = q.bind(*id);
        }
        let rows = q
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| super::conflict(e, "open deployment for this device"))?;
        let mut made = std::collections::HashSet::with_capacity(rows.len());
        for r in &rows {
            let action: i64 = r.try_get(0)?;
            let device: i64 = r.try_get(1)?;
            made.insert(device);
            created.push((action, device));
        }
        let missed: Vec<i64> = chunk
            .iter()
            .copied()
            .filter(|d| !made.contains(d))
            .collect();
        if !missed.is_empty() {
            let sql = format!(
                "SELECT id, controller_id, current_version FROM devices \
                 WHERE deleted_at IS NULL AND id IN ({}) ORDER BY id",
                placeholders(1, missed.len())
            );
            let mut q = sqlx::query(&sql);
            for id in &missed {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&mut **tx).await? {
                let current: Option<String> = r.try_get(2)?;
                skipped.push(Skip {
                    device_id: r.try_get(0)?,
                    controller_id: r.try_get(1)?,
                    reason: if current.as_deref() == Some(version.as_str()) {
                        SKIP_INSTALLED
                    } else {
                        SKIP_BUSY
                    },
                });
            }
        }
    }
    let pending = Transition {
        status: ActionStatus::Pending,
        notify: true,
        ..Transition::default()
    };
    let moved: Vec<(i64, i64, i64)> = created.iter().map(|&(a, d)| (a, d, rollout_id)).collect();
    record_moved(tx, &moved, None, &pending, now).await?;
    sqlx::query("UPDATE rollouts SET total = total + $1 WHERE id = $2")
        .bind(i64::try_from(created.len()).unwrap_or(i64::MAX))
        .bind(rollout_id)
        .execute(&mut **tx)
        .await?;
    Ok(AssignOutcome { created, skipped })
}

impl Store {
    /// Create a rollout of a release (no actions yet; see [`Store::assign`]).
    pub async fn create_rollout(&self, release_id: i64, target: &str) -> Result<i64> {
        let row = sqlx::query(
            "INSERT INTO rollouts (release_id, target, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(release_id)
        .bind(target)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Assign the rollout's release to devices: one pending action each, its event, the
    /// device's update state, the rollout's total and the outbox, in one transaction. A device
    /// with an open action, or already on the release's version, is skipped; deleted or unknown
    /// ids are dropped. The one-open-action-per-device index makes a racing assignment of the
    /// same device fail the whole transaction rather than create two.
    pub async fn assign(&self, rollout_id: i64, device_ids: &[i64]) -> Result<AssignOutcome> {
        let mut tx = self.pool.begin().await?;
        let outcome = assign_in(&mut tx, rollout_id, device_ids, now_ms()).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Internal ids of the (not deleted) devices with these controller ids, in chunks.
    pub async fn device_ids(
        &self,
        controller_ids: &[String],
    ) -> Result<std::collections::HashMap<String, i64>> {
        let mut out = std::collections::HashMap::with_capacity(controller_ids.len());
        for chunk in controller_ids.chunks(CHUNK) {
            let sql = format!(
                "SELECT controller_id, id FROM devices WHERE deleted_at IS NULL AND controller_id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for c in chunk {
                q = q.bind(c.as_str());
            }
            for r in q.fetch_all(&self.pool).await? {
                out.insert(r.try_get(0)?, r.try_get(1)?);
            }
        }
        Ok(out)
    }

    pub(super) fn rollout_from_row(r: &AnyRow) -> Result<Rollout> {
        Ok(Rollout {
            id: r.try_get(0)?,
            release: r.try_get(1)?,
            target: r.try_get(2)?,
            created_at: r.try_get(3)?,
            total: r.try_get(4)?,
            succeeded: r.try_get(5)?,
            failed: r.try_get(6)?,
            rejected: r.try_get(7)?,
            cancelled: r.try_get(8)?,
        })
    }

    pub(super) const ROLLOUT_SELECT: &str = "SELECT o.id, r.version, o.target, o.created_at, o.total, \
        o.succeeded, o.failed, o.rejected, o.cancelled FROM rollouts o JOIN releases r ON r.id = o.release_id";

    /// A rollout with its counters.
    pub async fn rollout(&self, id: i64) -> Result<Option<Rollout>> {
        let row = sqlx::query(&format!("{} WHERE o.id = $1", Self::ROLLOUT_SELECT))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Self::rollout_from_row(&r)).transpose()
    }

    /// These rollouts, in one query (chunked), in no particular order.
    pub async fn rollouts_by_ids(&self, ids: &[i64]) -> Result<Vec<Rollout>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                "{} WHERE o.id IN ({})",
                Self::ROLLOUT_SELECT,
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.push(Self::rollout_from_row(&r)?);
            }
        }
        Ok(out)
    }

    /// Rollouts, newest first, `limit` of them with an id below `before` (if given).
    pub async fn rollouts(&self, before: Option<i64>, limit: i64) -> Result<Vec<Rollout>> {
        let rows = sqlx::query(&format!(
            "{} WHERE o.id < $1 ORDER BY o.id DESC LIMIT $2",
            Self::ROLLOUT_SELECT
        ))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::rollout_from_row).collect()
    }

    fn action_from_row(r: &AnyRow) -> Result<Action> {
        let status: String = r.try_get(6)?;
        Ok(Action {
            id: r.try_get(0)?,
            rollout_id: r.try_get(1)?,
            device_id: r.try_get(2)?,
            controller_id: r.try_get(3)?,
            release_id: r.try_get(4)?,
            release: r.try_get(5)?,
            status: status
                .parse()
                .map_err(|()| StoreError::Corrupt("actions.status"))?,
            progress: r.try_get(7)?,
            reason: r.try_get(8)?,
            active: r.try_get::<i64, _>(9)? != 0,
            created_at: r.try_get(10)?,
            updated_at: r.try_get(11)?,
            failure_kind: r.try_get(12)?,
        })
    }

    /// An action by id.
    pub async fn action(&self, id: i64) -> Result<Option<Action>> {
        let row = sqlx::query(&format!(
            "SELECT {ACTION_COLUMNS} {ACTION_FROM} WHERE a.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Self::action_from_row(&r)).transpose()
    }

    /// The device's open action, if any.
    pub async fn active_action(&self, device_id: i64) -> Result<Option<Action>> {
        let row = sqlx::query(&format!(
            "SELECT {ACTION_COLUMNS} {ACTION_FROM} WHERE a.device_id = $1 AND a.active = 1"
        ))
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Self::action_from_row(&r)).transpose()
    }

    /// The device's latest succeeded action (its installed base), if any.
    pub async fn installed_action(&self, device_id: i64) -> Result<Option<Action>> {
        let row = sqlx::query(&format!(
            "SELECT {ACTION_COLUMNS} {ACTION_FROM} WHERE a.device_id = $1 AND a.status = $2 \
             ORDER BY a.id DESC LIMIT 1"
        ))
        .bind(device_id)
        .bind(ActionStatus::Succeeded.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Self::action_from_row(&r)).transpose()
    }

    /// Whether the device has any action (open or closed) for this release.
    pub async fn device_has_release(&self, device_id: i64, release_id: i64) -> Result<bool> {
        let row =
            sqlx::query("SELECT 1 FROM actions WHERE device_id = $1 AND release_id = $2 LIMIT 1")
                .bind(device_id)
                .bind(release_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }

    /// Actions of a device, newest first (at most `limit`).
    pub async fn device_actions(&self, device_id: i64, limit: i64) -> Result<Vec<Action>> {
        let rows = sqlx::query(&format!(
            "SELECT {ACTION_COLUMNS} {ACTION_FROM} WHERE a.device_id = $1 ORDER BY a.id DESC LIMIT $2"
        ))
        .bind(device_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::action_from_row).collect()
    }

    /// Actions of a rollout with an id above `after`, at most `limit`, in id order.
    pub async fn rollout_actions(
        &self,
        rollout_id: i64,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Action>> {
        let rows = sqlx::query(&format!(
            "SELECT {ACTION_COLUMNS} {ACTION_FROM} WHERE a.rollout_id = $1 AND a.id > $2 \
             ORDER BY a.id LIMIT $3"
        ))
        .bind(rollout_id)
        .bind(after.unwrap_or(0))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::action_from_row).collect()
    }

    fn event_from_row(r: &AnyRow) -> Result<ActionEvent> {
        let status: String = r.try_get(1)?;
        Ok(ActionEvent {
            at: r.try_get(0)?,
            status: status
                .parse()
                .map_err(|()| StoreError::Corrupt("action_events.status"))?,
            progress: r.try_get(2)?,
            message: r.try_get(3)?,
        })
    }

    /// History of an action, oldest first.
    pub async fn action_events(&self, action_id: i64) -> Result<Vec<ActionEvent>> {
        let rows = sqlx::query(
            "SELECT at, status, progress, message FROM action_events WHERE action_id = $1 ORDER BY id",
        )
        .bind(action_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::event_from_row).collect()
    }

    /// Histories of several actions in one query, as `(action id, event)` oldest first.
    pub async fn events_of(&self, action_ids: &[i64]) -> Result<Vec<(i64, ActionEvent)>> {
        let mut out = Vec::new();
        for chunk in action_ids.chunks(CHUNK) {
            let sql = format!(
                "SELECT at, status, progress, message, action_id FROM action_events \
                 WHERE action_id IN ({}) ORDER BY action_id, id",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.push((r.try_get(4)?, Self::event_from_row(&r)?));
            }
        }
        Ok(out)
    }

    /// Move an open action from `from` to a new status, atomically: the action row, its event,
    /// the device's update state (and current version on success), the rollout counters and,
    /// when `t.notify`, the outbox change together, or nothing changes.
    ///
    /// Compare-and-set: the change applies only while the action is still in `from`; otherwise
    /// nothing changes and [`Applied::Stale`] names the status it is in now, for the caller to
    /// decide again. A transition to the status and progress it already has records nothing.
    pub async fn apply_transition(
        &self,
        action_id: i64,
        from: ActionStatus,
        t: &Transition,
    ) -> Result<Applied> {
        let now = now_ms();
        let final_ = t.status.is_final();
        let reason = if final_ { t.message.clone() } else { None };
        let failure_kind = if final_ { t.failure_kind.clone() } else { None };
        let mut tx = self.pool.begin().await?;
        // The conditional UPDATE is the lock: only one of two racing changes can match the row.
        let row = sqlx::query(
            "UPDATE actions SET status = $1, progress = $2, reason = COALESCE($3, reason), \
             active = $4, updated_at = $5, failure_kind = COALESCE($8, failure_kind) \
             WHERE id = $6 AND active = 1 AND status = $7 \
             AND NOT (status = $1 AND COALESCE(progress, -1) = COALESCE($2, -1)) \
             RETURNING device_id, rollout_id",
        )
        .bind(t.status.as_str())
        .bind(t.progress)
        .bind(reason)
        .bind(if final_ { 0i64 } else { 1i64 })
        .bind(now)
        .bind(action_id)
        .bind(from.as_str())
        .bind(failure_kind)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            drop(tx);
            let now_row = sqlx::query("SELECT active, status, progress FROM actions WHERE id = $1")
                .bind(action_id)
                .fetch_optional(&self.pool)
                .await?;
            let Some(r) = now_row else {
                return Ok(Applied::NotActive);
            };
            if r.try_get::<i64, _>(0)? == 0 {
                return Ok(Applied::NotActive);
            }
            let status: ActionStatus = r
                .try_get::<String, _>(1)?
                .parse()
                .map_err(|()| StoreError::Corrupt("actions.status"))?;
            let progress: Option<i64> = r.try_get(2)?;
            return Ok(if status == from {
                if status == t.status && progress == t.progress {
                    Applied::Unchanged
                } else {
                    // Moved away and back between the update and this read: decide again.
                    Applied::Stale(status)
                }
            } else {
                Applied::Stale(status)
            });
        };
        let device_id: i64 = row.try_get(0)?;
        let rollout_id: i64 = row.try_get(1)?;
        record_moved(
            &mut tx,
            &[(action_id, device_id, rollout_id)],
            Some(from),
            t,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Applied::Changed)
    }

    /// Move every open action of a rollout that is in `from` to `t.status` (set-based, one
    /// transaction; each row is compare-and-set on `from`). Returns how many moved.
    pub async fn bulk_transition(
        &self,
        rollout_id: i64,
        from: ActionStatus,
        t: &Transition,
    ) -> Result<u64> {
        let now = now_ms();
        let final_ = t.status.is_final();
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "UPDATE actions SET status = $1, progress = $2, reason = COALESCE($3, reason), \
             active = $4, updated_at = $5, failure_kind = COALESCE($8, failure_kind) \
             WHERE rollout_id = $6 AND active = 1 AND status = $7 RETURNING id, device_id",
        )
        .bind(t.status.as_str())
        .bind(t.progress)
        .bind(if final_ { t.message.clone() } else { None })
        .bind(if final_ { 0i64 } else { 1i64 })
        .bind(now)
        .bind(rollout_id)
        .bind(from.as_str())
        .bind(if final_ { t.failure_kind.clone() } else { None })
        .fetch_all(&mut *tx)
        .await?;
        let mut moved = Vec::with_capacity(rows.len());
        for r in &rows {
            moved.push((r.try_get(0)?, r.try_get(1)?, rollout_id));
        }
        record_moved(&mut tx, &moved, Some(from), t, now).await?;
        tx.commit().await?;
        Ok(moved.len() as u64)
    }

    /// Soft-delete a device: its open action (if any) is closed as `t` decides (counted), its
    /// tags, config and outbox entry go, its history stays; its controller id and token are
    /// renamed so the id can be registered again. False when no such device.
    pub async fn delete_device(
        &self,
        controller_id: &str,
        close_open: &Transition,
    ) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let Some(row) =
            sqlx::query("SELECT id FROM devices WHERE controller_id = $1 AND deleted_at IS NULL")
                .bind(controller_id)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(false);
        };
        let id: i64 = row.try_get(0)?;
        let open = sqlx::query(
            "UPDATE actions SET status = $1, reason = $2, active = 0, updated_at = $3 \
             WHERE device_id = $4 AND active = 1 RETURNING id, rollout_id",
        )
        .bind(close_open.status.as_str())
        .bind(close_open.message.clone())
        .bind(now)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let mut moved = Vec::new();
        for r in &open {
            moved.push((r.try_get(0)?, id, r.try_get(1)?));
        }
        let close = Transition {
            notify: false,
            ..close_open.clone()
        };
        record_moved(&mut tx, &moved, None, &close, now).await?;
        for table in ["device_tags", "device_config", "work_changed"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE device_id = $1"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE devices SET deleted_at = $1, controller_id = controller_id || '~deleted-' || id, \
             token_hash = 'deleted-' || id WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    // ---- the work_changed outbox ----

    /// Claim up to `limit` outbox entries for `owner` until `now + lease_ms`: entries nobody
    /// holds, or whose lease ran out. On PostgreSQL the rows are taken with
    /// `FOR UPDATE SKIP LOCKED`, so several server instances claim disjoint sets.
    pub async fn claim_work_changes(
        &self,
        owner: &str,
        limit: i64,
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<WorkChange>> {
        let lock = match self.backend {
            super::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            super::Backend::Sqlite => "",
        };
        let rows = sqlx::query(&format!(
            "UPDATE work_changed SET lease_owner = $1, lease_until = $2 WHERE device_id IN \
             (SELECT device_id FROM work_changed WHERE lease_until <= $3 \
              ORDER BY changed_at, device_id LIMIT $4{lock}) RETURNING device_id, seq"
        ))
        .bind(owner)
        .bind(now.saturating_add(lease_ms))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WorkChange {
                    device_id: r.try_get(0)?,
                    seq: r.try_get(1)?,
                })
            })
            .collect()
    }

    /// The change was delivered: drop the entry unless a newer change came in meanwhile.
    pub async fn ack_work_change(&self, change: WorkChange) -> Result<()> {
        sqlx::query("DELETE FROM work_changed WHERE device_id = $1 AND seq = $2")
            .bind(change.device_id)
            .bind(change.seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How many outbox entries wait (delivered or not).
    pub async fn pending_work_changes(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM work_changed")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }
}
