//! Volumes and bind mounts: disks of the VM's own, each found by the serial number the host
//! gave its virtio-blk device (or, on a SCSI controller, by its unit: `/sys/class/scsi_disk`
//! names each disk `HOST:CHANNEL:TARGET:LUN`), and host shares, each a virtio-fs mount by its tag whose
//! `data` is bound on the container's path. All are mounted shallowest path first (so `/a`
//! is under `/a/b`, as Docker orders mounts).

use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tether_proto::guest::{DiskMount, ShareMount};

use crate::confine::inside;
use crate::mounts::Mounted;
use crate::syscall::Syscall;

/// How long a disk may take to appear after boot.
const DISK_WAIT: Duration = Duration::from_secs(5);

/// Where shares are mounted in the initramfs, outside the container's root.
const SHARES: &str = "/vic-shares";

enum Item<'a> {
    Disk(&'a DiskMount),
    Share(usize, &'a ShareMount),
}

impl Item<'_> {
    fn path(&self) -> &str {
        match self {
            Item::Disk(d) => &d.path,
            Item::Share(_, s) => &s.path,
        }
    }
}

/// Mounts each of `disks` and `shares` in the container's root filesystem.
pub fn mount(
    sys: &dyn Syscall,
    m: &mut Mounted,
    disks: &[DiskMount],
    shares: &[ShareMount],
) -> Result<(), String> {
    let mut order: Vec<Item> = (disks.iter().map(Item::Disk))
        .chain(shares.iter().enumerate().map(|(i, s)| Item::Share(i, s)))
        .collect();
    order.sort_by_key(|d| Path::new(d.path()).components().count());
    for item in order {
        let d = match item {
            Item::Disk(d) => d,
            Item::Share(i, s) => {
                share(sys, m, i, s)?;
                continue;
            }
        };
        let device = find(sys, &Locator::of(d), DISK_WAIT)?;
        let target = inside(sys, &m.rootfs, &d.path)?;
        let flags = if d.readonly { libc::MS_RDONLY } else { 0 };
        let fstype = if d.fstype.is_empty() {
            "ext4"
        } else {
            &d.fstype
        };
        m.mount_at(sys, &device.to_string_lossy(), &target, fstype, flags, "")
            .map_err(|e| format!("volume at {}: {e}", d.path))?;
    }
    Ok(())
}

/// Mounts share `i` outside the container's root and binds its `data` on the container's
/// path (a file or a directory, as the host's is).
fn share(sys: &dyn Syscall, m: &mut Mounted, i: usize, s: &ShareMount) -> Result<(), String> {
    let at = Path::new(SHARES).join(i.to_string());
    sys.create_dir_all(&at)
        .map_err(|e| format!("creating {} failed: {e}", at.display()))?;
    let flags = if s.readonly { libc::MS_RDONLY } else { 0 };
    m.mount_at(sys, &s.tag, &at, "virtiofs", flags, "")
        .map_err(|e| format!("bind mount of {}: {e}", s.path))?;
    let data = at.join("data");
    let target = inside(sys, &m.rootfs, &s.path)?;
    if sys.is_dir(&data) && !sys.exists(&target) {
        sys.create_dir_all(&target)
            .map_err(|e| format!("creating mount point {} failed: {e}", target.display()))?;
    }
    m.mount_at(sys, &data.to_string_lossy(), &target, "", libc::MS_BIND, "")
        .map_err(|e| format!("bind mount of {}: {e}", s.path))?;
    if s.readonly {
        let ro = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
        sys.mount("", &target, "", ro, "")
            .map_err(|e| format!("making {} read-only failed: {e}", s.path))?;
    }
    Ok(())
}

/// How a disk is found.
enum Locator<'a> {
    Serial(&'a str),
    ScsiUnit(u32),
}

impl<'a> Locator<'a> {
    fn of(d: &'a DiskMount) -> Locator<'a> {
        match d.scsi_unit {
            Some(unit) => Locator::ScsiUnit(unit),
            None => Locator::Serial(&d.serial),
        }
    }
}

impl std::fmt::Display for Locator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Locator::Serial(s) => write!(f, "with serial {s}"),
            Locator::ScsiUnit(u) => write!(f, "at SCSI unit {u}"),
        }
    }
}

/// The `/dev` node of the block device `at` names, waiting up to `timeout` for it to appear.
fn find(sys: &dyn Syscall, at: &Locator, timeout: Duration) -> Result<PathBuf, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let found = match at {
            Locator::Serial(serial) => by_serial(sys, serial),
            Locator::ScsiUnit(unit) => by_scsi_unit(sys, *unit),
        };
        if let Some(dev) = found {
            if sys.exists(&dev) {
                return Ok(dev);
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the volume disk {at} did not appear within {} s",
                timeout.as_secs()
            ));
        }
        sleep(Duration::from_millis(20));
    }
}

/// The disk at target `unit`, LUN 0, of the VM's one SCSI controller (whatever its host
/// and channel numbers).
fn by_scsi_unit(sys: &dyn Syscall, unit: u32) -> Option<PathBuf> {
    let class = Path::new("/sys/class/scsi_disk");
    let addrs = sys.read_dir(class).ok()?;
    let addr = addrs.into_iter().find(|a| {
        let parts: Vec<&str> = a.split(':').collect();
        parts.len() == 4 && parts[2] == unit.to_string() && parts[3] == "0"
    })?;
    let block = sys.read_dir(&class.join(addr).join("device/block")).ok()?;
    block
        .into_iter()
        .next()
        .map(|name| Path::new("/dev").join(name))
}

