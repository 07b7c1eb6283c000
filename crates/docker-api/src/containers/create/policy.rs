//! What vic does with every field of a create body, in one place. A field is either applied
//! (and then reported by inspect), or discarded with a warning where dockerd itself only
//! warns, or, when the user set it to anything but its default, the create is refused naming
//! the `docker` flag that set it. Nothing is ignored silently.
//!
//! The defaults are what the docker 28 CLI sends on a plain `docker run` (see
//! `tests/fixtures/create/`): empty strings, lists and maps, zeros, `false`, `null`,
//! `NetworkMode: "default"`, `RestartPolicy: {"Name": "no"}`, `MemorySwappiness: -1`,
//! `LogConfig: {"Type": "", "Config": {}}`, an empty `default` endpoint.
//!
//! The log driver and its options are judged in `log_opts.rs`: `json-file` with `max-size`,
//! `max-file` (and `compress=false`) applied, bounding the container's log on disk, a default
//! cap (20m × 5) when none is given; options that need attributes or compression refused
//! naming the option; an unknown option refused in moby's words.
//!
//! Accepted without effect, as dockerd has none for them at run time either: `OnBuild`,
//! `Shell`, `ArgsEscaped` (build metadata), `ExposedPorts` (recorded), `ContainerIDFile`
//! (the CLI writes the file), `NetworkDisabled` (a container VM has no network yet).
//!
//! Applied inside the container VM by its tether, checked in `guest.rs`: `--cap-add`,
//! `--cap-drop` (over Docker's default set, which applies without them too), `--privileged`,
//! `--read-only`, `--tmpfs`, `--shm-size`, `--ulimit`, `--add-host`, `--group-add`,
//! `--domainname`, `--sysctl` (namespaced ones), `--device` (the guest's own devices),
//! `--init` (the tether is already an init), `--pids-limit`, `--security-opt
//! no-new-privileges` (and `seccomp=unconfined`, `apparmor=unconfined`, which is what a
//! container VM has).

use std::collections::BTreeMap;

use portlayer::container::{RestartKind, RestartPolicy};

use super::config::{ContainerConfig, NetworkingConfig};
use super::guest::{self, Guest};
use super::host_config::HostConfig;
use super::log_opts::{self, LogOpts};
use super::mounts;
use super::networking::{self, Networking};
use super::refusal::{Refusals, Refused};

/// The memory a container VM gets when `--memory` is not given.
pub const DEFAULT_MEMORY_MIB: u32 = 256;
/// The smallest memory a container VM boots with.
pub const MIN_MEMORY_MIB: u32 = 64;
/// dockerd's own lower bound for `--memory` (6 MB).
const DOCKER_MIN_MEMORY: i64 = 6 * 1024 * 1024;
const MIB: i64 = 1 << 20;
const NANO: i64 = 1_000_000_000;

const OWN_VM: &str =
    "a container is its own VM and shares no namespace with the host or another container";
const CGROUP_LIMITS: &str = "only --memory, --cpus, --cpuset-cpus and --cpu-shares apply to a \
     container VM; limits inside it are not applied yet";
const GPUS: &str = "host devices are not passed to container VMs";
const WINDOWS: &str = "it is a Windows option";

