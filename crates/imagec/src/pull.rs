//! Pulling images from a registry v2 / OCI distribution endpoint.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::{ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::reference::Reference;
use crate::store::{hex_of, ImageRecord, ImageStore, StoreError};
use crate::unpack::{apply_layer, UnpackError};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Layers downloaded at once.
const PARALLEL_LAYERS: usize = 3;

/// How registries are reached.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// `host:port` registries spoken to over plain HTTP.
    pub insecure: Vec<String>,
}

/// The platform an image is pulled for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, PullError> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(PullError::Invalid(format!(
                "invalid platform {s:?}: use os/arch[/variant]"
            ))),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// One progress report, in Docker's vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Short layer ID (12 hex digits), when about a layer.
    pub id: Option<String>,
    pub status: String,
    pub current: Option<u64>,
    pub total: Option<u64>,
}

impl Progress {
    fn msg(status: impl Into<String>) -> Self {
        Progress {
            id: None,
            status: status.into(),
            current: None,
            total: None,
        }
    }
    fn layer(digest: &str, status: &str) -> Self {
        Progress {
            id: Some(short(digest)),
            status: status.into(),
            current: None,
            total: None,
        }
    }
}

fn short(digest: &str) -> String {
    hex_of(digest).chars().take(12).collect()
}

/// What a pull produced.
#[derive(Debug, Clone)]
pub struct PullOutcome {
    pub image: ImageRecord,
    /// Digest of the manifest (of the index when the reference named one).
    pub manifest_digest: String,
    /// The reference already pointed at this image.
    pub up_to_date: bool,
}

/// Errors of a pull, in Docker's words.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("manifest for {0} not found: manifest unknown: manifest unknown")]
    ManifestNotFound(String),
    #[error("pull access denied for {0}, repository does not exist or may require 'docker login'")]
    RepositoryNotFound(String),
    #[error("Get \"{url}\": {detail}")]
    Unreachable { url: String, detail: String },
    #[error("unauthorized: authentication required for {0}")]
    Unauthorized(String),
    #[error("no matching manifest for {0} in the manifest list entries")]
    NoMatchingPlatform(String),
    #[error("{what} has digest {actual}, expected {expected}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedManifest(String),
    #[error("registry answered {status} for {url}")]
    Registry { status: u16, url: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> PullError {
    let context = context.into();
    move |source| PullError::Io { context, source }
}

#[derive(Debug, Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    platform: Option<DescPlatform>,
}

#[derive(Debug, Deserialize)]
struct DescPlatform {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize, Default)]
struct RegistryErrors {
    #[serde(default)]
    errors: Vec<RegistryErrorEntry>,
}

#[derive(Debug, Deserialize)]
struct RegistryErrorEntry {
    #[serde(default)]
    code: String,
}

