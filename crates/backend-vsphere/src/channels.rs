//! The tether channels of a VCH's container VMs: one TCP listener that every VM's network
//! serial port dials. A connection is a VM's once its tether's `Hello` names the container
//! and proves it with the token the VM's configuration holds; until then it is a stranger,
//! bounded in time and bytes, and closed if it proves nothing.
//!
//! A serial line has no hang-up: a guest cannot tell that a new host is on the line. So a
//! connection is sent `Resync` as it is accepted and again every [`RESYNC_AFTER`] until its
//! `Hello` comes, however busy the guest is (its output may be all the line carries); a tether
//! answers with its `Hello`. Once it has come, one more `Resync` is the first frame the guest
//! reads: a tether on a serial line reads from a `Resync` on, since what precedes it may be
//! the tail of a frame. (A virtio port does tell, and its tether says `Hello` unasked.)

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tether_proto::{encode, Frame, FrameDecoder, FrameKind, GuestMsg, HostMsg};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// How long a connection may take to identify itself.
pub const IDENTIFY_TIMEOUT: Duration = Duration::from_secs(15);
/// Silence after which a connection is asked to say `Hello`.
pub const RESYNC_AFTER: Duration = Duration::from_secs(2);
/// The most a connection may send before its `Hello` is complete.
const MAX_PREAMBLE: usize = 256 * 1024;
/// Connections identifying themselves at once; more wait to be read.
const MAX_IDENTIFYING: usize = 64;

/// A VM's channel: the bytes read while it identified itself (from its `Hello` on), then the
/// connection.
pub struct Channel {
    prefix: Vec<u8>,
    at: usize,
    stream: TcpStream,
}

impl AsyncRead for Channel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Channel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Who is awaited: a VM's token and where its channel goes.
struct Waiter {
    token: String,
    tx: oneshot::Sender<Channel>,
}

type Waiters = Arc<Mutex<HashMap<String, Waiter>>>;

/// A channel that arrived when no VM of its container was awaited (a VM powered on from
/// vSphere, or one that dialled again before the appliance awaited it): the token it gave,
/// and the channel, its Hello still unread. The next wait for its container takes it.
struct Unclaimed {
    token: String,
    channel: Channel,
}

type Pending = Arc<Mutex<HashMap<String, Unclaimed>>>;

/// How many unclaimed channels are kept; more are closed.
const MAX_UNCLAIMED: usize = 16;

/// The listener and the VMs awaited on it.
pub struct Channels {
    addr: SocketAddr,
    waiters: Waiters,
    pending: Pending,
    accept: tokio::task::JoinHandle<()>,
    /// The containers whose channels became pending, in order.
    arrivals: tokio::sync::Mutex<mpsc::Receiver<String>>,
}

impl Drop for Channels {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Channels {
    /// Listens on `addr` (the address VMs' serial ports dial).
    pub async fn bind(addr: SocketAddr) -> io::Result<Channels> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let waiters: Waiters = Arc::default();
        let pending: Pending = Arc::default();
        let (tx, rx) = mpsc::channel(MAX_UNCLAIMED);
        let shared = Shared {
            waiters: waiters.clone(),
            pending: pending.clone(),
            arrivals: tx,
        };
        let accept = tokio::spawn(accept_loop(listener, shared));
        Ok(Channels {
            addr,
            waiters,
            pending,
            accept,
            arrivals: tokio::sync::Mutex::new(rx),
        })
    }

    /// The next container an unclaimed channel arrived for, with the token it gave, while
    /// that channel is still unclaimed.
    pub async fn next_unclaimed(&self) -> Option<(String, String)> {
        let mut arrivals = self.arrivals.lock().await;
        loop {
            let id = arrivals.recv().await?;
            if let Some(u) = lock(&self.pending).get(&id) {
                return Some((id, u.token.clone()));
            }
        }
    }

    /// Whether an unclaimed channel of container `id` is waiting.
    pub fn has_unclaimed(&self, id: &str) -> bool {
        lock(&self.pending).contains_key(id)
    }