/// What a create applies: the values the container gets, and what was discarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub memory_mib: u32,
    pub cpus: u32,
    /// `--cpuset-cpus`: the host CPUs the VM runs on; empty: any.
    pub host_cpus: Vec<u32>,
    /// `--cpuset-cpus` as given (`0,1` or `0-1`), which inspect shows as dockerd does.
    pub cpuset_cpus: String,
    /// `-c/--cpu-shares`: the VM's CPU weight against the VCH's other VMs; none: 1024.
    pub cpu_shares: Option<u32>,
    pub auto_remove: bool,
    pub restart: RestartPolicy,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `(height, width)` of a TTY at start, `(0, 0)` when the client gave none.
    pub console_size: (u16, u16),
    /// `--network` as the user gave it (`default` when empty).
    pub network_mode: String,
    /// The networks it is on and what it asks of each.
    pub networking: Networking,
    /// The CLI writes this file itself; kept for inspect.
    pub container_id_file: String,
    /// `--isolation`: empty or `default` (the only one on Linux), read back as given.
    pub isolation: String,
    /// What the container's log keeps on disk (`--log-opt max-size/max-file`, or the default).
    pub log: LogOpts,
    /// Capabilities, mounts, limits and devices applied inside the VM.
    pub guest: Guest,
    /// The volumes and host paths it mounts (`mounts.rs`).
    pub volumes: Vec<portlayer::VolumeMount>,
    pub binds: Vec<portlayer::BindMount>,
    /// Warnings for the create response (dockerd's `Warnings`).
    pub warnings: Vec<String>,
}

fn s(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or_default()
}
fn list<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}
fn map<K, V>(v: &Option<BTreeMap<K, V>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}
fn num<T: Default + PartialEq>(v: &Option<T>) -> bool {
    v.as_ref().is_some_and(|v| *v != T::default())
}
fn yes(v: &Option<bool>) -> bool {
    *v == Some(true)
}

/// Decides, for every field, what vic does with it.
pub fn apply(
    c: &ContainerConfig,
    h: &HostConfig,
    n: &NetworkingConfig,
    image: &serde_json::Value,
) -> Result<Applied, Refused> {
    log_opts::registered(h)?;
    let mut r = Refusals::default();
    networking::refusals(&mut r, h, n);
    storage(&mut r, h);
    namespaces(&mut r, h);
    guest::refusals(&mut r, h);
    resources(&mut r, h);
    r.finish()?;
    let restart = restart_policy(h)?;
    let log = log_opts::settings(h)?;
    let mut guest = guest::apply(c, h)?;
    let mounts = mounts::plan(c, h, image).map_err(Refused::Invalid)?;
    guest.tmpfs.extend(mounts.tmpfs);
    let mut warnings = discarded(h);
    let memory_mib = memory(h.memory, &mut warnings)?;
    let host_cpus = match s(&h.cpuset_cpus) {
        "" => Vec::new(),
        set => super::cpuset::resolve(set, &super::cpuset::host_cpus())?,
    };
    let cpus = match (
        host_cpus.len(),
        h.nano_cpus.unwrap_or(0),
        h.cpu_count.unwrap_or(0),
    ) {
        // The set alone sizes the VM: a vCPU for each of its CPUs.
        (n, 0, 0) if n > 0 => n as u32,
        _ => cpus(h.nano_cpus, h.cpu_count, &mut warnings)?,
    };
    let console = h.console_size.as_deref().unwrap_or_default();
    let dim = |i: usize| {
        console
            .get(i)
            .map_or(0, |v| (*v).min(u64::from(u16::MAX)) as u16)
    };
    let network_mode = networking::mode(h);
    let networking = networking::plan(h, n, s(&c.mac_address))?;
    Ok(Applied {
        memory_mib,
        cpus,
        host_cpus,
        cpuset_cpus: s(&h.cpuset_cpus).to_string(),
        cpu_shares: cpu_shares(h.cpu_shares)?,
        auto_remove: yes(&h.auto_remove),
        restart,
        dns: h.dns.clone().unwrap_or_default(),
        dns_search: h.dns_search.clone().unwrap_or_default(),
        dns_options: h.dns_options.clone().unwrap_or_default(),
        console_size: (dim(0), dim(1)),
        network_mode,
        networking,
        container_id_file: s(&h.container_id_file).to_string(),
        isolation: s(&h.isolation).to_string(),
        log,
        guest,
        volumes: mounts.volumes,
        binds: mounts.binds,
        warnings,
    })
}

