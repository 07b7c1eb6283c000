//! The wire protocol between a container VM's **tether** (PID 1 in the guest) and the host side
//! of the port layer.
//!
//! One ordered byte stream per VM carries everything: control messages and the stdio of every
//! process session. The stream is transport-neutral: locally it is a virtio-serial port, on
//! vSphere it can be a network serial port; nothing here knows which.
//!
//! ```text
//!  +--------+-------------+-------------+----------------------+
//!  | kind u8| session u32 | length u32  | payload (length)     |   big-endian, 9-byte header
//!  +--------+-------------+-------------+----------------------+
//!  kind: 0 control (JSON HostMsg / GuestMsg), 1 stdin, 2 stdout, 3 stderr, 4 stdin closed
//! ```
//!
//! Session 0 is the container's main process; exec sessions use other numbers. A typical
//! conversation:
//!
//! ```text
//!  guest: Hello                       (tether is up and has opened the port)
//!  host:  Setup { hostname, root… }   (configuration arrives after boot, never on the cmdline)
//!  guest: Ready
//!  host:  Spawn { session: 0, process }
//!  guest: Started { session: 0, pid }
//!  guest: stdout / stderr frames …    host: stdin frames …, Signal, Resize
//!  guest: Exited { session: 0, code }  (after all of that session's output)
//!  host:  Shutdown                     (guest syncs, unmounts and powers off)
//! ```
//!
//! Frames are encoded with [`encode`] and decoded incrementally with [`FrameDecoder`], so both a
//! blocking guest and an async host can use the same code.
//!
//! ## Taking over after the host restarted
//!
//! Output is acknowledged by offset, not by frame: the tether counts every byte of a session's
//! output it has sent (stdout and stderr together, in order) and keeps the most recent
//! [`REPLAY_WINDOW`] bytes. A host that comes back (the appliance restarted, or crashed with
//! frames in flight) knows how many bytes of the session it stored, and asks for the rest:
//!
//! ```text
//!  guest: … stale bytes, possibly the tail of a torn frame …
//!  guest: Hello { version ≥ 2, configured, running, main_exit }   (the host skips to it)
//!  guest: … live output sent before the Resume arrived …
//!  host:  Resume { session: 0, from: BYTES_STORED }
//!  guest: Resumed { session: 0, from, lost }
//!  guest: stdout / stderr frames from `from` on (whatever the window still holds), then live
//!  guest: Exited { session: 0, code }                      (again, if it had already ended)
//! ```
//!
//! Until `Resumed`, the host ignores output and exits: the replay after it repeats them.

use serde::{Deserialize, Serialize};

pub mod archive;
mod decoder;
pub mod guest;
mod procs;

pub use archive::{GetMode, ManifestEntry, PathError, PathErrorKind, PathStat, PutRequest};
pub use decoder::FrameDecoder;
pub use guest::{Confinement, Privileges};
pub use procs::{
    DiskCounters, GuestStats, NetCounters, ProcessInfo, MAX_ARGS_BYTES, MAX_PROCESSES,
    MAX_STAT_DEVICES,
};

/// Protocol version spoken by this build; sent in [`GuestMsg::Hello`].
pub const PROTOCOL_VERSION: u32 = 8;

/// The first protocol version whose tether gives interfaces their IPv6 side and link-local
/// addresses ([`Interface::ipv6`] and [`Interface::link_local`], and the same of
/// [`HostMsg::SetInterface`]).
pub const IPV6_VERSION: u32 = 8;

/// The first protocol version whose tether passes on a shutdown asked of its VM
/// ([`GuestMsg::ShutdownAsked`]).
pub const SHUTDOWN_VERSION: u32 = 7;

/// The first protocol version whose tether copies files in and out ([`archive`]).
pub const ARCHIVE_VERSION: u32 = 6;

/// The first protocol version whose tether mounts [`guest::Confinement::disks`].
pub const DISKS_VERSION: u32 = 5;

/// The first protocol version whose tether runs further sessions beside the main one
/// (`docker exec`) and drops what it keeps of one on [`HostMsg::Forget`].
pub const EXEC_VERSION: u32 = 4;

/// Ended sessions whose output and exit a tether keeps for [`HostMsg::Resume`] until the host
/// says [`HostMsg::Forget`]; beyond it the oldest are dropped.
pub const MAX_ENDED_SESSIONS: usize = 64;

/// The first protocol version whose tether answers [`HostMsg::SetInterface`].
pub const SET_INTERFACE_VERSION: u32 = 3;

