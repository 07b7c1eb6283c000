//! Copying files into and out of a running container (`docker cp`, the archive API).
//!
//! A copy is a *transfer session*: a session number, like an exec's, that carries tar bytes
//! instead of a process's stdio. Both directions are flow-controlled by credit, so a copy
//! never holds more than a window of data in flight and the container's own stdio keeps
//! flowing beside it on the same channel:
//!
//! ```text
//!  out of the guest                         into the guest
//!  host:  ArchiveGet { session, window }    host:  ArchivePut { session, … }
//!  guest: Transfer { session, stat }        guest: Transfer { session, stat, window }
//!  guest: stdout frames ≤ credit            host:  stdin frames ≤ credit
//!  host:  Credit { session, bytes } …       guest: Credit { session, bytes } …
//!  guest: TransferDone { session, error }   host:  stdin closed
//!                                           guest: TransferDone { session, error }
//! ```
//!
//! Either side may end a transfer early: the host with `Cancel`, the guest with
//! `TransferDone { error }`. A `Transfer` whose `stat` is an error is the transfer's end.
//! A tether that loses its host cancels its transfers: a copy does not survive an appliance
//! restart (the client that asked for it went with the appliance).

use serde::{Deserialize, Serialize};

/// Largest payload of a transfer's data frame.
pub const TRANSFER_FRAME: usize = 64 * 1024;

/// Bytes a transfer's sender may have in flight before the receiver grants more.
pub const TRANSFER_WINDOW: u64 = 1 << 20;

/// Transfers under way in one guest at once.
pub const MAX_TRANSFERS: usize = 16;

/// What the guest's `lstat` says of a path in the container, as `docker cp` needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStat {
    /// The path's last element as the client named it (`.` for `dir/.`, `/` for the root).
    pub name: String,
    pub size: u64,
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    pub mtime_secs: i64,
    pub mtime_nanos: u32,
    /// For a symbolic link: where it leads, resolved in the container, absolute.
    pub link_target: String,
}

/// Why a path could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathErrorKind {
    /// Nothing is there.
    NotFound,
    /// An extraction point that is not a directory.
    NotDirectory,
    /// The path or the request is not valid (empty, too long, not absolute).
    Invalid,
    /// The path is on a read-only root or mount.
    ReadOnly,
    /// Anything else (an I/O error).
    Other,
}

/// A path that could not be used, and why, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathError {
    pub kind: PathErrorKind,
    pub message: String,
}

/// What an `ArchiveGet` sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GetMode {
    /// A tar stream of the path, as `docker cp` names its entries.
    #[default]
    Copy,
    /// `docker export`: a tar stream of the container's root filesystem alone (the path is
    /// `/`), entries named from it without a leading `./`, nothing under a mount point.
    Export,
    /// What `docker diff` and `commit` compare: one JSON [`ManifestEntry`] a line for
    /// everything on the root filesystem alone, nothing's contents.
    Manifest,
    /// `docker commit`: a tar stream of the listed paths of the root filesystem (each alone,
    /// not what a directory holds), named from the root; a path gone meanwhile is left out.
    Layer,
}

/// Bytes of paths one `Layer` request lists at most (more go in further requests).
pub const MAX_LAYER_PATHS_BYTES: usize = 512 * 1024;

/// One entry of a [`GetMode::Manifest`] stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// The path from the root, without a leading `/`.
    pub p: String,
    /// `st_mode`, owner, size, modification time (seconds), device number.
    pub m: u32,
    pub u: u32,
    pub g: u32,
    pub s: u64,
    pub t: i64,
    #[serde(default)]
    pub r: u64,
    /// A symbolic link's target.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub l: String,
}

/// Longest line of a manifest stream: a path of at most 4,096 bytes, escaped, and the rest.
pub const MAX_MANIFEST_LINE: usize = 3 * 4096 + 512;

/// What the host asks to extract into the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    /// The directory to extract into (it must exist).
    pub path: String,
    /// Refuse to replace a directory with a non-directory or the reverse.
    pub no_overwrite_dir_non_dir: bool,
    /// `docker cp -a` in a container with a user: every extracted file is owned by this user
    /// (resolved in the container's `/etc/passwd` and `/etc/group`). Otherwise the owners the
    /// archive names are kept.
    pub owner: Option<String>,
}