    /// Closes the unclaimed channel of container `id` (a stranger's, or a VM's gone).
    pub fn close_unclaimed(&self, id: &str) {
        lock(&self.pending).remove(id);
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URI a VM's serial port dials.
    pub fn uri(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// Awaits VM `id`, which proves itself with `token`; its channel arrives on the receiver.
    /// Awaiting it again replaces the earlier wait.
    pub fn expect(&self, id: &str, token: &str) -> oneshot::Receiver<Channel> {
        let (tx, rx) = oneshot::channel();
        let unclaimed = lock(&self.pending).remove(id);
        if let Some(u) = unclaimed {
            if same(u.token.as_bytes(), token.as_bytes()) {
                let _ = tx.send(u.channel);
                return rx;
            }
            tracing::warn!(id, "tether channel closed: the token is not the VM's");
        }
        let waiter = Waiter {
            token: token.to_string(),
            tx,
        };
        lock(&self.waiters).insert(id.to_string(), waiter);
        rx
    }

    /// Stops awaiting VM `id`.
    pub fn forget(&self, id: &str) {
        lock(&self.waiters).remove(id);
    }
}

/// What the accept loop shares with the [`Channels`].
struct Shared {
    waiters: Waiters,
    pending: Pending,
    arrivals: mpsc::Sender<String>,
}

fn lock<T>(w: &Mutex<HashMap<String, T>>) -> std::sync::MutexGuard<'_, HashMap<String, T>> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

async fn accept_loop(listener: TcpListener, shared: Shared) {
    let shared = Arc::new(shared);
    let slots = Arc::new(Semaphore::new(MAX_IDENTIFYING));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("tether channel listener: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(IDENTIFY_TIMEOUT, identify(stream)).await {
                Ok(Ok((id, token, channel))) => {
                    if let Some(u) = hand_over(&shared.waiters, &id, token, channel, peer) {
                        keep_unclaimed(&shared, id, u, peer);
                    }
                }
                Ok(Err(e)) => tracing::warn!(%peer, "tether channel closed: {e}"),
                Err(_) => tracing::warn!(
                    %peer,
                    "tether channel closed: no Hello naming a container within {IDENTIFY_TIMEOUT:?}"
                ),
            }
        });
    }
}

/// Gives `channel` to whoever awaits `id`, if `token` is the one it awaits; a channel no one
/// awaits is handed back, unclaimed.
fn hand_over(
    waiters: &Waiters,
    id: &str,
    token: String,
    channel: Channel,
    peer: SocketAddr,
) -> Option<Unclaimed> {
    let mut w = lock(waiters);
    match w.get(id) {
        Some(waiter) if same(waiter.token.as_bytes(), token.as_bytes()) => {
            let waiter = w.remove(id).expect("present");
            let _ = waiter.tx.send(channel);
            None
        }
        Some(_) => {
            tracing::warn!(%peer, id, "tether channel closed: the token is not the VM's");
            None
        }
        None => Some(Unclaimed { token, channel }),
    }
}

/// Keeps an unclaimed channel for the next wait for its container (a newer one of the same
/// container replaces it), and says it arrived.
fn keep_unclaimed(shared: &Shared, id: String, u: Unclaimed, peer: SocketAddr) {
    let mut pending = lock(&shared.pending);
    if pending.len() >= MAX_UNCLAIMED && !pending.contains_key(&id) {
        tracing::warn!(%peer, id, "tether channel closed: too many unclaimed channels");
        return;
    }
    pending.insert(id.clone(), u);
    drop(pending);
    let _ = shared.arrivals.try_send(id);
}

