//! Applies a layer tarball onto a root filesystem directory, as overlay semantics want:
//! `.wh.NAME` deletes NAME from lower layers, `.wh..wh..opq` hides a directory's lower
//! contents. The uncompressed stream is hashed on the way through, so the layer's diff ID is
//! checked in the same single pass.
//!
//! Paths are resolved *inside* the root: a symlink met on the way is followed as the
//! container would see it (an absolute target starts again at the root), and a `..` that
//! would climb above the root is refused, so a layer can never write outside it.

use std::collections::{HashSet, VecDeque};
use std::ffi::{CString, OsString};
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::store::remove_any;
use sha2::{Digest, Sha256};

/// Symlinks followed while resolving one path, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

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

/// Where `rel` (a clean relative path) really is under `root`, following the symlinks that
/// already exist there as the container would: absolute targets restart at `root`, and a
/// `..` above `root` is an escape. Missing components are taken literally.
fn resolve_in_root(root: &Path, rel: &Path) -> Result<PathBuf, UnpackError> {
    let escape = || UnpackError::Escape(rel.display().to_string());
    let mut pending: VecDeque<OsString> =
        rel.components().map(|c| c.as_os_str().to_owned()).collect();
    let mut cur = PathBuf::new();
    let mut hops = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            if !cur.pop() {
                return Err(escape());
            }
            continue;
        }
        if c == "." || c.is_empty() {
            continue;
        }
        let candidate = root.join(&cur).join(&c);
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(escape());
                }
                let target = fs::read_link(&candidate)
                    .map_err(io_err(format!("reading link {}", candidate.display())))?;
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                let mut parts: Vec<OsString> = target
                    .components()
                    .filter_map(|t| match t {
                        Component::Normal(p) => Some(p.to_owned()),
                        Component::ParentDir => Some(OsString::from("..")),
                        _ => None,
                    })
                    .collect();
                while let Some(p) = parts.pop() {
                    pending.push_front(p);
                }
            }
            _ => cur.push(&c),
        }
    }
    Ok(root.join(cur))
}

/// The on-disk place of entry `rel`: its parent resolved inside `root`, its own name literal
/// (an entry replaces a symlink of its name rather than writing through it).
fn place(root: &Path, rel: &Path) -> Result<PathBuf, UnpackError> {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let name = rel
        .file_name()
        .ok_or_else(|| UnpackError::Escape(rel.display().to_string()))?;
    Ok(resolve_in_root(root, parent)?.join(name))
}

fn mknod(path: &Path, mode: u32, kind: libc::mode_t, major: u32, minor: u32) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let dev = libc::makedev(major, minor);
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::mknod(c.as_ptr(), kind | (mode & 0o7777) as libc::mode_t, dev) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates a block or character device or a FIFO for `entry` at `dest`.
fn make_special<R: Read>(entry: &tar::Entry<'_, R>, dest: &Path) -> io::Result<()> {
    let h = entry.header();
    let kind = h.entry_type();
    let mode = h.mode()?;
    // A FIFO has no device numbers (and some writers leave the fields blank).
    let (major, minor) = if kind.is_fifo() {
        (0, 0)
    } else {
        (
            h.device_major()?.unwrap_or(0),
            h.device_minor()?.unwrap_or(0),
        )
    };
    let t = if kind.is_block_special() {
        libc::S_IFBLK
    } else if kind.is_character_special() {
        libc::S_IFCHR
    } else {
        libc::S_IFIFO
    };
    mknod(dest, mode, t, major, minor)?;
    std::os::unix::fs::lchown(dest, Some(h.uid()? as u32), Some(h.gid()? as u32))?;
    // mknod obeys the umask; the layer's mode is the truth.
    fs::set_permissions(
        dest,
        std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
    )
}

/// What the current layer wrote: the entries themselves, and the directories above them.
#[derive(Default)]
struct Written {
    entries: HashSet<PathBuf>,
    ancestors: HashSet<PathBuf>,
}

