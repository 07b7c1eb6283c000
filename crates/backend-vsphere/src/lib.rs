//! The vSphere backend: container VMs in a VCH's vApp (vCenter) or resource pool (ESX),
//! through the `vim25` client. Each VM's tether channel is a network serial port that dials
//! the appliance's one listener ([`channels`]); the VM proves which container's it is with a
//! token its guestinfo holds.
//!
//! ```text
//!   portlayer ──► VsphereBackend ──vim25──► vCenter / ESX (CreateVM, PowerOn, Destroy, …)
//!                     │ channels.rs: TCP listener ◄── serial port of each VM (tcp://appliance)
//! ```
//!
//! What a VM carries (extraConfig): `guestinfo.vic.id` (the container), `guestinfo.vic.token`
//! (its proof on the channel, random per VM), `guestinfo.vic.channel` (the listener's URI, also
//! its serial port's). On vcsim, whose VMs have no guest of their own, `RUN.container` names
//! the command vcsim starts as the VM's guest (said in one log line).
//!
//! Done so far: the VM's lifecycle (create, power on with its channel, power off, destroy,
//! power state, the inventory, take-over after an appliance restart), images' base disks on
//! the image datastore and each VM's root disk as a child delta of its image's ([`disks`]).
//! NICs on the VCH's bridge port group and on container networks' port groups (`nics.rs`).
//! Volumes: disks on the datastores of the VCH's volume stores ([`store`]), attached to a
//! container's VM beside its root disk. User networks and pause answer that they are not
//! implemented on vSphere yet.

pub mod channels;
pub mod disks;
mod nics;
pub mod store;
mod vms;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use hypervisor::{
    Backend, BackendError, NetworkSpec, Nic, PowerState, PoweredOn, RootDisk, VmConfig,
};
use vim25::datastore::DatastorePath;
use vim25::{Client, MoRef};

pub use channels::Channels;

/// Where a VCH's container VMs go, and how their guests are started.
pub struct VsphereConfig {
    pub client: Client,
    /// The VM folder the VMs are made in.
    pub folder: MoRef,
    /// The VCH's vApp or resource pool.
    pub pool: MoRef,
    /// The datastore the VMs' files go on.
    pub datastore: String,
    /// The VCH's datacenter, and its inventory path (the datastores' `/folder` URLs name it).
    pub datacenter: MoRef,
    pub datacenter_name: String,
    /// The directory images' base disks go in (`[datastore] path`).
    pub image_store: DatastorePath,
    /// A local directory base disks are built in before their upload.
    pub work_dir: PathBuf,
    /// e2fsprogs' `mke2fs`, which builds them.
    pub mke2fs: PathBuf,
    /// The port group of the VCH's bridge network (`--bridge-network`).
    pub bridge_network: Option<String>,
    /// On vcsim: the command that boots a VM's guest (vcsim's `RUN.container`).
    pub simulator_guest: Option<PathBuf>,
    /// The container VMs' boot media (the kernel and initramfs), on each one's CD-ROM.
    pub bootstrap_iso: Option<DatastorePath>,
    /// How long a VM may take from power-on to its tether's `Hello`.
    pub boot_timeout: Duration,
}

/// The vSphere backend.
pub struct VsphereBackend {
    cfg: VsphereConfig,
    channels: Channels,
    vms: vms::Known,
    images: disks::ImageLocks,
    port_groups: nics::PortGroups,
    files: std::sync::Arc<store::DatastoreFiles>,
}

impl VsphereBackend {
    /// A backend whose VMs dial `channels`.
    pub fn new(cfg: VsphereConfig, channels: Channels) -> VsphereBackend {
        if cfg.client.content().is_simulator() {
            match &cfg.simulator_guest {
                Some(g) => tracing::info!(
                    "vcsim: container VMs get their guests through vcsim's container support (RUN.container = {})",
                    g.display()
                ),
                None => tracing::warn!(
                    "vcsim: container VMs have no guest (no simulator guest configured): they will not boot"
                ),
            }
        }
        let files = std::sync::Arc::new(store::DatastoreFiles::new(
            cfg.client.clone(),
            cfg.datacenter.clone(),
            cfg.datacenter_name.clone(),
            cfg.work_dir.clone(),
        ));
        VsphereBackend {
            files,
            cfg,
            channels,
            vms: vms::Known::default(),
            images: disks::ImageLocks::default(),
            port_groups: nics::PortGroups::default(),
        }
    }

    pub fn channels(&self) -> &Channels {
        &self.channels
    }
}

