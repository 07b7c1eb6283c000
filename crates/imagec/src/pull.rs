//! Pulling images from a registry v2 / OCI distribution endpoint.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::RANGE;
use reqwest::StatusCode;

use crate::auth::{Access, Credentials};
use crate::reference::Reference;
use crate::registry::{
    open_partial, unreachable, write_verified, Descriptor, Registry, DOCKER_LIST, DOCKER_MANIFEST,
    OCI_INDEX, OCI_MANIFEST,
};
use crate::store::{hex_of, ImageRecord, ImageStore, StoreError};
use crate::unpack::{apply_layer, UnpackError};

/// Layers downloaded at once.
const PARALLEL_LAYERS: usize = 3;

/// How registries are reached.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries whose certificate is not checked, or that speak plain HTTP (`host[:port]`,
    /// `*.domain` or a CIDR). HTTPS is tried first, as dockerd does.
    pub insecure: Vec<String>,
    /// PEM bundles of extra certificate authorities registries' certificates may chain to.
    pub ca_pems: Vec<Vec<u8>>,
    /// When not empty, the only registries pulled from (insecure ones are admitted too).
    pub whitelist: Vec<String>,
    /// When not empty, registry names are looked up with these DNS servers (port 53), not
    /// with the host's resolver.
    pub dns_servers: Vec<std::net::IpAddr>,
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

/// `repository:NAME:pull`, the token scope of a pull.
fn pull_scope(r: &Reference) -> String {
    format!("repository:{}:pull", r.repository)
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
    #[error(
        "pull access denied for {0}, repository does not exist or may require 'docker login': {1}"
    )]
    AccessDenied(String, String),
    #[error("Get \"{0}\": no basic auth credentials")]
    NoBasicAuth(String),
    #[error("Get \"{url}\": {detail}")]
    Unauthorized {
        url: String,
        detail: String,
        /// Refused without credentials (rather than refused the credentials given).
        anonymous: bool,
    },
    #[error("login attempt to {url} failed with status: {status} {}", http_reason(*.status))]
    LoginFailed { url: String, status: u16 },
    #[error("Access denied to unauthorized registry ({0}) while VCH is in whitelist mode")]
    NotWhitelisted(String),
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

