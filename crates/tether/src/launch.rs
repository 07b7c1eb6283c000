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
