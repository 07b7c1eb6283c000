//! Crash-safe persistence of container records: one embedded `redb` database a VCH,
//! `<state dir>/state.redb`, with a table `containers` (id → the record as JSON). Every
//! save and remove is one write transaction committed durably, so a crash leaves the old or
//! the new record, never half of one. Logs stay files, one directory a container:
//!
//! ```text
//!   <state dir>/state.redb             containers: id → ContainerRecord (JSON)
//!                                      (and the image store's tables, see imagec::store)
//!   <state dir>/<id>/container.log     the container's log, and container.log.1, … its
//!                                      rotated files (see logs/)
//! ```
//!
//! The appliance opens the database once ([`open_database`]) and hands it to both the
//! container state and the image store, so that all of a VCH's state is in one store. The
//! database is locked while open: a second appliance on the same VCH is refused there.
//! Records kept as `<id>/container.json` files by earlier versions are imported on open (see
//! [`StateDir::open_with`]).
//!
//! Order of writes, so that a crash between two steps leaves nothing a user can see half
//! done: `save` makes the container's directory before committing its record, and `remove`
//! deletes the record before the directory. Either way the only possible leftover is a
//! directory without a record, which nobody lists and `open` sweeps. (The other order could
//! leave a record whose log directory is gone: a container that lists but cannot start.)

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableTable, TableDefinition};

use crate::container::ContainerRecord;

/// id → the record as JSON, so fields with serde defaults read across versions.
const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");
const DATABASE: &str = "state.redb";
/// Where earlier versions kept a record, inside the container's directory.
const LEGACY_RECORD: &str = "container.json";
pub const LOG: &str = "container.log";

/// Why the state could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another process holds the database's lock.
    #[error("the state of this VCH is in use by another appliance{}", match .pid {
        Some(pid) => format!(" (pid {pid})"),
        None => String::new(),
    })]
    InUse { pid: Option<u32> },
}

/// Opens (or creates) the VCH's state database, `dir/state.redb`, recovering it if the last
/// appliance died with it open. Refused while another process has it open.
pub fn open_database(dir: &Path) -> io::Result<Arc<Database>> {
    fs::create_dir_all(dir)?;
    let path = dir.join(DATABASE);
    let db = Database::create(&path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => io::Error::new(
            io::ErrorKind::ResourceBusy,
            StateError::InUse {
                pid: lock_holder(&path),
            },
        ),
        e => db_err(e),
    })?;
    Ok(Arc::new(db))
}

pub struct StateDir {
    root: PathBuf,
    db: Arc<Database>,
}

impl StateDir {
    /// [`StateDir::open_with`] its own database, `root/state.redb`.
    #[cfg(test)]
    pub fn open(root: &Path) -> io::Result<Self> {
        Self::open_with(root, None)
    }

    /// Opens the container state in `root` with its records in `db` (or, without one, in
    /// `root/state.redb`, see [`open_database`]), then tidies the directory: records still
    /// kept as JSON files are imported, records that do not decode are quarantined (see
    /// `quarantine.rs`), and directories without a record and temporary files left by a
    /// crash are removed.
    pub fn open_with(root: &Path, db: Option<Arc<Database>>) -> io::Result<Self> {
        fs::create_dir_all(root)?;
        let db = match db {
            Some(db) => db,
            None => open_database(root)?,
        };
        let state = StateDir {
            root: root.to_path_buf(),
            db,
        };
        // Reads on an empty database need the table to exist.
        state.write(|_| Ok(()))?;
        state.import_legacy()?;
        state.quarantine_undecodable()?;
        state.sweep()?;
        Ok(state)
    }

    /// The database the records are in (the VCH's, shared with its other tables).
    pub fn database(&self) -> Arc<Database> {
        self.db.clone()
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(LOG)
    }

    /// Stores the record, replacing the one with the same id; durable when it returns.
    pub fn save(&self, record: &ContainerRecord) -> io::Result<()> {
        // Directory first: a crash before the commit leaves only a directory to sweep.
        fs::create_dir_all(self.container_dir(&record.id))?;
        let json = serde_json::to_vec(record).map_err(io::Error::other)?;
        self.write(|t| {
            t.insert(record.id.as_str(), json.as_slice())?;
            Ok(())
        })
    }

