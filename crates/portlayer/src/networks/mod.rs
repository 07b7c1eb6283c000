//! Container networks as the port layer keeps them: the VCH's networks (the predefined
//! `bridge` and the user's, see `plan.rs` and `store.rs`), and each container's endpoint on
//! them (address, prefix, gateway, MAC, aliases, links), handed out when the container is
//! created or connected, and kept in its record.
//!
//! Addresses are allocated under the records' lock from what the records already hold, so an
//! address belongs to exactly one container, is never handed out twice, and returns to the
//! pool when its container's record goes: no separate table can drift from the records, and
//! a crash between allocating and saving leaves nothing allocated.
//!
//! The default network is Docker's `bridge`, VIC's first /16 of the bridge range
//! (172.16.0.0/16, gateway .1); user networks get the next free /16 of the range unless they
//! name a subnet. The backend makes each network (a bridge in the VCH's network namespace
//! locally) when the port layer opens or the network is created.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod cidr;
mod cidr6;
mod external;
mod ipv6;
mod plan;
mod resolve;
mod store;

pub use cidr::Cidr;
pub use cidr6::Cidr6;
pub use ipv6::{Endpoint6, Ipv6Net, Ipv6Request};
pub use plan::{plan, NetworkRequest};
pub use resolve::{lookup, reverse};
pub(crate) use store::NetworkStore;

/// The default network's name (`docker network ls`).
pub const BRIDGE: &str = "bridge";

/// The stable ID of predefined network `name` (`bridge`, and Docker's `none`).
pub fn predefined_id(name: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(format!("vic network {name}")))
}

/// A network containers can be attached to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    /// 64 hex digits, as Docker gives networks.
    pub id: String,
    /// The network's address range (host bits zero).
    pub subnet: Cidr,
    /// The backend's address on it, containers' default route and DNS server.
    pub gateway: Ipv4Addr,
    /// Where container addresses come from (`--ip-range`); the whole subnet when `None`.
    #[serde(default)]
    pub ip_range: Option<Cidr>,
    /// Addresses never handed out (`--aux-address`).
    #[serde(default)]
    pub aux_addresses: BTreeMap<String, Ipv4Addr>,
    /// No way out of the VCH (`--internal`).
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    /// Whether the user chose the subnet: only then may containers ask for an address
    /// (`--ip`), as in Docker.
    #[serde(default)]
    pub user_subnet: bool,
    /// Whether its containers may reach each other (`com.docker.network.bridge.enable_icc`).
    #[serde(default = "yes")]
    pub icc: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The driver options it was created with, as given.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub created: Option<DateTime<Utc>>,
    /// The predefined `bridge`: it cannot be removed, and only links resolve on it.
    #[serde(default)]
    pub builtin: bool,
    /// Set on a container network (VIC's `--container-network`): outside the VCH, which
    /// holds no address on it; `gateway` is its router (see `external.rs`).
    #[serde(default)]
    pub external: Option<hypervisor::ExternalNet>,
    /// The first and last addresses a container network hands out.
    #[serde(default)]
    pub ip_span: Option<(Ipv4Addr, Ipv4Addr)>,
    /// A container network's DNS servers (`--container-network-dns`).
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// Whether its create gave IPAM options (empty: the VCH's IPAM takes none): inspect
    /// shows `{}` then and `null` otherwise, as dockerd shows what it was given.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ipam_options: bool,
    /// Its IPv6 side, when it has one (`--ipv6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Net>,
}

fn yes() -> bool {
    true
}

impl Network {
    /// Docker's `bridge` network over VIC's default range.
    pub fn default_bridge() -> Network {
        Network::bridge(Ipv4Addr::new(172, 16, 0, 0))
    }

    /// Docker's `bridge` network on the /16 at `subnet`, its gateway the first address.
    pub fn bridge(subnet: Ipv4Addr) -> Network {
        Network {
            name: BRIDGE.into(),
            id: predefined_id(BRIDGE),
            subnet: Cidr {
                addr: subnet,
                prefix_len: 16,
            },
            gateway: Ipv4Addr::from(u32::from(subnet) + 1),
            ip_range: None,
            aux_addresses: BTreeMap::new(),
            internal: false,
            attachable: false,
            user_subnet: false,
            icc: true,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            created: None,
            builtin: true,
            external: None,
            ip_span: None,
            dns: Vec::new(),
            ipam_options: false,
            ipv6: None,
        }
    }

