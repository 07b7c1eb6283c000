//! Process sessions: spawning into the container, stdio forwarding, signals, terminal size and
//! exit reporting. Each session has reader threads for its output, a writer thread for its
//! input and a waiter thread that reports its exit after its output.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether_proto::{FrameKind, GuestMsg, Process, MAIN_SESSION};

use crate::mounts::Mounted;
use crate::plan::ChildPlan;
use crate::port::Writer;
use crate::reaper::Reaper;
use crate::stdio::{self, spawn_thread};
use crate::sys::exit_code;
use crate::syscall::Syscall;
use crate::{exec, launch};

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
    sys: Arc<dyn Syscall>,
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

impl Sessions {
    pub fn new(
        sys: Arc<dyn Syscall>,
        reaper: Arc<Reaper>,
        out: Writer,
        on_main_exit: Box<dyn Fn() + Send + Sync>,
    ) -> Arc<Self> {
        Arc::new(Self {
            sys,
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
        let sys = &*self.sys;
        let launch = match launch::prepare(sys, &p, &argv0, mounted) {
            Ok(l) => l,
            Err(e) => return self.fail(session, 126, e),
        };
        let stdio = match stdio::make(sys, &p, rootfs, &launch.ident) {
            Ok(s) => s,
            Err(e) => return self.fail(session, 126, format!("setting up stdio failed: {e}")),
        };
        let cwd = launch.cwd.to_string_lossy().into_owned();
        let plan = match ChildPlan::new(
            &p.argv,
            &launch.env,
            &launch.candidates,
            &rootfs.to_string_lossy(),
            &cwd,
            &launch.ident,
            stdio.child_raw,
            p.tty,
            launch.restrict,
        ) {
            Ok(plan) => plan,
            Err(e) => return self.fail(session, 126, format!("invalid process: {e}")),
        };
        let (status_tx, status_rx) = mpsc::channel();
        let mut guard = self.reaper.lock();
        let pid = match sys.spawn(&plan, exec::run_child) {
            Ok(Ok(pid)) => pid,
            Ok(Err((stage, errno))) => {
                drop(guard);
                let (code, msg) = exec::failure(stage, errno, &argv0, &cwd);
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

        let stdin = stdio.stdin.map(|f| {
            let (tx, rx) = mpsc::channel::<Vec<u8>>();
            spawn_thread("stdin", move || stdio::write_stdin(f, rx));
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
        // Sent before anything reads the process's output: the host takes output for a
        // session it has not seen start as a protocol violation.
        self.out.msg(&GuestMsg::Started {
            session,
            pid: pid as u32,
        });
        let closed = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = mpsc::channel();
        let mut outputs = 0;
        let mut pump = |f: File, kind: FrameKind| {
            outputs += 1;
            let (out, closed, done) = (self.out.clone(), closed.clone(), done_tx.clone());
            spawn_thread("output", move || {
                stdio::forward(f, kind, session, &out, &closed, done)
            });
        };
        pump(stdio.stdout, FrameKind::Stdout);
        if let Some(err) = stdio.stderr {
            pump(err, FrameKind::Stderr);
        }
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
            Ok(s) => exit_code(s),
            Err(_) => 255,
        };
        if session == MAIN_SESSION {
            // The container ends with its main process, as with Docker.
            let _ = self.sys.kill(-1, libc::SIGKILL);
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
                if let Err(e) = self.sys.kill(pid, signal) {
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
            if let Err(e) = self.sys.set_winsize(t.as_raw_fd(), rows, cols) {
                crate::log!("session {session}: resize failed: {e}");
            }
        }
    }
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;
