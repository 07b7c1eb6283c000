//! TLS for a VCH's Docker API, in VIC's three modes:
//!
//! | mode        | flag             | the appliance serves | clients need |
//! |-------------|------------------|----------------------|--------------|
//! | `tlsverify` | (default)        | HTTPS                | a certificate chaining to the generated CA, or to `--tls-ca` |
//! | `tls`       | `--no-tlsverify` | HTTPS                | nothing (`docker --tls`) |
//! | `none`      | `--no-tls`       | plain HTTP           | nothing |
//!
//! Files in the certificate directory (`./NAME/`, or `--tls-cert-path`), as VIC names them:
//! `ca.pem` + `ca-key.pem` (the generated CA), `cert.pem` + `key.pem` (a client certificate,
//! tlsverify only), `server-cert.pem` + `server-key.pem`, and `NAME.env`. Keys are mode 0600.
//! The appliance gets its own copies in `<state>/vch/NAME/certs/`.
//!
//! Reuse: when the directory holds a CA from an earlier `create` (both files, the key matching,
//! still valid, made by vic-machine) it is kept, and so is a client certificate that still
//! verifies against it; the server certificate is always made anew. Anything else in the
//! way is replaced, with one line saying why.

use std::ffi::OsString;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};

use crate::certs::{self, Ca, PemPair};
use crate::vch::info;

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const CLIENT_CERT: &str = "cert.pem";
pub const CLIENT_KEY: &str = "key.pem";
pub const SERVER_CERT: &str = "server-cert.pem";
pub const SERVER_KEY: &str = "server-key.pem";
/// In the state directory only: the authorities the appliance checks clients against.
pub const CLIENT_CA: &str = "client-ca.pem";

/// How the Docker API is served; recorded in vch.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain HTTP (`--no-tls`); what a vch.json from before TLS means.
    #[default]
    NoTls,
    /// HTTPS, any client may connect (`--no-tlsverify`).
    NoTlsverify,
    /// HTTPS, clients must present a certificate (the default).
    Tlsverify,
}

impl TlsMode {
    /// The word `ls` shows.
    pub fn label(self) -> &'static str {
        match self {
            TlsMode::NoTls => "none",
            TlsMode::NoTlsverify => "tls",
            TlsMode::Tlsverify => "tlsverify",
        }
    }
}

/// The TLS flags of `create`.
#[derive(Debug, Default, Clone)]
pub struct TlsOptions {
    pub no_tls: bool,
    pub no_tlsverify: bool,
    pub cname: Option<String>,
    pub client_cas: Vec<PathBuf>,
    pub server_cert: Option<PathBuf>,
    pub server_key: Option<PathBuf>,
    pub cert_path: Option<PathBuf>,
}

impl TlsOptions {
    pub fn mode(&self) -> TlsMode {
        if self.no_tls {
            TlsMode::NoTls
        } else if self.no_tlsverify {
            TlsMode::NoTlsverify
        } else {
            TlsMode::Tlsverify
        }
    }

    /// Refuses flags that contradict each other.
    pub fn check(&self) -> anyhow::Result<()> {
        let server_files = self.server_cert.is_some() || self.server_key.is_some();
        if self.no_tls {
            if !self.client_cas.is_empty() {
                bail!("--tls-ca conflicts with --no-tls: client certificates need TLS");
            }
            if server_files {
                bail!("--tls-server-cert/--tls-server-key conflict with --no-tls: drop --no-tls to serve TLS");
            }
            if self.cname.is_some() {
                bail!("--tls-cname conflicts with --no-tls: there is no server certificate");
            }
        }
        if self.no_tlsverify && !self.client_cas.is_empty() {
            bail!("--tls-ca conflicts with --no-tlsverify: --no-tlsverify lets clients in without a certificate");
        }
        if self.server_cert.is_some() != self.server_key.is_some() {
            bail!("--tls-server-cert and --tls-server-key must be given together");
        }
        if self.cname.is_some() && server_files {
            bail!("--tls-cname names the generated server certificate: it conflicts with --tls-server-cert");
        }
        if let Some(c) = &self.cname {
            certs::cname_san(c).map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }
}

/// What the flags point at, read and checked before `create` makes anything.
pub struct TlsPlan {
    pub mode: TlsMode,
    /// The certificate directory (also where NAME.env goes).
    pub dir: PathBuf,
    cname: Option<String>,
    /// The `--tls-ca` files, as one PEM bundle.
    client_cas: Option<String>,
    /// `--tls-server-cert` and `--tls-server-key`.
    server: Option<PemPair>,
}

fn read_text(path: &Path, what: &str) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("Failed to load {what} {}", path.display()))
}