/// Compares in time that does not depend on where the inputs differ.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads until the tether's `Hello` (asking for it at once and every [`RESYNC_AFTER`]), within
/// [`MAX_PREAMBLE`] bytes; its identity and the channel from the `Hello` on.
async fn identify(mut stream: TcpStream) -> io::Result<(String, String, Channel)> {
    let mut dec = FrameDecoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut read = 0usize;
    let mut next_resync = tokio::time::Instant::now();
    loop {
        let mut skipped = Vec::new();
        if dec.skip_to_hello(&mut skipped) {
            let mut probe = dec.clone();
            if let Some(frame) = probe.next_frame().map_err(io::Error::other)? {
                let hello = hello_identity(&frame)?;
                // A tether on a serial line reads from a Resync on: whatever it said
                // unasked, the host's first frame after the Hello is one (a virtio tether
                // answers it with a Hello more, which the protocol allows).
                stream
                    .write_all(&encode(&Frame::control(&HostMsg::Resync)))
                    .await?;
                let channel = Channel {
                    prefix: dec.into_pending(),
                    at: 0,
                    stream,
                };
                return Ok((hello.0, hello.1, channel));
            }
        }
        if tokio::time::Instant::now() >= next_resync {
            stream
                .write_all(&encode(&Frame::control(&HostMsg::Resync)))
                .await?;
            next_resync = tokio::time::Instant::now() + RESYNC_AFTER;
        }
        let n = match tokio::time::timeout_at(next_resync, stream.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => continue,
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before its Hello",
            ));
        }
        read += n;
        if read > MAX_PREAMBLE {
            return Err(io::Error::other(format!(
                "{MAX_PREAMBLE} bytes without a Hello"
            )));
        }
        dec.push(&buf[..n]);
    }
}