fn by_serial(sys: &dyn Syscall, serial: &str) -> Option<PathBuf> {
    let names = sys.read_dir(Path::new("/sys/block")).ok()?;
    names.into_iter().find_map(|name| {
        let path = Path::new("/sys/block").join(&name).join("serial");
        let found = sys.read_to_string(&path).ok()?;
        (found.trim() == serial).then(|| Path::new("/dev").join(&name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::fake::{Call, RecordingSyscall};

    fn disk(serial: &str, path: &str, readonly: bool) -> DiskMount {
        DiskMount {
            serial: serial.into(),
            scsi_unit: None,
            path: path.into(),
            fstype: "ext4".into(),
            readonly,
        }
    }

    #[test]
    fn disks_are_found_by_serial_and_mounted_shallowest_first() {
        let sys = RecordingSyscall::new();
        sys.file("/sys/block/vda/serial", "");
        sys.file("/sys/block/vdb/serial", "vic-vol0\n");
        sys.file("/sys/block/vdc/serial", "vic-vol1");
        sys.file("/dev/vdb", "");
        sys.file("/dev/vdc", "");
        sys.dir("/root-fs/data/logs");
        let mut m = Mounted::new("/root-fs".into(), None);
        let disks = [
            disk("vic-vol0", "/data/logs", true),
            disk("vic-vol1", "/data", false),
        ];
        let shares = [ShareMount {
            tag: "vic-share0".into(),
            path: "/data/site".into(),
            readonly: true,
        }];
        sys.dir("/vic-shares/0/data");
        mount(&sys, &mut m, &disks, &shares).unwrap();
        let mounts: Vec<Call> = sys
            .calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Mount { .. }))
            .collect();
        assert_eq!(
            mounts,
            vec![
                Call::mount("/dev/vdc", "/root-fs/data", "ext4", 0, ""),
                Call::mount(
                    "/dev/vdb",
                    "/root-fs/data/logs",
                    "ext4",
                    libc::MS_RDONLY,
                    ""
                ),
                Call::mount(
                    "vic-share0",
                    "/vic-shares/0",
                    "virtiofs",
                    libc::MS_RDONLY,
                    ""
                ),
                Call::mount(
                    "/vic-shares/0/data",
                    "/root-fs/data/site",
                    "",
                    libc::MS_BIND,
                    ""
                ),
                Call::mount(
                    "",
                    "/root-fs/data/site",
                    "",
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                    ""
                ),
            ]
        );
        assert!(
            sys.host("/root-fs/data/site").is_dir(),
            "a directory's mount point is one"
        );
    }

    #[test]
    fn scsi_disks_are_found_by_their_unit_whatever_the_host_number() {
        let sys = RecordingSyscall::new();
        sys.dir("/sys/class/scsi_disk/2:0:0:0/device/block/sda");
        sys.dir("/sys/class/scsi_disk/2:0:1:0/device/block/sdc");
        sys.dir("/sys/class/scsi_disk/2:0:8:0/device/block/sdb");
        sys.file("/dev/sdb", "");
        sys.file("/dev/sdc", "");
        let at = |unit| Locator::ScsiUnit(unit);
        let found = find(&sys, &at(1), Duration::ZERO).unwrap();
        assert_eq!(found, Path::new("/dev/sdc"));
        let found = find(&sys, &at(8), Duration::ZERO).unwrap();
        assert_eq!(found, Path::new("/dev/sdb"));
        let err = find(&sys, &at(2), Duration::ZERO).unwrap_err();
        assert_eq!(
            err,
            "the volume disk at SCSI unit 2 did not appear within 0 s"
        );
        let mut m = Mounted::new("/root-fs".into(), None);
        sys.dir("/root-fs/data");
        let d = DiskMount {
            scsi_unit: Some(1),
            ..disk("vic-vol0", "/data", false)
        };
        mount(&sys, &mut m, &[d], &[]).unwrap();
        assert!(sys
            .calls()
            .contains(&Call::mount("/dev/sdc", "/root-fs/data", "ext4", 0, "")));
    }

    #[test]
    fn a_missing_disk_or_a_symlinked_path_is_an_error_in_words() {
        let sys = RecordingSyscall::new();
        sys.file("/sys/block/vda/serial", "");
        let mut m = Mounted::new("/root-fs".into(), None);
        let err = find(
            &sys,
            &Locator::Serial("vic-vol0"),
            Duration::from_millis(50),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "the volume disk with serial vic-vol0 did not appear within 0 s"
        );
        sys.file("/sys/block/vdb/serial", "vic-vol0");
        sys.file("/dev/vdb", "");
        sys.dir("/root-fs/etc");
        std::os::unix::fs::symlink("/etc", sys.host("/root-fs/data")).unwrap();
        let err = mount(&sys, &mut m, &[disk("vic-vol0", "/data", false)], &[]).unwrap_err();
        assert_eq!(err, "/data is a symlink in the container's image");
    }
}
