//! Container networks (VIC's `--container-network`) as port-layer networks: made from the
//! VCH's configuration at every start (they are the operator's, not the Docker user's), named
//! by their alias, with the gateway's subnet, the configured range as the only addresses
//! handed out, and the firewall trust level the backend enforces.

use std::net::{IpAddr, Ipv4Addr};

use vch_config::{ContainerNetwork, Firewall, SettingError};

use super::{predefined_id, Cidr, Network};

fn trust(f: Firewall) -> hypervisor::Trust {
    match f {
        Firewall::Closed => hypervisor::Trust::Closed,
        Firewall::Outbound => hypervisor::Trust::Outbound,
        Firewall::Peers => hypervisor::Trust::Peers,
        Firewall::Published => hypervisor::Trust::Published,
        Firewall::Open => hypervisor::Trust::Open,
    }
}

impl Network {
    /// The network the configuration's container network `c` is.
    pub fn container_network(c: &ContainerNetwork) -> Result<Network, SettingError> {
        let (gateway, prefix_len) = c.gateway()?;
        let span = c.ip_span()?;
        let mut net = Network::bridge(Ipv4Addr::UNSPECIFIED);
        net.name = c.name.clone();
        net.id = predefined_id(&format!("container network {}", c.name));
        net.subnet = Cidr {
            addr: Ipv4Addr::from(u32::from(gateway) & (u32::MAX << (32 - prefix_len))),
            prefix_len,
        };
        net.gateway = gateway;
        net.builtin = false;
        net.user_subnet = true;
        net.attachable = true;
        net.ip_span = Some(span);
        net.dns = c
            .dns
            .iter()
            .filter_map(|d| match d {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
            .collect();
        net.external = Some(hypervisor::ExternalNet {
            source: c.source.clone(),
            trust: trust(c.firewall),
        });
        Ok(net)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_network_hands_out_its_range_only_and_names_its_bridge_apart() {
        let c = ContainerNetwork {
            name: "routable".into(),
            source: "testns/br0".into(),
            gateway: Some("10.9.0.1/24".into()),
            ip_range: Some("10.9.0.100-10.9.0.101".into()),
            dns: vec!["10.9.0.53".parse().unwrap()],
            firewall: Firewall::Peers,
        };
        let net = Network::container_network(&c).unwrap();
        assert_eq!(net.subnet.to_string(), "10.9.0.0/24");
        let first = net.allocate(&[]).unwrap();
        assert_eq!(first.to_string(), "10.9.0.100");
        let second = net.allocate(&[first]).unwrap();
        assert_eq!(second.to_string(), "10.9.0.101");
        assert_eq!(net.allocate(&[first, second]), None, "the range is spent");
        assert!(net.backend_name().starts_with('c'));
        assert_ne!(net.backend_name(), Network::default_bridge().backend_name());
        let spec = net.spec();
        assert_eq!(spec.external.unwrap().trust, hypervisor::Trust::Peers);
        let ep = net.endpoint(first);
        assert!(ep.external);
        assert_eq!(ep.dns, [Ipv4Addr::new(10, 9, 0, 53)]);
        assert_eq!(ep.gateway, Ipv4Addr::new(10, 9, 0, 1));
    }
}