fn sha256_hex(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The registry client.
pub struct Puller {
    http: reqwest::Client,
    opts: RegistryOptions,
    /// One download of a blob at a time, across concurrent pulls.
    blob_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn is_insecure(opts: &RegistryOptions, registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(registry);
    opts.insecure.iter().any(|r| r == registry)
        || host == "localhost"
        || host.starts_with("127.")
        || host == "[::1]"
}

impl Puller {
    pub fn new(opts: RegistryOptions) -> Puller {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(15))
            .read_timeout(std::time::Duration::from_secs(60))
            .user_agent(concat!("vic/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Puller {
            http,
            opts,
            blob_locks: Mutex::new(HashMap::new()),
        }
    }

    fn base(&self, r: &Reference) -> String {
        let registry = if r.registry == crate::reference::DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &r.registry
        };
        let scheme = if is_insecure(&self.opts, &r.registry) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{registry}/v2/{}", r.repository)
    }

    async fn get(&self, url: &str, accept: Option<&str>) -> Result<reqwest::Response, PullError> {
        let mut req = self.http.get(url);
        if let Some(a) = accept {
            req = req.header(ACCEPT, a);
        }
        let resp = req.send().await.map_err(|e| unreachable(url, &e))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            // The one place a Bearer/Basic challenge will be answered once registry auth lands.
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::debug!(url, challenge, "registry asked for credentials");
            return Err(PullError::Unauthorized(url.to_string()));
        }
        Ok(resp)
    }

    async fn fetch_manifest(
        &self,
        r: &Reference,
        reference: &str,
    ) -> Result<(Manifest, String, String), PullError> {
        let url = format!("{}/manifests/{reference}", self.base(r));
        let accept = [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX].join(", ");
        let resp = match self.get(&url, Some(&accept)).await {
            // Without credentials, Docker cannot tell "private" from "absent" either.
            Err(PullError::Unauthorized(_)) => return Err(PullError::RepositoryNotFound(r.name())),
            other => other?,
        };
        let status = resp.status();
        let ctype = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp.bytes().await.map_err(|e| unreachable(&url, &e))?;
        if status == StatusCode::NOT_FOUND {
            let errs: RegistryErrors = serde_json::from_slice(&body).unwrap_or_default();
            if errs.errors.iter().any(|e| e.code == "NAME_UNKNOWN") {
                return Err(PullError::RepositoryNotFound(r.name()));
            }
            return Err(PullError::ManifestNotFound(r.to_string()));
        }
        if !status.is_success() {
            return Err(PullError::Registry {
                status: status.as_u16(),
                url,
            });
        }
        let digest = sha256_hex(&body);
        if reference.starts_with("sha256:") && digest != reference {
            return Err(PullError::DigestMismatch {
                what: format!("manifest {url}"),
                expected: reference.into(),
                actual: digest,
            });
        }
        let m: Manifest = serde_json::from_slice(&body)
            .map_err(|e| PullError::Invalid(format!("malformed manifest from {url}: {e}")))?;
        let media = if m.media_type.is_empty() {
            ctype.split(';').next().unwrap_or("").trim().to_string()
        } else {
            m.media_type.clone()
        };
        Ok((m, digest, media))
    }

    /// Downloads a blob into the store, checking its digest while streaming.
    async fn fetch_blob(
        &self,
        store: &ImageStore,
        r: &Reference,
        desc: &Descriptor,
        progress: &(dyn Fn(Progress) + Send + Sync),
        report: bool,
    ) -> Result<(), PullError> {
        let lock = {
            let mut locks = self.blob_locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(desc.digest.clone()).or_default().clone()
        };
        let _held = lock.lock().await;
        let dest = store.blob_path(&desc.digest);
        if dest.exists() {
            if report {
                progress(Progress::layer(&desc.digest, "Already exists"));
            }
            return Ok(());
        }
        let url = format!("{}/blobs/{}", self.base(r), desc.digest);
        let resp = self.get(&url, None).await?;
        if !resp.status().is_success() {
            return Err(PullError::Registry {
                status: resp.status().as_u16(),
                url,
            });
        }
        let total = resp.content_length().unwrap_or(desc.size);
        let stream = resp.bytes_stream().map_err(|e| unreachable(&url, &e));
        let mut last_report: u64 = 0;
        let on_chunk = |done: u64| {
            if report && (done - last_report >= 512 * 1024 || done == total) {
                last_report = done;
                progress(Progress {
                    current: Some(done),
                    total: Some(total),
                    ..Progress::layer(&desc.digest, "Downloading")
                });
            }
        };
        write_verified(stream, &dest, &desc.digest, &url, on_chunk).await?;
        if report {
            progress(Progress::layer(&desc.digest, "Verifying Checksum"));
            progress(Progress::layer(&desc.digest, "Download complete"));
        }
        Ok(())
    }

    /// Pulls `reference` for `platform` into `store`.
    pub async fn pull(
        &self,
        store: &ImageStore,
        reference: &Reference,
        platform: &Platform,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<PullOutcome, PullError> {
        let wanted = reference
            .digest
            .clone()
            .unwrap_or_else(|| reference.tag_or_latest().to_string());
        let (mut manifest, top_digest, mut media) = self.fetch_manifest(reference, &wanted).await?;
        if media == DOCKER_LIST
            || media == OCI_INDEX
            || (!manifest.manifests.is_empty() && manifest.config.is_none())
        {
            let pick = manifest
                .manifests
                .iter()
                .find(|d| {
                    d.platform.as_ref().is_some_and(|p| {
                        p.os == platform.os
                            && p.architecture == platform.architecture
                            && (platform.variant.is_none() || p.variant == platform.variant)
                    })
                })
                .ok_or_else(|| PullError::NoMatchingPlatform(platform.to_string()))?;
            let digest = pick.digest.clone();
            let (m, _, md) = self.fetch_manifest(reference, &digest).await?;
            manifest = m;
            media = md;
        }
        if !(media == DOCKER_MANIFEST
            || media == OCI_MANIFEST
            || (media.is_empty() && manifest.config.is_some()))
        {
            return Err(PullError::UnsupportedManifest(media));
        }
        let config_desc = manifest
            .config
            .as_ref()
            .ok_or_else(|| PullError::Invalid("manifest without a config".into()))?;
        progress(Progress::msg(format!(
            "Pulling from {}",
            reference
                .repository
                .strip_prefix("library/")
                .unwrap_or(&reference.repository)
        )));
        let digest_ref = Some(reference.with_digest(&top_digest));

        // An image we have already: just (re)tag it.
        if store.get(&config_desc.digest).is_some() {
            let had = store.tag_existing(&config_desc.digest, reference, digest_ref)?;
            let image = store
                .get(&config_desc.digest)
                .ok_or_else(|| StoreError::NoSuchImage(config_desc.digest.clone()))?;
            return Ok(PullOutcome {
                image,
                manifest_digest: top_digest,
                up_to_date: had,
            });
        }

        self.fetch_blob(store, reference, config_desc, progress, false)
            .await?;
        let config_raw = tokio::fs::read(store.blob_path(&config_desc.digest))
            .await
            .map_err(io_err("reading the image config"))?;
        let config: serde_json::Value = serde_json::from_slice(&config_raw)
            .map_err(|e| PullError::Invalid(format!("malformed image config: {e}")))?;
        let diff_ids: Vec<String> = config
            .pointer("/rootfs/diff_ids")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if diff_ids.len() != manifest.layers.len() {
            return Err(PullError::Invalid(format!(
                "the image config lists {} layers but the manifest {}",
                diff_ids.len(),
                manifest.layers.len()
            )));
        }
        for l in &manifest.layers {
            progress(Progress::layer(&l.digest, "Pulling fs layer"));
        }
        for l in manifest.layers.iter().skip(PARALLEL_LAYERS) {
            progress(Progress::layer(&l.digest, "Waiting"));
        }
        // Collected first: a lazily mapped iterator here makes the future's Send bound
        // depend on a higher-ranked closure, which spawned callers cannot satisfy.
        let downloads: Vec<_> = manifest
            .layers
            .iter()
            .map(|l| self.fetch_blob(store, reference, l, progress, true))
            .collect();
        futures_util::stream::iter(downloads)
            .buffer_unordered(PARALLEL_LAYERS)
            .try_collect::<Vec<()>>()
            .await?;

        let tmp = store.temp_dir()?;
        let rootfs = tmp.join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(io_err("creating the root filesystem"))?;
        let applied = self
            .apply_all(store, &manifest.layers, &diff_ids, &rootfs, progress)
            .await;
        let size = match applied {
            Ok(size) => size,
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&tmp)).await;
                return Err(e);
            }
        };
        let str_at = |p: &str| {
            config
                .pointer(p)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let record = ImageRecord {
            id: config_desc.digest.clone(),
            repo_tags: reference.tagged().into_iter().collect(),
            repo_digests: digest_ref.into_iter().collect(),
            created: str_at("/created"),
            size,
            architecture: str_at("/architecture"),
            os: str_at("/os"),
            diff_ids,
            layers: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
            config,
        };
        let image = store.commit(record, &rootfs)?;
        let _ = std::fs::remove_dir_all(&tmp);
        Ok(PullOutcome {
            image,
            manifest_digest: top_digest,
            up_to_date: false,
        })
    }

    async fn apply_all(
        &self,
        store: &ImageStore,
        layers: &[Descriptor],
        diff_ids: &[String],
        rootfs: &Path,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<u64, PullError> {
        let mut size = 0;
        for (l, diff) in layers.iter().zip(diff_ids) {
            progress(Progress::layer(&l.digest, "Extracting"));
            let blob = store.blob_path(&l.digest);
            let (root, diff) = (rootfs.to_path_buf(), diff.clone());
            size += tokio::task::spawn_blocking(move || apply_layer(&blob, &root, &diff))
                .await
                .map_err(|e| PullError::Invalid(format!("layer extraction task failed: {e}")))??;
            progress(Progress::layer(&l.digest, "Pull complete"));
        }
        Ok(size)
    }
}

