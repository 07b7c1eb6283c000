//! What `docker cp` does to the container's files, as dockerd does it: which file a path the
//! client names means, what `lstat` says of it, a tar stream of it, and extracting a tar
//! stream into a directory.
//!
//! Everything here works on paths under `root`. The tether calls it from a thread chrooted
//! into the container's root (`root` is then `/`), so symbolic links resolve as they do for
//! the container's processes and never lead outside it; tests pass a scratch directory.

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use tether_proto::{ManifestEntry, PathError, PathErrorKind, PathStat};

/// Longest path a client may name.
const MAX_PATH: usize = 4096;

/// Filesystems whose files are the kernel's, not the container's: a copy of `/` records
/// their mount points and nothing under them (dockerd's copy never sees them either).
const PSEUDO_FS: &[i64] = &[
    0x9fa0,      // proc
    0x6265_6572, // sysfs
    0x1cd1,      // devpts
    0x0027_e0eb, // cgroup
    0x6367_7270, // cgroup2
    0x1980_0202, // mqueue
    0x6462_6720, // debugfs
    0x7472_6163, // tracefs
    0x7363_6673, // securityfs
    0xcafe_4a11, // bpf
];

pub fn error(kind: PathErrorKind, message: impl Into<String>) -> PathError {
    PathError {
        kind,
        message: message.into(),
    }
}

fn io_error(what: &str, e: &io::Error) -> PathError {
    let kind = match e.raw_os_error() {
        Some(libc::ENOENT) => PathErrorKind::NotFound,
        Some(libc::ENOTDIR) => PathErrorKind::NotDirectory,
        Some(libc::EROFS) => PathErrorKind::ReadOnly,
        _ => PathErrorKind::Other,
    };
    error(kind, format!("{what}: {e}"))
}

/// A path the client named: as it asked (absolute, cleaned, with a trailing `/` or `/.`
/// kept), and where that is under the root (its directory's symbolic links are followed
/// when it is used, its last element's are not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub abs: String,
    pub at: PathBuf,
}

/// Lexically cleans an absolute path (Go's `filepath.Clean` of `/` + `path`).
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Go's `filepath.Base`: the last element, trailing slashes ignored; `/` for the root.
fn base(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit('/').next() {
        _ if trimmed.is_empty() => "/".to_string(),
        Some(b) => b.to_string(),
        None => trimmed.to_string(),
    }
}

/// What `path` names under `root`, as dockerd's `ResolvePath` does.
pub fn name(root: &Path, path: &str) -> Result<Named, PathError> {
    if path.is_empty() || path.len() > MAX_PATH || path.contains('\0') {
        return Err(error(
            PathErrorKind::Invalid,
            format!("invalid path {path:?}"),
        ));
    }
    let mut abs = clean(path);
    if (path.ends_with("/.") || path == ".") && !abs.ends_with("/.") {
        abs.push_str(if abs == "/" { "." } else { "/." });
    } else if path.ends_with('/') && !abs.ends_with('/') {
        abs.push('/');
    }
    let rel = abs.trim_start_matches('/');
    Ok(Named {
        at: if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        },
        abs,
    })
}

/// The stat `docker cp` shows of `named`.
pub fn stat(root: &Path, named: &Named) -> Result<(PathStat, Metadata), PathError> {
    let meta = fs::symlink_metadata(&named.at).map_err(|e| {
        let mut err = io_error(&named.abs, &e);
        if err.kind == PathErrorKind::NotFound {
            err.message = format!("Could not find the file {}", named.abs);
        }
        err
    })?;
    let link_target = if meta.file_type().is_symlink() {
        link_target(root, named)
    } else {
        String::new()
    };
    let mode = if meta.file_type().is_symlink() {
        libc::S_IFLNK | 0o777
    } else {
        meta.mode()
    };
    let stat = PathStat {
        name: base(&named.abs),
        size: meta.size(),
        mode,
        mtime_secs: meta.mtime(),
        mtime_nanos: meta.mtime_nsec() as u32,
        link_target,
    };
    Ok((stat, meta))
}

