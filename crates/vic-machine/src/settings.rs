//! The flags of the settings that `create` sets and `configure` changes: registries, DNS
//! servers, resource limits, volume stores, the container name convention and the debug
//! level. They are recorded in vch.json ([`Settings`], from the vch-config crate, flattened
//! into `VchConfig`) and reach the appliance in its configuration document (`appliance.rs`).
//!
//! Units on the local target, where the VCH is processes on this host rather than a
//! vSphere resource pool: `--memory` is MiB (VIC: MB) and `--cpu` a vCPU count (VIC: MHz),
//! both totals over the running container VMs; `--storage-quota` is GiB; 0 means unlimited,
//! as in VIC.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;

pub use vch_config::{BindPath, Settings, VolumeStore};

fn parse_bind_path(s: &str) -> Result<BindPath, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("resolving {s}: {e}"))?;
    vch_config::parse_bind_path(s, &cwd).map_err(|e| e.to_string())
}

fn parse_volume_store(s: &str) -> Result<VolumeStore, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("resolving {s}: {e}"))?;
    vch_config::parse_volume_store(s, &cwd).map_err(|e| e.to_string())
}

fn parse_dns_server(s: &str) -> Result<IpAddr, String> {
    vch_config::parse_dns_server(s).map_err(|e| e.to_string())
}