/// Checks the flags and reads the files they name.
pub fn plan(opts: &TlsOptions, name: &str) -> anyhow::Result<TlsPlan> {
    opts.check()?;
    let mut client_cas = None;
    if !opts.client_cas.is_empty() {
        let mut bundle = String::new();
        for f in &opts.client_cas {
            let pem = read_text(f, "authority from file")?;
            let n = certs::check_authorities(&pem).map_err(|e| {
                anyhow::anyhow!("Failed to load authority from file {}: {e}", f.display())
            })?;
            info(format!("Loaded {n} CA certificate(s) from {}", f.display()));
            bundle.push_str(&pem);
            if !bundle.ends_with('\n') {
                bundle.push('\n');
            }
        }
        client_cas = Some(bundle);
    }
    let server = match (&opts.server_cert, &opts.server_key) {
        (Some(cert), Some(key)) => {
            let pair = PemPair {
                cert: read_text(cert, "--tls-server-cert")?,
                key: read_text(key, "--tls-server-key")?,
            };
            let chain = certs::certificates(&pair.cert).map_err(|e| {
                anyhow::anyhow!("Failed to load --tls-server-cert {}: {e}", cert.display())
            })?;
            certs::private_key(&pair.key).map_err(|e| {
                anyhow::anyhow!("Failed to load --tls-server-key {}: {e}", key.display())
            })?;
            certs::keys_match(chain, &pair.key).map_err(|e| {
                anyhow::anyhow!(
                    "--tls-server-key {} does not go with --tls-server-cert {}: {e}",
                    key.display(),
                    cert.display()
                )
            })?;
            info(format!("Loaded server certificate {}", cert.display()));
            Some(pair)
        }
        _ => None,
    };
    Ok(TlsPlan {
        mode: opts.mode(),
        dir: opts
            .cert_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(name)),
        cname: opts.cname.clone(),
        client_cas,
        server,
    })
}

/// The certificates in place: what the appliance is given, how to ping it, what to tell
/// the user.
pub struct TlsSetup {
    pub mode: TlsMode,
    /// The certificate directory, absolute.
    pub dir: PathBuf,
    /// Client side of the readiness ping (None for plain HTTP).
    ping: Option<Pinger>,
    /// Whether `cert.pem`/`key.pem` in `dir` are a client certificate the VCH accepts.
    client_in_dir: bool,
    /// Whether the server certificate came from `--tls-server-cert`.
    own_server_cert: bool,
}

impl TlsPlan {
    /// Whether client certificates are checked against the user's `--tls-ca`.
    pub fn user_client_cas(&self) -> bool {
        self.client_cas.is_some()
    }
    /// Whether the server certificate is the user's `--tls-server-cert`.
    pub fn own_server_cert(&self) -> bool {
        self.server.is_some()
    }
    pub fn cname(&self) -> Option<&str> {
        self.cname.as_deref()
    }
}

