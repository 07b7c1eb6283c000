//! The VCH's admin pages (crate vicadmin), on the Docker API's address at the port the
//! VCH's settings name, over HTTPS: with the Docker API's certificate and, when it checks
//! client certificates, letting in a browser that presents one; for a VCH without TLS, with
//! a certificate made at each start.

use std::net::SocketAddr;

use anyhow::Context;
use portlayer::{Containers, ImageService};
use vch_config::ApplianceConfig;
use vicadmin::{Admin, AdminConfig, ApiEndpoint, Operator, Registry};

/// Starts serving the admin pages when the VCH has a port for them.
pub async fn start(
    config: &ApplianceConfig,
    containers: Containers,
    images: ImageService,
) -> anyhow::Result<()> {
    let s = &config.settings;
    let Some(port) = s.admin_port else {
        tracing::info!("no admin pages: the VCH has no port for them (made before them)");
        return Ok(());
    };
    let addr = SocketAddr::new(config.listen.ip(), port);
    let (tls, client_certificates) = match &config.tls {
        Some(t) => {
            let c = docker_api::optional_client_config(&t.cert, &t.key, &t.client_cas)
                .context("setting up TLS for the admin pages")?;
            (c.rustls(), c.verifies_clients())
        }
        None => {
            let names = vec!["localhost".to_string(), addr.ip().to_string()];
            let c = vicadmin::self_signed(names).map_err(anyhow::Error::msg)?;
            (c, false)
        }
    };
    let operator = match (&s.ops_user, &s.ops_password_hash) {
        (Some(user), Some(hash)) => Some(Operator {
            user: user.clone(),
            password_hash: hash.clone(),
        }),
        _ => None,
    };
    let admin = AdminConfig {
        vch: config.name.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        vch_dir: config.state_dir.clone(),
        api: ApiEndpoint {
            addr: config.listen,
            tls: config.tls.is_some(),
        },
        registries: registries(&s.insecure_registries, &s.whitelist_registries),
        operator,
        client_certificates,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for the admin pages on {addr}"))?;
    let router = vicadmin::router(Admin::new(admin, containers, images));
    tokio::spawn(async move {
        if let Err(e) = vicadmin::serve(listener, tls, router).await {
            tracing::error!("the admin pages stopped: {e}");
        }
    });
    Ok(())
}

/// The registries the summary checks: each insecure and allowed one named by host (a
/// pattern, `*.domain` or a CIDR, names no one registry), once.
fn registries(insecure: &[String], allowed: &[String]) -> Vec<Registry> {
    let mut out: Vec<Registry> = Vec::new();
    let named = |r: &&String| !r.contains('*') && !r.contains('/');
    for (list, is_insecure) in [(insecure, true), (allowed, false)] {
        for r in list.iter().filter(named) {
            if !out.iter().any(|o| &o.name == r) {
                out.push(Registry {
                    name: r.clone(),
                    insecure: is_insecure,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_named_ones_once_insecure_first() {
        let r = registries(
            &["127.0.0.1:5000".into(), "10.0.0.0/8".into()],
            &["127.0.0.1:5000".into(), "*.corp".into(), "reg.corp".into()],
        );
        assert_eq!(
            r,
            [
                Registry {
                    name: "127.0.0.1:5000".into(),
                    insecure: true
                },
                Registry {
                    name: "reg.corp".into(),
                    insecure: false
                }
            ]
        );
    }
}
