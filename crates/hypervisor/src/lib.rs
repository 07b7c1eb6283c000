//! The hypervisor boundary of the port layer. The port layer asks a [`Backend`] for virtual
//! machines; it never knows whether they are QEMU processes on this host (`backend-local`) or
//! VMs in vCenter. Backends know hypervisors, not Docker: they see VM configurations, disks and
//! a byte channel to the tether, never container semantics.
//!
//! ```text
//!   docker-api ──► portlayer ──► dyn Backend ──► backend-local (QEMU microvm)
//!                                            └─► backend-vsphere (vim25)
//! ```

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

#[cfg(feature = "fake")]
pub mod fake;
pub mod store;

pub use store::{LocalFiles, StoreFiles};

/// A byte stream to a VM's tether (virtio-serial locally, a network serial port on vSphere).
pub trait TetherChannel: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> TetherChannel for T {}

/// What a container VM is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// The container ID; also the VM's identity in the backend.
    pub id: String,
    /// Human-readable name for the hypervisor inventory (VIC's `name-shortid` convention).
    pub display_name: String,
    /// The image whose base disk the root disk is a copy-on-write child of.
    pub image_id: String,
    pub memory_mib: u32,
    pub cpus: u32,
    /// Its network interfaces, in the order the guest sees them (`eth0` first).
    pub nics: Vec<Nic>,
    /// Disks of its own beside the root disk (volumes), in order: the guest finds disk `i`
    /// by the serial [`disk_serial`]`(i)`.
    pub disks: Vec<DataDisk>,
    /// Host files and directories shared into it (bind mounts), in order: the guest finds
    /// share `i` by the tag [`share_tag`]`(i)`.
    pub shares: Vec<Share>,
    /// The host CPUs its vCPUs run on (`--cpuset-cpus`); empty: any.
    pub host_cpus: Vec<u32>,
    /// Its CPU weight against the VCH's other VMs when the host's CPUs are all busy, as
    /// Docker's `--cpu-shares` (each has 1024 when none is given).
    pub cpu_shares: Option<u32>,
}

/// A host file or directory shared into a VM: its contents are the host's, read and written
/// in place.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Share {
    /// An absolute host path, symlinks already resolved.
    pub source: std::path::PathBuf,
    /// Shared read-only: enforced on the host, whatever the guest mounts.
    pub readonly: bool,
}

/// The tag of a VM's share `index`, by which the guest mounts it.
pub fn share_tag(index: usize) -> String {
    format!("vic-share{index}")
}

/// A disk attached to a VM beside its root disk: a volume's, made by
/// [`Backend::create_disk`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataDisk {
    /// Where the disk is (a file on a volume store locally, a datastore path on vSphere).
    pub path: std::path::PathBuf,
    /// Attached read-only: the guest cannot write to it whatever it mounts.
    pub readonly: bool,
}

/// The serial number of a VM's data disk `index`, by which the guest finds it on a virtio
/// bus ([`DataDisks::BySerial`]).
pub fn disk_serial(index: usize) -> String {
    format!("vic-vol{index}")
}

/// The SCSI unit (target) of a VM's data disk `index` on the root disk's controller
/// ([`DataDisks::ByScsiUnit`]): 1 on, the root disk being 0 and 7 the controller's own.
pub fn scsi_unit(index: usize) -> u32 {
    match index as u32 + 1 {
        u if u >= 7 => u + 1,
        u => u,
    }
}

/// The most data disks one SCSI controller takes beside the root disk (units 1–15 but 7).
pub const MAX_SCSI_DATA_DISKS: usize = 14;

/// How a guest finds its data disks: the backend decides how it attaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDisks {
    /// virtio-blk devices, disk `i` with serial [`disk_serial`]`(i)`.
    BySerial,
    /// SCSI disks on the root disk's controller, disk `i` at unit [`scsi_unit`]`(i)` (a
    /// paravirtual SCSI disk has no serial the host sets).
    ByScsiUnit,
}

/// Interfaces a VM with any gets beyond its networks', on no network: a network connected
/// while the VM runs takes one (microvm has no hotplug).
pub const SPARE_NICS: usize = 2;

/// The MAC of VM `id`'s interface `index` while no network holds it: locally administered
/// (`02:fe:`), three bytes of the ID and the index.
pub fn spare_mac(id: &str, index: usize) -> String {
    let b = |i: usize| id.get(i..i + 2).unwrap_or("00");
    format!("02:fe:{}:{}:{}:{:02x}", b(0), b(2), b(4), index & 0xff)
}

/// A VM's network interface: on which of the backend's networks, with which address.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Nic {
    /// The network's name, as [`Backend::ensure_network`] made it.
    pub network: String,
    /// The interface's MAC address, `xx:xx:xx:xx:xx:xx`.
    pub mac: String,
    /// The ports the container publishes, which an external network's `published` firewall
    /// lets in (ignored on the backend's own networks, where ports are forwarded instead).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open_ports: Vec<OpenPort>,
}

