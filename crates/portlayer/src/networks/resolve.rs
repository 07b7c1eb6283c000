//! What the VCH's DNS server answers on a network: the running containers on it by name,
//! short ID and `--network-alias` (user networks only, as in Docker), and each container's
//! own links (on every network). Anything else is not a container name: the server
//! forwards it. Several containers sharing an alias are answered in a new order each time
//! (round robin, as Docker's embedded DNS does).

use std::net::{IpAddr, Ipv4Addr};

use super::{Endpoint, Network};
use crate::container::{ContainerRecord, Status};

/// An endpoint's addresses: its IPv4 one, and its IPv6 one on a network with IPv6.
fn addresses(e: &Endpoint) -> impl Iterator<Item = IpAddr> {
    std::iter::once(IpAddr::V4(e.ip)).chain(e.ipv6.map(|v| IpAddr::V6(v.ip)))
}

/// The endpoint on `network` of each running container among `records`.
fn running<'a>(
    records: impl Iterator<Item = &'a ContainerRecord>,
    network: &Network,
) -> impl Iterator<Item = (&'a ContainerRecord, &'a Endpoint)> {
    let name = network.name.clone();
    records
        .filter(|r| r.state.status == Status::Running)
        .filter_map(move |r| {
            let e = r.spec.endpoints.iter().find(|e| e.network == name)?;
            Some((r, e))
        })
}

/// The addresses `name` (lowercase) has for the container at `client` on `network` (the
/// network the question came in on): a name on any of the networks the asking container is
/// on, that network first, with the address on that network. A container asks the gateway
/// of the network it started on, and may since have left it (disconnected while it runs,
/// its default route moved): it is then found by its address on its other networks
/// (container networks never overlap). `None` when it is no container's name for it, or
/// `client` is no running container.
pub fn lookup<'a>(
    records: impl Iterator<Item = &'a ContainerRecord> + Clone,
    networks: &[Network],
    network: &Network,
    client: Ipv4Addr,
    name: &str,
) -> Option<Vec<IpAddr>> {
    let asker = |net: &Network| {
        running(records.clone(), net)
            .find(|(_, e)| e.ip == client)
            .map(|(r, _)| r)
    };
    let asker = asker(network).or_else(|| networks.iter().find_map(asker))?;
    let mut ends: Vec<&Endpoint> = asker.spec.endpoints.iter().collect();
    ends.sort_by_key(|e| e.network != network.name);
    ends.into_iter().find_map(|e| {
        let net = networks.iter().find(|n| n.name == e.network)?;
        on_network(records.clone(), net, e, name)
    })
}

/// `name` on `net` for a container whose endpoint there is `asking`.
fn on_network<'a>(
    records: impl Iterator<Item = &'a ContainerRecord> + Clone,
    net: &Network,
    asking: &Endpoint,
    name: &str,
) -> Option<Vec<IpAddr>> {
    // A link names its container by ID (the default bridge) or by name (user networks).
    let of_id = |id: &str| {
        running(records.clone(), net)
            .find(|(r, _)| r.id == id || r.spec.name.trim_start_matches('/') == id)
    };
    for link in &asking.links {
        let target = of_id(&link.container);
        let named = target.is_some_and(|(r, _)| r.spec.name.eq_ignore_ascii_case(name));
        if link.alias.eq_ignore_ascii_case(name) || named {
            return target.map(|(_, e)| addresses(e).collect());
        }
    }
    if net.builtin {
        return None;
    }
    let mut found: Vec<&Endpoint> = running(records.clone(), net)
        .filter(|(r, e)| {
            r.spec.name.eq_ignore_ascii_case(name)
                || (name.len() == 12 && r.id.starts_with(name))
                || e.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
        })
        .map(|(_, e)| e)
        .collect();
    // In a new order each time, as Docker answers an alias several containers share.
    rand::seq::SliceRandom::shuffle(found.as_mut_slice(), &mut rand::thread_rng());
    (!found.is_empty()).then(|| found.into_iter().flat_map(addresses).collect())
}

/// The name of the running container at `addr` on user network `network`.
pub fn reverse<'a>(
    records: impl Iterator<Item = &'a ContainerRecord>,
    network: &Network,
    addr: Ipv4Addr,
) -> Option<String> {
    if network.builtin {
        return None;
    }
    running(records, network)
        .find(|(_, e)| e.ip == addr)
        .map(|(r, _)| r.spec.name.clone())
}
