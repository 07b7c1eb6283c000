//! Per-container runtime plumbing: output subscribers, exits, stdin, the control channel of a
//! running session, and the log sink sessions write to.

use std::path::Path;
use std::sync::{Arc, Mutex as StdMutex};

use tokio::sync::{broadcast, mpsc, oneshot, watch, Mutex};

use super::Output;
use crate::follow::LogCursor;
use crate::guest::session::{self, GuestControl, SessionSink, StdinMsg, Undelivered};
use crate::logs::{LogBounds, LogStream, LogWriter};

/// Per-container runtime plumbing; exists for every container, running or not.
pub(super) struct Live {
    pub(super) output: broadcast::Sender<Output>,
    /// (number of exits so far, last exit code)
    pub(super) exits: watch::Sender<(u64, i32)>,
    /// Some(exit code) once removed.
    pub(super) removed: watch::Sender<Option<i32>>,
    /// Stdin for the main process, bounded by [`session::STDIN_QUEUE`].
    pub(super) stdin_tx: mpsc::Sender<StdinMsg>,
    pub(super) stdin_rx: Arc<Mutex<mpsc::Receiver<StdinMsg>>>,
    /// The running session's signals and resizes.
    pub(super) control: StdMutex<Option<GuestControl>>,
    /// Serialises start, stop and remove of this container.
    pub(super) op: Arc<Mutex<()>>,
    /// Resolves when the last run's VM is off.
    pub(super) vm_off: Mutex<Option<oneshot::Receiver<String>>>,
    /// Where the log stands, for followers that fall behind.
    pub(super) cursor: Arc<LogCursor>,
    /// The current run's published ports; dropping them closes them.
    pub(super) ports: StdMutex<Option<crate::ports::Published>>,
    /// The delay before the last restart by the policy (see `restart.rs`).
    pub(super) restart_delay: StdMutex<Option<std::time::Duration>>,
}

/// Messages a container's live output channel holds for slow followers; with entries of at
/// most [`LIVE_INLINE_MAX`] bytes, it holds at most about 8 MiB of output. A follower that
/// falls further behind reads what it missed from the log file (see `follow.rs`).
const LIVE_CAPACITY: usize = 2048;

/// The largest entry carried in the channel itself; a longer one (a guest may send lines of
/// up to a frame, 1 MiB) is announced by its end offset and read from the log.
const LIVE_INLINE_MAX: usize = 4096;

impl Live {
    pub(super) fn new(exit_code: i32) -> Arc<Self> {
        let (output, _) = broadcast::channel(LIVE_CAPACITY);
        let (stdin_tx, stdin_rx) = mpsc::channel(session::STDIN_QUEUE);
        Arc::new(Live {
            output,
            exits: watch::channel((0, exit_code)).0,
            removed: watch::channel(None).0,
            stdin_tx,
            stdin_rx: Arc::new(Mutex::new(stdin_rx)),
            control: StdMutex::new(None),
            op: Arc::new(Mutex::new(())),
            vm_off: Mutex::new(None),
            cursor: Arc::default(),
            ports: StdMutex::new(None),
            restart_delay: StdMutex::new(None),
        })
    }

    /// The running session's control, or why there is none.
    pub(super) fn control(&self) -> Result<GuestControl, Undelivered> {
        let guard = self.control.lock().unwrap_or_else(|e| e.into_inner());
        guard.clone().ok_or(Undelivered::NotRunning)
    }

    /// Opens the container's log for a run (started now, or taken over), kept within
    /// `bounds`, and returns the sink its session writes to, with how many bytes of output
    /// the log already holds.
    pub(super) fn open_sink(
        &self,
        log: &Path,
        bounds: LogBounds,
        id: &str,
    ) -> std::io::Result<(LogSink, u64)> {
        let writer = LogWriter::open(log, bounds)?;
        let held = writer.data_bytes();
        let run = self.cursor.run_started(writer.offset(), writer.segments());
        let sink = LogSink {
            rotations: writer.rotations(),
            writer,
            output: self.output.clone(),
            cursor: self.cursor.clone(),
            id: id.to_string(),
            run,
        };
        Ok((sink, held))
    }

    pub(super) async fn wait_vm_off(&self) {
        let rx = self.vm_off.lock().await.take();
        if let Some(rx) = rx {
            let _ = tokio::time::timeout(session::POWER_OFF_GRACE * 2, rx).await;
        }
    }
}

/// Log sink of a running session: the file first, then the cursor, then live subscribers.
pub(super) struct LogSink {
    writer: LogWriter,
    output: broadcast::Sender<Output>,
    cursor: Arc<LogCursor>,
    id: String,
    /// The run's token with the cursor.
    run: u64,
    /// The writer's rotations the cursor knows of.
    rotations: u64,
}

impl Drop for LogSink {
    fn drop(&mut self) {
        self.cursor.run_ended(self.run);
    }
}

impl SessionSink for LogSink {
    fn output(&mut self, stream: LogStream, data: &[u8]) {
        let appended = self.writer.append(stream, data);
        // Followers learn of a new segment before any entry in it is announced.
        if self.writer.rotations() != self.rotations {
            self.rotations = self.writer.rotations();
            self.cursor.rotated(self.writer.segments());
        }
        match appended {
            Ok(entries) => {
                if let Some((_, end)) = entries.last() {
                    self.cursor.written(*end);
                }
                for (e, end) in entries {
                    let msg = if e.data.len() > LIVE_INLINE_MAX {
                        Output::Stored(end)
                    } else {
                        Output::Entry(e, end)
                    };
                    let _ = self.output.send(msg);
                }
            }
            Err(e) => tracing::error!(id = %self.id, "writing container log: {e}"),
        }
    }
}
