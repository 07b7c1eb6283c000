//! `docker save`, `docker load` and `docker import`: images to and from tar archives.
//!
//! ```text
//!   save:   records ─► docker-archive tar, streamed: <v1 id>/{VERSION,json,layer.tar} per
//!           layer (uncompressed: its sha256 is the diff ID; a layer met twice is a symlink),
//!           <config hex>.json, manifest.json, repositories — the layout dockerd 20.10 writes
//!   load:   tar (plain, gzip or zstd) ─► tmp/<x>/archive/ ─► manifest.json read (classic
//!           <v1 id>/layer.tar or docker 25's OCI-layout blobs/sha256/<hex>) ─► every layer
//!           checked against its diff ID ─► pull's build_image (apply, move blobs, commit)
//!   import: rootfs tar ─► one layer blob (kept as it came: plain, gzip or zstd), a fresh
//!           configuration with the --change instructions applied ─► build_image
//!   commit: a container's changes (tar, whiteouts) ─► one more layer on its image, the
//!           container's configuration with the --change instructions applied ─► build_image
//! ```
//!
//! Whatever fails, the work directory under the store's `tmp/` goes, and an image is only
//! recorded once its root filesystem is complete: a bad archive leaves nothing behind.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

use crate::pull::{build_image, diff_ids_of, NewImage, Platform, PullError};
use crate::reference::Reference;
use crate::store::{hex_of, remove_any, ImageRecord, ImageStore, StoreError};
use crate::unpack::decompressed;

/// Symlinks followed while resolving one path inside an archive.
const MAX_LINKS: usize = 40;

/// Errors of save, load and import, in Docker's words.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("No such image: {0}")]
    NoSuchImage(String),
    /// The archive (or the request) is not what it should be.
    #[error("{0}")]
    Invalid(String),
    /// A `--change` instruction Docker would refuse.
    #[error("{0}")]
    Change(String),
    #[error(transparent)]
    Build(#[from] PullError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ArchiveError {
    let context = context.into();
    move |source| ArchiveError::Io { context, source }
}

fn task_failed(e: tokio::task::JoinError) -> ArchiveError {
    ArchiveError::Io {
        context: "a background task failed".into(),
        source: io::Error::other(e),
    }
}

/// A tar reader's complaint, worded as Go's archive/tar (what dockerd answers) words it.
fn tar_err(e: io::Error) -> ArchiveError {
    let msg = e.to_string();
    if msg.contains("checksum mismatch") || msg.contains("numeric field") {
        ArchiveError::Invalid("archive/tar: invalid tar header".into())
    } else if e.kind() == io::ErrorKind::UnexpectedEof
        || msg.contains("entire block")
        || msg.contains("unexpected EOF")
    {
        ArchiveError::Invalid("unexpected EOF".into())
    } else {
        io_err("reading the archive")(e)
    }
}

fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A reader that hashes and counts what passes through.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }
    fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hash.clone().finalize()))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through.
struct HashWriter<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that copies everything it reads into `out`.
struct Tee<R, W> {
    inner: R,
    out: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// How a stream is compressed, by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

fn sniff(head: &[u8]) -> Result<Compression, ArchiveError> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Compression::Gzip)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Compression::Zstd)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Err(ArchiveError::Invalid(
            "xz-compressed archives are not supported: decompress it first (xz -d) or use gzip"
                .into(),
        ))
    } else if head.starts_with(b"BZh") {
        Err(ArchiveError::Invalid(
            "bzip2-compressed archives are not supported: decompress it first (bunzip2) or use gzip"
                .into(),
        ))
    } else {
        Ok(Compression::None)
    }
}

/// Whether the file at `path` starts like a compressed stream.
fn is_compressed(path: &Path) -> io::Result<bool> {
    let mut head = [0u8; 6];
    let mut f = fs::File::open(path)?;
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(!matches!(sniff(&head[..got]), Ok(Compression::None)))
}

/// The digest of a layer blob's uncompressed content, and its size.
fn uncompressed_digest(blob: &Path) -> io::Result<(String, u64)> {
    let mut r = Hashing::new(decompressed(blob)?);
    io::copy(&mut r, &mut io::sink())?;
    Ok((r.digest(), r.bytes))
}

mod changes;
mod commit;
mod import;
mod load;
mod save;
#[cfg(test)]
mod tests;

use changes::*;
use load::*;
use save::*;

pub use commit::{check_commit_changes, commit, CommitOptions};
pub use import::{check_changes, import, ImportOptions};
pub use load::{load, LoadEvent, LoadedImage};
pub use save::{empty_container_config, plan_save, write_save, SavePlan};