fn parse_name_convention(s: &str) -> Result<String, String> {
    vch_config::check_name_convention(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

/// The settings flags, shared by `create` (unset: the default) and `configure` (unset:
/// unchanged). In VIC's order.
#[derive(Debug, Args, Default)]
pub struct SettingsArgs {
    /// Display name of container VMs (QEMU's -name): a pattern with {name} and/or {id},
    /// e.g. vch-{name}-{id} [default: {name}-{id}].
    #[arg(long, visible_alias = "cnc", value_parser = parse_name_convention)]
    pub container_name_convention: Option<String>,
    /// Volume store DIR:LABEL (the directory is made if missing); repeatable. configure
    /// adds stores; an existing label cannot move.
    #[arg(long = "volume-store", visible_alias = "vs", value_parser = parse_volume_store)]
    pub volume_stores: Vec<VolumeStore>,
    /// Host directory whose contents containers may bind-mount (-v /host:/ctr),
    /// DIR[:ro] (every bind from it read-only); repeatable. configure adds directories
    /// (the same one again changes its :ro). Without one, no host path is shared.
    #[arg(long = "bind-path", value_parser = parse_bind_path)]
    pub bind_paths: Vec<BindPath>,
    /// DNS server for containers; repeatable. configure replaces the list.
    #[arg(long = "dns-server", value_parser = parse_dns_server)]
    pub dns_servers: Vec<IpAddr>,
    /// Memory limit of the VCH in MiB: the total of its running container VMs
    /// (unlimited=0). VIC's is MB of a resource pool.
    #[arg(long, visible_alias = "mem")]
    pub memory: Option<u64>,
    /// Memory of the VCH endpoint in MiB: the appliance VM's on vSphere (default 2048, at
    /// least 512). Recorded only on the local target, whose appliance is a host process.
    #[arg(long)]
    pub endpoint_memory: Option<u64>,
    /// vCPU limit of the VCH: the total of its running container VMs (unlimited=0). VIC's
    /// is MHz of a resource pool.
    #[arg(long)]
    pub cpu: Option<u32>,
    /// Storage quota for images and containers in GiB (unlimited=0); recorded, not yet
    /// enforced.
    #[arg(long, visible_alias = "sq")]
    pub storage_quota: Option<u64>,
    /// Total number of containers that can exist in the VCH (unlimited=0).
    #[arg(long)]
    pub containers: Option<u32>,
    /// PEM file of a certificate authority for registries with private certificates;
    /// repeatable. configure replaces the bundle.
    #[arg(long = "registry-ca", visible_alias = "rc")]
    pub registry_cas: Vec<PathBuf>,
    /// Registry whose certificate is not verified, or reached over plain HTTP
    /// (host[:port], *.domain or CIDR); repeatable. configure replaces the list.
    #[arg(long = "insecure-registry", visible_alias = "dir")]
    pub insecure_registries: Vec<String>,
    /// Allow pulls only from these registries (host[:port], *.domain or CIDR; insecure
    /// registries are allowed too); repeatable. configure replaces the list.
    #[arg(long = "whitelist-registry", visible_alias = "wr")]
    pub whitelist_registries: Vec<String>,
    /// Log level of the appliance: 0 info, 1 debug (vic's own components), 2 debug
    /// (everything), 3 trace.
    #[arg(long, short = 'v', value_parser = clap::value_parser!(u8).range(0..=3))]
    pub debug: Option<u8>,
    /// How container VMs start: restored from a booted template of their shape (template,
    /// the local target's default), or each booting its kernel (cold).
    #[arg(long, value_parser = ["template", "cold"])]
    pub container_start: Option<String>,
    /// The user who may log in to the VCH Admin pages with a password (with --ops-password).
    #[arg(long, value_parser = ops_user)]
    pub ops_user: Option<String>,
    /// The password of --ops-user for the VCH Admin pages (kept only as a salted hash).
    #[arg(long)]
    pub ops_password: Option<String>,
}

/// `--ops-user`: a plain name (no spaces or control characters), 1–64 bytes.
fn ops_user(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_graphic() || (c.is_alphanumeric() && !c.is_control()));
    match ok {
        true => Ok(s.to_string()),
        false => Err("a user name of 1 to 64 characters, without spaces".into()),
    }
}

/// Adds `given` to the stores `have`: a store's label cannot move to another directory (its
/// volumes are there); the same one again changes nothing.
pub fn add_volume_stores(have: &mut Vec<VolumeStore>, given: &[VolumeStore]) -> anyhow::Result<()> {
    for vs in given {
        match have.iter().find(|v| v.label == vs.label) {
            Some(old) if old.dir == vs.dir => {}
            Some(old) => bail!(
                "volume store {} is already at {}: a volume store cannot move (give the same directory, or a new label)",
                old.label,
                old.dir.display()
            ),
            None => have.push(vs.clone()),
        }
    }
    Ok(())
}

/// 0 on the command line means unlimited.
fn limit<T: PartialEq + Default>(v: T) -> Option<T> {
    (v != T::default()).then_some(v)
}

impl SettingsArgs {
    /// Whether any setting was given (configure needs one).
    pub fn any(&self) -> bool {
        self.container_name_convention.is_some()
            || !self.volume_stores.is_empty()
            || !self.bind_paths.is_empty()
            || !self.dns_servers.is_empty()
            || self.memory.is_some()
            || self.endpoint_memory.is_some()
            || self.cpu.is_some()
            || self.storage_quota.is_some()
            || self.containers.is_some()
            || !self.registry_cas.is_empty()
            || !self.insecure_registries.is_empty()
            || !self.whitelist_registries.is_empty()
            || self.debug.is_some()
            || self.container_start.is_some()
            || self.ops_user.is_some()
            || self.ops_password.is_some()
    }

    /// `base` with the given flags applied. The registry CA files are not read here: the
    /// caller writes the bundle (see [`registry_ca_bundle`]) and sets `registry_ca`.
    pub fn apply(&self, base: &Settings) -> anyhow::Result<Settings> {
        let mut s = base.clone();
        if let Some(c) = &self.container_name_convention {
            s.container_name_convention = Some(c.clone());
        }
        add_volume_stores(&mut s.volume_stores, &self.volume_stores)?;
        for b in &self.bind_paths {
            s.bind_paths.retain(|old| old.dir != b.dir);
            s.bind_paths.push(b.clone());
        }
        if !self.dns_servers.is_empty() {
            s.dns_servers = self.dns_servers.iter().map(|ip| ip.to_string()).collect();
        }
        if let Some(m) = self.memory {
            s.memory_mib = limit(m);
        }
        if let Some(m) = self.endpoint_memory {
            s.endpoint_memory_mib = limit(m);
        }
        if let Some(c) = self.cpu {
            s.cpus = limit(c);
        }
        if let Some(q) = self.storage_quota {
            s.storage_quota_gib = limit(q);
        }
        if let Some(n) = self.containers {
            s.containers = limit(n);
        }
        if !self.insecure_registries.is_empty() {
            s.insecure_registries = self.insecure_registries.clone();
        }
        if !self.whitelist_registries.is_empty() {
            s.whitelist_registries = self.whitelist_registries.clone();
        }
        if let Some(d) = self.debug {
            s.debug = d;
        }
        if let Some(how) = &self.container_start {
            s.cold_boot = how == "cold";
        }
        self.apply_ops(&mut s)?;
        Ok(s)
    }

    /// `--ops-user` and `--ops-password`: a new user needs a password; a password alone
    /// changes the present user's.
    fn apply_ops(&self, s: &mut Settings) -> anyhow::Result<()> {
        match (&self.ops_user, &self.ops_password) {
            (None, None) => {}
            (Some(_), Some(p)) | (None, Some(p)) if p.is_empty() => {
                bail!("--ops-password cannot be empty")
            }
            (Some(u), Some(p)) => {
                s.ops_user = Some(u.clone());
                s.ops_password_hash = Some(vicadmin::hash_password(p));
            }
            (Some(u), None) if s.ops_user.as_ref() == Some(u) => {}
            (Some(u), None) => bail!("--ops-password is required with --ops-user {u}"),
            (None, Some(p)) => match s.ops_user {
                Some(_) => s.ops_password_hash = Some(vicadmin::hash_password(p)),
                None => bail!("--ops-password needs --ops-user: this VCH has no operations user"),
            },
        }
        Ok(())
    }
}

/// Makes each volume store's directory, so a bad one stops create/configure before the
/// appliance is touched.
pub fn prepare_volume_stores(stores: &[VolumeStore]) -> anyhow::Result<()> {
    for vs in stores {
        std::fs::create_dir_all(&vs.dir).with_context(|| {
            format!(
                "volume store {}: cannot create {}",
                vs.label,
                vs.dir.display()
            )
        })?;
    }
    Ok(())
}

/// Reads the `--registry-ca` files and joins them into one PEM bundle, after checking each
/// holds a certificate. The VCH keeps the bundle, so it does not depend on files the
/// operator may move.
pub fn registry_ca_bundle(files: &[PathBuf]) -> anyhow::Result<Vec<u8>> {
    let mut bundle = Vec::new();
    for f in files {
        let pem = std::fs::read(f)
            .with_context(|| format!("Failed to load registry CA from {}", f.display()))?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            bail!(
                "Failed to load registry CA from {}: no PEM certificate in it",
                f.display()
            );
        }
        bundle.extend_from_slice(&pem);
        if !bundle.ends_with(b"\n") {
            bundle.push(b'\n');
        }
    }
    Ok(bundle)
}

