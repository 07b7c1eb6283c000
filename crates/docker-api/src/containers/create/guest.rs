//! The options applied inside the container VM (capabilities, `--privileged`, `--read-only`,
//! `--tmpfs`, `--shm-size`, `--ulimit`, `--add-host`, `--group-add`, `--domainname`,
//! `--sysctl`, `--device`, `--init`, `--pids-limit`, `--security-opt no-new-privileges`):
//! checked as dockerd checks them, in dockerd's words, and turned into what the port layer
//! keeps. What the tether does with them is in `crates/tether/src/confine.rs` (the VM, on
//! Setup) and `crates/tether/src/privs.rs` (each process, before its exec).

use std::collections::BTreeMap;

use portlayer::guest::{Device, HostEntry, Tmpfs, CAPABILITIES, DEFAULT_CAPABILITIES, RLIMITS};
use portlayer::{Confinement, PrivilegeSpec, Rlimit};
use serde_json::{json, Value};

use super::config::ContainerConfig;
use super::host_config::{DeviceMapping, HostConfig};
use super::refusal::{Refusals, Refused};
use super::tmpfs;

/// The size of `/dev/shm` when `--shm-size` is not given (Docker's 64 MiB).
pub const DEFAULT_SHM_SIZE: i64 = 64 << 20;

/// Docker's `MaskedPaths` for a container that is not privileged.
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's `ReadonlyPaths` for a container that is not privileged.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The sysctls Docker lets a container set: namespaced ones (`opts.ValidateSysctl`).
const SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];
const SYSCTL_PREFIXES: [&str; 2] = ["net.", "fs.mqueue."];

/// What the guest options of one create come to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Guest {
    pub privileged: bool,
    /// `CapAdd`/`CapDrop` as dockerd keeps them: upper case, `CAP_` prefixed.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// The capabilities the container's processes get.
    pub capabilities: Vec<String>,
    pub readonly_rootfs: bool,
    /// `HostConfig.Tmpfs` as given, and what is mounted.
    pub tmpfs_given: BTreeMap<String, String>,
    pub tmpfs: Vec<Tmpfs>,
    pub shm_size: i64,
    pub ulimits: Vec<Rlimit>,
    pub extra_hosts: Vec<String>,
    pub group_add: Vec<String>,
    pub domainname: String,
    pub sysctls: BTreeMap<String, String>,
    pub devices: Vec<(String, String)>,
    pub init: bool,
    pub pids_limit: Option<i64>,
    pub security_opt: Vec<String>,
    pub no_new_privileges: bool,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
}

/// Guest options vic still does not apply: refused naming their flags.
pub fn refusals(r: &mut Refusals, h: &HostConfig) {
    let sec = "only no-new-privileges, seccomp=unconfined and apparmor=unconfined apply to a container VM (it has no seccomp, AppArmor or SELinux profile)";
    for opt in h.security_opt.iter().flatten() {
        if security_opt(opt).is_none() {
            let key = opt.split(['=', ':']).next().unwrap_or(opt);
            r.check(true, format!("--security-opt {key}"), sec);
        }
    }
    let paths = "the masked and read-only paths are Docker's defaults (none with --privileged)";
    r.check(
        h.masked_paths.as_ref().is_some_and(|p| !p.is_empty()),
        "HostConfig.MaskedPaths",
        paths,
    );
    r.check(
        h.readonly_paths.as_ref().is_some_and(|p| !p.is_empty()),
        "HostConfig.ReadonlyPaths",
        paths,
    );
    for d in h.devices.iter().flatten() {
        let perms = d.cgroup_permissions.as_deref().unwrap_or_default();
        r.check(
            !matches!(perms, "" | "rwm"),
            format!("--device {}:{perms}", d.path_on_host.as_deref().unwrap_or_default()),
            "a device node is visible with all its permissions (rwm): the guest has no device cgroup",
        );
    }
}

/// `no-new-privileges` (with `:true`/`=true`/`:false`/`=false`) gives its value;
/// `seccomp=unconfined` and `apparmor=unconfined` are what vic does anyway (false).
fn security_opt(opt: &str) -> Option<bool> {
    match opt {
        "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true" => Some(true),
        "no-new-privileges:false" | "no-new-privileges=false" => Some(false),
        "seccomp=unconfined" | "seccomp:unconfined" => Some(false),
        "apparmor=unconfined" | "apparmor:unconfined" => Some(false),
        _ => None,
    }
}

fn invalid(msg: impl Into<String>) -> Refused {
    Refused::Invalid(msg.into())
}

