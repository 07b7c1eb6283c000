//! Files on a backend's volume stores: a host directory locally, a datastore directory on
//! vSphere. The port layer keeps its volumes there (a directory each: the disk and its
//! description) through [`StoreFiles`], so the same volume logic serves both; paths are the
//! store's own (a host path, or `[DATASTORE] path` on vSphere).

use std::io;
use std::path::Path;

use async_trait::async_trait;

/// The few file operations a volume store needs. Every one is bounded by the implementation
/// (a datastore call has a timeout; a read has `max`).
#[async_trait]
pub trait StoreFiles: Send + Sync {
    /// The names in directory `dir`; none when it is not there.
    async fn list(&self, dir: &Path) -> io::Result<Vec<String>>;

    /// Makes directory `dir` and its parents (nothing when it is there).
    async fn make_dir(&self, dir: &Path) -> io::Result<()>;

    /// Reads `file`, failing when it holds more than `max` bytes.
    async fn read(&self, file: &Path, max: usize) -> io::Result<Vec<u8>>;

    /// Writes `file` whole: a reader sees the old content or the new, never a part.
    async fn write(&self, file: &Path, bytes: &[u8]) -> io::Result<()>;

    /// Renames directory `from` to `to`; `AlreadyExists` when `to` is there (it is left).
    async fn rename_dir(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes a directory with all it holds (nothing when it is not there).
    async fn remove_dir(&self, dir: &Path) -> io::Result<()>;

    /// Puts disk `fresh` (made by [`crate::Backend::create_disk`] under the same file name in
    /// a directory beside `disk`'s) in the place of `disk`, as one step.
    async fn replace_disk(&self, fresh: &Path, disk: &Path) -> io::Result<()>;

    /// The file name a volume's disk has in its directory.
    fn disk_name(&self) -> &'static str;

    /// Bytes `disk` holds on its store, where the store can say.
    async fn disk_bytes(&self, disk: &Path) -> Option<u64>;
}

/// Volume stores that are host directories (the local target, and the tests' fake backend).
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalFiles;

#[async_trait]
impl StoreFiles for LocalFiles {
    async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect())
    }

    async fn make_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    async fn read(&self, file: &Path, max: usize) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let mut bytes = Vec::new();
        std::fs::File::open(file)?
            .take(max as u64 + 1)
            .read_to_end(&mut bytes)?;
        if bytes.len() > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} holds more than {max} bytes", file.display()),
            ));
        }
        Ok(bytes)
    }

    async fn write(&self, file: &Path, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let tmp = file.with_file_name(format!("{name}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)?;
        sync_parent(file);
        Ok(())
    }

    async fn rename_dir(&self, from: &Path, to: &Path) -> io::Result<()> {
        sync_dir(from);
        match std::fs::rename(from, to) {
            Ok(()) => {
                sync_parent(to);
                Ok(())
            }
            Err(e) if to.exists() => Err(io::Error::new(io::ErrorKind::AlreadyExists, e)),
            Err(e) => Err(e),
        }
    }

    async fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    async fn replace_disk(&self, fresh: &Path, disk: &Path) -> io::Result<()> {
        std::fs::rename(fresh, disk)
    }

    fn disk_name(&self) -> &'static str {
        "disk.img"
    }

    async fn disk_bytes(&self, disk: &Path) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        // Allocated blocks: the disks are sparse.
        std::fs::metadata(disk).ok().map(|m| m.blocks() * 512)
    }
}

fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
}

fn sync_dir(dir: &Path) {
    if let Err(e) = std::fs::File::open(dir).and_then(|f| f.sync_all()) {
        // Durability is lost, not the operation: say so and go on.
        tracing::warn!("syncing {} failed: {e}", dir.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "vic-store-files-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn a_rename_never_replaces_a_directory_that_is_there() {
        let d = dir();
        let f = LocalFiles;
        f.make_dir(&d.join("a")).await.unwrap();
        f.write(&d.join("a/x"), b"1").await.unwrap();
        f.make_dir(&d.join("b")).await.unwrap();
        f.write(&d.join("b/x"), b"2").await.unwrap();
        let e = f.rename_dir(&d.join("a"), &d.join("b")).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(f.read(&d.join("b/x"), 10).await.unwrap(), b"2");
        f.rename_dir(&d.join("a"), &d.join("c")).await.unwrap();
        let mut names = f.list(&d).await.unwrap();
        names.sort();
        assert_eq!(names, ["b", "c"]);
        f.remove_dir(&d).await.unwrap();
        assert!(f.list(&d).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_read_is_bounded() {
        let d = dir();
        let f = LocalFiles;
        f.write(&d.join("big"), &[7u8; 100]).await.unwrap();
        assert_eq!(f.read(&d.join("big"), 100).await.unwrap().len(), 100);
        let e = f.read(&d.join("big"), 99).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        f.remove_dir(&d).await.unwrap();
    }
}
