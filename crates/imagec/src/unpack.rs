//! Applies a layer tarball onto a root filesystem directory, as overlay semantics want:
//! `.wh.NAME` deletes NAME from lower layers, `.wh..wh..opq` hides a directory's lower
//! contents. The uncompressed stream is hashed on the way through, so the layer's diff ID is
//! checked in the same single pass.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

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
fn decompressed(path: &Path) -> io::Result<Box<dyn Read>> {
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

/// Refuses a path whose parent directories (already on disk) include a symlink: writing
/// through it could land outside the root.
fn check_parents(root: &Path, rel: &Path) -> Result<(), UnpackError> {
    let mut cur = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            if let Ok(m) = fs::symlink_metadata(&cur) {
                if m.file_type().is_symlink() {
                    return Err(UnpackError::Escape(rel.display().to_string()));
                }
            }
        }
    }
    Ok(())
}

fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
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

/// Applies the layer blob at `blob` onto `root`; returns the uncompressed size. Fails if the
/// layer's content does not hash to `diff_id`.
pub fn apply_layer(blob: &Path, root: &Path, diff_id: &str) -> Result<u64, UnpackError> {
    let reader = decompressed(blob).map_err(io_err(format!("opening layer {}", blob.display())))?;
    let mut hashing = Hashing {
        inner: reader,
        hash: Sha256::new(),
        bytes: 0,
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_preserve_ownerships(true);
        archive.set_unpack_xattrs(false);
        archive.set_overwrite(true);
        let mut created: HashSet<PathBuf> = HashSet::new();
        let mut opaque: Vec<PathBuf> = Vec::new();
        for entry in archive.entries().map_err(io_err("reading the layer"))? {
            let mut entry = entry.map_err(io_err("reading a layer entry"))?;
            let raw = entry
                .path()
                .map_err(io_err("reading a layer entry's path"))?
                .into_owned();
            let Some(rel) = clean(&raw)? else { continue };
            check_parents(root, &rel)?;
            let name = rel
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
            if name == ".wh..wh..opq" {
                opaque.push(parent);
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                remove_any(&root.join(&parent).join(hidden))
                    .map_err(io_err(format!("applying whiteout {}", rel.display())))?;
                continue;
            }
            let dest = root.join(&rel);
            let kind = entry.header().entry_type();
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
            if kind.is_block_special() || kind.is_character_special() || kind.is_fifo() {
                let h = entry.header();
                let mode = h.mode().unwrap_or(0o644);
                let (major, minor) = (
                    h.device_major().ok().flatten().unwrap_or(0),
                    h.device_minor().ok().flatten().unwrap_or(0),
                );
                let t = if kind.is_block_special() {
                    libc::S_IFBLK
                } else if kind.is_character_special() {
                    libc::S_IFCHR
                } else {
                    libc::S_IFIFO
                };
                mknod(&dest, mode, t, major, minor)
                    .map_err(io_err(format!("creating device {}", dest.display())))?;
                if let (Ok(uid), Ok(gid)) = (h.uid(), h.gid()) {
                    let _ = std::os::unix::fs::lchown(&dest, Some(uid as u32), Some(gid as u32));
                }
            } else if !entry
                .unpack_in(root)
                .map_err(io_err(format!("unpacking {}", rel.display())))?
            {
                return Err(UnpackError::Escape(rel.display().to_string()));
            }
            created.insert(rel);
        }
        for dir in opaque {
            let full = root.join(&dir);
            let Ok(children) = fs::read_dir(&full) else {
                continue;
            };
            for child in children.flatten() {
                let rel = dir.join(child.file_name());
                if !created.iter().any(|c| c.starts_with(&rel)) {
                    remove_any(&child.path()).map_err(io_err(format!(
                        "applying opaque directory {}",
                        dir.display()
                    )))?;
                }
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(dir: &Path, name: &str, entries: &[(&str, Option<&[u8]>)]) -> (PathBuf, String) {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            match data {
                Some(d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    h.set_mode(0o644);
                    h.set_cksum();
                    b.append_data(&mut h, path, *d).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    h.set_cksum();
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
            }
        }
        let raw = b.into_inner().unwrap();
        let diff = format!("sha256:{}", hex::encode(Sha256::digest(&raw)));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &raw).unwrap();
        let p = dir.join(name);
        fs::write(&p, gz.finish().unwrap()).unwrap();
        (p, diff)
    }

    #[test]
    fn whiteouts_and_opaque_directories() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir(&root).unwrap();
        let (l1, d1) = layer(
            t.path(),
            "l1",
            &[
                ("etc/", None),
                ("etc/gone", Some(b"x")),
                ("etc/kept", Some(b"k")),
                ("opq/", None),
                ("opq/old", Some(b"o")),
            ],
        );
        let (l2, d2) = layer(
            t.path(),
            "l2",
            &[
                ("etc/.wh.gone", Some(b"")),
                ("opq/new", Some(b"n")),
                ("opq/.wh..wh..opq", Some(b"")),
                ("etc/kept", Some(b"replaced")),
            ],
        );
        apply_layer(&l1, &root, &d1).unwrap();
        apply_layer(&l2, &root, &d2).unwrap();
        assert!(!root.join("etc/gone").exists());
        assert_eq!(fs::read(root.join("etc/kept")).unwrap(), b"replaced");
        assert!(
            !root.join("opq/old").exists(),
            "opaque dir hides lower content"
        );
        assert!(root.join("opq/new").exists(), "but keeps its own layer's");
        assert!(!root.join("etc/.wh.gone").exists());
    }

    #[test]
    fn wrong_diff_id_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let (l1, _) = layer(t.path(), "l1", &[("a", Some(b"x"))]);
        let err = apply_layer(&l1, t.path(), &format!("sha256:{}", "0".repeat(64))).unwrap_err();
        assert!(matches!(err, UnpackError::DiffId { .. }), "{err}");
    }

    #[test]
    fn escapes_are_refused() {
        assert!(matches!(
            clean(Path::new("../etc/passwd")),
            Err(UnpackError::Escape(_))
        ));
        assert_eq!(
            clean(Path::new("./a/b")).unwrap(),
            Some(PathBuf::from("a/b"))
        );
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        assert!(matches!(
            check_parents(&root, Path::new("link/passwd")),
            Err(UnpackError::Escape(_))
        ));
    }
}
