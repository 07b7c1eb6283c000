//! A root filesystem directory held open, and every operation a layer needs done *relative to
//! it*: directories are opened with `openat2(RESOLVE_IN_ROOT)`, so the kernel resolves each
//! path as a process chrooted there would (an absolute symlink restarts at the root, a `..`
//! stops at it, magic links and mount crossings are refused), and the final name of an entry
//! is then created, replaced or removed with `*at` calls that never follow it. No string check
//! stands between a layer and the host: there is no path to the host to check.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Symlinks followed while creating a missing directory, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// Directory nesting a removal descends before it gives up (one descriptor per level).
pub(crate) const MAX_REMOVE_DEPTH: usize = 256;

/// How every directory inside the root is opened.
const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC);

/// Resolution that a process chrooted at the root would get, without magic links or mounts.
const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// A file's identity: device and inode.
pub(crate) type Ident = (u64, u64);

/// An image's root filesystem, held by a directory descriptor.
pub(crate) struct Root {
    fd: OwnedFd,
    ident: Ident,
}

impl Root {
    /// Opens the root directory at `path` (which the store made; not from a layer).
    pub(crate) fn open(path: &Path) -> std::io::Result<Root> {
        let fd = rustix::fs::open(path, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())?;
        let ident = ident_of(&fd)?;
        Ok(Root { fd, ident })
    }

    /// The directory at `rel` (a clean relative path; empty is the root itself), resolved
    /// inside the root. With `create`, missing directories are made (mode 0755, owned by the
    /// caller), through dangling symlinks too, as a tar extraction into a chroot would.
    pub(crate) fn dir(&self, rel: &Path, create: bool) -> std::io::Result<OwnedFd> {
        self.dir_hops(rel, create, 0)
    }

    fn dir_hops(&self, rel: &Path, create: bool, hops: usize) -> std::io::Result<OwnedFd> {
        if rel.as_os_str().is_empty() {
            return Ok(rustix::io::dup(&self.fd)?);
        }
        match open_in_root(&self.fd, rel) {
            Err(Errno::NOENT) if create => {}
            other => return other.map_err(Into::into),
        }
        let (parent_rel, name) = split(rel)?;
        let parent = self.dir_hops(parent_rel, true, hops)?;
        match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        match open_in_root(&self.fd, rel) {
            Err(Errno::NOENT) => {}
            other => return other.map_err(Into::into),
        }
        // `name` exists but does not resolve: a dangling symlink. Make what it points at.
        if hops >= MAX_SYMLINKS {
            return Err(Errno::LOOP.into());
        }
        let target = rustix::fs::readlinkat(&parent, name, Vec::new())?;
        let target = Path::new(OsStr::from_bytes(target.as_bytes()));
        let joined = if target.is_absolute() {
            target.to_path_buf()
        } else {
            parent_rel.join(target)
        };
        self.dir_hops(&lexical_in_root(&joined), true, hops + 1)?;
        Ok(open_in_root(&self.fd, rel)?)
    }

    /// The root's own identity, where an upward walk stops.
    pub(crate) fn ident(&self) -> Ident {
        self.ident
    }
}

fn open_in_root(root: &OwnedFd, rel: &Path) -> Result<OwnedFd, Errno> {
    match rustix::fs::openat2(root, rel, DIR_FLAGS, Mode::empty(), IN_ROOT) {
        Err(Errno::NOSYS) => {
            // Refuse rather than fall back to a weaker walk.
            tracing::error!("applying a layer needs openat2 (Linux 5.6 or later)");
            Err(Errno::NOSYS)
        }
        other => other,
    }
}

/// `rel`'s parent and final name; the root itself has neither.
pub(crate) fn split(rel: &Path) -> std::io::Result<(&Path, &OsStr)> {
    let name = rel.file_name().ok_or(Errno::INVAL)?;
    Ok((rel.parent().unwrap_or(Path::new("")), name))
}

/// A path made relative to the root with `..` applied lexically and stopped at the root, as
/// the kernel does when it resolves inside a root.
fn lexical_in_root(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

pub(crate) fn ident_of<Fd: AsFd>(fd: Fd) -> std::io::Result<Ident> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// What is at `name` in `dir`, not following a symlink; `None` when nothing is.
pub(crate) fn stat_at(dir: &OwnedFd, name: &OsStr) -> std::io::Result<Option<rustix::fs::Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn is_dir(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

/// Opens directory `name` in `dir` without following a symlink there.
pub(crate) fn open_child_dir(dir: &OwnedFd, name: &OsStr) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        DIR_FLAGS | OFlags::NOFOLLOW,
        Mode::empty(),
    )?)
}

