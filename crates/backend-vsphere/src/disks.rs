//! Images' base disks and containers' root disks on the image datastore, in VIC's layout:
//!
//! ```text
//!   [ds] <image store>/<image>/<image>.vmdk        the descriptor, uploaded last (the commit point)
//!   [ds] <image store>/<image>/<image>-flat.vmdk   the image's ext4 file system, raw
//!   [ds] <vm>/<vm>.vmdk                             a container's root disk: a child delta of it
//! ```
//!
//! A base disk is built by the appliance from the image's unpacked tree (`mke2fs -d`, as the
//! local backend builds its own) and uploaded through the datastore's `/folder` as a flat disk.
//! The descriptor goes up after the extent is complete, so a disk with a descriptor is whole;
//! an extent without one (a crash between the two) is overwritten by the next attempt.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hypervisor::BackendError;
use vim25::datastore::DatastorePath;

use crate::{vsphere_err, VsphereBackend};

/// How long one upload of a base disk may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long a datastore file operation may take.
const FILE_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest descriptor read back (a descriptor is a few hundred bytes).
const DESCRIPTOR_MAX: usize = 64 * 1024;
const SECTOR: u64 = 512;

/// Locks held while an image's base disk is made or removed.
#[derive(Default)]
pub struct ImageLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl ImageLocks {
    fn get(&self, image: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(image.to_string()).or_default().clone()
    }
}

/// The descriptor of a monolithic flat disk of `bytes` whose one extent is `extent`, beside it.
pub fn descriptor(extent: &str, bytes: u64, cid: u32) -> String {
    let sectors = bytes / SECTOR;
    let cylinders = (sectors / (255 * 63)).max(1);
    format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         encoding=\"UTF-8\"\n\
         CID={cid:08x}\n\
         parentCID=ffffffff\n\
         createType=\"vmfs\"\n\
         \n\
         # Extent description\n\
         RW {sectors} VMFS \"{extent}\"\n\
         \n\
         # The Disk Data Base\n\
         #DDB\n\
         \n\
         ddb.adapterType = \"lsilogic\"\n\
         ddb.geometry.cylinders = \"{cylinders}\"\n\
         ddb.geometry.heads = \"255\"\n\
         ddb.geometry.sectors = \"63\"\n\
         ddb.virtualHWVersion = \"11\"\n"
    )
}

/// The capacity in bytes a descriptor declares (the sum of its extents); `None` when the
/// text is not a disk descriptor.
pub fn capacity(descriptor: &str) -> Option<u64> {
    if !descriptor.starts_with("# Disk DescriptorFile") {
        return None;
    }
    let mut sectors = 0u64;
    let mut extents = 0;
    for line in descriptor.lines() {
        let mut words = line.split_whitespace();
        if !matches!(words.next(), Some("RW" | "RDONLY")) {
            continue;
        }
        sectors = sectors.checked_add(words.next()?.parse::<u64>().ok()?)?;
        extents += 1;
    }
    (extents > 0).then(|| sectors.checked_mul(SECTOR)).flatten()
}

/// An image's name on the datastore: its ID with the characters a datastore path should not
/// carry replaced.
fn disk_name(image_id: &str) -> Result<String, BackendError> {
    let ok = !image_id.is_empty()
        && !image_id.starts_with('.')
        && (image_id.chars())
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if !ok {
        return Err(BackendError::Failed(format!(
            "invalid image id {image_id:?}"
        )));
    }
    Ok(image_id.replace(':', "-"))
}

impl VsphereBackend {
    fn image_dir(&self, name: &str) -> DatastorePath {
        let store = &self.cfg.image_store;
        DatastorePath::new(&store.datastore, &format!("{}/{name}", store.path))
    }

