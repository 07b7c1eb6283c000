//! [`LogWriter`]: appends to a container's log and rotates it within its [`LogBounds`].
//!
//! Rotation happens when the next record would take the current segment past `max_size`
//! (with `max_file` = N):
//!
//! ```text
//!   1. container.log.<N-1> is deleted, then .k is renamed .k+1 (k = N-2 … 1)
//!   2. the next segment is written as container.log.new: its header only
//!   3. container.log is renamed container.log.1          (N = 1: nothing is kept)
//!   4. container.log.new is renamed container.log         (replacing it when N = 1)
//! ```
//!
//! The oldest goes first, so the files never exceed N whatever step a crash stops at. A
//! crash leaves a gap in the names (readers order segments by their bases, not names), a
//! `.new` (removed by the next writer), or no `container.log` (the next writer starts one
//! where the newest segment ends: the base it would have had). Names only ever move to
//! older ones, and readers open names newest first. A crash mid-append leaves a torn record,
//! which the next writer cuts off before it writes.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;

use super::segments::{open_segment, segment_indexes, segment_path, staging_path, Segment};
use super::{
    encode_record, encode_segment_header, scan_file, split_lines, LogBounds, LogEntry, LogStream,
    HEADER, SEGMENT_HEADER_LEN,
};

/// Appends entries to a container's log, rotating it within its bounds.
pub struct LogWriter {
    /// The current segment's path, `…/container.log`.
    path: PathBuf,
    bounds: LogBounds,
    /// The kept segments, oldest first, each with the index of its name (0: the current
    /// one, always last).
    segments: Vec<(u32, Segment)>,
    /// Bytes of the current segment written (its valid length).
    len: u64,
    /// Bytes at the start of the current segment that are not output (its header).
    head: u64,
    /// Bytes of output the log has held, over its whole life (what the entries carry,
    /// without their headers; rotated-away output included).
    data: u64,
    rotations: u64,
    /// Per stream (stdout, stderr): its last record did not end a line, so its next one
    /// continues it. A writer starts with whole lines: after an appliance restart, a line the
    /// guest was in the middle of shows as two.
    open_line: [bool; 2],
    /// Tests stop a rotation after this many file operations, as a crash would.
    #[cfg(test)]
    pub(super) crash_after: Option<usize>,
}

impl LogWriter {
    /// Opens (creating) the log whose current segment is `path`, finishing what a crash left:
    /// a torn final record is cut off, a staged segment removed, a missing current segment
    /// started where the newest one ends, names beyond the bounds deleted. Only the records'
    /// headers are read, whatever the log's size.
    pub fn open(path: &Path, bounds: LogBounds) -> io::Result<Self> {
        remove_if_present(&staging_path(path))?;
        let mut kept = Vec::new();
        let mut current = None;
        for index in segment_indexes(path)? {
            let beyond = bounds.max_size.is_some() && index >= bounds.max_file.max(1);
            if index > 0 && beyond {
                remove_if_present(&segment_path(path, index))?;
                continue;
            }
            match open_segment(path, index, index == 0)? {
                Some(seg) if index == 0 => current = Some(seg),
                Some(seg) => kept.push((index, seg)),
                None => {}
            }
        }
        kept.sort_by_key(|(_, s)| s.base);
        let current = match current {
            Some(c) => c,
            None => {
                let (base, data) = match kept.last() {
                    Some((_, newest)) => end_of(newest)?,
                    None => (0, 0),
                };
                stage(path, base, data)?;
                fs::rename(staging_path(path), path)?;
                open_segment(path, 0, true)?.ok_or_else(|| {
                    io::Error::other("the log's new segment has no readable header")
                })?
            }
        };
        let mut data = 0;
        let len = scan_file(&current.file, 0, |h| {
            data += h.end - h.start - HEADER as u64
        })?;
        current.file.set_len(len)?;
        let head = if current.base == 0 && current.data_before == 0 && len > 0 {
            header_len(&current)?
        } else {
            SEGMENT_HEADER_LEN
        };
        let data = current.data_before + data;
        kept.push((0, current));
        Ok(LogWriter {
            path: path.to_path_buf(),
            bounds,
            segments: kept,
            len,
            head,
            data,
            rotations: 0,
            open_line: [false; 2],
            #[cfg(test)]
            crash_after: None,
        })
    }

    fn current(&self) -> &Segment {
        // `open` always ends the list with the current segment.
        &self.segments[self.segments.len() - 1].1
    }

    /// Writes `data` as one entry a line; returns the entries written, each with the log
    /// offset just after it. Rotates first whenever the next record would take the current
    /// segment past `max_size`.
    pub fn append(&mut self, stream: LogStream, data: &[u8]) -> io::Result<Vec<(LogEntry, u64)>> {
        let time = Utc::now();
        let nanos = time.timestamp_nanos_opt().unwrap_or(0);
        let mut buf = Vec::with_capacity(data.len() + HEADER * 2);
        let mut pending = 0u64;
        let mut entries = Vec::new();
        let open = &mut self.open_line[stream as usize - 1];
        let mut continues = std::mem::replace(open, data.last().is_some_and(|b| *b != b'\n'));
        if data.is_empty() {
            *open = continues;
        }
        for line in split_lines(data) {
            if self.must_rotate(buf.len() as u64, (HEADER + line.len()) as u64) {
                self.flush(&mut buf, &mut pending)?;
                if let Err(e) = self.rotate() {
                    tracing::warn!(log = %self.path.display(), "rotating the log: {e}");
                }
            }
            encode_record(&mut buf, stream, continues, nanos, line);
            pending += line.len() as u64;
            let end = self.offset() + buf.len() as u64;
            let entry = LogEntry {
                stream,
                time,
                data: Bytes::copy_from_slice(line),
                continues,
            };
            entries.push((entry, end));
            continues = false;
        }
        self.flush(&mut buf, &mut pending)?;
        Ok(entries)
    }

