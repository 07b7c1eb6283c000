use std::time::{Duration, Instant, SystemTime};

use super::legacy::{LEGACY_RECORD, LEGACY_REPOSITORIES};
use super::*;

pub(super) fn record(hex: char, tags: &[&str]) -> ImageRecord {
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
        parent: String::new(),
    }
}

pub(super) fn add(store: &ImageStore, rec: ImageRecord) {
    let tmp = store.temp_dir().unwrap();
    fs::write(tmp.join("file"), b"x").unwrap();
    store.commit(rec, &tmp).unwrap();
}

fn age(path: &Path, by: Duration) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - by)
        .unwrap();
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
    age(
        &dir.path().join("blobs/sha256/x.partial"),
        Duration::from_secs(2 * 24 * 3600),
    );
    fs::write(dir.path().join("blobs/sha256/y.partial"), b"abc").unwrap();
    drop(store);
    let store = ImageStore::open(dir.path()).unwrap();
    assert_eq!(store.list().len(), 2);
    assert!(store.get(&a).unwrap().repo_tags.is_empty());
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
fn references_are_kept_in_the_database_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let mut a = record('a', &["busybox:latest"]);
    a.repo_digests = vec![format!("busybox@sha256:{}", "d".repeat(64))];
    add(&store, a.clone());
    store
        .tag(&a.id, &Reference::parse("127.0.0.1:5000/x:v1").unwrap())
        .unwrap();
    assert!(
        !dir.path().join(LEGACY_REPOSITORIES).exists()
            && !store.image_dir(&a.id).join(LEGACY_RECORD).exists(),
        "no metadata files"
    );
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
    drop(store);
    let store = ImageStore::open(dir.path()).unwrap();
    assert_eq!(store.get(&a.id).unwrap(), got);
}

#[test]
fn content_no_record_names_is_swept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = ImageStore::open(root).unwrap();
    let a = record('a', &["app:latest"]);
    add(&store, a.clone());
    let layer = store.blob_file(&a.layers[0]).unwrap();
    fs::write(&layer, b"layer").unwrap();
    let fresh = store
        .blob_file(&format!("sha256:{}", "e".repeat(64)))
        .unwrap();
    let old = store
        .blob_file(&format!("sha256:{}", "f".repeat(64)))
        .unwrap();
    fs::write(&fresh, b"a pull that died").unwrap();
    fs::write(&old, b"long ago").unwrap();
    age(&old, Duration::from_secs(2 * 24 * 3600));
    age(&layer, Duration::from_secs(2 * 24 * 3600));
    let b = record('b', &["gone:latest"]);
    add(&store, b.clone());
    drop(store);
    // `b`'s root filesystem lost (by hand): its record goes, with its reference.
    fs::remove_dir_all(root.join("images").join("b".repeat(64))).unwrap();
    let store = ImageStore::open(root).unwrap();
    assert!(store.get(&b.id).is_none());
    assert!(store.resolve("gone").is_none());
    assert!(layer.exists(), "a blob in use stays, however old");
    assert!(
        fresh.exists(),
        "a recent unused blob is kept for the next pull"
    );
    assert!(!old.exists(), "an old unused blob goes");
}

#[test]
fn remove_drops_the_blobs_no_other_image_uses() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let (mut a, mut b) = (record('a', &["a:1"]), record('b', &["b:1"]));
    let shared = format!("sha256:{}", "5".repeat(64));
    let own = format!("sha256:{}", "6".repeat(64));
    a.layers = vec![shared.clone(), own.clone()];
    b.layers = vec![shared.clone()];
    for d in [&shared, &own, &a.id, &b.id] {
        fs::write(store.blob_file(d).unwrap(), d.as_bytes()).unwrap();
    }
    add(&store, a.clone());
    add(&store, b.clone());
    store.remove(&a.id).unwrap();
    assert!(store.blob_file(&shared).unwrap().exists());
    assert!(!store.blob_file(&own).unwrap().exists());
    assert!(!store.blob_file(&a.id).unwrap().exists());
    assert!(matches!(
        store.remove(&a.id),
        Err(StoreError::NoSuchImage(_))
    ));
}

#[test]
fn a_second_store_on_the_same_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let err = ImageStore::open(dir.path()).err().expect("refused");
    assert!(matches!(err, StoreError::InUse(_)), "{err}");
    drop(store);
    ImageStore::open(dir.path()).unwrap();
}

#[test]
fn a_shared_database_keeps_other_tables() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::create(dir.path().join("state.redb")).unwrap());
    const OTHER: TableDefinition<&str, &str> = TableDefinition::new("containers");
    let tx = db.begin_write().unwrap();
    tx.open_table(OTHER).unwrap().insert("c1", "x").unwrap();
    tx.commit().unwrap();
    let store = ImageStore::open_in(db.clone(), &dir.path().join("images")).unwrap();
    add(&store, record('a', &["app:latest"]));
    drop(store);
    let store = ImageStore::open_in(db.clone(), &dir.path().join("images")).unwrap();
    assert_eq!(store.list().len(), 1);
    let tx = db.begin_read().unwrap();
    let other = tx.open_table(OTHER).unwrap();
    assert_eq!(other.get("c1").unwrap().unwrap().value(), "x");
    assert!(!dir.path().join("images").join(OWN_DATABASE).exists());
}

