//! `vic-machine delete` on vSphere: the VCH found by its appliance VM ([`super::found`]), its
//! container VMs, the appliance VM, its vApp or pool and its directory on the image datastore
//! (images, the key image) go.

use std::time::Duration;

use anyhow::Context;
use vim25::datastore::DatastorePath;
use vim25::vm::PowerState;
use vim25::{Client, MoRef};

use super::found::Found;
use crate::output::{info, step};

const TASK: Duration = Duration::from_secs(120);

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

/// Powers `vm` off and destroys it. A VM powered on again in between (a container the
/// still-running appliance restarts by its restart policy) is powered off again, a few times.
async fn remove_vm(client: &Client, vm: &MoRef) -> anyhow::Result<()> {
    let mut tries = 0;
    loop {
        tries += 1;
        if client.power_state(vm).await? == PowerState::PoweredOn {
            match client.power_off(vm, TASK).await {
                Ok(()) => {}
                Err(e) if e.fault() == Some("InvalidPowerState") => {}
                Err(e) => return Err(e).with_context(|| format!("powering off {}", vm.value)),
            }
        }
        // Destroying a VM deletes every disk it has: volumes are taken off first.
        (client.detach_data_disks(vm, TASK).await)
            .with_context(|| format!("taking the volumes off {}", vm.value))?;
        match client.destroy(vm, TASK).await {
            Ok(()) => return Ok(()),
            Err(e) if e.fault() == Some("InvalidPowerState") && tries < 3 => {
                info(format!(
                    "{} was powered on again: powering it off",
                    vm.value
                ));
            }
            Err(e) => return Err(e).with_context(|| format!("removing the VM {}", vm.value)),
        }
    }
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
    let removing = step("Removing VMs");
    for vm in containers {
        remove_vm(client, &vm.obj).await?;
    }
    removing.done();
    let removing = step("Removing appliance VM");
    remove_vm(client, &found.appliance).await?;
    removing.done();
    empty_and_destroy(client, &found.pool).await?;
    let stores = volume_stores(found);
    for (label, store) in &stores {
        match force {
            true => {
                info(format!("Removing volume store {label} ({store})"));
                delete(client, found, &within(store, "volumes")).await?;
            }
            false => info(format!(
                "Volume store {label} ({store}) is kept with its volumes (delete --force removes them)"
            )),
        }
    }
    if let Some(dir) = &found.dir {
        // No volume store is inside it: create refuses one there.
        let removing = step(format!("Removing images and the VCH's files in {dir}"));
        delete(client, found, dir).await?;
        removing.done();
    }
    if let Some(pg) = &found.made_bridge {
        info(format!("Removing virtual switch and port group {pg:?}"));
        let hosts = client
            .find_all(&found.datacenter, &[("HostSystem", &["name"])])
            .await?;
        for host in hosts {
            let ns = client.network_system(&host.obj).await?;
            super::deploy::remove_bridge(client, &ns, pg).await?;
        }
    }
    Ok(())
}

/// The VCH's volume stores, by label, from its document.
fn volume_stores(found: &Found) -> Vec<(String, DatastorePath)> {
    let stores = found
        .doc
        .iter()
        .flat_map(|d| d.settings.volume_stores.iter());
    stores
        .filter_map(|v| Some((v.label.clone(), DatastorePath::parse(v.dir.to_str()?)?)))
        .collect()
}

fn within(dir: &DatastorePath, name: &str) -> DatastorePath {
    DatastorePath::new(&dir.datastore, &format!("{}/{name}", dir.path))
}

async fn delete(client: &Client, found: &Found, file: &DatastorePath) -> anyhow::Result<()> {
    match client
        .delete_datastore_file(&found.datacenter, file, TASK)
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if e.fault() == Some("FileNotFound") => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {file}")),
    }
}