/// Writes `contents` to `path`; secrets get mode 0600 (also when the file was there before).
fn write(path: &Path, contents: &str, secret: bool) -> anyhow::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    if secret {
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    if secret {
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    f.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn make_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Reads a pair of files from an earlier create: None when neither exists.
fn read_pair(dir: &Path, cert: &str, key: &str) -> Result<Option<PemPair>, String> {
    let (c, k) = (dir.join(cert), dir.join(key));
    if !c.exists() && !k.exists() {
        return Ok(None);
    }
    let read = |p: &Path| fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    Ok(Some(PemPair {
        cert: read(&c)?,
        key: read(&k)?,
    }))
}

/// The CA from the certificate directory when it can be reused, else a new one (written).
/// The bool says whether it was reused.
fn ca_for(dir: &Path) -> anyhow::Result<(Ca, bool)> {
    let old = read_pair(dir, CA_CERT, CA_KEY)
        .and_then(|p| p.map(|p| Ca::load(&p.cert, &p.key)).transpose());
    match old {
        Ok(Some(ca)) => {
            info(format!("Loaded CA from {}", dir.join(CA_CERT).display()));
            return Ok((ca, true));
        }
        Ok(None) => {}
        Err(why) => info(format!(
            "Not reusing the CA in {} ({why}): generating a new one",
            dir.display()
        )),
    }
    let ca = Ca::generate().context("generating a CA")?;
    info(format!(
        "Generating CA certificate/key pair - private key in {}",
        dir.join(CA_KEY).display()
    ));
    write(&dir.join(CA_CERT), &ca.pem.cert, false)?;
    write(&dir.join(CA_KEY), &ca.pem.key, true)?;
    Ok((ca, false))
}

/// The client certificate: the one in the directory when it verifies against a reused CA,
/// else a new one (written).
fn client_for(dir: &Path, ca: &Ca, ca_reused: bool) -> anyhow::Result<PemPair> {
    if ca_reused {
        let old = read_pair(dir, CLIENT_CERT, CLIENT_KEY).and_then(|p| match p {
            None => Ok(None),
            Some(p) => {
                ca.verify_client(&p.cert)?;
                certs::keys_match(certs::certificates(&p.cert)?, &p.key)?;
                Ok(Some(p))
            }
        });
        match old {
            Ok(Some(pair)) => {
                info(format!(
                    "Loaded client certificate from {}",
                    dir.join(CLIENT_CERT).display()
                ));
                return Ok(pair);
            }
            Ok(None) => {}
            Err(why) => info(format!(
                "Not reusing the client certificate in {} ({why}): generating a new one",
                dir.display()
            )),
        }
    }
    let pair = ca.client().context("generating a client certificate")?;
    info(format!(
        "Generating client certificate/key pair - private key in {}",
        dir.join(CLIENT_KEY).display()
    ));
    write(&dir.join(CLIENT_CERT), &pair.cert, false)?;
    write(&dir.join(CLIENT_KEY), &pair.key, true)?;
    Ok(pair)
}

/// Makes or reuses the certificates the plan calls for, writes them to the certificate
/// directory and the appliance's copies to `state_certs`.
pub fn setup(plan: &TlsPlan, state_certs: &Path) -> anyhow::Result<TlsSetup> {
    make_dir(&plan.dir)?;
    let dir =
        fs::canonicalize(&plan.dir).with_context(|| format!("resolving {}", plan.dir.display()))?;
    let mut setup = TlsSetup {
        mode: plan.mode,
        dir: dir.clone(),
        ping: None,
        client_in_dir: false,
        own_server_cert: plan.server.is_some(),
    };
    if plan.mode == TlsMode::NoTls {
        return Ok(setup);
    }
    let verify = plan.mode == TlsMode::Tlsverify;
    let need_client = verify && plan.client_cas.is_none();
    let ca = if plan.server.is_none() || need_client {
        Some(ca_for(&dir)?)
    } else {
        None
    };
    let client = match &ca {
        Some((ca, reused)) if need_client => Some(client_for(&dir, ca, *reused)?),
        _ => None,
    };
    let server = match (&plan.server, &ca) {
        (Some(pair), _) => pair.clone(),
        (None, Some((ca, _))) => {
            let pair = ca
                .server(plan.cname.as_deref())
                .map_err(anyhow::Error::msg)
                .context("generating the server certificate")?;
            ca.verify_server(&pair.cert)
                .map_err(anyhow::Error::msg)
                .context("the generated server certificate does not verify")?;
            info(format!(
                "Generating server certificate/key pair - private key in {}",
                dir.join(SERVER_KEY).display()
            ));
            write(&dir.join(SERVER_CERT), &pair.cert, false)?;
            write(&dir.join(SERVER_KEY), &pair.key, true)?;
            pair
        }
        (None, None) => bail!("no server certificate to serve"),
    };

    make_dir(state_certs)?;
    let (cert_file, key_file) = (state_certs.join(SERVER_CERT), state_certs.join(SERVER_KEY));
    write(&cert_file, &server.cert, false)?;
    write(&key_file, &server.key, true)?;
    if let Some((ca, _)) = &ca {
        write(&state_certs.join(CA_CERT), &ca.pem.cert, false)?;
        write(&state_certs.join(CA_KEY), &ca.pem.key, true)?;
    }
    if verify {
        let authorities = match (&plan.client_cas, &ca) {
            (Some(bundle), _) => bundle.clone(),
            (None, Some((ca, _))) => ca.pem.cert.clone(),
            (None, None) => bail!("no authority to check client certificates against"),
        };
        write(&state_certs.join(CLIENT_CA), &authorities, false)?;
    }
    setup.client_in_dir = client.is_some();
    setup.ping = Some(Pinger::new(client.as_ref())?);
    Ok(setup)
}

/// The appliance's `--tls-*` arguments for `mode`, naming the files [`setup`] put in
/// `state_certs` (the VCH's `certs/`). Every start of the appliance uses these.
pub fn appliance_args(mode: TlsMode, state_certs: &Path) -> Vec<OsString> {
    if mode == TlsMode::NoTls {
        return Vec::new();
    }
    let mut args: Vec<OsString> = vec![
        "--tls-cert".into(),
        state_certs.join(SERVER_CERT).into(),
        "--tls-key".into(),
        state_certs.join(SERVER_KEY).into(),
    ];
    if mode == TlsMode::Tlsverify {
        args.push("--tls-ca".into());
        args.push(state_certs.join(CLIENT_CA).into());
    }
    args
}

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
            None => crate::vch::ping(port),
        }
    }
}

