//! `docker cp`: `HEAD`, `GET` and `PUT /containers/{id}/archive?path=`. What is at the path
//! travels in the `X-Docker-Container-Path-Stat` header (base64 of JSON, its mode in Go's
//! `os.FileMode` bits, as the CLI reads it); the files as an uncompressed tar stream, never
//! whole in memory on the way (see `portlayer::Containers::copy_out` and `copy_in`). And
//! `docker export`: `GET /containers/{id}/export`, the container's root filesystem; and
//! `docker diff`: `GET /containers/{id}/changes` (see `portlayer::changes`).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{TimeZone, Utc};
use futures_util::StreamExt;
use portlayer::{ContainerPath, CopyIn};
use serde::Deserialize;
use serde_json::json;

use crate::query::DockerQuery;
use crate::{ApiError, ApiResult, AppState};

/// The header carrying what is at the path.
pub const PATH_STAT_HEADER: header::HeaderName =
    header::HeaderName::from_static("x-docker-container-path-stat");

/// What the archive endpoints read.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ArchiveQuery {
    path: String,
    /// Refuse to replace a directory with a non-directory, or the reverse (the CLI asks).
    #[serde(rename = "noOverwriteDirNonDir")]
    no_overwrite_dir_non_dir: bool,
    /// `docker cp -a`: what is extracted is owned by the container's user.
    #[serde(rename = "copyUIDGID")]
    copy_uid_gid: bool,
}

impl ArchiveQuery {
    fn path(&self) -> ApiResult<&str> {
        if self.path.is_empty() {
            return Err(ApiError::bad_request("bad parameter: path cannot be empty"));
        }
        Ok(&self.path)
    }
}

/// Go's `os.FileMode` bits for a `st_mode`.
pub fn go_file_mode(st_mode: u32) -> u32 {
    const DIR: u32 = 1 << 31;
    const SYMLINK: u32 = 1 << 27;
    const DEVICE: u32 = 1 << 26;
    const NAMED_PIPE: u32 = 1 << 25;
    const SOCKET: u32 = 1 << 24;
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const CHAR_DEVICE: u32 = 1 << 21;
    const STICKY: u32 = 1 << 20;
    let mut mode = st_mode & 0o777;
    mode |= match st_mode & libc::S_IFMT {
        libc::S_IFDIR => DIR,
        libc::S_IFLNK => SYMLINK,
        libc::S_IFBLK => DEVICE,
        libc::S_IFCHR => DEVICE | CHAR_DEVICE,
        libc::S_IFIFO => NAMED_PIPE,
        libc::S_IFSOCK => SOCKET,
        _ => 0,
    };
    for (bit, go) in [
        (libc::S_ISUID, SETUID),
        (libc::S_ISGID, SETGID),
        (libc::S_ISVTX, STICKY),
    ] {
        if st_mode & bit != 0 {
            mode |= go;
        }
    }
    mode
}

/// The header value for `stat`.
fn stat_header(stat: &ContainerPath) -> HeaderValue {
    let mtime = Utc
        .timestamp_opt(stat.mtime_secs, stat.mtime_nanos)
        .single()
        .unwrap_or_default();
    let body = json!({
        "name": stat.name,
        "size": stat.size,
        "mode": go_file_mode(stat.mode),
        "mtime": mtime.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        "linkTarget": stat.link_target,
    });
    let encoded = base64::engine::general_purpose::STANDARD.encode(body.to_string());
    // Base64 is always a valid header value.
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// HEAD /containers/{id}/archive?path=
pub async fn head(
    State(st): State<AppState>,
    Path(id): Path<String>,
    DockerQuery(q): DockerQuery<ArchiveQuery>,
) -> ApiResult<Response> {
    let stat = st.containers.stat_path(&id, q.path()?).await?;
    Ok(([(PATH_STAT_HEADER, stat_header(&stat))], StatusCode::OK).into_response())
}

/// GET /containers/{id}/archive?path=
pub async fn get(
    State(st): State<AppState>,
    Path(id): Path<String>,
    DockerQuery(q): DockerQuery<ArchiveQuery>,
) -> ApiResult<Response> {
    let (stat, out) = st.containers.copy_out(&id, q.path()?).await?;
    Ok((
        [
            (PATH_STAT_HEADER, stat_header(&stat)),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-tar"),
            ),
        ],
        tar_body(out),
    )
        .into_response())
}

/// GET /containers/{id}/changes (`docker diff`)
pub async fn changes(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let changes = st.containers.changes(&id).await?;
    let list: Vec<serde_json::Value> = changes
        .iter()
        .map(|c| json!({ "Path": c.path, "Kind": c.kind as u8 }))
        .collect();
    Ok(axum::Json(json!(list)))
}

/// GET /containers/{id}/export
pub async fn export(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let out = st.containers.export(&id).await?;
    let tar = HeaderValue::from_static("application/x-tar");
    Ok(([(header::CONTENT_TYPE, tar)], tar_body(out)).into_response())
}

/// A tar stream out of a container as a response body.
fn tar_body(out: portlayer::CopyStream) -> Body {
    // A failure after the status has gone can only cut the stream short: that is how the
    // client hears of it.
    let stream = futures_util::stream::unfold(Some(out), |out| async move {
        let mut out = out?;
        match out.next().await? {
            Ok(bytes) => Some((Ok(bytes), Some(out))),
            Err(e) => {
                tracing::warn!("copy out of a container failed: {e}");
                Some((Err(std::io::Error::other(e.to_string())), None))
            }
        }
    });
    Body::from_stream(stream)
}

/// PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=
pub async fn put(
    State(st): State<AppState>,
    Path(id): Path<String>,
    DockerQuery(q): DockerQuery<ArchiveQuery>,
    body: Body,
) -> ApiResult<StatusCode> {
    let req = CopyIn {
        path: q.path()?.to_string(),
        no_overwrite_dir_non_dir: q.no_overwrite_dir_non_dir,
        owner: None,
    };
    let body = body.into_data_stream().boxed();
    st.containers
        .copy_in(&id, req, q.copy_uid_gid, body)
        .await?;
    Ok(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_go_file_modes() {
        assert_eq!(go_file_mode(libc::S_IFREG | 0o644), 0o644);
        assert_eq!(go_file_mode(libc::S_IFDIR | 0o755), (1 << 31) | 0o755);
        assert_eq!(go_file_mode(libc::S_IFLNK | 0o777), (1 << 27) | 0o777);
        assert_eq!(
            go_file_mode(libc::S_IFCHR | 0o666),
            (1 << 26) | (1 << 21) | 0o666
        );
        assert_eq!(
            go_file_mode(libc::S_IFREG | libc::S_ISUID | 0o755),
            (1 << 23) | 0o755
        );
        assert_eq!(
            go_file_mode(libc::S_IFDIR | libc::S_ISVTX | 0o777),
            (1 << 31) | (1 << 20) | 0o777
        );
    }

    #[test]
    fn the_stat_header_is_base64_json() {
        let h = stat_header(&ContainerPath {
            name: "hosts".into(),
            size: 12,
            mode: libc::S_IFREG | 0o644,
            mtime_secs: 1_700_000_000,
            mtime_nanos: 5,
            link_target: String::new(),
        });
        let raw = base64::engine::general_purpose::STANDARD
            .decode(h.to_str().unwrap())
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v["name"], "hosts");
        assert_eq!(v["size"], 12);
        assert_eq!(v["mode"], 0o644);
        assert_eq!(v["mtime"], "2023-11-14T22:13:20.000000005Z");
        assert_eq!(v["linkTarget"], "");
    }
}
