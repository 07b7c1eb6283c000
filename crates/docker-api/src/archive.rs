//! `docker save` (`GET /images/get`, `GET /images/{name}/get`), `docker load`
//! (`POST /images/load`) and `docker import` (`POST /images/create?fromSrc=`).
//!
//! Tar work runs in blocking tasks (imagec's [`imagec::archive`]); request bodies reach it
//! through a bounded channel read as a blocking `Read`, and a saved archive leaves through
//! another as the response body, so neither is ever whole in memory.

use std::io::{self, Read, Write};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use imagec::archive::{self, ImportOptions, LoadEvent};
use imagec::pull::Platform;
use imagec::reference::Reference;
use portlayer::ImageEvent;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::query::{self, DockerQuery};
use crate::{ApiError, ApiResult, AppState};

/// Chunks of a streamed archive.
const CHUNK: usize = 256 * 1024;

fn line(v: &Value) -> Bytes {
    let mut s = serde_json::to_vec(v).unwrap_or_default();
    s.extend_from_slice(b"\r\n");
    Bytes::from(s)
}

fn error_line(message: &str) -> Bytes {
    line(&json!({ "errorDetail": { "message": message }, "error": message }))
}

fn task_error(e: tokio::task::JoinError) -> ApiError {
    ApiError::internal(format!("a background task failed: {e}"))
}

