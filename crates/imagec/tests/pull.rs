//! Pulls from the real test registry (Debian's docker-registry, started by `make test`).

use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use imagec::pull::{Platform, Progress, PullError, Puller, RegistryOptions};
use imagec::reference::Reference;
use imagec::store::ImageStore;

/// The test registries listen on loopback, without TLS.
fn loopback() -> RegistryOptions {
    RegistryOptions {
        insecure: vec!["127.0.0.0/8".into()],
        ..Default::default()
    }
}

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
    let puller = Puller::new(loopback());
    let seen = Mutex::new(Vec::<Progress>::new());
    let progress = |p: Progress| seen.lock().unwrap().push(p);
    let v2 = puller
        .pull(
            &store,
            &reference("busybox"),
            &Platform::default(),
            None,
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
    let home = std::fs::metadata(root.join("home/vic")).unwrap();
    assert_eq!((home.uid(), home.gid()), (1000, 1000));
    assert_eq!(
        std::fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        std::path::Path::new("/bin/busybox")
    );
    assert!(root.join("usr/bin/env").symlink_metadata().is_ok());
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("vic:x:1000:1000:"), "{passwd}");
    let first = seen.lock().unwrap()[0].clone();
    assert_eq!(
        (first.id, first.status.as_str()),
        (None, "Pulling from busybox")
    );
    for p in seen.lock().unwrap().iter().skip(1) {
        if let Some(id) = &p.id {
            assert!(
                id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()),
                "{p:?}"
            );
        }
    }
    assert_eq!(v2.image.architecture, "amd64");
    assert_eq!(v2.image.config["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(v2.image.layers.len(), 2);
    assert_eq!(v2.image.diff_ids.len(), 2);
    assert!(v2.image.size > 1_000_000, "{}", v2.image.size);
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
            None,
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
            None,
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(multi.image.architecture, "amd64");
    assert_eq!(
        multi.image.id, v2.image.id,
        "the index's amd64 entry is the busybox image"
    );
    assert!(!store.rootfs(&multi.image.id).join("etc/arch").exists());
    let arm_seen = Mutex::new(Vec::<Progress>::new());
    let arm = puller
        .pull(
            &store,
            &reference("busybox-multi"),
            &Platform::parse("linux/arm64").unwrap(),
            None,
            &|p: Progress| arm_seen.lock().unwrap().push(p),
        )
        .await
        .unwrap();
    assert_ne!(arm.image.id, v2.image.id);
    assert!(
        arm_seen
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.status == "Already exists"),
        "the shared base layer is not downloaded again"
    );
    assert_eq!(arm.image.architecture, "arm64");
    assert!(store.rootfs(&arm.image.id).join("etc/arch").exists());
    let none = puller
        .pull(
            &store,
            &reference("busybox-multi"),
            &Platform::parse("linux/s390x").unwrap(),
            None,
            &|_| {},
        )
        .await;
    assert!(
        matches!(none, Err(PullError::NoMatchingPlatform(_))),
        "{none:?}"
    );

    let again = puller
        .pull(
            &store,
            &reference("busybox"),
            &Platform::default(),
            None,
            &|_| {},
        )
        .await
        .unwrap();
    assert!(again.up_to_date);
    assert_eq!(again.image.id, v2.image.id);
    let second_tag = puller
        .pull(
            &store,
            &reference("busybox:1.0"),
            &Platform::default(),
            None,
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(second_tag.image.id, v2.image.id);
    assert!(!second_tag.up_to_date, "the 1.0 tag is new here");
    assert!(second_tag
        .image
        .repo_tags
        .contains(&format!("{}/busybox:1.0", registry())));
    assert_eq!(
        store
            .resolve(&format!("{}/busybox:1.0", registry()))
            .unwrap()
            .id,
        v2.image.id
    );

    // By digest.
    let by_digest =
        Reference::parse(&format!("{}/busybox@{}", registry(), v2.manifest_digest)).unwrap();
    let d = puller
        .pull(&store, &by_digest, &Platform::default(), None, &|_| {})
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
        .pull(
            &store,
            &reference("busybox"),
            &Platform::default(),
            None,
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(re.image.id, v2.image.id);
}

#[tokio::test]
#[ignore = "needs the test registry: make test runs it"]
async fn unknown_names_fail_in_dockers_words() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let puller = Puller::new(loopback());
    let err = puller
        .pull(
            &store,
            &reference("busybox:nosuchtag"),
            &Platform::default(),
            None,
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
            None,
            &|_| {},
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "pull access denied for {}/nosuchrepo, repository does not exist or may require 'docker login'",
            registry()
        )
    );
    let closed = Reference::parse("127.0.0.1:1/busybox").unwrap();
    let err = puller
        .pull(&store, &closed, &Platform::default(), None, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::Unreachable { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "Get \"http://127.0.0.1:1/v2/busybox/manifests/latest\": dial tcp 127.0.0.1:1: connect: connection refused"
    );
    assert!(store.list().is_empty());
}

#[tokio::test]
#[ignore = "needs the test registry: make test runs it"]
async fn concurrent_pulls_of_one_image_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let puller = Puller::new(loopback());
    let r = reference("busybox");
    let platform = Platform::default();
    let (a, b) = tokio::join!(
        puller.pull(&store, &r, &platform, None, &|_| {}),
        puller.pull(&store, &r, &platform, None, &|_| {})
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

#[tokio::test]
#[ignore = "needs the test registry: make test runs it"]
async fn a_pull_that_dies_midway_leaves_no_half_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(ImageStore::open(dir.path()).unwrap());
    let puller = std::sync::Arc::new(Puller::new(loopback()));
    let (s, p) = (store.clone(), puller.clone());
    // Die (panic) as the second layer starts extracting: the first is already applied in tmp/.
    let died = tokio::spawn(async move {
        let extracting = std::sync::atomic::AtomicUsize::new(0);
        let progress = |p: Progress| {
            if p.status == "Extracting"
                && extracting.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1
            {
                panic!("simulated crash");
            }
        };
        p.pull(
            &s,
            &reference("busybox"),
            &Platform::default(),
            None,
            &progress,
        )
        .await
    })
    .await;
    assert!(died.unwrap_err().is_panic());
    let leftovers = std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
    assert!(leftovers > 0, "the crash left work in tmp/");
    drop(store);

    let store = ImageStore::open(dir.path()).unwrap();
    assert!(store.list().is_empty(), "no half image");
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert!(store.resolve(&format!("{}/busybox", registry())).is_none());
    let seen = Mutex::new(Vec::<String>::new());
    let again = puller
        .pull(
            &store,
            &reference("busybox"),
            &Platform::default(),
            None,
            &|p: Progress| seen.lock().unwrap().push(p.status),
        )
        .await
        .unwrap();
    assert!(store
        .rootfs(&again.image.id)
        .join("etc/vic-release")
        .is_file());
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.iter().filter(|s| *s == "Already exists").count(),
        2,
        "the downloaded blobs were kept: {seen:?}"
    );
}