fn http_reason(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> PullError {
    let context = context.into();
    move |source| PullError::Io { context, source }
}

/// The registry client.
pub struct Puller {
    registry: Registry,
    /// One download of a blob at a time, across concurrent pulls.
    blob_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Puller {
    pub fn new(opts: RegistryOptions) -> Puller {
        Puller {
            registry: Registry::new(opts),
            blob_locks: Mutex::new(HashMap::new()),
        }
    }

    /// The registry wire, for the other operations of this client (push).
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The tags of the reference's repository (`docker pull --all-tags`).
    pub async fn tags(
        &self,
        reference: &Reference,
        creds: Option<&Credentials>,
    ) -> Result<Vec<String>, PullError> {
        self.registry.allowed(&reference.registry)?;
        let scope = pull_scope(reference);
        let access = Access {
            creds,
            scope: &scope,
        };
        self.registry.tags(reference, access).await
    }

    /// `docker login`: checks `creds` against the registry (`host[:port]`). Nothing is kept.
    pub async fn login(&self, registry: &str, creds: &Credentials) -> Result<(), PullError> {
        self.registry.login(registry, creds).await
    }

    /// Downloads a blob into the store, checking its digest while streaming.
    async fn fetch_blob(
        &self,
        store: &ImageStore,
        r: &Reference,
        desc: &Descriptor,
        access: Access<'_>,
        progress: &(dyn Fn(Progress) + Send + Sync),
        report: bool,
    ) -> Result<(), PullError> {
        let lock = {
            let mut locks = self.blob_locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(desc.digest.clone()).or_default().clone()
        };
        let held = lock.lock().await;
        let result = self
            .download_blob(store, r, desc, access, progress, report)
            .await;
        drop(held);
        let mut locks = self.blob_locks.lock().unwrap_or_else(|e| e.into_inner());
        // Only the map and this call hold it: nobody waits, so forget it.
        if Arc::strong_count(&lock) == 2 {
            locks.remove(&desc.digest);
        }
        result
    }

    /// [`Self::fetch_blob`]'s work, under the blob's lock.
    async fn download_blob(
        &self,
        store: &ImageStore,
        r: &Reference,
        desc: &Descriptor,
        access: Access<'_>,
        progress: &(dyn Fn(Progress) + Send + Sync),
        report: bool,
    ) -> Result<(), PullError> {
        let dest = store.blob_path(&desc.digest);
        if dest.exists() {
            if report {
                progress(Progress::layer(&desc.digest, "Already exists"));
            }
            return Ok(());
        }
        let url = format!("{}/blobs/{}", self.registry.base(r).await, desc.digest);
        let had_partial = dest.with_extension("partial").exists();
        match self
            .download_once(&url, desc, &dest, access, progress, report, true)
            .await
        {
            // A partial download that was not a prefix of the blob: start again, once.
            Err(PullError::DigestMismatch { .. }) if had_partial => {
                tracing::warn!(blob = %desc.digest, "a resumed download did not verify; restarting it");
                self.download_once(&url, desc, &dest, access, progress, report, false)
                    .await?
            }
            other => other?,
        }
        if report {
            progress(Progress::layer(&desc.digest, "Verifying Checksum"));
            progress(Progress::layer(&desc.digest, "Download complete"));
        }
        Ok(())
    }

    /// One GET of a blob into the store: from the start, or (`resume`) after the bytes an
    /// interrupted download left, when the registry honours `Range`.
    #[allow(clippy::too_many_arguments)]
    async fn download_once(
        &self,
        url: &str,
        desc: &Descriptor,
        dest: &Path,
        access: Access<'_>,
        progress: &(dyn Fn(Progress) + Send + Sync),
        report: bool,
        resume: bool,
    ) -> Result<(), PullError> {
        let url = url.to_string();
        let mut resume = if resume {
            open_partial(dest).await
        } else {
            None
        };
        // What an earlier, interrupted pull received is asked for no more.
        if resume
            .as_ref()
            .is_some_and(|p| desc.size > 0 && p.len >= desc.size)
        {
            // All there (or too much): the digest check at the end decides; restart if bad.
            resume = None;
        }
        let offset = resume.as_ref().map_or(0, |p| p.len);
        let resp = self
            .registry
            .send(&url, access, |c| {
                let req = c.get(&url);
                if offset > 0 {
                    req.header(RANGE, format!("bytes={offset}-"))
                } else {
                    req
                }
            })
            .await?;
        if !resp.status().is_success() {
            return Err(PullError::Registry {
                status: resp.status().as_u16(),
                url,
            });
        }
        let resumed = offset > 0 && resp.status() == StatusCode::PARTIAL_CONTENT;
        if offset > 0 {
            tracing::info!(
                blob = %desc.digest,
                offset,
                resumed,
                "continuing an interrupted download"
            );
        }
        let resume = if resumed { resume } else { None };
        let already = if resumed { offset } else { 0 };
        let total = resp.content_length().map_or(desc.size, |n| n + already);
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
        write_verified(stream, dest, &desc.digest, &url, resume, on_chunk).await
    }

    /// Pulls `reference` for `platform` into `store`.
    pub async fn pull(
        &self,
        store: &ImageStore,
        reference: &Reference,
        platform: &Platform,
        creds: Option<&Credentials>,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<PullOutcome, PullError> {
        // A store over its budget takes nothing more, not even a tag (as VIC refused).
        store.admit(0)?;
        self.registry.allowed(&reference.registry)?;
        let scope = pull_scope(reference);
        let access = Access {
            creds,
            scope: &scope,
        };
        let wanted = reference
            .digest
            .clone()
            .unwrap_or_else(|| reference.tag_or_latest().to_string());
        let (mut manifest, top_digest, mut media) = self
            .registry
            .fetch_manifest(reference, &wanted, access)
            .await?;
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
            let (m, _, md) = self
                .registry
                .fetch_manifest(reference, &digest, access)
                .await?;
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
        let held = store.get(&config_desc.digest).is_some();
        if !held {
            // What the manifest says the download adds must fit before any of it starts
            // (and before any progress, so that the refusal is the answer); the unpacked
            // layers are checked again when the image commits.
            let mut seen = HashSet::new();
            let adding: u64 = std::iter::once(config_desc)
                .chain(&manifest.layers)
                .filter(|d| seen.insert(&d.digest) && !store.blob_path(&d.digest).exists())
                .map(|d| d.size)
                .sum();
            store.admit(adding)?;
        }
        // Docker's "latest: Pulling from library/busybox" (the caller knows the tag).
        progress(Progress::msg(format!(
            "Pulling from {}",
            reference.repository
        )));
        let digest_ref = Some(reference.with_digest(&top_digest));

        // An image we have already: just (re)tag it.
        if held {
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

        self.fetch_blob(store, reference, config_desc, access, progress, false)
            .await?;
        let config_raw = tokio::fs::read(store.blob_path(&config_desc.digest))
            .await
            .map_err(io_err("reading the image config"))?;
        let config: serde_json::Value = serde_json::from_slice(&config_raw)
            .map_err(|e| PullError::Invalid(format!("malformed image config: {e}")))?;
        let diff_ids = diff_ids_of(&config);
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
        // Layer i is extracted as soon as layers 0..=i are in, while later ones download.
        let (gates, gate) = LayerGate::new(manifest.layers.len());
        let downloads: Vec<_> = manifest
            .layers
            .iter()
            .zip(gates)
            .map(|(l, done)| async move {
                let r = self
                    .fetch_blob(store, reference, l, access, progress, true)
                    .await;
                let _ = done.send(Some(r.is_ok()));
                r
            })
            .collect();
        let fetched = futures_util::stream::iter(downloads)
            .buffer_unordered(PARALLEL_LAYERS)
            .try_collect::<Vec<()>>();

        let layers: Vec<String> = manifest.layers.iter().map(|l| l.digest.clone()).collect();
        let new = NewImage {
            id: config_desc.digest.clone(),
            config,
            layers: layers.clone(),
            diff_ids,
            repo_tags: reference.tagged().into_iter().collect(),
            repo_digests: digest_ref.into_iter().collect(),
            incoming: HashMap::new(),
        };
        let on_layer = |i: usize, applied: Option<u64>| {
            let status = if applied.is_some() {
                "Pull complete"
            } else {
                "Extracting"
            };
            progress(Progress::layer(&layers[i], status));
        };
        // Both run to their end: a failed download fails the build at that layer, and the
        // build cleans its work directory up.
        let (fetched, built) = tokio::join!(
            fetched,
            build_image_gated(store, new, &on_layer, Some(&gate))
        );
        fetched?;
        let image = built?;
        Ok(PullOutcome {
            image,
            manifest_digest: top_digest,
            up_to_date: false,
        })
    }
}

/// The uncompressed layer digests (`rootfs.diff_ids`) an image configuration lists.
pub(crate) fn diff_ids_of(config: &serde_json::Value) -> Vec<String> {
    config
        .pointer("/rootfs/diff_ids")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// An image whose configuration and layer blobs are at hand, ready to be unpacked and
/// recorded: by a pull, a `docker load` or a `docker import`.
pub(crate) struct NewImage {
    /// The digest of the configuration: the image ID.
    pub id: String,
    pub config: serde_json::Value,
    /// Layer blob digests, bottom first.
    pub layers: Vec<String>,
    /// Uncompressed layer digests, bottom first.
    pub diff_ids: Vec<String>,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Blobs not in the store yet (digest → verified file under the store's `tmp/`): layers
    /// are applied from there, and the files are moved into the store once every layer
    /// applied, before the record is written.
    pub incoming: HashMap<String, std::path::PathBuf>,
}

/// Unpacks `img`'s layers in order into a fresh root filesystem (each checked against its
/// diff ID) and commits the image. `on_layer(i, None)` is called before layer `i` is
/// applied, `on_layer(i, Some(uncompressed size))` after. On failure nothing is left.
pub(crate) async fn build_image(
    store: &ImageStore,
    img: NewImage,
    on_layer: &(dyn Fn(usize, Option<u64>) + Send + Sync),
) -> Result<ImageRecord, PullError> {
    build_image_gated(store, img, on_layer, None).await
}

/// Says when each layer's blob is in the store: `Some(true)` downloaded, `Some(false)` (or
/// the sender gone) failed.
pub(crate) struct LayerGate(Vec<tokio::sync::watch::Receiver<Option<bool>>>);

impl LayerGate {
    fn new(n: usize) -> (Vec<tokio::sync::watch::Sender<Option<bool>>>, LayerGate) {
        let (tx, rx): (Vec<_>, Vec<_>) = (0..n).map(|_| tokio::sync::watch::channel(None)).unzip();
        (tx, LayerGate(rx))
    }

    /// Waits until layer `i` is in, or fails if its download did.
    async fn ready(&self, i: usize) -> Result<(), PullError> {
        let Some(rx) = self.0.get(i) else {
            return Ok(());
        };
        let mut rx = rx.clone();
        let ok = matches!(
            rx.wait_for(Option::is_some).await.map(|v| *v),
            Ok(Some(true))
        );
        if ok {
            Ok(())
        } else {
            Err(PullError::Invalid(format!(
                "layer {} was not downloaded",
                i + 1
            )))
        }
    }
}

/// [`build_image`], applying layer `i` only once `gate` says it is in.
pub(crate) async fn build_image_gated(
    store: &ImageStore,
    img: NewImage,
    on_layer: &(dyn Fn(usize, Option<u64>) + Send + Sync),
    gate: Option<&LayerGate>,
) -> Result<ImageRecord, PullError> {
    let tmp = store.temp_dir()?;
    let built = build_in(store, img, &tmp, on_layer, gate).await;
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&tmp)).await;
    built
}

/// [`build_image`]'s work, in the work directory `tmp`.
async fn build_in(
    store: &ImageStore,
    img: NewImage,
    tmp: &Path,
    on_layer: &(dyn Fn(usize, Option<u64>) + Send + Sync),
    gate: Option<&LayerGate>,
) -> Result<ImageRecord, PullError> {
    let rootfs = tmp.join("rootfs");
    std::fs::create_dir_all(&rootfs).map_err(io_err("creating the root filesystem"))?;
    let mut layer_sizes = Vec::with_capacity(img.layers.len());
    for (i, (digest, diff)) in img.layers.iter().zip(&img.diff_ids).enumerate() {
        if let Some(g) = gate {
            g.ready(i).await?;
        }
        on_layer(i, None);
        let blob = match img.incoming.get(digest) {
            Some(p) if !store.blob_path(digest).exists() => p.clone(),
            _ => store.blob_path(digest),
        };
        let (root, diff) = (rootfs.clone(), diff.clone());
        let size = tokio::task::spawn_blocking(move || apply_layer(&blob, &root, &diff))
            .await
            .map_err(|e| PullError::Invalid(format!("layer extraction task failed: {e}")))??;
        layer_sizes.push(size);
        on_layer(i, Some(size));
    }
    for (digest, path) in &img.incoming {
        let dest = store.blob_path(digest);
        if !dest.exists() {
            std::fs::rename(path, &dest).map_err(io_err(format!("storing blob {digest}")))?;
        }
    }
    let str_at = |p: &str| {
        img.config
            .pointer(p)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let record = ImageRecord {
        id: img.id.clone(),
        repo_tags: img.repo_tags,
        repo_digests: img.repo_digests,
        created: str_at("/created"),
        size: layer_sizes.iter().sum(),
        architecture: str_at("/architecture"),
        os: str_at("/os"),
        diff_ids: img.diff_ids,
        layers: img.layers,
        layer_sizes,
        config: img.config,
    };
    Ok(store.commit(record, &rootfs)?)
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
}
