//! IPv4 networks in CIDR form (`10.1.0.0/16`): parsing, containment and overlap, as network
//! create and IPAM need them.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// An IPv4 address with a prefix length (0–32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Cidr {
    /// `addr/prefix_len`; `None` when the length is over 32.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Option<Cidr> {
        (prefix_len <= 32).then_some(Cidr { addr, prefix_len })
    }

    /// Parses `A.B.C.D/N`.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, len) = s.split_once('/')?;
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Cidr::new(ip.parse().ok()?, len.parse().ok()?)
    }

    pub fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0)
    }

    /// The network's own address (host bits zero).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The same prefix with the host bits zeroed.
    pub fn canonical(&self) -> Cidr {
        Cidr {
            addr: self.network(),
            prefix_len: self.prefix_len,
        }
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// Whether `self` lies wholly inside `outer`.
    pub fn within(&self, outer: &Cidr) -> bool {
        self.prefix_len >= outer.prefix_len && outer.contains(self.addr)
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.within(other) || other.within(self)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn parses_only_prefixes_of_ipv4_addresses() {
        assert_eq!(c("10.1.0.0/16").prefix_len, 16);
        for bad in [
            "10.1.0.0",
            "10.1.0.0/33",
            "10.1.0.0/",
            "10.1.0/8",
            "10.1.0.0/+8",
            "x/8",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn knows_its_network_broadcast_and_members() {
        let n = c("10.1.2.3/16");
        assert_eq!(n.network(), Ipv4Addr::new(10, 1, 0, 0));
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 1, 255, 255));
        assert_eq!(n.canonical(), c("10.1.0.0/16"));
        assert!(n.contains(Ipv4Addr::new(10, 1, 200, 7)));
        assert!(!n.contains(Ipv4Addr::new(10, 2, 0, 1)));
        assert_eq!(c("0.0.0.0/0").mask(), 0);
    }

    #[test]
    fn overlap_is_symmetric_and_exact() {
        assert!(c("10.1.0.0/16").overlaps(&c("10.1.5.0/24")));
        assert!(c("10.1.5.0/24").overlaps(&c("10.1.0.0/16")));
        assert!(c("10.0.0.0/8").overlaps(&c("10.200.0.0/16")));
        assert!(!c("10.1.0.0/16").overlaps(&c("10.2.0.0/16")));
        assert!(c("10.1.5.0/24").within(&c("10.1.0.0/16")));
        assert!(!c("10.1.0.0/16").within(&c("10.1.5.0/24")));
    }
}
