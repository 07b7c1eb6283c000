//! `/networks`: the VCH's networks as Docker shows and changes them. `bridge` is the
//! predefined network every container is on unless it asks for another or for `none`
//! (Docker's null network: loopback only). User networks are bridge networks of the VCH
//! (`docker network create`), each with its own subnet and DNS server (see the port layer's
//! `networks/`). Containers are connected and disconnected whether they run or not (see the
//! port layer's `manager/live_net.rs`).

mod create;
mod view;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use portlayer::Network;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::containers::create::{connect_request, EndpointSettings};
use crate::filters::{Filters, FiltersQuery};
use crate::prune::{label_matches, until_time};
use crate::query::DockerQuery;
use crate::{ApiError, ApiResult, AppState};

const FILTERS: [&str; 7] = ["name", "id", "driver", "type", "scope", "label", "dangling"];

/// Every network with its JSON, `none` last.
fn all(st: &AppState) -> Vec<(Option<Network>, Value)> {
    let containers = st.containers.list();
    let mut out: Vec<(Option<Network>, Value)> = st
        .containers
        .networks()
        .into_iter()
        .map(|n| {
            let v = view::network_json(&n, &containers);
            (Some(n), v)
        })
        .collect();
    out.push((None, view::none_json()));
    out
}

fn admits(f: &Filters, st: &AppState, net: &Option<Network>, n: &Value) -> bool {
    let s = |k: &str| n[k].as_str().unwrap_or("").to_string();
    let builtin = net.as_ref().is_none_or(|n| n.builtin);
    let labels = net.as_ref().map(|n| n.labels.clone()).unwrap_or_default();
    let used = |name: &str| {
        st.containers
            .list()
            .iter()
            .any(|c| c.spec.endpoints.iter().any(|e| e.network == name))
    };
    f.any("name", |v| s("Name").contains(v))
        && f.any("id", |v| s("Id").starts_with(v))
        && f.any("driver", |v| v == s("Driver"))
        && f.any("type", |v| v == if builtin { "builtin" } else { "custom" })
        && f.any("scope", |v| v == "local")
        && f.values("label").iter().all(|l| label_matches(&labels, l))
        && f.any("dangling", |v| {
            let dangling = !builtin && !used(&s("Name"));
            matches!((v, dangling), ("true" | "1", true) | ("false" | "0", false))
        })
}

/// GET /networks?filters=
pub async fn list(
    State(st): State<AppState>,
    DockerQuery(q): DockerQuery<FiltersQuery>,
) -> ApiResult<Json<Value>> {
    let f = Filters::parse(q.filters.as_deref(), &FILTERS, &[])?;
    let nets: Vec<Value> = all(&st)
        .into_iter()
        .filter(|(net, v)| admits(&f, &st, net, v))
        // `docker network ls` lists no containers.
        .map(|(_, mut v)| {
            v["Containers"] = json!({});
            v
        })
        .collect();
    Ok(Json(Value::Array(nets)))
}

/// The network `key` names: its name, its ID, or a unique prefix of its ID.
fn find(st: &AppState, key: &str) -> ApiResult<Value> {
    if key == view::NONE
        || portlayer::networks::predefined_id(view::NONE).starts_with(key) && key.len() >= 12
    {
        return Ok(view::none_json());
    }
    let net = st.containers.network(key)?;
    Ok(view::network_json(&net, &st.containers.list()))
}

/// GET /networks/{id}
pub async fn inspect(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    find(&st, &id).map(Json)
}

/// POST /networks/create
pub async fn create(State(st): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let req = create::request(&body)?;
    let net = st.containers.create_network(req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "Id": net.id, "Warning": "" })),
    )
        .into_response())
}

/// DELETE /networks/{id}
pub async fn remove(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    if find(&st, &id)?["Name"] == view::NONE {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "none is a pre-defined network and cannot be removed",
        ));
    }
    st.containers.remove_network(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /networks/prune: user networks no container is on, narrowed by `until` and `label`.
pub async fn prune(
    State(st): State<AppState>,
    DockerQuery(q): DockerQuery<FiltersQuery>,
) -> ApiResult<Json<Value>> {
    let mut f = Filters::parse(q.filters.as_deref(), &["until", "label", "label!"], &[])?;
    let until = match f.take("until").as_slice() {
        [] => None,
        [one] => Some(until_time(one, Utc::now())?),
        _ => {
            return Err(ApiError::bad_request(
                "more than one until filter specified",
            ))
        }
    };
    let (labels, not_labels) = (f.take("label"), f.take("label!"));
    let removed = st
        .containers
        .prune_networks(|n| {
            let has = |l: &String| label_matches(&n.labels, l);
            until.is_none_or(|u| n.created.is_none_or(|c| c <= u))
                && labels.iter().all(has)
                && (not_labels.is_empty() || !not_labels.iter().all(has))
        })
        .await;
    Ok(Json(json!({ "NetworksDeleted": removed })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConnectBody {
    container: String,
    #[serde(default)]
    endpoint_config: Option<EndpointSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DisconnectBody {
    container: String,
    #[serde(default)]
    force: bool,
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

/// POST /networks/{id}/connect
pub async fn connect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    let b: ConnectBody = body(&bytes)?;
    let net = st.containers.network(&id)?;
    let req = connect_request(&net.name, b.endpoint_config.as_ref())?;
    st.containers.connect(&net.id, &b.container, req).await?;
    Ok(StatusCode::OK)
}

/// POST /networks/{id}/disconnect (`force`: a running container is taken off the network
/// even when its guest does not answer).
pub async fn disconnect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    let b: DisconnectBody = body(&bytes)?;
    st.containers.disconnect(&id, &b.container, b.force).await?;
    Ok(StatusCode::OK)
}
