//! Every touch of the host the tether makes while it sets up the container and runs its
//! processes, behind two traits: [`Syscall`] for the tether itself and [`ChildSyscall`] for a
//! forked child between fork and exec. [`LinuxSyscall`] makes the calls (the wrappers of
//! `sys.rs` and `std::fs`, unchanged); in tests `fake::RecordingSyscall` records them in order,
//! fails the ones it is told to, and keeps the filesystem in a temporary directory.
//!
//! ```text
//!  setup / confine / mounts ─┐
//!  process (users, stdio,    ├─► &dyn Syscall ──► LinuxSyscall ──► sys.rs, std::fs
//!    signals, spawn) ────────┘        │ spawn(plan, exec::run_child)
//!                                     ▼
//!  exec::run_child / privs ───► &dyn ChildSyscall (the same object, in the forked child)
//! ```
//!
//! Paths are the VM's own (`/root-fs/etc/passwd`), whatever implementation is behind them.
//! The port to the host (`port.rs`), the reaper's `waitid` loop and PID 1's first moments in
//! `main.rs` stay outside: they are the tether's plumbing, not the container's setup.

mod linux;

#[cfg(test)]
pub mod fake;
#[cfg(test)]
mod fake_call;

use std::ffi::CStr;
use std::io;
use std::os::fd::RawFd;
use std::path::Path;

pub use linux::LinuxSyscall;

use crate::plan::{CStrArray, ChildFailure, ChildPlan};
use crate::sys::Pty;

/// What a forked child runs: its steps up to the exec, made through `sys`. It returns only
/// when it failed (or, with a fake, when the exec was recorded).
pub type ChildMain = fn(sys: &dyn ChildSyscall, plan: &ChildPlan) -> Result<(), ChildFailure>;

/// A filesystem node's type and permission bits, device numbers and owner (stat(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// `st_mode`: the type (`S_IFCHR`, …) and the permission bits.
    pub mode: u32,
    pub rdev: u64,
    pub uid: u32,
    pub gid: u32,
}

impl Node {
    /// A character or block device.
    pub fn is_device(&self) -> bool {
        let kind = self.mode & libc::S_IFMT;
        kind == libc::S_IFCHR || kind == libc::S_IFBLK
    }
}

