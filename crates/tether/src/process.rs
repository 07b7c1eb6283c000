//! Process sessions: spawning into the container, stdio forwarding, signals, terminal size and
//! exit reporting. Each session has reader threads for its output, a writer thread for its
//! input and a waiter thread that reports its exit after its output.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether_proto::guest::RLIMITS;
use tether_proto::{FrameKind, GuestMsg, Process, MAIN_SESSION};

use crate::exec::{self, ChildPlan, Restrictions};
use crate::mounts::Mounted;
use crate::port::Writer;
use crate::reaper::Reaper;
use crate::{sys, user};

/// How long output may keep draining after a session's process has exited.
const DRAIN: Duration = Duration::from_secs(2);

struct Session {
    pid: i32,
    stdin: Option<Sender<Vec<u8>>>,
    /// The terminal master, for resizing.
    tty: Option<Arc<OwnedFd>>,
}

/// All running sessions.
pub struct Sessions {
    map: Mutex<HashMap<u32, Session>>,
    reaper: Arc<Reaper>,
    out: Writer,
    /// Called once the main session has reported its exit.
    on_main_exit: Box<dyn Fn() + Send + Sync>,
    /// The main process's exit code, once it has ended (told again to a reconnecting host).
    main_exit: Mutex<Option<i32>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: freshly created descriptors, each owned once.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The parent's ends of a child's stdio.
struct Stdio {
    /// Descriptors the child gets as 0, 1, 2 (closed in the parent after the fork).
    child: Vec<OwnedFd>,
    child_raw: [i32; 3],
    stdin: Option<File>,
    stdout: File,
    stderr: Option<File>,
    tty: Option<Arc<OwnedFd>>,
}

fn make_stdio(p: &Process, rootfs: &Path, ident: &user::Identity) -> std::io::Result<Stdio> {
    if p.tty {
        let pty = sys::open_pty(&rootfs.join("dev/pts/ptmx"))?;
        if p.rows > 0 && p.cols > 0 {
            sys::set_winsize(pty.master.as_raw_fd(), p.rows, p.cols)?;
        }
        let _ = sys::fchown(pty.slave.as_raw_fd(), ident.uid, 5);
        let raw = pty.slave.as_raw_fd();
        let master = Arc::new(pty.master);
        let stdin = if p.stdin {
            Some(File::from(master.try_clone()?))
        } else {
            None
        };
        return Ok(Stdio {
            child: vec![pty.slave],
            child_raw: [raw; 3],
            stdin,
            stdout: File::from(master.try_clone()?),
            stderr: None,
            tty: Some(master),
        });
    }
    let (in_child, stdin) = if p.stdin {
        let (r, w) = pipe()?;
        (r, Some(File::from(w)))
    } else {
        (OwnedFd::from(File::open("/dev/null")?), None)
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let child_raw = [in_child.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
    Ok(Stdio {
        child: vec![in_child, out_w, err_w],
        child_raw,
        stdin,
        stdout: File::from(out_r),
        stderr: Some(File::from(err_r)),
        tty: None,
    })
}

/// Creates `cwd` (relative to `rootfs`) when missing, as Docker does for a WorkingDir.
fn ensure_cwd(rootfs: &Path, cwd: &str) -> PathBuf {
    let inside = PathBuf::from(if cwd.is_empty() { "/" } else { cwd });
    let inside = if inside.is_absolute() {
        inside
    } else {
        Path::new("/").join(inside)
    };
    let host = rootfs.join(inside.strip_prefix("/").unwrap_or(&inside));
    if !host.exists() {
        if let Err(e) = std::fs::create_dir_all(&host) {
            crate::log!(
                "creating working directory {} failed: {e}",
                inside.display()
            );
        }
    }
    inside
}

impl Sessions {
    pub fn new(
        reaper: Arc<Reaper>,
        out: Writer,
        on_main_exit: Box<dyn Fn() + Send + Sync>,
    ) -> Arc<Self> {
        Arc::new(Self {
            map: Mutex::new(HashMap::new()),
            reaper,
            out,
            on_main_exit,
            main_exit: Mutex::new(None),
        })
    }

    /// The sessions whose processes still run, in order.
    pub fn running(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = lock(&self.map).keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The main process's exit code, if it has ended.
    pub fn main_exit(&self) -> Option<i32> {
        *lock(&self.main_exit)
    }

    fn fail(&self, session: u32, code: i32, message: String) {
        crate::log!("session {session}: {message}");
        self.out.msg(&GuestMsg::SpawnFailed {
            session,
            message,
            code,
        });
    }

    /// Handles `Spawn`: starts the process and its stdio threads, then reports `Started` or
    /// `SpawnFailed`.
    pub fn spawn(self: &Arc<Self>, session: u32, p: Process, mounted: Option<&Mounted>) {
        let Some(mounted) = mounted else {
            return self.fail(session, 126, "the container is not set up".into());
        };
        let rootfs = mounted.rootfs.as_path();
        if lock(&self.map).contains_key(&session) {
            return self.fail(
                session,
                126,
                format!("session {session} is already running"),
            );
        }
        let Some(argv0) = p.argv.first().cloned() else {
            return self.fail(session, 126, "no command specified".into());
        };
        let read =
            |f: &str| std::fs::read_to_string(rootfs.join("etc").join(f)).unwrap_or_default();
        let groups = user::parse_group(&read("group"));
        let ident = match user::resolve(&p.user, &user::parse_passwd(&read("passwd")), &groups)
            .and_then(|i| user::add_groups(i, &p.privileges.groups, &groups))
        {
            Ok(i) => i,
            Err(e) => return self.fail(session, 126, e.to_string()),
        };
        let restrict = match restrictions(&p, mounted) {
            Ok(r) => r,
            Err(e) => return self.fail(session, 126, e),
        };
        let env = exec::build_env(&p.env, &ident.home);
        let path = exec::env_value(&env, "PATH").unwrap_or(exec::DEFAULT_PATH);
        let candidates = exec::exec_candidates(&argv0, path);
        let cwd = ensure_cwd(mounted.writable_root.as_deref().unwrap_or(rootfs), &p.cwd);
        let stdio = match make_stdio(&p, rootfs, &ident) {
            Ok(s) => s,
            Err(e) => return self.fail(session, 126, format!("setting up stdio failed: {e}")),
        };
        let plan = match ChildPlan::new(
            &p.argv,
            &env,
            &candidates,
            &rootfs.to_string_lossy(),
            &cwd.to_string_lossy(),
            &ident,
            stdio.child_raw,
            p.tty,
            restrict,
        ) {
            Ok(plan) => plan,
            Err(e) => return self.fail(session, 126, format!("invalid process: {e}")),
        };
        let (status_tx, status_rx) = mpsc::channel();
        let mut guard = self.reaper.lock();
        let pid = match exec::spawn(&plan) {
            Ok(Ok(pid)) => pid,
            Ok(Err((stage, errno))) => {
                drop(guard);
                let (code, msg) = exec::failure(stage, errno, &argv0, &cwd.to_string_lossy());
                return self.fail(session, code, msg);
            }
            Err(e) => {
                drop(guard);
                return self.fail(session, 126, format!("fork failed: {e}"));
            }
        };
        guard.watch(pid, status_tx);
        drop(guard);
        drop(stdio.child);

        let closed = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = mpsc::channel();
        let mut outputs = 0;
        let mut pump = |f: File, kind: FrameKind| {
            outputs += 1;
            let (out, closed, done) = (self.out.clone(), closed.clone(), done_tx.clone());
            spawn_thread("output", move || {
                forward(f, kind, session, &out, &closed, done)
            });
        };
        pump(stdio.stdout, FrameKind::Stdout);
        if let Some(err) = stdio.stderr {
            pump(err, FrameKind::Stderr);
        }
        let stdin = stdio.stdin.map(|f| {
            let (tx, rx) = mpsc::channel::<Vec<u8>>();
            spawn_thread("stdin", move || write_stdin(f, rx));
            tx
        });
        lock(&self.map).insert(
            session,
            Session {
                pid,
                stdin,
                tty: stdio.tty,
            },
        );
        self.out.msg(&GuestMsg::Started {
            session,
            pid: pid as u32,
        });
        let me = self.clone();
        spawn_thread("waiter", move || {
            me.wait(session, status_rx, done_rx, outputs, &closed)
        });
    }

    /// Waits for the session's process, drains its output (bounded) and reports `Exited`.
    fn wait(
        &self,
        session: u32,
        status: Receiver<i32>,
        done: Receiver<()>,
        outputs: usize,
        closed: &AtomicBool,
    ) {
        let code = match status.recv() {
            Ok(s) => sys::exit_code(s),
            Err(_) => 255,
        };
        if session == MAIN_SESSION {
            // The container ends with its main process, as with Docker.
            let _ = sys::kill(-1, libc::SIGKILL);
        }
        let deadline = Instant::now() + DRAIN;
        for _ in 0..outputs {
            let left = deadline.saturating_duration_since(Instant::now());
            if done.recv_timeout(left).is_err() {
                crate::log!("session {session}: output still open {DRAIN:?} after exit");
                break;
            }
        }
        closed.store(true, Ordering::SeqCst);
        lock(&self.map).remove(&session);
        if session == MAIN_SESSION {
            *lock(&self.main_exit) = Some(code);
        }
        self.out.exited(session, code);
        if session == MAIN_SESSION {
            (self.on_main_exit)();
        }
    }

    /// Handles a stdin frame.
    pub fn stdin(&self, session: u32, data: Vec<u8>) {
        if let Some(tx) = lock(&self.map).get(&session).and_then(|s| s.stdin.as_ref()) {
            let _ = tx.send(data);
        }
    }

    /// Handles `StdinClosed`: the process sees end of input (a terminal just stops getting input).
    pub fn close_stdin(&self, session: u32) {
        if let Some(s) = lock(&self.map).get_mut(&session) {
            s.stdin = None;
        }
    }

    /// Handles `Signal`.
    pub fn signal(&self, session: u32, signal: i32) {
        let pid = lock(&self.map).get(&session).map(|s| s.pid);
        match pid {
            Some(pid) => {
                if let Err(e) = sys::kill(pid, signal) {
                    crate::log!("session {session}: signal {signal} failed: {e}");
                }
            }
            None => crate::log!("session {session}: signal {signal} for no running process"),
        }
    }

    /// Handles `Resize`.
    pub fn resize(&self, session: u32, rows: u16, cols: u16) {
        let tty = lock(&self.map).get(&session).and_then(|s| s.tty.clone());
        if let Some(t) = tty {
            if let Err(e) = sys::set_winsize(t.as_raw_fd(), rows, cols) {
                crate::log!("session {session}: resize failed: {e}");
            }
        }
    }
}

/// What the child applies to itself: the pids cgroup, `--ulimit`s and privileges.
fn restrictions(p: &Process, mounted: &Mounted) -> Result<Restrictions, String> {
    let rlimits = (p.privileges.rlimits.iter())
        .map(|r| {
            let resource = RLIMITS
                .iter()
                .position(|n| *n == r.name)
                .ok_or_else(|| format!("invalid ulimit type: {}", r.name))?;
            let limit = libc::rlimit {
                rlim_cur: r.soft,
                rlim_max: r.hard,
            };
            Ok((resource as u32, limit))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    Ok(Restrictions {
        cgroup_procs: mounted.cgroup_procs.clone(),
        rlimits,
        capabilities: p.privileges.capabilities,
        last_cap,
        no_new_privs: p.privileges.no_new_privileges,
    })
}

fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(256 * 1024)
        .spawn(f)
    {
        crate::log!("starting a {name} thread failed: {e}");
    }
}

/// Copies one output stream into frames until EOF (a terminal master reports EIO instead).
fn forward(
    mut f: File,
    kind: FrameKind,
    session: u32,
    out: &Writer,
    closed: &AtomicBool,
    done: Sender<()>,
) {
    // One frame stays within one virtio-serial write (the driver takes at most 32 KiB per
    // write), so a host that dies loses whole frames, never half of one.
    let mut buf = vec![0u8; 32 * 1024 - tether_proto::HEADER_LEN];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if !out.send_output(closed, kind, session, &buf[..n]) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = done.send(());
}

fn write_stdin(mut f: File, rx: Receiver<Vec<u8>>) {
    let mut broken = false;
    for data in rx {
        // Once the process has closed its input, keep draining so the host never blocks.
        if !broken && f.write_all(&data).is_err() {
            broken = true;
        }
    }
}
