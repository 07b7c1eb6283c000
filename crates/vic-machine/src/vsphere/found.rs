//! VCHs on a vSphere target, found by their appliance VMs: a VM whose guestinfo holds a VCH's
//! configuration document, in the VCH's vApp or resource pool.

use anyhow::Context;
use vch_config::guestinfo as gi;
use vch_config::{ApplianceConfig, BackendConfig};
use vim25::datastore::DatastorePath;
use vim25::{Client, MoRef};

use crate::output::info;

/// The extraConfig key of the vic-machine version that made or last upgraded a VCH.
pub const VERSION: &str = "vic.version";

/// A VCH found on the target.
pub struct Found {
    pub name: String,
    pub appliance: MoRef,
    pub pool: MoRef,
    pub datacenter: MoRef,
    /// `poweredOn`, `poweredOff` or `suspended`.
    pub power: String,
    pub version: Option<String>,
    /// Its configuration, when it reads.
    pub doc: Option<ApplianceConfig>,
    /// The VCH's directory on the image datastore (the parent of its images' directory).
    pub dir: Option<DatastorePath>,
    /// The port group and virtual switch create made for its bridge network (ESX).
    pub made_bridge: Option<String>,
}

/// Every VCH in datacenter `dc`, by name.
pub async fn all(client: &Client, dc: &MoRef) -> anyhow::Result<Vec<Found>> {
    let props: &[&str] = &[
        "name",
        "resourcePool",
        "config.extraConfig",
        "runtime.powerState",
    ];
    let vms = client
        .find_all(dc, &[("VirtualMachine", props)])
        .await
        .context("listing the datacenter's VMs")?;
    let mut out = Vec::new();
    for vm in vms {
        let Some(list) = vm.prop("config.extraConfig") else {
            continue;
        };
        let value = |key: &str| {
            (list.children.iter().rev())
                .find(|c| c.text_at(&["key"]) == Some(key))
                .and_then(|c| c.text_at(&["value"]))
                .map(str::to_string)
        };
        let Some(config) = value(gi::CONFIG) else {
            continue;
        };
        let Some(pool) = vm.prop("resourcePool").and_then(|p| p.moref()) else {
            continue;
        };
        let name = vm.text("name").unwrap_or_default().to_string();
        let doc = match gi::decode_config(&config) {
            Ok(doc) => Some(doc),
            Err(e) => {
                info(format!("The configuration of {name} does not read: {e}"));
                None
            }
        };
        out.push(Found {
            dir: doc.as_ref().and_then(vch_dir),
            power: vm
                .text("runtime.powerState")
                .unwrap_or_default()
                .to_string(),
            version: value(VERSION),
            made_bridge: value(super::deploy::MADE_BRIDGE),
            name,
            appliance: vm.obj,
            pool,
            datacenter: dc.clone(),
            doc,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The VCH `name` in datacenter `dc`.
pub async fn find(client: &Client, dc: &MoRef, name: &str) -> anyhow::Result<Option<Found>> {
    Ok(all(client, dc).await?.into_iter().find(|f| f.name == name))
}

/// The parent of the VCH's images' directory; never a datastore's root (a VCH's directory
/// has a name).
fn vch_dir(doc: &ApplianceConfig) -> Option<DatastorePath> {
    let BackendConfig::Vsphere(v) = &doc.backend else {
        return None;
    };
    let images = DatastorePath::parse(&v.image_store)?;
    let (parent, _) = images.path.rsplit_once('/')?;
    (!parent.is_empty()).then(|| DatastorePath::new(&images.datastore, parent))
}

/// The inventory path of `obj` (`/DC0/host/Cluster/Resources/vch1`), from its parents.
pub async fn inventory_path(client: &Client, obj: &MoRef) -> anyhow::Result<String> {
    let root = client.content().root_folder.clone();
    let mut names = Vec::new();
    let mut at = obj.clone();
    for _ in 0..64 {
        if at == root {
            break;
        }
        let p = client.properties(&at, &["name", "parent"]).await?;
        names.push(p.text("name").unwrap_or_default().to_string());
        match p.prop("parent").and_then(|n| n.moref()) {
            Some(parent) => at = parent,
            None => break,
        }
    }
    names.reverse();
    Ok(format!("/{}", names.join("/")))
}
