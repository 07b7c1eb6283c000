//! Published ports: a listener on the host per `-p` binding, each connection carried to the
//! container's address on its network through the backend ([`hypervisor::Backend::dial`]);
//! UDP ports are relayed datagram by datagram (see `udp.rs`).
//!
//! ```text
//!   client ─► HOST_IP:HOST_PORT (listener, appliance) ─► backend.dial(CONTAINER_IP:PORT) ─► VM
//! ```
//!
//! Every listener is bound before the container's VM is powered on, so a port that is taken
//! fails the start at once and leaves nothing; the listeners close when the container stops,
//! however it stops, and are bound again (at the ports recorded) when a restarted appliance
//! takes a running container over. Each binding carries at most [`MAX_CONNECTIONS`]
//! connections at once; more are closed as they arrive.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Connections one binding carries at once.
pub const MAX_CONNECTIONS: usize = 256;

mod udp;

/// The transport a binding carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    #[default]
    Tcp,
    Udp,
}

impl Proto {
    /// As Docker writes it after the port (`80/tcp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One published port: `host_ip:host_port` on the host to `container_port` in the container;
/// `host_port` 0 asks for any free port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    pub container_port: u16,
    /// Records written before UDP was carried have none: TCP.
    #[serde(default)]
    pub proto: Proto,
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
}

/// A bound host socket of either transport.
enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// A port that cannot be published, in dockerd's words.
#[derive(Debug, thiserror::Error)]
#[error("driver failed programming external connectivity on endpoint {name}: Bind for {addr} failed: {why}")]
pub struct PublishError {
    pub name: String,
    pub addr: SocketAddrV4,
    pub why: String,
}

/// Listeners bound for a container, not yet serving; or, for a container only on container
/// networks, the ports its own address publishes (nothing to listen for).
pub struct Bound {
    listeners: Vec<(PortBinding, Listener)>,
    direct: Vec<PortBinding>,
}

impl Bound {
    /// Binds every binding of container `name`, or none: the first that fails ends it.
    pub async fn bind(name: &str, bindings: &[PortBinding]) -> Result<Bound, PublishError> {
        let mut listeners = Vec::new();
        for b in bindings {
            let addr = SocketAddrV4::new(b.host_ip, b.host_port);
            let taken = |e: std::io::Error| PublishError {
                name: name.to_string(),
                addr,
                why: if e.kind() == std::io::ErrorKind::AddrInUse {
                    "port is already allocated".into()
                } else {
                    e.to_string()
                },
            };
            let l = match b.proto {
                Proto::Tcp => Listener::Tcp(TcpListener::bind(addr).await.map_err(taken)?),
                Proto::Udp => Listener::Udp(UdpSocket::bind(addr).await.map_err(taken)?),
            };
            let port = match &l {
                Listener::Tcp(l) => l.local_addr(),
                Listener::Udp(l) => l.local_addr(),
            };
            let port = port.map(|a| a.port()).unwrap_or(b.host_port);
            listeners.push((
                PortBinding {
                    host_port: port,
                    ..*b
                },
                l,
            ));
        }
        Ok(Bound {
            listeners,
            direct: Vec::new(),
        })
    }

    /// The bindings of a container reached at its own address `ip` on a container network:
    /// each container port is published there as it is (the network's firewall lets it in),
    /// so a binding may not ask for another port.
    pub fn direct(ip: Ipv4Addr, bindings: &[PortBinding]) -> Result<Bound, String> {
        if let Some(b) = bindings
            .iter()
            .find(|b| b.host_port != 0 && b.host_port != b.container_port)
        {
            return Err(remapped(b));
        }
        let direct = bindings
            .iter()
            .map(|b| PortBinding {
                host_ip: ip,
                host_port: b.container_port,
                ..*b
            })
            .collect();
        Ok(Bound {
            listeners: Vec::new(),
            direct,
        })
    }

