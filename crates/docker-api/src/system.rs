//! `/_ping`, `/version`, `/info`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use portlayer::Status;
use serde_json::json;

use crate::{AppState, API_VERSION, MIN_API_VERSION};

pub async fn ping() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
            (header::PRAGMA, "no-cache"),
        ],
        "OK",
    )
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub async fn version(State(st): State<AppState>) -> impl IntoResponse {
    let v = env!("CARGO_PKG_VERSION");
    Json(json!({
        "Platform": { "Name": "vSphere Integrated Containers (vic)" },
        "Components": [{
            "Name": "Engine",
            "Version": v,
            "Details": {
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
                "Arch": host_arch(),
                "GitCommit": option_env!("VIC_GIT_COMMIT").unwrap_or("unknown"),
                "GoVersion": "rust",
                "KernelVersion": "",
                "BuildTime": "",
                "Experimental": "false",
                "Backend": st.containers.backend_description(),
            }
        }],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": option_env!("VIC_GIT_COMMIT").unwrap_or("unknown"),
        "GoVersion": "rust",
        "Os": "linux",
        "Arch": host_arch(),
        "KernelVersion": "",
        "BuildTime": "",
    }))
}

/// How a container's log is bounded when `--log-opt` says nothing (inspect shows the
/// options as given, as dockerd shows them).
fn container_logs() -> String {
    format!(
        "json-file, {} files of {} MB each unless --log-opt max-size/max-file say otherwise",
        portlayer::logs::DEFAULT_MAX_FILE,
        portlayer::logs::DEFAULT_MAX_SIZE / 1_000_000
    )
}

