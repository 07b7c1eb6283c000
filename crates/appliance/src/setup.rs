//! The appliance's parts, made from the VCH's configuration document: the backend (one
//! constructor, chosen by the document's `backend.kind`), the port layer's limits, the
//! storage and its quota, and the registry options. Each setting is read here and nowhere
//! else in the appliance.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use imagec::pull::RegistryOptions;
use vch_config::{ApplianceConfig, BackendConfig};

/// The VCH's backend, as its document chooses. `jail: false` only measures what the jail
/// costs (`make bench`).
pub async fn backend(
    config: &ApplianceConfig,
    jail: bool,
) -> anyhow::Result<Arc<dyn hypervisor::Backend>> {
    match &config.backend {
        BackendConfig::Local { kernel, initrd } => {
            let local = backend_local::LocalBackend::new(backend_local::LocalConfig {
                root: config.state_dir.join("vms"),
                kernel: kernel.clone(),
                initrd: initrd.clone(),
                cgroup_parent: Path::new("vic").join(&config.name),
                jail,
                netns: Some(backend_local::net::namespace_name(&config.state_dir)),
                templates: !config.settings.cold_boot,
                ..backend_local::LocalConfig::default()
            })
            .context("starting the local backend")?;
            Ok(Arc::new(local))
        }
        BackendConfig::Vsphere(v) => crate::vsphere::backend(v, &config.state_dir)
            .await
            .context("starting the vSphere backend"),
    }
}

/// The predefined network `bridge`, on the first /16 of the bridge range, the VCH's
/// container networks, and the /16s after `bridge`'s, which user networks take.
pub fn networks(
    config: &ApplianceConfig,
) -> anyhow::Result<(Vec<portlayer::Network>, Vec<portlayer::networks::Cidr>)> {
    let range = config.settings.bridge_range()?;
    let subnet = range
        .subnet(0)
        .context("the bridge network range holds no /16")?;
    let pools = (1..)
        .map_while(|n| range.subnet(n))
        .map(|addr| portlayer::networks::Cidr {
            addr,
            prefix_len: 16,
        })
        .collect();
    let mut nets = vec![portlayer::Network::bridge(subnet)];
    for c in &config.networks {
        nets.push(portlayer::Network::container_network(c)?);
    }
    Ok((nets, pools))
}

/// The port layer's limits.
pub fn limits(config: &ApplianceConfig) -> anyhow::Result<portlayer::Limits> {
    let s = &config.settings;
    Ok(portlayer::Limits {
        max_containers: s.containers,
        memory_mib: s.memory_mib,
        cpus: s.cpus,
        storage_quota_bytes: s.storage_quota_bytes(),
        dns_servers: s.dns_addrs()?.iter().map(|ip| ip.to_string()).collect(),
        name_convention: s.container_name_convention.clone(),
    })
}

/// The VCH's storage: the quota over the image store (counted by the store itself), the
/// container directories under the state directory, and the volume stores.
pub fn storage(config: &ApplianceConfig) -> portlayer::Storage {
    portlayer::Storage::new(
        config.settings.storage_quota_bytes(),
        vec![
            config.state_dir.join("vms"),
            config.state_dir.join("containers"),
        ],
        config
            .settings
            .volume_stores
            .iter()
            .map(|v| portlayer::VolumeStore {
                label: v.label.clone(),
                dir: v.dir.clone(),
            })
            .collect(),
    )
}

/// Makes each volume store's directory, on the host or on a datastore as the backend keeps
/// them (so a bad one stops the appliance at start).
pub async fn prepare_volume_stores(
    config: &ApplianceConfig,
    files: &dyn hypervisor::StoreFiles,
) -> anyhow::Result<()> {
    for v in &config.settings.volume_stores {
        (files.make_dir(&v.dir).await)
            .with_context(|| format!("creating volume store {} at {}", v.label, v.dir.display()))?;
        tracing::info!(label = v.label, dir = %v.dir.display(), "volume store");
    }
    Ok(())
}

