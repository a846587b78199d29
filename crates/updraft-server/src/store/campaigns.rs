//! Campaign rows: the engine's state, its per-device members, the feed of device reports and
//! the log of changes. The fleet layer runs each campaign input in one transaction opened with
//! [`Store::lock_campaign`]: the campaign row is locked (`FOR UPDATE`, or `FOR UPDATE SKIP
//! LOCKED` for a scheduler tick on PostgreSQL, so another instance skips it; SQLite takes its
//! write lock with the first statement), the engine runs on the member rows loaded into a
//! [`MemoryRoster`], and everything it changed is written back before the commit.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::deploy::CHUNK;
use super::{Backend, Result, Store, StoreError, now_ms};
use crate::campaign::{Member, MemberStatus, MemoryRoster, Roster, Stage};

/// A campaign row.
#[derive(Clone, Debug)]
pub struct CampaignRow {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// The release rolled out.
    pub release_id: i64,
    /// Its rollout (counters, actions).
    pub rollout_id: i64,
    /// The target as given (JSON).
    pub target: String,
    /// The engine's status name.
    pub status: String,
    /// The engine's state (JSON).
    pub state: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

/// A device report on a campaign's action, waiting for the campaign's tick.
#[derive(Clone, Debug)]
pub struct CampaignEvent {
    /// Internal device id.
    pub device_id: i64,
    /// The action it is about.
    pub action_id: i64,
    /// The status the action moved to.
    pub status: String,
    /// The failure kind, when failed.
    pub failure_kind: Option<String>,
}

/// One entry of a campaign's log.
#[derive(Clone, Debug, Serialize)]
pub struct CampaignLogEntry {
    /// Unix ms.
    pub at: i64,
    /// Who (`engine` or the operator's name).
    pub actor: String,
    /// What happened.
    pub what: String,
}

/// A filter over the registry (each part optional, all given parts must match).
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceMatch<'a> {
    /// Devices with this tag.
    pub tag: Option<&'a str>,
    /// Devices on this version.
    pub current_version: Option<&'a str>,
    /// Devices whose current version is a release of this class (hyphenated UUID).
    pub class_id: Option<&'a str>,
}

/// [`DeviceMatch`] as SQL over `devices d`, with its parts bound as `$1`, `$2`, `$3`.
const MATCH: &str = "d.deleted_at IS NULL \
    AND ($1 IS NULL OR EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = d.id AND t.tag = $1)) \
    AND ($2 IS NULL OR d.current_version = $2) \
    AND ($3 IS NULL OR EXISTS (SELECT 1 FROM releases r WHERE r.version = d.current_version AND r.class_id = $3))";

/// Which member rows to load.
#[derive(Clone, Copy, Debug)]
pub enum MemberQuery {
    /// Waiting to start (retries first, then queued, in order).
    Waiting,
    /// Active or canceling with a deadline at or before this time.
    Due(i64),
    /// Downloaded, install not triggered yet.
    InstallPending,
    /// Active, not installing.
    Cancellable,
}

/// The serde name of an enum value (`snake_case` in the engine's types).
fn name<T: Serialize>(v: &T) -> Result<String> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        _ => Err(StoreError::Corrupt("campaign enum")),
    }
}

fn parse<T: serde::de::DeserializeOwned>(s: &str, column: &'static str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| StoreError::Corrupt(column))
}

const MEMBER_COLUMNS: &str = "device_id, seq, phase, status, stage, install_triggered, attempts, \
    since, deadline, action_id";

fn member_from_row(r: &AnyRow) -> Result<(Member, Option<i64>)> {
    let status: String = r.try_get(3)?;
    let stage: String = r.try_get(4)?;
    Ok((
        Member {
            device: r.try_get(0)?,
            seq: u64::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
            phase: u32::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
            status: parse::<MemberStatus>(&status, "campaign_members.status")?,
            stage: parse::<Stage>(&stage, "campaign_members.stage")?,
            install_triggered: r.try_get::<i64, _>(5)? != 0,
            attempts: u32::try_from(r.try_get::<i64, _>(6)?).unwrap_or(0),
            since: r.try_get(7)?,
            deadline: r.try_get(8)?,
        },
        r.try_get(9)?,
    ))
}

