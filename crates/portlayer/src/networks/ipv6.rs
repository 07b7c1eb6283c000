//! A network's IPv6 side (`docker network create --ipv6`, or an IPv6 `--subnet`): its
//! subnet, gateway and range, and the address each container gets on it beside its IPv4
//! one (dual stack: a network always has IPv4). Without a subnet of its own a network takes
//! a /64 of unique local addresses (`fd00::/8`, RFC 4193) derived from its ID. Addresses are
//! handed out in order from the range's first, as Docker's IPAM does.

use std::collections::HashSet;
use std::net::Ipv6Addr;

use serde::{Deserialize, Serialize};

use super::{Cidr6, Network, NetworkError};

/// What a create asks of a network's IPv6 side; all `None`: a ULA /64 of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ipv6Request {
    pub subnet: Option<Cidr6>,
    pub gateway: Option<Ipv6Addr>,
    pub ip_range: Option<Cidr6>,
}

/// A network's IPv6 side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Net {
    pub subnet: Cidr6,
    /// The backend's address on it, containers' IPv6 default route.
    pub gateway: Ipv6Addr,
    #[serde(default)]
    pub ip_range: Option<Cidr6>,
    /// Whether the user chose the subnet: only then may containers ask for an address.
    #[serde(default)]
    pub user_subnet: bool,
}

/// A container's IPv6 address on a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint6 {
    pub ip: Ipv6Addr,
    pub prefix_len: u8,
    pub gateway: Ipv6Addr,
}

impl Endpoint6 {
    /// What the guest is told: with `route`, its IPv6 default route goes through here.
    pub fn config(&self, route: bool) -> tether_proto::Ipv6Config {
        tether_proto::Ipv6Config {
            address: self.ip,
            prefix_len: self.prefix_len,
            gateway: route.then_some(self.gateway),
        }
    }
}

/// The IPv6 side `req` asks for on network `id`, beside the `existing` networks'.
pub fn plan(req: &Ipv6Request, id: &str, existing: &[Network]) -> Result<Ipv6Net, NetworkError> {
    let taken = |s: &Cidr6| {
        existing
            .iter()
            .filter_map(|n| n.ipv6.as_ref())
            .any(|n| n.subnet.overlaps(s))
    };
    let subnet = match req.subnet {
        Some(s) if s != s.canonical() => {
            return Err(NetworkError::Invalid(format!(
                "invalid subnet {s}: it should be {}",
                s.canonical()
            )))
        }
        Some(s) if !(16..=126).contains(&s.prefix_len) => {
            return Err(NetworkError::Invalid(format!(
                "invalid subnet {s}: vic hands out IPv6 networks of /16 to /126"
            )))
        }
        Some(s) if taken(&s) => {
            return Err(NetworkError::Forbidden(
                "invalid pool request: Pool overlaps with other one on this address space".into(),
            ))
        }
        Some(s) => s,
        None => (0u8..=255)
            .map(|n| unique_local(id, n))
            .find(|s| !taken(s))
            .ok_or_else(|| {
                NetworkError::Forbidden(
                    "could not find an available, non-overlapping IPv6 address pool".into(),
                )
            })?,
    };
    let gateway = match req.gateway {
        Some(gw) if !subnet.contains(gw) || gw == subnet.network() => {
            return Err(NetworkError::Invalid(format!(
                "no matching subnet for gateway {gw}"
            )))
        }
        Some(gw) => gw,
        None => Ipv6Addr::from(u128::from(subnet.network()) + 1),
    };
    if let Some(range) = req.ip_range {
        if range != range.canonical() || !range.within(&subnet) {
            return Err(NetworkError::Invalid(format!(
                "no matching subnet for range {range}"
            )));
        }
    }
    Ok(Ipv6Net {
        subnet,
        gateway,
        ip_range: req.ip_range,
        user_subnet: req.subnet.is_some(),
    })
}

/// The `n`th /64 of unique local addresses of network `id`: `fd`, then 40 bits of its ID
/// (the global ID RFC 4193 asks to be random: a network's ID is), then `n` as the subnet.
fn unique_local(id: &str, n: u8) -> Cidr6 {
    let digits = id.get(..10).unwrap_or("0000000000");
    let global = u64::from_str_radix(digits, 16).unwrap_or(0) & 0xff_ffff_ffff;
    let prefix = (0xfdu128 << 120) | (u128::from(global) << 80) | (u128::from(n) << 64);
    Cidr6 {
        addr: Ipv6Addr::from(prefix),
        prefix_len: 64,
    }
}

