//! Sessions beside the main one in a running guest (`docker exec`): where each one's output
//! and exit go, and what the guest may say of them. A session exists from the host's
//! `Spawn` until its `Exited` (or its `SpawnFailed`); output or messages for any other
//! session, a second `Started`, an `Exited` before `Started`, break the protocol as they do
//! for the main session.
//!
//! Output goes to the session's queue, bounded ([`OUTPUT_FRAMES`]); a client that reads
//! slowly holds back the channel of its VM (the main process's output included) rather than
//! the appliance's memory. Output of a session whose reader is gone (`exec -d`) is dropped.
//!
//! Sessions the guest's Hello names as running, or as ended but still held, when an
//! appliance takes a VM over are *orphans*: execs of the appliance before, whose clients went
//! with it. They run on; their output is dropped; whoever knows them (the exec records) may
//! [`Routes::adopt`] them to learn how they end, and the guest is told to forget them once
//! they have ended.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use tether_proto::GuestMsg;
use tokio::sync::{mpsc, oneshot};

use crate::logs::LogStream;

/// Output frames waiting for an exec's client (at most `MAX_PAYLOAD` each).
pub const OUTPUT_FRAMES: usize = 64;
/// Exec sessions a running container has at once.
pub const MAX_SESSIONS: usize = 64;

/// What `docker exec` asks for (Docker's exec create body, in the port layer's terms).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ExecConfig {
    pub cmd: Vec<String>,
    /// `KEY=value`, added to (and overriding) the container's environment.
    pub env: Vec<String>,
    /// Empty: the container's user.
    pub user: String,
    /// Empty: the container's working directory.
    pub working_dir: String,
    pub tty: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    /// Every capability, whatever the container has.
    pub privileged: bool,
    /// Rows and columns of the terminal at start (0: the guest's default).
    pub console_size: (u16, u16),
    pub detach_keys: String,
}

/// A piece of an exec's output.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub stream: LogStream,
    pub data: Bytes,
}

/// How an exec's start ended: its process's PID, or why it did not run and Docker's exit
/// code for that (126: cannot be run, 127: not found).
pub type Started = Result<u32, (String, i32)>;

/// Whether `msg` is about an exec session rather than the main one.
pub(crate) fn is_exec_msg(msg: &GuestMsg) -> bool {
    match msg {
        GuestMsg::Started { session, .. }
        | GuestMsg::SpawnFailed { session, .. }
        | GuestMsg::Exited { session, .. } => *session != tether_proto::MAIN_SESSION,
        _ => false,
    }
}

/// What a caller holds of a spawned exec session.
pub struct ExecHandle {
    pub session: u32,
    pub output: mpsc::Receiver<ExecOutput>,
    pub started: oneshot::Receiver<Started>,
    /// Resolves with the exit code; dropped unresolved when the VM goes first.
    pub exit: oneshot::Receiver<i32>,
}

struct Route {
    output: mpsc::Sender<ExecOutput>,
    started: Option<oneshot::Sender<Started>>,
    exit: Option<oneshot::Sender<i32>>,
}

/// The exec sessions of one running guest.
#[derive(Default)]
pub(crate) struct Routes {
    map: Mutex<HashMap<u32, Route>>,
    /// The next session number; 0 until the guest's Hello says which run already.
    next: AtomicU32,
    orphans: Mutex<Orphans>,
}

/// The sessions a take-over found.
#[derive(Default)]
struct Orphans {
    running: HashSet<u32>,
    /// Exit codes of those that have ended, until adopted (at most [`MAX_SESSIONS`]).
    ended: HashMap<u32, i32>,
    /// Who waits for the end of a running one.
    adopted: HashMap<u32, oneshot::Sender<i32>>,
}

/// What became of an orphan session.
#[derive(Debug)]
pub enum Adopted {
    Ended(i32),
    /// Still running: resolves with its exit code (dropped if the VM goes first).
    Running(oneshot::Receiver<i32>),
    /// The guest knows nothing of it (it ended long ago, or the VM is another one).
    Unknown,
}

