//! The local backend: every container VM is a QEMU `microvm` process on this host.
//!
//! It owns a state directory and nothing else; it knows QEMU, disks and sockets, not Docker.
//!
//! ```text
//!  root/images/<image>/base.ext4     read-only ext4 made once per image (mke2fs -d)
//!  root/vms/<id>/root.qcow2          copy-on-write child of the base (qemu-img create -b)
//!  root/vms/<id>/vm.json             memory, cpus, image
//!  root/vms/<id>/tether.sock         the host listens, QEMU's virtio-serial chardev connects
//!  root/vms/<id>/console.log         the guest's ttyS0 (kernel and `tether:` lines)
//!  root/vms/<id>/qemu.pid, qemu.log  the QEMU process and its own messages
//!  root/jail/                        empty: each QEMU's jail root is mounted here, in its own
//!                                    mount namespace only
//!  root/templates/<shape>/           a template VM while it is made (see `templates.rs`)
//! ```
//!
//! QEMU runs in its own process group with the VM directory as its working directory (which
//! keeps socket paths short and lets a restarted appliance recognise its QEMU processes).
//! Each QEMU runs confined (see `jail.rs`, `cgroup.rs`): seccomp `-sandbox`, its own uid and
//! gid from 900000 up with no capabilities and `no_new_privs`, a mount namespace that shows it
//! only its own VM's files, and a cgroup `vic/<vch>/<vm>` limiting memory, CPU and tasks.
//!
//! The accelerator is KVM where `/dev/kvm` works, TCG otherwise (and on `kvm_pvm` hosts, where
//! a stock kernel does not boot); `VIC_ACCEL=kvm|tcg` overrides.

mod accel;
mod cgroup;
pub mod cmd;
mod confine;
mod devices;
mod disk;
mod external;
mod host_tools;
pub mod inventory;
mod jail;
pub mod net;
mod qemu;
mod qmp;
mod shares;
mod template_store;
mod template_vm;
mod templates;
mod uids;
pub mod uplink;
mod vm;
mod vm_channel;
mod vm_edit;
mod vm_spec;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use host_tools::{absolute, ensure_file, in_path, tool_version};
use hypervisor::{Backend, BackendError, NetworkSpec, PowerState, PoweredOn, VmConfig};

pub use accel::Accel;
pub use cgroup::{PIDS_MAX, QEMU_OVERHEAD_MIB};
pub use jail::{UID_BASE, UID_COUNT};

/// How long a running VM's QEMU may take to reconnect to a restarted appliance.
const REATTACH_TIMEOUT: Duration = Duration::from_secs(10);

/// Configuration of the local backend.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The backend's state directory (images/ and vms/ live below it).
    pub root: PathBuf,
    /// Guest kernel: an uncompressed vmlinux with a PVH entry.
    pub kernel: PathBuf,
    /// Initramfs holding tether as /init.
    pub initrd: PathBuf,
    pub qemu: PathBuf,
    pub qemu_img: PathBuf,
    pub mke2fs: PathBuf,
    /// How long a VM may take from QEMU start to its tether connecting.
    pub boot_timeout: Duration,
    /// Force an accelerator; `None` detects (and `VIC_ACCEL` overrides detection).
    pub accel: Option<Accel>,
    /// Where the cgroup filesystem is mounted.
    pub cgroup_root: PathBuf,
    /// The VCH's cgroup, relative to each hierarchy (VMs go below it): `vic/<vch>`.
    pub cgroup_parent: PathBuf,
    /// Where the VMs of every VCH on this host claim their uids (`uids.rs`).
    pub uid_claims: PathBuf,
    /// Whether QEMU runs in its jail (`jail.rs`); off only to measure what the jail costs.
    pub jail: bool,
    /// The VCH's network namespace (`net.rs`), made if missing; `None`: VMs get no network
    /// interfaces, and asking for one is an error.
    pub netns: Option<String>,
    /// The virtio-fs daemon that serves host shares (bind mounts).
    pub virtiofsd: PathBuf,
    /// Whether container VMs are restored from booted templates (`templates.rs`) rather
    /// than booted each.
    pub templates: bool,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/var/lib/vic/local"),
            kernel: PathBuf::from("build/vmlinux"),
            initrd: PathBuf::from("build/initramfs.cpio"),
            qemu: PathBuf::from("qemu-system-x86_64"),
            qemu_img: PathBuf::from("qemu-img"),
            mke2fs: PathBuf::from("mke2fs"),
            boot_timeout: Duration::from_secs(30),
            accel: None,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            cgroup_parent: PathBuf::from("vic/local"),
            uid_claims: PathBuf::from(uids::DEFAULT_DIR),
            jail: true,
            netns: None,
            virtiofsd: PathBuf::from("/usr/lib/qemu/virtiofsd"),
            templates: true,
        }
    }
}

