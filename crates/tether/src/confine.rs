//! The container's confinement inside the VM, applied once on `Setup` before anything runs:
//! its `/dev` (the standard nodes, or every guest device when privileged), `/dev/shm` and
//! `/dev/mqueue`, `--device` nodes, tmpfs mounts, Docker's masked and read-only paths, a
//! read-only root, sysctls, the domain name and a pids cgroup. What each process may do
//! (capabilities, limits, groups) is applied when it is spawned (`exec.rs`).
//!
//! Mount points inside the container's root are reached without following symlinks, so an
//! image cannot point one at the initramfs.

use std::ffi::CString;
use std::path::{Component, Path, PathBuf};

use tether_proto::guest::{Tmpfs, TMPFS_DATA};
use tether_proto::Confinement;

use crate::mounts::{Mounted, NOSUID_NODEV_NOEXEC};
use crate::sys::cpath;
use crate::syscall::Syscall;

/// Where the guest's pids cgroup for the container's processes lives.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The nodes of a container's `/dev` that is not privileged, as runc makes them.
const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
const DEV_LINKS: [(&str, &str); 4] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// `path` (absolute, inside the container) under `rootfs`, refusing `..` and any component
/// that is a symlink.
pub fn inside(sys: &dyn Syscall, rootfs: &Path, path: &str) -> Result<PathBuf, String> {
    let mut out = rootfs.to_path_buf();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => {
                out.push(name);
                if sys.is_symlink(&out) {
                    return Err(format!("{path} is a symlink in the container's image"));
                }
            }
            _ => return Err(format!("{path} is not a plain absolute path")),
        }
    }
    Ok(out)
}

/// The domain name and sysctls: the guest kernel's own settings.
pub fn kernel(sys: &dyn Syscall, conf: &Confinement) -> Result<(), String> {
    if !conf.domainname.is_empty() {
        sys.set_domainname(&conf.domainname)
            .map_err(|e| format!("setting domain name {:?} failed: {e}", conf.domainname))?;
    }
    for (key, value) in &conf.sysctls {
        let rel = key.replace('.', "/");
        if rel.split('/').any(|p| p.is_empty() || p == "..") {
            return Err(format!("sysctl {key:?} is not a sysctl name"));
        }
        let path = Path::new("/proc/sys").join(rel);
        sys.write_file(&path, value.as_bytes())
            .map_err(|e| format!("setting sysctl {key}={value} failed: {e}"))?;
    }
    Ok(())
}

/// A pids cgroup (cgroup v2) holding the container's processes, when a limit is set: the
/// path of its `cgroup.procs`, which each process joins before it execs.
pub fn pids_cgroup(sys: &dyn Syscall, limit: u64) -> Result<Option<CString>, String> {
    if limit == 0 {
        return Ok(None);
    }
    let root = Path::new(CGROUP_ROOT);
    let fail = |what: &str, e: std::io::Error| format!("--pids-limit: {what} failed: {e}");
    if !sys.exists(&root.join("cgroup.controllers")) {
        sys.mount("cgroup2", root, "cgroup2", NOSUID_NODEV_NOEXEC, "")
            .map_err(|e| fail("mounting the guest's cgroup2", e))?;
    }
    let controllers = sys
        .read_to_string(&root.join("cgroup.controllers"))
        .map_err(|e| fail("reading the guest's cgroup controllers", e))?;
    if !controllers.split_whitespace().any(|c| c == "pids") {
        return Err("--pids-limit: the guest kernel has no pids controller".to_string());
    }
    sys.write_file(&root.join("cgroup.subtree_control"), b"+pids")
        .map_err(|e| fail("enabling the pids controller", e))?;
    let dir = root.join("container");
    sys.create_dir_all(&dir)
        .map_err(|e| fail("creating the container's cgroup", e))?;
    sys.write_file(&dir.join("pids.max"), limit.to_string().as_bytes())
        .map_err(|e| fail("writing pids.max", e))?;
    let procs = cpath(&dir.join("cgroup.procs")).map_err(|e| fail("naming cgroup.procs", e))?;
    Ok(Some(procs))
}

