//! Images as the port layer sees them: which container uses one, and removing one, which
//! takes the backend's disks made from it, the store's record and files, and tells `/events`.
//! The personality decides whether an image may go (Docker's conflicts); the sequence is here,
//! once, for `rmi` and `image prune` alike.

use imagec::store::ImageStore;

use super::{Containers, Error};
use crate::container::ContainerRecord;

impl Containers {
    /// A container that uses the image, if any.
    pub fn image_in_use(&self, image_id: &str) -> Option<ContainerRecord> {
        self.records()
            .values()
            .find(|r| r.spec.image_id == image_id)
            .cloned()
    }

    /// Removes image `id` from `store`: first what the backend made from it (a base disk; a
    /// failure there is logged, and the disk is the backend's to sweep), then the image's
    /// record and files, then the `delete` event.
    pub async fn remove_image(&self, store: &ImageStore, id: &str) -> Result<(), Error> {
        if let Err(e) = self.inner.backend.remove_image(id).await {
            tracing::warn!("removing the base disk of {id}: {e}");
        }
        store.remove(id)?;
        self.inner
            .events
            .publish("image", "delete", id, Default::default());
        Ok(())
    }

    /// The backend's short name (`docker info`'s driver is `vic-<name>`).
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// One line on the backend (its accelerator, its hypervisor's version).
    pub fn backend_description(&self) -> String {
        self.inner.backend.describe()
    }
}
