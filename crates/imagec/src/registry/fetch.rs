//! Manifests, indexes and tag lists: read whole, within their bounds.

use reqwest::StatusCode;

use super::limits::{MAX_MANIFEST_BYTES, MAX_TAG_LIST_BYTES};
use super::*;

impl Registry {
    /// The manifest (or index) `reference` names: a tag, or the digest `pinned` (then its
    /// bytes must hash to it). A manifest is read whole, at most [`MAX_MANIFEST_BYTES`] and,
    /// when a descriptor declared its size, at most that.
    pub(crate) async fn fetch_manifest(
        &self,
        r: &Reference,
        reference: &str,
        pinned: Option<(&Digest, Option<u64>)>,
        access: Access<'_>,
    ) -> Result<(Manifest, Digest, String), PullError> {
        let url = format!("{}/manifests/{reference}", self.base(r).await);
        let accept = [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX].join(", ");
        let declared = pinned.and_then(|(_, size)| size);
        if let Some(size) = declared.filter(|&n| n > MAX_MANIFEST_BYTES) {
            return Err(PullError::Invalid(format!(
                "the manifest {reference} of {} is {size} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may have",
                r.name()
            )));
        }
        let cap = declared.unwrap_or(MAX_MANIFEST_BYTES);
        let guard = self.request_guard(&url, format!("sending the manifest {reference}"));
        let whole = match self
            .get_whole(&url, Some(&accept), access, cap, guard)
            .await
        {
            // Anonymous and refused: Docker cannot tell "private" from "absent" either.
            Err(PullError::Unauthorized {
                anonymous: true,
                detail,
                ..
            }) => return Err(PullError::AccessDenied(r.name(), detail)),
            other => other?,
        };
        let (status, body) = (whole.status, whole.body);
        if status == StatusCode::NOT_FOUND {
            let errs: RegistryErrors = serde_json::from_slice(&body).unwrap_or_default();
            if errs.errors.iter().any(|e| e.code == "NAME_UNKNOWN") {
                return Err(PullError::RepositoryNotFound(r.name()));
            }
            // Registry 2.8 says MANIFEST_UNKNOWN for a missing repository too; its tag list
            // tells the two apart.
            if self.repository_missing(r, access).await {
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
        let digest = Digest::of(&body);
        // What the registry says it sent must be a digest, and the one of what it sent.
        if let Some(said) = &whole.content_digest {
            let said = Digest::parse(said).map_err(|source| PullError::InvalidDigest {
                what: format!("the Docker-Content-Digest {said:?} of {url}"),
                source,
            })?;
            if said != digest {
                return Err(PullError::DigestMismatch {
                    what: format!("manifest {url}"),
                    expected: said.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        if let Some((expected, _)) = pinned {
            if &digest != expected {
                return Err(PullError::DigestMismatch {
                    what: format!("manifest {url}"),
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let m = Manifest::parse(&body)
            .map_err(|e| PullError::Invalid(format!("malformed manifest from {url}: {e}")))?;
        let media = if m.media_type.is_empty() {
            whole
                .content_type
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        } else {
            m.media_type.clone()
        };
        Ok((m, digest, media))
    }

    /// Every tag of the repository, sorted.
    pub(crate) async fn tags(
        &self,
        r: &Reference,
        access: Access<'_>,
    ) -> Result<Vec<String>, PullError> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let url = format!("{}/tags/list", self.base(r).await);
        let guard = self.request_guard(&url, format!("listing the tags of {}", r.name()));
        let whole = self
            .get_whole(&url, None, access, MAX_TAG_LIST_BYTES, guard)
            .await?;
        if whole.status == StatusCode::NOT_FOUND {
            return Err(PullError::RepositoryNotFound(r.name()));
        }
        if !whole.status.is_success() {
            return Err(PullError::Registry {
                status: whole.status.as_u16(),
                url,
            });
        }
        let list: TagList = serde_json::from_slice(&whole.body)
            .map_err(|e| PullError::Invalid(format!("malformed tag list from {url}: {e}")))?;
        let mut tags = list.tags.unwrap_or_default();
        // Each becomes a reference and a manifest URL: Docker's grammar, as distribution
        // refuses a listed tag it cannot make a reference of.
        if let Some(bad) = tags.iter().find(|t| !crate::reference::valid_tag(t)) {
            return Err(PullError::Invalid(format!(
                "malformed tag list from {url}: invalid tag format: {bad:?}"
            )));
        }
        tags.sort();
        Ok(tags)
    }

    /// Whether the registry says it has no repository of this name.
    pub(crate) async fn repository_missing(&self, r: &Reference, access: Access<'_>) -> bool {
        let url = format!("{}/tags/list", self.base(r).await);
        let guard = self.request_guard(&url, format!("listing the tags of {}", r.name()));
        let Ok(whole) = self
            .get_whole(&url, None, access, MAX_ERROR_BYTES, guard)
            .await
        else {
            return false;
        };
        if whole.status != StatusCode::NOT_FOUND {
            return false;
        }
        let errs: RegistryErrors = serde_json::from_slice(&whole.body).unwrap_or_default();
        errs.errors.iter().any(|e| e.code == "NAME_UNKNOWN")
    }
}
