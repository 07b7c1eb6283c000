//! Reading a log across its segments: [`LogSet`], the open segments of one log ordered by
//! their bases, read by log offset.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{file_kind, parse, read_at_most, scan_file, FileKind, LogEntry, RecordHeader};

/// One open segment of a log.
#[derive(Debug, Clone)]
pub struct Segment {
    /// The log offset of the segment's first byte.
    pub base: u64,
    /// Output bytes the log held before this segment.
    pub data_before: u64,
    pub file: Arc<File>,
}

/// The path of a log's segment `index`: 0 is the current one, `container.log`; older ones
/// are `container.log.1`, `.2`, ….
pub(super) fn segment_path(current: &Path, index: u32) -> PathBuf {
    match index {
        0 => current.to_path_buf(),
        n => {
            let mut s = current.as_os_str().to_os_string();
            s.push(format!(".{n}"));
            PathBuf::from(s)
        }
    }
}

/// Where a rotation writes the next segment before it takes the current one's name.
pub(super) fn staging_path(current: &Path) -> PathBuf {
    let mut s = current.as_os_str().to_os_string();
    s.push(".new");
    PathBuf::from(s)
}

/// The indexes of the segment files present next to `current` (0 for `current` itself),
/// newest name first.
pub(super) fn segment_indexes(current: &Path) -> io::Result<Vec<u32>> {
    let (Some(dir), Some(name)) = (current.parent(), current.file_name()) else {
        return Ok(Vec::new());
    };
    let name = name.to_string_lossy();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let file = entry?.file_name();
        let file = file.to_string_lossy();
        let Some(rest) = file.strip_prefix(name.as_ref()) else {
            continue;
        };
        if rest.is_empty() {
            out.push(0);
        } else if let Some(n) = rest.strip_prefix('.').and_then(|n| n.parse::<u32>().ok()) {
            if n > 0 && rest[1..] == n.to_string() {
                out.push(n);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Opens segment `index` of the log and reads where it lies; `None` when the file is gone or
/// cannot be placed (empty, or a header cut short).
pub(super) fn open_segment(current: &Path, index: u32, write: bool) -> io::Result<Option<Segment>> {
    let path = segment_path(current, index);
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (base, data_before) = match file_kind(&file)? {
        FileKind::Segment { base, data } => (base, data),
        FileKind::Legacy => (0, 0),
        FileKind::Unplaced => return Ok(None),
    };
    Ok(Some(Segment {
        base,
        data_before,
        file: Arc::new(file),
    }))
}

/// The first byte of the chunk [`LogSet::read_range`] read, what it holds and where the next
/// read goes on.
#[derive(Debug)]
pub struct Chunk {
    /// Complete entries, each with the log offset just after it.
    pub entries: Vec<(LogEntry, u64)>,
    /// Where reading goes on: past the last complete entry, or past a segment's end.
    pub next: u64,
    /// Bytes between the asked start and what could be read: output rotated away (or a
    /// segment's torn end).
    pub lost: u64,
}

/// The open segments of one log, oldest first: a consistent view that rotation does not
/// disturb (a segment deleted meanwhile stays readable through its open file).
#[derive(Debug, Clone, Default)]
pub struct LogSet {
    segments: Vec<Segment>,
}

impl LogSet {
    /// Opens every segment of the log whose current segment is `current`. Names are opened
    /// newest first, so that a rotation meanwhile (which moves files to older names) makes
    /// one file show up twice, not be missed; the bases sort them out.
    pub fn open(current: &Path) -> io::Result<LogSet> {
        let mut segments = Vec::new();
        for index in segment_indexes(current)? {
            if let Some(s) = open_segment(current, index, false)? {
                segments.push(s);
            }
        }
        Ok(LogSet::from_segments(segments))
    }

    /// A set of segments in any order; one a base.
    pub fn from_segments(mut segments: Vec<Segment>) -> LogSet {
        segments.sort_by_key(|s| s.base);
        segments.dedup_by_key(|s| s.base);
        LogSet { segments }
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The log offset of the oldest output still kept.
    pub fn start(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.base)
    }

    /// Where segment `i` ends: the next one's base (the last one ends with its file).
    fn end_of(&self, i: usize) -> u64 {
        self.segments.get(i + 1).map_or(u64::MAX, |s| s.base)
    }

    /// The index of the segment holding log offset `pos`, if any segment is at or before it.
    fn holding(&self, pos: u64) -> Option<usize> {
        self.segments.iter().rposition(|s| s.base <= pos)
    }

    /// Walks the headers of the complete records from log offset `from` (a record boundary)
    /// on, calling `f` on each with log offsets; returns the log offset past the last one.
    pub fn scan(&self, from: u64, mut f: impl FnMut(RecordHeader)) -> io::Result<u64> {
        let mut pos = from.max(self.start());
        for (i, seg) in self.segments.iter().enumerate() {
            let seg_end = self.end_of(i);
            if pos >= seg_end {
                continue;
            }
            let within = pos.saturating_sub(seg.base);
            let end = scan_file(&seg.file, within, |h| {
                f(RecordHeader {
                    start: seg.base + h.start,
                    end: seg.base + h.end,
                    ..h
                })
            })?;
            pos = seg.base + end;
            if i + 1 < self.segments.len() {
                pos = seg_end;
            }
        }
        Ok(pos)
    }

    /// Reads the complete entries between log offsets `from` (a record boundary) and `to`,
    /// within one segment: the caller goes on from [`Chunk::next`]. Output before the oldest
    /// segment (rotated away) is skipped and counted in [`Chunk::lost`].
    pub fn read_range(&self, from: u64, to: u64) -> io::Result<Chunk> {
        let start = from.max(self.start());
        let Some(i) = self.holding(start) else {
            return Ok(Chunk {
                entries: Vec::new(),
                next: from,
                lost: 0,
            });
        };
        let seg = &self.segments[i];
        let seg_end = self.end_of(i);
        let stop = to.min(seg_end);
        if start >= stop {
            return Ok(Chunk {
                entries: Vec::new(),
                next: start.max(from),
                lost: start - from,
            });
        }
        let raw = read_at_most(&seg.file, start - seg.base, stop - seg.base)?;
        let (entries, parsed) = parse(&raw);
        let mut next = start + parsed;
        let mut lost = start - from;
        // Nothing more can be read from a sealed segment: go on with the next one.
        let sealed = seg_end != u64::MAX;
        if sealed && parsed < stop - start && (stop == seg_end || parsed == 0) {
            lost += seg_end.min(to) - next;
            next = seg_end.min(to);
        }
        let entries = entries
            .into_iter()
            .map(|(e, end)| (e, start + end))
            .collect();
        Ok(Chunk {
            entries,
            next,
            lost,
        })
    }
}
