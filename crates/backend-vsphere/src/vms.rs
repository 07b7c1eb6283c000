//! Container VMs on vSphere: made in the VCH's folder and pool, found again by the container
//! ID in their guestinfo, powered, watched until they power off, destroyed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use hypervisor::{BackendError, DataDisk, PowerState, PoweredOn, VmConfig, VmExit};
use vim25::datastore::DatastorePath;
use vim25::devices::{Device, DiskMode};
use vim25::updates::{UpdateKind, Watch};
use vim25::vm::{PowerState as VsPower, VmSpec};
use vim25::MoRef;

use hypervisor::StoreFiles;

use crate::{not_yet, vsphere_err, VsphereBackend};

/// How long a vSphere task of a VM may take.
const TASK_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a restarted appliance waits for a running VM's serial port to dial again.
const REATTACH_TIMEOUT: Duration = Duration::from_secs(30);

pub const KEY_ID: &str = "guestinfo.vic.id";
pub const KEY_TOKEN: &str = "guestinfo.vic.token";
pub const KEY_CHANNEL: &str = "guestinfo.vic.channel";
/// The image whose base disk the VM's root disk is a child of (not guestinfo: the guest has
/// no use for it).
pub const KEY_IMAGE: &str = "vic.image";
/// vcsim's key: the command it starts as the VM's guest.
const KEY_SIM_RUN: &str = "RUN.container";

/// A container's VM as the backend knows it.
#[derive(Debug, Clone)]
pub struct Vm {
    pub moref: MoRef,
    pub token: String,
    pub image: Option<String>,
}

/// The VMs found so far, by container ID.
#[derive(Default)]
pub struct Known(Mutex<HashMap<String, Vm>>);

impl Known {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vm>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// vSphere's custom CPU shares for Docker's `--cpu-shares` of a VM with `cpus` vCPUs: 1024
/// is vSphere's `normal` level (1000 shares a vCPU), other weights in proportion.
pub(crate) fn custom_shares(docker: u32, cpus: u32) -> u32 {
    let n = u64::from(docker) * 1000 * u64::from(cpus.max(1)) / 1024;
    n.clamp(1, 1_000_000) as u32
}

impl VsphereBackend {
    pub(crate) async fn create(&self, vm: &VmConfig) -> Result<(), BackendError> {
        if !vm.shares.is_empty() {
            return Err(not_yet("a VM with bind mounts"));
        }
        if !vm.host_cpus.is_empty() {
            return Err(not_yet("pinning a VM to host CPUs"));
        }
        if self.find(&vm.id).await?.is_some() {
            return Err(BackendError::Failed(format!(
                "a VM of container {} already exists",
                vm.id
            )));
        }
        let nics = self.nic_devices(&vm.nics).await?;
        let volumes = self.volume_devices(&vm.disks).await?;
        let base = self.base_disk(&vm.image_id)?;
        let Some(capacity) = self.base_capacity(&vm.image_id).await? else {
            return Err(BackendError::Failed(format!(
                "the image {} has no base disk on the datastore ({base})",
                vm.image_id
            )));
        };
        let token = hex::encode(rand::random::<[u8; 32]>());
        let mut extra = vec![
            (KEY_ID.to_string(), vm.id.clone()),
            (KEY_TOKEN.to_string(), token.clone()),
            (KEY_CHANNEL.to_string(), self.channels.uri()),
            (KEY_IMAGE.to_string(), vm.image_id.clone()),
        ];
        let client = &self.cfg.client;
        if client.content().is_simulator() {
            if let Some(guest) = &self.cfg.simulator_guest {
                let run = format!("[{:?}]", guest.display().to_string());
                extra.push((KEY_SIM_RUN.to_string(), run));
            }
        }
        let spec = VmSpec {
            name: vm.display_name.clone(),
            guest_id: "otherLinux64Guest".into(),
            files: format!("[{}]", self.cfg.datastore),
            memory_mib: vm.memory_mib,
            cpus: vm.cpus.max(1),
            cpu_shares: vm.cpu_shares.map(|s| custom_shares(s, vm.cpus)),
            annotation: Some(format!("vic container {}", vm.id)),
            extra_config: extra,
            devices: [
                Device::SerialUri {
                    uri: self.channels.uri(),
                    client: true,
                },
                // The root disk: a child delta of the image's, in the VM's own directory.
                Device::Disk {
                    path: DatastorePath::new(&self.cfg.datastore, ""),
                    capacity_kib: capacity / 1024,
                    parent: Some(base),
                    create: true,
                    mode: DiskMode::Persistent,
                },
            ]
            .into_iter()
            .chain(volumes)
            .chain(nics)
            .chain((self.cfg.bootstrap_iso.clone()).map(|iso| Device::Cdrom { iso }))
            .collect(),
        };
        let moref = client
            .create_vm(&self.cfg.folder, &self.cfg.pool, None, &spec, TASK_TIMEOUT)
            .await
            .map_err(vsphere_err("creating the VM"))?;
        let image = Some(vm.image_id.clone());
        self.vms.lock().insert(
            vm.id.clone(),
            Vm {
                moref,
                token,
                image,
            },
        );
        Ok(())
    }