impl TlsSetup {
    /// What an existing VCH's TLS looks like, for reports (`inspect`): `dir` is its
    /// certificate directory.
    pub fn described(
        mode: TlsMode,
        dir: PathBuf,
        client_in_dir: bool,
        own_server_cert: bool,
    ) -> TlsSetup {
        TlsSetup {
            mode,
            dir,
            ping: None,
            client_in_dir,
            own_server_cert,
        }
    }

    /// True when the appliance answers `/_ping` (for TLS: over TLS).
    pub fn ping(&self, port: u16) -> bool {
        match &self.ping {
            Some(p) => p.ping(port),
            None => crate::vch::ping(port),
        }
    }

    /// The lines of NAME.env, for the docker CLI. With `--no-tlsverify` the user adds
    /// `--tls` (as with VIC, which writes DOCKER_HOST alone); DOCKER_CERT_PATH is written too
    /// when the directory has a ca.pem, because `docker --tls` refuses to start unless it
    /// finds one there (it defaults to ~/.docker/ca.pem).
    pub fn env(&self, docker_host: &str) -> Vec<String> {
        let mut lines = vec![format!("DOCKER_HOST={docker_host}")];
        let cert_path = format!("DOCKER_CERT_PATH={}", self.dir.display());
        match self.mode {
            TlsMode::Tlsverify => {
                lines.push("DOCKER_TLS_VERIFY=1".into());
                lines.push(cert_path);
            }
            TlsMode::NoTlsverify if !self.own_server_cert => lines.push(cert_path),
            _ => {}
        }
        lines
    }

    /// How to reach the VCH with the docker CLI, then notes when the user must supply files.
    pub fn docker_lines(&self, port: u16) -> Vec<String> {
        let host = format!("docker -H 127.0.0.1:{port}");
        let file = |f: &str| format!("\"{}\"", self.dir.join(f).display());
        let ca = if self.own_server_cert {
            "CA-OF-YOUR-SERVER-CERT.pem".to_string()
        } else {
            file(CA_CERT)
        };
        match self.mode {
            TlsMode::NoTls => vec![format!("{host} info")],
            // Any client gets in; checking the server still takes its CA.
            TlsMode::NoTlsverify => vec![
                format!("{host} --tlsverify --tlscacert={ca} info"),
                "(or `--tls` instead of --tlsverify to skip checking the server)".into(),
            ],
            TlsMode::Tlsverify => {
                let (cert, key) = if self.client_in_dir {
                    (file(CLIENT_CERT), file(CLIENT_KEY))
                } else {
                    ("YOUR-CLIENT-CERT.pem".into(), "YOUR-CLIENT-KEY.pem".into())
                };
                let mut lines = vec![format!(
                    "{host} --tlsverify --tlscacert={ca} --tlscert={cert} --tlskey={key} info"
                )];
                if !self.client_in_dir {
                    lines.push(format!(
                        "Client certificates must chain to the --tls-ca authorities; put yours in {} as {CLIENT_CERT} and {CLIENT_KEY} to use the environment file",
                        self.dir.display()
                    ));
                }
                if self.own_server_cert {
                    lines.push(format!(
                        "The server certificate is yours: clients verify it with the CA that issued it ({} is the CA of the client certificates)",
                        self.dir.join(CA_CERT).display()
                    ));
                }
                lines
            }
        }
    }
}

