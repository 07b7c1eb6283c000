//! From what the policy applied to the port layer's spec, and to what inspect shows: the
//! `Config` and `HostConfig` there are built from the applied values, never echoed from the body.

use std::collections::BTreeMap;

use imagec::store::ImageRecord;
use portlayer::{ContainerSpec, ProcessSpec};
use serde_json::{json, Value};

use super::config::ContainerConfig;
use super::guest::Guest;
use super::log_opts::LogOpts;
use super::policy::Applied;
use super::Plan;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Marks a personality whose `HostConfig` was built from applied values (not a raw echo).
const APPLIED_KEY: &str = "Applied";

fn env_key(kv: &str) -> &str {
    kv.split_once('=').map(|(k, _)| k).unwrap_or(kv)
}

/// Image env first, the container's overriding by key; a PATH always present.
fn merge_env(image: &[String], user: &[String], tty: bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for kv in image.iter().chain(user.iter()) {
        let k = env_key(kv);
        if let Some(slot) = out.iter_mut().find(|e| env_key(e) == k) {
            *slot = kv.clone();
        } else {
            out.push(kv.clone());
        }
    }
    if !out.iter().any(|e| env_key(e) == "PATH") {
        out.insert(0, DEFAULT_PATH.to_string());
    }
    if tty && !out.iter().any(|e| env_key(e) == "TERM") {
        out.push("TERM=xterm".into());
    }
    out
}

