//! Starting a process inside the container: everything the child needs is prepared in the
//! parent (the child of a multi-threaded fork may only make async-signal-safe calls), then the
//! child joins the container (setsid, stdio, terminal, pids cgroup, resource limits, its own
//! mount namespace whose root is the container's, cwd, bounding set, credentials,
//! capabilities, no_new_privs) and execs. A close-on-exec pipe carries the stage and errno of
//! a failure back to the parent.
//!
//! The root is entered as runc does on a ramfs root: the container's root mount is moved
//! onto `/` in a private mount namespace, then chrooted into, so `..` from it (a chroot
//! escape, with `CAP_SYS_CHROOT` that Docker's default set grants) never leads back into the
//! initramfs and its devices.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub use crate::privs::Restrictions;
use crate::privs::{drop_bounding, enter_root, join_cgroup, set_capabilities};

/// `PATH` when the process environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment a process gets: its own, plus `PATH` and `HOME` when missing. A later
/// duplicate of a key wins, as with `docker run -e`.
pub fn build_env(env: &[String], home: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(env.len() + 2);
    for kv in env {
        let key = kv.split('=').next().unwrap_or_default();
        out.retain(|e| e.split('=').next() != Some(key));
        out.push(kv.clone());
    }
    if !out.iter().any(|e| e.starts_with("PATH=")) {
        out.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !out.iter().any(|e| e.starts_with("HOME=")) {
        out.push(format!("HOME={home}"));
    }
    out
}

/// The value of `key` in a `KEY=value` list.
pub fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix(key)?.strip_prefix('='))
}

