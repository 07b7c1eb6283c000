//! A server on 127.0.0.1 with a fixed set of names, clients that speak DNS over real sockets,
//! and upstream servers whose answers each test scripts.

#![allow(dead_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hickory_proto::op::{Edns, Message, MessageType, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vch_dns::{Config, Names};

/// The network the test server serves.
pub const NETWORK: &str = "net1";
pub const WEB: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);
pub const DB: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 3);
/// A container on a network with IPv6: an address of each family.
pub const DUAL: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 4);
pub const DUAL6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 4);
/// The client that has a link named `friend`.
pub const LINKED: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// How long a test waits for any reply before it fails.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// `web` (alias `web.alias`), `db`, `many` (100 addresses) on `net1`, and `friend` for the
/// client at [`LINKED`] only.
pub struct Fixed;

impl Names for Fixed {
    fn lookup(&self, network: &str, client: IpAddr, name: &str) -> Option<Vec<IpAddr>> {
        if network != NETWORK {
            return None;
        }
        match name {
            "web" | "web.alias" => Some(vec![WEB.into()]),
            "db" => Some(vec![DB.into()]),
            "dual" => Some(vec![DUAL.into(), DUAL6.into()]),
            "many" => Some(
                (0..100)
                    .map(|i| Ipv4Addr::new(10, 0, 0, i).into())
                    .collect(),
            ),
            "friend" if client == LINKED => Some(vec![DB.into()]),
            _ => None,
        }
    }

    fn reverse(&self, network: &str, address: Ipv4Addr) -> Option<String> {
        match (network, address) {
            (NETWORK, WEB) => Some("web".to_string()),
            (NETWORK, DB) => Some("db".to_string()),
            _ => None,
        }
    }
}

/// A DNS server serving [`Fixed`] on 127.0.0.1, UDP and TCP on the same port.
pub struct Server {
    pub address: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<io::Result<()>>,
}

impl Server {
    pub async fn start(config: Config) -> Result<Server> {
        Server::start_with(config, Arc::new(Fixed)).await
    }

    /// A server answering what `names` knows.
    pub async fn start_with(config: Config, names: Arc<dyn Names>) -> Result<Server> {
        let (udp, tcp) = bind_pair().await?;
        let address = udp.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(vch_dns::serve(
            NETWORK.to_string(),
            udp,
            Some(tcp),
            names,
            config,
            shutdown.clone(),
        ));
        Ok(Server {
            address,
            shutdown,
            task,
        })
    }
}

/// A UDP socket and a TCP listener on the same free port of 127.0.0.1.
async fn bind_pair() -> Result<(UdpSocket, TcpListener)> {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await?;
        if let Ok(tcp) = TcpListener::bind(udp.local_addr()?).await {
            return Ok((udp, tcp));
        }
    }
    bail!("no port of 127.0.0.1 was free over both UDP and TCP")
}

/// A standard query with RD set.
pub fn query(id: u16, name: &str, record_type: RecordType) -> Message {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
    message
}

/// `query` offering an EDNS payload size of `size`.
pub fn with_edns(mut query: Message, size: u16) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(size);
    query.set_edns(edns);
    query
}

/// The A addresses in `message`'s answer section.
/// The AAAA answers of `message`.
pub fn addresses6(message: &Message) -> Vec<std::net::Ipv6Addr> {
    message
        .answers()
        .iter()
        .filter_map(|record| match record.data() {
            RData::AAAA(hickory_proto::rr::rdata::AAAA(address)) => Some(*address),
            _ => None,
        })
        .collect()
}

pub fn addresses(message: &Message) -> Vec<Ipv4Addr> {
    message
        .answers()
        .iter()
        .filter_map(|record| match record.data() {
            RData::A(A(address)) => Some(*address),
            _ => None,
        })
        .collect()
}

/// A client socket on 127.0.0.1.
pub async fn client() -> Result<UdpSocket> {
    Ok(UdpSocket::bind("127.0.0.1:0").await?)
}

/// Sends `query` from `socket` to `server` over UDP.
pub async fn send(socket: &UdpSocket, server: SocketAddr, query: &Message) -> Result<()> {
    socket.send_to(&query.to_vec()?, server).await?;
    Ok(())
}

/// The next datagram `socket` receives, as bytes, within [`PATIENCE`].
pub async fn receive_bytes(socket: &UdpSocket) -> Result<Vec<u8>> {
    let mut buffer = vec![0; 65536];
    let (len, _) = tokio::time::timeout(PATIENCE, socket.recv_from(&mut buffer))
        .await
        .context("no reply in time")??;
    buffer.truncate(len);
    Ok(buffer)
}

