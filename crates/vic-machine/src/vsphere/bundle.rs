//! `vic-machine debug --bundle FILE` on vSphere: the appliance's logs are on its VM, so the
//! bundle comes from the VCH's admin pages (`/logs.tar.gz`), fetched over TLS with the VCH's
//! client certificate from its certificate directory, the server checked against the VCH's
//! CA. Bounded: the answer at most [`MAX_BUNDLE`] bytes, each read at most [`READ_WAIT`].

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rustls::pki_types::ServerName;

use super::{block_on, connect, find_vch, Target};
use crate::certs;
use crate::output::{info, step};
use crate::tls::TlsMode;

/// The largest bundle taken (the admin pages' own bounds make it far smaller).
const MAX_BUNDLE: u64 = 1 << 30;
/// How long the admin pages may be silent while the bundle is made and sent.
const READ_WAIT: Duration = Duration::from_secs(120);

/// Writes VCH `name`'s log bundle to `file`.
pub fn bundle(
    target: &Target,
    thumbprint: Option<&str>,
    name: &str,
    file: &Path,
) -> anyhow::Result<()> {
    let (addr, cert_dir) = block_on(async {
        let client = connect(target, thumbprint).await?;
        let found = find_vch(&client, target, name).await?;
        let extra = client.extra_config(&found.appliance).await;
        let _ = client.logout().await;
        let extra = extra.context("reading the appliance VM's configuration")?;
        let Some(doc) = found.doc else {
            bail!("the appliance VM's configuration of VCH {name} does not read");
        };
        let Some(port) = doc.settings.admin_port else {
            bail!("VCH {name} has no admin pages (it was made before them)");
        };
        let record = super::tls::record(&extra, doc.tls.as_ref());
        if record.mode != TlsMode::Tlsverify {
            bail!(
                "VCH {name} does not check client certificates, so its admin pages have none to let vic-machine in (and no operator password on vSphere yet): no bundle was written"
            );
        }
        let Some(dir) = record.cert_path else {
            bail!("VCH {name} has no certificate directory on record");
        };
        let ip = match doc.listen.ip() {
            ip if ip.is_unspecified() => bail!(
                "reaching VCH {name}'s admin pages needs its appliance's address from VMware Tools, which vic-machine does not read yet"
            ),
            ip => ip,
        };
        Ok((SocketAddr::new(ip, port), dir))
    })?;
    let fetching = step(format!("Fetching the log bundle from https://{addr}"));
    let data = fetch(addr, &cert_dir, "/logs.tar.gz")?;
    fetching.done();
    std::fs::write(file, &data).with_context(|| format!("writing {}", file.display()))?;
    info(format!(
        "Log bundle of VCH {name} written to {} ({} bytes)",
        file.display(),
        data.len()
    ));
    Ok(())
}

/// `GET path` from the admin pages at `addr` with the client certificate in `dir`; the body
/// of a 200 answer.
fn fetch(addr: SocketAddr, dir: &Path, path: &str) -> anyhow::Result<Vec<u8>> {
    let read = |f: &str| {
        let p = dir.join(f);
        std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs::certificates(&read("ca.pem")?).map_err(anyhow::Error::msg)? {
        roots.add(ca).context("the VCH's CA (ca.pem)")?;
    }
    let config = rustls::ClientConfig::builder_with_provider(certs::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            certs::certificates(&read("cert.pem")?).map_err(anyhow::Error::msg)?,
            certs::private_key(&read("key.pem")?).map_err(anyhow::Error::msg)?,
        )?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("connecting to the admin pages at {addr}"))?;
    tcp.set_read_timeout(Some(READ_WAIT))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::IpAddress(match addr.ip() {
        IpAddr::V4(v4) => v4.into(),
        IpAddr::V6(v6) => v6.into(),
    });
    let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    tls.write_all(request.as_bytes())
        .with_context(|| format!("asking the admin pages at {addr} for {path}"))?;
    let mut answer = Vec::new();
    let read = tls.take(MAX_BUNDLE + 64 * 1024).read_to_end(&mut answer);
    match read {
        Ok(_) => {}
        // The server may close without close_notify once it has answered.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e).with_context(|| format!("reading {path} from {addr}")),
    }
    body_of(&answer, path)
}

/// The body of an HTTP/1 answer, when it is a 200 within [`MAX_BUNDLE`].
fn body_of(answer: &[u8], path: &str) -> anyhow::Result<Vec<u8>> {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("the admin pages' answer to {path} has no end of its head");
    };
    let head = String::from_utf8_lossy(&answer[..end]);
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.") || status.split_whitespace().nth(1) != Some("200") {
        bail!("the admin pages answered {path} with {status:?}");
    }
    let body = &answer[end + 4..];
    if body.len() as u64 > MAX_BUNDLE {
        bail!("the log bundle is larger than {MAX_BUNDLE} bytes");
    }
    Ok(body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_200_answer_gives_its_body() {
        let ok = b"HTTP/1.0 200 OK\r\ncontent-type: application/gzip\r\n\r\n\x1f\x8bdata";
        assert_eq!(body_of(ok, "/b").unwrap(), b"\x1f\x8bdata");
        let e = body_of(b"HTTP/1.0 303 See Other\r\n\r\n", "/b").unwrap_err();
        assert!(e.to_string().contains("303 See Other"), "{e}");
        assert!(
            body_of(b"HTTP/1.0 200 OK\r\n", "/b").is_err(),
            "no end of head"
        );
    }
}
