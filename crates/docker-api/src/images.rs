//! `/images/…`: pull (create), list, inspect, delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use imagec::reference::Reference;
use imagec::store::ImageRecord;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::filters::{Filters, FiltersQuery};
use crate::glob::path_match;
use crate::inspect::{image_json, image_summary};
use crate::query::DockerQuery;
use crate::{ApiError, ApiResult, AppState};

/// Docker's `reference` filter (its `FamiliarMatch`): the pattern matches the name with its
/// tag, or else the name alone. A bad pattern matches nothing ([`check_pattern`] refuses it
/// first).
fn reference_matches(pattern: &str, repo_tag: &str) -> bool {
    let name = repo_tag
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map(|(n, _)| n)
        .unwrap_or(repo_tag);
    path_match(pattern, repo_tag).unwrap_or(false) || path_match(pattern, name).unwrap_or(false)
}

/// Refuses a `reference` pattern that is malformed or too long, before any image is matched.
fn check_pattern(pattern: &str) -> ApiResult<()> {
    path_match(pattern, "")
        .map(|_| ())
        .map_err(|e| ApiError::bad_request(format!("invalid reference filter: {e}")))
}

/// The keys `GET /images/json` and `POST /images/prune` apply.
const IMAGE_FILTERS: [&str; 6] = [
    "reference",
    "dangling",
    "label",
    "label!",
    "before",
    "since",
];
/// Keys Docker knows that vic does not apply yet.
const IMAGE_FILTERS_NOT_YET: [(&str, &str); 1] =
    [("until", "image filters by time are not applied yet")];

/// Parses `filters` for an image endpoint.
pub(crate) fn image_filters(q: &FiltersQuery) -> ApiResult<Filters> {
    Filters::parse(q.filters.as_deref(), &IMAGE_FILTERS, &IMAGE_FILTERS_NOT_YET)
}

fn labels_match(img: &ImageRecord, want: &str) -> bool {
    let labels = img.config.pointer("/config/Labels");
    match want.split_once('=') {
        Some((k, v)) => labels.and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v),
        None => labels.and_then(|l| l.get(want)).is_some(),
    }
}

/// Docker's image filters: reference, dangling, label, before, since.
fn image_filter(st: &AppState, filters: &Filters) -> ApiResult<impl Fn(&ImageRecord) -> bool> {
    let created_of = |name: &str| -> ApiResult<String> {
        st.images
            .store()
            .resolve(name)
            .map(|i| i.created)
            .ok_or_else(|| ApiError::not_found(format!("No such image: {name}")))
    };
    let get = |k: &str| filters.values(k).to_vec();
    let references = get("reference");
    for p in &references {
        check_pattern(p)?;
    }
    let labels = get("label");
    let not_labels = get("label!");
    let dangling = match get("dangling").first().map(String::as_str) {
        None => None,
        Some("true") | Some("1") => Some(true),
        Some("false") | Some("0") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid filter 'dangling={other}'"
            )))
        }
    };
    let before = get("before").first().map(|n| created_of(n)).transpose()?;
    let since = get("since").first().map(|n| created_of(n)).transpose()?;
    Ok(move |img: &ImageRecord| {
        (references.is_empty()
            || references
                .iter()
                .any(|p| img.repo_tags.iter().any(|t| reference_matches(p, t))))
            && labels.iter().all(|l| labels_match(img, l))
            // As moby's MatchKVList: excluded when it matches every `label!` given.
            && (not_labels.is_empty() || !not_labels.iter().all(|l| labels_match(img, l)))
            && dangling.is_none_or(|d| d == img.repo_tags.is_empty())
            && before.as_ref().is_none_or(|b| img.created < *b)
            && since.as_ref().is_none_or(|s| img.created > *s)
    })
}

/// `GET /images/json` rows, each with the number of containers using the image.
fn summaries(images: &[ImageRecord], containers: &[portlayer::ContainerRecord]) -> Vec<Value> {
    images
        .iter()
        .map(|img| {
            image_summary(
                img,
                containers
                    .iter()
                    .filter(|c| c.spec.image_id == img.id)
                    .count(),
            )
        })
        .collect()
}

