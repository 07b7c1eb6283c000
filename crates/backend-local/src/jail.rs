//! The jail every QEMU runs in: its own uid/gid, no capabilities, `no_new_privs`, QEMU's
//! seccomp `-sandbox`, its VM's cgroup, and a mount namespace whose root is a small tmpfs
//! holding only what QEMU needs, each at the path it has on the host:
//!
//! ```text
//!  /usr (ro), /lib -> usr/lib, /lib64 -> usr/lib64   the dynamic qemu-system binary, firmware
//!  /dev/{null,zero,urandom} (mknod, 0666; + /dev/kvm 0600 owned by the VM's uid under KVM)
//!  <root>/images/<image>/base.ext4 (ro)               the qcow2 overlay's backing file
//!  <kernel>, <initrd> (ro)
//!  <root>/vms/<id>/ (rw, root:gid 0710)               root.qcow2, console.log, tether.sock
//! ```
//!
//! Paths are the same inside as outside, so QEMU's command line and the overlay's backing
//! path need no rewriting. Everything is prepared (as C strings) before the fork; the
//! `pre_exec` hook then makes only async-signal-safe system calls.
//!
//! UIDs: VM number `n` runs as uid and gid `UID_BASE + n`, `n < UID_COUNT` (900000–965535),
//! picked from a hash of the VM id, unique among the VCH's VMs and claimed host-wide (see
//! `uids.rs`) so that no QEMU of another VCH has it, recorded in `vm.json`. No `/etc/passwd`
//! entry is needed.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The first uid (and gid) of container VMs' QEMU processes.
pub const UID_BASE: u32 = 900_000;
/// How many uids the range holds.
pub const UID_COUNT: u32 = 65_536;

/// QEMU's seccomp filter: no obsolete system calls, no setuid/capabilities, no fork/exec, no
/// scheduler/affinity changes.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// The uids VM `id` may get, in the order to try them: a hash of the id into the range, then
/// the ones after it, leaving out those in `used`.
pub fn uid_candidates<'a>(id: &str, used: &'a HashSet<u32>) -> impl Iterator<Item = u32> + 'a {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let start = (hash % u64::from(UID_COUNT)) as u32;
    (0..UID_COUNT)
        .map(move |i| UID_BASE + (start + i) % UID_COUNT)
        .filter(|uid| !used.contains(uid))
}

/// Whether a uid read back from `vm.json` is one of ours (never root or a host account).
pub fn valid_uid(uid: u32) -> bool {
    (UID_BASE..UID_BASE + UID_COUNT).contains(&uid)
}

/// One thing to show inside the jail, at its host path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory bind-mounted (with what is mounted below it).
    Dir { path: PathBuf, writable: bool },
    /// A regular file bind-mounted read-only.
    File(PathBuf),
    /// A character device, made anew in the jail (`mknod`) with the host node's number:
    /// mode 0666 like the host's `null`, `zero`, `urandom`, or `private` (0600, owned by the
    /// VM's uid, for `/dev/kvm`, which is root:kvm 0660 on the host).
    Device { path: PathBuf, private: bool },
    /// A symbolic link, e.g. merged-usr `/lib -> usr/lib`.
    Symlink { path: PathBuf, target: PathBuf },
    /// A procfs of the jail's own at `path`, showing only processes (no system files) and of
    /// those only its uid's: what QEMU needs to open a passed memfd as `/proc/self/fd/N`.
    Proc(PathBuf),
}

