//! The names of containers on the network, answered by the server itself.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::Result;
use common::*;
use hickory_proto::op::{MessageType, ResponseCode};
use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{Name, RData, RecordType};
use vch_dns::Config;

#[tokio::test]
async fn a_container_name_answers_with_its_address_authoritatively() -> Result<()> {
    let config = Config {
        ttl: 42,
        ..Config::default()
    };
    let server = Server::start(config).await?;
    let reply = ask_udp(server.address, &query(0x1234, "web", RecordType::A)).await?;

    assert_eq!(reply.id(), 0x1234);
    assert_eq!(reply.message_type(), MessageType::Response);
    assert_eq!(reply.response_code(), ResponseCode::NoError);
    assert!(reply.authoritative());
    assert!(reply.recursion_desired());
    assert_eq!(reply.queries(), query(0, "web.", RecordType::A).queries());
    assert_eq!(addresses(&reply), [WEB]);
    assert_eq!(reply.answers()[0].ttl(), 42);
    Ok(())
}

#[tokio::test]
async fn names_are_case_insensitive_with_or_without_the_trailing_dot() -> Result<()> {
    let server = Server::start(Config::default()).await?;
    for name in ["WeB", "web.", "WEB.", "Web.Alias", "web.alias."] {
        let reply = ask_udp(server.address, &query(1, name, RecordType::A)).await?;
        assert_eq!(addresses(&reply), [WEB], "{name}");
        // The answer carries the name as asked.
        let owner = reply.answers()[0].name().to_ascii();
        assert_eq!(owner.trim_end_matches('.'), name.trim_end_matches('.'));
    }
    Ok(())
}

