//! Thin, checked wrappers over the few syscalls tether needs that `std` does not offer. The
//! rest of the tether reaches them through [`crate::syscall::LinuxSyscall`] only.
//!
//! The wrappers under "The forked child" run between fork and exec in a multi-threaded
//! process: they make async-signal-safe calls only and allocate nothing.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `path` as a C string; paths with NUL bytes are an `InvalidInput` error.
pub fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// mount(2). `fstype` and `data` may be empty.
pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let source = CString::new(source)?;
    let target = cpath(target)?;
    let fstype = CString::new(fstype)?;
    let data = CString::new(data)?;
    let fs_ptr = if fstype.is_empty() {
        std::ptr::null()
    } else {
        fstype.as_ptr()
    };
    let data_ptr = if data.is_empty() {
        std::ptr::null()
    } else {
        data.as_ptr().cast()
    };
    // SAFETY: every pointer is either null (allowed by mount(2)) or a live NUL-terminated string.
    check(unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fs_ptr, flags, data_ptr) })?;
    Ok(())
}

/// umount2(2).
pub fn umount(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let target = cpath(target)?;
    // SAFETY: `target` is a live NUL-terminated string.
    check(unsafe { libc::umount2(target.as_ptr(), flags) })?;
    Ok(())
}

/// Sets CLOCK_REALTIME to `nanos` since the Unix epoch.
pub fn set_clock(nanos: u64) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: (nanos / 1_000_000_000) as libc::time_t,
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `ts` is a valid timespec that outlives the call.
    check(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) })?;
    Ok(())
}

/// Brings the loopback interface up, as a container's network namespace has it.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket(2) with constant arguments; the fd is owned right below.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just returned by socket(2) and is not owned elsewhere.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads into the ifreq we own, which lives across the call.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: the union's flags member is what SIOCGIFFLAGS filled in.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) })?;
    Ok(())
}

/// sethostname(2).
pub fn set_hostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })?;
    Ok(())
}

/// setdomainname(2).
pub fn set_domainname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call.
    check(unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) })?;
    Ok(())
}

/// mknod(2) of a device node with the given mode (type and permission bits) and numbers.
pub fn mknod(path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
    let path = cpath(path)?;
    // SAFETY: `path` is a live NUL-terminated string.
    check(unsafe { libc::mknod(path.as_ptr(), mode, rdev) })?;
    Ok(())
}

/// lchown(2): the node itself, never what a symlink names.
pub fn chown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let path = cpath(path)?;
    // SAFETY: `path` is a live NUL-terminated string.
    check(unsafe { libc::lchown(path.as_ptr(), uid, gid) })?;
    Ok(())
}

/// Credits `bytes` to the kernel's entropy pool with RNDADDENTROPY on `/dev/urandom`, then
/// reseeds the CRNG from it (RNDRESEEDCRNG): a guest restored from a snapshot, or cloned from
/// a template, holds the CRNG state of the moment it was saved, and added entropy alone does
/// not reach `/dev/urandom` until the next scheduled reseed (two clones read the same bytes).
pub fn add_entropy(bytes: &[u8]) -> io::Result<()> {
    const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
    const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
    if bytes.is_empty() {
        return Ok(());
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")?;
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut req = Vec::with_capacity(8 + bytes.len());
    req.extend_from_slice(&((bytes.len() * 8) as i32).to_ne_bytes());
    req.extend_from_slice(&(bytes.len() as i32).to_ne_bytes());
    req.extend_from_slice(bytes);
    // SAFETY: `req` is laid out as struct rand_pool_info with `buf_size` bytes of data after it.
    check(unsafe { libc::ioctl(f.as_raw_fd(), RNDADDENTROPY, req.as_ptr()) })?;
    // SAFETY: RNDRESEEDCRNG takes no argument.
    check(unsafe { libc::ioctl(f.as_raw_fd(), RNDRESEEDCRNG) })?;
    Ok(())
}

/// kill(2).
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    check(unsafe { libc::kill(pid, sig) })?;
    Ok(())
}

/// sync(2).
pub fn sync() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
}

/// reboot(2) with `RB_AUTOBOOT`, which does not return when it works: the error is why not.
pub fn reboot() -> io::Error {
    // SAFETY: reboot only needs CAP_SYS_BOOT, which PID 1 has; on success it does not return.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    io::Error::last_os_error()
}

/// Sets a terminal's window size.
pub fn set_winsize(fd: RawFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `ws` is a valid winsize for TIOCSWINSZ and outlives the call.
    check(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) })?;
    Ok(())
}

/// A pseudo-terminal pair from the devpts instance whose `ptmx` is given.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// Opens a new pseudo-terminal on `ptmx` (e.g. the container's `/dev/pts/ptmx`).
pub fn open_pty(ptmx: &Path) -> io::Result<Pty> {
    let path = cpath(ptmx)?;
    // SAFETY: `path` is a live NUL-terminated string; the result is checked.
    let m = check(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: `m` is a freshly opened descriptor that nothing else owns.
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to an int that outlives the call.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })?;
    // TIOCGPTPEER opens the peer without a path lookup, so it works whatever the mount layout.
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new descriptor.
    let s = check(unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: `s` is a freshly opened descriptor that nothing else owns.
    let slave = unsafe { OwnedFd::from_raw_fd(s) };
    Ok(Pty { master, slave })
}