fn not_yet(what: &str) -> BackendError {
    BackendError::Failed(format!(
        "{what} is not implemented on the vSphere backend yet"
    ))
}

pub(crate) fn vsphere_err(context: &str) -> impl FnOnce(vim25::Error) -> BackendError + '_ {
    move |e| BackendError::Failed(format!("{context}: {e}"))
}

#[async_trait]
impl Backend for VsphereBackend {
    fn name(&self) -> &'static str {
        "vsphere"
    }

    fn describe(&self) -> String {
        let c = self.cfg.client.content();
        format!("{} (vim25 {})", c.full_name, c.api_version)
    }

    fn root_disk(&self) -> RootDisk {
        RootDisk {
            device: "/dev/sda".into(),
            fstype: "ext4".into(),
            data_disks: hypervisor::DataDisks::ByScsiUnit,
        }
    }

    async fn prepare_image(&self, image_id: &str, rootfs: &Path) -> Result<(), BackendError> {
        self.prepare(image_id, rootfs).await
    }

    async fn remove_image(&self, image_id: &str) -> Result<(), BackendError> {
        self.remove_base(image_id).await
    }

    /// The default bridge network is the VCH's bridge port group, which vic-machine checked.
    /// Other networks are not made on vSphere yet.
    async fn ensure_network(&self, net: &NetworkSpec) -> Result<(), BackendError> {
        self.note_network(net)
    }

    fn host_gateway(&self) -> Option<Ipv4Addr> {
        None
    }

    async fn remove_network(&self, _name: &str) -> Result<(), BackendError> {
        Err(not_yet("a network"))
    }

    async fn listen(
        &self,
        _at: SocketAddrV4,
    ) -> Result<(std::net::UdpSocket, std::net::TcpListener), BackendError> {
        Err(not_yet("a network's DNS server"))
    }

    async fn attach_nic(&self, _id: &str, _index: usize, _nic: &Nic) -> Result<(), BackendError> {
        Err(not_yet("connecting a running VM to a network"))
    }

    async fn detach_nic(&self, _id: &str, _index: usize) -> Result<(), BackendError> {
        Err(not_yet("disconnecting a running VM from a network"))
    }

    async fn set_nics(&self, id: &str, nics: &[Nic]) -> Result<(), BackendError> {
        self.check_nics(id, nics).await
    }

    async fn set_size(&self, id: &str, memory_mib: u32, cpus: u32) -> Result<(), BackendError> {
        self.resize(id, memory_mib, cpus.max(1)).await
    }

    async fn set_cpu_shares(&self, id: &str, shares: Option<u32>) -> Result<(), BackendError> {
        self.reweigh(id, shares).await
    }

    async fn dial(&self, _to: SocketAddrV4) -> Result<tokio::net::TcpStream, BackendError> {
        Err(not_yet("a published port"))
    }

    async fn dial_udp(&self, _to: SocketAddrV4) -> Result<tokio::net::UdpSocket, BackendError> {
        Err(not_yet("a published port"))
    }

    async fn create_vm(&self, vm: &VmConfig) -> Result<(), BackendError> {
        self.create(vm).await
    }

    fn store_files(&self) -> std::sync::Arc<dyn hypervisor::StoreFiles> {
        self.files.clone()
    }

    async fn create_disk(
        &self,
        path: &Path,
        capacity_mib: u64,
        seed: Option<&Path>,
    ) -> Result<(), BackendError> {
        self.create_volume_disk(path, capacity_mib, seed).await
    }

    async fn pause(&self, _id: &str) -> Result<(), BackendError> {
        Err(not_yet("pausing a VM"))
    }

    async fn resume(&self, _id: &str) -> Result<(), BackendError> {
        Err(not_yet("pausing a VM"))
    }

    async fn power_on(&self, id: &str) -> Result<PoweredOn, BackendError> {
        self.start(id).await
    }

    async fn started_outside(&self) -> Option<String> {
        self.next_started_outside().await
    }

    async fn reattach(&self, id: &str) -> Result<PoweredOn, BackendError> {
        self.take_over(id).await
    }

    async fn power_off(&self, id: &str, grace: Duration) -> Result<(), BackendError> {
        self.stop(id, grace).await
    }

    async fn destroy_vm(&self, id: &str) -> Result<(), BackendError> {
        self.destroy(id).await
    }

    async fn power_state(&self, id: &str) -> PowerState {
        self.state(id).await
    }

    async fn list_vms(&self) -> Result<Vec<String>, BackendError> {
        Ok(self.inventory().await?.into_keys().collect())
    }
}
