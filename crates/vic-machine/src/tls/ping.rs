//! The readiness ping over TLS: `GET /_ping` to the appliance, checking that it answers,
//! not who it is (the server certificate may be the user's, from any CA): clients verify
//! the server.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::TlsMode;
use crate::certs::{self, PemPair};

/// How to tell that a restarted appliance answers: `/_ping` over TLS when it serves TLS.
/// Without a client certificate, a tlsverify appliance that completes the handshake and
/// then asks for one counts as up.
pub struct Readiness(Option<Pinger>);

impl Readiness {
    pub fn for_mode(mode: TlsMode) -> anyhow::Result<Readiness> {
        Ok(Readiness(match mode {
            TlsMode::NoTls => None,
            _ => Some(Pinger::new(None)?),
        }))
    }

    pub fn ping(&self, port: u16) -> bool {
        match &self.0 {
            Some(p) => p.ping(port),
            None => crate::process::ping(port),
        }
    }
}

/// The readiness ping over TLS. It checks that the appliance answers, not who it is (the
/// server certificate may be the user's, from any CA): clients verify the server.
pub(super) struct Pinger {
    config: Arc<rustls::ClientConfig>,
    has_identity: bool,
}

impl Pinger {
    pub(super) fn new(client: Option<&PemPair>) -> anyhow::Result<Pinger> {
        let provider = certs::provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
        let config = match client {
            Some(pair) => builder.with_client_auth_cert(
                certs::certificates(&pair.cert).map_err(anyhow::Error::msg)?,
                certs::private_key(&pair.key).map_err(anyhow::Error::msg)?,
            )?,
            None => builder.with_no_client_auth(),
        };
        Ok(Pinger {
            config: Arc::new(config),
            has_identity: client.is_some(),
        })
    }

    /// One `GET /_ping`. Without a client certificate (`--tls-ca`: the user's CA signs them)
    /// an appliance that completes the handshake and then refuses for want of a
    /// certificate is up too.
    pub(super) fn ping(&self, port: u16) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let Ok(tcp) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            return false;
        };
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = tcp.set_write_timeout(Some(Duration::from_secs(2)));
        let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
        let Ok(conn) = rustls::ClientConnection::new(self.config.clone(), name) else {
            return false;
        };
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        if tls
            .write_all(b"GET /_ping HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut resp = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tls.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => resp.extend_from_slice(&buf[..n]),
                // hyper may close without close_notify once it has answered.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
                Err(e) => return !self.has_identity && refused_for_no_certificate(&e),
            }
        }
        let resp = String::from_utf8_lossy(&resp);
        resp.starts_with("HTTP/1.") && resp.contains(" 200 ") && resp.ends_with("OK")
    }
}

fn refused_for_no_certificate(e: &std::io::Error) -> bool {
    matches!(
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired
        ))
    )
}

/// Accepts any server certificate (still checking the handshake signatures).
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