/// The container ID and token a `Hello` frame claims.
fn hello_identity(frame: &Frame) -> io::Result<(String, String)> {
    if frame.kind != FrameKind::Control {
        return Err(io::Error::other("not a control frame"));
    }
    match frame
        .parse_control::<GuestMsg>()
        .map_err(io::Error::other)?
    {
        GuestMsg::Hello {
            identity: Some(i), ..
        } => Ok((i.id, i.token)),
        GuestMsg::Hello { identity: None, .. } => {
            Err(io::Error::other("its Hello names no container"))
        }
        _ => Err(io::Error::other("not a Hello")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_proto::Identity;

    fn hello(id: &str, token: &str) -> Vec<u8> {
        encode(&Frame::control(&GuestMsg::Hello {
            version: tether_proto::PROTOCOL_VERSION,
            kernel: "6.1".into(),
            configured: false,
            running: vec![],
            main_exit: None,
            ended: vec![],
            identity: Some(Identity {
                id: id.into(),
                token: token.into(),
            }),
        }))
    }

    /// The first frame's message, and the bytes read after it.
    async fn read_hello(ch: &mut Channel) -> (GuestMsg, Vec<u8>) {
        let mut dec = FrameDecoder::new();
        let mut buf = [0u8; 1024];
        loop {
            if let Some(f) = dec.next_frame().unwrap() {
                return (f.parse_control().unwrap(), dec.into_pending());
            }
            let n = ch.read(&mut buf).await.unwrap();
            assert!(n > 0);
            dec.push(&buf[..n]);
        }
    }

    /// How many `Resync` frames `bytes` holds.
    fn resyncs(bytes: &[u8]) -> usize {
        let mut dec = FrameDecoder::new();
        dec.push(bytes);
        std::iter::from_fn(|| dec.next_frame().ok().flatten())
            .filter(|f| f.parse_control::<HostMsg>().ok() == Some(HostMsg::Resync))
            .count()
    }

    /// Whether `s` ends within 5 s having said nothing but `Resync`.
    async fn closed_after_resyncs(s: &mut TcpStream) -> bool {
        let mut got = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
        let mut dec = FrameDecoder::new();
        dec.push(&got);
        let only_resyncs = std::iter::from_fn(|| dec.next_frame().ok().flatten())
            .all(|f| f.parse_control::<HostMsg>().ok() == Some(HostMsg::Resync));
        matches!(r, Ok(Ok(_)) | Ok(Err(_))) && only_resyncs && dec.buffered() == 0
    }

    #[tokio::test]
    async fn a_vm_is_known_by_its_token_and_a_line_is_asked_to_resync_until_it_says_hello() {
        let ch = Channels::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let rx = ch.expect("c1", "secret");
        // A stranger claiming c1 with another token is closed; c1 is still awaited.
        let mut bad = TcpStream::connect(ch.addr()).await.unwrap();
        bad.write_all(&hello("c1", "guess")).await.unwrap();
        let mut sink = Vec::new();
        bad.read_to_end(&mut sink).await.unwrap();
        assert_eq!(
            resyncs(&sink),
            2,
            "asked as it came and after its Hello, then closed"
        );
        // Asked at once, and again while it sends nothing but noise; then the right Hello.
        let mut vm = TcpStream::connect(ch.addr()).await.unwrap();
        let mut asked = Vec::new();
        let t = std::time::Instant::now();
        while resyncs(&asked) < 2 {
            assert!(
                t.elapsed() < RESYNC_AFTER * 2,
                "asked {} times",
                resyncs(&asked)
            );
            vm.write_all(b"\x00\x01 torn frame").await.unwrap();
            let mut more = [0u8; 64];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(200), vm.read(&mut more)).await
            {
                asked.extend_from_slice(&more[..n]);
            }
        }
        vm.write_all(&hello("c1", "secret")).await.unwrap();
        vm.write_all(b"after").await.unwrap();
        let mut channel = rx.await.unwrap();
        // The channel starts at the Hello, and what followed it is there.
        let (msg, mut rest) = read_hello(&mut channel).await;
        assert!(matches!(msg, GuestMsg::Hello { .. }));
        while rest.len() < 5 {
            let mut more = [0u8; 5];
            let n = channel.read(&mut more).await.unwrap();
            assert!(n > 0);
            rest.extend_from_slice(&more[..n]);
        }
        assert_eq!(rest, b"after");
        // Both ways: what the host writes reaches the VM, after the Resync the Hello got
        // (a guest on a serial line reads from it on).
        channel.write_all(b"to vm").await.unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"to vm") {
            let mut more = [0u8; 64];
            let n = vm.read(&mut more).await.unwrap();
            assert!(n > 0, "closed");
            got.extend_from_slice(&more[..n]);
        }
        let before = &got[..got.len() - 5];
        assert!(resyncs(before) >= 1, "a Resync after the Hello");
        assert_eq!(
            before.len() % encode(&Frame::control(&HostMsg::Resync)).len(),
            0
        );
        // Nobody awaits c2 (a VM powered on from vSphere): its channel is kept, said to have
        // arrived, and the next wait for c2 with its token takes it at once.
        let mut c2 = TcpStream::connect(ch.addr()).await.unwrap();
        c2.write_all(&hello("c2", "x")).await.unwrap();
        let arrived = tokio::time::timeout(Duration::from_secs(10), ch.next_unclaimed()).await;
        assert_eq!(arrived.unwrap(), Some(("c2".to_string(), "x".to_string())));
        assert!(ch.has_unclaimed("c2"));
        let mut taken = tokio::time::timeout(Duration::from_secs(1), ch.expect("c2", "x"))
            .await
            .expect("at once")
            .unwrap();
        assert!(matches!(
            read_hello(&mut taken).await.0,
            GuestMsg::Hello { .. }
        ));
        assert!(!ch.has_unclaimed("c2"));
        // One that proves nothing is closed when told so.
        let mut c3 = TcpStream::connect(ch.addr()).await.unwrap();
        c3.write_all(&hello("c3", "y")).await.unwrap();
        let arrived = tokio::time::timeout(Duration::from_secs(10), ch.next_unclaimed()).await;
        assert_eq!(arrived.unwrap().map(|(id, _)| id).as_deref(), Some("c3"));
        ch.close_unclaimed("c3");
        assert!(closed_after_resyncs(&mut c3).await, "c3 still open");
    }

    #[tokio::test]
    async fn a_connection_that_floods_before_its_hello_is_closed() {
        let ch = Channels::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let mut s = TcpStream::connect(ch.addr()).await.unwrap();
        let junk = vec![0x41u8; 64 * 1024];
        let mut closed = false;
        for _ in 0..64 {
            if s.write_all(&junk).await.is_err() {
                closed = true;
                break;
            }
        }
        if !closed {
            closed = closed_after_resyncs(&mut s).await;
        }
        assert!(closed, "4 MiB without a Hello and still open");
    }
}
