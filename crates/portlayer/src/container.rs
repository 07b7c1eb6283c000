//! What a container is, as the port layer keeps it.

use std::collections::BTreeMap;

pub use crate::guest::{Confinement, Rlimit};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::logs::LogBounds;

/// The process a container runs (its main session).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// Full argv: entrypoint followed by command, already resolved against the image.
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub tty: bool,
    /// Standard input stays open for attached clients.
    pub open_stdin: bool,
    /// Close the process's standard input when the first attached client detaches.
    pub stdin_once: bool,
    /// The terminal's size at start, rows then columns (Docker's `HostConfig.ConsoleSize`,
    /// sent by the CLI at create); 0 leaves the guest's default until a resize.
    #[serde(default)]
    pub console_size: (u16, u16),
    /// Capabilities, groups and limits the process gets.
    #[serde(default)]
    pub privileges: PrivilegeSpec,
}

/// What a container's processes may do inside its VM.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrivilegeSpec {
    /// `CAP_…` names; `None` (containers made before capabilities were applied) is
    /// [`crate::guest::DEFAULT_CAPABILITIES`].
    pub capabilities: Option<Vec<String>>,
    /// Extra supplementary groups: names in the container's `/etc/group`, or numbers.
    pub groups: Vec<String>,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
}

/// Everything needed to (re)create and run a container; fixed at create time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Unique name, without Docker's leading slash.
    pub name: String,
    /// The image reference as the user gave it.
    pub image_ref: String,
    /// The image's ID (`sha256:…`).
    pub image_id: String,
    pub process: ProcessSpec,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    /// Signal sent by stop, e.g. "SIGTERM".
    pub stop_signal: Option<String>,
    /// Seconds stop waits before killing, if the user set one.
    pub stop_timeout: Option<i64>,
    /// Remove the container once it has exited.
    pub auto_remove: bool,
    /// When it is started again after its process ends (`--restart`).
    #[serde(default)]
    pub restart: RestartPolicy,
    pub memory_mib: u32,
    pub cpus: u32,
    /// Name servers for the container's `/etc/resolv.conf`; empty means the VCH's.
    #[serde(default)]
    pub dns_servers: Vec<String>,
    #[serde(default)]
    pub dns_search: Vec<String>,
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// How much of the container's output its log keeps on disk; records written before
    /// logs were bounded get the default bounds.
    #[serde(default)]
    pub log: LogBounds,
    /// `--log-driver none`: its output goes to attached clients, and no log is read back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_log: bool,
    /// Devices, mounts, kernel settings and limits inside the container's VM.
    #[serde(default)]
    pub confinement: Confinement,
    /// The networks the container is attached to, by name (the personality's choice; none:
    /// loopback only).
    #[serde(default)]
    pub networks: Vec<String>,
    /// TCP ports published on the host (`-p`), forwarded to its first endpoint while it runs.
    #[serde(default)]
    pub ports: Vec<crate::ports::PortBinding>,
    /// What it asks of its endpoint on some of them (`--ip`, `--network-alias`, `--link`),
    /// by network name.
    #[serde(default)]
    pub endpoint_requests: std::collections::BTreeMap<String, crate::networks::EndpointRequest>,
    /// Its endpoint on each of them, given out at create or connect (see `networks/`).
    #[serde(default)]
    pub endpoints: Vec<crate::networks::Endpoint>,
    /// The volumes it mounts: asked for at create (an empty name is a new anonymous
    /// volume), named once made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<VolumeMount>,
    /// Host paths it mounts (bind mounts), under the VCH's bind paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binds: Vec<BindMount>,
    /// The host CPUs its vCPUs run on (`--cpuset-cpus`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_cpus: Vec<u32>,
    /// Its CPU weight against the VCH's other VMs (`--cpu-shares`); none: the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u32>,
    /// Its health check, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<crate::health::HealthCheck>,
    /// The API personality's own view of the container (e.g. Docker's Config and HostConfig),
    /// stored and returned untouched.
    #[serde(default)]
    pub personality: serde_json::Value,
}

/// A host file or directory mounted in a container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BindMount {
    /// The host path as the user gave it; resolved (symlinks followed) at create.
    pub source: String,
    /// Absolute path inside the container.
    pub target: String,
    pub readonly: bool,
    /// Make a missing source directory (`-v`'s way; `--mount type=bind` refuses one).
    #[serde(default)]
    pub create: bool,
}

/// A volume mounted in a container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VolumeMount {
    /// The volume; empty asks for a new anonymous one.
    pub name: String,
    /// Absolute path inside the container.
    pub target: String,
    pub readonly: bool,
    /// Copy what the image holds at `target` into a volume no container has used (Docker's
    /// default; `nocopy` turns it off).
    #[serde(default)]
    pub copy: bool,
    /// How to make the volume when it does not exist (`--mount`'s `volume-driver`,
    /// `volume-opt`, `volume-label`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
}

impl Status {
    /// Docker's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        }
    }
}

/// Runtime state, persisted on every change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerState {
    pub status: Status,
    /// Host PID of the VM while running (QEMU locally), 0 otherwise.
    pub pid: u32,
    pub exit_code: i32,
    /// Why the last start or run failed, if it did.
    pub error: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// How often the container has been started.
    pub start_count: u64,
    /// Bytes of output the log held when the current run started: what the log holds beyond
    /// it is this run's, and tells a restarted appliance where the tether's output resumes.
    #[serde(default)]
    pub log_base: u64,
    /// The published ports of the current run, with the host ports they got.
    #[serde(default)]
    pub ports: Vec<crate::ports::PortBinding>,
    /// How many network interfaces the running VM has (its networks' and its spares').
    #[serde(default)]
    pub nics: u8,
    /// The running VM is stopped as a whole (`docker pause`).
    #[serde(default)]
    pub paused: bool,
    /// Starts by the restart policy since the user's last start.
    #[serde(default)]
    pub restart_count: u32,
    /// The user stopped or killed it (a policy then leaves it, see `restart.rs`).
    #[serde(default)]
    pub manually_stopped: bool,
    /// A start by the restart policy is due.
    #[serde(default)]
    pub restarting: bool,
    /// What its health check says, once it has run with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::Health>,
}

/// Docker's restart policies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartKind {
    #[default]
    No,
    Always,
    UnlessStopped,
    OnFailure,
}

/// A restart policy: its kind, and for `on-failure` how many restarts at most (0: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub kind: RestartKind,
    #[serde(default)]
    pub max_retries: u32,
}

impl RestartPolicy {
    /// Docker's name for it.
    pub fn name(&self) -> &'static str {
        match self.kind {
            RestartKind::No => "no",
            RestartKind::Always => "always",
            RestartKind::UnlessStopped => "unless-stopped",
            RestartKind::OnFailure => "on-failure",
        }
    }
}

impl Default for ContainerState {
    fn default() -> Self {
        ContainerState {
            status: Status::Created,
            pid: 0,
            exit_code: 0,
            error: String::new(),
            started_at: None,
            finished_at: None,
            start_count: 0,
            log_base: 0,
            ports: Vec::new(),
            nics: 0,
            paused: false,
            restart_count: 0,
            manually_stopped: false,
            restarting: false,
            health: None,
        }
    }
}

/// A container as stored: identity, spec and state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 hex digits.
    pub id: String,
    pub created: DateTime<Utc>,
    pub spec: ContainerSpec,
    pub state: ContainerState,
}

impl ContainerRecord {
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}
