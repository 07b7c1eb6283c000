//! `/networks`: the VCH's networks as Docker shows them. `bridge` is the default network
//! every container is on unless it asks for `none`; `none` is Docker's own null network.
//! User networks (`network create`, `connect`, `disconnect`) are refused until they exist,
//! never accepted and dropped; the predefined networks cannot be removed, as in dockerd.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use portlayer::{ContainerRecord, Network, Status};
use serde_json::{json, Value};

use crate::filters::{Filters, FiltersQuery};
use crate::query::DockerQuery;
use crate::{ApiError, ApiResult, AppState};

const FILTERS: [&str; 5] = ["name", "id", "driver", "type", "scope"];
const NOT_YET: &str = "user networks are not implemented yet";

/// Docker's `none` network: no interface but loopback.
const NONE: &str = "none";

fn none_id() -> String {
    Network {
        name: NONE.into(),
        subnet: std::net::Ipv4Addr::UNSPECIFIED,
        prefix_len: 0,
        gateway: std::net::Ipv4Addr::UNSPECIFIED,
    }
    .id()
}

/// One network as `GET /networks/{id}` shows it; `containers` are those attached to it.
fn network_json(n: &Network, containers: &[ContainerRecord]) -> Value {
    let mut attached = serde_json::Map::new();
    for c in containers
        .iter()
        .filter(|c| c.state.status == Status::Running)
    {
        for e in c.spec.endpoints.iter().filter(|e| e.network == n.name) {
            attached.insert(
                c.id.clone(),
                json!({
                    "Name": c.spec.name,
                    "EndpointID": c.id,
                    "MacAddress": e.mac,
                    "IPv4Address": format!("{}/{}", e.ip, e.prefix_len),
                    "IPv6Address": "",
                }),
            );
        }
    }
    json!({
        "Name": n.name,
        "Id": n.id(),
        "Created": "0001-01-01T00:00:00Z",
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": null,
            "Config": [{
                "Subnet": format!("{}/{}", n.subnet, n.prefix_len),
                "Gateway": n.gateway.to_string(),
            }],
        },
        "Internal": false,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": attached,
        "Options": {},
        "Labels": {},
    })
}

fn none_json() -> Value {
    json!({
        "Name": NONE,
        "Id": none_id(),
        "Created": "0001-01-01T00:00:00Z",
        "Scope": "local",
        "Driver": "null",
        "EnableIPv6": false,
        "IPAM": { "Driver": "default", "Options": null, "Config": [] },
        "Internal": false,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": {},
        "Options": {},
        "Labels": {},
    })
}

/// Every network, as JSON.
fn all(st: &AppState) -> Vec<Value> {
    let containers = st.containers.list();
    let mut out: Vec<Value> = st
        .containers
        .networks()
        .iter()
        .map(|n| network_json(n, &containers))
        .collect();
    out.push(none_json());
    out
}

fn admits(f: &Filters, n: &Value) -> bool {
    let s = |k: &str| n[k].as_str().unwrap_or("").to_string();
    f.any("name", |v| s("Name").contains(v))
        && f.any("id", |v| s("Id").starts_with(v))
        && f.any("driver", |v| v == s("Driver"))
        && f.any("type", |v| v == "builtin")
        && f.any("scope", |v| v == "local")
}

/// GET /networks?filters=
pub async fn list(
    State(st): State<AppState>,
    DockerQuery(q): DockerQuery<FiltersQuery>,
) -> ApiResult<Json<Value>> {
    let f = Filters::parse(
        q.filters.as_deref(),
        &FILTERS,
        &[("label", NOT_YET), ("dangling", NOT_YET)],
    )?;
    let mut nets = all(&st);
    nets.retain(|n| admits(&f, n));
    // `docker network ls` lists no containers.
    for n in &mut nets {
        n["Containers"] = json!({});
    }
    Ok(Json(Value::Array(nets)))
}

/// The network `key` names: its name, its ID, or a unique prefix of its ID.
fn find(st: &AppState, key: &str) -> ApiResult<Value> {
    let nets = all(st);
    if let Some(n) = nets.iter().find(|n| n["Name"] == key || n["Id"] == key) {
        return Ok(n.clone());
    }
    let by_prefix: Vec<&Value> = nets
        .iter()
        .filter(|n| !key.is_empty() && n["Id"].as_str().is_some_and(|id| id.starts_with(key)))
        .collect();
    match by_prefix.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(ApiError::not_found(format!("network {key} not found"))),
        _ => Err(ApiError::bad_request(format!(
            "network {key} is ambiguous ({} matches found based on ID prefix)",
            by_prefix.len()
        ))),
    }
}

/// GET /networks/{id}
pub async fn inspect(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    find(&st, &id).map(Json)
}

/// DELETE /networks/{id}: the predefined networks cannot be removed.
pub async fn remove(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let n = find(&st, &id)?;
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "{} is a pre-defined network and cannot be removed",
            n["Name"].as_str().unwrap_or_default()
        ),
    ))
}

/// POST /networks/create, /networks/{id}/connect, /networks/{id}/disconnect: not yet.
pub async fn not_yet() -> ApiResult<StatusCode> {
    Err(ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "docker network create, connect and disconnect are not supported by vic: {NOT_YET}"
        ),
    ))
}

/// POST /networks/prune: nothing to prune, the predefined networks stay.
pub async fn prune(DockerQuery(q): DockerQuery<FiltersQuery>) -> ApiResult<Json<Value>> {
    Filters::parse(q.filters.as_deref(), &["until", "label"], &[])?;
    Ok(Json(json!({ "NetworksDeleted": null })))
}
