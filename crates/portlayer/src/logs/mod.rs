//! Container logs, kept on the host so `docker logs` works after the VM is gone, and bounded
//! on disk like Docker's json-file driver (`max-size`, `max-file`).
//!
//! A log is a run of files, *segments*; the newest is written, the older ones are kept as
//! they were rotated, at most [`LogBounds::max_file`] in all:
//!
//! ```text
//!   <dir>/container.log      the segment being written
//!   <dir>/container.log.1    the one before it, … up to container.log.<max-file − 1>
//! ```
//!
//! A segment is a sequence of records, one a line of output as it arrived (a line the guest
//! sent in pieces is a record a piece):
//!
//! ```text
//!   stream u8 (1 stdout, 2 stderr; | 0x40 when it continues that stream's line) |
//!   time i64 ns since epoch, BE | length u32 BE | bytes
//! ```
//!
//! A record that continues a line carries the flag so that readers place, filter, count and
//! stamp the line by its first piece, as Docker does with whole lines: `--since`, `--until`
//! and `--tail` see lines, and `-t` stamps each once.
//!
//! and begins with a *segment header*, a record of stream 0x80 whose 16 bytes say where it
//! lies in the whole log: `base u64 BE | data u64 BE`. Offsets run on across segments: a
//! segment's `base` is the log offset of its first byte, where the segment before it ended,
//! so an offset names one byte of the log whatever rotation renamed since, and the base is
//! the segment's generation (readers order segments by it, not by their names). `data` is
//! the output the log held before the segment (the tether resumes output by that count after
//! an appliance restart). A file without a header, written before logs rotated, is base 0.
//!
//! A torn record at the end (the appliance died mid-write) is ignored by readers and cut off
//! by the next writer. Rotation (`writer.rs`) leaves, at any point a crash may stop it, files
//! whose bases readers can order; the next writer finishes what the crash left.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
#[cfg(test)]
use std::path::Path;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

mod segments;
#[cfg(test)]
mod tests;
mod writer;

pub use segments::{Chunk, LogSet, Segment};
pub use writer::LogWriter;

const HEADER: usize = 13;
/// The stream byte of a segment header.
const SEGMENT: u8 = 0x80;
/// Set in a record's stream byte when it continues the line of that stream's record before.
const CONTINUES: u8 = 0x40;
/// A segment header's payload: base and data, two u64.
const SEGMENT_PAYLOAD: usize = 16;
/// The bytes a segment header takes.
pub const SEGMENT_HEADER_LEN: u64 = (HEADER + SEGMENT_PAYLOAD) as u64;

/// The default `max-size` (bytes; Docker's `20m`) and `max-file` of a container's log when the
/// user sets none: the defaults of Docker's own bounded driver, `local`. A container's log
/// takes at most 100 MB of the VCH's disk and keeps at least the last 80 MB of output.
pub const DEFAULT_MAX_SIZE: u64 = 20_000_000;
pub const DEFAULT_MAX_FILE: u32 = 5;

/// How much of a container's output is kept on disk: segments of at most `max_size` bytes
/// (a single record longer than that gets a segment of its own), `max_file` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogBounds {
    /// `None`: unlimited, one file that grows (`max-size=-1`).
    pub max_size: Option<u64>,
    /// At least 1; without a `max_size` it has no effect.
    pub max_file: u32,
}

impl Default for LogBounds {
    fn default() -> Self {
        LogBounds {
            max_size: Some(DEFAULT_MAX_SIZE),
            max_file: DEFAULT_MAX_FILE,
        }
    }
}

impl LogBounds {
    /// No bound: one file that grows.
    pub const UNLIMITED: LogBounds = LogBounds {
        max_size: None,
        max_file: 1,
    };

    /// What a container without a log (`--log-driver none`) keeps of its output: the last
    /// megabyte or two, which its attached clients read as it comes.
    pub const PASS_THROUGH: LogBounds = LogBounds {
        max_size: Some(1 << 20),
        max_file: 2,
    };
}

/// Which output stream an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout = 1,
    Stderr = 2,
}