/// Where a symbolic link leads, as an absolute path in the container: fully resolved when
/// it leads somewhere, else its target made absolute.
fn link_target(root: &Path, named: &Named) -> String {
    if let Ok(real) = fs::canonicalize(&named.at) {
        if let Ok(rel) = real.strip_prefix(root) {
            return format!("/{}", rel.display());
        }
    }
    let target = fs::read_link(&named.at).unwrap_or_default();
    let target = target.to_string_lossy();
    if target.starts_with('/') {
        clean(&target)
    } else {
        let dir = named.abs.rsplit_once('/').map_or("", |(d, _)| d);
        clean(&format!("{dir}/{target}"))
    }
}

/// Writes a tar stream of `named` (already stat'ed as `meta`) to `out`, its entries named
/// under `stat_name` as dockerd names them: the path's own entry first, then what a
/// directory holds, depth first. Symbolic links are stored as links; files with several
/// names in the copy as one file and hard links.
pub fn write_tar<W: Write>(
    named: &Named,
    meta: &Metadata,
    stat_name: &str,
    out: W,
) -> io::Result<W> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut walk = Walk {
        builder,
        links: HashMap::new(),
        within: None,
    };
    walk.entry(&named.at, meta, stat_name)?;
    if meta.is_dir() {
        walk.dir(&named.at, stat_name)?;
    }
    walk.builder.into_inner()
}

/// Writes a tar stream of the filesystem at `root` (stat'ed as `meta`) to `out`, as `docker
/// export` does: entries named from the root without a leading `./`, and what other
/// filesystems mounted on it hold (volumes, bind mounts, tmpfs, `/proc`) left out; their
/// mount points are kept.
pub fn write_export<W: Write>(root: &Path, meta: &Metadata, out: W) -> io::Result<W> {
    let mut walk = Walk {
        builder: tar::Builder::new(out),
        links: HashMap::new(),
        within: Some(meta.dev()),
    };
    walk.dir(root, "")?;
    walk.builder.into_inner()
}

struct Walk<W: Write> {
    builder: tar::Builder<W>,
    /// The first name of each file with several links: (device, inode) → name.
    links: HashMap<(u64, u64), String>,
    /// Only what is on this device (`docker export`); everything when `None`.
    within: Option<u64>,
}

impl<W: Write> Walk<W> {
    fn dir(&mut self, dir: &Path, name: &str) -> io::Result<()> {
        let within = self.within;
        walk(dir, name, within, &mut |path, meta, name| {
            self.entry(path, meta, name)
        })
    }

    fn entry(&mut self, path: &Path, meta: &Metadata, name: &str) -> io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
        header.set_mode(meta.mode() & 0o7777);
        header.set_size(0);
        let ft = meta.file_type();
        if ft.is_symlink() {
            // A link's permissions mean nothing on Linux; dockerd's say 0777.
            header.set_mode(0o777);
            let target = fs::read_link(path)?;
            let target = target.as_os_str().as_encoded_bytes();
            return self.append(&mut header, name.as_bytes(), Some(target), io::empty());
        }
        if ft.is_file() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key).cloned() {
                header.set_entry_type(tar::EntryType::Link);
                let (name, first) = (name.as_bytes(), Some(first.as_bytes()));
                return self.append(&mut header, name, first, io::empty());
            }
            self.links.insert(key, name.to_string());
        }
        if ft.is_char_device() || ft.is_block_device() {
            let rdev = meta.rdev();
            header.set_device_major(libc::major(rdev))?;
            header.set_device_minor(libc::minor(rdev))?;
        }
        if ft.is_file() {
            let size = meta.size();
            header.set_size(size);
            let file = fs::File::open(path)?;
            // A file the container changes while it is copied keeps the size its header
            // says: cut, or padded with zeros.
            let data = file.take(size).chain(io::repeat(0)).take(size);
            return self.append(&mut header, name.as_bytes(), None, data);
        }
        let name = if ft.is_dir() && !name.ends_with('/') {
            format!("{name}/")
        } else {
            name.to_string()
        };
        self.append(&mut header, name.as_bytes(), None, io::empty())
    }

    /// Appends an entry named exactly `name` (the tar crate would drop a leading `./`,
    /// which `docker cp` renames by), linking to `link`; names too long for the header go
    /// before it in GNU long-name entries.
    fn append(
        &mut self,
        header: &mut tar::Header,
        name: &[u8],
        link: Option<&[u8]>,
        data: impl Read,
    ) -> io::Result<()> {
        let fields = header.as_old_mut();
        fields.name = [0; 100];
        fields.linkname = [0; 100];
        for (bytes, field, kind) in [
            (Some(name), 0, tar::EntryType::GNULongName),
            (link, 1, tar::EntryType::GNULongLink),
        ] {
            let Some(bytes) = bytes else { continue };
            let fields = header.as_old_mut();
            let slot = if field == 0 {
                &mut fields.name
            } else {
                &mut fields.linkname
            };
            let n = bytes.len().min(slot.len());
            slot[..n].copy_from_slice(&bytes[..n]);
            if bytes.len() > slot.len() {
                let mut long = tar::Header::new_gnu();
                long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
                long.set_mode(0o644);
                long.set_entry_type(kind);
                long.set_size(bytes.len() as u64 + 1);
                long.set_cksum();
                self.builder.append(&long, bytes.chain(&[0u8][..]))?;
            }
        }
        header.set_cksum();
        self.builder.append(header, data)
    }
}

