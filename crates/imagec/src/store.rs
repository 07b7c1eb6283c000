//! The content-addressed image store.
//!
//! ```text
//!   ROOT/blobs/sha256/<hex>            layer and config blobs, named by their digest
//!   ROOT/images/<hex>/record.json      ImageRecord (written last: its presence means complete)
//!   ROOT/images/<hex>/rootfs/          the unpacked root filesystem
//!   ROOT/repositories.json             every tag and digest reference → image ID (authoritative)
//!   ROOT/blobs/sha256/<hex>.partial    an interrupted download, resumed by the next pull
//!   ROOT/tmp/                          work in progress, swept at open
//! ```
//!
//! `repositories.json` uses Docker's shape, `{"Repositories": {"busybox": {"busybox:latest":
//! "sha256:…", "busybox@sha256:…": "sha256:…"}}}`, and is rewritten atomically on every tag
//! change, so a tag moving between images is one atomic step. Records also carry their tags
//! (for reading by eye), but on open the repositories file wins.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::reference::Reference;

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
}

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("No such image: {0}")]
    NoSuchImage(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

/// How long an interrupted blob download is kept for resuming.
const PARTIAL_KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Hex part of a digest or image ID.
pub fn hex_of(id: &str) -> &str {
    id.strip_prefix("sha256:").unwrap_or(id)
}

/// The image store of a VCH. Cheap queries from memory; every change is written through.
pub struct ImageStore {
    root: PathBuf,
    images: Mutex<HashMap<String, ImageRecord>>,
}

impl ImageStore {
    /// Opens (creating) the store, sweeping what an interrupted pull left behind.
    pub fn open(root: &Path) -> Result<ImageStore, StoreError> {
        for d in ["blobs/sha256", "images", "tmp"] {
            fs::create_dir_all(root.join(d))
                .map_err(io_err(format!("creating {}", root.join(d).display())))?;
        }
        let tmp = root.join("tmp");
        for e in fs::read_dir(&tmp)
            .map_err(io_err("reading the store's tmp"))?
            .flatten()
        {
            let _ = remove_any(&e.path());
        }
        for e in fs::read_dir(root.join("blobs/sha256"))
            .map_err(io_err("reading blobs"))?
            .flatten()
        {
            // A recent partial download is kept for the next pull to resume; old ones go.
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age > PARTIAL_KEPT_FOR);
            if e.file_name().to_string_lossy().ends_with(".partial") && stale {
                let _ = fs::remove_file(e.path());
            }
        }
        let mut images = HashMap::new();
        for e in fs::read_dir(root.join("images"))
            .map_err(io_err("reading images"))?
            .flatten()
        {
            let rec = fs::read(e.path().join("record.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<ImageRecord>(&b).ok())
                .filter(|_| e.path().join("rootfs").is_dir());
            match rec {
                Some(rec) => {
                    images.insert(rec.id.clone(), rec);
                }
                None => {
                    tracing::warn!(dir = %e.path().display(), "removing an incomplete image");
                    let _ = remove_any(&e.path());
                }
            }
        }
        apply_repositories(root, &mut images);
        Ok(ImageStore {
            root: root.to_path_buf(),
            images: Mutex::new(images),
        })
    }

    /// Rewrites `repositories.json` from the in-memory records.
    fn save_repositories(&self, images: &HashMap<String, ImageRecord>) -> Result<(), StoreError> {
        let mut repos: Repositories = BTreeMap::new();
        for rec in images.values() {
            for r in rec.repo_tags.iter().chain(&rec.repo_digests) {
                let name = ref_name(r);
                repos
                    .entry(name.to_string())
                    .or_default()
                    .insert(r.clone(), rec.id.clone());
            }
        }
        let json = serde_json::to_vec_pretty(&serde_json::json!({ "Repositories": repos }))
            .map_err(|e| io_err("encoding repositories.json")(io::Error::other(e)))?;
        write_atomic(&self.root.join("repositories.json"), &json)
            .map_err(io_err("saving repositories.json"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ImageRecord>> {
        self.images.lock().unwrap_or_else(|e| e.into_inner())
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

    /// The unpacked root filesystem of an image.
    pub fn rootfs(&self, id: &str) -> PathBuf {
        self.image_dir(id).join("rootfs")
    }

    fn image_dir(&self, id: &str) -> PathBuf {
        self.root.join("images").join(hex_of(id))
    }

    /// Where a blob is (or will be) kept.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex_of(digest))
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

    fn save(&self, rec: &ImageRecord) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(rec)
            .map_err(|e| io_err("encoding an image record")(io::Error::other(e)))?;
        write_atomic(&self.image_dir(&rec.id).join("record.json"), &json)
            .map_err(io_err("saving an image record"))
    }

    /// Moves `tag` (a `name:tag`) to image `id`, taking it from any other image.
    fn retag(
        &self,
        images: &mut HashMap<String, ImageRecord>,
        id: &str,
        tag: &str,
    ) -> Result<(), StoreError> {
        let others: Vec<String> = images
            .values()
            .filter(|i| i.id != id && i.repo_tags.iter().any(|t| t == tag))
            .map(|i| i.id.clone())
            .collect();
        for other in others {
            if let Some(rec) = images.get_mut(&other) {
                rec.repo_tags.retain(|t| t != tag);
                self.save(rec)?;
            }
        }
        Ok(())
    }

    /// Adds an image whose root filesystem was unpacked into `rootfs_tmp`, or, when the image
    /// exists already (another pull won), merges its tags and digests and drops `rootfs_tmp`.
    pub fn commit(
        &self,
        mut rec: ImageRecord,
        rootfs_tmp: &Path,
    ) -> Result<ImageRecord, StoreError> {
        let mut images = self.lock();
        let tags = std::mem::take(&mut rec.repo_tags);
        let digests = std::mem::take(&mut rec.repo_digests);
        if let Some(existing) = images.get(&rec.id) {
            rec = existing.clone();
            let _ = remove_any(rootfs_tmp);
        } else {
            let dir = self.image_dir(&rec.id);
            fs::create_dir_all(&dir).map_err(io_err("creating the image directory"))?;
            let _ = remove_any(&dir.join("rootfs"));
            fs::rename(rootfs_tmp, dir.join("rootfs"))
                .map_err(io_err("moving the root filesystem into place"))?;
        }
        for t in tags {
            self.retag(&mut images, &rec.id, &t)?;
            if !rec.repo_tags.contains(&t) {
                rec.repo_tags.push(t);
            }
        }
        for d in digests {
            if !rec.repo_digests.contains(&d) {
                rec.repo_digests.push(d);
            }
        }
        self.save(&rec)?;
        images.insert(rec.id.clone(), rec.clone());
        self.save_repositories(&images)?;
        Ok(rec)
    }

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
        if !images.contains_key(&key) {
            return Err(StoreError::NoSuchImage(id.to_string()));
        }
        let mut had = true;
        if let Some(tag) = reference.tagged() {
            self.retag(&mut images, &key, &tag)?;
            let rec = images
                .get_mut(&key)
                .ok_or_else(|| StoreError::NoSuchImage(id.to_string()))?;
            if !rec.repo_tags.contains(&tag) {
                rec.repo_tags.push(tag);
                had = false;
            }
        }
        let rec = images
            .get_mut(&key)
            .ok_or_else(|| StoreError::NoSuchImage(id.to_string()))?;
        if let Some(d) = digest_ref {
            if !rec.repo_digests.contains(&d) {
                rec.repo_digests.push(d);
            }
        }
        let rec = rec.clone();
        self.save(&rec)?;
        self.save_repositories(&images)?;
        Ok(had)
    }

    /// Tags an image (`docker tag`).
    pub fn tag(&self, id: &str, reference: &Reference) -> Result<(), StoreError> {
        self.tag_existing(id, reference, None).map(|_| ())
    }

    /// Removes a tag; returns the image it pointed at.
    pub fn untag(&self, reference: &Reference) -> Result<Option<String>, StoreError> {
        let (wanted, is_digest) = match (&reference.digest, reference.tagged()) {
            (Some(d), _) => (reference.with_digest(d), true),
            (None, Some(t)) => (t, false),
            (None, None) => return Ok(None),
        };
        let mut images = self.lock();
        let Some(rec) = images.values_mut().find(|i| {
            if is_digest {
                i.repo_digests.contains(&wanted)
            } else {
                i.repo_tags.contains(&wanted)
            }
        }) else {
            return Ok(None);
        };
        rec.repo_tags.retain(|t| t != &wanted);
        rec.repo_digests.retain(|d| d != &wanted);
        let name = reference.name();
        if !rec.repo_tags.iter().any(|t| ref_name(t) == name) {
            // Docker drops a repository's digest references with its last tag.
            rec.repo_digests.retain(|d| ref_name(d) != name);
        }
        let rec = rec.clone();
        self.save(&rec)?;
        self.save_repositories(&images)?;
        Ok(Some(rec.id))
    }

    /// Deletes an image: its record, root filesystem, and blobs no other image uses.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        let mut images = self.lock();
        let key = format!("sha256:{}", hex_of(id));
        let rec = images
            .remove(&key)
            .ok_or_else(|| StoreError::NoSuchImage(id.to_string()))?;
        self.save_repositories(&images)?;
        // Record first: a crash after this leaves a directory that open() sweeps.
        let dir = self.image_dir(&key);
        let _ = fs::remove_file(dir.join("record.json"));
        remove_any(&dir).map_err(io_err("removing the image's files"))?;
        let in_use = |d: &String| images.values().any(|i| i.layers.contains(d) || &i.id == d);
        for blob in rec.layers.iter().chain(std::iter::once(&rec.id)) {
            if !in_use(blob) {
                let _ = fs::remove_file(self.blob_path(blob));
            }
        }
        Ok(())
    }
}

/// `repositories.json`: repository name → reference → image ID.
type Repositories = BTreeMap<String, BTreeMap<String, String>>;

/// The repository part of `name:tag` or `name@digest` (a registry port is not a tag).
fn ref_name(r: &str) -> &str {
    if let Some((name, _)) = r.split_once('@') {
        return name;
    }
    match r.rfind(':') {
        Some(i) if !r[i + 1..].contains('/') => &r[..i],
        _ => r,
    }
}

/// Makes `repositories.json`, when readable, the truth about every record's references.
fn apply_repositories(root: &Path, images: &mut HashMap<String, ImageRecord>) {
    #[derive(Deserialize)]
    struct File {
        #[serde(rename = "Repositories", default)]
        repositories: Repositories,
    }
    let Ok(raw) = fs::read(root.join("repositories.json")) else {
        return;
    };
    let file: File = match serde_json::from_slice(&raw) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring an unreadable repositories.json; using the image records' tags");
            return;
        }
    };
    for rec in images.values_mut() {
        rec.repo_tags.clear();
        rec.repo_digests.clear();
    }
    for (reference, id) in file.repositories.into_values().flatten() {
        if let Some(rec) = images.get_mut(&id) {
            if reference.contains('@') {
                rec.repo_digests.push(reference);
            } else {
                rec.repo_tags.push(reference);
            }
        }
    }
    for rec in images.values_mut() {
        rec.repo_tags.sort();
        rec.repo_digests.sort();
    }
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

/// Replaces `path` with `data` atomically (temp file, fsync, rename).
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    // The rename itself is durable once the directory is synced.
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(hex: char, tags: &[&str]) -> ImageRecord {
        ImageRecord {
            id: format!("sha256:{}", hex.to_string().repeat(64)),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: vec![],
            config: serde_json::json!({}),
            created: "2023-11-14T22:13:20Z".into(),
            size: 1,
            architecture: "amd64".into(),
            os: "linux".into(),
            diff_ids: vec![],
            layers: vec![format!("sha256:{}", "9".repeat(64))],
            layer_sizes: vec![1],
        }
    }

    fn add(store: &ImageStore, rec: ImageRecord) {
        let tmp = store.temp_dir().unwrap();
        fs::write(tmp.join("file"), b"x").unwrap();
        store.commit(rec, &tmp).unwrap();
    }

    #[test]
    fn resolve_by_name_tag_id_and_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        add(
            &store,
            record('a', &["busybox:latest", "127.0.0.1:5000/busybox:1.0"]),
        );
        add(&store, record('b', &["other:latest"]));
        let a = format!("sha256:{}", "a".repeat(64));
        assert_eq!(store.resolve("busybox").unwrap().id, a);
        assert_eq!(store.resolve("busybox:latest").unwrap().id, a);
        assert_eq!(store.resolve("docker.io/library/busybox").unwrap().id, a);
        assert_eq!(store.resolve("127.0.0.1:5000/busybox:1.0").unwrap().id, a);
        assert!(
            store.resolve("127.0.0.1:5000/busybox").is_none(),
            "no :latest tag there"
        );
        assert_eq!(store.resolve(&a).unwrap().id, a);
        assert_eq!(store.resolve("aaaa").unwrap().id, a);
        assert!(store.resolve("cccc").is_none());
        assert!(store.rootfs(&a).join("file").exists());
    }

    #[test]
    fn tags_move_and_records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        add(&store, record('a', &["app:latest"]));
        add(&store, record('b', &["app:latest"]));
        let a = format!("sha256:{}", "a".repeat(64));
        assert!(
            store.get(&a).unwrap().repo_tags.is_empty(),
            "the tag moved to the newer image"
        );
        fs::create_dir_all(dir.path().join("images/half/rootfs")).unwrap();
        fs::write(dir.path().join("blobs/sha256/x.partial"), b"").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 24 * 3600);
        fs::File::options()
            .write(true)
            .open(dir.path().join("blobs/sha256/x.partial"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        fs::write(dir.path().join("blobs/sha256/y.partial"), b"abc").unwrap();
        drop(store);
        let store = ImageStore::open(dir.path()).unwrap();
        assert_eq!(store.list().len(), 2);
        assert!(
            !dir.path().join("images/half").exists(),
            "an image without a record is swept"
        );
        assert!(
            !dir.path().join("blobs/sha256/x.partial").exists(),
            "an old partial download is swept"
        );
        assert!(
            dir.path().join("blobs/sha256/y.partial").exists(),
            "a recent one is kept for resuming"
        );
        let r = Reference::parse("app:latest").unwrap();
        assert_eq!(
            store.untag(&r).unwrap(),
            Some(format!("sha256:{}", "b".repeat(64)))
        );
        store.remove(&a).unwrap();
        assert!(store.get(&a).is_none());
        assert!(!store.rootfs(&a).exists());
    }

    #[test]
    fn resolve_by_digest_and_refuses_ambiguous_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let digest = format!("sha256:{}", "d".repeat(64));
        let mut a = record('a', &["127.0.0.1:5000/busybox:latest"]);
        a.id = format!("sha256:ab{}", "0".repeat(62));
        a.repo_digests = vec![format!("127.0.0.1:5000/busybox@{digest}")];
        let mut b = record('b', &[]);
        b.id = format!("sha256:ac{}", "0".repeat(62));
        add(&store, a.clone());
        add(&store, b.clone());
        let by_digest = store.resolve(&format!("127.0.0.1:5000/busybox@{digest}"));
        assert_eq!(by_digest.unwrap().id, a.id);
        assert!(
            store.resolve(&format!("busybox@{digest}")).is_none(),
            "another repository"
        );
        assert!(
            store.resolve("a").is_none(),
            "ambiguous: two IDs start with a"
        );
        assert_eq!(store.resolve("ab").unwrap().id, a.id);
        assert_eq!(
            store
                .resolve(&format!("sha256:ac{}", "0".repeat(4)))
                .unwrap()
                .id,
            b.id
        );
        assert_eq!(store.resolve("ac").unwrap().id, b.id);
        assert!(store.resolve("nosuch:latest").is_none());
    }

    #[test]
    fn repositories_json_is_the_truth_about_tags() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let mut a = record('a', &["busybox:latest"]);
        a.repo_digests = vec![format!("busybox@sha256:{}", "d".repeat(64))];
        add(&store, a.clone());
        store
            .tag(&a.id, &Reference::parse("127.0.0.1:5000/x:v1").unwrap())
            .unwrap();
        let raw = fs::read(dir.path().join("repositories.json")).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(
            json["Repositories"]["busybox"]["busybox:latest"],
            a.id.as_str()
        );
        assert_eq!(
            json["Repositories"]["127.0.0.1:5000/x"]["127.0.0.1:5000/x:v1"],
            a.id.as_str()
        );
        // A stale record (say, a crash between the two writes) loses to repositories.json.
        let mut stale = store.get(&a.id).unwrap();
        stale.repo_tags.push("ghost:latest".into());
        fs::write(
            dir.path()
                .join("images")
                .join("a".repeat(64))
                .join("record.json"),
            serde_json::to_vec(&stale).unwrap(),
        )
        .unwrap();
        drop(store);
        let store = ImageStore::open(dir.path()).unwrap();
        let got = store.get(&a.id).unwrap();
        assert_eq!(got.repo_tags, vec!["127.0.0.1:5000/x:v1", "busybox:latest"]);
        assert_eq!(got.repo_digests, a.repo_digests);
        // The last tag of a repository takes its digest references along.
        assert_eq!(
            store.untag(&Reference::parse("busybox").unwrap()).unwrap(),
            Some(a.id.clone())
        );
        let got = store.get(&a.id).unwrap();
        assert_eq!(got.repo_tags, vec!["127.0.0.1:5000/x:v1"]);
        assert!(got.repo_digests.is_empty());
        assert_eq!(
            store.untag(&Reference::parse("busybox").unwrap()).unwrap(),
            None
        );
    }
}
