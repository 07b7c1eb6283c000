//! A [`Syscall`] and [`ChildSyscall`] for tests: every call that changes something is recorded
//! with its arguments, in order ([`Call`]); a call can be made to fail with a chosen errno
//! ([`RecordingSyscall::fail`]); files live in a temporary directory that stands for the VM's
//! `/` (so `/root-fs/etc/passwd` is read from `<tmp>/root-fs/etc/passwd`), and device nodes in
//! a table that starts with the guest's standard ones.
//!
//! Mounts are recorded only. Directories, files, symlinks and nodes are also made in the
//! temporary directory, so later checks see them as the VM would. `spawn` records the plan and
//! runs the child's steps against the fake itself, without forking: its `execve` succeeds
//! unless told to fail.

use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard};

pub use super::fake_call::Call;
use super::{ChildMain, ChildSyscall, Node, Syscall};
use crate::plan::{CStrArray, ChildFailure, ChildPlan};
use crate::sys::Pty;

/// The process a `spawn` was asked for, as the plan says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spawned {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub candidates: Vec<String>,
    pub root: String,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub tty: bool,
}

fn text(c: &CStr) -> String {
    c.to_string_lossy().into_owned()
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

impl From<&ChildPlan> for Spawned {
    fn from(p: &ChildPlan) -> Self {
        let texts = |v: &[std::ffi::CString]| v.iter().map(|c| text(c)).collect();
        Self {
            argv: texts(p.argv.strings()),
            env: texts(p.env.strings()),
            candidates: texts(&p.candidates),
            root: text(&p.root),
            cwd: text(&p.cwd),
            uid: p.uid,
            gid: p.gid,
            groups: p.groups.clone(),
            tty: p.tty,
        }
    }
}

type Rule = (Box<dyn Fn(&Call) -> bool + Send + Sync>, i32);

/// The recording fake. See the module documentation.
pub struct RecordingSyscall {
    dir: tempfile::TempDir,
    calls: Mutex<Vec<Call>>,
    rules: Mutex<Vec<Rule>>,
    devices: Mutex<HashMap<PathBuf, Node>>,
    next_pid: AtomicI32,
    /// What each spawned child writes to its stdout at once.
    child_output: Mutex<Vec<u8>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A character device `major:minor`, mode 0666, owned by root.
pub fn char_device(major: u32, minor: u32) -> Node {
    Node {
        mode: libc::S_IFCHR | 0o666,
        rdev: libc::makedev(major, minor),
        uid: 0,
        gid: 0,
    }
}

impl RecordingSyscall {
    /// An empty root with the guest's standard devices, PIDs from 100.
    pub fn new() -> Self {
        let me = Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
            calls: Mutex::default(),
            rules: Mutex::default(),
            devices: Mutex::default(),
            next_pid: AtomicI32::new(100),
            child_output: Mutex::default(),
        };
        for (name, major, minor) in [
            ("null", 1, 3),
            ("zero", 1, 5),
            ("full", 1, 7),
            ("random", 1, 8),
            ("urandom", 1, 9),
            ("tty", 5, 0),
        ] {
            me.device(&format!("/dev/{name}"), char_device(major, minor));
        }
        me
    }

    /// Makes every child spawned from now on write `bytes` to its stdout as it starts.
    pub fn child_writes(&self, bytes: &[u8]) {
        *lock(&self.child_output) = bytes.to_vec();
    }

    /// Where the VM's `path` is in the temporary directory.
    pub fn host(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        self.dir.path().join(path.strip_prefix("/").unwrap_or(path))
    }

    /// Writes a file of the VM (its directories made as needed), unrecorded.
    pub fn file(&self, path: &str, content: &str) {
        let host = self.host(path);
        if let Some(parent) = host.parent() {
            std::fs::create_dir_all(parent).expect("a fixture directory");
        }
        std::fs::write(host, content).expect("a fixture file");
    }

    /// Makes a directory of the VM, unrecorded.
    pub fn dir(&self, path: &str) {
        std::fs::create_dir_all(self.host(path)).expect("a fixture directory");
    }

    /// Adds a device node of the VM.
    pub fn device(&self, path: &str, node: Node) {
        lock(&self.devices).insert(PathBuf::from(path), node);
    }

    /// Makes every later call for which `when` holds fail with `errno` (it is still recorded).
    pub fn fail(&self, errno: i32, when: impl Fn(&Call) -> bool + Send + Sync + 'static) {
        lock(&self.rules).push((Box::new(when), errno));
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    /// The mounts and unmounts so far, in order.
    pub fn mounts(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::is_mount).collect()
    }

    /// Records `call`, then fails it if a rule says so.
    fn record(&self, call: Call) -> io::Result<()> {
        let errno = (lock(&self.rules).iter())
            .find(|(when, _)| when(&call))
            .map(|(_, errno)| *errno);
        lock(&self.calls).push(call);
        match errno {
            Some(e) => Err(io::Error::from_raw_os_error(e)),
            None => Ok(()),
        }
    }
}

impl Syscall for RecordingSyscall {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: libc::c_ulong,
        data: &str,
    ) -> io::Result<()> {
        self.record(Call::mount(source, &shown(target), fstype, flags, data))
    }

    fn umount(&self, target: &Path, flags: libc::c_int) -> io::Result<()> {
        self.record(Call::Umount {
            target: shown(target),
            flags,
        })
    }

    fn sync(&self) {
        let _ = self.record(Call::Sync);
    }

    fn exists(&self, path: &Path) -> bool {
        lock(&self.devices).contains_key(path) || self.host(path).exists()
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.host(path).is_dir()
    }

    fn is_symlink(&self, path: &Path) -> bool {
        self.host(path).is_symlink()
    }

    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(self.host(path))
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        std::fs::read_dir(self.host(path))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect()
    }

    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.record(Call::WriteFile {
            path: shown(path),
            data: String::from_utf8_lossy(data).into_owned(),
        })?;
        std::fs::write(self.host(path), data)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.record(Call::RemoveFile(shown(path)))?;
        std::fs::remove_file(self.host(path))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.record(Call::Mkdir(shown(path)))?;
        std::fs::create_dir_all(self.host(path))
    }

    fn symlink(&self, target: &str, link: &Path) -> io::Result<()> {
        self.record(Call::Symlink {
            target: target.into(),
            link: shown(link),
        })?;
        std::os::unix::fs::symlink(target, self.host(link))
    }

    fn stat(&self, path: &Path) -> io::Result<Node> {
        if let Some(node) = lock(&self.devices).get(path) {
            return Ok(*node);
        }
        let meta = std::fs::metadata(self.host(path))?;
        Ok(Node {
            mode: meta.mode(),
            rdev: 0,
            uid: 0,
            gid: 0,
        })
    }

    fn mknod(&self, path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
        self.record(Call::Mknod {
            path: shown(path),
            mode,
            rdev,
        })?;
        // A plain file stands for the node, so that it exists from now on.
        std::fs::write(self.host(path), b"")
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        self.record(Call::Chown {
            path: shown(path),
            uid,
            gid,
        })
    }

    fn chmod(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.record(Call::Chmod {
            path: shown(path),
            mode,
        })
    }

    fn set_clock(&self, nanos: u64) -> io::Result<()> {
        self.record(Call::SetClock(nanos))
    }

    fn add_entropy(&self, bytes: &[u8]) -> io::Result<()> {
        self.record(Call::AddEntropy(bytes.to_vec()))
    }

    fn set_hostname(&self, name: &str) -> io::Result<()> {
        self.record(Call::SetHostname(name.into()))
    }

    fn set_domainname(&self, name: &str) -> io::Result<()> {
        self.record(Call::SetDomainname(name.into()))
    }

    fn loopback_up(&self) -> io::Result<()> {
        self.record(Call::LoopbackUp)
    }

    fn configure_interface(&self, iface: &tether_proto::Interface) -> io::Result<String> {
        self.record(Call::ConfigureInterface {
            mac: iface.mac.clone(),
            address: format!("{}/{}", iface.address, iface.prefix_len),
        })?;
        Ok("eth0".into())
    }

    fn configure_ipv6(&self, name: &str, cfg: &tether_proto::Ipv6Config) -> io::Result<()> {
        self.record(Call::ConfigureIpv6 {
            name: name.into(),
            address: format!("{}/{}", cfg.address, cfg.prefix_len),
            gateway: cfg.gateway.map(|g| g.to_string()),
        })
    }

    fn add_link_local(&self, name: &str, addresses: &[std::net::IpAddr]) -> io::Result<()> {
        self.record(Call::AddLinkLocal {
            name: name.into(),
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
        })
    }

    fn change_mac(&self, from: &str, to: &str) -> io::Result<()> {
        self.record(Call::ChangeMac {
            from: from.into(),
            to: to.into(),
        })
    }

    fn default_route(&self, gateway: std::net::Ipv4Addr) -> io::Result<()> {
        self.record(Call::DefaultRoute(gateway.to_string()))
    }

    fn reboot(&self) -> io::Result<()> {
        self.record(Call::Reboot)
    }

    fn kill(&self, pid: i32, signal: i32) -> io::Result<()> {
        self.record(Call::Kill { pid, signal })
    }

    fn spawn(&self, plan: &ChildPlan, main: ChildMain) -> io::Result<Result<i32, ChildFailure>> {
        self.record(Call::Spawn(Spawned::from(plan)))?;
        let spawned = main(self, plan).map(|()| self.next_pid.fetch_add(1, Ordering::SeqCst));
        let output = lock(&self.child_output).clone();
        if spawned.is_ok() && !output.is_empty() {
            // SAFETY: the plan's stdout is a descriptor its maker holds open until after the
            // spawn; writing a buffer we own to it.
            let n = unsafe { libc::write(plan.stdio[1], output.as_ptr().cast(), output.len()) };
            if n != output.len() as isize {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(spawned)
    }

    fn open_pty(&self, ptmx: &Path) -> io::Result<Pty> {
        // A socket pair stands for the terminal: output and input flow as on a real one.
        let (master, slave) = UnixStream::pair()?;
        let (master, slave) = (OwnedFd::from(master), OwnedFd::from(slave));
        self.record(Call::OpenPty {
            ptmx: shown(ptmx),
            master: master.as_raw_fd(),
        })?;
        Ok(Pty { master, slave })
    }

    fn set_winsize(&self, fd: RawFd, rows: u16, cols: u16) -> io::Result<()> {
        self.record(Call::SetWinsize { fd, rows, cols })
    }

    fn fchown(&self, fd: RawFd, uid: u32, gid: u32) -> io::Result<()> {
        self.record(Call::Fchown { fd, uid, gid })
    }
}

impl ChildSyscall for RecordingSyscall {
    fn reset_signals(&self) {
        let _ = self.record(Call::ResetSignals);
    }

    fn setsid(&self) -> io::Result<()> {
        self.record(Call::Setsid)
    }

    fn dup2(&self, src: RawFd, dst: RawFd) -> io::Result<()> {
        self.record(Call::Dup2 { src, dst })
    }

    fn set_controlling_tty(&self, fd: RawFd) -> io::Result<()> {
        self.record(Call::ControllingTty(fd))
    }

    fn join_cgroup(&self, procs: &CStr) -> io::Result<()> {
        self.record(Call::JoinCgroup(text(procs)))
    }

    fn setrlimit(&self, resource: u32, limit: &libc::rlimit) -> io::Result<()> {
        self.record(Call::Setrlimit {
            resource,
            soft: limit.rlim_cur,
            hard: limit.rlim_max,
        })
    }

    fn enter_root(&self, root: &CStr) -> io::Result<()> {
        self.record(Call::EnterRoot(text(root)))
    }

    fn chdir(&self, dir: &CStr) -> io::Result<()> {
        self.record(Call::Chdir(text(dir)))
    }

    fn drop_bounding(&self, cap: u32) -> io::Result<()> {
        self.record(Call::DropBounding(cap))
    }

    fn keep_caps(&self) -> io::Result<()> {
        self.record(Call::KeepCaps)
    }

    fn setgroups(&self, groups: &[libc::gid_t]) -> io::Result<()> {
        self.record(Call::Setgroups(groups.to_vec()))
    }

    fn setgid(&self, gid: u32) -> io::Result<()> {
        self.record(Call::Setgid(gid))
    }

    fn setuid(&self, uid: u32) -> io::Result<()> {
        self.record(Call::Setuid(uid))
    }

    fn capset(&self, caps: u64) -> io::Result<()> {
        self.record(Call::Capset(caps))
    }

    fn clear_ambient_caps(&self) -> io::Result<()> {
        self.record(Call::ClearAmbientCaps)
    }

    fn set_no_new_privs(&self) -> io::Result<()> {
        self.record(Call::NoNewPrivs)
    }

    fn execve(&self, path: &CStr, _argv: &CStrArray, _env: &CStrArray) -> io::Result<()> {
        self.record(Call::Execve(text(path)))
    }
}
