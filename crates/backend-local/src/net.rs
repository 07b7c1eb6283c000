//! The VCH's network namespace and what lives in it: one bridge per network, and one tap
//! device per VM interface, attached to its network's bridge.
//!
//! ```text
//!   host namespace                 │ VCH namespace  /run/netns/vic-<hash of the state dir>
//!                                  │   lo, up
//!   QEMU (jailed, host netns)      │   vic-bridge  172.16.0.1/16 ("bridge" network)
//!     -netdev tap,fd=3 ───────────────► tap-<id12>  (master vic-bridge) ◄── the VM's eth0
//! ```
//!
//! The backend opens each tap in the namespace (a thread enters it with `setns`) and hands the
//! open descriptor to QEMU, which needs neither `/dev/net/tun` in its jail nor a capability.
//! A tap is not persistent: it goes when the last descriptor closes, i.e. when its QEMU ends,
//! so a dead VM leaves no device behind. The namespace itself is the VCH's: `vic-machine
//! delete` removes it ([`delete_namespace`]).
//!
//! The way out of the namespace (the uplink and its NAT) is `uplink.rs`'s.
//!
//! Links, addresses and bridge membership are set with iproute2 (`ip -n NS …`), which makes
//! the namespace's changes atomic enough per command and says what failed in its own words.

use std::ffi::CString;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use hypervisor::{BackendError, NetworkSpec};

/// Where iproute2 keeps named network namespaces.
const NETNS_DIR: &str = "/run/netns";
/// Linux's limit on an interface name (IFNAMSIZ − 1).
const IFNAME_MAX: usize = 15;

fn failed(msg: String) -> BackendError {
    BackendError::Failed(msg)
}

/// The name of the network namespace of the VCH whose state is in `state_dir`: stable for
/// the directory, different for two VCHs on one host even when their names are equal.
pub fn namespace_name(state_dir: &Path) -> String {
    let hash = state_dir
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("vic-{:012x}", hash & 0xffff_ffff_ffff)
}

/// Removes the namespace `name` if it exists (with every bridge and tap in it).
pub fn delete_namespace(name: &str) -> Result<(), BackendError> {
    crate::uplink::remove(name)?;
    if !Path::new(NETNS_DIR).join(name).exists() {
        return Ok(());
    }
    // The kernel tears a namespace down after its last user has gone, in its own time: the
    // veths onto operators' bridges go now, so that none is seen after delete returns.
    crate::external::remove_veths(name)?;
    ip(&["netns", "delete", name])
}

/// Runs `ip ARGS`; its own error on failure.
fn ip(args: &[&str]) -> Result<(), BackendError> {
    tool("ip", args)
}

