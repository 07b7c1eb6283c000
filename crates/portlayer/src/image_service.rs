//! The VCH's images as the API personality uses them: the one door for what changes an image
//! or has to be told about it. Removing one takes the backend's disks made from it, then the
//! store's record and files, then tells `/events`, once for `rmi` and `image prune` alike;
//! tagging and untagging tell `/events`; a container is admitted only while the storage is
//! within its quota; and pulls, pushes, loads, imports and saves are reported here, typed, so
//! no personality publishes an image event of its own making.
//!
//! ```text
//!   docker-api ── tag / untag / remove / admit_container / record(ImageEvent) ──► ImageService
//!                                                 │ store (imagec), storage (quota),
//!                                                 ▼ containers (in use, backend disks, events)
//! ```
//!
//! Reads (list, inspect, history, find) go to the store itself ([`ImageService::store`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use imagec::reference::Reference;
use imagec::store::{ImageStore, StoreError};

use crate::container::ContainerRecord;
use crate::storage::{QuotaError, Storage, Usage};
use crate::{Containers, Error};

/// What happened to an image that the service did not do itself.
#[derive(Debug, Clone, Copy)]
pub enum ImageEvent<'a> {
    Pull(&'a Reference),
    Push(&'a Reference),
    /// An image (by ID) came in from a `docker load` archive.
    Load(&'a str),
    /// An image (by ID) was made from a root filesystem tarball.
    Import(&'a str),
    /// An image (by ID) went out in a `docker save` archive.
    Save(&'a str),
}

impl ImageEvent<'_> {
    /// Docker's action and actor for it.
    fn action_and_actor(&self) -> (&'static str, String) {
        match self {
            ImageEvent::Pull(r) => ("pull", r.to_string()),
            ImageEvent::Push(r) => ("push", r.to_string()),
            ImageEvent::Load(id) => ("load", id.to_string()),
            ImageEvent::Import(id) => ("import", id.to_string()),
            ImageEvent::Save(id) => ("save", id.to_string()),
        }
    }
}

/// See the module's documentation.
#[derive(Clone)]
pub struct ImageService {
    store: Arc<ImageStore>,
    containers: Containers,
    storage: Arc<Storage>,
}

impl ImageService {
    pub fn new(store: Arc<ImageStore>, containers: Containers, storage: Arc<Storage>) -> Self {
        ImageService {
            store,
            containers,
            storage,
        }
    }

    /// The image store, for reads.
    pub fn store(&self) -> &Arc<ImageStore> {
        &self.store
    }

    /// The VCH's storage: its quota and volume stores.
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// What images, containers and volumes use now.
    pub fn usage(&self) -> Usage {
        self.storage.usage(self.store.usage())
    }

    /// Refuses a new container while the VCH's storage is over its quota (VIC's rule).
    pub fn admit_container(&self) -> Result<(), QuotaError> {
        self.storage.check(self.usage(), 0)
    }

    /// A container that uses image `id`, if any.
    pub fn in_use(&self, id: &str) -> Option<ContainerRecord> {
        self.containers.image_in_use(id)
    }

    /// Tags image `id` as `reference` and tells `/events` (`tag`, with the new name).
    pub fn tag(&self, id: &str, reference: &Reference) -> Result<(), StoreError> {
        self.store.tag(id, reference)?;
        self.publish("tag", id, Some(reference));
        Ok(())
    }

    /// Removes the name `reference`; when it named an image, tells `/events` (`untag`, with
    /// the name) and returns the image's ID.
    pub fn untag(&self, reference: &Reference) -> Result<Option<String>, StoreError> {
        let id = self.store.untag(reference)?;
        if let Some(id) = &id {
            self.publish("untag", id, Some(reference));
        }
        Ok(id)
    }

    /// Removes image `id`: first what the backend made from it (a base disk; a failure there
    /// is logged, and the disk is the backend's to sweep), then the image's record and files,
    /// then the `delete` event. Whether it may go (Docker's conflicts) is the caller's call.
    pub async fn remove(&self, id: &str) -> Result<(), Error> {
        self.containers.remove_base_disk(id).await;
        self.store.remove(id)?;
        self.publish("delete", id, None);
        Ok(())
    }

    /// Tells `/events` what happened to an image elsewhere.
    pub fn record(&self, event: ImageEvent<'_>) {
        let (action, actor) = event.action_and_actor();
        self.publish(action, &actor, None);
    }

    fn publish(&self, action: &str, actor: &str, name: Option<&Reference>) {
        let attrs: BTreeMap<String, String> = name
            .map(|r| [("name".to_string(), r.to_string())].into())
            .unwrap_or_default();
        self.containers
            .events()
            .publish("image", action, actor, attrs);
    }
}
