//! The fleet layer: every deployment rule, once, for every front.
//!
//! Fronts (DDI over HTTP today; LwM2M and MQTT next) translate their wire into these calls and
//! never touch the store:
//! - [`Fleet::authenticate`]: a credential and the id the device claims → the device;
//! - [`Fleet::next_work`]: what a poll, a registration or an inform gets ([`Work`]);
//! - [`Fleet::retrieve`]: the device fetched its deployment (pending → notified);
//! - [`Fleet::report`]: a protocol-neutral [`DeviceReport`], decided by [`rules::next`];
//! - [`Fleet::open_artifact`]: an image or envelope, only of a release assigned to the device;
//! - [`Fleet::set_attributes`]: the device's configuration data;
//! - for operators: [`Fleet::deploy`], [`Fleet::request_cancel`], [`Fleet::cancel_rollout`],
//!   [`Fleet::delete_device`].
//!
//! Every status change is compare-and-set on the status it was decided from; a miss is decided
//! again from the status found, never overwritten (an operator's cancel cannot be lost to a
//! device report already in flight). Assignments and cancels write the `work_changed` outbox in
//! the same transaction, for push fronts ([`Fleet::claim_work_changes`]); DDI ignores it.

pub mod campaigns;
pub mod rules;

use std::sync::Arc;

use crate::store::{
    Action, ActionStatus, Applied, AssignOutcome, ConfigMode, Device, Release, Store, StoreError,
    Transition, WorkChange,
};
use crate::tokens;
pub use rules::{Decision, DeviceReport, FailureKind, Refusal};

/// Longest device message kept in an event (the end of longer ones is kept: devices send logs).
pub const MAX_MESSAGE: usize = 2048;
/// Most configuration entries one report may carry.
pub const MAX_ATTRIBUTES: usize = 256;

/// How many times a change decided on a stale read is decided again before giving up.
const MAX_REDECIDE: usize = 8;

/// Why a fleet call refused.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// No or a wrong credential.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A valid credential for something else (another device's id).
    #[error("{0}")]
    Forbidden(&'static str),
    /// No such thing (for this device).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The action is closed: it takes no more reports.
    #[error("the action is no longer active")]
    Closed,
    /// A cancel answer with no cancel pending.
    #[error("no cancel was requested for this action")]
    NoCancelPending,
    /// Refused in the current state.
    #[error("{0}")]
    Conflict(String),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Result<T> = std::result::Result<T, FleetError>;

/// How a device proves who it is.
#[derive(Clone, Copy, Debug)]
pub enum Credential<'a> {
    /// The device's own secret token.
    DeviceToken(&'a str),
    /// The server's gateway token: it opens every device.
    GatewayToken(&'a str),
}

/// What a device should do next.
#[derive(Clone, Debug)]
pub enum Work {
    /// Nothing.
    None,
    /// Install this deployment.
    Deploy(Action),
    /// Stop this deployment and confirm.
    Cancel(Action),
}

/// What a report did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reported {
    /// The action moved.
    Moved(Transition),
    /// Accepted; nothing to record.
    Kept,
}

/// A downloadable artifact of a release.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The release.
    pub release: Release,
    /// Which of its artifacts.
    pub kind: ArtifactKind,
}

/// The artifacts of a release.
#[derive(Clone, Debug)]
pub enum ArtifactKind {
    /// The image, in the blob store.
    Image,
    /// The signed SUIT envelope.
    Envelope(Vec<u8>),
}

/// The artifact name of a release's envelope.
pub fn envelope_name(release: &Release) -> String {
    format!("{}.suit", release.filename)
}

/// Keep the end of a long device message, on a character boundary.
pub fn bound_message(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut start = message.len() - MAX_MESSAGE;
        while !message.is_char_boundary(start) {
            start += 1;
        }
        message = format!("…{}", &message[start..]);
    }
    message
}

/// The fleet layer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Fleet {
    store: Store,
    gateway_token_hash: Arc<str>,
}

