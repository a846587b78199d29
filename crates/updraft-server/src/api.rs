//! The management API: JSON under `/api/v1`, `Authorization: Bearer <admin token>`.
//!
//! Devices, trusted keys, releases (streamed multipart upload, verified against the trusted keys
//! before anything is kept), deployments (rollouts of a release to devices or a tag, with
//! per-device status and history) and the OpenAPI document (`openapi.json`, no auth).
//! Every refusal is a JSON 4xx and changes nothing.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};

use crate::blobs::StagedBlob;
use crate::campaign::Command;
use crate::fleet::campaigns::{CampaignView, NewCampaign};
use crate::http::{ApiError, Json, Path, Query, is_safe_name};
use crate::keys;
use crate::server::AppState;
use crate::store::SKIP_INSTALLED;
use crate::store::{
    Action, ActionEvent, ActionStatus, Device, DeviceFilter, NewRelease, Release, Rollout, Skip,
};
use crate::tokens;

/// The OpenAPI document served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Largest JSON body of the management API.
const JSON_LIMIT: usize = 64 * 1024;

/// Routes of the management API.
pub fn router(state: AppState) -> Router<AppState> {
    let upload = Router::new()
        .route("/api/v1/releases", post(create_release))
        // The upload limit is enforced while streaming, per part.
        .layer(DefaultBodyLimit::disable());
    let api = Router::new()
        .route("/api/v1/devices", post(create_device).get(list_devices))
        .route(
            "/api/v1/devices/{controller_id}",
            get(get_device).delete(delete_device),
        )
        .route("/api/v1/devices/{controller_id}/tags", put(set_tags))
        .route(
            "/api/v1/devices/{controller_id}/deployments",
            get(device_deployments),
        )
        .route("/api/v1/keys", post(add_key).get(list_keys))
        .route("/api/v1/releases", get(list_releases))
        .route("/api/v1/releases/{version}", get(get_release))
        .route(
            "/api/v1/deployments",
            post(create_deployment).get(list_rollouts),
        )
        .route("/api/v1/deployments/{id}", get(get_rollout))
        .route("/api/v1/deployments/{id}/cancel", post(cancel_rollout))
        .route(
            "/api/v1/campaigns",
            post(create_campaign).get(list_campaigns),
        )
        .route("/api/v1/campaigns/{id}", get(get_campaign))
        .route("/api/v1/campaigns/{id}/{command}", post(campaign_command))
        .route("/api/v1/actions/{id}", get(get_action))
        .route("/api/v1/actions/{id}/cancel", post(cancel_action))
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
        .merge(upload)
        .layer(middleware::from_fn_with_state(state, require_admin));
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .merge(api)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token)
            if tokens::equal(
                tokens::hash(token.trim()).as_bytes(),
                state.admin_token_hash.as_bytes(),
            ) =>
        {
            next.run(request).await
        }
        Some(_) => ApiError::unauthorized("invalid admin token").into_response(),
        None => ApiError::unauthorized(
            "missing `Authorization: Bearer <admin token>` (the token is in <data-dir>/admin-token)",
        )
        .into_response(),
    }
}

fn check_name(what: &'static str, s: &str) -> Result<(), ApiError> {
    if is_safe_name(s) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_name",
            format!(
                "{what} must be 1-128 characters of A-Z a-z 0-9 . _ + - and not start with a dot"
            ),
        ))
    }
}

fn check_tags(tags: &[String]) -> Result<(), ApiError> {
    if tags.len() > 64 {
        return Err(ApiError::bad_request("too_many_tags", "at most 64 tags"));
    }
    tags.iter().try_for_each(|t| check_name("a tag", t))
}

// ---- devices ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateDevice {
    controller_id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Serialize)]
struct CreatedDevice {
    device: Device,
    /// Shown once; the server keeps only its hash.
    token: String,
}