/// The container's `/dev`: every guest device when privileged, else a tmpfs with the
/// standard nodes; then devpts, `/dev/shm`, `/dev/mqueue` and the `--device` nodes.
pub fn dev(sys: &dyn Syscall, m: &mut Mounted, conf: &Confinement) -> Result<(), String> {
    let dev = m.rootfs.join("dev");
    if conf.privileged {
        m.mount_at(sys, "devtmpfs", &dev, "devtmpfs", libc::MS_NOSUID, "")?;
    } else {
        let flags = libc::MS_NOSUID | libc::MS_STRICTATIME;
        m.mount_at(sys, "tmpfs", &dev, "tmpfs", flags, "mode=755,size=65536k")?;
        for name in DEV_NODES {
            copy_node(sys, &Path::new("/dev").join(name), &dev.join(name))?;
        }
        for (name, target) in DEV_LINKS {
            sys.symlink(target, &dev.join(name))
                .map_err(|e| format!("creating /dev/{name} failed: {e}"))?;
        }
    }
    m.mount_at(
        sys,
        "devpts",
        &dev.join("pts"),
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    )?;
    let shm = match conf.shm_size {
        0 => 64 << 20,
        n => n,
    };
    let data = format!("mode=1777,size={shm}");
    m.mount_at(
        sys,
        "shm",
        &dev.join("shm"),
        "tmpfs",
        NOSUID_NODEV_NOEXEC,
        &data,
    )?;
    m.mount_at(
        sys,
        "mqueue",
        &dev.join("mqueue"),
        "mqueue",
        NOSUID_NODEV_NOEXEC,
        "",
    )?;
    for d in &conf.devices {
        let target = inside(sys, &m.rootfs, &d.container_path)?;
        if !sys.exists(&target) {
            copy_node(sys, Path::new(&d.guest_path), &target)?;
        }
    }
    Ok(())
}

/// Makes a node at `to` for the guest's device `from` (same type, numbers, mode and owner).
fn copy_node(sys: &dyn Syscall, from: &Path, to: &Path) -> Result<(), String> {
    let err = |e: std::io::Error| {
        let e = e.to_string();
        let e = e.split(" (os error").next().unwrap_or(&e).to_lowercase();
        format!(
            "error gathering device information while adding custom device {:?}: {e} (the container VM has no such device)",
            from.display().to_string()
        )
    };
    let node = sys.stat(from).map_err(err)?;
    if !node.is_device() {
        return Err(format!(
            "{} is not a device node of the guest",
            from.display()
        ));
    }
    if let Some(parent) = to.parent() {
        sys.create_dir_all(parent)
            .map_err(|e| format!("creating {} failed: {e}", parent.display()))?;
    }
    // mknod's mode is cut by the umask: the permissions are set again after.
    sys.mknod(to, node.mode, node.rdev)
        .and_then(|()| sys.chown(to, node.uid, node.gid))
        .and_then(|()| sys.chmod(to, node.mode & 0o7777))
        .map_err(|e| format!("creating device {} failed: {e}", to.display()))
}

/// Splits tmpfs options into mount flags and the data the kernel parses.
fn tmpfs_options(options: &[String]) -> Result<(libc::c_ulong, String), String> {
    let mut flags: libc::c_ulong = 0;
    let mut data: Vec<&str> = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "noatime" => (libc::MS_NOATIME, 0),
            "atime" => (0, libc::MS_NOATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "mand" => (libc::MS_MANDLOCK, 0),
            kv => match kv.split_once('=') {
                Some((k, v)) if TMPFS_DATA.contains(&k) && !v.contains(',') => {
                    data.push(kv);
                    (0, 0)
                }
                _ => return Err(format!("invalid tmpfs option {kv:?}")),
            },
        };
        flags = (flags | set) & !clear;
    }
    Ok((flags, data.join(",")))
}

/// The `--tmpfs` mounts.
pub fn tmpfs(sys: &dyn Syscall, m: &mut Mounted, mounts: &[Tmpfs]) -> Result<(), String> {
    for t in mounts {
        let target = inside(sys, &m.rootfs, &t.path)?;
        let (flags, data) = tmpfs_options(&t.options).map_err(|e| format!("{}: {e}", t.path))?;
        m.mount_at(sys, "tmpfs", &target, "tmpfs", flags, &data)?;
    }
    Ok(())
}