/// Visits what `dir` (named `name`) holds, depth first in name order, each entry before what
/// it holds; with `within`, only what is on that device (mount points are visited, what
/// they hold is not). Pseudo filesystems are not entered.
fn walk(
    dir: &Path,
    name: &str,
    within: Option<u64>,
    visit: &mut dyn FnMut(&Path, &Metadata, &str) -> io::Result<()>,
) -> io::Result<()> {
    if is_pseudo(dir) {
        return Ok(());
    }
    let mut children: Vec<_> = fs::read_dir(dir)?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    children.sort();
    for child in children {
        let path = dir.join(&child);
        let child_name = join_name(name, &child.to_string_lossy());
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            // Gone since the listing: a running container changes its files.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let elsewhere = within.is_some_and(|dev| dev != meta.dev());
        if elsewhere && !meta.is_dir() {
            // A file bind-mounted over the root's: neither is the container's own.
            continue;
        }
        visit(&path, &meta, &child_name)?;
        if meta.is_dir() && !elsewhere {
            walk(&path, &child_name, within, visit)?;
        }
    }
    Ok(())
}

/// Writes one JSON [`ManifestEntry`] a line for what the filesystem at `root` (stat'ed as
/// `meta`) holds, not what is mounted on it: what `docker diff` and `commit` compare.
pub fn write_manifest<W: Write>(root: &Path, meta: &Metadata, mut out: W) -> io::Result<W> {
    walk(root, "", Some(meta.dev()), &mut |path, meta, name| {
        let link = match meta.file_type().is_symlink() {
            true => fs::read_link(path)?.to_string_lossy().into_owned(),
            false => String::new(),
        };
        let entry = ManifestEntry {
            p: name.to_string(),
            m: meta.mode(),
            u: meta.uid(),
            g: meta.gid(),
            s: meta.size(),
            t: meta.mtime(),
            r: meta.rdev(),
            l: link,
        };
        serde_json::to_writer(&mut out, &entry)?;
        out.write_all(b"\n")
    })?;
    Ok(out)
}

/// Writes a tar stream of each of `paths` (from `root`; each alone, not what a directory
/// holds) to `out`, named as given: the entries of a `docker commit` layer. A path gone
/// meanwhile is left out; one that leads out of the root through `..` is refused.
pub fn write_layer<W: Write>(root: &Path, paths: &[String], out: W) -> io::Result<W> {
    let mut walk = Walk {
        builder: tar::Builder::new(out),
        links: HashMap::new(),
        within: None,
    };
    for p in paths {
        let rel = inside(p)
            .filter(|r| !r.as_os_str().is_empty())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("bad path {p:?}"))
            })?;
        let at = root.join(&rel);
        let meta = match fs::symlink_metadata(&at) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        walk.entry(&at, &meta, &rel.to_string_lossy())?;
    }
    walk.builder.into_inner()
}

