//! Volumes: disks of their own on the VCH's volume stores, as VIC made them. The store is the
//! truth, not the appliance's database: a volume is a directory holding its disk and its
//! description, so it outlives the containers that used it, the appliance, and the VCH
//! itself (a new VCH given the same store finds its volumes).
//!
//! ```text
//!  <store>/volumes/<name>/disk.img       the volume's disk (backend-made ext4: a sparse file
//!                                        locally, disk.vmdk on a datastore)
//!  <store>/volumes/<name>/volume.json    what `docker volume inspect` shows, and who made it
//!  <store>/volumes/<name>/.seeding/      a disk filled from an image, before it replaces the
//!                                        empty one (a volume's first use)
//!  <store>/volumes/.new-<vch>-<rand>/    a volume being made: renamed to <name> when whole
//!  <store>/volumes/.gone-<vch>-<rand>/   a volume being removed
//! ```
//!
//! Both renames are atomic, so a crash leaves either a whole volume or a dot-directory, which
//! the VCH that made it sweeps when it next starts (another VCH sharing the store leaves it).
//! The store's files are the backend's ([`hypervisor::StoreFiles`]): host directories on the
//! local target, datastore directories on vSphere, where the renames are `MoveDatastoreFile`s
//! that never replace what is there.
//!
//! A shared store (NFS-style, VIC's `nfs://` volume stores) would fit here as a second kind
//! of store whose volumes are directories the backend shares into the VM instead of disks:
//! the same layout, with `disk.img` replaced by a `data/` directory, and no one-writer rule.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use hypervisor::StoreFiles;
use serde::{Deserialize, Serialize};

use crate::storage::VolumeStore;

mod spec;
#[cfg(test)]
mod tests;

pub use spec::{parse_capacity, VolumeSpec, DEFAULT_CAPACITY_MIB, DEFAULT_STORE};

const META: &str = "volume.json";
/// Where a volume's disk is made anew before it replaces the old one.
const SEEDING: &str = ".seeding";
/// The most a volume's description may hold (it is read from a store others can write).
const META_MAX: usize = 256 << 10;

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
    /// A driver vic does not have: not found, as dockerd finds no plugin of that name.
    #[error(
        "error looking up volume plugin {0}: plugin \"{0}\" not found (vic's drivers are vsphere and local)"
    )]
    NoPlugin(String),
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
    disk_name: &'static str,
    pub volume: Volume,
}

impl Pending {
    /// Where the backend makes the disk.
    pub fn disk(&self) -> PathBuf {
        self.dir.join(self.disk_name)
    }
}

/// The volumes on a VCH's stores.
pub struct Volumes {
    vch: String,
    stores: Vec<VolumeStore>,
    files: Arc<dyn StoreFiles>,
    index: Mutex<BTreeMap<String, Volume>>,
    /// Orders changes to a volume's description (read, change, write).
    writes: tokio::sync::Mutex<()>,
}

impl Volumes {
    /// Reads every store, sweeping what a crash of this VCH left half made or half removed.
    /// A volume whose description cannot be read is left where it is, with a log line.
    pub async fn open(vch: &str, stores: Vec<VolumeStore>, files: Arc<dyn StoreFiles>) -> Volumes {
        let mut index = BTreeMap::new();
        for store in &stores {
            for v in scan(vch, store, files.as_ref()).await {
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
            files,
            index: Mutex::new(index),
            writes: tokio::sync::Mutex::new(()),
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

    /// Bytes a volume's disk holds on its store (0 where the store cannot say).
    pub async fn disk_bytes(&self, v: &Volume) -> u64 {
        self.files.disk_bytes(&v.disk).await.unwrap_or(0)
    }

    /// Starts making the volume `spec` describes (named, or anonymous for `container`): its
    /// directory on the store, with its description; the caller makes the disk in it, then
    /// commits or abandons it.
    pub async fn begin(
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
        let dir = root.join(format!(".new-{}-{}", self.vch, random_hex(8)));
        (self.files.make_dir(&dir).await).map_err(io_err(format!("creating {}", dir.display())))?;
        let disk_name = self.files.disk_name();
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
            disk: root.join(&name).join(disk_name),
        };
        if let Err(e) = self.write_meta(&dir, &volume).await {
            self.remove_quietly(&dir).await;
            return Err(e);
        }
        Ok(Pending {
            dir,
            disk_name,
            volume,
        })
    }

    /// Names a volume whose disk is made; `None` when another of its name was made first
    /// (this one is removed).
    pub async fn commit(&self, p: Pending) -> Result<Option<Volume>, VolumeError> {
        let target = dir_of(&p.volume);
        match self.files.rename_dir(&p.dir, &target).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                tracing::debug!("volume {} was made meanwhile: {e}", p.volume.name);
                self.remove_quietly(&p.dir).await;
                return Ok(None);
            }
            Err(e) => {
                self.remove_quietly(&p.dir).await;
                return Err(io_err(format!("naming {}", target.display()))(e));
            }
        }
        self.index().insert(p.volume.name.clone(), p.volume.clone());
        Ok(Some(p.volume))
    }

