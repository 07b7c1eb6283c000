//! The registry v2 wire: URLs, the `Accept` header, manifests, error bodies, and blobs
//! streamed to disk under digest check. Every request goes through [`Registry::get`], the one
//! place a `401` with `WWW-Authenticate` will be answered when registry auth lands.

use std::path::Path;

use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::pull::{io_err, PullError, RegistryOptions};
use crate::reference::Reference;

pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
#[derive(Debug, Deserialize)]
pub(crate) struct Descriptor {
    pub(crate) digest: String,
    #[serde(default)]
    pub(crate) size: u64,
    #[serde(default)]
    pub(crate) platform: Option<DescPlatform>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DescPlatform {
    pub(crate) os: String,
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) variant: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Manifest {
    #[serde(rename = "mediaType", default)]
    pub(crate) media_type: String,
    #[serde(default)]
    pub(crate) config: Option<Descriptor>,
    #[serde(default)]
    pub(crate) layers: Vec<Descriptor>,
    #[serde(default)]
    pub(crate) manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct RegistryErrors {
    #[serde(default)]
    pub(crate) errors: Vec<RegistryErrorEntry>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RegistryErrorEntry {
    #[serde(default)]
    pub(crate) code: String,
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The HTTP side of a pull.
pub(crate) struct Registry {
    http: reqwest::Client,
    opts: RegistryOptions,
}

fn is_insecure(opts: &RegistryOptions, registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(registry);
    opts.insecure.iter().any(|r| r == registry)
        || host == "localhost"
        || host.starts_with("127.")
        || host == "[::1]"
}

impl Registry {
    pub(crate) fn new(opts: RegistryOptions) -> Registry {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(15))
            .read_timeout(std::time::Duration::from_secs(60))
            .user_agent(concat!("vic/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Registry { http, opts }
    }

    pub(crate) fn base(&self, r: &Reference) -> String {
        let registry = if r.registry == crate::reference::DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &r.registry
        };
        let scheme = if is_insecure(&self.opts, &r.registry) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{registry}/v2/{}", r.repository)
    }

    pub(crate) async fn get(
        &self,
        url: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, PullError> {
        let mut req = self.http.get(url);
        if let Some(a) = accept {
            req = req.header(ACCEPT, a);
        }
        let resp = req.send().await.map_err(|e| unreachable(url, &e))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            // The one place a Bearer/Basic challenge will be answered once registry auth lands.
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::debug!(url, challenge, "registry asked for credentials");
            return Err(PullError::Unauthorized(url.to_string()));
        }
        Ok(resp)
    }

    pub(crate) async fn fetch_manifest(
        &self,
        r: &Reference,
        reference: &str,
    ) -> Result<(Manifest, String, String), PullError> {
        let url = format!("{}/manifests/{reference}", self.base(r));
        let accept = [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX].join(", ");
        let resp = match self.get(&url, Some(&accept)).await {
            // Without credentials, Docker cannot tell "private" from "absent" either.
            Err(PullError::Unauthorized(_)) => return Err(PullError::RepositoryNotFound(r.name())),
            other => other?,
        };
        let status = resp.status();
        let ctype = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp.bytes().await.map_err(|e| unreachable(&url, &e))?;
        if status == StatusCode::NOT_FOUND {
            let errs: RegistryErrors = serde_json::from_slice(&body).unwrap_or_default();
            if errs.errors.iter().any(|e| e.code == "NAME_UNKNOWN") {
                return Err(PullError::RepositoryNotFound(r.name()));
            }
            // Registry 2.8 says MANIFEST_UNKNOWN for a missing repository too; its tag list
            // tells the two apart.
            if self.repository_missing(r).await {
                return Err(PullError::RepositoryNotFound(r.name()));
            }
            return Err(PullError::ManifestNotFound(r.to_string()));
        }
        if !status.is_success() {
            return Err(PullError::Registry {
                status: status.as_u16(),
                url,
            });
        }
        let digest = sha256_hex(&body);
        if reference.starts_with("sha256:") && digest != reference {
            return Err(PullError::DigestMismatch {
                what: format!("manifest {url}"),
                expected: reference.into(),
                actual: digest,
            });
        }
        let m: Manifest = serde_json::from_slice(&body)
            .map_err(|e| PullError::Invalid(format!("malformed manifest from {url}: {e}")))?;
        let media = if m.media_type.is_empty() {
            ctype.split(';').next().unwrap_or("").trim().to_string()
        } else {
            m.media_type.clone()
        };
        Ok((m, digest, media))
    }

    /// Every tag of the repository, sorted.
    pub(crate) async fn tags(&self, r: &Reference) -> Result<Vec<String>, PullError> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let url = format!("{}/tags/list", self.base(r));
        let resp = self.get(&url, None).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(PullError::RepositoryNotFound(r.name()));
        }
        if !resp.status().is_success() {
            return Err(PullError::Registry {
                status: resp.status().as_u16(),
                url,
            });
        }
        let body = resp.bytes().await.map_err(|e| PullError::Unreachable {
            url: url.clone(),
            detail: e.to_string(),
        })?;
        let list: TagList = serde_json::from_slice(&body)
            .map_err(|e| PullError::Invalid(format!("malformed tag list from {url}: {e}")))?;
        let mut tags = list.tags.unwrap_or_default();
        tags.sort();
        Ok(tags)
    }

    /// Whether the registry says it has no repository of this name.
    pub(crate) async fn repository_missing(&self, r: &Reference) -> bool {
        let url = format!("{}/tags/list", self.base(r));
        let Ok(resp) = self.get(&url, None).await else {
            return false;
        };
        if resp.status() != StatusCode::NOT_FOUND {
            return false;
        }
        let body = resp.bytes().await.unwrap_or_default();
        let errs: RegistryErrors = serde_json::from_slice(&body).unwrap_or_default();
        errs.errors.iter().any(|e| e.code == "NAME_UNKNOWN")
    }
}

/// Streams `chunks` into `dest` by way of `dest.partial`, hashing on the way; the blob takes
/// its place only if it hashes to `expected`, and the partial file never outlives a failure.
pub(crate) async fn write_verified<S, B>(
    mut chunks: S,
    dest: &Path,
    expected: &str,
    url: &str,
    mut on_chunk: impl FnMut(u64),
) -> Result<(), PullError>
where
    S: futures_util::Stream<Item = Result<B, PullError>> + Unpin,
    B: AsRef<[u8]>,
{
    let partial = dest.with_extension("partial");
    let mut file = tokio::fs::File::create(&partial)
        .await
        .map_err(io_err(format!("creating {}", partial.display())))?;
    let mut hash = Sha256::new();
    let mut done: u64 = 0;
    let written: Result<(), PullError> = async {
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            hash.update(chunk.as_ref());
            file.write_all(chunk.as_ref())
                .await
                .map_err(io_err("writing a blob"))?;
            done += chunk.as_ref().len() as u64;
            on_chunk(done);
        }
        file.sync_all().await.map_err(io_err("syncing a blob"))?;
        let actual = format!("sha256:{}", hex::encode(hash.finalize()));
        if actual != expected {
            return Err(PullError::DigestMismatch {
                what: format!("blob {url}"),
                expected: expected.to_string(),
                actual,
            });
        }
        tokio::fs::rename(&partial, dest)
            .await
            .map_err(io_err("storing a blob"))
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    written
}

/// A failed request, worded as Docker words it: `Get "URL": dial tcp HOST: connect:
/// connection refused`.
pub(crate) fn unreachable(url: &str, e: &reqwest::Error) -> PullError {
    let host = reqwest::Url::parse(url)
        .ok()
        .map(|u| {
            let port = u
                .port_or_known_default()
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            format!("{}{port}", u.host_str().unwrap_or(""))
        })
        .unwrap_or_default();
    let mut io = None;
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cur {
        if let Some(i) = c.downcast_ref::<std::io::Error>() {
            io = Some(i);
        }
        cur = c.source();
    }
    let detail = match io.map(std::io::Error::kind) {
        _ if e.is_timeout() => format!("dial tcp {host}: i/o timeout"),
        Some(std::io::ErrorKind::ConnectionRefused) => {
            format!("dial tcp {host}: connect: connection refused")
        }
        Some(std::io::ErrorKind::ConnectionReset) => {
            format!("read tcp {host}: connection reset by peer")
        }
        _ if e.is_connect() && error_chain(e).contains("dns error") => {
            let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
            format!("dial tcp: lookup {name}: no such host")
        }
        _ => error_chain(e),
    };
    PullError::Unreachable {
        url: url.to_string(),
        detail,
    }
}

/// An error with its causes, e.g. "error sending request: connection refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pull::{Platform, Puller};
    use crate::store::{hex_of, ImageStore};

    #[test]
    fn loopback_and_listed_registries_are_plain_http() {
        let opts = RegistryOptions {
            insecure: vec!["reg.local:5000".into()],
        };
        assert!(is_insecure(&opts, "127.0.0.1:5000"));
        assert!(is_insecure(&opts, "localhost:5000"));
        assert!(is_insecure(&opts, "reg.local:5000"));
        assert!(!is_insecure(&opts, "quay.io"));
    }

    fn chunks(
        parts: &[&'static [u8]],
    ) -> impl futures_util::Stream<Item = Result<&'static [u8], PullError>> + Unpin {
        futures_util::stream::iter(parts.iter().map(|p| Ok(*p)).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn a_blob_is_kept_only_when_its_digest_matches() {
        let dir = tempfile::tempdir().unwrap();
        let good = sha256_hex(b"hello world");
        let dest = dir.path().join(hex_of(&good));
        let mut seen = Vec::new();
        write_verified(chunks(&[b"hello ", b"world"]), &dest, &good, "u", |n| {
            seen.push(n)
        })
        .await
        .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello world");
        assert_eq!(seen, vec![6, 11]);
        assert!(!dest.with_extension("partial").exists());

        let bad_dest = dir.path().join("bad");
        let err = write_verified(chunks(&[b"tampered"]), &bad_dest, &good, "u", |_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, PullError::DigestMismatch { .. }), "{err}");
        assert!(err.to_string().contains(&good), "{err}");
        assert!(!bad_dest.exists(), "a mismatching blob is not stored");
        assert!(
            !bad_dest.with_extension("partial").exists(),
            "nor left behind"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_reads_like_docker() {
        // A port nobody listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store_dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(store_dir.path()).unwrap();
        let r = Reference::parse(&format!("127.0.0.1:{port}/busybox")).unwrap();
        let err = Puller::new(RegistryOptions::default())
            .pull(&store, &r, &Platform::default(), &|_| {})
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("Get \"http://127.0.0.1:{port}/v2/busybox/manifests/latest\": dial tcp 127.0.0.1:{port}: connect: connection refused")
        );
    }
}
