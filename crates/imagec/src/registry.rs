//! The registry v2 wire: URLs, the `Accept` header, manifests, error bodies (blobs go to
//! disk in [`crate::transfer`]). Every request goes through [`Registry::send`], the one place
//! a `401` with `WWW-Authenticate` is answered (Basic, or the Bearer token flow).

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::auth::{basic_header, Access, AuthCache, Challenge, Credentials, TokenResponse};
use crate::pull::{PullError, RegistryOptions};
use crate::reference::Reference;
pub(crate) use crate::transfer::{open_partial, write_verified};

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

/// How a registry is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// TLS, certificate verified against the system roots and `--registry-ca`s.
    Https,
    /// TLS without verification: an insecure registry that speaks TLS.
    HttpsUnverified,
    /// Plain HTTP: an insecure registry that does not speak TLS.
    Http,
}

/// The HTTP side of a pull.
pub(crate) struct Registry {
    http: reqwest::Client,
    /// For insecure registries that speak TLS with a certificate nobody vouches for.
    unverified: reqwest::Client,
    opts: RegistryOptions,
    schemes: std::sync::Mutex<std::collections::HashMap<String, Scheme>>,
    auth: AuthCache,
}

/// Whether `registry` (`host[:port]`) matches a whitelist or insecure-list entry: the same
/// `host:port`, a `host` alone (any port), `*.domain`, or an IPv4/IPv6 CIDR.
pub(crate) fn matches_entry(entry: &str, registry: &str) -> bool {
    let entry = entry
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    if entry.eq_ignore_ascii_case(registry) {
        return true;
    }
    let host = host_part(registry);
    if entry.eq_ignore_ascii_case(host) {
        return true;
    }
    if let Some(domain) = entry.strip_prefix("*.") {
        let domain = domain.to_ascii_lowercase();
        let h = host.to_ascii_lowercase();
        return h.ends_with(&format!(".{domain}"));
    }
    if let Some((net, bits)) = entry.split_once('/') {
        let ip = host.trim_start_matches('[').trim_end_matches(']');
        if let (Ok(net), Ok(bits), Ok(ip)) = (
            net.parse::<std::net::IpAddr>(),
            bits.parse::<u32>(),
            ip.parse::<std::net::IpAddr>(),
        ) {
            return in_cidr(ip, net, bits);
        }
    }
    false
}

fn in_cidr(ip: std::net::IpAddr, net: std::net::IpAddr, bits: u32) -> bool {
    use std::net::IpAddr;
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// `host` of `host[:port]` (IPv6 literals keep their brackets).
fn host_part(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry
            .split_once(']')
            .map(|(h, _)| &registry[..h.len() + 1])
            .unwrap_or(registry);
    }
    registry
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(registry)
}

/// `host:port` of a URL, the key of cached credentials.
fn authority(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .map(|u| {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}{port}", u.host_str().unwrap_or(""))
        })
        .unwrap_or_default()
}