/// One line of output, or a piece of one as it arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub stream: LogStream,
    pub time: DateTime<Utc>,
    pub data: Bytes,
    /// The entry goes on with the line of the stream's entry before it (which did not end
    /// with a newline).
    pub continues: bool,
}

impl LogEntry {
    /// An entry that starts a line, written now.
    pub fn now(stream: LogStream, data: Bytes) -> LogEntry {
        LogEntry {
            stream,
            time: Utc::now(),
            data,
            continues: false,
        }
    }
}

/// Decides, for the entries of one read of a log in order, which are wanted, a line at a
/// time: an entry that continues a line goes with the line's first piece, whose stream and
/// time `want` judges.
pub struct LineFilter<F> {
    want: F,
    /// Per stream: whether its current line is wanted (`None`: its start was not seen).
    line: [Option<bool>; 2],
}

impl<F: FnMut(LogStream, DateTime<Utc>) -> bool> LineFilter<F> {
    /// A filter for a read from the log's start: a line whose start was rotated away is
    /// judged by its first piece still kept.
    pub fn new(want: F) -> Self {
        LineFilter {
            want,
            line: [None; 2],
        }
    }

    /// A filter for a read from a line's start (`--tail`): pieces of lines begun earlier are
    /// not wanted.
    pub fn from_line_start(want: F) -> Self {
        LineFilter {
            want,
            line: [Some(false); 2],
        }
    }

    /// Whether the entry (its stream, whether it continues a line, its time) is wanted.
    pub fn wants(&mut self, stream: LogStream, continues: bool, time: DateTime<Utc>) -> bool {
        let line = &mut self.line[stream as usize - 1];
        match *line {
            Some(wanted) if continues => wanted,
            _ => {
                let wanted = (self.want)(stream, time);
                *line = Some(wanted);
                wanted
            }
        }
    }
}

/// A record's stream byte: which stream, whether it continues a line; `None` for a segment
/// header, `Err` for a byte no writer writes.
fn stream_byte(b: u8) -> Result<Option<(LogStream, bool)>, ()> {
    let continues = b & CONTINUES != 0;
    match b & !CONTINUES {
        1 => Ok(Some((LogStream::Stdout, continues))),
        2 => Ok(Some((LogStream::Stderr, continues))),
        SEGMENT if !continues => Ok(None),
        _ => Err(()),
    }
}

fn split_lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split_inclusive(|b| *b == b'\n')
}

/// The bytes an entry takes in the file.
pub fn record_len(e: &LogEntry) -> u64 {
    (HEADER + e.data.len()) as u64
}

/// Appends the record of one line (or piece of one) to `buf`.
fn encode_record(buf: &mut Vec<u8>, stream: LogStream, continues: bool, nanos: i64, line: &[u8]) {
    buf.push(stream as u8 | if continues { CONTINUES } else { 0 });
    buf.extend_from_slice(&nanos.to_be_bytes());
    buf.extend_from_slice(&(line.len() as u32).to_be_bytes());
    buf.extend_from_slice(line);
}

/// The header record of a segment that starts at log offset `base` after `data` bytes of
/// output.
fn encode_segment_header(base: u64, data: u64) -> Vec<u8> {
    let mut buf = Vec::with_capacity(SEGMENT_HEADER_LEN as usize);
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or(0);
    buf.push(SEGMENT);
    buf.extend_from_slice(&nanos.to_be_bytes());
    buf.extend_from_slice(&(SEGMENT_PAYLOAD as u32).to_be_bytes());
    buf.extend_from_slice(&base.to_be_bytes());
    buf.extend_from_slice(&data.to_be_bytes());
    buf
}

/// What the start of a file says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    /// A segment: its base and the output before it.
    Segment { base: u64, data: u64 },
    /// Records without a header: a log written before rotation, base 0.
    Legacy,
    /// Empty, or a header cut short: nothing a reader can place.
    Unplaced,
}