/// GET /images/json?filters=
pub async fn list(
    State(st): State<AppState>,
    DockerQuery(q): DockerQuery<FiltersQuery>,
) -> ApiResult<Json<Value>> {
    let filters = image_filters(&q)?;
    let keep = image_filter(&st, &filters)?;
    let patterns = filters.values("reference").to_vec();
    let mut images: Vec<_> = st
        .images
        .store()
        .list()
        .into_iter()
        .filter(|i| keep(i))
        .collect();
    images.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
    if !patterns.is_empty() {
        // As Docker does: a reference filter also narrows the tags and digests shown.
        for img in &mut images {
            img.repo_tags
                .retain(|t| patterns.iter().any(|p| reference_matches(p, t)));
            img.repo_digests.retain(|d| {
                let name = d.split_once('@').map(|(n, _)| n).unwrap_or(d);
                patterns.iter().any(|p| {
                    reference_matches(p, name)
                        || img
                            .repo_tags
                            .iter()
                            .any(|t| t.starts_with(&format!("{name}:")))
                })
            });
        }
    }
    let containers = st.containers.list();
    let out = summaries(&images, &containers);
    Ok(Json(Value::Array(out)))
}

fn unix(created: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(created)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

/// `docker history`: the config's history, newest first, with each layer's size.
fn history(img: &ImageRecord) -> Value {
    let entries = img
        .config
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut layer = 0usize;
    let mut out: Vec<Value> = Vec::new();
    let rows: Vec<(Value, u64)> = if entries.is_empty() {
        img.layers
            .iter()
            .enumerate()
            .map(|(i, _)| (json!({}), img.layer_sizes.get(i).copied().unwrap_or(0)))
            .collect()
    } else {
        entries
            .into_iter()
            .map(|h| {
                let empty = h
                    .get("empty_layer")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let size = if empty {
                    0
                } else {
                    img.layer_sizes.get(layer).copied().unwrap_or(0)
                };
                if !empty {
                    layer += 1;
                }
                (h, size)
            })
            .collect()
    };
    let n = rows.len();
    for (i, (h, size)) in rows.into_iter().enumerate().rev() {
        let top = i + 1 == n;
        out.push(json!({
            "Id": if top { img.id.clone() } else { "<missing>".to_string() },
            "Created": unix(h.get("created").and_then(Value::as_str).unwrap_or(&img.created)),
            "CreatedBy": h.get("created_by").and_then(Value::as_str).unwrap_or(""),
            "Tags": if top { json!(img.repo_tags) } else { Value::Null },
            "Size": size,
            "Comment": h.get("comment").and_then(Value::as_str).unwrap_or(""),
        }));
    }
    Value::Array(out)
}

fn find(st: &AppState, name: &str) -> ApiResult<ImageRecord> {
    st.images
        .store()
        .resolve(name)
        .ok_or_else(|| ApiError::not_found(format!("No such image: {name}")))
}

/// GET /images/{name}/json, /images/{name}/history and /images/{name}/get (the name may
/// contain slashes).
pub async fn get_dispatch(
    State(st): State<AppState>,
    Path(rest): Path<String>,
) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/json") {
        return Ok(Json(image_json(&find(&st, name)?)).into_response());
    }
    if let Some(name) = rest.strip_suffix("/history") {
        return Ok(Json(history(&find(&st, name)?)).into_response());
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return crate::archive::save_one(st, name).await;
    }
    Err(ApiError::not_found(format!(
        "page not found: /images/{rest}"
    )))
}

/// What `POST /images/{name}/tag` and `…/push` read.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TagQuery {
    /// The repository to tag into (tag only).
    repo: Option<String>,
    /// The tag (`latest` when empty); for a push, the one tag pushed (every one when empty).
    tag: Option<String>,
}

/// POST /images/{name}/tag?repo=&tag= and /images/{name}/push?tag=
pub async fn post_dispatch(
    State(st): State<AppState>,
    Path(rest): Path<String>,
    DockerQuery(q): DockerQuery<TagQuery>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/push") {
        return crate::pull::push(st, name, q.tag.as_deref(), &headers).await;
    }
    let Some(name) = rest.strip_suffix("/tag") else {
        return Err(ApiError::not_found(format!(
            "page not found: /images/{rest}"
        )));
    };
    let img = find(&st, name)?;
    let repo = q
        .repo
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::bad_request("repository name must be given"))?;
    let tag = q.tag.filter(|t| !t.is_empty());
    let tag = tag.as_deref().unwrap_or("latest");
    let reference = Reference::parse(&format!("{repo}:{tag}"))?;
    st.images.tag(&img.id, &reference)?;
    Ok(StatusCode::CREATED.into_response())
}

