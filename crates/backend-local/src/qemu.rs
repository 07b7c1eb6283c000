//! The QEMU command line of a container VM, built as plain data so it can be tested.

use std::path::PathBuf;

use crate::accel::Accel;

/// File names inside a VM's directory (QEMU runs with that directory as its cwd).
pub const ROOT_DISK: &str = "root.qcow2";
pub const TETHER_SOCK: &str = "tether.sock";
pub const CONSOLE_LOG: &str = "console.log";
/// QEMU's PID, written by QEMU itself (`-pidfile`).
pub const PID_FILE: &str = "qemu.pid";
/// Where a template's or a clone's QEMU connects its monitor (`qmp.rs`).
pub const QMP_SOCK: &str = "qmp.sock";
/// TCG's translation cache, in MiB. A booted guest's translations stay resident in it, so it
/// is most of an idle VM's own memory: 16 MiB against 64 took an idle VM from 107 to 82 MiB
/// PSS, with no slower boots or busybox workloads measured (`make bench`).
pub const TCG_TB_MIB: u32 = 16;

/// What one QEMU launch needs.
#[derive(Debug, Clone)]
pub struct Launch {
    pub name: String,
    pub accel: Accel,
    pub tsc_khz: Option<u64>,
    pub memory_mib: u32,
    pub cpus: u32,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// MAC addresses of the VM's interfaces; interface `i` is the tap open as descriptor
    /// `3 + i` (see `vm::pass_fds`).
    pub macs: Vec<String>,
    /// Its data disks, each whether read-only; their descriptors follow the taps', read-write
    /// then read-only for each (see [`disk_fds`]).
    pub disks: Vec<bool>,
    /// How many host shares it has (virtio-fs, see `shares.rs`): share `i` is the daemon
    /// listening on `shares::socket(i)`.
    pub shares: usize,
    /// Its part in templating, if any (`templates.rs`).
    pub role: Option<Role>,
}

/// A VM's part in templating (`templates.rs`). Either way its RAM is a template's memfd,
/// passed as the descriptor after the taps and disks (see [`ram_fd`]), and its QEMU
/// connects a monitor to [`QMP_SOCK`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Booted to become a template: its RAM is written to the memfd (shared), and its
    /// interfaces lead nowhere (nothing is sent before a container's setup brings them up).
    Template,
    /// Restored from a template: its RAM maps the template's privately (copy on write), and
    /// QEMU waits for the template's device state (`-incoming defer`).
    Clone,
}

/// The descriptor a template's or clone's RAM is passed as: the first for a template (its
/// interfaces have no taps), the one after the taps and disks for a clone.
pub fn ram_fd(l: &Launch) -> usize {
    match l.role {
        Some(Role::Template) => 3,
        _ => 3 + l.macs.len() + l.disks.iter().map(|r| disk_fds(*r)).sum::<usize>(),
    }
}

/// The virtio-mmio transports of a microvm: every device (root disk, tether port,
/// interfaces, data disks) takes one.
pub const MAX_DEVICES: usize = 24;

/// The descriptors a data disk is passed as: read-write and read-only, or read-only.
pub fn disk_fds(readonly: bool) -> usize {
    if readonly {
        1
    } else {
        2
    }
}

/// The most descriptors a VM is given: a tap per interface, two per disk.
pub const MAX_FDS: usize = 2 * MAX_DEVICES;

/// Whether a VM with `interfaces`, `disks` and `shares` fits in a microvm's transports.
pub fn devices_fit(interfaces: usize, disks: usize, shares: usize) -> bool {
    2 + interfaces + disks + shares <= MAX_DEVICES
}

