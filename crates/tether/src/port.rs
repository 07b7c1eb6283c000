//! The port that carries the tether protocol (a virtio-serial port, or a serial line: see
//! `uart.rs`): finding it, reading frames from it (surviving the host going away and coming
//! back) and writing frames to it from many threads.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tether_proto::{
    encode, Frame, FrameDecoder, FrameKind, GuestMsg, MAIN_SESSION, MAX_ENDED_SESSIONS, PORT_NAME,
    REPLAY_WINDOW,
};

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

fn open(path: &Path, uart: bool) -> io::Result<File> {
    if uart {
        return crate::uart::open(path);
    }
    OpenOptions::new().read(true).write(true).open(path)
}

/// What the sending half guards: the port, and what a host that comes back may ask to have
/// resent.
struct Shared {
    file: File,
    outputs: HashMap<u32, OutputLog>,
    /// Exit codes of ended sessions, recorded as `Exited` is sent.
    exits: HashMap<u32, i32>,
}

/// A session's output as sent: a byte count and the most recent [`REPLAY_WINDOW`] bytes.
#[derive(Default)]
struct OutputLog {
    /// Bytes sent so far (both streams, in order).
    sent: u64,
    /// Recent frames: (offset of the first byte, stream, bytes), oldest first.
    recent: VecDeque<(u64, FrameKind, Vec<u8>)>,
    held: usize,
}

impl OutputLog {
    fn record(&mut self, kind: FrameKind, data: &[u8]) {
        self.recent.push_back((self.sent, kind, data.to_vec()));
        self.sent += data.len() as u64;
        self.held += data.len();
        while self.held > REPLAY_WINDOW {
            match self.recent.pop_front() {
                Some((_, _, d)) => self.held -= d.len(),
                None => break,
            }
        }
    }

    /// The first offset still held.
    fn oldest(&self) -> u64 {
        self.recent.front().map_or(self.sent, |(at, _, _)| *at)
    }
}

/// The sending half, shared by every thread that reports something to the host.
#[derive(Clone)]
pub struct Writer {
    shared: Arc<Mutex<Shared>>,
}

impl Shared {
    fn write(&mut self, frame: &Frame) {
        if let Err(e) = self.file.write_all(&encode(frame)) {
            crate::log!("writing to the host failed: {e}");
        }
    }
}