pub async fn info(State(st): State<AppState>) -> impl IntoResponse {
    let all = st.containers.list();
    let running = all
        .iter()
        .filter(|c| c.state.status == Status::Running)
        .count();
    let images = st.images.store().list().len();
    let (ncpu, mem) = host_resources();
    Json(json!({
        "ID": st.info.name,
        "Containers": all.len(),
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": all.len() - running,
        "Images": images,
        "Driver": format!("vic-{}", st.containers.backend_name()),
        "DriverStatus": [
            ["VCH", st.info.name],
            ["Backend", st.containers.backend_description()],
            ["Container start", st.containers.start_path()],
            ["Container logs", container_logs()],
        ],
        "Plugins": { "Volume": ["local", "vsphere"], "Network": [], "Authorization": null, "Log": ["json-file", "none"] },
        "MemoryLimit": true,
        "SwapLimit": false,
        "CpuCfsPeriod": false,
        "CpuCfsQuota": false,
        "CPUShares": true,
        "CPUSet": false,
        "PidsLimit": false,
        "IPv4Forwarding": false,
        "Debug": false,
        "NFd": 0,
        "OomKillDisable": false,
        "NGoroutines": 0,
        "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "LoggingDriver": "json-file",
        "CgroupDriver": "none",
        "CgroupVersion": "2",
        "NEventsListener": 0,
        "KernelVersion": "",
        "OperatingSystem": "vSphere Integrated Containers (vic)",
        "OSVersion": env!("CARGO_PKG_VERSION"),
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": registry_config(&st.info),
        "SystemStatus": system_status(&st),
        "NCPU": ncpu,
        "MemTotal": mem,
        "GenericResources": null,
        "DockerRootDir": st.info.root_dir,
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": st.info.name,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": { "vic": { "path": "tether" } },
        "DefaultRuntime": "vic",
        "Swarm": { "NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null },
        "LiveRestoreEnabled": false,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": { "ID": "", "Expected": "" },
        "RuncCommit": { "ID": "", "Expected": "" },
        "InitCommit": { "ID": "", "Expected": "" },
        "SecurityOptions": [],
        "Warnings": warnings(&st),
    }))
}

/// What `docker info` prints after everything else: insecure registries, and container and
/// image records this version cannot read (kept, with their VMs and files, until a version
/// that can is back).
fn warnings(st: &AppState) -> Vec<String> {
    let registries = st.info.insecure_registries.iter().map(|r| {
        format!("WARNING: registry {r} is insecure: its certificate is not verified, or it is reached over plain HTTP")
    });
    let quarantined = st.containers.quarantined().into_iter().map(|q| {
        format!(
            "WARNING: container {} is kept but not shown: its record cannot be read by this version ({}); its VM and logs are left as they are",
            q.id, q.error
        )
    });
    let images = st.images.store().quarantined().unwrap_or_else(|e| {
        tracing::warn!("reading the quarantined image records failed: {e}");
        Vec::new()
    });
    let images = images.into_iter().map(|q| {
        format!(
            "WARNING: image {} is kept but not shown: its record cannot be read by this version ({}); its files and tags are left as they are",
            q.id, q.error
        )
    });
    registries.chain(quarantined).chain(images).collect()
}

/// Docker's `RegistryConfig`: the insecure registries (no loopback default: like VIC, a VCH
/// trusts only what it was told to) and the whitelisted ones.
fn registry_config(info: &crate::VchInfo) -> serde_json::Value {
    let mut index = serde_json::Map::new();
    for (list, secure) in [
        (&info.whitelist_registries, true),
        (&info.insecure_registries, false),
    ] {
        for r in list {
            index.insert(
                r.clone(),
                json!({ "Name": r, "Mirrors": [], "Secure": secure, "Official": false }),
            );
        }
    }
    json!({ "InsecureRegistryCIDRs": [], "IndexConfigs": index, "Mirrors": [] })
}

/// VIC's `SystemStatus`: the volume stores, the storage quota and what is used of it, the
/// registry whitelist. The CLI prints each pair as ` NAME: VALUE`, so VIC's leading spaces
/// show the storage lines under the volume stores.
fn system_status(st: &AppState) -> Vec<[String; 2]> {
    let mut out = Vec::new();
    let mut add = |k: &str, v: String| out.push([k.to_string(), v]);
    let labels: Vec<&str> = st
        .images
        .storage()
        .volume_stores()
        .iter()
        .map(|v| v.label.as_str())
        .collect();
    add("VolumeStores", labels.join(" "));
    let usage = st.images.usage();
    if let Some(q) = st.images.storage().quota() {
        add(" VCH storage limit", bytes_size(q));
    }
    add(" VCH storage usage", bytes_size(usage.total()));
    for (k, v) in [
        (" VCH images storage usage", usage.images),
        (" VCH containers storage usage", usage.containers),
        (" VCH volumes storage usage", usage.volumes),
    ] {
        if v > 0 {
            add(k, bytes_size(v));
        }
    }
    if st.info.whitelist_registries.is_empty() {
        add(
            "Registry Whitelist Mode",
            "disabled. All registry access allowed.".into(),
        );
    } else {
        add("Registry Whitelist Mode", "enabled".into());
        add(
            "Whitelisted Registries",
            st.info.whitelist_registries.join(", "),
        );
    }
    out
}

/// Bytes as Docker's `units.BytesSize` (which VIC used) writes them: binary units, four
/// significant digits, e.g. `1GiB`, `3.281MiB`.
fn bytes_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    let int_digits = if v < 1.0 { 1 } else { v.log10() as usize + 1 };
    let s = format!("{v:.*}", 4usize.saturating_sub(int_digits));
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s}{}", UNITS[unit])
}

fn host_resources() -> (usize, u64) {
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|kb| kb.parse::<u64>().ok())
                })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    (ncpu, mem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_dockers_units_write_them() {
        assert_eq!(bytes_size(0), "0B");
        assert_eq!(bytes_size(1000), "1000B");
        assert_eq!(bytes_size(1 << 30), "1GiB");
        assert_eq!(bytes_size(20 << 30), "20GiB");
        assert_eq!(bytes_size(3_440_640), "3.281MiB");
        assert_eq!(bytes_size(1536), "1.5KiB");
        assert_eq!(bytes_size((1 << 30) - (1 << 20)), "1023MiB");
    }
}
