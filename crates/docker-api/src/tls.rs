//! The Docker API over TLS, as dockerd serves it on port 2376: a server certificate, and with
//! client authorities (`--tlsverify`) a client certificate that chains to one of them.
//!
//! ```text
//!   accept (server.rs: within the connection cap)
//!                 ▼
//!   peek: TLS? ─no─► "400 Client sent an HTTP request to an HTTPS server."
//!                 │yes
//!                 ▼
//!   handshake (10 s limit; a failure is logged at debug, the server goes on)
//!                 ▼
//!   server.rs: hyper http1 with upgrades, within the same bounds as the plain server
//!   ─► the same handler (attach hijacks work)
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::server::{accept_loop, serve_connection};
use crate::{Api, AppState, ServerLimits};

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What Go's net/http (so dockerd) answers a plain HTTP request on a TLS port.
const PLAIN_HTTP_REPLY: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// The first byte of every TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Why the TLS configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// A file holds no PEM certificate.
    #[error("{path}: no PEM certificate in it ({source})")]
    NoCertificate {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    /// A file holds no PEM private key.
    #[error("{path}: no PEM private key in it ({source})")]
    NoKey {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    /// A client CA file holds a certificate that cannot be a trust anchor.
    #[error("{path}: not a usable certificate authority: {source}")]
    BadAuthority {
        path: PathBuf,
        source: rustls::Error,
    },
    /// The client verifier cannot be built from the authorities.
    #[error("the client certificate authorities cannot be used: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The crypto provider offers no protocol version (cannot happen with ring's defaults).
    #[error("the crypto provider cannot serve TLS: {0}")]
    Provider(#[source] rustls::Error),
    /// The server certificate and key do not form a usable pair.
    #[error("the server certificate and key cannot be used together: {0}")]
    KeyPair(#[source] rustls::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .and_then(|c| {
            if c.is_empty() {
                Err(rustls::pki_types::pem::Error::NoItemsFound)
            } else {
                Ok(c)
            }
        });
    certs.map_err(|source| TlsError::NoCertificate {
        path: path.to_path_buf(),
        source,
    })
}

/// The ring provider: the one reqwest already brings, so the build has one crypto stack.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A checked TLS configuration for [`serve_tls`].
#[derive(Clone, Debug)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
    verifies_clients: bool,
}

impl TlsConfig {
    /// Whether clients must present a certificate (`--tlsverify`).
    pub fn verifies_clients(&self) -> bool {
        self.verifies_clients
    }

    /// The rustls configuration, for a listener of the VCH's other than the Docker API's.
    pub fn rustls(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }
}

/// Builds the server configuration from PEM files: `cert` (the server certificate, then its
/// chain), `key`, and the authorities client certificates must chain to. With no
/// authorities any client may connect (`--no-tlsverify`); with some, a client without a
/// certificate that chains to one of them is refused during the handshake.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_cas: &[PathBuf],
) -> Result<TlsConfig, TlsError> {
    build(cert, key, client_cas, false)
}

/// [`server_config`] for a listener where a client certificate is one way in among others
/// (the admin pages): a client may present none, and one it presents must chain to an
/// authority of `client_cas`.
pub fn optional_client_config(
    cert: &Path,
    key: &Path,
    client_cas: &[PathBuf],
) -> Result<TlsConfig, TlsError> {
    build(cert, key, client_cas, true)
}

