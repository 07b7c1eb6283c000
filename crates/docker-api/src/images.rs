//! `/images/…`: pull (create), list, inspect, delete.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use imagec::pull::{Platform, Progress, PullError, PullOutcome};
use imagec::reference::Reference;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::inspect::{image_json, image_summary};
use crate::{truthy, ApiError, ApiResult, AppState};

enum PullMsg {
    Progress(Progress),
    Done(Result<PullOutcome, PullError>),
}

fn line(v: &Value) -> Bytes {
    let mut s = serde_json::to_vec(v).unwrap_or_default();
    s.extend_from_slice(b"\r\n");
    Bytes::from(s)
}

fn progress_json(p: &Progress, tag: &str) -> Value {
    let mut v = json!({ "status": p.status });
    let id = p.id.clone().or_else(|| {
        p.status
            .starts_with("Pulling from")
            .then(|| tag.to_string())
    });
    if let Some(id) = id {
        v["id"] = json!(id);
    }
    if p.current.is_some() || p.total.is_some() {
        let mut detail = json!({});
        if let Some(c) = p.current {
            detail["current"] = json!(c);
        }
        if let Some(t) = p.total {
            detail["total"] = json!(t);
        }
        v["progressDetail"] = detail;
    } else if p.id.is_some() {
        v["progressDetail"] = json!({});
    }
    v
}

fn pull_error_status(e: &PullError) -> StatusCode {
    let msg = e.to_string();
    if msg.contains("not found")
        || msg.contains("does not exist")
        || msg.contains("no matching manifest")
    {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

fn error_line(message: &str) -> Bytes {
    line(&json!({ "errorDetail": { "message": message }, "error": message }))
}

/// POST /images/create?fromImage=&tag=&platform=
pub async fn create(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    if q.contains_key("fromSrc") {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "image import is not supported yet",
        ));
    }
    let from = q
        .get("fromImage")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("fromImage must be set"))?;
    let full = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.clone(),
    };
    let reference = Reference::parse(&full).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let platform = match q.get("platform").filter(|p| !p.is_empty()) {
        Some(p) => Platform::parse(p).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => Platform::default(),
    };
    let tag = reference
        .tag
        .clone()
        .or_else(|| reference.digest.clone())
        .unwrap_or_else(|| "latest".into());
    let (tx, mut rx) = mpsc::unbounded_channel::<PullMsg>();
    {
        let st = st.clone();
        let reference = reference.clone();
        tokio::spawn(async move {
            let ptx = tx.clone();
            let progress = move |p: Progress| {
                let _ = ptx.send(PullMsg::Progress(p));
            };
            let res = st
                .puller
                .pull(&st.images, &reference, &platform, &progress)
                .await;
            if res.is_ok() {
                st.containers.events().publish(
                    "image",
                    "pull",
                    &reference.to_string(),
                    Default::default(),
                );
            }
            let _ = tx.send(PullMsg::Done(res));
        });
    }
    // Errors before any progress (unknown repository, unreachable registry) are HTTP errors,
    // as Docker returns them; after that they are messages in the stream.
    let first = rx.recv().await;
    if let Some(PullMsg::Done(Err(e))) = &first {
        return Err(ApiError::new(pull_error_status(e), e.to_string()));
    }
    let shown = reference.to_string();
    let stream = async_stream(first, rx, tag, shown);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

fn async_stream(
    first: Option<PullMsg>,
    rx: mpsc::UnboundedReceiver<PullMsg>,
    tag: String,
    shown: String,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let head = futures_util::stream::iter(first);
    let rest = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
    futures_util::StreamExt::map(futures_util::StreamExt::chain(head, rest), move |msg| {
        Ok(match msg {
            PullMsg::Progress(p) => line(&progress_json(&p, &tag)),
            PullMsg::Done(Ok(outcome)) => {
                let mut out =
                    line(&json!({ "status": format!("Digest: {}", outcome.manifest_digest) }))
                        .to_vec();
                let status = if outcome.up_to_date {
                    format!("Status: Image is up to date for {shown}")
                } else {
                    format!("Status: Downloaded newer image for {shown}")
                };
                out.extend_from_slice(&line(&json!({ "status": status })));
                Bytes::from(out)
            }
            PullMsg::Done(Err(e)) => error_line(&e.to_string()),
        })
    })
}

/// `*` and `?` glob match, as Go's path.Match does for image reference filters.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    fn rec(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => rec(&p[1..], t) || (!t.is_empty() && t[0] != '/' && rec(p, &t[1..])),
            (Some('?'), Some(c)) if *c != '/' => rec(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => rec(&p[1..], &t[1..]),
            _ => false,
        }
    }
    rec(&p, &t)
}

/// Docker's `reference` filter: the pattern matches a tag, or the name when it has no tag.
fn reference_matches(pattern: &str, repo_tag: &str) -> bool {
    let name = repo_tag
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map(|(n, _)| n)
        .unwrap_or(repo_tag);
    glob(pattern, repo_tag) || glob(pattern, name)
}

