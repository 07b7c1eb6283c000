//! What a `Spawn` becomes before the fork: who the process runs as (resolved against the
//! container's own /etc/passwd and /etc/group), its environment and the paths to try for its
//! command, its working directory (made when missing, as Docker does) and the restrictions the
//! child applies to itself.

use std::path::{Path, PathBuf};

use tether_proto::guest::RLIMITS;
use tether_proto::Process;

use crate::exec;
use crate::mounts::Mounted;
use crate::plan::Restrictions;
use crate::syscall::Syscall;
use crate::user;

/// A process ready to be planned.
pub struct Launch {
    pub ident: user::Identity,
    pub env: Vec<String>,
    /// The paths to try for the command, in order.
    pub candidates: Vec<String>,
    /// The working directory inside the container.
    pub cwd: PathBuf,
    pub restrict: Restrictions,
}

/// Prepares `p` (whose command is `argv0`) to run in `mounted`. Errors are the messages of
/// `SpawnFailed`.
pub fn prepare(
    sys: &dyn Syscall,
    p: &Process,
    argv0: &str,
    mounted: &Mounted,
) -> Result<Launch, String> {
    let rootfs = mounted.rootfs.as_path();
    let ident = identity(sys, rootfs, p).map_err(|e| e.to_string())?;
    let restrict = restrictions(sys, p, mounted)?;
    let env = exec::build_env(&p.env, &ident.home);
    let path = exec::env_value(&env, "PATH").unwrap_or(exec::DEFAULT_PATH);
    let candidates = exec::exec_candidates(argv0, path);
    let writable = mounted.writable_root.as_deref().unwrap_or(rootfs);
    let cwd = ensure_cwd(sys, writable, &p.cwd);
    Ok(Launch {
        ident,
        env,
        candidates,
        cwd,
        restrict,
    })
}

/// Who `p` runs as: its user resolved against the container's /etc/passwd and /etc/group
/// (missing files are empty), plus its `--group-add` groups.
fn identity(
    sys: &dyn Syscall,
    rootfs: &Path,
    p: &Process,
) -> Result<user::Identity, user::UserError> {
    let read = |f: &str| {
        sys.read_to_string(&rootfs.join("etc").join(f))
            .unwrap_or_default()
    };
    let groups = user::parse_group(&read("group"));
    let ident = user::resolve(&p.user, &user::parse_passwd(&read("passwd")), &groups)?;
    user::add_groups(ident, &p.privileges.groups, &groups)
}

/// Creates `cwd` (relative to `rootfs`) when missing, as Docker does for a WorkingDir.
fn ensure_cwd(sys: &dyn Syscall, rootfs: &Path, cwd: &str) -> PathBuf {
    let inside = PathBuf::from(if cwd.is_empty() { "/" } else { cwd });
    let inside = if inside.is_absolute() {
        inside
    } else {
        Path::new("/").join(inside)
    };
    let host = rootfs.join(inside.strip_prefix("/").unwrap_or(&inside));
    if !sys.exists(&host) {
        if let Err(e) = sys.create_dir_all(&host) {
            crate::log!(
                "creating working directory {} failed: {e}",
                inside.display()
            );
        }
    }
    inside
}