/// A request body as a blocking reader (for use in blocking tasks only).
struct BodyReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl BodyReader {
    fn new(body: Body) -> BodyReader {
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            let mut frames = body.into_data_stream();
            while let Some(frame) = frames.next().await {
                let item = frame.map_err(io::Error::other);
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        BodyReader {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// A blocking writer whose bytes become a response body.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// What `GET /images/get` reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SaveQuery {
    /// The images, in the order given.
    names: Vec<String>,
}

/// `GET /images/get?names=a&names=b`: one archive of several images.
pub async fn save(
    State(st): State<AppState>,
    DockerQuery(q): DockerQuery<SaveQuery>,
) -> ApiResult<Response> {
    save_names(st, q.names).await
}

/// `GET /images/{name}/get`.
pub(crate) async fn save_one(st: AppState, name: &str) -> ApiResult<Response> {
    save_names(st, vec![name.to_string()]).await
}

async fn save_names(st: AppState, names: Vec<String>) -> ApiResult<Response> {
    if names.is_empty() {
        return Err(ApiError::bad_request(
            "no images to save: give at least one name",
        ));
    }
    let store = st.images.store().clone();
    let plan = tokio::task::spawn_blocking(move || archive::plan_save(&store, &names))
        .await
        .map_err(task_error)??;
    for id in plan.ids() {
        st.images.record(ImageEvent::Save(&id));
    }
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        if let Err(e) = archive::write_save(&plan, &mut out) {
            // The client sees the archive cut short (and the reason in our log).
            tracing::warn!("docker save stopped: {e}");
            let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-tar")],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response())
}

/// Go-units' `HumanSize`: decimal units, four significant digits.
fn human_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    let int_digits = if v < 1.0 {
        1
    } else {
        v.log10().floor() as usize + 1
    };
    let s = format!("{v:.*}", 4usize.saturating_sub(int_digits));
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", UNITS[i])
}

/// Docker's progress bar text: `[=====>      ]  1.2MB/3.4MB`.
fn progress_bar(current: u64, total: u64) -> String {
    const WIDTH: u64 = 50;
    let filled = (current.min(total) * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH);
    let mut bar = "=".repeat(filled as usize);
    if filled < WIDTH {
        bar.push('>');
        bar.push_str(&" ".repeat((WIDTH - filled - 1) as usize));
    } else {
        bar.pop();
        bar.push('>');
    }
    format!("[{bar}] {:>8}/{}", human_size(current), human_size(total))
}

fn load_line(e: LoadEvent, quiet: bool) -> Option<Bytes> {
    let stream = |s: String| Some(line(&json!({ "stream": s })));
    match e {
        LoadEvent::Layer {
            diff_id,
            current,
            total,
        } => (!quiet).then(|| {
            line(&json!({
                "status": "Loading layer",
                "progressDetail": { "current": current, "total": total },
                "progress": progress_bar(current, total),
                "id": imagec::store::hex_of(&diff_id).chars().take(12).collect::<String>(),
            }))
        }),
        LoadEvent::Renamed { tag, old_id } => stream(format!(
            "The image {tag} already exists, renaming the old one with ID {old_id} to empty string\n"
        )),
        LoadEvent::Tagged(t) => stream(format!("Loaded image: {t}\n")),
        LoadEvent::Untagged(id) => stream(format!("Loaded image ID: {id}\n")),
    }
}

/// What `POST /images/load` reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoadQuery {
    /// No progress of the layers, only what was loaded.
    quiet: bool,
}

/// `POST /images/load?quiet=`: the body is a docker-archive (plain, gzip or zstd). As
/// dockerd does, the answer is a JSON stream whose errors are messages in it; it starts once
/// the whole archive has been received.
pub async fn load(
    State(st): State<AppState>,
    DockerQuery(q): DockerQuery<LoadQuery>,
    body: Body,
) -> Response {
    let quiet = q.quiet;
    let reader = BodyReader::new(body);
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    tokio::spawn(async move {
        let events = |e: LoadEvent| {
            if let Some(l) = load_line(e, quiet) {
                let _ = tx.send(l);
            }
        };
        match archive::load(st.images.store(), reader, &events).await {
            Ok(images) => {
                for img in images {
                    st.images.record(ImageEvent::Load(&img.id));
                }
            }
            Err(e) => {
                tracing::info!("docker load refused: {e}");
                let _ = tx.send(error_line(&e.to_string()));
            }
        }
    });
    let first = rx.recv().await;
    let rest = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
    let stream = futures_util::stream::iter(first)
        .chain(rest)
        .map(Ok::<_, io::Error>);
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// What an import (`POST /images/create?fromSrc=`) reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ImportQuery {
    /// `-` (or empty): the body is the tarball; a URL is refused.
    from_src: Option<String>,
    /// The repository (and tag) to name the image.
    repo: String,
    tag: String,
    /// The image's comment.
    message: String,
    platform: String,
    /// `--change` Dockerfile instructions, in order.
    changes: Vec<String>,
}

/// `POST /images/create`: `fromSrc` imports (here), anything else pulls (`pull::create`).
pub async fn create(State(st): State<AppState>, req: Request) -> Response {
    let q: ImportQuery = match query::from_uri(req.uri()) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let Some(src) = q.from_src.clone() else {
        return crate::pull::create.call(req, st).await;
    };
    match import(&st, &src, &q, req.into_body()).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Reads a body to its end (so that the client, still sending, gets the answer).
async fn drain(body: Body) {
    let mut frames = body.into_data_stream();
    while let Some(Ok(_)) = frames.next().await {}
}

/// What the query of an import asks for.
fn import_options(q: &ImportQuery) -> ApiResult<ImportOptions> {
    let (repo, tag) = (&q.repo, &q.tag);
    let reference = if repo.is_empty() {
        None
    } else {
        let mut r = Reference::parse(repo)?;
        if r.digest.is_some() {
            return Err(ApiError::bad_request("cannot import digest reference"));
        }
        if !tag.is_empty() {
            r = Reference::parse(&format!("{}:{tag}", r.name()))?;
        }
        Some(r)
    };
    let platform = match q.platform.as_str() {
        "" => None,
        p => Some(Platform::parse(p).map_err(|e| ApiError::bad_request(e.to_string()))?),
    };
    Ok(ImportOptions {
        reference,
        message: q.message.clone(),
        changes: q.changes.clone(),
        platform,
    })
}

/// `docker import`: the body is the root filesystem tarball.
async fn import(st: &AppState, src: &str, q: &ImportQuery, body: Body) -> ApiResult<Response> {
    if !(src.is_empty() || src == "-") {
        drain(body).await;
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "importing from a URL ({src}) is not supported by this VCH: download the file and import it (docker import FILE or -)"
            ),
        ));
    }
    let opts = match import_options(q) {
        Ok(o) => o,
        Err(e) => {
            drain(body).await;
            return Err(e);
        }
    };
    let img = archive::import(st.images.store(), BodyReader::new(body), &opts).await?;
    st.images.record(ImageEvent::Import(&img.id));
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        line(&json!({ "status": img.id })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_bars_read_as_docker_prints_them() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_456_640), "1.457MB");
        assert_eq!(human_size(32_768), "32.77kB");
        assert_eq!(human_size(145_600_000), "145.6MB");
        assert_eq!(human_size(2_000_000_000), "2GB");
        let bar = progress_bar(0, 100);
        assert!(bar.starts_with("[>"), "{bar}");
        let bar = progress_bar(100, 100);
        assert!(bar.starts_with(&format!("[{}>]", "=".repeat(49))), "{bar}");
        assert!(bar.ends_with("100B/100B"), "{bar}");
    }

    #[test]
    fn import_queries_name_the_image() {
        let q = |query: &str| -> ImportQuery {
            let uri = format!("/images/create?{query}").parse().expect("a URI");
            query::from_uri(&uri).expect("a query")
        };
        let o = import_options(&q(
            "fromSrc=-&repo=127.0.0.1:5000/app:v1&message=hi&changes=CMD+%5B%22x%22%5D&changes=ENV+A%3Db",
        ))
        .unwrap();
        assert_eq!(
            o.reference.unwrap().tagged().unwrap(),
            "127.0.0.1:5000/app:v1"
        );
        assert_eq!(o.changes, vec!["CMD [\"x\"]", "ENV A=b"]);
        assert_eq!(o.message, "hi");
        let o = import_options(&q("repo=app&tag=v2")).unwrap();
        assert_eq!(o.reference.unwrap().tagged().unwrap(), "app:v2");
        let o = import_options(&q("repo=app")).unwrap();
        assert_eq!(o.reference.unwrap().tagged().unwrap(), "app:latest");
        assert!(import_options(&q("repo=App")).is_err());
        assert!(import_options(&q("platform=linux")).is_err());
    }
}
