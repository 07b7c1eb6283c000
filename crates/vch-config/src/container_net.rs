//! Container networks (VIC's `--container-network`): a network outside the VCH that containers
//! join directly, with no NAT, each at an address of its own, behind a firewall of the trust
//! level the operator chose.
//!
//! On the local target the outside network is a Linux bridge: `BRIDGE` in the host's network
//! namespace, or `NETNS/BRIDGE` in the named namespace of `/run/netns` (on vSphere: a port
//! group). Containers get addresses from the VCH (`--container-network-ip-range`, or the
//! gateway's subnet), so `--container-network-gateway` is required: the local target runs no
//! DHCP client in its guests, and says so rather than start containers without addresses.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::settings::SettingError;

/// What a container network's firewall lets through (VIC's trust levels).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Firewall {
    /// Nothing in or out.
    Closed,
    /// Connections the containers open, and their replies.
    Outbound,
    /// Containers on the network with each other; nothing beyond.
    Peers,
    /// Outbound, and inbound to the ports each container publishes (VIC's default).
    #[default]
    Published,
    /// Everything.
    Open,
}

impl Firewall {
    pub fn as_str(self) -> &'static str {
        match self {
            Firewall::Closed => "closed",
            Firewall::Outbound => "outbound",
            Firewall::Peers => "peers",
            Firewall::Published => "published",
            Firewall::Open => "open",
        }
    }
}

impl std::str::FromStr for Firewall {
    type Err = SettingError;
    fn from_str(s: &str) -> Result<Firewall, SettingError> {
        Ok(match s {
            "closed" => Firewall::Closed,
            "outbound" => Firewall::Outbound,
            "peers" => Firewall::Peers,
            "published" => Firewall::Published,
            "open" => Firewall::Open,
            _ => {
                return Err(SettingError::ContainerNetwork(format!(
                    "unknown trust level {s:?}: closed, outbound, peers, published or open"
                )))
            }
        })
    }
}

/// A container network as VIC's `--container-network` names one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerNetwork {
    /// The name containers use (`docker run --net NAME`).
    pub name: String,
    /// The host-side network: `BRIDGE` or `NETNS/BRIDGE`.
    pub source: String,
    /// `GATEWAY/PREFIX`: the network's router and size.
    #[serde(default)]
    pub gateway: Option<String>,
    /// Addresses handed to containers: `FIRST-LAST` or a CIDR inside the gateway's subnet
    /// (default: the whole subnet).
    #[serde(default)]
    pub ip_range: Option<String>,
    /// DNS servers of containers whose first network this is.
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    #[serde(default)]
    pub firewall: Firewall,
}

fn bad(msg: String) -> SettingError {
    SettingError::ContainerNetwork(msg)
}

/// `A.B.C.D/N` as an address and a prefix length.
fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, n) = s.split_once('/')?;
    let n: u8 = n.parse().ok().filter(|n| *n <= 32)?;
    Some((a.parse().ok()?, n))
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

impl ContainerNetwork {
    /// The host bridge and the namespace it is in (`None`: the host's own).
    pub fn bridge(&self) -> (Option<&str>, &str) {
        match self.source.split_once('/') {
            Some((ns, br)) => (Some(ns), br),
            None => (None, self.source.as_str()),
        }
    }

    /// The gateway and the prefix length of its subnet.
    pub fn gateway(&self) -> Result<(Ipv4Addr, u8), SettingError> {
        let g = self.gateway.as_deref().ok_or_else(|| {
            bad(format!(
                "container network {}: --container-network-gateway {}:GATEWAY/PREFIX is required (the local target hands out addresses itself; its containers have no DHCP client)",
                self.name, self.source
            ))
        })?;
        let (ip, prefix) = parse_cidr(g).filter(|(_, p)| (8..=30).contains(p)).ok_or_else(|| {
            bad(format!(
                "container network {}: gateway {g:?} is not GATEWAY/PREFIX with a prefix of 8 to 30",
                self.name
            ))
        })?;
        Ok((ip, prefix))
    }

