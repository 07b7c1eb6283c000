//! What a VCH leaves on the host outside its own directory, and its removal: the cgroups its
//! container VMs ran in, and the host-wide claims on their uids (`/run/vic/uids`, kept by the
//! local backend so that no two QEMUs on the host share a uid).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::output::info;

/// Where the VMs of every VCH claim their uids (the local backend's default).
pub const UID_CLAIMS: &str = "/run/vic/uids";

/// Removes the cgroups `vic/<name>/<vm>` the appliance made for the VCH's container VMs, in
/// every hierarchy under `cgroup_root`, and `vic` itself when no other VCH uses it. A process
/// still in one (a QEMU whose appliance died before it recorded its PID) is killed first:
/// only the VCH's own VMs are ever put there.
pub fn remove_cgroups(cgroup_root: &Path, name: &str) {
    let mut roots = vec![cgroup_root.to_path_buf()];
    if let Ok(entries) = fs::read_dir(cgroup_root) {
        roots.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    for root in roots {
        let vch = root.join("vic").join(name);
        if !vch.is_dir() {
            continue;
        }
        if let Ok(vms) = fs::read_dir(&vch) {
            for vm in vms.flatten().filter(|e| e.path().is_dir()) {
                kill_members(&vm.path());
                // A QEMU just killed may hold its cgroup until it is reaped: retry a while.
                let deadline = Instant::now() + Duration::from_secs(3);
                while let Err(e) = fs::remove_dir(vm.path()) {
                    if Instant::now() >= deadline {
                        info(format!(
                            "removing cgroup {} failed: {e}",
                            vm.path().display()
                        ));
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        let _ = fs::remove_dir(&vch);
        let _ = fs::remove_dir(root.join("vic"));
    }
}

/// SIGKILLs every process in cgroup `dir`.
fn kill_members(dir: &Path) {
    let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        info(format!("stopping process {pid}, left in {}", dir.display()));
        // SAFETY: kill has no memory-safety preconditions; the PID is a member of the VCH's
        // own cgroup.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Removes the uid claims of VMs under `vch_dir` (each claim names its VM's directory).
pub fn release_uid_claims(claims: &Path, vch_dir: &Path) {
    let vch_dir = fs::canonicalize(vch_dir).unwrap_or_else(|_| vch_dir.to_path_buf());
    let Ok(entries) = fs::read_dir(claims) else {
        return;
    };
    for e in entries.flatten() {
        let owner = fs::read_to_string(e.path()).unwrap_or_default();
        let owner = Path::new(owner.trim_end());
        let owner = fs::canonicalize(owner).unwrap_or_else(|_| owner.to_path_buf());
        if owner.starts_with(&vch_dir) {
            let _ = fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_removes_the_vchs_cgroups_and_keeps_others() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for d in [
            "pids/vic/a/vm1",
            "pids/vic/a/vm2",
            "memory/vic/a/vm1",
            "memory/vic/b/vm3",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        remove_cgroups(root, "a");
        assert!(!root.join("pids/vic").exists());
        assert!(!root.join("memory/vic/a").exists());
        assert!(root.join("memory/vic/b/vm3").exists());
    }

    #[test]
    fn delete_gives_back_the_vchs_uid_claims_only() {
        let tmp = tempfile::tempdir().unwrap();
        let claims = tmp.path().join("uids");
        fs::create_dir_all(&claims).unwrap();
        let (a, b) = (tmp.path().join("vch/a"), tmp.path().join("vch/ab"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        fs::write(
            claims.join("900001"),
            format!("{}\n", a.join("vms/vms/x").display()),
        )
        .unwrap();
        fs::write(
            claims.join("900002"),
            format!("{}\n", b.join("vms/vms/y").display()),
        )
        .unwrap();
        release_uid_claims(&claims, &a);
        assert!(!claims.join("900001").exists());
        assert!(
            claims.join("900002").exists(),
            "another VCH's (a name that shares a prefix)"
        );
    }
}
