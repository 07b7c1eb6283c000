//! Pushing an image to a registry: each layer and the config uploaded once (skipped when
//! the registry has it), then the manifest under the tag.
//!
//! ```text
//!   HEAD /v2/<repo>/blobs/<digest>      200 → "Layer already exists"
//!   POST /v2/<repo>/blobs/uploads/      202, Location
//!   PUT  <Location>&digest=<digest>     the blob, streamed from the store (201)
//!   PUT  /v2/<repo>/manifests/<tag>     v2s2 (OCI when a layer is zstd) → Docker-Content-Digest
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;
use serde_json::json;

use crate::auth::{Access, Credentials};
use crate::pull::{io_err, Progress, PullError, Puller};
use crate::reference::Reference;
use crate::registry::{sha256_hex, Registry, DOCKER_MANIFEST, OCI_MANIFEST};
use crate::store::{hex_of, ImageRecord, ImageStore};

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// What a push produced.
#[derive(Debug, Clone)]
pub struct PushOutcome {
    pub tag: String,
    /// Digest of the manifest the registry stored.
    pub digest: String,
    /// Bytes of that manifest.
    pub size: usize,
}

/// How a stored layer blob is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Gzip,
    Zstd,
    None,
}

fn compression_of(path: &std::path::Path) -> std::io::Result<Compression> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut magic)?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::None,
    })
}

fn layer_media_type(c: Compression, oci: bool) -> &'static str {
    match (c, oci) {
        (Compression::Gzip, false) => "application/vnd.docker.image.rootfs.diff.tar.gzip",
        (Compression::None, false) => "application/vnd.docker.image.rootfs.diff.tar",
        (Compression::Gzip, true) => "application/vnd.oci.image.layer.v1.tar+gzip",
        (Compression::Zstd, _) => "application/vnd.oci.image.layer.v1.tar+zstd",
        (Compression::None, true) => "application/vnd.oci.image.layer.v1.tar",
    }
}

/// One blob to upload.
struct Blob {
    digest: String,
    path: PathBuf,
    size: u64,
    media_type: &'static str,
    /// Short ID shown in progress (the layer's diff ID, as Docker shows it).
    shown: Option<String>,
}

fn short(digest: &str) -> String {
    hex_of(digest).chars().take(12).collect()
}

