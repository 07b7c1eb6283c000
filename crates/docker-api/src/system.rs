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
                "Backend": st.containers.backend().describe(),
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

pub async fn info(State(st): State<AppState>) -> impl IntoResponse {
    let all = st.containers.list();
    let running = all
        .iter()
        .filter(|c| c.state.status == Status::Running)
        .count();
    let images = st.images.list().len();
    let backend = st.containers.backend();
    let (ncpu, mem) = host_resources();
    Json(json!({
        "ID": st.info.name,
        "Containers": all.len(),
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": all.len() - running,
        "Images": images,
        "Driver": format!("vic-{}", backend.name()),
        "DriverStatus": [["VCH", st.info.name], ["Backend", backend.describe()]],
        "SystemStatus": null,
        "Plugins": { "Volume": [], "Network": [], "Authorization": null, "Log": ["json-file"] },
        "MemoryLimit": true,
        "SwapLimit": false,
        "CpuCfsPeriod": false,
        "CpuCfsQuota": false,
        "CPUShares": false,
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
        "SystemStatus": whitelist_status(&st.info),
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
        "Warnings": st.info.insecure_registries.iter().map(|r| format!("WARNING: registry {r} is insecure: its certificate is not verified, or it is reached over plain HTTP")).collect::<Vec<_>>(),
    }))
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

/// VIC's `SystemStatus` lines about the registry whitelist.
fn whitelist_status(info: &crate::VchInfo) -> serde_json::Value {
    if info.whitelist_registries.is_empty() {
        return json!([[
            "Registry Whitelist Mode",
            "disabled. All registry access allowed."
        ]]);
    }
    json!([
        ["Registry Whitelist Mode", "enabled"],
        [
            "Whitelisted Registries",
            info.whitelist_registries.join(", ")
        ],
    ])
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