impl Written {
    fn add(&mut self, root: &Path, dest: &Path) {
        self.entries.insert(dest.to_path_buf());
        let mut p = dest.parent();
        while let Some(cur) = p {
            if cur == root || !self.ancestors.insert(cur.to_path_buf()) {
                break;
            }
            p = cur.parent();
        }
    }
}

/// Empties opaque directory `dir` of everything lower layers put there, at any depth,
/// keeping what the current layer wrote.
fn prune_opaque(dir: &Path, written: &Written) -> io::Result<()> {
    let Ok(children) = fs::read_dir(dir) else {
        return Ok(());
    };
    for child in children {
        let path = child?.path();
        let is_dir = fs::symlink_metadata(&path)?.is_dir();
        if written.entries.contains(&path) || written.ancestors.contains(&path) {
            if is_dir {
                prune_opaque(&path, written)?;
            }
        } else {
            remove_any(&path)?;
        }
    }
    Ok(())
}

/// Sets a directory's modification time (after its contents are written, which change it).
fn set_dir_mtime(dir: &Path, mtime: u64) -> io::Result<()> {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime);
    fs::File::open(dir)?.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
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
    apply_tar(&mut hashing, root)?;
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
fn apply_tar(stream: &mut dyn Read, root: &Path) -> Result<(), UnpackError> {
    let mut archive = tar::Archive::new(stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let mut written = Written::default();
    let mut opaque: Vec<PathBuf> = Vec::new();
    let mut dir_times: Vec<(PathBuf, u64)> = Vec::new();
    for entry in archive.entries().map_err(io_err("reading the layer"))? {
        let mut entry = entry.map_err(io_err("reading a layer entry"))?;
        let raw = entry
            .path()
            .map_err(io_err("reading a layer entry's path"))?
            .into_owned();
        let Some(rel) = clean(&raw)? else { continue };
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if name == ".wh..wh..opq" {
            let parent = rel.parent().unwrap_or(Path::new(""));
            opaque.push(resolve_in_root(root, parent)?);
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let target = place(root, &rel.with_file_name(hidden))?;
            remove_any(&target).map_err(io_err(format!("applying whiteout {}", rel.display())))?;
            continue;
        }
        let kind = entry.header().entry_type();
        let known = kind.is_file()
            || kind.is_dir()
            || kind.is_symlink()
            || kind.is_hard_link()
            || kind.is_block_special()
            || kind.is_character_special()
            || kind.is_fifo()
            || kind == tar::EntryType::Continuous;
        if !known {
            tracing::debug!(path = %rel.display(), ?kind, "skipping a layer entry of an unhandled type");
            continue;
        }
        let dest = place(root, &rel)?;
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        // A new entry replaces what lower layers had, except a directory over a directory.
        let existing_dir = fs::symlink_metadata(&dest)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if !(kind.is_dir() && existing_dir) {
            remove_any(&dest).map_err(io_err(format!("replacing {}", dest.display())))?;
        }
        let ctx = || format!("unpacking {}", rel.display());
        if kind.is_hard_link() {
            let link = entry
                .link_name()
                .map_err(io_err(ctx()))?
                .ok_or_else(|| UnpackError::Escape(rel.display().to_string()))?;
            let src =
                clean(&link)?.ok_or_else(|| UnpackError::Escape(link.display().to_string()))?;
            fs::hard_link(place(root, &src)?, &dest).map_err(io_err(ctx()))?;
        } else if kind.is_block_special() || kind.is_character_special() || kind.is_fifo() {
            make_special(&entry, &dest).map_err(io_err(ctx()))?;
        } else {
            entry.unpack(&dest).map_err(io_err(ctx()))?;
            if kind.is_dir() {
                dir_times.push((dest.clone(), entry.header().mtime().unwrap_or(0)));
            }
        }
        written.add(root, &dest);
    }
    for dir in opaque {
        prune_opaque(&dir, &written).map_err(io_err(format!(
            "applying opaque directory {}",
            dir.display()
        )))?;
    }
    for (dir, mtime) in dir_times.iter().rev() {
        set_dir_mtime(dir, *mtime)
            .map_err(io_err(format!("setting the time of {}", dir.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    enum E<'a> {
        Dir(&'a str),
        File(&'a str, &'a [u8]),
        Owned(&'a str, u32, u64),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
        Fifo(&'a str),
    }

    fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(1_700_000_000);
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(0);
            h.set_mode(0o755);
            let (path, data): (&str, &[u8]) = match e {
                E::Dir(p) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    (p, &[])
                }
                E::File(p, d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    h.set_mode(0o644);
                    (p, d)
                }
                E::Owned(p, mode, id) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(*mode);
                    h.set_uid(*id);
                    h.set_gid(*id);
                    (p, &[])
                }
                E::Symlink(p, t) | E::Hardlink(p, t) => {
                    let kind = if matches!(e, E::Symlink(..)) {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    };
                    h.set_entry_type(kind);
                    h.set_link_name(t).unwrap();
                    (p, &[])
                }
                E::Fifo(p) => {
                    h.set_entry_type(tar::EntryType::Fifo);
                    h.set_mode(0o600);
                    (p, &[])
                }
            };
            // Raw path bytes: the builder itself refuses `..`, a hostile layer does not.
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// Writes a gzip layer; returns its path and diff ID.
    fn layer(dir: &Path, name: &str, entries: &[E<'_>]) -> (PathBuf, String) {
        let raw = tar_of(entries);
        let diff = format!("sha256:{}", hex::encode(Sha256::digest(&raw)));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &raw).unwrap();
        let p = dir.join(name);
        fs::write(&p, gz.finish().unwrap()).unwrap();
        (p, diff)
    }

    fn rootdir() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir(&root).unwrap();
        (t, root)
    }

    #[test]
    fn whiteouts_and_opaque_directories() {
        let (t, root) = rootdir();
        let (l1, d1) = layer(
            t.path(),
            "l1",
            &[
                E::Dir("etc/"),
                E::File("etc/gone", b"x"),
                E::Dir("etc/gonedir/"),
                E::File("etc/gonedir/f", b"x"),
                E::File("etc/kept", b"k"),
                E::Dir("opq/"),
                E::File("opq/old", b"o"),
                E::Dir("opq/sub/"),
                E::File("opq/sub/deep", b"o"),
            ],
        );
        let (l2, d2) = layer(
            t.path(),
            "l2",
            &[
                E::File("etc/.wh.gone", b""),
                E::File("etc/.wh.gonedir", b""),
                E::File("opq/new", b"n"),
                E::File("opq/.wh..wh..opq", b""),
                E::File("opq/sub/fresh", b"f"),
                E::File("etc/kept", b"replaced"),
            ],
        );
        apply_layer(&l1, &root, &d1).unwrap();
        apply_layer(&l2, &root, &d2).unwrap();
        assert!(!root.join("etc/gone").exists());
        assert!(
            !root.join("etc/gonedir").exists(),
            "a whiteout removes a whole directory"
        );
        assert_eq!(fs::read(root.join("etc/kept")).unwrap(), b"replaced");
        assert!(
            !root.join("opq/old").exists(),
            "opaque dir hides lower content"
        );
        assert!(
            !root.join("opq/sub/deep").exists(),
            "also in lower subdirectories"
        );
        assert!(root.join("opq/new").exists(), "but keeps its own layer's");
        assert!(root.join("opq/sub/fresh").exists());
        assert!(!root.join("etc/.wh.gone").exists());
        assert!(!root.join("opq/.wh..wh..opq").exists());
    }

    #[test]
    fn links_ownership_modes_and_fifos_are_kept() {
        let (t, root) = rootdir();
        let (l1, d1) = layer(
            t.path(),
            "l1",
            &[
                E::Owned("tmp/", 0o1777, 0),
                E::Owned("home/", 0o755, 0),
                E::Owned("home/vic/", 0o750, 1000),
                E::File("bin/busybox", b"#!"),
                E::Symlink("bin/sh", "/bin/busybox"),
                E::Hardlink("bin/ash", "bin/busybox"),
                E::Fifo("run/fifo"),
            ],
        );
        apply_layer(&l1, &root, &d1).unwrap();
        let tmp = fs::metadata(root.join("tmp")).unwrap();
        assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
        let home = fs::metadata(root.join("home/vic")).unwrap();
        assert_eq!(
            (home.uid(), home.gid(), home.mode() & 0o777),
            (1000, 1000, 0o750)
        );
        assert_eq!(home.mtime(), 1_700_000_000);
        assert_eq!(
            fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        let (a, b) = (
            fs::metadata(root.join("bin/ash")).unwrap(),
            fs::metadata(root.join("bin/busybox")).unwrap(),
        );
        assert_eq!(a.ino(), b.ino(), "a hard link shares the inode");
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(
            &fs::symlink_metadata(root.join("run/fifo"))
                .unwrap()
                .file_type()
        ));
    }

    #[test]
    fn symlinks_are_followed_inside_the_root() {
        let (t, root) = rootdir();
        let (l1, d1) = layer(
            t.path(),
            "l1",
            &[
                E::Dir("usr/lib/"),
                E::Dir("etc/"),
                E::Symlink("lib", "/usr/lib"),
                E::Symlink("hostetc", "/etc"),
            ],
        );
        let (l2, d2) = layer(
            t.path(),
            "l2",
            &[
                E::File("lib/libc.so", b"c"),
                E::File("hostetc/passwd-vic-test", b"p"),
            ],
        );
        apply_layer(&l1, &root, &d1).unwrap();
        apply_layer(&l2, &root, &d2).unwrap();
        assert_eq!(fs::read(root.join("usr/lib/libc.so")).unwrap(), b"c");
        assert_eq!(fs::read(root.join("etc/passwd-vic-test")).unwrap(), b"p");
        assert!(
            !Path::new("/etc/passwd-vic-test").exists(),
            "an absolute link restarts at the root"
        );
    }

    #[test]
    fn path_escapes_are_refused() {
        for (name, entries) in [
            ("dotdot", vec![E::File("../escaped", b"x")]),
            (
                "deep-dotdot",
                vec![E::Dir("a/"), E::File("a/../../escaped", b"x")],
            ),
            (
                "through-link",
                vec![E::Symlink("up", "../../.."), E::File("up/escaped", b"x")],
            ),
            ("hardlink", vec![E::Hardlink("h", "../outside")]),
            ("whiteout", vec![E::File("../.wh.outside", b"")]),
        ] {
            let (t, root) = rootdir();
            fs::write(t.path().join("outside"), b"keep").unwrap();
            let (l, d) = layer(t.path(), "l", &entries);
            let err = apply_layer(&l, &root, &d).unwrap_err();
            assert!(matches!(err, UnpackError::Escape(_)), "{name}: {err}");
            assert!(!t.path().join("escaped").exists(), "{name}");
            assert_eq!(
                fs::read(t.path().join("outside")).unwrap(),
                b"keep",
                "{name}"
            );
        }
    }

    #[test]
    fn wrong_diff_id_is_refused() {
        let (t, root) = rootdir();
        let (l1, _) = layer(t.path(), "l1", &[E::File("a", b"x")]);
        let err = apply_layer(&l1, &root, &format!("sha256:{}", "0".repeat(64))).unwrap_err();
        assert!(matches!(err, UnpackError::DiffId { .. }), "{err}");
    }

    #[test]
    fn compression_is_sniffed() {
        let (t, root) = rootdir();
        let raw = tar_of(&[E::File("plain", b"p")]);
        let diff = format!("sha256:{}", hex::encode(Sha256::digest(&raw)));
        fs::write(t.path().join("raw"), &raw).unwrap();
        apply_layer(&t.path().join("raw"), &root, &diff).unwrap();
        let raw2 = tar_of(&[E::File("zst", b"z")]);
        let diff2 = format!("sha256:{}", hex::encode(Sha256::digest(&raw2)));
        fs::write(
            t.path().join("zst"),
            zstd::encode_all(&raw2[..], 3).unwrap(),
        )
        .unwrap();
        apply_layer(&t.path().join("zst"), &root, &diff2).unwrap();
        assert!(root.join("plain").exists() && root.join("zst").exists());
    }
}
