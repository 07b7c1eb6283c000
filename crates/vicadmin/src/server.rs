//! The admin listener: HTTPS only, with the Docker API's certificate (or, for a VCH made
//! with `--no-tls`, one the appliance makes for itself at start), within the same kind of
//! bounds as the Docker API (connections at once, handshake and request-head deadlines).
//! Each request carries [`Peer`]: whether its connection presented a client certificate
//! of the VCH's authority, which the handshake checked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Admin connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a request's head may take, and a connection may idle between requests.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// About the most a request's head may take.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// What the connection a request came on proved.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer {
    /// It presented a client certificate of the VCH's authority.
    pub certified: bool,
}

/// A TLS configuration with a certificate made now, for `names` (host names or
/// addresses), for a VCH whose Docker API has no TLS.
pub fn self_signed(names: Vec<String>) -> Result<Arc<ServerConfig>, String> {
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("making the admin certificate: {e}"))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(vec![made.cert.der().clone()], key)
            .map_err(|e| format!("the admin certificate: {e}"))?;
    Ok(Arc::new(config))
}

/// Serves `router` over TLS on `listener` until the process ends.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let limits = docker_api::ServerLimits {
        max_connections: MAX_CONNECTIONS,
        header_read_timeout: HEADER_TIMEOUT,
    };
    tracing::info!(
        "VCH Admin listening on https://{} (at most {MAX_CONNECTIONS} connections)",
        listener.local_addr()?
    );
    docker_api::accept_loop(
        listener,
        &limits,
        std::future::pending(),
        &[],
        move |tcp, peer: SocketAddr| {
            let (acceptor, router) = (acceptor.clone(), router.clone());
            async move {
                let accepted =
                    tokio::time::timeout(docker_api::HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                let tls = match accepted {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => return tracing::debug!(%peer, "admin TLS handshake failed: {e}"),
                    Err(_) => return tracing::debug!(%peer, "admin TLS handshake timed out"),
                };
                let certified = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|c| !c.is_empty());
                let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    req.extensions_mut().insert(Peer { certified });
                    router.clone().oneshot(req.map(Body::new))
                });
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(MAX_HEAD_BYTES);
                if let Err(e) = http.serve_connection(TokioIo::new(tls), svc).await {
                    tracing::debug!(%peer, "admin connection ended: {e}");
                }
            }
        },
    )
    .await
}
