//! `vic-machine ls` and `inspect` on vSphere: the VCHs of a datacenter, found by their
//! appliance VMs, in VIC's columns; one VCH's report from its appliance VM's document.

use vch_config::{ApplianceConfig, BackendConfig};
use vim25::Client;

use super::found::{self, Found};
use crate::output::info;

/// `ls`: ID, PATH (the VCH's vApp or pool), NAME, VERSION, UPGRADE STATUS.
pub async fn ls(client: &Client, dc: &vim25::MoRef) -> anyhow::Result<()> {
    let installer = crate::parts::installer_version();
    let vchs = found::all(client, dc).await?;
    println!(
        "{:<16} {:<48} {:<24} {:<12} UPGRADE STATUS",
        "ID", "PATH", "NAME", "VERSION"
    );
    for v in &vchs {
        let path = found::inventory_path(client, &v.pool).await?;
        let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or(&path);
        let version = v.version.as_deref().unwrap_or("unknown");
        println!(
            "{:<16} {:<48} {:<24} {:<12} {}",
            v.appliance.value,
            parent,
            v.name,
            version,
            crate::parts::upgrade_status_short(&installer, version)
        );
    }
    Ok(())
}

/// `inspect`: the VCH's state, version, how to reach it and its settings.
pub async fn inspect(client: &Client, v: &Found) -> anyhow::Result<()> {
    info("### Inspecting VCH ####");
    info("");
    info(format!("VCH name: {}", v.name));
    info(format!("VCH ID: {}", v.appliance.value));
    info(format!(
        "VCH path: {}",
        found::inventory_path(client, &v.pool).await?
    ));
    let (memory, cpus) = client.size(&v.appliance).await?;
    info(format!(
        "Appliance VM: {} ({memory} MiB, {cpus} vCPU)",
        v.power
    ));
    let running = client
        .find_all(&v.pool, &[("VirtualMachine", &["runtime.powerState"])])
        .await?
        .iter()
        .filter(|o| o.obj != v.appliance && o.text("runtime.powerState") == Some("poweredOn"))
        .count();
    info(format!("Running containers: {running}"));
    let installer = crate::parts::installer_version();
    let version = v.version.as_deref().unwrap_or("unknown");
    info(format!("Installer version: {installer}"));
    info(format!("VCH version: {version}"));
    info(format!(
        "VCH upgrade status: {}",
        crate::parts::upgrade_status_short(&installer, version)
    ));
    if let Some(dir) = &v.dir {
        info(format!("VCH directory: {dir}"));
    }
    match &v.doc {
        Some(doc) => report(doc),
        None => info("The appliance VM's configuration does not read"),
    }
    Ok(())
}

fn report(doc: &ApplianceConfig) {
    let tls = match &doc.tls {
        None => "no TLS",
        Some(t) if t.client_cas.is_empty() => "TLS without client verification (no-tlsverify)",
        Some(_) => "TLS with client verification (tlsverify)",
    };
    info(format!("Docker API: {} ({tls})", doc.listen));
    crate::inspect::admin_portal(&doc.settings);
    if let BackendConfig::Vsphere(b) = &doc.backend {
        info(format!("Image store: {}", b.image_store));
        info(format!(
            "Bridge network: {}",
            b.bridge_network.as_deref().unwrap_or("none")
        ));
        info(format!("Target: {} as {}", b.host, b.user));
    }
    for n in &doc.networks {
        info(format!(
            "Container network: {}",
            crate::container_networks::describe(n)
        ));
    }
    let s = &doc.settings;
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    info(format!(
        "Insecure registries: {}",
        list(&s.insecure_registries)
    ));
    info(format!(
        "Registry whitelist: {}",
        list(&s.whitelist_registries)
    ));
    let stores: Vec<String> = (s.volume_stores.iter())
        .map(|v| format!("{} ({})", v.label, v.dir.display()))
        .collect();
    info(format!("Volume stores: {}", list(&stores)));
    info(format!(
        "Debug level: {} ({})",
        s.debug,
        crate::settings::debug_label(s.debug)
    ));
}