/// A container port a firewall lets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpenPort {
    pub port: u16,
    pub udp: bool,
}

/// What an external network's firewall lets through, for each VM on it (VIC's trust levels
/// of container networks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trust {
    /// Nothing in or out.
    Closed,
    /// Connections the VM opens, and their replies.
    Outbound,
    /// VMs on the network with each other; nothing beyond.
    Peers,
    /// Outbound, and inbound to each VM's [`Nic::open_ports`].
    Published,
    /// Everything.
    Open,
}

/// A network outside the backend that VMs join directly, without NAT: a host bridge locally,
/// a port group on vSphere.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExternalNet {
    /// The outside network: `BRIDGE` or `NETNS/BRIDGE` locally.
    pub source: String,
    pub trust: Trust,
}

/// A network the backend attaches VMs to: a bridge locally, a port group on vSphere. The
/// gateway is the backend's side of it (the address containers route through).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    /// What users call it (`docker network ls`), for the hypervisor's own inventory.
    pub label: String,
    pub gateway: std::net::Ipv4Addr,
    pub prefix_len: u8,
    /// VMs on it reach the gateway but not each other (Docker's `enable_icc=false`).
    pub isolated: bool,
    /// No way out of the backend's networks from it (Docker's `--internal`).
    pub internal: bool,
    /// Set when the network is outside the backend (a container network): the backend
    /// holds no address on it, and `gateway` is the outside network's router.
    pub external: Option<ExternalNet>,
    /// Its IPv6 gateway and prefix length, when it has IPv6.
    pub ipv6: Option<(std::net::Ipv6Addr, u8)>,
}

/// Where a container VM's guest finds its root filesystem: the backend decides how it
/// attaches the root disk, and the guest is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDisk {
    /// The block device in the guest, e.g. `/dev/vda`.
    pub device: String,
    /// Its filesystem, e.g. `ext4`.
    pub fstype: String,
    /// How it finds the VM's data disks (volumes).
    pub data_disks: DataDisks,
}

/// A VM that has been powered on.
pub struct PoweredOn {
    /// Connected channel to the tether inside the VM.
    pub channel: Box<dyn TetherChannel>,
    /// Host process ID of the VM, where the backend has one (QEMU).
    pub pid: Option<u32>,
    /// Resolves when the VM has powered off, for whatever reason.
    pub exited: BoxFuture<'static, VmExit>,
    /// Set when the VM was restored from a booted template instead of booting: its guest
    /// must be asked to say Hello, and must change what it kept from the template.
    pub restored: Option<Restored>,
}

/// What a VM restored from a booted template kept from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Its network interfaces carry the template's MAC addresses: each is given the VM's own
    /// (template's, VM's), before the guest configures any.
    pub macs: Vec<(String, String)>,
}

/// How a VM's power-off was observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmExit {
    /// A human-readable description, e.g. "qemu exited with status 0".
    pub detail: String,
}

/// Power state as the hypervisor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    On,
    Off,
    /// The backend has no such VM.
    Absent,
}