    /// The disks of volumes `disks`, at SCSI units 1… in their order (the guest finds disk
    /// `i` at [`hypervisor::scsi_unit`]`(i)`): independent of the VM's snapshots, and a
    /// read-only one's writes dropped at power-off.
    async fn volume_devices(&self, disks: &[DataDisk]) -> Result<Vec<Device>, BackendError> {
        if disks.len() > hypervisor::MAX_SCSI_DATA_DISKS {
            return Err(BackendError::Failed(format!(
                "a container VM on vSphere takes at most {} volumes ({} asked)",
                hypervisor::MAX_SCSI_DATA_DISKS,
                disks.len()
            )));
        }
        let mut out = Vec::new();
        for d in disks {
            let path = (d.path.to_str())
                .and_then(DatastorePath::parse)
                .ok_or_else(|| {
                    BackendError::Failed(format!(
                        "{} is not a disk on a datastore",
                        d.path.display()
                    ))
                })?;
            let Some(bytes) = self.files.disk_bytes(&d.path).await else {
                return Err(BackendError::Failed(format!(
                    "the volume's disk {path} is not there"
                )));
            };
            out.push(Device::Disk {
                path,
                capacity_kib: bytes / 1024,
                parent: None,
                create: false,
                mode: match d.readonly {
                    true => DiskMode::IndependentNonpersistent,
                    false => DiskMode::IndependentPersistent,
                },
            });
        }
        Ok(out)
    }

    /// The VM of container `id`, from what is known or from the pool's inventory.
    pub(crate) async fn find(&self, id: &str) -> Result<Option<Vm>, BackendError> {
        if let Some(vm) = self.vms.lock().get(id) {
            return Ok(Some(vm.clone()));
        }
        Ok(self.inventory().await?.remove(id))
    }

    pub(crate) async fn known(&self, id: &str) -> Result<Vm, BackendError> {
        self.find(id)
            .await?
            .ok_or_else(|| BackendError::NoSuchVm(id.to_string()))
    }

