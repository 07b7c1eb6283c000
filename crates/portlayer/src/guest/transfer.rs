//! Copies into and out of a running guest (`docker cp`), the host's half of the tether's
//! transfers: each is a session numbered like an exec's, carrying a tar stream against
//! credit (see `tether_proto::archive`). What the guest may say of a transfer is checked
//! here as exec messages are in `exec.rs`: a `Transfer` once, for a transfer the host began;
//! data only after it and only within the credit granted; a `Credit` only for a copy into
//! the guest. Anything else breaks the protocol.
//!
//! Data out of the guest goes to a queue that holds the whole window, so the session's
//! reader never waits for a slow client: the client's pace reaches the guest as credit.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tether_proto::archive::{TRANSFER_FRAME, TRANSFER_WINDOW};
use tether_proto::{GuestMsg, PathErrorKind};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Frames of data out of the guest a transfer's queue holds: the window in full frames,
/// and as many again for a guest that sends them smaller.
pub const DATA_FRAMES: usize = 2 * (TRANSFER_WINDOW as usize / TRANSFER_FRAME);

/// What `lstat` says of a path in a container (`docker cp`'s `PathStat`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerPath {
    /// The last element as the client named it.
    pub name: String,
    pub size: u64,
    /// `st_mode`: the type and permission bits.
    pub mode: u32,
    pub mtime_secs: i64,
    pub mtime_nanos: u32,
    /// Where a symbolic link leads, absolute in the container.
    pub link_target: String,
}

impl From<tether_proto::PathStat> for ContainerPath {
    fn from(s: tether_proto::PathStat) -> ContainerPath {
        ContainerPath {
            name: s.name,
            size: s.size,
            mode: s.mode,
            mtime_secs: s.mtime_secs,
            mtime_nanos: s.mtime_nanos,
            link_target: s.link_target,
        }
    }
}

/// Why a copy could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    /// Nothing at the path.
    #[error("{0}")]
    NotFound(String),
    /// Extraction into something that is not a directory.
    #[error("{0}")]
    NotDirectory(String),
    /// A path or request that is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The destination is read-only.
    #[error("{0}")]
    ReadOnly(String),
    /// Anything else: an I/O error in the guest, a broken channel, a timeout.
    #[error("{0}")]
    Failed(String),
}

impl From<tether_proto::PathError> for CopyError {
    fn from(e: tether_proto::PathError) -> CopyError {
        match e.kind {
            PathErrorKind::NotFound => CopyError::NotFound(e.message),
            PathErrorKind::NotDirectory => CopyError::NotDirectory(e.message),
            PathErrorKind::Invalid => CopyError::Invalid(e.message),
            PathErrorKind::ReadOnly => CopyError::ReadOnly(e.message),
            PathErrorKind::Other => CopyError::Failed(e.message),
        }
    }
}

/// What the host holds of a transfer while it runs.
pub(crate) struct Began {
    /// The guest's `Transfer`: the stat and, for a copy in, the window it grants.
    pub(crate) stat: oneshot::Receiver<Result<(ContainerPath, u64), CopyError>>,
    /// The guest's `TransferDone`: whole, or why not. Dropped if the VM goes first.
    pub(crate) done: oneshot::Receiver<Option<String>>,
    /// Data out of the guest (a copy out).
    pub(crate) data: mpsc::Receiver<Bytes>,
    /// Credit the guest granted (a copy in), in bytes.
    pub(crate) credit: Arc<Semaphore>,
}

struct Route {
    out: bool,
    stat: Option<oneshot::Sender<Result<(ContainerPath, u64), CopyError>>>,
    done: Option<oneshot::Sender<Option<String>>>,
    data: mpsc::Sender<Bytes>,
    /// Bytes out of the guest it may still send (the host's credit).
    allowed: u64,
    credit: Arc<Semaphore>,
}

/// Transfers the host gave up on whose end the guest may still be saying, remembered so
/// that what it says of them is not taken for a violation.
const ABANDONED: usize = 256;

/// The transfers of one running guest: those under way and those given up, under one lock,
/// so that a transfer given up while the guest's word of its end is being read is found in
/// one or the other.
#[derive(Default)]
pub(crate) struct Transfers {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    routes: HashMap<u32, Route>,
    abandoned: VecDeque<u32>,
}

impl State {
    fn is_abandoned(&self, session: u32) -> bool {
        self.abandoned.contains(&session)
    }

    /// What the guest says of a transfer the host gave up: dropped, and the transfer
    /// forgotten once the guest says it is over. `None` when `session` was not given up.
    fn abandoned_message(&mut self, session: u32, msg: &GuestMsg) -> Option<()> {
        let at = self.abandoned.iter().position(|s| *s == session)?;
        let ended = match msg {
            GuestMsg::TransferDone { .. } => true,
            GuestMsg::Transfer { stat, .. } => stat.is_err(),
            _ => false,
        };
        if ended {
            self.abandoned.remove(at);
        }
        Some(())
    }
}

