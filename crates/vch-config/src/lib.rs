//! A VCH's configuration as one typed, versioned document.
//!
//! `vic-machine` owns a VCH's record and, before every start of its appliance, writes the
//! [`ApplianceConfig`] the appliance reads (`vic-appliance --config FILE` on the local
//! target; on vSphere the same document travels in the appliance VM's guestinfo). Nothing
//! about a VCH reaches the appliance any other way, so there is one type to extend when a
//! setting is added, one parser, and one place (here) where its checks live.
//!
//! ```text
//!   vic-machine: vch.json (record: Settings flattened, TLS mode, versions)
//!        │ ApplianceConfig::for_start(...) ── save() ──► appliance.json
//!        ▼
//!   vic-appliance --config appliance.json ── load() ── check() ──► backend, port layer, API
//! ```
//!
//! The document carries its [`SCHEMA`]. [`load`] lifts an older schema to this one and
//! refuses a newer one (an appliance never runs on settings it cannot read); unknown fields
//! are refused too, so nothing vic-machine asks for is dropped silently.

mod container_net;
pub mod guestinfo;
mod settings;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use container_net::{check_container_networks, ContainerNetwork, Firewall, Sources};
pub use settings::{
    check_name_convention, parse_bind_path, parse_bridge_range, parse_dns_server,
    parse_volume_store, BindPath, BridgeRange, SettingError, Settings, VolumeStore,
    DEFAULT_BRIDGE_RANGE, MAX_VM_NAME_LEN, SHORT_ID_LEN,
};

/// The schema this build writes and reads. A later one adds an arm to [`load`]'s migration.
pub const SCHEMA: u32 = 1;

/// Everything an appliance needs to serve one VCH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplianceConfig {
    /// See [`SCHEMA`].
    pub schema: u32,
    /// The VCH's name.
    pub name: String,
    /// The VCH's state directory: container records, backend state, logs.
    pub state_dir: PathBuf,
    /// Where the Docker API listens.
    pub listen: SocketAddr,
    /// The image store directory.
    pub image_store: PathBuf,
    /// Which backend runs the container VMs, and its own settings.
    pub backend: BackendConfig,
    /// How the Docker API is served over TLS; `None` is plain HTTP (`--no-tls`).
    pub tls: Option<TlsFiles>,
    /// Registries, DNS, limits, volume stores, naming, debug level.
    pub settings: Settings,
    /// Container networks (VIC's `--container-network`). Left out when there are none, so
    /// that an appliance from before them still reads the document; one that cannot serve
    /// them refuses to start rather than run without them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<ContainerNetwork>,
}

/// The backend of a VCH, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BackendConfig {
    /// Container VMs are QEMU processes on the appliance's host.
    Local {
        /// The guest kernel.
        kernel: PathBuf,
        /// The initramfs holding the tether.
        initrd: PathBuf,
    },
    /// Container VMs are VMs of a vCenter or ESX host (`backend-vsphere`).
    Vsphere(Box<VsphereBackend>),
}

/// Where a vSphere VCH's container VMs go, and how the appliance reaches vSphere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsphereBackend {
    /// `HOST[:PORT]` of the vCenter or ESX host.
    pub host: String,
    /// The SHA-1 (or SHA-256) thumbprint of its certificate.
    pub thumbprint: String,
    pub user: String,
    /// A file holding the password (readable by the appliance alone): never in the document.
    pub password_file: PathBuf,
    /// The VM folder (`Folder:group-v3`) and the VCH's pool or vApp (`ResourcePool:resgroup-9`).
    pub folder: String,
    pub pool: String,
    /// The datacenter (its inventory path, e.g. `DC0`; ESX: `ha-datacenter`).
    pub datacenter: String,
    /// The datastore the VMs' files go on.
    pub datastore: String,
    /// The directory images' base disks go in: `[DATASTORE] path`.
    pub image_store: String,
    /// The port group of the containers' bridge network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_network: Option<String>,
    /// Where the appliance listens for the VMs' tether channels (their serial ports dial it).
    pub channel: std::net::SocketAddr,
    /// On vcsim only: the command vcsim starts as a VM's guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulator_guest: Option<PathBuf>,
    /// The container VMs' boot media (`[DATASTORE] path`), on each one's CD-ROM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_iso: Option<String>,
}

/// The Docker API's TLS files (PEM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The server certificate, then its chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// Certificate authorities client certificates must chain to (`--tlsverify`); empty:
    /// any client may connect.
    #[serde(default)]
    pub client_cas: Vec<PathBuf>,
}

