//! Docker's legacy links beyond the name (`networks/resolve.rs` answers that): the
//! environment a container linked on the default bridge starts with, and `docker rm --link`.
//!
//! ```text
//!   docker run --link db:store app   (db exposes 5432/tcp, has FOO=1 in its environment)
//!   app starts with STORE_NAME=/app/store  STORE_ENV_FOO=1
//!                   STORE_PORT=tcp://172.17.0.2:5432  STORE_PORT_5432_TCP=tcp://172.17.0.2:5432
//!                   STORE_PORT_5432_TCP_ADDR=172.17.0.2  …_PORT=5432  …_PROTO=tcp
//! ```
//!
//! As in moby, the variables are made at each start from the linked container as it is
//! then (its address, its environment, its exposed ports), only for a linked container that
//! runs, and the container's own environment wins over them. `docker inspect` shows the
//! links in `HostConfig.Links` as `/db:/app/store`.

use super::{Containers, Error};
use crate::container::{ContainerRecord, Status};
use crate::networks::BRIDGE;

impl Containers {
    /// `docker rm --link PARENT/ALIAS`: PARENT no longer reaches the container by ALIAS
    /// (neither by that name nor in the environment of its next start).
    pub fn remove_link(&self, name: &str) -> Result<(), Error> {
        let full = name.trim_start_matches('/');
        let Some((parent, alias)) = full.rsplit_once('/') else {
            return Err(Error::DefaultLinkName);
        };
        let rec = self
            .get(parent)
            .map_err(|_| Error::NoSuchContainer(name.to_string()))?;
        let named = |l: &crate::networks::Link| l.alias.eq_ignore_ascii_case(alias);
        let has = (rec.spec.endpoints.iter().flat_map(|e| &e.links))
            .chain(rec.spec.endpoint_requests.values().flat_map(|r| &r.links))
            .any(named);
        if !has {
            return Err(Error::NoSuchContainer(name.to_string()));
        }
        self.update(&rec.id, |r| {
            for e in &mut r.spec.endpoints {
                e.links.retain(|l| !named(l));
            }
            for req in r.spec.endpoint_requests.values_mut() {
                req.links.retain(|l| !named(l));
            }
        })?;
        Ok(())
    }
}

impl Containers {
    /// `rec`'s links as inspect's `HostConfig.Links` shows them: `/db:/app/store`.
    pub fn links_shown(&self, rec: &ContainerRecord) -> Vec<String> {
        let own = rec.spec.name.trim_start_matches('/');
        (bridge_links(rec).into_iter())
            .filter_map(|(id, alias)| {
                let target = self.get(&id).ok()?;
                Some(format!(
                    "/{}:/{own}/{alias}",
                    target.spec.name.trim_start_matches('/')
                ))
            })
            .collect()
    }
}

/// `rec`'s links on the default bridge as (linked container's ID, alias).
fn bridge_links(rec: &ContainerRecord) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let endpoint = rec.spec.endpoints.iter().filter(|e| e.network == BRIDGE);
    let asked = rec.spec.endpoint_requests.get(BRIDGE).into_iter();
    for l in endpoint
        .flat_map(|e| &e.links)
        .chain(asked.flat_map(|r| &r.links))
    {
        if !out.iter().any(|(_, a)| a.eq_ignore_ascii_case(&l.alias)) {
            out.push((l.container.clone(), l.alias.clone()));
        }
    }
    out
}

