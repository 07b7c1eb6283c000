//! Volumes: disks of their own on the VCH's volume stores, as VIC made them. The store is the
//! truth, not the appliance's database: a volume is a directory holding its disk and its
//! description, so it outlives the containers that used it, the appliance, and the VCH
//! itself (a new VCH given the same store finds its volumes).
//!
//! ```text
//!  <store>/volumes/<name>/disk.img       the volume's disk (backend-made: ext4, sparse)
//!  <store>/volumes/<name>/volume.json    what `docker volume inspect` shows, and who made it
//!  <store>/volumes/.new-<vch>-<rand>/    a volume being made: renamed to <name> when whole
//!  <store>/volumes/.gone-<vch>-<rand>/   a volume being removed
//! ```
//!
//! Both renames are atomic, so a crash leaves either a whole volume or a dot-directory, which
//! the VCH that made it sweeps when it next starts (another VCH sharing the store leaves it).
//!
//! A shared store (NFS-style, VIC's `nfs://` volume stores) would fit here as a second kind
//! of store whose volumes are directories the backend shares into the VM instead of disks:
//! the same layout, with `disk.img` replaced by a `data/` directory, and no one-writer rule.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::storage::VolumeStore;

mod spec;
#[cfg(test)]
mod tests;

pub use spec::{parse_capacity, VolumeSpec, DEFAULT_CAPACITY_MIB, DEFAULT_STORE};

/// The disk's file name in a volume's directory.
pub const DISK: &str = "disk.img";
const META: &str = "volume.json";

/// A volume, as its store describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    /// `vsphere` (VIC's) or `local`: the same disk either way.
    pub driver: String,
    /// The label of the volume store holding it.
    pub store: String,
    pub capacity_mib: u64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The options it was created with, as given.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub created: DateTime<Utc>,
    /// Made for a container (`-v /path`, an image's `VOLUME`), not by name.
    #[serde(default)]
    pub anonymous: bool,
    /// The VCH that made it.
    #[serde(default)]
    pub vch: String,
    /// An anonymous volume's container while that container holds it: a crash between
    /// making the volume and storing the container leaves a volume whose container is not
    /// there, which its VCH removes when it next starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Some container has used it: content is copied from an image only into a volume that
    /// none has.
    #[serde(default)]
    pub used: bool,
    /// Its disk.
    #[serde(skip)]
    pub disk: PathBuf,
}

