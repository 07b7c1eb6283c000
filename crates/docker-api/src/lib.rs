//! The **Docker personality** of a VCH: Docker Engine API over HTTP, translated into port
//! layer calls. It knows Docker — its JSON, its status codes, its wording, its stream
//! framings — and nothing about hypervisors.
//!
//! ```text
//!   docker CLI ──HTTP──► router ─► system.rs      /_ping /version /info
//!                               ├► images.rs      /images/…   (imagec)
//!                               ├► archive.rs     save, load, import (imagec::archive)
//!                               ├► containers.rs  /containers/…  (portlayer::Containers)
//!                               └► streams.rs     attach (hijacked), logs, wait
//! ```
//!
//! [`serve`] speaks plain HTTP; [`serve_tls`] (in `tls.rs`) speaks HTTPS, optionally requiring
//! client certificates, through the same handler. Both accept and serve connections in
//! `server.rs`, within one set of bounds ([`ServerLimits`]: connections, header and idle
//! timeouts, request head size); `guard.rs` caps buffered bodies, turns every refusal into
//! Docker's JSON, and on the plain endpoint refuses requests a web page may have sent.
//!
//! Every path is accepted with or without the `/v1.NN` prefix; the version a client asks for
//! is checked against [`MIN_API_VERSION`]..=[`API_VERSION`]. Each endpoint reads its query
//! string into a struct of its own through `query.rs` (Docker's booleans, repeated
//! parameters, a 400 naming a bad value), its `filters` through `filters.rs`, and every error
//! becomes Docker's status and JSON in `error.rs`.

#![recursion_limit = "256"]

mod archive;
mod commit;
mod containers;
mod copy;
mod detach;
mod error;
mod events;
mod exec;
mod filters;
mod glob;
mod guard;
mod images;
mod inspect;
mod networks;
mod prune;
mod pull;
mod query;
mod server;
mod stats;
mod streams;
mod swarm;
mod system;
mod tls;
mod top;
mod volumes;

#[cfg(test)]
mod handler_tests;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use imagec::pull::Puller;

use portlayer::{Containers, ImageService};
use tower::ServiceExt;

pub use error::{ApiError, ApiResult};
pub use glob::MAX_PATTERN_LEN;
pub use guard::MAX_JSON_BODY;
pub use server::{accept_loop, ServerLimits, HEADER_READ_TIMEOUT, MAX_CONNECTIONS, MAX_HEAD_BYTES};
pub use tls::{
    optional_client_config, serve_tls, server_config, TlsConfig, TlsError, HANDSHAKE_TIMEOUT,
};

/// Highest Docker Engine API version served (what the docker 28 CLI negotiates).
pub const API_VERSION: &str = "1.50";
/// Lowest API version accepted.
pub const MIN_API_VERSION: &str = "1.24";

/// What the VCH tells clients about itself.
#[derive(Debug, Clone, Default)]
pub struct VchInfo {
    /// The VCH's name.
    pub name: String,
    /// Registries reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// When not empty, the only registries pulled from.
    pub whitelist_registries: Vec<String>,
    /// Where the VCH keeps its state (DockerRootDir).
    pub root_dir: String,
}

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct AppState {
    pub containers: Containers,
    /// The image store (for reads) and every change of an image, with its events; the
    /// VCH's storage and its quota.
    pub images: ImageService,
    pub puller: Arc<Puller>,
    pub info: Arc<VchInfo>,
}

/// The Docker API router (paths without version prefix).
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/auth", post(pull::login))
        .route("/events", get(events::events))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route("/images/create", post(archive::create))
        .route("/images/get", get(archive::save))
        .route("/images/load", post(archive::load))
        .route("/images/json", get(images::list))
        .route("/images/prune", post(images::prune))
        .route(
            "/images/{*rest}",
            get(images::get_dispatch)
                .post(images::post_dispatch)
                .delete(images::delete),
        )
        .route("/system/df", get(images::system_df))
        .route("/commit", post(commit::commit))
        .route("/containers/create", post(containers::create))
        .route("/containers/json", get(containers::list))
        .route("/containers/prune", post(prune::containers))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/wait", post(streams::wait))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}/rename", post(containers::rename))
        .route("/containers/{id}/top", get(top::top))
        .route("/containers/{id}/stats", get(stats::stats))
        .route("/containers/{id}/export", get(copy::export))
        .route("/containers/{id}/changes", get(copy::changes))
        .route(
            "/containers/{id}/archive",
            get(copy::get).head(copy::head).put(copy::put),
        )
        .route("/containers/{id}/update", post(containers::update))
        .route("/containers/{id}/pause", post(containers::pause))
        .route("/containers/{id}/unpause", post(containers::unpause))
        .route("/containers/{id}/attach", post(streams::attach))
        .route("/containers/{id}/exec", post(exec::create))
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/containers/{id}/logs", get(streams::logs))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route(
            "/volumes/{name}",
            get(volumes::inspect).delete(volumes::remove),
        )
        .route(
            "/containers/{id}",
            axum::routing::delete(containers::remove),
        )
        .route(
            "/containers/{id}/{alias}",
            axum::routing::delete(containers::remove_link),
        )
        .merge(swarm::routes());
    with_docker_manners(routes).with_state(state)
}