    /// Every stored record, oldest first.
    pub fn load_all(&self) -> io::Result<Vec<ContainerRecord>> {
        let mut out = Vec::new();
        for (id, json) in self.read_raw()? {
            match serde_json::from_slice::<ContainerRecord>(&json) {
                Ok(rec) => out.push(rec),
                // Only a record written after `open` could get here.
                Err(e) => {
                    tracing::warn!(%id, "skipping a container record that does not decode: {e}")
                }
            }
        }
        out.sort_by_key(|r| r.created);
        Ok(out)
    }

    /// Deletes the record, then the container's directory (its logs). Once the record is
    /// gone the container is gone: a directory that cannot be removed is only logged, and
    /// the next `open` sweeps it.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        self.write(|t| {
            t.remove(id)?;
            Ok(())
        })?;
        match fs::remove_dir_all(self.container_dir(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                tracing::warn!(%id, "removing the container's directory failed, the next start sweeps it: {e}");
            }
            _ => {}
        }
        Ok(())
    }

    /// Runs `f` on the table in one write transaction and commits it durably.
    fn write(
        &self,
        f: impl FnOnce(&mut redb::Table<&str, &[u8]>) -> Result<(), redb::StorageError>,
    ) -> io::Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = tx.open_table(CONTAINERS).map_err(db_err)?;
            f(&mut table).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// Every (id, JSON) pair in the table.
    fn read_raw(&self) -> io::Result<Vec<(String, Vec<u8>)>> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = tx.open_table(CONTAINERS).map_err(db_err)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Moves records kept as `<id>/container.json` (earlier versions) into the database:
    /// all in one transaction, the files removed only after it committed. Redoing an
    /// interrupted import is harmless: a record already in the database wins over its file.
    fn import_legacy(&self) -> io::Result<()> {
        let mut files = Vec::new();
        let mut records = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let dir = entry.path();
            remove_tmp_files(&dir)?;
            let file = dir.join(LEGACY_RECORD);
            let json = match fs::read(&file) {
                Ok(json) => json,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            match serde_json::from_slice::<ContainerRecord>(&json) {
                Ok(rec) => records.push((rec.id, json)),
                // Imported as it is, under its directory's name: the quarantine keeps it.
                Err(_) => records.push((entry.file_name().to_string_lossy().into_owned(), json)),
            }
            files.push(file);
        }
        if files.is_empty() {
            return Ok(());
        }
        let mut imported = 0;
        self.write(|t| {
            for (id, json) in &records {
                if t.get(id.as_str())?.is_none() {
                    t.insert(id.as_str(), json.as_slice())?;
                    imported += 1;
                }
            }
            Ok(())
        })?;
        for file in &files {
            match fs::remove_file(file) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        tracing::info!(
            imported,
            files = files.len(),
            "container records moved from JSON files into the state database"
        );
        Ok(())
    }

    /// Removes directories without a record: a create that died before its first save, or
    /// a remove that died between deleting the record and deleting the directory.
    fn sweep(&self) -> io::Result<()> {
        let mut ids: HashSet<String> = self.read_raw()?.into_iter().map(|(id, _)| id).collect();
        ids.extend(self.quarantined()?.into_iter().map(|q| q.id));
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let name = entry.file_name();
            if !ids.contains(name.to_string_lossy().as_ref()) {
                tracing::warn!(dir = %entry.path().display(), "removing a container directory without a record");
                if let Err(e) = fs::remove_dir_all(entry.path()) {
                    tracing::warn!(dir = %entry.path().display(), "removing it failed: {e}");
                }
            }
        }
        Ok(())
    }
}

/// Removes `*.tmp` files in `dir`: halves of atomic writes (earlier versions) cut short.
fn remove_tmp_files(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "tmp") && path.is_file() {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// A database error as an I/O error: redb's own I/O errors keep their kind.
fn db_err(e: impl Into<redb::Error>) -> io::Error {
    match e.into() {
        redb::Error::Io(e) => e,
        e => io::Error::other(e),
    }
}

/// The process holding the flock on `path`, from /proc/locks (Linux), if it can be told.
fn lock_holder(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let ino = fs::metadata(path).ok()?.ino().to_string();
    let locks = fs::read_to_string("/proc/locks").ok()?;
    // "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5784260 0 EOF" (device major:minor:inode)
    locks.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (kind, pid, file) = (*f.get(1)?, *f.get(4)?, *f.get(5)?);
        if kind == "FLOCK" && file.rsplit(':').next() == Some(ino.as_str()) {
            pid.parse().ok()
        } else {
            None
        }
    })
}

mod json_table;
mod quarantine;

pub(crate) use json_table::JsonTable;
pub use quarantine::Quarantined;

#[cfg(test)]
mod tests;
