//! `vic-machine delete` on vSphere: the VCH is found by its appliance VM (a VM of that name
//! whose guestinfo holds a VCH's configuration); its container VMs, the appliance VM, its
//! vApp or pool and its directory on the image datastore (images, the key image) go.

use std::time::Duration;

use anyhow::Context;
use vch_config::guestinfo as gi;
use vch_config::BackendConfig;
use vim25::datastore::DatastorePath;
use vim25::vm::PowerState;
use vim25::{Client, MoRef};

use crate::output::info;

const TASK: Duration = Duration::from_secs(120);

/// A VCH found on the target.
pub struct Found {
    pub appliance: MoRef,
    pub pool: MoRef,
    pub datacenter: MoRef,
    /// The VCH's directory on the image datastore (the parent of its images' directory).
    pub dir: Option<DatastorePath>,
}

/// The VCH `name` in datacenter `dc`, by its appliance VM.
pub async fn find(client: &Client, dc: &MoRef, name: &str) -> anyhow::Result<Option<Found>> {
    let vms = client
        .find_all(
            dc,
            &[(
                "VirtualMachine",
                &["name", "resourcePool", "config.extraConfig"],
            )],
        )
        .await
        .context("listing the datacenter's VMs")?;
    for vm in vms {
        if vm.text("name") != Some(name) {
            continue;
        }
        let Some(list) = vm.prop("config.extraConfig") else {
            continue;
        };
        let config = (list.children.iter().rev())
            .find(|c| c.text_at(&["key"]) == Some(gi::CONFIG))
            .and_then(|c| c.text_at(&["value"]));
        let Some(config) = config else { continue };
        let Some(pool) = vm.prop("resourcePool").and_then(|p| p.moref()) else {
            continue;
        };
        let dir = match gi::decode_config(config) {
            Ok(doc) => match doc.backend {
                // Never the datastore's root: a VCH's directory has a name.
                BackendConfig::Vsphere(v) => DatastorePath::parse(&v.image_store).and_then(|p| {
                    let (parent, _) = p.path.rsplit_once('/')?;
                    (!parent.is_empty()).then(|| DatastorePath::new(&p.datastore, parent))
                }),
                BackendConfig::Local { .. } => None,
            },
            Err(e) => {
                info(format!(
                    "The appliance VM's configuration does not read: {e}"
                ));
                None
            }
        };
        return Ok(Some(Found {
            appliance: vm.obj,
            pool,
            datacenter: dc.clone(),
            dir,
        }));
    }
    Ok(None)
}

/// Powers off and destroys every VM in `pool`, then the pool (or vApp).
pub async fn empty_and_destroy(client: &Client, pool: &MoRef) -> anyhow::Result<()> {
    let vms = client
        .find_all(pool, &[("VirtualMachine", &["name"])])
        .await
        .context("listing the VCH's VMs")?;
    for vm in &vms {
        remove_vm(client, &vm.obj).await?;
    }
    client
        .destroy(pool, TASK)
        .await
        .with_context(|| format!("removing the VCH's pool {}", pool.value))
}

async fn remove_vm(client: &Client, vm: &MoRef) -> anyhow::Result<()> {
    if client.power_state(vm).await? == PowerState::PoweredOn {
        match client.power_off(vm, TASK).await {
            Ok(()) => {}
            Err(e) if e.fault() == Some("InvalidPowerState") => {}
            Err(e) => return Err(e).with_context(|| format!("powering off {}", vm.value)),
        }
    }
    client
        .destroy(vm, TASK)
        .await
        .with_context(|| format!("removing the VM {}", vm.value))
}

/// Removes the VCH: container VMs first, then the appliance VM, the pool, the directory.
/// Running container VMs are refused unless `force`.
pub async fn remove(client: &Client, found: &Found, force: bool) -> anyhow::Result<()> {
    let vms = client
        .find_all(
            &found.pool,
            &[("VirtualMachine", &["name", "runtime.powerState"])],
        )
        .await
        .context("listing the VCH's VMs")?;
    let containers: Vec<_> = vms.iter().filter(|v| v.obj != found.appliance).collect();
    let running = (containers.iter())
        .filter(|v| v.text("runtime.powerState") == Some("poweredOn"))
        .count();
    if running > 0 && !force {
        anyhow::bail!("There are {running} running container VMs, please use --force to delete");
    }
    info("Removing VMs");
    for vm in containers {
        remove_vm(client, &vm.obj).await?;
    }
    info("Removing appliance VM");
    remove_vm(client, &found.appliance).await?;
    empty_and_destroy(client, &found.pool).await?;
    if let Some(dir) = &found.dir {
        info(format!("Removing images and the VCH's files in {dir}"));
        match client
            .delete_datastore_file(&found.datacenter, dir, TASK)
            .await
        {
            Ok(()) => {}
            Err(e) if e.fault() == Some("FileNotFound") => {}
            Err(e) => return Err(e).with_context(|| format!("removing {dir}")),
        }
    }
    Ok(())
}