/// GET /images/json?filters=
pub async fn list(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let filters: Value = match q.get("filters").filter(|f| !f.is_empty()) {
        Some(f) => serde_json::from_str(f)
            .map_err(|e| ApiError::bad_request(format!("invalid filters: {e}")))?,
        None => json!({}),
    };
    let patterns: Vec<String> = match filters.get("reference") {
        Some(Value::Object(m)) => m.keys().cloned().collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let mut images: Vec<_> = st
        .images
        .list()
        .into_iter()
        .filter(|img| {
            patterns.is_empty()
                || patterns
                    .iter()
                    .any(|p| img.repo_tags.iter().any(|t| reference_matches(p, t)))
        })
        .collect();
    images.sort_by(|a, b| b.created.cmp(&a.created));
    let out: Vec<Value> = images
        .iter()
        .map(|img| {
            let containers = st
                .containers
                .list()
                .iter()
                .filter(|c| c.spec.image_id == img.id)
                .count();
            image_summary(img, containers)
        })
        .collect();
    Ok(Json(Value::Array(out)))
}

/// GET /images/{name}/json (the name may contain slashes).
pub async fn get_dispatch(
    State(st): State<AppState>,
    Path(rest): Path<String>,
) -> ApiResult<Json<Value>> {
    let Some(name) = rest.strip_suffix("/json") else {
        return Err(ApiError::not_found(format!(
            "page not found: /images/{rest}"
        )));
    };
    let img = st
        .images
        .resolve(name)
        .ok_or_else(|| ApiError::not_found(format!("No such image: {name}")))?;
    Ok(Json(image_json(&img)))
}

/// DELETE /images/{name}?force=
pub async fn delete(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let force = truthy(q.get("force"));
    let img = st
        .images
        .resolve(&name)
        .ok_or_else(|| ApiError::not_found(format!("No such image: {name}")))?;
    let short = img.id.trim_start_matches("sha256:")[..12].to_string();
    let user = st.containers.image_in_use(&img.id);
    let by_reference = Reference::parse(&name)
        .ok()
        .filter(|r| img.repo_tags.contains(&r.to_string()));
    let mut out = Vec::new();
    let untag_all = |out: &mut Vec<Value>| -> ApiResult<()> {
        for t in &img.repo_tags {
            if let Ok(r) = Reference::parse(t) {
                st.images
                    .untag(&r)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                out.push(json!({ "Untagged": t }));
            }
        }
        Ok(())
    };
    match by_reference {
        Some(r) => {
            if let (Some(c), false) = (&user, force) {
                if img.repo_tags.len() == 1 {
                    return Err(ApiError::conflict(format!(
                        "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {short}",
                        &c.id[..12]
                    )));
                }
            }
            st.images
                .untag(&r)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            out.push(json!({ "Untagged": r.to_string() }));
        }
        None => {
            if let Some(c) = &user {
                let how = if c.state.status == portlayer::Status::Running {
                    "cannot be forced"
                } else {
                    "must be forced"
                };
                if !force || how == "cannot be forced" {
                    return Err(ApiError::conflict(format!(
                        "conflict: unable to delete {short} ({how}) - image is being used by {} container {}",
                        c.state.status.as_str().replace("exited", "stopped").replace("created", "stopped"),
                        &c.id[..12]
                    )));
                }
            }
            if img.repo_tags.len() > 1 && !force {
                return Err(ApiError::conflict(format!(
                    "conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories"
                )));
            }
            untag_all(&mut out)?;
        }
    }
    let still_tagged = st
        .images
        .get(&img.id)
        .map(|i| !i.repo_tags.is_empty())
        .unwrap_or(false);
    if !still_tagged && user.is_none() {
        if let Err(e) = st.containers.backend().remove_image(&img.id).await {
            tracing::warn!("removing the base disk of {}: {e}", img.id);
        }
        st.images
            .remove(&img.id)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        out.push(json!({ "Deleted": img.id }));
        st.containers
            .events()
            .publish("image", "delete", &img.id, Default::default());
    }
    Ok(Json(Value::Array(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_filter_matches_like_docker() {
        assert!(reference_matches(
            "127.0.0.1:5000/busybox",
            "127.0.0.1:5000/busybox:latest"
        ));
        assert!(reference_matches(
            "127.0.0.1:5000/busybox:latest",
            "127.0.0.1:5000/busybox:latest"
        ));
        assert!(!reference_matches(
            "127.0.0.1:5000/nosuch",
            "127.0.0.1:5000/busybox:latest"
        ));
        assert!(reference_matches("*/busy*", "127.0.0.1:5000/busybox:1.0"));
        assert!(!reference_matches("busy*", "127.0.0.1:5000/busybox:1.0"));
    }
}
