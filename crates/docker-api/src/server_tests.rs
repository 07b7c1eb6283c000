//! The bounds of `server.rs` and `guard.rs` against a real listener on 127.0.0.1, serving a
//! small router through the same [`Api`] and the same layers as the Docker API. Every wait is
//! bounded; nothing asserts how fast anything happens.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::routing::{get, post};
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// Longest any step of these tests may take before it counts as a hang.
const BOUND: Duration = Duration::from_secs(20);

fn test_api(plain: bool) -> Api {
    let routes = Router::new()
        .route("/_ping", get(|| async { "OK" }))
        .route(
            "/echo",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/query/{id}",
            get(
                |axum::extract::Path(id): axum::extract::Path<String>,
                 axum::extract::Query(q): axum::extract::Query<
                    std::collections::HashMap<String, String>,
                >| async move { format!("{id} {}", q.len()) },
            ),
        )
        .route(
            "/upload",
            post(|body: Body| async move {
                // As load and import take their bodies: a stream, never whole in memory.
                use futures_util::StreamExt;
                let mut frames = body.into_data_stream();
                let mut n = 0usize;
                while let Some(Ok(frame)) = frames.next().await {
                    n += frame.len();
                }
                n.to_string()
            }),
        )
        .route(
            "/stream",
            get(|| async {
                // Eight chunks, 150 ms apart: a response body that outlasts the header
                // timeouts the tests set.
                let chunks = futures_util::stream::unfold(0u8, |n| async move {
                    if n == 8 {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    Some((
                        Ok::<_, std::io::Error>(Bytes::from(format!("chunk{n};"))),
                        n + 1,
                    ))
                });
                Body::from_stream(chunks)
            }),
        );
    Api::of(crate::with_docker_manners(routes), plain)
}

async fn start(limits: ServerLimits, plain: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(crate::serve_plain(
        listener,
        test_api(plain),
        limits,
        std::future::pending(),
    ));
    addr
}

fn short(header_read_timeout: Duration) -> ServerLimits {
    ServerLimits {
        header_read_timeout,
        ..ServerLimits::default()
    }
}

/// Reads until the server closes the connection (EOF or reset), or panics after [`BOUND`].
async fn read_until_closed(conn: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(BOUND, conn.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept the connection open; got so far: {}",
                String::from_utf8_lossy(&out)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&out).to_string(),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `request` on a new connection and returns everything the server sends back until
/// it closes (the requests say `Connection: close`).
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let _ = conn.write_all(request).await;
    read_until_closed(&mut conn).await
}

fn status_and_body(resp: &str) -> (u16, serde_json::Value) {
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {resp:?}"));
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn a_silent_connection_is_closed() {
    let addr = start(short(Duration::from_millis(300)), true).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_until_closed(&mut conn).await, "");
}

#[tokio::test]
async fn a_half_sent_head_is_closed() {
    let addr = start(short(Duration::from_millis(300)), true).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /_ping HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Ag")
        .await
        .unwrap();
    let got = read_until_closed(&mut conn).await;
    assert!(!got.contains("200 OK"), "{got}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_its_answer() {
    let addr = start(short(Duration::from_millis(300)), true).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /_ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut conn).await;
    assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
    assert!(got.ends_with("OK"), "{got}");
}

#[tokio::test]
async fn a_response_body_outlasts_the_header_timeout() {
    let addr = start(short(Duration::from_millis(200)), true).await;
    let got = exchange(
        addr,
        b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    for n in 0..8 {
        assert!(
            got.contains(&format!("chunk{n};")),
            "chunk {n} missing: {got}"
        );
    }
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_and_the_server_goes_on() {
    let limits = ServerLimits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(60),
    };
    let addr = start(limits, true).await;
    let ping = b"GET /_ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(ping).await.unwrap();
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(BOUND, conn.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
        held.push(conn);
    }
    // Both slots are taken (kept alive): the next ones are closed, with a 503 when it fits.
    for _ in 0..5 {
        let got = exchange(addr, ping).await;
        assert!(
            got.is_empty() || got.starts_with("HTTP/1.1 503"),
            "a connection over the cap was served: {got}"
        );
    }
    // A slot freed is a slot used again.
    drop(held.pop());
    let start = std::time::Instant::now();
    loop {
        let got = exchange(
            addr,
            b"GET /_ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .await;
        if got.starts_with("HTTP/1.1 200 OK") {
            break;
        }
        assert!(
            start.elapsed() < BOUND,
            "the freed slot was never reused: {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_oversized_uri_or_head_is_refused() {
    let addr = start(ServerLimits::default(), true).await;
    let long = "a".repeat(70 * 1024);
    let got = exchange(
        addr,
        format!("GET /_ping?x={long} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 414"), "{:.200}", got);
    let big = "b".repeat(2 * MAX_HEAD_BYTES);
    let got = exchange(
        addr,
        format!("GET /_ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 431"), "{:.200}", got);
}

/// Sends a body one byte over the limit and returns what came back. The server answers and
/// closes as soon as the limit is passed; a reset racing that close can discard the answer
/// on the client's side, so an empty result is possible.
async fn send_over_the_limit(addr: SocketAddr) -> Vec<u8> {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let len = crate::MAX_JSON_BODY + 1;
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b' '; 1 << 20];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            if wr.write_all(&chunk[..n]).await.is_err() {
                break; // the server answered and closed
            }
            left -= n;
        }
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(BOUND, rd.read_to_end(&mut out))
        .await
        .expect("the 413 came");
    writer.abort();
    out
}

#[tokio::test]
async fn a_body_over_the_limit_gets_a_json_413_and_one_under_it_is_read() {
    let addr = start(ServerLimits::default(), true).await;
    // A lost answer (see above) is tried again; every answer that does arrive must be the 413.
    let mut out = Vec::new();
    for _ in 0..5 {
        out = send_over_the_limit(addr).await;
        if !out.is_empty() {
            break;
        }
    }
    let (status, body) = status_and_body(&String::from_utf8_lossy(&out));
    assert_eq!(status, 413);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("larger than the limit"),
        "{body}"
    );
    let got = exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert!(got.ends_with("\r\n5"), "{got}");
}

#[tokio::test]
async fn axums_own_rejections_get_dockers_json() {
    let addr = start(ServerLimits::default(), true).await;
    // (A HashMap query takes anything; a path segment that is not UTF-8 is refused.)
    for target in ["/query/%FF?a=1", "/query/%C3%28"] {
        let got = exchange(
            addr,
            format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        let (status, body) = status_and_body(&got);
        assert_eq!(status, 400, "{got}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{got}"
        );
    }
}

#[tokio::test]
async fn a_streamed_upload_is_not_held_to_the_body_limit() {
    let addr = start(ServerLimits::default(), true).await;
    let len = crate::MAX_JSON_BODY + (2 << 20);
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-tar\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        conn.write_all(&chunk[..n]).await.unwrap();
        left -= n;
    }
    let got = read_until_closed(&mut conn).await;
    assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
    assert!(got.ends_with(&format!("\r\n{len}")), "{got}");
}

#[tokio::test]
async fn a_wrong_method_or_path_gets_dockers_json_404() {
    let addr = start(ServerLimits::default(), true).await;
    for request in [
        &b"POST /_ping HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"[..],
        b"GET /nosuch HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    ] {
        let got = exchange(addr, request).await;
        let (status, body) = status_and_body(&got);
        assert_eq!(status, 404, "{got}");
        assert!(
            body["message"].as_str().unwrap_or("").starts_with("page not found"),
            "{got}"
        );
    }
}

#[tokio::test]
async fn the_plain_endpoint_refuses_what_a_web_page_sends() {
    let addr = start(ServerLimits::default(), true).await;
    for request in [
        &b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:2375\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"[..],
        b"GET /_ping HTTP/1.1\r\nHost: evil.example:2375\r\nConnection: close\r\n\r\n",
    ] {
        let got = exchange(addr, request).await;
        let (status, body) = status_and_body(&got);
        assert_eq!(status, 403, "{got}");
        assert!(
            body["message"].as_str().unwrap_or("").starts_with("request refused"),
            "{got}"
        );
    }
    // The TLS endpoint's handler does not look at them: its certificate names the server
    // (no rebinding) and with tlsverify a page has no client certificate to send.
    let tls_handler = start(ServerLimits::default(), false).await;
    let got = exchange(
        tls_handler,
        b"GET /_ping HTTP/1.1\r\nHost: evil.example:2375\r\nOrigin: http://evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
}
