//! **A test fixture, not part of the product**: a PID 1 for container VMs that plays a
//! misbehaving tether, so that end-to-end tests (`crates/e2e/tests/hostile_guest.rs`) can show
//! the host side of the guest channel holding against a guest that breaks the protocol.
//!
//! It behaves like the tether up to the point where it misbehaves: it mounts `/dev`, `/proc`
//! and `/sys`, finds the virtio-serial port named [`PORT_NAME`], says `Hello` and reads the
//! host's `Setup`. The hostname in that `Setup` (`docker run --hostname MODE`) names what it
//! does next:
//!
//! ```text
//!  hello-flood      Hello again, and again: 16 MiB of them (before Ready)
//!  started-flood    Ready, Started, then 16 MiB of Started
//!  garbage          Ready, Started, then a frame header announcing MAX_PAYLOAD + 1 bytes,
//!                   followed by a MiB of random bytes
//!  foreign-session  Ready, Started, then 16 MiB of stdout frames for session 7
//!  linger           Ready, Started, Exited { code 0 }, then reads on and ignores Shutdown
//!  mute             Ready, Started, then never reads the port again and writes nothing
//!  ok               Ready, Started, one line of output, Exited { code 0 }, and powers off
//!                   on Shutdown: the control case
//! ```
//!
//! After misbehaving it keeps running and keeps the port open: only the host can end the VM.
//! It never mounts the container's disk and never runs the container's command. It logs
//! `hostile-guest:` lines to the console (the VM's `console.log`).

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use tether_proto::{
    encode, Frame, FrameDecoder, FrameKind, GuestMsg, HostMsg, MAIN_SESSION, MAX_PAYLOAD,
    PORT_NAME, PROTOCOL_VERSION,
};

/// How much the flooding modes send: far more than the host should ever hold.
const FLOOD_BYTES: usize = 16 << 20;

/// The session the `foreign-session` mode writes output for (the host runs only session 0).
const FOREIGN_SESSION: u32 = 7;

/// Writes one `hostile-guest: …` line to the console; never fails.
macro_rules! log {
    ($($arg:tt)*) => {{
        let line = format!("hostile-guest: {}\n", format_args!($($arg)*));
        let _ = io::stderr().write_all(line.as_bytes());
    }};
}

/// What the guest does after `Setup`, named by the container's hostname.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    HelloFlood,
    StartedFlood,
    Garbage,
    ForeignSession,
    Linger,
    Mute,
    Ok,
}

impl Mode {
    const ALL: [(&'static str, Mode); 7] = [
        ("hello-flood", Mode::HelloFlood),
        ("started-flood", Mode::StartedFlood),
        ("garbage", Mode::Garbage),
        ("foreign-session", Mode::ForeignSession),
        ("linger", Mode::Linger),
        ("mute", Mode::Mute),
        ("ok", Mode::Ok),
    ];

    fn parse(name: &str) -> Option<Mode> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
    }
}

fn main() {
    early_mounts();
    console_as_std_fds();
    let mut port = loop {
        match find_port().and_then(|p| Port::open(&p)) {
            Ok(port) => break port,
            Err(e) => log!("{e}; still looking"),
        }
        sleep(Duration::from_millis(100));
    };
    port.msg(&hello());
    let setup = loop {
        match port.next_msg() {
            HostMsg::Setup(s) => break s,
            // As the tether does: a guest restored from a template is asked to say Hello.
            HostMsg::Resync => port.msg(&hello()),
            other => log!("ignoring {other:?} while waiting for Setup"),
        }
    };
    match Mode::parse(&setup.hostname) {
        Some(mode) => {
            log!("mode {:?}", setup.hostname);
            misbehave(mode, &mut port);
            log!("done; staying up until the host powers the VM off");
        }
        None => refuse(&setup.hostname, &mut port),
    }
    // The port stays open: a guest that closed it would look different to the host.
    loop {
        sleep(Duration::from_secs(3600));
    }
}

/// Plays `mode` on `port`.
fn misbehave(mode: Mode, port: &mut Port) {
    if mode == Mode::HelloFlood {
        port.flood(&Frame::control(&hello()));
        return;
    }
    start_main(port);
    match mode {
        Mode::HelloFlood => {}
        Mode::StartedFlood => {
            port.flood(&Frame::control(&GuestMsg::Started {
                session: MAIN_SESSION,
                pid: 2,
            }));
        }
        Mode::Garbage => {
            let mut header = vec![FrameKind::Stdout as u8];
            header.extend_from_slice(&MAIN_SESSION.to_be_bytes());
            header.extend_from_slice(&(MAX_PAYLOAD as u32 + 1).to_be_bytes());
            port.raw(&header);
            port.raw(&random_bytes(1 << 20));
        }
        Mode::ForeignSession => {
            let frame = Frame::data(FrameKind::Stdout, FOREIGN_SESSION, b"not yours\n".to_vec());
            port.flood(&frame);
        }
        Mode::Linger => {
            exited(port);
            loop {
                let msg = port.next_msg();
                log!("ignoring {msg:?}");
            }
        }
        Mode::Mute => {}
        Mode::Ok => {
            port.send(&Frame::data(
                FrameKind::Stdout,
                MAIN_SESSION,
                b"hostile-guest: ok\n".to_vec(),
            ));
            exited(port);
            port.wait_for("Shutdown", |m| matches!(m, HostMsg::Shutdown));
            power_off();
        }
    }
}