/// The local QEMU backend.
pub struct LocalBackend {
    cfg: LocalConfig,
    accel: Accel,
    tsc_khz: Option<u64>,
    qemu_version: String,
    image_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    vms: vm::Vms,
    /// Templates, and the VMs they are made with.
    maker: Arc<template_vm::Maker>,
    net: Option<net::VchNet>,
    /// The networks made, by name: whether their taps are isolated ports, whether they are
    /// outside the VCH (container networks).
    specs: Mutex<HashMap<String, NetworkSpec>>,
}

fn failed(msg: impl Into<String>) -> BackendError {
    BackendError::Failed(msg.into())
}

impl LocalBackend {
    fn net(&self) -> Result<&net::VchNet, BackendError> {
        self.net
            .as_ref()
            .ok_or_else(|| failed("this backend was started without a network namespace"))
    }
}

/// A name the backend can use as a directory: no separators, no dot-dot.
fn check_id(kind: &str, id: &str) -> Result<(), BackendError> {
    let ok = !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(failed(format!("invalid {kind} id {id:?}")))
    }
}

impl LocalBackend {
    /// Checks the kernel, initrd and tools, picks the accelerator and creates the state dirs.
    pub fn new(mut cfg: LocalConfig) -> Result<Self, BackendError> {
        ensure_file(&cfg.kernel, "guest kernel")?;
        cfg.qemu = in_path(&cfg.qemu);
        ensure_file(&cfg.initrd, "guest initramfs")?;
        let version = tool_version(&cfg.qemu, "qemu-system-x86 (with qemu-utils)")?;
        tool_version(&cfg.qemu_img, "qemu-utils")?;
        std::process::Command::new(&cfg.mke2fs)
            .arg("-V")
            .output()
            .map_err(|e| {
                failed(format!(
                    "{} cannot be run ({e}); install Debian's e2fsprogs",
                    cfg.mke2fs.display()
                ))
            })?;
        let env = std::env::var("VIC_ACCEL").ok();
        let (accel, why) = match (cfg.accel, env.as_deref().and_then(Accel::parse)) {
            (Some(a), _) => (a, "set in the configuration".to_string()),
            (None, Some(a)) => (a, "VIC_ACCEL".to_string()),
            (None, None) => {
                if let Some(bad) = env.filter(|e| !e.is_empty()) {
                    tracing::warn!("ignoring VIC_ACCEL={bad:?}: use kvm or tcg");
                }
                accel::detect()
            }
        };
        tracing::info!("accelerator: {accel} ({why})");
        let tsc_khz = match accel {
            Accel::Tcg => {
                let k = accel::tsc_khz();
                if k.is_none() {
                    tracing::warn!(
                        "host TSC frequency unknown; TCG boots may stall calibrating it"
                    );
                }
                k
            }
            Accel::Kvm => None,
        };
        for sub in ["images", "vms", "templates"] {
            let dir = cfg.root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| BackendError::Io {
                context: format!("creating {}", dir.display()),
                source: e,
            })?;
        }
        disk::sweep_partial_bases(&cfg.root.join("images"));
        let qemu_version = version.split_whitespace().nth(3).unwrap_or("?").to_string();
        let vms_root = cfg.root.join("vms");
        let confine = if cfg.jail {
            confine::Confinement::new(
                &cfg.root.join("jail"),
                &cfg.cgroup_root,
                &cfg.cgroup_parent,
                &cfg.qemu,
                accel == Accel::Kvm,
                vec![absolute(&cfg.kernel), absolute(&cfg.initrd)],
            )?
        } else {
            tracing::warn!("QEMU runs without its jail, as asked for measuring its cost: never do this in production");
            None
        };
        let net = cfg.netns.as_deref().map(net::VchNet::open).transpose()?;
        if let Some(n) = &net {
            tracing::info!(
                namespace = n.name(),
                "container networks live in the VCH's network namespace"
            );
        }
        // Unconfined (not root), QEMU runs as the appliance's user: no uid to claim host-wide,
        // and no right to write where the claims live.
        let claims = uids::Claims::new(if confine.is_some() {
            cfg.uid_claims.clone()
        } else {
            cfg.root.join("uids")
        });
        let confine = confine.map(Arc::new);
        let (kernel, initrd) = (absolute(&cfg.kernel), absolute(&cfg.initrd));
        let templates_dir = absolute(&cfg.root.join("templates"));
        let machine = qemu::Launch {
            name: String::new(),
            accel,
            tsc_khz,
            memory_mib: 0,
            cpus: 0,
            kernel: kernel.clone(),
            initrd: initrd.clone(),
            macs: Vec::new(),
            disks: Vec::new(),
            shares: 0,
            role: None,
        };
        let maker = template_vm::Maker::new(
            templates::Templates::new(cfg.templates, vec![kernel, initrd, cfg.qemu.clone()]),
            vm::Vms::new(templates_dir, claims.clone(), confine.clone()),
            machine,
            cfg.qemu.clone(),
            cfg.qemu_img.clone(),
            cfg.boot_timeout,
        );
        if !cfg.templates {
            tracing::info!("container VMs boot cold: templates are off for this VCH");
        }
        Ok(Self {
            net,
            vms: vm::Vms::new(absolute(&vms_root), claims, confine),
            maker: Arc::new(maker),
            cfg,
            accel,
            tsc_khz,
            qemu_version,
            image_locks: Mutex::default(),
            specs: Mutex::default(),
        })
    }

    /// The accelerator in use.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// The VM's directory (console.log, qemu.log, … live there).
    pub fn vm_dir(&self, id: &str) -> PathBuf {
        self.vms.dir(id)
    }

    fn image_lock(&self, image_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.image_locks.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        locks.entry(image_id.to_string()).or_default().clone()
    }
}