/// The system entries QEMU needs to run: `/usr`, the `/lib*`, `/bin`, `/sbin` links or
/// directories that exist, the device nodes, and the QEMU binary if it is outside `/usr`.
pub fn system_entries(qemu: &Path, kvm: bool) -> Vec<Entry> {
    let mut v = vec![Entry::Dir {
        path: "/usr".into(),
        writable: false,
    }];
    for p in ["/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin"] {
        let path = PathBuf::from(p);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                if let Ok(target) = std::fs::read_link(&path) {
                    v.push(Entry::Symlink { path, target });
                }
            }
            Ok(m) if m.is_dir() => v.push(Entry::Dir {
                path,
                writable: false,
            }),
            _ => {}
        }
    }
    for d in ["/dev/null", "/dev/zero", "/dev/urandom"] {
        v.push(Entry::Device {
            path: d.into(),
            private: false,
        });
    }
    if kvm {
        v.push(Entry::Device {
            path: "/dev/kvm".into(),
            private: true,
        });
    }
    if !qemu.starts_with("/usr/") {
        v.push(Entry::File(qemu.to_path_buf()));
    }
    v
}

/// Errors preparing a jail.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// a path holds a NUL byte
    #[error("the path {0:?} holds a NUL byte")]
    Nul(PathBuf),
    /// jail paths must be absolute
    #[error("the jail path {0:?} is not absolute")]
    Relative(PathBuf),
    /// a device entry that is not a character device on the host
    #[error("{0:?} is not a character device on this host")]
    NoDevice(PathBuf),
}

/// One prepared step of the jail's construction.
#[derive(Debug, PartialEq, Eq)]
enum Op {
    Mkdir(CString),
    Touch(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    Bind {
        src: CString,
        dst: CString,
        remount: libc::c_ulong,
    },
    /// Mounts a procfs of processes only, each visible to its own uid only.
    Proc(CString),
    /// `mknod` a character device; `owned` gives it to the VM's uid.
    Mknod {
        path: CString,
        mode: libc::mode_t,
        rdev: libc::dev_t,
        owned: bool,
    },
}

/// Everything the `pre_exec` hook does, prepared before the fork.
#[derive(Debug)]
pub struct Plan {
    cgroup_procs: Vec<CString>,
    mountpoint: CString,
    ops: Vec<Op>,
    cwd: CString,
    uid: u32,
    gid: u32,
    /// Where the child writes its own PID first thing, so that an appliance that dies while
    /// the jail is being built (tens of milliseconds) leaves a QEMU its successor can find.
    pid_file: Option<CString>,
}

fn cstr(p: &Path) -> Result<CString, JailError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| JailError::Nul(p.to_path_buf()))
}

