//! The one place where errors become HTTP responses: Docker's status codes and its
//! `{"message": …}` body, worded as Docker words them because
//! scripts grep them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use imagec::archive::ArchiveError;
use imagec::pull::PullError;
use imagec::store::StoreError;
use portlayer::networks::NetworkError;
use portlayer::volumes::VolumeError;
use portlayer::CopyError;
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
            PlError::NoSuchContainer(_)
            | PlError::NoSuchImage(_)
            | PlError::NoSuchExec(_)
            | PlError::Network(NetworkError::NoSuch(_)) => StatusCode::NOT_FOUND,
            PlError::Network(NetworkError::Full(_)) => StatusCode::SERVICE_UNAVAILABLE,
            PlError::Network(NetworkError::Exists(_) | NetworkError::AddressInUse) => {
                StatusCode::CONFLICT
            }
            PlError::Network(NetworkError::Invalid(_)) => StatusCode::BAD_REQUEST,
            PlError::Network(NetworkError::Forbidden(_)) => StatusCode::FORBIDDEN,
            PlError::Volume(
                VolumeError::NoSuch(_) | VolumeError::NoStore(_) | VolumeError::NoPlugin(_),
            ) => StatusCode::NOT_FOUND,
            PlError::Volume(VolumeError::InUse { .. }) => StatusCode::CONFLICT,
            PlError::Volume(VolumeError::Invalid(_)) => StatusCode::BAD_REQUEST,
            PlError::Volume(VolumeError::Io { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
            PlError::NameConflict { .. }
            | PlError::NotRunning(_)
            | PlError::NotReading(_)
            | PlError::ExecRan(_)
            | PlError::Update(_)
            | PlError::Paused(_)
            | PlError::PausedFor { .. }
            | PlError::NotPaused(_)
            | PlError::RemoveRunning(_)
            | PlError::RemoveRestarting(_)
            | PlError::DefaultLinkName => StatusCode::CONFLICT,
            PlError::AlreadyRunning(_) => StatusCode::NOT_MODIFIED,
            PlError::InvalidSignal(_)
            | PlError::NoCommand
            | PlError::NoExecCommand
            | PlError::SameName
            | PlError::InvalidName(_)
            | PlError::Ambiguous(_) => StatusCode::BAD_REQUEST,
            PlError::Spawn { .. } => StatusCode::BAD_REQUEST,
            PlError::Copy(CopyError::NotFound(_)) => StatusCode::NOT_FOUND,
            PlError::Copy(CopyError::NotDirectory(_) | CopyError::Invalid(_)) => {
                StatusCode::BAD_REQUEST
            }
            PlError::Copy(CopyError::ReadOnly(_)) => StatusCode::FORBIDDEN,
            PlError::Copy(CopyError::Failed(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            PlError::Store(imagec::store::StoreError::NoSuchImage(_)) => StatusCode::NOT_FOUND,
            PlError::Start(_)
            | PlError::Guest(_)
            | PlError::Publish(_)
            | PlError::Backend(_)
            | PlError::Store(_)
            | PlError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
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

/// The VCH's storage is over its quota: VIC's 403, its words.
impl From<portlayer::storage::QuotaError> for ApiError {
    fn from(e: portlayer::storage::QuotaError) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, e.to_string())
    }
}

/// A pull (or push) that failed before its progress stream began.
impl From<PullError> for ApiError {
    fn from(e: PullError) -> Self {
        let status = match &e {
            PullError::ManifestNotFound(_)
            | PullError::RepositoryNotFound(_)
            | PullError::NoMatchingPlatform(_)
            | PullError::AccessDenied(..) => StatusCode::NOT_FOUND,
            // A 401 makes the CLI prompt for a login in the middle of a pull; dockerd answers
            // refused pulls with a 500 too, and keeps 401 for `docker login` itself.
            PullError::LoginFailed { .. } => StatusCode::UNAUTHORIZED,
            PullError::NotWhitelisted(_) | PullError::Store(StoreError::Quota(_)) => {
                StatusCode::FORBIDDEN
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

/// `docker save`, `load` and `import`: a bad archive or request is the client's mistake, a
/// full store VIC's 403, anything else the appliance's own failure.
impl From<ArchiveError> for ApiError {
    fn from(e: ArchiveError) -> Self {
        let status = match &e {
            ArchiveError::NoSuchImage(_) => StatusCode::NOT_FOUND,
            ArchiveError::Invalid(_) | ArchiveError::Change(_) => StatusCode::BAD_REQUEST,
            ArchiveError::Store(StoreError::Quota(_))
            | ArchiveError::Build(PullError::Store(StoreError::Quota(_))) => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
