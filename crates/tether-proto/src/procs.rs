//! What the guest says of the container's processes (`docker top`): the answer to
//! `HostMsg::ListProcesses`, and its bounds.

use serde::{Deserialize, Serialize};

/// The most processes a `GuestMsg::Processes` lists.
pub const MAX_PROCESSES: usize = 4096;
/// The most bytes of a process's command line it carries.
pub const MAX_ARGS_BYTES: usize = 4096;

/// One of the container's processes, as the guest's `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    /// The user's name in the container's `/etc/passwd`, else the number.
    pub user: String,
    /// `/proc/PID/stat`'s state letter.
    pub state: String,
    /// CPU time used, in clock ticks.
    pub ticks: u64,
    /// When it started, in clock ticks after boot.
    pub start_ticks: u64,
    pub rss_kib: u64,
    pub vsize_kib: u64,
    /// The controlling terminal's name (`pts/0`), or `?`.
    pub tty: String,
    pub comm: String,
    /// Its command line (at most [`MAX_ARGS_BYTES`]).
    pub args: Vec<String>,
}

/// Interfaces and disks a `GuestMsg::Stats` lists at most.
pub const MAX_STAT_DEVICES: usize = 64;

/// What the guest's kernel counts of the VM (`docker stats`). CPU times are clock ticks
/// (`hz` a second), summed over every vCPU; memory in KiB; traffic and I/O in bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuestStats {
    pub hz: u64,
    pub online_cpus: u32,
    /// All CPU time, idle included.
    pub cpu_total: u64,
    /// Time not idle (user, nice, system, interrupts, steal).
    pub cpu_busy: u64,
    pub cpu_user: u64,
    pub cpu_system: u64,
    /// Busy time of each vCPU.
    pub per_cpu_busy: Vec<u64>,
    pub mem_total_kib: u64,
    pub mem_free_kib: u64,
    pub mem_available_kib: u64,
    pub mem_cached_kib: u64,
    pub mem_inactive_file_kib: u64,
    /// The container's processes (not the tether, not kernel threads).
    pub pids: u64,
    pub networks: Vec<NetCounters>,
    pub disks: Vec<DiskCounters>,
}

/// One interface's counters (`/proc/net/dev`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// One disk's counters (`/proc/diskstats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskCounters {
    pub name: String,
    pub major: u32,
    pub minor: u32,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}