/// The first protocol version whose tether answers [`HostMsg::Resume`].
pub const RESUME_VERSION: u32 = 2;

/// How many of a session's most recent output bytes the tether keeps for [`HostMsg::Resume`]:
/// far more than can be in flight between the guest and a host that died (socket and
/// virtqueue buffers, a few hundred KiB).
pub const REPLAY_WINDOW: usize = 4 << 20;

/// Name of the virtio-serial port carrying the protocol (`/sys/class/virtio-ports/*/name`).
pub const PORT_NAME: &str = "org.vic.tether.0";

/// Size of a frame header on the wire.
pub const HEADER_LEN: usize = 9;

/// Largest payload a frame may carry; writers split larger data.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// The session number of the container's main process.
pub const MAIN_SESSION: u32 = 0;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A JSON [`HostMsg`] or [`GuestMsg`].
    Control = 0,
    /// Bytes for a session's standard input.
    Stdin = 1,
    /// Bytes a session wrote to standard output (or its terminal).
    Stdout = 2,
    /// Bytes a session wrote to standard error.
    Stderr = 3,
    /// The host has no more standard input for the session.
    StdinClosed = 4,
}

impl FrameKind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Control,
            1 => Self::Stdin,
            2 => Self::Stdout,
            3 => Self::Stderr,
            4 => Self::StdinClosed,
            _ => return None,
        })
    }
}

/// One unit on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    pub session: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A control frame carrying `msg` as JSON.
    pub fn control<T: Serialize>(msg: &T) -> Self {
        // Serializing these plain enums cannot fail: no maps with non-string keys, no floats.
        let payload = serde_json::to_vec(msg).expect("control messages always serialize");
        Frame {
            kind: FrameKind::Control,
            session: MAIN_SESSION,
            payload,
        }
    }

    /// A data frame (stdin, stdout, stderr) for a session.
    pub fn data(kind: FrameKind, session: u32, payload: Vec<u8>) -> Self {
        Frame {
            kind,
            session,
            payload,
        }
    }

    /// Decodes the JSON control message this frame carries.
    pub fn parse_control<T: for<'de> Deserialize<'de>>(&self) -> Result<T, ProtoError> {
        if self.kind != FrameKind::Control {
            return Err(ProtoError::NotControl);
        }
        serde_json::from_slice(&self.payload).map_err(ProtoError::BadControl)
    }
}

/// Errors of decoding the wire format.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// unknown frame kind {0}
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// frame payload of {0} bytes exceeds the limit
    #[error("frame payload of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// not a control frame
    #[error("not a control frame")]
    NotControl,
    /// malformed control message
    #[error("malformed control message: {0}")]
    BadControl(#[source] serde_json::Error),
}

/// Appends the wire form of `frame` to `out`.
pub fn encode_into(frame: &Frame, out: &mut Vec<u8>) {
    out.reserve(HEADER_LEN + frame.payload.len());
    out.push(frame.kind as u8);
    out.extend_from_slice(&frame.session.to_be_bytes());
    out.extend_from_slice(&(frame.payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&frame.payload);
}

/// The wire form of `frame`.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(frame, &mut out);
    out
}

/// Machine-wide settings the host sends once after boot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// Hostname of the container (Docker's default is the short container ID).
    pub hostname: String,
    /// Block device holding the container's root filesystem, e.g. `/dev/vda`.
    pub root_device: String,
    /// Filesystem type of the root device, e.g. `ext4`.
    pub root_fstype: String,
    /// Wall-clock time at the host, nanoseconds since the Unix epoch; the guest sets its clock.
    pub clock_unix_nanos: u64,
    /// Entropy for the guest's RNG (restored snapshots share RNG state).
    #[serde(default)]
    pub entropy: Vec<u8>,
    /// Name servers for the container's `/etc/resolv.conf`; empty leaves the image's file.
    #[serde(default)]
    pub dns_servers: Vec<String>,
    /// Search domains for `/etc/resolv.conf`.
    #[serde(default)]
    pub dns_search: Vec<String>,
    /// `options` for `/etc/resolv.conf`, e.g. `ndots:2`.
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// Devices, mounts, kernel settings and limits of the container.
    #[serde(default)]
    pub confinement: Confinement,
    /// The guest's network interfaces, found by MAC and configured before anything runs;
    /// none leaves loopback alone.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Set for a VM restored from a booted template rather than booted: what it kept from
    /// the template and changes first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<Restored>,
}

/// What a guest restored from a booted template changes before anything else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    /// Its interfaces carry the template's MACs: each one found by `from` gets `to`.
    pub macs: Vec<MacChange>,
}

