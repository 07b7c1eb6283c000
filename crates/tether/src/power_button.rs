//! The VM's power button: a shutdown asked from outside (QEMU's `system_powerdown`, a
//! hypervisor's "shut down guest") reaches the guest as an ACPI power-button event, which the
//! kernel's button driver multicasts on generic netlink (family `acpi_event`, group
//! `acpi_mc_group`, as acpid reads it). The tether passes it on to the host, which stops the
//! container as `docker stop` does; a press while no process runs is only logged.
//!
//! Everything read here comes from the kernel, yet every length is checked before use: a
//! message that does not parse is skipped.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_GENERIC: libc::c_int = 16;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;
const ACPI_GENL_ATTR_EVENT: u16 = 1;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSG_HDR: usize = 16;
const GENL_HDR: usize = 4;

const FAMILY: &str = "acpi_event";
const GROUP: &str = "acpi_mc_group";
/// The device class the ACPI button driver gives a power button's events.
const POWER_CLASS: &[u8] = b"button/power";

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Calls `pressed` for each press of the VM's power button, for as long as the tether runs.
/// Returns only when listening cannot start (no ACPI events in this kernel).
pub fn watch(pressed: impl Fn()) -> io::Result<()> {
    let sock = open()?;
    let (family, group) = resolve(&sock)?;
    // SAFETY: a u32 option value of the size given, on a socket this function owns.
    check(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_NETLINK,
            libc::NETLINK_ADD_MEMBERSHIP,
            (&group as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    })?;
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match receive(&sock, &mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // ENOBUFS: events were dropped while this thread was busy; the next ones count.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
            Err(e) => return Err(e),
        };
        for msg in messages(&buf[..n]) {
            if msg.kind == family && is_power_button(msg.payload) {
                pressed();
            }
        }
    }
}

fn open() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the descriptor is owned at once.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_GENERIC,
        )
    })?;
    // SAFETY: fd was just returned by socket(2) and nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_nl is valid; the family is set below.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: addr is a sockaddr_nl of the length given.
    check(unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    })?;
    Ok(sock)
}

fn receive(sock: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is writable for its whole length.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Asks the generic netlink controller for the ACPI event family's id and multicast group.
fn resolve(sock: &OwnedFd) -> io::Result<(u16, u32)> {
    let request = family_request(FAMILY);
    // SAFETY: request is readable for its whole length.
    let sent = unsafe { libc::send(sock.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 8192];
    let n = receive(sock, &mut buf)?;
    let found = messages(&buf[..n])
        .find(|m| m.kind == GENL_ID_CTRL)
        .and_then(|m| family_and_group(m.payload, GROUP));
    found.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "the kernel has no ACPI event family (acpi_event) on generic netlink",
        )
    })
}

/// A CTRL_CMD_GETFAMILY request for `name`.
fn family_request(name: &str) -> Vec<u8> {
    let mut attr = Vec::new();
    put_attr(
        &mut attr,
        CTRL_ATTR_FAMILY_NAME,
        &[name.as_bytes(), &[0]].concat(),
    );
    let len = NLMSG_HDR + GENL_HDR + attr.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&GENL_ID_CTRL.to_ne_bytes());
    msg.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    msg.extend_from_slice(&[CTRL_CMD_GETFAMILY, 1, 0, 0]); // genl: cmd, version, reserved
    msg.extend_from_slice(&attr);
    msg
}

fn put_attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + (align4(len) - len), 0);
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One generic netlink message: its family (the netlink type) and what follows the genl header.
struct Message<'a> {
    kind: u16,
    payload: &'a [u8],
}

/// The generic netlink messages in `buf`; a truncated one ends the list.
fn messages(buf: &[u8]) -> impl Iterator<Item = Message<'_>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let len = u32::from_ne_bytes(rest.get(0..4)?.try_into().ok()?) as usize;
        if len < NLMSG_HDR + GENL_HDR || len > rest.len() {
            return None;
        }
        let kind = u16::from_ne_bytes(rest[4..6].try_into().ok()?);
        let payload = &rest[NLMSG_HDR + GENL_HDR..len];
        rest = &rest[align4(len).min(rest.len())..];
        Some(Message { kind, payload })
    })
}

/// The attributes in `buf` as (type, value); a truncated one ends the list.
fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let len = u16::from_ne_bytes(rest.get(0..2)?.try_into().ok()?) as usize;
        if len < 4 || len > rest.len() {
            return None;
        }
        let kind = u16::from_ne_bytes(rest[2..4].try_into().ok()?) & NLA_TYPE_MASK;
        let value = &rest[4..len];
        rest = &rest[align4(len).min(rest.len())..];
        Some((kind, value))
    })
}