/// The environment `rec`'s links give it at a start, from the linked containers as `find`
/// (by ID) has them now; a variable its own environment sets is left to it. A linked
/// container that does not run fails the start, in moby's words; one removed since is gone
/// from the links as moby drops it.
pub(super) fn link_env(
    rec: &ContainerRecord,
    find: impl Fn(&str) -> Option<ContainerRecord>,
) -> Result<Vec<String>, Error> {
    let own = |k: &str| (rec.spec.process.env.iter()).any(|v| v.split('=').next() == Some(k));
    let mut env = Vec::new();
    for (id, alias) in bridge_links(rec) {
        let Some(target) = find(&id) else {
            continue;
        };
        let name = format!("/{}/{alias}", rec.spec.name.trim_start_matches('/'));
        if target.state.status != Status::Running {
            return Err(Error::Start(format!(
                "Cannot link to a non running container: /{} AS {name}",
                target.spec.name.trim_start_matches('/')
            )));
        }
        let Some(ip) = (target.spec.endpoints.iter()).find(|e| e.network == BRIDGE) else {
            continue;
        };
        let vars = variables(
            &alias,
            &name,
            ip.ip,
            &exposed(&target),
            &target.spec.process.env,
        );
        env.extend(
            vars.into_iter()
                .filter(|v| !own(v.split('=').next().unwrap_or(""))),
        );
    }
    Ok(env)
}

/// The linked container's exposed ports, `(port, proto)`, in order.
fn exposed(target: &ContainerRecord) -> Vec<(u16, String)> {
    let ports = target.spec.personality.pointer("/Config/ExposedPorts");
    let mut out: Vec<(u16, String)> = (ports.and_then(|p| p.as_object()).into_iter())
        .flat_map(|m| m.keys())
        .filter_map(|k| {
            let (port, proto) = k.split_once('/').unwrap_or((k, "tcp"));
            Some((port.parse().ok()?, proto.to_ascii_lowercase()))
        })
        .collect();
    out.sort();
    out
}

/// moby's link variables for a container linked as `alias` (its full link name `name`).
fn variables(
    alias: &str,
    name: &str,
    ip: std::net::Ipv4Addr,
    ports: &[(u16, String)],
    child_env: &[String],
) -> Vec<String> {
    let prefix = alias.to_ascii_uppercase().replace('-', "_");
    let mut env = Vec::new();
    if let Some((port, proto)) = ports.first() {
        env.push(format!("{prefix}_PORT={proto}://{ip}:{port}"));
    }
    for (port, proto) in ports {
        let p = format!("{prefix}_PORT_{port}_{}", proto.to_ascii_uppercase());
        env.push(format!("{p}={proto}://{ip}:{port}"));
        env.push(format!("{p}_ADDR={ip}"));
        env.push(format!("{p}_PORT={port}"));
        env.push(format!("{p}_PROTO={proto}"));
    }
    env.push(format!("{prefix}_NAME={name}"));
    for v in child_env {
        let Some((k, val)) = v.split_once('=') else {
            continue;
        };
        // Set by every image, not the linked container's own.
        if k == "HOME" || k == "PATH" {
            continue;
        }
        env.push(format!("{prefix}_ENV_{k}={val}"));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_gives_mobys_variables() {
        let env = variables(
            "my-db",
            "/app/my-db",
            "172.17.0.2".parse().unwrap(),
            &[(5432, "tcp".into()), (53, "udp".into())],
            &["PATH=/bin".into(), "FOO=1".into(), "HOME=/root".into()],
        );
        assert_eq!(
            env,
            [
                "MY_DB_PORT=tcp://172.17.0.2:5432",
                "MY_DB_PORT_5432_TCP=tcp://172.17.0.2:5432",
                "MY_DB_PORT_5432_TCP_ADDR=172.17.0.2",
                "MY_DB_PORT_5432_TCP_PORT=5432",
                "MY_DB_PORT_5432_TCP_PROTO=tcp",
                "MY_DB_PORT_53_UDP=udp://172.17.0.2:53",
                "MY_DB_PORT_53_UDP_ADDR=172.17.0.2",
                "MY_DB_PORT_53_UDP_PORT=53",
                "MY_DB_PORT_53_UDP_PROTO=udp",
                "MY_DB_NAME=/app/my-db",
                "MY_DB_ENV_FOO=1",
            ]
        );
    }

    #[test]
    fn without_exposed_ports_only_the_name_and_environment() {
        let env = variables(
            "x",
            "/a/x",
            "10.0.0.2".parse().unwrap(),
            &[],
            &["A=b=c".into()],
        );
        assert_eq!(env, ["X_NAME=/a/x", "X_ENV_A=b=c"]);
    }
}