/// Streams `chunks` into `dest` by way of `dest.partial`, hashing on the way; the blob takes
/// its place only if it hashes to `expected`, and the partial file never outlives a failure.
async fn write_verified<S, B>(
    mut chunks: S,
    dest: &Path,
    expected: &str,
    url: &str,
    mut on_chunk: impl FnMut(u64),
) -> Result<(), PullError>
where
    S: futures_util::Stream<Item = Result<B, PullError>> + Unpin,
    B: AsRef<[u8]>,
{
    let partial = dest.with_extension("partial");
    let mut file = tokio::fs::File::create(&partial)
        .await
        .map_err(io_err(format!("creating {}", partial.display())))?;
    let mut hash = Sha256::new();
    let mut done: u64 = 0;
    let written: Result<(), PullError> = async {
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            hash.update(chunk.as_ref());
            file.write_all(chunk.as_ref())
                .await
                .map_err(io_err("writing a blob"))?;
            done += chunk.as_ref().len() as u64;
            on_chunk(done);
        }
        file.sync_all().await.map_err(io_err("syncing a blob"))?;
        let actual = format!("sha256:{}", hex::encode(hash.finalize()));
        if actual != expected {
            return Err(PullError::DigestMismatch {
                what: format!("blob {url}"),
                expected: expected.to_string(),
                actual,
            });
        }
        tokio::fs::rename(&partial, dest)
            .await
            .map_err(io_err("storing a blob"))
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    written
}

