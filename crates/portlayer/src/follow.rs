//! Following a container's output without losing any of it (attach, `logs --follow`).
//!
//! Live entries come from a broadcast channel, which overwrites what a slow reader has not
//! taken yet. Every entry is written to the log file before it is broadcast and carries the
//! file offset just after it, so a follower that finds a gap between the last entry it gave
//! out and the next one it receives reads the gap from the file: a slow client sees all of
//! the output, late, and never slows the container down. Offsets are log offsets, which run
//! on across rotated segments (see `logs`); a follower so far behind that the gap was
//! rotated away skips it, with a warning (the log is bounded on disk).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast::{
    self,
    error::{RecvError, TryRecvError},
};

use crate::logs::{record_len, Chunk, LogEntry, LogSet, Segment};

/// What a live subscriber receives.
#[derive(Debug, Clone)]
pub enum Output {
    /// One log entry; `end` is the log file offset just after it.
    Entry(LogEntry, u64),
    /// Entries up to this log file offset are written; read them from the file. Sent for an
    /// entry too large to hold in the channel (see `LIVE_INLINE_MAX` in `manager/live.rs`).
    Stored(u64),
    /// The main process has ended: no more output from this run.
    Eof,
}

const UNKNOWN: u64 = u64::MAX;

/// The most of the log read back into memory at once to fill a gap: a follower far behind
/// catches up chunk by chunk (a chunk always holds a whole entry: a frame is at most 1 MiB).
const FILL_CHUNK: u64 = 4 << 20;

/// Where a container's log stands: the end of what has been written, where the current
/// run's output began, and the open segments followers read missed output from.
#[derive(Debug)]
pub struct LogCursor {
    end: AtomicU64,
    run_start: AtomicU64,
    files: Mutex<OpenFiles>,
}

/// The log's segments, kept open while a run writes them or anyone follows them (so that a
/// follower reads them after rotation deleted or `--rm` removed them), and closed otherwise
/// (an exited container holds no descriptors).
#[derive(Debug, Default)]
struct OpenFiles {
    segments: Vec<Segment>,
    /// The run whose writer is open, if one is.
    writer: Option<u64>,
    runs: u64,
    followers: usize,
}

impl Default for LogCursor {
    fn default() -> Self {
        LogCursor {
            end: AtomicU64::new(UNKNOWN),
            run_start: AtomicU64::new(0),
            files: Mutex::default(),
        }
    }
}

impl LogCursor {
    fn files(&self) -> std::sync::MutexGuard<'_, OpenFiles> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A run's log writer is open at `offset` with `segments`: its output starts there.
    /// Returns the run's token for [`LogCursor::run_ended`].
    pub(crate) fn run_started(&self, offset: u64, segments: Vec<Segment>) -> u64 {
        self.run_start.store(offset, Ordering::SeqCst);
        self.end.store(offset, Ordering::SeqCst);
        let mut files = self.files();
        files.runs += 1;
        files.writer = Some(files.runs);
        files.segments = segments;
        files.runs
    }

    /// The writer rotated: these are the segments now (said before any entry of the new
    /// segment is announced).
    pub(crate) fn rotated(&self, segments: Vec<Segment>) {
        self.files().segments = segments;
    }

    /// Run `run`'s writer is closed: the segments stay open only for followers.
    pub(crate) fn run_ended(&self, run: u64) {
        let mut files = self.files();
        if files.writer == Some(run) {
            files.writer = None;
            if files.followers == 0 {
                files.segments.clear();
            }
        }
    }

    /// A follower starts; with no writer open, the segments are opened from `path`.
    fn follower_joined(&self, path: &Path) {
        let mut files = self.files();
        files.followers += 1;
        if files.writer.is_none() && files.segments.is_empty() {
            match LogSet::open(path) {
                Ok(set) => files.segments = set.segments().to_vec(),
                Err(e) => tracing::warn!(path = %path.display(), "opening the log to follow: {e}"),
            }
        }
    }

    fn follower_left(&self) {
        let mut files = self.files();
        files.followers = files.followers.saturating_sub(1);
        if files.followers == 0 && files.writer.is_none() {
            files.segments.clear();
        }
    }

