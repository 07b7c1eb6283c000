//! Container VMs' NICs: a vmxnet3 with the MAC the port layer chose, on the port group of its
//! network. The VCH's bridge network is its bridge port group (a distributed port group on a
//! vCenter), a container network its own port group; the port group is looked up by name
//! when a VM is made.

use std::collections::HashMap;
use std::sync::Mutex;

use hypervisor::{BackendError, NetworkSpec, Nic, Trust};
use vim25::devices::Device;

use crate::{not_yet, vsphere_err, VsphereBackend};

/// The port group of each network the port layer made, by the network's name.
#[derive(Default)]
pub struct PortGroups(Mutex<HashMap<String, String>>);

impl PortGroups {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl VsphereBackend {
    /// Records the port group of network `net`: the VCH's bridge port group for the default
    /// bridge network, its own port group for a container network (`--container-network`,
    /// open: no firewall is made for it on vSphere); user networks are not made on vSphere yet.
    pub(crate) fn note_network(&self, net: &NetworkSpec) -> Result<(), BackendError> {
        if let Some(ext) = &net.external {
            if ext.trust != Trust::Open {
                return Err(not_yet(&format!(
                    "a firewall ({:?}) on container network {}",
                    ext.trust, net.label
                )));
            }
            tracing::info!(network = %net.label, port_group = %ext.source, "a container network is its port group on vSphere");
            (self.port_groups.lock()).insert(net.name.clone(), ext.source.clone());
            return Ok(());
        }
        if net.label != "bridge" {
            return Err(not_yet(&format!("network {}", net.label)));
        }
        let Some(pg) = &self.cfg.bridge_network else {
            return Err(BackendError::Failed(
                "the VCH has no bridge port group: containers cannot join the bridge network"
                    .into(),
            ));
        };
        tracing::info!(port_group = %pg, "the bridge network is the VCH's bridge port group on vSphere");
        self.port_groups.lock().insert(net.name.clone(), pg.clone());
        Ok(())
    }

    /// The devices of `nics`, in order.
    pub(crate) async fn nic_devices(&self, nics: &[Nic]) -> Result<Vec<Device>, BackendError> {
        let mut devices = Vec::new();
        for nic in nics {
            let pg = self.port_groups.lock().get(&nic.network).cloned();
            let Some(pg) = pg else {
                return Err(BackendError::Failed(format!(
                    "network {} has no port group on vSphere",
                    nic.network
                )));
            };
            let backing = (self.cfg.client)
                .nic_backing(&self.cfg.datacenter_name, &pg)
                .await
                .map_err(vsphere_err("finding the port group"))?;
            devices.push(Device::Nic {
                network: backing,
                mac: Some(nic.mac.to_ascii_lowercase()),
            });
        }
        Ok(devices)
    }

    /// Checks that VM `id` has exactly the NICs `nics` (by MAC); changing a VM's networks is
    /// not done on vSphere yet.
    pub(crate) async fn check_nics(&self, id: &str, nics: &[Nic]) -> Result<(), BackendError> {
        let vm = self.known(id).await?;
        let devices = (self.cfg.client.devices(&vm.moref))
            .await
            .map_err(vsphere_err("reading the VM's devices"))?;
        let mut has: Vec<String> = devices
            .iter()
            .filter(|d| d.child("backing").is_some() && d.child("macAddress").is_some())
            .filter_map(|d| d.text_at(&["macAddress"]))
            .map(str::to_ascii_lowercase)
            .collect();
        let mut wants: Vec<String> = nics.iter().map(|n| n.mac.to_ascii_lowercase()).collect();
        has.sort();
        wants.sort();
        if has == wants {
            Ok(())
        } else {
            Err(not_yet("changing a VM's networks"))
        }
    }
}
