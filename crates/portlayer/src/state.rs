//! Crash-safe persistence of container records: one embedded `redb` database a VCH,
//! `<state dir>/state.redb`, with a table `containers` (id → the record as JSON). Every
//! save and remove is one write transaction committed durably, so a crash leaves the old or
//! the new record, never half of one. Logs stay files, one directory a container:
//!
//! ```text
//!   <state dir>/state.redb             containers: id → ContainerRecord (JSON)
//!                                      (and the image store's tables, see imagec::store)
//!   <state dir>/<id>/container.log     the container's log (see logs.rs)
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
    /// kept as JSON files are imported, and records that no longer decode, directories
    /// without a record and temporary files left by a crash are removed.
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
        state.drop_undecodable()?;
        state.sweep()?;
        Ok(state)
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
                // Its directory goes with the sweep unless the database has the record.
                Err(e) => {
                    tracing::warn!(file = %file.display(), "dropping a container record file that does not decode: {e}")
                }
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

    /// Deletes records that do not decode (written by an incompatible version), as a
    /// directory without a readable record was removed before there was a database.
    fn drop_undecodable(&self) -> io::Result<()> {
        let bad: Vec<String> = self
            .read_raw()?
            .into_iter()
            .filter(|(_, json)| serde_json::from_slice::<ContainerRecord>(json).is_err())
            .map(|(id, _)| id)
            .collect();
        if bad.is_empty() {
            return Ok(());
        }
        for id in &bad {
            tracing::warn!(%id, "removing a container record that does not decode");
        }
        self.write(|t| {
            for id in &bad {
                t.remove(id.as_str())?;
            }
            Ok(())
        })
    }

    /// Removes directories without a record: a create that died before its first save, or
    /// a remove that died between deleting the record and deleting the directory.
    fn sweep(&self) -> io::Result<()> {
        let ids: HashSet<String> = self.read_raw()?.into_iter().map(|(id, _)| id).collect();
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::container::{ContainerSpec, ContainerState, Status};

    fn record(n: u32) -> ContainerRecord {
        ContainerRecord {
            id: format!("{n:064x}"),
            created: chrono::DateTime::from_timestamp(1_700_000_000 + i64::from(n), 0).unwrap(),
            spec: ContainerSpec {
                name: format!("c{n}"),
                image_ref: "busybox".into(),
                image_id: "sha256:0123".into(),
                memory_mib: 64,
                cpus: 1,
                ..Default::default()
            },
            state: ContainerState::default(),
        }
    }

    /// What an earlier version left: `<id>/container.json`, and maybe a log.
    fn write_legacy(root: &Path, rec: &ContainerRecord) {
        let dir = root.join(&rec.id);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(LEGACY_RECORD),
            serde_json::to_vec_pretty(rec).unwrap(),
        )
        .unwrap();
        fs::write(dir.join(LOG), b"old log").unwrap();
    }

    fn median(mut t: Vec<Duration>) -> Duration {
        t.sort();
        t[t.len() / 2]
    }

    #[test]
    fn records_round_trip_and_survive_a_reopen() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::open(d.path()).unwrap();
        assert!(s.load_all().unwrap().is_empty());
        let (a, mut b) = (record(1), record(2));
        s.save(&b).unwrap();
        s.save(&a).unwrap();
        b.state.status = Status::Exited;
        b.state.exit_code = 3;
        s.save(&b).unwrap();
        assert_eq!(s.load_all().unwrap(), vec![a.clone(), b.clone()]);
        assert!(
            s.container_dir(&a.id).is_dir(),
            "the log's directory is made"
        );
        drop(s);
        let s = StateDir::open(d.path()).unwrap();
        assert_eq!(s.load_all().unwrap(), vec![a, b]);
    }

    #[test]
    fn remove_deletes_the_record_and_the_logs() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::open(d.path()).unwrap();
        let (a, b) = (record(1), record(2));
        s.save(&a).unwrap();
        s.save(&b).unwrap();
        fs::write(s.log_path(&a.id), b"log").unwrap();
        s.remove(&a.id).unwrap();
        s.remove(&a.id).unwrap(); // twice is fine
        assert!(!s.container_dir(&a.id).exists());
        assert_eq!(s.load_all().unwrap(), vec![b.clone()]);
        drop(s);
        assert_eq!(
            StateDir::open(d.path()).unwrap().load_all().unwrap(),
            vec![b]
        );
    }

    #[test]
    fn a_record_in_json_with_fields_missing_still_reads() {
        // `personality` has a serde default: records from before it existed still load.
        let d = tempfile::tempdir().unwrap();
        let rec = record(1);
        let mut json = serde_json::to_value(&rec).unwrap();
        json["spec"].as_object_mut().unwrap().remove("personality");
        let s = StateDir::open(d.path()).unwrap();
        s.write(|t| {
            t.insert(rec.id.as_str(), json.to_string().as_bytes())?;
            Ok(())
        })
        .unwrap();
        assert_eq!(s.load_all().unwrap(), vec![rec]);
    }

    #[test]
    fn json_files_of_earlier_versions_are_imported_once_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (record(1), record(2));
        write_legacy(d.path(), &a);
        write_legacy(d.path(), &b);
        fs::write(d.path().join(&a.id).join("container.tmp"), b"{half").unwrap();
        // A create that died before its first save: a directory without a record.
        fs::create_dir(d.path().join(record(3).id)).unwrap();
        let s = StateDir::open(d.path()).unwrap();
        assert_eq!(s.load_all().unwrap(), vec![a.clone(), b.clone()]);
        for rec in [&a, &b] {
            let dir = s.container_dir(&rec.id);
            assert!(!dir.join(LEGACY_RECORD).exists());
            assert_eq!(fs::read(dir.join(LOG)).unwrap(), b"old log", "logs stay");
        }
        assert!(!s.container_dir(&a.id).join("container.tmp").exists());
        assert!(!s.container_dir(&record(3).id).exists());
        drop(s);
        let s = StateDir::open(d.path()).unwrap();
        assert_eq!(s.load_all().unwrap(), vec![a, b]);
    }

    #[test]
    fn an_interrupted_import_is_redone_and_the_database_wins() {
        let d = tempfile::tempdir().unwrap();
        let (mut a, b) = (record(1), record(2));
        // The import committed, then died before removing the files; since then the
        // appliance saved a newer `a`.
        {
            let s = StateDir::open(d.path()).unwrap();
            s.save(&b).unwrap();
            a.state.exit_code = 7;
            s.save(&a).unwrap();
        }
        let mut stale = a.clone();
        stale.state.exit_code = 0;
        write_legacy(d.path(), &stale);
        write_legacy(d.path(), &b);
        let s = StateDir::open(d.path()).unwrap();
        assert_eq!(s.load_all().unwrap(), vec![a.clone(), b.clone()]);
        assert!(!s.container_dir(&a.id).join(LEGACY_RECORD).exists());
        assert!(!s.container_dir(&b.id).join(LEGACY_RECORD).exists());
    }

    #[test]
    fn undecodable_records_and_files_are_dropped() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (record(1), record(2));
        let dir = d.path().join(&b.id);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(LEGACY_RECORD), b"{\"id\": 3").unwrap();
        {
            let s = StateDir::open(d.path()).unwrap();
            s.save(&a).unwrap();
            s.write(|t| {
                t.insert(a.id.as_str(), b"{\"not\": \"a record\"}".as_slice())?;
                Ok(())
            })
            .unwrap();
        }
        let s = StateDir::open(d.path()).unwrap();
        assert!(s.load_all().unwrap().is_empty());
        assert!(!dir.exists());
        assert!(!s.container_dir(&a.id).exists());
    }

    #[test]
    fn a_second_open_is_refused_while_the_first_is_open() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::open(d.path()).unwrap();
        s.save(&record(1)).unwrap();
        let err = StateDir::open(d.path()).err().expect("a second open fails");
        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
        assert_eq!(
            err.to_string(),
            format!(
                "the state of this VCH is in use by another appliance (pid {})",
                std::process::id()
            )
        );
        drop(s);
        assert_eq!(
            StateDir::open(d.path()).unwrap().load_all().unwrap(),
            vec![record(1)]
        );
    }

    #[test]
    fn a_database_handed_over_is_shared_and_still_locked_against_a_second_appliance() {
        let d = tempfile::tempdir().unwrap();
        let db = open_database(d.path()).unwrap();
        let root = d.path().join("containers");
        let s = StateDir::open_with(&root, Some(db.clone())).unwrap();
        s.save(&record(1)).unwrap();
        assert!(!root.join(DATABASE).exists(), "no database of its own");
        let err = open_database(d.path()).expect_err("a second open fails");
        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
        drop(s);
        let s = StateDir::open_with(&root, Some(db)).unwrap();
        assert_eq!(s.load_all().unwrap(), vec![record(1)]);
    }

    /// Figures, not asserts: a durable save (median of 100) as JSON files (earlier versions)
    /// and in the database, and how long `open` takes with 100 records.
    #[test]
    fn timings() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::open(&d.path().join("redb")).unwrap();
        let json_root = d.path().join("json");
        let mut rec = record(1);
        let (mut json, mut redb) = (Vec::new(), Vec::new());
        for i in 0..100 {
            rec.state.start_count = i;
            let t = Instant::now();
            legacy_save(&json_root, &rec).unwrap();
            json.push(t.elapsed());
            let t = Instant::now();
            s.save(&rec).unwrap();
            redb.push(t.elapsed());
        }
        for n in 2..=100 {
            s.save(&record(n)).unwrap();
        }
        drop(s);
        let opens: Vec<Duration> = (0..5)
            .map(|_| {
                let t = Instant::now();
                let s = StateDir::open(&d.path().join("redb")).unwrap();
                assert_eq!(s.load_all().unwrap().len(), 100);
                t.elapsed()
            })
            .collect();
        println!(
            "save, median of 100: JSON file {:?}, redb {:?}; open + load_all of 100 records, median of 5: {:?}",
            median(json),
            median(redb),
            median(opens)
        );
    }

    /// Set in the child process of `a_killed_appliance_leaves_a_database_that_opens`.
    const KILLED_CHILD: &str = "VIC_STATE_TEST_KILLED_CHILD";

    /// The appliance killed with the database open (vic-init restarts it): the next open
    /// recovers it with every committed record. Prints how long that open takes.
    #[test]
    fn a_killed_appliance_leaves_a_database_that_opens() {
        if let Ok(root) = std::env::var(KILLED_CHILD) {
            // The child: commit 100 records, say so, and wait to be killed.
            let s = StateDir::open(Path::new(&root)).unwrap();
            for n in 1..=100 {
                s.save(&record(n)).unwrap();
            }
            println!("saved");
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        use std::io::BufRead;
        let d = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "state::tests::a_killed_appliance_leaves_a_database_that_opens",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(KILLED_CHILD, d.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = io::BufReader::new(child.stdout.take().unwrap());
        let saw = out
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("saved"));
        assert!(saw, "the child saved its records");
        let err = StateDir::open(d.path()).err().expect("the child holds it");
        assert!(
            err.to_string().contains(&format!("(pid {})", child.id())),
            "{err}"
        );
        child.kill().unwrap(); // SIGKILL: no destructor runs
        child.wait().unwrap();
        let t = Instant::now();
        let s = StateDir::open(d.path()).unwrap();
        let opened = t.elapsed();
        let all = s.load_all().unwrap();
        assert_eq!(all, (1..=100).map(record).collect::<Vec<_>>());
        println!("open after SIGKILL with 100 records (recovery included): {opened:?}");
    }

    /// How earlier versions saved: write a temp file, fsync, rename, fsync the directory.
    fn legacy_save(root: &Path, rec: &ContainerRecord) -> io::Result<()> {
        use std::io::Write;
        let dir = root.join(&rec.id);
        fs::create_dir_all(&dir)?;
        let json = serde_json::to_vec_pretty(rec).map_err(io::Error::other)?;
        let path = dir.join(LEGACY_RECORD);
        let tmp = path.with_extension("tmp");
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        fs::File::open(&dir)?.sync_all()
    }
}
