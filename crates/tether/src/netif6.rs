//! The IPv6 side of the guest's interfaces, with the same classic socket ioctls as
//! `netif.rs` (no netlink): an address, without duplicate address detection (the VCH hands
//! each address to one container, and a tentative address would not answer for a second or
//! so after the container starts), and the IPv6 default route.

use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use tether_proto::Ipv6Config;

use crate::netif::{check, socket_of};

/// `struct in6_ifreq` (linux/ipv6.h).
#[repr(C)]
struct In6Ifreq {
    addr: libc::in6_addr,
    prefix_len: u32,
    ifindex: libc::c_int,
}

/// `struct in6_rtmsg` (linux/ipv6_route.h).
#[repr(C)]
struct In6Rtmsg {
    dst: libc::in6_addr,
    src: libc::in6_addr,
    gateway: libc::in6_addr,
    kind: u32,
    dst_len: u16,
    src_len: u16,
    metric: u32,
    info: libc::c_ulong,
    flags: u32,
    ifindex: libc::c_int,
}

fn socket() -> io::Result<OwnedFd> {
    socket_of(libc::AF_INET6)
}

fn index(name: &str) -> io::Result<libc::c_int> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "an interface name with NUL"))?;
    // SAFETY: if_nametoindex reads the C string we own.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i as libc::c_int),
    }
}

fn in6(ip: Ipv6Addr) -> libc::in6_addr {
    libc::in6_addr {
        s6_addr: ip.octets(),
    }
}

/// Gives interface `name` (up) its IPv6 address and, with a gateway, makes that the IPv6
/// default route through it.
pub fn configure(name: &str, cfg: &Ipv6Config) -> io::Result<()> {
    add_address(name, cfg.address, cfg.prefix_len)?;
    match cfg.gateway {
        Some(gw) => replace_default_route(name, gw),
        None => Ok(()),
    }
}

/// Adds `address/prefix_len` to interface `name` (up).
pub fn add_address(name: &str, address: Ipv6Addr, prefix_len: u8) -> io::Result<()> {
    // Before the address: one added while DAD is on stays tentative for a while.
    let dad = format!("/proc/sys/net/ipv6/conf/{name}/accept_dad");
    std::fs::write(&dad, "0").map_err(|e| io::Error::new(e.kind(), format!("{dad}: {e}")))?;
    let req = In6Ifreq {
        addr: in6(address),
        prefix_len: u32::from(prefix_len.min(128)),
        ifindex: index(name)?,
    };
    let sock = socket()?;
    // SAFETY: SIOCSIFADDR on an AF_INET6 socket reads the in6_ifreq we own.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFADDR, &req) })?;
    Ok(())
}

fn default_route(ifindex: libc::c_int, gateway: Option<Ipv6Addr>) -> In6Rtmsg {
    In6Rtmsg {
        dst: in6(Ipv6Addr::UNSPECIFIED),
        src: in6(Ipv6Addr::UNSPECIFIED),
        gateway: in6(gateway.unwrap_or(Ipv6Addr::UNSPECIFIED)),
        kind: 0,
        dst_len: 0,
        src_len: 0,
        metric: 1,
        info: 0,
        flags: if gateway.is_some() {
            (libc::RTF_UP | libc::RTF_GATEWAY) as u32
        } else {
            0
        },
        ifindex,
    }
}

/// Makes `gateway`, on interface `name`, the only IPv6 default route of ours (metric 1).
pub fn replace_default_route(name: &str, gateway: Ipv6Addr) -> io::Result<()> {
    let sock = socket()?;
    // A handful at most: one per interface that ever had a gateway.
    for _ in 0..16 {
        let rt = default_route(0, None);
        // SAFETY: SIOCDELRT on an AF_INET6 socket reads the in6_rtmsg we own.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCDELRT, &rt) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                break;
            }
            return Err(e);
        }
    }
    let rt = default_route(index(name)?, Some(gateway));
    // SAFETY: SIOCADDRT on an AF_INET6 socket reads the in6_rtmsg we own.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT, &rt) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_structures_have_their_c_sizes() {
        // in6_ifreq: 16 + 4 + 4; in6_rtmsg: 3 × 16 + 4 + 2 + 2 + 4 (+4 padding) + 8 + 4 + 4.
        assert_eq!(std::mem::size_of::<In6Ifreq>(), 24);
        assert_eq!(std::mem::size_of::<In6Rtmsg>(), 80);
    }
}
