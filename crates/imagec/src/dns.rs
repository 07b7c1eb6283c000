//! Registry names resolved through a VCH's own DNS servers (`vic-machine create
//! --dns-server`), instead of the host's `/etc/resolv.conf`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The port DNS servers listen on.
pub const DNS_PORT: u16 = 53;

/// Asks the given servers (UDP, then TCP for truncated answers), in order.
pub struct ServersResolver {
    resolver: Arc<TokioResolver>,
    servers: String,
}

impl ServersResolver {
    pub fn new(servers: &[IpAddr], port: u16) -> Self {
        let group = NameServerConfigGroup::from_ips_clear(servers, port, true);
        let config = ResolverConfig::from_parts(None, Vec::new(), group);
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(5);
        opts.attempts = 2;
        let resolver =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(opts)
                .build();
        ServersResolver {
            resolver: Arc::new(resolver),
            servers: servers
                .iter()
                .map(|ip| SocketAddr::new(*ip, port).to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// A lookup that found nothing, in Go's words as dockerd prints them.
#[derive(Debug, thiserror::Error)]
#[error("lookup {name} on {servers}: no such host")]
struct NoSuchHost {
    name: String,
    servers: String,
}

impl Resolve for ServersResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.resolver.clone();
        let servers = self.servers.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            // An address needs no lookup.
            if let Ok(ip) = host.parse::<IpAddr>() {
                return Ok(Box::new(std::iter::once(SocketAddr::new(ip, 0))) as Addrs);
            }
            let found: Vec<SocketAddr> = match resolver.lookup_ip(host.as_str()).await {
                Ok(lookup) => lookup.iter().map(|ip| SocketAddr::new(ip, 0)).collect(),
                Err(e) => {
                    tracing::debug!(%host, "lookup failed: {e}");
                    Vec::new()
                }
            };
            if found.is_empty() {
                return Err(Box::new(NoSuchHost {
                    name: host,
                    servers,
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}
