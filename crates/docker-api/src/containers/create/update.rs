//! `POST /containers/{id}/update` (`docker update`): the restart policy and the VM's CPU
//! shares at any time, and the VM's memory and vCPUs while it is stopped (they take effect at its next start: microvm has neither a
//! memory balloon nor CPU hotplug, so a running VM's are refused in words). Every other
//! resource the body sets is refused naming its flag; the zero values the CLI sends for what
//! it was not given are nothing set.

use axum::extract::{Path, State};
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};

use super::host_config::{HostConfig, RestartPolicy};
use super::policy;
use crate::{ApiError, ApiResult, AppState};

/// The fields of Docker's update body vic applies.
const APPLIED: &[&str] = &[
    "Memory",
    "NanoCpus",
    "CpuCount",
    "CpuShares",
    "RestartPolicy",
];

/// The flag that sets each resource field vic does not change.
fn flag(field: &str) -> String {
    let known = [
        ("CpuPeriod", "--cpu-period"),
        ("CpuQuota", "--cpu-quota"),
        ("CpuRealtimePeriod", "--cpu-rt-period"),
        ("CpuRealtimeRuntime", "--cpu-rt-runtime"),
        ("CpusetCpus", "--cpuset-cpus"),
        ("CpusetMems", "--cpuset-mems"),
        ("MemoryReservation", "--memory-reservation"),
        ("MemorySwap", "--memory-swap"),
        ("KernelMemory", "--kernel-memory"),
        ("BlkioWeight", "--blkio-weight"),
        ("PidsLimit", "--pids-limit"),
    ];
    known.iter().find(|(f, _)| *f == field).map_or_else(
        || format!("HostConfig.{field}"),
        |(_, flag)| flag.to_string(),
    )
}

/// Whether `v` is what a client sends for a field it leaves alone.
fn unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(unset),
    }
}

/// POST /containers/{id}/update
pub async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let body: serde_json::Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let refused: Vec<String> = body
        .iter()
        .filter(|(k, v)| !APPLIED.contains(&k.as_str()) && !unset(v))
        .map(|(k, _)| flag(k))
        .collect();
    if !refused.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{} cannot be updated by vic: only --memory, --cpus, --cpu-shares and --restart are applied",
            refused.join(", ")
        )));
    }
    let int = |k: &str| body.get(k).and_then(Value::as_i64).filter(|v| *v != 0);
    let mut warnings = Vec::new();
    let memory = int("Memory")
        .map(|m| policy::memory(Some(m), &mut warnings))
        .transpose()?;
    let (nano, count) = (int("NanoCpus"), int("CpuCount"));
    let cpus = (nano.is_some() || count.is_some())
        .then(|| policy::cpus(nano, count, &mut warnings))
        .transpose()?;
    let cpu_shares = policy::cpu_shares(int("CpuShares"))?;
    let restart = match body.get("RestartPolicy").filter(|v| !unset(v)) {
        Some(v) => {
            let p: RestartPolicy = serde_json::from_value(v.clone())
                .map_err(|e| ApiError::bad_request(format!("invalid RestartPolicy: {e}")))?;
            let h = HostConfig {
                restart_policy: Some(p),
                ..HostConfig::default()
            };
            Some(policy::restart_policy(&h)?)
        }
        None => None,
    };
    let sizes = portlayer::Resize {
        memory_mib: memory,
        cpus,
        cpu_shares,
    };
    st.containers.update_settings(&id, sizes, restart).await?;
    Ok(Json(json!({ "Warnings": warnings })))
}