async fn create_device(
    State(state): State<AppState>,
    Json(req): Json<CreateDevice>,
) -> Result<(StatusCode, Json<CreatedDevice>), ApiError> {
    check_name("controller_id", &req.controller_id)?;
    check_tags(&req.tags)?;
    let name = req.name.unwrap_or_else(|| req.controller_id.clone());
    if name.len() > 256 {
        return Err(ApiError::bad_request(
            "invalid_name",
            "name longer than 256 bytes",
        ));
    }
    let token = tokens::generate();
    let device = state
        .store
        .create_device(&req.controller_id, &name, &tokens::hash(&token), &req.tags)
        .await?;
    tracing::info!(device = %device.controller_id, "device created");
    Ok((StatusCode::CREATED, Json(CreatedDevice { device, token })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListDevices {
    tag: Option<String>,
    current_version: Option<String>,
    update_state: Option<String>,
    seen_since: Option<i64>,
    after: Option<i64>,
    limit: Option<i64>,
}

#[derive(Serialize)]
struct DevicePage {
    items: Vec<Device>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<i64>,
}

async fn list_devices(
    State(state): State<AppState>,
    Query(q): Query<ListDevices>,
) -> Result<Json<DevicePage>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("bad_query", "limit must be 1..=1000"));
    }
    if let Some(s) = &q.update_state
        && s != crate::store::IDLE
        && s.parse::<ActionStatus>().is_err()
    {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("unknown update_state `{s}`"),
        ));
    }
    let items = state
        .store
        .list_devices(&DeviceFilter {
            tag: q.tag,
            current_version: q.current_version,
            update_state: q.update_state,
            seen_since: q.seen_since,
            after: q.after,
            limit: limit + 1,
        })
        .await?;
    let mut items = items;
    let next_after = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|d| d.id)
    } else {
        None
    };
    Ok(Json(DevicePage { items, next_after }))
}

#[derive(Serialize)]
struct DeviceDetail {
    #[serde(flatten)]
    device: Device,
    config_data: BTreeMap<String, String>,
}