/// Reads what the start of `file` says it is.
fn file_kind(file: &File) -> io::Result<FileKind> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; SEGMENT_HEADER_LEN as usize];
    let mut got = 0;
    while got < head.len() {
        match file.read_at(&mut head[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[at..at + 8]);
        u64::from_be_bytes(b)
    };
    Ok(match head.first() {
        Some(&SEGMENT) if got == head.len() && head[9..13] == [0, 0, 0, 16] => FileKind::Segment {
            base: u64_at(HEADER),
            data: u64_at(HEADER + 8),
        },
        Some(&b) if got > 0 && matches!(stream_byte(b), Ok(Some(_))) => FileKind::Legacy,
        _ => FileKind::Unplaced,
    })
}

/// A record's header and where the record lies in its file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordHeader {
    pub stream: LogStream,
    /// The record continues the stream's line before it.
    pub continues: bool,
    pub time: DateTime<Utc>,
    pub start: u64,
    pub end: u64,
}

/// Walks the complete records of one open file from offset `from` (a record boundary),
/// reading their headers only, and calls `f` on each output record (segment headers are
/// passed over); returns the offset just past the last complete record. Memory does not
/// grow with the file: the data is skipped over.
fn scan_file(file: &File, from: u64, mut f: impl FnMut(RecordHeader)) -> io::Result<u64> {
    use std::io::BufReader;
    let len = file.metadata()?.len();
    let mut r = BufReader::with_capacity(64 * 1024, file);
    r.seek(SeekFrom::Start(from))?;
    let mut pos = from;
    let mut header = [0u8; HEADER];
    while len.saturating_sub(pos) >= HEADER as u64 {
        r.read_exact(&mut header)?;
        let Ok(stream) = stream_byte(header[0]) else {
            break;
        };
        let nanos = i64::from_be_bytes(header[1..9].try_into().unwrap_or_default());
        let data = u64::from(u32::from_be_bytes(
            header[9..13].try_into().unwrap_or_default(),
        ));
        let end = pos + HEADER as u64 + data;
        if end > len {
            break;
        }
        if let Some((stream, continues)) = stream {
            f(RecordHeader {
                stream,
                continues,
                time: Utc.timestamp_nanos(nanos),
                start: pos,
                end,
            });
        }
        r.seek_relative(data as i64)?;
        pos = end;
    }
    Ok(pos)
}

/// Reads the bytes of `file` between `from` and `to` (fewer at its end).
fn read_at_most(file: &File, from: u64, to: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut raw = vec![0u8; to.saturating_sub(from) as usize];
    let mut got = 0;
    while got < raw.len() {
        match file.read_at(&mut raw[got..], from + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    raw.truncate(got);
    Ok(raw)
}

/// The complete output records of `raw` (segment headers passed over), each with the offset
/// just after it, and where the complete records end.
fn parse(raw: &[u8]) -> (Vec<(LogEntry, u64)>, u64) {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    while raw.len() - pos >= HEADER {
        let Ok(stream) = stream_byte(raw[pos]) else {
            break;
        };
        let mut nanos = [0u8; 8];
        nanos.copy_from_slice(&raw[pos + 1..pos + 9]);
        let mut len = [0u8; 4];
        len.copy_from_slice(&raw[pos + 9..pos + 13]);
        let len = u32::from_be_bytes(len) as usize;
        if raw.len() - pos - HEADER < len {
            break;
        }
        let start = pos + HEADER;
        pos = start + len;
        if let Some((stream, continues)) = stream {
            let data = Bytes::copy_from_slice(&raw[start..pos]);
            let time = Utc.timestamp_nanos(i64::from_be_bytes(nanos));
            let entry = LogEntry {
                stream,
                time,
                data,
                continues,
            };
            entries.push((entry, pos as u64));
        }
    }
    (entries, pos as u64)
}

/// Every complete entry of the log whose current segment is `path`, oldest first, and the
/// log offset just past the last one. Reads the whole log into memory: for tests.
#[cfg(test)]
pub fn read_all(path: &Path) -> io::Result<(Vec<LogEntry>, u64)> {
    let set = LogSet::open(path)?;
    let end = set.scan(set.start(), |_| {})?;
    let mut out = Vec::new();
    let mut pos = set.start();
    while pos < end {
        let chunk = set.read_range(pos, end)?;
        if chunk.next <= pos {
            break;
        }
        out.extend(chunk.entries.into_iter().map(|(e, _)| e));
        pos = chunk.next;
    }
    Ok((out, end))
}