/// Errors of volume operations, worded as Docker words them.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("get {0}: no such volume")]
    NoSuch(String),
    #[error("remove {name}: volume is in use - [{}]", ids.join(", "))]
    InUse { name: String, ids: Vec<String> },
    #[error("No volume store named ({0}) exists")]
    NoStore(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(context: String) -> impl FnOnce(io::Error) -> VolumeError {
    move |source| VolumeError::Io { context, source }
}

/// A volume being made: its directory until [`Volumes::commit`] names it.
#[derive(Debug)]
pub struct Pending {
    dir: PathBuf,
    pub volume: Volume,
}

impl Pending {
    /// Where the backend makes the disk.
    pub fn disk(&self) -> PathBuf {
        self.dir.join(DISK)
    }
}

/// The volumes on a VCH's stores.
pub struct Volumes {
    vch: String,
    stores: Vec<VolumeStore>,
    index: Mutex<BTreeMap<String, Volume>>,
}

impl Volumes {
    /// Reads every store, sweeping what a crash of this VCH left half made or half removed.
    /// A volume whose description cannot be read is left where it is, with a log line.
    pub fn open(vch: &str, stores: Vec<VolumeStore>) -> Volumes {
        let mut index = BTreeMap::new();
        for store in &stores {
            for v in scan(vch, store) {
                if let Some(other) = index.get(&v.name) {
                    let other: &Volume = other;
                    tracing::warn!(
                        volume = v.name,
                        store = store.label,
                        "a volume of the same name is on store {}: this one is not used",
                        other.store
                    );
                    continue;
                }
                index.insert(v.name.clone(), v);
            }
        }
        Volumes {
            vch: vch.to_string(),
            stores,
            index: Mutex::new(index),
        }
    }

    fn index(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Volume>> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, name: &str) -> Result<Volume, VolumeError> {
        self.index()
            .get(name)
            .cloned()
            .ok_or_else(|| VolumeError::NoSuch(name.to_string()))
    }

    /// Every volume, by name.
    pub fn list(&self) -> Vec<Volume> {
        self.index().values().cloned().collect()
    }

    /// Starts making the volume `spec` describes (named, or anonymous for `container`): its
    /// directory on the store, with its description; the caller makes the disk in it, then
    /// commits or abandons it.
    pub fn begin(
        &self,
        spec: &VolumeSpec,
        container: Option<&str>,
    ) -> Result<Pending, VolumeError> {
        let store = self
            .stores
            .iter()
            .find(|s| s.label == spec.store)
            .ok_or_else(|| VolumeError::NoStore(spec.store.clone()))?;
        let anonymous = spec.name.is_empty();
        let name = if anonymous {
            random_hex(32)
        } else {
            spec.name.clone()
        };
        let root = store.dir.join("volumes");
        std::fs::create_dir_all(&root).map_err(io_err(format!("creating {}", root.display())))?;
        let dir = root.join(format!(".new-{}-{}", self.vch, random_hex(8)));
        std::fs::create_dir(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let volume = Volume {
            name: name.clone(),
            driver: spec.driver.clone(),
            store: store.label.clone(),
            capacity_mib: spec.capacity_mib,
            labels: spec.labels.clone(),
            options: spec.options.clone(),
            created: Utc::now(),
            anonymous,
            vch: self.vch.clone(),
            container: container.filter(|_| anonymous).map(str::to_string),
            used: false,
            disk: root.join(&name).join(DISK),
        };
        if let Err(e) = write_meta(&dir, &volume) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(Pending { dir, volume })
    }

    /// Names a volume whose disk is made; `None` when another of its name was made first
    /// (this one is removed).
    pub fn commit(&self, p: Pending) -> Result<Option<Volume>, VolumeError> {
        let target = p
            .volume
            .disk
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        sync_dir(&p.dir);
        match std::fs::rename(&p.dir, &target) {
            Ok(()) => {}
            Err(e) if target.exists() => {
                tracing::debug!("volume {} was made meanwhile: {e}", p.volume.name);
                let _ = std::fs::remove_dir_all(&p.dir);
                return Ok(None);
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&p.dir);
                return Err(io_err(format!("naming {}", target.display()))(e));
            }
        }
        if let Some(root) = target.parent() {
            sync_dir(root);
        }
        self.index().insert(p.volume.name.clone(), p.volume.clone());
        Ok(Some(p.volume))
    }

    /// Drops a volume whose disk could not be made.
    pub fn abandon(&self, p: Pending) {
        let _ = std::fs::remove_dir_all(&p.dir);
    }

    /// Records a change to `name`'s description (`used`, `container`).
    pub fn update(&self, name: &str, f: impl FnOnce(&mut Volume)) -> Result<Volume, VolumeError> {
        let mut index = self.index();
        let v = index
            .get_mut(name)
            .ok_or_else(|| VolumeError::NoSuch(name.to_string()))?;
        let mut changed = v.clone();
        f(&mut changed);
        if changed != *v {
            let dir = changed
                .disk
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            write_meta(&dir, &changed)?;
            *v = changed;
        }
        Ok(v.clone())
    }

    /// Replaces `name`'s disk with `disk` (made beside it), as one rename.
    pub fn replace_disk(&self, name: &str, disk: &Path) -> Result<(), VolumeError> {
        let v = self.get(name)?;
        std::fs::rename(disk, &v.disk).map_err(io_err(format!("replacing {}", v.disk.display())))
    }

    /// Removes the volume and its disk: out of sight at once (one rename), then deleted.
    pub fn remove(&self, name: &str) -> Result<Volume, VolumeError> {
        let v = self.get(name)?;
        let dir = v.disk.parent().map(Path::to_path_buf).unwrap_or_default();
        let gone = dir.with_file_name(format!(".gone-{}-{}", self.vch, random_hex(8)));
        std::fs::rename(&dir, &gone).map_err(io_err(format!("removing {}", dir.display())))?;
        self.index().remove(name);
        if let Some(root) = gone.parent() {
            sync_dir(root);
        }
        if let Err(e) = std::fs::remove_dir_all(&gone) {
            tracing::warn!("removing {} failed: {e}", gone.display());
        }
        Ok(v)
    }
}

/// The volumes of one store; dot-directories of `vch` are swept.
fn scan(vch: &str, store: &VolumeStore) -> Vec<Volume> {
    let root = store.dir.join("volumes");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mine = [format!(".new-{vch}-"), format!(".gone-{vch}-")];
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            if mine.iter().any(|p| name.starts_with(p)) {
                tracing::info!(
                    store = store.label,
                    "removing {name}, which a crash left behind"
                );
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    tracing::warn!("removing {} failed: {err}", e.path().display());
                }
            }
            continue;
        }
        match read_meta(&e.path()) {
            Ok(mut v) if v.name == name => {
                v.disk = e.path().join(DISK);
                v.store = store.label.clone();
                out.push(v);
            }
            Ok(v) => tracing::warn!(
                "{} describes a volume named {}: left alone",
                e.path().display(),
                v.name
            ),
            Err(err) => {
                tracing::warn!("{} is not a volume ({err}): left alone", e.path().display())
            }
        }
    }
    out
}

/// Bytes a disk holds on its store (its allocated blocks: disks are sparse).
pub fn disk_bytes(disk: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(disk)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

fn read_meta(dir: &Path) -> io::Result<Volume> {
    let bytes = std::fs::read(dir.join(META))?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Writes the description durably: a new file renamed over the old.
fn write_meta(dir: &Path, v: &Volume) -> Result<(), VolumeError> {
    let tmp = dir.join(format!("{META}.tmp"));
    let json = serde_json::to_vec_pretty(v).map_err(|e| VolumeError::Invalid(e.to_string()))?;
    let write = || -> io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(META))
    };
    write().map_err(io_err(format!("writing {}", dir.join(META).display())))?;
    sync_dir(dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Err(e) = std::fs::File::open(dir).and_then(|f| f.sync_all()) {
        tracing::warn!("syncing {} failed: {e}", dir.display());
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}