/// What the child applies to itself: the pids cgroup, `--ulimit`s and privileges.
fn restrictions(sys: &dyn Syscall, p: &Process, mounted: &Mounted) -> Result<Restrictions, String> {
    let rlimits = (p.privileges.rlimits.iter())
        .map(|r| {
            let resource = RLIMITS
                .iter()
                .position(|n| *n == r.name)
                .ok_or_else(|| format!("invalid ulimit type: {}", r.name))?;
            let limit = libc::rlimit {
                rlim_cur: r.soft,
                rlim_max: r.hard,
            };
            Ok((resource as u32, limit))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let last_cap = sys
        .read_to_string(Path::new("/proc/sys/kernel/cap_last_cap"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    Ok(Restrictions {
        cgroup_procs: mounted.cgroup_procs.clone(),
        rlimits,
        capabilities: p.privileges.capabilities,
        last_cap,
        no_new_privs: p.privileges.no_new_privileges,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::syscall::fake::{Call, RecordingSyscall};
    use tether_proto::guest::Rlimit;

    pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nvic:x:1000:1000::/home/vic:/bin/sh\n";
    pub const GROUP: &str = "root:x:0:\nwheel:x:10:root,vic\nvic:x:1000:\naudio:x:29:vic\n";

    /// A container on /root-fs whose image has a passwd and a group file.
    fn guest() -> RecordingSyscall {
        let sys = RecordingSyscall::new();
        sys.file("/root-fs/etc/passwd", PASSWD);
        sys.file("/root-fs/etc/group", GROUP);
        sys
    }

    fn root() -> Mounted {
        Mounted::new("/root-fs".into(), None)
    }

    fn sh(user: &str) -> Process {
        Process {
            argv: vec!["sh".into()],
            cwd: "/work".into(),
            user: user.into(),
            ..Process::default()
        }
    }

    #[test]
    fn users_resolve_against_the_containers_passwd_and_group() {
        let sys = guest();
        let sys = &sys;
        let who = |user: &str, extra: &[&str]| {
            let mut p = sh(user);
            p.privileges.groups = extra.iter().map(|s| s.to_string()).collect();
            let i = identity(sys, Path::new("/root-fs"), &p).unwrap();
            (i.uid, i.gid, i.groups, i.home)
        };
        let vic = |gid, groups: &[u32]| (1000, gid, groups.to_vec(), "/home/vic".to_string());
        assert_eq!(who("vic", &[]), vic(1000, &[1000, 10, 29]));
        assert_eq!(who("1000", &[]), vic(1000, &[1000, 10, 29]));
        assert_eq!(who("1000:55", &[]), vic(55, &[55, 10, 29]));
        assert_eq!(who("vic:wheel", &[]), vic(10, &[10, 29]));
        assert_eq!(who("4242", &[]), (4242, 0, vec![0], "/".to_string()));
        assert_eq!(
            who("", &["audio", "4242"]),
            (0, 0, vec![0, 10, 29, 4242], "/root".to_string())
        );
        let err = identity(sys, Path::new("/root-fs"), &sh("vic:nogroup")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find group nogroup: no matching entries in group file"
        );
    }

    #[test]
    fn an_image_without_passwd_runs_numeric_users_only() {
        let sys = guest();
        std::fs::remove_file(sys.host("/root-fs/etc/passwd")).unwrap();
        let ident = identity(&sys, Path::new("/root-fs"), &sh("1000:1000")).unwrap();
        assert_eq!(
            (ident.uid, ident.gid, ident.home.as_str()),
            (1000, 1000, "/")
        );
        assert!(identity(&sys, Path::new("/root-fs"), &sh("vic")).is_err());
    }

    #[test]
    fn a_missing_workdir_is_made_and_with_a_read_only_root_in_the_writable_view() {
        let sys = guest();
        let launch = prepare(&sys, &sh(""), "sh", &root()).unwrap();
        assert_eq!(launch.cwd, Path::new("/work"));
        assert_eq!(sys.calls(), [Call::Mkdir("/root-fs/work".into())]);
        let sys = guest();
        let mut m = root();
        m.writable_root = Some("/rw-root".into());
        let launch = prepare(&sys, &sh(""), "sh", &m).unwrap();
        assert_eq!(launch.cwd, Path::new("/work"));
        assert_eq!(sys.calls(), [Call::Mkdir("/rw-root/work".into())]);
        // An existing one is left alone.
        sys.dir("/root-fs/srv");
        let mut p = sh("");
        p.cwd = "srv".into();
        assert_eq!(
            prepare(&sys, &p, "sh", &root()).unwrap().cwd,
            Path::new("/srv")
        );
        assert_eq!(sys.calls().len(), 1);
    }
    #[test]
    fn ulimits_are_resource_numbers_and_an_unknown_one_is_refused() {
        let sys = guest();
        sys.file("/proc/sys/kernel/cap_last_cap", "39\n");
        let mut p = sh("");
        let limit = |name: &str| Rlimit {
            name: name.into(),
            soft: 10,
            hard: 20,
        };
        p.privileges.rlimits = vec![limit("nproc")];
        let r = prepare(&sys, &p, "sh", &root()).unwrap().restrict;
        assert_eq!(r.last_cap, 39);
        let (resource, l) = r.rlimits[0];
        assert_eq!(
            (resource, l.rlim_cur, l.rlim_max),
            (libc::RLIMIT_NPROC, 10, 20)
        );
        p.privileges.rlimits = vec![limit("nproc"), limit("wings")];
        assert_eq!(
            prepare(&sys, &p, "sh", &root()).err().unwrap(),
            "invalid ulimit type: wings"
        );
    }
}
