//! `/containers/…`: create, list, inspect, start, stop, restart, kill, resize, remove.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use portlayer::{ContainerRecord, ContainerSpec, ProcessSpec, Status};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::inspect::{container_json, container_summary};
use crate::{truthy, ApiError, ApiResult, AppState};

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const DEFAULT_MEMORY_MIB: u32 = 256;

/// A string or a list of strings (Docker accepts both for Cmd and Entrypoint).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StrOrVec {
    One(String),
    Many(Vec<String>),
}

impl StrOrVec {
    fn into_vec(self) -> Vec<String> {
        match self {
            StrOrVec::One(s) if s.is_empty() => Vec::new(),
            StrOrVec::One(s) => vec![s],
            StrOrVec::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfigBody {
    pub auto_remove: bool,
    pub dns: Option<Vec<String>>,
    pub dns_search: Option<Vec<String>>,
    pub dns_options: Option<Vec<String>>,
    /// `[height, width]` of the client's terminal (API 1.42+).
    pub console_size: Option<[u32; 2]>,
    pub memory: i64,
    pub nano_cpus: i64,
    pub cpu_count: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Option<Vec<String>>,
    pub cmd: Option<StrOrVec>,
    pub entrypoint: Option<StrOrVec>,
    pub image: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub working_dir: String,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub host_config: Option<Value>,
}

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

fn clamp_u16(v: u32) -> u16 {
    v.min(u32::from(u16::MAX)) as u16
}

/// Builds the port layer's spec from Docker's create body and the image's config.
pub fn build_spec(
    body: CreateBody,
    name: String,
    image: &imagec::store::ImageRecord,
) -> ContainerSpec {
    let ic = image
        .config
        .get("config")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let image_entry = str_vec(ic.get("Entrypoint"));
    let image_cmd = str_vec(ic.get("Cmd"));
    // Docker: an Entrypoint given at create time drops the image's Cmd.
    let (entrypoint, cmd) = match (
        body.entrypoint.map(StrOrVec::into_vec),
        body.cmd.map(StrOrVec::into_vec),
    ) {
        (Some(e), Some(c)) => (e, c),
        (Some(e), None) => (e, Vec::new()),
        (None, Some(c)) if !c.is_empty() => (image_entry, c),
        (None, _) => (image_entry, image_cmd),
    };
    let argv: Vec<String> = entrypoint.iter().chain(cmd.iter()).cloned().collect();
    let env = merge_env(
        &str_vec(ic.get("Env")),
        body.env.as_deref().unwrap_or(&[]),
        body.tty,
    );
    let working_dir = if body.working_dir.is_empty() {
        ic.get("WorkingDir")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    } else {
        body.working_dir.clone()
    };
    let user = if body.user.is_empty() {
        ic.get("User")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    } else {
        body.user.clone()
    };
    let mut labels: BTreeMap<String, String> = ic
        .get("Labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default();
    labels.extend(body.labels.clone().unwrap_or_default());
    let stop_signal = body
        .stop_signal
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            ic.get("StopSignal")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let host_config = body.host_config.clone().unwrap_or_else(|| json!({}));
    let hc: HostConfigBody = serde_json::from_value(host_config.clone()).unwrap_or_default();
    let memory_mib = if hc.memory > 0 {
        ((hc.memory as u64).div_ceil(1 << 20)).max(64) as u32
    } else {
        DEFAULT_MEMORY_MIB
    };
    let cpus = if hc.nano_cpus > 0 {
        (hc.nano_cpus as u64).div_ceil(1_000_000_000) as u32
    } else if hc.cpu_count > 0 {
        hc.cpu_count as u32
    } else {
        1
    };
    let config = json!({
        "Hostname": body.hostname,
        "Domainname": body.domainname,
        "User": user,
        "AttachStdin": body.attach_stdin,
        "AttachStdout": body.attach_stdout,
        "AttachStderr": body.attach_stderr,
        "Tty": body.tty,
        "OpenStdin": body.open_stdin,
        "StdinOnce": body.stdin_once,
        "Env": env,
        "Cmd": if cmd.is_empty() { Value::Null } else { json!(cmd) },
        "Image": body.image,
        "Volumes": null,
        "WorkingDir": working_dir,
        "Entrypoint": if entrypoint.is_empty() { Value::Null } else { json!(entrypoint) },
        "OnBuild": null,
        "Labels": labels,
        "StopSignal": stop_signal,
        "StopTimeout": body.stop_timeout,
    });
    ContainerSpec {
        name,
        image_ref: body.image.clone(),
        image_id: image.id.clone(),
        process: ProcessSpec {
            argv,
            env,
            working_dir,
            user,
            tty: body.tty,
            open_stdin: body.open_stdin,
            stdin_once: body.stdin_once,
            console_size: hc
                .console_size
                .filter(|_| body.tty)
                .map(|[h, w]| (clamp_u16(h), clamp_u16(w)))
                .unwrap_or_default(),
        },
        hostname: body.hostname.clone(),
        labels,
        stop_signal,
        stop_timeout: body.stop_timeout,
        auto_remove: hc.auto_remove,
        memory_mib,
        cpus,
        dns_servers: hc.dns.clone().unwrap_or_default(),
        dns_search: hc.dns_search.clone().unwrap_or_default(),
        dns_options: hc.dns_options.clone().unwrap_or_default(),
        personality: json!({ "Config": config, "HostConfig": host_config }),
    }
}

/// POST /containers/create?name=
pub async fn create(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let body: CreateBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    if body.image.is_empty() {
        return Err(ApiError::bad_request(
            "config cannot be empty in order to create a container",
        ));
    }
    let image = match st.images.resolve(&body.image) {
        Some(img) => img,
        None => {
            let shown = imagec::reference::Reference::parse(&body.image)
                .map(|r| r.to_string())
                .unwrap_or(body.image.clone());
            return Err(ApiError::not_found(format!("No such image: {shown}")));
        }
    };
    // VIC refuses a create while the VCH's storage is over its quota.
    let usage = st.storage.usage(st.images.usage());
    st.storage
        .check(usage, 0)
        .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, e.to_string()))?;
    let name = q.get("name").cloned().unwrap_or_default();
    let spec = build_spec(body, name, &image);
    let rec = st.containers.create(spec).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "Id": rec.id, "Warnings": [] })),
    )
        .into_response())
}