/// Checks and applies the guest options of a create body the policy did not refuse.
pub fn apply(c: &ContainerConfig, h: &HostConfig) -> Result<Guest, Refused> {
    let privileged = h.privileged == Some(true);
    let cap_add = normalize_caps(h.cap_add.as_ref().map(|c| c.0.as_slice()))?;
    let cap_drop = normalize_caps(h.cap_drop.as_ref().map(|c| c.0.as_slice()))?;
    let capabilities = tweak_caps(&cap_add, &cap_drop, privileged);
    let shm_size = match h.shm_size.unwrap_or(0) {
        s if s < 0 => return Err(invalid("SHM size can not be less than 0")),
        0 => DEFAULT_SHM_SIZE,
        s => s,
    };
    let tmpfs_given = h.tmpfs.clone().unwrap_or_default();
    let tmpfs = tmpfs_given
        .iter()
        .map(|(path, opts)| tmpfs::parse(path, opts))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let extra_hosts = h.extra_hosts.clone().unwrap_or_default();
    for host in &extra_hosts {
        extra_host(host)?;
    }
    let group_add = h.group_add.clone().unwrap_or_default();
    if let Some(g) = group_add
        .iter()
        .find(|g| g.is_empty() || g.contains([':', '\n', ',']))
    {
        return Err(invalid(format!("invalid group {g:?} in --group-add")));
    }
    let sysctls = h.sysctls.clone().unwrap_or_default();
    for (k, v) in &sysctls {
        sysctl(k, v)?;
    }
    let devices = h
        .devices
        .iter()
        .flatten()
        .map(device)
        .collect::<Result<Vec<_>, _>>()?;
    let no_new_privileges = (h.security_opt.iter().flatten())
        .filter_map(|o| security_opt(o).filter(|_| o.starts_with("no-new-privileges")))
        .next_back()
        .unwrap_or(false);
    let paths = |p: &[&str]| -> Vec<String> {
        if privileged {
            Vec::new()
        } else {
            p.iter().map(|s| s.to_string()).collect()
        }
    };
    Ok(Guest {
        masked_paths: paths(&MASKED_PATHS),
        readonly_paths: paths(&READONLY_PATHS),
        privileged,
        cap_add,
        cap_drop,
        capabilities,
        readonly_rootfs: h.readonly_rootfs == Some(true),
        tmpfs_given,
        tmpfs,
        shm_size,
        ulimits: ulimits(h)?,
        extra_hosts,
        group_add,
        domainname: c.domainname.clone().unwrap_or_default(),
        sysctls,
        devices,
        init: h.init == Some(true),
        pids_limit: h.pids_limit.filter(|p| *p > 0),
        security_opt: h.security_opt.clone().unwrap_or_default(),
        no_new_privileges,
    })
}

/// moby's `NormalizeLegacyCapabilities`: upper case, `CAP_` added, `ALL` kept.
fn normalize_caps(caps: Option<&[String]>) -> Result<Vec<String>, Refused> {
    let mut out = Vec::new();
    for c in caps.unwrap_or_default() {
        let mut c = c.to_ascii_uppercase();
        if c != "ALL" {
            if !c.starts_with("CAP_") {
                c = format!("CAP_{c}");
            }
            if !CAPABILITIES.contains(&c.as_str()) {
                return Err(invalid(format!("unknown capability: {c:?}")));
            }
        }
        out.push(c);
    }
    Ok(out)
}

/// moby's `TweakCapabilities` over Docker's default set.
fn tweak_caps(add: &[String], drop: &[String], privileged: bool) -> Vec<String> {
    let all = || CAPABILITIES.iter().map(|c| c.to_string());
    let has = |list: &[String], c: &str| list.iter().any(|x| x == c);
    let mut caps: Vec<String> = if privileged || has(add, "ALL") {
        all().filter(|c| privileged || !has(drop, c)).collect()
    } else if has(drop, "ALL") {
        add.to_vec()
    } else {
        (DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()))
            .filter(|c| !has(drop, c))
            .chain(add.iter().cloned())
            .collect()
    };
    let mut seen = Vec::new();
    caps.retain(|c| {
        !seen.contains(c) && {
            seen.push(c.clone());
            true
        }
    });
    caps
}

/// dockerd's `ValidateExtraHost`.
fn extra_host(host: &str) -> Result<(), Refused> {
    let Some((name, ip)) = host.split_once(':').filter(|(n, _)| !n.is_empty()) else {
        return Err(invalid(format!("bad format for add-host: {host:?}")));
    };
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    // `host-gateway` is the host as the VCH's networks reach it, filled in at start.
    let known = ip == "host-gateway" || ip.parse::<std::net::IpAddr>().is_ok();
    if !known || name.contains(char::is_whitespace) {
        return Err(invalid(format!("invalid IP address in add-host: {ip:?}")));
    }
    Ok(())
}

/// The Docker CLI's `ValidateSysctl` (dockerd leaves the rest to runc), and a key that names
/// a file under `/proc/sys` and nothing else.
fn sysctl(key: &str, value: &str) -> Result<(), Refused> {
    let allowed = SYSCTLS.contains(&key) || SYSCTL_PREFIXES.iter().any(|p| key.starts_with(p));
    let plain = key.split('.').all(|part| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
    });
    if !allowed || !plain || value.contains('\n') {
        return Err(invalid(format!("sysctl '{key}={value}' is not allowed")));
    }
    Ok(())
}