fn join_name(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else if parent.ends_with('/') {
        format!("{parent}{child}")
    } else {
        format!("{parent}/{child}")
    }
}

fn is_pseudo(dir: &Path) -> bool {
    let Ok(c) = crate::sys::cpath(dir) else {
        return false;
    };
    // SAFETY: an all-zero statfs is valid, and `c` is a live NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; statfs writes only into `st`.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    PSEUDO_FS.contains(&(st.f_type as i64))
}

/// How an extraction treats what it finds.
#[derive(Debug, Clone, Default)]
pub struct Extract {
    pub no_overwrite_dir_non_dir: bool,
    /// Owner of everything extracted, instead of the archive's.
    pub owner: Option<(u32, u32)>,
}

/// Extracts the tar stream `input` into the directory `dest` (`dest_abs` in the container),
/// as dockerd does: owners, modes and times as the archive says (or `owner`), links as
/// links, devices and FIFOs made, nothing outside `dest`.
pub fn extract(dest: &Path, dest_abs: &str, input: impl Read, opts: &Extract) -> io::Result<()> {
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(opts.owner.is_none());
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    let mut dirs: Vec<(PathBuf, u64)> = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let rel = inside(&name).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is outside of {dest_abs:?}"),
            )
        })?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let target = dest.join(&rel);
        let kind = entry.header().entry_type();
        replace_check(&target, &rel, dest_abs, kind.is_dir(), opts)?;
        if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            make_node(&target, &entry)?;
        } else {
            entry.unpack_in(dest)?;
        }
        if let Some((uid, gid)) = opts.owner {
            std::os::unix::fs::lchown(&target, Some(uid), Some(gid))?;
        }
        if kind.is_dir() {
            dirs.push((target, entry.header().mtime().unwrap_or(0)));
        }
    }
    // A directory's time is set once what it holds is in place.
    for (dir, mtime) in dirs.iter().rev() {
        let t = filetime::FileTime::from_unix_time(*mtime as i64, 0);
        let _ = filetime::set_file_times(dir, t, t);
    }
    Ok(())
}

/// `name` as a path under the extraction point, when it stays there.
fn inside(name: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// Whether an entry may replace what is at `target` (dockerd: a directory is replaced by a
/// non-directory, or the reverse, only when the client allows it; then it goes whole).
fn replace_check(
    target: &Path,
    rel: &Path,
    dest_abs: &str,
    entry_is_dir: bool,
    opts: &Extract,
) -> io::Result<()> {
    let Ok(existing) = fs::symlink_metadata(target) else {
        return Ok(());
    };
    let in_ctr = format!("{}/{}", dest_abs.trim_end_matches('/'), rel.display());
    match (existing.is_dir(), entry_is_dir) {
        (true, false) if opts.no_overwrite_dir_non_dir => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("cannot overwrite directory {in_ctr:?} with non-directory"),
        )),
        (false, true) if opts.no_overwrite_dir_non_dir => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("cannot overwrite non-directory {in_ctr:?} with directory"),
        )),
        (true, false) => fs::remove_dir_all(target),
        (false, true) => fs::remove_file(target),
        _ => Ok(()),
    }
}

/// Makes the device node or FIFO a tar entry describes.
fn make_node<R: Read>(target: &Path, entry: &tar::Entry<R>) -> io::Result<()> {
    let h = entry.header();
    let kind = h.entry_type();
    let perm = h.mode()? & 0o7777;
    let (fmt, rdev) = if kind.is_fifo() {
        (libc::S_IFIFO, 0)
    } else {
        let major = h.device_major()?.unwrap_or(0);
        let minor = h.device_minor()?.unwrap_or(0);
        let fmt = if kind.is_block_special() {
            libc::S_IFBLK
        } else {
            libc::S_IFCHR
        };
        (fmt, libc::makedev(major, minor))
    };
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::remove_file(target) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    crate::sys::mknod(target, fmt | perm, rdev)?;
    std::os::unix::fs::lchown(target, Some(h.uid()? as u32), Some(h.gid()? as u32))?;
    Ok(())
}

#[cfg(test)]
#[path = "tarball_tests.rs"]
mod tests;