impl Routes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Route>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The guest said Hello with these sessions running: new ones are numbered after them.
    /// A Hello can come again in the middle of a session (the guest saw its line come back,
    /// or was asked to resync): sessions this host opened are its own, not orphans.
    pub(crate) fn hello(&self, running: &[u32], ended: &[(u32, i32)]) {
        let highest = running.iter().chain(ended.iter().map(|(s, _)| s)).max();
        self.next
            .fetch_max(highest.copied().unwrap_or(0) + 1, Ordering::SeqCst);
        let ours: HashSet<u32> = self.lock().keys().copied().collect();
        let mut o = self.orphans();
        let theirs = |s: &u32| *s != tether_proto::MAIN_SESSION && !ours.contains(s);
        o.running.extend(running.iter().copied().filter(theirs));
        o.ended
            .extend(ended.iter().copied().filter(|(s, _)| theirs(s)));
    }

    fn orphans(&self) -> std::sync::MutexGuard<'_, Orphans> {
        self.orphans.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_orphan(&self, session: u32) -> bool {
        self.orphans().running.contains(&session)
    }

    /// What became of orphan `session`.
    pub(crate) fn adopt(&self, session: u32) -> Adopted {
        let mut o = self.orphans();
        if let Some(code) = o.ended.remove(&session) {
            return Adopted::Ended(code);
        }
        if !o.running.contains(&session) {
            return Adopted::Unknown;
        }
        let (tx, rx) = oneshot::channel();
        o.adopted.insert(session, tx);
        Adopted::Running(rx)
    }

    /// A fresh session number for a copy (numbered with the execs, so the guest never sees
    /// one number for two things).
    pub(crate) fn number(&self) -> u32 {
        let session = self.next.fetch_add(1, Ordering::SeqCst).max(1);
        self.next.fetch_max(session + 1, Ordering::SeqCst);
        session
    }

    /// Registers a new session; `None` when [`MAX_SESSIONS`] are under way.
    pub(crate) fn open(&self) -> Option<ExecHandle> {
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            return None;
        }
        let session = self.next.fetch_add(1, Ordering::SeqCst).max(1);
        self.next.fetch_max(session + 1, Ordering::SeqCst);
        let (out_tx, output) = mpsc::channel(OUTPUT_FRAMES);
        let (started_tx, started) = oneshot::channel();
        let (exit_tx, exit) = oneshot::channel();
        map.insert(
            session,
            Route {
                output: out_tx,
                started: Some(started_tx),
                exit: Some(exit_tx),
            },
        );
        Some(ExecHandle {
            session,
            output,
            started,
            exit,
        })
    }

    /// Forgets `session` (its spawn could not be sent).
    pub(crate) fn close(&self, session: u32) {
        self.lock().remove(&session);
    }

    /// Where output of `session` goes (`None`: nowhere, an orphan's); an error for a session
    /// that is not running.
    pub(crate) fn output(&self, session: u32) -> Result<Option<mpsc::Sender<ExecOutput>>, String> {
        if self.is_orphan(session) {
            return Ok(None);
        }
        match self.lock().get(&session) {
            Some(r) if r.started.is_none() => Ok(Some(r.output.clone())),
            Some(_) => Err(format!("output for session {session} before it started")),
            None => Err(format!(
                "output for session {session}, which does not exist"
            )),
        }
    }

    /// Acts on a message about an exec session; an error when the protocol does not allow it.
    /// `Some(session)`: an orphan ended, and the guest may forget it.
    pub(crate) fn message(&self, msg: &GuestMsg) -> Result<Option<u32>, String> {
        let (session, name) = match msg {
            GuestMsg::Started { session, .. } => (*session, "Started"),
            GuestMsg::SpawnFailed { session, .. } => (*session, "SpawnFailed"),
            GuestMsg::Exited { session, .. } => (*session, "Exited"),
            _ => return Err("a message that names no session".into()),
        };
        if self.is_orphan(session) {
            let GuestMsg::Exited { code, .. } = msg else {
                return Err(format!(
                    "{name} for session {session}, which was running already"
                ));
            };
            let mut o = self.orphans();
            o.running.remove(&session);
            match o.adopted.remove(&session) {
                Some(tx) => {
                    let _ = tx.send(*code);
                }
                None if o.ended.len() < MAX_SESSIONS => {
                    o.ended.insert(session, *code);
                }
                None => {}
            }
            return Ok(Some(session));
        }
        let mut map = self.lock();
        let Some(route) = map.get_mut(&session) else {
            return Err(format!(
                "{name} for session {session}, which does not exist"
            ));
        };
        match msg {
            GuestMsg::Started { pid, .. } => match route.started.take() {
                Some(tx) => {
                    let _ = tx.send(Ok(*pid));
                }
                None => return Err(format!("a second Started for session {session}")),
            },
            GuestMsg::SpawnFailed { message, code, .. } => match route.started.take() {
                Some(tx) => {
                    let _ = tx.send(Err((message.clone(), *code)));
                    map.remove(&session);
                }
                None => return Err(format!("SpawnFailed for session {session} after Started")),
            },
            GuestMsg::Exited { code, .. } => {
                if route.started.is_some() {
                    return Err(format!("Exited for session {session} before Started"));
                }
                if let Some(tx) = route.exit.take() {
                    let _ = tx.send(*code);
                }
                map.remove(&session);
            }
            _ => {}
        }
        Ok(None)
    }

    /// The VM is gone: every session ends without an exit code.
    pub(crate) fn close_all(&self) {
        self.lock().clear();
        self.orphans().adopted.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_goes_started_output_exited_and_nothing_else_is_allowed() {
        let routes = Routes::default();
        routes.hello(&[0, 4], &[]);
        let mut h = routes.open().unwrap();
        assert_eq!(h.session, 5, "numbered after the running ones");
        assert!(routes.output(5).is_err(), "output before Started");
        let exited = GuestMsg::Exited {
            session: 5,
            code: 3,
        };
        assert!(routes.message(&exited).is_err(), "Exited before Started");
        routes
            .message(&GuestMsg::Started {
                session: 5,
                pid: 42,
            })
            .unwrap();
        assert_eq!(h.started.try_recv().unwrap(), Ok(42));
        assert!(routes
            .message(&GuestMsg::Started {
                session: 5,
                pid: 42
            })
            .is_err());
        let tx = routes.output(5).unwrap().unwrap();
        tx.send(ExecOutput {
            stream: LogStream::Stdout,
            data: Bytes::from_static(b"hi"),
        })
        .await
        .unwrap();
        routes.message(&exited).unwrap();
        drop(tx);
        assert_eq!(h.exit.try_recv().unwrap(), 3);
        assert_eq!(&h.output.recv().await.unwrap().data[..], b"hi");
        assert!(
            h.output.recv().await.is_none(),
            "the output ends with the exit"
        );
        assert!(routes.output(5).is_err(), "an ended session is gone");
        assert!(routes.output(9).is_err(), "a session never opened");
    }

    #[test]
    fn sessions_running_before_a_take_over_run_on_unheard_and_are_forgotten_at_their_end() {
        let routes = Routes::default();
        routes.hello(&[0, 3, 5], &[(6, 9)]);
        assert!(matches!(routes.adopt(6), Adopted::Ended(9)), "ended before");
        assert!(matches!(routes.adopt(2), Adopted::Unknown));
        let Adopted::Running(mut five) = routes.adopt(5) else {
            panic!("5 runs");
        };
        let five_ended = GuestMsg::Exited {
            session: 5,
            code: 4,
        };
        assert_eq!(routes.message(&five_ended).unwrap(), Some(5));
        assert_eq!(five.try_recv().unwrap(), 4, "the adopter hears the end");
        assert!(
            routes.output(3).unwrap().is_none(),
            "an orphan's output goes nowhere"
        );
        let started = GuestMsg::Started { session: 3, pid: 1 };
        assert!(routes.message(&started).is_err());
        let exited = GuestMsg::Exited {
            session: 3,
            code: 0,
        };
        assert_eq!(routes.message(&exited).unwrap(), Some(3));
        assert!(routes.output(3).is_err(), "an ended orphan is gone");
        assert!(
            matches!(routes.adopt(3), Adopted::Ended(0)),
            "kept for its adopter"
        );
        assert_eq!(routes.open().unwrap().session, 7);
    }

    #[test]
    fn a_hello_again_mid_session_leaves_this_hosts_own_sessions_alone() {
        let routes = Routes::default();
        routes.hello(&[0], &[]);
        let mut h = routes.open().unwrap();
        // The line came back (or a resync): the guest says Hello again, the new exec running.
        routes.hello(&[0, h.session], &[]);
        let started = GuestMsg::Started {
            session: h.session,
            pid: 7,
        };
        assert!(routes.message(&started).is_ok());
        assert_eq!(
            h.started.try_recv().unwrap(),
            Ok(7),
            "its start reaches its caller"
        );
        assert!(
            matches!(routes.adopt(h.session), Adopted::Unknown),
            "not an orphan"
        );
    }

    #[test]
    fn a_failed_spawn_says_why_and_sessions_are_bounded() {
        let routes = Routes::default();
        let mut h = routes.open().unwrap();
        assert_eq!(h.session, 1);
        routes
            .message(&GuestMsg::SpawnFailed {
                session: 1,
                message: "not found".into(),
                code: 127,
            })
            .unwrap();
        assert_eq!(
            h.started.try_recv().unwrap(),
            Err(("not found".into(), 127))
        );
        let held: Vec<_> = (0..MAX_SESSIONS).map(|_| routes.open().unwrap()).collect();
        assert!(routes.open().is_none(), "{} at once", held.len());
        routes.close_all();
        assert!(routes.open().is_some());
    }
}
