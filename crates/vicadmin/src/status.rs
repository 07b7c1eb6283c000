//! What the summary page says of the VCH, gathered when the page is asked for: each check
//! has a deadline ([`PROBE_TIMEOUT`]), so a dead registry or a stuck API makes the page
//! say so instead of hang.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one check may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the Docker API listens, and how.
#[derive(Debug, Clone)]
pub struct ApiEndpoint {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// A registry the VCH was told about (`--insecure-registry`, `--whitelist-registry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    pub name: String,
    pub insecure: bool,
}

/// The outcome of one check: good or not, and what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    pub detail: String,
}

impl Check {
    fn good(detail: impl Into<String>) -> Self {
        Check {
            ok: true,
            detail: detail.into(),
        }
    }
    fn bad(detail: impl Into<String>) -> Self {
        Check {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// Whether the Docker API answers: plain HTTP is asked `GET /_ping`; over TLS (which may
/// want a client certificate the appliance does not hold) a connection must be taken.
pub async fn docker_api(api: &ApiEndpoint) -> Check {
    let probe = async {
        let mut tcp = tokio::net::TcpStream::connect(api.addr).await?;
        if api.tls {
            return Ok::<_, std::io::Error>(Check::good(format!(
                "accepting connections on {} (TLS)",
                api.addr
            )));
        }
        // Addressed by address: the plain API refuses other Host names (DNS rebinding).
        let ping = format!(
            "GET /_ping HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            api.addr
        );
        tcp.write_all(ping.as_bytes()).await?;
        let mut head = Vec::new();
        (&mut tcp).take(4096).read_to_end(&mut head).await?;
        let text = String::from_utf8_lossy(&head);
        Ok(match text.split("\r\n\r\n").nth(1) {
            Some(body) if text.starts_with("HTTP/1.1 200") && body.trim_end() == "OK" => {
                Check::good(format!("answering on {} (_ping: OK)", api.addr))
            }
            _ => Check::bad(format!(
                "on {} _ping answered: {}",
                api.addr,
                text.lines().next().unwrap_or("nothing")
            )),
        })
    };
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => Check::bad(format!("not reachable on {}: {e}", api.addr)),
        Err(_) => Check::bad(format!(
            "no answer on {} within {PROBE_TIMEOUT:?}",
            api.addr
        )),
    }
}

/// Whether `registry` answers its API's base (`/v2/`): any HTTP answer counts as reachable
/// (401 means it wants a login); an insecure registry is tried over HTTPS without checking
/// its certificate, then over HTTP, as a pull does.
pub async fn registry(registry: &Registry) -> Check {
    let client = match reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .danger_accept_invalid_certs(registry.insecure)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => return Check::bad(format!("no HTTP client: {e}")),
    };
    let schemes: &[&str] = if registry.insecure {
        &["https", "http"]
    } else {
        &["https"]
    };
    let mut last = String::new();
    for scheme in schemes {
        let url = format!("{scheme}://{}/v2/", registry.name);
        match client.get(&url).send().await {
            Ok(r) => {
                let s = r.status();
                let what = match s.as_u16() {
                    200 => "API answers".to_string(),
                    401 => "API answers; wants a login".to_string(),
                    _ => format!("answers {s}"),
                };
                return Check {
                    ok: s.is_success() || s.as_u16() == 401,
                    detail: format!("{what} ({scheme})"),
                };
            }
            Err(e) => last = format!("{scheme}: {}", error_chain(&e)),
        }
    }
    Check::bad(format!("not reachable: {last}"))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// `n` bytes as people read them: `1.5 GiB`, `12.0 MiB`, `512 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A duration as an uptime: `3d 4h 5m`, `2h 0m`, `5m 3s`.
pub fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    let (days, h, m, sec) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, h) {
        (0, 0) => format!("{m}m {sec}s"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{days}d {h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_uptimes_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
        assert_eq!(uptime(Duration::from_secs(303)), "5m 3s");
        assert_eq!(uptime(Duration::from_secs(7200)), "2h 0m");
        assert_eq!(uptime(Duration::from_secs(90061)), "1d 1h 1m");
    }

    #[tokio::test]
    async fn a_plain_api_is_pinged_and_a_closed_port_is_reported() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                .await;
        });
        let c = docker_api(&ApiEndpoint { addr, tls: false }).await;
        assert!(c.ok, "{c:?}");
        let c = docker_api(&ApiEndpoint { addr, tls: false }).await;
        assert!(!c.ok, "nothing listens any more: {c:?}");
    }
}