impl Fleet {
    /// A fleet over `store`; `gateway_token_hash` is the SHA-256 (hex) of the gateway token.
    pub fn new(store: Store, gateway_token_hash: Arc<str>) -> Fleet {
        Fleet {
            store,
            gateway_token_hash,
        }
    }

    /// The store (for the management API's reads).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Who is asking: the device `controller_id`, if `credential` opens it. Notes that the
    /// device was seen.
    pub async fn authenticate(
        &self,
        controller_id: &str,
        credential: Credential<'_>,
    ) -> Result<Device> {
        let device = match credential {
            Credential::DeviceToken(token) => {
                let device = self
                    .store
                    .device_by_token_hash(&tokens::hash(token.trim()))
                    .await?
                    .ok_or(FleetError::Unauthorized("unknown device token"))?;
                if device.controller_id != controller_id {
                    return Err(FleetError::Forbidden(
                        "this token belongs to another device",
                    ));
                }
                device
            }
            Credential::GatewayToken(token) => {
                if !tokens::equal(
                    tokens::hash(token.trim()).as_bytes(),
                    self.gateway_token_hash.as_bytes(),
                ) {
                    return Err(FleetError::Unauthorized("unknown gateway token"));
                }
                self.store
                    .device(controller_id)
                    .await?
                    .ok_or(FleetError::NotFound("device"))?
            }
        };
        // `last_seen` is for people and filters: a write per second per device is plenty, and
        // skipping the rest keeps ranged downloads from queueing on the database.
        let now = crate::store::now_ms();
        if device.last_seen.is_none_or(|seen| now - seen >= 1000) {
            self.store.touch_device(device.id).await?;
        }
        Ok(device)
    }

    /// What the device should do next.
    pub async fn next_work(&self, device: &Device) -> Result<Work> {
        Ok(match self.store.active_action(device.id).await? {
            None => Work::None,
            Some(a) if a.status == ActionStatus::Canceling => Work::Cancel(a),
            Some(a) => Work::Deploy(a),
        })
    }

    /// The device's own action `action_id` (another device's is refused).
    pub async fn own_action(&self, device: &Device, action_id: i64) -> Result<Action> {
        match self.store.action(action_id).await? {
            Some(a) if a.device_id == device.id => Ok(a),
            Some(_) => Err(FleetError::Forbidden(
                "this action belongs to another device",
            )),
            None => Err(FleetError::NotFound("action")),
        }
    }

    /// The device fetched its deployment: pending becomes notified. Returns the action as it
    /// is now.
    pub async fn retrieve(&self, device: &Device, action_id: i64) -> Result<Action> {
        let action = self.own_action(device, action_id).await?;
        if action.status == ActionStatus::Pending {
            match self
                .report(device, action_id, DeviceReport::Retrieved, None)
                .await
            {
                Ok(_) | Err(FleetError::Closed) => {}
                Err(e) => return Err(e),
            }
            return self.own_action(device, action_id).await;
        }
        Ok(action)
    }

    /// The release of an action.
    pub async fn release_of(&self, action: &Action) -> Result<Release> {
        self.store
            .release_by_id(action.release_id)
            .await?
            .ok_or(FleetError::NotFound("release"))
    }

    /// The signed envelope of a release.
    pub async fn envelope(&self, release: &Release) -> Result<Vec<u8>> {
        self.store
            .envelope(release.id)
            .await?
            .ok_or(FleetError::NotFound("release"))
    }

    /// History of an action, oldest first.
    pub async fn history(&self, action: &Action) -> Result<Vec<crate::store::ActionEvent>> {
        Ok(self.store.action_events(action.id).await?)
    }

    /// The device's installed base: its latest succeeded action.
    pub async fn installed(&self, device: &Device) -> Result<Option<Action>> {
        Ok(self.store.installed_action(device.id).await?)
    }

    /// Whether the device has stored configuration data.
    pub async fn has_attributes(&self, device: &Device) -> Result<bool> {
        Ok(!self.store.config_data(device.id).await?.is_empty())
    }

