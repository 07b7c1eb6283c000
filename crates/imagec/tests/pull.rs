//! Pulls from the real test registry (Debian's docker-registry, started by `make test`).

use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use imagec::pull::{Platform, Progress, PullError, Puller, RegistryOptions};
use imagec::reference::Reference;
use imagec::store::ImageStore;

fn registry() -> String {
    std::env::var("VIC_TEST_REGISTRY").expect("VIC_TEST_REGISTRY is not set: run with `make test`")
}

fn reference(repo: &str) -> Reference {
    Reference::parse(&format!("{}/{repo}", registry())).unwrap()
}

#[tokio::test]
#[ignore = "needs the test registry: make test runs it"]
async fn pulls_every_manifest_form_and_applies_whiteouts() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let puller = Puller::new(RegistryOptions::default());
    let seen = Mutex::new(Vec::<Progress>::new());
    let progress = |p: Progress| seen.lock().unwrap().push(p);
    let v2 = puller
        .pull(
            &store,
            &reference("busybox"),
            &Platform::default(),
            &progress,
        )
        .await
        .unwrap();
    assert!(!v2.up_to_date);
    let statuses: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.status.clone())
        .collect();
    for s in [
        "Pulling from busybox",
        "Pulling fs layer",
        "Downloading",
        "Download complete",
        "Extracting",
        "Pull complete",
    ] {
        assert!(statuses.iter().any(|x| x == s), "no {s:?} in {statuses:?}");
    }
    let root = store.rootfs(&v2.image.id);
    assert!(root.join("bin/busybox").is_file());
    assert!(root.join("etc/vic-release").is_file());
    assert!(
        !root.join("etc/to-be-removed").exists(),
        "the whiteout removed it"
    );
    assert_eq!(
        std::fs::metadata(root.join("home/vic")).unwrap().uid(),
        1000
    );
    assert_eq!(
        v2.image.repo_tags,
        vec![format!("{}/busybox:latest", registry())]
    );
    assert!(v2.image.repo_digests[0].starts_with(&format!("{}/busybox@sha256:", registry())));

    let oci = puller
        .pull(
            &store,
            &reference("busybox-oci"),
            &Platform::default(),
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(oci.image.id, v2.image.id, "same config, same image ID");
    let multi = puller
        .pull(
            &store,
            &reference("busybox-multi"),
            &Platform::default(),
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(multi.image.architecture, "amd64");
    assert!(!store.rootfs(&multi.image.id).join("etc/arch").exists());
    let arm = puller
        .pull(
            &store,
            &reference("busybox-multi"),
            &Platform::parse("linux/arm64").unwrap(),
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(arm.image.architecture, "arm64");
    assert!(store.rootfs(&arm.image.id).join("etc/arch").exists());
    let none = puller
        .pull(
            &store,
            &reference("busybox-multi"),
            &Platform::parse("linux/s390x").unwrap(),
            &|_| {},
        )
        .await;
    assert!(
        matches!(none, Err(PullError::NoMatchingPlatform(_))),
        "{none:?}"
    );

    let again = puller
        .pull(&store, &reference("busybox"), &Platform::default(), &|_| {})
        .await
        .unwrap();
    assert!(again.up_to_date);
    assert_eq!(again.image.id, v2.image.id);

    // By digest.
    let by_digest =
        Reference::parse(&format!("{}/busybox@{}", registry(), v2.manifest_digest)).unwrap();
    let d = puller
        .pull(&store, &by_digest, &Platform::default(), &|_| {})
        .await
        .unwrap();
    assert_eq!(d.image.id, v2.image.id);
    assert_eq!(
        store.resolve(&by_digest.to_string()).unwrap().id,
        v2.image.id
    );

    // Remove and pull again: same ID.
    store.remove(&v2.image.id).unwrap();
    assert!(store.get(&v2.image.id).is_none());
    let re = puller
        .pull(&store, &reference("busybox"), &Platform::default(), &|_| {})
        .await
        .unwrap();
    assert_eq!(re.image.id, v2.image.id);
}

#[tokio::test]
#[ignore = "needs the test registry: make test runs it"]
async fn unknown_names_fail_in_dockers_words() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let puller = Puller::new(RegistryOptions::default());
    let err = puller
        .pull(
            &store,
            &reference("busybox:nosuchtag"),
            &Platform::default(),
            &|_| {},
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "manifest for {}/busybox:nosuchtag not found: manifest unknown: manifest unknown",
            registry()
        )
    );
    let err = puller
        .pull(
            &store,
            &reference("nosuchrepo"),
            &Platform::default(),
            &|_| {},
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nosuchrepo"), "{err}");
    let closed = Reference::parse("127.0.0.1:1/busybox").unwrap();
    let err = puller
        .pull(&store, &closed, &Platform::default(), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::Unreachable { .. }), "{err}");
    assert!(store.list().is_empty());
}

#[tokio::test]
#[ignore = "needs the test registry: make test runs it"]
async fn concurrent_pulls_of_one_image_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let puller = Puller::new(RegistryOptions::default());
    let r = reference("busybox");
    let platform = Platform::default();
    let (a, b) = tokio::join!(
        puller.pull(&store, &r, &platform, &|_| {}),
        puller.pull(&store, &r, &platform, &|_| {})
    );
    assert_eq!(a.unwrap().image.id, b.unwrap().image.id);
    assert_eq!(store.list().len(), 1);
    assert!(
        std::fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "no work left in tmp"
    );
}