    /// The datastore path of image `image_id`'s base disk (its descriptor).
    pub(crate) fn base_disk(&self, image_id: &str) -> Result<DatastorePath, BackendError> {
        let name = disk_name(image_id)?;
        let dir = self.image_dir(&name);
        Ok(DatastorePath::new(
            &dir.datastore,
            &format!("{}/{name}.vmdk", dir.path),
        ))
    }

    /// The capacity of image `image_id`'s base disk, `None` when it has none (or half of one).
    pub(crate) async fn base_capacity(&self, image_id: &str) -> Result<Option<u64>, BackendError> {
        let path = self.base_disk(image_id)?;
        let client = &self.cfg.client;
        match (client.download(
            &self.cfg.datacenter_name,
            &path,
            DESCRIPTOR_MAX,
            FILE_TIMEOUT,
        ))
        .await
        {
            Ok(bytes) => Ok(capacity(&String::from_utf8_lossy(&bytes))),
            Err(e) if e.fault() == Some("FileNotFound") => Ok(None),
            Err(e) => Err(vsphere_err("reading an image's disk descriptor")(e)),
        }
    }

    pub(crate) async fn prepare(&self, image_id: &str, rootfs: &Path) -> Result<(), BackendError> {
        let lock = self.images.get(image_id);
        let _held = lock.lock().await;
        if self.base_capacity(image_id).await?.is_some() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let name = disk_name(image_id)?;
        let work = &self.cfg.work_dir;
        std::fs::create_dir_all(work).map_err(|source| BackendError::Io {
            context: format!("creating {}", work.display()),
            source,
        })?;
        let local = work.join(format!("{name}-flat.vmdk"));
        ext4_image::build(&self.cfg.mke2fs, rootfs, &local).await?;
        let result = self.upload_base(&name, &local).await;
        let _ = std::fs::remove_file(&local);
        if let Err(e) = result {
            let dir = self.image_dir(&name);
            let dc = &self.cfg.datacenter;
            if let Err(e) = self
                .cfg
                .client
                .delete_datastore_file(dc, &dir, FILE_TIMEOUT)
                .await
            {
                tracing::warn!(
                    image = image_id,
                    "removing the half-uploaded base disk {dir}: {e}"
                );
            }
            return Err(e);
        }
        tracing::info!(image = image_id, elapsed = ?started.elapsed(), "base disk uploaded");
        Ok(())
    }

    /// Uploads the base disk built at `local` as `<name>-flat.vmdk`, then its descriptor.
    async fn upload_base(&self, name: &str, local: &Path) -> Result<(), BackendError> {
        let dir = self.image_dir(name);
        (self.cfg.client)
            .make_directory(&self.cfg.datacenter, &dir)
            .await
            .map_err(vsphere_err("making the image's directory"))?;
        let at = DatastorePath::new(&dir.datastore, &format!("{}/{name}.vmdk", dir.path));
        self.upload_flat(local, &at, &format!("{name}-flat.vmdk"))
            .await
    }

    /// Uploads the raw disk at `local` as the extent `extent` beside `at`, then `at`, its
    /// descriptor: a disk whose descriptor is there is whole.
    async fn upload_flat(
        &self,
        local: &Path,
        at: &DatastorePath,
        extent: &str,
    ) -> Result<(), BackendError> {
        let client = &self.cfg.client;
        let dc = &self.cfg.datacenter_name;
        let dir = at.path.rsplit_once('/').map_or("", |(d, _)| d);
        let extent_at = DatastorePath::new(&at.datastore, &format!("{dir}/{extent}"));
        client
            .upload(dc, local, &extent_at, UPLOAD_TIMEOUT)
            .await
            .map_err(vsphere_err("uploading a disk"))?;
        let bytes = std::fs::metadata(local)
            .map_err(|source| BackendError::Io {
                context: format!("reading {}", local.display()),
                source,
            })?
            .len();
        let desc = local.with_extension("descriptor");
        std::fs::write(&desc, descriptor(extent, bytes, rand::random())).map_err(|source| {
            BackendError::Io {
                context: format!("writing {}", desc.display()),
                source,
            }
        })?;
        let result = client
            .upload(dc, &desc, at, FILE_TIMEOUT)
            .await
            .map_err(vsphere_err("uploading a disk's descriptor"));
        let _ = std::fs::remove_file(&desc);
        result
    }

