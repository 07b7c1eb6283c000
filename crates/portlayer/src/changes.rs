//! `docker diff`: what a container changed in its root filesystem, found as dockerd's naive
//! differ finds it. The container's guest lists its root filesystem (a manifest: each path
//! with its mode, owner, size, time and link target, nothing's contents); the host lists the
//! image's unpacked root filesystem; the two are compared. A path only the container has is
//! added; one whose type, permissions, owner or device differ, or, for what is not a
//! directory, whose size, time or link target differ, is changed; a directory is changed too
//! when anything under it is; of what only the image has, the topmost path is deleted. The
//! files the VM writes for the container (`/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf`,
//! which dockerd mounts rather than writes) are not the container's changes.
//!
//! Both listings are bounded ([`MAX_ENTRIES`]): the manifest comes from the guest.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tether_proto::ManifestEntry;

/// Paths a listing may hold.
pub const MAX_ENTRIES: usize = 1_000_000;

/// Files the VM writes that are not the container's changes.
const WRITTEN_FOR_IT: &[&str] = &["etc/hostname", "etc/hosts", "etc/resolv.conf"];

/// What the root disk and the VM make where an image has none: the filesystem's own
/// `lost+found` and the mount points of `/dev`, `/proc` and `/sys` (dockerd's init layer
/// makes those too, and does not count them).
const MADE_FOR_IT: &[&str] = &["lost+found", "dev", "proc", "sys"];

/// How a path changed (Docker's `Kind`: 0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    Modified = 0,
    Added = 1,
    Deleted = 2,
}

/// One change: an absolute path and how it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

/// What the comparison looks at of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub rdev: u64,
    pub link: String,
}

impl From<ManifestEntry> for Attrs {
    fn from(e: ManifestEntry) -> Attrs {
        Attrs {
            mode: e.m,
            uid: e.u,
            gid: e.g,
            size: e.s,
            mtime: e.t,
            rdev: e.r,
            link: e.l,
        }
    }
}

const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;

impl Attrs {
    fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    /// Whether `self` (the image's) and `other` (the container's) differ as dockerd tells.
    fn differs(&self, other: &Attrs) -> bool {
        let own = self.mode != other.mode
            || self.uid != other.uid
            || self.gid != other.gid
            || self.rdev != other.rdev;
        own || (!self.is_dir()
            && (self.size != other.size || self.mtime != other.mtime || self.link != other.link))
    }
}

/// A listing: path from the root (no leading `/`) → attributes.
pub type Listing = BTreeMap<String, Attrs>;

/// Lists the filesystem under `root` (the image's unpacked root), without following links.
pub fn list_dir(root: &Path) -> io::Result<Listing> {
    let mut out = Listing::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, name)) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.path().symlink_metadata()?;
            let child = match name.is_empty() {
                true => entry.file_name().to_string_lossy().into_owned(),
                false => format!("{name}/{}", entry.file_name().to_string_lossy()),
            };
            let link = match meta.file_type().is_symlink() {
                true => std::fs::read_link(entry.path())?
                    .to_string_lossy()
                    .into_owned(),
                false => String::new(),
            };
            if meta.is_dir() {
                stack.push((entry.path(), child.clone()));
            }
            out.insert(
                child,
                Attrs {
                    mode: meta.mode(),
                    uid: meta.uid(),
                    gid: meta.gid(),
                    size: meta.size(),
                    mtime: meta.mtime(),
                    rdev: meta.rdev(),
                    link,
                },
            );
            if out.len() > MAX_ENTRIES {
                return Err(io::Error::other(format!(
                    "the image has more than {MAX_ENTRIES} files"
                )));
            }
        }
    }
    Ok(out)
}

/// Reads a guest's manifest stream into a listing, refusing lines and listings beyond the
/// bounds.
#[derive(Default)]
pub struct ManifestReader {
    pending: Vec<u8>,
    pub listing: Listing,
}

impl ManifestReader {
    /// Takes the next piece of the stream.
    pub fn push(&mut self, data: &[u8]) -> Result<(), String> {
        self.pending.extend_from_slice(data);
        while let Some(at) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=at).collect();
            let entry: ManifestEntry = serde_json::from_slice(&line[..at])
                .map_err(|e| format!("the container's file listing does not parse: {e}"))?;
            self.listing.insert(entry.p.clone(), entry.into());
            if self.listing.len() > MAX_ENTRIES {
                return Err(format!(
                    "the container has more than {MAX_ENTRIES} files: too many to compare"
                ));
            }
        }
        if self.pending.len() > tether_proto::archive::MAX_MANIFEST_LINE {
            return Err("a line of the container's file listing is too long".into());
        }
        Ok(())
    }
}

