//! Certificates for a VCH's Docker API: a CA, server and client certificates made with
//! rcgen, and the checks (with rustls' own verifiers) that decide whether files from an
//! earlier `create` can be reused.
//!
//! A CA that vic-machine made always has the same name, so the CA can be rebuilt from
//! `ca-key.pem` alone; a probe certificate signed that way must then verify against
//! `ca.pem`, which only holds for a CA vic-machine made, with that key, still valid.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use chrono::{Datelike, Months, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::RootCertStore;

/// Validity of a generated CA, in months.
const CA_MONTHS: u32 = 10 * 12;
/// Validity of generated server and client certificates, in months.
const LEAF_MONTHS: u32 = 2 * 12;

/// The organisation in every generated certificate's name.
const ORG: &str = "vic";
/// The common name of every generated CA (fixed, so a CA can be rebuilt from its key).
const CA_NAME: &str = "vic-machine CA";

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct PemPair {
    pub cert: String,
    pub key: String,
}

/// A certificate authority that can sign.
pub struct Ca {
    pub pem: PemPair,
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// The ring provider: the one reqwest already brings, so the build has one crypto stack.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn name(common: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORG);
    dn.push(DnType::CommonName, common);
    dn
}

/// From yesterday (clock skew) for `months`.
fn set_validity(p: &mut CertificateParams, months: u32) {
    let start = Utc::now().date_naive() - chrono::Days::new(1);
    let end = start
        .checked_add_months(Months::new(months))
        .unwrap_or(start);
    let ymd = |d: chrono::NaiveDate| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    p.not_before = ymd(start);
    p.not_after = ymd(end);
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(CA_NAME);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut p, CA_MONTHS);
    p
}

fn client_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = name("client");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    set_validity(&mut p, LEAF_MONTHS);
    p
}

/// The subject alternative name for `--tls-cname`: an IP address, a DNS name or a
/// `*.domain` wildcard.
pub fn cname_san(cname: &str) -> Result<SanType, String> {
    if let Ok(ip) = cname.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let host = cname.strip_prefix("*.").unwrap_or(cname);
    if ServerName::try_from(host).is_err() || host.contains('*') {
        return Err(format!(
            "--tls-cname {cname:?} is neither an IP address nor a DNS name"
        ));
    }
    let name = cname
        .try_into()
        .map_err(|e| format!("--tls-cname {cname:?}: {e}"))?;
    Ok(SanType::DnsName(name))
}

fn server_params(cname: Option<&str>) -> Result<CertificateParams, String> {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(cname.unwrap_or("localhost"));
    p.subject_alt_names = vec![
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::DnsName("localhost".try_into().map_err(|e| format!("{e}"))?),
    ];
    if let Some(c) = cname {
        let san = cname_san(c)?;
        if !p.subject_alt_names.contains(&san) {
            p.subject_alt_names.push(san);
        }
    }
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    set_validity(&mut p, LEAF_MONTHS);
    Ok(p)
}

impl Ca {
    /// A new CA with a new key.
    pub fn generate() -> Result<Ca, rcgen::Error> {
        let key = KeyPair::generate()?;
        let params = ca_params();
        let cert = params.self_signed(&key)?;
        let pem = PemPair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        Ok(Ca {
            pem,
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA of an earlier create, from its two files' contents; why not, when it cannot
    /// sign certificates that verify against `cert_pem`.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Ca, String> {
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| format!("no certificate in it ({e})"))?;
        keys_match(vec![der.clone()], key_pem)?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| format!("its key: {e}"))?;
        let ca = Ca {
            pem: PemPair {
                cert: cert_pem.to_string(),
                key: key_pem.to_string(),
            },
            der,
            issuer: Issuer::new(ca_params(), key),
        };
        let probe = ca.client().map_err(|e| e.to_string())?;
        ca.verify_client(&probe.cert)
            .map_err(|e| format!("it was not made by vic-machine, or has expired ({e})"))?;
        Ok(ca)
    }

