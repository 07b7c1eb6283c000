//! Questions that are not about containers, asked of the VCH's upstream servers.
//!
//! Each forward goes out under a fresh random ID from a socket of its own (UDP bound to an
//! ephemeral port and connected, so only the upstream's datagrams reach it; TCP connected),
//! and only an answer with that ID and the same question counts. The upstreams are asked in
//! order: the next one when the one before fails, or has been silent for its share of the
//! timeout, and the first good answer wins.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::frame;
use crate::message::{Answer, Transport, MAX_UDP};

/// The upstream servers and the bounds on asking them.
pub(crate) struct Forwarder {
    upstream: Vec<SocketAddr>,
    timeout: Duration,
    slots: Arc<Semaphore>,
}

impl Forwarder {
    pub fn new(upstream: Vec<SocketAddr>, timeout: Duration, max_inflight: usize) -> Self {
        Forwarder {
            upstream,
            timeout,
            slots: Arc::new(Semaphore::new(max_inflight)),
        }
    }

    /// Whether there is anyone to forward to.
    pub fn has_upstream(&self) -> bool {
        !self.upstream.is_empty()
    }

    /// Room for one more forward, or None while the most allowed are under way.
    pub fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// The first good answer to `query` from the upstreams (`upstream`, or the configured
    /// ones) within the timeout, asked over `transport`.
    pub async fn ask(
        &self,
        query: &Message,
        transport: Transport,
        upstream: Option<&[SocketAddr]>,
    ) -> Option<Answer> {
        let upstream = upstream.unwrap_or(&self.upstream);
        tokio::time::timeout(self.timeout, self.race(query, transport, upstream))
            .await
            .ok()
            .flatten()
    }

    /// Asks the upstreams in turn, each one after the last failed or stayed silent for its
    /// share of the timeout, until one answers or all have failed.
    async fn race(
        &self,
        query: &Message,
        transport: Transport,
        upstream: &[SocketAddr],
    ) -> Option<Answer> {
        let question = query.query()?.clone();
        let mut outgoing = outgoing(query);
        let share = self.timeout / u32::try_from(upstream.len()).unwrap_or(u32::MAX).max(1);
        let mut next = upstream.iter();
        let mut pending = FuturesUnordered::new();
        let mut start_next = true;
        loop {
            if start_next {
                if let Some(&upstream) = next.next() {
                    let id = rand::random::<u16>();
                    outgoing.set_id(id);
                    let bytes = outgoing.to_vec().ok()?;
                    pending.push(attempt(upstream, bytes, id, question.clone(), transport));
                }
            }
            if pending.is_empty() {
                return None;
            }
            let more = next.len() > 0;
            tokio::select! {
                Some((upstream, result)) = pending.next() => match result {
                    Ok(answer) => return Some(answer),
                    Err(error) => {
                        tracing::debug!(%upstream, %error, "upstream DNS server failed");
                        start_next = true;
                    }
                },
                () = tokio::time::sleep(share), if more => start_next = true,
            }
        }
    }
}

/// `query` as it goes upstream: its EDNS payload size no larger than the server reads over UDP.
fn outgoing(query: &Message) -> Message {
    let mut outgoing = query.clone();
    if let Some(edns) = outgoing.extensions_mut() {
        if usize::from(edns.max_payload()) > MAX_UDP {
            edns.set_max_payload(MAX_UDP as u16);
        }
    }
    outgoing
}

/// One upstream asked once, and which it was.
async fn attempt(
    upstream: SocketAddr,
    bytes: Vec<u8>,
    id: u16,
    question: Query,
    transport: Transport,
) -> (SocketAddr, io::Result<Answer>) {
    let result = match transport {
        Transport::Udp => ask_udp(upstream, &bytes, id, &question).await,
        Transport::Tcp => ask_tcp(upstream, &bytes, id, &question).await,
    };
    (upstream, result)
}

