//! `inspect` (a VIC-style report on one VCH) and `inspect config` (the `vic-machine create`
//! options that make a VCH like it, in VIC's flag order, defaults left out).

use std::path::Path;

use crate::appliance;
use crate::container_networks;
use crate::delete::running_containers;
use crate::layout::{Layout, VchConfig};
use crate::output::info;
use crate::parts;
use crate::progress;
use crate::settings::{debug_label, Settings};
use crate::tls::{TlsMode, CLIENT_CA, SERVER_CERT, SERVER_KEY};

/// `inspect config --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The options on one line, for `vic-machine create $(vic-machine inspect config --format raw)`.
    Raw,
    /// One option a line, then the whole create command.
    Verbose,
}

fn or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

fn limit<T: std::fmt::Display>(v: Option<T>, unit: &str) -> String {
    match v {
        Some(v) => format!("{v}{unit}"),
        None => "unlimited".into(),
    }
}

/// The report of `vic-machine inspect`.
pub fn inspect(layout: &Layout) -> anyhow::Result<()> {
    info("### Inspecting VCH ####");
    let c = layout.load()?;
    let s = &c.settings;
    let running = appliance::alive(layout);
    let installer = parts::installer_version();
    info("");
    info(format!("VCH name: {}", c.name));
    info(format!(
        "VCH state: {}",
        if running { "running" } else { "stopped" }
    ));
    info(format!(
        "Running containers: {}",
        if running {
            running_containers(layout).to_string()
        } else {
            "0".into()
        }
    ));
    info("");
    info(format!("Installer version: {installer}"));
    info(format!("VCH version: {}", c.version));
    if let Some(prev) = &c.previous_version {
        info(format!(
            "Previous VCH version: {prev} (vic-machine upgrade --rollback returns to it)"
        ));
    }
    info("");
    info("VCH upgrade status:");
    if let Some(m) = progress::marker(layout) {
        info(format!(
            "Upgrade/configure in progress (vic-machine {}, pid {}, since {}; if it was interrupted, configure --reset-progress clears this)",
            m.operation, m.pid, m.started
        ));
    }
    for line in parts::upgrade_status_lines(&installer, &c.version) {
        info(line);
    }
    info("");
    info(format!(
        "Docker API TLS: {}",
        match c.tls.mode {
            TlsMode::Tlsverify => "tlsverify (clients need a certificate)",
            TlsMode::NoTlsverify => "tls (no client certificate checked)",
            TlsMode::NoTls => "none (plain HTTP)",
        }
    ));
    let cert_dir = c.tls.dir(&c.name);
    let tls = c.tls.described(&c.name);
    info("");
    info("Docker environment variables:");
    info(tls.env(&c.docker_host).join(" "));
    let env_file = cert_dir.join(format!("{}.env", c.name));
    if env_file.is_file() {
        info("");
        info(format!("Environment saved in {}", env_file.display()));
    }
    info("");
    info("Connect to docker:");
    for line in tls.docker_lines(c.port) {
        info(line);
    }
    info("");
    info("Registries:");
    info(format!("  insecure: {}", or_none(&s.insecure_registries)));
    info(format!(
        "  whitelist: {}",
        if s.whitelist_registries.is_empty() {
            "none (any registry)".into()
        } else {
            s.whitelist_registries.join(", ")
        }
    ));
    info(format!(
        "  CA bundle: {}",
        s.registry_ca
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "none".into())
    ));
    info("Resource limits (totals over running container VMs):");
    info(format!("  memory: {}", limit(s.memory_mib, " MiB")));
    info(format!("  vCPUs: {}", limit(s.cpus, "")));
    info(format!("  containers: {}", limit(s.containers, "")));
    info(format!(
        "  storage quota: {}",
        limit(s.storage_quota_gib, " GiB")
    ));
    if let Some(m) = s.endpoint_memory_mib {
        info(format!(
            "  endpoint memory: {m} MiB (recorded; does not apply to the local target, where the appliance is a host process)"
        ));
    }
    info(format!("DNS servers: {}", or_none(&s.dns_servers)));
    let stores: Vec<String> = s
        .volume_stores
        .iter()
        .map(|v| format!("{} ({})", v.label, v.dir.display()))
        .collect();
    info(format!("Volume stores: {}", or_none(&stores)));
    let binds: Vec<String> = s.bind_paths.iter().map(|b| b.flag_value()).collect();
    info(format!("Bind paths: {}", or_none(&binds)));
    info(format!(
        "Container name convention: {}",
        s.container_name_convention
            .as_deref()
            .unwrap_or("{name}-{id} (default)")
    ));
    info(format!(
        "Bridge network range: {}",
        s.bridge_network_range
            .as_deref()
            .unwrap_or("172.16.0.0/12 (default)")
    ));
    if c.container_networks.is_empty() {
        info("Container networks: none");
    }
    for n in &c.container_networks {
        info(format!(
            "Container network: {}",
            container_networks::describe(n)
        ));
    }
    networks(layout);
    info(format!("Image store: {}", c.image_store.display()));
    info(format!(
        "Debug level: {} ({})",
        s.debug,
        debug_label(s.debug)
    ));
    info(format!("Container start: {}", container_start(s)));
    admin_portal(s);
    info(format!(
        "Operations user: {}",
        s.ops_user
            .as_deref()
            .unwrap_or("none (VCH Admin takes client certificates only)")
    ));
    info(format!("Appliance log: {}", layout.log().display()));
    info("");
    info("Completed successfully");
    Ok(())
}

