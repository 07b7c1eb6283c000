//! What confines a container inside its VM: the parts of [`crate::Setup`] and
//! [`crate::Process`] that say which capabilities, limits, mounts and devices the container
//! gets, and the tables both ends read (capability names, tmpfs options, resource names).
//!
//! The host decides (the Docker personality turns `docker run` options into these values);
//! the tether applies them before it execs a process, and refuses what it cannot apply.

use serde::{Deserialize, Serialize};

/// Linux capabilities by number (`CAP_CHOWN` is 0), up to `CAP_CHECKPOINT_RESTORE` (40), the
/// last one the guest kernel (6.1) knows.
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities a container process has unless told otherwise: Docker's default set
/// (`00000000a80425fb` in `/proc/self/status`).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A capability name this table does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability: {0:?}")]
pub struct UnknownCapability(pub String);

/// The bit mask of `names` (each `CAP_…` as in [`CAPABILITIES`]).
pub fn capability_mask<S: AsRef<str>>(names: &[S]) -> Result<u64, UnknownCapability> {
    names.iter().try_fold(0u64, |mask, name| {
        let name = name.as_ref();
        CAPABILITIES
            .iter()
            .position(|c| *c == name)
            .map(|bit| mask | 1 << bit)
            .ok_or_else(|| UnknownCapability(name.to_string()))
    })
}

/// Resource names of `setrlimit(2)` as Docker's `--ulimit` spells them, in Linux's order
/// (`RLIMIT_CPU` is 0).
pub const RLIMITS: [&str; 16] = [
    "cpu",
    "fsize",
    "data",
    "stack",
    "core",
    "rss",
    "nproc",
    "nofile",
    "memlock",
    "as",
    "locks",
    "sigpending",
    "msgqueue",
    "nice",
    "rtprio",
    "rttime",
];

/// Mount flags a tmpfs may be given (`mount(8)` words), as Docker accepts them.
pub const TMPFS_FLAGS: [&str; 20] = [
    "ro",
    "rw",
    "noexec",
    "exec",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "sync",
    "async",
    "dirsync",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "mand",
];

/// tmpfs's own options (passed to the kernel as mount data), as Docker accepts them.
pub const TMPFS_DATA: [&str; 7] = [
    "size",
    "mode",
    "uid",
    "gid",
    "nr_inodes",
    "nr_blocks",
    "mpol",
];

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

/// A disk of the VM's own (a volume) mounted in the container. The guest finds it by the
/// serial number the host gave its virtio-blk device (`/sys/block/vdX/serial`), not by the
/// order in which devices appear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskMount {
    pub serial: String,
    /// Where the disk is instead when set: this SCSI unit (target) on the VM's SCSI
    /// controller (a paravirtual SCSI disk on vSphere has no serial the host sets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scsi_unit: Option<u32>,
    /// Absolute path inside the container.
    pub path: String,
    /// Its filesystem, e.g. `ext4`.
    pub fstype: String,
    pub readonly: bool,
}

/// A host file or directory shared into the VM (a bind mount), mounted by its virtio-fs
/// tag: the share holds `data`, which is what the container sees at `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareMount {
    pub tag: String,
    /// Absolute path inside the container.
    pub path: String,
    pub readonly: bool,
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

/// How the container's filesystems and kernel are set up (part of [`crate::Setup`]).
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
    /// NIS domain name of the guest (`setdomainname`).
    pub domainname: String,
    /// Largest number of tasks the container's processes may have at once (a pids cgroup in
    /// the guest); 0 is no limit.
    pub pids_limit: u64,
    /// Paths hidden from the container (a file gets `/dev/null` over it, a directory an
    /// empty read-only tmpfs).
    pub masked_paths: Vec<String>,
    /// Paths the container sees read-only.
    pub readonly_paths: Vec<String>,
    /// Volumes, mounted right after the root filesystem, shallowest path first (from
    /// protocol version [`crate::DISKS_VERSION`] on).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<DiskMount>,
    /// Bind mounts, in the same order as the volumes (from [`crate::DISKS_VERSION`] on).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<ShareMount>,
}

/// What a process may do (part of [`crate::Process`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Privileges {
    /// Bounding, permitted and effective set (inheritable and ambient are emptied, as Docker
    /// does); `None` leaves the process every capability (hosts older than this field).
    pub capabilities: Option<u64>,
    /// Extra supplementary groups: names in the container's `/etc/group`, or numbers.
    pub groups: Vec<String>,
    pub rlimits: Vec<Rlimit>,
    /// `PR_SET_NO_NEW_PRIVS`: execve never grants privileges (set-id bits, file capabilities).
    pub no_new_privileges: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_default_set_is_a80425fb() {
        assert_eq!(capability_mask(&DEFAULT_CAPABILITIES).unwrap(), 0xa804_25fb);
        assert_eq!(capability_mask(&CAPABILITIES).unwrap(), (1u64 << 41) - 1);
        assert_eq!(
            capability_mask(&["CAP_FOO"]).unwrap_err().to_string(),
            "unknown capability: \"CAP_FOO\""
        );
    }
}
