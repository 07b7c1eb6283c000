//! The settings of a VCH that `vic-machine create` sets and `configure` changes: registries,
//! DNS servers, resource limits, volume stores, the container name convention and the debug
//! level, with VIC's checks of each.
//!
//! Units on the local target, where the VCH is processes on one host rather than a vSphere
//! resource pool: memory is MiB (VIC: MB) and CPU a vCPU count (VIC: MHz), both totals over
//! the running container VMs; the storage quota is GiB.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A VCH's configurable settings. Every field has a default, so records written before a
/// field existed still load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub insecure_registries: Vec<String>,
    pub whitelist_registries: Vec<String>,
    /// The registry CA bundle kept in the VCH's directory, if any.
    pub registry_ca: Option<PathBuf>,
    pub dns_servers: Vec<String>,
    /// Most containers that may exist (`--containers`).
    pub containers: Option<u32>,
    /// Total memory of running container VMs, MiB (`--memory`).
    pub memory_mib: Option<u64>,
    /// Total vCPUs of running container VMs (`--cpu`).
    pub cpus: Option<u32>,
    /// Storage for images, containers and volumes, GiB; `None` is unlimited.
    pub storage_quota_gib: Option<u64>,
    /// `--endpoint-memory`: recorded; the local appliance is a process, not a VM.
    pub endpoint_memory_mib: Option<u64>,
    pub volume_stores: Vec<VolumeStore>,
    /// Host directories whose contents containers may bind-mount (`--bind-path`).
    pub bind_paths: Vec<BindPath>,
    pub container_name_convention: Option<String>,
    /// 0: info; 1: debug for vic's own crates; 2: debug; 3: trace.
    pub debug: u8,
    /// VIC's `--bridge-network-range`: the IPv4 range bridge networks are carved from, a /16
    /// each, the first for `bridge`; `None` is VIC's default, [`DEFAULT_BRIDGE_RANGE`].
    pub bridge_network_range: Option<String>,
    /// `--container-start cold`: every container VM boots its kernel, none is restored from
    /// a booted template (the local target's default; vSphere VMs always boot).
    pub cold_boot: bool,
    /// The port of the VCH's admin pages (vicadmin, HTTPS), on the Docker API's address;
    /// `None` for a VCH made before them.
    pub admin_port: Option<u16>,
    /// `--ops-user`: who may log in to the admin pages with a password.
    pub ops_user: Option<String>,
    /// The salted PBKDF2 hash of `--ops-password`; the password itself is kept nowhere.
    pub ops_password_hash: Option<String>,
}

/// VIC's default bridge network range.
pub const DEFAULT_BRIDGE_RANGE: &str = "172.16.0.0/12";

/// A bridge network range: an IPv4 network of /16 or larger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeRange {
    pub network: std::net::Ipv4Addr,
    pub prefix_len: u8,
}

impl BridgeRange {
    /// The `n`th /16 of the range (0 is the default `bridge` network's), if there is one.
    pub fn subnet(&self, n: u32) -> Option<std::net::Ipv4Addr> {
        let count = 1u32 << (16 - self.prefix_len);
        (n < count).then(|| std::net::Ipv4Addr::from(u32::from(self.network) + (n << 16)))
    }
}

/// Parses `--bridge-network-range`: `A.B.C.D/N` with N at most 16, host bits zero.
pub fn parse_bridge_range(s: &str) -> Result<BridgeRange, SettingError> {
    let bad = || SettingError::BridgeRange(s.to_string());
    let (ip, len) = s.split_once('/').ok_or_else(bad)?;
    let network: std::net::Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let prefix_len: u8 = len.parse().map_err(|_| bad())?;
    if !(1..=16).contains(&prefix_len) {
        return Err(bad());
    }
    let host_bits = u32::MAX >> prefix_len;
    if u32::from(network) & host_bits != 0 {
        return Err(bad());
    }
    Ok(BridgeRange {
        network,
        prefix_len,
    })
}

/// A volume store: a label (what `docker volume create --opt VolumeStore=` names) and a
/// directory on the VCH's host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeStore {
    pub label: String,
    pub dir: PathBuf,
}

impl VolumeStore {
    /// As vic-machine takes it: `DIR:LABEL` (VIC's `datastore/path:label`).
    pub fn flag_value(&self) -> String {
        let dir = self.dir.display().to_string();
        match datastore_path(&dir) {
            Some((ds, path)) => format!("{ds}/{path}:{}", self.label),
            None => format!("{dir}:{}", self.label),
        }
    }

    /// Its directory is a datastore's (`[DATASTORE] path`, on a vSphere target), not a host's.
    pub fn on_datastore(&self) -> bool {
        self.dir.to_str().and_then(datastore_path).is_some()
    }
}

/// `[DATASTORE] path` read as (datastore, path).
fn datastore_path(s: &str) -> Option<(&str, &str)> {
    let (ds, path) = s.strip_prefix('[')?.split_once(']')?;
    (!ds.is_empty() && !ds.contains('/')).then_some((ds, path.trim_start()))
}

/// A host directory containers may bind-mount from (`--bind-path DIR[:ro]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindPath {
    pub dir: PathBuf,
    /// Every bind from under it is read-only.
    #[serde(default)]
    pub readonly: bool,
}

impl BindPath {
    /// As vic-machine takes it.
    pub fn flag_value(&self) -> String {
        match self.readonly {
            true => format!("{}:ro", self.dir.display()),
            false => self.dir.display().to_string(),
        }
    }
}

