//! One cgroup per VM, under a parent per VCH (`vic/<vch>/<vm-id>`), limiting the memory, CPU
//! and processes of its QEMU.
//!
//! Both layouts are handled: cgroup v2 (`<root>/cgroup.controllers` exists, one tree) and v1
//! (one hierarchy per controller: `<root>/memory`, `<root>/cpu`, `<root>/pids`). A controller
//! the host lacks is skipped, said once in one log line. QEMU joins the cgroup itself before it
//! execs (it writes `0` to each `cgroup.procs`, see `jail.rs`), so all its memory is charged.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

/// QEMU's own memory on top of the guest's RAM, with a margin. Measured under TCG (QEMU 7.2,
/// `tb-size=64`, before it was 16): a 256 MiB guest that filled its RAM (200 MiB in a tmpfs)
/// had QEMU at 340 MiB RSS, the cgroup charged 306 MiB: 50–84 MiB over guest RAM.
pub const QEMU_OVERHEAD_MIB: u64 = 256;
/// Processes and threads a QEMU may have (it uses a dozen or so: vCPU, I/O, RCU threads).
pub const PIDS_MAX: u32 = 256;
/// The CFS period the CPU quota is counted in.
const CFS_PERIOD_US: u64 = 100_000;
/// The kernel's bounds of a v1 `cpu.shares` (it clamps what is outside them).
const SHARES_MIN: u64 = 2;
const SHARES_MAX: u64 = 262_144;

/// The limits of one VM's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub cpu_quota_us: u64,
    pub pids: u32,
    /// The VM's CPU weight against its VCH's other VMs, as Docker's `--cpu-shares` (v1
    /// `cpu.shares`; each VM has 1024 when none is given).
    pub cpu_shares: Option<u64>,
}

impl Limits {
    /// Guest RAM plus QEMU's overhead, one CPU per vCPU, [`PIDS_MAX`] tasks.
    pub fn for_vm(memory_mib: u32, cpus: u32) -> Self {
        Self {
            memory_bytes: (u64::from(memory_mib.max(64)) + QEMU_OVERHEAD_MIB) << 20,
            cpu_quota_us: u64::from(cpus.max(1)) * CFS_PERIOD_US,
            pids: PIDS_MAX,
            cpu_shares: None,
        }
    }

    /// These limits with a CPU weight (`--cpu-shares`).
    pub fn with_cpu_shares(self, shares: Option<u64>) -> Self {
        Self {
            cpu_shares: shares,
            ..self
        }
    }
}

/// A v1 `cpu.shares` value within the kernel's bounds.
fn v1_shares(shares: u64) -> u64 {
    shares.clamp(SHARES_MIN, SHARES_MAX)
}

/// The v2 `cpu.weight` (1–10000, 100 by default) of a v1 `cpu.shares` (2–262144, 1024 by
/// default), as runc converts it.
fn v2_weight(shares: u64) -> u64 {
    1 + (v1_shares(shares) - SHARES_MIN) * 9999 / (SHARES_MAX - SHARES_MIN)
}

/// The layout of the host's cgroup filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One unified tree.
    V2,
    /// A hierarchy per controller; the ones present (of memory, cpu, pids).
    V1(Vec<&'static str>),
    /// No usable cgroup filesystem.
    None,
}

const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// The cgroups of one VCH's VMs under a cgroup filesystem root (normally `/sys/fs/cgroup`).
#[derive(Debug, Clone)]
pub struct Cgroups {
    root: PathBuf,
    /// Relative to each hierarchy: `vic/<vch>`.
    parent: PathBuf,
    layout: Layout,
}

static MISSING: Once = Once::new();

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value)
}