    /// A device's report on its action, decided by [`rules::next`] and applied
    /// compare-and-set; `message` is kept (bounded) in the event, and as the reason of a final
    /// status.
    pub async fn report(
        &self,
        device: &Device,
        action_id: i64,
        report: DeviceReport,
        message: Option<String>,
    ) -> Result<Reported> {
        let mut action = self.own_action(device, action_id).await?;
        let message = message.map(bound_message);
        let failure_kind = match report {
            DeviceReport::Failed(kind) => Some(kind.as_str().to_string()),
            _ => None,
        };
        for _ in 0..MAX_REDECIDE {
            if !action.active {
                return Err(FleetError::Closed);
            }
            let (status, progress) = match rules::next(action.status, action.progress, report) {
                Decision::Keep => return Ok(Reported::Kept),
                Decision::Refuse(Refusal::Closed) => return Err(FleetError::Closed),
                Decision::Refuse(Refusal::NoCancelPending) => {
                    return Err(FleetError::NoCancelPending);
                }
                Decision::Move(s, p) => (s, p),
            };
            let message = match (report, &message) {
                (DeviceReport::CancelAccepted, None) => Some("cancelled by the device".into()),
                (DeviceReport::CancelRefused, m) => Some(format!(
                    "cancel refused by the device{}",
                    m.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
                )),
                (_, m) => m.clone(),
            };
            let t = Transition {
                status,
                progress,
                message,
                failure_kind: failure_kind.clone(),
                ..Transition::default()
            };
            match self
                .store
                .apply_transition(action.id, action.status, &t)
                .await?
            {
                Applied::Changed => {
                    tracing::info!(device = %device.controller_id, action = action.id, from = action.status.as_str(), to = status.as_str(), progress = ?progress, "report");
                    return Ok(Reported::Moved(t));
                }
                Applied::Unchanged => return Ok(Reported::Kept),
                Applied::NotActive => return Err(FleetError::Closed),
                Applied::Stale(now) => {
                    tracing::debug!(
                        action = action.id,
                        decided_from = action.status.as_str(),
                        now = now.as_str(),
                        "report decided on a stale status: deciding again"
                    );
                    action = self.own_action(device, action_id).await?;
                }
            }
        }
        Err(FleetError::Conflict(
            "the action kept changing while the report was applied; send it again".into(),
        ))
    }

    /// An operator cancels an action (see [`rules::cancel`]). Returns the action as it is now.
    pub async fn request_cancel(&self, action_id: i64) -> Result<Action> {
        for _ in 0..MAX_REDECIDE {
            let action = self
                .store
                .action(action_id)
                .await?
                .ok_or(FleetError::NotFound("action"))?;
            if !action.active {
                return Err(FleetError::Conflict(
                    "the deployment is already closed".into(),
                ));
            }
            let Some(to) = rules::cancel(action.status) else {
                return Ok(action);
            };
            let t = Transition {
                status: to,
                message: Some("cancel requested".into()),
                notify: true,
                ..Transition::default()
            };
            match self
                .store
                .apply_transition(action.id, action.status, &t)
                .await?
            {
                Applied::Changed | Applied::Unchanged => {
                    tracing::info!(action = action.id, to = to.as_str(), "cancel requested");
                    return self
                        .store
                        .action(action_id)
                        .await?
                        .ok_or(FleetError::NotFound("action"));
                }
                Applied::NotActive => {
                    return Err(FleetError::Conflict(
                        "the deployment is already closed".into(),
                    ));
                }
                Applied::Stale(_) => continue,
            }
        }
        Err(FleetError::Conflict(
            "the action kept changing; cancel again".into(),
        ))
    }

    /// Cancel every open action of a rollout, set-based (one statement per status). Returns
    /// how many actions were cancelled or asked to cancel.
    pub async fn cancel_rollout(&self, rollout_id: i64) -> Result<u64> {
        let mut n = 0;
        for from in ActionStatus::ALL {
            if let Some(to) = rules::cancel(from) {
                let t = Transition {
                    status: to,
                    message: Some("cancel requested".into()),
                    notify: true,
                    ..Transition::default()
                };
                n += self.store.bulk_transition(rollout_id, from, &t).await?;
            }
        }
        tracing::info!(
            rollout = rollout_id,
            actions = n,
            "rollout cancel requested"
        );
        Ok(n)
    }

