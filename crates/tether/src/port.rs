//! The virtio-serial port that carries the tether protocol: finding it, reading frames from it
//! (surviving the host going away and coming back) and writing frames to it from many threads.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tether_proto::{encode, Frame, FrameDecoder, GuestMsg, PORT_NAME};

const VIRTIO_PORTS: &str = "/sys/class/virtio-ports";

/// Finds `/dev/<vportNpM>` whose sysfs name is [`PORT_NAME`], waiting up to `timeout` for the
/// driver to probe it.
pub fn find(timeout: Duration) -> io::Result<PathBuf> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(p) = scan(Path::new(VIRTIO_PORTS))? {
            return Ok(p);
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no virtio port named {PORT_NAME} under {VIRTIO_PORTS}"),
            ));
        }
        sleep(Duration::from_millis(20));
    }
}

fn scan(dir: &Path) -> io::Result<Option<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if name.trim() == PORT_NAME {
            return Ok(Some(Path::new("/dev").join(entry.file_name())));
        }
    }
    Ok(None)
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

/// The sending half, shared by every thread that reports something to the host.
#[derive(Clone)]
pub struct Writer {
    file: Arc<Mutex<File>>,
}

impl Writer {
    /// Sends one frame whole (frames from different threads never interleave). Blocks while the
    /// host is disconnected: virtio-serial holds writes until it comes back.
    pub fn send(&self, frame: &Frame) {
        let bytes = encode(frame);
        let mut file = match self.file.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(e) = file.write_all(&bytes) {
            crate::log!("writing to the host failed: {e}");
        }
    }

    /// Sends `frame` unless `closed` is set, checked under the port lock so that nothing is sent
    /// after whoever set it sent its last message. Returns false when closed.
    pub fn send_unless(&self, closed: &std::sync::atomic::AtomicBool, frame: &Frame) -> bool {
        let bytes = encode(frame);
        let mut file = match self.file.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if closed.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        if let Err(e) = file.write_all(&bytes) {
            crate::log!("writing to the host failed: {e}");
        }
        true
    }

    /// Sends a control message.
    pub fn msg(&self, msg: &GuestMsg) {
        self.send(&Frame::control(msg));
    }
}

/// What the reading half yields.
pub enum Event {
    Frame(Frame),
    /// The host had gone away and is connected again (say Hello again).
    Reconnected,
}

/// The receiving half, owned by the main loop.
pub struct Reader {
    path: PathBuf,
    file: File,
    writer: Writer,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

/// Opens the port at `path`, returning its reading and writing halves.
pub fn connect(path: &Path) -> io::Result<(Reader, Writer)> {
    let file = open(path)?;
    let writer = Writer {
        file: Arc::new(Mutex::new(file.try_clone()?)),
    };
    let reader = Reader {
        path: path.to_path_buf(),
        file,
        writer: writer.clone(),
        decoder: FrameDecoder::new(),
        buf: vec![0; 64 * 1024],
    };
    Ok((reader, writer))
}

impl Reader {
    /// The next frame or reconnection. Never gives up: while the host is away it waits (without
    /// spinning) for it to come back, and it reopens the port after persistent errors.
    pub fn next(&mut self) -> Event {
        let mut errors = 0u32;
        loop {
            match self.decoder.next_frame() {
                Ok(Some(f)) => return Event::Frame(f),
                Ok(None) => {}
                Err(e) => {
                    crate::log!("dropping undecodable input from the host: {e}");
                    self.decoder = FrameDecoder::new();
                }
            }
            match self.file.read(&mut self.buf) {
                Ok(0) => {
                    self.wait_for_host();
                    self.decoder = FrameDecoder::new();
                    return Event::Reconnected;
                }
                Ok(n) => {
                    errors = 0;
                    self.decoder.push(&self.buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    errors += 1;
                    crate::log!("reading the port failed: {e}");
                    sleep(Duration::from_secs(1));
                    if errors >= 3 {
                        self.reopen();
                        errors = 0;
                    }
                }
            }
        }
    }

    /// Waits until the host side is connected again (virtio-serial reports POLLHUP meanwhile).
    fn wait_for_host(&mut self) {
        crate::log!("host disconnected; waiting for it to come back");
        loop {
            sleep(Duration::from_millis(250));
            let mut pfd = libc::pollfd {
                fd: self.file.as_raw_fd(),
                events: libc::POLLIN | libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd, zero timeout.
            let n = unsafe { libc::poll(&mut pfd, 1, 0) };
            if n > 0 && pfd.revents & libc::POLLHUP == 0 {
                crate::log!("host reconnected");
                return;
            }
        }
    }

    fn reopen(&mut self) {
        // virtio-serial ports admit one opener: close both halves before opening again.
        let mut shared = match self.writer.file.lock() {
            Ok(f) => f,
            Err(p) => p.into_inner(),
        };
        loop {
            let placeholder = File::open("/dev/null");
            if let Ok(p) = placeholder {
                // Drops the writer's descriptor to the port.
                *shared = p;
            }
            if let Ok(p) = File::open("/dev/null") {
                self.file = p;
            }
            match open(&self.path).and_then(|f| Ok((f.try_clone()?, f))) {
                Ok((w, r)) => {
                    *shared = w;
                    self.file = r;
                    self.decoder = FrameDecoder::new();
                    crate::log!("reopened {}", self.path.display());
                    return;
                }
                Err(e) => {
                    crate::log!("reopening {} failed: {e}", self.path.display());
                    sleep(Duration::from_secs(1));
                }
            }
        }
    }
}
