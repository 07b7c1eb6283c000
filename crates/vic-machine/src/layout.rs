//! A local VCH on disk: its directory, its record (vch.json), its name rules and the lock
//! that keeps two operations apart.
//!
//! ```text
//!   <state_root>/vch/NAME/
//!     vch.json              VchConfig: every setting, the version, the TLS mode, the
//!                           container networks
//!     appliance.json        what the appliance reads (vch-config's ApplianceConfig), made
//!                           from vch.json before each start
//!     init.pid, appliance.pid, appliance.log, appliance.exit (vic-init: the last exit)
//!     appliance/            this VCH's vic-appliance, vic-init, vmlinux, initramfs.cpio
//!     appliance.prev/       the ones `upgrade` replaced (for `upgrade --rollback`)
//!     configure.prev.json   the configuration the last configure replaced (`configure --rollback`;
//!                           configure.pending.json while a configure runs)
//!     update-in-progress    set while configure, upgrade or debug run (progress.rs)
//!     certs/  images/  containers/  vms/  registry-ca.pem
//! ```

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use vch_config::ContainerNetwork;

use crate::settings::Settings;
use crate::tls::TlsRecord;

/// VIC's limit on a VCH name.
pub const MAX_NAME_LEN: usize = 31;

/// What vic-machine records about a VCH. Fields added after the first release have
/// defaults, so every older vch.json still loads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VchConfig {
    pub name: String,
    pub target: String,
    pub docker_host: String,
    pub port: u16,
    /// Whether the port was given (--port) rather than picked.
    #[serde(default)]
    pub fixed_port: bool,
    pub image_store: PathBuf,
    /// Whether the image store is outside the state directory (given by --image-store).
    pub external_image_store: bool,
    #[serde(flatten)]
    pub settings: Settings,
    /// How the Docker API is served, and where the certificates are.
    #[serde(flatten)]
    pub tls: TlsRecord,
    pub created: String,
    /// The version of the files in appliance/ (see `parts.rs`).
    pub version: String,
    /// The version in appliance.prev/, which `upgrade --rollback` goes back to.
    #[serde(default)]
    pub previous_version: Option<String>,
    /// When the last upgrade or rollback happened.
    #[serde(default)]
    pub upgraded: Option<String>,
    /// Networks outside the VCH that containers join directly (`--container-network`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_networks: Vec<ContainerNetwork>,
}

/// Where a VCH's files are.
pub struct Layout {
    pub root: PathBuf,
    pub name: String,
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(state_root: Option<PathBuf>, name: &str) -> anyhow::Result<Self> {
        let root = state_root.unwrap_or_else(default_state_root);
        Ok(Layout {
            dir: root.join("vch").join(name),
            root,
            name: name.to_string(),
        })
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("vch.json")
    }
    /// The appliance's configuration document, written before each start.
    pub fn appliance_config(&self) -> PathBuf {
        self.dir.join("appliance.json")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("appliance.pid")
    }
    /// The container VMs' backend state (the appliance's `--state-dir` + `vms`).
    pub fn backend_root(&self) -> PathBuf {
        self.dir.join("vms")
    }
    /// The supervisor's PID (vic-init), which restarts the appliance when it dies.
    pub fn init_pid_file(&self) -> PathBuf {
        self.dir.join("init.pid")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("appliance.log")
    }
    /// vic-init's own lines (also in the appliance's log).
    pub fn init_log(&self) -> PathBuf {
        self.dir.join("init.log")
    }
    /// Where vic-init reports each exit of the appliance it did not ask for.
    pub fn exit_file(&self) -> PathBuf {
        self.dir.join("appliance.exit")
    }
    pub fn appliance_dir(&self) -> PathBuf {
        self.dir.join("appliance")
    }
    pub fn prev_appliance_dir(&self) -> PathBuf {
        self.dir.join("appliance.prev")
    }
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs")
    }

    /// The VCH's record; VIC's words when there is no such VCH.
    pub fn load(&self) -> anyhow::Result<VchConfig> {
        let path = self.config();
        let raw = match fs::read(&path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "Failed to get Virtual Container Host {}: VCH {} not found in {}",
                self.name,
                self.name,
                self.root.join("vch").display()
            ),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        serde_json::from_slice(&raw).with_context(|| format!("reading {}", path.display()))
    }

    /// Writes the record (whole or not at all).
    pub fn save(&self, config: &VchConfig) -> anyhow::Result<()> {
        let path = self.config();
        let tmp = self.dir.join("vch.json.tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(config)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// Holds off other vic-machine operations on this VCH until the returned guard is
    /// dropped (or the process ends). See also `progress.rs`.
    pub fn lock(&self, op: &str) -> anyhow::Result<OpLock> {
        let path = self.dir.join(".vic-machine.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a descriptor we own; it is released when the file is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            bail!(
                "{op} failed: another upgrade/configure operation is in progress on VCH {}",
                self.name
            );
        }
        Ok(OpLock(file))
    }
}

/// See [`Layout::lock`].
pub struct OpLock(#[allow(dead_code)] fs::File);

pub(crate) fn default_state_root() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/var/lib/vic")
    } else {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".local/share/vic")
    }
}

/// Checks a VCH name the way VIC does.
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    if name.chars().count() > MAX_NAME_LEN {
        bail!("Display name {name} exceeds the permitted 31 characters limit. Please use a shorter -name parameter");
    }
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bail!("--name contains unsupported characters: {name} Allowed characters are alphanumeric and - _ .");
    }
    Ok(())
}

/// Makes `dir` (and what is missing above it) and leaves it readable by its owner alone: a
/// VCH's state holds image roots with set-id files, container disks, logs and environments.
pub(crate) fn private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))
}

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