    /// Assign `release` to devices under a new rollout described by `target`. Devices with an
    /// open deployment, or already on the release, are skipped (and say why).
    pub async fn deploy(
        &self,
        release: &Release,
        target: &str,
        device_ids: &[i64],
    ) -> Result<(i64, AssignOutcome)> {
        let rollout = self.store.create_rollout(release.id, target).await?;
        let outcome = self.store.assign(rollout, device_ids).await?;
        tracing::info!(rollout, release = %release.version, assigned = outcome.created.len(), skipped = outcome.skipped.len(), "deployment created");
        Ok((rollout, outcome))
    }

    /// Delete a device: its open deployment is cancelled (and counted), its history kept.
    pub async fn delete_device(&self, controller_id: &str) -> Result<bool> {
        let close = Transition {
            status: ActionStatus::Cancelled,
            message: Some("device deleted".into()),
            ..Transition::default()
        };
        let deleted = self.store.delete_device(controller_id, &close).await?;
        if deleted {
            tracing::info!(device = controller_id, "device deleted");
        }
        Ok(deleted)
    }

    /// The device's configuration data: bounded here for every front (keys 1–128 bytes,
    /// values at most 1024, at most [`MAX_ATTRIBUTES`] per report; the reported installed
    /// version at most the manifest's version length).
    pub async fn set_attributes(
        &self,
        device: &Device,
        mode: ConfigMode,
        data: &[(String, String)],
    ) -> Result<()> {
        if data.len() > MAX_ATTRIBUTES {
            return Err(FleetError::Invalid(format!(
                "at most {MAX_ATTRIBUTES} config entries"
            )));
        }
        for (k, v) in data {
            if k.is_empty() || k.len() > 128 || v.len() > 1024 {
                return Err(FleetError::Invalid(
                    "keys are 1-128 bytes, values at most 1024".into(),
                ));
            }
            if k == crate::store::INSTALLED_VERSION_KEY
                && v.len() > updraft_manifest::MAX_VERSION_LEN
            {
                return Err(FleetError::Invalid(format!(
                    "{k} is at most {} bytes",
                    updraft_manifest::MAX_VERSION_LEN
                )));
            }
        }
        self.store.update_config_data(device.id, mode, data).await?;
        Ok(())
    }

    /// An artifact of release `release_id` by name (`{filename}` the image,
    /// `{filename}.suit` the envelope), only if the release was assigned to the device.
    pub async fn open_artifact(
        &self,
        device: &Device,
        release_id: i64,
        name: &str,
    ) -> Result<Artifact> {
        let release = self
            .store
            .release_by_id(release_id)
            .await?
            .ok_or(FleetError::NotFound("software module"))?;
        if !self.store.device_has_release(device.id, release.id).await? {
            return Err(FleetError::Forbidden(
                "this software module is not assigned to the device",
            ));
        }
        let kind = if name == release.filename {
            ArtifactKind::Image
        } else if name == envelope_name(&release) {
            ArtifactKind::Envelope(self.envelope(&release).await?)
        } else {
            return Err(FleetError::NotFound("artifact"));
        };
        Ok(Artifact { release, kind })
    }

    /// Push fronts: claim up to `limit` devices whose work changed, for `lease_ms`.
    pub async fn claim_work_changes(
        &self,
        owner: &str,
        limit: i64,
        lease_ms: i64,
    ) -> Result<Vec<WorkChange>> {
        Ok(self
            .store
            .claim_work_changes(owner, limit, crate::store::now_ms(), lease_ms)
            .await?)
    }

    /// Push fronts: the change was delivered.
    pub async fn ack_work_change(&self, change: WorkChange) -> Result<()> {
        Ok(self.store.ack_work_change(change).await?)
    }
}

#[cfg(test)]
mod tests;