impl Puller {
    /// Pushes `image` to `target` (a `name:tag` in some registry).
    pub async fn push(
        &self,
        store: &ImageStore,
        image: &ImageRecord,
        target: &Reference,
        creds: Option<&Credentials>,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<PushOutcome, PullError> {
        let reg = self.registry();
        reg.allowed(&target.registry)?;
        let scope = format!("repository:{}:pull,push", target.repository);
        let access = Access {
            creds,
            scope: &scope,
        };
        let tag = target.tag_or_latest().to_string();

        // The exact config bytes the image ID names; pulled and loaded images keep them.
        let config_path = store.blob_file(&image.id)?;
        if !config_path.exists() {
            let bytes = serde_json::to_vec(&image.config)
                .map_err(|e| PullError::Invalid(format!("encoding the image config: {e}")))?;
            if sha256_hex(&bytes) != image.id {
                return Err(PullError::Invalid(format!(
                    "the configuration of image {} is not in the store",
                    image.id
                )));
            }
            std::fs::write(&config_path, &bytes).map_err(io_err("storing the image config"))?;
        }
        let mut layers = Vec::new();
        let mut oci = false;
        for (digest, diff) in image.layers.iter().zip(&image.diff_ids) {
            let path = store.blob_file(digest)?;
            let meta = std::fs::metadata(&path).map_err(io_err(format!(
                "layer {digest} of {} is not in the store",
                image.id
            )))?;
            let c = compression_of(&path).map_err(io_err("reading a layer"))?;
            oci |= c == Compression::Zstd;
            layers.push((c, digest.clone(), path, meta.len(), diff.clone()));
        }
        let blobs: Vec<Blob> = layers
            .into_iter()
            .map(|(c, digest, path, size, diff)| Blob {
                digest,
                path,
                size,
                media_type: layer_media_type(c, oci),
                shown: Some(short(&diff)),
            })
            .collect();
        let config = Blob {
            digest: image.id.clone(),
            size: std::fs::metadata(&config_path)
                .map_err(io_err("reading the image config"))?
                .len(),
            path: config_path,
            media_type: if oci { OCI_CONFIG } else { DOCKER_CONFIG },
            shown: None,
        };

        for b in &blobs {
            progress(shown(b, "Preparing"));
        }
        for b in &blobs {
            self.push_blob(target, b, access, progress).await?;
        }
        self.push_blob(target, &config, access, progress).await?;

        let manifest_type = if oci { OCI_MANIFEST } else { DOCKER_MANIFEST };
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": { "mediaType": config.media_type, "size": config.size, "digest": config.digest },
            "layers": blobs.iter().map(|b| json!({
                "mediaType": b.media_type, "size": b.size, "digest": b.digest,
            })).collect::<Vec<_>>(),
        });
        let body = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| PullError::Invalid(format!("encoding the manifest: {e}")))?;
        let digest = sha256_hex(&body);
        let url = format!("{}/manifests/{tag}", reg.base(target).await);
        let resp = reg
            .send(&url, access, |c| {
                c.put(&url)
                    .header(CONTENT_TYPE, manifest_type)
                    .body(body.clone())
            })
            .await?;
        if !resp.status().is_success() {
            return Err(refused(reg, resp, &url).await);
        }
        Ok(PushOutcome {
            tag,
            digest,
            size: body.len(),
        })
    }

    /// Uploads one blob unless the registry has it.
    async fn push_blob(
        &self,
        target: &Reference,
        blob: &Blob,
        access: Access<'_>,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<(), PullError> {
        let reg = self.registry();
        let base = reg.base(target).await;
        let url = format!("{base}/blobs/{}", blob.digest);
        let head = reg.send(&url, access, |c| c.head(&url)).await?;
        if head.status().is_success() {
            progress(shown(blob, "Layer already exists"));
            return Ok(());
        }
        let start = format!("{base}/blobs/uploads/");
        let resp = reg.send(&start, access, |c| c.post(&start)).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(refused(reg, resp, &start).await);
        }
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| PullError::Invalid(format!("{start} gave no upload location")))?;
        let mut put = upload_url(&start, location)?;
        put.query_pairs_mut().append_pair("digest", &blob.digest);
        let put = put.to_string();

        let sent = Arc::new(AtomicU64::new(0));
        let last = Arc::new(AtomicU64::new(0));
        let total = blob.size;
        let report = {
            let sent = sent.clone();
            let id = blob.shown.clone();
            move |n: u64| {
                let done = sent.fetch_add(n, Ordering::Relaxed) + n;
                let before = last.load(Ordering::Relaxed);
                if id.is_some() && (done - before >= 512 * 1024 || done == total) {
                    last.store(done, Ordering::Relaxed);
                    progress(Progress {
                        id: id.clone(),
                        status: "Pushing".into(),
                        current: Some(done),
                        total: Some(total),
                    });
                }
            }
        };
        // The body is made anew should the request be sent again after a challenge.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let path = blob.path.clone();
        let resp = {
            let fut = reg.send(&put, access, |c| {
                let tx = tx.clone();
                let body = match std::fs::File::open(&path) {
                    Ok(f) => {
                        let stream = tokio_util::io::ReaderStream::with_capacity(
                            tokio::fs::File::from_std(f),
                            256 * 1024,
                        )
                        .inspect(move |chunk| {
                            if let Ok(b) = chunk {
                                let _ = tx.send(b.len() as u64);
                            }
                        });
                        reqwest::Body::wrap_stream(stream)
                    }
                    // Sent empty, the registry refuses it for its digest: a clear error.
                    Err(_) => reqwest::Body::from(Vec::new()),
                };
                c.put(&put)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, total)
                    .body(body)
            });
            tokio::pin!(fut);
            loop {
                tokio::select! {
                    r = &mut fut => break r,
                    Some(n) = rx.recv() => report(n),
                }
            }
        }?;
        while let Ok(n) = rx.try_recv() {
            report(n);
        }
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(refused(reg, resp, &put).await);
        }
        progress(shown(blob, "Pushed"));
        Ok(())
    }
}

