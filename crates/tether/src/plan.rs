//! What the parent prepares before it forks a process: the [`ChildPlan`] the child reads,
//! everything in it allocated up front (the child of a multi-threaded fork may only make
//! async-signal-safe calls), and the [`Stage`] at which a child can fail.
//!
//! The plan is plain data. What the child does with it, in order, is `exec::run_child`; the
//! fork itself is [`crate::syscall::Syscall::spawn`].

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

use crate::sys::cstrings;
pub use crate::sys::CStrArray;
use crate::user::Identity;

/// What the child applies to itself before it execs, besides its credentials.
#[derive(Debug, Default)]
pub struct Restrictions {
    /// `cgroup.procs` of the pids cgroup to join.
    pub cgroup_procs: Option<CString>,
    /// `setrlimit` resource numbers and values.
    pub rlimits: Vec<(u32, libc::rlimit)>,
    /// Bounding, permitted and effective set; `None` keeps every capability.
    pub capabilities: Option<u64>,
    /// The highest capability the kernel knows (`/proc/sys/kernel/cap_last_cap`).
    pub last_cap: u32,
    pub no_new_privs: bool,
}

/// Where in the child a spawn failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    Stdio = 0,
    Root = 1,
    Cwd = 2,
    Credentials = 3,
    Exec = 4,
    Cgroup = 5,
    Limits = 6,
    Capabilities = 7,
}

/// A failed child: the stage and the errno.
pub type ChildFailure = (Stage, i32);

impl Stage {
    pub fn from_u8(b: u8) -> Self {
        match b {
            0 => Self::Stdio,
            1 => Self::Root,
            2 => Self::Cwd,
            3 => Self::Credentials,
            5 => Self::Cgroup,
            6 => Self::Limits,
            7 => Self::Capabilities,
            _ => Self::Exec,
        }
    }

    /// Tags an error with this stage, for `map_err`.
    pub fn failed(self) -> impl Fn(io::Error) -> ChildFailure {
        move |e| (self, e.raw_os_error().unwrap_or(0))
    }
}

/// Everything the child needs, prepared by the parent.
pub struct ChildPlan {
    pub argv: CStrArray,
    pub env: CStrArray,
    /// The paths to try for argv\[0\], in order.
    pub candidates: Vec<CString>,
    pub root: CString,
    pub cwd: CString,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<libc::gid_t>,
    /// Descriptors that become 0, 1 and 2.
    pub stdio: [RawFd; 3],
    /// Make fd 0 the controlling terminal.
    pub tty: bool,
    pub restrict: Restrictions,
}

impl ChildPlan {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        argv: &[String],
        env: &[String],
        candidates: &[String],
        root: &str,
        cwd: &str,
        ident: &Identity,
        stdio: [RawFd; 3],
        tty: bool,
        restrict: Restrictions,
    ) -> io::Result<Self> {
        Ok(Self {
            argv: CStrArray::new(argv)?,
            env: CStrArray::new(env)?,
            candidates: cstrings(candidates)?,
            root: CString::new(root)?,
            cwd: CString::new(cwd)?,
            uid: ident.uid,
            gid: ident.gid,
            groups: ident.groups.clone(),
            stdio,
            tty,
            restrict,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_survive_the_pipe_byte() {
        for stage in [
            Stage::Stdio,
            Stage::Root,
            Stage::Cwd,
            Stage::Credentials,
            Stage::Exec,
            Stage::Cgroup,
            Stage::Limits,
            Stage::Capabilities,
        ] {
            assert_eq!(Stage::from_u8(stage as u8), stage);
        }
    }

    #[test]
    fn argv_with_a_nul_byte_is_refused_and_arrays_end_in_null() {
        let a = CStrArray::new(&["sh".into(), "-c".into()]).unwrap();
        // SAFETY: the array holds two pointers and a null, alive with `a`.
        let last = unsafe { *a.as_ptr().add(2) };
        assert!(last.is_null());
        assert_eq!(a.strings()[1].to_str().unwrap(), "-c");
        let e = CStrArray::new(&["a\0b".into()]).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