/// An interface's MAC address, changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacChange {
    pub from: String,
    pub to: String,
}

/// One network interface of the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Its MAC address, `xx:xx:xx:xx:xx:xx`: how the guest tells its interfaces apart.
    pub mac: String,
    pub address: std::net::Ipv4Addr,
    pub prefix_len: u8,
    /// The default route goes through it (only the first interface's is used).
    pub gateway: Option<std::net::Ipv4Addr>,
    /// Its IPv6 address on a network with IPv6 (from version [`IPV6_VERSION`] on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Config>,
    /// Link-local addresses it has beside (`--link-local-ip`: `169.254.0.0/16` as /16s,
    /// `fe80::/10` as /64s; from version [`IPV6_VERSION`] on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_local: Vec<std::net::IpAddr>,
}

/// An interface's IPv6 address and prefix length, and the gateway of the IPv6 default route
/// when this interface carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Config {
    pub address: std::net::Ipv6Addr,
    pub prefix_len: u8,
    pub gateway: Option<std::net::Ipv6Addr>,
}

/// A process to run in the container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Process {
    /// argv\[0\] is looked up in the `PATH` of `env` when it has no slash.
    pub argv: Vec<String>,
    /// `KEY=value` strings.
    pub env: Vec<String>,
    /// Working directory inside the container; empty means `/`.
    pub cwd: String,
    /// `user`, `uid`, `user:group` or `uid:gid`; empty means root.
    pub user: String,
    /// Run on a pseudo-terminal (stdout carries the terminal, no stderr).
    pub tty: bool,
    /// Keep standard input open for host data (otherwise it reads from /dev/null).
    pub stdin: bool,
    /// Initial terminal size, when `tty`.
    #[serde(default)]
    pub rows: u16,
    #[serde(default)]
    pub cols: u16,
    /// Capabilities, groups and limits the process gets.
    #[serde(default)]
    pub privileges: Privileges,
}

/// A VM's claim to be a container's: its ID and the secret its configuration gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub id: String,
    pub token: String,
}

/// Messages from host to guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostMsg {
    Setup(Box<Setup>),
    Spawn {
        session: u32,
        process: Process,
    },
    Signal {
        session: u32,
        signal: i32,
    },
    Resize {
        session: u32,
        rows: u16,
        cols: u16,
    },
    Ping {
        seq: u64,
    },
    /// Kill what still runs, sync, unmount and power the VM off.
    Shutdown,
    /// Say [`GuestMsg::Hello`] again: a host that connected to a channel with no hang-up of
    /// its own (a serial line) asks what a reconnection tells the guest elsewhere.
    Resync,
    /// Say [`GuestMsg::Resumed`], resend the session's output from byte `from` on (the bytes
    /// the host has stored) and, if the session has ended, [`GuestMsg::Exited`] again.
    /// Answered from version [`RESUME_VERSION`] on.
    Resume {
        session: u32,
        from: u64,
    },
    /// Takes the interface whose MAC is `find` down, gives it MAC `mac` and, with an
    /// `address` (and prefix length), that address, up; without one it stays down with no
    /// address (a network connected or disconnected while the container runs). With a
    /// `gateway` too, the default route goes through it (the network that carries it now:
    /// the first one connected, or the one it moves to when its network is disconnected;
    /// a tether before it was sent ignores it). Answered with [`GuestMsg::InterfaceSet`]
    /// from version [`SET_INTERFACE_VERSION`] on.
    SetInterface {
        seq: u64,
        find: String,
        mac: String,
        address: Option<(std::net::Ipv4Addr, u8)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gateway: Option<std::net::Ipv4Addr>,
        /// Its IPv6 side (set only with an `address`; from version [`IPV6_VERSION`] on).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ipv6: Option<Ipv6Config>,
        /// Its link-local addresses (with an `address`; from version [`IPV6_VERSION`] on).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        link_local: Vec<std::net::IpAddr>,
    },
    /// The host has all of ended session `session` (an exec): the tether drops the output and
    /// exit it kept for a resume. From version [`EXEC_VERSION`] on.
    Forget {
        session: u32,
    },
    /// Asks for the container's processes (`docker top`); answered with
    /// [`GuestMsg::Processes`] from version [`EXEC_VERSION`] on.
    ListProcesses {
        seq: u64,
    },
    /// Asks what is at `path` in the container; answered with [`GuestMsg::PathStat`] from
    /// version [`ARCHIVE_VERSION`] on.
    StatPath {
        seq: u64,
        path: String,
    },
    /// Starts a transfer of `path` out of the container as a tar stream, with `window` bytes
    /// of credit (see [`archive`]).
    ArchiveGet {
        session: u32,
        path: String,
        window: u64,
        #[serde(default)]
        mode: archive::GetMode,
        /// For [`archive::GetMode::Layer`]: the paths, from the root.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        paths: Vec<String>,
        /// Stop the container's processes while the stream is made (`docker commit`'s
        /// `--pause`), and continue them after.
        #[serde(default)]
        pause: bool,
    },
    /// Starts a transfer of a tar stream into the container (see [`archive`]).
    ArchivePut {
        session: u32,
        request: Box<PutRequest>,
    },
    /// The receiver of a transfer's data has room for `bytes` more.
    Credit {
        session: u32,
        bytes: u64,
    },
    /// Ends a transfer early.
    Cancel {
        session: u32,
    },
    /// Asks for the VM's counters (`docker stats`); answered with [`GuestMsg::Stats`] from
    /// version [`ARCHIVE_VERSION`] on.
    Stats {
        seq: u64,
    },
}