/// Admits growth up to `limit` bytes in all.
struct Limit(u64);

impl Budget for Limit {
    fn admit(&self, held: u64, adding: u64) -> Result<(), String> {
        if held + adding > self.0 {
            Err(format!("over: {held} + {adding} > {}", self.0))
        } else {
            Ok(())
        }
    }
}

#[test]
fn a_budget_refuses_an_image_that_does_not_fit_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path())
        .unwrap()
        .with_budget(Arc::new(Limit(1000)));
    let mut a = record('a', &["a:1"]);
    a.size = 600;
    add(&store, a.clone());
    assert_eq!(store.usage(), 600);
    fs::write(store.blob_file(&a.id).unwrap(), vec![0u8; 100]).unwrap();
    assert_eq!(store.usage(), 700);
    assert!(store.admit(300).is_ok());
    assert_eq!(
        store.admit(301).unwrap_err().to_string(),
        "over: 700 + 301 > 1000"
    );
    let mut b = record('b', &["b:1"]);
    b.size = 400;
    let tmp = store.temp_dir().unwrap();
    fs::write(tmp.join("file"), b"x").unwrap();
    let err = store.commit(b.clone(), &tmp).unwrap_err();
    assert!(matches!(err, StoreError::Quota(_)), "{err}");
    assert!(store.get(&b.id).is_none() && !store.image_dir(&b.id).exists());
    assert_eq!(store.list().len(), 1);
    // Tagging and a second pull of an image held already do not grow the store.
    store.tag(&a.id, &Reference::parse("a:2").unwrap()).unwrap();
    let tmp = store.temp_dir().unwrap();
    let mut again = a.clone();
    again.repo_tags = vec!["a:3".into()];
    store.commit(again, &tmp).unwrap();
    assert_eq!(
        store.get(&a.id).unwrap().repo_tags,
        vec!["a:1", "a:2", "a:3"]
    );
}

fn median(mut t: Vec<Duration>) -> Duration {
    t.sort();
    t[t.len() / 2]
}

/// Figures, not asserts: open with 200 images (median of 5), and a durable tag, untag and
/// remove (median of 50 each).
#[test]
fn timings() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let hexes: Vec<String> = (0..250u32).map(|n| format!("{n:064x}")).collect();
    for (n, hex) in hexes.iter().enumerate() {
        let mut rec = record('0', &[&format!("img{n}:latest")]);
        rec.id = format!("sha256:{hex}");
        add(&store, rec);
    }
    let (mut tag, mut untag, mut remove) = (Vec::new(), Vec::new(), Vec::new());
    for hex in &hexes[200..] {
        let r = Reference::parse(&format!("t{}:v1", &hex[56..])).unwrap();
        let t = Instant::now();
        store.tag(hex, &r).unwrap();
        tag.push(t.elapsed());
        let t = Instant::now();
        store.untag(&r).unwrap();
        untag.push(t.elapsed());
        let t = Instant::now();
        store.remove(hex).unwrap();
        remove.push(t.elapsed());
    }
    drop(store);
    let opens: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let s = ImageStore::open(dir.path()).unwrap();
            assert_eq!(s.list().len(), 200);
            t.elapsed()
        })
        .collect();
    println!(
        "image store, redb: open with 200 images {:?}; tag {:?}, untag {:?}, remove {:?} (medians)",
        median(opens),
        median(tag),
        median(untag),
        median(remove)
    );
}

#[test]
fn a_record_that_does_not_decode_is_quarantined_with_its_files_and_references() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = ImageStore::open(root).unwrap();
    let a = record('a', &["app:latest"]);
    add(&store, a.clone());
    add(&store, record('b', &["other:latest"]));
    let layer = store.blob_file(&a.layers[0]).unwrap();
    fs::write(&layer, b"layer").unwrap();
    let good = record_json(&a);
    drop(store);
    // Another version's layout: this one cannot read it.
    let written_elsewhere = format!(r#"{{"id":"{}","format":3}}"#, a.id);
    let db = Database::create(root.join(OWN_DATABASE)).unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_table(IMAGES)
        .unwrap()
        .insert(a.id.as_str(), written_elsewhere.as_bytes())
        .unwrap();
    tx.commit().unwrap();
    drop(db);
    age(&layer, Duration::from_secs(2 * 24 * 3600));

    let store = ImageStore::open(root).unwrap();
    assert!(store.get(&a.id).is_none(), "not shown");
    assert_eq!(store.list().len(), 1);
    let held = store.quarantined().unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].id, a.id);
    assert!(held[0].error.contains("missing field"), "{}", held[0].error);
    assert!(store.rootfs(&a.id).is_dir(), "its root filesystem is kept");
    assert!(layer.exists(), "blobs are kept while a record is held");
    drop(store);

    // The bytes decode again (the version that reads them is back): restored, tag and all.
    let db = Database::create(root.join(OWN_DATABASE)).unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_table(quarantine::QUARANTINE)
        .unwrap()
        .insert(a.id.as_str(), good.as_slice())
        .unwrap();
    tx.commit().unwrap();
    drop(db);
    let store = ImageStore::open(root).unwrap();
    assert!(store.quarantined().unwrap().is_empty());
    assert_eq!(store.get(&a.id).unwrap().repo_tags, vec!["app:latest"]);
    assert_eq!(store.resolve("app").map(|r| r.id), Some(a.id.clone()));
}