/// How images are pulled: insecure and allowed registries, the CA bundle, DNS servers.
pub fn registry_options(config: &ApplianceConfig) -> anyhow::Result<RegistryOptions> {
    let s = &config.settings;
    let ca_pems = match &s.registry_ca {
        Some(f) => {
            vec![std::fs::read(f).with_context(|| format!("reading registry CA {}", f.display()))?]
        }
        None => Vec::new(),
    };
    Ok(RegistryOptions {
        insecure: s.insecure_registries.clone(),
        ca_pems,
        whitelist: s.whitelist_registries.clone(),
        dns_servers: s.dns_addrs()?,
        timeouts: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vch_config::{ContainerNetwork, Settings, VolumeStore, SCHEMA};

    fn config(settings: Settings) -> ApplianceConfig {
        ApplianceConfig {
            schema: SCHEMA,
            name: "v".into(),
            state_dir: "/s/v".into(),
            listen: "127.0.0.1:2375".parse().unwrap(),
            image_store: "/s/v/images".into(),
            backend: BackendConfig::Local {
                kernel: "/k".into(),
                initrd: "/i".into(),
            },
            tls: None,
            settings,
            networks: Vec::new(),
        }
    }

    #[test]
    fn every_limit_reaches_the_port_layer() {
        let c = config(Settings {
            containers: Some(3),
            memory_mib: Some(2048),
            cpus: Some(2),
            storage_quota_gib: Some(5),
            dns_servers: vec!["10.0.0.53".into()],
            container_name_convention: Some("x-{id}".into()),
            ..Settings::default()
        });
        assert_eq!(
            limits(&c).unwrap(),
            portlayer::Limits {
                max_containers: Some(3),
                memory_mib: Some(2048),
                cpus: Some(2),
                storage_quota_bytes: Some(5 << 30),
                dns_servers: vec!["10.0.0.53".into()],
                name_convention: Some("x-{id}".into()),
            }
        );
        assert_eq!(storage(&c).quota(), Some(5 << 30));
        let (predefined, pools) = networks(&c).unwrap();
        assert_eq!(predefined, [portlayer::Network::default_bridge()]);
        assert_eq!(pools.len(), 15, "172.17.0.0/16 to 172.31.0.0/16");
        assert_eq!(pools[0].to_string(), "172.17.0.0/16");
        let ranged = config(Settings {
            bridge_network_range: Some("10.8.0.0/16".into()),
            ..Settings::default()
        });
        let (predefined, pools) = networks(&ranged).unwrap();
        assert_eq!(predefined[0].gateway.to_string(), "10.8.0.1");
        assert!(
            pools.is_empty(),
            "a /16 range leaves no room for user networks"
        );
        assert_eq!(storage(&config(Settings::default())).quota(), None);
    }

    #[test]
    fn registry_options_carry_the_registries_dns_and_the_ca_bundle() {
        let d = tempfile::tempdir().unwrap();
        let ca = d.path().join("ca.pem");
        std::fs::write(&ca, b"-----BEGIN CERTIFICATE-----\n").unwrap();
        let c = config(Settings {
            insecure_registries: vec!["r:5000".into()],
            whitelist_registries: vec!["w".into()],
            registry_ca: Some(ca.clone()),
            dns_servers: vec!["10.0.0.53".into()],
            ..Settings::default()
        });
        let o = registry_options(&c).unwrap();
        assert_eq!(o.insecure, vec!["r:5000".to_string()]);
        assert_eq!(o.whitelist, vec!["w".to_string()]);
        assert_eq!(o.ca_pems, vec![b"-----BEGIN CERTIFICATE-----\n".to_vec()]);
        assert_eq!(
            o.dns_servers,
            vec!["10.0.0.53".parse::<std::net::IpAddr>().unwrap()]
        );
        std::fs::remove_file(&ca).unwrap();
        let err = format!("{:#}", registry_options(&c).unwrap_err());
        assert!(err.contains("reading registry CA"), "{err}");
    }

    #[tokio::test]
    async fn volume_stores_are_made_and_container_networks_served() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("vols/default");
        let mut c = config(Settings {
            volume_stores: vec![VolumeStore {
                label: "default".into(),
                dir: dir.clone(),
            }],
            ..Settings::default()
        });
        prepare_volume_stores(&c, &hypervisor::LocalFiles)
            .await
            .unwrap();
        assert!(dir.is_dir());
        assert_eq!(storage(&c).volume_stores()[0].label, "default");
        c.networks.push(ContainerNetwork {
            name: "public".into(),
            source: "br0".into(),
            gateway: Some("10.9.0.1/24".into()),
            ip_range: None,
            dns: Vec::new(),
            firewall: vch_config::Firewall::Published,
        });
        let (nets, _) = networks(&c).unwrap();
        let names: Vec<&str> = nets.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["bridge", "public"]);
        assert!(nets[1].external.is_some());
    }
}
