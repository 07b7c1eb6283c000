//! Stores of earlier versions kept image metadata in files: `images/<hex>/record.json` per
//! image, and `repositories.json` (Docker's shape, `{"Repositories": {"busybox":
//! {"busybox:latest": "sha256:…"}}}`), rewritten atomically on every tag change and the truth
//! about references on open. [`ImageStore::import_legacy`] moves them into the database;
//! [`ImageStore::export_legacy`] writes them again for an earlier version the VCH is rolled
//! back to (`vic-machine upgrade --rollback`), which would otherwise sweep every image
//! directory without a `record.json` as unfinished.
//!
//! Metadata files exist only when an earlier version wrote them last (a store it made, or one
//! it ran on after a rollback), so when present they are the truth: the import replaces what
//! the database holds.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::Path;

use serde::Deserialize;

use super::{io_err, push_reference, record_json, ref_name, ImageRecord, ImageStore, StoreError};

/// Metadata files of earlier versions.
pub(super) const LEGACY_RECORD: &str = "record.json";
pub(super) const LEGACY_REPOSITORIES: &str = "repositories.json";

impl ImageStore {
    /// Moves the metadata files of earlier versions into the database, replacing what it
    /// held: one transaction, the files deleted only after it committed, so an import cut
    /// short is redone whole.
    pub(super) fn import_legacy(&self) -> Result<(), StoreError> {
        let mut files = Vec::new();
        let mut legacy = HashMap::new();
        for e in fs::read_dir(self.root.join("images"))
            .map_err(io_err("reading images"))?
            .flatten()
        {
            let dir = e.path();
            // Halves of atomic writes cut short.
            let tmp = dir.join("record.tmp");
            if tmp.exists() {
                files.push(tmp);
            }
            let file = dir.join(LEGACY_RECORD);
            let Ok(raw) = fs::read(&file) else {
                continue;
            };
            files.push(file);
            match serde_json::from_slice::<ImageRecord>(&raw) {
                Ok(rec) if dir.join("rootfs").is_dir() => {
                    legacy.insert(rec.id.clone(), rec);
                }
                // Its directory goes with the sweep.
                _ => tracing::warn!(dir = %dir.display(), "dropping an incomplete image"),
            }
        }
        for name in [LEGACY_REPOSITORIES, "repositories.tmp"] {
            if self.root.join(name).exists() {
                files.push(self.root.join(name));
            }
        }
        if files.is_empty() {
            return Ok(());
        }
        apply_repositories(&self.root, &mut legacy);
        let mut imported = 0;
        self.write(|t, r| {
            t.retain(|_, _| false)?;
            r.retain(|_, _| false)?;
            for rec in legacy.values() {
                t.insert(rec.id.as_str(), record_json(rec).as_slice())?;
                for reference in rec.repo_tags.iter().chain(&rec.repo_digests) {
                    r.insert(reference.as_str(), rec.id.as_str())?;
                }
                imported += 1;
            }
            Ok(())
        })?;
        for f in &files {
            match fs::remove_file(f) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err(format!("removing {}", f.display()))(e))
                }
                _ => {}
            }
        }
        tracing::info!(
            imported,
            files = files.len(),
            "image metadata moved from record.json and repositories.json into the database"
        );
        Ok(())
    }
}

impl ImageStore {
    /// Writes every image's metadata the way earlier versions kept it: `record.json` in its
    /// directory and `repositories.json` (each written whole, through a temporary file).
    /// Returns how many images were written. The next open of this version imports them
    /// back, with whatever the earlier version changed meanwhile.
    pub fn export_legacy(&self) -> Result<usize, StoreError> {
        let images = self.list();
        let mut repos: Repositories = BTreeMap::new();
        for rec in &images {
            let json = serde_json::to_vec_pretty(rec)
                .map_err(|e| io_err("encoding an image record")(io::Error::other(e)))?;
            write_whole(&self.image_dir(&rec.id).join(LEGACY_RECORD), &json)?;
            for r in rec.repo_tags.iter().chain(&rec.repo_digests) {
                repos
                    .entry(ref_name(r).to_string())
                    .or_default()
                    .insert(r.clone(), rec.id.clone());
            }
        }
        let json = serde_json::to_vec_pretty(&serde_json::json!({ "Repositories": repos }))
            .map_err(|e| io_err("encoding repositories.json")(io::Error::other(e)))?;
        write_whole(&self.root.join(LEGACY_REPOSITORIES), &json)?;
        Ok(images.len())
    }
}

