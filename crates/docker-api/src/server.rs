//! Connections, for the plain and the TLS listener alike: one accept loop and one
//! connection server, and with them every bound a client meets before its request reaches
//! the router.
//!
//! ```text
//!   accept ─► over the cap? ─yes─► 503 written if the socket takes it at once, closed
//!     │ (error: EMFILE…)  │no
//!     ▼                   ▼
//!   pause, go on      [TLS handshake] ─► hyper http1 (+ upgrades)
//!                                         · request line and headers within HEADER_READ_TIMEOUT,
//!                                           also between keep-alive requests (idle)
//!                                         · request head about MAX_HEAD_BYTES at most (431),
//!                                           a URI 64 KiB at most (414)
//! ```
//!
//! The timeouts bound only the wait for a request's head: a response body (`logs -f`,
//! `events`, `wait`, pull progress) and a hijacked connection (`attach`) last as long as
//! they need. A hijacked connection leaves hyper, and so no longer counts against the cap.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::Api;

/// Connections served at once on one listener; past it new ones are closed at once.
pub const MAX_CONNECTIONS: usize = 512;
/// How long a client may take to send a request's line and headers, and how long a
/// keep-alive connection may sit idle between requests.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// About the most a request's line and headers may take: hyper gives up reading a head once
/// its buffer holds this much (`431`), and refuses a URI over 64 KiB (`414`). Those two
/// answers come from hyper, before any handler, with an empty body.
pub const MAX_HEAD_BYTES: usize = 256 * 1024;
/// How long the accept loop pauses after a failed accept (out of descriptors and the like).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How often a refused connection is logged at most.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The bounds of one listener. The defaults are the constants above; the appliance may
/// lower them (tests do, to reach them with few connections).
#[derive(Debug, Clone)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }
}

/// What a plain-HTTP client over the connection cap is told before its connection closes.
pub(crate) fn busy_reply() -> Vec<u8> {
    let body = r#"{"message":"too many connections to the Docker API, try again later"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Accepts connections until `shutdown` resolves and runs `serve` on each in a task of its
/// own, at most `limits.max_connections` at once. A connection over the cap gets `refusal`
/// (only what the socket takes without waiting) and is closed; the loop never waits for a
/// connection to end, and pauses briefly after a failed accept instead of spinning.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    limits: &ServerLimits,
    shutdown: impl Future<Output = ()>,
    refusal: &[u8],
    serve: F,
) -> io::Result<()>
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut last_logged: Option<Instant> = None;
    let mut refused = 0u64;
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused += 1;
            if last_logged.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_INTERVAL) {
                tracing::warn!(
                    %peer,
                    refused,
                    "{} connections open: refusing new ones",
                    limits.max_connections
                );
                last_logged = Some(Instant::now());
            }
            let _ = tcp.try_write(refusal);
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let conn = serve(tcp, peer);
        tokio::spawn(async move {
            conn.await;
            drop(permit);
        });
    }
}

/// Serves HTTP/1.1 on one connection through `api`, within `limits`, with upgrades so
/// `attach` can hijack it.
pub(crate) async fn serve_connection<I>(io: I, api: Api, limits: &ServerLimits)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let api = api.clone();
        async move { Ok::<_, std::convert::Infallible>(api.handle(req.map(Body::new)).await) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    if let Err(e) = http
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await
    {
        tracing::debug!("connection ended: {e}");
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