/// Sends `bytes` to `upstream` over UDP and waits for the answer, skipping anything else.
async fn ask_udp(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    question: &Query,
) -> io::Result<Answer> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(bytes).await?;
    // One byte more than the largest datagram taken, to tell a cut datagram from a whole one.
    let mut buffer = vec![0; MAX_UDP + 1];
    loop {
        let len = socket.recv(&mut buffer).await?;
        if len > MAX_UDP {
            continue;
        }
        if let Some(answer) = accept(&buffer[..len], id, question) {
            return Ok(answer);
        }
        tracing::debug!(%upstream, "skipped a datagram that does not answer the forwarded query");
    }
}

/// Sends `bytes` to `upstream` over TCP and reads answers until one is for this query.
async fn ask_tcp(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    question: &Query,
) -> io::Result<Answer> {
    let mut stream = TcpStream::connect(upstream).await?;
    frame::write(&mut stream, bytes).await?;
    loop {
        let Some(message) = frame::read(&mut stream).await? else {
            return Err(io::ErrorKind::UnexpectedEof.into());
        };
        if let Some(answer) = accept(&message, id, question) {
            return Ok(answer);
        }
        tracing::debug!(%upstream, "skipped a message that does not answer the forwarded query");
    }
}

/// `bytes` as the answer to the query sent under `id` asking `question`, if they are one: a
/// response with that ID and that question. An error response may leave the question out.
fn accept(bytes: &[u8], id: u16, question: &Query) -> Option<Answer> {
    let message = Message::from_vec(bytes).ok()?;
    if message.id() != id || message.message_type() != MessageType::Response {
        return None;
    }
    let same_question = message.queries() == std::slice::from_ref(question);
    let bare_error =
        message.queries().is_empty() && message.response_code() != ResponseCode::NoError;
    (same_question || bare_error).then(|| Answer {
        bytes: bytes.to_vec(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Edns;
    use hickory_proto::rr::{Name, RecordType};

    fn question() -> Query {
        Query::query(Name::from_ascii("example.com.").unwrap(), RecordType::A)
    }

    fn response(id: u16, question: Option<Query>, code: ResponseCode) -> Vec<u8> {
        let mut message = Message::new();
        message
            .set_id(id)
            .set_message_type(MessageType::Response)
            .set_response_code(code);
        if let Some(question) = question {
            message.add_query(question);
        }
        message.to_vec().unwrap()
    }

    #[test]
    fn an_answer_needs_the_id_and_the_question() {
        let good = response(7, Some(question()), ResponseCode::NoError);
        assert!(accept(&good, 7, &question()).is_some());
        assert!(accept(&good, 8, &question()).is_none());

        let other = Query::query(Name::from_ascii("example.org.").unwrap(), RecordType::A);
        assert!(accept(
            &response(7, Some(other), ResponseCode::NoError),
            7,
            &question()
        )
        .is_none());
        assert!(accept(&response(7, None, ResponseCode::NoError), 7, &question()).is_none());
    }

    #[test]
    fn an_error_without_the_question_is_an_answer() {
        let refused = response(7, None, ResponseCode::Refused);
        assert!(accept(&refused, 7, &question()).is_some());
    }

    #[test]
    fn a_query_is_no_answer() {
        let mut message = Message::new();
        message.set_id(7).add_query(question());
        assert!(accept(&message.to_vec().unwrap(), 7, &question()).is_none());
    }

    #[test]
    fn forwarded_queries_offer_at_most_what_the_server_reads() {
        let mut query = Message::new();
        query.add_query(question());
        query
            .extensions_mut()
            .get_or_insert_with(Edns::new)
            .set_max_payload(u16::MAX);
        assert_eq!(usize::from(outgoing(&query).max_payload()), MAX_UDP);
        query
            .extensions_mut()
            .get_or_insert_with(Edns::new)
            .set_max_payload(1232);
        assert_eq!(outgoing(&query).max_payload(), 1232);
    }
}
