//! Thin, checked wrappers over the few syscalls tether needs that `std` does not offer.

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

/// Credits `bytes` to the kernel's entropy pool with RNDADDENTROPY on `/dev/urandom`.
pub fn add_entropy(bytes: &[u8]) -> io::Result<()> {
    const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
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
    Ok(())
}

/// kill(2).
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    check(unsafe { libc::kill(pid, sig) })?;
    Ok(())
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