    /// Every container VM in the VCH's pool, by container ID (VMs without one are not the
    /// VCH's containers).
    pub(crate) async fn inventory(&self) -> Result<HashMap<String, Vm>, BackendError> {
        let found = self
            .cfg
            .client
            .find_all(
                &self.cfg.pool,
                &[("VirtualMachine", &["config.extraConfig"])],
            )
            .await
            .map_err(vsphere_err("listing the VCH's VMs"))?;
        let mut out = HashMap::new();
        for o in found {
            let Some(list) = o.prop("config.extraConfig") else {
                continue;
            };
            // The last value of a key is the one in force.
            let value = |key: &str| {
                list.children
                    .iter()
                    .rev()
                    .find(|c| c.text_at(&["key"]) == Some(key))
                    .and_then(|c| c.text_at(&["value"]))
                    .map(str::to_string)
            };
            if let (Some(id), Some(token)) = (value(KEY_ID), value(KEY_TOKEN)) {
                let image = value(KEY_IMAGE);
                out.insert(
                    id,
                    Vm {
                        moref: o.obj,
                        token,
                        image,
                    },
                );
            }
        }
        let mut known = self.vms.lock();
        known.clear();
        known.extend(out.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(out)
    }

    pub(crate) async fn start(&self, id: &str) -> Result<PoweredOn, BackendError> {
        let vm = self.known(id).await?;
        if self.channels.has_unclaimed(id) && self.vs_state(&vm).await? == VsPower::PoweredOn {
            tracing::info!(
                id,
                "the VM was powered on from vSphere: the container starts on it"
            );
            let rx = self.channels.expect(id, &vm.token);
            return self.channel_of(id, &vm, rx, REATTACH_TIMEOUT).await;
        }
        // The port layer starts a container that is not running: a VM still on is what is
        // left of its last run (a guest that did not power off, or one vSphere has not seen
        // power off yet).
        if self.vs_state(&vm).await? == VsPower::PoweredOn {
            tracing::info!(
                id,
                "the VM is still on from its last run: powering it off first"
            );
            self.stop(id, Duration::ZERO).await?;
        }
        let rx = self.channels.expect(id, &vm.token);
        if let Err(e) = self.cfg.client.power_on(&vm.moref, TASK_TIMEOUT).await {
            self.channels.forget(id);
            return Err(BackendError::Failed(format!("powering the VM on: {e}")));
        }
        self.channel_of(id, &vm, rx, self.cfg.boot_timeout).await
    }

    /// The next container whose VM's guest dialled in unawaited (its VM powered on from
    /// vSphere) and proved itself with the VM's token; its channel waits for
    /// [`VsphereBackend::start`]. Strangers' channels are closed.
    pub(crate) async fn next_started_outside(&self) -> Option<String> {
        loop {
            let (id, token) = self.channels.next_unclaimed().await?;
            let vm = match self.find(&id).await {
                Ok(Some(vm)) => vm,
                Ok(None) => {
                    tracing::warn!(id, "tether channel closed: no VM of that container");
                    self.channels.close_unclaimed(&id);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(id, "tether channel closed: {e}");
                    self.channels.close_unclaimed(&id);
                    continue;
                }
            };
            if !crate::channels::same(vm.token.as_bytes(), token.as_bytes()) {
                tracing::warn!(id, "tether channel closed: the token is not the VM's");
                self.channels.close_unclaimed(&id);
                continue;
            }
            tracing::info!(
                id,
                "a VM's guest dialled in unawaited: powered on from vSphere"
            );
            return Some(id);
        }
    }

    pub(crate) async fn take_over(&self, id: &str) -> Result<PoweredOn, BackendError> {
        let vm = self.known(id).await?;
        if self.vs_state(&vm).await? != VsPower::PoweredOn {
            return Err(BackendError::Failed(format!(
                "the VM of {id} is not running"
            )));
        }
        let rx = self.channels.expect(id, &vm.token);
        self.channel_of(id, &vm, rx, REATTACH_TIMEOUT).await
    }

    /// Waits up to `limit` for VM `id`'s channel; with it, a future of the VM's power-off.
    async fn channel_of(
        &self,
        id: &str,
        vm: &Vm,
        rx: tokio::sync::oneshot::Receiver<crate::channels::Channel>,
        limit: Duration,
    ) -> Result<PoweredOn, BackendError> {
        let channel = match tokio::time::timeout(limit, rx).await {
            Ok(Ok(c)) => c,
            _ => {
                self.channels.forget(id);
                return Err(BackendError::BootTimeout {
                    id: id.to_string(),
                    secs: limit.as_secs(),
                    log: format!("the VM's console, on vSphere ({})", vm.moref.value),
                });
            }
        };
        let exited = watch_power_off(self.cfg.client.clone(), vm.moref.clone()).await?;
        Ok(PoweredOn {
            channel: Box::new(channel),
            pid: None,
            exited,
            restored: None,
        })
    }

    async fn vs_state(&self, vm: &Vm) -> Result<VsPower, BackendError> {
        self.cfg
            .client
            .power_state(&vm.moref)
            .await
            .map_err(vsphere_err("reading the VM's power state"))
    }

    /// Waits up to `grace` for the VM to power off by itself (its guest was told to), then
    /// powers it off.
    pub(crate) async fn stop(&self, id: &str, grace: Duration) -> Result<(), BackendError> {
        let vm = self.known(id).await?;
        let deadline = Instant::now() + grace;
        while self.vs_state(&vm).await? == VsPower::PoweredOn {
            if Instant::now() >= deadline {
                return match self.cfg.client.power_off(&vm.moref, TASK_TIMEOUT).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.fault() == Some("InvalidPowerState") => Ok(()),
                    Err(e) => Err(BackendError::Failed(format!("powering the VM off: {e}"))),
                };
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// Sets VM `id`'s memory and vCPUs when they differ (vSphere refuses while it runs).
    pub(crate) async fn resize(
        &self,
        id: &str,
        memory_mib: u32,
        cpus: u32,
    ) -> Result<(), BackendError> {
        let vm = self.known(id).await?;
        let client = &self.cfg.client;
        let now = (client.size(&vm.moref).await).map_err(vsphere_err("reading the VM's size"))?;
        if now == (memory_mib, cpus) {
            return Ok(());
        }
        (client.set_size(&vm.moref, memory_mib, cpus, TASK_TIMEOUT))
            .await
            .map_err(vsphere_err("resizing the VM"))
    }

    /// Sets VM `id`'s CPU shares when they differ (a running VM takes them at once).
    pub(crate) async fn reweigh(&self, id: &str, shares: Option<u32>) -> Result<(), BackendError> {
        let vm = self.known(id).await?;
        let client = &self.cfg.client;
        let (cpus, now) = (client.cpus_and_shares(&vm.moref).await)
            .map_err(vsphere_err("reading the VM's CPU shares"))?;
        let want = shares.map(|s| custom_shares(s, cpus));
        if now == want {
            return Ok(());
        }
        (client.set_cpu_shares(&vm.moref, want, TASK_TIMEOUT))
            .await
            .map_err(vsphere_err("setting the VM's CPU shares"))
    }

    pub(crate) async fn destroy(&self, id: &str) -> Result<(), BackendError> {
        let Some(vm) = self.find(id).await? else {
            return Ok(());
        };
        self.channels.forget(id);
        if self.vs_state(&vm).await? != VsPower::PoweredOff {
            self.stop(id, Duration::ZERO).await?;
        }
        // Destroying a VM deletes every disk it has: volumes are taken off first.
        (self.cfg.client)
            .detach_data_disks(&vm.moref, TASK_TIMEOUT)
            .await
            .map_err(vsphere_err("taking the volumes off the VM"))?;
        self.cfg
            .client
            .destroy(&vm.moref, TASK_TIMEOUT)
            .await
            .map_err(vsphere_err("destroying the VM"))?;
        self.vms.lock().remove(id);
        Ok(())
    }

    pub(crate) async fn state(&self, id: &str) -> PowerState {
        let vm = match self.find(id).await {
            Ok(Some(vm)) => vm,
            Ok(None) => return PowerState::Absent,
            Err(e) => {
                tracing::warn!(id, "reading the VM's power state: {e}");
                return PowerState::Off;
            }
        };
        match self.vs_state(&vm).await {
            Ok(VsPower::PoweredOn) => PowerState::On,
            Ok(_) => PowerState::Off,
            Err(e) if e.to_string().contains("ManagedObjectNotFound") => PowerState::Absent,
            Err(e) => {
                tracing::warn!(id, "reading the VM's power state: {e}");
                PowerState::Off
            }
        }
    }
}

/// A future that resolves when `vm` is seen powered off or gone (by anyone: vic, the
/// vSphere client, a host failure), from a watch of its power state.
async fn watch_power_off(
    client: vim25::Client,
    vm: MoRef,
) -> Result<futures_util::future::BoxFuture<'static, VmExit>, BackendError> {
    let mut watch = Watch::new(
        &client,
        std::slice::from_ref(&vm),
        "VirtualMachine",
        &["runtime.powerState"],
    )
    .await
    .map_err(vsphere_err("watching the VM"))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let detail = loop {
            match watch.next(Duration::from_secs(60)).await {
                Ok(updates) => {
                    let off = updates.iter().find_map(|u| {
                        if u.kind == UpdateKind::Leave {
                            return Some("the VM was removed".to_string());
                        }
                        u.changes
                            .iter()
                            .filter(|c| c.name == "runtime.powerState")
                            .filter_map(|c| c.val.as_ref())
                            .find(|v| v.text != "poweredOn")
                            .map(|v| format!("vSphere reports the VM {}", v.text))
                    });
                    if let Some(d) = off {
                        break d;
                    }
                }
                Err(e) if e.fault() == Some("ManagedObjectNotFound") => {
                    break "the VM was removed".to_string()
                }
                Err(e) => {
                    tracing::warn!("watching a VM's power state: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        watch.close().await;
        let _ = tx.send(VmExit { detail });
    });
    Ok(rx
        .map(|r| {
            r.unwrap_or(VmExit {
                detail: "the watch of the VM ended".into(),
            })
        })
        .boxed())
}
