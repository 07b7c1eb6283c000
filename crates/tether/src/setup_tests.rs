//! Tests of `setup.rs`, over the fake syscalls.

use super::*;
use crate::syscall::fake::{self, Call, RecordingSyscall};

/// A guest whose root disk is there and whose image has an /etc.
fn guest() -> RecordingSyscall {
    let sys = RecordingSyscall::new();
    sys.device("/dev/vda", fake::char_device(254, 0));
    sys.dir("/root-fs/etc");
    sys
}

fn setup(confinement: tether_proto::Confinement) -> Setup {
    Setup {
        hostname: "abc123".into(),
        root_device: "/dev/vda".into(),
        clock_unix_nanos: 1_700_000_000_000_000_000,
        entropy: vec![7; 4],
        confinement,
        ..Setup::default()
    }
}

const RO_SYS: libc::c_ulong = NOSUID_NODEV_NOEXEC | libc::MS_RDONLY;

#[test]
fn setup_mounts_the_root_then_proc_sys_dev_and_the_containers_ptmx() {
    let sys = guest();
    let m = apply(&sys, &setup(Default::default())).unwrap();
    let mounts = sys.mounts();
    assert_eq!(
        mounts[..3],
        [
            Call::mount("/dev/vda", "/root-fs", "ext4", 0, ""),
            Call::mount("proc", "/root-fs/proc", "proc", NOSUID_NODEV_NOEXEC, ""),
            Call::mount("sysfs", "/root-fs/sys", "sysfs", RO_SYS, ""),
        ]
    );
    let targets: Vec<&str> = (mounts[3..].iter())
        .map(|c| match c {
            Call::Mount { target, .. } => target.as_str(),
            _ => "",
        })
        .collect();
    assert_eq!(
        targets,
        [
            "/root-fs/dev",
            "/root-fs/dev/pts",
            "/root-fs/dev/shm",
            "/root-fs/dev/mqueue",
            "/root-fs/dev/ptmx"
        ]
    );
    assert_eq!(
        mounts.last(),
        Some(&Call::mount(
            "/root-fs/dev/pts/ptmx",
            "/root-fs/dev/ptmx",
            "",
            libc::MS_BIND,
            ""
        ))
    );
    assert_eq!(m.rootfs, Path::new(ROOTFS));
    assert_eq!(m.writable_root, None);
}

#[test]
fn the_machine_is_set_before_anything_is_mounted() {
    let sys = guest();
    let s = setup(Default::default());
    apply(&sys, &s).unwrap();
    assert_eq!(
        sys.calls()[..4],
        [
            Call::SetClock(s.clock_unix_nanos),
            Call::AddEntropy(vec![7; 4]),
            Call::SetHostname("abc123".into()),
            Call::LoopbackUp,
        ]
    );
}

#[test]
fn a_restored_guest_gives_its_interfaces_their_macs_before_configuring_them() {
    let sys = guest();
    let mut s = setup(Default::default());
    s.interfaces = vec![tether_proto::Interface {
        mac: "02:42:ac:10:00:02".into(),
        address: "172.16.0.2".parse().unwrap(),
        prefix_len: 16,
        gateway: None,
        ipv6: None,
        link_local: Vec::new(),
    }];
    s.restored = Some(tether_proto::Restored {
        macs: vec![tether_proto::MacChange {
            from: "02:00:00:00:00:00".into(),
            to: "02:42:ac:10:00:02".into(),
        }],
    });
    apply(&sys, &s).unwrap();
    assert_eq!(
        sys.calls()[3..6],
        [
            Call::LoopbackUp,
            Call::ChangeMac {
                from: "02:00:00:00:00:00".into(),
                to: "02:42:ac:10:00:02".into(),
            },
            Call::ConfigureInterface {
                mac: "02:42:ac:10:00:02".into(),
                address: "172.16.0.2/16".into(),
            },
        ]
    );
    let sys = guest();
    sys.fail(libc::ENODEV, |c| matches!(c, Call::ChangeMac { .. }));
    let err = apply(&sys, &s).unwrap_err();
    assert!(
        err.contains("02:00:00:00:00:00") && err.contains("failed"),
        "{err}"
    );
}

