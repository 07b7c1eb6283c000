//! How the client trusts a vSphere server: by its certificate's thumbprint, as VIC's
//! `--thumbprint` (vCenter and ESX mostly run with certificates no public CA signed), or by
//! CAs given. The handshake's signatures are checked either way, so a pinned certificate
//! proves its key. A refused server's thumbprint is kept for the error, as VIC prints it.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha1::Digest;

/// A certificate's fingerprint: SHA-1 as vSphere shows it (`AB:CD:…`, 20 bytes), or SHA-256
/// (32 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbprint(Vec<u8>);

impl Thumbprint {
    /// The SHA-1 thumbprint of a DER certificate, as VIC prints it.
    pub fn sha1_of(der: &[u8]) -> Thumbprint {
        Thumbprint(sha1::Sha1::digest(der).to_vec())
    }

    /// Whether `der` is the certificate this thumbprint names.
    pub fn matches(&self, der: &[u8]) -> bool {
        match self.0.len() {
            20 => sha1::Sha1::digest(der)[..] == self.0[..],
            32 => sha2::Sha256::digest(der)[..] == self.0[..],
            _ => false,
        }
    }
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: Vec<String> = self.0.iter().map(|b| format!("{b:02X}")).collect();
        f.write_str(&hex.join(":"))
    }
}

impl FromStr for Thumbprint {
    type Err = String;

    /// `AB:CD:…` or plain hex, any case; SHA-1 or SHA-256 long.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex: String = s.chars().filter(|c| *c != ':').collect();
        let bytes = hex::decode(&hex).map_err(|_| format!("invalid thumbprint {s:?}"))?;
        match bytes.len() {
            20 | 32 => Ok(Thumbprint(bytes)),
            n => Err(format!(
                "invalid thumbprint {s:?}: {n} bytes, not a SHA-1 (20) or SHA-256 (32)"
            )),
        }
    }
}

/// Whom to believe.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Exactly the certificate with this thumbprint (its name is not checked).
    Thumbprint(Thumbprint),
    /// Certificates these CAs signed for the host's name (PEM).
    Ca(Vec<CertificateDer<'static>>),
    /// Nothing yet: the connection is refused, and the error shows the server's thumbprint
    /// (what an operator checks and then passes as `--thumbprint`).
    Nothing,
}

impl Trust {
    /// The CAs of a PEM bundle.
    pub fn ca_pem(pem: &[u8]) -> Result<Trust, String> {
        let certs: Vec<CertificateDer<'static>> = pem_certificates(pem)?;
        if certs.is_empty() {
            return Err("the CA bundle holds no certificate".to_string());
        }
        Ok(Trust::Ca(certs))
    }
}

fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("reading the CA bundle: {e}"))
}

/// A rustls configuration trusting what `trust` says; `refused` receives the thumbprint of
/// a certificate it refused.
pub(crate) fn client_config(
    trust: &Trust,
    refused: Arc<Mutex<Option<Thumbprint>>>,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = match trust {
        Trust::Thumbprint(_) | Trust::Nothing => None,
        Trust::Ca(certs) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs {
                roots
                    .add(c.clone())
                    .map_err(|e| format!("a CA certificate is not usable: {e}"))?;
            }
            let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("the CA bundle is not usable: {e}"))?;
            Some(v)
        }
    };
    let verifier = Verifier {
        pinned: match trust {
            Trust::Thumbprint(t) => Some(t.clone()),
            Trust::Ca(_) | Trust::Nothing => None,
        },
        webpki,
        provider: provider.clone(),
        refused,
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}

#[derive(Debug)]
struct Verifier {
    pinned: Option<Thumbprint>,
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    refused: Arc<Mutex<Option<Thumbprint>>>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let trusted = match (&self.pinned, &self.webpki) {
            (Some(t), _) => t.matches(end_entity),
            (None, Some(v)) => v
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                .is_ok(),
            (None, None) => false,
        };
        if trusted {
            return Ok(ServerCertVerified::assertion());
        }
        let seen = Thumbprint::sha1_of(end_entity);
        *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(seen);
        Err(rustls::Error::General(
            "the server's certificate is not trusted".to_string(),
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprints_read_as_vsphere_writes_them_and_match_their_certificate() {
        let der = b"not really a certificate";
        let t = Thumbprint::sha1_of(der);
        let shown = t.to_string();
        assert_eq!(shown.len(), 20 * 3 - 1);
        assert_eq!(shown.parse::<Thumbprint>().unwrap(), t);
        assert_eq!(
            shown
                .to_lowercase()
                .replace(':', "")
                .parse::<Thumbprint>()
                .unwrap(),
            t
        );
        assert!(t.matches(der));
        assert!(!t.matches(b"another"));
        let sha256 = hex::encode(sha2::Sha256::digest(der));
        assert!(sha256.parse::<Thumbprint>().unwrap().matches(der));
        assert!("AB:CD".parse::<Thumbprint>().is_err());
        assert!("zz".parse::<Thumbprint>().is_err());
    }
}