/// The networks in the VCH's namespace, as the host sees them.
fn networks(layout: &Layout) {
    let ns = backend_local::net::namespace_name(&layout.dir);
    match backend_local::net::networks(&ns) {
        Ok(nets) if nets.is_empty() => info("Networks: none (the appliance has not made them)"),
        Ok(nets) => {
            info(format!("Networks (in network namespace {ns}):"));
            for n in nets {
                info(format!("  {}: {} on {}", n.name, n.address, n.device));
            }
        }
        Err(e) => info(format!("Networks: cannot be read: {e}")),
    }
}

/// `--flag=value`, single-quoted for a POSIX shell when the value needs it.
fn opt(flag: &str, value: impl AsRef<str>) -> String {
    let v = value.as_ref();
    let safe = v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if safe {
        format!("--{flag}={v}")
    } else {
        format!("'--{flag}={}'", v.replace('\'', r"'\''"))
    }
}

fn path_opt(flag: &str, p: &Path) -> String {
    opt(flag, p.display().to_string())
}

/// Where the VCH's admin pages are, as VIC printed it.
pub fn admin_portal(s: &Settings) {
    match s.admin_port {
        Some(port) => {
            info("VCH Admin Portal:");
            info(format!("https://127.0.0.1:{port}"));
        }
        None => info("VCH Admin Portal: none (the VCH was made before it)"),
    }
}

/// How container VMs start, as `--container-start` says it.
pub fn container_start(s: &Settings) -> &'static str {
    if s.cold_boot {
        "cold"
    } else {
        "template"
    }
}

/// The `create` options that reproduce `c` (under its name), in VIC's order: target,
/// name, image store, container, networks, volume stores, DNS, memory, CPU, storage quota, container
/// count, TLS, registries; then this target's own (--port) and debug.
pub fn create_options(layout: &Layout, c: &VchConfig) -> Vec<String> {
    let s = &c.settings;
    let mut o = vec![opt("target", &c.target), opt("name", &c.name)];
    if c.external_image_store {
        o.push(path_opt("image-store", &c.image_store));
    }
    if let Some(p) = &s.container_name_convention {
        o.push(opt("container-name-convention", p));
    }
    if let Some(r) = &s.bridge_network_range {
        o.push(opt("bridge-network-range", r));
    }
    for (flag, value) in container_networks::flags(&c.container_networks) {
        o.push(opt(flag, value));
    }
    for v in &s.volume_stores {
        o.push(opt("volume-store", v.flag_value()));
    }
    for b in &s.bind_paths {
        o.push(opt("bind-path", b.flag_value()));
    }
    for d in &s.dns_servers {
        o.push(opt("dns-server", d));
    }
    if let Some(m) = s.memory_mib {
        o.push(opt("memory", m.to_string()));
    }
    if let Some(m) = s.endpoint_memory_mib {
        o.push(opt("endpoint-memory", m.to_string()));
    }
    if let Some(n) = s.cpus {
        o.push(opt("cpu", n.to_string()));
    }
    if let Some(q) = s.storage_quota_gib {
        o.push(opt("storage-quota", q.to_string()));
    }
    if let Some(n) = s.containers {
        o.push(opt("containers", n.to_string()));
    }
    let certs = layout.certs_dir();
    if c.tls.tls_own_server_cert {
        o.push(path_opt("tls-server-key", &certs.join(SERVER_KEY)));
        o.push(path_opt("tls-server-cert", &certs.join(SERVER_CERT)));
    }
    if let Some(n) = &c.tls.tls_cname {
        o.push(opt("tls-cname", n));
    }
    // The default directory is ./NAME: a VCH made like this one gets its own.
    if let Some(dir) = &c.tls.cert_path {
        if dir.file_name().is_some_and(|f| f != c.name.as_str()) {
            o.push(path_opt("tls-cert-path", dir));
        }
    }
    if c.tls.mode == TlsMode::NoTlsverify {
        o.push("--no-tlsverify".into());
    }
    if c.tls.tls_user_client_cas {
        o.push(path_opt("tls-ca", &certs.join(CLIENT_CA)));
    }
    if c.tls.mode == TlsMode::NoTls {
        o.push("--no-tls".into());
    }
    if let Some(ca) = &s.registry_ca {
        o.push(path_opt("registry-ca", ca));
    }
    for r in &s.insecure_registries {
        o.push(opt("insecure-registry", r));
    }
    for r in &s.whitelist_registries {
        o.push(opt("whitelist-registry", r));
    }
    if c.fixed_port {
        o.push(opt("port", c.port.to_string()));
    }
    if s.debug > 0 {
        o.push(opt("debug", s.debug.to_string()));
    }
    if s.cold_boot {
        o.push(opt("container-start", "cold"));
    }
    // The password is kept only as a hash and cannot be given back: create asks for it.
    if let Some(u) = &s.ops_user {
        o.push(opt("ops-user", u));
    }
    o
}

