//! The registry v2 wire: URLs, the `Accept` header, manifests, error bodies (blobs go to
//! disk in [`crate::transfer`]). Every request goes through [`Registry::send`], the one place
//! a `401` with `WWW-Authenticate` is answered (Basic, or the Bearer token flow).
//!
//! A registry is hostile until its bytes verify: digests are parsed into
//! [`crate::digest::Digest`] as the JSON is read, bodies are read under the bounds and
//! deadlines of [`limits`], and redirects are followed only as [`redirect`] allows.

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::time::Instant;

use crate::auth::{basic_header, Access, AuthCache, Challenge, Credentials, TokenResponse};
use crate::digest::Digest;
use crate::error::PullError;
use crate::reference::Reference;
pub(crate) use crate::transfer::{open_partial, write_verified};

/// How registries are reached.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries whose certificate is not checked, or that speak plain HTTP (`host[:port]`,
    /// `*.domain` or a CIDR). HTTPS is tried first, as dockerd does.
    pub insecure: Vec<String>,
    /// PEM bundles of extra certificate authorities registries' certificates may chain to.
    pub ca_pems: Vec<Vec<u8>>,
    /// When not empty, the only registries pulled from (insecure ones are admitted too).
    pub whitelist: Vec<String>,
    /// When not empty, registry names are looked up with these DNS servers (port 53), not
    /// with the host's resolver.
    pub dns_servers: Vec<std::net::IpAddr>,
    /// How long a registry may take (defaults suit real registries).
    pub timeouts: limits::Timeouts,
}

mod errors;
mod fetch;
pub(crate) mod limits;
mod lists;
mod manifest;
mod redirect;

pub(crate) use errors::{error_detail, unreachable};
pub(crate) use limits::{guarded, MAX_CONFIG_BYTES};
use limits::{read_capped, Guard, MAX_ERROR_BYTES};
use lists::matches_entry;
pub(crate) use manifest::{
    Descriptor, Manifest, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};

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

/// The header a registry names a manifest's digest in.
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// A body read whole, with what the response said about it.
pub(crate) struct Whole {
    pub(crate) status: StatusCode,
    pub(crate) content_type: String,
    /// `Docker-Content-Digest`, as sent (parsed by whoever uses it).
    pub(crate) content_digest: Option<String>,
    pub(crate) body: Vec<u8>,
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

/// `host:port` of a URL, the key of cached credentials.
fn authority(url: &str) -> String {
    crate::transfer::host_of(url)
}

/// `sha256:<hex>` of bytes, as text.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    Digest::of(data).to_string()
}