/// What the container (`now`) changed from its image (`was`), sorted by path.
pub fn compare(was: &Listing, now: &Listing) -> Vec<Change> {
    let mut found: BTreeMap<String, ChangeKind> = BTreeMap::new();
    for (path, attrs) in now {
        if WRITTEN_FOR_IT.contains(&path.as_str()) {
            continue;
        }
        match was.get(path) {
            None if MADE_FOR_IT.contains(&path.as_str()) => {}
            None => {
                found.insert(path.clone(), ChangeKind::Added);
            }
            Some(old) if old.differs(attrs) => {
                found.insert(path.clone(), ChangeKind::Modified);
            }
            Some(_) => {}
        }
    }
    for path in was.keys() {
        if now.contains_key(path) || WRITTEN_FOR_IT.contains(&path.as_str()) {
            continue;
        }
        let parent_gone = parent(path).is_some_and(|p| !now.contains_key(p));
        if !parent_gone {
            found.insert(path.clone(), ChangeKind::Deleted);
        }
    }
    // A directory that holds a change has changed.
    let parents: BTreeSet<String> = found
        .keys()
        .flat_map(|p| ancestors(p))
        .filter(|p| was.contains_key(p) && now.contains_key(p))
        .collect();
    for p in parents {
        found.entry(p).or_insert(ChangeKind::Modified);
    }
    found
        .into_iter()
        .map(|(path, kind)| Change {
            path: format!("/{path}"),
            kind,
        })
        .collect()
}

fn parent(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(p, _)| p)
}

fn ancestors(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = path;
    while let Some(p) = parent(at) {
        out.push(p.to_string());
        at = p;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64, mtime: i64) -> Attrs {
        Attrs {
            mode: 0o100_644,
            uid: 0,
            gid: 0,
            size,
            mtime,
            rdev: 0,
            link: String::new(),
        }
    }

    fn dir(mtime: i64) -> Attrs {
        Attrs {
            mode: 0o040_755,
            ..file(4096, mtime)
        }
    }

    fn listing(entries: &[(&str, Attrs)]) -> Listing {
        entries
            .iter()
            .map(|(p, a)| (p.to_string(), a.clone()))
            .collect()
    }

    #[test]
    fn changes_are_found_as_dockerd_finds_them() {
        let was = listing(&[
            ("bin", dir(1)),
            ("bin/sh", file(10, 1)),
            ("etc", dir(1)),
            ("etc/passwd", file(5, 1)),
            ("etc/hosts", file(0, 1)),
            ("opt", dir(1)),
            ("opt/a", dir(1)),
            ("opt/a/b", file(1, 1)),
            ("tmp", dir(1)),
        ]);
        let now = listing(&[
            ("lost+found", dir(9)),
            ("proc", dir(9)),
            ("bin", dir(1)),
            ("bin/sh", file(10, 1)),
            ("etc", dir(9)),
            ("etc/passwd", file(6, 2)),
            ("etc/hosts", file(200, 9)),
            ("etc/hostname", file(13, 9)),
            ("tmp", dir(9)),
            ("tmp/new", file(3, 9)),
        ]);
        let got: Vec<(String, ChangeKind)> = compare(&was, &now)
            .into_iter()
            .map(|c| (c.path, c.kind))
            .collect();
        let want = [
            ("/etc", ChangeKind::Modified),
            ("/etc/passwd", ChangeKind::Modified),
            ("/opt", ChangeKind::Deleted),
            ("/tmp", ChangeKind::Modified),
            ("/tmp/new", ChangeKind::Added),
        ];
        let want: Vec<(String, ChangeKind)> =
            want.iter().map(|(p, k)| (p.to_string(), *k)).collect();
        assert_eq!(got, want);
        assert!(compare(&was, &was).is_empty());
    }

    #[test]
    fn a_manifest_is_read_line_by_line_and_bounded() {
        let mut r = ManifestReader::default();
        let line = br#"{"p":"etc","m":16877,"u":0,"g":0,"s":4096,"t":1}"#;
        r.push(&line[..10]).unwrap();
        r.push(&line[10..]).unwrap();
        r.push(b"\n").unwrap();
        assert_eq!(r.listing.len(), 1);
        assert!(r.listing["etc"].is_dir());
        assert!(r.push(b"not json\n").is_err());
        let mut r = ManifestReader::default();
        assert!(r.push(&vec![b'x'; 20_000]).is_err(), "an endless line");
    }

    #[test]
    fn a_directory_lists_as_the_guest_lists() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/b/f"), b"12").unwrap();
        std::os::unix::fs::symlink("b/f", d.path().join("a/l")).unwrap();
        let l = list_dir(d.path()).unwrap();
        let names: Vec<&str> = l.keys().map(String::as_str).collect();
        assert_eq!(names, ["a", "a/b", "a/b/f", "a/l"]);
        assert_eq!(l["a/b/f"].size, 2);
        assert_eq!(l["a/l"].link, "b/f");
    }
}
