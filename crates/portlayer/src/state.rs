//! Crash-safe persistence of container records: one JSON file a container, replaced
//! atomically (write temp, fsync, rename, fsync dir), so a crash leaves the old or the new
//! record, never half of one.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::container::ContainerRecord;

const RECORD: &str = "container.json";
pub const LOG: &str = "container.log";

pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn open(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root)?;
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(LOG)
    }

    pub fn save(&self, record: &ContainerRecord) -> io::Result<()> {
        let dir = self.container_dir(&record.id);
        fs::create_dir_all(&dir)?;
        let json = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        write_atomic(&dir.join(RECORD), &json)
    }

    /// Every stored record; a directory without a readable record (a create that died before
    /// its first save) is removed.
    pub fn load_all(&self) -> io::Result<Vec<ContainerRecord>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let path = entry.path().join(RECORD);
            match fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<ContainerRecord>(&b).ok())
            {
                Some(rec) => out.push(rec),
                None => {
                    tracing::warn!(dir = %entry.path().display(), "removing container directory without a valid record");
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        out.sort_by_key(|r| r.created);
        Ok(out)
    }

    pub fn remove(&self, id: &str) -> io::Result<()> {
        match fs::remove_dir_all(self.container_dir(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Replaces `path` with `data` atomically.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
