//! A hostile registry: a small HTTP/1.1 server on 127.0.0.1 (plain, or TLS with a
//! self-signed certificate) that answers each request with what a test's router says, and
//! records every request it was sent.
//!
//! Replies close the connection, so a body without a length runs until the server stops
//! sending: that is how endless and trickling bodies are served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// A request as the fixture saw it.
#[derive(Debug, Clone)]
pub struct Req {
    #[allow(dead_code)]
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Header names in lowercase.
    pub headers: HashMap<String, String>,
}

/// What the fixture sends back.
pub enum Body {
    /// These bytes, with their `Content-Length` (unless the reply claims another).
    Bytes(Vec<u8>),
    /// `chunk` every `every`, `times` times (forever when `None`), then the connection
    /// closes.
    Trickle {
        chunk: Vec<u8>,
        every: Duration,
        times: Option<usize>,
    },
    /// Nothing at all: no status line, the connection stays open.
    Silent,
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// A `Content-Length` to claim instead of the true one.
    pub claim_length: Option<u64>,
}

impl Reply {
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: Body::Bytes(body.into()),
            claim_length: None,
        }
    }

    pub fn json(content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply::ok(body).header("Content-Type", content_type)
    }

    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            ..Reply::ok(Vec::new())
        }
    }

    pub fn redirect(to: &str) -> Reply {
        Reply::status(307).header("Location", to)
    }

    pub fn trickle(chunk: &[u8], every: Duration, times: Option<usize>) -> Reply {
        Reply {
            body: Body::Trickle {
                chunk: chunk.to_vec(),
                every,
                times,
            },
            ..Reply::status(200)
        }
    }

    pub fn silent() -> Reply {
        Reply {
            body: Body::Silent,
            ..Reply::status(200)
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn claiming(mut self, length: u64) -> Reply {
        self.claim_length = Some(length);
        self
    }
}

type Router = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

/// A running hostile registry; it stops when dropped.
pub struct Hostile {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    seen: Arc<Mutex<Vec<Req>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hostile {
    /// Serves plain HTTP.
    pub async fn start(router: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Hostile {
        Self::serve(Arc::new(router), None).await
    }

    /// Serves HTTPS with a self-signed certificate for 127.0.0.1.
    pub async fn start_tls(router: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Hostile {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::serve(Arc::new(router), Some(acceptor)).await
    }

    async fn serve(router: Router, tls: Option<tokio_rustls::TlsAcceptor>) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (router, log, tls) = (router.clone(), log.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(tcp).await {
                                connection(s, router, log).await;
                            }
                        }
                        None => {
                            // A TLS hello to a plain server (the insecure-registry probe):
                            // hang up, as a real HTTP server's answer would fail it.
                            let mut first = [0u8; 1];
                            if tcp.peek(&mut first).await.is_ok() && first[0] != 0x16 {
                                connection(tcp, router, log).await;
                            }
                        }
                    }
                });
            }
        });
        Hostile { addr, seen, task }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Req> {
        self.seen.lock().unwrap().clone()
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    router: Router,
    log: Arc<Mutex<Vec<Req>>>,
) {
    let Some(req) = read_head(&mut s).await else {
        return;
    };
    log.lock().unwrap().push(req.clone());
    let reply = router(&req);
    if matches!(reply.body, Body::Silent) {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return;
    }
    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match (&reply.body, reply.claim_length) {
        (_, Some(n)) => head.push_str(&format!("Content-Length: {n}\r\n")),
        (Body::Bytes(b), None) => head.push_str(&format!("Content-Length: {}\r\n", b.len())),
        _ => {}
    }
    head.push_str("\r\n");
    if s.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    match reply.body {
        Body::Bytes(b) => {
            let _ = s.write_all(&b).await;
        }
        Body::Trickle {
            chunk,
            every,
            times,
        } => {
            let mut sent = 0;
            while times.is_none_or(|t| sent < t) {
                if s.write_all(&chunk).await.is_err() || s.flush().await.is_err() {
                    return;
                }
                sent += 1;
                if !every.is_zero() {
                    tokio::time::sleep(every).await;
                }
            }
        }
        Body::Silent => {}
    }
    let _ = s.flush().await;
    let _ = s.shutdown().await;
}

/// The request line and headers (the body, if any, is not read).
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Option<Req> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 64 * 1024 || s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Req {
        method,
        path,
        headers,
    })
}
