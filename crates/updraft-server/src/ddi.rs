//! The hawkBit DDI v1 device API: `/{tenant}/controller/v1/{controllerId}/...`.
//!
//! Auth: `Authorization: TargetToken <device token>` opens that device's resources only (403 for
//! any other), `GatewayToken <token>` (from `<data-dir>/gateway-token`) opens every device.
//! GETs are idempotent (the only change they make is pending → notified when the device first
//! fetches its deployment). Feedback is idempotent: a repeated report records nothing, and a
//! report for a closed action is answered 410 Gone.
//!
//! Each deployment lists two artifacts: the signed SUIT envelope `{filename}.suit` first, so a
//! device can verify before it writes, then the image `{filename}`; both serve Range (206/416),
//! ETag, If-Range and `.MD5SUM`.

use std::ops::Range;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use md5::Md5;
use serde::Deserialize;
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::http::{ApiError, Json, Path};
use crate::server::AppState;
use crate::store::{Action, ActionStatus, Applied, ConfigMode, Device, Release, Transition};
use crate::tokens;

/// Routes of the DDI API.
pub fn router(_state: AppState) -> Router<AppState> {
    Router::new()
        .route("/{tenant}/controller/v1/{controller_id}", get(poll))
        .route(
            "/{tenant}/controller/v1/{controller_id}/deploymentBase/{action_id}",
            get(deployment_base),
        )
        .route(
            "/{tenant}/controller/v1/{controller_id}/deploymentBase/{action_id}/feedback",
            post(deployment_feedback),
        )
        .route(
            "/{tenant}/controller/v1/{controller_id}/cancelAction/{action_id}",
            get(cancel_action),
        )
        .route(
            "/{tenant}/controller/v1/{controller_id}/cancelAction/{action_id}/feedback",
            post(cancel_feedback),
        )
        .route(
            "/{tenant}/controller/v1/{controller_id}/configData",
            axum::routing::put(config_data),
        )
        .route(
            "/{tenant}/controller/v1/{controller_id}/installedBase/{action_id}",
            get(installed_base),
        )
        .route(
            "/{tenant}/controller/v1/{controller_id}/softwaremodules/{module_id}/artifacts/{filename}",
            get(artifact),
        )
}

/// Authenticate the request for `controller_id` of `tenant`, and note that the device was seen.
async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    tenant: &str,
    controller_id: &str,
) -> Result<Device, ApiError> {
    if tenant != state.config.tenant {
        return Err(ApiError::not_found("tenant"));
    }
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: TargetToken <token>`"))?;
    let device = if let Some(token) = value.strip_prefix("TargetToken ") {
        let device = state
            .store
            .device_by_token_hash(&tokens::hash(token.trim()))
            .await?
            .ok_or_else(|| ApiError::unauthorized("unknown target token"))?;
        if device.controller_id != controller_id {
            return Err(ApiError::forbidden("this token belongs to another device"));
        }
        device
    } else if let Some(token) = value.strip_prefix("GatewayToken ") {
        if !tokens::equal(
            tokens::hash(token.trim()).as_bytes(),
            state.gateway_token_hash.as_bytes(),
        ) {
            return Err(ApiError::unauthorized("unknown gateway token"));
        }
        state
            .store
            .device(controller_id)
            .await?
            .ok_or_else(|| ApiError::not_found("device"))?
    } else {
        return Err(ApiError::unauthorized(
            "use `Authorization: TargetToken <token>` or `GatewayToken <token>`",
        ));
    };
    // `last_seen` is for people and filters: a write per second per device is plenty, and
    // skipping the rest keeps ranged downloads from queueing on the database.
    let now = crate::store::now_ms();
    if device.last_seen.is_none_or(|seen| now - seen >= 1000) {
        state.store.touch_device(device.id).await?;
    }
    Ok(device)
}

/// `http://host` as the device reached us, for links.
fn origin(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
        })
        .map(str::to_string)
        .unwrap_or_else(|| state.config.http.to_string());
    format!("http://{host}")
}

fn base_url(state: &AppState, headers: &HeaderMap, device: &Device) -> String {
    format!(
        "{}/{}/controller/v1/{}",
        origin(state, headers),
        state.config.tenant,
        device.controller_id
    )
}