/// `vic-machine inspect config`.
pub fn config(layout: &Layout, format: Format) -> anyhow::Result<()> {
    let c = layout.load()?;
    let options = create_options(layout, &c);
    match format {
        Format::Raw => println!("{}", options.join(" ")),
        Format::Verbose => {
            info("### Inspecting VCH config ####");
            info("");
            info(format!(
                "The target VCH is configured with the following options: \n\n\t{}\n",
                options.join("\n\t")
            ));
            info("To create a VCH like it (give it another --name):");
            println!("vic-machine create {}", options.join(" "));
            info("");
            info("Completed successfully");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Settings, VolumeStore};

    #[test]
    fn options_follow_vics_order_skip_defaults_and_quote_for_the_shell() {
        let layout = Layout::new(Some("/s".into()), "v").unwrap();
        let mut c: VchConfig = serde_json::from_value(serde_json::json!({
            "name": "v", "target": "local", "docker_host": "tcp://127.0.0.1:1", "port": 1,
            "image_store": "/s/vch/v/images", "external_image_store": false,
            "created": "", "version": "0.1.0", "tls": "no-tls", "cert_path": "/w/v"
        }))
        .unwrap();
        assert_eq!(
            create_options(&layout, &c),
            ["--target=local", "--name=v", "--no-tls"]
        );
        c.settings = Settings {
            insecure_registries: vec!["r:5000".into()],
            dns_servers: vec!["10.0.0.53".into()],
            containers: Some(2),
            memory_mib: Some(512),
            cpus: Some(2),
            volume_stores: vec![VolumeStore {
                label: "default".into(),
                dir: "/vols".into(),
            }],
            container_name_convention: Some("vch-{name}-{id}".into()),
            debug: 1,
            ..Settings::default()
        };
        c.tls.mode = TlsMode::NoTlsverify;
        c.tls.cert_path = Some("/w/elsewhere".into());
        c.container_networks = vec![vch_config::ContainerNetwork {
            name: "routable".into(),
            source: "br0".into(),
            gateway: Some("10.9.0.1/24".into()),
            ip_range: None,
            dns: Vec::new(),
            firewall: vch_config::Firewall::Outbound,
        }];
        assert_eq!(
            create_options(&layout, &c),
            [
                "--target=local",
                "--name=v",
                "'--container-name-convention=vch-{name}-{id}'",
                "--container-network=br0:routable",
                "--container-network-gateway=br0:10.9.0.1/24",
                "--container-network-firewall=br0:outbound",
                "--volume-store=/vols:default",
                "--dns-server=10.0.0.53",
                "--memory=512",
                "--cpu=2",
                "--containers=2",
                "--tls-cert-path=/w/elsewhere",
                "--no-tlsverify",
                "--insecure-registry=r:5000",
                "--debug=1",
            ]
        );
    }
}
