//! Transfers: `docker cp` into and out of the running container (see
//! [`tether_proto::archive`]). Each transfer runs in a thread of its own, chrooted into the
//! container's root (`unshare(CLONE_FS)` gives the thread a root of its own, so the rest of
//! the tether is untouched), that walks or extracts files with [`crate::tarball`]. Data moves
//! only against credit: out of the guest as the host grants it, into the guest as this side
//! grants it, so a copy holds at most a window in flight and the container's stdio flows
//! beside it.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tether_proto::archive::{MAX_TRANSFERS, TRANSFER_FRAME, TRANSFER_WINDOW};
use tether_proto::{Frame, FrameKind, GetMode, GuestMsg, PathError, PathErrorKind, PutRequest};

use crate::port::Writer;
use crate::tarball::{self, Extract};

/// How long a transfer waits for the host's credit or data before it gives up.
const STALL: Duration = Duration::from_secs(120);

/// Credit one side has granted and the other not yet used.
#[derive(Default)]
struct Credit {
    state: Mutex<CreditState>,
    changed: Condvar,
}

#[derive(Default)]
struct CreditState {
    available: u64,
    cancelled: bool,
}

impl Credit {
    fn lock(&self) -> std::sync::MutexGuard<'_, CreditState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn grant(&self, bytes: u64) {
        let mut s = self.lock();
        s.available = s.available.saturating_add(bytes);
        self.changed.notify_all();
    }

    fn cancel(&self) {
        self.lock().cancelled = true;
        self.changed.notify_all();
    }

    /// Takes up to `want` bytes of credit, waiting for some.
    fn take(&self, want: u64) -> io::Result<u64> {
        let mut s = self.lock();
        loop {
            if s.cancelled {
                return Err(io::Error::other("the copy was cancelled"));
            }
            if s.available > 0 {
                let n = want.min(s.available);
                s.available -= n;
                return Ok(n);
            }
            let (next, timeout) = self
                .changed
                .wait_timeout(s, STALL)
                .unwrap_or_else(|e| e.into_inner());
            s = next;
            if timeout.timed_out() && s.available == 0 && !s.cancelled {
                return Err(io::Error::other(format!(
                    "the host took no data for {} s",
                    STALL.as_secs()
                )));
            }
        }
    }
}

enum Entry {
    /// Out of the guest: the host's credit.
    Get(Arc<Credit>),
    /// Into the guest: where its data goes, and the credit this side granted.
    Put {
        data: Option<mpsc::Sender<Vec<u8>>>,
        credit: Arc<Credit>,
    },
}

/// What an `ArchiveGet` asks for.
pub struct Get {
    pub path: String,
    pub window: u64,
    pub mode: GetMode,
    /// For [`GetMode::Layer`].
    pub paths: Vec<String>,
    /// Stop the container's processes while the stream is made.
    pub pause: bool,
}

/// The transfers under way in this guest.
pub struct Transfers {
    out: Writer,
    map: Mutex<HashMap<u32, Entry>>,
    /// Set when the host that asked for the copies under way has gone: nothing more is
    /// said of them (a host taking over never asked for them). Replaced by a fresh one then.
    gone: Mutex<Arc<AtomicBool>>,
}

/// How a copy's thread speaks to the host that asked for it, and to no other.
#[derive(Clone)]
struct To {
    out: Writer,
    gone: Arc<AtomicBool>,
}

impl To {
    fn msg(&self, msg: &GuestMsg) {
        self.out.send_unless(&self.gone, &Frame::control(msg));
    }

    fn frame(&self, frame: &Frame) {
        self.out.send_unless(&self.gone, frame);
    }
}

impl Transfers {
    pub fn new(out: Writer) -> Arc<Transfers> {
        Arc::new(Transfers {
            out,
            map: Mutex::new(HashMap::new()),
            gone: Mutex::new(Arc::default()),
        })
    }

