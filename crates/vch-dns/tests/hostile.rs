//! What a hostile container can send, and the server still answering afterwards.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vch_dns::Config;

/// Whether `server` still answers `web` over UDP.
async fn still_answers(server: &Server) -> Result<bool> {
    let reply = ask_udp(server.address, &query(0x5151, "web", RecordType::A)).await?;
    Ok(reply.id() == 0x5151 && addresses(&reply) == [WEB])
}

/// Whether the peer of `stream` closes it within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0; 1];
    matches!(
        tokio::time::timeout(wait, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn garbage_over_udp_does_not_stop_the_server() -> Result<()> {
    let server = Server::start(Config::default()).await?;
    let socket = client().await?;
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for packet in [&[][..], &[0xff; 3][..], &noise[..], &vec![0; 5000][..]] {
        socket.send_to(packet, server.address).await?;
    }
    assert!(still_answers(&server).await?);
    Ok(())
}

#[tokio::test]
async fn a_header_counting_more_than_it_holds_is_a_format_error() -> Result<()> {
    let server = Server::start(Config::default()).await?;
    let socket = client().await?;
    // ID 0xbeef, RD, one question, 65535 records of each kind, and nothing after the header.
    let header = [
        0xbe, 0xef, 0x01, 0x00, 0x00, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    socket.send_to(&header, server.address).await?;
    let reply = receive(&socket).await?;
    assert_eq!(reply.id(), 0xbeef);
    assert_eq!(reply.response_code(), ResponseCode::FormErr);
    assert!(reply.queries().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_question_cut_short_is_a_format_error() -> Result<()> {
    let server = Server::start(Config::default()).await?;
    let mut bytes = query(0x0c0c, "web", RecordType::A).to_vec()?;
    bytes.truncate(bytes.len() - 3);
    let socket = client().await?;
    socket.send_to(&bytes, server.address).await?;
    let reply = receive(&socket).await?;
    assert_eq!(
        (reply.id(), reply.response_code()),
        (0x0c0c, ResponseCode::FormErr)
    );
    Ok(())
}

#[tokio::test]
async fn responses_sent_to_the_server_get_no_reply() -> Result<()> {
    let server = Server::start(Config::default()).await?;
    let mut response = query(0x0d0d, "web", RecordType::A);
    response.set_message_type(MessageType::Response);
    let socket = client().await?;
    send(&socket, server.address, &response).await?;
    assert!(silent_for(&socket, Duration::from_millis(200)).await);
    Ok(())
}

#[tokio::test]
async fn garbage_over_tcp_closes_only_its_own_connection() -> Result<()> {
    let server = Server::start(Config::default()).await?;

    // A length the client never fills, then the connection ends.
    let mut short = TcpStream::connect(server.address).await?;
    short.write_all(&[0xff, 0xff, 1, 2, 3]).await?;
    drop(short);

    // A whole frame of noise gets no reply; the connection stays usable.
    let mut noisy = TcpStream::connect(server.address).await?;
    write_frame(&mut noisy, &[0x80; 40]).await?;
    write_frame(&mut noisy, &query(0x0e0e, "db", RecordType::A).to_vec()?).await?;
    let reply = Message::from_vec(&read_frame(&mut noisy).await?)?;
    assert_eq!((reply.id(), addresses(&reply)), (0x0e0e, vec![DB]));

    let reply = ask_tcp(server.address, &query(0x0f0f, "web", RecordType::A)).await?;
    assert_eq!(addresses(&reply), [WEB]);
    assert!(still_answers(&server).await?);
    Ok(())
}

#[tokio::test]
async fn tcp_clients_beyond_the_limit_are_closed_at_once() -> Result<()> {
    let config = Config {
        tcp_clients: 1,
        ..Config::default()
    };
    let server = Server::start(config).await?;
    let mut first = TcpStream::connect(server.address).await?;
    // The first connection is served, so it holds the only place.
    write_frame(&mut first, &query(1, "web", RecordType::A).to_vec()?).await?;
    read_frame(&mut first).await?;

    let mut second = TcpStream::connect(server.address).await?;
    assert!(closed_within(&mut second, Duration::from_secs(2)).await);

    write_frame(&mut first, &query(2, "db", RecordType::A).to_vec()?).await?;
    let reply = Message::from_vec(&read_frame(&mut first).await?)?;
    assert_eq!(addresses(&reply), [DB]);

    // Once the first is gone, another client gets its place.
    drop(first);
    let mut answered = false;
    for _ in 0..50 {
        if let Ok(reply) = ask_tcp(server.address, &query(3, "web", RecordType::A)).await {
            answered = addresses(&reply) == [WEB];
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered);
    Ok(())
}

#[tokio::test]
async fn idle_and_trickling_tcp_clients_are_closed() -> Result<()> {
    let config = Config {
        tcp_idle: Duration::from_millis(300),
        ..Config::default()
    };
    let server = Server::start(config).await?;

    let mut idle = TcpStream::connect(server.address).await?;
    let mut trickling = TcpStream::connect(server.address).await?;
    // Half of a length, and the rest never comes.
    trickling.write_all(&[0]).await?;

    assert!(!closed_within(&mut idle, Duration::from_millis(100)).await);
    assert!(closed_within(&mut idle, Duration::from_secs(2)).await);
    assert!(closed_within(&mut trickling, Duration::from_secs(2)).await);
    assert!(still_answers(&server).await?);
    Ok(())
}

#[tokio::test]
async fn shutdown_stops_the_server() -> Result<()> {
    let server = Server::start(Config::default()).await?;
    assert!(still_answers(&server).await?);
    server.shutdown.cancel();
    let ended = tokio::time::timeout(PATIENCE, server.task).await??;
    assert!(ended.is_ok());

    let socket = client().await?;
    send(&socket, server.address, &query(1, "web", RecordType::A)).await?;
    assert!(silent_for(&socket, Duration::from_millis(200)).await);
    assert!(TcpStream::connect(server.address).await.is_err());
    Ok(())
}