async fn get_device(
    State(state): State<AppState>,
    Path(controller_id): Path<String>,
) -> Result<Json<DeviceDetail>, ApiError> {
    let device = state
        .store
        .device(&controller_id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    let config_data = state
        .store
        .config_data(device.id)
        .await?
        .into_iter()
        .collect();
    Ok(Json(DeviceDetail {
        device,
        config_data,
    }))
}

async fn delete_device(
    State(state): State<AppState>,
    Path(controller_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.fleet.delete_device(&controller_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("device"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetTags {
    tags: Vec<String>,
}

async fn set_tags(
    State(state): State<AppState>,
    Path(controller_id): Path<String>,
    Json(req): Json<SetTags>,
) -> Result<Json<Device>, ApiError> {
    check_tags(&req.tags)?;
    if !state.store.set_tags(&controller_id, &req.tags).await? {
        return Err(ApiError::not_found("device"));
    }
    let device = state
        .store
        .device(&controller_id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    Ok(Json(device))
}

#[derive(Serialize)]
struct ActionDetail {
    #[serde(flatten)]
    action: Action,
    events: Vec<ActionEvent>,
}

async fn detail(state: &AppState, action: Action) -> Result<ActionDetail, ApiError> {
    let events = state.store.action_events(action.id).await?;
    Ok(ActionDetail { action, events })
}

async fn device_deployments(
    State(state): State<AppState>,
    Path(controller_id): Path<String>,
) -> Result<Json<Vec<ActionDetail>>, ApiError> {
    let device = state
        .store
        .device(&controller_id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    let actions = state.store.device_actions(device.id, 1000).await?;
    let ids: Vec<i64> = actions.iter().map(|a| a.id).collect();
    let mut events: std::collections::HashMap<i64, Vec<ActionEvent>> = Default::default();
    for (id, e) in state.store.events_of(&ids).await? {
        events.entry(id).or_default().push(e);
    }
    Ok(Json(
        actions
            .into_iter()
            .map(|action| ActionDetail {
                events: events.remove(&action.id).unwrap_or_default(),
                action,
            })
            .collect(),
    ))
}

// ---- keys ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddKey {
    name: String,
    pem: String,
}

async fn add_key(
    State(state): State<AppState>,
    Json(req): Json<AddKey>,
) -> Result<(StatusCode, Json<crate::store::TrustedKey>), ApiError> {
    check_name("name", &req.name)?;
    let parsed =
        keys::parse_pem(&req.pem).map_err(|e| ApiError::bad_request("bad_key", e.to_string()))?;
    let key = state
        .store
        .add_key(
            &req.name,
            parsed.algorithm,
            &parsed.fingerprint,
            req.pem.trim(),
        )
        .await?;
    tracing::info!(key = %key.name, fingerprint = %key.fingerprint, "trusted key added");
    Ok((StatusCode::CREATED, Json(key)))
}

async fn list_keys(
    State(state): State<AppState>,
) -> Result<Json<Vec<crate::store::TrustedKey>>, ApiError> {
    Ok(Json(state.store.keys().await?))
}

// ---- releases ----

async fn list_releases(State(state): State<AppState>) -> Result<Json<Vec<Release>>, ApiError> {
    Ok(Json(state.store.releases().await?))
}

async fn get_release(
    State(state): State<AppState>,
    Path(version): Path<String>,
) -> Result<Json<Release>, ApiError> {
    state
        .store
        .release(&version)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("release"))
}

/// What the multipart upload carried.
#[derive(Default)]
struct Upload {
    envelope: Option<Vec<u8>>,
    /// The verified envelope's facts, once checked.
    checked: Option<Checked>,
    image: Option<StagedBlob>,
    filename: Option<String>,
}

/// What a verified envelope says, owned.
struct Checked {
    sequence: u64,
    version: String,
    image_digest: [u8; 32],
    image_size: u64,
    manifest_digest: [u8; 32],
    key_id: i64,
    vendor_id: String,
    class_id: String,
}

/// Verify an envelope against the trusted keys.
async fn check_envelope(state: &AppState, envelope: &[u8]) -> Result<Checked, ApiError> {
    let trusted = state.store.keys().await?;
    let mut parsed = Vec::with_capacity(trusted.len());
    for k in &trusted {
        let p = keys::parse_pem(&k.pem).map_err(ApiError::internal)?;
        parsed.push(p.key);
    }
    if parsed.is_empty() {
        return Err(ApiError::unprocessable(
            "no_trusted_keys",
            "no trusted keys: add one with POST /api/v1/keys first",
        ));
    }
    let verified = updraft_manifest::verify(envelope, &parsed).map_err(|e| match e {
        updraft_manifest::Error::BadSignature => ApiError::unprocessable(
            "untrusted_signature",
            "the envelope is not signed by a trusted key",
        ),
        other => ApiError::unprocessable("bad_envelope", other.to_string()),
    })?;
    let m = &verified.manifest;
    let version = m
        .version
        .ok_or_else(|| ApiError::unprocessable("no_version", "the manifest has no version string"))?
        .to_string();
    check_name("the manifest version", &version)?;
    let key_id = trusted
        .get(verified.key_index)
        .map(|k| k.id)
        .ok_or_else(|| ApiError::internal("key index out of range"))?;
    Ok(Checked {
        sequence: m.sequence,
        version,
        image_digest: m.image_digest,
        image_size: m.image_size,
        manifest_digest: verified.manifest_digest,
        key_id,
        vendor_id: m.vendor_id.to_string(),
        class_id: m.class_id.to_string(),
    })
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "the envelope exceeds {} bytes",
            updraft_manifest::MAX_ENVELOPE_LEN
        ),
    )
}

async fn receive_parts(
    state: &AppState,
    multipart: &mut Multipart,
    upload: &mut Upload,
) -> Result<(), ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request("bad_multipart", e.body_text())
    };
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        match field.name() {
            Some("envelope") => {
                if upload.envelope.is_some() {
                    return Err(ApiError::bad_request(
                        "bad_multipart",
                        "two `envelope` parts",
                    ));
                }
                let mut buf = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    if buf.len() + chunk.len() > updraft_manifest::MAX_ENVELOPE_LEN {
                        return Err(too_large());
                    }
                    buf.extend_from_slice(&chunk);
                }
                upload.envelope = Some(buf);
            }
            Some("image") => {
                if upload.image.is_some() {
                    return Err(ApiError::bad_request("bad_multipart", "two `image` parts"));
                }
                if let Some(name) = field.file_name() {
                    check_name("the image file name", name)?;
                    upload.filename = Some(name.to_string());
                }
                // With the envelope first, a bad signature stops the upload before the image is
                // read, and the signed size bounds it.
                let mut limit = state.config.max_upload_bytes;
                if let Some(envelope) = &upload.envelope {
                    let checked = check_envelope(state, envelope).await?;
                    if checked.image_size > limit {
                        return Err(ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "too_large",
                            format!(
                                "the manifest's image of {} bytes exceeds the upload limit of {limit} bytes",
                                checked.image_size
                            ),
                        ));
                    }
                    limit = checked.image_size;
                    upload.checked = Some(checked);
                }
                let staged = match state.blobs.stage(field, limit).await {
                    Ok(staged) => staged,
                    Err(crate::blobs::BlobError::TooLarge { limit })
                        if upload.checked.is_some() =>
                    {
                        return Err(ApiError::unprocessable(
                            "size_mismatch",
                            format!("the image is larger than the manifest's {limit} bytes"),
                        ));
                    }
                    Err(e) => return Err(e.into()),
                };
                upload.image = Some(staged);
            }
            other => {
                return Err(ApiError::bad_request(
                    "bad_multipart",
                    format!(
                        "unexpected part {:?}: send `envelope` (the signed SUIT envelope) and `image`",
                        other.unwrap_or("")
                    ),
                ));
            }
        }
    }
    Ok(())
}