/// Creates regular file `name` in `dir` for writing; it must not exist (nor a link there).
pub(crate) fn create_file(dir: &OwnedFd, name: &OsStr) -> std::io::Result<File> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    Ok(File::from(fd))
}

/// Removes whatever is at `name` in `dir` (a directory with everything in it); nothing there
/// is fine. Never follows a symlink: a link is removed, not what it points at.
pub(crate) fn remove_at(dir: &OwnedFd, name: &OsStr) -> std::io::Result<()> {
    remove_depth(dir, name, 0)
}

fn remove_depth(dir: &OwnedFd, name: &OsStr, depth: usize) -> std::io::Result<()> {
    let Some(st) = stat_at(dir, name)? else {
        return Ok(());
    };
    if !is_dir(&st) {
        return Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?);
    }
    if depth >= MAX_REMOVE_DEPTH {
        return Err(std::io::Error::other(format!(
            "directories nested more than {MAX_REMOVE_DEPTH} deep"
        )));
    }
    let child = open_child_dir(dir, name)?;
    for n in child_names(&child)? {
        remove_depth(&child, &n, depth + 1)?;
    }
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

/// The names in directory `dir`, without `.` and `..`.
pub(crate) fn child_names(dir: &OwnedFd) -> std::io::Result<Vec<OsString>> {
    let mut out = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_owned());
        }
    }
    Ok(out)
}

/// What the current layer wrote, by identity: the entries, and every directory above them.
/// Identities, not paths, so that a later entry replacing a path cannot redirect a decision.
#[derive(Default)]
pub(crate) struct Written {
    entries: HashSet<Ident>,
    ancestors: HashSet<Ident>,
}

impl Written {
    /// Records the entry `name` just made in `parent`, and `parent`'s directories up to the
    /// root (walked by `..`, which inside the root only ever leads up to it).
    pub(crate) fn add(
        &mut self,
        root: &Root,
        parent: &OwnedFd,
        name: &OsStr,
    ) -> std::io::Result<()> {
        if let Some(st) = stat_at(parent, name)? {
            self.entries.insert((st.st_dev, st.st_ino));
        }
        let mut cur = rustix::io::dup(parent)?;
        loop {
            let id = ident_of(&cur)?;
            if id == root.ident() || !self.ancestors.insert(id) {
                return Ok(());
            }
            let up = open_child_dir(&cur, OsStr::new(".."))?;
            if ident_of(&up)? == id {
                return Ok(()); // the host's `/`: cannot happen inside a root, stop anyway
            }
            cur = up;
        }
    }

    fn keeps(&self, id: &Ident) -> bool {
        self.entries.contains(id) || self.ancestors.contains(id)
    }
}

/// Empties opaque directory `dir` of everything the current layer did not write, at any
/// depth (what lower layers put there is hidden).
pub(crate) fn prune_opaque(dir: &OwnedFd, written: &Written, depth: usize) -> std::io::Result<()> {
    for name in child_names(dir)? {
        let Some(st) = stat_at(dir, &name)? else {
            continue;
        };
        if !written.keeps(&(st.st_dev, st.st_ino)) {
            remove_at(dir, &name)?;
        } else if is_dir(&st) {
            if depth >= MAX_REMOVE_DEPTH {
                return Err(std::io::Error::other(format!(
                    "directories nested more than {MAX_REMOVE_DEPTH} deep"
                )));
            }
            prune_opaque(&open_child_dir(dir, &name)?, written, depth + 1)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_resolution_stops_at_the_root() {
        assert_eq!(lexical_in_root(Path::new("/a/../../b")), Path::new("b"));
        assert_eq!(lexical_in_root(Path::new("x/./y/..")), Path::new("x"));
    }

    #[test]
    fn missing_directories_are_made_through_dangling_links_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root_path = t.path().join("root");
        std::fs::create_dir(&root_path).unwrap();
        std::os::unix::fs::symlink("/usr/lib", root_path.join("lib")).unwrap();
        std::os::unix::fs::symlink("../../../outside", root_path.join("up")).unwrap();
        let root = Root::open(&root_path).unwrap();
        root.dir(Path::new("lib/x"), true).unwrap();
        assert!(root_path.join("usr/lib/x").is_dir());
        root.dir(Path::new("up/y"), true).unwrap();
        assert!(
            root_path.join("outside/y").is_dir(),
            "`..` stops at the root"
        );
        assert!(!t.path().join("outside").exists());
    }

    #[test]
    fn a_link_loop_is_refused() {
        let t = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("b", t.path().join("a")).unwrap();
        std::os::unix::fs::symlink("a", t.path().join("b")).unwrap();
        let root = Root::open(t.path()).unwrap();
        assert!(root.dir(Path::new("a/x"), true).is_err());
    }
}