impl Cgroups {
    /// Detects the layout under `root`; `parent` is the VCH's place, e.g. `vic/myvch`.
    pub fn new(root: &Path, parent: &Path) -> Self {
        let layout = if root.join("cgroup.controllers").is_file() {
            Layout::V2
        } else {
            let present: Vec<&'static str> = CONTROLLERS
                .into_iter()
                .filter(|c| root.join(c).join("cgroup.procs").is_file())
                .collect();
            if present.is_empty() {
                Layout::None
            } else {
                Layout::V1(present)
            }
        };
        let missing: Vec<&str> = match &layout {
            Layout::V2 => Vec::new(),
            Layout::V1(p) => CONTROLLERS.into_iter().filter(|c| !p.contains(c)).collect(),
            Layout::None => CONTROLLERS.to_vec(),
        };
        if !missing.is_empty() {
            MISSING.call_once(|| {
                tracing::warn!(
                    "cgroup controllers {missing:?} not mounted under {}: those VM limits are \
                     skipped; mount them (e.g. `mount -t cgroup -o memory cgroup {}/memory`)",
                    root.display(),
                    root.display()
                );
            });
        }
        Self {
            root: root.to_path_buf(),
            parent: parent.to_path_buf(),
            layout,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The VM's cgroup directories (one per v1 hierarchy, one in v2).
    pub fn dirs(&self, vm: &str) -> Vec<PathBuf> {
        let rel = self.parent.join(vm);
        match &self.layout {
            Layout::V2 => vec![self.root.join(rel)],
            Layout::V1(present) => present
                .iter()
                .map(|c| self.root.join(c).join(&rel))
                .collect(),
            Layout::None => Vec::new(),
        }
    }

    /// Creates the VM's cgroup with `limits`; returns the `cgroup.procs` files QEMU must join.
    /// A limit that cannot be written is logged and skipped, never fatal.
    pub fn create(&self, vm: &str, limits: Limits) -> std::io::Result<Vec<PathBuf>> {
        match &self.layout {
            Layout::None => Ok(Vec::new()),
            Layout::V2 => {
                self.enable_v2_controllers()?;
                let dir = self.root.join(&self.parent).join(vm);
                std::fs::create_dir_all(&dir)?;
                let cpu = format!("{} {CFS_PERIOD_US}", limits.cpu_quota_us);
                set(&dir, "memory.max", &limits.memory_bytes.to_string());
                set(&dir, "memory.swap.max", "0");
                set(&dir, "cpu.max", &cpu);
                if let Some(s) = limits.cpu_shares {
                    set(&dir, "cpu.weight", &v2_weight(s).to_string());
                }
                set(&dir, "pids.max", &limits.pids.to_string());
                Ok(vec![dir.join("cgroup.procs")])
            }
            Layout::V1(present) => {
                let mut procs = Vec::new();
                for c in present {
                    let dir = self.root.join(c).join(&self.parent).join(vm);
                    std::fs::create_dir_all(&dir)?;
                    match *c {
                        "memory" => set(
                            &dir,
                            "memory.limit_in_bytes",
                            &limits.memory_bytes.to_string(),
                        ),
                        "cpu" => {
                            set(&dir, "cpu.cfs_period_us", &CFS_PERIOD_US.to_string());
                            set(&dir, "cpu.cfs_quota_us", &limits.cpu_quota_us.to_string());
                            if let Some(s) = limits.cpu_shares {
                                set(&dir, "cpu.shares", &v1_shares(s).to_string());
                            }
                        }
                        _ => set(&dir, "pids.max", &limits.pids.to_string()),
                    }
                    procs.push(dir.join("cgroup.procs"));
                }
                Ok(procs)
            }
        }
    }

    /// Sets the CPU weight of the VM's cgroup, which exists (its QEMU runs); `None` gives the
    /// default back. Without a cpu controller there is nothing to set.
    pub fn set_cpu_shares(&self, vm: &str, shares: Option<u64>) -> std::io::Result<()> {
        let rel = self.parent.join(vm);
        let (path, value) = match &self.layout {
            Layout::V2 => (
                self.root.join(rel).join("cpu.weight"),
                v2_weight(shares.unwrap_or(1024)),
            ),
            Layout::V1(present) if present.contains(&"cpu") => (
                self.root.join("cpu").join(rel).join("cpu.shares"),
                v1_shares(shares.unwrap_or(1024)),
            ),
            _ => return Ok(()),
        };
        if !path.parent().is_some_and(Path::is_dir) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("the VM's cgroup {} does not exist", path.display()),
            ));
        }
        write(&path, &value.to_string())
    }

    /// v2 only: a controller is usable in a cgroup once every ancestor enables it for its
    /// children (`+memory +cpu +pids` in `cgroup.subtree_control`).
    fn enable_v2_controllers(&self) -> std::io::Result<()> {
        let mut dir = self.root.clone();
        for part in self.parent.components() {
            let file = dir.join("cgroup.subtree_control");
            let enabled = std::fs::read_to_string(&file).unwrap_or_default();
            for c in CONTROLLERS {
                if !enabled.split_whitespace().any(|e| e == c) {
                    if let Err(e) = write(&file, &format!("+{c}")) {
                        tracing::warn!("enabling {c} in {} failed: {e}", file.display());
                    }
                }
            }
            dir = dir.join(part);
            std::fs::create_dir_all(&dir)?;
        }
        let file = dir.join("cgroup.subtree_control");
        let enabled = std::fs::read_to_string(&file).unwrap_or_default();
        for c in CONTROLLERS {
            if !enabled.split_whitespace().any(|e| e == c) {
                if let Err(e) = write(&file, &format!("+{c}")) {
                    tracing::warn!("enabling {c} in {} failed: {e}", file.display());
                }
            }
        }
        Ok(())
    }

    /// Removes the VM's cgroup (its QEMU must be gone; an exiting one may linger a moment,
    /// so each removal is retried for up to `limit`), then the VCH and `vic` parents if empty.
    pub async fn remove(&self, vm: &str, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        for dir in self.dirs(vm) {
            loop {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if tokio::time::Instant::now() >= deadline => {
                        tracing::warn!(vm, "removing cgroup {} failed: {e}", dir.display());
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            // Parents go when this VCH (then vic) has no other VM; busy ones stay.
            let mut parent = dir.parent();
            for _ in self.parent.components() {
                let Some(p) = parent else { break };
                if std::fs::remove_dir(p).is_err() {
                    break;
                }
                parent = p.parent();
            }
        }
    }

    /// Whether `pid` is in this VM's cgroup (read from `/proc/PID/cgroup`).
    pub fn holds(&self, vm: &str, pid: u32) -> bool {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let want = Path::new("/").join(&self.parent).join(vm);
        text.lines()
            .filter_map(|l| l.splitn(3, ':').nth(2))
            .any(|p| Path::new(p) == want)
    }
}

/// Writes one limit; failure is logged (the limit is skipped), not fatal.
fn set(dir: &Path, file: &str, value: &str) {
    let path = dir.join(file);
    if let Err(e) = write(&path, value) {
        tracing::warn!(
            "writing {value} to {} failed ({e}); limit skipped",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_v1(root: &Path, controllers: &[&str]) {
        for c in controllers {
            std::fs::create_dir_all(root.join(c)).unwrap();
            std::fs::write(root.join(c).join("cgroup.procs"), "").unwrap();
        }
    }

    #[test]
    fn limits_add_qemu_overhead_and_count_cpus_in_periods() {
        let l = Limits::for_vm(512, 2);
        assert_eq!(l.memory_bytes, (512 + 256) << 20);
        assert_eq!(l.cpu_quota_us, 200_000);
        assert_eq!(l.pids, 256);
        assert_eq!(Limits::for_vm(0, 0).cpu_quota_us, 100_000);
    }

    #[test]
    fn v1_writes_each_controllers_limits_under_vic_vch_vm() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v1(tmp.path(), &["memory", "cpu", "pids"]);
        let cg = Cgroups::new(tmp.path(), Path::new("vic/demo"));
        assert_eq!(cg.layout(), &Layout::V1(vec!["memory", "cpu", "pids"]));
        let procs = cg.create("c1", Limits::for_vm(256, 1)).unwrap();
        assert_eq!(procs.len(), 3);
        let vm = |c: &str, f: &str| {
            std::fs::read_to_string(tmp.path().join(c).join("vic/demo/c1").join(f)).unwrap()
        };
        assert_eq!(
            vm("memory", "memory.limit_in_bytes"),
            (512u64 << 20).to_string()
        );
        assert_eq!(vm("cpu", "cpu.cfs_quota_us"), "100000");
        assert_eq!(vm("cpu", "cpu.cfs_period_us"), "100000");
        assert_eq!(vm("pids", "pids.max"), "256");
        assert!(tmp
            .path()
            .join("cpu/vic/demo/c1/cpu.shares")
            .metadata()
            .is_err());
        assert_eq!(procs[0], tmp.path().join("memory/vic/demo/c1/cgroup.procs"));
    }

    #[test]
    fn cpu_shares_are_written_at_creation_and_changed_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v1(tmp.path(), &["memory", "cpu", "pids"]);
        let cg = Cgroups::new(tmp.path(), Path::new("vic/demo"));
        let shares = tmp.path().join("cpu/vic/demo/c1/cpu.shares");
        assert!(cg.set_cpu_shares("c1", Some(512)).is_err(), "no cgroup yet");
        let limits = Limits::for_vm(256, 1).with_cpu_shares(Some(512));
        cg.create("c1", limits).unwrap();
        assert_eq!(std::fs::read_to_string(&shares).unwrap(), "512");
        cg.set_cpu_shares("c1", Some(1)).unwrap();
        assert_eq!(std::fs::read_to_string(&shares).unwrap(), "2");
        cg.set_cpu_shares("c1", None).unwrap();
        assert_eq!(std::fs::read_to_string(&shares).unwrap(), "1024");
    }

    #[test]
    fn v2_weights_follow_runcs_conversion_of_shares() {
        assert_eq!(v2_weight(2), 1);
        assert_eq!(v2_weight(1024), 39);
        assert_eq!(v2_weight(262_144), 10_000);
        assert_eq!(v2_weight(u64::MAX), 10_000);
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
        let cg = Cgroups::new(tmp.path(), Path::new("vic/demo"));
        cg.create("c1", Limits::for_vm(128, 1).with_cpu_shares(Some(2)))
            .unwrap();
        let weight = tmp.path().join("vic/demo/c1/cpu.weight");
        assert_eq!(std::fs::read_to_string(&weight).unwrap(), "1");
        cg.set_cpu_shares("c1", Some(262_144)).unwrap();
        assert_eq!(std::fs::read_to_string(&weight).unwrap(), "10000");
    }

    #[test]
    fn v1_skips_a_missing_controller() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v1(tmp.path(), &["memory"]);
        let cg = Cgroups::new(tmp.path(), Path::new("vic/demo"));
        assert_eq!(cg.dirs("c1"), [tmp.path().join("memory/vic/demo/c1")]);
        assert!(!tmp.path().join("pids").exists());
    }

    #[test]
    fn no_cgroup_fs_means_no_cgroup() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = Cgroups::new(tmp.path(), Path::new("vic/demo"));
        assert_eq!(cg.layout(), &Layout::None);
        assert!(cg.create("c1", Limits::for_vm(64, 1)).unwrap().is_empty());
    }

    #[test]
    fn v2_enables_controllers_down_the_tree_and_writes_limits() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
        let cg = Cgroups::new(tmp.path(), Path::new("vic/demo"));
        assert_eq!(cg.layout(), &Layout::V2);
        let procs = cg.create("c1", Limits::for_vm(128, 2)).unwrap();
        assert_eq!(procs, [tmp.path().join("vic/demo/c1/cgroup.procs")]);
        let read = |p: &str| std::fs::read_to_string(tmp.path().join(p)).unwrap();
        assert_eq!(read("vic/demo/c1/cpu.max"), "200000 100000");
        assert_eq!(read("vic/demo/c1/memory.max"), (384u64 << 20).to_string());
        assert_eq!(read("vic/demo/c1/pids.max"), "256");
        // A plain file keeps only the last write; the real file accumulates them.
        assert_eq!(read("vic/demo/cgroup.subtree_control"), "+pids");
    }

    #[tokio::test]
    async fn remove_takes_the_vm_and_empty_parents_away() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v1(tmp.path(), &["pids"]);
        let cg = Cgroups::new(tmp.path(), Path::new("vic/demo"));
        let vm = tmp.path().join("pids/vic/demo");
        std::fs::create_dir_all(vm.join("c1")).unwrap();
        std::fs::create_dir_all(vm.join("c2")).unwrap();
        cg.remove("c1", Duration::from_millis(100)).await;
        assert!(!vm.join("c1").exists() && vm.join("c2").exists());
        cg.remove("c2", Duration::from_millis(100)).await;
        assert!(!tmp.path().join("pids/vic").exists());
        assert!(tmp.path().join("pids").exists());
    }
}