/// What every route gets: the answer to unknown paths and methods, the cap on buffered
/// bodies, a JSON body on every error, Docker's response headers.
fn with_docker_manners<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes
        .fallback(not_found)
        // dockerd answers a known path with the wrong method as an unknown one.
        .method_not_allowed_fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(middleware::map_response(guard::json_errors))
        .layer(middleware::from_fn(docker_headers))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("page not found: {} {}", req.method(), req.uri().path()),
    )
}

/// Adds the headers Docker puts on every response.
async fn docker_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert(
        "Server",
        HeaderValue::from_static(concat!("vic/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    resp
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Strips `/v1.NN` and refuses versions outside the supported range.
fn strip_version(mut req: Request) -> Result<Request, ApiError> {
    let path = req.uri().path();
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok(req);
    };
    let Some((ver, tail)) = rest.split_once('/') else {
        return Ok(req);
    };
    let Some(asked) = parse_version(ver) else {
        return Ok(req);
    };
    let max = parse_version(API_VERSION).unwrap_or((1, 50));
    let min = parse_version(MIN_API_VERSION).unwrap_or((1, 24));
    if asked > max {
        let msg = format!(
            "client version {ver} is too new. Maximum supported API version is {API_VERSION}"
        );
        return Err(ApiError::bad_request(msg));
    }
    if asked < min {
        let msg = format!("client version {ver} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version");
        return Err(ApiError::bad_request(msg));
    }
    let new_path = format!("/{tail}");
    let pq = match req.uri().query() {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path,
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = pq.parse().ok();
    if let Ok(uri) = axum::http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    Ok(req)
}

/// The whole API as one handler: on the plain endpoint the request checked for a web page's
/// marks, the version prefix checked and stripped, then the router. The plain and the TLS
/// server both serve through it.
#[derive(Clone)]
pub(crate) struct Api {
    router: Router,
    plain: bool,
}

impl Api {
    /// The API as the TLS endpoint serves it.
    pub(crate) fn new(state: AppState) -> Self {
        Self::of(router(state), false)
    }

    pub(crate) fn of(router: Router, plain: bool) -> Self {
        Api { router, plain }
    }

    pub(crate) async fn handle(self, req: Request) -> Response {
        if self.plain {
            if let Err(e) = guard::check_plain_request(req.headers()) {
                tracing::warn!(
                    method = %req.method(),
                    path = req.uri().path(),
                    "{}",
                    e.message
                );
                return e.into_response();
            }
        }
        match strip_version(req) {
            Ok(req) => match self.router.oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            },
            Err(e) => e.into_response(),
        }
    }
}

/// Serves the API over plain HTTP on `listener` until `shutdown` resolves, within `limits`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_plain(listener, Api::of(router(state), true), limits, shutdown).await
}

pub(crate) async fn serve_plain(
    listener: tokio::net::TcpListener,
    api: Api,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local: SocketAddr = listener.local_addr()?;
    tracing::info!(
        "Docker API listening on {local} (no TLS; at most {} connections)",
        limits.max_connections
    );
    let busy = server::busy_reply();
    let limits = std::sync::Arc::new(limits);
    server::accept_loop(listener, &limits, shutdown, &busy, |tcp, _peer| {
        let (api, limits) = (api.clone(), limits.clone());
        async move { server::serve_connection(tcp, api, &limits).await }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefix_is_stripped_and_checked() {
        let req = Request::builder()
            .uri("/v1.47/containers/json?all=1")
            .body(axum::body::Body::empty())
            .unwrap();
        let req = strip_version(req).unwrap();
        assert_eq!(req.uri().path(), "/containers/json");
        assert_eq!(req.uri().query(), Some("all=1"));
        let req = Request::builder()
            .uri("/v1.99/info")
            .body(axum::body::Body::empty())
            .unwrap();
        let err = strip_version(req).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("too new"), "{}", err.message);
        let req = Request::builder()
            .uri("/_ping")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(strip_version(req).unwrap().uri().path(), "/_ping");
    }
}
