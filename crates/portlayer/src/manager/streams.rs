//! The container's streams: waiting for its end, attaching, following its output, its log,
//! and resizing its terminal.

use std::path::PathBuf;

use tokio::sync::mpsc;

use super::{io_err, Containers, Error};
use crate::container::{ContainerRecord, Status};
use crate::follow::Follower;
pub use crate::follow::Output;
use crate::guest::session::{StdinMsg, Undelivered};
use crate::logs::LogSet;

/// Docker's wait conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

/// The streams of one attach.
pub struct AttachStreams {
    pub output: Follower,
    pub tty: bool,
    /// Present when stdin was asked for and the container keeps stdin open.
    pub stdin: Option<mpsc::Sender<StdinMsg>>,
    /// Close the container's stdin when this client's stdin ends.
    pub stdin_once: bool,
}

impl Containers {
    /// Waits for the condition and returns the exit code.
    pub async fn wait(&self, key: &str, condition: WaitCondition) -> Result<i32, Error> {
        let rec = self.get(key)?;
        let live = self
            .live(&rec.id)
            .ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        match condition {
            WaitCondition::Removed => {
                let mut rx = live.removed.subscribe();
                let code = rx.wait_for(|r| r.is_some()).await.map(|r| r.unwrap_or(0));
                Ok(code.unwrap_or(rec.state.exit_code))
            }
            WaitCondition::NotRunning | WaitCondition::NextExit => {
                let mut rx = live.exits.subscribe();
                let (before, code) = *rx.borrow();
                if condition == WaitCondition::NotRunning
                    && self.get(&rec.id)?.state.status != Status::Running
                {
                    return Ok(code);
                }
                let mut removed = live.removed.subscribe();
                tokio::select! {
                    r = rx.wait_for(|(n, _)| *n > before) => Ok(r.map(|v| v.1).unwrap_or(code)),
                    r = removed.wait_for(|r| r.is_some()) => Ok(r.map(|v| v.unwrap_or(code)).unwrap_or(code)),
                }
            }
        }
    }

    /// Attaches to the container's streams. Output starts from now.
    pub fn attach(
        &self,
        key: &str,
        stdin: bool,
    ) -> Result<(ContainerRecord, AttachStreams), Error> {
        let rec = self.get(key)?;
        let live = self
            .live(&rec.id)
            .ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        let p = &rec.spec.process;
        let streams = AttachStreams {
            output: Follower::from_now(
                live.output.subscribe(),
                self.inner.state.log_path(&rec.id),
                live.cursor.clone(),
            ),
            tty: p.tty,
            stdin: (stdin && p.open_stdin).then(|| live.stdin_tx.clone()),
            stdin_once: p.stdin_once,
        };
        Ok((rec, streams))
    }

    /// Follows the container's output from now on, for `logs --follow` (which reads the file
    /// first and then says where it stopped with [`Follower::start_at`]).
    pub fn follow(&self, key: &str) -> Result<Follower, Error> {
        let rec = self.get(key)?;
        let live = self
            .live(&rec.id)
            .ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        Ok(Follower::from_now(
            live.output.subscribe(),
            self.inner.state.log_path(&rec.id),
            live.cursor.clone(),
        ))
    }

    /// The container's log file (its current segment).
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.inner.state.log_path(id)
    }

    /// Opens the segments of the container's log for reading: a view that rotation
    /// meanwhile does not disturb.
    pub fn open_log(&self, id: &str) -> Result<LogSet, Error> {
        LogSet::open(&self.inner.state.log_path(id)).map_err(io_err("opening the container log"))
    }

    /// Resizes the container's terminal.
    pub fn resize(&self, key: &str, rows: u16, cols: u16) -> Result<(), Error> {
        let rec = self.get(key)?;
        let live = self
            .live(&rec.id)
            .ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        match live.control().and_then(|c| c.resize(rows, cols)) {
            Ok(()) => Ok(()),
            Err(Undelivered::NotRunning) => Err(Error::NotRunning(rec.id)),
            Err(Undelivered::NotReading) => Err(Error::NotReading(rec.id)),
        }
    }
}

impl Containers {
    /// The running container's processes, as its guest lists them (`docker top`).
    pub async fn top(&self, key: &str) -> Result<crate::guest::session::Processes, Error> {
        let rec = self.get(key)?;
        let live = self
            .live(&rec.id)
            .ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        if rec.state.status != Status::Running {
            return Err(Error::NotRunning(rec.id));
        }
        self.refuse_paused(&rec, "top")?;
        let control = live
            .control()
            .map_err(|_| Error::NotRunning(rec.id.clone()))?;
        control.processes().await.map_err(Error::Start)
    }
}
