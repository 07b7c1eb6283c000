//! The guest's network interfaces, configured with the classic socket ioctls (no netlink):
//! found by MAC among the kernel's interfaces, given their address and netmask, brought up,
//! and the first gateway made the default route.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tether_proto::Interface;

pub(crate) fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn socket() -> io::Result<OwnedFd> {
    socket_of(libc::AF_INET)
}

/// A datagram socket of address family `family`, for the interface ioctls.
pub(crate) fn socket_of(family: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the fd is owned right below.
    let fd = check(unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just returned by socket(2) and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    req
}

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; the kernel reads it as sockaddr_in.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// The names of the kernel's interfaces.
fn interface_names() -> io::Result<Vec<String>> {
    // SAFETY: if_nameindex returns a list we free below, or null on failure.
    let list = unsafe { libc::if_nameindex() };
    if list.is_null() {
        return Err(io::Error::last_os_error());
    }
    let mut names = Vec::new();
    let mut p = list;
    // SAFETY: the list ends with an entry whose index is 0; each name is a C string.
    unsafe {
        while (*p).if_index != 0 {
            names.push(
                std::ffi::CStr::from_ptr((*p).if_name)
                    .to_string_lossy()
                    .into_owned(),
            );
            p = p.add(1);
        }
        libc::if_freenameindex(list);
    }
    Ok(names)
}

fn mac_of(sock: &OwnedFd, name: &str) -> io::Result<String> {
    let mut req = ifreq(name);
    // SAFETY: SIOCGIFHWADDR fills the ifreq we own.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) })?;
    // SAFETY: the union's hwaddr member is what SIOCGIFHWADDR filled in.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    Ok(data[..6]
        .iter()
        .map(|b| format!("{:02x}", *b as u8))
        .collect::<Vec<_>>()
        .join(":"))
}

/// The name of the interface with MAC `mac`.
pub fn find_by_mac(mac: &str) -> io::Result<String> {
    let sock = socket()?;
    let want = mac.to_ascii_lowercase();
    for name in interface_names()? {
        if mac_of(&sock, &name).is_ok_and(|m| m == want) {
            return Ok(name);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no interface has MAC {mac}"),
    ))
}