fn sleep_string(d: std::time::Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

async fn poll(
    State(state): State<AppState>,
    Path((tenant, controller_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let device = authorize(&state, &headers, &tenant, &controller_id).await?;
    let base = base_url(&state, &headers, &device);
    let mut links = serde_json::Map::new();
    if let Some(action) = state.store.active_action(device.id).await? {
        if action.status == ActionStatus::Canceling {
            links.insert(
                "cancelAction".into(),
                json!({"href": format!("{base}/cancelAction/{}", action.id)}),
            );
        } else {
            links.insert(
                "deploymentBase".into(),
                json!({"href": format!("{base}/deploymentBase/{}?c={}", action.id, action.updated_at)}),
            );
        }
    }
    if state.store.config_data(device.id).await?.is_empty() {
        links.insert(
            "configData".into(),
            json!({"href": format!("{base}/configData")}),
        );
    }
    if let Some(installed) = state.store.installed_action(device.id).await? {
        links.insert(
            "installedBase".into(),
            json!({"href": format!("{base}/installedBase/{}", installed.id)}),
        );
    }
    Ok(Json(json!({
        "config": {"polling": {"sleep": sleep_string(state.config.poll_interval)}},
        "_links": links,
    })))
}

/// The device's own action `action_id` (404 if none, 403 if another device's).
async fn own_action(state: &AppState, device: &Device, action_id: i64) -> Result<Action, ApiError> {
    let action = state
        .store
        .action(action_id)
        .await?
        .ok_or_else(|| ApiError::not_found("action"))?;
    if action.device_id != device.id {
        return Err(ApiError::forbidden("this action belongs to another device"));
    }
    Ok(action)
}

fn artifact_json(href: &str, name: &str, size: u64, sha256: &str, sha1: &str, md5: &str) -> Value {
    json!({
        "filename": name,
        "size": size,
        "hashes": {"sha1": sha1, "md5": md5, "sha256": sha256},
        "_links": {
            "download": {"href": href},
            "download-http": {"href": href},
            "md5sum": {"href": format!("{href}.MD5SUM")},
            "md5sum-http": {"href": format!("{href}.MD5SUM")},
        }
    })
}

async fn deployment_json(
    state: &AppState,
    headers: &HeaderMap,
    device: &Device,
    action: &Action,
) -> Result<Value, ApiError> {
    let release = state
        .store
        .release_by_id(action.release_id)
        .await?
        .ok_or_else(|| ApiError::not_found("release"))?;
    let envelope = state
        .store
        .envelope(release.id)
        .await?
        .ok_or_else(|| ApiError::not_found("release"))?;
    let base = base_url(state, headers, device);
    let dir = format!("{base}/softwaremodules/{}/artifacts", release.id);
    let suit_name = format!("{}.suit", release.filename);
    let image_size = u64::try_from(release.image_size).unwrap_or(0);
    let artifacts = vec![
        artifact_json(
            &format!("{dir}/{suit_name}"),
            &suit_name,
            envelope.len() as u64,
            &hex::encode(Sha256::digest(&envelope)),
            &hex::encode(Sha1::digest(&envelope)),
            &hex::encode(Md5::digest(&envelope)),
        ),
        artifact_json(
            &format!("{dir}/{}", release.filename),
            &release.filename,
            image_size,
            &release.image_sha256,
            &release.image_sha1,
            &release.image_md5,
        ),
    ];
    let history_status = if action.active { "RUNNING" } else { "FINISHED" };
    let messages: Vec<String> = state
        .store
        .action_events(action.id)
        .await?
        .into_iter()
        .map(|e| match (e.progress, e.message) {
            (Some(p), _) => format!("{} {p}%", e.status.as_str()),
            (None, Some(m)) => format!("{}: {m}", e.status.as_str()),
            (None, None) => e.status.as_str().to_string(),
        })
        .collect();
    Ok(json!({
        "id": action.id.to_string(),
        "deployment": {
            "download": "forced",
            "update": "forced",
            "chunks": [{
                "part": "os",
                "version": release.version,
                "name": "firmware",
                "metadata": [
                    {"key": "updraft.manifest", "value": suit_name},
                    {"key": "updraft.sequence", "value": release.sequence.to_string()},
                ],
                "artifacts": artifacts,
            }],
        },
        "actionHistory": {"status": history_status, "messages": messages},
    }))
}

async fn deployment_base(
    State(state): State<AppState>,
    Path((tenant, controller_id, action_id)): Path<(String, String, i64)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let device = authorize(&state, &headers, &tenant, &controller_id).await?;
    let action = own_action(&state, &device, action_id).await?;
    if action.status == ActionStatus::Pending {
        let t = Transition {
            status: ActionStatus::Notified,
            progress: None,
            message: None,
        };
        state.store.apply_transition(action.id, &t).await?;
    }
    Ok(Json(
        deployment_json(&state, &headers, &device, &action).await?,
    ))
}

async fn installed_base(
    State(state): State<AppState>,
    Path((tenant, controller_id, action_id)): Path<(String, String, i64)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let device = authorize(&state, &headers, &tenant, &controller_id).await?;
    let action = own_action(&state, &device, action_id).await?;
    if action.status != ActionStatus::Succeeded {
        return Err(ApiError::not_found("installed action"));
    }
    Ok(Json(
        deployment_json(&state, &headers, &device, &action).await?,
    ))
}

/// Longest feedback message kept in an event (the end of longer ones is kept).
const MAX_MESSAGE: usize = 2048;

/// The action id in feedback: hawkBit clients send it as a string or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum FeedbackId {
    Number(i64),
    Text(String),
}

/// DDI feedback (tolerant: unknown fields are ignored, `time` may be absent or in any format).
#[derive(Deserialize)]
struct Feedback {
    #[serde(default)]
    id: Option<FeedbackId>,
    #[serde(default)]
    #[allow(dead_code)]
    time: Option<Value>,
    status: FeedbackStatus,
}

#[derive(Deserialize)]
struct FeedbackStatus {
    execution: Execution,
    result: FeedbackResult,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    details: Vec<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Execution {
    Proceeding,
    Scheduled,
    Resumed,
    Download,
    Downloaded,
    Closed,
    Canceled,
    Rejected,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Finished {
    Success,
    Failure,
    None,
}

#[derive(Deserialize)]
struct FeedbackResult {
    finished: Finished,
    #[serde(default)]
    progress: Option<Progress>,
}

#[derive(Deserialize)]
struct Progress {
    cnt: u64,
    #[serde(default)]
    of: Option<u64>,
}

impl Feedback {
    fn check_id(&self, action_id: i64) -> Result<(), ApiError> {
        let matches = match &self.id {
            None => true,
            Some(FeedbackId::Number(n)) => *n == action_id,
            Some(FeedbackId::Text(s)) => s.is_empty() || s.trim() == action_id.to_string(),
        };
        if matches {
            Ok(())
        } else {
            Err(ApiError::bad_request(
                "id_mismatch",
                "the feedback `id` is not the action id of the URL",
            ))
        }
    }

    fn message(&self) -> Option<String> {
        let details = self.status.details.join("; ");
        let mut message = match (self.status.code, details.is_empty()) {
            (Some(code), true) => format!("code {code}"),
            (Some(code), false) => format!("code {code}: {details}"),
            (None, false) => details,
            (None, true) => return None,
        };
        // Devices send logs as details (swupdate sends its whole log): keep the end, bounded.
        if message.len() > MAX_MESSAGE {
            let mut start = message.len() - MAX_MESSAGE;
            while !message.is_char_boundary(start) {
                start += 1;
            }
            message = format!("…{}", &message[start..]);
        }
        Some(message)
    }

    fn percent(&self) -> Option<i64> {
        let p = self.status.result.progress.as_ref()?;
        let of = p.of.filter(|&of| of > 0)?;
        Some(i64::try_from(p.cnt.min(of).saturating_mul(100) / of).unwrap_or(100))
    }

    /// The status a deployment feedback moves the action to; `None` keeps it.
    fn transition(&self, current: ActionStatus) -> Result<Option<Transition>, ApiError> {
        use ActionStatus as S;
        let message = self.message();
        let finished = self.status.result.finished;
        let status = match (self.status.execution, finished) {
            (Execution::Closed, Finished::Success) => S::Succeeded,
            (Execution::Closed, Finished::None) => {
                return Err(ApiError::bad_request(
                    "bad_feedback",
                    "`closed` needs `finished` success or failure",
                ));
            }
            (_, Finished::Failure) => S::Failed,
            (Execution::Rejected, _) => S::Rejected,
            (Execution::Canceled, _) => S::Cancelled,
            (Execution::Scheduled, _) => S::Deferred,
            (Execution::Downloaded, _) => S::Downloaded,
            (Execution::Download | Execution::Resumed, _) => S::Downloading,
            (Execution::Proceeding, _) => {
                if self.percent().is_some() {
                    S::Downloading
                } else if matches!(current, S::Downloaded | S::Updating) {
                    S::Updating
                } else if current == S::Canceling {
                    return Ok(None);
                } else {
                    S::Downloading
                }
            }
        };
        let progress = if status == S::Downloading {
            self.percent()
        } else {
            None
        };
        // A device still working while a cancel is pending keeps the cancel pending, unless it
        // reports an end.
        if current == S::Canceling && !status.is_final() {
            return Ok(None);
        }
        Ok(Some(Transition {
            status,
            progress,
            message,
        }))
    }
}

fn feedback_answer(applied: Applied) -> Result<StatusCode, ApiError> {
    match applied {
        Applied::Changed | Applied::Unchanged => Ok(StatusCode::OK),
        Applied::NotActive => Err(ApiError::new(
            StatusCode::GONE,
            "gone",
            "the action is no longer active",
        )),
    }
}

async fn deployment_feedback(
    State(state): State<AppState>,
    Path((tenant, controller_id, action_id)): Path<(String, String, i64)>,
    headers: HeaderMap,
    Json(feedback): Json<Feedback>,
) -> Result<StatusCode, ApiError> {
    let device = authorize(&state, &headers, &tenant, &controller_id).await?;
    let action = own_action(&state, &device, action_id).await?;
    feedback.check_id(action_id)?;
    if !action.active {
        return feedback_answer(Applied::NotActive);
    }
    let Some(t) = feedback.transition(action.status)? else {
        return Ok(StatusCode::OK);
    };
    let applied = state.store.apply_transition(action.id, &t).await?;
    tracing::info!(device = %device.controller_id, action = action.id, status = t.status.as_str(), progress = ?t.progress, ?applied, "feedback");
    feedback_answer(applied)
}

async fn cancel_action(
    State(state): State<AppState>,
    Path((tenant, controller_id, action_id)): Path<(String, String, i64)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let device = authorize(&state, &headers, &tenant, &controller_id).await?;
    let action = own_action(&state, &device, action_id).await?;
    if !matches!(
        action.status,
        ActionStatus::Canceling | ActionStatus::Cancelled
    ) {
        return Err(ApiError::not_found("cancel request for this action"));
    }
    Ok(Json(json!({
        "id": action.id.to_string(),
        "cancelAction": {"stopId": action.id.to_string()},
    })))
}

async fn cancel_feedback(
    State(state): State<AppState>,
    Path((tenant, controller_id, action_id)): Path<(String, String, i64)>,
    headers: HeaderMap,
    Json(feedback): Json<Feedback>,
) -> Result<StatusCode, ApiError> {
    let device = authorize(&state, &headers, &tenant, &controller_id).await?;
    let action = own_action(&state, &device, action_id).await?;
    feedback.check_id(action_id)?;
    if !action.active {
        return feedback_answer(Applied::NotActive);
    }
    if action.status != ActionStatus::Canceling {
        return Err(ApiError::conflict(
            "no cancel was requested for this action",
        ));
    }
    let t = match (feedback.status.execution, feedback.status.result.finished) {
        (Execution::Closed | Execution::Canceled, Finished::Success | Finished::None) => {
            Transition {
                status: ActionStatus::Cancelled,
                progress: None,
                message: feedback
                    .message()
                    .or_else(|| Some("cancelled by the device".into())),
            }
        }
        (Execution::Rejected, _) | (_, Finished::Failure) => Transition {
            // The device cannot stop now: the deployment goes on.
            status: ActionStatus::Notified,
            progress: None,
            message: Some(format!(
                "cancel refused by the device{}",
                feedback
                    .message()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )),
        },
        _ => return Ok(StatusCode::OK),
    };
    feedback_answer(state.store.apply_transition(action.id, &t).await?)
}

#[derive(Deserialize)]
struct ConfigData {
    #[serde(default)]
    mode: Option<ConfigMode>,
    data: serde_json::Map<String, Value>,
}

async fn config_data(
    State(state): State<AppState>,
    Path((tenant, controller_id)): Path<(String, String)>,
    headers: HeaderMap,
    Json(req): Json<ConfigData>,
) -> Result<StatusCode, ApiError> {
    let device = authorize(&state, &headers, &tenant, &controller_id).await?;
    if req.data.len() > 256 {
        return Err(ApiError::bad_request(
            "too_large",
            "at most 256 config entries",
        ));
    }
    let mut data = Vec::with_capacity(req.data.len());
    for (k, v) in req.data {
        let v = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(ApiError::bad_request(
                    "bad_config",
                    format!("value of {k:?} must be a string"),
                ));
            }
        };
        if k.is_empty() || k.len() > 128 || v.len() > 1024 {
            return Err(ApiError::bad_request(
                "bad_config",
                "keys are 1-128 bytes, values at most 1024",
            ));
        }
        if k == crate::store::INSTALLED_VERSION_KEY && v.len() > updraft_manifest::MAX_VERSION_LEN {
            return Err(ApiError::bad_request(
                "bad_config",
                format!("{k} is at most {} bytes", updraft_manifest::MAX_VERSION_LEN),
            ));
        }
        data.push((k, v));
    }
    state
        .store
        .update_config_data(device.id, req.mode.unwrap_or_default(), &data)
        .await?;
    Ok(StatusCode::OK)
}

/// A parsed `Range` header against a resource of known size.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No (usable) range: send everything.
    Full,
    /// Send these bytes (206).
    Partial(Range<u64>),
    /// Answer 416.
    Unsatisfiable,
}

/// Parse a `Range` header value for a resource of `size` bytes. One range is served; a list of
/// ranges gets the whole resource; malformed or overflowing numbers are unsatisfiable.
pub fn parse_range(value: &str, size: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Unsatisfiable;
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match num(suffix) {
            Some(n) if n > 0 && size > 0 => RangeRequest::Partial(size.saturating_sub(n)..size),
            _ => RangeRequest::Unsatisfiable,
        },
        (start, "") => match num(start) {
            Some(s) if s < size => RangeRequest::Partial(s..size),
            _ => RangeRequest::Unsatisfiable,
        },
        (start, end) => match (num(start), num(end)) {
            (Some(s), Some(e)) if s <= e && s < size => {
                RangeRequest::Partial(s..e.saturating_add(1).min(size))
            }
            _ => RangeRequest::Unsatisfiable,
        },
    }
}

