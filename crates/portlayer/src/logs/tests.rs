use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::segments::segment_path;
use super::*;

fn bounds(max_size: u64, max_file: u32) -> LogBounds {
    LogBounds {
        max_size: Some(max_size),
        max_file,
    }
}

/// Writes lines `lines` ("<i>\n", each its own append as a session's frames are).
fn write_lines(w: &mut LogWriter, lines: std::ops::Range<u32>) {
    for i in lines {
        w.append(LogStream::Stdout, format!("{i:06}\n").as_bytes())
            .unwrap();
    }
}

/// The numbers of the lines the log at `path` holds, in order.
fn numbers(path: &Path) -> Vec<u32> {
    read_all(path)
        .unwrap()
        .0
        .iter()
        .map(|e| String::from_utf8_lossy(&e.data).trim().parse().unwrap())
        .collect()
}

/// The log's files and their sizes, by name.
fn files(dir: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The lines `n - k .. n`: a suffix of 0..n.
fn is_suffix_ending_at(got: &[u32], n: u32) -> bool {
    !got.is_empty() && got.iter().copied().eq((n - got.len() as u32)..n)
}

fn log_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("container.log")
}

#[test]
fn lines_are_entries_and_torn_tails_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    let mut w = LogWriter::open(&path, LogBounds::UNLIMITED).unwrap();
    assert_eq!(
        w.offset(),
        SEGMENT_HEADER_LEN,
        "a new log starts with its header"
    );
    let entries = w.append(LogStream::Stdout, b"one\ntwo\nthr").unwrap();
    assert_eq!(entries.len(), 3);
    let ends: Vec<u64> = entries.iter().map(|(_, end)| *end - 29).collect();
    assert_eq!(ends, vec![17, 34, 50], "each entry's own end offset");
    let end = entries[2].1;
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
    let set = LogSet::open(&path).unwrap();
    let mut heads = Vec::new();
    let scanned = set.scan(0, |h| heads.push(h)).unwrap();
    assert_eq!(scanned, valid, "the scan stops at the torn record too");
    let spans: Vec<(LogStream, u64, u64)> = heads
        .iter()
        .map(|h| (h.stream, h.start - 29, h.end - 29))
        .collect();
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
    let mut w = LogWriter::open(&path, LogBounds::UNLIMITED).unwrap();
    assert_eq!(w.data_bytes(), 15, "counted from the headers");
    assert_eq!(w.offset(), valid);
    w.append(LogStream::Stdout, b"after\n").unwrap();
    assert_eq!(read_all(&path).unwrap().0.len(), 5);
    // A range between two entry boundaries reads exactly the entries inside it.
    let middle = LogSet::open(&path)
        .unwrap()
        .read_range(29 + 17, 29 + 50)
        .unwrap();
    let got: Vec<_> = middle
        .entries
        .iter()
        .map(|(e, end)| (e.data.clone(), *end - 29))
        .collect();
    assert_eq!(
        got,
        vec![
            (Bytes::from_static(b"two\n"), 34),
            (Bytes::from_static(b"thr"), 50)
        ]
    );
    assert_eq!((middle.next, middle.lost), (29 + 50, 0));
}

#[test]
fn rotation_keeps_max_file_segments_of_at_most_max_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    let mut w = LogWriter::open(&path, bounds(1000, 3)).unwrap();
    // 20-byte records: 48 fit after a segment's header; 2000 lines are ~40 segments' worth.
    write_lines(&mut w, 0..2000);
    let names: Vec<String> = files(dir.path()).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["container.log", "container.log.1", "container.log.2"],
        "max-file names and no more"
    );
    for (name, len) in files(dir.path()) {
        assert!(len <= 1000, "{name} is {len} bytes");
    }
    let got = numbers(&path);
    assert!(is_suffix_ending_at(&got, 2000), "{got:?}");
    assert!(
        got.len() >= 2 * 48,
        "two full segments at least: {}",
        got.len()
    );
    assert_eq!(w.data_bytes(), 2000 * 7, "rotated-away output still counts");
    // A new writer finds the same state and goes on.
    drop(w);
    let mut w = LogWriter::open(&path, bounds(1000, 3)).unwrap();
    assert_eq!(w.data_bytes(), 2000 * 7);
    write_lines(&mut w, 2000..2100);
    assert!(is_suffix_ending_at(&numbers(&path), 2100));
}

