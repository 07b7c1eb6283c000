//! What the host sends a running guest besides stdin: signals and resizes (queued, never
//! waited for: a guest that has stopped reading is reported) and interface changes (a
//! network connected or disconnected while the container runs), which the guest answers and
//! the host waits for, bounded in number and in time.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tether_proto::{
    Frame, FrameKind, HostMsg, Process, EXEC_VERSION, MAIN_SESSION, MAX_PAYLOAD,
    SET_INTERFACE_VERSION,
};

use super::exec::{Adopted, ExecHandle, Routes};
use tokio::sync::{mpsc, oneshot};

/// How long the guest may take to answer an interface change.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Interface changes waiting for the guest's answer at once.
const MAX_ASKED: usize = 8;

/// Why a control message did not reach the guest's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undelivered {
    /// No session is running.
    NotRunning,
    /// The guest has not read [`super::session::CONTROL_QUEUE`] messages already queued.
    NotReading,
}

/// What a guest answers.
#[derive(Debug)]
pub(crate) enum Answer {
    /// To an interface change: done, or why not.
    Interface(Option<String>),
    /// To a question for its processes.
    Processes(Processes),
    /// To a question for the VM's counters.
    Stats(Box<super::stats::ContainerStats>),
    /// To a question for what is at a path.
    PathStat(Result<super::transfer::ContainerPath, super::transfer::CopyError>),
}

/// The container's processes, as its guest lists them (`docker top`).
#[derive(Debug, Clone)]
pub struct Processes {
    pub list: Vec<GuestProcess>,
    /// The guest's boot, in seconds since the epoch, and its clock ticks per second.
    pub boot_unix: u64,
    pub hz: u64,
    pub memory_kib: u64,
}

/// One of the container's processes (the wire's `ProcessInfo`, in the port layer's terms).
#[derive(Debug, Clone, PartialEq)]
pub struct GuestProcess {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub user: String,
    pub state: String,
    /// CPU time in clock ticks, and its start in clock ticks after the guest's boot.
    pub ticks: u64,
    pub start_ticks: u64,
    pub rss_kib: u64,
    pub vsize_kib: u64,
    pub tty: String,
    pub comm: String,
    pub args: Vec<String>,
}

impl From<tether_proto::ProcessInfo> for GuestProcess {
    fn from(p: tether_proto::ProcessInfo) -> GuestProcess {
        GuestProcess {
            pid: p.pid,
            ppid: p.ppid,
            uid: p.uid,
            user: p.user,
            state: p.state,
            ticks: p.ticks,
            start_ticks: p.start_ticks,
            rss_kib: p.rss_kib,
            vsize_kib: p.vsize_kib,
            tty: p.tty,
            comm: p.comm,
            args: p.args,
        }
    }
}

/// The questions a session's guest has yet to answer, and the protocol version it speaks.
#[derive(Debug, Default)]
pub(crate) struct Asked {
    pending: Mutex<Pending>,
    next: AtomicU64,
    version: AtomicU32,
}

/// Questions given up on whose late answers are dropped, not taken for violations.
const GIVEN_UP: usize = 64;

#[derive(Debug, Default)]
struct Pending {
    waiting: HashMap<u64, oneshot::Sender<Answer>>,
    /// Asked, and no longer waited for (they took longer than [`ANSWER_TIMEOUT`]).
    given_up: VecDeque<u64>,
}

impl Asked {
    /// The guest said Hello with `version`.
    pub(crate) fn hello(&self, version: u32) {
        self.version.store(version, Ordering::SeqCst);
    }

    /// Hands the guest's answer to question `seq` to whoever asked; false when nobody did
    /// (a guest answering what it was not asked breaks the protocol).
    /// The answer to a question given up on is dropped, once.
    pub(crate) fn answer(&self, seq: u64, answer: Answer) -> bool {
        let mut p = self.lock();
        if let Some(tx) = p.waiting.remove(&seq) {
            let _ = tx.send(answer);
            return true;
        }
        match p.given_up.iter().position(|s| *s == seq) {
            Some(at) => p.given_up.remove(at).is_some(),
            None => false,
        }
    }