impl Plan {
    /// A jail rooted at a tmpfs mounted on `mountpoint` (an empty directory), showing
    /// `entries`, starting QEMU in `cwd` as `uid`/`gid` after joining `cgroup_procs`.
    pub fn new(
        mountpoint: &Path,
        entries: &[Entry],
        cwd: &Path,
        uid: u32,
        cgroup_procs: &[PathBuf],
    ) -> Result<Self, JailError> {
        let mut ops = Vec::new();
        let mut made: HashSet<PathBuf> = HashSet::new();
        let inside = |p: &Path| -> Result<PathBuf, JailError> {
            let rel = p
                .strip_prefix("/")
                .map_err(|_| JailError::Relative(p.to_path_buf()))?;
            Ok(mountpoint.join(rel))
        };
        let mut mkdirs = |p: &Path, ops: &mut Vec<Op>| -> Result<(), JailError> {
            let mut parents: Vec<&Path> = p.ancestors().skip(1).collect();
            parents.reverse();
            for a in parents.into_iter().skip(1) {
                if made.insert(a.to_path_buf()) {
                    ops.push(Op::Mkdir(cstr(&inside(a)?)?));
                }
            }
            Ok(())
        };
        const RO: libc::c_ulong = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
        for e in entries {
            match e {
                Entry::Dir { path, writable } => {
                    mkdirs(path, &mut ops)?;
                    ops.push(Op::Mkdir(cstr(&inside(path)?)?));
                    let remount = if *writable {
                        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC
                    } else {
                        RO
                    };
                    ops.push(Op::Bind {
                        src: cstr(path)?,
                        dst: cstr(&inside(path)?)?,
                        remount,
                    });
                }
                Entry::File(path) => {
                    mkdirs(path, &mut ops)?;
                    ops.push(Op::Touch(cstr(&inside(path)?)?));
                    ops.push(Op::Bind {
                        src: cstr(path)?,
                        dst: cstr(&inside(path)?)?,
                        remount: RO | libc::MS_NOEXEC,
                    });
                }
                Entry::Device { path, private } => {
                    use std::os::unix::fs::{FileTypeExt, MetadataExt};
                    let meta = std::fs::metadata(path)
                        .ok()
                        .filter(|m| m.file_type().is_char_device())
                        .ok_or_else(|| JailError::NoDevice(path.clone()))?;
                    mkdirs(path, &mut ops)?;
                    let perm = if *private { 0o600 } else { 0o666 };
                    ops.push(Op::Mknod {
                        path: cstr(&inside(path)?)?,
                        mode: libc::S_IFCHR | perm,
                        rdev: meta.rdev() as libc::dev_t,
                        owned: *private,
                    });
                }
                Entry::Symlink { path, target } => {
                    mkdirs(path, &mut ops)?;
                    ops.push(Op::Symlink {
                        target: cstr(target)?,
                        link: cstr(&inside(path)?)?,
                    });
                }
                Entry::Proc(path) => {
                    mkdirs(path, &mut ops)?;
                    ops.push(Op::Mkdir(cstr(&inside(path)?)?));
                    ops.push(Op::Proc(cstr(&inside(path)?)?));
                }
            }
        }
        if !cwd.is_absolute() {
            return Err(JailError::Relative(cwd.to_path_buf()));
        }
        Ok(Self {
            cgroup_procs: cgroup_procs
                .iter()
                .map(|p| cstr(p))
                .collect::<Result<_, _>>()?,
            mountpoint: cstr(mountpoint)?,
            ops,
            cwd: cstr(cwd)?,
            uid,
            gid: uid,
            pid_file: None,
        })
    }

    /// The child also writes its PID to `path` before anything else.
    pub fn with_pid_file(mut self, path: &Path) -> Result<Self, JailError> {
        self.pid_file = Some(cstr(path)?);
        Ok(self)
    }

