//! Queries over TCP: a bounded number of connections, each answered in order, each closed when
//! the client is idle, trickles a message or does not read its replies for too long.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::frame;
use crate::message::Transport;
use crate::server::Server;

/// How long accepting waits after an error that is not about one connection (such as running
/// out of descriptors) before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The bounds on TCP clients.
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    pub clients: usize,
    pub idle: Duration,
}

/// Serves the connections arriving on `listener` until `shutdown` fires; connections still open
/// then are closed.
pub(crate) async fn serve(
    listener: TcpListener,
    server: Arc<Server>,
    limits: Limits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let clients = Arc::new(Semaphore::new(limits.clients));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, client) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if about_one_connection(&error) => continue,
            Err(error) => {
                tracing::warn!(%error, "could not accept a DNS connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = clients.clone().try_acquire_owned() else {
            tracing::debug!(%client, "too many DNS clients over TCP, closed a connection");
            continue;
        };
        let server = server.clone();
        connections.spawn(async move {
            let _permit = permit;
            converse(stream, client, &server, limits.idle).await;
        });
    }
}

/// Errors accepting that concern the connection at hand, not the listener.
fn about_one_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Answers the queries of one connection in order until the client closes it, breaks the
/// framing, or takes longer than `idle` to send a query or to take its reply.
async fn converse(mut stream: TcpStream, client: SocketAddr, server: &Server, idle: Duration) {
    loop {
        let query = match timeout(idle, frame::read(&mut stream)).await {
            Ok(Ok(Some(query))) => query,
            Ok(Ok(None)) => return,
            Ok(Err(error)) => {
                tracing::debug!(%client, %error, "DNS connection broke");
                return;
            }
            Err(_) => {
                tracing::debug!(%client, "DNS connection idle, closed it");
                return;
            }
        };
        let Some(reply) = server.reply(&query, client.ip(), Transport::Tcp).await else {
            continue;
        };
        if !matches!(
            timeout(idle, frame::write(&mut stream, &reply)).await,
            Ok(Ok(()))
        ) {
            tracing::debug!(%client, "DNS client did not take its reply, closed the connection");
            return;
        }
    }
}