/// fchown(2).
pub fn fchown(fd: RawFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: fchown has no memory-safety preconditions.
    check(unsafe { libc::fchown(fd, uid, gid) })?;
    Ok(())
}

/// Makes sure descriptors 0, 1 and 2 are open (the kernel leaves them closed when the
/// initramfs has no /dev/console), so later `open`s never land on them.
pub fn ensure_std_fds(console: &CStr) {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the descriptor table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            continue;
        }
        // SAFETY: `console` is a NUL-terminated string; O_NOCTTY keeps PID 1 without a terminal.
        let mut new = unsafe { libc::open(console.as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
        if new < 0 {
            // SAFETY: as above, with a path that always exists on devtmpfs.
            new = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
        if new >= 0 && new != fd {
            // SAFETY: both descriptors are valid; dup2 replaces `fd`, which is closed.
            unsafe {
                libc::dup2(new, fd);
                libc::close(new);
            }
        }
    }
}

/// Decodes a waitpid status into a Docker exit code (128+signal when killed).
pub fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        128
    }
}

// The forked child: async-signal-safe calls only, nothing allocated.

/// Forks. The child runs `child`, which returns only if it could not exec: the stage and errno
/// it returns go back over a close-on-exec pipe and the child exits 127. Returns the child's
/// PID once it has exec'd, or the stage and errno it sent (the failed child is left to the
/// caller's reaper).
pub fn fork_exec(child: &dyn Fn() -> Result<(), (u8, i32)>) -> io::Result<Result<i32, (u8, i32)>> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these descriptors; each is owned exactly once.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fork has no preconditions; the child below only makes async-signal-safe calls on
    // memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        if let Err((stage, errno)) = child() {
            let e = errno.to_ne_bytes();
            let msg = [stage, e[0], e[1], e[2], e[3]];
            // SAFETY: `msg` outlives the write; write is async-signal-safe.
            unsafe { libc::write(wr.as_raw_fd(), msg.as_ptr().cast(), msg.len()) };
        }
        // SAFETY: _exit is async-signal-safe and ends the child without running the parent's
        // exit handlers.
        unsafe { libc::_exit(127) }
    }
    drop(wr);
    let mut buf = [0u8; 5];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reading into the unfilled tail of `buf`.
        let n = unsafe {
            libc::read(
                rd.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        got += n as usize;
    }
    if got == 0 {
        return Ok(Ok(pid));
    }
    let errno = i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]]);
    Ok(Err((buf[0], errno)))
}

/// Undoes what the Rust runtime set up for tether: an empty signal mask, and SIGPIPE back to
/// its default (an ignored SIGPIPE survives exec).
pub fn reset_signals() {
    // SAFETY: `set` is a sigset_t we own; sigprocmask and signal are async-signal-safe.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// setsid(2).
pub fn setsid() -> io::Result<()> {
    // SAFETY: setsid has no memory-safety preconditions.
    check(unsafe { libc::setsid() })?;
    Ok(())
}

/// dup2(2).
pub fn dup2(src: RawFd, dst: RawFd) -> io::Result<()> {
    // SAFETY: dup2 has no memory-safety preconditions.
    check(unsafe { libc::dup2(src, dst) })?;
    Ok(())
}

/// Makes the terminal on `fd` the controlling terminal (TIOCSCTTY).
pub fn set_controlling_tty(fd: RawFd) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument.
    check(unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) })?;
    Ok(())
}

/// Writes "0" to a cgroup's `cgroup.procs`: the calling process joins it.
pub fn join_cgroup(procs: &CStr) -> io::Result<()> {
    // SAFETY: plain syscalls on a string the parent prepared and a descriptor owned here.
    let joined = unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            false
        } else {
            let n = libc::write(fd, c"0".as_ptr().cast(), 1);
            libc::close(fd);
            n == 1
        }
    };
    match joined {
        true => Ok(()),
        false => Err(io::Error::last_os_error()),
    }
}

/// setrlimit(2).
pub fn setrlimit(resource: u32, limit: &libc::rlimit) -> io::Result<()> {
    // SAFETY: `limit` is a valid rlimit that outlives the call.
    check(unsafe { libc::setrlimit(resource as _, limit) })?;
    Ok(())
}

/// Enters the container's root: a private mount namespace, the root mount moved onto `/`,
/// chroot into it (runc's way on a ramfs root, where pivot_root is not allowed). Only for a
/// forked child, which alone is changed.
pub fn enter_root(root: &CStr) -> io::Result<()> {
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: plain syscalls on strings the parent prepared or static ones.
    let failed = unsafe {
        libc::unshare(libc::CLONE_NEWNS) < 0
            || libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) < 0
            || libc::chdir(root.as_ptr()) < 0
            || libc::mount(
                c".".as_ptr(),
                c"/".as_ptr(),
                null,
                libc::MS_MOVE,
                std::ptr::null(),
            ) < 0
            || libc::chroot(c".".as_ptr()) < 0
            || libc::chdir(c"/".as_ptr()) < 0
    };
    match failed {
        true => Err(io::Error::last_os_error()),
        false => Ok(()),
    }
}

