//! The image a hostile registry serves honestly, and the store a pull goes into.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use imagec::auth::Credentials;
use imagec::digest::Digest;
use imagec::pull::{Platform, PullError, PullOutcome, Puller, RegistryOptions, Timeouts};
use imagec::reference::Reference;
use imagec::store::ImageStore;

use crate::fixture::{Hostile, Reply, Req};

pub const V2S2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A small valid image: one uncompressed layer holding `/hello`.
#[derive(Clone)]
pub struct Image {
    pub config: Vec<u8>,
    pub config_digest: String,
    pub layer: Vec<u8>,
    pub layer_digest: String,
}

pub fn image() -> Image {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "hello", &b"hello\n"[..]).unwrap();
    let layer = tar.into_inner().unwrap();
    let layer_digest = Digest::of(&layer).to_string();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .unwrap();
    Image {
        config_digest: Digest::of(&config).to_string(),
        config,
        layer,
        layer_digest,
    }
}

/// A v2s2 manifest naming a config and layers (digest, declared size) as given.
pub fn manifest(config: (&str, usize), layers: &[(&str, usize)]) -> String {
    let layers: Vec<_> = layers
        .iter()
        .map(|(d, n)| serde_json::json!({"mediaType": "application/vnd.docker.image.rootfs.diff.tar", "digest": d, "size": n}))
        .collect();
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": V2S2,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config.0, "size": config.1},
        "layers": layers,
    })
    .to_string()
}

impl Image {
    pub fn manifest(&self) -> String {
        manifest(
            (&self.config_digest, self.config.len()),
            &[(&self.layer_digest, self.layer.len())],
        )
    }

    /// The honest answer to `req`, if it is one of this image's paths.
    pub fn serve(&self, req: &Req) -> Option<Reply> {
        let p = req.path.as_str();
        if p == "/v2/" {
            return Some(Reply::status(200));
        }
        if p == "/v2/x/manifests/latest" {
            return Some(Reply::json(V2S2, self.manifest()));
        }
        if p == format!("/v2/x/blobs/{}", self.config_digest) {
            return Some(Reply::ok(self.config.clone()));
        }
        if p == format!("/v2/x/blobs/{}", self.layer_digest) {
            return Some(Reply::ok(self.layer.clone()));
        }
        None
    }

    pub fn layer_path(&self) -> String {
        format!("/v2/x/blobs/{}", self.layer_digest)
    }
}

pub fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        stall: Duration::from_secs(1),
        request: Duration::from_secs(3),
        min_blob_bytes: 1024,
    }
}

pub fn options(addr: &str) -> RegistryOptions {
    RegistryOptions {
        insecure: vec![addr.to_string()],
        timeouts: timeouts(),
        ..Default::default()
    }
}

/// A store beside a canary directory, in one temporary root.
pub struct Scene {
    pub root: tempfile::TempDir,
    pub store: ImageStore,
}

impl Scene {
    pub fn new() -> Scene {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("canary/sub")).unwrap();
        std::fs::write(root.path().join("canary/secret"), b"do not read").unwrap();
        std::fs::write(root.path().join("canary/sub/x"), b"do not touch").unwrap();
        let store = ImageStore::open(&root.path().join("store")).unwrap();
        Scene { root, store }
    }

    pub fn store_dir(&self) -> PathBuf {
        self.root.path().join("store")
    }

    /// Everything outside the store, with its size and change, modification and access
    /// times (taken without reading a file, so that a read by the pull shows).
    pub fn outside(&self) -> BTreeMap<PathBuf, (u64, [i64; 4], [i64; 2])> {
        use std::os::unix::fs::MetadataExt;
        let mut out = BTreeMap::new();
        let mut stack = vec![self.root.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p == self.store_dir() {
                    continue;
                }
                let m = std::fs::symlink_metadata(&p).unwrap();
                if m.is_dir() {
                    stack.push(p.clone());
                }
                // A directory's access time moves with this walk's own listing.
                let atime = if m.is_dir() {
                    [0, 0]
                } else {
                    [m.atime(), m.atime_nsec()]
                };
                let times = [m.ctime(), m.ctime_nsec(), m.mtime(), m.mtime_nsec()];
                out.insert(p, (m.len(), times, atime));
            }
        }
        out
    }

    pub async fn pull(
        &self,
        puller: &Puller,
        addr: &str,
        creds: Option<&Credentials>,
    ) -> Result<PullOutcome, PullError> {
        let r = Reference::parse(&format!("{addr}/x")).unwrap();
        puller
            .pull(&self.store, &r, &Platform::default(), creds, &|_| {})
            .await
    }

    /// Pulls from `reg`, which must fail; returns the message after checking that the store
    /// holds no image, no partial download and only `whole` blobs (each matching its name),
    /// and that nothing outside the store changed.
    pub async fn pull_fails(&self, reg: &Hostile, opts: RegistryOptions, whole: &[&str]) -> String {
        self.pull_fails_keeping(reg, opts, whole, None).await
    }

    /// [`Self::pull_fails`], where an interrupted download of `partial` (digest, declared
    /// size) may be kept for the next pull to resume, no larger than declared.
    pub async fn pull_fails_keeping(
        &self,
        reg: &Hostile,
        opts: RegistryOptions,
        whole: &[&str],
        partial: Option<(&str, usize)>,
    ) -> String {
        let before = self.outside();
        let puller = Puller::new(opts);
        let err = self
            .pull(&puller, &reg.addr, None)
            .await
            .expect_err("the pull must fail");
        assert_eq!(self.outside(), before, "nothing outside the store changes");
        self.assert_no_image(whole, partial);
        err.to_string()
    }

    pub fn assert_no_image(&self, whole: &[&str], partial: Option<(&str, usize)>) {
        assert!(self.store.list().is_empty(), "no image");
        let dir = self.store_dir();
        assert_eq!(entries(&dir.join("images")), Vec::<String>::new());
        assert_eq!(entries(&dir.join("tmp")), Vec::<String>::new());
        let wanted: Vec<String> = whole
            .iter()
            .map(|d| d.trim_start_matches("sha256:").to_string())
            .collect();
        for name in entries(&dir.join("blobs/sha256")) {
            if let Some((digest, size)) = partial {
                if name == format!("{}.partial", digest.trim_start_matches("sha256:")) {
                    let len = std::fs::metadata(dir.join("blobs/sha256").join(&name))
                        .unwrap()
                        .len();
                    assert!(len <= size as u64, "a partial download within its size");
                    continue;
                }
            }
            assert!(wanted.contains(&name), "unexpected blob file {name}");
            let bytes = std::fs::read(dir.join("blobs/sha256").join(&name)).unwrap();
            assert_eq!(Digest::of(&bytes).hex(), name, "a stored blob verifies");
        }
    }
}

pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A registry serving `img`, with `hostile` answering first where it wants to.
pub async fn registry(
    img: &Image,
    hostile: impl Fn(&Req) -> Option<Reply> + Send + Sync + 'static,
) -> Hostile {
    let img = img.clone();
    Hostile::start(move |req| {
        hostile(req)
            .or_else(|| img.serve(req))
            .unwrap_or_else(|| Reply::status(404))
    })
    .await
}

pub fn blob_requests(reg: &Hostile) -> usize {
    reg.requests()
        .iter()
        .filter(|r| r.path.contains("/blobs/"))
        .count()
}
