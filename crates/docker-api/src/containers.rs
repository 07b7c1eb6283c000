//! `/containers/…`: create, list, inspect, start, stop, restart, kill, resize, remove.

pub(crate) mod create;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use portlayer::{ContainerRecord, Status};
use serde::Deserialize;
use serde_json::Value;

use crate::filters::Filters;
use crate::inspect::{container_json, container_summary};
use crate::prune::label_matches;
use crate::query::{or_none, DockerQuery};
use crate::{ApiError, ApiResult, AppState};

pub use create::create;
use create::host_config_of;
pub use create::update::update;

/// The keys `GET /containers/json` applies.
const LIST_FILTERS: [&str; 13] = [
    "network",
    "volume",
    "status",
    "name",
    "id",
    "ancestor",
    "exited",
    "label",
    "label!",
    "before",
    "since",
    "isolation",
    "health",
];
/// Keys Docker knows that vic does not apply yet.
const LIST_FILTERS_NOT_YET: [(&str, &str); 3] = [
    ("publish", "port filters are not implemented yet"),
    ("expose", "port filters are not implemented yet"),
    ("is-task", "vic has no swarm tasks"),
];

/// The container-list filters, with `before` and `since` resolved to creation times.
fn list_filter(st: &AppState, filters: &Filters) -> ApiResult<impl Fn(&ContainerRecord) -> bool> {
    let created = |key: &str| -> ApiResult<Option<DateTime<Utc>>> {
        match filters.values(key).first() {
            Some(v) => Ok(Some(st.containers.get(v)?.created)),
            None => Ok(None),
        }
    };
    let (before, since) = (created("before")?, created("since")?);
    let filters = filters.clone();
    Ok(move |c: &ContainerRecord| {
        let f = &filters;
        f.any("status", |v| v == crate::inspect::state_word(c))
            && f.any("health", |v| {
                let running = c.state.status == portlayer::container::Status::Running;
                let h = c.state.health.as_ref().filter(|_| running);
                v == h.map_or("none", |h| h.status.word())
            })
            && f.any("name", |v| c.spec.name.contains(v.trim_start_matches('/')))
            && f.any("id", |v| c.id.starts_with(v))
            // A volume's name, or where it is mounted (moby matches either).
            && f.any("volume", |v| {
                c.spec.mounts.iter().any(|m| m.name == v || m.target == v)
            })
            && f.any("ancestor", |v| {
                c.spec.image_ref == v || c.spec.image_id.contains(v)
            })
            && f.any("exited", |v| {
                c.state.status == Status::Exited
                    && v.parse::<i32>().ok() == Some(c.state.exit_code)
            })
            && f.values("label").iter().all(|l| label_matches(&c.spec.labels, l))
            // As moby's MatchKVList: excluded when it matches every `label!` given.
            && {
                let not = f.values("label!");
                not.is_empty() || !not.iter().all(|l| label_matches(&c.spec.labels, l))
            }
            && f.any("isolation", |v| v == "default")
            // A network's name, or a prefix of its ID, as moby matches them.
            && f.any("network", |v| {
                c.spec.endpoints.iter().any(|e| {
                    e.network == v || (!e.network_id.is_empty() && e.network_id.starts_with(v))
                })
            })
            && before.is_none_or(|b| c.created < b)
            && since.is_none_or(|s| c.created > s)
    })
}

/// What `GET /containers/json` reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    /// Stopped containers too.
    all: bool,
    /// The newest this many, stopped ones too (none when not a positive number).
    #[serde(deserialize_with = "or_none")]
    limit: Option<i64>,
    filters: Option<String>,
}

/// GET /containers/json?all=&limit=&filters=
pub async fn list(
    State(st): State<AppState>,
    DockerQuery(q): DockerQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let all = q.all;
    let filters = Filters::parse(q.filters.as_deref(), &LIST_FILTERS, &LIST_FILTERS_NOT_YET)?;
    let keep = list_filter(&st, &filters)?;
    let limit: Option<usize> = q.limit.filter(|l| *l > 0).map(|l| l as usize);
    let now = Utc::now();
    let mut list: Vec<ContainerRecord> = st
        .containers
        .list()
        .into_iter()
        .filter(|c| {
            all || limit.is_some()
                || c.state.status == Status::Running
                || !filters.values("status").is_empty()
        })
        .filter(|c| keep(c))
        .collect();
    list.reverse(); // newest first, as Docker lists
    if let Some(n) = limit {
        list.truncate(n);
    }
    Ok(Json(Value::Array(
        list.iter()
            .map(|c| {
                let mut v = container_summary(c, now);
                v["Mounts"] = crate::volumes::mounts_json(&st.containers, c);
                v
            })
            .collect(),
    )))
}

/// GET /containers/{id}/json
pub async fn inspect(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let c = st.containers.get(&id)?;
    let log = st.containers.log_path(&c.id);
    let host_config = host_config_of(&c.spec);
    let mut v = container_json(&c, host_config, &log.display().to_string());
    v["Mounts"] = crate::volumes::mounts_json(&st.containers, &c);
    let links = st.containers.links_shown(&c);
    if !links.is_empty() {
        v["HostConfig"]["Links"] = serde_json::json!(links);
    }
    let execs = st.containers.exec_ids(&c.id);
    if !execs.is_empty() {
        v["ExecIDs"] = serde_json::json!(execs);
    }
    Ok(Json(v))
}