/// Runs iproute2's `prog ARGS` (bounded in time); its own error on failure.
fn tool(prog: &str, args: &[&str]) -> Result<(), BackendError> {
    let out = crate::cmd::output(Command::new(prog).args(args)).map_err(|e| {
        failed(format!(
            "running {prog} {} (Debian's iproute2): {e}",
            args.join(" ")
        ))
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(failed(format!(
        "{prog} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// A network as the VCH's namespace shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkView {
    /// The network's name (the bridge's alias), or the device's name.
    pub name: String,
    pub device: String,
    /// Its address, `A.B.C.D/N`.
    pub address: String,
}

#[derive(serde::Deserialize)]
struct IpLink {
    ifname: String,
    #[serde(default)]
    ifalias: Option<String>,
    #[serde(default)]
    addr_info: Vec<IpAddr>,
}

#[derive(serde::Deserialize)]
struct IpAddr {
    family: String,
    local: String,
    prefixlen: u8,
}

/// The bridges and the uplink of namespace `ns`, with their addresses (none when the
/// namespace is not there).
pub fn networks(ns: &str) -> Result<Vec<NetworkView>, BackendError> {
    if !Path::new(NETNS_DIR).join(ns).exists() {
        return Ok(Vec::new());
    }
    let read = |what: &str| -> Result<Vec<IpLink>, BackendError> {
        let out = crate::cmd::output(Command::new("ip").args(["-j", "-n", ns, what, "show"]))
            .map_err(|e| failed(format!("running ip: {e}")))?;
        serde_json::from_slice(&out.stdout)
            .map_err(|e| failed(format!("reading `ip -j {what} show`: {e}")))
    };
    // `addr show` has the addresses, `link show` the aliases.
    let aliases = read("link")?;
    Ok(read("addr")?
        .into_iter()
        .filter(|l| l.ifname.starts_with("vic-") || l.ifname == crate::uplink::UPLINK)
        .filter_map(|l| {
            let a = l.addr_info.iter().find(|a| a.family == "inet")?;
            let alias = aliases
                .iter()
                .find(|x| x.ifname == l.ifname)
                .and_then(|x| x.ifalias.clone());
            Some(NetworkView {
                name: alias.unwrap_or_else(|| l.ifname.clone()),
                address: format!("{}/{}", a.local, a.prefixlen),
                device: l.ifname,
            })
        })
        .collect())
}

/// The bridge device of network `name`.
pub fn bridge_of(name: &str) -> String {
    let mut b = format!("vic-{name}");
    b.truncate(IFNAME_MAX);
    b
}

/// The tap device of interface `index` of VM `id`.
pub fn tap_of(id: &str, index: usize) -> String {
    format!("t{index}-{}", &id[..id.len().min(12)])
}

/// A VCH's network namespace.
#[derive(Debug, Clone)]
pub struct VchNet {
    name: String,
    /// The host's end of the uplink, when there is one.
    host_gateway: Option<std::net::Ipv4Addr>,
}

impl VchNet {
    /// The namespace `name`, made (with its loopback up) if it does not exist.
    pub fn open(name: &str) -> Result<VchNet, BackendError> {
        if !Path::new(NETNS_DIR).join(name).exists() {
            ip(&["netns", "add", name])?;
        }
        let mut net = VchNet {
            name: name.to_string(),
            host_gateway: None,
        };
        net.ip(&["link", "set", "lo", "up"])?;
        match crate::uplink::ensure(name) {
            Ok(gw) => net.host_gateway = Some(gw),
            Err(e) => tracing::warn!(
                namespace = name,
                "the VCH's containers have no way out (egress): {e}"
            ),
        }
        Ok(net)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host's address at the other end of the uplink.
    pub fn host_gateway(&self) -> Option<std::net::Ipv4Addr> {
        self.host_gateway
    }

    fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    fn ip(&self, args: &[&str]) -> Result<(), BackendError> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Makes network `net`'s bridge with its gateway address (and IPv6 one), up (idempotent).
    /// The IPv6 gateway skips duplicate address detection: the VCH gives it to nobody else.
    pub fn ensure_bridge(&self, net: &NetworkSpec) -> Result<(), BackendError> {
        let bridge = bridge_of(&net.name);
        if self.ip(&["link", "show", "dev", &bridge]).is_err() {
            self.ip(&["link", "add", "name", &bridge, "type", "bridge"])?;
        }
        let cidr = format!("{}/{}", net.gateway, net.prefix_len);
        self.ip(&["addr", "replace", &cidr, "dev", &bridge])?;
        if let Some((gw, len)) = net.ipv6 {
            let cidr = format!("{gw}/{len}");
            self.ip(&["-6", "addr", "replace", &cidr, "dev", &bridge, "nodad"])?;
        }
        self.ip(&["link", "set", "dev", &bridge, "up"])?;
        // The network's name on the bridge, for `vic-machine inspect`.
        self.ip(&["link", "set", "dev", &bridge, "alias", &net.label])?;
        self.forwarding(&bridge, true, !net.internal);
        Ok(())
    }

    /// What the namespace forwards for `bridge` (see `uplink::set_forwarding`); without an
    /// uplink the namespace forwards nothing and there is nothing to set.
    fn forwarding(&self, bridge: &str, present: bool, out: bool) {
        let uplink = self.ip(&["link", "show", "dev", crate::uplink::UPLINK]);
        if uplink.is_err() {
            return;
        }
        if let Err(e) = crate::uplink::set_forwarding(&self.name, bridge, present, out) {
            tracing::warn!(%bridge, "setting the network's forwarding failed: {e}");
        }
    }

    /// Removes network `name`'s bridge, if it is there.
    pub fn remove_bridge(&self, name: &str) -> Result<(), BackendError> {
        let bridge = bridge_of(name);
        if self.ip(&["link", "show", "dev", &bridge]).is_err() {
            return Ok(());
        }
        self.forwarding(&bridge, false, false);
        self.ip(&["link", "delete", "dev", &bridge])
    }

    /// Runs `f` on a thread of its own that has entered the namespace (setns moves only the
    /// calling thread; what `f` makes there, sockets and taps, stays in the namespace).
    fn inside<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, BackendError> {
        let ns = std::fs::File::open(self.path())
            .map_err(|e| failed(format!("opening network namespace {}: {e}", self.name)))?;
        std::thread::spawn(move || -> std::io::Result<T> {
            // SAFETY: setns on a descriptor we own; it affects this thread alone.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            f()
        })
        .join()
        .map_err(|_| failed(format!("the thread {what} panicked")))?
        .map_err(|e| failed(format!("{what} in {}: {e}", self.name)))
    }

    /// Opens a new tap device `tap` in the namespace, attached to network `network`'s bridge
    /// and up (see [`VchNet::attach`]), or on no network and down (a spare); the descriptor
    /// is QEMU's to hold.
    pub fn open_tap(
        &self,
        tap: &str,
        network: Option<&str>,
        isolated: bool,
    ) -> Result<OwnedFd, BackendError> {
        let name = tap.to_string();
        let fd = self.inside(&format!("opening tap {tap}"), move || open_tap(&name))?;
        if let Some(network) = network {
            self.attach(tap, network, isolated)?;
        }
        Ok(fd)
    }

    /// Attaches `tap` to network `network`'s bridge, up, isolated from the bridge's other
    /// ports when `isolated`.
    pub fn attach(&self, tap: &str, network: &str, isolated: bool) -> Result<(), BackendError> {
        let bridge = bridge_of(network);
        self.ip(&["link", "set", "dev", tap, "master", &bridge, "up"])?;
        if isolated {
            tool(
                "bridge",
                &[
                    "-n", &self.name, "link", "set", "dev", tap, "isolated", "on",
                ],
            )?;
        }
        Ok(())
    }

    /// Takes `tap` off its bridge, down.
    pub fn detach(&self, tap: &str) -> Result<(), BackendError> {
        self.ip(&["link", "set", "dev", tap, "nomaster", "down"])
    }

    /// A UDP socket and a TCP listener bound to `at` inside the namespace.
    pub fn listen(
        &self,
        at: SocketAddrV4,
    ) -> Result<(std::net::UdpSocket, std::net::TcpListener), BackendError> {
        self.inside(&format!("binding {at}"), move || {
            let udp = std::net::UdpSocket::bind(at)?;
            let tcp = std::net::TcpListener::bind(at)?;
            udp.set_nonblocking(true)?;
            tcp.set_nonblocking(true)?;
            Ok((udp, tcp))
        })
    }
}

/// In a forked child: makes `fds` its descriptors 3, 4, … and open across exec. They are
/// first moved above any target, so one cannot overwrite another. Async-signal-safe.
pub(crate) fn pass_fds(fds: &[i32]) -> std::io::Result<()> {
    const HIGH: i32 = 256;
    let mut moved = [0i32; crate::qemu::MAX_FDS];
    if fds.len() > moved.len() {
        return Err(std::io::Error::from_raw_os_error(libc::EMFILE));
    }
    for (i, fd) in fds.iter().enumerate() {
        // SAFETY: fcntl and dup2 on descriptors this process holds.
        let high = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, HIGH) };
        if high < 0 {
            return Err(std::io::Error::last_os_error());
        }
        moved[i] = high;
    }
    for (i, high) in moved[..fds.len()].iter().enumerate() {
        // SAFETY: as above; dup2 leaves the new descriptor open across exec.
        if unsafe { libc::dup2(*high, 3 + i as i32) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

impl VchNet {
    /// A new non-blocking socket of `kind` (`SOCK_STREAM`, `SOCK_DGRAM`) made inside the
    /// namespace, by a thread that enters it: a socket keeps the namespace it was made in.
    fn socket_inside(&self, kind: libc::c_int) -> Result<OwnedFd, BackendError> {
        self.inside("making a socket", move || {
            // SAFETY: socket(2) with constant arguments; the fd is owned right below.
            let fd = unsafe {
                libc::socket(
                    libc::AF_INET,
                    kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    0,
                )
            };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: fd was just returned by socket(2) and is not owned elsewhere.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })
    }

    /// A TCP connection to `to` from inside the namespace, connected from the runtime within
    /// [`DIAL_TIMEOUT`].
    pub async fn dial(&self, to: SocketAddrV4) -> Result<tokio::net::TcpStream, BackendError> {
        let fd = self.socket_inside(libc::SOCK_STREAM)?;
        // SAFETY: `fd` is an unconnected, non-blocking TCP socket we own.
        let socket = unsafe { tokio::net::TcpSocket::from_raw_fd(fd.into_raw_fd()) };
        match tokio::time::timeout(DIAL_TIMEOUT, socket.connect(to.into())).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(failed(format!("connecting to {to}: {e}"))),
            Err(_) => Err(failed(format!(
                "connecting to {to}: no answer within {} s",
                DIAL_TIMEOUT.as_secs()
            ))),
        }
    }

    /// A UDP socket inside the namespace, connected to `to` (it sends there and hears only
    /// from there).
    pub fn dial_udp(&self, to: SocketAddrV4) -> Result<tokio::net::UdpSocket, BackendError> {
        let fd = self.socket_inside(libc::SOCK_DGRAM)?;
        let socket = std::net::UdpSocket::from(fd);
        socket
            .connect(to)
            .map_err(|e| failed(format!("addressing {to}: {e}")))?;
        tokio::net::UdpSocket::from_std(socket)
            .map_err(|e| failed(format!("registering a UDP socket: {e}")))
    }
}

/// How long a connection into the namespace may take.
const DIAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `struct ifreq` as TUNSETIFF reads it: a name and the flags.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// Opens `/dev/net/tun` as a new tap device `name` (no packet information header).
fn open_tap(name: &str) -> std::io::Result<OwnedFd> {
    let path = CString::new("/dev/net/tun").expect("no NUL");
    // SAFETY: a plain open of a constant path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is ours alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    for (d, s) in req.name.iter_mut().zip(name.bytes().take(IFNAME_MAX)) {
        *d = s as libc::c_char;
    }
    // SAFETY: TUNSETIFF reads an ifreq, which `req` is, laid out as the kernel's.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_linux_and_differ_per_state_dir() {
        let a = namespace_name(Path::new("/var/lib/vic/vch/a"));
        assert_eq!(a, namespace_name(Path::new("/var/lib/vic/vch/a")));
        assert_ne!(a, namespace_name(Path::new("/tmp/vic/vch/a")));
        assert!(a.starts_with("vic-") && a.len() == 16, "{a}");
        let id = "0123456789abcdef0123";
        assert_eq!(tap_of(id, 0), "t0-0123456789ab");
        assert!(tap_of(id, 9).len() <= IFNAME_MAX);
        assert_eq!(bridge_of("bridge"), "vic-bridge");
        assert!(bridge_of("a-very-long-network-name").len() <= IFNAME_MAX);
    }
}
