//! Pulling images from a registry v2 / OCI distribution endpoint.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::RANGE;
use reqwest::StatusCode;

use crate::auth::{Access, Credentials};
use crate::digest::Digest;
use crate::reference::Reference;
use crate::registry::{
    guarded, open_partial, write_verified, Descriptor, Registry, DOCKER_LIST, DOCKER_MANIFEST,
    MAX_CONFIG_BYTES, OCI_INDEX, OCI_MANIFEST,
};
use crate::store::{hex_of, ImageRecord, ImageStore, StoreError};
use crate::unpack::apply_layer;

mod blob;
mod build;

pub(crate) use crate::error::io_err;
pub use crate::error::PullError;
/// Deadlines of registry requests, part of [`RegistryOptions`].
pub use crate::registry::limits::Timeouts;
pub use crate::registry::RegistryOptions;
pub(crate) use build::{build_image, diff_ids_of, NewImage};
use build::{build_image_gated, LayerGate};

/// Layers downloaded at once.
const PARALLEL_LAYERS: usize = 3;

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

/// The registry client.
pub struct Puller {
    registry: Registry,
    /// One download of a blob at a time, across concurrent pulls.
    blob_locks: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
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
        let pinned = match &reference.digest {
            Some(d) => Some(Digest::parse(d).map_err(|source| PullError::InvalidDigest {
                what: format!("the reference {reference}"),
                source,
            })?),
            None => None,
        };
        let wanted = match &pinned {
            Some(d) => d.to_string(),
            None => reference.tag_or_latest().to_string(),
        };
        let (mut manifest, top_digest, mut media) = self
            .registry
            .fetch_manifest(
                reference,
                &wanted,
                pinned.as_ref().map(|d| (d, None)),
                access,
            )
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
            let (m, _, md) = self
                .registry
                .fetch_manifest(
                    reference,
                    pick.digest.as_str(),
                    Some((&pick.digest, Some(pick.size))),
                    access,
                )
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
        if config_desc.size > MAX_CONFIG_BYTES {
            return Err(PullError::Invalid(format!(
                "the image config {} is {} bytes, more than the {MAX_CONFIG_BYTES} an image config may have",
                config_desc.digest, config_desc.size
            )));
        }
        let held = store.get(config_desc.digest.as_str()).is_some();
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
        let digest_ref = Some(reference.with_digest(top_digest.as_str()));
        let top_digest = top_digest.to_string();

        // An image we have already: just (re)tag it.
        if held {
            let had = store.tag_existing(config_desc.digest.as_str(), reference, digest_ref)?;
            let image = store
                .get(config_desc.digest.as_str())
                .ok_or_else(|| StoreError::NoSuchImage(config_desc.digest.to_string()))?;
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
        for d in &diff_ids {
            Digest::parse(d).map_err(|source| PullError::InvalidDigest {
                what: format!(
                    "the image config {} lists the layer {d:?}",
                    config_desc.digest
                ),
                source,
            })?;
        }
        if diff_ids.len() != manifest.layers.len() {
            return Err(PullError::Invalid(format!(
                "the image config lists {} layers but the manifest {}",
                diff_ids.len(),
                manifest.layers.len()
            )));
        }
        for l in &manifest.layers {
            progress(Progress::layer(l.digest.as_str(), "Pulling fs layer"));
        }
        for l in manifest.layers.iter().skip(PARALLEL_LAYERS) {
            progress(Progress::layer(l.digest.as_str(), "Waiting"));
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

        let layers: Vec<String> = manifest
            .layers
            .iter()
            .map(|l| l.digest.to_string())
            .collect();
        let new = NewImage {
            id: config_desc.digest.to_string(),
            config,
            layers: layers.clone(),
            diff_ids,
            repo_tags: reference.tagged().into_iter().collect(),
            repo_digests: digest_ref.into_iter().collect(),
            parent: String::new(),
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
