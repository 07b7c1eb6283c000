//! Container networks as the port layer keeps them: which networks the VCH has, and each
//! container's endpoint on them (address, prefix, gateway, MAC), handed out when the
//! container is created and kept in its record.
//!
//! Addresses are allocated under the records' lock from what the records already hold, so an
//! address belongs to exactly one container, is never handed out twice, and returns to the
//! pool when its container's record goes: no separate table can drift from the records, and
//! a crash between allocating and saving leaves nothing allocated.
//!
//! The default network is Docker's `bridge`, VIC's first /16 of the bridge range
//! (172.16.0.0/16, gateway .1). The backend makes each network (a bridge in the VCH's network
//! namespace locally) when the port layer opens.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// The default network's name (`docker network ls`).
pub const BRIDGE: &str = "bridge";

/// A network containers can be attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    /// The network's address (host bits zero).
    pub subnet: Ipv4Addr,
    pub prefix_len: u8,
    /// The backend's address on it, containers' default route.
    pub gateway: Ipv4Addr,
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
            subnet,
            prefix_len: 16,
            gateway: Ipv4Addr::from(u32::from(subnet) + 1),
        }
    }

    /// A stable 64-hex-digit ID, as Docker gives networks.
    pub fn id(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(format!("vic network {}", self.name)))
    }

    /// What the backend is asked to make.
    pub fn spec(&self) -> hypervisor::NetworkSpec {
        hypervisor::NetworkSpec {
            name: self.name.clone(),
            gateway: self.gateway,
            prefix_len: self.prefix_len,
        }
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0)
    }

    /// The lowest address of the network that is not its own, its broadcast, its gateway or
    /// in `used`.
    pub fn allocate(&self, used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
        let base = u32::from(self.subnet) & self.mask();
        let broadcast = base | !self.mask();
        (base + 1..broadcast)
            .map(Ipv4Addr::from)
            .find(|a| *a != self.gateway && !used.contains(a))
    }

    /// An endpoint on this network at `ip`.
    pub fn endpoint(&self, ip: Ipv4Addr) -> Endpoint {
        Endpoint {
            network: self.name.clone(),
            ip,
            prefix_len: self.prefix_len,
            gateway: self.gateway,
            mac: mac_of(ip),
        }
    }
}

/// A container's place on one network, as its record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
}

/// Why a container cannot have the endpoints it asks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("network {0} not found")]
    NoSuch(String),
    #[error("no addresses are left on network {0}")]
    Full(String),
}

/// An endpoint on each of the networks `names` (of `networks`), with addresses that none of
/// `taken` holds.
pub fn endpoints(
    networks: &[Network],
    names: &[String],
    taken: &[Endpoint],
) -> Result<Vec<Endpoint>, NetworkError> {
    let mut out: Vec<Endpoint> = Vec::new();
    for name in names {
        let net = networks
            .iter()
            .find(|n| &n.name == name)
            .ok_or_else(|| NetworkError::NoSuch(name.clone()))?;
        let used: Vec<_> = taken
            .iter()
            .chain(&out)
            .filter(|e| &e.network == name)
            .map(|e| e.ip)
            .collect();
        let ip = net
            .allocate(&used)
            .ok_or_else(|| NetworkError::Full(name.clone()))?;
        out.push(net.endpoint(ip));
    }
    Ok(out)
}

/// Docker's MAC for an address: `02:42` (locally administered) and the address's bytes.
pub fn mac_of(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_the_network_gateway_broadcast_and_those_in_use() {
        let n = Network::default_bridge();
        assert_eq!(n.allocate(&[]), Some(Ipv4Addr::new(172, 16, 0, 2)));
        let used = [Ipv4Addr::new(172, 16, 0, 2), Ipv4Addr::new(172, 16, 0, 4)];
        assert_eq!(n.allocate(&used), Some(Ipv4Addr::new(172, 16, 0, 3)));
        let tiny = Network {
            name: "t".into(),
            subnet: Ipv4Addr::new(10, 0, 0, 0),
            prefix_len: 30,
            gateway: Ipv4Addr::new(10, 0, 0, 1),
        };
        assert_eq!(tiny.allocate(&[]), Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(tiny.allocate(&[Ipv4Addr::new(10, 0, 0, 2)]), None, "full");
    }

    #[test]
    fn endpoints_carry_dockers_mac() {
        let e = Network::default_bridge().endpoint(Ipv4Addr::new(172, 16, 0, 2));
        assert_eq!(e.mac, "02:42:ac:10:00:02");
        assert_eq!(e.gateway, Ipv4Addr::new(172, 16, 0, 1));
        assert_eq!(e.prefix_len, 16);
    }
}