fn filter_values(filters: &Value, key: &str) -> Vec<String> {
    match filters.get(key) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn matches_filters(c: &ContainerRecord, filters: &Value) -> bool {
    let check = |key: &str, f: &dyn Fn(&str) -> bool| {
        let vals = filter_values(filters, key);
        vals.is_empty() || vals.iter().any(|v| f(v))
    };
    check("status", &|v| v == c.state.status.as_str())
        && check("name", &|v| c.spec.name.contains(v.trim_start_matches('/')))
        && check("id", &|v| c.id.starts_with(v))
        && check("ancestor", &|v| {
            c.spec.image_ref == v || c.spec.image_id.contains(v)
        })
        && check("exited", &|v| {
            c.state.status == Status::Exited && v.parse::<i32>().ok() == Some(c.state.exit_code)
        })
        && check("label", &|v| match v.split_once('=') {
            Some((k, val)) => c.spec.labels.get(k).map(|x| x == val).unwrap_or(false),
            None => c.spec.labels.contains_key(v),
        })
}

/// GET /containers/json?all=&limit=&filters=
pub async fn list(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let all = truthy(q.get("all"));
    let filters: Value = match q.get("filters").filter(|f| !f.is_empty()) {
        Some(f) => serde_json::from_str(f)
            .map_err(|e| ApiError::bad_request(format!("invalid filters: {e}")))?,
        None => json!({}),
    };
    let limit: Option<usize> = q
        .get("limit")
        .and_then(|l| l.parse::<i64>().ok())
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let now = Utc::now();
    let mut list: Vec<ContainerRecord> = st
        .containers
        .list()
        .into_iter()
        .filter(|c| {
            all || limit.is_some()
                || c.state.status == Status::Running
                || !filter_values(&filters, "status").is_empty()
        })
        .filter(|c| matches_filters(c, &filters))
        .collect();
    list.reverse(); // newest first, as Docker lists
    if let Some(n) = limit {
        list.truncate(n);
    }
    Ok(Json(Value::Array(
        list.iter().map(|c| container_summary(c, now)).collect(),
    )))
}

/// GET /containers/{id}/json
pub async fn inspect(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let c = st.containers.get(&id)?;
    let log = st.containers.log_path(&c.id);
    Ok(Json(container_json(&c, &log.display().to_string())))
}

/// POST /containers/{id}/start
pub async fn start(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    match st.containers.start(&id).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(portlayer::Error::AlreadyRunning(_)) => Ok(StatusCode::NOT_MODIFIED.into_response()),
        Err(e) => {
            if let Ok(c) = st.containers.get(&id) {
                if c.spec.auto_remove {
                    let _ = st.containers.remove(&c.id, true).await;
                }
            }
            Err(e.into())
        }
    }
}

