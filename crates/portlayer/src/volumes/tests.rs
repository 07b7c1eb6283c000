use std::collections::BTreeMap;

use super::*;

fn store(dir: &Path, label: &str) -> VolumeStore {
    VolumeStore {
        label: label.into(),
        dir: dir.join(label),
    }
}

async fn open(vch: &str, stores: Vec<VolumeStore>) -> Volumes {
    Volumes::open(vch, stores, std::sync::Arc::new(hypervisor::LocalFiles)).await
}

async fn make(vols: &Volumes, spec: &VolumeSpec, container: Option<&str>) -> Volume {
    let p = vols.begin(spec, container).await.unwrap();
    std::fs::write(p.disk(), b"disk").unwrap();
    vols.commit(p).await.unwrap().unwrap()
}

fn named(name: &str) -> VolumeSpec {
    VolumeSpec::parse(name, "", &BTreeMap::new(), &BTreeMap::new()).unwrap()
}

#[tokio::test]
async fn volumes_live_on_their_store_and_are_found_again() {
    let dir = tempfile::tempdir().unwrap();
    let stores = vec![store(dir.path(), "default"), store(dir.path(), "fast")];
    let vols = open("vch1", stores.clone()).await;
    let opts = BTreeMap::from([("VolumeStore".to_string(), "fast".to_string())]);
    let spec = VolumeSpec::parse("data", "local", &opts, &BTreeMap::new()).unwrap();
    let v = make(&vols, &spec, None).await;
    assert_eq!(v.disk, dir.path().join("fast/volumes/data/disk.img"));
    assert!(!v.anonymous && v.container.is_none());
    let anon = make(&vols, &VolumeSpec::anonymous(), Some("c1")).await;
    assert_eq!(anon.name.len(), 64);
    assert_eq!(anon.container.as_deref(), Some("c1"));
    vols.update("data", |v| v.used = true).await.unwrap();
    let again = open("vch1", stores).await;
    assert_eq!(again.list().len(), 2);
    let data = again.get("data").unwrap();
    assert!(data.used);
    assert_eq!(
        (data.driver.as_str(), data.store.as_str()),
        ("local", "fast")
    );
    again.remove("data").await.unwrap();
    assert!(!dir.path().join("fast/volumes/data").exists());
    assert_eq!(
        again.get("data").unwrap_err().to_string(),
        "get data: no such volume"
    );
}

#[tokio::test]
async fn a_crash_leaves_dot_directories_that_only_their_vch_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let stores = vec![store(dir.path(), "default")];
    let vols = open("vch1", stores.clone()).await;
    let mine = vols.begin(&named("half"), None).await.unwrap();
    let other = open("vch2", stores.clone()).await;
    let theirs = other.begin(&named("theirs"), None).await.unwrap();
    let root = dir.path().join("default/volumes");
    std::fs::create_dir(root.join(".gone-vch1-00")).unwrap();
    let reopened = open("vch1", stores).await;
    assert!(reopened.list().is_empty());
    assert!(!mine.dir.exists() && !root.join(".gone-vch1-00").exists());
    assert!(
        theirs.dir.exists(),
        "another VCH's volume in the making is left alone"
    );
}

#[tokio::test]
async fn the_first_commit_of_a_name_wins_and_the_second_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let vols = open("v", vec![store(dir.path(), "default")]).await;
    let a = vols.begin(&named("x1"), None).await.unwrap();
    let b = vols.begin(&named("x1"), None).await.unwrap();
    let b_dir = b.dir.clone();
    std::fs::write(a.disk(), b"a").unwrap();
    std::fs::write(b.disk(), b"b").unwrap();
    assert!(vols.commit(a).await.unwrap().is_some());
    assert!(vols.commit(b).await.unwrap().is_none());
    assert!(!b_dir.exists());
    assert_eq!(std::fs::read(vols.get("x1").unwrap().disk).unwrap(), b"a");
}

#[test]
fn names_drivers_options_and_capacities_are_checked() {
    let none = BTreeMap::new();
    for bad in ["a", "../x", "x/y", ".x", "-x", "x y"] {
        let e = VolumeSpec::parse(bad, "", &none, &none).unwrap_err();
        assert!(
            e.to_string().contains("includes invalid characters"),
            "{bad}: {e}"
        );
    }
    let e = VolumeSpec::parse("ok", "nfs", &none, &none).unwrap_err();
    assert!(matches!(&e, VolumeError::NoPlugin(d) if d == "nfs"), "{e}");
    assert!(e.to_string().contains("plugin \"nfs\" not found"), "{e}");
    let opt = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
    let e = VolumeSpec::parse("ok", "local", &opt("type", "nfs"), &none).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid volume option type: vic's volumes take Capacity and VolumeStore"
    );
    let spec = VolumeSpec::parse("ok", "", &opt("Capacity", "2G"), &none).unwrap();
    assert_eq!(
        (spec.capacity_mib, spec.driver.as_str()),
        (2048, ""),
        "the VCH's default, later"
    );
    for (s, mib) in [
        ("512", 512),
        ("512MB", 512),
        ("1gb", 1024),
        ("1GiB", 1024),
        ("1T", 1 << 20),
    ] {
        assert_eq!(parse_capacity(s).unwrap(), mib, "{s}");
    }
    for bad in ["", "1", "2X", "-5", "10", "99999T", "G"] {
        assert!(parse_capacity(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn a_missing_store_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let vols = open("v", vec![store(dir.path(), "fast")]).await;
    let e = vols.begin(&named("data"), None).await.unwrap_err();
    assert_eq!(e.to_string(), "No volume store named (default) exists");
}
