//! The container's mounts as the tether makes them: [`Mounted`] remembers each mount point in
//! order, so that the power-off unmounts them in reverse. `setup.rs` and `confine.rs` both
//! mount through it; neither needs the other for that.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use crate::syscall::Syscall;

/// The flags of an API filesystem that runs nothing and holds no devices.
pub const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// The mounted container root filesystem.
#[derive(Debug)]
pub struct Mounted {
    pub rootfs: PathBuf,
    /// Mount points in the order they were mounted (unmounted in reverse).
    mounts: Vec<PathBuf>,
    /// `cgroup.procs` of the pids cgroup every process joins, when `--pids-limit` is set.
    pub cgroup_procs: Option<CString>,
    /// With `--read-only`, a writable view of the root for the tether alone (outside the
    /// container's root), where a missing working directory is created as Docker creates it.
    pub writable_root: Option<PathBuf>,
}

impl Mounted {
    /// Nothing mounted yet on `rootfs`.
    pub fn new(rootfs: PathBuf, cgroup_procs: Option<CString>) -> Self {
        Self {
            rootfs,
            mounts: Vec::new(),
            cgroup_procs,
            writable_root: None,
        }
    }

    /// Mounts `src` on `target`, creating the mount point (a file for a bind mount, which may
    /// be of a file), and records it for the power-off.
    pub fn mount_at(
        &mut self,
        sys: &dyn Syscall,
        src: &str,
        target: &Path,
        fstype: &str,
        flags: libc::c_ulong,
        data: &str,
    ) -> Result<(), String> {
        if !sys.exists(target) {
            if flags & libc::MS_BIND != 0 {
                sys.write_file(target, b"")
            } else {
                sys.create_dir_all(target)
            }
            .map_err(|e| format!("creating mount point {} failed: {e}", target.display()))?;
        }
        sys.mount(src, target, fstype, flags, data)
            .map_err(|e| format!("mounting {src} on {} failed: {e}", target.display()))?;
        self.mounts.push(target.to_path_buf());
        Ok(())
    }

    /// Unmounts everything in reverse order, detaching what is still busy.
    pub fn unmount_all(&self, sys: &dyn Syscall) {
        for target in self.mounts.iter().rev() {
            if let Err(e) = sys.umount(target, 0) {
                if e.raw_os_error() == Some(libc::EBUSY) {
                    let _ = sys.umount(target, libc::MNT_DETACH);
                } else {
                    crate::log!("unmounting {} failed: {e}", target.display());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::fake::{Call, RecordingSyscall};

    #[test]
    fn mount_points_are_made_a_file_for_binds_and_a_directory_otherwise() {
        let sys = RecordingSyscall::new();
        sys.dir("/root-fs/dev");
        let mut m = Mounted::new("/root-fs".into(), None);
        let ptmx = Path::new("/root-fs/dev/ptmx");
        m.mount_at(&sys, "/root-fs/dev/pts/ptmx", ptmx, "", libc::MS_BIND, "")
            .unwrap();
        m.mount_at(&sys, "proc", Path::new("/root-fs/proc"), "proc", 0, "")
            .unwrap();
        assert_eq!(
            sys.calls(),
            vec![
                Call::WriteFile {
                    path: "/root-fs/dev/ptmx".into(),
                    data: String::new()
                },
                Call::mount(
                    "/root-fs/dev/pts/ptmx",
                    "/root-fs/dev/ptmx",
                    "",
                    libc::MS_BIND,
                    ""
                ),
                Call::Mkdir("/root-fs/proc".into()),
                Call::mount("proc", "/root-fs/proc", "proc", 0, ""),
            ]
        );
        assert!(sys.host("/root-fs/dev/ptmx").is_file());
    }

    #[test]
    fn unmounting_goes_in_reverse_and_detaches_what_is_busy() {
        let sys = RecordingSyscall::new();
        sys.dir("/root-fs/proc");
        sys.dir("/root-fs/dev");
        let mut m = Mounted::new("/root-fs".into(), None);
        for target in ["/root-fs", "/root-fs/proc", "/root-fs/dev"] {
            m.mount_at(&sys, "x", Path::new(target), "tmpfs", 0, "")
                .unwrap();
        }
        sys.fail(
            libc::EBUSY,
            |c| matches!(c, Call::Umount { target, flags: 0 } if target == "/root-fs/proc"),
        );
        m.unmount_all(&sys);
        let umount = |target: &str, flags| Call::Umount {
            target: target.into(),
            flags,
        };
        assert_eq!(
            sys.mounts()[3..],
            [
                umount("/root-fs/dev", 0),
                umount("/root-fs/proc", 0),
                umount("/root-fs/proc", libc::MNT_DETACH),
                umount("/root-fs", 0),
            ]
        );
    }
}
