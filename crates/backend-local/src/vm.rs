//! VM directories and QEMU processes: create, power on (listen, spawn, accept), power off,
//! destroy, and the power state, also for QEMU processes started by an earlier appliance.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hypervisor::{BackendError, PowerState, PoweredOn, VmConfig, VmExit};
use tokio::sync::watch;

use crate::cgroup::Limits;
use crate::confine::Confinement;
use crate::inventory::{is_our_qemu, names_vm};
use crate::jail;
use crate::qemu::{CONSOLE_LOG, PID_FILE, ROOT_DISK, TETHER_SOCK};
use crate::uids::Claims;
use crate::vm_channel::{bind, connect};
pub use crate::vm_spec::VmSpec;

const VM_JSON: &str = "vm.json";
pub(crate) const QEMU_LOG: &str = "qemu.log";
/// How long a SIGKILLed QEMU may take to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How to start one VM's QEMU.
pub struct Spawn<'a> {
    /// The base disk of its image (shown read-only in its jail); a template has none.
    pub base: Option<&'a Path>,
    pub qemu: &'a Path,
    pub args: Vec<String>,
    /// The open tap devices of its interfaces, then its data disks, then (for a template or
    /// a clone) its RAM and its saved state, in order: QEMU gets them as descriptors 3, 4, …
    /// (see `qemu::args`).
    pub fds: Vec<std::os::fd::OwnedFd>,
    pub boot_timeout: Duration,
    /// Whether QEMU connects a monitor to `qmp.sock` (a template or a clone): the connection
    /// is returned, and the jail gets a procfs of its own for its RAM's memfd.
    pub qmp: bool,
}

/// A QEMU process this backend started.
struct Running {
    pid: u32,
    exit: watch::Receiver<Option<VmExit>>,
}

/// The VMs under one directory.
pub struct Vms {
    root: PathBuf,
    running: Mutex<HashMap<String, Running>>,
    /// Serialises uid allocation within the VCH.
    uids: Mutex<()>,
    /// Host-wide uid claims, across VCHs.
    claims: Claims,
    pub(crate) confine: Option<Arc<Confinement>>,
}

pub(crate) fn io_err(context: String) -> impl FnOnce(std::io::Error) -> BackendError {
    move |source| BackendError::Io { context, source }
}

pub(crate) fn failed(msg: String) -> BackendError {
    BackendError::Failed(msg)
}

/// The last `n` lines of a log file, for error messages.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