/// Docker's masked paths (`/dev/null` over a file, an empty read-only tmpfs over a
/// directory) and read-only paths; paths the guest does not have are skipped.
pub fn paths(sys: &dyn Syscall, m: &mut Mounted, conf: &Confinement) -> Result<(), String> {
    for p in &conf.masked_paths {
        let target = inside(sys, &m.rootfs, p)?;
        if sys.is_dir(&target) {
            m.mount_at(sys, "tmpfs", &target, "tmpfs", libc::MS_RDONLY, "")?;
        } else if sys.exists(&target) {
            m.mount_at(sys, "/dev/null", &target, "", libc::MS_BIND, "")?;
        }
    }
    for p in &conf.readonly_paths {
        let target = inside(sys, &m.rootfs, p)?;
        if !sys.exists(&target) {
            continue;
        }
        let src = target.to_string_lossy().into_owned();
        m.mount_at(sys, &src, &target, "", libc::MS_BIND | libc::MS_REC, "")?;
        let ro = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | NOSUID_NODEV_NOEXEC;
        sys.mount("", &target, "", ro, "")
            .map_err(|e| format!("making {p} read-only failed: {e}"))?;
    }
    Ok(())
}

/// Where the tether keeps its writable view of a read-only root.
const WRITABLE_ROOT: &str = "/rw-root";