#[test]
fn one_file_is_replaced_and_a_record_larger_than_max_size_is_kept_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    let mut w = LogWriter::open(&path, bounds(100, 1)).unwrap();
    write_lines(&mut w, 0..10);
    assert_eq!(files(dir.path()).len(), 1);
    assert_eq!(
        numbers(&path),
        [9],
        "29 + 3 × 20 bytes fit in 100: 9 starts a fourth"
    );
    let long = vec![b'x'; 500];
    w.append(LogStream::Stderr, &long).unwrap();
    let (all, _) = read_all(&path).unwrap();
    assert_eq!(all.len(), 1, "alone in its segment");
    assert_eq!(all[0].data.len(), 500);
    write_lines(&mut w, 10..11);
    assert_eq!(numbers(&path), [10]);
}

#[test]
fn a_log_written_before_rotation_is_read_and_rotated_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    // Records without a segment header, as earlier versions wrote them.
    let mut raw = Vec::new();
    for i in 0..10u32 {
        encode_record(
            &mut raw,
            LogStream::Stdout,
            false,
            1,
            format!("{i:06}\n").as_bytes(),
        );
    }
    std::fs::write(&path, &raw).unwrap();
    assert_eq!(numbers(&path), (0..10).collect::<Vec<_>>());
    let mut w = LogWriter::open(&path, bounds(300, 2)).unwrap();
    assert_eq!(w.offset(), 200, "base 0, no header");
    assert_eq!(w.data_bytes(), 70);
    write_lines(&mut w, 10..16);
    assert_eq!(files(dir.path()).len(), 2, "the old file was rotated to .1");
    assert_eq!(numbers(&path), (0..16).collect::<Vec<_>>());
}

#[test]
fn reading_goes_across_segments_by_log_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    let mut w = LogWriter::open(&path, bounds(200, 10)).unwrap();
    let mut ends = Vec::new();
    for i in 0..30u32 {
        let (_, end) = w
            .append(LogStream::Stdout, format!("{i:06}\n").as_bytes())
            .unwrap()
            .pop()
            .unwrap();
        ends.push(end);
    }
    let set = LogSet::open(&path).unwrap();
    assert!(set.segments().len() > 3);
    // The headers' offsets are those the writer gave out, across every segment.
    let mut scanned = Vec::new();
    let end = set.scan(0, |h| scanned.push(h.end)).unwrap();
    assert_eq!(scanned, ends);
    assert_eq!(end, w.offset());
    // A read stops at a segment's end and says where the next one starts.
    let second = set.segments()[1].base;
    let chunk = set.read_range(ends[2], end).unwrap();
    assert_eq!(chunk.next, second);
    assert_eq!(chunk.entries.last().unwrap().1, second);
    let chunk = set.read_range(chunk.next, end).unwrap();
    assert_eq!(
        chunk.entries.first().unwrap().1,
        second + SEGMENT_HEADER_LEN + 20,
        "the header is passed over"
    );
    // A view opened earlier reads on while rotation deletes its files.
    let early = LogSet::open(&path).unwrap();
    write_lines(&mut w, 30..300);
    let chunk = early.read_range(early.start(), end).unwrap();
    assert!(!chunk.entries.is_empty());
    assert!(LogSet::open(&path).unwrap().start() > end);
    // Output rotated away is skipped and counted.
    let now = LogSet::open(&path).unwrap();
    let chunk = now.read_range(ends[0], now.start() + 100).unwrap();
    assert_eq!(chunk.lost, now.start() - ends[0]);
    assert_eq!(chunk.entries.len(), 3);
}

/// Every state a crash can leave a rotation in is readable (a suffix of the output, in
/// order), and the next writer finishes from it and goes on within the bounds.
#[test]
fn a_crash_at_any_point_of_a_rotation_leaves_a_readable_log() {
    for max_file in [1u32, 2, 4] {
        for ops in 1..=(max_file as usize + 3) {
            let dir = tempfile::tempdir().unwrap();
            let path = log_in(&dir);
            let b = bounds(300, max_file);
            let mut w = LogWriter::open(&path, b).unwrap();
            write_lines(&mut w, 0..50);
            w.crash_in_rotation(ops);
            let case = format!("max-file {max_file}, crash after {ops} operations");
            let got = numbers(&path);
            // One file and a finished rotation: the new, empty segment is the log.
            let emptied = max_file == 1 && got.is_empty();
            assert!(emptied || is_suffix_ending_at(&got, 50), "{case}: {got:?}");
            let mut w = LogWriter::open(&path, b).unwrap();
            assert_eq!(w.data_bytes(), 50 * 7, "{case}");
            let names = files(dir.path());
            assert!(
                names.iter().all(|(n, _)| !n.ends_with(".new")),
                "{case}: {names:?}"
            );
            write_lines(&mut w, 50..120);
            let got = numbers(&path);
            assert!(is_suffix_ending_at(&got, 120), "{case}: {got:?}");
            let names = files(dir.path());
            assert!(names.len() <= max_file as usize, "{case}: {names:?}");
            assert!(
                names.iter().all(|(_, len)| *len <= 300),
                "{case}: {names:?}"
            );
        }
    }
}

