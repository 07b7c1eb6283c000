//! `/containers/…`: create, list, inspect, start, stop, restart, kill, resize, remove.

mod create;

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use portlayer::{ContainerRecord, Status};
use serde_json::{json, Value};

use crate::inspect::{container_json, container_summary};
use crate::{truthy, ApiError, ApiResult, AppState};

pub use create::{create, host_config_of};

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
    match st.containers.kill(&id, &signal).await {
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
