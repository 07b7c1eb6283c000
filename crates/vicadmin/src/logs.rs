//! The logs the admin pages show and follow: the appliance's, vic-init's, and each container
//! VM's console. A console log is written by the guest (root in a container may write
//! anything to it), so it is only ever sent as `text/plain` and shown through `textContent`;
//! what is read of any log is bounded: the last [`TAIL`] bytes, then what is appended, in
//! reads of [`CHUNK`] bytes, for at most [`FOLLOW_FOR`].

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;

/// How much of a log a page shows (and a follow starts with).
pub const TAIL: u64 = 64 * 1024;
/// The most one read of a followed log takes.
pub const CHUNK: usize = 64 * 1024;
/// How often a followed log is looked at.
pub const POLL: Duration = Duration::from_millis(250);
/// How long one follow lasts; the page starts another when it ends.
pub const FOLLOW_FOR: Duration = Duration::from_secs(3600);

/// One log the pages offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// Its name in URLs: `appliance`, `vic-init`, `console-<id>`, `output-<id>`.
    pub name: String,
    /// What the page calls it.
    pub title: String,
    pub source: Source,
}

/// Where a log's text comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A text file (the appliance's log, a VM's console).
    File(PathBuf),
    /// What container `id`'s process wrote (`docker logs`).
    Output(String),
}

/// How a log is read: with `None`, its last [`TAIL`] bytes or so; with `Some(offset)`, what
/// follows that offset, at most [`CHUNK`] bytes; and the offset to go on from.
pub type Reader =
    std::sync::Arc<dyn Fn(Option<u64>) -> std::io::Result<(Vec<u8>, u64)> + Send + Sync>;

/// The reader of text file `path`.
pub fn file_reader(path: PathBuf) -> Reader {
    std::sync::Arc::new(move |from| match from {
        None => tail(&path, TAIL),
        Some(offset) => appended(&path, offset),
    })
}

/// Whether `name` could name a log (letters, digits, `-`, `_`, `.`; no path).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The last `max` bytes of `path`, from the first line that starts in them (all of it when
/// shorter), and where the file ended.
pub fn tail(path: &Path, max: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let from = len.saturating_sub(max);
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::with_capacity((len - from) as usize);
    f.take(len - from).read_to_end(&mut buf)?;
    if from > 0 {
        if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            buf.drain(..=nl);
        }
    }
    Ok((buf, len))
}

/// What was appended to `path` after `offset`, at most [`CHUNK`] bytes, and the new offset.
/// A file that got shorter (truncated or replaced) is read again from its start.
fn appended(path: &Path, offset: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let from = if len < offset { 0 } else { offset };
    if len == from {
        return Ok((Vec::new(), from));
    }
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    f.take(CHUNK as u64).read_to_end(&mut buf)?;
    let next = from + buf.len() as u64;
    Ok((buf, next))
}

/// The log's last [`TAIL`] bytes, then what is appended to it, as a byte stream, for
/// [`FOLLOW_FOR`] or until the client goes; `permit` is held as long as the stream lives.
pub fn follow(
    reader: Reader,
    permit: OwnedSemaphorePermit,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send {
    let state = (reader, None::<u64>, tokio::time::Instant::now(), permit);
    futures_util::stream::unfold(state, |(reader, offset, started, permit)| async move {
        loop {
            if started.elapsed() >= FOLLOW_FOR {
                return None;
            }
            let r = reader.clone();
            let read = tokio::task::spawn_blocking(move || r(offset))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match read {
                Ok((bytes, next)) if !bytes.is_empty() || offset.is_none() => {
                    let item = Ok(Bytes::from(bytes));
                    return Some((item, (reader, Some(next), started, permit)));
                }
                Ok(_) => {}
                // Not there (yet, or any more): look again, as `tail -F` does.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Some((Err(e), (reader, offset, started, permit))),
            }
            tokio::time::sleep(POLL).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::io::Write;

    #[test]
    fn tail_starts_at_a_line_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        std::fs::write(&p, b"first line\nsecond\nthird\n").unwrap();
        assert_eq!(tail(&p, 1024).unwrap().0, b"first line\nsecond\nthird\n");
        let (t, end) = tail(&p, 10).unwrap();
        assert_eq!(t, b"third\n");
        assert_eq!(end, 24);
    }

    #[test]
    fn names_are_plain() {
        for ok in ["appliance", "vic-init", "console-3fb32c039b8b"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "../etc/passwd",
            "a/b",
            ".hidden",
            "a b",
            &"x".repeat(129),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn follow_sends_the_tail_then_what_is_appended_and_survives_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        std::fs::write(&p, b"old\n").unwrap();
        let permit = std::sync::Arc::new(tokio::sync::Semaphore::new(1))
            .try_acquire_owned()
            .unwrap();
        let mut s = Box::pin(follow(file_reader(p.clone()), permit));
        assert_eq!(&s.next().await.unwrap().unwrap()[..], b"old\n");
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"new line\n").unwrap();
        assert_eq!(&s.next().await.unwrap().unwrap()[..], b"new line\n");
        std::fs::write(&p, b"again\n").unwrap();
        assert_eq!(&s.next().await.unwrap().unwrap()[..], b"again\n");
        let big = vec![b'x'; CHUNK * 2];
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(&big)
            .unwrap();
        assert_eq!(s.next().await.unwrap().unwrap().len(), CHUNK);
    }
}