/// An unknown mode: fails setup the way the tether does, and powers off when told to.
fn refuse(name: &str, port: &mut Port) {
    let modes: Vec<&str> = Mode::ALL.iter().map(|(n, _)| *n).collect();
    let message = format!(
        "hostile-guest: unknown mode {name:?}; run it with --hostname set to one of {}",
        modes.join(", ")
    );
    log!("{message}");
    port.msg(&GuestMsg::SetupFailed { message });
    port.wait_for("Shutdown", |m| matches!(m, HostMsg::Shutdown));
    power_off();
}

/// Ready, then Started once the host asks for the main process.
fn start_main(port: &mut Port) {
    port.msg(&GuestMsg::Ready);
    port.wait_for("Spawn", |m| matches!(m, HostMsg::Spawn { .. }));
    port.msg(&GuestMsg::Started {
        session: MAIN_SESSION,
        pid: 2,
    });
}

fn exited(port: &mut Port) {
    port.msg(&GuestMsg::Exited {
        session: MAIN_SESSION,
        code: 0,
    });
}

fn hello() -> GuestMsg {
    GuestMsg::Hello {
        version: PROTOCOL_VERSION,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        configured: false,
        running: Vec::new(),
        main_exit: None,
        ended: vec![],
        identity: None,
    }
}

/// `len` bytes of xorshift noise, seeded from the clock.
fn random_bytes(len: usize) -> Vec<u8> {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The protocol port and what has been read from it.
struct Port {
    file: File,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

impl Port {
    fn open(path: &Path) -> io::Result<Port> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Port {
            file,
            decoder: FrameDecoder::new(),
            buf: vec![0; 64 * 1024],
        })
    }

    fn raw(&mut self, bytes: &[u8]) {
        if let Err(e) = self.file.write_all(bytes) {
            log!("writing to the host failed: {e}");
        }
    }

    fn send(&mut self, frame: &Frame) {
        self.raw(&encode(frame));
    }

    fn msg(&mut self, msg: &GuestMsg) {
        self.send(&Frame::control(msg));
    }

    /// Sends `frame` over and over, [`FLOOD_BYTES`] in all, in batches of about 64 KiB (a
    /// host that stops reading blocks this for good, which is fine).
    fn flood(&mut self, frame: &Frame) {
        let one = encode(frame);
        let batch = one.repeat((64 * 1024 / one.len()).max(1));
        let mut sent = 0;
        while sent < FLOOD_BYTES {
            self.raw(&batch);
            sent += batch.len();
        }
        log!("flooded {sent} bytes");
    }

    /// The next control message from the host; other frames (stdin) are dropped.
    fn next_msg(&mut self) -> HostMsg {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(f)) if f.kind == FrameKind::Control => match f.parse_control() {
                    Ok(msg) => return msg,
                    Err(e) => log!("ignoring a control frame: {e}"),
                },
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => {
                    log!("dropping undecodable input: {e}");
                    self.decoder = FrameDecoder::new();
                }
            }
            match self.file.read(&mut self.buf) {
                Ok(0) => sleep(Duration::from_millis(250)), // the host is away
                Ok(n) => self.decoder.push(&self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log!("reading the port failed: {e}");
                    sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// Reads until a message `wanted` accepts, ignoring the others.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&HostMsg) -> bool) -> HostMsg {
        loop {
            let msg = self.next_msg();
            if wanted(&msg) {
                return msg;
            }
            log!("ignoring {msg:?} while waiting for {what}");
        }
    }
}

/// `/dev/<vportNpM>` whose sysfs name is [`PORT_NAME`] (as the tether's `port::find` does).
fn find_port() -> io::Result<PathBuf> {
    let dir = Path::new("/sys/class/virtio-ports");
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if name.trim() == PORT_NAME {
            return Ok(Path::new("/dev").join(entry.file_name()));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no virtio port named {PORT_NAME} under {}", dir.display()),
    ))
}

/// Mounts what finding the port needs: devtmpfs on /dev, proc, sysfs.
fn early_mounts() {
    for (fstype, target) in [("devtmpfs", "/dev"), ("proc", "/proc"), ("sysfs", "/sys")] {
        let _ = std::fs::create_dir_all(target);
        let (Ok(src), Ok(dst)) = (CString::new(fstype), CString::new(target)) else {
            continue;
        };
        // SAFETY: every pointer is a live NUL-terminated string or null (no data), as
        // mount(2) allows.
        let ret = unsafe {
            libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                src.as_ptr(),
                libc::MS_NOSUID,
                std::ptr::null(),
            )
        };
        if ret != 0 {
            log!("mounting {target} failed: {}", io::Error::last_os_error());
        }
    }
}

/// Makes descriptors 0-2 the console when the kernel started us without them.
fn console_as_std_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the descriptor table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            continue;
        }
        // SAFETY: a NUL-terminated path literal; O_NOCTTY keeps PID 1 without a terminal.
        let new = unsafe { libc::open(c"/dev/console".as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
        if new >= 0 && new != fd {
            // SAFETY: both descriptors are valid; dup2 replaces `fd`, then the spare is closed.
            unsafe {
                libc::dup2(new, fd);
                libc::close(new);
            }
        }
    }
}

/// Powers the VM off (the `ok` mode and an unknown mode, on the host's Shutdown).
fn power_off() {
    log!("powering off");
    // SAFETY: sync and reboot take no pointers; as PID 1 we may power the machine off, and
    // nothing here holds data that needs flushing.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
}