    /// Runs in the forked child before exec: joins the cgroup, builds the mount namespace,
    /// pivots into it and drops to the VM's uid. Async-signal-safe: system calls only, no
    /// allocation (`last_os_error` builds an error from errno without allocating).
    pub fn apply(&self) -> std::io::Result<()> {
        fn check(rc: libc::c_long) -> std::io::Result<()> {
            if rc < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
        // SAFETY: every pointer passed below comes from a CString (or a static C string
        // literal) owned by `self`, which outlives the calls; the calls are plain system calls
        // with no memory-safety preconditions beyond valid NUL-terminated strings.
        unsafe {
            if let Some(path) = &self.pid_file {
                write_pid(path)?;
            }
            libc::umask(0);
            for procs in &self.cgroup_procs {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                check(fd.into())?;
                // "0" is the writing process itself.
                let n = libc::write(fd, c"0".as_ptr().cast(), 1);
                libc::close(fd);
                check(n as libc::c_long)?;
            }
            check(libc::unshare(libc::CLONE_NEWNS).into())?;
            let none = std::ptr::null::<libc::c_char>();
            check(
                libc::mount(
                    none,
                    c"/".as_ptr(),
                    none,
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                )
                .into(),
            )?;
            check(
                libc::mount(
                    c"vic-jail".as_ptr(),
                    self.mountpoint.as_ptr(),
                    c"tmpfs".as_ptr(),
                    // Not nodev: its device nodes must work. Only root (this process, before
                    // it drops to the VM's uid) can make them.
                    libc::MS_NOSUID | libc::MS_NOEXEC,
                    c"mode=0755,size=1m".as_ptr().cast(),
                )
                .into(),
            )?;
            for op in &self.ops {
                match op {
                    Op::Mkdir(p) => {
                        if libc::mkdir(p.as_ptr(), 0o755) < 0
                            && *libc::__errno_location() != libc::EEXIST
                        {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Op::Touch(p) => {
                        let fd = libc::open(
                            p.as_ptr(),
                            libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
                            0o600,
                        );
                        check(fd.into())?;
                        libc::close(fd);
                    }
                    Op::Mknod {
                        path,
                        mode,
                        rdev,
                        owned,
                    } => {
                        check(libc::mknod(path.as_ptr(), *mode, *rdev).into())?;
                        if *owned {
                            check(libc::chown(path.as_ptr(), self.uid, self.gid).into())?;
                        }
                    }
                    Op::Symlink { target, link } => {
                        check(libc::symlink(target.as_ptr(), link.as_ptr()).into())?
                    }
                    Op::Proc(dst) => check(
                        libc::mount(
                            c"proc".as_ptr(),
                            dst.as_ptr(),
                            c"proc".as_ptr(),
                            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                            c"hidepid=invisible,subset=pid".as_ptr().cast(),
                        )
                        .into(),
                    )?,
                    Op::Bind { src, dst, remount } => {
                        let flags = libc::MS_BIND | libc::MS_REC;
                        check(
                            libc::mount(src.as_ptr(), dst.as_ptr(), none, flags, std::ptr::null())
                                .into(),
                        )?;
                        let flags = libc::MS_BIND | libc::MS_REMOUNT | remount;
                        check(
                            libc::mount(none, dst.as_ptr(), none, flags, std::ptr::null()).into(),
                        )?;
                    }
                }
            }
            // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves
            // only the jail (the way runc does it, without a put_old directory).
            let old = libc::open(
                c"/".as_ptr(),
                libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC,
            );
            check(old.into())?;
            check(libc::chdir(self.mountpoint.as_ptr()).into())?;
            check(libc::syscall(
                libc::SYS_pivot_root,
                c".".as_ptr(),
                c".".as_ptr(),
            ))?;
            check(libc::fchdir(old).into())?;
            check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH).into())?;
            libc::close(old);
            check(libc::chdir(self.cwd.as_ptr()).into())?;
            // An empty bounding set: nothing can ever give this process a capability back.
            for cap in 0..64 {
                libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
            }
            check(libc::setgroups(0, std::ptr::null()).into())?;
            check(libc::setresgid(self.gid, self.gid, self.gid).into())?;
            // Leaving uid 0 clears the permitted, effective and ambient capability sets.
            check(libc::setresuid(self.uid, self.uid, self.uid).into())?;
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).into())?;
        }
        Ok(())
    }
}