/// Messages from guest to host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GuestMsg {
    /// Said when the port opens and again whenever the host reconnects; then it carries what
    /// a new host needs to take over: whether setup is done, which sessions still run, and the
    /// main process's exit code if it has ended.
    Hello {
        version: u32,
        kernel: String,
        #[serde(default)]
        configured: bool,
        #[serde(default)]
        running: Vec<u32>,
        #[serde(default)]
        main_exit: Option<i32>,
        /// Sessions other than the main one that have ended and whose exit the tether still
        /// holds, with their exit codes (from version [`EXEC_VERSION`] on).
        #[serde(default)]
        ended: Vec<(u32, i32)>,
        /// Which container's VM this is, where one listener serves many VMs (vSphere's
        /// network serial ports): the host checks the token before it trusts the channel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity: Option<Identity>,
    },
    /// Setup is done: the root filesystem is mounted.
    Ready,
    /// Setup failed; the VM cannot run anything.
    SetupFailed {
        message: String,
    },
    Started {
        session: u32,
        pid: u32,
    },
    /// The process could not be started. `code` follows Docker: 127 not found, 126 not executable.
    SpawnFailed {
        session: u32,
        message: String,
        code: i32,
    },
    /// The session's process ended; sent after all of its output. `code` is 128+signal when it
    /// was killed by a signal.
    Exited {
        session: u32,
        code: i32,
    },
    Pong {
        seq: u64,
    },
    /// Answers [`HostMsg::ListProcesses`] `seq`: the container's processes (not the tether,
    /// not kernel threads), the guest's boot time and its clock ticks per second.
    Processes {
        seq: u64,
        processes: Vec<ProcessInfo>,
        boot_unix: u64,
        hz: u64,
        memory_kib: u64,
    },
    /// Answers [`HostMsg::SetInterface`] `seq`: done, or why not.
    InterfaceSet {
        seq: u64,
        error: Option<String>,
    },
    /// Answers [`HostMsg::Resume`]: the output that follows starts at byte `from`; `lost`
    /// bytes before it were asked for but are no longer held (0 when nothing is missing).
    Resumed {
        session: u32,
        from: u64,
        lost: u64,
    },
    /// Answers [`HostMsg::StatPath`] `seq`.
    PathStat {
        seq: u64,
        result: Result<PathStat, PathError>,
    },
    /// A transfer began (`stat` of what is copied out, or of the directory extracted into,
    /// with the credit `window` the guest grants for data coming in) or could not.
    Transfer {
        session: u32,
        stat: Result<PathStat, PathError>,
        #[serde(default)]
        window: u64,
    },
    /// The guest has room for `bytes` more of a transfer into it.
    Credit {
        session: u32,
        bytes: u64,
    },
    /// A transfer is over: whole, or not, and why.
    TransferDone {
        session: u32,
        error: Option<String>,
    },
    /// Answers [`HostMsg::Stats`] `seq`.
    Stats {
        seq: u64,
        stats: Box<GuestStats>,
    },
    /// Someone outside the VM asked its guest to shut down (the ACPI power button; VMware
    /// Tools' halt on ESX), `by` says how. The host stops the container as `docker stop`
    /// does (its STOPSIGNAL, then SIGKILL after its stop timeout): the request is the
    /// user's, so restart policies leave the container stopped.
    ShutdownAsked {
        by: String,
    },
}

#[cfg(test)]
mod campaign;
#[cfg(test)]
mod tests;