fn str_vec(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn or_image(given: Option<String>, ic: &Value, key: &str) -> String {
    given.filter(|s| !s.is_empty()).unwrap_or_else(|| {
        ic.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    })
}

fn list_or_null(v: &[String]) -> Value {
    if v.is_empty() {
        Value::Null
    } else {
        json!(v)
    }
}

/// The port layer's spec and inspect's view of a container the policy admitted.
pub fn build(c: ContainerConfig, a: Applied, name: String, image: &ImageRecord) -> Plan {
    let ic = image
        .config
        .get("config")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let image_entry = str_vec(ic.get("Entrypoint"));
    let image_cmd = str_vec(ic.get("Cmd"));
    // Docker: an Entrypoint given at create time drops the image's Cmd.
    let (entrypoint, cmd) = match (c.entrypoint.map(|e| e.0), c.cmd.map(|c| c.0)) {
        (Some(e), Some(c)) => (e, c),
        (Some(e), None) => (e, Vec::new()),
        (None, Some(c)) if !c.is_empty() => (image_entry, c),
        (None, _) => (image_entry, image_cmd),
    };
    let argv: Vec<String> = entrypoint.iter().chain(cmd.iter()).cloned().collect();
    let tty = c.tty.unwrap_or(false);
    let env = merge_env(
        &str_vec(ic.get("Env")),
        c.env.as_deref().unwrap_or_default(),
        tty,
    );
    let working_dir = or_image(c.working_dir, &ic, "WorkingDir");
    let user = or_image(c.user, &ic, "User");
    let mut labels: BTreeMap<String, String> = ic
        .get("Labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default();
    labels.extend(c.labels.unwrap_or_default());
    let stop_signal = c.stop_signal.filter(|s| !s.is_empty()).or_else(|| {
        ic.get("StopSignal")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let hostname = c.hostname.unwrap_or_default();
    let image_ref = c.image.unwrap_or_default();
    let (open_stdin, stdin_once) = (c.open_stdin.unwrap_or(false), c.stdin_once.unwrap_or(false));
    let exposed = c.exposed_ports.filter(|p| !p.is_empty());
    let (healthcheck, health_shown) = super::health::resolve(c.healthcheck.as_ref(), &ic);
    let mut config = json!({
        "Hostname": hostname,
        "Domainname": a.guest.domainname,
        "User": user,
        "AttachStdin": c.attach_stdin.unwrap_or(false),
        "AttachStdout": c.attach_stdout.unwrap_or(false),
        "AttachStderr": c.attach_stderr.unwrap_or(false),
        "Tty": tty,
        "OpenStdin": open_stdin,
        "StdinOnce": stdin_once,
        "Env": env,
        "Cmd": list_or_null(&cmd),
        "Image": image_ref,
        "Volumes": null,
        "WorkingDir": working_dir,
        "Entrypoint": list_or_null(&entrypoint),
        "OnBuild": null,
        "Labels": labels,
        "StopSignal": stop_signal,
        "StopTimeout": c.stop_timeout,
    });
    if !health_shown.is_null() {
        config["Healthcheck"] = health_shown;
    }
    if let Some(p) = exposed {
        config["ExposedPorts"] = json!(p
            .keys()
            .map(|k| (k.clone(), json!({})))
            .collect::<BTreeMap<_, _>>());
    }
    let host_config = host_config_json(&a);
    let warnings = a.warnings;
    let spec = ContainerSpec {
        name,
        image_ref,
        image_id: image.id.clone(),
        process: ProcessSpec {
            argv,
            env,
            working_dir,
            user,
            tty,
            open_stdin,
            stdin_once,
            console_size: if tty { a.console_size } else { (0, 0) },
            privileges: a.guest.privileges(),
        },
        hostname,
        labels,
        stop_signal,
        stop_timeout: c.stop_timeout,
        auto_remove: a.auto_remove,
        restart: a.restart,
        memory_mib: a.memory_mib,
        cpus: a.cpus,
        host_cpus: a.host_cpus.clone(),
        cpu_shares: a.cpu_shares,
        dns_servers: a.dns,
        dns_search: a.dns_search,
        dns_options: a.dns_options,
        log: a.log.bounds,
        no_log: a.log.none,
        confinement: a.guest.confinement(),
        // `none`: loopback only; `default`: Docker's bridge network.
        networks: a.networking.networks.clone(),
        endpoint_requests: a.networking.requests.clone(),
        endpoints: Vec::new(),
        ports: Vec::new(),
        mounts: a.volumes.clone(),
        binds: a.binds.clone(),
        healthcheck,
        personality: json!({ "Config": config, "HostConfig": host_config, APPLIED_KEY: true }),
    };
    Plan { spec, warnings }
}

/// Inspect's `HostConfig` of a container: the stored one when it was built from applied
/// values; for containers made by earlier versions (whose stored HostConfig echoed the
/// request), rebuilt from what their spec applied.
pub fn host_config_of(spec: &ContainerSpec) -> Value {
    let p = &spec.personality;
    if p.get(APPLIED_KEY).and_then(Value::as_bool) == Some(true) {
        if let Some(hc) = p.get("HostConfig") {
            let mut hc = hc.clone();
            // What `docker update` changes since: the record says it.
            hc["Memory"] = json!(i64::from(spec.memory_mib) << 20);
            hc["NanoCpus"] = json!(i64::from(spec.cpus) * 1_000_000_000);
            hc["CpuShares"] = json!(spec.cpu_shares.unwrap_or(0));
            hc["RestartPolicy"] = restart_json(&spec.restart);
            return hc;
        }
    }
    let stored = p.get("HostConfig");
    let network_mode = stored
        .and_then(|h| h.get("NetworkMode"))
        .and_then(Value::as_str)
        .filter(|m| matches!(*m, "default" | "bridge" | "none"))
        .unwrap_or("default");
    host_config_json(&Applied {
        memory_mib: spec.memory_mib,
        cpus: spec.cpus,
        host_cpus: spec.host_cpus.clone(),
        cpuset_cpus: super::cpuset::format(&spec.host_cpus),
        cpu_shares: spec.cpu_shares,
        auto_remove: spec.auto_remove,
        restart: spec.restart,
        dns: spec.dns_servers.clone(),
        dns_search: spec.dns_search.clone(),
        dns_options: spec.dns_options.clone(),
        console_size: spec.process.console_size,
        network_mode: network_mode.to_string(),
        networking: Default::default(),
        container_id_file: String::new(),
        isolation: stored
            .and_then(|h| h.get("Isolation"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        log: LogOpts::default(),
        guest: Guest::of_spec(&spec.confinement, &spec.process.privileges),
        volumes: spec.mounts.clone(),
        binds: spec.binds.clone(),
        warnings: Vec::new(),
    })
}

/// Docker's `RestartPolicy`.
fn restart_json(p: &portlayer::container::RestartPolicy) -> Value {
    json!({ "Name": p.name(), "MaximumRetryCount": p.max_retries })
}

/// Docker's `LogConfig` holding the options in effect.
fn log_config_json(log: &LogOpts) -> Value {
    json!({ "Type": log.driver(), "Config": log.shown })
}

/// Docker's `HostConfig` shape holding what is in effect: the applied values, and every
/// option vic refuses at its default.
fn host_config_json(a: &Applied) -> Value {
    let (h, w) = a.console_size;
    let mut hc = json!({
        "Binds": null,
        "ContainerIDFile": a.container_id_file,
        "LogConfig": log_config_json(&a.log),
        "NetworkMode": a.network_mode,
        "PortBindings": {},
        "RestartPolicy": restart_json(&a.restart),
        "AutoRemove": a.auto_remove,
        "VolumeDriver": "",
        "VolumesFrom": null,
        "ConsoleSize": [h, w],
        "CapAdd": null,
        "CapDrop": null,
        "CgroupnsMode": "private",
        "Dns": a.dns,
        "DnsOptions": a.dns_options,
        "DnsSearch": a.dns_search,
        "ExtraHosts": null,
        "GroupAdd": null,
        "IpcMode": "private",
        "Cgroup": "",
        "Links": null,
        "OomScoreAdj": 0,
        "PidMode": "",
        "Privileged": false,
        "PublishAllPorts": false,
        "ReadonlyRootfs": false,
        "SecurityOpt": null,
        "UTSMode": "",
        "UsernsMode": "",
        "ShmSize": 0,
        "Runtime": "vic",
        "Isolation": a.isolation,
        "CpuShares": a.cpu_shares.unwrap_or(0),
        "Memory": i64::from(a.memory_mib) << 20,
        "NanoCpus": i64::from(a.cpus) * 1_000_000_000,
        "CgroupParent": "",
        "BlkioWeight": 0,
        "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": [],
        "BlkioDeviceWriteBps": [],
        "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [],
        "CpuPeriod": 0,
        "CpuQuota": 0,
        "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0,
        "CpusetCpus": a.cpuset_cpus,
        "CpusetMems": "",
        "Devices": [],
        "DeviceCgroupRules": null,
        "DeviceRequests": null,
        "MemoryReservation": 0,
        "MemorySwap": 0,
        "MemorySwappiness": null,
        "OomKillDisable": null,
        "PidsLimit": null,
        "Ulimits": [],
        "CpuCount": 0,
        "CpuPercent": 0,
        "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0,
        "MaskedPaths": null,
        "ReadonlyPaths": null,
    });
    a.guest.host_config(&mut hc);
    hc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_merges_by_key_and_keeps_a_path() {
        let image = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let user = vec!["A=2".to_string(), "B=3".to_string()];
        assert_eq!(
            merge_env(&image, &user, false),
            vec!["PATH=/bin", "A=2", "B=3"]
        );
        let env = merge_env(&[], &[], true);
        assert_eq!(
            env,
            vec![DEFAULT_PATH.to_string(), "TERM=xterm".to_string()]
        );
    }
}
