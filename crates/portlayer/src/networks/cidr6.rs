//! IPv6 networks in CIDR form (`2001:db8::/64`), as a network's IPv6 subnet and range need
//! them: parsing, containment and overlap (128-bit arithmetic on the address).

use std::fmt;
use std::net::Ipv6Addr;

use serde::{Deserialize, Serialize};

/// An IPv6 address with a prefix length (0–128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cidr6 {
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
}

impl Cidr6 {
    /// Parses `ADDR/N`.
    pub fn parse(s: &str) -> Option<Cidr6> {
        let (ip, len) = s.split_once('/')?;
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix_len: u8 = len.parse().ok()?;
        (prefix_len <= 128).then_some(Cidr6 {
            addr: ip.parse().ok()?,
            prefix_len,
        })
    }

    fn mask(&self) -> u128 {
        u128::MAX
            .checked_shl(128 - u32::from(self.prefix_len))
            .unwrap_or(0)
    }

    /// The network's own address (host bits zero).
    pub fn network(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) & self.mask())
    }

    /// The last address of the prefix.
    pub fn last(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) | !self.mask())
    }

    /// The same prefix with the host bits zeroed.
    pub fn canonical(&self) -> Cidr6 {
        Cidr6 {
            addr: self.network(),
            prefix_len: self.prefix_len,
        }
    }

    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & self.mask() == u128::from(self.network())
    }

    /// Whether `self` lies wholly inside `outer`.
    pub fn within(&self, outer: &Cidr6) -> bool {
        self.prefix_len >= outer.prefix_len && outer.contains(self.addr)
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Cidr6) -> bool {
        self.within(other) || other.within(self)
    }
}

impl fmt::Display for Cidr6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr6 {
        Cidr6::parse(s).unwrap()
    }

    #[test]
    fn parses_only_prefixes_of_ipv6_addresses() {
        assert_eq!(c("2001:db8::/64").prefix_len, 64);
        for bad in [
            "2001:db8::",
            "2001:db8::/129",
            "2001:db8::/",
            "10.0.0.0/8",
            "::/+8",
        ] {
            assert_eq!(Cidr6::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn knows_its_bounds_members_and_overlaps() {
        let n = c("2001:db8:1:2::5/64");
        assert_eq!(n.network(), "2001:db8:1:2::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            n.last(),
            "2001:db8:1:2:ffff:ffff:ffff:ffff"
                .parse::<Ipv6Addr>()
                .unwrap()
        );
        assert_eq!(n.canonical(), c("2001:db8:1:2::/64"));
        assert!(n.contains("2001:db8:1:2::f00d".parse().unwrap()));
        assert!(!n.contains("2001:db8:1:3::1".parse().unwrap()));
        assert!(c("2001:db8:1:2::/96").within(&n));
        assert!(n.overlaps(&c("2001:db8::/32")) && c("2001:db8::/32").overlaps(&n));
        assert!(!n.overlaps(&c("2001:db8:1:3::/64")));
        assert_eq!(c("::/0").mask(), 0);
    }
}