/// POST /images/prune?filters= — dangling images (or, with dangling=false, every image no
/// container uses).
pub async fn prune(
    State(st): State<AppState>,
    DockerQuery(q): DockerQuery<FiltersQuery>,
) -> ApiResult<Json<Value>> {
    let mut filters = image_filters(&q)?;
    let all = filters
        .take("dangling")
        .first()
        .is_some_and(|d| d == "false" || d == "0");
    let keep = image_filter(&st, &filters)?;
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    for img in st.images.store().list() {
        if !keep(&img) || (!all && !img.repo_tags.is_empty()) || st.images.in_use(&img.id).is_some()
        {
            continue;
        }
        for t in &img.repo_tags {
            deleted.push(json!({ "Untagged": t }));
        }
        st.images.remove(&img.id).await?;
        reclaimed += img.size;
        deleted.push(json!({ "Deleted": img.id }));
    }
    Ok(Json(json!({
        "ImagesDeleted": if deleted.is_empty() { Value::Null } else { Value::Array(deleted) },
        "SpaceReclaimed": reclaimed,
    })))
}

/// GET /system/df
pub async fn system_df(State(st): State<AppState>) -> Json<Value> {
    let now = chrono::Utc::now();
    let containers = st.containers.list();
    let images = st.images.store().list();
    let layers_size: u64 = images.iter().map(|i| i.size).sum();
    let image_rows = summaries(&images, &containers);
    let container_rows: Vec<Value> = containers
        .iter()
        .map(|c| {
            let mut v = crate::inspect::container_summary(c, now);
            v["SizeRw"] = json!(0);
            v["SizeRootFs"] = json!(st
                .images
                .store()
                .get(&c.spec.image_id)
                .map(|i| i.size)
                .unwrap_or(0));
            v
        })
        .collect();
    let mut volume_rows = Vec::new();
    for (v, users) in st.containers.volumes() {
        let mut j = crate::volumes::volume_json(&v);
        j["UsageData"] = json!({
            "Size": st.containers.volume_bytes(&v).await,
            "RefCount": users.len(),
        });
        volume_rows.push(j);
    }
    Json(json!({
        "LayersSize": layers_size,
        "Images": image_rows,
        "Containers": container_rows,
        "Volumes": volume_rows,
        "BuildCache": [],
    }))
}

/// What `DELETE /images/{name}` reads (`noprune`: vic keeps no parent images to prune).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DeleteQuery {
    /// Untag every tag, and delete an image a stopped container uses.
    force: bool,
}

/// DELETE /images/{name}?force=
pub async fn delete(
    State(st): State<AppState>,
    Path(name): Path<String>,
    DockerQuery(q): DockerQuery<DeleteQuery>,
) -> ApiResult<Json<Value>> {
    let force = q.force;
    let img = st
        .images
        .store()
        .resolve(&name)
        .ok_or_else(|| ApiError::not_found(format!("No such image: {name}")))?;
    let short = img.id.trim_start_matches("sha256:")[..12].to_string();
    let user = st.images.in_use(&img.id);
    let by_reference = Reference::parse(&name)
        .ok()
        .filter(|r| img.repo_tags.contains(&r.to_string()));
    let mut out = Vec::new();
    let untag_all = |out: &mut Vec<Value>| -> ApiResult<()> {
        for t in &img.repo_tags {
            if let Ok(r) = Reference::parse(t) {
                st.images.untag(&r)?;
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
            st.images.untag(&r)?;
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
        .store()
        .get(&img.id)
        .map(|i| !i.repo_tags.is_empty())
        .unwrap_or(false);
    if !still_tagged && user.is_none() {
        st.images.remove(&img.id).await?;
        out.push(json!({ "Deleted": img.id }));
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

    #[test]
    fn a_pattern_of_a_hundred_thousand_stars_is_refused_with_a_400() {
        let err = check_pattern(&"*".repeat(100_000)).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            err.message,
            "invalid reference filter: pattern is longer than 1024 characters"
        );
        let err = check_pattern("busybox[").unwrap_err();
        assert_eq!(
            err.message,
            "invalid reference filter: syntax error in pattern"
        );
        assert!(check_pattern("*/busy*:1.[0-9]").is_ok());
    }
}
