//! Container logs, kept on the host so `docker logs` works after the VM is gone.
//!
//! The file is a sequence of records, one a line of output (a final partial line is a record
//! of its own):
//!
//! ```text
//!   stream u8 (1 stdout, 2 stderr) | time i64 ns since epoch, BE | length u32 BE | bytes
//! ```
//!
//! A torn record at the end (the appliance died mid-write) is ignored by readers and cut off
//! by the next writer.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};

const HEADER: usize = 13;

/// Which output stream an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout = 1,
    Stderr = 2,
}

/// One line (or trailing partial line) of output.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub stream: LogStream,
    pub time: DateTime<Utc>,
    pub data: Bytes,
}

/// Appends entries to a container's log file.
pub struct LogWriter {
    file: File,
    offset: u64,
    /// Bytes of output the log holds (what the entries carry, without their headers).
    data: u64,
}

impl LogWriter {
    /// Opens (creating) the log, cutting off a torn final record. Only the records' headers
    /// are read, whatever the log's size.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        let mut data = 0;
        let valid_end = scan(&file, 0, |h| data += h.end - h.start - HEADER as u64)?;
        file.set_len(valid_end)?;
        let mut file = file;
        file.seek(SeekFrom::End(0))?;
        Ok(LogWriter {
            file,
            offset: valid_end,
            data,
        })
    }

    /// Writes `data` as one entry a line; returns the entries written, each with the file
    /// offset just after it.
    pub fn append(&mut self, stream: LogStream, data: &[u8]) -> io::Result<Vec<(LogEntry, u64)>> {
        let time = Utc::now();
        let mut buf = Vec::with_capacity(data.len() + HEADER * 2);
        let mut entries = Vec::new();
        let mut end = self.offset;
        for line in split_lines(data) {
            let nanos = time.timestamp_nanos_opt().unwrap_or(0);
            buf.push(stream as u8);
            buf.extend_from_slice(&nanos.to_be_bytes());
            buf.extend_from_slice(&(line.len() as u32).to_be_bytes());
            buf.extend_from_slice(line);
            end += (HEADER + line.len()) as u64;
            entries.push((
                LogEntry {
                    stream,
                    time,
                    data: Bytes::copy_from_slice(line),
                },
                end,
            ));
        }
        self.file.write_all(&buf)?;
        self.offset += buf.len() as u64;
        self.data += data.len() as u64;
        Ok(entries)
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes of output stored, over every run of the container.
    pub fn data_bytes(&self) -> u64 {
        self.data
    }
}

fn split_lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split_inclusive(|b| *b == b'\n')
}

/// The bytes an entry takes in the file.
pub fn record_len(e: &LogEntry) -> u64 {
    (HEADER + e.data.len()) as u64
}

/// A record's header and where the record lies in the file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordHeader {
    pub stream: LogStream,
    pub time: DateTime<Utc>,
    pub start: u64,
    pub end: u64,
}

/// Walks the complete records of the open log `file` from offset `from` (a record boundary),
/// reading their headers only, and calls `f` on each; returns the offset just past the last
/// complete one. Memory does not grow with the log: the data is skipped over.
pub fn scan(file: &File, from: u64, mut f: impl FnMut(RecordHeader)) -> io::Result<u64> {
    use std::io::BufReader;
    let len = file.metadata()?.len();
    let mut r = BufReader::with_capacity(64 * 1024, file);
    r.seek(SeekFrom::Start(from))?;
    let mut pos = from;
    let mut header = [0u8; HEADER];
    while len.saturating_sub(pos) >= HEADER as u64 {
        r.read_exact(&mut header)?;
        let stream = match header[0] {
            1 => LogStream::Stdout,
            2 => LogStream::Stderr,
            _ => break,
        };
        let nanos = i64::from_be_bytes(header[1..9].try_into().unwrap_or_default());
        let data = u64::from(u32::from_be_bytes(
            header[9..13].try_into().unwrap_or_default(),
        ));
        let end = pos + HEADER as u64 + data;
        if end > len {
            break;
        }
        f(RecordHeader {
            stream,
            time: Utc.timestamp_nanos(nanos),
            start: pos,
            end,
        });
        r.seek_relative(data as i64)?;
        pos = end;
    }
    Ok(pos)
}

/// Reads every complete entry; returns them and the offset just past the last one. Reads the
/// whole log into memory: for tests.
#[cfg(test)]
pub fn read_all(path: &Path) -> io::Result<(Vec<LogEntry>, u64)> {
    let mut raw = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut raw)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    }
    let (entries, end) = parse(&raw);
    Ok((entries.into_iter().map(|(e, _)| e).collect(), end))
}

