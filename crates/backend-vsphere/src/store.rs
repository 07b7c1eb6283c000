//! Volume stores on datastores: the port layer's volume directories (`[ds] path/volumes/…`)
//! through the FileManager, the datastore browser and the datastore's `/folder`.
//!
//! A volume's disk is a flat VMDK, `disk.vmdk` naming its extent `disk-flat.vmdk` beside it
//! (a disk's files are moved together, by `MoveVirtualDisk`).
//!
//! A small file (a volume's description) is written as `NAME.new` and swapped in: the old
//! file deleted, the new one moved in its place. A reader that finds no `NAME` takes
//! `NAME.new` (a swap a crash cut short), and the next write finishes that swap first.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use hypervisor::StoreFiles;
use vim25::datastore::DatastorePath;
use vim25::{Client, MoRef};

use crate::disks;

/// How long one datastore call may take.
const FILE_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest descriptor read (a descriptor is a few hundred bytes).
const DESCRIPTOR_MAX: usize = 64 * 1024;

/// The volume stores' files on the VCH's datacenter.
pub struct DatastoreFiles {
    client: Client,
    datacenter: MoRef,
    datacenter_name: String,
    /// A local directory small files pass through on their way up.
    work_dir: PathBuf,
    browsers: Mutex<HashMap<String, MoRef>>,
}

impl DatastoreFiles {
    pub fn new(
        client: Client,
        datacenter: MoRef,
        datacenter_name: String,
        work_dir: PathBuf,
    ) -> Self {
        DatastoreFiles {
            client,
            datacenter,
            datacenter_name,
            work_dir,
            browsers: Mutex::new(HashMap::new()),
        }
    }

    async fn browser(&self, datastore: &str) -> io::Result<MoRef> {
        if let Some(b) = self.cached_browser(datastore) {
            return Ok(b);
        }
        let b = (self.client)
            .datastore_browser(&self.datacenter_name, datastore)
            .await
            .map_err(to_io)?;
        let mut map = self.browsers.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(datastore.to_string(), b.clone());
        Ok(b)
    }

    fn cached_browser(&self, datastore: &str) -> Option<MoRef> {
        let map = self.browsers.lock().unwrap_or_else(|e| e.into_inner());
        map.get(datastore).cloned()
    }

    async fn download(&self, file: &DatastorePath, max: usize) -> io::Result<Vec<u8>> {
        (self.client)
            .download(&self.datacenter_name, file, max, FILE_TIMEOUT)
            .await
            .map_err(to_io)
    }

    /// Uploads `bytes` as `to`, through a file of the work directory.
    async fn upload_bytes(&self, bytes: &[u8], to: &DatastorePath) -> io::Result<()> {
        std::fs::create_dir_all(&self.work_dir)?;
        let local = self
            .work_dir
            .join(format!("upload-{:016x}", rand::random::<u64>()));
        std::fs::write(&local, bytes)?;
        let result = (self.client)
            .upload(&self.datacenter_name, &local, to, FILE_TIMEOUT)
            .await
            .map_err(to_io);
        let _ = std::fs::remove_file(&local);
        result
    }

    async fn delete(&self, file: &DatastorePath) -> io::Result<()> {
        match (self.client)
            .delete_datastore_file(&self.datacenter, file, FILE_TIMEOUT)
            .await
        {
            Err(e) if e.fault() == Some("FileNotFound") => Ok(()),
            r => r.map_err(to_io),
        }
    }

    async fn rename(&self, from: &DatastorePath, to: &DatastorePath) -> io::Result<()> {
        (self.client)
            .move_datastore_file(&self.datacenter, from, to, FILE_TIMEOUT)
            .await
            .map_err(to_io)
    }

    /// Finishes a swap of `file` a crash cut short: `NAME.new` is there and `NAME` is not.
    async fn settle(&self, file: &DatastorePath, new: &DatastorePath) -> io::Result<()> {
        match self.download(file, 1).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => match self.rename(new, file).await {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r,
            },
            _ => Ok(()),
        }
    }
}

/// `file` on a datastore: `[DS] path` as the port layer holds it.
fn ds(file: &Path) -> io::Result<DatastorePath> {
    (file.to_str())
        .and_then(DatastorePath::parse)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a datastore path", file.display()),
            )
        })
}

fn with_suffix(file: &DatastorePath, suffix: &str) -> DatastorePath {
    DatastorePath::new(&file.datastore, &format!("{}{suffix}", file.path))
}

fn to_io(e: vim25::Error) -> io::Error {
    let kind = match e.fault() {
        Some("FileNotFound") => io::ErrorKind::NotFound,
        Some("FileAlreadyExists") => io::ErrorKind::AlreadyExists,
        _ if matches!(e, vim25::Error::Timeout { .. }) => io::ErrorKind::TimedOut,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e.to_string())
}

#[async_trait]
impl StoreFiles for DatastoreFiles {
    async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let dir = ds(dir)?;
        let browser = self.browser(&dir.datastore).await?;
        match (self.client)
            .list_directory(&browser, &dir, FILE_TIMEOUT)
            .await
            .map_err(to_io)
        {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            r => r,
        }
    }

    async fn make_dir(&self, dir: &Path) -> io::Result<()> {
        match (self.client)
            .make_directory(&self.datacenter, &ds(dir)?)
            .await
            .map_err(to_io)
        {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            r => r,
        }
    }

    async fn read(&self, file: &Path, max: usize) -> io::Result<Vec<u8>> {
        let file = ds(file)?;
        match self.download(&file, max).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.download(&with_suffix(&file, ".new"), max).await
            }
            r => r,
        }
    }

    async fn write(&self, file: &Path, bytes: &[u8]) -> io::Result<()> {
        let file = ds(file)?;
        let new = with_suffix(&file, ".new");
        self.settle(&file, &new).await?;
        self.upload_bytes(bytes, &new).await?;
        self.delete(&file).await?;
        self.rename(&new, &file).await
    }

    async fn rename_dir(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.rename(&ds(from)?, &ds(to)?).await
    }

    async fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        self.delete(&ds(dir)?).await
    }

    async fn replace_disk(&self, fresh: &Path, disk: &Path) -> io::Result<()> {
        (self.client)
            .replace_virtual_disk(&self.datacenter, &ds(fresh)?, &ds(disk)?, FILE_TIMEOUT)
            .await
            .map_err(to_io)
    }

    fn disk_name(&self) -> &'static str {
        "disk.vmdk"
    }

    async fn disk_bytes(&self, disk: &Path) -> Option<u64> {
        // A flat disk takes its whole capacity on the datastore.
        let text = self.download(&ds(disk).ok()?, DESCRIPTOR_MAX).await.ok()?;
        disks::capacity(&String::from_utf8_lossy(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_on_their_datastore() {
        let d = ds(Path::new("[ds1] vch/volumes/v1/disk.vmdk")).unwrap();
        assert_eq!(
            with_suffix(&d, ".new").to_string(),
            "[ds1] vch/volumes/v1/disk.vmdk.new"
        );
        assert!(ds(Path::new("/var/lib/vols")).is_err());
    }
}
