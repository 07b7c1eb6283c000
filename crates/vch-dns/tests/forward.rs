//! Other questions, forwarded to upstream servers on 127.0.0.1.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::Result;
use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use tokio::time::Instant;

const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

#[tokio::test]
async fn other_names_are_forwarded_under_a_fresh_id_and_answered_under_the_client_id() -> Result<()>
{
    let upstream = Upstream::answering(ELSEWHERE).await?;
    let server = Server::start(forwarding(&[&upstream], Duration::from_secs(3))).await?;

    let ids = [0x0101, 0x0202, 0x0303];
    for id in ids {
        let reply = ask_udp(server.address, &query(id, "Example.COM", RecordType::A)).await?;
        assert_eq!(reply.id(), id);
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        assert_eq!(addresses(&reply), [ELSEWHERE]);
        assert!(reply.recursion_available());
    }

    let seen = upstream.seen();
    assert_eq!(seen.len(), 3);
    for forwarded in &seen {
        assert!(!forwarded.over_tcp);
        assert!(forwarded.query.recursion_desired());
        // The question goes up as the client spelled it.
        let name = forwarded.query.query().unwrap().name();
        assert_eq!(name.to_ascii(), "Example.COM.");
    }
    let upstream_ids: Vec<u16> = seen.iter().map(|seen| seen.query.id()).collect();
    assert_ne!(upstream_ids, ids, "the client IDs went upstream");
    Ok(())
}

