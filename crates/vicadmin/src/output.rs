//! What a container's process wrote (`docker logs`), read for the admin pages from the
//! container's log through the port layer's reader: its last records, then what follows
//! an offset of the whole log (offsets run on across rotation, so a follow is not lost when
//! a segment is rotated away; it goes on from the oldest output still kept).

use std::collections::VecDeque;

use portlayer::Containers;

use crate::logs::{CHUNK, TAIL};

/// Records the tail of a log is taken from, at most.
const TAIL_RECORDS: usize = 4096;

/// The output of container `id`: its last [`TAIL`] bytes or so (whole records), or, from
/// log offset `from`, what follows (at most [`CHUNK`] bytes); and the offset to go on from.
pub fn read(
    containers: &Containers,
    id: &str,
    from: Option<u64>,
) -> std::io::Result<(Vec<u8>, u64)> {
    let log = containers
        .open_log(id)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string()))?;
    let (start, end) = match from {
        Some(at) => {
            let start = at.max(log.start());
            (start, log.scan(start, |_| {})?.min(start + CHUNK as u64))
        }
        None => {
            let mut starts = VecDeque::new();
            let end = log.scan(log.start(), |h| {
                starts.push_back(h.start);
                if starts.len() > TAIL_RECORDS {
                    starts.pop_front();
                }
            })?;
            while starts.len() > 1 && starts.front().is_some_and(|s| end - s > TAIL) {
                starts.pop_front();
            }
            (starts.front().copied().unwrap_or(end), end)
        }
    };
    let mut text = Vec::new();
    let mut pos = start;
    while pos < end {
        let chunk = log.read_range(pos, end)?;
        if chunk.next <= pos {
            break;
        }
        for (e, _) in &chunk.entries {
            text.extend_from_slice(&e.data);
        }
        pos = chunk.next;
    }
    Ok((text, pos))
}