/// From a controller's answer: the family id, and the id of its multicast group `group`.
fn family_and_group(payload: &[u8], group: &str) -> Option<(u16, u32)> {
    let mut family = None;
    let mut group_id = None;
    for (kind, value) in attrs(payload) {
        match kind {
            CTRL_ATTR_FAMILY_ID => {
                family = Some(u16::from_ne_bytes(value.get(0..2)?.try_into().ok()?))
            }
            CTRL_ATTR_MCAST_GROUPS => {
                group_id = attrs(value).find_map(|(_, entry)| group_in(entry, group));
            }
            _ => {}
        }
    }
    Some((family?, group_id?))
}

fn group_in(entry: &[u8], wanted: &str) -> Option<u32> {
    let mut name = None;
    let mut id = None;
    for (kind, value) in attrs(entry) {
        match kind {
            CTRL_ATTR_MCAST_GRP_NAME => name = Some(value.split(|b| *b == 0).next()?),
            CTRL_ATTR_MCAST_GRP_ID => {
                id = Some(u32::from_ne_bytes(value.get(0..4)?.try_into().ok()?))
            }
            _ => {}
        }
    }
    (name? == wanted.as_bytes()).then_some(id?)
}

/// Whether an ACPI event message is a power button's (its device class, the first 20 bytes of
/// the event, is `button/power`).
fn is_power_button(payload: &[u8]) -> bool {
    attrs(payload).any(|(kind, event)| {
        kind == ACPI_GENL_ATTR_EVENT
            && event
                .get(..20)
                .and_then(|class| class.split(|b| *b == 0).next())
                == Some(POWER_CLASS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn genl(kind: u16, attrs: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDR + GENL_HDR + attrs.len();
        let mut m = (len as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[1, 1, 0, 0]);
        m.extend_from_slice(attrs);
        m
    }

    fn event(class: &str) -> Vec<u8> {
        let mut e = vec![0u8; 44];
        e[..class.len()].copy_from_slice(class.as_bytes());
        e[20..20 + 6].copy_from_slice(b"PNP0C0");
        let mut a = Vec::new();
        put_attr(&mut a, ACPI_GENL_ATTR_EVENT, &e);
        a
    }

    #[test]
    fn the_controllers_answer_gives_the_family_and_its_group() {
        let mut group = Vec::new();
        put_attr(&mut group, CTRL_ATTR_MCAST_GRP_ID, &9u32.to_ne_bytes());
        put_attr(&mut group, CTRL_ATTR_MCAST_GRP_NAME, b"acpi_mc_group\0");
        let mut other = Vec::new();
        put_attr(&mut other, CTRL_ATTR_MCAST_GRP_ID, &4u32.to_ne_bytes());
        put_attr(&mut other, CTRL_ATTR_MCAST_GRP_NAME, b"other\0");
        let mut groups = Vec::new();
        put_attr(&mut groups, 1, &other);
        put_attr(&mut groups, 2, &group);
        let mut a = Vec::new();
        put_attr(&mut a, CTRL_ATTR_FAMILY_NAME, b"acpi_event\0");
        put_attr(&mut a, CTRL_ATTR_FAMILY_ID, &27u16.to_ne_bytes());
        // Nested attributes carry NLA_F_NESTED in the kernel's answers.
        put_attr(&mut a, CTRL_ATTR_MCAST_GROUPS | 0x8000, &groups);
        let answer = genl(GENL_ID_CTRL, &a);
        let m = messages(&answer).next().unwrap();
        assert_eq!(family_and_group(m.payload, GROUP), Some((27, 9)));
        assert_eq!(family_and_group(m.payload, "nope"), None);
    }

    #[test]
    fn only_a_power_buttons_event_counts() {
        let mut buf = genl(27, &event("button/power"));
        buf.extend(genl(27, &event("button/sleep")));
        buf.extend(genl(27, &event("button/powerx")));
        let found: Vec<bool> = messages(&buf).map(|m| is_power_button(m.payload)).collect();
        assert_eq!(found, [true, false, false]);
    }

    #[test]
    fn truncated_messages_and_attributes_end_the_list() {
        let whole = genl(27, &event("button/power"));
        for cut in 0..whole.len() {
            let seen: Vec<bool> = messages(&whole[..cut])
                .map(|m| is_power_button(m.payload))
                .collect();
            assert!(seen.iter().all(|p| !p), "cut at {cut}: {seen:?}");
        }
        let mut lying = whole.clone();
        lying[0..4].copy_from_slice(&10_000u32.to_ne_bytes());
        assert_eq!(messages(&lying).count(), 0);
        let tiny_attr = genl(27, &[3, 0, 1, 0]);
        assert!(!messages(&tiny_attr).any(|m| is_power_button(m.payload)));
    }

    #[test]
    fn the_request_names_the_family() {
        let req = family_request("acpi_event");
        let m = messages(&req).next().unwrap();
        assert_eq!(m.kind, GENL_ID_CTRL);
        let (kind, value) = attrs(m.payload).next().unwrap();
        assert_eq!((kind, value), (CTRL_ATTR_FAMILY_NAME, &b"acpi_event\0"[..]));
        assert_eq!(req.len() % 4, 0);
    }
}