impl Transfers {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers transfer `session`, out of the guest (`out`) or into it.
    pub(crate) fn open(&self, session: u32, out: bool) -> Began {
        let (stat_tx, stat) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        let (data_tx, data) = mpsc::channel(DATA_FRAMES);
        let credit = Arc::new(Semaphore::new(0));
        self.lock().routes.insert(
            session,
            Route {
                out,
                stat: Some(stat_tx),
                done: Some(done_tx),
                data: data_tx,
                allowed: if out { TRANSFER_WINDOW } else { 0 },
                credit: credit.clone(),
            },
        );
        Began {
            stat,
            done,
            data,
            credit,
        }
    }

    /// Whether `session` is a transfer's.
    pub(crate) fn owns(&self, session: u32) -> bool {
        let state = self.lock();
        state.routes.contains_key(&session) || state.is_abandoned(session)
    }

    /// Gives transfer `session` up (its client went, or its start could not be sent): what
    /// the guest still says of it is dropped until it says the transfer is over.
    pub(crate) fn close(&self, session: u32) {
        let mut state = self.lock();
        if state.routes.remove(&session).is_some() {
            if state.abandoned.len() >= ABANDONED {
                state.abandoned.pop_front();
            }
            state.abandoned.push_back(session);
        }
    }

    /// The host granted `bytes` more to transfer `session`.
    pub(crate) fn granted(&self, session: u32, bytes: u64) {
        if let Some(r) = self.lock().routes.get_mut(&session) {
            r.allowed = r.allowed.saturating_add(bytes);
        }
    }

    /// Takes data the guest sent for `session`: `Ok(false)` when it is no transfer's (an
    /// exec's, then), an error when the protocol does not allow it.
    pub(crate) fn data(&self, session: u32, payload: Vec<u8>) -> Result<bool, String> {
        let mut state = self.lock();
        if state.is_abandoned(session) {
            return Ok(true);
        }
        let Some(r) = state.routes.get_mut(&session) else {
            return Ok(false);
        };
        if !r.out || r.stat.is_some() {
            return Err(format!("data for transfer {session} before it began"));
        }
        let len = payload.len() as u64;
        if len > r.allowed {
            return Err(format!(
                "{len} bytes for transfer {session}, beyond its credit of {}",
                r.allowed
            ));
        }
        r.allowed -= len;
        match r.data.try_send(Bytes::from(payload)) {
            Ok(()) => Ok(true),
            // The copy's reader has gone: what it would have read goes nowhere.
            Err(mpsc::error::TrySendError::Closed(_)) => Ok(true),
            Err(mpsc::error::TrySendError::Full(_)) => Err(format!(
                "more than {DATA_FRAMES} frames in flight for transfer {session}"
            )),
        }
    }

    /// Whether `msg` is about a transfer.
    pub(crate) fn is_transfer_msg(msg: &GuestMsg) -> bool {
        matches!(
            msg,
            GuestMsg::Transfer { .. } | GuestMsg::Credit { .. } | GuestMsg::TransferDone { .. }
        )
    }

    /// Acts on a transfer message; an error when the protocol does not allow it.
    pub(crate) fn message(&self, msg: GuestMsg) -> Result<(), String> {
        let session = match &msg {
            GuestMsg::Transfer { session, .. }
            | GuestMsg::Credit { session, .. }
            | GuestMsg::TransferDone { session, .. } => *session,
            _ => return Err("not a transfer message".into()),
        };
        let mut state = self.lock();
        if state.abandoned_message(session, &msg).is_some() {
            return Ok(());
        }
        let map = &mut state.routes;
        match msg {
            GuestMsg::Transfer {
                session,
                stat,
                window,
            } => {
                let r = map
                    .get_mut(&session)
                    .ok_or_else(|| format!("Transfer for {session}, which was not begun"))?;
                let tx = r
                    .stat
                    .take()
                    .ok_or_else(|| format!("a second Transfer for {session}"))?;
                match stat {
                    Ok(st) => {
                        if !r.out {
                            r.credit.add_permits(clamp(window));
                        }
                        let _ = tx.send(Ok((st.into(), window)));
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into()));
                        map.remove(&session);
                    }
                }
            }
            GuestMsg::Credit { session, bytes } => {
                let r = map
                    .get_mut(&session)
                    .filter(|r| !r.out && r.stat.is_none())
                    .ok_or_else(|| format!("Credit for {session}, which takes no data"))?;
                r.credit.add_permits(clamp(bytes));
            }
            GuestMsg::TransferDone { session, error } => {
                let mut r = map
                    .remove(&session)
                    .ok_or_else(|| format!("TransferDone for {session}, which was not begun"))?;
                if r.stat.is_some() {
                    return Err(format!("TransferDone for {session} before Transfer"));
                }
                if let Some(tx) = r.done.take() {
                    let _ = tx.send(error);
                }
            }
            _ => return Err("not a transfer message".into()),
        }
        Ok(())
    }

    /// The VM is gone: every transfer ends unfinished.
    pub(crate) fn close_all(&self) {
        self.lock().routes.clear();
    }
}