/// A `--device`: a node of the guest's `/dev`, seen under `/dev` in the container.
fn device(d: &DeviceMapping) -> Result<(String, String), Refused> {
    let guest = d.path_on_host.clone().unwrap_or_default();
    let inside = d
        .path_in_container
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| guest.clone());
    for p in [&guest, &inside] {
        let under_dev = p.starts_with("/dev/") && !p.split('/').any(|s| s == ".." || s == ".");
        if !under_dev {
            return Err(invalid(format!(
                "invalid device path {p:?}: a container VM's devices are its own, under /dev"
            )));
        }
    }
    Ok((guest, inside))
}

/// `--ulimit`: Docker's names and its soft ≤ hard rule; -1 is unlimited.
fn ulimits(h: &HostConfig) -> Result<Vec<Rlimit>, Refused> {
    let mut out: Vec<Rlimit> = Vec::new();
    for u in h.ulimits.iter().flatten() {
        let name = u.name.clone().unwrap_or_default();
        if !RLIMITS.contains(&name.as_str()) {
            return Err(invalid(format!("invalid ulimit type: {name}")));
        }
        let (soft, hard) = (u.soft.unwrap_or(0), u.hard.unwrap_or(0));
        let value = |v: i64| u64::try_from(v).unwrap_or(u64::MAX);
        if value(soft) > value(hard) {
            return Err(invalid(format!(
                "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            )));
        }
        out.retain(|r| r.name != name);
        out.push(Rlimit {
            name,
            soft: value(soft),
            hard: value(hard),
        });
    }
    Ok(out)
}

impl Guest {
    /// What a container made before these options were applied has in effect.
    pub fn of_spec(conf: &Confinement, p: &PrivilegeSpec) -> Guest {
        let capabilities = p
            .capabilities
            .clone()
            .unwrap_or_else(|| DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect());
        Guest {
            capabilities,
            privileged: conf.privileged,
            readonly_rootfs: conf.readonly_rootfs,
            shm_size: match i64::try_from(conf.shm_size).unwrap_or(0) {
                n if n > 0 => n,
                _ => DEFAULT_SHM_SIZE,
            },
            masked_paths: conf.masked_paths.clone(),
            readonly_paths: conf.readonly_paths.clone(),
            ..Guest::default()
        }
    }

    /// The port layer's confinement of the container.
    pub fn confinement(&self) -> Confinement {
        Confinement {
            privileged: self.privileged,
            readonly_rootfs: self.readonly_rootfs,
            tmpfs: self.tmpfs.clone(),
            shm_size: self.shm_size as u64,
            sysctls: self.sysctls.clone().into_iter().collect(),
            devices: (self.devices.iter())
                .map(|(g, c)| Device {
                    guest_path: g.clone(),
                    container_path: c.clone(),
                })
                .collect(),
            extra_hosts: (self.extra_hosts.iter())
                .filter_map(|h| h.split_once(':'))
                .map(|(name, ip)| HostEntry {
                    name: name.to_string(),
                    ip: ip.trim_start_matches('[').trim_end_matches(']').to_string(),
                })
                .collect(),
            domainname: self.domainname.clone(),
            pids_limit: self.pids_limit.map_or(0, |p| p as u64),
            masked_paths: self.masked_paths.clone(),
            readonly_paths: self.readonly_paths.clone(),
        }
    }

    /// The port layer's privileges of the container's processes.
    pub fn privileges(&self) -> PrivilegeSpec {
        PrivilegeSpec {
            capabilities: Some(self.capabilities.clone()),
            groups: self.group_add.clone(),
            rlimits: self.ulimits.clone(),
            no_new_privileges: self.no_new_privileges,
        }
    }

    /// The fields of inspect's `HostConfig` these options fill.
    pub fn host_config(&self, hc: &mut Value) {
        let list = |v: &[String]| if v.is_empty() { Value::Null } else { json!(v) };
        hc["CapAdd"] = list(&self.cap_add);
        hc["CapDrop"] = list(&self.cap_drop);
        hc["Privileged"] = json!(self.privileged);
        hc["ReadonlyRootfs"] = json!(self.readonly_rootfs);
        if !self.tmpfs_given.is_empty() {
            hc["Tmpfs"] = json!(self.tmpfs_given);
        }
        hc["ShmSize"] = json!(self.shm_size);
        hc["Ulimits"] = json!(self
            .ulimits
            .iter()
            .map(|u| {
                let v = |x: u64| i64::try_from(x).unwrap_or(-1);
                json!({ "Name": u.name, "Hard": v(u.hard), "Soft": v(u.soft) })
            })
            .collect::<Vec<_>>());
        hc["ExtraHosts"] = list(&self.extra_hosts);
        hc["GroupAdd"] = list(&self.group_add);
        if !self.sysctls.is_empty() {
            hc["Sysctls"] = json!(self.sysctls);
        }
        hc["Devices"] = json!(self
            .devices
            .iter()
            .map(|(g, c)| json!({ "PathOnHost": g, "PathInContainer": c, "CgroupPermissions": "rwm" }))
            .collect::<Vec<_>>());
        if self.init {
            hc["Init"] = json!(true);
        }
        hc["PidsLimit"] = json!(self.pids_limit);
        hc["SecurityOpt"] = list(&self.security_opt);
        hc["MaskedPaths"] = list(&self.masked_paths);
        hc["ReadonlyPaths"] = list(&self.readonly_paths);
    }
}