async fn accept_release(
    state: &AppState,
    upload: &mut Upload,
    allow_same_sequence: bool,
) -> Result<Release, ApiError> {
    let envelope = upload
        .envelope
        .take()
        .ok_or_else(|| ApiError::bad_request("missing_part", "the `envelope` part is missing"))?;
    if upload.image.is_none() {
        return Err(ApiError::bad_request(
            "missing_part",
            "the `image` part is missing",
        ));
    }
    let checked = match upload.checked.take() {
        Some(c) => c,
        None => check_envelope(state, &envelope).await?,
    };
    let image = upload
        .image
        .as_ref()
        .ok_or_else(|| ApiError::bad_request("missing_part", "the `image` part is missing"))?;
    if checked.image_size != image.size {
        return Err(ApiError::unprocessable(
            "size_mismatch",
            format!(
                "the manifest says {} bytes, the image has {}",
                checked.image_size, image.size
            ),
        ));
    }
    if checked.image_digest != image.sha256 {
        return Err(ApiError::unprocessable(
            "digest_mismatch",
            "the image's SHA-256 differs from the manifest's image digest",
        ));
    }
    if state.store.release(&checked.version).await?.is_some() {
        return Err(ApiError::conflict(format!(
            "release {} already exists",
            checked.version
        )));
    }
    let new = NewRelease {
        version: checked.version,
        sequence: checked.sequence,
        manifest_digest: hex::encode(checked.manifest_digest),
        filename: upload
            .filename
            .clone()
            .unwrap_or_else(|| "firmware.bin".to_string()),
        image_size: image.size,
        image_sha256: hex::encode(image.sha256),
        image_sha1: hex::encode(image.sha1),
        image_md5: hex::encode(image.md5),
        blob_key: image.final_key(),
        envelope,
        key_id: checked.key_id,
        vendor_id: Some(checked.vendor_id),
        class_id: Some(checked.class_id),
    };
    // Blob first: a release row never points at a missing blob. If the insert fails, the blob
    // is removed again unless another release shares it.
    let staged = upload
        .image
        .take()
        .ok_or_else(|| ApiError::internal("image vanished"))?;
    let blob_key = state.blobs.commit(staged).await?;
    match state
        .store
        .create_release_with(&new, allow_same_sequence)
        .await
    {
        Ok(r) => Ok(r),
        Err(e) => {
            if !state.store.blob_in_use(&blob_key).await.unwrap_or(true) {
                state.blobs.remove(&blob_key).await;
            }
            Err(e.into())
        }
    }
}

/// Query of `POST /api/v1/releases`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    /// Accept a sequence equal to the class's highest when the image is the same (a re-sign).
    #[serde(default)]
    allow_same_sequence: bool,
}

async fn create_release(
    State(state): State<AppState>,
    Query(query): Query<UploadQuery>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<Release>), ApiError> {
    let mut multipart = multipart.map_err(|e| {
        ApiError::bad_request(
            "bad_multipart",
            format!(
                "{} (send multipart/form-data with parts `envelope` and `image`)",
                e.body_text()
            ),
        )
    })?;
    let mut upload = Upload::default();
    let mut result = receive_parts(&state, &mut multipart, &mut upload).await;
    if result.is_ok() {
        result = match accept_release(&state, &mut upload, query.allow_same_sequence).await {
            Ok(release) => {
                tracing::info!(version = %release.version, size = release.image_size, "release stored");
                return Ok((StatusCode::CREATED, Json(release)));
            }
            Err(e) => Err(e),
        };
    }
    if let Some(staged) = upload.image.take() {
        state.blobs.discard(staged).await;
    }
    Err(result
        .err()
        .unwrap_or_else(|| ApiError::internal("upload failed")))
}

