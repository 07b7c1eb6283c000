//! `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=` (`docker commit`):
//! the container's changes (`portlayer::Containers::commit_layer`) become one more layer on
//! its image, its configuration with the `--change` instructions applied the new image's
//! (`imagec::archive::commit`). The layer flows from the guest to the image store through a
//! bounded queue, never whole in memory.

use std::io::{self, Read};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use imagec::archive::{self, CommitOptions};
use imagec::reference::Reference;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::query::DockerQuery;
use crate::{ApiError, ApiResult, AppState};

/// Pieces of the layer waiting for the image store.
const QUEUE: usize = 8;

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct CommitQuery {
    container: String,
    repo: String,
    tag: String,
    comment: String,
    author: String,
    pause: bool,
    changes: Vec<String>,
}

impl Default for CommitQuery {
    fn default() -> Self {
        CommitQuery {
            container: String::new(),
            repo: String::new(),
            tag: String::new(),
            comment: String::new(),
            author: String::new(),
            pause: true,
            changes: Vec::new(),
        }
    }
}

/// The layer as a blocking reader, for the image store's blocking work.
struct LayerReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    cur: Bytes,
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// The reference `repo` and `tag` name, if any.
fn reference(q: &CommitQuery) -> ApiResult<Option<Reference>> {
    if q.repo.is_empty() {
        if !q.tag.is_empty() {
            return Err(ApiError::bad_request("tag without a repository"));
        }
        return Ok(None);
    }
    let tag = if q.tag.is_empty() { "latest" } else { &q.tag };
    Ok(Some(Reference::parse(&format!("{}:{tag}", q.repo))?))
}

/// POST /commit
/// The container's changes as a layer on `parent`: the image made.
async fn layer_image(
    st: &AppState,
    parent: &imagec::store::ImageRecord,
    id: &str,
    opts: &CommitOptions,
    pause: bool,
) -> ApiResult<(portlayer::ContainerRecord, imagec::store::ImageRecord)> {
    let (rec, mut layer) = st.containers.commit_layer(id, pause).await?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let feed = tokio::spawn(async move {
        while let Some(piece) = layer.next().await {
            let failed = piece.is_err();
            if tx.send(piece.map_err(|e| e.to_string())).await.is_err() || failed {
                break;
            }
        }
    });
    let reader = LayerReader {
        rx,
        cur: Bytes::new(),
    };
    let made = archive::commit(st.images.store(), parent, reader, opts).await;
    feed.abort();
    Ok((rec, made?))
}

/// Whether container `id` is, or within 5 s is, no longer running.
async fn ended(st: &AppState, id: &str) -> bool {
    for _ in 0..50 {
        match st.containers.get(id) {
            Ok(r) if r.state.status == portlayer::Status::Running => {}
            _ => return true,
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

pub async fn commit(
    State(st): State<AppState>,
    DockerQuery(q): DockerQuery<CommitQuery>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let reference = reference(&q)?;
    let rec = st.containers.get(&q.container)?;
    let config = rec
        .spec
        .personality
        .get("Config")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let opts = CommitOptions {
        reference: reference.clone(),
        comment: q.comment.clone(),
        author: q.author.clone(),
        changes: q.changes.clone(),
        config,
        container: rec.id.clone(),
        created_by: rec.spec.process.argv.join(" "),
    };
    // Refused before the container's files are read.
    archive::check_commit_changes(&opts).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let parent = (st.images.store().get(&rec.spec.image_id))
        .ok_or_else(|| ApiError::not_found(format!("No such image: {}", rec.spec.image_id)))?;
    let was_running = rec.state.status == portlayer::Status::Running;
    let (rec, img) = match layer_image(&st, &parent, &rec.id, &opts, q.pause).await {
        Ok(made) => made,
        // Its process ended while its files were read from the running VM (a command that
        // ends at once, committed right after its start): they are read again, from the
        // stopped container's disk.
        Err(e) if was_running && ended(&st, &rec.id).await => {
            tracing::info!(id = %rec.id, "the container stopped during its commit ({}): reading its files again", e.message);
            layer_image(&st, &parent, &rec.id, &opts, q.pause).await?
        }
        Err(e) => return Err(e),
    };
    let shown = reference.map(|r| r.to_string()).unwrap_or_default();
    st.containers.committed(&rec, &img.id, &shown);
    Ok((StatusCode::CREATED, Json(json!({ "Id": img.id }))))
}
