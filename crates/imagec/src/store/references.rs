//! References (`name:tag`, `name@digest`): tagging, untagging, and keeping each record's
//! lists in step with the references table.

use std::collections::HashMap;

use super::{hex_of, ImageRecord, ImageStore, StoreError};
use crate::reference::Reference;

impl ImageStore {
    /// Adds `name:tag` (and a digest reference, if given) to an existing image; returns
    /// whether the tag pointed at this image already.
    pub fn tag_existing(
        &self,
        id: &str,
        reference: &Reference,
        digest_ref: Option<String>,
    ) -> Result<bool, StoreError> {
        let mut images = self.lock();
        let key = format!("sha256:{}", hex_of(id));
        let rec = images
            .get(&key)
            .ok_or_else(|| StoreError::NoSuchImage(id.to_string()))?;
        let tag = reference.tagged();
        let had = tag.as_ref().is_none_or(|t| rec.repo_tags.contains(t));
        let refs: Vec<String> = tag.into_iter().chain(digest_ref).collect();
        self.write(|_, r| {
            for reference in &refs {
                r.insert(reference.as_str(), key.as_str())?;
            }
            Ok(())
        })?;
        for reference in refs {
            set_reference(&mut images, reference, &key);
        }
        Ok(had)
    }

    /// Tags an image (`docker tag`).
    pub fn tag(&self, id: &str, reference: &Reference) -> Result<(), StoreError> {
        self.tag_existing(id, reference, None).map(|_| ())
    }

    /// Removes a tag; returns the image it pointed at.
    pub fn untag(&self, reference: &Reference) -> Result<Option<String>, StoreError> {
        let wanted = match (&reference.digest, reference.tagged()) {
            (Some(d), _) => reference.with_digest(d),
            (None, Some(t)) => t,
            (None, None) => return Ok(None),
        };
        let mut images = self.lock();
        let Some(rec) = images
            .values()
            .find(|i| i.repo_tags.contains(&wanted) || i.repo_digests.contains(&wanted))
        else {
            return Ok(None);
        };
        let id = rec.id.clone();
        let name = reference.name();
        let mut gone = vec![wanted.clone()];
        if !rec
            .repo_tags
            .iter()
            .any(|t| t != &wanted && ref_name(t) == name)
        {
            // Docker drops a repository's digest references with its last tag.
            gone.extend(
                rec.repo_digests
                    .iter()
                    .filter(|d| ref_name(d) == name)
                    .cloned(),
            );
        }
        self.write(|_, r| {
            for g in &gone {
                r.remove(g.as_str())?;
            }
            Ok(())
        })?;
        if let Some(rec) = images.get_mut(&id) {
            rec.repo_tags.retain(|t| !gone.contains(t));
            rec.repo_digests.retain(|d| !gone.contains(d));
        }
        Ok(Some(id))
    }
}

/// Adds `reference` to `rec`'s tags or digests.
pub(super) fn push_reference(rec: &mut ImageRecord, reference: String) {
    let list = if reference.contains('@') {
        &mut rec.repo_digests
    } else {
        &mut rec.repo_tags
    };
    if !list.contains(&reference) {
        list.push(reference);
    }
}

/// Points `reference` at image `id`, taking it from any other image (in memory).
pub(super) fn set_reference(
    images: &mut HashMap<String, ImageRecord>,
    reference: String,
    id: &str,
) {
    for other in images.values_mut().filter(|i| i.id != id) {
        other.repo_tags.retain(|t| t != &reference);
        other.repo_digests.retain(|d| d != &reference);
    }
    if let Some(rec) = images.get_mut(id) {
        push_reference(rec, reference);
    }
}

/// The repository part of `name:tag` or `name@digest` (a registry port is not a tag).
pub(super) fn ref_name(r: &str) -> &str {
    if let Some((name, _)) = r.split_once('@') {
        return name;
    }
    match r.rfind(':') {
        Some(i) if !r[i + 1..].contains('/') => &r[..i],
        _ => r,
    }
}
