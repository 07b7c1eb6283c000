//! Volumes and the containers that mount them, over the fake backend (whose disks are empty
//! files): what is made at create, what `rm` and `rm -v` keep, what a crash leaves.

use std::sync::Arc;

use crate::fake_tests::{fake_backend, open, setup, spec};
use crate::volumes::{VolumeSpec, Volumes};
use crate::*;

fn mount(name: &str, target: &str, readonly: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        target: target.into(),
        readonly,
        copy: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn volumes_are_made_at_create_refused_removal_while_used_and_rm_v_takes_anonymous_ones() {
    let (_d, c, backend) = setup().await;
    let mut s = spec("app", &["sleep"]);
    s.mounts = vec![mount("", "/data", false), mount("named", "/n", true)];
    let rec = c.create(s).await.unwrap();
    let anon = rec.spec.mounts[0].name.clone();
    assert_eq!(anon.len(), 64, "an anonymous volume gets a name: {anon}");
    assert_eq!(rec.spec.mounts[1].name, "named");
    assert_eq!(c.volumes().len(), 2);
    assert!(backend
        .calls()
        .iter()
        .any(|call| call.starts_with("create_disk ")));
    let err = c.remove_volume("named", false).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("remove named: volume is in use - [{}]", rec.id)
    );
    // Reopened, the record still names both.
    let again = c.get("app").unwrap();
    assert_eq!(again.spec.mounts, rec.spec.mounts);
    c.remove("app", false, true).await.unwrap();
    assert!(
        c.volume(&anon).is_err(),
        "rm -v removes the anonymous volume"
    );
    let (named, users) = c.volume("named").unwrap();
    assert!(users.is_empty() && named.used);
    c.remove_volume("named", false).await.unwrap();
    assert!(c.volumes().is_empty());
    assert!(!named.disk.exists());
}

#[tokio::test]
async fn rm_without_v_keeps_anonymous_volumes_which_prune_then_takes() {
    let (_d, c, _backend) = setup().await;
    let mut s = spec("app", &["sleep"]);
    s.mounts = vec![mount("", "/data", false)];
    let rec = c.create(s).await.unwrap();
    c.create_volume(
        &VolumeSpec::parse("keep", "", &Default::default(), &Default::default()).unwrap(),
    )
    .await
    .unwrap();
    c.remove("app", false, false).await.unwrap();
    let (v, _) = c.volume(&rec.spec.mounts[0].name).unwrap();
    assert_eq!(v.container, None, "released before the record went");
    let gone = c.prune_volumes(|v| !v.anonymous).await;
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].0, v.name);
    assert_eq!(
        c.volumes().len(),
        1,
        "a named volume stays unless all are pruned"
    );
}

#[tokio::test]
async fn a_volume_is_attached_read_write_to_one_running_container_at_a_time() {
    let (_d, c, _backend) = setup().await;
    for (name, ro) in [("a", false), ("b", false), ("r1", true), ("r2", true)] {
        let mut s = spec(name, &["sleep"]);
        let vol = if ro { "shared" } else { "data" };
        s.mounts = vec![mount(vol, "/d", ro)];
        c.create(s).await.unwrap();
    }
    c.start("a").await.unwrap();
    let err = c.start("b").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "volume data is in use by running container a: a volume is a disk, attached read-write to one running container at a time"
    );
    c.start("r1").await.unwrap();
    c.start("r2").await.unwrap();
}

#[tokio::test]
async fn anonymous_volumes_of_containers_never_stored_are_swept_by_their_own_vch_only() {
    let dir = tempfile::tempdir().unwrap();
    let stores = vec![VolumeStore {
        label: "default".into(),
        dir: dir.path().join("volumes"),
    }];
    let make = |vch: &'static str, container: Option<&'static str>, named: &'static str| {
        let stores = stores.clone();
        async move {
            let vols = Volumes::open(vch, stores, Arc::new(hypervisor::LocalFiles)).await;
            let mut spec = VolumeSpec::anonymous();
            spec.name = named.to_string();
            let p = vols.begin(&spec, container).await.unwrap();
            std::fs::write(p.disk(), b"").unwrap();
            vols.commit(p).await.unwrap().unwrap()
        }
    };
    let orphan = make("vch", Some("gone"), "").await;
    let theirs = make("other", Some("gone"), "").await;
    let released = make("vch", None, "").await;
    let named = make("vch", None, "named").await;
    let c = open(dir.path(), Arc::new(fake_backend())).await;
    let names: Vec<String> = c.volumes().into_iter().map(|(v, _)| v.name).collect();
    assert!(!names.contains(&orphan.name));
    for kept in [&theirs.name, &released.name, &named.name] {
        assert!(names.contains(kept), "{kept} kept");
    }
}
