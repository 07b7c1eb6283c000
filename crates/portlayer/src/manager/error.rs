//! Errors of container operations, worded as Docker words them.

use hypervisor::BackendError;

use crate::networks::NetworkError;

/// Errors of container operations, worded as Docker words them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("No such image: {0}")]
    NoSuchImage(String),
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameConflict { name: String, id: String },
    #[error("Container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    #[error("You cannot remove a running container {0}. Stop the container before attempting removal or force remove")]
    RemoveRunning(String),
    /// Between two runs of its restart policy: dockerd's words for it.
    #[error("You cannot remove a restarting container {0}. Stop the container before attempting removal or force remove")]
    RemoveRestarting(String),
    /// `docker rm --link NAME` without a parent: moby's words.
    #[error("Conflict, cannot remove the default link name of the container")]
    DefaultLinkName,
    /// The guest has stopped reading what the host sends it.
    #[error("container {0} does not read what is sent to it: its VM can only be powered off (docker kill)")]
    NotReading(String),
    #[error("Invalid signal: {0}")]
    InvalidSignal(String),
    #[error("No command specified")]
    NoCommand,
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Volume(#[from] crate::volumes::VolumeError),
    #[error(transparent)]
    Publish(#[from] crate::ports::PublishError),
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("multiple IDs found with provided prefix: {0}")]
    Ambiguous(String),
    /// The process could not be executed; `code` is what Docker reports (126, 127).
    #[error("failed to create task for container: failed to start process: {message}: unknown")]
    Spawn { message: String, code: i32 },
    #[error("{0}")]
    Start(String),
    #[error("{0}")]
    Update(String),
    /// The guest could not answer a question (a timeout, a broken channel).
    #[error("{0}")]
    Guest(String),
    #[error("Container {0} is already paused")]
    Paused(String),
    #[error("Container {id} is paused, unpause the container before {what}")]
    PausedFor { id: String, what: String },
    #[error("Container {0} is not paused")]
    NotPaused(String),
    #[error("Renaming a container with the same name as its current name")]
    SameName,
    #[error("No exec command specified")]
    NoExecCommand,
    #[error("No such exec instance: {0}")]
    NoSuchExec(String),
    #[error("Error: Exec command {0} has already run")]
    ExecRan(String),
    #[error(transparent)]
    Copy(#[from] crate::guest::transfer::CopyError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Store(#[from] imagec::store::StoreError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub(super) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}
