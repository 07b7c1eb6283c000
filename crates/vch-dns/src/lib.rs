//! The DNS server a VCH runs on each container network, as Docker's embedded DNS server
//! (127.0.0.11) does for a user-defined network.
//!
//! It listens on the network's gateway address, port 53, over UDP and TCP, and is the only
//! nameserver its containers have. It answers the names of the containers on the same network
//! (their names, network aliases and links, as [`Names`] says) and forwards every other
//! question to the VCH's upstream servers.
//!
//! ```text
//!  container ── query ──▶ gateway:53 ──▶ a name on this network, for this client? (Names)
//!                                          yes: A and AAAA records, AA set (no records of
//!                                               a family it has no address of: NOERROR);
//!                                               PTR of a container's address: its name
//!                                          no:  to the upstreams in order, under a fresh ID,
//!                                               from a socket of its own; SERVFAIL when none
//!                                               answers in time
//! ```
//!
//! The crate owns the serving: parsing, answering, forwarding and the bounds on all of it. It
//! does not bind the listening sockets (the caller does, inside the VCH's network namespace),
//! know which containers exist (the port layer does, behind [`Names`]), or write a guest's
//! `resolv.conf`.
//!
//! ## Why it is built on hickory-proto and not hickory-server
//!
//! The DNS message format (names, records, EDNS, compression) comes from `hickory-proto`, the
//! same crate the VCH's resolver already uses. The serving logic is ours because its semantics
//! are not a zone's: the answer depends on the network the query arrived on and on which
//! container asks (links are per container), the records change as containers come and go,
//! and everything a container sends is hostile (it is root in its guest). So every buffer,
//! wait and concurrency has a bound:
//!
//! - a UDP query is at most 4096 bytes; a header is checked against the message's length before
//!   the decoder reserves room for the records it counts;
//! - UDP answers fit 512 bytes, or the client's EDNS size up to 4096, or go out truncated with
//!   TC set; over TCP a message is at most 65535 bytes, as its two-byte length frames;
//! - at most [`Config::max_inflight`] forwards at once (more are REFUSED), each waiting at most
//!   [`Config::forward_timeout`];
//! - at most [`Config::tcp_clients`] TCP connections, each closed after [`Config::tcp_idle`]
//!   without a whole query or without taking its reply.
//!
//! A reply goes only to the address its query came from, and only upstream answers carrying the
//! forwarded ID and question are relayed.

mod forward;
mod frame;
mod local;
mod message;
mod server;
mod tcp;
mod udp;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::server::Server;

/// The names a network's DNS server answers, asked per query. Implemented by the port layer.
///
/// The server asks on the task that reads its socket, so answers come from memory, without
/// blocking or waiting.
pub trait Names: Send + Sync + 'static {
    /// What `name` (lowercase, without the trailing dot) resolves to for the container at
    /// `client` on `network`: its name, a network alias or one of its links. None when it is
    /// no container name here, so the query goes upstream.
    /// Both families: a container on a network with IPv6 has an address of each.
    fn lookup(&self, network: &str, client: IpAddr, name: &str) -> Option<Vec<IpAddr>>;

    /// The name of the container at `address` on `network`, for a reverse (PTR) lookup.
    fn reverse(&self, network: &str, address: Ipv4Addr) -> Option<String>;

    /// The servers the other questions of the container at `client` go to when it has its
    /// own (Docker's `--dns`); None: the configured upstreams.
    fn upstream(&self, _network: &str, _client: IpAddr) -> Option<Vec<SocketAddr>> {
        None
    }
}

/// How a network's DNS server forwards, and its bounds.
#[derive(Clone, Debug)]
pub struct Config {
    /// The servers other names are asked of, in order. None: those queries get SERVFAIL.
    pub upstream: Vec<SocketAddr>,
    /// The most queries forwarded at once; more are refused.
    pub max_inflight: usize,
    /// How long a forwarded query waits for an answer from all the upstreams together.
    pub forward_timeout: Duration,
    /// The TTL of the records the server answers itself, in seconds.
    pub ttl: u32,
    /// The most TCP connections open at once; more are closed at once.
    pub tcp_clients: usize,
    /// How long a TCP connection may take to send a whole query or take its reply.
    pub tcp_idle: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            upstream: Vec::new(),
            max_inflight: 256,
            forward_timeout: Duration::from_secs(3),
            ttl: 600,
            tcp_clients: 64,
            tcp_idle: Duration::from_secs(10),
        }
    }
}

/// Serves the queries arriving on `udp` and `tcp` for `network` until `shutdown` fires.
///
/// The caller binds the sockets, possibly inside another network namespace; forwarded queries
/// leave from sockets made here, in the namespace of the calling thread. An error is one of the
/// listening sockets failing for good.
pub async fn serve(
    network: String,
    udp: UdpSocket,
    tcp: Option<TcpListener>,
    names: Arc<dyn Names>,
    mut config: Config,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let own = udp.local_addr()?;
    config.upstream.retain(|upstream| {
        let loops = *upstream == own;
        if loops {
            tracing::warn!(%network, %upstream, "left out an upstream DNS server that is this server");
        }
        !loops
    });
    let limits = tcp::Limits {
        clients: config.tcp_clients,
        idle: config.tcp_idle,
    };
    let server = Arc::new(Server::new(network, names, &config));
    let over_udp = udp::serve(udp, server.clone(), shutdown.clone());
    let over_tcp = async {
        match tcp {
            Some(listener) => tcp::serve(listener, server.clone(), limits, shutdown.clone()).await,
            None => Ok(()),
        }
    };
    tokio::try_join!(over_udp, over_tcp).map(|_| ())
}