/// The readiness ping over TLS. It checks that the appliance answers, not who it is (the
/// server certificate may be the user's, from any CA): clients verify the server.
struct Pinger {
    config: Arc<rustls::ClientConfig>,
    has_identity: bool,
}

impl Pinger {
    fn new(client: Option<&PemPair>) -> anyhow::Result<Pinger> {
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
    fn ping(&self, port: u16) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> TlsOptions {
        TlsOptions::default()
    }

    #[test]
    fn the_default_is_tlsverify() {
        assert_eq!(opts().mode(), TlsMode::Tlsverify);
        let o = TlsOptions {
            no_tlsverify: true,
            ..opts()
        };
        assert_eq!(o.mode(), TlsMode::NoTlsverify);
        let o = TlsOptions {
            no_tls: true,
            no_tlsverify: true,
            ..opts()
        };
        assert_eq!(o.mode(), TlsMode::NoTls);
    }

    #[test]
    fn contradicting_flags_are_refused_with_the_flags_named() {
        let err = |o: TlsOptions| o.check().unwrap_err().to_string();
        let e = err(TlsOptions {
            no_tls: true,
            client_cas: vec!["ca.pem".into()],
            ..opts()
        });
        assert_eq!(
            e,
            "--tls-ca conflicts with --no-tls: client certificates need TLS"
        );
        let e = err(TlsOptions {
            no_tlsverify: true,
            client_cas: vec!["ca.pem".into()],
            ..opts()
        });
        assert!(
            e.starts_with("--tls-ca conflicts with --no-tlsverify"),
            "{e}"
        );
        let e = err(TlsOptions {
            server_cert: Some("c.pem".into()),
            ..opts()
        });
        assert_eq!(
            e,
            "--tls-server-cert and --tls-server-key must be given together"
        );
        let e = err(TlsOptions {
            cname: Some("bad name".into()),
            ..opts()
        });
        assert!(e.contains("neither an IP address nor a DNS name"), "{e}");
        assert!(TlsOptions {
            no_tls: true,
            no_tlsverify: true,
            ..opts()
        }
        .check()
        .is_ok());
    }

    #[test]
    fn old_vch_json_without_a_mode_means_plain_http() {
        #[derive(Deserialize)]
        struct Old {
            #[serde(default)]
            tls: TlsMode,
        }
        let old: Old = serde_json::from_str("{}").unwrap();
        assert_eq!(old.tls, TlsMode::NoTls);
        assert_eq!(
            serde_json::to_string(&TlsMode::NoTlsverify).unwrap(),
            "\"no-tlsverify\""
        );
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vic-machine-tls-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn tlsverify_writes_vics_files_and_a_second_create_reuses_the_ca_and_client() {
        let root = temp("verify");
        let o = TlsOptions {
            cert_path: Some(root.join("certs")),
            ..opts()
        };
        let p = plan(&o, "x").unwrap();
        let s = setup(&p, &root.join("state")).unwrap();
        for f in [CA_CERT, CLIENT_CERT, SERVER_CERT] {
            assert!(s.dir.join(f).is_file(), "{f}");
        }
        for f in [CA_KEY, CLIENT_KEY, SERVER_KEY] {
            assert_eq!(mode_of(&s.dir.join(f)), 0o600, "{f}");
        }
        assert_eq!(mode_of(&root.join("state").join(SERVER_KEY)), 0o600);
        assert!(root.join("state").join(CLIENT_CA).is_file());
        let args = appliance_args(s.mode, &root.join("state"));
        assert_eq!(args.len(), 6);
        for file in args.iter().skip(1).step_by(2) {
            assert!(Path::new(file).is_file(), "{file:?}");
        }
        let env = s.env("tcp://127.0.0.1:1");
        assert_eq!(env[1], "DOCKER_TLS_VERIFY=1");
        assert_eq!(env[2], format!("DOCKER_CERT_PATH={}", s.dir.display()));

        let read = |f: &str| fs::read_to_string(s.dir.join(f)).unwrap();
        let (ca, client, server) = (read(CA_CERT), read(CLIENT_CERT), read(SERVER_CERT));
        setup(&p, &root.join("state")).unwrap();
        assert_eq!(read(CA_CERT), ca, "the CA is reused");
        assert_eq!(
            read(CLIENT_CERT),
            client,
            "the client certificate is reused"
        );
        assert_ne!(
            read(SERVER_CERT),
            server,
            "the server certificate is made anew"
        );

        // A client certificate that does not verify is replaced; the CA stays.
        fs::write(s.dir.join(CLIENT_CERT), &server).unwrap();
        setup(&p, &root.join("state")).unwrap();
        assert_eq!(read(CA_CERT), ca);
        assert_ne!(read(CLIENT_CERT), server);
        // A broken CA key replaces the CA and the client certificate.
        fs::write(s.dir.join(CA_KEY), "garbage").unwrap();
        setup(&p, &root.join("state")).unwrap();
        assert_ne!(read(CA_CERT), ca);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn no_tlsverify_makes_no_client_certificate_and_env_sets_no_verification() {
        let root = temp("noverify");
        let o = TlsOptions {
            no_tlsverify: true,
            cert_path: Some(root.join("certs")),
            ..opts()
        };
        let s = setup(&plan(&o, "x").unwrap(), &root.join("state")).unwrap();
        assert!(s.dir.join(CA_CERT).is_file());
        assert!(s.dir.join(SERVER_CERT).is_file());
        assert!(!s.dir.join(CLIENT_CERT).exists());
        assert!(!root.join("state").join(CLIENT_CA).exists());
        let args = appliance_args(s.mode, &root.join("state"));
        assert_eq!(args.len(), 4);
        for file in args.iter().skip(1).step_by(2) {
            assert!(Path::new(file).is_file(), "{file:?}");
        }
        assert_eq!(
            s.env("tcp://127.0.0.1:1"),
            vec![
                "DOCKER_HOST=tcp://127.0.0.1:1".to_string(),
                format!("DOCKER_CERT_PATH={}", s.dir.display())
            ]
        );
        assert_eq!(
            s.docker_lines(1)[0],
            format!(
                "docker -H 127.0.0.1:1 --tlsverify --tlscacert=\"{}\" info",
                s.dir.join(CA_CERT).display()
            )
        );
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_server_key_of_another_certificate_is_refused_before_anything_is_made() {
        let root = temp("mismatch");
        fs::create_dir_all(&root).unwrap();
        let ca = Ca::generate().unwrap();
        let (a, b) = (ca.server(None).unwrap(), ca.server(None).unwrap());
        fs::write(root.join("a.pem"), &a.cert).unwrap();
        fs::write(root.join("b-key.pem"), &b.key).unwrap();
        let o = TlsOptions {
            server_cert: Some(root.join("a.pem")),
            server_key: Some(root.join("b-key.pem")),
            cert_path: Some(root.join("certs")),
            ..opts()
        };
        let err = plan(&o, "x").err().unwrap().to_string();
        assert!(err.contains("does not go with --tls-server-cert"), "{err}");
        let o = TlsOptions {
            server_cert: Some(root.join("missing.pem")),
            ..o
        };
        let err = format!("{:#}", plan(&o, "x").err().unwrap());
        assert!(err.starts_with("Failed to load --tls-server-cert"), "{err}");
        assert!(!root.join("certs").exists());
        let _ = fs::remove_dir_all(&root);
    }
}
