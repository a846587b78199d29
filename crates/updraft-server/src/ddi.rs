//! The hawkBit DDI v1 device API: `/{tenant}/controller/v1/{controllerId}/...`.
//!
//! This module is HTTP and JSON only: it translates requests into calls of the [`crate::fleet`]
//! layer, which owns every rule (who the device is, what it gets next, which status a report
//! leads to, which artifacts it may fetch).
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

use crate::fleet::{
    ArtifactKind, Credential, DeviceReport, FailureKind, FleetError, Work, envelope_name,
};
use crate::http::{ApiError, Json, Path};
use crate::server::AppState;
use crate::store::{Action, ActionStatus, ConfigMode, Device};

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

/// Authenticate the request for `controller_id` of `tenant` (the fleet layer decides).
async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    tenant: &str,
    controller_id: &str,
) -> Result<Device, ApiError> {
    // hawkBit compares tenants case-insensitively (swupdate's examples use `default`).
    if !tenant.eq_ignore_ascii_case(&state.config.tenant) {
        return Err(ApiError::not_found("tenant"));
    }
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: TargetToken <token>`"))?;
    let credential = if let Some(token) = value.strip_prefix("TargetToken ") {
        Credential::DeviceToken(token)
    } else if let Some(token) = value.strip_prefix("GatewayToken ") {
        Credential::GatewayToken(token)
    } else {
        return Err(ApiError::unauthorized(
            "use `Authorization: TargetToken <token>` or `GatewayToken <token>`",
        ));
    };
    Ok(state.fleet.authenticate(controller_id, credential).await?)
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
    // DDI clients parse `HH:MM:SS`: never past 23:59:59.
    let s = d.as_secs().min(86_399);
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
    match state.fleet.next_work(&device).await? {
        Work::None => {}
        Work::Cancel(action) => {
            links.insert(
                "cancelAction".into(),
                json!({"href": format!("{base}/cancelAction/{}", action.id)}),
            );
        }
        Work::Deploy(action) => {
            links.insert(
                "deploymentBase".into(),
                json!({"href": format!("{base}/deploymentBase/{}?c={}", action.id, action.updated_at)}),
            );
        }
    }
    if !state.fleet.has_attributes(&device).await? {
        links.insert(
            "configData".into(),
            json!({"href": format!("{base}/configData")}),
        );
    }
    if let Some(installed) = state.fleet.installed(&device).await? {
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
    let release = state.fleet.release_of(action).await?;
    let envelope = state.fleet.envelope(&release).await?;
    let base = base_url(state, headers, device);
    let dir = format!("{base}/softwaremodules/{}/artifacts", release.id);
    let suit_name = envelope_name(&release);
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
        .fleet
        .history(action)
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
    let action = state.fleet.retrieve(&device, action_id).await?;
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
    let action = state.fleet.own_action(&device, action_id).await?;
    if action.status != ActionStatus::Succeeded {
        return Err(ApiError::not_found("installed action"));
    }
    Ok(Json(
        deployment_json(&state, &headers, &device, &action).await?,
    ))
}

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
    /// Absent, `null` or a list.
    #[serde(default)]
    details: Option<Vec<String>>,
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
    /// Any shape, as hawkBit does not check it: `{"cnt": N, "of": M}`, `{"percentage": N}`,
    /// `{}`, `cnt` without `of`; a percentage is taken where one can be read.
    #[serde(default)]
    progress: Option<Value>,
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

    /// `code N: details`, as the device sent them (the fleet layer bounds the length).
    fn message(&self) -> Option<String> {
        let details = self
            .status
            .details
            .as_deref()
            .unwrap_or_default()
            .join("; ");
        match (self.status.code, details.is_empty()) {
            (Some(code), true) => Some(format!("code {code}")),
            (Some(code), false) => Some(format!("code {code}: {details}")),
            (None, false) => Some(details),
            (None, true) => None,
        }
    }

    fn percent(&self) -> Option<u8> {
        let p = self.status.result.progress.as_ref()?;
        if let Some(pct) = p.get("percentage").and_then(Value::as_f64) {
            return (pct.is_finite() && pct >= 0.0).then(|| pct.min(100.0) as u8);
        }
        let cnt = p.get("cnt").and_then(Value::as_u64)?;
        let of = p.get("of").and_then(Value::as_u64).filter(|&of| of > 0)?;
        Some(u8::try_from(cnt.min(of).saturating_mul(100) / of).unwrap_or(100))
    }

    /// The protocol-neutral report a deployment feedback carries.
    fn report(&self) -> Result<DeviceReport, ApiError> {
        // As hawkBit reads it: `closed` ends the action (`none` counts as success); a failure
        // reported on a step that is not `closed` keeps the action running.
        Ok(match (self.status.execution, self.status.result.finished) {
            (Execution::Closed, Finished::Success | Finished::None) => DeviceReport::Succeeded,
            (Execution::Closed, Finished::Failure) => {
                DeviceReport::Failed(FailureKind::Unspecified)
            }
            (Execution::Rejected, _) => DeviceReport::Rejected,
            (Execution::Canceled, _) => DeviceReport::Cancelled,
            (Execution::Scheduled, _) => DeviceReport::Deferred,
            (Execution::Downloaded, _) => DeviceReport::Downloaded,
            (Execution::Download | Execution::Resumed, _) => DeviceReport::Downloading {
                percent: self.percent(),
            },
            (Execution::Proceeding, _) => match self.percent() {
                Some(p) => DeviceReport::Downloading { percent: Some(p) },
                None => DeviceReport::Working,
            },
        })
    }

    /// The report a cancel feedback carries; `None` for an interim one (nothing to record).
    fn cancel_report(&self) -> Option<DeviceReport> {
        match (self.status.execution, self.status.result.finished) {
            (Execution::Closed | Execution::Canceled, Finished::Success | Finished::None) => {
                Some(DeviceReport::CancelAccepted)
            }
            (Execution::Rejected, _) | (_, Finished::Failure) => Some(DeviceReport::CancelRefused),
            _ => None,
        }
    }
}

async fn deployment_feedback(
    State(state): State<AppState>,
    Path((tenant, controller_id, action_id)): Path<(String, String, i64)>,
    headers: HeaderMap,
    Json(feedback): Json<Feedback>,
) -> Result<StatusCode, ApiError> {
    let device = authorize(&state, &headers, &tenant, &controller_id).await?;
    let result = async {
        feedback.check_id(action_id)?;
        let report = feedback.report()?;
        state
            .fleet
            .report(&device, action_id, report, feedback.message())
            .await?;
        Ok::<_, ApiError>(())
    }
    .await;
    refused_logged(&device, action_id, result)
}

/// Every refused report is logged with its reason: a device that looks stuck can be explained
/// from the server log.
fn refused_logged(
    device: &Device,
    action_id: i64,
    result: Result<(), ApiError>,
) -> Result<StatusCode, ApiError> {
    match result {
        Ok(()) => Ok(StatusCode::OK),
        Err(e) => {
            tracing::warn!(device = %device.controller_id, action = action_id, status = e.status.as_u16(), code = e.code, reason = %e.message, "feedback refused");
            Err(e)
        }
    }
}

async fn cancel_action(
    State(state): State<AppState>,
    Path((tenant, controller_id, action_id)): Path<(String, String, i64)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let device = authorize(&state, &headers, &tenant, &controller_id).await?;
    let action = state.fleet.own_action(&device, action_id).await?;
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
    let result = async {
        feedback.check_id(action_id)?;
        let Some(report) = feedback.cancel_report() else {
            // An interim answer: check it is about a cancel that exists, record nothing.
            let action = state.fleet.own_action(&device, action_id).await?;
            if !action.active {
                return Err(FleetError::Closed.into());
            }
            if action.status != ActionStatus::Canceling {
                return Err(FleetError::NoCancelPending.into());
            }
            return Ok(());
        };
        state
            .fleet
            .report(&device, action_id, report, feedback.message())
            .await?;
        Ok::<_, ApiError>(())
    }
    .await;
    refused_logged(&device, action_id, result)
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
    if req.data.len() > crate::fleet::MAX_ATTRIBUTES {
        return Err(ApiError::bad_request(
            "too_large",
            format!("at most {} config entries", crate::fleet::MAX_ATTRIBUTES),
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
        data.push((k, v));
    }
    state
        .fleet
        .set_attributes(&device, req.mode.unwrap_or_default(), &data)
        .await
        .map_err(|e| match e {
            FleetError::Invalid(m) => ApiError::bad_request("bad_config", m),
            other => other.into(),
        })?;
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
    let (name, md5sum) = match filename.strip_suffix(".MD5SUM") {
        Some(n) => (n, true),
        None => (filename.as_str(), false),
    };
    let artifact = state.fleet.open_artifact(&device, module_id, name).await?;
    let release = artifact.release;
    let envelope = match artifact.kind {
        ArtifactKind::Image => None,
        ArtifactKind::Envelope(e) => Some(e),
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
    // The name is a safe name (checked at upload), so it needs no quoting beyond the quotes.
    head.insert(
        header::CONTENT_DISPOSITION,
        header_value(&format!("attachment; filename=\"{name}\""))?,
    );
    let modified = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(release.created_at).unwrap_or(0));
    head.insert(
        header::LAST_MODIFIED,
        header_value(&httpdate::fmt_http_date(modified))?,
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