pub(crate) fn kill(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions; `pid` is a positive process ID.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

impl Vms {
    pub fn new(root: PathBuf, claims: Claims, confine: Option<Arc<Confinement>>) -> Self {
        Self {
            root,
            running: Mutex::default(),
            uids: Mutex::default(),
            claims,
            confine,
        }
    }

    /// Gives VM `id`'s jailed QEMU one more file of its directory (a socket it connects to).
    pub fn give(&self, id: &str, path: &Path) -> Result<(), BackendError> {
        match (&self.confine, self.load(id)?.uid) {
            (Some(c), Some(uid)) => c.give(path, uid),
            _ => Ok(()),
        }
    }

    /// Kills the QEMUs this one started that still run (their directory may be gone), and
    /// removes every VM directory, killing its QEMU (what an earlier appliance left half made).
    pub fn forget_all(&self) {
        for (id, r) in self.running().iter() {
            if r.exit.borrow().is_none() && names_vm(r.pid, id) {
                kill(r.pid);
            }
        }
        for id in self.list().unwrap_or_default() {
            if let Some(pid) = self.live_pid(&id) {
                kill(pid);
            }
            let dir = self.dir(&id);
            if let Some(uid) = self.load(&id).ok().and_then(|s| s.uid) {
                let _ = self.claims.release(&dir, uid);
            }
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!("removing {} failed: {e}", dir.display());
            }
        }
    }

    /// The uid a jailed QEMU of `spec` runs as; `None` when VMs are not jailed.
    pub fn jailed_uid(&self, spec: &VmSpec) -> Option<u32> {
        self.confine.as_ref().and(spec.uid)
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        match self.running.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Every VM directory, with or without its `vm.json` (a create cut short has none).
    pub fn list(&self) -> Result<Vec<String>, BackendError> {
        let entries = std::fs::read_dir(&self.root)
            .map_err(io_err(format!("reading {}", self.root.display())))?;
        let mut ids: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().to_string())
            // Never a VM: a hidden entry (ids cannot start with a dot).
            .filter(|name| !name.starts_with('.'))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The first VM whose `vm.json` names `image_id`.
    pub fn using_image(&self, image_id: &str) -> Option<String> {
        let entries = std::fs::read_dir(&self.root).ok()?;
        entries.flatten().find_map(|e| {
            let text = std::fs::read_to_string(e.path().join(VM_JSON)).ok()?;
            let spec: VmSpec = serde_json::from_str(&text).ok()?;
            (spec.image_id == image_id).then_some(spec.id)
        })
    }

    pub async fn create(
        &self,
        vm: &VmConfig,
        root: crate::disk::Root<'_>,
        qemu_img: &Path,
    ) -> Result<(), BackendError> {
        if vm.cpu_shares.is_some() && self.confine.is_none() {
            return Err(crate::vm_edit::unconfined());
        }
        let dir = self.dir(&vm.id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(failed(format!("a VM named {} already exists", vm.id)));
            }
            Err(e) => return Err(io_err(format!("creating {}", dir.display()))(e)),
        }
        let result = async {
            crate::disk::create_root(qemu_img, root, &dir.join(ROOT_DISK)).await?;
            let mut spec = VmSpec {
                id: vm.id.clone(),
                display_name: vm.display_name.clone(),
                image_id: vm.image_id.clone(),
                memory_mib: vm.memory_mib,
                cpus: vm.cpus,
                uid: None,
                nics: vm.nics.clone(),
                disks: vm.disks.clone(),
                shares: vm.shares.clone(),
                host_cpus: vm.host_cpus.clone(),
                cpu_shares: vm.cpu_shares,
            };
            spec.uid = Some(self.allocate_uid(&spec.id)?);
            self.save(&spec)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    pub(crate) fn save(&self, spec: &VmSpec) -> Result<(), BackendError> {
        let dir = self.dir(&spec.id);
        let json = serde_json::to_vec_pretty(spec)
            .map_err(|e| failed(format!("encoding {VM_JSON} failed: {e}")))?;
        let tmp = dir.join("vm.json.tmp");
        std::fs::write(&tmp, json).map_err(io_err(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, dir.join(VM_JSON))
            .map_err(io_err(format!("renaming {}", tmp.display())))
    }

    /// The uids recorded by the VCH's VMs.
    fn used_uids(&self) -> Result<HashSet<u32>, BackendError> {
        Ok(self
            .list()?
            .iter()
            .filter_map(|id| self.load(id).ok()?.uid)
            .collect())
    }

    /// A uid for VM `id` that no other VM of this VCH records and no VM on this host claims,
    /// claimed for it.
    fn allocate_uid(&self, id: &str) -> Result<u32, BackendError> {
        let _held = self.uids.lock().unwrap_or_else(|p| p.into_inner());
        let used = self.used_uids()?;
        self.claims
            .claim(&self.dir(id), jail::uid_candidates(id, &used))
            .map_err(io_err("claiming a VM uid".into()))?
            .ok_or_else(|| failed("every VM uid is in use".into()))
    }

    /// The VM's uid: the one recorded while this VM still holds it host-wide, or (for a VM
    /// of an older version, or one whose uid another VCH's VM took meanwhile) a new one,
    /// recorded.
    fn uid_of(&self, spec: &mut VmSpec) -> Result<u32, BackendError> {
        if let Some(uid) = spec.uid {
            if !jail::valid_uid(uid) {
                return Err(failed(format!(
                    "{VM_JSON} of VM {} names uid {uid}, outside the VM range",
                    spec.id
                )));
            }
            let dir = self.dir(&spec.id);
            let ours = self
                .claims
                .claim(&dir, [uid])
                .map_err(io_err("claiming a VM uid".into()))?;
            if ours == Some(uid) {
                return Ok(uid);
            }
            tracing::warn!(id = %spec.id, uid, "another VM on this host holds this VM's uid: it gets a new one");
        }
        let uid = self.allocate_uid(&spec.id)?;
        spec.uid = Some(uid);
        self.save(spec)?;
        Ok(uid)
    }

    pub fn load(&self, id: &str) -> Result<VmSpec, BackendError> {
        let path = self.dir(id).join(VM_JSON);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BackendError::NoSuchVm(id.to_string()))
            }
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        };
        serde_json::from_str(&text)
            .map_err(|e| failed(format!("{} is corrupt: {e}", path.display())))
    }

    /// The PID of the VM's QEMU if it is running (started by us or by an earlier appliance).
    pub(crate) fn live_pid(&self, id: &str) -> Option<u32> {
        if let Some(r) = self.running().get(id) {
            if r.exit.borrow().is_none() {
                return Some(r.pid);
            }
            return None;
        }
        let dir = self.dir(id);
        let pid: u32 = std::fs::read_to_string(dir.join(PID_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        is_our_qemu(pid, &dir).then_some(pid)
    }

    pub fn state(&self, id: &str) -> PowerState {
        if self.live_pid(id).is_some() {
            PowerState::On
        } else if self.dir(id).join(VM_JSON).is_file() {
            PowerState::Off
        } else {
            PowerState::Absent
        }
    }

    /// Starts the VM's QEMU (jailed when the backend confines VMs) and waits for it to
    /// connect its tether channel (and its monitor, when asked for).
    pub async fn power_on(
        &self,
        mut spec: VmSpec,
        how: Spawn<'_>,
    ) -> Result<(PoweredOn, Option<tokio::net::UnixStream>), BackendError> {
        let Spawn {
            base,
            qemu,
            args,
            fds,
            boot_timeout,
            qmp,
        } = how;
        let id = spec.id.clone();
        let id = id.as_str();
        if let Some(pid) = self.live_pid(id) {
            return Err(failed(format!(
                "VM {id} is already running (QEMU pid {pid})"
            )));
        }
        let dir = self.dir(id);
        let sock = dir.join(TETHER_SOCK);
        let _ = std::fs::remove_file(&sock);
        let listener = bind(&dir, &sock)?;
        let qmp_sock = dir.join(crate::qemu::QMP_SOCK);
        let _ = std::fs::remove_file(&qmp_sock);
        let monitor = qmp.then(|| bind(&dir, &qmp_sock)).transpose()?;
        let plan = match &self.confine {
            Some(c) => {
                let uid = self.uid_of(&mut spec)?;
                c.give_files(&dir, uid)?;
                c.give_socket(&dir, uid)?;
                if qmp {
                    c.give(&qmp_sock, uid)?;
                }
                let limits = Limits::for_vm(spec.memory_mib, spec.cpus)
                    .with_cpu_shares(spec.cpu_shares.map(u64::from));
                Some(c.plan(id, &dir, base, uid, limits, qmp)?)
            }
            None => {
                let _ = std::fs::remove_file(dir.join(CONSOLE_LOG));
                None
            }
        };
        let log = dir.join(QEMU_LOG);
        let log_file =
            std::fs::File::create(&log).map_err(io_err(format!("creating {}", log.display())))?;
        let log_err = log_file
            .try_clone()
            .map_err(io_err(format!("opening {}", log.display())))?;
        let started = std::time::Instant::now();
        let mut cmd = tokio::process::Command::new(qemu);
        cmd.args(&args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .kill_on_drop(false);
        let raw_fds: Vec<i32> = fds.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
        let cpus = crate::confine::cpu_set(&spec.host_cpus);
        // SAFETY: `pass_fds` and `Plan::apply` make only async-signal-safe system calls on data
        // prepared before the fork, and allocate nothing.
        unsafe {
            cmd.pre_exec(move || {
                // A session of its own: no terminal's signals reach it, and when the
                // appliance dies while the VM is paused (QEMU stopped), the kernel does not
                // hang it up as it does a stopped process group orphaned in its session.
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // No transparent huge pages (kept across exec): QEMU asks for them on guest
                // RAM, and a guest touching a few bytes of a 2 MiB range would cost the host
                // all of it. An idle VM's PSS is measured by `make bench`.
                if libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                crate::net::pass_fds(&raw_fds)?;
                crate::confine::pin(&cpus)?;
                match &plan {
                    Some(plan) => plan.apply(),
                    None => Ok(()),
                }
            })
        };
        let spawned = cmd.spawn();
        // QEMU holds them now (or never will): ours close, so a tap goes with its QEMU.
        drop(fds);
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                if let Some(c) = &self.confine {
                    c.release(id).await;
                }
                return Err(io_err(format!("starting {} in its jail", qemu.display()))(
                    e,
                ));
            }
        };
        let pid = child
            .id()
            .ok_or_else(|| failed("QEMU exited before it could be tracked".into()))?;
        let pid_path = dir.join(PID_FILE);
        if let Err(e) = std::fs::write(&pid_path, format!("{pid}\n")) {
            tracing::warn!("writing {} failed: {e}", pid_path.display());
        }
        let (tx, rx) = watch::channel(None);
        let vm_id = id.to_string();
        let confine = self.confine.clone();
        tokio::spawn(async move {
            let detail = match child.wait().await {
                Ok(status) => format!("qemu exited with {status}"),
                Err(e) => format!("waiting for qemu failed: {e}"),
            };
            tracing::debug!(vm = %vm_id, "{detail}");
            if let Some(c) = confine {
                c.release(&vm_id).await;
            }
            let _ = tx.send(Some(VmExit { detail }));
        });
        self.running().insert(
            id.to_string(),
            Running {
                pid,
                exit: rx.clone(),
            },
        );
        let powered = connect(id, &dir, &listener, rx, pid, boot_timeout, started, true).await?;
        let Some(monitor) = monitor else {
            return Ok((powered, None));
        };
        // QEMU connected its monitor before its tether (both at start-up).
        let accepted = tokio::time::timeout(boot_timeout, monitor.accept()).await;
        let _ = std::fs::remove_file(&qmp_sock);
        match accepted {
            Ok(Ok((stream, _))) => Ok((powered, Some(stream))),
            Ok(Err(e)) => {
                kill(pid);
                Err(io_err(format!("accepting the monitor of VM {id}"))(e))
            }
            Err(_) => {
                kill(pid);
                Err(failed(format!(
                    "QEMU of VM {id} did not connect its monitor"
                )))
            }
        }
    }

    /// Listens on the tether socket of a VM whose QEMU outlived the appliance that started
    /// it; QEMU's chardev reconnects within a second and the tether says Hello again.
    pub async fn reattach(&self, id: &str, limit: Duration) -> Result<PoweredOn, BackendError> {
        let Some(pid) = self.live_pid(id) else {
            return Err(failed(format!("VM {id} is not running")));
        };
        let dir = self.dir(id);
        let sock = dir.join(TETHER_SOCK);
        let _ = std::fs::remove_file(&sock);
        let listener = bind(&dir, &sock)?;
        if let Some(c) = &self.confine {
            let mut spec = self.load(id)?;
            c.give_socket(&dir, self.uid_of(&mut spec)?)?;
            if !c.cgroups.holds(id, pid) {
                tracing::warn!(vm = id, pid, "the adopted QEMU is not in the VM's cgroup");
            }
        }
        // Not our child: its exit is seen by watching /proc.
        let (tx, rx) = watch::channel(None);
        {
            let dir = dir.clone();
            let vm_id = id.to_string();
            let confine = self.confine.clone();
            tokio::spawn(async move {
                while is_our_qemu(pid, &dir) {
                    if tx.is_closed() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                tracing::debug!(vm = %vm_id, pid, "adopted qemu exited");
                if let Some(c) = confine {
                    c.release(&vm_id).await;
                }
                let _ = tx.send(Some(VmExit {
                    detail: format!("qemu (pid {pid}) exited"),
                }));
            });
        }
        self.running().insert(
            id.to_string(),
            Running {
                pid,
                exit: rx.clone(),
            },
        );
        let started = std::time::Instant::now();
        connect(id, &dir, &listener, rx, pid, limit, started, false).await
    }

    pub async fn power_off(&self, id: &str, grace: Duration) -> Result<(), BackendError> {
        let Some(pid) = self.live_pid(id) else {
            return match self.state(id) {
                PowerState::Absent => Err(BackendError::NoSuchVm(id.to_string())),
                _ => Ok(()),
            };
        };
        if self.wait_gone(id, pid, grace).await {
            return Ok(());
        }
        tracing::info!(
            vm = id,
            pid,
            "QEMU still running after {grace:?}; killing it"
        );
        kill(pid);
        if self.wait_gone(id, pid, KILL_WAIT).await {
            Ok(())
        } else {
            Err(failed(format!(
                "QEMU (pid {pid}) of VM {id} did not exit within {KILL_WAIT:?} of SIGKILL"
            )))
        }
    }

    /// Waits up to `limit` for the VM's QEMU to be gone.
    async fn wait_gone(&self, id: &str, pid: u32, limit: Duration) -> bool {
        let rx = self.running().get(id).map(|r| r.exit.clone());
        match rx {
            Some(mut rx) => tokio::time::timeout(limit, rx.wait_for(Option::is_some))
                .await
                .is_ok(),
            None => {
                // Not our child (an earlier appliance started it): poll /proc.
                let dir = self.dir(id);
                let deadline = tokio::time::Instant::now() + limit;
                loop {
                    if !is_our_qemu(pid, &dir) {
                        return true;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return false;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    pub async fn destroy(&self, id: &str) -> Result<(), BackendError> {
        if self.state(id) == PowerState::Absent && !self.dir(id).exists() {
            return Err(BackendError::NoSuchVm(id.to_string()));
        }
        self.power_off(id, Duration::ZERO)
            .await
            .or_else(|e| match e {
                BackendError::NoSuchVm(_) => Ok(()),
                e => Err(e),
            })?;
        self.running().remove(id);
        if let Some(c) = &self.confine {
            c.release(id).await;
        }
        let dir = self.dir(id);
        if let Some(uid) = self.load(id).ok().and_then(|s| s.uid) {
            if let Err(e) = self.claims.release(&dir, uid) {
                tracing::warn!(%id, uid, "giving back the VM's uid failed: {e}");
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("removing {}", dir.display()))(e)),
        }
    }
}

#[cfg(test)]
#[path = "vm_tests.rs"]
mod tests;