#[test]
fn an_interface_gets_its_ipv6_and_link_local_addresses_after_its_ipv4_one() {
    let sys = guest();
    let mut s = setup(Default::default());
    s.interfaces = vec![tether_proto::Interface {
        mac: "02:42:ac:10:00:02".into(),
        address: "172.16.0.2".parse().unwrap(),
        prefix_len: 16,
        gateway: Some("172.16.0.1".parse().unwrap()),
        ipv6: Some(tether_proto::Ipv6Config {
            address: "2001:db8::2".parse().unwrap(),
            prefix_len: 64,
            gateway: Some("2001:db8::1".parse().unwrap()),
        }),
        link_local: vec!["169.254.8.8".parse().unwrap(), "fe80::8".parse().unwrap()],
    }];
    apply(&sys, &s).unwrap();
    assert_eq!(
        sys.calls()[4..8],
        [
            Call::ConfigureInterface {
                mac: "02:42:ac:10:00:02".into(),
                address: "172.16.0.2/16".into(),
            },
            Call::ConfigureIpv6 {
                name: "eth0".into(),
                address: "2001:db8::2/64".into(),
                gateway: Some("2001:db8::1".into()),
            },
            Call::AddLinkLocal {
                name: "eth0".into(),
                addresses: vec!["169.254.8.8".into(), "fe80::8".into()],
            },
            Call::DefaultRoute("172.16.0.1".into()),
        ]
    );
    let sys = guest();
    sys.fail(libc::EADDRNOTAVAIL, |c| {
        matches!(c, Call::ConfigureIpv6 { .. })
    });
    let err = apply(&sys, &s).unwrap_err();
    assert!(err.contains("IPv6 address 2001:db8::2/64 failed"), "{err}");
}

#[test]
fn interfaces_are_configured_and_routed_before_anything_is_mounted() {
    let sys = guest();
    let mut s = setup(Default::default());
    s.interfaces = vec![tether_proto::Interface {
        mac: "02:42:ac:10:00:02".into(),
        address: "172.16.0.2".parse().unwrap(),
        prefix_len: 16,
        gateway: Some("172.16.0.1".parse().unwrap()),
        ipv6: None,
        link_local: Vec::new(),
    }];
    apply(&sys, &s).unwrap();
    assert_eq!(
        sys.calls()[3..6],
        [
            Call::LoopbackUp,
            Call::ConfigureInterface {
                mac: "02:42:ac:10:00:02".into(),
                address: "172.16.0.2/16".into(),
            },
            Call::DefaultRoute("172.16.0.1".into()),
        ]
    );
    let hosts = hosts_file("abc123", Some("172.16.0.2".parse().unwrap()), &[]);
    assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
    assert!(hosts.contains("\n172.16.0.2\tabc123\n"), "{hosts}");

    let sys = guest();
    sys.fail(libc::ENODEV, |c| {
        matches!(c, Call::ConfigureInterface { .. })
    });
    assert_eq!(
        apply(&sys, &s).unwrap_err(),
        "configuring the network interface 02:42:ac:10:00:02 (172.16.0.2/16) failed: No such device (os error 19)"
    );
    assert!(sys.mounts().is_empty(), "nothing runs without its network");
}

#[test]
fn a_clock_that_cannot_be_set_is_logged_but_a_hostname_is_fatal() {
    let sys = guest();
    sys.fail(libc::EPERM, |c| matches!(c, Call::SetClock(_)));
    apply(&sys, &setup(Default::default())).unwrap();
    let sys = guest();
    sys.fail(libc::EINVAL, |c| matches!(c, Call::SetHostname(_)));
    assert_eq!(
        apply(&sys, &setup(Default::default())).unwrap_err(),
        "setting hostname \"abc123\" failed: Invalid argument (os error 22)"
    );
    assert!(sys.mounts().is_empty());
}

#[test]
fn a_privileged_container_gets_a_writable_sys() {
    let sys = guest();
    let conf = tether_proto::Confinement {
        privileged: true,
        ..Default::default()
    };
    apply(&sys, &setup(conf)).unwrap();
    assert_eq!(
        sys.mounts()[2],
        Call::mount("sysfs", "/root-fs/sys", "sysfs", NOSUID_NODEV_NOEXEC, "")
    );
}

#[test]
fn a_read_only_root_is_remounted_last_after_a_writable_bind_for_the_tether() {
    let sys = guest();
    let conf = tether_proto::Confinement {
        readonly_rootfs: true,
        tmpfs: vec![tether_proto::guest::Tmpfs {
            path: "/tmp".into(),
            options: vec!["nosuid".into(), "nodev".into()],
        }],
        ..Default::default()
    };
    let m = apply(&sys, &setup(conf)).unwrap();
    let mounts = sys.mounts();
    let n = mounts.len();
    assert_eq!(
        mounts[n - 3..],
        [
            Call::mount(
                "tmpfs",
                "/root-fs/tmp",
                "tmpfs",
                libc::MS_NOSUID | libc::MS_NODEV,
                ""
            ),
            Call::mount("/root-fs", "/rw-root", "", libc::MS_BIND, ""),
            Call::mount(
                "",
                "/root-fs",
                "",
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                ""
            ),
        ]
    );
    assert_eq!(m.writable_root.as_deref(), Some(Path::new("/rw-root")));
}