/// A failed request, worded as Docker words it: `Get "URL": dial tcp HOST: connect:
/// connection refused`.
fn unreachable(url: &str, e: &reqwest::Error) -> PullError {
    let host = reqwest::Url::parse(url)
        .ok()
        .map(|u| {
            let port = u
                .port_or_known_default()
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            format!("{}{port}", u.host_str().unwrap_or(""))
        })
        .unwrap_or_default();
    let mut io = None;
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cur {
        if let Some(i) = c.downcast_ref::<std::io::Error>() {
            io = Some(i);
        }
        cur = c.source();
    }
    let detail = match io.map(std::io::Error::kind) {
        _ if e.is_timeout() => format!("dial tcp {host}: i/o timeout"),
        Some(std::io::ErrorKind::ConnectionRefused) => {
            format!("dial tcp {host}: connect: connection refused")
        }
        Some(std::io::ErrorKind::ConnectionReset) => {
            format!("read tcp {host}: connection reset by peer")
        }
        _ if e.is_connect() && error_chain(e).contains("dns error") => {
            let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
            format!("dial tcp: lookup {name}: no such host")
        }
        _ => error_chain(e),
    };
    PullError::Unreachable {
        url: url.to_string(),
        detail,
    }
}

/// An error with its causes, e.g. "error sending request: connection refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_print() {
        assert_eq!(
            Platform::parse("linux/arm64").unwrap().architecture,
            "arm64"
        );
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert!(Platform::parse("linux").is_err());
        assert_eq!(Platform::default().to_string(), "linux/amd64");
    }

    #[test]
    fn loopback_and_listed_registries_are_plain_http() {
        let opts = RegistryOptions {
            insecure: vec!["reg.local:5000".into()],
        };
        assert!(is_insecure(&opts, "127.0.0.1:5000"));
        assert!(is_insecure(&opts, "localhost:5000"));
        assert!(is_insecure(&opts, "reg.local:5000"));
        assert!(!is_insecure(&opts, "quay.io"));
    }

    fn chunks(
        parts: &[&'static [u8]],
    ) -> impl futures_util::Stream<Item = Result<&'static [u8], PullError>> + Unpin {
        futures_util::stream::iter(parts.iter().map(|p| Ok(*p)).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn a_blob_is_kept_only_when_its_digest_matches() {
        let dir = tempfile::tempdir().unwrap();
        let good = sha256_hex(b"hello world");
        let dest = dir.path().join(hex_of(&good));
        let mut seen = Vec::new();
        write_verified(chunks(&[b"hello ", b"world"]), &dest, &good, "u", |n| {
            seen.push(n)
        })
        .await
        .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello world");
        assert_eq!(seen, vec![6, 11]);
        assert!(!dest.with_extension("partial").exists());

        let bad_dest = dir.path().join("bad");
        let err = write_verified(chunks(&[b"tampered"]), &bad_dest, &good, "u", |_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, PullError::DigestMismatch { .. }), "{err}");
        assert!(err.to_string().contains(&good), "{err}");
        assert!(!bad_dest.exists(), "a mismatching blob is not stored");
        assert!(
            !bad_dest.with_extension("partial").exists(),
            "nor left behind"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_reads_like_docker() {
        // A port nobody listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store_dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(store_dir.path()).unwrap();
        let r = Reference::parse(&format!("127.0.0.1:{port}/busybox")).unwrap();
        let err = Puller::new(RegistryOptions::default())
            .pull(&store, &r, &Platform::default(), &|_| {})
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("Get \"http://127.0.0.1:{port}/v2/busybox/manifests/latest\": dial tcp 127.0.0.1:{port}: connect: connection refused")
        );
    }
}
