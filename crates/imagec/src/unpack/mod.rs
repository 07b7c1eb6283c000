//! Applies a layer tarball onto a root filesystem directory, as overlay semantics want:
//! `.wh.NAME` deletes NAME from lower layers, `.wh..wh..opq` hides a directory's lower
//! contents. The uncompressed stream is hashed on the way through, so the layer's diff ID is
//! checked in the same single pass.
//!
//! Every file operation is made relative to the root's directory descriptor ([`root::Root`]):
//! an entry's parent directory is opened by the kernel with `openat2(RESOLVE_IN_ROOT)`, so
//! symlinks already in the image resolve as the container will see them (an absolute target
//! restarts at the root, `..` stops there), and the entry's own name is created or replaced
//! with `*at` calls that never follow it. A layer therefore cannot create, change or delete
//! anything outside the root, whatever order its entries come in. Decisions that span entries
//! (what an opaque directory keeps, which directory gets which time) are made by file identity
//! or re-resolved inside the root, never by a path looked up earlier.

mod root;

use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps};
use sha2::{Digest, Sha256};

use root::{Root, Written};

/// Errors applying a layer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {0:?} escapes the root filesystem")]
    Escape(String),
    #[error("layer {layer} has diff ID {actual}, but the image configuration says {expected}")]
    DiffId {
        layer: String,
        expected: String,
        actual: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> UnpackError {
    let context = context.into();
    move |source| UnpackError::Io { context, source }
}

struct Hashing<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Opens a layer blob, undoing gzip or zstd compression (sniffed by magic bytes).
pub(crate) fn decompressed(path: &Path) -> io::Result<Box<dyn Read>> {
    let mut f = BufReader::with_capacity(256 * 1024, fs::File::open(path)?);
    let head = f.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(f))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(f)?)
    } else {
        Box::new(f)
    })
}

/// A relative, normalised path inside the layer; `None` for the root itself.
fn clean(raw: &Path) -> Result<Option<PathBuf>, UnpackError> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(UnpackError::Escape(raw.display().to_string()))
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// An entry's metadata, as the layer states it.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

impl Meta {
    fn of(h: &tar::Header) -> io::Result<Meta> {
        Ok(Meta {
            mode: h.mode()? & 0o7777,
            uid: h.uid()? as u32,
            gid: h.gid()? as u32,
            mtime: h.mtime().unwrap_or(0).min(i64::MAX as u64) as i64,
        })
    }

    fn times(&self) -> Timestamps {
        let t = Timespec {
            tv_sec: self.mtime,
            tv_nsec: 0,
        };
        Timestamps {
            last_access: t,
            last_modification: t,
        }
    }

    fn owner(&self) -> (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) {
        // SAFETY (of the raw ids): any number is a valid owner for chown; these are the
        // layer's numeric ids, as a tar extraction keeps them.
        (
            Some(rustix::fs::Uid::from_raw(self.uid)),
            Some(rustix::fs::Gid::from_raw(self.gid)),
        )
    }

    /// Owner, then mode (a chown clears set-id bits), then times, through an open file.
    fn apply_fd(&self, fd: &OwnedFd) -> io::Result<()> {
        let (u, g) = self.owner();
        rustix::fs::fchown(fd, u, g)?;
        rustix::fs::fchmod(fd, Mode::from_raw_mode(self.mode))?;
        Ok(rustix::fs::futimens(fd, &self.times())?)
    }

