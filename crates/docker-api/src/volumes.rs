//! `/volumes`: the VCH's volumes as Docker shows and changes them. Each is a disk on one of
//! the VCH's volume stores (the port layer's `volumes/`), so inspect's `Mountpoint` is that
//! disk, and `Status` names its store and capacity as VIC did.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use portlayer::volumes::{Volume, VolumeSpec};
use portlayer::{ContainerRecord, Containers};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::filters::{Filters, FiltersQuery};
use crate::prune::label_matches;
use crate::query::DockerQuery;
use crate::{ApiError, ApiResult, AppState};

const FILTERS: [&str; 4] = ["name", "driver", "label", "dangling"];

/// A volume as `docker volume inspect` shows it.
pub fn volume_json(v: &Volume) -> Value {
    json!({
        "Name": v.name,
        "Driver": v.driver,
        "Mountpoint": v.disk.display().to_string(),
        "CreatedAt": v.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "Labels": v.labels,
        "Scope": "local",
        "Options": v.options,
        "Status": {
            "VolumeStore": v.store,
            "Capacity": format!("{} MiB", v.capacity_mib),
        },
    })
}

/// A container's `Mounts`, as inspect and `docker ps` show them.
pub fn mounts_json(containers: &Containers, c: &ContainerRecord) -> Value {
    let binds = c.spec.binds.iter().map(|b| {
        json!({
            "Type": "bind",
            "Source": b.source,
            "Destination": b.target,
            "Mode": if b.readonly { "ro" } else { "" },
            "RW": !b.readonly,
            "Propagation": "rprivate",
        })
    });
    let mounts: Vec<Value> = (c.spec.mounts.iter())
        .map(|m| {
            let (source, driver) = match containers.volume(&m.name) {
                Ok((v, _)) => (v.disk.display().to_string(), v.driver),
                Err(_) => (String::new(), String::new()),
            };
            json!({
                "Type": "volume",
                "Name": m.name,
                "Source": source,
                "Destination": m.target,
                "Driver": driver,
                "Mode": if m.readonly { "ro" } else { "" },
                "RW": !m.readonly,
                "Propagation": "",
            })
        })
        .chain(binds)
        .collect();
    json!(mounts)
}

fn truthy(v: &str) -> ApiResult<bool> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "invalid filter 'dangling={v}'"
        ))),
    }
}

/// GET /volumes?filters=
pub async fn list(
    State(st): State<AppState>,
    DockerQuery(q): DockerQuery<FiltersQuery>,
) -> ApiResult<Json<Value>> {
    let f = Filters::parse(q.filters.as_deref(), &FILTERS, &[])?;
    let dangling = f
        .values("dangling")
        .iter()
        .map(|v| truthy(v))
        .collect::<ApiResult<Vec<_>>>()?;
    let vols: Vec<Value> = (st.containers.volumes().into_iter())
        .filter(|(v, users)| {
            f.any("name", |n| v.name.contains(n))
                && f.any("driver", |d| d == v.driver)
                && f.values("label")
                    .iter()
                    .all(|l| label_matches(&v.labels, l))
                && dangling.iter().all(|d| *d == users.is_empty())
        })
        .map(|(v, _)| volume_json(&v))
        .collect();
    Ok(Json(json!({ "Volumes": vols, "Warnings": null })))
}

/// GET /volumes/{name}
pub async fn inspect(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let (v, _) = st.containers.volume(&name)?;
    Ok(Json(volume_json(&v)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct CreateBody {
    name: String,
    /// `null` (docker-py, Compose) is the default driver, as when left out.
    driver: Option<String>,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
    cluster_volume_spec: Option<Value>,
}

/// POST /volumes/create: a volume on the store `VolumeStore` names (`default` when none);
/// an existing one of that name is the answer, as in Docker.
pub async fn create(State(st): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let b: CreateBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid volume create body: {e}")))?;
    if b.cluster_volume_spec.is_some_and(|v| !v.is_null()) {
        return Err(ApiError::bad_request(
            "cluster volumes are not supported by vic: a VCH is not a swarm",
        ));
    }
    let spec = VolumeSpec::parse(
        &b.name,
        b.driver.as_deref().unwrap_or_default(),
        &b.driver_opts.unwrap_or_default(),
        &b.labels.unwrap_or_default(),
    )
    .map_err(portlayer::Error::from)?;
    // VIC refuses new storage while the VCH's storage is over its quota.
    st.images.admit_container()?;
    let v = st.containers.create_volume(&spec).await?;
    Ok((StatusCode::CREATED, Json(volume_json(&v))).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RemoveQuery {
    force: bool,
}

/// DELETE /volumes/{name}?force=
pub async fn remove(
    State(st): State<AppState>,
    Path(name): Path<String>,
    DockerQuery(q): DockerQuery<RemoveQuery>,
) -> ApiResult<StatusCode> {
    st.containers.remove_volume(&name, q.force).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /volumes/prune: volumes no container mounts, anonymous ones only unless
/// `all=true`, narrowed by `label`.
pub async fn prune(
    State(st): State<AppState>,
    DockerQuery(q): DockerQuery<FiltersQuery>,
) -> ApiResult<Json<Value>> {
    let mut f = Filters::parse(q.filters.as_deref(), &["all", "label", "label!"], &[])?;
    let all = match f.take("all").as_slice() {
        [] => false,
        [one] => {
            truthy(one).map_err(|_| ApiError::bad_request(format!("invalid filter 'all={one}'")))?
        }
        _ => return Err(ApiError::bad_request("more than one all filter specified")),
    };
    let (labels, not_labels) = (f.take("label"), f.take("label!"));
    let gone = st
        .containers
        .prune_volumes(|v| {
            let has = |l: &String| label_matches(&v.labels, l);
            let chosen = (all || v.anonymous)
                && labels.iter().all(has)
                && (not_labels.is_empty() || !not_labels.iter().all(has));
            !chosen
        })
        .await;
    let space: u64 = gone.iter().map(|(_, b)| b).sum();
    let names: Vec<String> = gone.into_iter().map(|(n, _)| n).collect();
    Ok(Json(
        json!({ "VolumesDeleted": names, "SpaceReclaimed": space }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_body_with_nulls_is_the_default_driver() {
        let b: CreateBody = serde_json::from_str(
            r#"{"Name":"site","Driver":null,"DriverOpts":null,"Labels":{"com.docker.compose.project":"p"}}"#,
        )
        .unwrap();
        assert_eq!((b.name.as_str(), b.driver), ("site", None));
        assert!(serde_json::from_str::<CreateBody>(r#"{"Name":"x","Drive":"local"}"#).is_err());
    }
}