/// POST /containers/{id}/start
pub async fn start(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    match st.containers.start(&id).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(portlayer::Error::AlreadyRunning(_)) => Ok(StatusCode::NOT_MODIFIED.into_response()),
        Err(e) => {
            if let Ok(c) = st.containers.get(&id) {
                if c.spec.auto_remove {
                    let _ = st.containers.remove(&c.id, true, true).await;
                }
            }
            Err(e.into())
        }
    }
}

/// What `POST /containers/{id}/stop` and `…/restart` read.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StopQuery {
    /// Seconds to wait before the kill (`timeout` is read when `t` is not given).
    t: Option<String>,
    timeout: Option<String>,
    /// The signal to stop with, instead of the container's own.
    signal: Option<String>,
}

impl StopQuery {
    /// The wait, when the one given is a number.
    fn seconds(&self) -> Option<i64> {
        self.t
            .as_ref()
            .or(self.timeout.as_ref())
            .and_then(|t| t.parse().ok())
    }

    fn signal(&self) -> Option<&str> {
        self.signal.as_deref().filter(|s| !s.is_empty())
    }
}

/// POST /containers/{id}/stop?t=&signal=
pub async fn stop(
    State(st): State<AppState>,
    Path(id): Path<String>,
    DockerQuery(q): DockerQuery<StopQuery>,
) -> ApiResult<Response> {
    match st.containers.stop(&id, q.seconds(), q.signal()).await? {
        true => Ok(StatusCode::NO_CONTENT.into_response()),
        false => Ok(StatusCode::NOT_MODIFIED.into_response()),
    }
}

/// POST /containers/{id}/restart?t=&signal=
pub async fn restart(
    State(st): State<AppState>,
    Path(id): Path<String>,
    DockerQuery(q): DockerQuery<StopQuery>,
) -> ApiResult<StatusCode> {
    st.containers.stop(&id, q.seconds(), q.signal()).await?;
    st.containers.start(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What `POST /containers/{id}/kill` reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct KillQuery {
    /// A name (`TERM`, `SIGTERM`) or a number; empty is `KILL`.
    signal: String,
}

/// POST /containers/{id}/kill?signal=
pub async fn kill(
    State(st): State<AppState>,
    Path(id): Path<String>,
    DockerQuery(q): DockerQuery<KillQuery>,
) -> ApiResult<StatusCode> {
    match st.containers.kill(&id, &q.signal).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(e @ portlayer::Error::NotRunning(_)) => Err(ApiError::conflict(format!(
            "Cannot kill container: {id}: {e}"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// What `POST /containers/{id}/resize` reads: both are needed.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResizeQuery {
    #[serde(deserialize_with = "or_none")]
    h: Option<u16>,
    #[serde(deserialize_with = "or_none")]
    w: Option<u16>,
}

/// POST /containers/{id}/pause
pub async fn pause(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    st.containers.pause(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /containers/{id}/unpause
pub async fn unpause(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    st.containers.unpause(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What `POST /containers/{id}/rename` reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RenameQuery {
    name: Option<String>,
}

/// POST /containers/{id}/rename?name=
pub async fn rename(
    State(st): State<AppState>,
    Path(id): Path<String>,
    DockerQuery(q): DockerQuery<RenameQuery>,
) -> ApiResult<StatusCode> {
    let name = q.name.filter(|n| !n.is_empty());
    let name =
        name.ok_or_else(|| ApiError::bad_request("Neither old nor new names may be empty"))?;
    st.containers.rename(&id, &name)?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /containers/{id}/resize?h=&w=
pub async fn resize(
    State(st): State<AppState>,
    Path(id): Path<String>,
    DockerQuery(q): DockerQuery<ResizeQuery>,
) -> ApiResult<StatusCode> {
    let h = q.h.ok_or_else(|| ApiError::bad_request("invalid height"))?;
    let w = q.w.ok_or_else(|| ApiError::bad_request("invalid width"))?;
    if let Err(e) = st.containers.resize(&id, h, w) {
        tracing::warn!(%id, "resize to {h}x{w} refused: {e}");
        return Err(e.into());
    }
    Ok(StatusCode::OK)
}

/// What `DELETE /containers/{id}` reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RemoveQuery {
    /// A running container too.
    force: bool,
    /// Its anonymous volumes too (`docker rm -v`).
    v: bool,
    /// Not a container but a link of one (`docker rm --link PARENT/ALIAS`).
    link: bool,
}

/// DELETE /containers/{id}?force=&v=&link=
pub async fn remove(
    State(st): State<AppState>,
    Path(id): Path<String>,
    DockerQuery(q): DockerQuery<RemoveQuery>,
) -> ApiResult<StatusCode> {
    if q.link {
        // A name without its parent: moby's conflict, never the container removed.
        st.containers.remove_link(&id)?;
    } else {
        st.containers.remove(&id, q.force, q.v).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// DELETE /containers/{parent}/{alias}?link=1: a link's name holds a slash. Without `link`
/// it names no container.
pub async fn remove_link(
    State(st): State<AppState>,
    Path((parent, alias)): Path<(String, String)>,
    DockerQuery(q): DockerQuery<RemoveQuery>,
) -> ApiResult<StatusCode> {
    let name = format!("{parent}/{alias}");
    if !q.link {
        return Err(portlayer::Error::NoSuchContainer(name).into());
    }
    st.containers.remove_link(&name)?;
    Ok(StatusCode::NO_CONTENT)
}