/// Gives the calling thread a root of its own: its filesystem attributes unshared from the
/// rest of the process (`unshare(CLONE_FS)`), then chroot into `root`. The other threads,
/// and the mount namespace, are untouched.
pub fn enter_root_thread(root: &Path) -> io::Result<()> {
    let root = cpath(root)?;
    // SAFETY: plain syscalls on a live NUL-terminated path; CLONE_FS affects this thread only.
    let failed = unsafe {
        libc::unshare(libc::CLONE_FS) < 0
            || libc::chroot(root.as_ptr()) < 0
            || libc::chdir(c"/".as_ptr()) < 0
    };
    match failed {
        true => Err(io::Error::last_os_error()),
        false => Ok(()),
    }
}

/// chdir(2).
pub fn chdir(dir: &CStr) -> io::Result<()> {
    // SAFETY: `dir` is a live NUL-terminated string.
    check(unsafe { libc::chdir(dir.as_ptr()) })?;
    Ok(())
}

/// Drops one capability from the bounding set (PR_CAPBSET_DROP).
pub fn drop_bounding(cap: u32) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) })?;
    Ok(())
}

/// PR_SET_KEEPCAPS: the permitted set survives the change to a non-zero uid.
pub fn keep_caps() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) })?;
    Ok(())
}

/// setgroups(2).
pub fn setgroups(groups: &[libc::gid_t]) -> io::Result<()> {
    // SAFETY: the pointer and length describe `groups`, which outlives the call.
    check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) })?;
    Ok(())
}

/// setgid(2).
pub fn setgid(gid: u32) -> io::Result<()> {
    // SAFETY: setgid has no memory-safety preconditions.
    check(unsafe { libc::setgid(gid) })?;
    Ok(())
}

/// setuid(2).
pub fn setuid(uid: u32) -> io::Result<()> {
    // SAFETY: setuid has no memory-safety preconditions.
    check(unsafe { libc::setuid(uid) })?;
    Ok(())
}

/// `struct __user_cap_header_struct` of capset(2).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct` of capset(2); version 3 takes two of them (bits 0–31, 32–63).
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// capset(2): permitted and effective become `caps`, inheritable empty.
pub fn capset(caps: u64) -> io::Result<()> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let half = |shift: u32| CapData {
        effective: (caps >> shift) as u32,
        permitted: (caps >> shift) as u32,
        inheritable: 0,
    };
    let data = [half(0), half(32)];
    // SAFETY: capset reads a header and two data structs laid out as the kernel's, alive here.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Empties the ambient set (exists since Linux 4.3; the guest's kernel has it).
pub fn clear_ambient_caps() -> io::Result<()> {
    let clear = libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong;
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_CAP_AMBIENT, clear, 0, 0, 0) })?;
    Ok(())
}

/// PR_SET_NO_NEW_PRIVS.
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    Ok(())
}

/// execve(2), which returns only when it failed: the error is why.
pub fn execve(path: &CStr, argv: &CStrArray, env: &CStrArray) -> io::Error {
    // SAFETY: `path` is NUL-terminated; both arrays are null-terminated arrays of pointers to
    // NUL-terminated strings that they own (see CStrArray).
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), env.as_ptr()) };
    io::Error::last_os_error()
}

/// `items` as C strings; one with a NUL byte is an `InvalidInput` error.
pub fn cstrings(items: &[String]) -> io::Result<Vec<CString>> {
    items
        .iter()
        .map(|s| {
            CString::new(s.as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "argument contains NUL"))
        })
        .collect()
}

/// Strings as execve(2) takes them: NUL-terminated, behind a null-terminated array of
/// pointers, all made before the fork.
pub struct CStrArray {
    /// Owns what `ptrs` points to; read only by tests.
    #[cfg_attr(not(test), allow(dead_code))]
    strings: Vec<CString>,
    /// Pointers into `strings`' heap buffers, which do not move when the vector does.
    ptrs: Vec<*const libc::c_char>,
}

impl CStrArray {
    /// Fails as [`cstrings`] does.
    pub fn new(items: &[String]) -> io::Result<Self> {
        let strings = cstrings(items)?;
        let ptrs = (strings.iter().map(|c| c.as_ptr()))
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        Ok(Self { strings, ptrs })
    }

    pub fn as_ptr(&self) -> *const *const libc::c_char {
        self.ptrs.as_ptr()
    }

    #[cfg(test)]
    pub fn strings(&self) -> &[CString] {
        &self.strings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_docker() {
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(libc::SIGTERM), 143);
        assert_eq!(exit_code(libc::SIGKILL), 137);
    }
}