/// Parses `--bind-path DIR[:ro]`: the directory must exist (symlinks in it are resolved).
pub fn parse_bind_path(s: &str, cwd: &std::path::Path) -> Result<BindPath, SettingError> {
    let (dir, readonly) = match s.strip_suffix(":ro") {
        Some(d) => (d, true),
        None => (s.strip_suffix(":rw").unwrap_or(s), false),
    };
    let dir = std::fs::canonicalize(cwd.join(dir))
        .ok()
        .filter(|d| d.is_dir())
        .ok_or_else(|| SettingError::BindPath(s.to_string()))?;
    if dir == std::path::Path::new("/") {
        return Err(SettingError::BindPathRoot);
    }
    Ok(BindPath { dir, readonly })
}

/// Why a setting is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("volume store input must be in format DIR:LABEL, e.g. /var/lib/vic/volumes:default")]
    VolumeStoreFormat,
    #[error("volume store {label}: the directory {dir} is not absolute")]
    VolumeStoreRelative { label: String, dir: String },
    #[error("volume store {label}: {dir} is not a {want}")]
    VolumeStoreKind {
        label: String,
        dir: String,
        want: &'static str,
    },
    #[error("volume store {0} is given twice")]
    VolumeStoreTwice(String),
    #[error("Invalid DNS server specified: {0}")]
    DnsServer(String),
    #[error("Container name convention must include {{id}} or {{name}} token")]
    NameConventionTokens,
    #[error("Container name convention exceeds maximum length ({0}, discounting tokens)")]
    NameConventionLength(usize),
    #[error("Container name convention {0} contains unsupported characters: besides the tokens, use alphanumerics and - _ .")]
    NameConventionChars(String),
    #[error("debug level {0} is out of range (0 to 3)")]
    Debug(u8),
    #[error("Invalid bridge network range {0}: it must be an IPv4 network of /16 or larger, e.g. 172.16.0.0/12")]
    BridgeRange(String),
    #[error("{0}")]
    ContainerNetwork(String),
    #[error("bind path {0} is not an existing directory")]
    BindPath(String),
    #[error("bind path / would give containers the whole host: name the directories to share")]
    BindPathRoot,
}

/// VIC's longest VM name, and the length of the short ID `{id}` stands for.
pub const MAX_VM_NAME_LEN: usize = 80;
pub const SHORT_ID_LEN: usize = 12;

fn label_ok(label: &str) -> bool {
    !label.is_empty()
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Parses `--volume-store DIR:LABEL` (the label is after the last colon, as in VIC). A
/// relative directory is taken from `cwd`.
pub fn parse_volume_store(s: &str, cwd: &std::path::Path) -> Result<VolumeStore, SettingError> {
    let (dir, label) = s.rsplit_once(':').ok_or(SettingError::VolumeStoreFormat)?;
    if dir.is_empty() || !label_ok(label) {
        return Err(SettingError::VolumeStoreFormat);
    }
    Ok(VolumeStore {
        label: label.to_string(),
        dir: cwd.join(dir),
    })
}

/// Parses a DNS server address.
pub fn parse_dns_server(s: &str) -> Result<IpAddr, SettingError> {
    s.parse().map_err(|_| SettingError::DnsServer(s.into()))
}

/// VIC's check of `--container-name-convention`.
pub fn check_name_convention(p: &str) -> Result<(), SettingError> {
    if !p.contains("{id}") && !p.contains("{name}") {
        return Err(SettingError::NameConventionTokens);
    }
    let fixed = p.replacen("{id}", "", 1).replacen("{name}", "", 1);
    if fixed.len() >= MAX_VM_NAME_LEN - SHORT_ID_LEN {
        return Err(SettingError::NameConventionLength(
            MAX_VM_NAME_LEN - SHORT_ID_LEN,
        ));
    }
    if !fixed
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(SettingError::NameConventionChars(p.into()));
    }
    Ok(())
}

impl Settings {
    /// Checks every setting the way its flag is checked, so a document edited by hand (or
    /// written by something else) is refused as the command line would be.
    pub fn check(&self) -> Result<(), SettingError> {
        let mut labels = std::collections::HashSet::new();
        for vs in &self.volume_stores {
            if !label_ok(&vs.label) {
                return Err(SettingError::VolumeStoreFormat);
            }
            if !vs.dir.is_absolute() && !vs.on_datastore() {
                return Err(SettingError::VolumeStoreRelative {
                    label: vs.label.clone(),
                    dir: vs.dir.display().to_string(),
                });
            }
            if !labels.insert(vs.label.as_str()) {
                return Err(SettingError::VolumeStoreTwice(vs.label.clone()));
            }
        }
        for d in &self.dns_servers {
            parse_dns_server(d)?;
        }
        for b in &self.bind_paths {
            if !b.dir.is_absolute() {
                return Err(SettingError::BindPath(b.dir.display().to_string()));
            }
            if b.dir == std::path::Path::new("/") {
                return Err(SettingError::BindPathRoot);
            }
        }
        if let Some(c) = &self.container_name_convention {
            check_name_convention(c)?;
        }
        if self.debug > 3 {
            return Err(SettingError::Debug(self.debug));
        }
        self.bridge_range()?;
        Ok(())
    }

    /// The bridge network range (VIC's default when none is set).
    pub fn bridge_range(&self) -> Result<BridgeRange, SettingError> {
        parse_bridge_range(
            self.bridge_network_range
                .as_deref()
                .unwrap_or(DEFAULT_BRIDGE_RANGE),
        )
    }

    /// The DNS servers, parsed (see [`Settings::check`]).
    pub fn dns_addrs(&self) -> Result<Vec<IpAddr>, SettingError> {
        self.dns_servers
            .iter()
            .map(|d| parse_dns_server(d))
            .collect()
    }

    /// The storage quota in bytes; `None` (or 0) is unlimited.
    pub fn storage_quota_bytes(&self) -> Option<u64> {
        self.storage_quota_gib.filter(|g| *g > 0).map(|g| g << 30)
    }
}