#[tokio::test]
#[ignore = "needs the test registry: make test runs it"]
async fn an_interrupted_download_resumes_where_it_stopped() {
    // A complete pull gives the layer's bytes.
    let full_dir = tempfile::tempdir().unwrap();
    let full = ImageStore::open(full_dir.path()).unwrap();
    let puller = Puller::new(loopback());
    let r = reference("busybox");
    let done = puller
        .pull(&full, &r, &Platform::default(), None, &|_| {})
        .await
        .unwrap();
    let (digest, bytes) = done
        .image
        .layers
        .iter()
        .map(|l| {
            (
                l.clone(),
                std::fs::read(full.blob_file(l).unwrap()).unwrap(),
            )
        })
        .max_by_key(|(_, b)| b.len())
        .unwrap();
    assert!(
        bytes.len() > 600_000,
        "a layer big enough to tell resume from restart"
    );

    // Another store holds all but the last 1000 bytes of it, as a killed pull leaves them.
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let offset = bytes.len() - 1000;
    let partial = store.blob_file(&digest).unwrap().with_extension("partial");
    std::fs::write(&partial, &bytes[..offset]).unwrap();
    drop(store);
    let store = ImageStore::open(dir.path()).unwrap();
    assert!(partial.exists(), "open keeps a recent partial download");

    let short: String = digest[7..19].to_string();
    let seen = Mutex::new(Vec::new());
    let progress = |p: Progress| {
        if p.status == "Downloading" && p.id.as_deref() == Some(short.as_str()) {
            seen.lock().unwrap().push(p.current.unwrap_or(0));
        }
    };
    let again = puller
        .pull(&store, &r, &Platform::default(), None, &progress)
        .await
        .unwrap();
    assert_eq!(again.image.id, done.image.id);
    assert_eq!(
        std::fs::read(store.blob_file(&digest).unwrap()).unwrap(),
        bytes
    );
    assert!(!partial.exists());
    let seen = seen.into_inner().unwrap();
    assert!(!seen.is_empty(), "the layer was downloaded");
    assert!(
        seen.iter().all(|&c| c > offset as u64),
        "only the missing bytes were fetched (progress {seen:?}, offset {offset})"
    );

    // A partial that is not a prefix of the blob fails the digest check; the download starts
    // again from scratch within the same pull.
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let partial = store.blob_file(&digest).unwrap().with_extension("partial");
    std::fs::write(&partial, vec![0u8; offset]).unwrap();
    let third = puller
        .pull(&store, &r, &Platform::default(), None, &|_| {})
        .await
        .unwrap();
    assert_eq!(third.image.id, done.image.id);
    assert_eq!(
        std::fs::read(store.blob_file(&digest).unwrap()).unwrap(),
        bytes
    );
    assert!(!partial.exists(), "the bad partial is gone");
}