/// Why a document cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the VCH configuration is not valid: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("the VCH configuration has no schema number")]
    NoSchema,
    #[error("the VCH configuration has schema {found}, newer than this appliance reads ({SCHEMA}): upgrade the appliance, or configure the VCH with the vic-machine of its version")]
    Newer { found: u64 },
    #[error("the VCH configuration has schema {0}, which no version of vic wrote")]
    Unknown(u64),
    #[error("the VCH configuration is not valid: {0}")]
    Setting(#[from] SettingError),
    #[error("the VCH configuration is not valid: {0} must be an absolute path")]
    Relative(&'static str),
    #[error("the VCH configuration is not valid: unknown setting `{0}`")]
    UnknownSetting(String),
    #[error("the VCH configuration is not valid: the VCH has no name")]
    NoName,
}

/// Reads a document of any schema this build knows, lifted to [`SCHEMA`], and checks it.
pub fn load(raw: &[u8]) -> Result<ApplianceConfig, ConfigError> {
    let doc: serde_json::Value = serde_json::from_slice(raw)?;
    let schema = doc
        .get("schema")
        .and_then(serde_json::Value::as_u64)
        .ok_or(ConfigError::NoSchema)?;
    let config: ApplianceConfig = match schema {
        1 => {
            refuse_unknown_settings(&doc)?;
            serde_json::from_value(doc)?
        }
        n if n > u64::from(SCHEMA) => return Err(ConfigError::Newer { found: n }),
        n => return Err(ConfigError::Unknown(n)),
    };
    config.check()?;
    Ok(config)
}

/// [`Settings`] also sits flattened in vic-machine's record, where serde cannot refuse
/// unknown fields; in the document they are refused here.
fn refuse_unknown_settings(doc: &serde_json::Value) -> Result<(), ConfigError> {
    let known = serde_json::to_value(Settings::default())?;
    let given = doc.get("settings").and_then(serde_json::Value::as_object);
    if let Some(key) = given
        .into_iter()
        .flat_map(|m| m.keys())
        .find(|k| known.get(k.as_str()).is_none())
    {
        return Err(ConfigError::UnknownSetting(key.clone()));
    }
    Ok(())
}

/// [`load`] from a file.
pub fn load_file(path: &Path) -> Result<ApplianceConfig, ConfigError> {
    let raw = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    load(&raw)
}

impl ApplianceConfig {
    /// Checks what serde cannot: the settings as their flags are checked, absolute paths.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::NoName);
        }
        let mut paths = vec![
            ("state_dir", &self.state_dir),
            ("image_store", &self.image_store),
        ];
        match &self.backend {
            BackendConfig::Local { kernel, initrd } => {
                paths.extend([("backend.kernel", kernel), ("backend.initrd", initrd)])
            }
            BackendConfig::Vsphere(v) => {
                paths.push(("backend.password_file", &v.password_file));
                paths.extend(
                    v.simulator_guest
                        .iter()
                        .map(|g| ("backend.simulator_guest", g)),
                );
            }
        }
        if let Some(t) = &self.tls {
            paths.extend([("tls.cert", &t.cert), ("tls.key", &t.key)]);
            paths.extend(t.client_cas.iter().map(|c| ("tls.client_cas", c)));
        }
        if let Some(ca) = &self.settings.registry_ca {
            paths.push(("settings.registry_ca", ca));
        }
        if let Some((what, _)) = paths.iter().find(|(_, p)| !p.is_absolute()) {
            return Err(ConfigError::Relative(what));
        }
        self.settings.check()?;
        let (sources, on_datastores) = match &self.backend {
            BackendConfig::Local { .. } => (Sources::HostBridges, false),
            BackendConfig::Vsphere(_) => (Sources::PortGroups, true),
        };
        if let Some(vs) =
            (self.settings.volume_stores.iter()).find(|v| v.on_datastore() != on_datastores)
        {
            return Err(SettingError::VolumeStoreKind {
                label: vs.label.clone(),
                dir: vs.dir.display().to_string(),
                want: match on_datastores {
                    true => "datastore path ([DATASTORE] path) on a vSphere target",
                    false => "directory of the VCH's host",
                },
            }
            .into());
        }
        check_container_networks(&self.networks, sources)?;
        Ok(())
    }

    /// Writes the document to `path`, whole or not at all (a temporary file renamed over it),
    /// readable by its owner alone.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let write_err = |source| ConfigError::Write {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(write_err)?;
        f.write_all(&serde_json::to_vec_pretty(self)?)
            .and_then(|()| f.sync_all())
            .map_err(write_err)?;
        std::fs::rename(&tmp, path).map_err(write_err)
    }
}

#[cfg(test)]
mod tests;