// ---- deployments ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateDeployment {
    release: String,
    #[serde(default)]
    devices: Option<Vec<String>>,
    #[serde(default)]
    tag: Option<String>,
}

#[derive(Serialize)]
struct CreatedDeployment {
    rollout: Rollout,
    /// The first actions created (at most [`PAGE_MAX`]; page through the deployment for more).
    actions: Vec<Action>,
    /// Devices that got no action, and why (at most [`PAGE_MAX`]; `skipped_count` has all).
    skipped: Vec<Skip>,
    skipped_count: usize,
}

/// Largest page of a list.
const PAGE_MAX: i64 = 1000;

async fn create_deployment(
    State(state): State<AppState>,
    Json(req): Json<CreateDeployment>,
) -> Result<(StatusCode, Json<CreatedDeployment>), ApiError> {
    let release = state
        .store
        .release(&req.release)
        .await?
        .ok_or_else(|| ApiError::not_found("release"))?;
    let (target, ids) = match (req.devices, req.tag) {
        (Some(devices), None) if !devices.is_empty() && devices.len() <= 10_000 => {
            let found = state.store.device_ids(&devices).await?;
            if let Some(missing) = devices.iter().find(|d| !found.contains_key(d.as_str())) {
                return Err(ApiError::not_found(&format!("device {missing:?}")));
            }
            let mut ids: Vec<i64> = found.into_values().collect();
            ids.sort_unstable();
            (format!("devices:{}", devices.join(",")), ids)
        }
        (None, Some(tag)) => {
            check_name("tag", &tag)?;
            let ids = state.store.device_ids_with_tag(&tag).await?;
            if ids.is_empty() {
                return Err(ApiError::not_found(&format!("devices with tag {tag:?}")));
            }
            (format!("tag:{tag}"), ids)
        }
        _ => {
            return Err(ApiError::bad_request(
                "bad_target",
                "give exactly one of `devices` (1 to 10000 controller ids) or `tag`",
            ));
        }
    };
    let (rollout_id, outcome) = state.fleet.deploy(&release, &target, &ids).await?;
    if outcome.created.is_empty() {
        let why = if outcome.skipped.iter().all(|s| s.reason == SKIP_INSTALLED) {
            "every targeted device already runs this release"
        } else {
            "every targeted device already has an open deployment or runs this release"
        };
        return Err(ApiError::conflict(why));
    }
    let rollout = state
        .store
        .rollout(rollout_id)
        .await?
        .ok_or_else(|| ApiError::not_found("deployment"))?;
    let actions = state
        .store
        .rollout_actions(rollout_id, None, PAGE_MAX)
        .await?;
    let skipped_count = outcome.skipped.len();
    let mut skipped = outcome.skipped;
    skipped.truncate(PAGE_MAX as usize);
    Ok((
        StatusCode::CREATED,
        Json(CreatedDeployment {
            rollout,
            actions,
            skipped,
            skipped_count,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    /// Items after this id (actions) or before it (deployments, newest first).
    after: Option<i64>,
    before: Option<i64>,
    limit: Option<i64>,
}

impl Page {
    fn limit(&self) -> Result<i64, ApiError> {
        let limit = self.limit.unwrap_or(PAGE_MAX);
        if (1..=PAGE_MAX).contains(&limit) {
            Ok(limit)
        } else {
            Err(ApiError::bad_request(
                "bad_query",
                format!("limit must be 1..={PAGE_MAX}"),
            ))
        }
    }
}

async fn list_rollouts(
    State(state): State<AppState>,
    Query(page): Query<Page>,
) -> Result<Json<Vec<Rollout>>, ApiError> {
    Ok(Json(
        state.store.rollouts(page.before, page.limit()?).await?,
    ))
}

#[derive(Serialize)]
struct RolloutDetail {
    #[serde(flatten)]
    rollout: Rollout,
    /// One page of the per-device actions, in id order.
    actions: Vec<Action>,
    /// Pass as `after` for the next page of actions; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<i64>,
}

/// A deployment with one page of its per-device actions, or 404.
async fn rollout_detail(state: &AppState, id: i64, page: &Page) -> Result<RolloutDetail, ApiError> {
    let rollout = state
        .store
        .rollout(id)
        .await?
        .ok_or_else(|| ApiError::not_found("deployment"))?;
    let limit = page.limit()?;
    let mut actions = state
        .store
        .rollout_actions(id, page.after, limit + 1)
        .await?;
    let next_after = if actions.len() as i64 > limit {
        actions.truncate(limit as usize);
        actions.last().map(|a| a.id)
    } else {
        None
    };
    Ok(RolloutDetail {
        rollout,
        actions,
        next_after,
    })
}

async fn get_rollout(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(page): Query<Page>,
) -> Result<Json<RolloutDetail>, ApiError> {
    Ok(Json(rollout_detail(&state, id, &page).await?))
}

async fn cancel_rollout(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(page): Query<Page>,
) -> Result<Json<RolloutDetail>, ApiError> {
    rollout_detail(&state, id, &page).await?;
    state.fleet.cancel_rollout(id).await?;
    Ok(Json(rollout_detail(&state, id, &page).await?))
}

async fn get_action(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<ActionDetail>, ApiError> {
    let action = state
        .store
        .action(id)
        .await?
        .ok_or_else(|| ApiError::not_found("action"))?;
    Ok(Json(detail(&state, action).await?))
}

async fn cancel_action(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<ActionDetail>, ApiError> {
    let action = state.fleet.request_cancel(id).await?;
    Ok(Json(detail(&state, action).await?))
}

// ---- campaigns ----

async fn create_campaign(
    State(state): State<AppState>,
    Json(req): Json<NewCampaign>,
) -> Result<(StatusCode, Json<CampaignView>), ApiError> {
    if let Some(tag) = &req.target.tag {
        check_name("tag", tag)?;
    }
    let id = state.fleet.create_campaign(req).await?;
    Ok((StatusCode::CREATED, Json(state.fleet.campaign(id).await?)))
}

async fn list_campaigns(
    State(state): State<AppState>,
    Query(page): Query<Page>,
) -> Result<Json<Vec<CampaignView>>, ApiError> {
    let limit = page.limit()?.min(100);
    Ok(Json(state.fleet.campaigns(page.before, limit).await?))
}

async fn get_campaign(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<CampaignView>, ApiError> {
    Ok(Json(state.fleet.campaign(id).await?))
}

/// The body of a campaign command: `at` (Unix ms) for `schedule`, `phase` for `approve`,
/// and who is asking, for the log.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    #[serde(default)]
    at: Option<i64>,
    #[serde(default)]
    phase: Option<u32>,
    #[serde(default)]
    by: Option<String>,
}

async fn campaign_command(
    State(state): State<AppState>,
    Path((id, command)): Path<(i64, String)>,
    body: axum::body::Bytes,
) -> Result<Json<CampaignView>, ApiError> {
    // The body is optional: none, or `{"phase": N}`, `{"at": MS}`, `{"by": "name"}`.
    let body: CommandBody = if body.iter().all(u8::is_ascii_whitespace) {
        CommandBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("bad_json", e.to_string()))?
    };
    let command = match command.as_str() {
        "start" => Command::Start,
        "pause" => Command::Pause,
        "resume" => Command::Resume,
        "abort" => Command::Abort,
        "close" => Command::Close,
        "approve" => match body.phase {
            Some(phase) => Command::Approve { phase },
            None => {
                let waiting = state.fleet.campaign(id).await?.summary.awaiting_approval;
                Command::Approve {
                    phase: waiting.ok_or_else(|| {
                        ApiError::conflict("no phase of this campaign waits for an approval")
                    })?,
                }
            }
        },
        "schedule" => Command::Schedule {
            at: body.at.ok_or_else(|| {
                ApiError::bad_request("bad_command", "`schedule` needs `at` (Unix ms)")
            })?,
        },
        other => {
            return Err(ApiError::not_found(&format!(
                "campaign command {other:?} (start, pause, resume, abort, approve, schedule, close)"
            )));
        }
    };
    let by = body.by.unwrap_or_else(|| "admin".into());
    if by.is_empty() || by.len() > 64 || by.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "bad_command",
            "`by` is 1 to 64 printable characters",
        ));
    }
    state.fleet.campaign_command(id, command, &by).await?;
    Ok(Json(state.fleet.campaign(id).await?))
}
