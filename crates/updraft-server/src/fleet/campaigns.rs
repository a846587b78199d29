//! Campaigns on the store: the [`crate::campaign`] engine's inputs, each in one transaction
//! under the campaign's row lock, and its decisions carried out in that same transaction
//! (assignments, cancels, timeouts, the log). Several server instances can tick one
//! PostgreSQL: a tick takes each campaign with `FOR UPDATE SKIP LOCKED`, so one instance
//! works on a campaign at a time and no device is started twice.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use sqlx::{Any, Transaction};

use super::{Fleet, FleetError, Result, rules};
use crate::campaign::{
    Actor, Campaign, CampaignError, Command, Decision, MAX_BATCH, MemoryRoster, Outcome, Policy,
    Stage, Summary,
};
use crate::store::{
    self, ActionStatus, CampaignLogEntry, CampaignRow, MemberQuery, Rollout, SKIP_INSTALLED,
    Transition, now_ms,
};

/// Which devices a campaign targets. Give `devices`, or `tag` and/or `current_version`
/// (a filter; with the policy's `dynamic`, devices that match later join).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Devices with this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Devices on this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    /// Devices whose current version is a release of this class (the manifest's class id,
    /// a UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_id: Option<String>,
    /// These devices (controller ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
}

impl Target {
    fn filter(&self) -> store::DeviceMatch<'_> {
        store::DeviceMatch {
            tag: self.tag.as_deref(),
            current_version: self.current_version.as_deref(),
            class_id: self.class_id.as_deref(),
        }
    }
}

/// A campaign to create.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    /// A name for people (default: `RELEASE to TARGET`).
    #[serde(default)]
    pub name: Option<String>,
    /// The release version.
    pub release: String,
    /// The target.
    pub target: Target,
    /// The rollout policy (see [`crate::campaign`] for its JSON shape).
    pub policy: Policy,
}

/// A campaign as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct CampaignView {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Release version.
    pub release: String,
    /// The target.
    pub target: Target,
    /// The policy.
    pub policy: Policy,
    /// Counters and state, read from the campaign row alone.
    pub summary: Summary,
    /// The deployment behind it (its per-device actions: `/deployments/{id}`).
    pub deployment: Rollout,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
    /// The latest changes (single-campaign reads only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<CampaignLogEntry>,
}

fn refused(e: CampaignError) -> FleetError {
    match e {
        CampaignError::Policy(p) => FleetError::Invalid(p.to_string()),
        other => FleetError::Conflict(other.to_string()),
    }
}

fn corrupt(_: serde_json::Error) -> FleetError {
    FleetError::Store(store::StoreError::Corrupt("campaigns.state"))
}

fn actor_name(a: &Actor) -> String {
    match a {
        Actor::Engine => "engine".into(),
        Actor::Admin(name) => name.clone(),
    }
}

/// What an action's new status means to the engine.
enum Fed {
    Progress(Stage),
    Outcome(Outcome),
    Nothing,
}

fn feed_of(status: &str, failure_kind: Option<&str>) -> Fed {
    match status.parse::<ActionStatus>() {
        Ok(ActionStatus::Notified) => Fed::Progress(Stage::Notified),
        Ok(ActionStatus::Downloading) => Fed::Progress(Stage::Downloading),
        Ok(ActionStatus::Downloaded) => Fed::Progress(Stage::Downloaded),
        Ok(ActionStatus::Deferred) => Fed::Progress(Stage::Deferred),
        Ok(ActionStatus::Updating) => Fed::Progress(Stage::Installing),
        Ok(ActionStatus::Succeeded) => Fed::Outcome(Outcome::Succeeded),
        Ok(ActionStatus::Failed) if failure_kind == Some(rules::FailureKind::TimedOut.as_str()) => {
            Fed::Outcome(Outcome::TimedOut)
        }
        Ok(ActionStatus::Failed) => Fed::Outcome(Outcome::Failed),
        Ok(ActionStatus::Rejected) => Fed::Outcome(Outcome::Rejected),
        Ok(ActionStatus::Cancelled) => Fed::Outcome(Outcome::Cancelled),
        _ => Fed::Nothing,
    }
}

/// One campaign input in progress: the locked row, the engine, the loaded member rows.
struct Run {
    row: CampaignRow,
    campaign: Campaign,
    roster: MemoryRoster,
    /// The current action of each loaded member.
    actions: HashMap<i64, i64>,
    now: i64,
}