/// Errors of a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("no such VM: {0}")]
    NoSuchVm(String),
    #[error("the image {0} has no base disk; prepare it first")]
    NoBaseDisk(String),
    #[error("VM {id} did not connect its tether within {secs} s (console log: {log})")]
    BootTimeout { id: String, secs: u64, log: String },
    #[error("{0}")]
    Failed(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// The hypervisor as the port layer sees it.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short name for logs and `docker info` ("local", "vsphere").
    fn name(&self) -> &'static str;

    /// One line describing the backend's runtime, e.g. "QEMU 7.2 microvm, TCG (no usable KVM)".
    fn describe(&self) -> String;

    /// Where the guest of every VM this backend creates finds its root filesystem.
    fn root_disk(&self) -> RootDisk;

    /// How a container VM starts, for `docker info`: booted, or restored from a template.
    fn start_path(&self) -> String {
        "cold boot".into()
    }

    /// The file VM `id`'s console is written to, where the backend keeps one on the
    /// appliance's file system (the admin pages show it).
    fn console_log(&self, _id: &str) -> Option<std::path::PathBuf> {
        None
    }

    /// Makes the image's read-only base disk from its unpacked root filesystem. Idempotent:
    /// a second call for the same image returns at once.
    async fn prepare_image(&self, image_id: &str, rootfs: &Path) -> Result<(), BackendError>;

    /// Drops an image's base disk. Fails if a VM still uses it.
    async fn remove_image(&self, image_id: &str) -> Result<(), BackendError>;

    /// Makes network `net` (idempotent): VMs created with a [`Nic`] on it are attached to it.
    async fn ensure_network(&self, net: &NetworkSpec) -> Result<(), BackendError>;

    /// The host's address as VMs on the backend's networks reach it (Docker's
    /// `host-gateway`), if there is a way to the host.
    fn host_gateway(&self) -> Option<std::net::Ipv4Addr>;

    /// Drops network `name` (idempotent). The port layer detaches every VM first.
    async fn remove_network(&self, name: &str) -> Result<(), BackendError>;

    /// A UDP socket and a TCP listener bound to `at`, an address of the backend's own on one
    /// of its networks (the VCH's DNS server listens on each gateway).
    async fn listen(
        &self,
        at: std::net::SocketAddrV4,
    ) -> Result<(std::net::UdpSocket, std::net::TcpListener), BackendError>;

    /// Attaches running VM `id`'s interface `index` (one of its [`SPARE_NICS`], or one a
    /// network left) to `nic`'s network (its MAC is the guest's to set).
    async fn attach_nic(&self, id: &str, index: usize, nic: &Nic) -> Result<(), BackendError>;

    /// Takes running VM `id`'s interface `index` off its network.
    async fn detach_nic(&self, id: &str, index: usize) -> Result<(), BackendError>;

    /// Replaces the interfaces of VM `id`, which is powered off: they take effect at its next
    /// power-on (a stopped container connected to or disconnected from a network).
    async fn set_nics(&self, id: &str, nics: &[Nic]) -> Result<(), BackendError>;

    /// Sets the memory (MiB) and vCPUs of VM `id`, which is powered off: they take effect at
    /// its next power-on (`docker update`).
    async fn set_size(&self, id: &str, memory_mib: u32, cpus: u32) -> Result<(), BackendError>;

    /// Sets VM `id`'s CPU weight ([`VmConfig::cpu_shares`]): at once when it runs, and at
    /// each power-on.
    async fn set_cpu_shares(&self, id: &str, shares: Option<u32>) -> Result<(), BackendError>;

    /// A TCP connection to `to`, an address on one of the backend's networks, from the
    /// backend's side of them (published ports are forwarded through it).
    async fn dial(&self, to: std::net::SocketAddrV4)
        -> Result<tokio::net::TcpStream, BackendError>;

    /// A UDP socket on the backend's side of its networks, connected to `to` (published UDP
    /// ports are relayed through it).
    async fn dial_udp(
        &self,
        to: std::net::SocketAddrV4,
    ) -> Result<tokio::net::UdpSocket, BackendError>;

    /// The next container whose VM was powered on from outside vic (the hypervisor's own
    /// client): its guest is up, and [`Backend::power_on`] hands its channel over rather than
    /// powering the VM on. Never, for a backend whose VMs cannot be started elsewhere.
    async fn started_outside(&self) -> Option<String> {
        std::future::pending().await
    }

    /// Creates the VM and its copy-on-write root disk. Does not power it on.
    async fn create_vm(&self, vm: &VmConfig) -> Result<(), BackendError>;

    /// Makes a disk for a volume at `path` (which must not exist): `capacity_mib` large,
    /// formatted with the root disk's filesystem, holding a copy of the directory `seed`
    /// when there is one. Nothing is left at `path` when it fails.
    async fn create_disk(
        &self,
        path: &Path,
        capacity_mib: u64,
        seed: Option<&Path>,
    ) -> Result<(), BackendError>;

    /// The files of the volume stores, where [`Backend::create_disk`] makes disks and the
    /// port layer keeps the volumes' descriptions.
    fn store_files(&self) -> std::sync::Arc<dyn StoreFiles>;

    /// Stops running VM `id` as a whole, its memory kept (`docker pause`); `resume` continues
    /// it where it stood.
    async fn pause(&self, id: &str) -> Result<(), BackendError>;

    async fn resume(&self, id: &str) -> Result<(), BackendError>;

    /// Powers the VM on and returns once its tether has connected.
    async fn power_on(&self, id: &str) -> Result<PoweredOn, BackendError>;

    /// Connects again to the tether of a VM that kept running while nobody held its channel
    /// (the appliance restarted). Fails if the VM is not running or its tether does not answer
    /// in time; the VM is left as it is either way.
    async fn reattach(&self, id: &str) -> Result<PoweredOn, BackendError>;

    /// Powers the VM off, hard after `grace` if it has not gone by itself.
    async fn power_off(&self, id: &str, grace: Duration) -> Result<(), BackendError>;

    /// Powers off (if needed) and deletes the VM and its disks.
    async fn destroy_vm(&self, id: &str) -> Result<(), BackendError>;

    /// The VM's power state.
    async fn power_state(&self, id: &str) -> PowerState;

    /// Every VM the backend has (its inventory), complete or not: what a restarted port layer
    /// reconciles its records with. An inventory that cannot be read is an error, never an
    /// empty list.
    async fn list_vms(&self) -> Result<Vec<String>, BackendError>;
}