/// The host calls of the tether itself: mounts and files, the machine's settings, processes
/// and terminals. Errors are the calls' own `io::Error`s; callers word them.
pub trait Syscall: Send + Sync {
    /// mount(2); `fstype` and `data` may be empty.
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: libc::c_ulong,
        data: &str,
    ) -> io::Result<()>;
    /// umount2(2).
    fn umount(&self, target: &Path, flags: libc::c_int) -> io::Result<()>;
    /// sync(2).
    fn sync(&self);

    /// Whether `path` exists (following symlinks).
    fn exists(&self, path: &Path) -> bool;
    /// Whether `path` is a directory (following symlinks).
    fn is_dir(&self, path: &Path) -> bool;
    /// Whether `path` itself is a symlink.
    fn is_symlink(&self, path: &Path) -> bool;
    fn read_to_string(&self, path: &Path) -> io::Result<String>;
    /// The names in directory `path`.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Creates or truncates `path` and writes `data`; the parent must exist.
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// A symlink at `link` pointing to `target`.
    fn symlink(&self, target: &str, link: &Path) -> io::Result<()>;
    /// stat(2), following symlinks.
    fn stat(&self, path: &Path) -> io::Result<Node>;
    /// mknod(2) with the given type and permission bits and device numbers.
    fn mknod(&self, path: &Path, mode: u32, rdev: u64) -> io::Result<()>;
    /// lchown(2): the node itself, never what a symlink names.
    fn chown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()>;
    /// chmod(2) to the permission bits of `mode`.
    fn chmod(&self, path: &Path, mode: u32) -> io::Result<()>;

    /// Sets CLOCK_REALTIME to `nanos` since the Unix epoch.
    fn set_clock(&self, nanos: u64) -> io::Result<()>;
    /// Credits `bytes` to the kernel's entropy pool.
    fn add_entropy(&self, bytes: &[u8]) -> io::Result<()>;
    fn set_hostname(&self, name: &str) -> io::Result<()>;
    fn set_domainname(&self, name: &str) -> io::Result<()>;
    /// Brings the loopback interface up.
    fn loopback_up(&self) -> io::Result<()>;
    /// Finds the interface with `iface.mac`, gives it its address and brings it up; returns
    /// its name.
    fn configure_interface(&self, iface: &tether_proto::Interface) -> io::Result<String>;
    /// Gives interface `name` (configured, up) its IPv6 address and, with a gateway, the IPv6
    /// default route through it.
    fn configure_ipv6(&self, name: &str, cfg: &tether_proto::Ipv6Config) -> io::Result<()>;
    /// Gives interface `name` (configured, up) its link-local addresses (`--link-local-ip`).
    fn add_link_local(&self, name: &str, addresses: &[std::net::IpAddr]) -> io::Result<()>;
    /// Gives the interface whose MAC is `from` the MAC `to`, leaving it down.
    fn change_mac(&self, from: &str, to: &str) -> io::Result<()>;
    /// Adds the default route through `gateway`.
    fn default_route(&self, gateway: std::net::Ipv4Addr) -> io::Result<()>;
    /// Reboots (which ends the VM); returns only when that failed.
    fn reboot(&self) -> io::Result<()>;

    /// kill(2): a PID, or with -1 every process but PID 1.
    fn kill(&self, pid: i32, signal: i32) -> io::Result<()>;
    /// Forks a child that runs `main` with `plan` and execs. The outer error is the fork's;
    /// the inner one where and why the child failed. Returns the child's PID once it has
    /// exec'd.
    fn spawn(&self, plan: &ChildPlan, main: ChildMain) -> io::Result<Result<i32, ChildFailure>>;

    /// Opens a new pseudo-terminal on `ptmx` (the container's `/dev/pts/ptmx`).
    fn open_pty(&self, ptmx: &Path) -> io::Result<Pty>;
    /// Sets the window size of the terminal on `fd`.
    fn set_winsize(&self, fd: RawFd, rows: u16, cols: u16) -> io::Result<()>;
    /// fchown(2).
    fn fchown(&self, fd: RawFd, uid: u32, gid: u32) -> io::Result<()>;
}

/// The host calls of a forked child before it execs. The real ones are async-signal-safe and
/// allocate nothing, since the child of a multi-threaded process may do nothing else; their
/// arguments are prepared before the fork ([`ChildPlan`]).
pub trait ChildSyscall {
    /// An empty signal mask and the default SIGPIPE disposition.
    fn reset_signals(&self);
    fn setsid(&self) -> io::Result<()>;
    fn dup2(&self, src: RawFd, dst: RawFd) -> io::Result<()>;
    /// Makes the terminal on `fd` the controlling terminal.
    fn set_controlling_tty(&self, fd: RawFd) -> io::Result<()>;
    /// Joins the cgroup whose `cgroup.procs` is `procs`.
    fn join_cgroup(&self, procs: &CStr) -> io::Result<()>;
    fn setrlimit(&self, resource: u32, limit: &libc::rlimit) -> io::Result<()>;
    /// A mount namespace of its own whose root is `root`, chrooted into.
    fn enter_root(&self, root: &CStr) -> io::Result<()>;
    fn chdir(&self, dir: &CStr) -> io::Result<()>;
    /// Drops `cap` from the bounding set.
    fn drop_bounding(&self, cap: u32) -> io::Result<()>;
    /// Keeps the permitted set across the change to a non-zero uid.
    fn keep_caps(&self) -> io::Result<()>;
    fn setgroups(&self, groups: &[libc::gid_t]) -> io::Result<()>;
    fn setgid(&self, gid: u32) -> io::Result<()>;
    fn setuid(&self, uid: u32) -> io::Result<()>;
    /// Permitted and effective set become `caps`, inheritable empty.
    fn capset(&self, caps: u64) -> io::Result<()>;
    fn clear_ambient_caps(&self) -> io::Result<()>;
    fn set_no_new_privs(&self) -> io::Result<()>;
    /// execve(2). The real call returns only with the reason it failed; `Ok` means the program
    /// runs (only a fake returns it).
    fn execve(&self, path: &CStr, argv: &CStrArray, env: &CStrArray) -> io::Result<()>;
}