    /// Waits for the answer to question `seq`; `None` when [`MAX_ASKED`] are waited for.
    fn wait_for(&self, seq: u64) -> Option<oneshot::Receiver<Answer>> {
        let mut p = self.lock();
        if p.waiting.len() >= MAX_ASKED {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        p.waiting.insert(seq, tx);
        Some(rx)
    }

    /// Question `seq` never reached the guest: nothing is to come of it.
    fn forget(&self, seq: u64) {
        self.lock().waiting.remove(&seq);
    }

    /// Question `seq` is no longer waited for: its answer, when it comes, is dropped.
    fn give_up(&self, seq: u64) {
        let mut p = self.lock();
        if p.waiting.remove(&seq).is_some() {
            if p.given_up.len() >= GIVEN_UP {
                p.given_up.pop_front();
            }
            p.given_up.push_back(seq);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running session's control: signals, resizes, interface changes and exec sessions.
#[derive(Clone)]
pub struct GuestControl {
    pub(super) tx: mpsc::Sender<Frame>,
    pub(super) asked: Arc<Asked>,
    pub(super) routes: Arc<Routes>,
    pub(super) transfers: Arc<super::transfer::Transfers>,
    /// The bounded queue of stdin frames (exec sessions' and copies' data share it with the
    /// main one's).
    pub(super) stdin: mpsc::Sender<Frame>,
}

impl std::fmt::Debug for GuestControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestControl").finish_non_exhaustive()
    }
}

impl GuestControl {
    pub(crate) fn new(
        tx: mpsc::Sender<Frame>,
        asked: Arc<Asked>,
        routes: Arc<Routes>,
        transfers: Arc<super::transfer::Transfers>,
        stdin: mpsc::Sender<Frame>,
    ) -> GuestControl {
        GuestControl {
            tx,
            asked,
            routes,
            transfers,
            stdin,
        }
    }

    /// Starts `process` as a new session beside the main one (`docker exec`); its start, output
    /// and exit come through the returned handle.
    pub fn spawn(&self, process: Process) -> Result<ExecHandle, String> {
        let version = self.asked.version.load(Ordering::SeqCst);
        if version < EXEC_VERSION {
            return Err(format!(
                "the container's tether (protocol version {version}) cannot run another process: restart the container first"
            ));
        }
        let handle = self.routes.open().ok_or_else(|| {
            format!(
                "{} exec sessions already run in this container",
                super::exec::MAX_SESSIONS
            )
        })?;
        let session = handle.session;
        if let Err(e) = self.send(&HostMsg::Spawn { session, process }) {
            self.routes.close(session);
            return Err(format!("the guest cannot be told: {e:?}"));
        }
        Ok(handle)
    }

    /// Sends `data` to session `session`'s standard input, waiting while the queue is full.
    pub async fn stdin(&self, session: u32, data: Bytes) -> Result<(), Undelivered> {
        for chunk in data.chunks(MAX_PAYLOAD) {
            let frame = Frame::data(FrameKind::Stdin, session, chunk.to_vec());
            self.stdin
                .send(frame)
                .await
                .map_err(|_| Undelivered::NotRunning)?;
        }
        Ok(())
    }

    /// Closes session `session`'s standard input.
    pub async fn close_stdin(&self, session: u32) -> Result<(), Undelivered> {
        let frame = Frame::data(FrameKind::StdinClosed, session, Vec::new());
        self.stdin
            .send(frame)
            .await
            .map_err(|_| Undelivered::NotRunning)
    }

    /// Resizes session `session`'s terminal.
    pub fn resize_session(&self, session: u32, rows: u16, cols: u16) -> Result<(), Undelivered> {
        self.send(&HostMsg::Resize {
            session,
            rows,
            cols,
        })
    }

    /// What became of session `session`, which ran before this appliance took the VM over.
    pub fn adopt(&self, session: u32) -> Adopted {
        self.routes.adopt(session)
    }

    /// Tells the guest it may drop what it kept of ended session `session`.
    pub fn forget(&self, session: u32) -> Result<(), Undelivered> {
        self.send(&HostMsg::Forget { session })
    }

    /// Sends `signal` to session `session`'s process (an exec's).
    pub fn signal_session(&self, session: u32, signal: i32) -> Result<(), Undelivered> {
        self.send(&HostMsg::Signal { session, signal })
    }

    /// Has the guest sync, unmount and power off.
    pub fn shutdown(&self) -> Result<(), Undelivered> {
        self.send(&HostMsg::Shutdown)
    }

    pub fn signal(&self, signal: i32) -> Result<(), Undelivered> {
        self.send(&HostMsg::Signal {
            session: MAIN_SESSION,
            signal,
        })
    }

    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), Undelivered> {
        self.send(&HostMsg::Resize {
            session: MAIN_SESSION,
            rows,
            cols,
        })
    }

    /// The protocol version the guest said Hello with.
    pub(super) fn version(&self) -> u32 {
        self.asked.version.load(Ordering::SeqCst)
    }

    pub(super) fn send(&self, msg: &HostMsg) -> Result<(), Undelivered> {
        self.tx.try_send(Frame::control(msg)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Undelivered::NotReading,
            mpsc::error::TrySendError::Closed(_) => Undelivered::NotRunning,
        })
    }

