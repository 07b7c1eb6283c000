//! `--output json` of `ls` and `inspect`: the facts their text shows, as JSON for scripts
//! (snake_case names; a value that is not set is `null`, an empty list `[]`). The password
//! of `--ops-user` is never in it, not even as its hash.

use std::path::PathBuf;

use serde::Serialize;

use crate::appliance;
use crate::container_networks;
use crate::delete::running_containers;
use crate::layout::{Layout, VchConfig};

/// How `ls` and `inspect` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    /// VIC's text.
    #[default]
    Text,
    /// One JSON document.
    Json,
}

/// One VCH as `ls` shows it.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub name: String,
    pub target: String,
    pub docker_host: String,
    pub tls: &'static str,
    pub state: &'static str,
    pub version: String,
    pub upgrade_status: String,
    pub admin_portal: Option<String>,
}

/// The VCH at `layout`, recorded as `c`, as `ls` shows it.
pub fn summary(layout: &Layout, c: &VchConfig, installer: &str) -> Summary {
    let state = if appliance::alive(layout) {
        "running"
    } else {
        "stopped"
    };
    let upgrade_status = if crate::progress::marker(layout).is_some() {
        "Upgrade/configure in progress".to_string()
    } else {
        crate::parts::upgrade_status_short(installer, &c.version)
    };
    Summary {
        name: c.name.clone(),
        target: c.target.clone(),
        docker_host: c.docker_host.clone(),
        tls: c.tls.mode.label(),
        state,
        version: c.version.clone(),
        upgrade_status,
        admin_portal: admin_portal(c),
    }
}

/// Where the VCH's admin pages are, if it has them.
pub fn admin_portal(c: &VchConfig) -> Option<String> {
    c.settings
        .admin_port
        .map(|p| format!("https://127.0.0.1:{p}"))
}

#[derive(Debug, Serialize)]
struct Registries {
    insecure: Vec<String>,
    whitelist: Vec<String>,
    ca_bundle: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Limits {
    memory_mib: Option<u64>,
    cpus: Option<u32>,
    containers: Option<u32>,
    storage_quota_gib: Option<u64>,
    endpoint_memory_mib: Option<u64>,
}

/// One VCH as `inspect` shows it.
#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    summary: Summary,
    running_containers: usize,
    installer_version: String,
    previous_version: Option<String>,
    docker_env: Vec<String>,
    registries: Registries,
    limits: Limits,
    dns_servers: Vec<String>,
    volume_stores: Vec<String>,
    bind_paths: Vec<String>,
    container_name_convention: Option<String>,
    bridge_network_range: Option<String>,
    container_networks: Vec<String>,
    image_store: PathBuf,
    debug: u8,
    container_start: &'static str,
    ops_user: Option<String>,
    appliance_log: PathBuf,
}

/// What `inspect` shows of the VCH at `layout`.
pub fn report(layout: &Layout) -> anyhow::Result<Report> {
    let c = layout.load()?;
    let installer = crate::parts::installer_version();
    let summary = summary(layout, &c, &installer);
    let running = match summary.state {
        "running" => running_containers(layout),
        _ => 0,
    };
    let s = &c.settings;
    Ok(Report {
        running_containers: running,
        installer_version: installer,
        previous_version: c.previous_version.clone(),
        docker_env: c.tls.described(&c.name).env(&c.docker_host),
        registries: Registries {
            insecure: s.insecure_registries.clone(),
            whitelist: s.whitelist_registries.clone(),
            ca_bundle: s.registry_ca.clone(),
        },
        limits: Limits {
            memory_mib: s.memory_mib,
            cpus: s.cpus,
            containers: s.containers,
            storage_quota_gib: s.storage_quota_gib,
            endpoint_memory_mib: s.endpoint_memory_mib,
        },
        dns_servers: s.dns_servers.clone(),
        volume_stores: s.volume_stores.iter().map(|v| v.flag_value()).collect(),
        bind_paths: s.bind_paths.iter().map(|b| b.flag_value()).collect(),
        container_name_convention: s.container_name_convention.clone(),
        bridge_network_range: s.bridge_network_range.clone(),
        container_networks: (c.container_networks.iter())
            .map(container_networks::describe)
            .collect(),
        image_store: c.image_store.clone(),
        debug: s.debug,
        container_start: crate::inspect::container_start(s),
        ops_user: s.ops_user.clone(),
        appliance_log: layout.log(),
        summary,
    })
}

/// Prints `value` as pretty JSON.
pub fn print(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