/// Whether `mac` is `xx:xx:xx:xx:xx:xx` in hex, and nothing else can reach QEMU's options.
pub fn valid_mac(mac: &str) -> bool {
    mac.len() == 17
        && mac.split(':').count() == 6
        && mac
            .split(':')
            .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The guest kernel command line.
pub fn kernel_cmdline(l: &Launch) -> String {
    let mut s = String::from("console=ttyS0 reboot=t panic=-1 quiet");
    if l.accel == Accel::Tcg {
        // Without it, TSC calibration under TCG hangs in about 3 of 10 boots.
        if let Some(khz) = l.tsc_khz {
            s.push_str(&format!(" tsc_early_khz={khz}"));
        }
    }
    s
}

/// QEMU option values escape commas by doubling them.
fn opt(s: &str) -> String {
    s.replace(',', ",,")
}

/// The argument vector (without the program).
pub fn args(l: &Launch) -> Vec<String> {
    let cpu = match l.accel {
        Accel::Kvm => "host",
        Accel::Tcg => "max",
    };
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    push(&["-name", &opt(&l.name)]);
    if let Some(role) = l.role {
        // Only RAM is in the template's memfd: x-ignore-shared leaves it out of the saved
        // state, and a clone's private mapping starts from the template's pages.
        let share = if role == Role::Template { "on" } else { "off" };
        push(&["-M", "microvm,x-option-roms=off,rtc=on,memory-backend=mem"]);
        push(&[
            "-object",
            &format!(
                "memory-backend-file,id=mem,size={}M,mem-path=/proc/self/fd/{},share={share}",
                l.memory_mib.max(64),
                ram_fd(l)
            ),
        ]);
    } else if l.shares == 0 {
        push(&["-M", "microvm,x-option-roms=off,rtc=on"]);
    } else {
        // vhost-user devices need the guest's memory shared with their daemons, and the
        // modern virtio-mmio transport (libvhost-user has no legacy one).
        push(&["-M", "microvm,x-option-roms=off,rtc=on,memory-backend=mem"]);
        push(&[
            "-object",
            &format!(
                "memory-backend-memfd,id=mem,size={}M,share=on",
                l.memory_mib.max(64)
            ),
        ]);
        push(&["-global", "virtio-mmio.force-legacy=false"]);
    }
    // TCG's translation cache would grow to 1/8 of host RAM; bounded, QEMU's overhead over
    // guest RAM stays within the cgroup's margin (cgroup.rs).
    let accel = match l.accel {
        Accel::Kvm => l.accel.as_qemu().to_string(),
        Accel::Tcg => format!("{},tb-size={TCG_TB_MIB}", l.accel.as_qemu()),
    };
    push(&["-accel", &accel, "-cpu", cpu]);
    push(&["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]);
    push(&["-sandbox", crate::jail::SANDBOX]);
    push(&["-m", &l.memory_mib.max(64).to_string()]);
    push(&["-smp", &l.cpus.max(1).to_string()]);
    push(&["-kernel", &opt(&l.kernel.to_string_lossy())]);
    push(&["-initrd", &opt(&l.initrd.to_string_lossy())]);
    push(&["-append", &kernel_cmdline(l)]);
    push(&["-serial", &format!("file:{CONSOLE_LOG}")]);
    push(&[
        "-drive",
        &format!("id=root,file={ROOT_DISK},format=qcow2,if=none,discard=unmap"),
    ]);
    push(&["-device", "virtio-blk-device,drive=root"]);
    push(&["-device", "virtio-serial-device"]);
    // QEMU connects to the host's listener; reconnect lets a restarted host listen again.
    push(&[
        "-chardev",
        &format!("socket,id=tether,path={TETHER_SOCK},reconnect=1"),
    ]);
    push(&[
        "-device",
        &format!(
            "virtserialport,chardev=tether,name={}",
            tether_proto::PORT_NAME
        ),
    ]);
    for (i, mac) in l.macs.iter().enumerate() {
        match l.role {
            Some(Role::Template) => push(&["-netdev", &format!("hubport,id=net{i},hubid={i}")]),
            _ => push(&["-netdev", &format!("tap,id=net{i},fd={}", 3 + i)]),
        }
        push(&[
            "-device",
            &format!("virtio-net-device,netdev=net{i},mac={mac}"),
        ]);
    }
    // Data disks come as descriptors: QEMU never opens a path of a volume store. A disk
    // written to has two in its set, read-write and read-only: QEMU opens the image
    // read-only first and asks for write access once the device is attached.
    let mut fd = 3 + l.macs.len();
    for (i, readonly) in l.disks.iter().enumerate() {
        let set = i + 1;
        for _ in 0..disk_fds(*readonly) {
            push(&["-add-fd", &format!("fd={fd},set={set}")]);
            fd += 1;
        }
        let ro = if *readonly { "on" } else { "off" };
        push(&[
            "-drive",
            &format!(
                "id=vol{i},file=/dev/fdset/{set},format=raw,if=none,readonly={ro},discard=unmap"
            ),
        ]);
        push(&[
            "-device",
            &format!(
                "virtio-blk-device,drive=vol{i},serial={}",
                hypervisor::disk_serial(i)
            ),
        ]);
    }
    for i in 0..l.shares {
        let sock = crate::shares::socket(i);
        push(&["-chardev", &format!("socket,id=vfs{i},path={sock}")]);
        push(&[
            "-device",
            &format!(
                "vhost-user-fs-device,chardev=vfs{i},tag={}",
                hypervisor::share_tag(i)
            ),
        ]);
    }
    if let Some(role) = l.role {
        a.extend(crate::qmp::args(QMP_SOCK));
        if role == Role::Clone {
            a.extend(["-incoming".to_string(), "defer".to_string()]);
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(accel: Accel) -> Launch {
        Launch {
            name: "web-1,x".into(),
            accel,
            tsc_khz: Some(2_596_152),
            memory_mib: 256,
            cpus: 2,
            kernel: "/k/vmlinux".into(),
            initrd: "/k/initramfs.cpio".into(),
            macs: vec!["02:42:ac:10:00:02".into()],
            disks: Vec::new(),
            shares: 0,
            role: None,
        }
    }

    #[test]
    fn a_template_writes_its_memfd_and_a_clone_maps_it_privately_and_waits_for_its_state() {
        let mut l = launch(Accel::Tcg);
        assert!(!args(&l).iter().any(|a| a == "-incoming" || a == "-mon"));
        l.role = Some(Role::Template);
        let t = args(&l);
        assert_eq!(
            value_of(&t, "-object"),
            ["memory-backend-file,id=mem,size=256M,mem-path=/proc/self/fd/3,share=on"]
        );
        assert_eq!(value_of(&t, "-netdev"), ["hubport,id=net0,hubid=0"]);
        assert_eq!(value_of(&t, "-mon"), ["chardev=qmp,mode=control"]);
        assert!(value_of(&t, "-chardev").contains(&"socket,id=qmp,path=qmp.sock"));
        assert!(!t.iter().any(|a| a == "-incoming"));
        l.role = Some(Role::Clone);
        let c = args(&l);
        assert_eq!(
            value_of(&c, "-object"),
            ["memory-backend-file,id=mem,size=256M,mem-path=/proc/self/fd/4,share=off"]
        );
        assert_eq!(value_of(&c, "-netdev"), ["tap,id=net0,fd=3"]);
        assert_eq!(value_of(&c, "-incoming"), ["defer"]);
        assert_eq!(
            value_of(&c, "-M"),
            ["microvm,x-option-roms=off,rtc=on,memory-backend=mem"]
        );
        // Everything else is the template's: a clone's devices must be the ones saved.
        let strip = |a: &[String]| -> Vec<String> {
            a.iter()
                .filter(|s| !s.starts_with("memory-backend-file") && !s.starts_with("tap,"))
                .filter(|s| !s.starts_with("hubport,"))
                .cloned()
                .collect()
        };
        let (c, t) = (strip(&c), strip(&t));
        assert_eq!(c[..c.len() - 2], t[..]);
    }

    #[test]
    fn shares_are_vhost_user_fs_devices_over_shared_memory() {
        let mut l = launch(Accel::Tcg);
        assert!(!args(&l).iter().any(|a| a.contains("memory-backend")));
        l.shares = 2;
        let a = args(&l);
        assert_eq!(
            value_of(&a, "-M"),
            ["microvm,x-option-roms=off,rtc=on,memory-backend=mem"]
        );
        assert_eq!(
            value_of(&a, "-object"),
            ["memory-backend-memfd,id=mem,size=256M,share=on"]
        );
        assert_eq!(value_of(&a, "-global"), ["virtio-mmio.force-legacy=false"]);
        assert!(value_of(&a, "-chardev").contains(&"socket,id=vfs1,path=vfs1.sock"));
        assert!(
            value_of(&a, "-device").contains(&"vhost-user-fs-device,chardev=vfs1,tag=vic-share1")
        );
    }

    #[test]
    fn data_disks_are_descriptors_after_the_taps_with_serials() {
        let mut l = launch(Accel::Tcg);
        l.disks = vec![false, true];
        let a = args(&l);
        assert_eq!(
            value_of(&a, "-add-fd"),
            ["fd=4,set=1", "fd=5,set=1", "fd=6,set=2"]
        );
        assert_eq!(
            value_of(&a, "-drive")[1..],
            [
                "id=vol0,file=/dev/fdset/1,format=raw,if=none,readonly=off,discard=unmap",
                "id=vol1,file=/dev/fdset/2,format=raw,if=none,readonly=on,discard=unmap"
            ]
        );
        let devices = value_of(&a, "-device");
        assert!(devices.contains(&"virtio-blk-device,drive=vol1,serial=vic-vol1"));
        assert!(devices_fit(3, 19, 0) && !devices_fit(3, 19, 1));
    }

    #[test]
    fn each_interface_is_a_tap_descriptor_and_a_virtio_net_device() {
        let a = args(&launch(Accel::Tcg));
        assert_eq!(value_of(&a, "-netdev"), ["tap,id=net0,fd=3"]);
        assert!(value_of(&a, "-device")
            .contains(&"virtio-net-device,netdev=net0,mac=02:42:ac:10:00:02"));
        assert!(valid_mac("02:42:ac:10:00:02"));
        for bad in [
            "02:42:ac:10:00",
            "02:42:ac:10:00:0g",
            "02:42:ac:10:00:02,x=1",
            "",
        ] {
            assert!(!valid_mac(bad), "{bad}");
        }
    }

    fn value_of<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn tcg_gets_tsc_khz_and_kvm_does_not() {
        let tcg = args(&launch(Accel::Tcg));
        let append = value_of(&tcg, "-append")[0];
        assert!(append.contains("tsc_early_khz=2596152"), "{append}");
        assert!(append.contains("reboot=t") && append.contains("console=ttyS0"));
        assert_eq!(value_of(&tcg, "-accel"), ["tcg,tb-size=16"]);
        assert_eq!(value_of(&args(&launch(Accel::Kvm)), "-accel"), ["kvm"]);
        let kvm = args(&launch(Accel::Kvm));
        assert!(!value_of(&kvm, "-append")[0].contains("tsc_early_khz"));
        assert_eq!(value_of(&kvm, "-cpu"), ["host"]);
    }

    #[test]
    fn devices_and_sizes() {
        let a = args(&launch(Accel::Tcg));
        assert!(a.iter().any(|s| s == "-no-reboot"));
        assert_eq!(
            value_of(&a, "-sandbox"),
            ["on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"]
        );
        assert_eq!(value_of(&a, "-m"), ["256"]);
        assert_eq!(value_of(&a, "-smp"), ["2"]);
        assert_eq!(value_of(&a, "-name"), ["web-1,,x"]);
        let devices = value_of(&a, "-device");
        assert!(devices.contains(&"virtio-blk-device,drive=root"));
        assert!(devices
            .iter()
            .any(|d| d.ends_with(&format!("name={}", tether_proto::PORT_NAME))));
        assert!(value_of(&a, "-chardev")[0].contains("path=tether.sock"));
        assert_eq!(value_of(&a, "-serial"), ["file:console.log"]);
    }
}