#[tokio::test]
async fn other_types_and_classes_of_container_names_are_forwarded() -> Result<()> {
    let upstream = Upstream::answering(ELSEWHERE).await?;
    let server = Server::start(forwarding(&[&upstream], Duration::from_secs(3))).await?;

    let mx = ask_udp(server.address, &query(1, "web", RecordType::MX)).await?;
    assert!(!mx.authoritative());
    let mut chaos = query(2, "web", RecordType::A);
    chaos.queries_mut()[0].set_query_class(DNSClass::CH);
    let chaos = ask_udp(server.address, &chaos).await?;
    assert_eq!(addresses(&chaos), [ELSEWHERE]);

    let asked: Vec<_> = upstream
        .seen()
        .iter()
        .map(|seen| {
            let question = seen.query.query().unwrap();
            (question.query_type(), question.query_class())
        })
        .collect();
    assert_eq!(
        asked,
        [
            (RecordType::MX, DNSClass::IN),
            (RecordType::A, DNSClass::CH)
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_silent_upstream_means_servfail_after_the_timeout() -> Result<()> {
    let upstream = Upstream::silent().await?;
    let server = Server::start(forwarding(&[&upstream], Duration::from_millis(300))).await?;

    let started = Instant::now();
    let reply = ask_udp(server.address, &query(0x4444, "example.com", RecordType::A)).await?;
    let waited = started.elapsed();
    assert_eq!(reply.response_code(), ResponseCode::ServFail);
    assert_eq!(reply.id(), 0x4444);
    assert!(reply.recursion_available());
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(upstream.seen().len(), 1);
    Ok(())
}

#[tokio::test]
async fn upstream_replies_with_another_id_or_question_are_ignored() -> Result<()> {
    let upstream = Upstream::start(|query| {
        let mut other = query.clone();
        other.queries_mut()[0].set_query_type(RecordType::MX);
        vec![
            answer(query, query.id().wrapping_add(1), Ipv4Addr::new(1, 1, 1, 1)),
            answer(&other, query.id(), Ipv4Addr::new(2, 2, 2, 2)),
            answer(query, query.id(), Ipv4Addr::new(3, 3, 3, 3)),
        ]
    })
    .await?;
    let server = Server::start(forwarding(&[&upstream], Duration::from_secs(3))).await?;
    let reply = ask_udp(server.address, &query(5, "example.com", RecordType::A)).await?;
    assert_eq!(addresses(&reply), [Ipv4Addr::new(3, 3, 3, 3)]);
    Ok(())
}

#[tokio::test]
async fn an_upstream_answering_only_with_the_wrong_id_is_no_answer() -> Result<()> {
    let upstream =
        Upstream::start(|query| vec![answer(query, query.id() ^ 0x8000, ELSEWHERE)]).await?;
    let server = Server::start(forwarding(&[&upstream], Duration::from_millis(300))).await?;
    let reply = ask_udp(server.address, &query(6, "example.com", RecordType::A)).await?;
    assert_eq!(reply.response_code(), ResponseCode::ServFail);
    assert!(reply.answers().is_empty());
    Ok(())
}

#[tokio::test]
async fn upstreams_are_asked_in_order_and_the_first_answer_wins() -> Result<()> {
    let first = Upstream::answering(Ipv4Addr::new(1, 1, 1, 1)).await?;
    let second = Upstream::answering(Ipv4Addr::new(2, 2, 2, 2)).await?;
    let server = Server::start(forwarding(&[&first, &second], Duration::from_secs(3))).await?;
    let reply = ask_udp(server.address, &query(7, "example.com", RecordType::A)).await?;
    assert_eq!(addresses(&reply), [Ipv4Addr::new(1, 1, 1, 1)]);
    assert!(second.seen().is_empty());
    Ok(())
}

#[tokio::test]
async fn the_next_upstream_is_asked_when_one_stays_silent() -> Result<()> {
    let silent = Upstream::silent().await?;
    let answering = Upstream::answering(ELSEWHERE).await?;
    let server = Server::start(forwarding(&[&silent, &answering], Duration::from_secs(1))).await?;

    let started = Instant::now();
    let reply = ask_udp(server.address, &query(8, "example.com", RecordType::A)).await?;
    let waited = started.elapsed();
    assert_eq!(addresses(&reply), [ELSEWHERE]);
    // The silent one had half the timeout to itself.
    assert!(waited >= Duration::from_millis(450), "{waited:?}");
    assert!(waited < Duration::from_secs(1), "{waited:?}");
    assert_eq!(silent.seen().len(), 1);
    Ok(())
}

#[tokio::test]
async fn the_next_upstream_is_asked_at_once_when_one_refuses_the_connection() -> Result<()> {
    // A port nothing listens on: the kernel answers with ICMP port unreachable.
    let closed = client().await?.local_addr()?;
    let answering = Upstream::answering(ELSEWHERE).await?;
    let mut config = forwarding(&[&answering], Duration::from_secs(4));
    config.upstream.insert(0, closed);
    let server = Server::start(config).await?;

    let started = Instant::now();
    let reply = ask_udp(server.address, &query(9, "example.com", RecordType::A)).await?;
    assert_eq!(addresses(&reply), [ELSEWHERE]);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn queries_over_tcp_are_forwarded_over_tcp() -> Result<()> {
    let upstream = Upstream::answering(ELSEWHERE).await?;
    let server = Server::start(forwarding(&[&upstream], Duration::from_secs(3))).await?;
    let reply = ask_tcp(server.address, &query(0x7777, "example.com", RecordType::A)).await?;
    assert_eq!(reply.id(), 0x7777);
    assert_eq!(addresses(&reply), [ELSEWHERE]);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].over_tcp);
    Ok(())
}

#[tokio::test]
async fn each_reply_goes_to_the_client_that_asked() -> Result<()> {
    // The upstream answers each name with an address of its own; both clients use one ID.
    let upstream = Upstream::start(|query| {
        let name = query.query().unwrap().name().to_ascii();
        let last = if name.starts_with("one") { 1 } else { 2 };
        vec![answer(query, query.id(), Ipv4Addr::new(10, 9, 9, last))]
    })
    .await?;
    let server = Server::start(forwarding(&[&upstream], Duration::from_secs(3))).await?;

    let (a, b) = (client().await?, client().await?);
    send(&a, server.address, &query(1, "one.example", RecordType::A)).await?;
    send(&b, server.address, &query(1, "two.example", RecordType::A)).await?;
    let (reply_a, reply_b) = (receive(&a).await?, receive(&b).await?);
    assert_eq!(addresses(&reply_a), [Ipv4Addr::new(10, 9, 9, 1)]);
    assert_eq!(addresses(&reply_b), [Ipv4Addr::new(10, 9, 9, 2)]);
    assert!(silent_for(&a, Duration::from_millis(200)).await);
    Ok(())
}

#[tokio::test]
async fn an_upstream_answer_larger_than_the_client_takes_is_truncated() -> Result<()> {
    let upstream = Upstream::start(|query| {
        let mut response = Message::from_vec(&answer(query, query.id(), ELSEWHERE)).unwrap();
        let record = response.answers()[0].clone();
        response.add_answers(std::iter::repeat_n(record, 99));
        vec![response.to_vec().unwrap()]
    })
    .await?;
    let server = Server::start(forwarding(&[&upstream], Duration::from_secs(3))).await?;

    let socket = client().await?;
    send(
        &socket,
        server.address,
        &query(0x0a0a, "example.com", RecordType::A),
    )
    .await?;
    let bytes = receive_bytes(&socket).await?;
    assert!(bytes.len() <= 512, "{} bytes", bytes.len());
    let reply = Message::from_vec(&bytes)?;
    assert_eq!(reply.id(), 0x0a0a);
    assert!(reply.truncated());
    assert!(reply.answers().is_empty());

    let whole = ask_tcp(server.address, &query(0x0b0b, "example.com", RecordType::A)).await?;
    assert_eq!(whole.answers().len(), 100);
    Ok(())
}

#[tokio::test]
async fn more_forwards_than_max_inflight_are_refused_at_once() -> Result<()> {
    let upstream = Upstream::silent().await?;
    let mut config = forwarding(&[&upstream], Duration::from_secs(1));
    config.max_inflight = 2;
    let server = Server::start(config).await?;

    let socket = client().await?;
    let started = Instant::now();
    for id in 1..=3 {
        send(
            &socket,
            server.address,
            &query(id, "example.com", RecordType::A),
        )
        .await?;
    }
    let refused = receive(&socket).await?;
    assert_eq!(
        (refused.id(), refused.response_code()),
        (3, ResponseCode::Refused)
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    let mut failed = [receive(&socket).await?, receive(&socket).await?];
    failed.sort_by_key(Message::id);
    let failed: Vec<_> = failed
        .iter()
        .map(|reply| (reply.id(), reply.response_code()))
        .collect();
    assert_eq!(
        failed,
        [(1, ResponseCode::ServFail), (2, ResponseCode::ServFail)]
    );
    assert_eq!(upstream.seen().len(), 2);

    // The slots are free again once the forwards are over.
    send(
        &socket,
        server.address,
        &query(4, "example.com", RecordType::A),
    )
    .await?;
    assert_eq!(
        receive(&socket).await?.response_code(),
        ResponseCode::ServFail
    );
    Ok(())
}

#[tokio::test]
async fn local_answers_offer_recursion_when_there_are_upstreams() -> Result<()> {
    let upstream = Upstream::silent().await?;
    let server = Server::start(forwarding(&[&upstream], Duration::from_secs(1))).await?;
    let reply = ask_udp(server.address, &query(1, "web", RecordType::A)).await?;
    assert!(reply.recursion_available());
    assert!(upstream.seen().is_empty());
    Ok(())
}

/// [`Fixed`], where the client at [`LINKED`] has upstream servers of its own.
struct OwnUpstream(std::net::SocketAddr);

use vch_dns::Names;

impl Names for OwnUpstream {
    fn lookup(&self, n: &str, c: std::net::IpAddr, name: &str) -> Option<Vec<std::net::IpAddr>> {
        Fixed.lookup(n, c, name)
    }
    fn reverse(&self, n: &str, a: Ipv4Addr) -> Option<String> {
        Fixed.reverse(n, a)
    }
    fn upstream(&self, _: &str, client: std::net::IpAddr) -> Option<Vec<std::net::SocketAddr>> {
        (client == LINKED).then(|| vec![self.0])
    }
}

#[tokio::test]
async fn a_client_with_upstreams_of_its_own_is_forwarded_to_them_alone() -> Result<()> {
    let vchs = Upstream::answering(ELSEWHERE).await?;
    let own_answer = Ipv4Addr::new(198, 51, 100, 9);
    let own = Upstream::answering(own_answer).await?;
    let names = std::sync::Arc::new(OwnUpstream(own.address));
    let server = Server::start_with(forwarding(&[&vchs], Duration::from_secs(3)), names).await?;

    let reply = ask_udp(server.address, &query(7, "example.com", RecordType::A)).await?;
    assert_eq!(
        addresses(&reply),
        [ELSEWHERE],
        "127.0.0.1 has none of its own"
    );

    let from_linked = tokio::net::UdpSocket::bind((LINKED, 0)).await?;
    send(
        &from_linked,
        server.address,
        &query(8, "example.com", RecordType::A),
    )
    .await?;
    let reply = receive(&from_linked).await?;
    assert_eq!(reply.id(), 8);
    assert_eq!(addresses(&reply), [own_answer]);
    assert_eq!(own.seen().len(), 1);
    assert_eq!(
        vchs.seen().len(),
        1,
        "the VCH's upstream was asked only for 127.0.0.1"
    );
    // A container name is still answered by the server itself.
    send(
        &from_linked,
        server.address,
        &query(9, "web", RecordType::A),
    )
    .await?;
    assert_eq!(addresses(&receive(&from_linked).await?), [WEB]);
    Ok(())
}