#[tokio::test]
async fn aaaa_of_a_container_name_has_no_records_but_is_no_error() -> Result<()> {
    let server = Server::start(Config::default()).await?;
    let reply = ask_udp(server.address, &query(2, "db", RecordType::AAAA)).await?;
    assert_eq!(reply.response_code(), ResponseCode::NoError);
    assert!(reply.authoritative());
    assert!(reply.answers().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_container_with_ipv6_answers_aaaa_with_it_and_a_with_its_ipv4() -> Result<()> {
    let server = Server::start(Config::default()).await?;
    let reply = ask_udp(server.address, &query(2, "dual", RecordType::AAAA)).await?;
    assert_eq!(reply.response_code(), ResponseCode::NoError);
    assert!(reply.authoritative());
    assert_eq!(addresses6(&reply), [DUAL6]);
    assert!(addresses(&reply).is_empty());
    let reply = ask_udp(server.address, &query(3, "dual", RecordType::A)).await?;
    assert_eq!(
        (addresses(&reply), addresses6(&reply)),
        (vec![DUAL], vec![])
    );
    let reply = ask_udp(server.address, &query(4, "dual", RecordType::ANY)).await?;
    assert_eq!(
        (addresses(&reply), addresses6(&reply)),
        (vec![DUAL], vec![DUAL6])
    );
    Ok(())
}

#[tokio::test]
async fn any_of_a_container_name_answers_its_addresses() -> Result<()> {
    let server = Server::start(Config::default()).await?;
    let reply = ask_udp(server.address, &query(3, "db", RecordType::ANY)).await?;
    assert_eq!(addresses(&reply), [DB]);
    Ok(())
}

#[tokio::test]
async fn the_reverse_name_of_a_container_address_points_at_its_name() -> Result<()> {
    let server = Server::start(Config::default()).await?;
    let reply = ask_udp(
        server.address,
        &query(4, "2.0.16.172.in-addr.arpa.", RecordType::PTR),
    )
    .await?;
    assert_eq!(reply.response_code(), ResponseCode::NoError);
    assert!(reply.authoritative());
    let targets: Vec<_> = reply
        .answers()
        .iter()
        .map(|record| record.data().clone())
        .collect();
    assert_eq!(targets, [RData::PTR(PTR(Name::from_ascii("web.")?))]);
    Ok(())
}

#[tokio::test]
async fn a_link_answers_only_the_container_that_has_it() -> Result<()> {
    let server = Server::start(Config::default()).await?;
    let linked = tokio::net::UdpSocket::bind((LINKED, 0)).await?;
    send(&linked, server.address, &query(5, "friend", RecordType::A)).await?;
    assert_eq!(addresses(&receive(&linked).await?), [DB]);

    // For anyone else it is no container name: forwarded, and without upstreams that fails.
    let reply = ask_udp(server.address, &query(6, "friend", RecordType::A)).await?;
    assert_eq!(reply.response_code(), ResponseCode::ServFail);
    assert!(reply.answers().is_empty());
    Ok(())
}

#[tokio::test]
async fn without_upstreams_other_names_fail_at_once_and_recursion_is_not_offered() -> Result<()> {
    let server = Server::start(Config::default()).await?;
    let started = tokio::time::Instant::now();
    let reply = ask_udp(server.address, &query(7, "example.com", RecordType::A)).await?;
    assert_eq!(reply.response_code(), ResponseCode::ServFail);
    assert_eq!(reply.id(), 7);
    assert!(!reply.recursion_available());
    assert!(started.elapsed() < Duration::from_secs(1));

    let local = ask_udp(server.address, &query(8, "web", RecordType::A)).await?;
    assert!(!local.recursion_available());
    Ok(())
}

#[tokio::test]
async fn over_tcp_names_answer_the_same() -> Result<()> {
    let server = Server::start(Config::default()).await?;
    let reply = ask_tcp(server.address, &query(9, "Web", RecordType::A)).await?;
    assert_eq!(reply.id(), 9);
    assert!(reply.authoritative());
    assert_eq!(addresses(&reply), [WEB]);
    Ok(())
}

#[tokio::test]
async fn queries_on_one_tcp_connection_are_answered_in_order() -> Result<()> {
    let server = Server::start(Config::default()).await?;
    let mut stream = tokio::net::TcpStream::connect(server.address).await?;
    write_frame(&mut stream, &query(10, "web", RecordType::A).to_vec()?).await?;
    write_frame(&mut stream, &query(11, "db", RecordType::A).to_vec()?).await?;
    let first = hickory_proto::op::Message::from_vec(&read_frame(&mut stream).await?)?;
    let second = hickory_proto::op::Message::from_vec(&read_frame(&mut stream).await?)?;
    assert_eq!((first.id(), addresses(&first)), (10, vec![WEB]));
    assert_eq!((second.id(), addresses(&second)), (11, vec![DB]));
    Ok(())
}

#[tokio::test]
async fn an_answer_too_large_for_udp_is_truncated_and_whole_over_tcp() -> Result<()> {
    let server = Server::start(Config::default()).await?;
    let all: Vec<Ipv4Addr> = (0..100).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();

    let socket = client().await?;
    send(&socket, server.address, &query(12, "many", RecordType::A)).await?;
    let bytes = receive_bytes(&socket).await?;
    assert!(bytes.len() <= 512, "{} bytes", bytes.len());
    let cut = hickory_proto::op::Message::from_vec(&bytes)?;
    assert!(cut.truncated());
    assert!(cut.answers().is_empty());
    assert_eq!(cut.queries(), query(0, "many.", RecordType::A).queries());

    let large = ask_udp(
        server.address,
        &with_edns(query(13, "many", RecordType::A), 4096),
    )
    .await?;
    assert!(!large.truncated());
    assert_eq!(addresses(&large), all);
    assert!(large.extensions().is_some());

    let small = ask_udp(
        server.address,
        &with_edns(query(14, "many", RecordType::A), 1000),
    )
    .await?;
    assert!(small.truncated());

    let whole = ask_tcp(server.address, &query(15, "many", RecordType::A)).await?;
    assert!(!whole.truncated());
    assert_eq!(addresses(&whole), all);
    Ok(())
}