fn build(
    cert: &Path,
    key: &Path,
    client_cas: &[PathBuf],
    optional: bool,
) -> Result<TlsConfig, TlsError> {
    let chain = certificates(cert)?;
    let key_pem = read(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| TlsError::NoKey {
        path: key.to_path_buf(),
        source,
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?;
    let builder = if client_cas.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        for path in client_cas {
            for ca in certificates(path)? {
                roots.add(ca).map_err(|source| TlsError::BadAuthority {
                    path: path.clone(),
                    source,
                })?;
            }
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
        let verifier = match optional {
            true => verifier.allow_unauthenticated().build()?,
            false => verifier.build()?,
        };
        builder.with_client_cert_verifier(verifier)
    };
    let config = builder
        .with_single_cert(chain, key_der)
        .map_err(TlsError::KeyPair)?;
    Ok(TlsConfig {
        server: Arc::new(config),
        verifies_clients: !client_cas.is_empty(),
    })
}

/// Serves the API over TLS on `listener` within `limits`; stops accepting when `shutdown`
/// resolves. A client that fails or stalls its handshake costs only its own connection.
pub async fn serve_tls(
    listener: TcpListener,
    config: TlsConfig,
    state: AppState,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_tls_api(listener, config, Api::new(state), limits, shutdown).await
}

pub(crate) async fn serve_tls_api(
    listener: TcpListener,
    config: TlsConfig,
    api: Api,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(config.server);
    let verify = if config.verifies_clients {
        "client certificates required"
    } else {
        "no client certificates"
    };
    tracing::info!(
        "Docker API listening on {} (TLS, {verify}; at most {} connections)",
        listener.local_addr()?,
        limits.max_connections
    );
    let limits = Arc::new(limits);
    // Over the cap a connection is closed before its handshake: nothing to tell it in clear.
    accept_loop(listener, &limits, shutdown, &[], |tcp, peer| {
        let (acceptor, api, limits) = (acceptor.clone(), api.clone(), limits.clone());
        async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&acceptor, tcp)).await {
                Ok(Ok(Some(tls))) => serve_connection(tls, api, &limits).await,
                Ok(Ok(None)) => tracing::debug!(%peer, "plain HTTP on the TLS port refused"),
                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    })
    .await
}

/// Completes the handshake; answers a plain HTTP client as dockerd does and returns None.
async fn handshake(
    acceptor: &TlsAcceptor,
    mut tcp: TcpStream,
) -> io::Result<Option<tokio_rustls::server::TlsStream<TcpStream>>> {
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed before the handshake",
        ));
    }
    if first[0] != TLS_HANDSHAKE && first[0].is_ascii_uppercase() {
        tcp.write_all(PLAIN_HTTP_REPLY).await?;
        let _ = tcp.shutdown().await;
        return Ok(None);
    }
    acceptor.accept(tcp).await.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named_in_the_error() {
        let err = server_config(
            Path::new("/nonexistent/server-cert.pem"),
            Path::new("/nonexistent/server-key.pem"),
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/server-cert.pem:"),
            "{err}"
        );
    }

    #[test]
    fn a_file_without_a_certificate_is_refused() {
        let dir = std::env::temp_dir().join(format!("docker-api-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        std::fs::write(&cert, "not a certificate\n").unwrap();
        let err = server_config(&cert, &cert, &[]).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}-key.pem")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    /// The TLS endpoint serves through the same bounds as the plain one: after a complete
    /// handshake, a client that sends no request is dropped.
    #[tokio::test]
    async fn a_silent_client_after_the_handshake_is_closed() {
        use tokio::io::AsyncReadExt;
        let dir = std::env::temp_dir().join(format!("docker-api-tls-idle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = write_pair(&dir, "server");
        let config = server_config(&cert, &key, &[]).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let api = Api::of(axum::Router::new(), false);
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ServerLimits::default()
        };
        tokio::spawn(serve_tls_api(
            listener,
            config,
            api,
            limits,
            std::future::pending(),
        ));

        let mut roots = RootCertStore::empty();
        for c in certificates(&cert).unwrap() {
            roots.add(c).unwrap();
        }
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let mut tls = connector.connect(name, tcp).await.expect("the handshake");
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(20), tls.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the silent TLS client was not dropped: {read:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_and_a_matching_one_accepted() {
        let dir = std::env::temp_dir().join(format!("docker-api-tls-pair-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert_a, key_a) = write_pair(&dir, "a");
        let (cert_b, _) = write_pair(&dir, "b");
        let err = server_config(&cert_b, &key_a, &[]).err().unwrap();
        assert!(matches!(err, TlsError::KeyPair(_)), "{err}");
        let plain = server_config(&cert_a, &key_a, &[]).unwrap();
        assert!(!plain.verifies_clients());
        let verifying = server_config(&cert_a, &key_a, &[cert_b]).unwrap();
        assert!(verifying.verifies_clients());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