#[async_trait]
impl Backend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    fn describe(&self) -> String {
        format!("QEMU {} microvm, {}", self.qemu_version, self.accel)
    }

    fn root_disk(&self) -> hypervisor::RootDisk {
        // The root disk is the microvm's first virtio-blk device, made by `disk.rs` as ext4.
        hypervisor::RootDisk {
            device: "/dev/vda".into(),
            fstype: "ext4".into(),
            data_disks: hypervisor::DataDisks::BySerial,
        }
    }

    async fn prepare_image(&self, image_id: &str, rootfs: &Path) -> Result<(), BackendError> {
        check_id("image", image_id)?;
        let lock = self.image_lock(image_id);
        let _held = lock.lock().await;
        let base = disk::base_path(&self.cfg.root, image_id);
        if base.is_file() {
            return Ok(());
        }
        if !rootfs.is_dir() {
            return Err(failed(format!(
                "the image root filesystem {} is not a directory",
                rootfs.display()
            )));
        }
        let dir = base.parent().unwrap_or(&self.cfg.root);
        std::fs::create_dir_all(dir).map_err(|e| BackendError::Io {
            context: format!("creating {}", dir.display()),
            source: e,
        })?;
        let started = std::time::Instant::now();
        disk::build_base(&self.cfg.mke2fs, rootfs, &base).await?;
        tracing::info!(image = image_id, elapsed = ?started.elapsed(), "base disk built");
        Ok(())
    }

    async fn remove_image(&self, image_id: &str) -> Result<(), BackendError> {
        check_id("image", image_id)?;
        let lock = self.image_lock(image_id);
        let _held = lock.lock().await;
        if let Some(vm) = self.vms.using_image(image_id) {
            return Err(failed(format!("the image {image_id} is in use by VM {vm}")));
        }
        let dir = self.cfg.root.join("images").join(image_id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BackendError::Io {
                context: format!("removing {}", dir.display()),
                source: e,
            }),
        }
    }

    async fn ensure_network(&self, net: &NetworkSpec) -> Result<(), BackendError> {
        check_id("network", &net.name)?;
        let vch = self.net()?;
        match &net.external {
            Some(ext) => external::ensure(vch.name(), net, ext)?,
            None => vch.ensure_bridge(net)?,
        }
        self.specs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(net.name.clone(), net.clone());
        Ok(())
    }

    fn host_gateway(&self) -> Option<std::net::Ipv4Addr> {
        self.net.as_ref().and_then(net::VchNet::host_gateway)
    }

    async fn remove_network(&self, name: &str) -> Result<(), BackendError> {
        check_id("network", name)?;
        let vch = self.net()?;
        let spec = self
            .specs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        match spec.and_then(|s| s.external) {
            Some(_) => external::remove(vch.name(), name),
            None => vch.remove_bridge(name),
        }
    }

    async fn listen(
        &self,
        at: std::net::SocketAddrV4,
    ) -> Result<(std::net::UdpSocket, std::net::TcpListener), BackendError> {
        self.net()?.listen(at)
    }

    async fn attach_nic(
        &self,
        id: &str,
        index: usize,
        nic: &hypervisor::Nic,
    ) -> Result<(), BackendError> {
        check_id("VM", id)?;
        check_id("network", &nic.network)?;
        self.attach_tap(id, index, nic)
    }

    async fn detach_nic(&self, id: &str, index: usize) -> Result<(), BackendError> {
        check_id("VM", id)?;
        let (net, tap) = (self.net()?, net::tap_of(id, index));
        external::forget(net.name(), |t| t == tap)?;
        net.detach(&tap)
    }

    async fn set_nics(&self, id: &str, nics: &[hypervisor::Nic]) -> Result<(), BackendError> {
        check_id("VM", id)?;
        if let Some(bad) = nics.iter().find(|n| !qemu::valid_mac(&n.mac)) {
            return Err(failed(format!("not a MAC address: {:?}", bad.mac)));
        }
        self.vms.set_nics(id, nics)
    }

    async fn set_size(&self, id: &str, memory_mib: u32, cpus: u32) -> Result<(), BackendError> {
        check_id("VM", id)?;
        self.vms.set_size(id, memory_mib, cpus)
    }

    async fn set_cpu_shares(&self, id: &str, shares: Option<u32>) -> Result<(), BackendError> {
        check_id("VM", id)?;
        self.vms.set_cpu_shares(id, shares)
    }

    async fn dial(
        &self,
        to: std::net::SocketAddrV4,
    ) -> Result<tokio::net::TcpStream, BackendError> {
        self.net()?.dial(to).await
    }

    async fn dial_udp(
        &self,
        to: std::net::SocketAddrV4,
    ) -> Result<tokio::net::UdpSocket, BackendError> {
        self.net()?.dial_udp(to)
    }

    async fn create_vm(&self, vm: &VmConfig) -> Result<(), BackendError> {
        check_id("VM", &vm.id)?;
        if let Some(bad) = vm.nics.iter().find(|n| !qemu::valid_mac(&n.mac)) {
            return Err(failed(format!("not a MAC address: {:?}", bad.mac)));
        }
        check_id("image", &vm.image_id)?;
        let interfaces = if vm.nics.is_empty() {
            0
        } else {
            vm.nics.len() + hypervisor::SPARE_NICS
        };
        let (disks, shares) = (vm.disks.len(), vm.shares.len());
        if !qemu::devices_fit(interfaces, disks, shares) || shares > shares::MAX_SHARES {
            return Err(failed(format!(
                "a container VM has {} device slots: {disks} volumes, {shares} bind mounts and {} networks do not fit",
                qemu::MAX_DEVICES,
                vm.nics.len()
            )));
        }
        let base = disk::base_path(&self.cfg.root, &vm.image_id);
        if !base.is_file() {
            return Err(BackendError::NoBaseDisk(vm.image_id.clone()));
        }
        self.vms
            .create(vm, disk::Root::Overlay(&base), &self.cfg.qemu_img)
            .await
    }

    fn store_files(&self) -> std::sync::Arc<dyn hypervisor::StoreFiles> {
        std::sync::Arc::new(hypervisor::LocalFiles)
    }

    async fn create_disk(
        &self,
        path: &Path,
        capacity_mib: u64,
        seed: Option<&Path>,
    ) -> Result<(), BackendError> {
        disk::create_volume(&self.cfg.mke2fs, path, capacity_mib, seed).await
    }

    async fn power_on(&self, id: &str) -> Result<PoweredOn, BackendError> {
        check_id("VM", id)?;
        let spec = self.vms.load(id)?;
        let base = disk::base_path(&self.cfg.root, &spec.image_id);
        let mut fds = self.devices(id, &spec).await?;
        let macs = Self::macs(id, &spec.nics);
        if let Some(restored) = self.restore(&spec, &base, &macs, &mut fds).await? {
            return Ok(restored);
        }
        let launch = qemu::Launch {
            disks: spec.disks.iter().map(|d| d.readonly).collect(),
            shares: spec.shares.len(),
            macs,
            name: spec.display_name.clone(),
            accel: self.accel,
            tsc_khz: self.tsc_khz,
            memory_mib: spec.memory_mib,
            cpus: spec.cpus,
            kernel: absolute(&self.cfg.kernel),
            initrd: absolute(&self.cfg.initrd),
            role: None,
        };
        let spawn = vm::Spawn {
            base: Some(&base),
            qemu: &self.cfg.qemu,
            args: qemu::args(&launch),
            fds,
            boot_timeout: self.cfg.boot_timeout,
            qmp: false,
        };
        Ok(self.vms.power_on(spec, spawn).await?.0)
    }

    fn start_path(&self) -> String {
        self.maker.templates.describe()
    }

    fn console_log(&self, id: &str) -> Option<PathBuf> {
        check_id("VM", id).ok()?;
        Some(self.vms.dir(id).join(qemu::CONSOLE_LOG)).filter(|p| p.is_file())
    }

    async fn list_vms(&self) -> Result<Vec<String>, BackendError> {
        self.vms.list()
    }

    async fn reattach(&self, id: &str) -> Result<PoweredOn, BackendError> {
        check_id("VM", id)?;
        // QEMU's chardev retries every second; allow for a loaded host.
        self.vms.reattach(id, REATTACH_TIMEOUT).await
    }

    async fn power_off(&self, id: &str, grace: Duration) -> Result<(), BackendError> {
        check_id("VM", id)?;
        self.vms.power_off(id, grace).await
    }

    async fn pause(&self, id: &str) -> Result<(), BackendError> {
        check_id("VM", id)?;
        self.vms.signal(id, libc::SIGSTOP)
    }

    async fn resume(&self, id: &str) -> Result<(), BackendError> {
        check_id("VM", id)?;
        self.vms.signal(id, libc::SIGCONT)
    }

    async fn destroy_vm(&self, id: &str) -> Result<(), BackendError> {
        check_id("VM", id)?;
        self.vms.destroy(id).await?;
        shares::stop(&self.vms.dir(id), 0);
        if let Some(net) = &self.net {
            let suffix = net::tap_of(id, 0).split_off(2);
            external::forget(net.name(), |t| t.ends_with(&suffix))?;
        }
        Ok(())
    }

    async fn power_state(&self, id: &str) -> PowerState {
        if check_id("VM", id).is_err() {
            return PowerState::Absent;
        }
        self.vms.state(id)
    }
}

#[cfg(test)]
#[path = "lib_tests.rs"]
mod tests;