fn storage(r: &mut Refusals, h: &HostConfig) {
    // Volumes and mounts are read in `mounts.rs` (`--volume-driver` is the driver of the
    // volumes the create makes, looked up when one is made, as dockerd looks it up); --tmpfs,
    // --read-only and --shm-size are applied in the guest (`guest.rs`).
    r.check(
        map(&h.storage_opt),
        "--storage-opt",
        "storage options are not applied yet",
    );
    r.extend(log_opts::unsupported(h));
}

/// Namespaces and runtimes a VM has no use for, and what is still not applied in it.
fn namespaces(r: &mut Refusals, h: &HostConfig) {
    let oom = "OOM score adjustment is not applied yet";
    r.check(num(&h.oom_score_adj), "--oom-score-adj", oom);
    r.check(
        map(&h.annotations),
        "--annotation",
        "annotations are not applied yet",
    );
    r.mode(&h.pid_mode, &[], "--pid", OWN_VM);
    r.mode(&h.ipc_mode, &["private"], "--ipc", OWN_VM);
    r.mode(&h.uts_mode, &[], "--uts", OWN_VM);
    r.mode(&h.userns_mode, &[], "--userns", OWN_VM);
    r.mode(&h.cgroupns_mode, &["private"], "--cgroupns", OWN_VM);
    r.mode(&h.cgroup, &[], "HostConfig.Cgroup", OWN_VM);
    let runtime = "a container is a VM: there is no OCI runtime to choose";
    r.mode(&h.runtime, &["vic"], "--runtime", runtime);
    r.mode(&h.isolation, &["default"], "--isolation", WINDOWS);
}

/// `--restart`, checked as dockerd checks it.
pub(crate) fn restart_policy(h: &HostConfig) -> Result<RestartPolicy, Refused> {
    let p = h.restart_policy.as_ref();
    let name = p.map(|p| s(&p.name)).unwrap_or_default();
    let retries = p.and_then(|p| p.maximum_retry_count).unwrap_or(0);
    let invalid = |m: String| Err(Refused::Invalid(format!("invalid restart policy: {m}")));
    let kind = match name {
        "" | "no" => RestartKind::No,
        "always" => RestartKind::Always,
        "unless-stopped" => RestartKind::UnlessStopped,
        "on-failure" => RestartKind::OnFailure,
        other => {
            return invalid(format!(
                "unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
            ))
        }
    };
    if retries != 0 && kind != RestartKind::OnFailure {
        return invalid("maximum retry count can only be used with 'on-failure'".into());
    }
    if retries < 0 {
        return invalid("maximum retry count cannot be negative".into());
    }
    if kind != RestartKind::No && yes(&h.auto_remove) {
        return Err(Refused::Invalid(
            "can't create 'AutoRemove' container with restart policy".into(),
        ));
    }
    Ok(RestartPolicy {
        kind,
        max_retries: retries.min(i64::from(u32::MAX)) as u32,
    })
}

fn resources(r: &mut Refusals, h: &HostConfig) {
    let pairs: [(bool, &str); 14] = [
        (num(&h.cpu_period), "--cpu-period"),
        (num(&h.cpu_quota), "--cpu-quota"),
        (num(&h.cpu_realtime_period), "--cpu-rt-period"),
        (num(&h.cpu_realtime_runtime), "--cpu-rt-runtime"),
        (!s(&h.cpuset_mems).is_empty(), "--cpuset-mems"),
        (num(&h.blkio_weight), "--blkio-weight"),
        (list(&h.blkio_weight_device), "--blkio-weight-device"),
        (list(&h.blkio_device_read_bps), "--device-read-bps"),
        (list(&h.blkio_device_write_bps), "--device-write-bps"),
        (list(&h.blkio_device_read_iops), "--device-read-iops"),
        (list(&h.blkio_device_write_iops), "--device-write-iops"),
        (num(&h.memory_reservation), "--memory-reservation"),
        (!s(&h.cgroup_parent).is_empty(), "--cgroup-parent"),
        (list(&h.device_cgroup_rules), "--device-cgroup-rule"),
    ];
    for (set, flag) in pairs {
        r.check(set, flag, CGROUP_LIMITS);
    }
    r.check(list(&h.device_requests), "--gpus", GPUS);
    r.check(num(&h.cpu_percent), "--cpu-percent", WINDOWS);
    r.check(num(&h.io_maximum_iops), "--io-maxiops", WINDOWS);
    r.check(num(&h.io_maximum_bandwidth), "--io-maxbandwidth", WINDOWS);
}

