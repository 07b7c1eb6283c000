//! The errors of talking to registries (pulls, pushes, logins, archives), in Docker's words,
//! shared by every module that does: one type, one place, so that none of them has to reach
//! into another for it.

use crate::digest::DigestError;
use crate::store::StoreError;
use crate::unpack::UnpackError;

/// Errors of a pull, in Docker's words.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("manifest for {0} not found: manifest unknown: manifest unknown")]
    ManifestNotFound(String),
    #[error("pull access denied for {0}, repository does not exist or may require 'docker login'")]
    RepositoryNotFound(String),
    #[error("Get \"{url}\": {detail}")]
    Unreachable { url: String, detail: String },
    #[error(
        "pull access denied for {0}, repository does not exist or may require 'docker login': {1}"
    )]
    AccessDenied(String, String),
    #[error("Get \"{0}\": no basic auth credentials")]
    NoBasicAuth(String),
    #[error("Get \"{url}\": {detail}")]
    Unauthorized {
        url: String,
        detail: String,
        /// Refused without credentials (rather than refused the credentials given).
        anonymous: bool,
    },
    #[error("login attempt to {url} failed with status: {status} {}", http_reason(*.status))]
    LoginFailed { url: String, status: u16 },
    #[error("Access denied to unauthorized registry ({0}) while VCH is in whitelist mode")]
    NotWhitelisted(String),
    #[error("no matching manifest for {0} in the manifest list entries")]
    NoMatchingPlatform(String),
    /// A registry (or archive, or client) named a digest that is not `sha256:<64 hex>`.
    #[error("{what}: {source}")]
    InvalidDigest {
        what: String,
        #[source]
        source: DigestError,
    },
    /// Nothing, or too little, arrived within a stall window.
    #[error("registry {host} {detail} while {what}")]
    Stalled {
        host: String,
        detail: String,
        what: String,
    },
    /// A request that is not a blob download took longer than its deadline.
    #[error("registry {host} did not finish {what} within {within}")]
    Deadline {
        host: String,
        what: String,
        within: String,
    },
    /// A body past its bound: a manifest, token, tag list, error, or a blob past the size
    /// its descriptor declares.
    #[error("registry {host} sent more than {limit} bytes while {what}")]
    TooLarge {
        host: String,
        what: String,
        limit: u64,
    },
    /// A blob whose bytes hash right but whose descriptor declared another size.
    #[error("{what} is {actual} bytes, the manifest declares {declared}")]
    SizeMismatch {
        what: String,
        declared: u64,
        actual: u64,
    },
    #[error("{what} has digest {actual}, expected {expected}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedManifest(String),
    #[error("registry answered {status} for {url}")]
    Registry { status: u16, url: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn http_reason(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> PullError {
    let context = context.into();
    move |source| PullError::Io { context, source }
}