    /// The first and last addresses containers may get, inside the gateway's subnet.
    pub fn ip_span(&self) -> Result<(Ipv4Addr, Ipv4Addr), SettingError> {
        let (gw, prefix) = self.gateway()?;
        let net = u32::from(gw) & mask(prefix);
        let broadcast = net | !mask(prefix);
        let (first, last) = match self.ip_range.as_deref() {
            None => (net + 1, broadcast - 1),
            Some(r) => {
                let span = match r.split_once('-') {
                    Some((a, b)) => a.parse::<Ipv4Addr>().ok().zip(b.parse::<Ipv4Addr>().ok()),
                    None => parse_cidr(r).map(|(a, p)| {
                        let n = u32::from(a) & mask(p);
                        (Ipv4Addr::from(n), Ipv4Addr::from(n | !mask(p)))
                    }),
                };
                let (a, b) = span.ok_or_else(|| {
                    bad(format!(
                        "container network {}: ip range {r:?} is neither FIRST-LAST nor a CIDR",
                        self.name
                    ))
                })?;
                (u32::from(a).max(net + 1), u32::from(b).min(broadcast - 1))
            }
        };
        if first > last || first & mask(prefix) != net || last & mask(prefix) != net {
            return Err(bad(format!(
                "container network {}: ip range {} is not inside the gateway's subnet {}/{prefix}",
                self.name,
                self.ip_range.as_deref().unwrap_or(""),
                Ipv4Addr::from(net)
            )));
        }
        Ok((Ipv4Addr::from(first), Ipv4Addr::from(last)))
    }

    /// Checks what serde cannot: a usable name and source (of the kind `sources` says), a
    /// gateway, a range inside its subnet, IPv4 DNS servers.
    pub fn check(&self, sources: Sources) -> Result<(), SettingError> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.starts_with(|c: char| c.is_ascii_alphanumeric())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        };
        if !name_ok(&self.name)
            || ["bridge", "none", "host", "default"].contains(&self.name.as_str())
        {
            return Err(bad(format!(
                "container network name {:?} cannot be used: give a name of letters, digits, `_`, `.` and `-` other than bridge, none, host and default",
                self.name
            )));
        }
        match sources {
            Sources::HostBridges => {
                let (ns, br) = self.bridge();
                let dev_ok = |s: &str| !s.is_empty() && s.len() <= 15 && name_ok(s);
                if !dev_ok(br) || ns.is_some_and(|n| !name_ok(n)) {
                    return Err(bad(format!(
                        "container network {}: {:?} is not BRIDGE or NETNS/BRIDGE",
                        self.name, self.source
                    )));
                }
            }
            Sources::PortGroups => {
                let s = &self.source;
                if s.is_empty() || s.chars().count() > 80 || s.chars().any(char::is_control) {
                    return Err(bad(format!(
                        "container network {}: {s:?} is not a port group's name",
                        self.name
                    )));
                }
            }
        }
        self.ip_span()?;
        if let Some(v6) = self.dns.iter().find(|d| d.is_ipv6()) {
            return Err(bad(format!(
                "container network {}: DNS server {v6} is not IPv4",
                self.name
            )));
        }
        Ok(())
    }
}

/// What a container network's source names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sources {
    /// A bridge on the VCH's host, `BRIDGE` or `NETNS/BRIDGE` (the local target).
    HostBridges,
    /// A port group (vSphere).
    PortGroups,
}

/// Checks a VCH's container networks together: each as [`ContainerNetwork::check`], and no
/// name or source twice.
pub fn check_container_networks(
    nets: &[ContainerNetwork],
    sources: Sources,
) -> Result<(), SettingError> {
    for (i, n) in nets.iter().enumerate() {
        n.check(sources)?;
        if let Some(o) = nets[..i]
            .iter()
            .find(|o| o.name == n.name || o.source == n.source)
        {
            return Err(bad(format!(
                "container networks {} ({}) and {} ({}) share a name or a host network",
                o.name, o.source, n.name, n.source
            )));
        }
    }
    Ok(())
}
