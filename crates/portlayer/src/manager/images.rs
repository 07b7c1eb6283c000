//! What the containers' side knows of images: which container uses one, the backend's disks
//! made from one (the removal sequence is [`crate::ImageService`]'s), and the backend's name.

use super::Containers;
use crate::container::ContainerRecord;

impl Containers {
    /// A container that uses the image, if any.
    pub fn image_in_use(&self, image_id: &str) -> Option<ContainerRecord> {
        self.records()
            .values()
            .find(|r| r.spec.image_id == image_id)
            .cloned()
    }

    /// Removes what the backend made from image `id` (a base disk). A failure is logged, not
    /// returned: the disk is the backend's to sweep, and the image goes regardless.
    pub(crate) async fn remove_base_disk(&self, id: &str) {
        if let Err(e) = self.inner.backend.remove_image(id).await {
            tracing::warn!("removing the base disk of {id}: {e}");
        }
    }

    /// The backend's short name (`docker info`'s driver is `vic-<name>`).
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// One line on the backend (its accelerator, its hypervisor's version).
    pub fn backend_description(&self) -> String {
        self.inner.backend.describe()
    }

    /// How its container VMs start (booted, or restored from templates).
    pub fn start_path(&self) -> String {
        self.inner.backend.start_path()
    }

    /// Where container `id`'s VM console is written, if the backend keeps it in a file.
    pub fn console_log(&self, id: &str) -> Option<std::path::PathBuf> {
        self.inner.backend.console_log(id)
    }
}