    /// Has the guest take the interface whose MAC is `find` down, give it MAC `mac` and,
    /// configured as `iface` says (address, default routes, IPv6 side, link-local
    /// addresses), up; without one it stays down with no address. Waits for its answer (at
    /// most [`ANSWER_TIMEOUT`]).
    pub async fn set_interface(
        &self,
        find: &str,
        mac: &str,
        iface: Option<&tether_proto::Interface>,
    ) -> Result<(), String> {
        let version = self.asked.version.load(Ordering::SeqCst);
        if version < SET_INTERFACE_VERSION {
            return Err(format!(
                "the container's tether (protocol version {version}) cannot change its interfaces while it runs: restart the container first"
            ));
        }
        let newer = iface.is_some_and(|i| i.ipv6.is_some() || !i.link_local.is_empty());
        if newer && version < tether_proto::IPV6_VERSION {
            return Err(format!(
                "the container's tether (protocol version {version}) has no IPv6 or link-local addresses: restart the container first"
            ));
        }
        let msg = |seq| HostMsg::SetInterface {
            seq,
            find: find.to_string(),
            mac: mac.to_string(),
            address: iface.map(|i| (i.address, i.prefix_len)),
            gateway: iface.and_then(|i| i.gateway),
            ipv6: iface.and_then(|i| i.ipv6),
            link_local: iface.map(|i| i.link_local.clone()).unwrap_or_default(),
        };
        match self.ask(msg).await? {
            Answer::Interface(None) => Ok(()),
            Answer::Interface(Some(e)) => {
                Err(format!("the guest could not set its interface: {e}"))
            }
            _ => Err("the guest answered another question".into()),
        }
    }

    /// The container's processes, as its guest lists them.
    pub async fn processes(&self) -> Result<Processes, String> {
        let version = self.asked.version.load(Ordering::SeqCst);
        if version < EXEC_VERSION {
            return Err(format!(
                "the container's tether (protocol version {version}) cannot list its processes: restart the container first"
            ));
        }
        match self.ask(|seq| HostMsg::ListProcesses { seq }).await? {
            Answer::Processes(p) => Ok(p),
            _ => Err("the guest answered another question".into()),
        }
    }

    /// Sends the question `msg` makes of a sequence number and waits for the guest's answer
    /// (at most [`ANSWER_TIMEOUT`]; at most [`MAX_ASKED`] questions wait at once).
    pub(super) async fn ask(&self, msg: impl FnOnce(u64) -> HostMsg) -> Result<Answer, String> {
        let seq = self.asked.next.fetch_add(1, Ordering::SeqCst);
        let Some(rx) = self.asked.wait_for(seq) else {
            return Err("too many questions to the guest under way in this container".into());
        };
        if let Err(e) = self.send(&msg(seq)) {
            self.asked.forget(seq);
            return Err(format!("the guest cannot be told: {e:?}"));
        }
        match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err("the container stopped before its guest answered".into()),
            Err(_) => {
                // A guest that answers late (a busy VM) is slow, not broken.
                self.asked.give_up(seq);
                Err(format!(
                    "the guest did not answer within {} s",
                    ANSWER_TIMEOUT.as_secs()
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_answer_to_a_question_given_up_is_dropped_once() {
        let asked = Asked::default();
        let mut rx = asked.wait_for(1).unwrap();
        assert!(asked.answer(1, Answer::Interface(None)));
        assert!(matches!(rx.try_recv(), Ok(Answer::Interface(None))));
        assert!(!asked.answer(1, Answer::Interface(None)), "answered twice");

        let _late = asked.wait_for(2).unwrap();
        asked.give_up(2);
        assert!(asked.answer(2, Answer::Interface(None)), "a late answer");
        assert!(!asked.answer(2, Answer::Interface(None)), "but only one");
        assert!(!asked.answer(3, Answer::Interface(None)), "never asked");

        let _unsent = asked.wait_for(4).unwrap();
        asked.forget(4);
        assert!(!asked.answer(4, Answer::Interface(None)), "never sent");
    }

    #[test]
    fn at_most_max_asked_wait_and_a_question_given_up_frees_its_place() {
        let asked = Asked::default();
        let waiting: Vec<_> = (0..MAX_ASKED as u64)
            .map(|seq| asked.wait_for(seq).unwrap())
            .collect();
        assert!(asked.wait_for(99).is_none());
        asked.give_up(0);
        assert!(asked.wait_for(99).is_some());
        drop(waiting);
    }
}
