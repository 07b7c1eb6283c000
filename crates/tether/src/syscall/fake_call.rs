//! What the recording syscalls of `fake.rs` record: one [`Call`] per call made.

use std::os::fd::RawFd;

use super::fake::Spawned;

/// One recorded call. Paths are the VM's; C strings are shown as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: String,
        target: String,
        fstype: String,
        flags: libc::c_ulong,
        data: String,
    },
    Umount {
        target: String,
        flags: libc::c_int,
    },
    Sync,
    WriteFile {
        path: String,
        data: String,
    },
    RemoveFile(String),
    Mkdir(String),
    Symlink {
        target: String,
        link: String,
    },
    Mknod {
        path: String,
        mode: u32,
        rdev: u64,
    },
    Chown {
        path: String,
        uid: u32,
        gid: u32,
    },
    Chmod {
        path: String,
        mode: u32,
    },
    SetClock(u64),
    AddEntropy(Vec<u8>),
    SetHostname(String),
    SetDomainname(String),
    LoopbackUp,
    ConfigureInterface {
        mac: String,
        address: String,
    },
    ConfigureIpv6 {
        name: String,
        address: String,
        gateway: Option<String>,
    },
    AddLinkLocal {
        name: String,
        addresses: Vec<String>,
    },
    ChangeMac {
        from: String,
        to: String,
    },
    DefaultRoute(String),
    Reboot,
    Kill {
        pid: i32,
        signal: i32,
    },
    Spawn(Spawned),
    OpenPty {
        ptmx: String,
        master: RawFd,
    },
    SetWinsize {
        fd: RawFd,
        rows: u16,
        cols: u16,
    },
    Fchown {
        fd: RawFd,
        uid: u32,
        gid: u32,
    },
    // The child's calls.
    ResetSignals,
    Setsid,
    Dup2 {
        src: RawFd,
        dst: RawFd,
    },
    ControllingTty(RawFd),
    JoinCgroup(String),
    Setrlimit {
        resource: u32,
        soft: u64,
        hard: u64,
    },
    EnterRoot(String),
    Chdir(String),
    DropBounding(u32),
    KeepCaps,
    Setgroups(Vec<u32>),
    Setgid(u32),
    Setuid(u32),
    Capset(u64),
    ClearAmbientCaps,
    NoNewPrivs,
    Execve(String),
}

impl Call {
    pub fn mount(
        source: &str,
        target: &str,
        fstype: &str,
        flags: libc::c_ulong,
        data: &str,
    ) -> Self {
        Self::Mount {
            source: source.into(),
            target: target.into(),
            fstype: fstype.into(),
            flags,
            data: data.into(),
        }
    }

    pub fn is_mount(&self) -> bool {
        matches!(self, Self::Mount { .. } | Self::Umount { .. })
    }

    /// A call the forked child makes (between the `Spawn` and its exec).
    pub fn in_child(&self) -> bool {
        use Call::*;
        matches!(
            self,
            ResetSignals
                | Setsid
                | Dup2 { .. }
                | ControllingTty(_)
                | JoinCgroup(_)
                | Setrlimit { .. }
                | EnterRoot(_)
                | Chdir(_)
                | DropBounding(_)
                | KeepCaps
                | Setgroups(_)
                | Setgid(_)
                | Setuid(_)
                | Capset(_)
                | ClearAmbientCaps
                | NoNewPrivs
                | Execve(_)
        )
    }
}
