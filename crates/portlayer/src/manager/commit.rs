//! `docker commit`: the layer of a container's changes. What changed is found as `docker
//! diff` finds it (`changes.rs`); the guest sends a tar stream of the added and changed
//! paths (each alone, in requests of a bounded size, the container's processes stopped
//! meanwhile when asked), and a whiteout entry (`.wh.NAME`) stands for each removed one, as
//! in an image layer. The streams are joined into one: each guest stream's end-of-archive
//! blocks are checked and dropped, the whiteouts and one end follow. The image store makes
//! the image of it (`imagec::archive::commit`).

use std::collections::VecDeque;

use bytes::Bytes;

use super::copy::FilesVm;
use super::{Containers, Error};
use crate::changes::{Change, ChangeKind};
use crate::container::ContainerRecord;
use crate::guest::copy::{CopyMode, CopyOut};
use crate::guest::session::GuestControl;
use crate::guest::transfer::CopyError;

/// The end of a tar stream: two zero blocks.
const TAR_END: usize = 1024;

/// The layer of a container's changes, as a tar stream.
pub struct LayerStream {
    control: GuestControl,
    _vm: Option<FilesVm>,
    chunks: VecDeque<Vec<String>>,
    pause: bool,
    current: Option<CopyOut>,
    /// The last bytes of the current guest stream, held back until it is known whether they
    /// are its end.
    held: Vec<u8>,
    /// The whiteouts and the end, sent last.
    tail: Option<Vec<u8>>,
}

fn failed(why: impl Into<String>) -> Error {
    Error::Copy(CopyError::Failed(why.into()))
}

/// Groups `paths` in requests of at most `MAX_LAYER_PATHS_BYTES`.
fn chunked(paths: Vec<String>) -> VecDeque<Vec<String>> {
    let mut out = VecDeque::new();
    let (mut cur, mut bytes) = (Vec::new(), 0);
    for p in paths {
        if bytes + p.len() + 4 > tether_proto::archive::MAX_LAYER_PATHS_BYTES && !cur.is_empty() {
            out.push_back(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += p.len() + 4;
        cur.push(p);
    }
    if !cur.is_empty() {
        out.push_back(cur);
    }
    out
}

/// A tar stream of a whiteout for each removed path, and the end.
fn whiteouts(changes: &[Change]) -> Result<Vec<u8>, Error> {
    let mut b = tar::Builder::new(Vec::new());
    for c in changes.iter().filter(|c| c.kind == ChangeKind::Deleted) {
        let rel = c.path.trim_start_matches('/');
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let wh = match dir {
            "" => format!(".wh.{name}"),
            dir => format!("{dir}/.wh.{name}"),
        };
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o600);
        h.set_mtime(0);
        b.append_data(&mut h, wh, std::io::empty())
            .map_err(|e| failed(format!("writing a whiteout: {e}")))?;
    }
    b.into_inner()
        .map_err(|e| failed(format!("writing the whiteouts: {e}")))
}

impl LayerStream {
    /// The next piece of the layer; `None` at its end.
    pub async fn next(&mut self) -> Option<Result<Bytes, Error>> {
        loop {
            if let Some(cur) = &mut self.current {
                match cur.next().await {
                    Some(Ok(bytes)) => {
                        self.held.extend_from_slice(&bytes);
                        if self.held.len() > TAR_END {
                            let out: Vec<u8> =
                                self.held.drain(..self.held.len() - TAR_END).collect();
                            return Some(Ok(Bytes::from(out)));
                        }
                    }
                    Some(Err(e)) => return Some(Err(Error::Copy(e))),
                    None => {
                        let whole = self.held.len() == TAR_END && self.held.iter().all(|b| *b == 0);
                        self.current = None;
                        self.held.clear();
                        if !whole {
                            return Some(Err(failed(
                                "the container's files did not come as a whole tar stream",
                            )));
                        }
                    }
                }
                continue;
            }
            if let Some(paths) = self.chunks.pop_front() {
                let mode = CopyMode::Layer {
                    paths,
                    pause: self.pause,
                };
                match self.control.copy_out("/", mode).await {
                    Ok((_, out)) => self.current = Some(out),
                    Err(e) => return Some(Err(Error::Copy(e))),
                }
                continue;
            }
            return self.tail.take().map(|t| Ok(Bytes::from(t)));
        }
    }
}

impl Containers {
    /// The layer of what container `key` changed from its image (`docker commit`), with its
    /// record; `pause` stops its processes while its files are read.
    pub async fn commit_layer(
        &self,
        key: &str,
        pause: bool,
    ) -> Result<(ContainerRecord, LayerStream), Error> {
        let rec = self.get(key)?;
        let (control, vm) = self.files_of(key).await?;
        let changes = self.changes_in(key, &rec, &control).await?;
        let paths: Vec<String> = (changes.iter())
            .filter(|c| c.kind != ChangeKind::Deleted)
            .map(|c| c.path.trim_start_matches('/').to_string())
            .collect();
        let stream = LayerStream {
            control,
            _vm: vm,
            chunks: chunked(paths),
            pause,
            current: None,
            held: Vec::new(),
            tail: Some(whiteouts(&changes)?),
        };
        Ok((rec, stream))
    }

    /// Says container `rec` was committed as image `image_id` (`reference`, if tagged).
    pub fn committed(&self, rec: &ContainerRecord, image_id: &str, reference: &str) {
        let attrs = [
            ("imageID", image_id.to_string()),
            ("imageRef", reference.to_string()),
        ];
        self.publish("commit", rec, &attrs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_stand_for_what_was_removed() {
        let changes = [
            Change {
                path: "/etc/gone".into(),
                kind: ChangeKind::Deleted,
            },
            Change {
                path: "/home".into(),
                kind: ChangeKind::Deleted,
            },
            Change {
                path: "/tmp/new".into(),
                kind: ChangeKind::Added,
            },
        ];
        let bytes = whiteouts(&changes).unwrap();
        let mut a = tar::Archive::new(&bytes[..]);
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["etc/.wh.gone", ".wh.home"]);
        assert!(bytes.ends_with(&[0; TAR_END]));
    }

    #[test]
    fn paths_go_in_bounded_requests() {
        let long = "x".repeat(100_000);
        let chunks = chunked(vec![long.clone(); 12]);
        assert!(chunks.len() >= 3);
        assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 12);
        assert!(chunked(Vec::new()).is_empty());
    }
}