    /// Reads the log between offsets `from` and `to` from the open segments.
    fn read_range(&self, from: u64, to: u64) -> std::io::Result<Chunk> {
        let set = LogSet::from_segments(self.files().segments.clone());
        set.read_range(from, to)
    }

    /// Entries up to `end` are in the file (said before they are broadcast).
    pub(crate) fn written(&self, end: u64) {
        self.end.store(end, Ordering::SeqCst);
    }

    fn end(&self) -> Option<u64> {
        Some(self.end.load(Ordering::SeqCst)).filter(|e| *e != UNKNOWN)
    }
}

/// A reader of one container's output from some point on.
pub struct Follower {
    rx: broadcast::Receiver<Output>,
    path: PathBuf,
    /// The log's open segments, which stay open while this follower lives.
    cursor: Arc<LogCursor>,
    /// The log offset just after the last entry given out, once known.
    pos: Option<u64>,
    /// Entries read from the file to fill a gap, given out before `held`.
    pending: VecDeque<LogEntry>,
    /// A message taken from the channel and not acted on yet: the entry that revealed a gap,
    /// or the end.
    held: Option<Output>,
    /// A gap [`Follower::try_next`] found, for [`Follower::next`] to read from the file.
    gap: Option<(u64, u64)>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.cursor.follower_left();
    }
}

enum Step {
    Entry(LogEntry),
    Skip,
    Fill(u64, u64),
    End,
}

impl Follower {
    /// Follows from what is written now on (`rx` was subscribed before this call).
    pub(crate) fn from_now(
        rx: broadcast::Receiver<Output>,
        path: PathBuf,
        cursor: Arc<LogCursor>,
    ) -> Self {
        let pos = cursor.end();
        cursor.follower_joined(&path);
        Follower {
            rx,
            path,
            cursor,
            pos,
            pending: VecDeque::new(),
            held: None,
            gap: None,
        }
    }

    /// Follows from log offset `pos` on (an entry boundary, e.g. the end of what a reader of
    /// the log has already sent).
    pub fn start_at(&mut self, pos: u64) {
        self.pos = Some(pos);
    }