/// Where a VCH keeps its registry CA bundle.
pub fn registry_ca_path(vch_dir: &Path) -> PathBuf {
    vch_dir.join("registry-ca.pem")
}

/// The appliance's `VIC_LOG` filter for a debug level.
pub fn log_filter(debug: u8) -> &'static str {
    match debug {
        0 => "info",
        1 => "info,vic_appliance=debug,docker_api=debug,portlayer=debug,imagec=debug,backend_local=debug,hypervisor=debug",
        2 => "debug",
        _ => "trace",
    }
}

/// A word for a debug level, for reports.
pub fn debug_label(debug: u8) -> &'static str {
    match debug {
        0 => "info",
        1 => "debug (vic components)",
        2 => "debug",
        _ => "trace",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_volume_store_directories_are_made_absolute() {
        assert!(parse_volume_store("relative:lbl")
            .unwrap()
            .dir
            .is_absolute());
        assert_eq!(
            parse_volume_store("/data/vols").unwrap_err(),
            "volume store input must be in format DIR:LABEL, e.g. /var/lib/vic/volumes:default"
        );
    }

    #[test]
    fn configure_replaces_lists_adds_volume_stores_and_zero_means_unlimited() {
        let base = Settings {
            insecure_registries: vec!["a:5000".into()],
            memory_mib: Some(2048),
            containers: Some(3),
            volume_stores: vec![VolumeStore {
                label: "default".into(),
                dir: "/v/default".into(),
            }],
            ..Settings::default()
        };
        let args = SettingsArgs {
            insecure_registries: vec!["b:5000".into()],
            memory: Some(0),
            cpu: Some(2),
            volume_stores: vec![
                parse_volume_store("/v/default:default").unwrap(),
                parse_volume_store("/v/fast:fast").unwrap(),
            ],
            ..SettingsArgs::default()
        };
        assert!(args.any());
        let s = args.apply(&base).unwrap();
        assert_eq!(s.insecure_registries, vec!["b:5000".to_string()]);
        assert_eq!(s.memory_mib, None);
        assert_eq!(s.cpus, Some(2));
        assert_eq!(s.containers, Some(3), "not given: unchanged");
        assert_eq!(s.volume_stores.len(), 2);
        let moved = SettingsArgs {
            volume_stores: vec![parse_volume_store("/elsewhere:default").unwrap()],
            ..SettingsArgs::default()
        };
        let err = moved.apply(&base).unwrap_err().to_string();
        assert!(err.contains("cannot move"), "{err}");
        assert!(!SettingsArgs::default().any());
    }

    #[test]
    fn dns_servers_and_name_conventions_are_checked_with_vics_words() {
        assert_eq!(
            parse_dns_server("8.8.8.x").unwrap_err(),
            "Invalid DNS server specified: 8.8.8.x"
        );
        assert!(parse_dns_server("2001:db8::1").is_ok());
        assert_eq!(
            parse_name_convention("fixed").unwrap_err(),
            "Container name convention must include {id} or {name} token"
        );
        assert!(parse_name_convention("vch-{name}-{id}").is_ok());
    }

    #[test]
    fn an_operations_user_needs_a_password_kept_as_a_hash() {
        let ops = |user: Option<&str>, password: Option<&str>| SettingsArgs {
            ops_user: user.map(String::from),
            ops_password: password.map(String::from),
            ..SettingsArgs::default()
        };
        let err = |a: SettingsArgs, base: &Settings| a.apply(base).unwrap_err().to_string();
        let none = Settings::default();
        assert_eq!(
            err(ops(Some("ops"), None), &none),
            "--ops-password is required with --ops-user ops"
        );
        assert_eq!(
            err(ops(None, Some("pw")), &none),
            "--ops-password needs --ops-user: this VCH has no operations user"
        );
        assert_eq!(
            err(ops(Some("ops"), Some("")), &none),
            "--ops-password cannot be empty"
        );
        let a = ops(Some("ops"), Some("pw"));
        assert!(a.any());
        let s = a.apply(&none).unwrap();
        assert_eq!(s.ops_user.as_deref(), Some("ops"));
        let hash = s.ops_password_hash.clone().unwrap();
        assert!(vicadmin::auth::verify_password(&hash, "pw") && !hash.contains("pw"));
        // The same user again changes nothing; a password alone changes the user's.
        assert_eq!(ops(Some("ops"), None).apply(&s).unwrap(), s);
        let s2 = ops(None, Some("new")).apply(&s).unwrap();
        assert!(vicadmin::auth::verify_password(
            s2.ops_password_hash.as_deref().unwrap(),
            "new"
        ));
        assert!(ops_user("a b").is_err() && ops_user("").is_err() && ops_user("ops-1").is_ok());
    }

    #[test]
    fn a_vch_json_without_settings_loads_with_defaults() {
        let s: Settings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, Settings::default());
        let s: Settings =
            serde_json::from_str(r#"{"insecure_registries":["r:1"],"debug":2}"#).unwrap();
        assert_eq!(s.insecure_registries, vec!["r:1".to_string()]);
        assert_eq!(s.debug, 2);
    }
}
