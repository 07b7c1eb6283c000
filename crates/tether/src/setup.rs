//! Machine setup: the initramfs mounts at boot, the container's root filesystem on `Setup`,
//! and the orderly power-off at the end.

use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tether_proto::guest::HostEntry;
use tether_proto::Setup;

use crate::confine;
use crate::mounts::{Mounted, NOSUID_NODEV_NOEXEC};
use crate::syscall::Syscall;

/// Where the container's root filesystem is mounted in the initramfs.
pub const ROOTFS: &str = "/root-fs";

/// Mounts /dev, /proc and /sys of the initramfs. Failures are logged, not fatal.
pub fn early_mounts(sys: &dyn Syscall) {
    for (src, target, fstype, flags) in [
        ("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID),
        ("proc", "/proc", "proc", NOSUID_NODEV_NOEXEC),
        ("sysfs", "/sys", "sysfs", NOSUID_NODEV_NOEXEC),
    ] {
        let target = Path::new(target);
        let _ = sys.create_dir_all(target);
        match sys.mount(src, target, fstype, flags, "") {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => crate::log!("mounting {} failed: {e}", target.display()),
        }
    }
}

/// Applies the host's `Setup`: clock, entropy, hostname, the root filesystem and its API
/// filesystems, /etc/hostname and /etc/hosts, then the container's confinement
/// (`confine.rs`). Errors are sentences for `SetupFailed`.
pub fn apply(sys: &dyn Syscall, setup: &Setup) -> Result<Mounted, String> {
    machine(sys, setup)?;
    let conf = &setup.confinement;
    confine::kernel(sys, conf)?;
    let rootfs = PathBuf::from(ROOTFS);
    let mut m = Mounted::new(rootfs.clone(), confine::pids_cgroup(sys, conf.pids_limit)?);
    wait_for(sys, Path::new(&setup.root_device), Duration::from_secs(5))?;
    let fstype = if setup.root_fstype.is_empty() {
        "ext4"
    } else {
        &setup.root_fstype
    };
    m.mount_at(sys, &setup.root_device, &rootfs, fstype, 0, "")?;
    write_etc(sys, &rootfs, setup);
    crate::disks::mount(sys, &mut m, &conf.disks, &conf.shares)?;
    let sys_flags = match conf.privileged {
        true => NOSUID_NODEV_NOEXEC,
        false => NOSUID_NODEV_NOEXEC | libc::MS_RDONLY,
    };
    let proc = rootfs.join("proc");
    m.mount_at(sys, "proc", &proc, "proc", NOSUID_NODEV_NOEXEC, "")?;
    m.mount_at(sys, "sysfs", &rootfs.join("sys"), "sysfs", sys_flags, "")?;
    confine::dev(sys, &mut m, conf)?;
    // /dev/ptmx must open the container's devpts instance, not the initramfs one.
    m.mount_at(
        sys,
        &format!("{ROOTFS}/dev/pts/ptmx"),
        &rootfs.join("dev/ptmx"),
        "",
        libc::MS_BIND,
        "",
    )?;
    confine::tmpfs(sys, &mut m, &conf.tmpfs)?;
    confine::paths(sys, &mut m, conf)?;
    if conf.readonly_rootfs {
        confine::readonly_root(sys, &mut m)?;
    }
    Ok(m)
}

/// The machine's own settings: clock, entropy, hostname and loopback. Only the hostname is
/// fatal when it fails.
fn machine(sys: &dyn Syscall, setup: &Setup) -> Result<(), String> {
    if let Err(e) = sys.set_clock(setup.clock_unix_nanos) {
        crate::log!("setting the clock failed: {e}");
    }
    if let Err(e) = sys.add_entropy(&setup.entropy) {
        crate::log!("adding entropy failed: {e}");
    }
    if !setup.hostname.is_empty() {
        sys.set_hostname(&setup.hostname)
            .map_err(|e| format!("setting hostname {:?} failed: {e}", setup.hostname))?;
    }
    if let Err(e) = sys.loopback_up() {
        crate::log!("bringing up the loopback interface failed: {e}");
    }
    restored(sys, setup)?;
    network(sys, setup)
}

/// What a guest restored from a template kept of it and must not: its interfaces' MACs (the
/// clock and the entropy were renewed above, as on every start).
fn restored(sys: &dyn Syscall, setup: &Setup) -> Result<(), String> {
    let Some(r) = &setup.restored else {
        return Ok(());
    };
    for m in &r.macs {
        sys.change_mac(&m.from, &m.to).map_err(|e| {
            format!(
                "giving the interface {} its MAC {} failed: {e}",
                m.from, m.to
            )
        })?;
    }
    Ok(())
}

/// The container's network interfaces and default route; a container is never started with
/// a network it asked for missing.
fn network(sys: &dyn Syscall, setup: &Setup) -> Result<(), String> {
    for iface in &setup.interfaces {
        let name = sys.configure_interface(iface).map_err(|e| {
            format!(
                "configuring the network interface {} ({}/{}) failed: {e}",
                iface.mac, iface.address, iface.prefix_len
            )
        })?;
        if let Some(v6) = &iface.ipv6 {
            sys.configure_ipv6(&name, v6).map_err(|e| {
                format!(
                    "giving the network interface {} its IPv6 address {}/{} failed: {e}",
                    iface.mac, v6.address, v6.prefix_len
                )
            })?;
        }
        if !iface.link_local.is_empty() {
            sys.add_link_local(&name, &iface.link_local).map_err(|e| {
                format!(
                    "giving the network interface {} its link-local addresses failed: {e}",
                    iface.mac
                )
            })?;
        }
    }
    if let Some(gw) = setup.interfaces.iter().find_map(|i| i.gateway) {
        sys.default_route(gw)
            .map_err(|e| format!("adding the default route through {gw} failed: {e}"))?;
    }
    Ok(())
}

fn wait_for(sys: &dyn Syscall, path: &Path, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !sys.exists(path) {
        if Instant::now() >= deadline {
            return Err(format!(
                "root device {} did not appear within {} s",
                path.display(),
                timeout.as_secs()
            ));
        }
        sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The /etc/hosts tether writes: loopback names, the container's hostname at its own address
/// (loopback when it has none), then the `--add-host` entries (`IP<TAB>name`, as Docker
/// writes them).
pub fn hosts_file(hostname: &str, own: Option<std::net::Ipv4Addr>, extra: &[HostEntry]) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost");
    if !hostname.is_empty() && own.is_none() {
        s.push('\t');
        s.push_str(hostname);
    }
    s.push_str("\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if let (Some(ip), false) = (own, hostname.is_empty()) {
        s.push_str(&format!("{ip}\t{hostname}\n"));
    }
    for h in extra {
        s.push_str(&format!("{}\t{}\n", h.ip, h.name));
    }
    s
}

/// `/etc/resolv.conf` for the given servers and search domains, as Docker writes for `--dns`.
fn resolv_conf(servers: &[String], search: &[String], options: &[String]) -> String {
    let mut out = String::new();
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

fn write_etc(sys: &dyn Syscall, rootfs: &Path, setup: &Setup) {
    let etc = rootfs.join("etc");
    if !sys.is_dir(&etc) {
        return;
    }
    let hostname = &setup.hostname;
    let mut files = vec![
        ("hostname", format!("{hostname}\n")),
        (
            "hosts",
            hosts_file(
                hostname,
                setup.interfaces.first().map(|i| i.address),
                &setup.confinement.extra_hosts,
            ),
        ),
    ];
    if !setup.dns_servers.is_empty() {
        files.push((
            "resolv.conf",
            resolv_conf(&setup.dns_servers, &setup.dns_search, &setup.dns_options),
        ));
    }
    for (name, content) in files {
        let path = etc.join(name);
        // A dangling or absolute symlink would point outside the container: replace it.
        if sys.is_symlink(&path) {
            let _ = sys.remove_file(&path);
        }
        if let Err(e) = sys.write_file(&path, content.as_bytes()) {
            crate::log!("writing {} failed: {e}", path.display());
        }
    }
}

/// Kills everything, syncs, unmounts the container's filesystems and powers off. QEMU runs with
/// `-no-reboot` and the kernel with `reboot=t`, so a reboot ends QEMU at once.
pub fn power_off(sys: &dyn Syscall, mounted: Option<&Mounted>) -> ! {
    halt(sys, mounted);
    // Exiting PID 1 panics the kernel, and panic=-1 reboots: QEMU still ends.
    std::process::exit(1)
}

/// The power-off up to the reboot, which returns only when it failed.
fn halt(sys: &dyn Syscall, mounted: Option<&Mounted>) {
    let _ = sys.kill(-1, libc::SIGKILL);
    sys.sync();
    if let Some(m) = mounted {
        // Give the reaper a moment to collect the killed processes so the mounts are not busy.
        sleep(Duration::from_millis(20));
        m.unmount_all(sys);
        sys.sync();
    }
    if let Err(e) = sys.reboot() {
        crate::log!("reboot failed: {e}");
    }
}

#[cfg(test)]
#[path = "setup_tests.rs"]
mod tests;