#[test]
fn proc_refused_fails_the_setup_and_mounts_nothing_more() {
    let sys = guest();
    sys.fail(
        libc::EPERM,
        |c| matches!(c, Call::Mount { fstype, .. } if fstype == "proc"),
    );
    let err = apply(&sys, &setup(Default::default())).unwrap_err();
    assert_eq!(
        err,
        "mounting proc on /root-fs/proc failed: Operation not permitted (os error 1)"
    );
    assert_eq!(sys.mounts().len(), 2);
}

#[test]
fn etc_gets_hostname_and_hosts_and_a_symlinked_hosts_is_replaced() {
    let sys = guest();
    // Pointing inside the temporary directory: a regression writes there, not to the host.
    std::os::unix::fs::symlink(sys.host("/elsewhere"), sys.host("/root-fs/etc/hosts")).unwrap();
    apply(&sys, &setup(Default::default())).unwrap();
    let calls = sys.calls();
    let at = |call: &Call| calls.iter().position(|c| c == call);
    let hosts = Call::WriteFile {
        path: "/root-fs/etc/hosts".into(),
        data: hosts_file("abc123", None, &[]),
    };
    let removed = at(&Call::RemoveFile("/root-fs/etc/hosts".into())).unwrap();
    assert!(removed < at(&hosts).unwrap());
    assert!(at(&Call::WriteFile {
        path: "/root-fs/etc/hostname".into(),
        data: "abc123\n".into()
    })
    .is_some());
    assert!(!sys.host("/root-fs/etc/hosts").is_symlink());
}

#[test]
fn early_mounts_take_dev_proc_sys_and_shrug_at_busy_ones() {
    let sys = RecordingSyscall::new();
    sys.fail(
        libc::EBUSY,
        |c| matches!(c, Call::Mount { target, .. } if target == "/dev"),
    );
    early_mounts(&sys);
    assert_eq!(
        sys.mounts(),
        [
            Call::mount("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, ""),
            Call::mount("proc", "/proc", "proc", NOSUID_NODEV_NOEXEC, ""),
            Call::mount("sysfs", "/sys", "sysfs", NOSUID_NODEV_NOEXEC, ""),
        ]
    );
}

#[test]
fn power_off_kills_everything_syncs_unmounts_in_reverse_and_reboots() {
    let sys = guest();
    let m = apply(&sys, &setup(Default::default())).unwrap();
    let before = sys.calls().len();
    halt(&sys, Some(&m));
    let calls = sys.calls()[before..].to_vec();
    assert_eq!(
        calls[..2],
        [
            Call::Kill {
                pid: -1,
                signal: libc::SIGKILL
            },
            Call::Sync
        ]
    );
    assert_eq!(
        calls[2],
        Call::Umount {
            target: "/root-fs/dev/ptmx".into(),
            flags: 0
        }
    );
    let n = calls.len();
    assert_eq!(
        calls[n - 3..],
        [
            Call::Umount {
                target: "/root-fs".into(),
                flags: 0
            },
            Call::Sync,
            Call::Reboot
        ]
    );
}

#[test]
fn resolv_conf_lists_servers_then_search() {
    let r = resolv_conf(
        &["10.0.0.2".into(), "10.0.0.3".into()],
        &["corp.example".into(), "example".into()],
        &["ndots:2".into()],
    );
    assert_eq!(
        r,
        "nameserver 10.0.0.2\nnameserver 10.0.0.3\nsearch corp.example example\noptions ndots:2\n"
    );
    assert_eq!(
        resolv_conf(&["1.1.1.1".into()], &[], &[]),
        "nameserver 1.1.1.1\n"
    );
}

#[test]
fn hosts_file_maps_hostname_to_loopback() {
    let h = hosts_file("abc123", None, &[]);
    assert!(h.starts_with("127.0.0.1\tlocalhost\tabc123\n"), "{h}");
    assert!(h.contains("::1\tlocalhost"));
    assert_eq!(
        hosts_file("", None, &[]).lines().next(),
        Some("127.0.0.1\tlocalhost")
    );
    let extra = HostEntry {
        name: "db".into(),
        ip: "10.1.2.3".into(),
    };
    assert!(hosts_file("x", None, &[extra]).ends_with("\n10.1.2.3\tdb\n"));
}