    /// A new client certificate (for `docker --tlscert`).
    pub fn client(&self) -> Result<PemPair, rcgen::Error> {
        let key = KeyPair::generate()?;
        let cert = client_params().signed_by(&key, &self.issuer)?;
        Ok(PemPair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// A new server certificate for 127.0.0.1, localhost and `cname`.
    pub fn server(&self, cname: Option<&str>) -> Result<PemPair, String> {
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = server_params(cname)?
            .signed_by(&key, &self.issuer)
            .map_err(|e| e.to_string())?;
        Ok(PemPair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, String> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).map_err(|e| e.to_string())?;
        Ok(Arc::new(roots))
    }

    /// Checks that `cert_pem` (a client certificate, then its chain) chains to this CA now.
    pub fn verify_client(&self, cert_pem: &str) -> Result<(), String> {
        let chain = certificates(cert_pem)?;
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
                .build()
                .map_err(|e| e.to_string())?;
        verifier
            .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Checks that `cert_pem` is a server certificate from this CA valid for 127.0.0.1.
    pub fn verify_server(&self, cert_pem: &str) -> Result<(), String> {
        let chain = certificates(cert_pem)?;
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(self.roots()?, provider())
                .build()
                .map_err(|e| e.to_string())?;
        let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The certificates in a PEM text, at least one.
pub fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("no PEM certificate in it ({e})"))?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}

/// The private key in a PEM text.
pub fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("no PEM private key in it ({e})"))
}

/// Checks that the key in `key_pem` belongs to the first certificate of `chain`.
pub fn keys_match(chain: Vec<CertificateDer<'static>>, key_pem: &str) -> Result<(), String> {
    let key = private_key(key_pem)?;
    rustls::sign::CertifiedKey::from_der(chain, key, &provider())
        .map(|_| ())
        .map_err(|e| format!("the key does not belong to the certificate ({e})"))
}

/// Checks that `cert_pem` (a client certificate, then its chain) chains to one of the
/// authorities in `authorities_pem` now.
pub fn verify_client_with(authorities_pem: &str, cert_pem: &str) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(authorities_pem)? {
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    let chain = certificates(cert_pem)?;
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| e.to_string())?;
    verifier
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Checks that a PEM client CA bundle holds at least one certificate usable as a trust anchor.
pub fn check_authorities(pem: &str) -> Result<usize, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(pem)? {
        roots
            .add(cert)
            .map_err(|e| format!("not a usable certificate authority ({e})"))?;
    }
    Ok(roots.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificates_chain_to_their_ca() {
        let ca = Ca::generate().unwrap();
        let client = ca.client().unwrap();
        ca.verify_client(&client.cert).unwrap();
        keys_match(certificates(&client.cert).unwrap(), &client.key).unwrap();
        let server = ca.server(Some("vch.example.com")).unwrap();
        ca.verify_server(&server.cert).unwrap();
        // A server certificate is not a client certificate, and the reverse.
        assert!(ca.verify_client(&server.cert).is_err());
        assert!(ca.verify_server(&client.cert).is_err());
    }

    #[test]
    fn a_ca_rebuilt_from_its_files_signs_for_the_same_ca_pem() {
        let ca = Ca::generate().unwrap();
        let old_client = ca.client().unwrap();
        let again = Ca::load(&ca.pem.cert, &ca.pem.key).unwrap();
        again.verify_client(&old_client.cert).unwrap();
        ca.verify_client(&again.client().unwrap().cert).unwrap();
        ca.verify_server(&again.server(None).unwrap().cert).unwrap();
    }

    #[test]
    fn a_ca_with_another_key_or_not_ours_is_not_reused() {
        let a = Ca::generate().unwrap();
        let b = Ca::generate().unwrap();
        let err = Ca::load(&a.pem.cert, &b.pem.key).err().unwrap();
        assert!(err.contains("does not belong"), "{err}");
        // Same key, another name: not a CA vic-machine made.
        let key = KeyPair::from_pem(&a.pem.key).unwrap();
        let mut params = ca_params();
        params.distinguished_name = name("someone else's CA");
        let foreign = params.self_signed(&key).unwrap().pem();
        let err = Ca::load(&foreign, &a.pem.key).err().unwrap();
        assert!(err.contains("not made by vic-machine"), "{err}");
    }

    #[test]
    fn a_client_certificate_of_another_ca_does_not_verify() {
        let a = Ca::generate().unwrap();
        let b = Ca::generate().unwrap();
        assert!(a.verify_client(&b.client().unwrap().cert).is_err());
        let bundle = format!("{}{}", a.pem.cert, b.pem.cert);
        verify_client_with(&bundle, &b.client().unwrap().cert).unwrap();
        assert!(verify_client_with(&a.pem.cert, &b.client().unwrap().cert).is_err());
    }

    #[test]
    fn cnames_are_ip_addresses_dns_names_or_wildcards() {
        assert!(matches!(cname_san("10.1.2.3"), Ok(SanType::IpAddress(_))));
        assert!(matches!(
            cname_san("vch.example.com"),
            Ok(SanType::DnsName(_))
        ));
        assert!(matches!(
            cname_san("*.example.com"),
            Ok(SanType::DnsName(_))
        ));
        assert!(cname_san("not a name").is_err());
        assert!(cname_san("a.*.example.com").is_err());
    }
}