#[test]
fn leftovers_of_a_crash_are_cleaned_by_the_next_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    let mut w = LogWriter::open(&path, bounds(300, 3)).unwrap();
    write_lines(&mut w, 0..40);
    drop(w);
    // A staged segment cut short, an empty current file (as an earlier reader created it)
    // replaced by the rotation's, and a name beyond max-file.
    std::fs::write(super::segments::staging_path(&path), [SEGMENT, 0, 0]).unwrap();
    std::fs::copy(segment_path(&path, 2), segment_path(&path, 7)).unwrap();
    let got = numbers(&path);
    assert!(is_suffix_ending_at(&got, 40), "{got:?}");
    let mut w = LogWriter::open(&path, bounds(300, 3)).unwrap();
    write_lines(&mut w, 40..41);
    let names: Vec<String> = files(dir.path()).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["container.log", "container.log.1", "container.log.2"]
    );
    assert!(is_suffix_ending_at(&numbers(&path), 41));
}

#[test]
fn an_empty_log_file_left_by_an_earlier_reader_is_started_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    File::create(&path).unwrap();
    assert!(numbers(&path).is_empty());
    let mut w = LogWriter::open(&path, bounds(300, 3)).unwrap();
    write_lines(&mut w, 0..3);
    assert_eq!(numbers(&path), [0, 1, 2]);
}

#[test]
fn bounds_of_records_written_before_them_are_the_default() {
    let b: LogBounds = serde_json::from_str("{}").unwrap();
    assert_eq!(b, LogBounds::default());
    assert_eq!(b.max_size, Some(20_000_000));
    assert_eq!(b.max_file, 5);
    let unlimited = serde_json::to_string(&LogBounds::UNLIMITED).unwrap();
    assert_eq!(
        serde_json::from_str::<LogBounds>(&unlimited).unwrap(),
        LogBounds::UNLIMITED
    );
}

#[test]
fn a_line_sent_in_pieces_is_marked_and_filtered_by_its_first_piece() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir);
    let mut w = LogWriter::open(&path, LogBounds::UNLIMITED).unwrap();
    let pieces: [(LogStream, &[u8]); 5] = [
        (LogStream::Stdout, b"one\ntw"),
        (LogStream::Stderr, b"err\n"),
        (LogStream::Stdout, b"o\nthr"),
        (LogStream::Stdout, b"ee"),
        (LogStream::Stdout, b"\n"),
    ];
    for (stream, data) in pieces {
        w.append(stream, data).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let entries = read_all(&path).unwrap().0;
    let got: Vec<(&[u8], bool)> = entries.iter().map(|e| (&e.data[..], e.continues)).collect();
    let expected: [(&[u8], bool); 7] = [
        (b"one\n", false),
        (b"tw", false),
        (b"err\n", false),
        (b"o\n", true),
        (b"thr", false),
        (b"ee", true),
        (b"\n", true),
    ];
    assert_eq!(got, expected);
    // Since the time of "o\n": "two" began before it, so none of it; "three" whole.
    let since = entries[3].time;
    let mut filter = LineFilter::new(|_, t| t >= since);
    assert_eq!(kept(&entries, &mut filter), b"three\n");
    // Until the time of "err": "two" whole (its end is later), "three" not at all.
    let until = entries[2].time;
    let mut filter = LineFilter::new(|_, t| t <= until);
    assert_eq!(kept(&entries, &mut filter), b"one\ntwerr\no\n");
    // From a line's start (a tail), pieces of lines begun before it are dropped …
    let mut filter = LineFilter::from_line_start(|_, _| true);
    assert_eq!(kept(&entries[2..], &mut filter), b"err\nthree\n");
    // … but from the log's start, a piece whose line was rotated away is kept.
    let mut filter = LineFilter::new(|_, _| true);
    assert_eq!(kept(&entries[3..], &mut filter), b"o\nthree\n");
}

/// The output of `entries` that `filter` wants, in order.
fn kept<F>(entries: &[LogEntry], filter: &mut LineFilter<F>) -> Vec<u8>
where
    F: FnMut(LogStream, chrono::DateTime<chrono::Utc>) -> bool,
{
    let wanted = entries
        .iter()
        .filter(|e| filter.wants(e.stream, e.continues, e.time));
    wanted.flat_map(|e| e.data.to_vec()).collect()
}