/// Gives interface `name` its address and netmask, and brings it up.
pub fn configure(name: &str, iface: &Interface) -> io::Result<()> {
    let sock = socket()?;
    let fd = sock.as_raw_fd();
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_addr = sockaddr(iface.address);
    // SAFETY: SIOCSIFADDR reads the ifreq we own.
    check(unsafe { libc::ioctl(fd, libc::SIOCSIFADDR, &req) })?;
    let mask = u32::MAX
        .checked_shl(32 - u32::from(iface.prefix_len.min(32)))
        .unwrap_or(0);
    req.ifr_ifru.ifru_netmask = sockaddr(Ipv4Addr::from(mask));
    // SAFETY: SIOCSIFNETMASK reads the ifreq we own.
    check(unsafe { libc::ioctl(fd, libc::SIOCSIFNETMASK, &req) })?;
    // SAFETY: SIOCGIFFLAGS fills the ifreq we own.
    check(unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: the union's flags member is what SIOCGIFFLAGS filled in.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    check(unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) })?;
    Ok(())
}

/// Takes interface `name` down, sets its MAC to `mac` and, with an address, sets that and
/// brings it up; without one, clears its address and leaves it down.
pub fn set(name: &str, mac: &str, address: Option<(Ipv4Addr, u8)>) -> io::Result<()> {
    let sock = socket()?;
    let fd = sock.as_raw_fd();
    let mut req = ifreq(name);
    // SAFETY: SIOCGIFFLAGS fills the ifreq we own.
    check(unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: the union's flags member is what SIOCGIFFLAGS filled in.
    unsafe {
        req.ifr_ifru.ifru_flags &= !((libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short);
    }
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    check(unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) })?;
    let mut hw = ifreq(name);
    let bytes = parse_mac(mac)?;
    // SAFETY: the union's hwaddr member is a sockaddr we fill in before SIOCSIFHWADDR.
    unsafe {
        hw.ifr_ifru.ifru_hwaddr.sa_family = libc::ARPHRD_ETHER;
        for (i, b) in bytes.iter().enumerate() {
            hw.ifr_ifru.ifru_hwaddr.sa_data[i] = *b as libc::c_char;
        }
    }
    // SAFETY: SIOCSIFHWADDR reads the ifreq we own.
    check(unsafe { libc::ioctl(fd, libc::SIOCSIFHWADDR, &hw) })?;
    match address {
        Some((ip, prefix_len)) => configure(
            name,
            &Interface {
                mac: mac.to_string(),
                address: ip,
                prefix_len,
                gateway: None,
                ipv6: None,
                link_local: Vec::new(),
            },
        ),
        None => {
            let mut req = ifreq(name);
            req.ifr_ifru.ifru_addr = sockaddr(Ipv4Addr::UNSPECIFIED);
            // SAFETY: SIOCSIFADDR reads the ifreq we own; 0.0.0.0 removes the address.
            check(unsafe { libc::ioctl(fd, libc::SIOCSIFADDR, &req) }).map(|_| ())
        }
    }
}

/// Gives interface `name` (configured, up) its link-local addresses beside its own
/// (`--link-local-ip`): an IPv4 one as an alias (`eth0:1`, …) on `169.254.0.0/16`, an IPv6
/// one as a /64.
pub fn add_link_local(name: &str, addresses: &[std::net::IpAddr]) -> io::Result<()> {
    let mut aliases = 0;
    for a in addresses {
        match a {
            std::net::IpAddr::V4(v4) => {
                aliases += 1;
                let alias = Interface {
                    mac: String::new(),
                    address: *v4,
                    prefix_len: 16,
                    gateway: None,
                    ipv6: None,
                    link_local: Vec::new(),
                };
                configure(&format!("{name}:{aliases}"), &alias)?;
            }
            std::net::IpAddr::V6(v6) => crate::netif6::add_address(name, *v6, 64)?,
        }
    }
    Ok(())
}

/// `xx:xx:xx:xx:xx:xx` as bytes.
fn parse_mac(mac: &str) -> io::Result<[u8; 6]> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a MAC address: {mac}"),
        )
    };
    let parts: Vec<u8> = mac
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    <[u8; 6]>::try_from(parts.as_slice()).map_err(|_| bad())
}

/// Adds the default route through `gateway`.
pub fn default_route(gateway: Ipv4Addr) -> io::Result<()> {
    let sock = socket()?;
    // SAFETY: rtentry is plain old data; all-zero is a valid value.
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
    rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
    rt.rt_gateway = sockaddr(gateway);
    rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    // SAFETY: SIOCADDRT reads the rtentry we own.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT, &rt) })?;
    Ok(())
}

/// Makes `gateway` the only default route: any other is removed first (the interface that
/// carried it may still be up).
pub fn replace_default_route(gateway: Ipv4Addr) -> io::Result<()> {
    let sock = socket()?;
    // A handful at most: one per interface that ever had a gateway.
    for _ in 0..16 {
        // SAFETY: rtentry is plain old data; all-zero is a valid value.
        let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
        rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
        // SAFETY: SIOCDELRT reads the rtentry we own.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCDELRT, &rt) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                break;
            }
            return Err(e);
        }
    }
    default_route(gateway)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_as_six_bytes_or_are_refused() {
        assert_eq!(
            parse_mac("02:42:AC:10:00:0a").unwrap(),
            [2, 0x42, 0xac, 0x10, 0, 0x0a]
        );
        for bad in [
            "02:42:ac:10:00",
            "02:42:ac:10:00:0a:01",
            "zz:42:ac:10:00:0a",
            "",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }
}
