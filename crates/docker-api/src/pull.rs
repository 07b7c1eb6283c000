//! `POST /images/create?fromImage=`: pulling, streamed to the client as Docker's JSON
//! progress messages. Without a tag the client asks for every tag (`docker pull -a`).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use imagec::auth::Credentials;
use imagec::pull::{Platform, Progress, PullError, PullOutcome};
use imagec::reference::Reference;
use portlayer::ImageEvent;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::query::DockerQuery;
use crate::{ApiError, ApiResult, AppState};

enum PullMsg {
    /// Progress of the pull of one tag.
    Progress(Progress, String),
    /// One reference pulled.
    Pulled(Box<PullOutcome>, String),
    Failed(PullError),
    /// All tags pulled (`-a`): Docker's closing status names the repository.
    AllDone(String, bool),
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

/// The `X-Registry-Auth` credentials of a request, if any.
pub(crate) fn registry_auth(headers: &HeaderMap) -> Option<Credentials> {
    headers
        .get("x-registry-auth")
        .and_then(|v| v.to_str().ok())
        .and_then(Credentials::from_header)
}

fn error_line(message: &str) -> Bytes {
    line(&json!({ "errorDetail": { "message": message }, "error": message }))
}

fn render(msg: PullMsg) -> Bytes {
    match msg {
        PullMsg::Progress(p, tag) => line(&progress_json(&p, &tag)),
        PullMsg::Pulled(outcome, shown) => {
            let mut out =
                line(&json!({ "status": format!("Digest: {}", outcome.manifest_digest) })).to_vec();
            let status = if outcome.up_to_date {
                format!("Status: Image is up to date for {shown}")
            } else {
                format!("Status: Downloaded newer image for {shown}")
            };
            out.extend_from_slice(&line(&json!({ "status": status })));
            Bytes::from(out)
        }
        PullMsg::AllDone(name, newer) => {
            let status = if newer {
                format!("Status: Downloaded newer image for {name}")
            } else {
                format!("Status: Image is up to date for {name}")
            };
            line(&json!({ "status": status }))
        }
        PullMsg::Failed(e) => error_line(&e.to_string()),
    }
}

/// The references a pull request names: one, or every tag of the repository.
async fn targets(
    st: &AppState,
    reference: &Reference,
    all_tags: bool,
    creds: Option<&Credentials>,
) -> Result<Vec<Reference>, PullError> {
    if !all_tags {
        return Ok(vec![reference.clone()]);
    }
    let tags = st.puller.tags(reference, creds).await?;
    Ok(tags
        .into_iter()
        .map(|t| Reference {
            tag: Some(t),
            digest: None,
            ..reference.clone()
        })
        .collect())
}

/// What a pull (`POST /images/create` without `fromSrc`) reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PullQuery {
    /// The image (`name`, `name:tag`, `name@digest`).
    from_image: Option<String>,
    /// A tag or digest; without one (and none in `fromImage`), every tag is pulled.
    tag: Option<String>,
    /// `os/arch[/variant]` (linux/amd64 when not given).
    platform: Option<String>,
}

