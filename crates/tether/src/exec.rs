//! Starting a process inside the container: everything the child needs is prepared in the
//! parent ([`ChildPlan`]: environment, `PATH` candidates), then the forked child
//! ([`run_child`]) joins the container (setsid, stdio, terminal, pids cgroup, resource limits,
//! its own mount namespace whose root is the container's, cwd), drops its privileges
//! (`privs.rs`) and execs. A close-on-exec pipe carries the stage and errno of a failure back
//! to the parent, which words it as runc does ([`failure`]).
//!
//! The root is entered as runc does on a ramfs root: the container's root mount is moved
//! onto `/` in a private mount namespace, then chrooted into, so `..` from it (a chroot
//! escape, with `CAP_SYS_CHROOT` that Docker's default set grants) never leads back into the
//! initramfs and its devices.

use std::io;
use std::os::fd::RawFd;

use crate::plan::{ChildFailure, ChildPlan, Stage};
use crate::privs;
use crate::syscall::ChildSyscall;

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

/// What a forked child does: joins the container, drops its privileges and execs. Returns
/// only when a step failed (or, with a fake, once the exec is recorded).
pub fn run_child(sys: &dyn ChildSyscall, plan: &ChildPlan) -> Result<(), ChildFailure> {
    enter_container(sys, plan)?;
    privs::drop_privileges(sys, plan)?;
    exec(sys, plan)
}

/// A session of its own with the planned stdio (and terminal), the pids cgroup, the resource
/// limits, then the container's root and the working directory.
fn enter_container(sys: &dyn ChildSyscall, plan: &ChildPlan) -> Result<(), ChildFailure> {
    sys.reset_signals();
    sys.setsid().map_err(Stage::Stdio.failed())?;
    for (target, &src) in plan.stdio.iter().enumerate() {
        sys.dup2(src, target as RawFd)
            .map_err(Stage::Stdio.failed())?;
    }
    if plan.tty {
        sys.set_controlling_tty(0).map_err(Stage::Stdio.failed())?;
    }
    let r = &plan.restrict;
    if let Some(procs) = &r.cgroup_procs {
        sys.join_cgroup(procs).map_err(Stage::Cgroup.failed())?;
    }
    for (resource, limit) in &r.rlimits {
        sys.setrlimit(*resource, limit)
            .map_err(Stage::Limits.failed())?;
    }
    sys.enter_root(&plan.root).map_err(Stage::Root.failed())?;
    sys.chdir(&plan.cwd).map_err(Stage::Cwd.failed())
}

/// Execs the first candidate that exists, as execvp does: a candidate that is missing is
/// skipped, one that is not permitted is remembered (EACCES wins over ENOENT), any other
/// error ends the search.
fn exec(sys: &dyn ChildSyscall, plan: &ChildPlan) -> Result<(), ChildFailure> {
    let mut saw_eacces = false;
    let mut errno = libc::ENOENT;
    for c in &plan.candidates {
        let Err(e) = sys.execve(c, &plan.argv, &plan.env) else {
            return Ok(());
        };
        errno = e.raw_os_error().unwrap_or(0);
        match errno {
            libc::EACCES => saw_eacces = true,
            libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
            _ => return Err((Stage::Exec, errno)),
        }
    }
    if saw_eacces {
        errno = libc::EACCES;
    }
    Err((Stage::Exec, errno))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Restrictions;
    use crate::syscall::fake::{Call, RecordingSyscall};
    use crate::user::Identity;

    fn plan(candidates: &[&str]) -> ChildPlan {
        let candidates: Vec<String> = candidates.iter().map(|s| s.to_string()).collect();
        let root = Identity {
            uid: 0,
            gid: 0,
            groups: vec![0],
            home: "/root".into(),
        };
        let argv = ["ls".to_string()];
        let r = Restrictions::default();
        ChildPlan::new(
            &argv,
            &[],
            &candidates,
            "/root-fs",
            "/",
            &root,
            [0, 1, 2],
            false,
            r,
        )
        .unwrap()
    }

    #[test]
    fn a_candidate_not_permitted_wins_over_later_missing_ones_and_other_errors_stop() {
        let sys = RecordingSyscall::new();
        sys.fail(libc::EACCES, |c| c == &Call::Execve("/a/ls".into()));
        sys.fail(libc::ENOENT, |c| c == &Call::Execve("/b/ls".into()));
        sys.fail(libc::ENOEXEC, |c| c == &Call::Execve("/c/ls".into()));
        let p = plan(&["/a/ls", "/b/ls"]);
        assert_eq!(run_child(&sys, &p), Err((Stage::Exec, libc::EACCES)));
        let p = plan(&["/c/ls", "/d/ls"]);
        assert_eq!(run_child(&sys, &p), Err((Stage::Exec, libc::ENOEXEC)));
        assert!(!sys.calls().contains(&Call::Execve("/d/ls".into())));
        assert_eq!(
            run_child(&sys, &plan(&[])),
            Err((Stage::Exec, libc::ENOENT))
        );
    }

    #[test]
    fn a_root_that_cannot_be_entered_stops_before_the_working_directory() {
        let sys = RecordingSyscall::new();
        sys.fail(libc::EINVAL, |c| matches!(c, Call::EnterRoot(_)));
        assert_eq!(
            run_child(&sys, &plan(&["/bin/ls"])),
            Err((Stage::Root, libc::EINVAL))
        );
        assert_eq!(
            sys.calls().last(),
            Some(&Call::EnterRoot("/root-fs".into()))
        );
    }

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
        let (code, msg) = failure(Stage::Cwd, libc::EACCES, "ls", "/secret");
        assert_eq!(code, 126);
        assert!(msg.ends_with("failed: permission denied"), "{msg}");
    }
}
