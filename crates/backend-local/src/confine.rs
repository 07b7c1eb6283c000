//! Confinement of one VM's QEMU: owns the VCH's cgroups and the jail settings, gives a VM's
//! files to its uid, and turns a VM into a [`Plan`] for the spawn's `pre_exec` hook.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hypervisor::BackendError;

use crate::cgroup::{Cgroups, Limits};
use crate::jail::{self, Entry, Plan};
use crate::qemu::{CONSOLE_LOG, ROOT_DISK, TETHER_SOCK};

/// How long an exiting QEMU may keep its cgroup busy.
const CGROUP_RELEASE_WAIT: Duration = Duration::from_secs(2);

/// What every VM's jail shares.
#[derive(Debug)]
pub struct Confinement {
    pub cgroups: Cgroups,
    /// An empty directory the jail's tmpfs is mounted on (only inside the jail's namespace).
    mountpoint: PathBuf,
    /// `/usr`, `/lib` links, devices, an outside QEMU binary.
    system: Vec<Entry>,
    /// Kernel and initramfs, read-only in every jail.
    boot_files: Vec<PathBuf>,
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> BackendError {
    move |source| BackendError::Io { context, source }
}

fn chown(path: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), BackendError> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(io_err(format!("giving {} to uid {uid}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io_err(format!("setting the mode of {}", path.display())))
}

impl Confinement {
    /// The jails of a VCH, their tmpfs mounted on `mountpoint` (made here, an empty
    /// directory); `None` (with one log line) when this process cannot build jails (not root).
    pub fn new(
        mountpoint: &Path,
        cgroup_root: &Path,
        cgroup_parent: &Path,
        qemu: &Path,
        kvm: bool,
        boot_files: Vec<PathBuf>,
    ) -> Result<Option<Self>, BackendError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            tracing::warn!(
                "not running as root: QEMU runs without its jail (own uid, mount namespace, \
                 cgroup); run the appliance as root to confine VMs"
            );
            return Ok(None);
        }
        for f in &boot_files {
            let readable = std::fs::metadata(f).is_ok_and(|m| m.permissions().mode() & 0o004 != 0);
            if !readable {
                tracing::warn!(
                    "{} is not world-readable, so jailed QEMU cannot load it; chmod o+r it",
                    f.display()
                );
            }
        }
        let mountpoint = mountpoint.to_path_buf();
        match std::fs::create_dir(&mountpoint) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(format!("creating {}", mountpoint.display()))(e)),
        }
        let cgroups = Cgroups::new(cgroup_root, cgroup_parent);
        tracing::info!(
            cgroups = ?cgroups.layout(),
            parent = %cgroup_parent.display(),
            "QEMU runs jailed: own uid, mount namespace, seccomp, cgroup"
        );
        Ok(Some(Self {
            cgroups,
            mountpoint,
            system: jail::system_entries(qemu, kvm),
            boot_files,
        }))
    }

    /// Makes the VM's files QEMU's (`root.qcow2`, `console.log` are its own; the directory is
    /// root's with group traverse only, so QEMU cannot add, remove or rename files in it).
    pub fn give_files(&self, dir: &Path, uid: u32) -> Result<(), BackendError> {
        chown(dir, 0, uid, 0o710)?;
        chown(&dir.join(ROOT_DISK), uid, uid, 0o600)?;
        let console = dir.join(CONSOLE_LOG);
        let _ = std::fs::remove_file(&console);
        std::fs::File::create(&console)
            .map_err(io_err(format!("creating {}", console.display())))?;
        chown(&console, uid, uid, 0o600)
    }

    /// Lets QEMU connect to the host's tether listener.
    pub fn give_socket(&self, dir: &Path, uid: u32) -> Result<(), BackendError> {
        self.give(&dir.join(TETHER_SOCK), uid)
    }

    /// Gives QEMU one more file of its directory (a socket it connects to).
    pub fn give(&self, path: &Path, uid: u32) -> Result<(), BackendError> {
        chown(path, uid, uid, 0o600)
    }

    /// Creates the VM's cgroup and the plan of its jail; `base` is its image's base disk.
    /// `own_proc` gives the jail a procfs of its own (for RAM passed as a memfd).
    #[allow(clippy::too_many_arguments)]
    pub fn plan(
        &self,
        id: &str,
        dir: &Path,
        base: Option<&Path>,
        uid: u32,
        limits: Limits,
        own_proc: bool,
    ) -> Result<Plan, BackendError> {
        // The base disk is shared read-only by the image's VMs; its directory stays private.
        if let Some(base) = base {
            let mode = std::fs::metadata(base).map(|m| m.permissions().mode());
            if mode.is_ok_and(|m| m & 0o004 == 0) {
                std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o644))
                    .map_err(io_err(format!("setting the mode of {}", base.display())))?;
            }
        }
        let procs = match self.cgroups.create(id, limits) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(
                    vm = id,
                    "creating the VM's cgroup failed ({e}); it runs without CPU, memory and \
                     task limits: check that {} is writable",
                    self.cgroups.root().display()
                );
                Vec::new()
            }
        };
        let mut entries = self.system.clone();
        entries.push(Entry::Dir {
            path: dir.to_path_buf(),
            writable: true,
        });
        entries.extend(base.map(|b| Entry::File(b.to_path_buf())));
        entries.extend(self.boot_files.iter().cloned().map(Entry::File));
        if own_proc {
            entries.push(Entry::Proc("/proc".into()));
        }
        Plan::new(&self.mountpoint, &entries, dir, uid, &procs)
            .and_then(|p| p.with_pid_file(&dir.join(crate::qemu::PID_FILE)))
            .map_err(|e| BackendError::Failed(format!("preparing the jail of VM {id}: {e}")))
    }

    /// Changes the CPU weight of a running VM (its cgroup's).
    pub fn set_cpu_shares(&self, id: &str, shares: Option<u64>) -> Result<(), BackendError> {
        (self.cgroups.set_cpu_shares(id, shares))
            .map_err(io_err(format!("setting the CPU shares of VM {id}")))
    }

    /// Removes the VM's cgroup once its QEMU is gone.
    pub async fn release(&self, id: &str) {
        self.cgroups.remove(id, CGROUP_RELEASE_WAIT).await;
    }
}

/// The affinity mask of `cpus` (none: `None`, QEMU runs where the host puts it), made before
/// the fork so that [`pin`] only makes a system call.
pub fn cpu_set(cpus: &[u32]) -> Option<libc::cpu_set_t> {
    if cpus.is_empty() {
        return None;
    }
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in cpus {
        // SAFETY: CPU_SET bounds-checks against the set's size.
        unsafe { libc::CPU_SET(*c as usize, &mut set) };
    }
    Some(set)
}

/// Pins the calling process (a forked QEMU, before exec) to `set` (`--cpuset-cpus`).
pub fn pin(set: &Option<libc::cpu_set_t>) -> std::io::Result<()> {
    let Some(set) = set else { return Ok(()) };
    // SAFETY: sched_setaffinity reads a cpu_set_t of the size given; async-signal-safe.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