    /// The name the backend knows the network by: `bridge` for the default one, `n` and
    /// the first 10 digits of the ID for the user's (short enough for a Linux bridge name,
    /// never reused by a network created later under the same name).
    pub fn backend_name(&self) -> String {
        let digits = &self.id[..self.id.len().min(10)];
        if self.builtin {
            self.name.clone()
        } else if self.external.is_some() {
            format!("c{digits}")
        } else {
            format!("n{digits}")
        }
    }

    /// What the backend is asked to make.
    pub fn spec(&self) -> hypervisor::NetworkSpec {
        hypervisor::NetworkSpec {
            name: self.backend_name(),
            label: self.name.clone(),
            gateway: self.gateway,
            prefix_len: self.subnet.prefix_len,
            isolated: !self.icc,
            internal: self.internal,
            external: self.external.clone(),
            ipv6: (self.ipv6.as_ref()).map(|v| (v.gateway, v.subnet.prefix_len)),
        }
    }

    /// Whether `ip` may be a container's address here: inside the subnet, and not its own
    /// address, its broadcast, its gateway or an auxiliary address.
    fn assignable(&self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(ip)
            && ip != self.subnet.network()
            && ip != self.subnet.broadcast()
            && ip != self.gateway
            && !self.aux_addresses.values().any(|a| *a == ip)
            && self.ip_span.is_none_or(|(a, b)| (a..=b).contains(&ip))
    }

    /// The lowest assignable address of the pool (`--ip-range`, or the subnet) not in `used`.
    pub fn allocate(&self, used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
        let used: HashSet<Ipv4Addr> = used.iter().copied().collect();
        if let Some((first, last)) = self.ip_span {
            return (u32::from(first)..=u32::from(last))
                .map(Ipv4Addr::from)
                .find(|a| self.assignable(*a) && !used.contains(a));
        }
        let pool = self.ip_range.unwrap_or(self.subnet);
        // The range's own first and last addresses are skipped too (a `.0` is legal inside
        // a larger subnet, but many programs take it for a network's address).
        (u32::from(pool.network()) + 1..u32::from(pool.broadcast()))
            .map(Ipv4Addr::from)
            .find(|a| self.assignable(*a) && !used.contains(a))
    }

    /// An endpoint on this network at `ip`.
    pub fn endpoint(&self, ip: Ipv4Addr) -> Endpoint {
        Endpoint {
            network: self.name.clone(),
            network_id: self.id.clone(),
            ip,
            prefix_len: self.subnet.prefix_len,
            gateway: self.gateway,
            mac: mac_of(ip),
            aliases: Vec::new(),
            links: Vec::new(),
            nic: None,
            external: self.external.is_some(),
            dns: self.dns.clone(),
            ipv6: None,
            link_local: Vec::new(),
        }
    }
}

/// A container's place on one network, as its record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network: String,
    /// The network's ID (empty in records of versions before user networks: `bridge`'s).
    #[serde(default)]
    pub network_id: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    /// Other names it answers to on this network (`--network-alias`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Containers it reaches by another name (`--link`); only it sees these names.
    #[serde(default)]
    pub links: Vec<Link>,
    /// Which of the running VM's interfaces carries it (set at start, and when it is
    /// connected while the container runs).
    #[serde(default)]
    pub nic: Option<u8>,
    /// On a container network: no VCH DNS server or port forwarding reaches it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    /// A container network's DNS servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<Ipv4Addr>,
    /// Its IPv6 address, on a network with IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Endpoint6>,
    /// Link-local addresses it has beside (`--link-local-ip`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_local: Vec<std::net::IpAddr>,
}

impl Endpoint {
    /// What the guest is told of this endpoint's interface; `v4` and `v6`: whether it
    /// carries the default route of that family.
    pub fn interface(&self, v4: bool, v6: bool) -> tether_proto::Interface {
        tether_proto::Interface {
            mac: self.mac.clone(),
            address: self.ip,
            prefix_len: self.prefix_len,
            gateway: v4.then_some(self.gateway),
            ipv6: self.ipv6.map(|v| v.config(v6)),
            link_local: self.link_local.clone(),
        }
    }
}

/// A link: container `container` (an ID) is `alias` to the linking container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub container: String,
    pub alias: String,
}

/// What a container asks of its endpoint on one network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRequest {
    /// `--ip`: this address rather than the next free one.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// `--ip6`: this IPv6 address rather than the next free one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<std::net::Ipv6Addr>,
    /// `--mac-address`: this MAC (lowercase) rather than Docker's of the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// `--link-local-ip`: link-local addresses the interface has beside.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_local: Vec<std::net::IpAddr>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub links: Vec<Link>,
}