fn shown(blob: &Blob, status: &str) -> Progress {
    Progress {
        id: blob.shown.clone(),
        status: status.into(),
        current: None,
        total: None,
    }
}

/// A registry's refusal, in its own words when it gives them.
async fn refused(reg: &Registry, resp: reqwest::Response, url: &str) -> PullError {
    let status = resp.status();
    let body = reg.error_body(url, resp).await;
    let detail = crate::registry::error_detail(&body, "");
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return PullError::Unauthorized {
            url: url.to_string(),
            detail: if detail.is_empty() {
                "denied: requested access to the resource is denied".into()
            } else {
                detail
            },
            anonymous: false,
        };
    }
    if detail.is_empty() {
        PullError::Registry {
            status: status.as_u16(),
            url: url.to_string(),
        }
    } else {
        PullError::Invalid(detail)
    }
}

/// The URL an upload continues at: `location` taken relative to `start`, and on the same
/// origin (scheme, host and port): the blob and the registry's credentials go to the registry
/// they were meant for, never to a host a registry names.
fn upload_url(start: &str, location: &str) -> Result<reqwest::Url, PullError> {
    let base = reqwest::Url::parse(start)
        .map_err(|e| PullError::Invalid(format!("bad upload URL {start:?}: {e}")))?;
    let put = base
        .join(location)
        .map_err(|e| PullError::Invalid(format!("bad upload location {location:?}: {e}")))?;
    if put.origin() != base.origin() {
        return Err(PullError::Invalid(format!(
            "{start} gave an upload location on another origin ({}): refused",
            put.origin().ascii_serialization()
        )));
    }
    Ok(put)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_continues_on_the_registrys_own_origin_only() {
        let start = "https://reg.example:5000/v2/a/blobs/uploads/";
        let same = upload_url(start, "/v2/a/blobs/uploads/u1?_state=x").unwrap();
        assert_eq!(
            same.as_str(),
            "https://reg.example:5000/v2/a/blobs/uploads/u1?_state=x"
        );
        let absolute = upload_url(start, "https://reg.example:5000/v2/a/blobs/uploads/u2").unwrap();
        assert_eq!(absolute.path(), "/v2/a/blobs/uploads/u2");
        for elsewhere in [
            "https://evil.example/upload",
            "http://reg.example:5000/v2/a/blobs/uploads/u3",
            "https://reg.example:5001/v2/a/blobs/uploads/u4",
            "//evil.example/x",
        ] {
            let err = upload_url(start, elsewhere).unwrap_err().to_string();
            assert!(err.contains("another origin"), "{elsewhere}: {err}");
        }
    }

    #[test]
    fn layer_blobs_are_typed_by_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0]).unwrap();
        let zst = dir.path().join("zst");
        std::fs::write(&zst, [0x28, 0xb5, 0x2f, 0xfd, 0]).unwrap();
        let tar = dir.path().join("tar");
        std::fs::write(&tar, b"etc/\0\0\0").unwrap();
        assert_eq!(compression_of(&gz).unwrap(), Compression::Gzip);
        assert_eq!(compression_of(&zst).unwrap(), Compression::Zstd);
        assert_eq!(compression_of(&tar).unwrap(), Compression::None);
        assert_eq!(
            layer_media_type(Compression::None, false),
            "application/vnd.docker.image.rootfs.diff.tar"
        );
        assert_eq!(
            layer_media_type(Compression::Gzip, true),
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
}