    /// Drops a volume whose disk could not be made.
    pub async fn abandon(&self, p: Pending) {
        self.remove_quietly(&p.dir).await;
    }

    /// Records a change to `name`'s description (`used`, `container`).
    pub async fn update(
        &self,
        name: &str,
        f: impl FnOnce(&mut Volume),
    ) -> Result<Volume, VolumeError> {
        let _write = self.writes.lock().await;
        let v = self.get(name)?;
        let mut changed = v.clone();
        f(&mut changed);
        if changed != v {
            self.write_meta(&dir_of(&changed), &changed).await?;
            self.index().insert(name.to_string(), changed.clone());
        }
        Ok(changed)
    }

    /// Where a new disk for `v` is made before [`Volumes::replace_disk`] puts it in place:
    /// under the disk's own file name (a disk's extents are named after it), in the volume's
    /// `.seeding` directory.
    pub fn fresh_disk(&self, v: &Volume) -> PathBuf {
        dir_of(v).join(SEEDING).join(self.files.disk_name())
    }

    /// Empties the directory of [`Volumes::fresh_disk`], whatever an earlier reseed a crash
    /// cut short left there.
    pub async fn begin_fresh_disk(&self, v: &Volume) -> Result<(), VolumeError> {
        let dir = dir_of(v).join(SEEDING);
        let io = || io_err(format!("emptying {}", dir.display()));
        self.files.remove_dir(&dir).await.map_err(io())?;
        self.files.make_dir(&dir).await.map_err(io())
    }

    /// Replaces `name`'s disk with the one made at [`Volumes::fresh_disk`].
    pub async fn replace_disk(&self, name: &str) -> Result<(), VolumeError> {
        let v = self.get(name)?;
        let fresh = self.fresh_disk(&v);
        (self.files.replace_disk(&fresh, &v.disk).await)
            .map_err(io_err(format!("replacing {}", v.disk.display())))?;
        self.remove_quietly(&dir_of(&v).join(SEEDING)).await;
        Ok(())
    }

    /// Removes the volume and its disk: out of sight at once (one rename), then deleted.
    pub async fn remove(&self, name: &str) -> Result<Volume, VolumeError> {
        let v = self.get(name)?;
        let dir = dir_of(&v);
        let gone = dir.with_file_name(format!(".gone-{}-{}", self.vch, random_hex(8)));
        (self.files.rename_dir(&dir, &gone).await)
            .map_err(io_err(format!("removing {}", dir.display())))?;
        self.index().remove(name);
        if let Err(e) = self.files.remove_dir(&gone).await {
            tracing::warn!("removing {} failed: {e}", gone.display());
        }
        Ok(v)
    }

    async fn remove_quietly(&self, dir: &Path) {
        if let Err(e) = self.files.remove_dir(dir).await {
            tracing::warn!("removing {} failed: {e}", dir.display());
        }
    }

    /// Writes the description whole.
    async fn write_meta(&self, dir: &Path, v: &Volume) -> Result<(), VolumeError> {
        let json = serde_json::to_vec_pretty(v).map_err(|e| VolumeError::Invalid(e.to_string()))?;
        let file = dir.join(META);
        (self.files.write(&file, &json).await)
            .map_err(io_err(format!("writing {}", file.display())))
    }
}

/// A volume's directory on its store.
fn dir_of(v: &Volume) -> PathBuf {
    v.disk.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The volumes of one store; dot-directories of `vch` are swept.
async fn scan(vch: &str, store: &VolumeStore, files: &dyn StoreFiles) -> Vec<Volume> {
    let root = store.dir.join("volumes");
    let names = match files.list(&root).await {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!(
                store = store.label,
                "listing {} failed: {e}",
                root.display()
            );
            return Vec::new();
        }
    };
    let mine = [format!(".new-{vch}-"), format!(".gone-{vch}-")];
    let mut out = Vec::new();
    for name in names {
        let dir = root.join(&name);
        if name.starts_with('.') {
            if mine.iter().any(|p| name.starts_with(p)) {
                tracing::info!(
                    store = store.label,
                    "removing {name}, which a crash left behind"
                );
                if let Err(err) = files.remove_dir(&dir).await {
                    tracing::warn!("removing {} failed: {err}", dir.display());
                }
            }
            continue;
        }
        match read_meta(files, &dir).await {
            Ok(mut v) if v.name == name => {
                v.disk = dir.join(files.disk_name());
                v.store = store.label.clone();
                out.push(v);
            }
            Ok(v) => tracing::warn!(
                "{} describes a volume named {}: left alone",
                dir.display(),
                v.name
            ),
            Err(err) => {
                tracing::warn!("{} is not a volume ({err}): left alone", dir.display())
            }
        }
    }
    out
}

async fn read_meta(files: &dyn StoreFiles, dir: &Path) -> io::Result<Volume> {
    let bytes = files.read(&dir.join(META), META_MAX).await?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}