/// Writes this process's PID and a newline to `path` (replacing it), without allocating:
/// safe to call between fork and exec.
fn write_pid(path: &CString) -> std::io::Result<()> {
    // SAFETY: getpid has no preconditions.
    let mut n = unsafe { libc::getpid() } as u32;
    let mut buf = [0u8; 12];
    let mut i = buf.len() - 1;
    buf[i] = b'\n';
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = buf.len() - i;
    // SAFETY: `path` is a valid NUL-terminated string and `buf[i..]` is `len` readable
    // bytes; open, write and close are plain system calls.
    let written = unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o600,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let w = libc::write(fd, buf[i..].as_ptr().cast(), len);
        libc::close(fd);
        w
    };
    if written != len as isize {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[test]
fn a_pid_is_written_whole() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("qemu.pid");
    write_pid(&CString::new(p.as_os_str().as_bytes()).unwrap()).unwrap();
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        format!("{}\n", std::process::id())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    #[test]
    fn uids_are_stable_in_range_and_skip_used_ones() {
        let a = uid_candidates("c1", &HashSet::new()).next().unwrap();
        assert_eq!(a, uid_candidates("c1", &HashSet::new()).next().unwrap());
        assert!(valid_uid(a));
        let used: HashSet<u32> = [a].into();
        let b = uid_candidates("c1", &used).next().unwrap();
        assert_ne!(a, b);
        assert!(valid_uid(b));
        let all: HashSet<u32> = (UID_BASE..UID_BASE + UID_COUNT).collect();
        assert_eq!(uid_candidates("c1", &all).next(), None);
        assert!(!valid_uid(0) && !valid_uid(UID_BASE - 1) && !valid_uid(UID_BASE + UID_COUNT));
    }

    #[test]
    fn plan_mirrors_host_paths_under_the_mountpoint() {
        let entries = [
            Entry::Dir {
                path: "/usr".into(),
                writable: false,
            },
            Entry::Symlink {
                path: "/lib".into(),
                target: "usr/lib".into(),
            },
            Entry::Device {
                path: "/dev/null".into(),
                private: false,
            },
            Entry::Dir {
                path: "/s/vms/c1".into(),
                writable: true,
            },
            Entry::File("/s/images/i/base.ext4".into()),
        ];
        let plan = Plan::new(
            Path::new("/j"),
            &entries,
            Path::new("/s/vms/c1"),
            900_007,
            &[],
        )
        .unwrap();
        let ro = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
        assert_eq!(
            plan.ops,
            [
                Op::Mkdir(c("/j/usr")),
                Op::Bind {
                    src: c("/usr"),
                    dst: c("/j/usr"),
                    remount: ro
                },
                Op::Symlink {
                    target: c("usr/lib"),
                    link: c("/j/lib")
                },
                Op::Mkdir(c("/j/dev")),
                Op::Mknod {
                    path: c("/j/dev/null"),
                    mode: libc::S_IFCHR | 0o666,
                    rdev: libc::makedev(1, 3),
                    owned: false
                },
                Op::Mkdir(c("/j/s")),
                Op::Mkdir(c("/j/s/vms")),
                Op::Mkdir(c("/j/s/vms/c1")),
                Op::Bind {
                    src: c("/s/vms/c1"),
                    dst: c("/j/s/vms/c1"),
                    remount: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC
                },
                Op::Mkdir(c("/j/s/images")),
                Op::Mkdir(c("/j/s/images/i")),
                Op::Touch(c("/j/s/images/i/base.ext4")),
                Op::Bind {
                    src: c("/s/images/i/base.ext4"),
                    dst: c("/j/s/images/i/base.ext4"),
                    remount: ro | libc::MS_NOEXEC
                },
            ]
        );
        assert_eq!((plan.uid, plan.gid), (900_007, 900_007));
        assert_eq!(plan.cwd, c("/s/vms/c1"));
    }

    #[test]
    fn relative_paths_and_non_devices_are_refused() {
        let e = [Entry::Device {
            path: "/usr".into(),
            private: false,
        }];
        assert!(Plan::new(Path::new("/j"), &e, Path::new("/"), UID_BASE, &[]).is_err());
        let e = [Entry::File("base.ext4".into())];
        assert!(Plan::new(Path::new("/j"), &e, Path::new("/"), UID_BASE, &[]).is_err());
        assert!(Plan::new(Path::new("/j"), &[], Path::new("vm"), UID_BASE, &[]).is_err());
    }

    #[test]
    fn system_entries_hold_usr_devices_and_an_outside_qemu() {
        let e = system_entries(Path::new("/opt/qemu"), false);
        assert!(e.contains(&Entry::Dir {
            path: "/usr".into(),
            writable: false
        }));
        let dev = |p: &str, private| Entry::Device {
            path: p.into(),
            private,
        };
        assert!(e.contains(&dev("/dev/urandom", false)));
        assert!(!e.contains(&dev("/dev/kvm", true)));
        assert!(e.contains(&Entry::File("/opt/qemu".into())));
        let e = system_entries(Path::new("/usr/bin/qemu-system-x86_64"), true);
        assert!(e.contains(&dev("/dev/kvm", true)));
        assert!(!e.iter().any(|x| matches!(x, Entry::File(_))));
    }
}