    /// A volume's disk at `path` (`[ds] …/disk.vmdk`): built here (ext4, `capacity_mib`,
    /// holding `seed`), then uploaded as a flat disk (`disk-flat.vmdk` beside it).
    pub(crate) async fn create_volume_disk(
        &self,
        path: &Path,
        capacity_mib: u64,
        seed: Option<&Path>,
    ) -> Result<(), BackendError> {
        let at = (path.to_str())
            .and_then(DatastorePath::parse)
            .filter(|p| p.path.ends_with(".vmdk"))
            .ok_or_else(|| {
                BackendError::Failed(format!("{} is not a disk on a datastore", path.display()))
            })?;
        let stem = at.path.rsplit('/').next().unwrap_or_default();
        let stem = stem.trim_end_matches(".vmdk");
        let work = &self.cfg.work_dir;
        std::fs::create_dir_all(work).map_err(|source| BackendError::Io {
            context: format!("creating {}", work.display()),
            source,
        })?;
        let local = work.join(format!("volume-{:016x}.raw", rand::random::<u64>()));
        ext4_image::create_volume(&self.cfg.mke2fs, &local, capacity_mib, seed).await?;
        let result = (self.upload_flat(&local, &at, &format!("{stem}-flat.vmdk"))).await;
        let _ = std::fs::remove_file(&local);
        result
    }

    pub(crate) async fn remove_base(&self, image_id: &str) -> Result<(), BackendError> {
        let lock = self.images.get(image_id);
        let _held = lock.lock().await;
        let inventory = self.inventory().await?;
        if let Some((vm, _)) =
            (inventory.iter()).find(|(_, v)| v.image.as_deref() == Some(image_id))
        {
            return Err(BackendError::Failed(format!(
                "the image {image_id} is in use by VM {vm}"
            )));
        }
        let dir = self.image_dir(&disk_name(image_id)?);
        match (self.cfg.client)
            .delete_datastore_file(&self.cfg.datacenter, &dir, FILE_TIMEOUT)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.fault() == Some("FileNotFound") => Ok(()),
            Err(e) => Err(vsphere_err("removing the image's disk")(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_declares_the_extent_and_its_capacity() {
        let d = descriptor("x-flat.vmdk", 1 << 30, 0x1234);
        assert!(d.contains("RW 2097152 VMFS \"x-flat.vmdk\""), "{d}");
        assert!(d.contains("CID=00001234"), "{d}");
        assert_eq!(capacity(&d), Some(1 << 30));
    }

    #[test]
    fn capacity_refuses_what_is_not_a_descriptor() {
        assert_eq!(capacity(""), None);
        assert_eq!(capacity("<html>404</html>"), None);
        assert_eq!(capacity("# Disk DescriptorFile\nversion=1\n"), None);
        assert_eq!(
            capacity("# Disk DescriptorFile\nRW lots VMFS \"a\"\n"),
            None
        );
        let huge = format!("# Disk DescriptorFile\nRW {} VMFS \"a\"\n", u64::MAX);
        assert_eq!(capacity(&huge), None);
        let two = "# Disk DescriptorFile\nRW 10 VMFS \"a\"\nRDONLY 6 VMFS \"b\"\n";
        assert_eq!(capacity(two), Some(16 * 512));
    }

    #[test]
    fn image_names_on_the_datastore_are_checked_and_have_no_colon() {
        assert_eq!(disk_name("sha256:ab12").unwrap(), "sha256-ab12");
        for bad in ["", ".x", "a/b", "a b", "../x", "a]b"] {
            assert!(disk_name(bad).is_err(), "{bad:?}");
        }
    }
}