impl Registry {
    pub(crate) fn new(opts: RegistryOptions) -> Registry {
        let resolver = (!opts.dns_servers.is_empty()).then(|| {
            std::sync::Arc::new(crate::dns::ServersResolver::new(
                &opts.dns_servers,
                crate::dns::DNS_PORT,
            ))
        });
        let t = opts.timeouts;
        let builder = || {
            let b = reqwest::Client::builder()
                .connect_timeout(t.connect)
                // A backstop: bodies are watched more closely by `limits::guarded`.
                .read_timeout(t.stall * 2)
                .redirect(redirect::policy(
                    opts.whitelist.clone(),
                    opts.insecure.clone(),
                ))
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
        // A client without the bounds above would undo them: when the `--registry-ca`s make
        // the build fail, they are left out (and said so). What is left to fail is a TLS
        // stack that cannot start, where reqwest's default client cannot be made either.
        let http = verified.build().or_else(|e| {
            tracing::warn!("ignoring the registry CA bundles: {e}");
            builder().build()
        });
        Registry {
            http: http.unwrap_or_default(),
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
        if lists::admitted(&self.opts.whitelist, &self.opts.insecure, registry) {
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
            .timeout(
                self.opts
                    .timeouts
                    .stall
                    .min(std::time::Duration::from_secs(5)),
            )
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

    /// What a request that is not a blob download is held to: `what` it was for, the stall
    /// window, and a deadline for the whole of it from now.
    pub(crate) fn request_guard(&self, url: &str, what: String) -> Guard {
        let t = self.opts.timeouts;
        Guard {
            url: url.to_string(),
            what,
            stall: t.stall,
            min_bytes: 1,
            deadline: Some((Instant::now() + t.request, t.request)),
        }
    }

    /// What a blob download is held to: progress in every stall window, no deadline.
    pub(crate) fn blob_guard(&self, url: &str, digest: &Digest) -> Guard {
        let t = self.opts.timeouts;
        Guard {
            url: url.to_string(),
            what: format!("downloading {digest}"),
            stall: t.stall,
            min_bytes: t.min_blob_bytes.max(1),
            deadline: None,
        }
    }

    /// A GET read whole: at most `cap` bytes, within the guard's deadline.
    pub(crate) async fn get_whole(
        &self,
        url: &str,
        accept: Option<&str>,
        access: Access<'_>,
        cap: u64,
        guard: Guard,
    ) -> Result<Whole, PullError> {
        let resp = within(&guard, self.get(url, accept, access)).await?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let content_digest = resp
            .headers()
            .get(DOCKER_CONTENT_DIGEST)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string());
        let body = within(&guard, read_capped(resp, cap, guard.clone())).await?;
        Ok(Whole {
            status,
            content_type,
            content_digest,
            body,
        })
    }

    /// Sends `req`, waiting at most a stall window for the response to a GET or HEAD (an
    /// upload's answer comes once the body is sent: the client's read timeout bounds it).
    async fn execute(
        &self,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, PullError> {
        let (client, req) = req.build_split();
        let req = req.map_err(|e| unreachable(url, &e))?;
        let waits = matches!(*req.method(), reqwest::Method::GET | reqwest::Method::HEAD);
        let sent = client.execute(req);
        if !waits {
            return sent.await.map_err(|e| unreachable(url, &e));
        }
        let stall = self.opts.timeouts.stall;
        match tokio::time::timeout(stall, sent).await {
            Ok(r) => r.map_err(|e| unreachable(url, &e)),
            Err(_) => Err(PullError::Stalled {
                host: crate::transfer::host_of(url),
                detail: format!("sent no response for {}", limits::secs(stall)),
                what: format!("requesting {url}"),
            }),
        }
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
        let resp = self.execute(url, req).await?;
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
                    .token(url, &realm, service.as_deref(), &scope, access.creds)
                    .await?;
                let ttl = token.ttl();
                let bearer = token.bearer().ok_or_else(|| {
                    PullError::Invalid(format!("the token service at {realm} sent no token"))
                })?;
                (bearer, ttl)
            }
            None => {
                let body = self.error_body(url, resp).await;
                return Err(PullError::Unauthorized {
                    url: url.to_string(),
                    detail: error_detail(&body, "unauthorized: authentication required"),
                    anonymous: access.creds.is_none(),
                });
            }
        };
        let resp = self
            .execute(url, build(client).header(AUTHORIZATION, &authz))
            .await?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            let body = self.error_body(url, resp).await;
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
        challenged: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> Result<TokenResponse, PullError> {
        // Credentials go where the registry's challenge says, but never in the clear when
        // the registry itself is spoken to over TLS.
        if challenged.starts_with("https:") && !realm.starts_with("https:") {
            return Err(PullError::Invalid(format!(
                "the token realm {realm} of {} is refused: it leaves HTTPS for plain HTTP",
                crate::transfer::host_of(challenged)
            )));
        }
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
        let guard = self.request_guard(realm, format!("answering a token request for {scope:?}"));
        let resp = within(&guard, self.execute(realm, req)).await?;
        let status = resp.status();
        let shown = resp.url().to_string();
        let cap = if status.is_success() {
            limits::MAX_TOKEN_BYTES
        } else {
            MAX_ERROR_BYTES
        };
        let body = within(&guard, read_capped(resp, cap, guard.clone())).await?;
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
        let guard = self.request_guard(&url, format!("logging in to {registry}"));
        match within(&guard, self.get(&url, None, access)).await {
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

    /// An error body, for its message: at most [`MAX_ERROR_BYTES`], within a stall window
    /// of each chunk; empty when it does not come.
    pub(crate) async fn error_body(&self, url: &str, resp: reqwest::Response) -> Vec<u8> {
        let guard = self.request_guard(url, "sending an error".into());
        read_capped(resp, MAX_ERROR_BYTES, guard)
            .await
            .unwrap_or_default()
    }
}

/// `fut`, unless the guard's deadline passes first.
pub(crate) async fn within<T>(
    guard: &Guard,
    fut: impl std::future::Future<Output = Result<T, PullError>>,
) -> Result<T, PullError> {
    match guard.deadline {
        Some((deadline, took)) => tokio::time::timeout_at(deadline, fut)
            .await
            .unwrap_or_else(|_| Err(guard.late(took))),
        None => fut.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pull::{Platform, Puller};
    use crate::store::ImageStore;

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
