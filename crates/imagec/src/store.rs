//! The content-addressed image store: content in files, metadata in one `redb` database.
//!
//! ```text
//!   ROOT/blobs/sha256/<hex>            layer and config blobs, named by their digest
//!   ROOT/blobs/sha256/<hex>.partial    an interrupted download, resumed by the next pull
//!   ROOT/images/<hex>/rootfs/          the unpacked root filesystem of an image
//!   ROOT/tmp/                          work in progress, swept at open
//!
//!   database, table images             image ID → ImageRecord (JSON, without its references)
//!   database, table image_references   "busybox:latest", "busybox@sha256:…" → image ID
//! ```
//!
//! The database is the VCH's state database when the appliance hands one over
//! ([`ImageStore::open_in`]), so that containers and images live in one crash-safe store; on
//! its own ([`ImageStore::open`]) the store keeps `ROOT/images.redb`.
//!
//! Every reference names exactly one image (it is the table's key), so a tag moving between
//! images is one insert. Every change is one durable transaction, and content comes first:
//! a new image's root filesystem and blobs are in place before its record commits, and a
//! removed image's record goes before its files. A crash thus leaves at most content that no
//! record names, which [`ImageStore::open`] sweeps: `tmp/`, image directories without a
//! record, and (after a day, so that the next pull of the same image can reuse them) blobs
//! no image uses and interrupted downloads.
//!
//! Stores of earlier versions kept metadata in files (`images/<hex>/record.json`, with
//! `repositories.json` the truth about references); opening one imports them into the
//! database in one transaction and then deletes the files (an import cut short is redone on
//! the next open). Before a rollback to such a version the files are written again
//! ([`ImageStore::export_legacy`]), and what that version changes comes back the same way.
//!
//! A [`Budget`] (the VCH's storage quota) may refuse growth: before a pull downloads (see
//! [`ImageStore::admit`]) and before an image commits.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, DigestError};
use crate::reference::Reference;

mod legacy;
mod quarantine;
mod references;

pub use quarantine::QuarantinedImage;
use references::{push_reference, ref_name, set_reference};