/// Writes `path` through `path.tmp`, synced, so a reader sees the old file or the new one.
fn write_whole(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        io::Write::write_all(&mut f, data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(io_err(format!("writing {}", path.display())))
}

/// `repositories.json` of earlier versions: repository name → reference → image ID.
type Repositories = BTreeMap<String, BTreeMap<String, String>>;

/// Makes an earlier version's `repositories.json`, when readable, the truth about every
/// record's references (as that version did on open).
fn apply_repositories(root: &Path, images: &mut HashMap<String, ImageRecord>) {
    #[derive(Deserialize)]
    struct File {
        #[serde(rename = "Repositories", default)]
        repositories: Repositories,
    }
    let Ok(raw) = fs::read(root.join(LEGACY_REPOSITORIES)) else {
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
            push_reference(rec, reference);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{add, record};
    use super::super::{hex_of, ref_name};
    use super::*;

    /// What an earlier version left for `rec`: `images/<hex>/record.json` and a rootfs.
    fn write_legacy_record(root: &Path, rec: &ImageRecord) {
        let dir = root.join("images").join(hex_of(&rec.id));
        fs::create_dir_all(dir.join("rootfs")).unwrap();
        fs::write(dir.join("rootfs/file"), b"x").unwrap();
        fs::write(
            dir.join(LEGACY_RECORD),
            serde_json::to_vec_pretty(rec).unwrap(),
        )
        .unwrap();
    }

    /// An earlier version's `repositories.json` for `images`' references.
    fn write_legacy_repositories(root: &Path, images: &[&ImageRecord]) {
        let mut repos: Repositories = BTreeMap::new();
        for rec in images {
            for r in rec.repo_tags.iter().chain(&rec.repo_digests) {
                repos
                    .entry(ref_name(r).to_string())
                    .or_default()
                    .insert(r.clone(), rec.id.clone());
            }
        }
        fs::write(
            root.join(LEGACY_REPOSITORIES),
            serde_json::to_vec_pretty(&serde_json::json!({ "Repositories": repos })).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn metadata_files_of_earlier_versions_are_imported_once_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut a = record('a', &["busybox:latest"]);
        a.repo_digests = vec![format!("busybox@sha256:{}", "d".repeat(64))];
        let b = record('b', &["app:1", "app:2"]);
        write_legacy_repositories(root, &[&a, &b]);
        // A stale record (a crash between the two writes of that version) loses to
        // repositories.json, as it did then.
        let mut stale = a.clone();
        stale.repo_tags.push("ghost:latest".into());
        write_legacy_record(root, &stale);
        write_legacy_record(root, &b);
        fs::write(
            root.join("images").join("b".repeat(64)).join("record.tmp"),
            b"{",
        )
        .unwrap();
        fs::write(root.join("repositories.tmp"), b"{").unwrap();
        // A record without its root filesystem: an image that never completed.
        let c = record('c', &["half:latest"]);
        write_legacy_record(root, &c);
        fs::remove_dir_all(root.join("images").join("c".repeat(64)).join("rootfs")).unwrap();

        let store = ImageStore::open(root).unwrap();
        let mut want_a = a.clone();
        want_a.repo_tags.sort();
        assert_eq!(store.get(&a.id).unwrap(), want_a);
        assert_eq!(store.get(&b.id).unwrap(), b);
        assert!(store.get(&c.id).is_none());
        assert!(store.resolve("ghost").is_none());
        assert!(store.rootfs(&a.id).join("file").exists(), "content stays");
        for gone in [
            root.join(LEGACY_REPOSITORIES),
            root.join("repositories.tmp"),
            store.image_dir(&a.id).join(LEGACY_RECORD),
            store.image_dir(&b.id).join("record.tmp"),
            store.image_dir(&c.id),
        ] {
            assert!(!gone.exists(), "{} is left", gone.display());
        }
        drop(store);
        let store = ImageStore::open(root).unwrap();
        assert_eq!(store.list().len(), 2);
        assert_eq!(store.get(&a.id).unwrap(), want_a);
    }

    #[test]
    fn an_interrupted_import_is_redone_from_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let a = record('a', &["app:latest"]);
        let b = record('b', &["other:latest"]);
        // The import committed `a`, then died before removing the files.
        {
            let store = ImageStore::open(root).unwrap();
            add(&store, a.clone());
        }
        write_legacy_record(root, &a);
        write_legacy_record(root, &b);
        write_legacy_repositories(root, &[&a, &b]);
        let store = ImageStore::open(root).unwrap();
        assert_eq!(store.get(&a.id).unwrap(), a);
        assert_eq!(
            store.get(&b.id).unwrap(),
            b,
            "what the import missed comes in"
        );
        assert!(!root.join(LEGACY_REPOSITORIES).exists());
        assert!(!store.image_dir(&a.id).join(LEGACY_RECORD).exists());
        assert!(!store.image_dir(&b.id).join(LEGACY_RECORD).exists());
    }

    /// What an earlier version of the store does on open: records from `record.json`, then
    /// `repositories.json` the truth about references.
    fn read_as_earlier_version(root: &Path) -> HashMap<String, ImageRecord> {
        let mut images = HashMap::new();
        for e in fs::read_dir(root.join("images")).unwrap().flatten() {
            if let Ok(raw) = fs::read(e.path().join(LEGACY_RECORD)) {
                let rec: ImageRecord = serde_json::from_slice(&raw).unwrap();
                images.insert(rec.id.clone(), rec);
            }
        }
        apply_repositories(root, &mut images);
        images
    }

    #[test]
    fn a_rollback_export_is_what_an_earlier_version_reads_and_its_changes_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut a = record('a', &["busybox:latest"]);
        a.repo_digests = vec![format!("busybox@sha256:{}", "d".repeat(64))];
        let b = record('b', &["app:1"]);
        let c = record('c', &["gone:latest"]);
        {
            let store = ImageStore::open(root).unwrap();
            for rec in [&a, &b, &c] {
                add(&store, rec.clone());
                fs::create_dir_all(store.rootfs(&rec.id)).unwrap();
            }
            assert_eq!(store.export_legacy().unwrap(), 3);
        }
        let earlier = read_as_earlier_version(root);
        assert_eq!(earlier.len(), 3);
        assert_eq!(earlier[&a.id], a);
        assert_eq!(earlier[&b.id], b);
        // The earlier version removes `c` and moves `app:1` to `a`, then this version runs.
        fs::remove_dir_all(root.join("images").join("c".repeat(64))).unwrap();
        let mut a2 = a.clone();
        a2.repo_tags = vec!["app:1".into(), "busybox:latest".into()];
        let mut b2 = b.clone();
        b2.repo_tags.clear();
        write_legacy_record(root, &a2);
        write_legacy_record(root, &b2);
        write_legacy_repositories(root, &[&a2, &b2]);
        let store = ImageStore::open(root).unwrap();
        assert_eq!(store.list().len(), 2);
        assert_eq!(store.get(&a.id).unwrap(), a2);
        assert_eq!(store.get(&b.id).unwrap(), b2);
        assert!(store.get(&c.id).is_none());
        assert_eq!(store.resolve("app:1").unwrap().id, a.id);
    }
}
