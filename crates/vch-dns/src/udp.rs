//! Queries over UDP: answered in turn, forwarded ones each in a task of their own, at most
//! `max_inflight` of them; every reply goes to the address the query came from.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::message::{Transport, MAX_UDP};
use crate::server::{Action, Server};

/// Serves the queries arriving on `socket` until `shutdown` fires; forwards still under way then
/// are dropped.
pub(crate) async fn serve(
    socket: UdpSocket,
    server: Arc<Server>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let socket = Arc::new(socket);
    let mut forwards = JoinSet::new();
    // One byte more than the largest query taken, to tell a cut datagram from a whole one.
    let mut buffer = vec![0; MAX_UDP + 1];
    loop {
        let (len, client) = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(error) if passing(&error) => continue,
                Err(error) => return Err(error),
            },
        };
        if len > MAX_UDP {
            continue;
        }
        match server.handle(&buffer[..len], client.ip(), Transport::Udp) {
            Action::Reply(reply) => send(&socket, &reply, client).await,
            Action::Forward(pending) => {
                let (socket, server) = (socket.clone(), server.clone());
                forwards.spawn(async move {
                    if let Some(reply) = server.forward(pending).await {
                        send(&socket, &reply, client).await;
                    }
                });
            }
            Action::Drop => {}
        }
    }
}

/// Errors a UDP socket reports about one peer (an ICMP error for an earlier reply) rather than
/// about itself.
fn passing(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

async fn send(socket: &UdpSocket, reply: &[u8], client: SocketAddr) {
    if let Err(error) = socket.send_to(reply, client).await {
        tracing::debug!(%client, %error, "could not send a DNS reply");
    }
}