impl Ipv6Net {
    /// Whether `ip` may be a container's address: in the range (or subnet), not the
    /// subnet's own address or the gateway.
    pub fn assignable(&self, ip: Ipv6Addr) -> bool {
        self.subnet.contains(ip)
            && self.ip_range.is_none_or(|r| r.contains(ip))
            && ip != self.subnet.network()
            && ip != self.gateway
    }

    /// The first assignable address of the range not in `used` (at most `used.len() + 2`
    /// addresses are looked at: the gateway and the used ones are all that can be skipped).
    pub fn allocate(&self, used: &[Ipv6Addr]) -> Option<Ipv6Addr> {
        let used: HashSet<Ipv6Addr> = used.iter().copied().collect();
        let pool = self.ip_range.unwrap_or(self.subnet);
        let (first, last) = (u128::from(pool.network()), u128::from(pool.last()));
        (1..=used.len() as u128 + 2)
            .map_while(|i| first.checked_add(i).filter(|a| *a <= last))
            .map(Ipv6Addr::from)
            .find(|a| self.assignable(*a) && !used.contains(a))
    }
}

/// The IPv6 side of a container's endpoint on `net`: the address `asked` (`--ip6`) or the
/// next free one; none on a network without IPv6 (where asking for one is refused).
pub fn endpoint(
    net: &Network,
    asked: Option<Ipv6Addr>,
    used: &[Ipv6Addr],
) -> Result<Option<Endpoint6>, NetworkError> {
    let outside = |ip: Ipv6Addr| {
        NetworkError::Invalid(format!(
            "invalid config for network {}: invalid endpoint settings: no configured subnet or ip-range contain the IP address {ip}",
            net.name
        ))
    };
    let Some(side) = &net.ipv6 else {
        return match asked {
            Some(ip) => Err(outside(ip)),
            None => Ok(None),
        };
    };
    let ip = match asked {
        Some(_) if !side.user_subnet => {
            return Err(NetworkError::Invalid(
                "user specified IP address is supported only when connecting to networks with user configured subnets".into(),
            ))
        }
        Some(ip) if !side.assignable(ip) => return Err(outside(ip)),
        Some(ip) if used.contains(&ip) => return Err(NetworkError::AddressInUse),
        Some(ip) => ip,
        None => side
            .allocate(used)
            .ok_or_else(|| NetworkError::Full(net.name.clone()))?,
    };
    Ok(Some(Endpoint6 {
        ip,
        prefix_len: side.subnet.prefix_len,
        gateway: side.gateway,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::{endpoint as endpoint_on, plan as plan_network, EndpointRequest};
    use super::super::{NetworkRequest, BRIDGE};
    use super::*;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn with_ipv6(name: &str, v6: Ipv6Request, existing: &[Network]) -> Network {
        let req = NetworkRequest {
            name: name.into(),
            ipv6: Some(v6),
            ..Default::default()
        };
        let pools = [super::super::Cidr::parse("10.50.0.0/16").unwrap()];
        plan_network(req, existing, &pools).unwrap()
    }

    fn given(subnet: &str) -> Ipv6Request {
        Ipv6Request {
            subnet: Cidr6::parse(subnet),
            ..Default::default()
        }
    }

    #[test]
    fn a_network_without_a_subnet_gets_a_unique_local_64_of_its_own() {
        let a = with_ipv6("a", Ipv6Request::default(), &[]);
        let v6 = a.ipv6.clone().unwrap();
        assert_eq!(v6.subnet.prefix_len, 64);
        assert_eq!(v6.subnet.addr.octets()[0], 0xfd, "{}", v6.subnet);
        assert_eq!(v6.gateway, Ipv6Addr::from(u128::from(v6.subnet.addr) + 1));
        assert!(!v6.user_subnet);
        // Its IPv4 side is there too, and a second network's /64 differs.
        assert_eq!(a.subnet.to_string(), "10.50.0.0/16");
        let mut b = a.clone();
        b.ipv6 = Some(plan(&Ipv6Request::default(), &a.id, std::slice::from_ref(&a)).unwrap());
        assert_ne!(b.ipv6.unwrap().subnet, v6.subnet, "the same ID's next /64");
    }

    #[test]
    fn a_given_subnet_is_checked_as_docker_checks_it() {
        let a = with_ipv6("a", given("2001:db8:1::/64"), &[]);
        let refuse = |v6: Ipv6Request| {
            plan(&v6, "00", std::slice::from_ref(&a))
                .unwrap_err()
                .to_string()
        };
        assert!(refuse(given("2001:db8::/32")).contains("Pool overlaps"));
        assert!(refuse(given("2001:db8:2::1/64")).contains("it should be 2001:db8:2::/64"));
        assert!(refuse(given("2001:db8:2::/127")).contains("/16 to /126"));
        let gw = Ipv6Request {
            gateway: Some(ip("2001:db8:3::1")),
            ..given("2001:db8:2::/64")
        };
        assert!(refuse(gw).contains("no matching subnet for gateway"));
        let range = Ipv6Request {
            ip_range: Cidr6::parse("2001:db8:3::/96"),
            ..given("2001:db8:2::/64")
        };
        assert!(refuse(range).contains("no matching subnet for range"));
    }

    #[test]
    fn addresses_come_in_order_from_the_range_skipping_the_gateway() {
        // As docker-py's test asks: a /96 range, the gateway at ::ffff.
        let net = with_ipv6(
            "r",
            Ipv6Request {
                gateway: Some(ip("2001:389::ffff")),
                ip_range: Cidr6::parse("2001:389::/96"),
                ..given("2001:389::/64")
            },
            &[],
        );
        let side = net.ipv6.clone().unwrap();
        assert_eq!(side.allocate(&[]), Some(ip("2001:389::1")));
        assert_eq!(side.allocate(&[ip("2001:389::1")]), Some(ip("2001:389::2")));
        let tiny = with_ipv6("t", given("2001:db8::/126"), &[]);
        let tiny = tiny.ipv6.unwrap();
        assert_eq!(tiny.allocate(&[ip("2001:db8::2")]), Some(ip("2001:db8::3")));
        assert_eq!(tiny.allocate(&[ip("2001:db8::2"), ip("2001:db8::3")]), None);
    }

    #[test]
    fn an_endpoint_gets_its_ipv6_address_or_the_one_it_asks_for() {
        let net = with_ipv6("six", given("2001:db8::/64"), &[]);
        let ask = |v6: Option<&str>| EndpointRequest {
            ipv6: v6.map(ip),
            ..Default::default()
        };
        let e = endpoint_on(&net, &ask(None), &[]).unwrap();
        let v6 = e.ipv6.unwrap();
        assert_eq!((v6.ip, v6.prefix_len), (ip("2001:db8::2"), 64));
        assert_eq!(v6.gateway, ip("2001:db8::1"));
        let f00d =
            endpoint_on(&net, &ask(Some("2001:db8::f00d")), std::slice::from_ref(&e)).unwrap();
        assert_eq!(f00d.ipv6.unwrap().ip, ip("2001:db8::f00d"));
        let again = endpoint_on(&net, &ask(Some("2001:db8::2")), &[e]).unwrap_err();
        assert_eq!(again, NetworkError::AddressInUse);
        let outside = endpoint_on(&net, &ask(Some("2001:db9::2")), &[]).unwrap_err();
        assert!(
            outside.to_string().contains("no configured subnet"),
            "{outside}"
        );
        // A network without IPv6 gives none and refuses one asked for.
        let bridge = Network::default_bridge();
        assert_eq!(bridge.name, BRIDGE);
        assert_eq!(endpoint_on(&bridge, &ask(None), &[]).unwrap().ipv6, None);
        assert!(endpoint_on(&bridge, &ask(Some("2001:db8::5")), &[]).is_err());
        // Only on a subnet the user gave may an address be asked for.
        let ula = with_ipv6("ula", Ipv6Request::default(), &[]);
        let e = endpoint_on(&ula, &ask(Some("fd00::5")), &[]).unwrap_err();
        assert!(e.to_string().contains("user configured subnets"), "{e}");
    }

    #[test]
    fn the_guest_is_told_its_ipv6_route_only_where_it_goes() {
        let e = Endpoint6 {
            ip: ip("2001:db8::2"),
            prefix_len: 64,
            gateway: ip("2001:db8::1"),
        };
        assert_eq!(e.config(true).gateway, Some(ip("2001:db8::1")));
        assert_eq!(e.config(false).gateway, None);
        assert_eq!(e.config(false).address, ip("2001:db8::2"));
    }
}