fn timeout_param(q: &HashMap<String, String>) -> Option<i64> {
    q.get("t")
        .or_else(|| q.get("timeout"))
        .and_then(|t| t.parse().ok())
}

/// POST /containers/{id}/stop?t=&signal=
pub async fn stop(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let signal = q
        .get("signal")
        .filter(|s| !s.is_empty())
        .map(String::as_str);
    match st.containers.stop(&id, timeout_param(&q), signal).await? {
        true => Ok(StatusCode::NO_CONTENT.into_response()),
        false => Ok(StatusCode::NOT_MODIFIED.into_response()),
    }
}

/// POST /containers/{id}/restart?t=
pub async fn restart(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<StatusCode> {
    let signal = q
        .get("signal")
        .filter(|s| !s.is_empty())
        .map(String::as_str);
    st.containers.stop(&id, timeout_param(&q), signal).await?;
    st.containers.start(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /containers/{id}/kill?signal=
pub async fn kill(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<StatusCode> {
    let signal = q.get("signal").cloned().unwrap_or_default();
    match st.containers.kill(&id, &signal) {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(e @ portlayer::Error::NotRunning(_)) => Err(ApiError::conflict(format!(
            "Cannot kill container: {id}: {e}"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// POST /containers/{id}/resize?h=&w=
pub async fn resize(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<StatusCode> {
    let h = q
        .get("h")
        .and_then(|v| v.parse::<u16>().ok())
        .ok_or_else(|| ApiError::bad_request("invalid height"))?;
    let w = q
        .get("w")
        .and_then(|v| v.parse::<u16>().ok())
        .ok_or_else(|| ApiError::bad_request("invalid width"))?;
    if let Err(e) = st.containers.resize(&id, h, w) {
        tracing::warn!(%id, "resize to {h}x{w} refused: {e}");
        return Err(e.into());
    }
    Ok(StatusCode::OK)
}

/// DELETE /containers/{id}?force=&v=
pub async fn remove(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<StatusCode> {
    st.containers.remove(&id, truthy(q.get("force"))).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deeply_nested_json_is_an_error_not_a_crash() {
        for depth in [200, 100_000] {
            let body = format!(
                r#"{{"Image":"busybox","HostConfig":{{"x":{}}}}}"#,
                "[".repeat(depth)
            );
            let err = serde_json::from_slice::<CreateBody>(body.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("recursion limit"), "{err}");
        }
        let top = "[".repeat(100_000);
        assert!(serde_json::from_str::<CreateBody>(&top).is_err());
    }

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