fn campaign_from_row(r: &AnyRow) -> Result<CampaignRow> {
    Ok(CampaignRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        release_id: r.try_get(2)?,
        rollout_id: r.try_get(3)?,
        target: r.try_get(4)?,
        status: r.try_get(5)?,
        state: r.try_get(6)?,
        created_at: r.try_get(7)?,
        updated_at: r.try_get(8)?,
    })
}

const CAMPAIGN_COLUMNS: &str =
    "id, name, release_id, rollout_id, target, status, state, created_at, updated_at";

/// Upsert member rows (with their current action, where known), in chunks.
pub(crate) async fn save_members(
    tx: &mut Transaction<'_, Any>,
    campaign_id: i64,
    members: &[(Member, Option<i64>)],
) -> Result<()> {
    // 11 binds a row; keep statements well under SQLite's and PostgreSQL's bind limits.
    for chunk in members.chunks(CHUNK / 2) {
        let mut values = Vec::with_capacity(chunk.len());
        for i in 0..chunk.len() {
            let b = i * 11;
            values.push(format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8,
                b + 9,
                b + 10,
                b + 11
            ));
        }
        let sql = format!(
            "INSERT INTO campaign_members (campaign_id, {MEMBER_COLUMNS}) VALUES {} \
             ON CONFLICT (campaign_id, device_id) DO UPDATE SET seq = excluded.seq, \
             phase = excluded.phase, status = excluded.status, stage = excluded.stage, \
             install_triggered = excluded.install_triggered, attempts = excluded.attempts, \
             since = excluded.since, deadline = excluded.deadline, \
             action_id = COALESCE(excluded.action_id, campaign_members.action_id)",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (m, action) in chunk {
            q = q
                .bind(campaign_id)
                .bind(m.device)
                .bind(i64::try_from(m.seq).unwrap_or(i64::MAX))
                .bind(i64::from(m.phase))
                .bind(name(&m.status)?)
                .bind(name(&m.stage)?)
                .bind(i64::from(m.install_triggered))
                .bind(i64::from(m.attempts))
                .bind(m.since)
                .bind(m.deadline)
                .bind(*action);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Load member rows into `roster` (and their actions into `actions`).
pub(crate) async fn load_members(
    tx: &mut Transaction<'_, Any>,
    campaign_id: i64,
    query: MemberQuery,
    limit: i64,
    roster: &mut MemoryRoster,
    actions: &mut std::collections::HashMap<i64, i64>,
) -> Result<usize> {
    let (filter, order) = match query {
        MemberQuery::Waiting => (
            "status IN ('retry_wait', 'queued')".to_string(),
            "CASE WHEN status = 'queued' THEN 1 ELSE 0 END, seq",
        ),
        MemberQuery::Due(now) => (
            format!("status IN ('active', 'canceling') AND deadline <= {now}"),
            "deadline, device_id",
        ),
        MemberQuery::InstallPending => (
            "status = 'active' AND stage = 'downloaded' AND install_triggered = 0".to_string(),
            "seq",
        ),
        MemberQuery::Cancellable => (
            "status = 'active' AND stage <> 'installing'".to_string(),
            "seq",
        ),
    };
    let rows = sqlx::query(&format!(
        "SELECT {MEMBER_COLUMNS} FROM campaign_members WHERE campaign_id = $1 AND {filter} \
         ORDER BY {order} LIMIT $2"
    ))
    .bind(campaign_id)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    for r in &rows {
        let (m, action) = member_from_row(r)?;
        if let Some(a) = action {
            actions.insert(m.device, a);
        }
        if roster.get(m.device).is_none() {
            roster.save(&m);
        }
    }
    Ok(rows.len())
}

/// Load the member rows of these devices.
pub(crate) async fn load_members_of(
    tx: &mut Transaction<'_, Any>,
    campaign_id: i64,
    devices: &[i64],
    roster: &mut MemoryRoster,
    actions: &mut std::collections::HashMap<i64, i64>,
) -> Result<()> {
    for chunk in devices.chunks(CHUNK) {
        let list = (0..chunk.len())
            .map(|i| format!("${}", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {MEMBER_COLUMNS} FROM campaign_members WHERE campaign_id = $1 \
             AND device_id IN ({list})"
        );
        let mut q = sqlx::query(&sql).bind(campaign_id);
        for d in chunk {
            q = q.bind(*d);
        }
        for r in q.fetch_all(&mut **tx).await? {
            let (m, action) = member_from_row(&r)?;
            if let Some(a) = action {
                actions.insert(m.device, a);
            }
            if roster.get(m.device).is_none() {
                roster.save(&m);
            }
        }
    }
    Ok(())
}

/// Take (and delete) up to `limit` waiting reports of a campaign, oldest first.
pub(crate) async fn take_events(
    tx: &mut Transaction<'_, Any>,
    campaign_id: i64,
    limit: i64,
) -> Result<Vec<CampaignEvent>> {
    let rows = sqlx::query(
        "SELECT id, device_id, action_id, status, failure_kind FROM campaign_events \
         WHERE campaign_id = $1 ORDER BY id LIMIT $2",
    )
    .bind(campaign_id)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    let mut last = 0i64;
    for r in &rows {
        last = r.try_get(0)?;
        out.push(CampaignEvent {
            device_id: r.try_get(1)?,
            action_id: r.try_get(2)?,
            status: r.try_get(3)?,
            failure_kind: r.try_get(4)?,
        });
    }
    if !out.is_empty() {
        sqlx::query("DELETE FROM campaign_events WHERE campaign_id = $1 AND id <= $2")
            .bind(campaign_id)
            .bind(last)
            .execute(&mut **tx)
            .await?;
    }
    Ok(out)
}

/// Write the engine's state back.
pub(crate) async fn save_campaign(
    tx: &mut Transaction<'_, Any>,
    id: i64,
    status: &str,
    state: &str,
) -> Result<()> {
    sqlx::query("UPDATE campaigns SET status = $1, state = $2, updated_at = $3 WHERE id = $4")
        .bind(status)
        .bind(state)
        .bind(now_ms())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Append to a campaign's log.
pub(crate) async fn log(
    tx: &mut Transaction<'_, Any>,
    id: i64,
    at: i64,
    actor: &str,
    what: &str,
) -> Result<()> {
    sqlx::query("INSERT INTO campaign_log (campaign_id, at, actor, what) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(at)
        .bind(actor)
        .bind(what)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    /// Begin a transaction (for the fleet layer's multi-step campaign inputs).
    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Any>> {
        Ok(self.pool.begin().await?)
    }

    /// Create a draft campaign with its rollout; returns `(campaign id, rollout id)`.
    pub(crate) async fn create_campaign(
        &self,
        tx: &mut Transaction<'_, Any>,
        name: &str,
        release_id: i64,
        target: &str,
        status: &str,
        state: &str,
    ) -> Result<(i64, i64)> {
        let now = now_ms();
        let rollout: i64 = sqlx::query(
            "INSERT INTO rollouts (release_id, target, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(release_id)
        .bind(format!("campaign:{name}"))
        .bind(now)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
        let id: i64 = sqlx::query(
            "INSERT INTO campaigns (name, release_id, rollout_id, target, status, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
        )
        .bind(name)
        .bind(release_id)
        .bind(rollout)
        .bind(target)
        .bind(status)
        .bind(state)
        .bind(now)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
        sqlx::query("UPDATE rollouts SET campaign_id = $1 WHERE id = $2")
            .bind(id)
            .bind(rollout)
            .execute(&mut **tx)
            .await?;
        Ok((id, rollout))
    }

    /// Lock a campaign row for this transaction and read it. With `skip_locked`, a row another
    /// transaction holds is skipped (`None`) instead of waited for (PostgreSQL; SQLite has one
    /// writer at a time and waits).
    pub(crate) async fn lock_campaign(
        &self,
        tx: &mut Transaction<'_, Any>,
        id: i64,
        skip_locked: bool,
    ) -> Result<Option<CampaignRow>> {
        let row = match self.backend {
            Backend::Postgres => {
                let lock = if skip_locked {
                    "FOR UPDATE SKIP LOCKED"
                } else {
                    "FOR UPDATE"
                };
                sqlx::query(&format!(
                    "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1 {lock}"
                ))
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?
            }
            Backend::Sqlite => {
                // A write first: the transaction holds SQLite's write lock from here on.
                sqlx::query(&format!(
                    "UPDATE campaigns SET updated_at = updated_at WHERE id = $1 \
                     RETURNING {CAMPAIGN_COLUMNS}"
                ))
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?
            }
        };
        row.map(|r| campaign_from_row(&r)).transpose()
    }

    /// A campaign by id (no lock).
    pub async fn campaign(&self, id: i64) -> Result<Option<CampaignRow>> {
        let row = sqlx::query(&format!(
            "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| campaign_from_row(&r)).transpose()
    }

    /// Campaigns, newest first, `limit` of them with an id below `before`.
    pub async fn campaigns(&self, before: Option<i64>, limit: i64) -> Result<Vec<CampaignRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id < $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(campaign_from_row).collect()
    }

    /// Device reports of a campaign not yet fed to its engine.
    pub async fn pending_campaign_events(&self, id: i64) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM campaign_events WHERE campaign_id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Ids of the campaigns a scheduler tick has work for: scheduled, running and paused ones,
    /// and ended ones with device reports still to feed (a device that answers a cancel after
    /// an abort, or that installed anyway).
    pub async fn campaigns_to_tick(&self) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT id FROM campaigns WHERE status IN ('scheduled', 'running', 'paused') \
             OR id IN (SELECT campaign_id FROM campaign_events) ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map_err(Into::into))
            .collect()
    }

    /// The newest `limit` entries of a campaign's log, oldest first.
    pub async fn campaign_log(&self, id: i64, limit: i64) -> Result<Vec<CampaignLogEntry>> {
        let rows = sqlx::query(
            "SELECT at, actor, what FROM campaign_log WHERE campaign_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(CampaignLogEntry {
                    at: r.try_get(0)?,
                    actor: r.try_get(1)?,
                    what: r.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }

    /// Devices matching a target that are not members of the campaign yet (dynamic targets),
    /// at most `limit`, in id order.
    pub(crate) async fn new_matches(
        &self,
        tx: &mut Transaction<'_, Any>,
        campaign_id: i64,
        filter: &DeviceMatch<'_>,
        limit: i64,
    ) -> Result<Vec<i64>> {
        let rows = sqlx::query(&format!(
            "SELECT d.id FROM devices d WHERE {MATCH} \
             AND NOT EXISTS (SELECT 1 FROM campaign_members m WHERE m.campaign_id = $4 AND m.device_id = d.id) \
             ORDER BY d.id LIMIT $5"
        ))
        .bind(filter.tag)
        .bind(filter.current_version)
        .bind(filter.class_id)
        .bind(campaign_id)
        .bind(limit)
        .fetch_all(&mut **tx)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map_err(Into::into))
            .collect()
    }

    /// Internal ids of the devices matching a target (tag and/or current version), id order.
    pub async fn matching_devices(&self, filter: &DeviceMatch<'_>) -> Result<Vec<i64>> {
        let rows = sqlx::query(&format!(
            "SELECT d.id FROM devices d WHERE {MATCH} ORDER BY d.id"
        ))
        .bind(filter.tag)
        .bind(filter.current_version)
        .bind(filter.class_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map_err(Into::into))
            .collect()
    }
}