    /// The same for a symlink or a device node just made at `name` in `dir`. The mode is set
    /// by name; a symlink has none (and `fchmodat` would follow it).
    fn apply_at(&self, dir: &OwnedFd, name: &OsStr, symlink: bool) -> io::Result<()> {
        let (u, g) = self.owner();
        rustix::fs::chownat(dir, name, u, g, AtFlags::SYMLINK_NOFOLLOW)?;
        if !symlink {
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(self.mode), AtFlags::empty())?;
        }
        Ok(rustix::fs::utimensat(
            dir,
            name,
            &self.times(),
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }
}

/// A directory this layer wrote, whose time is set once its contents are in place.
struct DirTime {
    rel: PathBuf,
    ident: root::Ident,
    meta: Meta,
}

/// Applies the layer blob at `blob` onto `root`; returns the uncompressed size. Fails if the
/// layer's content does not hash to `diff_id`.
pub fn apply_layer(blob: &Path, root: &Path, diff_id: &str) -> Result<u64, UnpackError> {
    let reader = decompressed(blob).map_err(io_err(format!("opening layer {}", blob.display())))?;
    let mut hashing = Hashing {
        inner: reader,
        hash: Sha256::new(),
        bytes: 0,
    };
    let root = Root::open(root).map_err(io_err(format!("opening {}", root.display())))?;
    apply_tar(&mut hashing, &root)?;
    // Drain trailing bytes (tar padding) so the digest covers the whole stream.
    io::copy(&mut hashing, &mut io::sink()).map_err(io_err("reading the end of the layer"))?;
    let actual = format!("sha256:{}", hex::encode(hashing.hash.finalize()));
    if actual != diff_id {
        return Err(UnpackError::DiffId {
            layer: blob.display().to_string(),
            expected: diff_id.to_string(),
            actual,
        });
    }
    Ok(hashing.bytes)
}

/// Applies one uncompressed layer stream onto `root`.
fn apply_tar(stream: &mut dyn Read, root: &Root) -> Result<(), UnpackError> {
    let mut archive = tar::Archive::new(stream);
    let mut written = Written::default();
    let mut dir_times: Vec<DirTime> = Vec::new();
    for entry in archive.entries().map_err(io_err("reading the layer"))? {
        let mut entry = entry.map_err(io_err("reading a layer entry"))?;
        let raw = entry
            .path()
            .map_err(io_err("reading a layer entry's path"))?
            .into_owned();
        let Some(rel) = clean(&raw)? else { continue };
        let ctx = || format!("unpacking {}", rel.display());
        let (parent_rel, name) = root::split(&rel).map_err(io_err(ctx()))?;
        let name_bytes = name.as_encoded_bytes();
        if name_bytes == b".wh..wh..opq" {
            opaque(root, parent_rel, &written).map_err(io_err(format!(
                "applying opaque directory {}",
                parent_rel.display()
            )))?;
            continue;
        }
        if let Some(hidden) = name_bytes.strip_prefix(b".wh.") {
            if matches!(hidden, b"" | b"." | b"..") {
                return Err(UnpackError::Escape(rel.display().to_string()));
            }
            // SAFETY: `hidden` is a suffix of an OsStr after an ASCII prefix.
            let hidden = unsafe { OsStr::from_encoded_bytes_unchecked(hidden) };
            whiteout(root, parent_rel, hidden)
                .map_err(io_err(format!("applying whiteout {}", rel.display())))?;
            continue;
        }
        let kind = entry.header().entry_type();
        let parent = root.dir(parent_rel, true).map_err(io_err(ctx()))?;
        let made = if kind.is_file() || kind == tar::EntryType::Continuous {
            write_file(&mut entry, &parent, name)
        } else if kind.is_dir() {
            write_dir(&entry, &parent, name).map(|ident| {
                let meta = Meta::of(entry.header()).ok();
                if let Some(meta) = meta {
                    dir_times.push(DirTime {
                        rel: rel.clone(),
                        ident,
                        meta,
                    });
                }
            })
        } else if kind.is_symlink() {
            write_symlink(&entry, &parent, name)
        } else if kind.is_hard_link() {
            let link = entry
                .link_name()
                .map_err(io_err(ctx()))?
                .ok_or_else(|| UnpackError::Escape(rel.display().to_string()))?;
            let src =
                clean(&link)?.ok_or_else(|| UnpackError::Escape(link.display().to_string()))?;
            write_hard_link(root, &src, &parent, name)
        } else if kind.is_block_special() || kind.is_character_special() || kind.is_fifo() {
            write_special(&entry, &parent, name)
        } else {
            tracing::debug!(path = %rel.display(), ?kind, "skipping a layer entry of an unhandled type");
            continue;
        };
        made.map_err(io_err(ctx()))?;
        written.add(root, &parent, name).map_err(io_err(ctx()))?;
    }
    // Innermost first: setting a child's time does not touch its parent's, but creating
    // entries did. Each directory is found again inside the root and must still be the one
    // this layer made.
    for d in dir_times.iter().rev() {
        let Ok(fd) = root.dir(&d.rel, false) else {
            continue;
        };
        if root::ident_of(&fd).ok() == Some(d.ident) {
            rustix::fs::futimens(&fd, &d.meta.times()).map_err(|e| {
                io_err(format!("setting the time of {}", d.rel.display()))(e.into())
            })?;
        }
    }
    Ok(())
}

/// Hides what lower layers put in directory `parent_rel` (a missing one hides nothing).
fn opaque(root: &Root, parent_rel: &Path, written: &Written) -> io::Result<()> {
    match root.dir(parent_rel, false) {
        Ok(dir) => root::prune_opaque(&dir, written, 0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes `hidden` from directory `parent_rel`, whatever it is (a missing one is fine).
fn whiteout(root: &Root, parent_rel: &Path, hidden: &OsStr) -> io::Result<()> {
    match root.dir(parent_rel, false) {
        Ok(dir) => root::remove_at(&dir, hidden),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes room for a new entry at `name`: whatever lower layers had there goes, except a
/// directory that a directory entry lands on. Returns whether such a directory is kept.
fn replace(parent: &OwnedFd, name: &OsStr, keep_dir: bool) -> io::Result<bool> {
    if let Some(st) = root::stat_at(parent, name)? {
        if keep_dir && FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            return Ok(true);
        }
        root::remove_at(parent, name)?;
    }
    Ok(false)
}

fn write_file<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    parent: &OwnedFd,
    name: &OsStr,
) -> io::Result<()> {
    let meta = Meta::of(entry.header())?;
    replace(parent, name, false)?;
    let mut file = root::create_file(parent, name)?;
    io::copy(entry, &mut file)?;
    meta.apply_fd(&OwnedFd::from(file))
}

/// Makes (or keeps) directory `name`; returns its identity.
fn write_dir<R: Read>(
    entry: &tar::Entry<'_, R>,
    parent: &OwnedFd,
    name: &OsStr,
) -> io::Result<root::Ident> {
    let meta = Meta::of(entry.header())?;
    if !replace(parent, name, true)? {
        rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))?;
    }
    let dir = root::open_child_dir(parent, name)?;
    meta.apply_fd(&dir)?;
    root::ident_of(&dir)
}

fn write_symlink<R: Read>(
    entry: &tar::Entry<'_, R>,
    parent: &OwnedFd,
    name: &OsStr,
) -> io::Result<()> {
    let meta = Meta::of(entry.header())?;
    let target = entry
        .link_name()?
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a symlink without a target"))?;
    replace(parent, name, false)?;
    rustix::fs::symlinkat(target.as_ref(), parent, name)?;
    meta.apply_at(parent, name, true)
}

/// A hard link to an earlier entry, found inside the root (its last name not followed).
fn write_hard_link(root: &Root, src: &Path, parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let (src_parent_rel, src_name) = root::split(src)?;
    let src_parent = root.dir(src_parent_rel, false)?;
    replace(parent, name, false)?;
    Ok(rustix::fs::linkat(
        &src_parent,
        src_name,
        parent,
        name,
        AtFlags::empty(),
    )?)
}

/// A block or character device or a FIFO.
fn write_special<R: Read>(
    entry: &tar::Entry<'_, R>,
    parent: &OwnedFd,
    name: &OsStr,
) -> io::Result<()> {
    let h = entry.header();
    let meta = Meta::of(h)?;
    let kind = h.entry_type();
    // A FIFO has no device numbers (and some writers leave the fields blank).
    let (file_type, dev) = if kind.is_fifo() {
        (FileType::Fifo, 0)
    } else {
        let dev = rustix::fs::makedev(
            h.device_major()?.unwrap_or(0),
            h.device_minor()?.unwrap_or(0),
        );
        let t = if kind.is_block_special() {
            FileType::BlockDevice
        } else {
            FileType::CharacterDevice
        };
        (t, dev)
    };
    replace(parent, name, false)?;
    rustix::fs::mknodat(parent, name, file_type, Mode::from_raw_mode(0o600), dev)?;
    meta.apply_at(parent, name, false)
}

#[cfg(test)]
mod campaign;
#[cfg(test)]
mod tests;