    /// The next entry, or None once the run's output has ended.
    pub async fn next(&mut self) -> Option<LogEntry> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if let Some((from, to)) = self.gap.take() {
                self.fill(from, to).await;
                continue;
            }
            let msg = match self.held.take() {
                Some(m) => Ok(m),
                None => self.rx.recv().await,
            };
            match self.step(msg) {
                Step::Entry(e) => return Some(e),
                Step::Skip => {}
                Step::Fill(from, to) => self.fill(from, to).await,
                Step::End => return None,
            }
        }
    }

    /// The next entry if one is ready without waiting or reading the file; None says only
    /// "not now" ([`Follower::next`] waits, fills gaps and tells the end).
    pub fn try_next(&mut self) -> Option<LogEntry> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.gap.is_some() || self.held.is_some() {
                return None;
            }
            let msg = match self.rx.try_recv() {
                Ok(m) => Ok(m),
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
            };
            match self.step(msg) {
                Step::Entry(e) => return Some(e),
                Step::Skip => {}
                Step::Fill(from, to) => {
                    self.gap = Some((from, to));
                    return None;
                }
                Step::End => {
                    self.held = Some(Output::Eof);
                    return None;
                }
            }
        }
    }

    /// What one message from the channel means for this follower.
    fn step(&mut self, msg: Result<Output, RecvError>) -> Step {
        match msg {
            Ok(Output::Entry(e, end)) => {
                let start = end - record_len(&e);
                match self.pos {
                    Some(p) if end <= p => Step::Skip,
                    Some(p) if start > p => {
                        self.held = Some(Output::Entry(e, end));
                        Step::Fill(p, start)
                    }
                    _ => {
                        self.pos = Some(end);
                        Step::Entry(e)
                    }
                }
            }
            Ok(Output::Stored(end)) => {
                let p = *self
                    .pos
                    .get_or_insert_with(|| self.cursor.run_start.load(Ordering::SeqCst));
                if end <= p {
                    Step::Skip
                } else {
                    Step::Fill(p, end)
                }
            }
            Ok(Output::Eof) | Err(RecvError::Closed) => Step::End,
            // The next entry shows how much was missed; where to fill from must be known.
            Err(RecvError::Lagged(_)) => {
                if self.pos.is_none() {
                    self.pos = Some(self.cursor.run_start.load(Ordering::SeqCst));
                }
                Step::Skip
            }
        }
    }

    /// Reads the entries between `from` and `to` from the log into `pending`, at most
    /// [`FILL_CHUNK`] bytes of them; the rest is left as the gap still to fill.
    async fn fill(&mut self, from: u64, to: u64) {
        let chunk_end = to.min(from.saturating_add(FILL_CHUNK));
        let cursor = self.cursor.clone();
        let read = tokio::task::spawn_blocking(move || cursor.read_range(from, chunk_end)).await;
        let mut next = from;
        match read {
            Ok(Ok(chunk)) => {
                if chunk.lost > 0 {
                    tracing::warn!(
                        path = %self.path.display(),
                        bytes = chunk.lost,
                        "a follower fell behind output the log has rotated away"
                    );
                }
                self.pending
                    .extend(chunk.entries.into_iter().map(|(e, _)| e));
                next = chunk.next;
            }
            Ok(Err(e)) => {
                tracing::warn!(path = %self.path.display(), "reading missed output: {e}")
            }
            Err(e) => tracing::warn!("reading missed output: {e}"),
        }
        let next = next.min(to);
        if next > from {
            self.pos = Some(next);
            if next < to {
                self.gap = Some((next, to));
            }
            return;
        }
        tracing::warn!(
            from,
            to,
            "output between these log offsets could not be read back"
        );
        self.pos = Some(to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{LogBounds, LogStream, LogWriter};

    /// Writes `lines` the way a session's log sink does: file, segments after a rotation,
    /// cursor, then broadcast.
    fn produce(
        w: &mut LogWriter,
        cursor: &LogCursor,
        tx: &broadcast::Sender<Output>,
        lines: std::ops::Range<u32>,
    ) {
        for i in lines {
            let rotations = w.rotations();
            let entries = w
                .append(LogStream::Stdout, format!("{i}\n").as_bytes())
                .unwrap();
            if w.rotations() != rotations {
                cursor.rotated(w.segments());
            }
            cursor.written(entries.last().unwrap().1);
            for (e, end) in entries {
                let _ = tx.send(Output::Entry(e, end));
            }
        }
    }

    /// Everything `f` gives out, taking what is ready in batches as attach does.
    async fn drain(f: &mut Follower) -> Vec<u32> {
        let num = |e: LogEntry| String::from_utf8_lossy(&e.data).trim().parse().unwrap();
        let mut got = Vec::new();
        while let Some(e) = f.next().await {
            got.push(num(e));
            while let Some(e) = f.try_next() {
                got.push(num(e));
            }
        }
        got
    }

    #[tokio::test]
    async fn a_follower_that_falls_behind_reads_the_gap_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut w = LogWriter::open(&path, LogBounds::UNLIMITED).unwrap();
        // An earlier run's output is not part of this one.
        w.append(LogStream::Stdout, b"old run\n").unwrap();
        let cursor = Arc::new(LogCursor::default());
        let (tx, _) = broadcast::channel(4);
        // Attached before the run starts (docker run), then far too slow for the channel.
        let mut before_start = Follower::from_now(tx.subscribe(), path.clone(), cursor.clone());
        cursor.run_started(w.offset(), w.segments());
        produce(&mut w, &cursor, &tx, 0..100);
        // Attached mid-run: sees what follows, all of it.
        let mut mid_run = Follower::from_now(tx.subscribe(), path.clone(), cursor.clone());
        produce(&mut w, &cursor, &tx, 100..1000);
        let _ = tx.send(Output::Eof);
        assert_eq!(
            drain(&mut before_start).await,
            (0..1000).collect::<Vec<_>>()
        );
        assert_eq!(drain(&mut mid_run).await, (100..1000).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_follower_starting_where_a_file_reader_stopped_repeats_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut w = LogWriter::open(&path, LogBounds::UNLIMITED).unwrap();
        let cursor = Arc::new(LogCursor::default());
        cursor.run_started(w.offset(), w.segments());
        let (tx, _) = broadcast::channel(4);
        produce(&mut w, &cursor, &tx, 0..10);
        let mut f = Follower::from_now(tx.subscribe(), path.clone(), cursor.clone());
        // Lines 0..10 were sent from the file by `logs`; the follower continues after them.
        let (_, file_end) = crate::logs::read_all(&path).unwrap();
        f.start_at(file_end);
        produce(&mut w, &cursor, &tx, 10..50);
        let _ = tx.send(Output::Eof);
        assert_eq!(drain(&mut f).await, (10..50).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn entries_announced_by_offset_and_gaps_past_a_chunk_are_read_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut w = LogWriter::open(&path, LogBounds::UNLIMITED).unwrap();
        let cursor = Arc::new(LogCursor::default());
        cursor.run_started(w.offset(), w.segments());
        let (tx, _) = broadcast::channel(4);
        let mut f = Follower::from_now(tx.subscribe(), path.clone(), cursor.clone());
        // A line too long for the channel: only its end offset is sent.
        let long = format!("{}\n", "7".repeat(100_000));
        let (_, end) = w
            .append(LogStream::Stdout, long.as_bytes())
            .unwrap()
            .pop()
            .unwrap();
        cursor.written(end);
        let _ = tx.send(Output::Stored(end));
        // Then more than FILL_CHUNK of short lines, far too fast for the channel.
        let lines = (FILL_CHUNK / 8 + 1000) as u32;
        produce(&mut w, &cursor, &tx, 8..lines);
        let _ = tx.send(Output::Eof);
        let first = f.next().await.unwrap();
        assert_eq!(first.data.len(), long.len(), "the long line, whole");
        assert_eq!(drain(&mut f).await, (8..lines).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_follower_reads_on_across_rotations_even_after_the_files_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let bounds = LogBounds {
            max_size: Some(300),
            max_file: 100,
        };
        let mut w = LogWriter::open(&path, bounds).unwrap();
        let cursor = Arc::new(LogCursor::default());
        let run = cursor.run_started(w.offset(), w.segments());
        let (tx, _) = broadcast::channel(4);
        let mut f = Follower::from_now(tx.subscribe(), path.clone(), cursor.clone());
        produce(&mut w, &cursor, &tx, 0..1000);
        assert!(w.segments().len() > 20, "{} segments", w.segments().len());
        let _ = tx.send(Output::Eof);
        drop(w);
        cursor.run_ended(run);
        // As `--rm` does once the process has ended, before the slow client is done.
        std::fs::remove_dir_all(dir.path()).unwrap();
        assert_eq!(drain(&mut f).await, (0..1000).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_follower_behind_what_was_rotated_away_gets_the_rest_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let bounds = LogBounds {
            max_size: Some(300),
            max_file: 3,
        };
        let mut w = LogWriter::open(&path, bounds).unwrap();
        let cursor = Arc::new(LogCursor::default());
        cursor.run_started(w.offset(), w.segments());
        let (tx, _) = broadcast::channel(4);
        let mut f = Follower::from_now(tx.subscribe(), path.clone(), cursor.clone());
        produce(&mut w, &cursor, &tx, 0..1000);
        let _ = tx.send(Output::Eof);
        let got = drain(&mut f).await;
        let first = got[0];
        assert!(first > 900, "only the kept segments remain: from {first}");
        assert_eq!(got, (first..1000).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_follower_of_a_log_no_run_writes_opens_it_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut w = LogWriter::open(&path, LogBounds::default()).unwrap();
        let end = w.append(LogStream::Stdout, b"7\n").unwrap()[0].1;
        drop(w);
        let cursor = Arc::new(LogCursor::default());
        let (tx, _) = broadcast::channel(4);
        let mut f = Follower::from_now(tx.subscribe(), path.clone(), cursor.clone());
        f.start_at(end - 15);
        let _ = tx.send(Output::Stored(end));
        let _ = tx.send(Output::Eof);
        assert_eq!(drain(&mut f).await, vec![7]);
        drop(f);
        assert!(
            cursor.files().segments.is_empty(),
            "closed with its last follower"
        );
    }
}