/// An image as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `sha256:<hex>`: the digest of the image configuration.
    pub id: String,
    /// `name:tag` references.
    pub repo_tags: Vec<String>,
    /// `name@sha256:<manifest digest>` references.
    pub repo_digests: Vec<String>,
    /// The whole image configuration JSON.
    pub config: serde_json::Value,
    /// RFC 3339 creation time from the configuration.
    pub created: String,
    /// Bytes of the unpacked layers.
    pub size: u64,
    pub architecture: String,
    pub os: String,
    /// Uncompressed layer digests, bottom first.
    pub diff_ids: Vec<String>,
    /// Layer blob digests, bottom first.
    pub layers: Vec<String>,
    /// Uncompressed size of each layer, bottom first (for `docker history`).
    #[serde(default)]
    pub layer_sizes: Vec<u64>,
    /// The local image a commit made it from (inspect's `Parent`); empty for an image
    /// from a registry, a load or an import, as dockerd shows them.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent: String,
}

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("No such image: {0}")]
    NoSuchImage(String),
    /// A digest that is not `sha256:<64 hex>`: never made into a path.
    #[error("invalid digest {digest:?}: {source}")]
    InvalidDigest {
        digest: String,
        #[source]
        source: DigestError,
    },
    /// Another process has the store's own database open.
    #[error("the image store {0} is in use by another process")]
    InUse(PathBuf),
    /// The budget refused the growth; the message is the budget's.
    #[error("{0}")]
    Quota(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{context}: {source}")]
    Database {
        context: String,
        /// Boxed: redb's error is large, and every result of the store carries this type.
        #[source]
        source: Box<redb::Error>,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

fn db_err<E: Into<redb::Error>>(context: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Database {
        context: context.to_string(),
        source: Box::new(e.into()),
    }
}

/// Whether the store may grow: the VCH's storage quota, as the image store sees it.
pub trait Budget: Send + Sync {
    /// Refuses adding `adding` bytes to a store that holds `held` bytes now (see
    /// [`ImageStore::usage`]), with the message a user sees.
    fn admit(&self, held: u64, adding: u64) -> Result<(), String>;
}

/// image ID → the record as JSON, its references left out (they live in [`REFERENCES`]).
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
/// Every reference (`name:tag` or `name@sha256:…`) → the image ID it names.
const REFERENCES: TableDefinition<&str, &str> = TableDefinition::new("image_references");
/// The database of a store opened on its own.
const OWN_DATABASE: &str = "images.redb";

/// How long an interrupted blob download, or a blob no image uses, is kept for the next pull.
const PARTIAL_KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The name `image_dir` gives an ID that is not a digest: never created.
const NO_IMAGE: &str = "not-a-digest";

/// Hex part of a digest or image ID.
pub fn hex_of(id: &str) -> &str {
    id.strip_prefix("sha256:").unwrap_or(id)
}

/// The image store of a VCH. Cheap queries from memory; every change is written through.
pub struct ImageStore {
    root: PathBuf,
    db: Arc<Database>,
    images: Mutex<HashMap<String, ImageRecord>>,
    budget: Option<Arc<dyn Budget>>,
}

impl ImageStore {
    /// Opens (creating) the store with its own database, `ROOT/images.redb`; see
    /// [`ImageStore::open_in`] for what opening does.
    pub fn open(root: &Path) -> Result<ImageStore, StoreError> {
        fs::create_dir_all(root).map_err(io_err(format!("creating {}", root.display())))?;
        let db = Database::create(root.join(OWN_DATABASE)).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(root.to_path_buf()),
            e => db_err("opening the image database")(e),
        })?;
        Self::open_in(Arc::new(db), root)
    }

    /// Opens (creating) the store with its content under `root` and its metadata in `db`
    /// (shared with the rest of the VCH's state): imports the metadata files of earlier
    /// versions, then sweeps what an interrupted operation left behind.
    pub fn open_in(db: Arc<Database>, root: &Path) -> Result<ImageStore, StoreError> {
        for d in ["blobs/sha256", "images", "tmp"] {
            fs::create_dir_all(root.join(d))
                .map_err(io_err(format!("creating {}", root.join(d).display())))?;
        }
        for e in fs::read_dir(root.join("tmp"))
            .map_err(io_err("reading the store's tmp"))?
            .flatten()
        {
            let _ = remove_any(&e.path());
        }
        let store = ImageStore {
            root: root.to_path_buf(),
            db,
            images: Mutex::new(HashMap::new()),
            budget: None,
        };
        store.import_legacy()?;
        store.quarantine_undecodable()?;
        let held: HashSet<String> = store.quarantined()?.into_iter().map(|q| q.id).collect();
        let images = store.load(&held)?;
        store.sweep(&images, &held)?;
        *store.lock() = images;
        Ok(store)
    }

    /// Lets `budget` refuse growth from now on.
    pub fn with_budget(mut self, budget: Arc<dyn Budget>) -> ImageStore {
        self.budget = Some(budget);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ImageRecord>> {
        self.images.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on both tables in one write transaction and commits it durably.
    fn write(
        &self,
        f: impl FnOnce(
            &mut redb::Table<&str, &[u8]>,
            &mut redb::Table<&str, &str>,
        ) -> Result<(), redb::StorageError>,
    ) -> Result<(), StoreError> {
        let tx = self
            .db
            .begin_write()
            .map_err(db_err("starting a transaction"))?;
        {
            let mut images = tx.open_table(IMAGES).map_err(db_err("opening images"))?;
            let mut refs = tx
                .open_table(REFERENCES)
                .map_err(db_err("opening image_references"))?;
            f(&mut images, &mut refs).map_err(db_err("writing image metadata"))?;
        }
        tx.commit().map_err(db_err("committing image metadata"))
    }

    /// Every record in the database with its references, leaving out (and deleting)
    /// records whose ID is not a digest or whose root filesystem is gone, and references to
    /// images that are not there; references to the `held` (quarantined) images are kept.
    fn load(&self, held: &HashSet<String>) -> Result<HashMap<String, ImageRecord>, StoreError> {
        let tx = self
            .db
            .begin_read()
            .map_err(db_err("starting a read transaction"))?;
        let mut images = HashMap::new();
        let mut bad_records = Vec::new();
        // A database no image was ever written to has no tables yet.
        let Some(table) = existing(tx.open_table(IMAGES)).map_err(db_err("opening images"))? else {
            return Ok(images);
        };
        for item in table.iter().map_err(db_err("reading images"))? {
            let (k, v) = item.map_err(db_err("reading images"))?;
            let id = k.value().to_string();
            match serde_json::from_slice::<ImageRecord>(v.value()) {
                Ok(_) if Digest::parse(&id).is_err() => {
                    tracing::warn!(%id, "removing an image record whose ID is not a digest");
                    bad_records.push(id);
                }
                Ok(mut rec) if rec.id == id && self.rootfs(&id).is_dir() => {
                    rec.repo_tags.clear();
                    rec.repo_digests.clear();
                    images.insert(id, rec);
                }
                Ok(_) => {
                    tracing::warn!(%id, "removing an image record whose root filesystem is gone");
                    bad_records.push(id);
                }
                // Quarantined at open; one written since by another process is left alone.
                Err(e) => tracing::warn!(%id, "skipping an image record that does not decode: {e}"),
            }
        }
        let mut bad_refs = Vec::new();
        if let Some(table) =
            existing(tx.open_table(REFERENCES)).map_err(db_err("opening image_references"))?
        {
            for item in table.iter().map_err(db_err("reading image_references"))? {
                let (k, v) = item.map_err(db_err("reading image_references"))?;
                let (reference, id) = (k.value().to_string(), v.value());
                match images.get_mut(id) {
                    Some(rec) => push_reference(rec, reference),
                    None if held.contains(id) => {}
                    None => bad_refs.push(reference),
                }
            }
        }
        drop(tx);
        for rec in images.values_mut() {
            rec.repo_tags.sort();
            rec.repo_digests.sort();
        }
        if !bad_records.is_empty() || !bad_refs.is_empty() {
            self.write(|t, r| {
                for id in &bad_records {
                    t.remove(id.as_str())?;
                }
                for reference in &bad_refs {
                    r.remove(reference.as_str())?;
                }
                Ok(())
            })?;
        }
        Ok(images)
    }

    /// Removes content no record names: image directories at once; blobs and interrupted
    /// downloads once they are a day old (until then the next pull reuses them). The `held`
    /// (quarantined) images keep their directories, and while there are any every blob is
    /// kept, since which ones they use cannot be read.
    fn sweep(
        &self,
        images: &HashMap<String, ImageRecord>,
        held: &HashSet<String>,
    ) -> Result<(), StoreError> {
        for e in fs::read_dir(self.root.join("images"))
            .map_err(io_err("reading images"))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            let id = format!("sha256:{name}");
            if !images.contains_key(&id) && !held.contains(&id) {
                tracing::warn!(dir = %e.path().display(), "removing an image directory without a record");
                let _ = remove_any(&e.path());
            }
        }
        if !held.is_empty() {
            return Ok(());
        }
        let used = blobs_in_use(images);
        for e in fs::read_dir(self.root.join("blobs/sha256"))
            .map_err(io_err("reading blobs"))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            if used.contains(name.as_str()) {
                continue;
            }
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age > PARTIAL_KEPT_FOR);
            if stale {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(())
    }

    /// Every image.
    pub fn list(&self) -> Vec<ImageRecord> {
        self.lock().values().cloned().collect()
    }

    /// An image by full ID (with or without `sha256:`).
    pub fn get(&self, id: &str) -> Option<ImageRecord> {
        self.lock().get(&format!("sha256:{}", hex_of(id))).cloned()
    }

    /// Finds an image the way `docker` names one: `name[:tag]`, `name@digest`, a full ID or a
    /// unique ID prefix.
    pub fn resolve(&self, s: &str) -> Option<ImageRecord> {
        let images = self.lock();
        if let Ok(r) = Reference::parse(s) {
            let hit = match (&r.digest, r.tagged()) {
                (Some(d), _) => images
                    .values()
                    .find(|i| i.repo_digests.contains(&r.with_digest(d))),
                (None, Some(t)) => images.values().find(|i| i.repo_tags.contains(&t)),
                _ => None,
            };
            if let Some(img) = hit {
                return Some(img.clone());
            }
        }
        let hex = hex_of(s);
        if !hex.is_empty() && hex.len() <= 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            let mut found = images.values().filter(|i| hex_of(&i.id).starts_with(hex));
            let first = found.next()?;
            if found.next().is_none() {
                return Some(first.clone());
            }
        }
        None
    }

    /// The unpacked root filesystem of an image. An ID that is not a digest (no record has
    /// one: they are refused when written and when read) names a directory that never
    /// exists, never a path built from the string.
    pub fn rootfs(&self, id: &str) -> PathBuf {
        self.image_dir(id).join("rootfs")
    }

    fn image_dir(&self, id: &str) -> PathBuf {
        let images = self.root.join("images");
        match Digest::parse(&format!("sha256:{}", hex_of(id))) {
            Ok(d) => images.join(d.hex()),
            Err(_) => images.join(NO_IMAGE),
        }
    }

    /// Where a blob is (or will be) kept: only a validated digest makes a path.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// [`Self::blob_path`] of a digest held as text (an image record's), refused unless it is
    /// `sha256:<64 hex>`.
    pub fn blob_file(&self, digest: &str) -> Result<PathBuf, StoreError> {
        Digest::parse(digest)
            .map(|d| self.blob_path(&d))
            .map_err(|source| StoreError::InvalidDigest {
                digest: digest.to_string(),
                source,
            })
    }

    /// A fresh directory for work in progress.
    pub fn temp_dir(&self) -> Result<PathBuf, StoreError> {
        let p = self
            .root
            .join("tmp")
            .join(format!("{:016x}", rand::random::<u64>()));
        fs::create_dir_all(&p).map_err(io_err("creating a temporary directory"))?;
        Ok(p)
    }

    /// Bytes the store holds: every image's size (its unpacked layers, as `docker images`
    /// shows it) plus every blob file (layers and configs, interrupted downloads included).
    pub fn usage(&self) -> u64 {
        let images = self.lock();
        self.usage_of(&images)
    }

    fn usage_of(&self, images: &HashMap<String, ImageRecord>) -> u64 {
        let unpacked: u64 = images.values().map(|i| i.size).sum();
        let blobs: u64 = fs::read_dir(self.root.join("blobs/sha256"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        unpacked + blobs
    }

    /// Asks the budget, if there is one, whether `adding` more bytes fit.
    pub fn admit(&self, adding: u64) -> Result<(), StoreError> {
        match &self.budget {
            Some(b) => b.admit(self.usage(), adding).map_err(StoreError::Quota),
            None => Ok(()),
        }
    }

    /// Adds an image whose root filesystem was unpacked into `rootfs_tmp` (its blobs are in
    /// place already), or, when the image exists already (another pull won), merges its tags
    /// and digests and drops `rootfs_tmp`. A new image must fit the budget.
    pub fn commit(
        &self,
        mut rec: ImageRecord,
        rootfs_tmp: &Path,
    ) -> Result<ImageRecord, StoreError> {
        let mut images = self.lock();
        let refs: Vec<String> = std::mem::take(&mut rec.repo_tags)
            .into_iter()
            .chain(std::mem::take(&mut rec.repo_digests))
            .collect();
        let new = !images.contains_key(&rec.id);
        if new {
            Digest::parse(&rec.id).map_err(|source| StoreError::InvalidDigest {
                digest: rec.id.clone(),
                source,
            })?;
            if let Some(b) = &self.budget {
                b.admit(self.usage_of(&images), rec.size)
                    .map_err(StoreError::Quota)?;
            }
            // Content first, durably: without a record, a crash leaves a directory that open
            // sweeps; with one, the files it names are on disk.
            sync_filesystem(rootfs_tmp).map_err(io_err("syncing the root filesystem"))?;
            let dir = self.image_dir(&rec.id);
            fs::create_dir_all(&dir).map_err(io_err("creating the image directory"))?;
            let _ = remove_any(&dir.join("rootfs"));
            fs::rename(rootfs_tmp, dir.join("rootfs"))
                .map_err(io_err("moving the root filesystem into place"))?;
            fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err("syncing the image directory"))?;
        } else {
            let _ = remove_any(rootfs_tmp);
        }
        let json = record_json(&rec);
        self.write(|t, r| {
            if new {
                t.insert(rec.id.as_str(), json.as_slice())?;
            }
            for reference in &refs {
                r.insert(reference.as_str(), rec.id.as_str())?;
            }
            Ok(())
        })?;
        if new {
            images.insert(rec.id.clone(), rec.clone());
        }
        for reference in refs {
            set_reference(&mut images, reference, &rec.id);
        }
        Ok(images[&rec.id].clone())
    }

    /// Deletes an image: its record and references, then its root filesystem and the blobs
    /// no other image uses.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        let mut images = self.lock();
        let key = format!("sha256:{}", hex_of(id));
        let rec = images
            .get(&key)
            .ok_or_else(|| StoreError::NoSuchImage(id.to_string()))?
            .clone();
        // Record first: a crash after this leaves files that open sweeps.
        self.write(|t, r| {
            t.remove(key.as_str())?;
            for reference in rec.repo_tags.iter().chain(&rec.repo_digests) {
                r.remove(reference.as_str())?;
            }
            Ok(())
        })?;
        images.remove(&key);
        remove_any(&self.image_dir(&key)).map_err(io_err("removing the image's files"))?;
        let used = blobs_in_use(&images);
        for blob in rec.layers.iter().chain(std::iter::once(&rec.id)) {
            if !used.contains(hex_of(blob)) {
                if let Ok(path) = self.blob_file(blob) {
                    let _ = fs::remove_file(path);
                }
            }
        }
        Ok(())
    }
}

/// A table, or `None` when it was never created.
fn existing<T>(table: Result<T, redb::TableError>) -> Result<Option<T>, redb::TableError> {
    match table {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The record as stored: without its references, which the references table holds.
fn record_json(rec: &ImageRecord) -> Vec<u8> {
    let stored = ImageRecord {
        repo_tags: Vec::new(),
        repo_digests: Vec::new(),
        ..rec.clone()
    };
    // A record is plain data: encoding it cannot fail.
    serde_json::to_vec(&stored).unwrap_or_default()
}

/// Hex digests of the blobs (layers and configs) the images use.
fn blobs_in_use(images: &HashMap<String, ImageRecord>) -> HashSet<&str> {
    images
        .values()
        .flat_map(|i| i.layers.iter().chain(std::iter::once(&i.id)))
        .map(|d| hex_of(d))
        .collect()
}

/// Writes out everything of the filesystem holding `path` (an unpacked root filesystem has
/// thousands of files; one `syncfs` flushes them all, and the blobs beside them).
fn sync_filesystem(path: &Path) -> io::Result<()> {
    let dir = fs::File::open(path)?;
    Ok(rustix::fs::syncfs(&dir)?)
}

/// Removes a file, symlink or directory tree; a missing path is fine.
pub(crate) fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
