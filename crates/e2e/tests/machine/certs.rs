//! Certificates of the test's own (an operator's CA), and what openssl sees when it
//! connects to a VCH.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA of the test's own, as an operator would bring with --tls-ca or --tls-server-cert.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

impl TestCa {
    pub fn new(cn: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let pem = p.self_signed(&key).unwrap().pem();
        TestCa {
            issuer: Issuer::new(p, key),
            pem,
        }
    }

    /// A leaf certificate: for a client, or for a server at 127.0.0.1. Returns (cert, key).
    pub fn leaf(&self, client: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, if client { "client" } else { "server" });
        p.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes the CA and a leaf into `dir`; returns (ca, cert, key) paths.
    pub fn write(&self, dir: &Path, tag: &str, client: bool) -> (String, String, String) {
        std::fs::create_dir_all(dir).unwrap();
        let (cert, key) = self.leaf(client);
        let paths = [
            dir.join(format!("{tag}-ca.pem")),
            dir.join(format!("{tag}-cert.pem")),
            dir.join(format!("{tag}-key.pem")),
        ];
        for (p, text) in paths.iter().zip([&self.pem, &cert, &key]) {
            std::fs::write(p, text).unwrap();
        }
        let [a, b, c] = paths.map(|p| p.display().to_string());
        (a, b, c)
    }
}

/// A self-signed CA certificate made by openssl (e.g. a registry's CA); returns its path.
pub fn openssl_ca(dir: &Path, tag: &str) -> PathBuf {
    let ca = dir.join(format!("{tag}.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", &format!("/CN={tag}")])
        .arg("-keyout")
        .arg(dir.join(format!("{tag}-key.pem")))
        .arg("-out")
        .arg(&ca)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success());
    ca
}

/// The certificate a server at `addr` presents, as openssl s_client receives it (PEM),
/// connecting with the client certificate `client` (cert, key) if given.
pub fn served_certificate(addr: &str, client: Option<(&str, &str)>) -> String {
    let mut c = Command::new("openssl");
    c.args(["s_client", "-connect", addr]);
    if let Some((cert, key)) = client {
        c.args(["-cert", cert, "-key", key]);
    }
    let out = c
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    let begin = text
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate from {addr}: {text}"));
    let end = text[begin..]
        .find("-----END CERTIFICATE-----")
        .expect("the end of the certificate")
        + begin
        + "-----END CERTIFICATE-----".len();
    format!("{}\n", &text[begin..end])
}

/// `openssl x509 ARGS` on a PEM certificate.
fn x509(pem: &str, args: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .arg("x509")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl x509");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl x509 {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The SHA-256 fingerprint of the first certificate in `pem`.
pub fn fingerprint(pem: &str) -> String {
    x509(pem, &["-noout", "-fingerprint", "-sha256"])
}

/// The subject alternative names of a certificate, as openssl prints them.
pub fn subject_alt_names(pem: &str) -> String {
    x509(pem, &["-noout", "-ext", "subjectAltName"])
}

/// The issuer of a certificate, as openssl prints it.
pub fn issuer(pem: &str) -> String {
    x509(pem, &["-noout", "-issuer"])
}
