//! Published UDP ports: datagrams relayed between the host socket and the container, one
//! *flow* per client address (as a NAT keeps one mapping per client), so that each reply
//! reaches the client that asked.
//!
//! ```text
//!   client A ─┐                       ┌─ socket for A (backend side) ─┐
//!             ├─► HOST_IP:HOST_PORT ──┤                               ├─► CONTAINER_IP:PORT
//!   client B ─┘                       └─ socket for B (backend side) ─┘
//! ```
//!
//! A flow ends after [`FLOW_IDLE`] without a datagram either way. A binding holds at most
//! [`MAX_FLOWS`] flows (one socket each); a datagram from a further client is dropped and
//! logged. Datagrams pass whole up to IPv4's largest (65,507 bytes). An idle flow holds no
//! buffer: replies are read into the stack of the call that forwards them.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Clients one binding relays for at once.
pub const MAX_FLOWS: usize = 256;

/// How long a flow lives without a datagram either way.
pub const FLOW_IDLE: Duration = Duration::from_secs(60);

/// The largest UDP payload IPv4 carries.
const DATAGRAM_MAX: usize = 65_507;

/// One client's mapping: the socket that speaks for it to the container.
struct Flow {
    upstream: Arc<UdpSocket>,
    /// When the client last sent, in milliseconds since the relay began.
    last_sent: Arc<AtomicU64>,
    replies: JoinHandle<()>,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.replies.abort();
    }
}

/// Relays datagrams arriving at `host` to `to` through `backend`, and the replies back,
/// until the task is aborted (the container stops).
pub(super) async fn relay(
    host: UdpSocket,
    backend: Arc<dyn hypervisor::Backend>,
    to: SocketAddrV4,
) {
    let host = Arc::new(host);
    let began = Instant::now();
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; DATAGRAM_MAX];
    loop {
        let (n, client) = match host.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%to, "receiving on a published UDP port: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        flows.retain(|_, f| !f.replies.is_finished());
        let now = began.elapsed().as_millis() as u64;
        if !flows.contains_key(&client) {
            if flows.len() >= MAX_FLOWS {
                tracing::warn!(%to, %client, "{MAX_FLOWS} UDP clients relayed: dropping a datagram from a new one");
                continue;
            }
            match backend.dial_udp(to).await {
                Ok(upstream) => {
                    let flow = open(upstream, host.clone(), client, now, began);
                    flows.insert(client, flow);
                }
                Err(e) => {
                    tracing::warn!(%to, %client, "relaying a UDP datagram: {e}");
                    continue;
                }
            }
        }
        let Some(flow) = flows.get(&client) else {
            continue;
        };
        flow.last_sent.store(now, Ordering::Relaxed);
        if let Err(e) = flow.upstream.send(&buf[..n]).await {
            tracing::debug!(%to, %client, "a UDP datagram was not relayed: {e}");
        }
    }
}

/// Starts carrying the container's replies on `upstream` back to `client`.
fn open(
    upstream: UdpSocket,
    host: Arc<UdpSocket>,
    client: SocketAddr,
    now: u64,
    began: Instant,
) -> Flow {
    let upstream = Arc::new(upstream);
    let last_sent = Arc::new(AtomicU64::new(now));
    let replies = tokio::spawn(replies(
        upstream.clone(),
        host,
        client,
        last_sent.clone(),
        began,
    ));
    Flow {
        upstream,
        last_sent,
        replies,
    }
}

/// Carries replies until neither side has sent for [`FLOW_IDLE`].
async fn replies(
    upstream: Arc<UdpSocket>,
    host: Arc<UdpSocket>,
    client: SocketAddr,
    last_sent: Arc<AtomicU64>,
    began: Instant,
) {
    loop {
        match tokio::time::timeout(FLOW_IDLE, upstream.readable()).await {
            Ok(Ok(())) => forward_one(&upstream, &host, client),
            Ok(Err(e)) => {
                tracing::debug!(%client, "a UDP flow's socket failed: {e}");
                return;
            }
            Err(_) => {
                let idle_ms = (began.elapsed().as_millis() as u64)
                    .saturating_sub(last_sent.load(Ordering::Relaxed));
                if idle_ms >= FLOW_IDLE.as_millis() as u64 {
                    return;
                }
            }
        }
    }
}

/// Forwards one waiting reply to `client`. A reply the host socket has no room for is
/// dropped, as the network would drop it; a refusal from the container (no one listens yet)
/// is consumed here.
fn forward_one(upstream: &UdpSocket, host: &UdpSocket, client: SocketAddr) {
    let mut buf = [0u8; DATAGRAM_MAX];
    match upstream.try_recv(&mut buf) {
        Ok(n) => {
            if let Err(e) = host.try_send_to(&buf[..n], client) {
                tracing::debug!(%client, "a UDP reply was dropped: {e}");
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(e) => tracing::debug!(%client, "a UDP flow: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_client_gets_its_own_replies() {
        let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let at = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let mut b = [0u8; 64];
            loop {
                let (n, from) = echo.recv_from(&mut b).await.unwrap();
                let mut reply = b"echo:".to_vec();
                reply.extend_from_slice(&b[..n]);
                echo.send_to(&reply, from).await.unwrap();
            }
        });
        let backend = Arc::new(hypervisor::fake::FakeBackend::new(Arc::new(|_, _| {
            Box::pin(std::future::pending::<()>())
        })));
        backend.dial_udp_to(at);
        let host = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = host.local_addr().unwrap();
        let task = tokio::spawn(relay(
            host,
            backend.clone(),
            SocketAddrV4::new([172, 16, 0, 2].into(), 53),
        ));
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut got = [0u8; 64];
        for (client, word) in [(&a, "a1"), (&b, "b1"), (&a, "a2")] {
            client.send_to(word.as_bytes(), port).await.unwrap();
            let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut got))
                .await
                .expect("a reply within 5 s")
                .unwrap();
            assert_eq!(&got[..n], format!("echo:{word}").as_bytes());
        }
        let dialled = backend
            .calls()
            .iter()
            .filter(|c| c.starts_with("dial_udp "))
            .count();
        assert_eq!(dialled, 2, "one flow per client");
        assert!(backend
            .calls()
            .contains(&"dial_udp 172.16.0.2:53".to_string()));
        task.abort();
    }
}