/// `--read-only`: the root's own mount becomes read-only; the mounts on it stay as they are.
/// The tether keeps a writable bind of the root filesystem alone, outside the container's
/// root, for working directories to create.
pub fn readonly_root(sys: &dyn Syscall, m: &mut Mounted) -> Result<(), String> {
    let rootfs = m.rootfs.to_string_lossy().into_owned();
    let rw = PathBuf::from(WRITABLE_ROOT);
    sys.create_dir_all(&rw)
        .map_err(|e| format!("creating {WRITABLE_ROOT} failed: {e}"))?;
    m.mount_at(sys, &rootfs, &rw, "", libc::MS_BIND, "")?;
    m.writable_root = Some(rw);
    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
    sys.mount("", &m.rootfs, "", flags, "")
        .map_err(|e| format!("making the root filesystem read-only failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::fake::{self, Call, RecordingSyscall};

    #[test]
    fn tmpfs_options_become_flags_and_data_later_ones_winning() {
        let opts: Vec<String> = ["noexec", "nosuid", "nodev", "exec", "size=1m", "mode=1777"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (flags, data) = tmpfs_options(&opts).unwrap();
        assert_eq!(flags, libc::MS_NOSUID | libc::MS_NODEV);
        assert_eq!(data, "size=1m,mode=1777");
        assert!(tmpfs_options(&["bind".to_string()]).is_err());
        assert!(tmpfs_options(&["uid=0,size=1".to_string()]).is_err());
    }

    #[test]
    fn paths_inside_the_root_refuse_symlinks_and_dots() {
        let sys = RecordingSyscall::new();
        sys.dir("/root-fs/tmp");
        std::os::unix::fs::symlink("/", sys.host("/root-fs/run")).unwrap();
        let root = Path::new("/root-fs");
        assert_eq!(
            inside(&sys, root, "/tmp/x").unwrap(),
            Path::new("/root-fs/tmp/x")
        );
        assert_eq!(
            inside(&sys, root, "/run/x").unwrap_err(),
            "/run/x is a symlink in the container's image"
        );
        assert!(inside(&sys, root, "/a/../b").is_err());
    }

    fn mounted(sys: &RecordingSyscall) -> Mounted {
        sys.dir("/root-fs");
        Mounted::new("/root-fs".into(), None)
    }

    #[test]
    fn dev_is_a_tmpfs_with_runcs_nodes_links_devpts_shm_and_mqueue() {
        let sys = RecordingSyscall::new();
        let mut m = mounted(&sys);
        let conf = Confinement {
            shm_size: 1 << 20,
            ..Confinement::default()
        };
        dev(&sys, &mut m, &conf).unwrap();
        assert_eq!(
            sys.mounts(),
            [
                Call::mount(
                    "tmpfs",
                    "/root-fs/dev",
                    "tmpfs",
                    libc::MS_NOSUID | libc::MS_STRICTATIME,
                    "mode=755,size=65536k"
                ),
                Call::mount(
                    "devpts",
                    "/root-fs/dev/pts",
                    "devpts",
                    libc::MS_NOSUID | libc::MS_NOEXEC,
                    "newinstance,ptmxmode=0666,mode=0620,gid=5"
                ),
                Call::mount(
                    "shm",
                    "/root-fs/dev/shm",
                    "tmpfs",
                    NOSUID_NODEV_NOEXEC,
                    "mode=1777,size=1048576"
                ),
                Call::mount(
                    "mqueue",
                    "/root-fs/dev/mqueue",
                    "mqueue",
                    NOSUID_NODEV_NOEXEC,
                    ""
                ),
            ]
        );
        let calls = sys.calls();
        // /dev/null is made as the guest's: a character device 1:3, mode 0666, root's.
        let null = calls
            .iter()
            .position(|c| matches!(c, Call::Mknod { path, .. } if path == "/root-fs/dev/null"))
            .unwrap();
        assert_eq!(
            calls[null..null + 3],
            [
                Call::Mknod {
                    path: "/root-fs/dev/null".into(),
                    mode: libc::S_IFCHR | 0o666,
                    rdev: libc::makedev(1, 3)
                },
                Call::Chown {
                    path: "/root-fs/dev/null".into(),
                    uid: 0,
                    gid: 0
                },
                Call::Chmod {
                    path: "/root-fs/dev/null".into(),
                    mode: 0o666
                },
            ]
        );
        let nodes: Vec<&str> = (calls.iter())
            .filter_map(|c| match c {
                Call::Mknod { path, .. } => path.strip_prefix("/root-fs/dev/"),
                _ => None,
            })
            .collect();
        assert_eq!(nodes, DEV_NODES);
        assert!(calls.contains(&Call::Symlink {
            target: "/proc/self/fd/2".into(),
            link: "/root-fs/dev/stderr".into()
        }));
    }

    #[test]
    fn a_privileged_dev_is_the_guests_devtmpfs_without_nodes_of_its_own() {
        let sys = RecordingSyscall::new();
        let mut m = mounted(&sys);
        let conf = Confinement {
            privileged: true,
            ..Confinement::default()
        };
        dev(&sys, &mut m, &conf).unwrap();
        assert_eq!(
            sys.mounts()[0],
            Call::mount("devtmpfs", "/root-fs/dev", "devtmpfs", libc::MS_NOSUID, "")
        );
        assert!(!sys.calls().iter().any(|c| matches!(c, Call::Mknod { .. })));
    }

    #[test]
    fn a_device_the_guest_lacks_is_dockers_error() {
        let sys = RecordingSyscall::new();
        let mut m = mounted(&sys);
        let conf = Confinement {
            devices: vec![tether_proto::guest::Device {
                guest_path: "/dev/kvm".into(),
                container_path: "/dev/kvm".into(),
            }],
            ..Confinement::default()
        };
        assert_eq!(
            dev(&sys, &mut m, &conf).unwrap_err(),
            "error gathering device information while adding custom device \"/dev/kvm\": \
             no such file or directory (the container VM has no such device)"
        );
        let sys = RecordingSyscall::new();
        let mut m = mounted(&sys);
        sys.device("/dev/kvm", fake::char_device(10, 232));
        dev(&sys, &mut m, &conf).unwrap();
        assert!(sys.calls().contains(&Call::Mknod {
            path: "/root-fs/dev/kvm".into(),
            mode: libc::S_IFCHR | 0o666,
            rdev: libc::makedev(10, 232)
        }));
    }

    #[test]
    fn tmpfs_mounts_get_the_flags_and_data_of_their_options() {
        let sys = RecordingSyscall::new();
        let mut m = mounted(&sys);
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect();
        let mounts = [
            Tmpfs {
                path: "/run".into(),
                options: words(&["rw", "noexec", "nosuid", "size=65536k"]),
            },
            Tmpfs {
                path: "/cache".into(),
                options: words(&["ro", "nodev", "mode=1777"]),
            },
        ];
        tmpfs(&sys, &mut m, &mounts).unwrap();
        assert_eq!(
            sys.mounts(),
            [
                Call::mount(
                    "tmpfs",
                    "/root-fs/run",
                    "tmpfs",
                    libc::MS_NOEXEC | libc::MS_NOSUID,
                    "size=65536k"
                ),
                Call::mount(
                    "tmpfs",
                    "/root-fs/cache",
                    "tmpfs",
                    libc::MS_RDONLY | libc::MS_NODEV,
                    "mode=1777"
                ),
            ]
        );
    }

    #[test]
    fn masked_paths_are_covered_and_readonly_paths_remounted_read_only() {
        let sys = RecordingSyscall::new();
        let mut m = mounted(&sys);
        sys.dir("/root-fs/proc/acpi");
        sys.file("/root-fs/proc/kcore", "");
        sys.dir("/root-fs/proc/sys");
        let conf = Confinement {
            masked_paths: vec!["/proc/acpi".into(), "/proc/kcore".into(), "/proc/no".into()],
            readonly_paths: vec!["/proc/sys".into(), "/proc/gone".into()],
            ..Confinement::default()
        };
        paths(&sys, &mut m, &conf).unwrap();
        assert_eq!(
            sys.mounts(),
            [
                Call::mount("tmpfs", "/root-fs/proc/acpi", "tmpfs", libc::MS_RDONLY, ""),
                Call::mount("/dev/null", "/root-fs/proc/kcore", "", libc::MS_BIND, ""),
                Call::mount(
                    "/root-fs/proc/sys",
                    "/root-fs/proc/sys",
                    "",
                    libc::MS_BIND | libc::MS_REC,
                    ""
                ),
                Call::mount(
                    "",
                    "/root-fs/proc/sys",
                    "",
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | NOSUID_NODEV_NOEXEC,
                    ""
                ),
            ]
        );
    }

    #[test]
    fn sysctls_are_written_under_proc_sys_and_odd_names_refused() {
        let sys = RecordingSyscall::new();
        sys.dir("/proc/sys/net/ipv4");
        let mut conf = Confinement {
            domainname: "example.org".into(),
            sysctls: vec![("net.ipv4.ip_forward".into(), "1".into())],
            ..Confinement::default()
        };
        kernel(&sys, &conf).unwrap();
        assert_eq!(
            sys.calls(),
            [
                Call::SetDomainname("example.org".into()),
                Call::WriteFile {
                    path: "/proc/sys/net/ipv4/ip_forward".into(),
                    data: "1".into()
                },
            ]
        );
        conf.sysctls = vec![("net..x".into(), "1".into())];
        assert_eq!(
            kernel(&sys, &conf).unwrap_err(),
            "sysctl \"net..x\" is not a sysctl name"
        );
    }

    #[test]
    fn a_pids_limit_makes_a_cgroup_that_processes_join() {
        let sys = RecordingSyscall::new();
        assert_eq!(pids_cgroup(&sys, 0).unwrap(), None);
        sys.file("/sys/fs/cgroup/cgroup.controllers", "cpu io memory pids\n");
        let procs = pids_cgroup(&sys, 100).unwrap().unwrap();
        assert_eq!(
            procs.to_str().unwrap(),
            "/sys/fs/cgroup/container/cgroup.procs"
        );
        assert_eq!(
            sys.calls(),
            [
                Call::WriteFile {
                    path: "/sys/fs/cgroup/cgroup.subtree_control".into(),
                    data: "+pids".into()
                },
                Call::Mkdir("/sys/fs/cgroup/container".into()),
                Call::WriteFile {
                    path: "/sys/fs/cgroup/container/pids.max".into(),
                    data: "100".into()
                },
            ]
        );
        sys.file("/sys/fs/cgroup/cgroup.controllers", "cpu io\n");
        assert_eq!(
            pids_cgroup(&sys, 100).unwrap_err(),
            "--pids-limit: the guest kernel has no pids controller"
        );
    }
}
