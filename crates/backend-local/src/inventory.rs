//! A VCH's VMs seen from outside its appliance: vic-machine counts and stops them while the
//! appliance is down (delete, a failed create), through these functions rather than by
//! reading the backend's files itself.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::qemu::PID_FILE;

/// Whether process `pid` has a command line naming VM `id` (QEMU's `-name` does).
pub(crate) fn names_vm(pid: u32, id: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(id))
}

/// Whether `pid` is a live process whose working directory is `dir` (our QEMU for this VM).
pub(crate) fn is_our_qemu(pid: u32, dir: &Path) -> bool {
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // A zombie still has /proc entries but is no longer running.
    let zombie = stat
        .rsplit(')')
        .next()
        .is_some_and(|rest| rest.trim_start().starts_with('Z'));
    // A jailed QEMU's cwd reads as the path it was given (mirrored inside its jail).
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    !zombie && cwd.is_ok_and(|c| c == canonical || c == dir)
}

/// The QEMU of the VM in `dir`, if it runs: the PID its `qemu.pid` names, running in that
/// directory (or, as QEMUs of earlier versions were started, naming it on its command line).
fn qemu_of(dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if is_our_qemu(pid, dir) {
        return Some(pid);
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let named = String::from_utf8_lossy(&cmdline).contains(&*canonical.to_string_lossy());
    (named && alive(pid)).then_some(pid)
}

fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty()
        && !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
}

/// The VMs of the backend rooted at `root` (the appliance's `vms` directory) whose QEMU runs,
/// with its PID.
pub fn running(root: &Path) -> Vec<(String, u32)> {
    let Ok(entries) = std::fs::read_dir(root.join("vms")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, u32)> = entries
        .flatten()
        .filter_map(|e| {
            let pid = qemu_of(&e.path())?;
            Some((e.file_name().to_string_lossy().to_string(), pid))
        })
        .collect();
    out.sort();
    out
}

/// The console log of each container VM of the backend rooted at `root`, by VM ID (a
/// template's is not a container's), sorted.
pub fn console_logs(root: &Path) -> Vec<(String, std::path::PathBuf)> {
    let Ok(entries) = std::fs::read_dir(root.join("vms")) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().to_string_lossy().to_string();
            let log = e.path().join(crate::qemu::CONSOLE_LOG);
            let container = crate::check_id("VM", &id).is_ok() && id != "templates";
            (container && log.is_file()).then_some((id, log))
        })
        .collect();
    out.sort();
    out
}

/// SIGKILLs every running QEMU of the backend rooted at `root` and waits up to `wait` for
/// each to go. Returns the PIDs that were killed.
pub fn kill_all(root: &Path, wait: Duration) -> Vec<u32> {
    let running = running(root);
    for (_, pid) in &running {
        // SAFETY: kill has no memory-safety preconditions; the PID is this VCH's QEMU (its
        // pid file names it and it runs in the VM's directory).
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
    }
    let deadline = Instant::now() + wait;
    for (_, pid) in &running {
        while alive(*pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    running.into_iter().map(|(_, pid)| pid).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_qemus_in_their_directory_count() {
        let root = tempfile::tempdir().unwrap();
        let vms = root.path().join("vms");
        // A process that runs in its VM's directory, one that does not, and a stale file.
        let mine = vms.join("a");
        let other = vms.join("b");
        let stale = vms.join("c");
        for d in [&mine, &other, &stale] {
            std::fs::create_dir_all(d).unwrap();
        }
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(&mine)
            .spawn()
            .unwrap();
        std::fs::write(mine.join(PID_FILE), child.id().to_string()).unwrap();
        std::fs::write(other.join(PID_FILE), std::process::id().to_string()).unwrap();
        std::fs::write(stale.join(PID_FILE), "999999999").unwrap();
        assert_eq!(running(root.path()), vec![("a".to_string(), child.id())]);
        assert_eq!(
            kill_all(root.path(), Duration::from_secs(5)),
            vec![child.id()]
        );
        let _ = child.wait();
        assert!(running(root.path()).is_empty());
    }

    #[test]
    fn console_logs_are_the_containers_only() {
        let root = tempfile::tempdir().unwrap();
        let vms = root.path().join("vms");
        for d in ["a1", "b2", "templates/t-256m-1c-3n", ".jail"] {
            std::fs::create_dir_all(vms.join(d)).unwrap();
            std::fs::write(vms.join(d).join("console.log"), "x").unwrap();
        }
        std::fs::create_dir_all(vms.join("c3")).unwrap();
        let logs = console_logs(root.path());
        let ids: Vec<&str> = logs.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["a1", "b2"]);
        assert_eq!(logs[0].1, vms.join("a1/console.log"));
    }
}