    /// The bindings with the host ports they got.
    pub fn bindings(&self) -> Vec<PortBinding> {
        let bound = self.listeners.iter().map(|(b, _)| *b);
        bound.chain(self.direct.iter().copied()).collect()
    }

    /// Starts carrying connections to `ip` through `backend`; they stop when the returned
    /// [`Published`] is dropped.
    pub fn serve(self, backend: Arc<dyn hypervisor::Backend>, ip: Ipv4Addr) -> Published {
        let tasks = self
            .listeners
            .into_iter()
            .map(|(b, l)| {
                let to = SocketAddrV4::new(ip, b.container_port);
                match l {
                    Listener::Tcp(l) => tokio::spawn(accept_loop(l, backend.clone(), to)),
                    Listener::Udp(s) => tokio::spawn(udp::relay(s, backend.clone(), to)),
                }
            })
            .collect();
        Published { tasks }
    }
}

/// Why `b` cannot be published on a container network.
pub fn remapped(b: &PortBinding) -> String {
    format!(
        "port {}:{} cannot be published on a container network: the container's own address publishes its port {} (give -p {} or -p {}:{}), or connect it to a bridge network as well",
        b.host_port,
        b.container_port,
        b.container_port,
        b.container_port,
        b.container_port,
        b.container_port
    )
}

/// Serving listeners; dropping it closes them and every connection they carry.
pub struct Published {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Published {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn accept_loop(l: TcpListener, backend: Arc<dyn hypervisor::Backend>, to: SocketAddrV4) {
    let room = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Connections end with the accept loop: they are its tasks' children in this set.
    let mut carried = tokio::task::JoinSet::new();
    loop {
        let (mut client, peer) = match l.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%to, "accepting a connection to a published port failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        while carried.try_join_next().is_some() {}
        let Ok(permit) = room.clone().try_acquire_owned() else {
            tracing::warn!(%to, %peer, "{MAX_CONNECTIONS} connections carried: closing a new one");
            continue;
        };
        let backend = backend.clone();
        carried.spawn(async move {
            let _permit = permit;
            match backend.dial(to).await {
                Ok(mut server) => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
                Err(e) => tracing::debug!(%to, %peer, "a published port's connection: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn on(port: u16) -> PortBinding {
        PortBinding {
            container_port: 80,
            proto: Proto::Tcp,
            host_ip: Ipv4Addr::LOCALHOST,
            host_port: port,
        }
    }

    #[tokio::test]
    async fn a_taken_port_is_refused_in_dockerds_words_and_a_dropped_one_closes() {
        let bound = Bound::bind("web", &[on(0)]).await.unwrap();
        let port = bound.bindings()[0].host_port;
        assert_ne!(port, 0, "a free port was picked");
        let err = Bound::bind("web2", &[on(port)]).await.err().unwrap();
        assert_eq!(
            err.to_string(),
            format!("driver failed programming external connectivity on endpoint web2: Bind for 127.0.0.1:{port} failed: port is already allocated")
        );
        let backend = Arc::new(hypervisor::fake::FakeBackend::new(Arc::new(|io, off| {
            async move {
                let _held = (io, off);
                std::future::pending::<()>().await
            }
            .boxed()
        })));
        let published = bound.serve(backend.clone(), Ipv4Addr::new(172, 16, 0, 2));
        // A connection is carried to the container's address through the backend.
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut buf = [0u8; 1];
        let n = tokio::io::AsyncReadExt::read(&mut c, &mut buf)
            .await
            .unwrap_or(0);
        assert_eq!(
            n, 0,
            "the fake backend cannot dial: the connection is closed"
        );
        assert!(backend.calls().contains(&"dial 172.16.0.2:80".to_string()));
        drop(published);
        let mut again = Err(err);
        for _ in 0..100 {
            again = Bound::bind("web3", &[on(port)]).await;
            if again.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(again.is_ok(), "the port is free once the container stops");
    }
}