/// A registry's (or token service's) error body as Docker prints it: `unauthorized:
/// authentication required`, or the token service's `details`.
pub(crate) fn error_detail(body: &[u8], fallback: &str) -> String {
    #[derive(Deserialize, Default)]
    struct Body {
        #[serde(default)]
        errors: Vec<Entry>,
        #[serde(default)]
        details: String,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let b: Body = serde_json::from_slice(body).unwrap_or_default();
    if !b.details.is_empty() {
        return format!("unauthorized: {}", b.details);
    }
    let parts: Vec<String> = b
        .errors
        .iter()
        .map(|e| {
            if e.message.is_empty() {
                e.code.to_ascii_lowercase()
            } else {
                format!("{}: {}", e.code.to_ascii_lowercase(), e.message)
            }
        })
        .collect();
    if parts.is_empty() {
        fallback.to_string()
    } else {
        parts.join(", ")
    }
}

impl Registry {
    pub(crate) fn new(opts: RegistryOptions) -> Registry {
        let resolver = (!opts.dns_servers.is_empty()).then(|| {
            std::sync::Arc::new(crate::dns::ServersResolver::new(
                &opts.dns_servers,
                crate::dns::DNS_PORT,
            ))
        });
        let builder = || {
            let b = reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(15))
                .read_timeout(std::time::Duration::from_secs(60))
                .user_agent(concat!("vic/", env!("CARGO_PKG_VERSION")));
            match &resolver {
                Some(r) => b.dns_resolver(r.clone()),
                None => b,
            }
        };
        let mut verified = builder();
        for pem in &opts.ca_pems {
            match reqwest::Certificate::from_pem_bundle(pem) {
                Ok(certs) => {
                    for c in certs {
                        verified = verified.add_root_certificate(c);
                    }
                }
                Err(e) => tracing::warn!("ignoring an unreadable registry CA bundle: {e}"),
            }
        }
        Registry {
            http: verified.build().unwrap_or_default(),
            unverified: builder()
                .danger_accept_invalid_certs(true)
                .build()
                .unwrap_or_default(),
            opts,
            schemes: Default::default(),
            auth: AuthCache::default(),
        }
    }

    /// Whether the VCH may pull from (or log in to) `registry`.
    pub(crate) fn allowed(&self, registry: &str) -> Result<(), PullError> {
        let wl = &self.opts.whitelist;
        if wl.is_empty()
            || wl.iter().any(|e| matches_entry(e, registry))
            || self
                .opts
                .insecure
                .iter()
                .any(|e| matches_entry(e, registry))
        {
            return Ok(());
        }
        Err(PullError::NotWhitelisted(registry.to_string()))
    }

    fn is_insecure(&self, registry: &str) -> bool {
        self.opts
            .insecure
            .iter()
            .any(|e| matches_entry(e, registry))
    }

    /// How to reach `registry`: HTTPS, verified; for an insecure registry, HTTPS unverified if
    /// it speaks TLS, else plain HTTP (asked once, then remembered), as dockerd does.
    async fn scheme(&self, registry: &str) -> Scheme {
        if !self.is_insecure(registry) {
            return Scheme::Https;
        }
        if let Some(s) = self
            .schemes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(registry)
        {
            return *s;
        }
        let probe = self
            .unverified
            .get(format!("https://{registry}/v2/"))
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await;
        let scheme = match probe {
            Ok(_) => Scheme::HttpsUnverified,
            Err(_) => Scheme::Http,
        };
        tracing::info!(registry, ?scheme, "insecure registry");
        self.schemes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(registry.to_string(), scheme);
        scheme
    }

    /// `scheme://host` of a registry.
    pub(crate) async fn origin(&self, registry: &str) -> String {
        let host = if registry == crate::reference::DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            registry
        };
        match self.scheme(registry).await {
            Scheme::Http => format!("http://{host}"),
            Scheme::Https | Scheme::HttpsUnverified => format!("https://{host}"),
        }
    }

    pub(crate) async fn base(&self, r: &Reference) -> String {
        format!("{}/v2/{}", self.origin(&r.registry).await, r.repository)
    }

    fn client_for(&self, url: &str) -> &reqwest::Client {
        if self.is_insecure(&authority(url)) {
            &self.unverified
        } else {
            &self.http
        }
    }

    pub(crate) async fn get(
        &self,
        url: &str,
        accept: Option<&str>,
        access: Access<'_>,
    ) -> Result<reqwest::Response, PullError> {
        self.send(url, access, |c| {
            let req = c.get(url);
            match accept {
                Some(a) => req.header(ACCEPT, a),
                None => req,
            }
        })
        .await
    }

    /// Sends the request `build` makes; answers a `401` challenge (Basic with the caller's
    /// credentials, Bearer by asking the token service) and sends it once more. What worked is
    /// kept for the next request of the same registry, scope and identity.
    pub(crate) async fn send(
        &self,
        url: &str,
        access: Access<'_>,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, PullError> {
        let host = authority(url);
        let client = self.client_for(url);
        let mut req = build(client);
        if let Some(h) = self.auth.get(&host, &access) {
            req = req.header(AUTHORIZATION, h);
        } else if let Some(c) = access.creds.filter(|c| !c.registry_token.is_empty()) {
            req = req.header(AUTHORIZATION, format!("Bearer {}", c.registry_token));
        }
        let resp = req.send().await.map_err(|e| unreachable(url, &e))?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse);
        let (authz, ttl) = match challenge {
            Some(Challenge::Basic) => match access.creds.filter(|c| !c.username.is_empty()) {
                Some(c) => (basic_header(c), std::time::Duration::from_secs(3600)),
                None => return Err(PullError::NoBasicAuth(url.to_string())),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let scope = scope.unwrap_or_else(|| access.scope.to_string());
                let token = self
                    .token(&realm, service.as_deref(), &scope, access.creds)
                    .await?;
                let ttl = token.ttl();
                let bearer = token.bearer().ok_or_else(|| {
                    PullError::Invalid(format!("the token service at {realm} sent no token"))
                })?;
                (bearer, ttl)
            }
            None => {
                let body = resp.bytes().await.unwrap_or_default();
                return Err(PullError::Unauthorized {
                    url: url.to_string(),
                    detail: error_detail(&body, "unauthorized: authentication required"),
                    anonymous: access.creds.is_none(),
                });
            }
        };
        let resp = build(client)
            .header(AUTHORIZATION, &authz)
            .send()
            .await
            .map_err(|e| unreachable(url, &e))?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(PullError::Unauthorized {
                url: url.to_string(),
                detail: error_detail(&body, "unauthorized: authentication required"),
                anonymous: access.creds.is_none(),
            });
        }
        self.auth.put(&host, &access, authz, ttl);
        Ok(resp)
    }

    /// Asks a token service for a token: `GET realm?service=&scope=` with Basic credentials,
    /// or, holding a refresh token from an earlier login, the OAuth2 `POST` form.
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> Result<TokenResponse, PullError> {
        let client = self.client_for(realm);
        let mut params: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            params.push(("service", s));
        }
        if !scope.is_empty() {
            params.push(("scope", scope));
        }
        let req = match creds {
            Some(c) if !c.identity_token.is_empty() => {
                let mut form = params.clone();
                form.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", c.identity_token.as_str()),
                    ("client_id", "docker"),
                ]);
                client.post(realm).form(&form)
            }
            Some(c) if !c.username.is_empty() => {
                params.push(("account", c.username.as_str()));
                client
                    .get(realm)
                    .query(&params)
                    .header(AUTHORIZATION, basic_header(c))
            }
            _ => client.get(realm).query(&params),
        };
        let resp = req.send().await.map_err(|e| unreachable(realm, &e))?;
        let status = resp.status();
        let shown = resp.url().to_string();
        let body = resp.bytes().await.map_err(|e| unreachable(realm, &e))?;
        if !status.is_success() {
            return Err(PullError::Unauthorized {
                url: shown,
                detail: error_detail(
                    &body,
                    &format!("unexpected status from the token service: {status}"),
                ),
                anonymous: creds.is_none(),
            });
        }
        serde_json::from_slice(&body)
            .map_err(|e| PullError::Invalid(format!("malformed token from {realm}: {e}")))
    }

    /// `docker login`: proves `creds` against `registry`'s `/v2/`.
    pub(crate) async fn login(&self, registry: &str, creds: &Credentials) -> Result<(), PullError> {
        self.allowed(registry)?;
        let url = format!("{}/v2/", self.origin(registry).await);
        let access = Access {
            creds: Some(creds),
            scope: "",
        };
        match self.get(&url, None, access).await {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(PullError::LoginFailed {
                url,
                status: resp.status().as_u16(),
            }),
            Err(PullError::Unauthorized { url: u, .. }) if u == url => {
                Err(PullError::LoginFailed { url, status: 401 })
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn fetch_manifest(
        &self,
        r: &Reference,
        reference: &str,
        access: Access<'_>,
    ) -> Result<(Manifest, String, String), PullError> {
        let url = format!("{}/manifests/{reference}", self.base(r).await);
        let accept = [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX].join(", ");
        let resp = match self.get(&url, Some(&accept), access).await {
            // Anonymous and refused: Docker cannot tell "private" from "absent" either.
            Err(PullError::Unauthorized {
                anonymous: true,
                detail,
                ..
            }) => return Err(PullError::AccessDenied(r.name(), detail)),
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
            if self.repository_missing(r, access).await {
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
    pub(crate) async fn tags(
        &self,
        r: &Reference,
        access: Access<'_>,
    ) -> Result<Vec<String>, PullError> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let url = format!("{}/tags/list", self.base(r).await);
        let resp = self.get(&url, None, access).await?;
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
    pub(crate) async fn repository_missing(&self, r: &Reference, access: Access<'_>) -> bool {
        let url = format!("{}/tags/list", self.base(r).await);
        let Ok(resp) = self.get(&url, None, access).await else {
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
        _ if error_chain(e).contains("UnknownIssuer") => {
            "tls: failed to verify certificate: x509: certificate signed by unknown authority"
                .to_string()
        }
        _ if error_chain(e).contains("NotValidForName") => {
            format!("tls: failed to verify certificate: x509: certificate is not valid for {host}")
        }
        _ if error_chain(e).contains("Expired") => {
            "tls: failed to verify certificate: x509: certificate has expired or is not yet valid"
                .to_string()
        }
        _ if error_chain(e).contains(": no such host") => {
            // Looked up with the VCH's own DNS servers, which the message names.
            let chain = error_chain(e);
            let at = chain.find("lookup ").unwrap_or(0);
            format!("dial tcp: {}", &chain[at..])
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
    use crate::store::ImageStore;

    #[test]
    fn registry_lists_match_hosts_ports_domains_and_networks() {
        assert!(matches_entry("reg.local:5000", "reg.local:5000"));
        assert!(matches_entry("reg.local", "reg.local:5000"), "any port");
        assert!(!matches_entry("reg.local:5000", "reg.local:5001"));
        assert!(matches_entry("*.corp.example", "harbor.corp.example:443"));
        assert!(!matches_entry("*.corp.example", "corp.example.evil.io"));
        assert!(matches_entry("10.0.0.0/8", "10.2.3.4:5000"));
        assert!(!matches_entry("10.0.0.0/8", "11.2.3.4"));
        assert!(matches_entry("https://quay.io/", "quay.io"));
        assert!(matches_entry("[::1]", "[::1]:5000"));
        assert!(!matches_entry("127.0.0.1:5000", "quay.io"));
    }

    #[test]
    fn a_whitelist_admits_its_registries_and_the_insecure_ones() {
        let reg = Registry::new(RegistryOptions {
            insecure: vec!["127.0.0.1:5000".into()],
            whitelist: vec!["harbor.lan".into()],
            ..Default::default()
        });
        assert!(reg.allowed("harbor.lan:443").is_ok());
        assert!(reg.allowed("127.0.0.1:5000").is_ok());
        let err = reg.allowed("quay.io").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Access denied to unauthorized registry (quay.io) while VCH is in whitelist mode"
        );
        let open = Registry::new(RegistryOptions::default());
        assert!(open.allowed("quay.io").is_ok(), "no whitelist, no limits");
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
        let err = Puller::new(RegistryOptions {
            insecure: vec![format!("127.0.0.1:{port}")],
            ..Default::default()
        })
        .pull(&store, &r, &Platform::default(), None, &|_| {})
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("Get \"http://127.0.0.1:{port}/v2/busybox/manifests/latest\": dial tcp 127.0.0.1:{port}: connect: connection refused")
        );
    }
}