    /// The host that asks now.
    fn to(&self) -> To {
        let gone = self.gone.lock().unwrap_or_else(|e| e.into_inner()).clone();
        To {
            out: self.out.clone(),
            gone,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Entry>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `session` is a transfer's (its stdin frames are data for it).
    pub fn has(&self, session: u32) -> bool {
        self.lock().contains_key(&session)
    }

    /// Answers a `StatPath`.
    pub fn stat(self: &Arc<Self>, seq: u64, rootfs: Option<PathBuf>, path: String) {
        let to = self.to();
        self.in_root(rootfs, move |root| {
            let result = root
                .and_then(|root| tarball::name(root, &path).map(|n| (root, n)))
                .and_then(|(root, named)| tarball::stat(root, &named))
                .map(|(st, _)| st);
            to.msg(&GuestMsg::PathStat { seq, result });
        });
    }

    /// Starts an `ArchiveGet`.
    pub fn get(self: &Arc<Self>, session: u32, rootfs: Option<PathBuf>, get: Get) {
        let Get {
            path,
            window,
            mode,
            paths,
            pause,
        } = get;
        let credit = Arc::new(Credit::default());
        credit.grant(window);
        if !self.register(session, Entry::Get(credit.clone())) {
            return;
        }
        let (me, to) = (self.clone(), self.to());
        self.in_root(rootfs, move |root| {
            let root = match root {
                Ok(r) => r,
                Err(e) => return me.failed(&to, session, e),
            };
            let began = tarball::name(root, &path).and_then(|n| {
                let (st, meta) = tarball::stat(root, &n)?;
                Ok((n, st, meta))
            });
            let (named, st, meta) = match began {
                Ok(b) => b,
                Err(e) => return me.failed(&to, session, e),
            };
            to.msg(&GuestMsg::Transfer {
                session,
                stat: Ok(st.clone()),
                window: 0,
            });
            let sink = Frames {
                to: &to,
                session,
                credit: &credit,
                buf: Vec::with_capacity(TRANSFER_FRAME),
            };
            let stopped = match pause {
                true => crate::stats::stop_container(),
                false => Vec::new(),
            };
            let done = match mode {
                GetMode::Copy => tarball::write_tar(&named, &meta, &st.name, sink),
                GetMode::Export => tarball::write_export(&named.at, &meta, sink),
                GetMode::Manifest => tarball::write_manifest(&named.at, &meta, sink),
                GetMode::Layer => tarball::write_layer(root, &paths, sink),
            };
            crate::stats::continue_container(&stopped);
            let done = done.and_then(|mut sink| sink.flush());
            me.done(&to, session, done.err().map(|e| e.to_string()));
        });
    }

    /// Starts an `ArchivePut`.
    pub fn put(self: &Arc<Self>, session: u32, rootfs: Option<PathBuf>, req: PutRequest) {
        let credit = Arc::new(Credit::default());
        let (tx, rx) = mpsc::channel();
        let entry = Entry::Put {
            data: Some(tx),
            credit: credit.clone(),
        };
        if !self.register(session, entry) {
            return;
        }
        let (me, to) = (self.clone(), self.to());
        self.in_root(rootfs, move |root| {
            let root = match root {
                Ok(r) => r,
                Err(e) => return me.failed(&to, session, e),
            };
            let began = tarball::name(root, &req.path).and_then(|n| {
                let (st, meta) = tarball::stat(root, &n)?;
                Ok((n, st, meta))
            });
            let (named, st, meta) = match began {
                Ok(b) => b,
                Err(e) => return me.failed(&to, session, e),
            };
            if let Err(e) = writable_dir(root, &named.at, &meta) {
                return me.failed(&to, session, e);
            }
            let opts = match owner(root, req.owner.as_deref()) {
                Ok(owner) => Extract {
                    no_overwrite_dir_non_dir: req.no_overwrite_dir_non_dir,
                    owner,
                },
                Err(e) => return me.failed(&to, session, e),
            };
            credit.grant(TRANSFER_WINDOW);
            to.msg(&GuestMsg::Transfer {
                session,
                stat: Ok(st),
                window: TRANSFER_WINDOW,
            });
            let input = Incoming {
                rx,
                credit: &credit,
                to: &to,
                session,
                chunk: Vec::new(),
                at: 0,
                consumed: 0,
            };
            let done = tarball::extract(&named.at, &named.abs, input, &opts);
            me.done(&to, session, done.err().map(|e| e.to_string()));
        });
    }

    /// Data for transfer `session` from the host.
    pub fn data(&self, session: u32, payload: Vec<u8>) {
        let mut map = self.lock();
        let Some(Entry::Put { data, credit }) = map.get_mut(&session) else {
            return;
        };
        let within = {
            let mut s = credit.lock();
            let ok = payload.len() as u64 <= s.available;
            s.available = s.available.saturating_sub(payload.len() as u64);
            ok
        };
        if !within {
            crate::log!("transfer {session}: the host sent more than its credit");
            credit.cancel();
            *data = None;
            return;
        }
        if let Some(tx) = data {
            let _ = tx.send(payload);
        }
    }

    /// The host has sent all of transfer `session`'s data.
    pub fn close(&self, session: u32) {
        if let Some(Entry::Put { data, .. }) = self.lock().get_mut(&session) {
            *data = None;
        }
    }

    /// The host grants transfer `session` `bytes` more.
    pub fn credit(&self, session: u32, bytes: u64) {
        if let Some(Entry::Get(credit)) = self.lock().get(&session) {
            credit.grant(bytes);
        }
    }

    /// Ends transfer `session` early.
    pub fn cancel(&self, session: u32) {
        match self.lock().get_mut(&session) {
            Some(Entry::Get(credit)) => credit.cancel(),
            Some(Entry::Put { data, credit }) => {
                credit.cancel();
                *data = None;
            }
            None => {}
        }
    }

    /// The host went away: its transfers go with it, and nothing more is said of them.
    pub fn cancel_all(&self) {
        {
            let mut gone = self.gone.lock().unwrap_or_else(|e| e.into_inner());
            gone.store(true, Ordering::SeqCst);
            *gone = Arc::default();
        }
        let sessions: Vec<u32> = self.lock().keys().copied().collect();
        for s in sessions {
            self.cancel(s);
        }
    }

    fn register(&self, session: u32, entry: Entry) -> bool {
        let mut map = self.lock();
        let full = map.len() >= MAX_TRANSFERS;
        let why = match map.entry(session) {
            _ if full => format!("{MAX_TRANSFERS} copies already run in this container"),
            std::collections::hash_map::Entry::Occupied(_) => {
                format!("transfer {session} already runs")
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(entry);
                return true;
            }
        };
        drop(map);
        self.out.msg(&GuestMsg::Transfer {
            session,
            stat: Err(tarball::error(PathErrorKind::Other, why)),
            window: 0,
        });
        false
    }

    fn failed(&self, to: &To, session: u32, e: PathError) {
        self.lock().remove(&session);
        to.msg(&GuestMsg::Transfer {
            session,
            stat: Err(e),
            window: 0,
        });
    }

    fn done(&self, to: &To, session: u32, error: Option<String>) {
        self.lock().remove(&session);
        to.msg(&GuestMsg::TransferDone { session, error });
    }

    /// Runs `f` in a thread whose root is the container's `rootfs` (the tether's own view
    /// of the root stays as it was); `f` is told when there is none to enter.
    fn in_root(
        &self,
        rootfs: Option<PathBuf>,
        f: impl FnOnce(Result<&Path, PathError>) + Send + 'static,
    ) {
        let spawned = std::thread::Builder::new()
            .name("transfer".into())
            .spawn(move || {
                let entered = match rootfs {
                    None => Err(tarball::error(
                        PathErrorKind::Other,
                        "the container's root is not mounted",
                    )),
                    Some(rootfs) => crate::sys::enter_root_thread(&rootfs).map_err(|e| {
                        tarball::error(
                            PathErrorKind::Other,
                            format!("entering {}: {e}", rootfs.display()),
                        )
                    }),
                };
                f(entered.map(|()| Path::new("/")))
            });
        if let Err(e) = spawned {
            crate::log!("starting a copy's thread failed: {e}");
        }
    }
}

/// Checks that `at` is a directory that may be written (dockerd's words).
fn writable_dir(root: &Path, at: &Path, meta: &std::fs::Metadata) -> Result<(), PathError> {
    if !meta.is_dir() {
        return Err(tarball::error(
            PathErrorKind::NotDirectory,
            "extraction point is not a directory",
        ));
    }
    let read_only = |p: &Path| {
        let c = crate::sys::cpath(p).ok()?;
        // SAFETY: an all-zero statvfs is valid; `c` is a live NUL-terminated path.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: as above; statvfs writes only into `st`.
        (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0)
            .then_some(st.f_flag & libc::ST_RDONLY != 0)
    };
    if read_only(at) == Some(true) {
        use std::os::unix::fs::MetadataExt;
        let on_root = std::fs::metadata(root).map(|m| m.dev()).ok() == Some(meta.dev());
        let message = if on_root {
            "container rootfs is marked read-only"
        } else {
            "mounted volume is marked read-only"
        };
        return Err(tarball::error(PathErrorKind::ReadOnly, message));
    }
    Ok(())
}

/// The owner `docker cp -a` gives extracted files: the container's user, resolved in its
/// own files.
fn owner(root: &Path, user: Option<&str>) -> Result<Option<(u32, u32)>, PathError> {
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let read = |f: &str| std::fs::read_to_string(root.join(f)).unwrap_or_default();
    let passwd = crate::user::parse_passwd(&read("etc/passwd"));
    let groups = crate::user::parse_group(&read("etc/group"));
    crate::user::resolve(user, &passwd, &groups)
        .map(|id| Some((id.uid, id.gid)))
        .map_err(|e| tarball::error(PathErrorKind::Invalid, e.to_string()))
}

/// A transfer's data leaving the guest: frames of [`TRANSFER_FRAME`] bytes, each sent once
/// the host has granted credit for it.
struct Frames<'a> {
    to: &'a To,
    session: u32,
    credit: &'a Credit,
    buf: Vec<u8>,
}

impl Frames<'_> {
    fn send(&mut self) -> io::Result<()> {
        let mut at = 0;
        while at < self.buf.len() {
            let n = self.credit.take((self.buf.len() - at) as u64)? as usize;
            let data = self.buf[at..at + n].to_vec();
            self.to
                .frame(&Frame::data(FrameKind::Stdout, self.session, data));
            at += n;
        }
        self.buf.clear();
        Ok(())
    }
}

impl Write for Frames<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(TRANSFER_FRAME - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == TRANSFER_FRAME {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A transfer's data arriving from the host, read by the extraction; the credit it frees
/// is granted back a quarter of the window at a time.
struct Incoming<'a> {
    rx: mpsc::Receiver<Vec<u8>>,
    credit: &'a Credit,
    to: &'a To,
    session: u32,
    chunk: Vec<u8>,
    at: usize,
    consumed: u64,
}

impl Read for Incoming<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            if self.consumed >= TRANSFER_WINDOW / 4 {
                self.credit.grant(self.consumed);
                self.to.msg(&GuestMsg::Credit {
                    session: self.session,
                    bytes: self.consumed,
                });
                self.consumed = 0;
            }
            match self.rx.recv_timeout(STALL) {
                Ok(chunk) => {
                    self.consumed += chunk.len() as u64;
                    self.chunk = chunk;
                    self.at = 0;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if self.credit.lock().cancelled {
                        return Err(io::Error::other("the copy was cancelled"));
                    }
                    return Ok(0);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(io::Error::other(format!(
                        "the host sent no data for {} s",
                        STALL.as_secs()
                    )))
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
