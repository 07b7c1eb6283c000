//! The one place where errors become HTTP responses: Docker's status codes and its
//! `{"message": …}` body, worded as Docker words them because scripts grep them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use portlayer::Error as PlError;

/// An error as the Docker API returns it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, "{}", self.message);
        } else {
            tracing::debug!(status = %self.status, "{}", self.message);
        }
        (
            self.status,
            Json(serde_json::json!({ "message": self.message })),
        )
            .into_response()
    }
}

impl From<PlError> for ApiError {
    fn from(e: PlError) -> Self {
        let status = match &e {
            PlError::NoSuchContainer(_) | PlError::NoSuchImage(_) => StatusCode::NOT_FOUND,
            PlError::NameConflict { .. }
            | PlError::NotRunning(_)
            | PlError::NotReading(_)
            | PlError::RemoveRunning(_) => StatusCode::CONFLICT,
            PlError::AlreadyRunning(_) => StatusCode::NOT_MODIFIED,
            PlError::InvalidSignal(_)
            | PlError::NoCommand
            | PlError::InvalidName(_)
            | PlError::Ambiguous(_) => StatusCode::BAD_REQUEST,
            PlError::Spawn { .. } => StatusCode::BAD_REQUEST,
            PlError::Store(imagec::store::StoreError::NoSuchImage(_)) => StatusCode::NOT_FOUND,
            PlError::Start(_) | PlError::Backend(_) | PlError::Store(_) | PlError::Io { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

/// A reference a client sent that does not parse: Docker's 400, its words.
impl From<imagec::reference::ReferenceError> for ApiError {
    fn from(e: imagec::reference::ReferenceError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

/// The image store's failures: an image that is not there is a 404, anything else the
/// appliance's own failure.
impl From<imagec::store::StoreError> for ApiError {
    fn from(e: imagec::store::StoreError) -> Self {
        match e {
            imagec::store::StoreError::NoSuchImage(_) => ApiError::not_found(e.to_string()),
            e => ApiError::internal(e.to_string()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