/// Credit as semaphore permits (bounded by what a semaphore holds).
fn clamp(bytes: u64) -> usize {
    bytes.min(TRANSFER_WINDOW * 4) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_proto::{PathError, PathStat};

    fn began(session: u32) -> GuestMsg {
        GuestMsg::Transfer {
            session,
            stat: Ok(PathStat::default()),
            window: 1000,
        }
    }

    #[tokio::test]
    async fn a_copy_out_takes_data_only_after_it_began_and_within_its_credit() {
        let t = Transfers::default();
        let mut b = t.open(3, true);
        assert!(t.data(3, vec![1]).is_err(), "data before Transfer");
        t.message(began(3)).unwrap();
        assert!(t.message(began(3)).is_err(), "a second Transfer");
        assert!(b.stat.try_recv().unwrap().is_ok());
        assert_eq!(t.data(3, vec![7; 10]), Ok(true));
        assert_eq!(&b.data.recv().await.unwrap()[..], &[7; 10]);
        let beyond = vec![0; TRANSFER_WINDOW as usize];
        assert!(t.data(3, beyond.clone()).is_err(), "beyond the window");
        t.granted(3, 10);
        assert_eq!(t.data(3, beyond), Ok(true));
        assert!(
            t.message(GuestMsg::Credit {
                session: 3,
                bytes: 5
            })
            .is_err(),
            "a copy out is not given credit by the guest"
        );
        t.message(GuestMsg::TransferDone {
            session: 3,
            error: None,
        })
        .unwrap();
        assert_eq!(b.done.try_recv().unwrap(), None);
        assert_eq!(t.data(4, vec![1]), Ok(false), "not a transfer's");
    }

    #[test]
    fn what_the_guest_says_of_a_copy_the_host_gave_up_is_dropped_until_its_end() {
        let t = Transfers::default();
        let _b = t.open(8, true);
        t.message(began(8)).unwrap();
        t.close(8);
        assert!(t.owns(8));
        assert_eq!(t.data(8, vec![0; 100]), Ok(true), "late data is dropped");
        let done = GuestMsg::TransferDone {
            session: 8,
            error: Some("the copy was cancelled".into()),
        };
        t.message(done.clone()).unwrap();
        assert!(!t.owns(8), "forgotten once over");
        assert!(t.message(done).is_err(), "but only once");
    }

    #[test]
    fn a_copy_given_up_while_its_end_is_read_is_no_violation() {
        // The client leaves (the copy is given up) just as the guest's TransferDone and
        // late data are read: whichever comes first, neither is taken for a violation.
        let t = Arc::new(Transfers::default());
        for session in 0..10_000 {
            let _b = t.open(session, true);
            t.message(began(session)).unwrap();
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let closer = std::thread::spawn({
                let (t, barrier) = (t.clone(), barrier.clone());
                move || {
                    barrier.wait();
                    t.close(session);
                }
            });
            barrier.wait();
            let data = t.data(session, vec![1]);
            let done = t.message(GuestMsg::TransferDone {
                session,
                error: None,
            });
            closer.join().unwrap();
            assert!(data.is_ok(), "session {session}: {data:?}");
            assert_eq!(done, Ok(()), "session {session}");
        }
    }

    #[test]
    fn a_copy_in_gets_the_credit_the_guest_grants_and_a_refusal_ends_it() {
        let t = Transfers::default();
        let b = t.open(5, false);
        t.message(began(5)).unwrap();
        assert_eq!(b.credit.available_permits(), 1000);
        t.message(GuestMsg::Credit {
            session: 5,
            bytes: 24,
        })
        .unwrap();
        assert_eq!(b.credit.available_permits(), 1024);
        assert!(
            t.data(5, vec![1]).is_err(),
            "no data comes out of a copy in"
        );

        let mut r = t.open(6, false);
        t.message(GuestMsg::Transfer {
            session: 6,
            stat: Err(PathError {
                kind: PathErrorKind::NotDirectory,
                message: "extraction point is not a directory".into(),
            }),
            window: 0,
        })
        .unwrap();
        assert_eq!(
            r.stat.try_recv().unwrap(),
            Err(CopyError::NotDirectory(
                "extraction point is not a directory".into()
            ))
        );
        assert!(
            t.message(GuestMsg::TransferDone {
                session: 6,
                error: None
            })
            .is_err(),
            "a refused transfer is over"
        );
    }
}
