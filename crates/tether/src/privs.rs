//! What a freshly forked child applies to itself before it execs (called from `exec.rs`,
//! async-signal-safe syscalls only): joining the pids cgroup, entering the container's root
//! in a mount namespace of its own, and the capability sets.

use std::ffi::CString;

/// What the child applies to itself before it execs.
#[derive(Debug, Default)]
pub struct Restrictions {
    /// `cgroup.procs` of the pids cgroup to join.
    pub cgroup_procs: Option<CString>,
    /// `setrlimit` resource numbers and values.
    pub rlimits: Vec<(u32, libc::rlimit)>,
    /// Bounding, permitted and effective set; `None` keeps every capability.
    pub capabilities: Option<u64>,
    /// The highest capability the kernel knows (`/proc/sys/kernel/cap_last_cap`).
    pub last_cap: u32,
    pub no_new_privs: bool,
}

/// Writes "0" to a cgroup's `cgroup.procs`: the calling process joins it.
///
/// # Safety
/// Async-signal-safe; `procs` is a live NUL-terminated path.
pub unsafe fn join_cgroup(procs: &CString) -> libc::c_int {
    // SAFETY: plain syscalls on a string the parent prepared and a descriptor owned here.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return -1;
        }
        let n = libc::write(fd, c"0".as_ptr().cast(), 1);
        libc::close(fd);
        if n == 1 {
            0
        } else {
            -1
        }
    }
}

/// Enters the container's root: a private mount namespace, the root mount moved onto `/`,
/// chroot into it (runc's way on a ramfs root, where pivot_root is not allowed).
///
/// # Safety
/// Async-signal-safe; only for a forked child, which alone is changed.
pub unsafe fn enter_root(root: &CString) -> libc::c_int {
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: plain syscalls on strings the parent prepared or static ones.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) < 0
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
        {
            return -1;
        }
    }
    0
}

/// Drops from the bounding set every capability not in `caps`.
///
/// # Safety
/// Async-signal-safe; changes only the calling process.
pub unsafe fn drop_bounding(caps: u64, last_cap: u32) -> libc::c_int {
    for cap in 0..=last_cap.min(63) {
        if caps & (1 << cap) == 0 {
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } < 0 {
                return -1;
            }
        }
    }
    0
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

/// Permitted and effective become `caps`, inheritable and ambient empty (as Docker sets them).
///
/// # Safety
/// Async-signal-safe; changes only the calling process.
pub unsafe fn set_capabilities(caps: u64, last_cap: u32) -> libc::c_int {
    let known = if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    };
    let caps = caps & known;
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
    unsafe {
        if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) < 0 {
            return -1;
        }
        // Ambient capabilities exist since 4.3; the guest's kernel has them.
        let clear = libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong;
        if libc::prctl(libc::PR_CAP_AMBIENT, clear, 0, 0, 0) < 0 {
            return -1;
        }
    }
    0
}