fn header_value(s: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(s).map_err(ApiError::internal)
}

/// Decide full/partial/416 from Range and If-Range, and build the response head.
fn ranged_head(
    headers: &HeaderMap,
    size: u64,
    etag: &str,
) -> Result<(StatusCode, Option<Range<u64>>, HeaderMap), ApiError> {
    let mut out = HeaderMap::new();
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(header::ETAG, header_value(etag)?);
    let if_range_ok = match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(v) => v.trim() == etag,
    };
    let range = match headers.get(header::RANGE) {
        Some(v) if if_range_ok => match v.to_str() {
            Ok(v) => parse_range(v, size),
            Err(_) => RangeRequest::Unsatisfiable,
        },
        _ => RangeRequest::Full,
    };
    match range {
        RangeRequest::Full => {
            out.insert(header::CONTENT_LENGTH, header_value(&size.to_string())?);
            Ok((StatusCode::OK, None, out))
        }
        RangeRequest::Partial(r) => {
            out.insert(
                header::CONTENT_RANGE,
                header_value(&format!(
                    "bytes {}-{}/{size}",
                    r.start,
                    r.end.saturating_sub(1)
                ))?,
            );
            out.insert(
                header::CONTENT_LENGTH,
                header_value(&(r.end - r.start).to_string())?,
            );
            Ok((StatusCode::PARTIAL_CONTENT, Some(r), out))
        }
        RangeRequest::Unsatisfiable => {
            out.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{size}"))?,
            );
            Ok((StatusCode::RANGE_NOT_SATISFIABLE, None, out))
        }
    }
}