impl Fleet {
    /// Create a draft campaign: its rollout, and one member row per targeted device.
    pub async fn create_campaign(&self, mut req: NewCampaign) -> Result<i64> {
        if let Some(c) = &req.target.class_id {
            let parsed = updraft_manifest::Uuid::parse_str(c)
                .map_err(|_| FleetError::Invalid(format!("class_id {c:?} is not a UUID")))?;
            // Release rows hold it hyphenated and lower case: compare in that form.
            req.target.class_id = Some(parsed.to_string());
        }
        req.policy
            .validate()
            .map_err(|e| FleetError::Invalid(e.to_string()))?;
        let release = self
            .store
            .release(&req.release)
            .await?
            .ok_or(FleetError::NotFound("release"))?;
        let t = &req.target;
        let filtered = t.tag.is_some() || t.current_version.is_some() || t.class_id.is_some();
        let devices = match (&t.devices, filtered) {
            (Some(list), false) if !list.is_empty() && list.len() <= 100_000 => {
                if req.policy.dynamic {
                    return Err(FleetError::Invalid(
                        "a dynamic campaign targets a tag or a version, not a device list".into(),
                    ));
                }
                let found = self.store.device_ids(list).await?;
                if let Some(missing) = list.iter().find(|d| !found.contains_key(d.as_str())) {
                    return Err(FleetError::Invalid(format!("no device {missing:?}")));
                }
                let mut ids: Vec<i64> = found.into_values().collect();
                ids.sort_unstable();
                ids
            }
            (None, true) => self.store.matching_devices(&t.filter()).await?,
            _ => {
                return Err(FleetError::Invalid(
                    "the target is `devices` (1 to 100000 controller ids), or any of `tag`, `current_version`, `class_id`"
                        .into(),
                ));
            }
        };
        if devices.is_empty() && !req.policy.dynamic {
            return Err(FleetError::Invalid("no device matches the target".into()));
        }
        let name = req.name.clone().unwrap_or_else(|| {
            let what = match (&t.tag, &t.current_version) {
                (Some(tag), _) => format!("tag {tag}"),
                (None, Some(v)) => format!("devices on {v}"),
                _ => format!("{} devices", devices.len()),
            };
            format!("{} to {what}", release.version)
        });
        if name.is_empty() || name.len() > 200 {
            return Err(FleetError::Invalid("the name is 1 to 200 bytes".into()));
        }
        let mut campaign = Campaign::new(req.policy.clone()).map_err(refused_policy)?;
        let now = now_ms();
        let target = serde_json::to_string(&req.target).map_err(corrupt)?;
        let mut tx = self.store.begin().await?;
        let state = serde_json::to_string(&campaign).map_err(corrupt)?;
        let (id, _) = self
            .store
            .create_campaign(
                &mut tx,
                &name,
                release.id,
                &target,
                campaign.status().as_str(),
                &state,
            )
            .await?;
        for chunk in devices.chunks(MAX_BATCH) {
            let mut roster = MemoryRoster::new();
            for d in chunk {
                campaign.add_device(&mut roster, *d, now).map_err(refused)?;
            }
            let rows: Vec<_> = roster.rows().map(|m| (m.clone(), None)).collect();
            store::save_members(&mut tx, id, &rows).await?;
        }
        let state = serde_json::to_string(&campaign).map_err(corrupt)?;
        store::save_campaign(&mut tx, id, campaign.status().as_str(), &state).await?;
        store::campaign_log_entry(
            &mut tx,
            id,
            now,
            "admin",
            &format!("created with {} devices", devices.len()),
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        tracing::info!(campaign = id, release = %release.version, devices = devices.len(), "campaign created");
        Ok(id)
    }

    async fn open_run(
        &self,
        tx: &mut Transaction<'_, Any>,
        id: i64,
        skip_locked: bool,
        now: i64,
    ) -> Result<Option<Run>> {
        let Some(row) = self.store.lock_campaign(tx, id, skip_locked).await? else {
            return Ok(None);
        };
        let campaign: Campaign = serde_json::from_str(&row.state).map_err(corrupt)?;
        let mut run = Run {
            row,
            campaign,
            roster: MemoryRoster::new(),
            actions: HashMap::new(),
            now,
        };
        let batch = MAX_BATCH as i64;
        for q in [
            MemberQuery::Waiting,
            MemberQuery::Due(now),
            MemberQuery::InstallPending,
        ] {
            store::load_members(tx, id, q, batch, &mut run.roster, &mut run.actions).await?;
        }
        Ok(Some(run))
    }

    /// Carry out the engine's decisions (and those they lead to), then write the run back.
    async fn finish_run(
        &self,
        tx: &mut Transaction<'_, Any>,
        mut run: Run,
        decisions: Vec<Decision>,
    ) -> Result<()> {
        let id = run.row.id;
        let rollout = run.row.rollout_id;
        let now = run.now;
        let mut queue: VecDeque<Decision> = decisions.into();
        while let Some(d) = queue.pop_front() {
            match d {
                Decision::Start { devices, .. } | Decision::Retry { devices } => {
                    let outcome = store::assign_in(tx, rollout, &devices, now).await?;
                    for (action, device) in outcome.created {
                        run.actions.insert(device, action);
                    }
                    // A device that cannot start ends its attempt at once: already on the
                    // release counts as succeeded, busy with another deployment as cancelled.
                    for skip in outcome.skipped {
                        let o = if skip.reason == SKIP_INSTALLED {
                            Outcome::Succeeded
                        } else {
                            Outcome::Cancelled
                        };
                        store::campaign_log_entry(
                            tx,
                            id,
                            now,
                            "engine",
                            &format!("{}: {}", skip.controller_id, skip.reason),
                        )
                        .await?;
                        match run
                            .campaign
                            .device_outcome(&mut run.roster, skip.device_id, o, now)
                        {
                            Ok(more) => queue.extend(more),
                            Err(e) => tracing::warn!(campaign = id, error = %e, "skip not taken"),
                        }
                    }
                }
                Decision::Cancel { devices } => {
                    for from in ActionStatus::ALL {
                        if let Some(to) = rules::cancel(from) {
                            let t = Transition {
                                status: to,
                                message: Some("campaign aborted".into()),
                                notify: true,
                                ..Transition::default()
                            };
                            store::transition_devices_in(tx, rollout, &devices, from, &t, now)
                                .await?;
                        }
                    }
                }
                Decision::TimeOut { device } => {
                    let t = Transition {
                        status: ActionStatus::Failed,
                        message: Some(
                            "timed out: no progress within the campaign's device timeout".into(),
                        ),
                        failure_kind: Some(rules::FailureKind::TimedOut.as_str().into()),
                        notify: true,
                        quiet: true,
                        ..Transition::default()
                    };
                    for from in ActionStatus::ALL.into_iter().filter(|s| !s.is_final()) {
                        store::transition_devices_in(tx, rollout, &[device], from, &t, now).await?;
                    }
                }
                Decision::Install { .. } => {
                    // Recorded on the member rows (install_triggered); fronts that trigger an
                    // install (LwM2M Execute) read it from there.
                }
                Decision::StateChanged(c) => {
                    let why = serde_json::to_value(&c.reason)
                        .ok()
                        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
                        .unwrap_or_default();
                    store::campaign_log_entry(
                        tx,
                        id,
                        c.at,
                        &actor_name(&c.by),
                        &format!("{} -> {} ({why})", c.from.as_str(), c.to.as_str()),
                    )
                    .await?;
                    tracing::info!(campaign = id, from = c.from.as_str(), to = c.to.as_str(), reason = %why, "campaign state");
                }
                Decision::PhaseStarted { phase, at, by } => {
                    store::campaign_log_entry(
                        tx,
                        id,
                        at,
                        &actor_name(&by),
                        &format!("phase {phase} started"),
                    )
                    .await?;
                }
                Decision::AwaitingApproval { phase } => {
                    store::campaign_log_entry(
                        tx,
                        id,
                        now,
                        "engine",
                        &format!("phase {phase} awaits approval"),
                    )
                    .await?;
                }
            }
        }
        let rows: Vec<_> = run
            .roster
            .rows()
            .map(|m| (m.clone(), run.actions.get(&m.device).copied()))
            .collect();
        store::save_members(tx, id, &rows).await?;
        let state = serde_json::to_string(&run.campaign).map_err(corrupt)?;
        store::save_campaign(tx, id, run.campaign.status().as_str(), &state).await?;
        Ok(())
    }

    /// An operator's command (`by` names them in the log).
    pub async fn campaign_command(&self, id: i64, command: Command, by: &str) -> Result<()> {
        let now = now_ms();
        let mut tx = self.store.begin().await?;
        let mut run = self
            .open_run(&mut tx, id, false, now)
            .await?
            .ok_or(FleetError::NotFound("campaign"))?;
        if command == Command::Abort {
            // Abort touches every device not started or not installing yet.
            for q in [MemberQuery::Cancellable, MemberQuery::Waiting] {
                store::load_members(&mut tx, id, q, i64::MAX, &mut run.roster, &mut run.actions)
                    .await?;
            }
        }
        let decisions = run
            .campaign
            .command(
                &mut run.roster,
                command.clone(),
                Actor::Admin(by.into()),
                now,
            )
            .map_err(refused)?;
        self.finish_run(&mut tx, run, decisions).await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        tracing::info!(
            campaign = id,
            command = command.name(),
            by,
            "campaign command"
        );
        Ok(())
    }

    /// One tick of one campaign at `now`: feed the device reports that came in, let dynamic
    /// targets take new devices, run timeouts and starts. Returns whether there is more work
    /// right away (a full batch). A campaign another instance is ticking is skipped.
    pub async fn campaign_tick(&self, id: i64, now: i64) -> Result<bool> {
        let mut tx = self.store.begin().await?;
        let Some(mut run) = self.open_run(&mut tx, id, true, now).await? else {
            return Ok(false);
        };
        let mut decisions = Vec::new();
        let events = store::take_events(&mut tx, id, MAX_BATCH as i64).await?;
        let mut more = events.len() == MAX_BATCH;
        let devices: Vec<i64> = events.iter().map(|e| e.device_id).collect();
        store::load_members_of(&mut tx, id, &devices, &mut run.roster, &mut run.actions).await?;
        for e in &events {
            // A report on an earlier attempt of a retried device is not about this one.
            if run.actions.get(&e.device_id) != Some(&e.action_id) {
                continue;
            }
            let result = match feed_of(&e.status, e.failure_kind.as_deref()) {
                Fed::Progress(stage) => {
                    run.campaign
                        .device_progress(&mut run.roster, e.device_id, stage, now)
                }
                Fed::Outcome(o) => {
                    run.campaign
                        .device_outcome(&mut run.roster, e.device_id, o, now)
                }
                Fed::Nothing => Ok(Vec::new()),
            };
            match result {
                Ok(d) => decisions.extend(d),
                Err(err) => tracing::debug!(campaign = id, error = %err, "report not taken"),
            }
        }
        if run.campaign.policy().dynamic {
            let target: Target = serde_json::from_str(&run.row.target).map_err(corrupt)?;
            let joined = self
                .store
                .new_matches(&mut tx, id, &target.filter(), MAX_BATCH as i64)
                .await?;
            more |= joined.len() == MAX_BATCH;
            for d in joined {
                match run.campaign.add_device(&mut run.roster, d, now) {
                    Ok(more) => decisions.extend(more),
                    Err(CampaignError::TargetFixed) => break,
                    Err(e) => tracing::debug!(campaign = id, error = %e, "device not added"),
                }
            }
        }
        decisions.extend(run.campaign.tick(&mut run.roster, now));
        let starts: usize = decisions
            .iter()
            .map(|d| match d {
                Decision::Start { devices, .. } | Decision::Retry { devices } => devices.len(),
                _ => 0,
            })
            .sum();
        more |= starts == MAX_BATCH;
        self.finish_run(&mut tx, run, decisions).await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(more)
    }

    /// Tick every campaign with work (scheduled, running, paused) until none has more.
    pub async fn tick_campaigns(&self, now: i64) -> Result<()> {
        for id in self.store.campaigns_to_tick().await? {
            for _ in 0..100 {
                if !self.campaign_tick(id, now).await? {
                    break;
                }
            }
        }
        Ok(())
    }

    fn view(
        row: CampaignRow,
        deployment: Rollout,
        log: Vec<CampaignLogEntry>,
    ) -> Result<CampaignView> {
        let campaign: Campaign = serde_json::from_str(&row.state).map_err(corrupt)?;
        Ok(CampaignView {
            id: row.id,
            name: row.name,
            release: deployment.release.clone(),
            target: serde_json::from_str(&row.target).map_err(corrupt)?,
            policy: campaign.policy().clone(),
            summary: campaign.summary(),
            deployment,
            created_at: row.created_at,
            updated_at: row.updated_at,
            log,
        })
    }

    /// A campaign with its summary and its latest log entries.
    pub async fn campaign(&self, id: i64) -> Result<CampaignView> {
        let row = self
            .store
            .campaign(id)
            .await?
            .ok_or(FleetError::NotFound("campaign"))?;
        let deployment = self
            .store
            .rollout(row.rollout_id)
            .await?
            .ok_or(FleetError::NotFound("deployment"))?;
        let log = self.store.campaign_log(row.id, 100).await?;
        Self::view(row, deployment, log)
    }

    /// Campaigns, newest first (their deployments read in one query).
    pub async fn campaigns(&self, before: Option<i64>, limit: i64) -> Result<Vec<CampaignView>> {
        let rows = self.store.campaigns(before, limit).await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.rollout_id).collect();
        let mut rollouts: HashMap<i64, Rollout> = self
            .store
            .rollouts_by_ids(&ids)
            .await?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        rows.into_iter()
            .map(|row| {
                let deployment = rollouts
                    .remove(&row.rollout_id)
                    .ok_or(FleetError::NotFound("deployment"))?;
                Self::view(row, deployment, Vec::new())
            })
            .collect()
    }
}

fn refused_policy(e: crate::campaign::PolicyError) -> FleetError {
    FleetError::Invalid(e.to_string())
}