    /// Whether a record of `rec` bytes, after `buffered` bytes not written yet, must go to a
    /// new segment: the current one holds output and would grow past `max_size`.
    fn must_rotate(&self, buffered: u64, rec: u64) -> bool {
        let used = self.len + buffered;
        self.bounds
            .max_size
            .is_some_and(|max| used > self.head && used + rec > max)
    }

    fn flush(&mut self, buf: &mut Vec<u8>, pending: &mut u64) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        self.current().file.write_all_at(buf, self.len)?;
        self.len += buf.len() as u64;
        self.data += *pending;
        buf.clear();
        *pending = 0;
        Ok(())
    }

    /// Starts a new segment (see the module's doc). On failure the writer is reopened from
    /// what is on disk, which is a state a crash could have left.
    fn rotate(&mut self) -> io::Result<()> {
        match self.rotate_files() {
            Ok(()) => Ok(()),
            Err(e) => {
                let (rotations, open_line) = (self.rotations + 1, self.open_line);
                *self = LogWriter::open(&self.path, self.bounds)?;
                self.rotations = rotations;
                self.open_line = open_line;
                Err(e)
            }
        }
    }

    fn rotate_files(&mut self) -> io::Result<()> {
        let n = self.bounds.max_file.max(1);
        let path = self.path.clone();
        let (base, data) = (self.offset(), self.data);
        let mut ops = 0;
        if n >= 2 {
            remove_if_present(&segment_path(&path, n - 1))?;
            self.crash_point(&mut ops)?;
            self.segments.retain(|(i, _)| *i != n - 1);
            for k in (1..n - 1).rev() {
                match fs::rename(segment_path(&path, k), segment_path(&path, k + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                self.crash_point(&mut ops)?;
            }
        }
        let staged = stage(&path, base, data)?;
        self.crash_point(&mut ops)?;
        if n >= 2 {
            fs::rename(&path, segment_path(&path, 1))?;
            self.crash_point(&mut ops)?;
        }
        fs::rename(staging_path(&path), &path)?;
        if n < 2 {
            self.segments.clear();
        }
        for (i, _) in self.segments.iter_mut() {
            *i += 1;
        }
        self.segments.push((
            0,
            Segment {
                base,
                data_before: data,
                file: Arc::new(staged),
            },
        ));
        self.len = SEGMENT_HEADER_LEN;
        self.head = SEGMENT_HEADER_LEN;
        self.rotations += 1;
        Ok(())
    }

    /// Where tests make a rotation stop as a crash would, after `crash_after` operations.
    #[cfg(test)]
    fn crash_point(&self, ops: &mut usize) -> io::Result<()> {
        *ops += 1;
        match self.crash_after {
            Some(n) if *ops >= n => Err(io::Error::other("crash (a test stopped here)")),
            _ => Ok(()),
        }
    }

    #[cfg(not(test))]
    fn crash_point(&self, _ops: &mut usize) -> io::Result<()> {
        Ok(())
    }

    /// Rotates as a crash after `ops` file operations leaves it: the writer is dropped
    /// without finishing, as a killed appliance would.
    #[cfg(test)]
    pub(super) fn crash_in_rotation(mut self, ops: usize) {
        self.crash_after = Some(ops);
        let _ = self.rotate_files();
    }

    /// The log offset just past the last record written.
    pub fn offset(&self) -> u64 {
        self.current().base + self.len
    }

    /// Bytes of output stored, over every run of the container (rotated-away output counts).
    pub fn data_bytes(&self) -> u64 {
        self.data
    }

    /// How many times this writer has rotated the log: readers of [`LogWriter::segments`]
    /// look again when it changes.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    /// The kept segments, oldest first.
    pub fn segments(&self) -> Vec<Segment> {
        self.segments.iter().map(|(_, s)| s.clone()).collect()
    }
}

/// Writes the header of a segment starting at log offset `base` after `data` bytes of
/// output to the staging file; returns it open for writing.
fn stage(path: &Path, base: u64, data: u64) -> io::Result<fs::File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(staging_path(path))?;
    file.write_all_at(&encode_segment_header(base, data), 0)?;
    Ok(file)
}

/// Where `seg` ends as a log offset, and the output the log held by then.
fn end_of(seg: &Segment) -> io::Result<(u64, u64)> {
    let mut data = 0;
    let end = scan_file(&seg.file, 0, |h| data += h.end - h.start - HEADER as u64)?;
    Ok((seg.base + end, seg.data_before + data))
}

/// The header bytes of a segment at base 0: none for a log written before rotation.
fn header_len(seg: &Segment) -> io::Result<u64> {
    let mut first = [0u8; 1];
    seg.file.read_exact_at(&mut first, 0)?;
    Ok(if first[0] == super::SEGMENT {
        SEGMENT_HEADER_LEN
    } else {
        0
    })
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
