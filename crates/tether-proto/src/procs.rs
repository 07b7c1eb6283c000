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
