//! The Docker API as a client meets it: the router the appliance serves, over a real port
//! layer (its VMs from the recording fake backend, whose guests never answer, so nothing here
//! starts a container) and a real image store in a temporary directory. Each test sends raw
//! requests (raw JSON bodies, raw query strings) through the same handler as the server
//! ([`Api`], version prefix and all) and asserts on the status and the JSON a client reads.

mod containers;
mod events;
mod images;
mod networks;
mod queries;

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::FutureExt;
use hypervisor::fake::FakeBackend;
use imagec::pull::{Puller, RegistryOptions};
use imagec::store::{ImageRecord, ImageStore};
use portlayer::{Containers, ContainersConfig, EventBus, ImageService, Limits, Storage};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{router, Api, AppState, VchInfo};

/// A VCH for one test: its state lives as long as the directory.
pub(super) struct Vch {
    _dir: tempfile::TempDir,
    pub(super) state: AppState,
    api: Api,
}

/// What a client got: the status and the body, as JSON when it is JSON.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Value,
}

impl Answer {
    /// The `message` of a Docker error body.
    pub(super) fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
}

impl Vch {
    /// A VCH with no images and no containers, opened as the appliance opens one.
    pub(super) async fn new() -> Vch {
        Vch::with_quota(None).await
    }

    /// A VCH whose storage quota is `quota` bytes (`None`: unlimited).
    pub(super) async fn with_quota(quota: Option<u64>) -> Vch {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = portlayer::open_database(&dir.path().join("containers")).expect("database");
        let images =
            Arc::new(ImageStore::open_in(db.clone(), &dir.path().join("images")).expect("store"));
        // A guest that holds its end of the pipe and never says a word.
        let silent: hypervisor::fake::FakeGuest = Arc::new(|io, off| {
            async move {
                let _held = (io, off);
                std::future::pending::<()>().await
            }
            .boxed()
        });
        let containers = Containers::open(
            ContainersConfig {
                networks: vec![portlayer::Network::default_bridge()],
                network_pools: (17..21)
                    .map(|n| portlayer::networks::Cidr::parse(&format!("172.{n}.0.0/16")).unwrap())
                    .collect(),
                state_dir: dir.path().join("containers"),
                limits: Limits::default(),
                database: Some(db),
                vch_name: "vch".into(),
                volume_stores: vec![portlayer::VolumeStore {
                    label: "default".into(),
                    dir: dir.path().join("volumes"),
                }],
                bind_paths: Vec::new(),
            },
            Arc::new(FakeBackend::new(silent)),
            images.clone(),
            Arc::new(EventBus::new()),
        )
        .await
        .expect("the port layer opens");
        let storage = Arc::new(Storage::new(
            quota,
            vec![dir.path().join("containers")],
            vec![],
        ));
        let state = AppState {
            images: ImageService::new(images, containers.clone(), storage),
            containers,
            puller: Arc::new(Puller::new(RegistryOptions::default())),
            info: Arc::new(VchInfo::default()),
        };
        let api = Api::of(router(state.clone()), true);
        Vch {
            _dir: dir,
            state,
            api,
        }
    }

    /// Adds an image to the store, tagged with `tags` (none: a dangling image); returns its ID.
    pub(super) fn add_image(&self, n: u8, tags: &[&str], created: &str) -> String {
        let id = format!("sha256:{}", format!("{n:02x}").repeat(32));
        let rec = ImageRecord {
            id: id.clone(),
            repo_tags: tags.iter().map(|t| t.to_string()).collect(),
            repo_digests: Vec::new(),
            config: json!({ "config": { "Cmd": ["sh"], "Labels": { "n": n.to_string() } } }),
            created: created.to_string(),
            size: 1000 + u64::from(n),
            architecture: "amd64".into(),
            os: "linux".into(),
            diff_ids: Vec::new(),
            layers: Vec::new(),
            layer_sizes: Vec::new(),
            parent: String::new(),
        };
        let rootfs = self
            .state
            .images
            .store()
            .temp_dir()
            .expect("a work directory");
        self.state
            .images
            .store()
            .commit(rec, &rootfs)
            .expect("the image commits");
        id
    }

    /// Sends `method uri` with a raw body (JSON when not empty).
    pub(super) async fn send(&self, method: &str, uri: &str, body: &str) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if !body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Body::from(body.to_string())).expect("a request");
        let api = self.api.clone();
        let service =
            tower::service_fn(move |req| api.clone().handle(req).map(Ok::<_, Infallible>));
        let resp = service.oneshot(req).await.unwrap_or_else(|e| match e {});
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .expect("the whole body");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer { status, body }
    }

    pub(super) async fn get(&self, uri: &str) -> Answer {
        self.send("GET", uri, "").await
    }

    /// GETs `uri` with `filters` and asserts Docker's 400 with message `want`.
    pub(super) async fn filter_refused(&self, path: &str, filters_json: Value, want: &str) {
        let a = self
            .get(&format!("{path}?filters={}", filters(filters_json)))
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}: {a:?}");
        assert_eq!(a.message(), want, "{path}");
    }

    pub(super) async fn post(&self, uri: &str, body: &str) -> Answer {
        self.send("POST", uri, body).await
    }

    /// Creates a container of `image` named `name` with `labels`; returns its ID.
    pub(super) async fn create(&self, name: &str, image: &str, labels: Value) -> String {
        let body = json!({ "Image": image, "Cmd": ["sh"], "Labels": labels }).to_string();
        let a = self
            .post(&format!("/containers/create?name={name}"), &body)
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
        a.body["Id"].as_str().expect("an Id").to_string()
    }
}

/// `filters` as a client puts it in a query string.
pub(super) fn filters(v: Value) -> String {
    percent_encode(&v.to_string())
}

/// Percent-encodes everything but unreserved characters, as Go's `url.QueryEscape` does.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `Names` of a container list, in order.
pub(super) fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|c| c["Names"][0].as_str().unwrap_or_default().to_string())
        .collect()
}
