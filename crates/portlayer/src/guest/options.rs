//! How a container's VM is set up, as the port layer keeps it: devices, mounts, kernel
//! settings and limits. Records store these types; their serde form is the records' and
//! stays as it is (fields are only ever added, with defaults). [`super::launch`] turns them
//! into the wire's.
//!
//! The vocabularies (capability, resource-limit and tmpfs-option names) are the guest's own
//! and are taken from the protocol crate as they are.

use serde::{Deserialize, Serialize};

pub use tether_proto::guest::{
    capability_mask, UnknownCapability, CAPABILITIES, DEFAULT_CAPABILITIES, RLIMITS, TMPFS_DATA,
    TMPFS_FLAGS,
};

/// One resource limit; `u64::MAX` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// One of [`RLIMITS`].
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// A tmpfs mounted in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tmpfs {
    /// Absolute path inside the container.
    pub path: String,
    /// [`TMPFS_FLAGS`] words and [`TMPFS_DATA`] `key=value` pairs, applied in order.
    pub options: Vec<String>,
}

/// A device node of the guest made visible in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The node in the guest's own `/dev` (the VM's device, never the host's).
    pub guest_path: String,
    /// Where the container sees it, under `/dev`.
    pub container_path: String,
}

/// An extra line of the container's `/etc/hosts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    pub name: String,
    pub ip: String,
}

/// How the container's filesystems and kernel are set up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Confinement {
    /// Every guest device in `/dev` and `/sys` writable; otherwise `/dev` holds only the
    /// standard nodes plus [`Confinement::devices`], and `/sys` is read-only.
    pub privileged: bool,
    /// The root filesystem is mounted read-only (its API filesystems and tmpfs mounts are not).
    pub readonly_rootfs: bool,
    pub tmpfs: Vec<Tmpfs>,
    /// Bytes of `/dev/shm`; 0 is the default, 64 MiB.
    pub shm_size: u64,
    /// `(key, value)` written to `/proc/sys` (dots become slashes) before anything runs.
    pub sysctls: Vec<(String, String)>,
    pub devices: Vec<Device>,
    pub extra_hosts: Vec<HostEntry>,
    /// NIS domain name of the guest.
    pub domainname: String,
    /// Largest number of tasks the container's processes may have at once; 0 is no limit.
    pub pids_limit: u64,
    /// Paths hidden from the container.
    pub masked_paths: Vec<String>,
    /// Paths the container sees read-only.
    pub readonly_paths: Vec<String>,
}