/// Reads the complete entries of the open log `file` between offsets `from` (an entry
/// boundary) and `to`, each with the offset just after it. Reading through a descriptor
/// opened earlier works after the file is removed (a follower of an `--rm` container).
pub fn read_range(file: &File, from: u64, to: u64) -> io::Result<Vec<(LogEntry, u64)>> {
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
    let (entries, _) = parse(&raw);
    Ok(entries
        .into_iter()
        .map(|(e, end)| (e, from + end))
        .collect())
}

/// Opens the log at `path` for reading, creating it empty if no run has written it yet (the
/// writer opens the same file later, so a reader holding this sees what it writes).
pub fn open_for_reading(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
}

/// The complete entries of `raw`, each with the offset just after it, and where they end.
fn parse(raw: &[u8]) -> (Vec<(LogEntry, u64)>, u64) {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    while raw.len() - pos >= HEADER {
        let stream = match raw[pos] {
            1 => LogStream::Stdout,
            2 => LogStream::Stderr,
            _ => break,
        };
        let mut nanos = [0u8; 8];
        nanos.copy_from_slice(&raw[pos + 1..pos + 9]);
        let mut len = [0u8; 4];
        len.copy_from_slice(&raw[pos + 9..pos + 13]);
        let len = u32::from_be_bytes(len) as usize;
        if raw.len() - pos - HEADER < len {
            break;
        }
        let data = Bytes::copy_from_slice(&raw[pos + HEADER..pos + HEADER + len]);
        let time = Utc.timestamp_nanos(i64::from_be_bytes(nanos));
        pos += HEADER + len;
        entries.push((LogEntry { stream, time, data }, pos as u64));
    }
    (entries, pos as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_entries_and_torn_tails_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut w = LogWriter::open(&path).unwrap();
        let entries = w.append(LogStream::Stdout, b"one\ntwo\nthr").unwrap();
        assert_eq!(entries.len(), 3);
        let ends: Vec<u64> = entries.iter().map(|(_, end)| *end).collect();
        assert_eq!(ends, vec![17, 34, 50], "each entry's own end offset");
        let end = ends[2];
        w.append(LogStream::Stderr, b"err\n").unwrap();
        drop(w);
        // A torn record: header says 100 bytes, only 2 follow.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100, b'x', b'y'])
            .unwrap();
        drop(f);
        let (all, valid) = read_all(&path).unwrap();
        let texts: Vec<_> = all.iter().map(|e| (e.stream, e.data.clone())).collect();
        assert_eq!(
            texts,
            vec![
                (LogStream::Stdout, Bytes::from_static(b"one\n")),
                (LogStream::Stdout, Bytes::from_static(b"two\n")),
                (LogStream::Stdout, Bytes::from_static(b"thr")),
                (LogStream::Stderr, Bytes::from_static(b"err\n")),
            ]
        );
        assert!(valid > end);
        let mut heads = Vec::new();
        let scanned = scan(&File::open(&path).unwrap(), 0, |h| heads.push(h)).unwrap();
        assert_eq!(scanned, valid, "the scan stops at the torn record too");
        let spans: Vec<(LogStream, u64, u64)> =
            heads.iter().map(|h| (h.stream, h.start, h.end)).collect();
        assert_eq!(
            spans,
            vec![
                (LogStream::Stdout, 0, 17),
                (LogStream::Stdout, 17, 34),
                (LogStream::Stdout, 34, 50),
                (LogStream::Stderr, 50, 67),
            ]
        );
        assert_eq!(heads[0].time, all[0].time);
        let mut w = LogWriter::open(&path).unwrap();
        assert_eq!(w.data_bytes(), 15, "counted from the headers");
        assert_eq!(w.offset(), valid);
        w.append(LogStream::Stdout, b"after\n").unwrap();
        assert_eq!(read_all(&path).unwrap().0.len(), 5);
        // A range between two entry boundaries reads exactly the entries inside it.
        let middle = read_range(&File::open(&path).unwrap(), 17, 50).unwrap();
        let got: Vec<_> = middle
            .iter()
            .map(|(e, end)| (e.data.clone(), *end))
            .collect();
        assert_eq!(
            got,
            vec![
                (Bytes::from_static(b"two\n"), 34),
                (Bytes::from_static(b"thr"), 50)
            ]
        );
    }
}