/// POST /images/create?fromImage=&tag=&platform=
pub async fn create(
    State(st): State<AppState>,
    DockerQuery(q): DockerQuery<PullQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let from = q
        .from_image
        .as_ref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("fromImage must be set"))?;
    let tag_param = q.tag.as_ref().filter(|t| !t.is_empty());
    let full = match tag_param {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.clone(),
    };
    let reference = Reference::parse(&full)?;
    let explicit = tag_param.is_some()
        || from.contains('@')
        || from
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'));
    let all_tags = !explicit;
    let platform = match q.platform.as_ref().filter(|p| !p.is_empty()) {
        Some(p) => Platform::parse(p).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => Platform::default(),
    };
    // The client's credentials for this pull only: never stored, never logged.
    let creds = registry_auth(&headers);
    let (tx, mut rx) = mpsc::unbounded_channel::<PullMsg>();
    {
        let st = st.clone();
        let reference = reference.clone();
        tokio::spawn(async move {
            let creds = creds.as_ref();
            let refs = match targets(&st, &reference, all_tags, creds).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(PullMsg::Failed(e));
                    return;
                }
            };
            let mut newer = false;
            for r in refs {
                let ptx = tx.clone();
                let tag = r
                    .tag
                    .clone()
                    .or_else(|| r.digest.clone())
                    .unwrap_or_else(|| "latest".into());
                let progress: Box<dyn Fn(Progress) + Send + Sync> = Box::new(move |p: Progress| {
                    let _ = ptx.send(PullMsg::Progress(p, tag.clone()));
                });
                match st
                    .puller
                    .pull(st.images.store(), &r, &platform, creds, &*progress)
                    .await
                {
                    Ok(outcome) => {
                        st.images.record(ImageEvent::Pull(&r));
                        newer |= !outcome.up_to_date;
                        if !all_tags {
                            let _ = tx.send(PullMsg::Pulled(Box::new(outcome), r.to_string()));
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(PullMsg::Failed(e));
                        return;
                    }
                }
            }
            if all_tags {
                let _ = tx.send(PullMsg::AllDone(reference.name(), newer));
            }
        });
    }
    // Errors before any progress (unknown repository, unreachable registry) are HTTP errors,
    // as Docker returns them; after that they are messages in the stream.
    let first = match rx.recv().await {
        Some(PullMsg::Failed(e)) => return Err(e.into()),
        first => first,
    };
    let head = futures_util::stream::iter(first);
    let rest = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
    let stream = futures_util::StreamExt::map(futures_util::StreamExt::chain(head, rest), |m| {
        Ok::<_, std::io::Error>(render(m))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `POST /images/{name}/push?tag=`: pushes `name:tag` (every local tag of `name` when `tag`
/// is empty), streaming Docker's progress messages.
pub async fn push(
    st: AppState,
    name: &str,
    tag: Option<&str>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let repo = Reference::parse(name)?;
    let tag = tag.filter(|t| !t.is_empty()).map(str::to_string);
    let tags: Vec<String> = match &tag {
        Some(t) => vec![t.clone()],
        None => {
            let prefix = format!("{}:", repo.name());
            let mut all: Vec<String> = st
                .images
                .store()
                .list()
                .iter()
                .flat_map(|i| i.repo_tags.iter())
                .filter_map(|t| t.strip_prefix(&prefix).map(str::to_string))
                .collect();
            all.sort();
            all
        }
    };
    let mut work = Vec::new();
    for t in &tags {
        let target = Reference {
            tag: Some(t.clone()),
            digest: None,
            ..repo.clone()
        };
        let image = st
            .images
            .store()
            .resolve(&format!("{}:{t}", repo.name()))
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "An image does not exist locally with the tag: {}",
                    repo.name()
                ))
            })?;
        work.push((image, target));
    }
    if work.is_empty() {
        return Err(ApiError::not_found(format!(
            "An image does not exist locally with the tag: {}",
            repo.name()
        )));
    }
    let creds = registry_auth(headers);
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let _ = tx.send(line(&json!({
        "status": format!("The push refers to repository [{}]", repo.name())
    })));
    tokio::spawn(async move {
        for (image, target) in work {
            let ptx = tx.clone();
            let progress = move |p: Progress| {
                let _ = ptx.send(line(&progress_json(&p, "")));
            };
            match st
                .puller
                .push(
                    st.images.store(),
                    &image,
                    &target,
                    creds.as_ref(),
                    &progress,
                )
                .await
            {
                Ok(out) => {
                    let _ = tx.send(line(&json!({ "status": format!(
                        "{}: digest: {} size: {}", out.tag, out.digest, out.size
                    ) })));
                    let _ = tx.send(line(&json!({
                        "progressDetail": {},
                        "aux": { "Tag": out.tag, "Digest": out.digest, "Size": out.size },
                    })));
                    st.images.record(ImageEvent::Push(&target));
                }
                Err(e) => {
                    tracing::info!(image = %target, "push failed: {e}");
                    let _ = tx.send(error_line(&e.to_string()));
                    return;
                }
            }
        }
    });
    let stream = futures_util::StreamExt::map(
        tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        Ok::<_, std::io::Error>,
    );
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `POST /auth` (`docker login`): checks the credentials against the registry and says so.
/// Nothing is kept: the CLI stores them and sends them with each pull (`X-Registry-Auth`).
pub async fn login(
    State(st): State<AppState>,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<Value>> {
    let creds: Credentials = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid login request: {e}")))?;
    let registry = login_registry(&creds.server_address);
    match st.puller.login(&registry, &creds).await {
        Ok(()) => {
            tracing::info!(registry, username = creds.username, "login succeeded");
            Ok(axum::Json(
                json!({ "Status": "Login Succeeded", "IdentityToken": "" }),
            ))
        }
        Err(e) => {
            tracing::info!(registry, username = creds.username, "login refused: {e}");
            Err(match e {
                PullError::Unauthorized { .. } | PullError::NoBasicAuth(_) => {
                    ApiError::new(StatusCode::UNAUTHORIZED, e.to_string())
                }
                e => e.into(),
            })
        }
    }
}

/// `host[:port]` of a login's server address (`https://host/v1/`, `host:5000`, empty = Hub).
fn login_registry(server: &str) -> String {
    let s = server
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or("");
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" => {
            imagec::reference::DOCKER_HUB.to_string()
        }
        h => h.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_addresses_name_a_registry() {
        assert_eq!(login_registry("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(login_registry("https://reg.lan:443/v2/"), "reg.lan:443");
        assert_eq!(
            login_registry("https://index.docker.io/v1/"),
            imagec::reference::DOCKER_HUB
        );
        assert_eq!(login_registry(""), imagec::reference::DOCKER_HUB);
    }
}
