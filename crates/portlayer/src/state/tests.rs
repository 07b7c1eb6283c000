//! The container state's tests: durability, imports of earlier versions, quarantine.

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
fn undecodable_records_and_files_are_quarantined_with_their_directories() {
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
    let mut held: Vec<String> = s.quarantined().unwrap().into_iter().map(|q| q.id).collect();
    held.sort();
    assert_eq!(held, vec![a.id.clone(), b.id.clone()]);
    assert!(dir.exists());
    assert!(s.container_dir(&a.id).exists());
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

#[test]
fn a_record_that_does_not_decode_is_quarantined_and_restored_once_it_decodes_again() {
    let t = tempfile::tempdir().unwrap();
    let s = StateDir::open(t.path()).unwrap();
    let good = record(1);
    s.save(&good).unwrap();
    let later = record(2);
    s.save(&later).unwrap();
    fs::write(s.log_path(&later.id), b"its log").unwrap();
    // As a version with another record layout would have written it.
    s.write(|tb| {
        tb.insert(later.id.as_str(), br#"{"id":"x","spec":5}"#.as_slice())?;
        Ok(())
    })
    .unwrap();
    drop(s);

    let s = StateDir::open(t.path()).unwrap();
    let ids: Vec<String> = s.load_all().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![good.id.clone()]);
    let q = s.quarantined().unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].id, later.id);
    assert!(q[0].error.contains("invalid type"), "{}", q[0].error);
    assert_eq!(
        fs::read(s.log_path(&later.id)).unwrap(),
        b"its log",
        "its directory is not swept"
    );
    // The version that wrote it is back: what is held decodes.
    let tx = s.db.begin_write().unwrap();
    {
        let mut held = tx.open_table(quarantine::QUARANTINE).unwrap();
        let json = serde_json::to_vec(&later).unwrap();
        held.insert(later.id.as_str(), json.as_slice()).unwrap();
    }
    tx.commit().unwrap();
    drop(s);

    let s = StateDir::open(t.path()).unwrap();
    let ids: Vec<String> = s.load_all().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![good.id, later.id]);
    assert_eq!(s.quarantined().unwrap(), Vec::new());
}