impl Writer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        match self.shared.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Sends one frame whole (frames from different threads never interleave). Blocks while the
    /// host is disconnected: virtio-serial holds writes until it comes back.
    pub fn send(&self, frame: &Frame) {
        self.lock().write(frame);
    }

    /// Sends `frame` unless `gone` is set, checked under the port lock: once whoever set it
    /// has sent something after setting it, nothing more is sent.
    pub fn send_unless(&self, gone: &AtomicBool, frame: &Frame) {
        let mut shared = self.lock();
        if !gone.load(Ordering::SeqCst) {
            shared.write(frame);
        }
    }

    /// Sends a session's output unless `closed` is set, checked under the port lock so that
    /// nothing is sent after whoever set it sent its last message. The bytes are counted and
    /// kept for [`Writer::resume`]. Returns false when closed.
    pub fn send_output(
        &self,
        closed: &AtomicBool,
        kind: FrameKind,
        session: u32,
        data: &[u8],
    ) -> bool {
        let mut shared = self.lock();
        if closed.load(Ordering::SeqCst) {
            return false;
        }
        shared
            .outputs
            .entry(session)
            .or_default()
            .record(kind, data);
        shared.write(&Frame::data(kind, session, data.to_vec()));
        true
    }

    /// Records that a session ended and says so. Of the ended sessions other than the main
    /// one, at most [`MAX_ENDED_SESSIONS`] are kept: a host that never says `Forget` costs the
    /// guest a bounded amount of memory.
    pub fn exited(&self, session: u32, code: i32) {
        let mut shared = self.lock();
        shared.exits.insert(session, code);
        let mut ended: Vec<u32> = shared
            .exits
            .keys()
            .copied()
            .filter(|s| *s != MAIN_SESSION)
            .collect();
        if ended.len() > MAX_ENDED_SESSIONS {
            ended.sort_unstable();
            for old in &ended[..ended.len() - MAX_ENDED_SESSIONS] {
                shared.exits.remove(old);
                shared.outputs.remove(old);
            }
        }
        shared.write(&Frame::control(&GuestMsg::Exited { session, code }));
    }

    /// The ended sessions other than the main one whose exits are still held, in order.
    pub fn ended(&self) -> Vec<(u32, i32)> {
        let shared = self.lock();
        let mut out: Vec<(u32, i32)> = shared
            .exits
            .iter()
            .filter(|(s, _)| **s != MAIN_SESSION)
            .map(|(s, c)| (*s, *c))
            .collect();
        out.sort_unstable();
        out
    }

    /// Answers [`tether_proto::HostMsg::Forget`]: drops what is kept of `session` if it has
    /// ended (a running session's output is still to be sent).
    pub fn forget(&self, session: u32) {
        let mut shared = self.lock();
        if shared.exits.remove(&session).is_some() {
            shared.outputs.remove(&session);
        }
    }

    /// Answers [`tether_proto::HostMsg::Resume`]: says `Resumed`, resends the session's output
    /// from `from` on (as much as is still held) and repeats `Exited` if the session has ended.
    /// All under the port lock, so live output continues right after.
    pub fn resume(&self, session: u32, from: u64) {
        let mut shared = self.lock();
        let shared = &mut *shared;
        let log = shared.outputs.entry(session).or_default();
        let from = from.min(log.sent);
        let start = from.max(log.oldest());
        let lost = start - from;
        let mut frames = Vec::new();
        for (at, kind, data) in &log.recent {
            let end = at + data.len() as u64;
            if end <= start {
                continue;
            }
            let skip = start.saturating_sub(*at) as usize;
            frames.push(Frame::data(*kind, session, data[skip..].to_vec()));
        }
        if lost > 0 {
            crate::log!("session {session}: {lost} bytes of output before offset {start} are no longer held");
        }
        // Resumed first: everything the host gets after it is the replay, then live output.
        shared.write(&Frame::control(&GuestMsg::Resumed {
            session,
            from: start,
            lost,
        }));
        for f in &frames {
            shared.write(f);
        }
        if let Some(&code) = shared.exits.get(&session) {
            shared.write(&Frame::control(&GuestMsg::Exited { session, code }));
        }
    }

    /// Sends a control message.
    pub fn msg(&self, msg: &GuestMsg) {
        self.send(&Frame::control(msg));
    }

    /// A writer onto a plain file, for tests that read back what was sent.
    #[cfg(test)]
    pub fn to_file(file: File) -> Self {
        Writer {
            shared: Arc::new(Mutex::new(Shared {
                file,
                outputs: HashMap::new(),
                exits: HashMap::new(),
            })),
        }
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
    /// A serial line: no hang-ups, read from a `Resync` on, and a frame left half written
    /// dropped after silence.
    uart: bool,
    /// On a serial line: a `Resync` has put the reader in step with the host's frames.
    synced: bool,
    file: File,
    writer: Writer,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

/// Opens the port at `path` (a serial line when `uart`), returning its reading and writing
/// halves.
pub fn connect(path: &Path, uart: bool) -> io::Result<(Reader, Writer)> {
    let file = open(path, uart)?;
    let writer = Writer {
        shared: Arc::new(Mutex::new(Shared {
            file: file.try_clone()?,
            outputs: HashMap::new(),
            exits: HashMap::new(),
        })),
    };
    let reader = Reader {
        path: path.to_path_buf(),
        uart,
        synced: false,
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
            if self.uart && !self.synced && self.decoder.skip_to_resync() {
                self.synced = true;
            }
            if self.synced || !self.uart {
                match self.decoder.next_frame() {
                    Ok(Some(f)) => return Event::Frame(f),
                    Ok(None) => {}
                    Err(e) => {
                        crate::log!("dropping undecodable input from the host: {e}");
                        self.unsync();
                    }
                }
            }
            if self.uart
                && self.decoder.buffered() > 0
                && !crate::uart::readable_within(&self.file, crate::uart::STALE_PARTIAL)
            {
                crate::log!(
                    "dropping {} bytes the serial line stopped in",
                    self.decoder.buffered()
                );
                self.unsync();
                continue;
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

    /// Starts afresh; on a serial line, reads nothing more until the host's next `Resync`.
    fn unsync(&mut self) {
        self.decoder = FrameDecoder::new();
        if self.uart && self.synced {
            crate::log!("waiting for the host's Resync on the serial line");
        }
        self.synced = false;
    }

    /// Waits until the host side is connected again (virtio-serial reports POLLHUP meanwhile),
    /// or has sent something: a guest restored from a snapshot may never be told its new host
    /// connected, and reads what that host sends (its `Resync`) all the same.
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
            if n > 0 && (pfd.revents & libc::POLLHUP == 0 || pfd.revents & libc::POLLIN != 0) {
                crate::log!("host reconnected");
                return;
            }
        }
    }

    fn reopen(&mut self) {
        // virtio-serial ports admit one opener: close both halves before opening again.
        let mut shared = self.writer.lock();
        loop {
            let placeholder = File::open("/dev/null");
            if let Ok(p) = placeholder {
                // Drops the writer's descriptor to the port.
                shared.file = p;
            }
            if let Ok(p) = File::open("/dev/null") {
                self.file = p;
            }
            match open(&self.path, self.uart).and_then(|f| Ok((f.try_clone()?, f))) {
                Ok((w, r)) => {
                    shared.file = w;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom};

    fn writer_to(file: &File) -> Writer {
        Writer::to_file(file.try_clone().unwrap())
    }

    /// Everything written to `file` since `pos`, decoded.
    fn frames_since(file: &mut File, pos: u64) -> Vec<Frame> {
        file.seek(SeekFrom::Start(pos)).unwrap();
        let mut raw = Vec::new();
        file.read_to_end(&mut raw).unwrap();
        let mut dec = FrameDecoder::new();
        dec.push(&raw);
        std::iter::from_fn(|| dec.next_frame().unwrap()).collect()
    }

    #[test]
    fn resume_resends_from_the_offset_then_repeats_the_exit() {
        let mut file = tempfile::tempfile().unwrap();
        let w = writer_to(&file);
        let open = AtomicBool::new(false);
        assert!(w.send_output(&open, FrameKind::Stdout, 0, b"one\n"));
        assert!(w.send_output(&open, FrameKind::Stderr, 0, b"two\n"));
        assert!(w.send_output(&open, FrameKind::Stdout, 0, b"three\n"));
        w.exited(0, 3);
        let end = file.stream_position().unwrap();
        // The host stored "one\ntw": the rest of "two\n" and all of "three\n" come again.
        w.resume(0, 6);
        let got = frames_since(&mut file, end);
        assert_eq!(
            got[0].parse_control::<GuestMsg>().unwrap(),
            GuestMsg::Resumed {
                session: 0,
                from: 6,
                lost: 0
            }
        );
        assert_eq!(got[1], Frame::data(FrameKind::Stderr, 0, b"o\n".to_vec()));
        assert_eq!(
            got[2],
            Frame::data(FrameKind::Stdout, 0, b"three\n".to_vec())
        );
        assert_eq!(
            got[3].parse_control::<GuestMsg>().unwrap(),
            GuestMsg::Exited {
                session: 0,
                code: 3
            }
        );
        assert_eq!(got.len(), 4);
        // A closed session sends nothing more.
        let closed = AtomicBool::new(true);
        assert!(!w.send_output(&closed, FrameKind::Stdout, 0, b"late"));
    }

    #[test]
    fn resume_says_what_the_window_no_longer_holds() {
        let mut file = tempfile::tempfile().unwrap();
        let w = writer_to(&file);
        let open = AtomicBool::new(false);
        let chunk = vec![b'x'; 32 * 1024];
        let chunks = REPLAY_WINDOW / chunk.len() + 3;
        for _ in 0..chunks {
            w.send_output(&open, FrameKind::Stdout, 0, &chunk);
        }
        let sent = (chunks * chunk.len()) as u64;
        let end = file.stream_position().unwrap();
        w.resume(0, 0);
        let got = frames_since(&mut file, end);
        let resent: usize = got
            .iter()
            .filter(|f| f.kind == FrameKind::Stdout)
            .map(|f| f.payload.len())
            .sum();
        assert!(resent <= REPLAY_WINDOW && resent >= REPLAY_WINDOW - chunk.len());
        let Ok(GuestMsg::Resumed { from, lost, .. }) = got[0].parse_control() else {
            panic!("no Resumed first: {:?}", got.first());
        };
        assert_eq!(from, lost);
        assert_eq!(from + resent as u64, sent);
        // Asking from beyond what was sent resends nothing.
        let end = file.stream_position().unwrap();
        w.resume(0, sent + 100);
        let got = frames_since(&mut file, end);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].parse_control::<GuestMsg>().unwrap(),
            GuestMsg::Resumed {
                session: 0,
                from: sent,
                lost: 0
            }
        );
    }

    /// How many bytes of `session`'s output the writer keeps, and whether it holds its exit.
    fn kept(w: &Writer, session: u32) -> (usize, bool) {
        let shared = w.lock();
        let held = shared.outputs.get(&session).map_or(0, |l| l.held);
        (held, shared.exits.contains_key(&session))
    }

    #[test]
    fn ended_sessions_are_forgotten_when_the_host_says_so_and_bounded_when_it_does_not() {
        let file = tempfile::tempfile().unwrap();
        let w = writer_to(&file);
        let open = AtomicBool::new(false);
        w.send_output(&open, FrameKind::Stdout, 7, b"exec output");
        w.forget(7);
        assert_eq!(
            kept(&w, 7),
            (11, false),
            "a running session is not forgotten"
        );
        w.exited(7, 0);
        assert_eq!(w.ended(), [(7, 0)]);
        w.forget(7);
        assert!(w.ended().is_empty());
        assert_eq!(kept(&w, 7), (0, false), "an ended one is");

        w.send_output(&open, FrameKind::Stdout, MAIN_SESSION, b"main");
        w.exited(MAIN_SESSION, 3);
        let last = MAX_ENDED_SESSIONS as u32 + 10;
        for s in 1..=last {
            w.send_output(&open, FrameKind::Stdout, s, b"x");
            w.exited(s, 0);
        }
        let shared = w.lock();
        assert_eq!(
            shared.exits.len(),
            MAX_ENDED_SESSIONS + 1,
            "the newest, and main"
        );
        assert!(shared.exits.contains_key(&MAIN_SESSION) && shared.exits.contains_key(&last));
        assert!(!shared.outputs.contains_key(&1), "the oldest went");
    }
}