/// Fields dockerd itself only warns about (and discards) where the kernel cannot apply them.
fn discarded(h: &HostConfig) -> Vec<String> {
    let mut w = Vec::new();
    if h.memory_swappiness.is_some_and(|v| v != -1) {
        w.push("Memory swappiness discarded: a container VM has no swap.".to_string());
    }
    if num(&h.memory_swap) {
        w.push("Memory limited without swap: a container VM has no swap.".to_string());
    }
    if num(&h.kernel_memory) {
        w.push("Kernel memory limit discarded: vic does not apply it.".to_string());
    }
    if num(&h.kernel_memory_tcp) {
        w.push("Kernel memory TCP limit discarded: vic does not apply it.".to_string());
    }
    if yes(&h.oom_kill_disable) {
        w.push("OomKillDisable discarded: vic does not apply it.".to_string());
    }
    w
}

/// `--memory` sizes the VM: dockerd's lower bound, then the VM's own.
pub(crate) fn memory(memory: Option<i64>, warnings: &mut Vec<String>) -> Result<u32, Refused> {
    let bytes = memory.unwrap_or(0);
    if bytes == 0 {
        return Ok(DEFAULT_MEMORY_MIB);
    }
    if bytes < DOCKER_MIN_MEMORY {
        return Err(Refused::Invalid(
            "Minimum memory limit allowed is 6MB".to_string(),
        ));
    }
    let mib = u32::try_from((bytes as u64).div_ceil(MIB as u64)).unwrap_or(u32::MAX);
    if mib < MIN_MEMORY_MIB {
        warnings.push(format!(
            "Memory raised from {mib}MiB to {MIN_MEMORY_MIB}MiB, the least a container VM boots with."
        ));
        return Ok(MIN_MEMORY_MIB);
    }
    Ok(mib)
}

/// `-c/--cpu-shares` weighs the VM's QEMU (its cgroup) or its vSphere VM against the VCH's
/// others; 0 is none given. The kernel keeps a weight within 2–262144, as under dockerd.
pub(crate) fn cpu_shares(shares: Option<i64>) -> Result<Option<u32>, Refused> {
    match shares.unwrap_or(0) {
        0 => Ok(None),
        n if n < 0 => Err(Refused::Invalid("shares: invalid argument".into())),
        n => Ok(Some(u32::try_from(n).unwrap_or(u32::MAX))),
    }
}

/// `--cpus` (or the API's `CpuCount`) is the VM's vCPUs, rounded up to whole ones.
pub(crate) fn cpus(
    nano: Option<i64>,
    count: Option<i64>,
    warnings: &mut Vec<String>,
) -> Result<u32, Refused> {
    let (nano, count) = (nano.unwrap_or(0), count.unwrap_or(0));
    if nano < 0 || count < 0 {
        return Err(Refused::Invalid(
            "Range of CPUs is from 0.01 to the VCH's vCPUs: a negative count is invalid".into(),
        ));
    }
    if nano > 0 {
        let whole = u32::try_from((nano as u64).div_ceil(NANO as u64)).unwrap_or(u32::MAX);
        if nano % NANO != 0 {
            warnings.push(format!(
                "A container VM has whole vCPUs: --cpus {} gives it {whole}.",
                nano as f64 / NANO as f64
            ));
        }
        return Ok(whole);
    }
    Ok(if count > 0 {
        u32::try_from(count).unwrap_or(u32::MAX)
    } else {
        1
    })
}