/// The paths to try, in order, for `argv0` (execvp's rules: a name with a slash is used as is,
/// otherwise each `PATH` entry is tried, an empty entry meaning the working directory).
pub fn exec_candidates(argv0: &str, path: &str) -> Vec<String> {
    if argv0.contains('/') {
        return vec![argv0.to_string()];
    }
    path.split(':')
        .map(|dir| match dir {
            "" => format!("./{argv0}"),
            d => format!("{}/{argv0}", d.trim_end_matches('/')),
        })
        .collect()
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

impl Stage {
    fn from_u8(b: u8) -> Self {
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
}

/// Docker's exit code and message for a failed spawn (runc's wording).
pub fn failure(stage: Stage, errno: i32, argv0: &str, cwd: &str) -> (i32, String) {
    let err = io::Error::from_raw_os_error(errno);
    let enoent = errno == libc::ENOENT || errno == libc::ENOTDIR;
    match stage {
        Stage::Exec if enoent && !argv0.contains('/') => (
            127,
            format!("exec: \"{argv0}\": executable file not found in $PATH"),
        ),
        Stage::Exec if enoent => (
            127,
            format!("exec: \"{argv0}\": stat {argv0}: no such file or directory"),
        ),
        Stage::Exec if errno == libc::EACCES => {
            (126, format!("exec: \"{argv0}\": permission denied"))
        }
        Stage::Exec => (126, format!("exec: \"{argv0}\": {}", strip_os(&err))),
        Stage::Cwd => (
            126,
            format!(
                "chdir to cwd (\"{cwd}\") set in config.json failed: {}",
                strip_os(&err)
            ),
        ),
        Stage::Root => (
            126,
            format!("entering the container root failed: {}", strip_os(&err)),
        ),
        Stage::Credentials => (126, format!("setting the user failed: {}", strip_os(&err))),
        Stage::Stdio => (126, format!("setting up stdio failed: {}", strip_os(&err))),
        Stage::Cgroup => (
            126,
            format!("joining the pids cgroup failed: {}", strip_os(&err)),
        ),
        Stage::Limits => (
            126,
            format!("setting the ulimits failed: {}", strip_os(&err)),
        ),
        Stage::Capabilities => (
            126,
            format!("setting the capabilities failed: {}", strip_os(&err)),
        ),
    }
}

/// "No such file or directory (os error 2)" → "no such file or directory".
fn strip_os(err: &io::Error) -> String {
    let s = err.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s).to_string();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

/// Everything the child needs, as raw pointers into memory the parent keeps alive.
pub struct ChildPlan {
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
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

fn cstrings(items: &[String]) -> io::Result<Vec<CString>> {
    items
        .iter()
        .map(|s| {
            CString::new(s.as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "argument contains NUL"))
        })
        .collect()
}

impl ChildPlan {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        argv: &[String],
        env: &[String],
        candidates: &[String],
        root: &str,
        cwd: &str,
        ident: &crate::user::Identity,
        stdio: [RawFd; 3],
        tty: bool,
        restrict: Restrictions,
    ) -> io::Result<Self> {
        Ok(Self {
            argv: cstrings(argv)?,
            env: cstrings(env)?,
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

fn null_terminated(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Forks and execs `plan`. Returns the child's PID once it has exec'd, or the stage and errno
/// at which it failed (the failed child exits 127 and is left to the caller's reaper).
pub fn spawn(plan: &ChildPlan) -> io::Result<Result<i32, (Stage, i32)>> {
    let argv = null_terminated(&plan.argv);
    let envp = null_terminated(&plan.env);
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these descriptors; each is owned exactly once.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fork has no preconditions; the child below only makes async-signal-safe calls on
    // memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: we are the child; `child` never returns.
        unsafe { child(plan, &argv, &envp, wr.as_raw_fd()) }
    }
    drop(wr);
    let mut buf = [0u8; 5];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reading into the unfilled tail of `buf`.
        let n = unsafe {
            libc::read(
                rd.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        got += n as usize;
    }
    if got == 0 {
        return Ok(Ok(pid));
    }
    let errno = i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]]);
    Ok(Err((Stage::from_u8(buf[0]), errno)))
}

/// The child side of [`spawn`]: only async-signal-safe calls from here on.
///
/// # Safety
/// Must only be called in a freshly forked child; `argv`/`envp` must be null-terminated arrays of
/// pointers into `plan`.
unsafe fn child(
    plan: &ChildPlan,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    err_fd: RawFd,
) -> ! {
    let fail = |stage: Stage| -> ! {
        // SAFETY: errno location is thread-local and valid; write/_exit are async-signal-safe.
        unsafe {
            let errno = *libc::__errno_location();
            let e = errno.to_ne_bytes();
            let msg = [stage as u8, e[0], e[1], e[2], e[3]];
            libc::write(err_fd, msg.as_ptr().cast(), msg.len());
            libc::_exit(127)
        }
    };
    // SAFETY (whole block): plain syscalls on descriptors and strings prepared by the parent.
    unsafe {
        // Undo what the Rust runtime set up for tether: an ignored SIGPIPE survives exec.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        if libc::setsid() < 0 {
            fail(Stage::Stdio);
        }
        for (target, &src) in plan.stdio.iter().enumerate() {
            if libc::dup2(src, target as RawFd) < 0 {
                fail(Stage::Stdio);
            }
        }
        if plan.tty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
            fail(Stage::Stdio);
        }
        let r = &plan.restrict;
        if let Some(procs) = &r.cgroup_procs {
            if join_cgroup(procs) < 0 {
                fail(Stage::Cgroup);
            }
        }
        for (resource, limit) in &r.rlimits {
            if libc::setrlimit(*resource as _, limit) < 0 {
                fail(Stage::Limits);
            }
        }
        if enter_root(&plan.root) < 0 {
            fail(Stage::Root);
        }
        if libc::chdir(plan.cwd.as_ptr()) < 0 {
            fail(Stage::Cwd);
        }
        if let Some(caps) = r.capabilities {
            if drop_bounding(caps, r.last_cap) < 0
                || libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0
            {
                fail(Stage::Capabilities);
            }
        }
        if libc::setgroups(plan.groups.len(), plan.groups.as_ptr()) < 0
            || libc::setgid(plan.gid) < 0
            || libc::setuid(plan.uid) < 0
        {
            fail(Stage::Credentials);
        }
        if let Some(caps) = r.capabilities {
            if set_capabilities(caps, r.last_cap) < 0 {
                fail(Stage::Capabilities);
            }
        }
        if r.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
            fail(Stage::Capabilities);
        }
        let mut saw_eacces = false;
        for c in &plan.candidates {
            libc::execve(c.as_ptr(), argv.as_ptr(), envp.as_ptr());
            let errno = *libc::__errno_location();
            match errno {
                libc::EACCES => saw_eacces = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => fail(Stage::Exec),
            }
        }
        if saw_eacces {
            *libc::__errno_location() = libc::EACCES;
        } else if plan.candidates.is_empty() {
            *libc::__errno_location() = libc::ENOENT;
        }
        fail(Stage::Exec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_gets_default_path_and_home() {
        let env = build_env(&["A=1".into()], "/home/vic");
        assert_eq!(
            env,
            vec!["A=1", &format!("PATH={DEFAULT_PATH}"), "HOME=/home/vic"]
        );
    }

    #[test]
    fn env_keeps_given_path_and_home_and_last_duplicate_wins() {
        let env = build_env(
            &[
                "PATH=/x".into(),
                "HOME=/h".into(),
                "A=1".into(),
                "A=2".into(),
            ],
            "/root",
        );
        assert_eq!(env, vec!["PATH=/x", "HOME=/h", "A=2"]);
        assert_eq!(env_value(&env, "PATH"), Some("/x"));
        assert_eq!(env_value(&env, "PAT"), None);
    }

    #[test]
    fn candidates_follow_execvp() {
        assert_eq!(
            exec_candidates("ls", "/usr/bin:/bin/::/sbin"),
            vec!["/usr/bin/ls", "/bin/ls", "./ls", "/sbin/ls"]
        );
        assert_eq!(exec_candidates("./run.sh", "/bin"), vec!["./run.sh"]);
        assert_eq!(exec_candidates("/bin/sh", "/usr/bin"), vec!["/bin/sh"]);
    }

    #[test]
    fn failures_use_runc_wording_and_docker_codes() {
        assert_eq!(
            failure(Stage::Exec, libc::ENOENT, "nosuch", "/"),
            (
                127,
                "exec: \"nosuch\": executable file not found in $PATH".to_string()
            )
        );
        assert_eq!(failure(Stage::Exec, libc::ENOENT, "/nosuch", "/").0, 127);
        assert_eq!(
            failure(Stage::Exec, libc::EACCES, "/etc/passwd", "/"),
            (126, "exec: \"/etc/passwd\": permission denied".to_string())
        );
        assert_eq!(
            failure(Stage::Capabilities, libc::EPERM, "ls", "/").1,
            "setting the capabilities failed: operation not permitted"
        );
        assert_eq!(
            failure(Stage::Limits, libc::EPERM, "ls", "/").1,
            "setting the ulimits failed: operation not permitted"
        );
        assert_eq!(Stage::from_u8(Stage::Cgroup as u8), Stage::Cgroup);
        let (code, msg) = failure(Stage::Cwd, libc::EACCES, "ls", "/secret");
        assert_eq!(code, 126);
        assert!(msg.ends_with("failed: permission denied"), "{msg}");
    }
}