/// The next DNS message `socket` receives, within [`PATIENCE`].
pub async fn receive(socket: &UdpSocket) -> Result<Message> {
    Ok(Message::from_vec(&receive_bytes(socket).await?)?)
}

/// Whether `socket` receives nothing for `wait`.
pub async fn silent_for(socket: &UdpSocket, wait: Duration) -> bool {
    let mut buffer = [0; 512];
    tokio::time::timeout(wait, socket.recv_from(&mut buffer))
        .await
        .is_err()
}

/// `query` asked of `server` over UDP from a fresh socket, and its reply.
pub async fn ask_udp(server: SocketAddr, query: &Message) -> Result<Message> {
    let socket = client().await?;
    send(&socket, server, query).await?;
    receive(&socket).await
}

/// `query` asked of `server` over a fresh TCP connection, and its reply.
pub async fn ask_tcp(server: SocketAddr, query: &Message) -> Result<Message> {
    let mut stream = TcpStream::connect(server).await?;
    write_frame(&mut stream, &query.to_vec()?).await?;
    Ok(Message::from_vec(&read_frame(&mut stream).await?)?)
}

pub async fn write_frame(stream: &mut TcpStream, message: &[u8]) -> Result<()> {
    let mut framed = u16::try_from(message.len())?.to_be_bytes().to_vec();
    framed.extend_from_slice(message);
    stream.write_all(&framed).await?;
    Ok(())
}

pub async fn read_frame(stream: &mut TcpStream) -> Result<Vec<u8>> {
    tokio::time::timeout(PATIENCE, async {
        let length = stream.read_u16().await?;
        let mut message = vec![0; usize::from(length)];
        stream.read_exact(&mut message).await?;
        Ok(message)
    })
    .await
    .context("no reply in time")?
}

/// The answer an upstream gives to `query`: `address` for its question, under `id`.
pub fn answer(query: &Message, id: u16, address: Ipv4Addr) -> Vec<u8> {
    let mut response = Message::new();
    response
        .set_id(id)
        .set_message_type(MessageType::Response)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .add_queries(query.queries().iter().cloned());
    if let Some(question) = query.query() {
        response.add_answer(Record::from_rdata(
            question.name().clone(),
            60,
            RData::A(A(address)),
        ));
    }
    response.to_vec().unwrap()
}

/// A query an upstream received, and over which transport.
#[derive(Debug, Clone)]
pub struct Seen {
    pub query: Message,
    pub over_tcp: bool,
}

/// How an upstream replies to a query: the messages it sends back, in order.
pub type Script = dyn Fn(&Message) -> Vec<Vec<u8>> + Send + Sync;

/// A DNS server on 127.0.0.1 that replies over UDP and TCP as its script says, and records what
/// it was asked.
pub struct Upstream {
    pub address: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub async fn start(
        script: impl Fn(&Message) -> Vec<Vec<u8>> + Send + Sync + 'static,
    ) -> Result<Upstream> {
        let (udp, tcp) = bind_pair().await?;
        let address = udp.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        tokio::spawn(serve_udp(udp, script.clone(), seen.clone()));
        tokio::spawn(serve_tcp(tcp, script, seen.clone()));
        Ok(Upstream { address, seen })
    }

    /// An upstream that answers every question with `address`.
    pub async fn answering(address: Ipv4Addr) -> Result<Upstream> {
        Upstream::start(move |query| vec![answer(query, query.id(), address)]).await
    }

    /// An upstream that never replies.
    pub async fn silent() -> Result<Upstream> {
        Upstream::start(|_| Vec::new()).await
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve_udp(socket: UdpSocket, script: Arc<Script>, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut buffer = vec![0; 65536];
    while let Ok((len, peer)) = socket.recv_from(&mut buffer).await {
        let Ok(query) = Message::from_vec(&buffer[..len]) else {
            continue;
        };
        seen.lock().unwrap().push(Seen {
            query: query.clone(),
            over_tcp: false,
        });
        for reply in script(&query) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, script: Arc<Script>, seen: Arc<Mutex<Vec<Seen>>>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let (script, seen) = (script.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok(bytes) = read_frame(&mut stream).await {
                let Ok(query) = Message::from_vec(&bytes) else {
                    return;
                };
                seen.lock().unwrap().push(Seen {
                    query: query.clone(),
                    over_tcp: true,
                });
                for reply in script(&query) {
                    let _ = write_frame(&mut stream, &reply).await;
                }
            }
        });
    }
}

/// A config forwarding to `upstream` with the given timeout.
pub fn forwarding(upstream: &[&Upstream], timeout: Duration) -> Config {
    Config {
        upstream: upstream.iter().map(|upstream| upstream.address).collect(),
        forward_timeout: timeout,
        ..Config::default()
    }
}