async fn artifact(
    State(state): State<AppState>,
    Path((tenant, controller_id, module_id, filename)): Path<(String, String, i64, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let device = authorize(&state, &headers, &tenant, &controller_id).await?;
    let release: Release = state
        .store
        .release_by_id(module_id)
        .await?
        .ok_or_else(|| ApiError::not_found("software module"))?;
    if !state
        .store
        .device_has_release(device.id, release.id)
        .await?
    {
        return Err(ApiError::forbidden(
            "this software module is not assigned to the device",
        ));
    }
    let suit_name = format!("{}.suit", release.filename);
    let (name, md5sum) = match filename.strip_suffix(".MD5SUM") {
        Some(n) => (n, true),
        None => (filename.as_str(), false),
    };
    let envelope = if name == release.filename {
        None
    } else if name == suit_name {
        Some(
            state
                .store
                .envelope(release.id)
                .await?
                .ok_or_else(|| ApiError::not_found("artifact"))?,
        )
    } else {
        return Err(ApiError::not_found("artifact"));
    };
    if md5sum {
        let md5 = match &envelope {
            Some(e) => hex::encode(Md5::digest(e)),
            None => release.image_md5.clone(),
        };
        return Ok((
            [(header::CONTENT_TYPE, "text/plain")],
            format!("{md5}  {name}\n"),
        )
            .into_response());
    }
    let (size, etag) = match &envelope {
        Some(e) => (
            e.len() as u64,
            format!("\"{}\"", hex::encode(Sha256::digest(e))),
        ),
        None => (
            u64::try_from(release.image_size).unwrap_or(0),
            format!("\"{}\"", release.image_sha256),
        ),
    };
    let (status, range, mut head) = ranged_head(&headers, size, &etag)?;
    head.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        head.remove(header::CONTENT_TYPE);
        let error = ApiError::new(
            status,
            "range_not_satisfiable",
            format!("the range is not satisfiable for {size} bytes"),
        );
        return Ok((head, error).into_response());
    }
    let served = range.clone().unwrap_or(0..size);
    tracing::debug!(device = %device.controller_id, artifact = %name, start = served.start, end = served.end, "artifact download");
    let body = match envelope {
        Some(e) => {
            let r = range.unwrap_or(0..size);
            let start = usize::try_from(r.start).unwrap_or(usize::MAX);
            let end = usize::try_from(r.end).unwrap_or(usize::MAX);
            Body::from(e.get(start..end).map(<[u8]>::to_vec).unwrap_or_default())
        }
        None if size == 0 => Body::empty(),
        None => Body::from_stream(
            state
                .blobs
                .get(&release.blob_key, Some(range.unwrap_or(0..size)))
                .await?,
        ),
    };
    Ok((status, head, body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_like_rfc_9110() {
        use RangeRequest::*;
        assert_eq!(parse_range("bytes=0-9", 100), Partial(0..10));
        assert_eq!(parse_range("bytes=90-", 100), Partial(90..100));
        assert_eq!(parse_range("bytes=-10", 100), Partial(90..100));
        assert_eq!(parse_range("bytes=-1000", 100), Partial(0..100));
        assert_eq!(parse_range("bytes=50-1000", 100), Partial(50..100));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=9-3", 100), Unsatisfiable);
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 100),
            Unsatisfiable
        );
        assert_eq!(
            parse_range("bytes=0-99999999999999999999999", 100),
            Unsatisfiable
        );
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=+1-2", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=abc", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Full);
        assert_eq!(parse_range("items=0-1", 100), Full);
    }
}