/// Why a network or an endpoint cannot be made or removed, in Docker's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("network {0} not found")]
    NoSuch(String),
    #[error("no addresses are left on network {0}")]
    Full(String),
    #[error("network with name {0} already exists")]
    Exists(String),
    /// The request itself is wrong (a bad subnet, an address outside the network…).
    #[error("{0}")]
    Invalid(String),
    /// Allowed in general, not here (a predefined network, active endpoints, overlaps).
    #[error("{0}")]
    Forbidden(String),
    #[error("Address already in use")]
    AddressInUse,
}

/// An endpoint on `net` as `req` asks, with an address none of `taken` holds.
pub fn endpoint(
    net: &Network,
    req: &EndpointRequest,
    taken: &[Endpoint],
) -> Result<Endpoint, NetworkError> {
    // An address whose Docker MAC another endpoint was given (`--mac-address`) is taken too.
    let used: Vec<_> = taken
        .iter()
        .filter(|e| e.network == net.name)
        .flat_map(|e| std::iter::once(e.ip).chain(ip_of_mac(&e.mac).filter(|a| *a != e.ip)))
        .collect();
    if !req.aliases.is_empty() && net.builtin {
        return Err(NetworkError::Invalid(
            "network-scoped alias is supported only for containers in user defined networks".into(),
        ));
    }
    let ip = match req.ip {
        Some(_) if net.builtin => {
            return Err(NetworkError::Invalid(
                "user specified IP address is supported on user defined networks only".into(),
            ))
        }
        Some(_) if !net.user_subnet => {
            return Err(NetworkError::Invalid(
                "user specified IP address is supported only when connecting to networks with user configured subnets".into(),
            ))
        }
        Some(ip) if !net.assignable(ip) => {
            return Err(NetworkError::Invalid(format!(
                "invalid config for network {}: invalid endpoint settings: no configured subnet or ip-range contain the IP address {ip}",
                net.name
            )))
        }
        Some(ip) if used.contains(&ip) => return Err(NetworkError::AddressInUse),
        Some(ip) => ip,
        None => net
            .allocate(&used)
            .ok_or_else(|| NetworkError::Full(net.name.clone()))?,
    };
    let used6: Vec<_> = taken
        .iter()
        .filter(|e| e.network == net.name)
        .filter_map(|e| e.ipv6.map(|v| v.ip))
        .collect();
    let mut e = net.endpoint(ip);
    e.ipv6 = ipv6::endpoint(net, req.ipv6, &used6)?;
    if let Some(mac) = &req.mac {
        let on_net = taken.iter().filter(|t| t.network == net.name);
        if on_net.clone().any(|t| t.mac == *mac) {
            return Err(NetworkError::Invalid(format!(
                "MAC address {mac} is in use on network {}",
                net.name
            )));
        }
        e.mac = mac.clone();
    }
    e.aliases = req.aliases.clone();
    e.link_local = req.link_local.clone();
    e.links = req.links.clone();
    Ok(e)
}

/// The network `key` names among `networks`: its name, its ID, or a unique prefix of its ID.
pub fn find<'a>(networks: &'a [Network], key: &str) -> Result<&'a Network, NetworkError> {
    if let Some(n) = networks.iter().find(|n| n.name == key || n.id == key) {
        return Ok(n);
    }
    let by_prefix: Vec<&Network> = networks
        .iter()
        .filter(|n| !key.is_empty() && n.id.starts_with(key))
        .collect();
    match by_prefix.as_slice() {
        [one] => Ok(one),
        [] => Err(NetworkError::NoSuch(key.to_string())),
        _ => Err(NetworkError::Invalid(format!(
            "network {key} is ambiguous ({} matches found based on ID prefix)",
            by_prefix.len()
        ))),
    }
}

/// Which of a container's endpoints (in order) carries its IPv6 default route: the first
/// with IPv6, as the first network carries the IPv4 one.
pub fn first_ipv6(endpoints: &[Endpoint]) -> Option<usize> {
    endpoints.iter().position(|e| e.ipv6.is_some())
}

/// The address whose Docker MAC `mac` is (`02:42:` and four bytes), if it is one.
fn ip_of_mac(mac: &str) -> Option<Ipv4Addr> {
    let rest = mac.strip_prefix("02:42:")?;
    let b: Vec<u8> = (rest.split(':'))
        .map(|x| u8::from_str_radix(x, 16).ok())
        .collect::<Option<_>>()?;
    <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
}

/// Docker's MAC for an address: `02:42` (locally administered) and the address's bytes.
pub fn mac_of(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

#[cfg(test)]
mod tests;