/// Admits growth up to `limit` bytes in all (the VCH's storage quota, as the store sees it).
struct Limit(u64);

impl imagec::store::Budget for Limit {
    fn admit(&self, held: u64, adding: u64) -> Result<(), String> {
        if held + adding > self.0 {
            Err(format!("over: {held} + {adding} > {}", self.0))
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
#[ignore = "needs the test registry: make test runs it"]
async fn a_budget_refuses_before_downloading_or_before_committing_and_leaves_no_image() {
    let puller = Puller::new(loopback());
    let r = reference("busybox");
    // The image's blobs and unpacked size, from a pull without a budget.
    let full_dir = tempfile::tempdir().unwrap();
    let full = ImageStore::open(full_dir.path()).unwrap();
    let done = puller
        .pull(&full, &r, &Platform::default(), None, &|_| {})
        .await
        .unwrap();
    let blobs = full.usage() - done.image.size;
    let files = |dir: &std::path::Path| std::fs::read_dir(dir).unwrap().count();

    // Blobs that do not fit: refused before any download.
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path())
        .unwrap()
        .with_budget(std::sync::Arc::new(Limit(blobs - 1)));
    let err = puller
        .pull(&store, &r, &Platform::default(), None, &|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, PullError::Store(imagec::store::StoreError::Quota(_))),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("over: 0 + {blobs} > {}", blobs - 1)
    );
    assert_eq!(
        files(&dir.path().join("blobs/sha256")),
        0,
        "nothing downloaded"
    );

    // Blobs that fit, an unpacked image that does not: refused at the commit.
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path())
        .unwrap()
        .with_budget(std::sync::Arc::new(Limit(blobs + done.image.size - 1)));
    let err = puller
        .pull(&store, &r, &Platform::default(), None, &|_| {})
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "over: {blobs} + {} > {}",
            done.image.size,
            blobs + done.image.size - 1
        )
    );
    assert!(store.list().is_empty(), "no image");
    assert_eq!(files(&dir.path().join("images")), 0, "no root filesystem");
    assert_eq!(files(&dir.path().join("tmp")), 0, "no work left");

    // One byte more and it fits, reusing what was downloaded.
    drop(store);
    let store = ImageStore::open(dir.path())
        .unwrap()
        .with_budget(std::sync::Arc::new(Limit(blobs + done.image.size)));
    let seen = Mutex::new(Vec::<String>::new());
    let again = puller
        .pull(&store, &r, &Platform::default(), None, &|p: Progress| {
            seen.lock().unwrap().push(p.status)
        })
        .await
        .unwrap();
    assert_eq!(again.image.id, done.image.id);
    assert!(seen.lock().unwrap().iter().any(|s| s == "Already exists"));
}

#[tokio::test]
#[ignore = "needs the test registry: make test runs it"]
async fn tags_are_listed_sorted() {
    let tags = Puller::new(loopback())
        .tags(&reference("busybox"), None)
        .await
        .unwrap();
    assert!(tags.contains(&"latest".to_string()), "{tags:?}");
    assert!(tags.windows(2).all(|w| w[0] < w[1]), "{tags:?}");
}
