//! What both HTTP APIs share: the JSON error type and extractors whose rejections are JSON 4xx.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::blobs::BlobError;
use crate::fleet::FleetError;
use crate::store::StoreError;

/// An error answered as `{"error": {"code": "...", "message": "..."}}` with an HTTP status.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    /// 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// 422: well-formed but refused (bad signature, digest mismatch).
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
    /// 500; the cause is logged, not shown.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error (see the server log)",
        )
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}
#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => ApiError::conflict(format!("{what} already exists")),
            e @ StoreError::StaleSequence { .. } => {
                ApiError::new(StatusCode::CONFLICT, "stale_sequence", e.to_string())
            }
            e @ StoreError::ResignDiffers { .. } => {
                ApiError::new(StatusCode::CONFLICT, "resign_image_differs", e.to_string())
            }
            e @ StoreError::ConfigTooLarge { .. } => ApiError::unprocessable(
                "config_too_large",
                format!("{e}; remove keys (mode `remove`) or send `replace`"),
            ),
            other => ApiError::internal(other),
        }
    }
}

impl From<FleetError> for ApiError {
    fn from(e: FleetError) -> Self {
        let message = e.to_string();
        match e {
            FleetError::Unauthorized(_) => ApiError::unauthorized(message),
            FleetError::Forbidden(_) => ApiError::forbidden(message),
            FleetError::NotFound(what) => ApiError::not_found(what),
            FleetError::Closed => ApiError::new(StatusCode::GONE, "gone", message),
            FleetError::NoCancelPending | FleetError::Conflict(_) => ApiError::conflict(message),
            FleetError::Invalid(_) => ApiError::bad_request("bad_request", message),
            FleetError::Store(e) => e.into(),
        }
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::TooLarge { limit } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the image exceeds the upload limit of {limit} bytes"),
            ),
            BlobError::Source(m) => ApiError::bad_request("bad_body", m),
            other => ApiError::internal(other),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let code = match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "bad_json",
        };
        let status = match r.status() {
            // Wrong types and unknown fields are plain bad requests to a client.
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            s => s,
        };
        ApiError::new(status, code, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request("bad_path", r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request("bad_query", r.body_text())
    }
}

/// JSON body or response; a bad body is a JSON 400 (413 when too large, 415 without the JSON
/// content type).
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters; a malformed one is a JSON 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters; a malformed one is a JSON 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Whether `s` is a safe identifier or file name: 1..=128 of `[A-Za-z0-9._+-]`, not starting
/// with a dot (so no `..`, no separators, no hidden files).
pub fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

#[cfg(test)]
mod tests {
    use super::is_safe_name;

    #[test]
    fn safe_names_refuse_traversal_and_separators() {
        for ok in ["fw.bin", "dev-1", "v2.0.0+build_7"] {
            assert!(is_safe_name(ok), "{ok}");
        }
        for bad in [
            "",
            "..",
            "../etc/passwd",
            "a/b",
            "a\\b",
            ".hidden",
            "a b",
            "ä",
            &"x".repeat(129),
        ] {
            assert!(!is_safe_name(bad), "{bad}");
        }
    }
}
