//! The VCH's DNS server on each network (see the `vch-dns` crate): it listens on the
//! network's gateway, where every container on the network has its only nameserver, answers
//! container names from the records (see `networks/resolve.rs`) and forwards the rest to
//! the VCH's DNS servers, or to a container's own `--dns` servers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Weak};

use tokio_util::sync::CancellationToken;

use super::{Containers, Inner};
use crate::networks::{self, Network};

/// A running DNS server; dropping it stops it.
pub(super) struct Server {
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The names of one VCH's containers, read from its records on each question.
struct Names {
    inner: Weak<Inner>,
}

impl Names {
    /// `f` on the records, the networks and the one named `network`, while the VCH is there.
    fn with<T>(
        &self,
        network: &str,
        f: impl FnOnce(
            &std::collections::HashMap<String, crate::ContainerRecord>,
            &[Network],
            &Network,
        ) -> Option<T>,
    ) -> Option<T> {
        let inner = self.inner.upgrade()?;
        let records = inner.records.lock().unwrap_or_else(|e| e.into_inner());
        let nets = inner.networks.lock().unwrap_or_else(|e| e.into_inner());
        let net = nets.iter().find(|n| n.name == network)?;
        f(&records, &nets, net)
    }
}

impl vch_dns::Names for Names {
    fn lookup(&self, network: &str, client: IpAddr, name: &str) -> Option<Vec<IpAddr>> {
        let IpAddr::V4(client) = client else {
            return None;
        };
        self.with(network, |records, nets, net| {
            networks::lookup(records.values(), nets, net, client, name)
        })
    }

    fn reverse(&self, network: &str, addr: Ipv4Addr) -> Option<String> {
        self.with(network, |records, _, net| {
            networks::reverse(records.values(), net, addr)
        })
    }

    /// The container's own `--dns` servers (none of them the VCH's DNS server itself).
    fn upstream(&self, network: &str, client: IpAddr) -> Option<Vec<SocketAddr>> {
        let IpAddr::V4(client) = client else {
            return None;
        };
        self.with(network, |records, _, net| {
            let rec = records.values().find(|r| {
                r.spec
                    .endpoints
                    .iter()
                    .any(|e| e.network == net.name && e.ip == client)
            })?;
            let own: Vec<SocketAddr> = rec
                .spec
                .dns_servers
                .iter()
                .filter_map(|s| s.parse::<IpAddr>().ok())
                .filter(|ip| {
                    !rec.spec
                        .endpoints
                        .iter()
                        .any(|e| IpAddr::V4(e.gateway) == *ip)
                })
                .map(|ip| SocketAddr::new(ip, 53))
                .collect();
            (!own.is_empty()).then_some(own)
        })
    }
}

impl Containers {
    /// Starts `net`'s DNS server on its gateway; a server that cannot listen is logged (the
    /// containers on the network then resolve nothing).
    pub(super) async fn serve_dns(&self, net: &Network) {
        if net.external.is_some() {
            return; // the VCH has no address on a container network
        }
        let at = SocketAddrV4::new(net.gateway, 53);
        let (udp, tcp) = match self.inner.backend.listen(at).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(network = %net.name, "the network's DNS server cannot listen on {at}: {e}");
                return;
            }
        };
        let sockets = (|| {
            udp.set_nonblocking(true)?;
            tcp.set_nonblocking(true)?;
            Ok::<_, std::io::Error>((
                tokio::net::UdpSocket::from_std(udp)?,
                tokio::net::TcpListener::from_std(tcp)?,
            ))
        })();
        let (udp, tcp) = match sockets {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(network = %net.name, "the network's DNS sockets: {e}");
                return;
            }
        };
        let config = vch_dns::Config {
            upstream: self
                .limits()
                .dns_servers
                .iter()
                .filter_map(|s| s.parse::<IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
                .collect(),
            ..Default::default()
        };
        let names = Arc::new(Names {
            inner: Arc::downgrade(&self.inner),
        });
        let stop = CancellationToken::new();
        let name = net.name.clone();
        let token = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = vch_dns::serve(name.clone(), udp, Some(tcp), names, config, token).await
            {
                tracing::warn!(network = %name, "the network's DNS server stopped: {e}");
            }
        });
        tracing::info!(network = %net.name, "DNS server on {at}");
        self.inner
            .dns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(net.id.clone(), Server { stop });
    }

    /// Stops `net`'s DNS server.
    pub(super) fn stop_dns(&self, net: &Network) {
        self.inner
            .dns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&net.id);
    }
}
