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
use sha2::{Digest, Sha256};

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

// ───────────────────────────── save ─────────────────────────────

/// One layer directory of a saved archive.
struct SaveLayer {
    /// The v1 layer ID (the directory's name).
    dir: String,
    /// The v1 compatibility JSON (`<dir>/json`).
    json: Vec<u8>,
    blob: PathBuf,
    diff_id: String,
    /// Uncompressed size: the size of `layer.tar`.
    size: u64,
}

struct SaveImage {
    id: String,
    config: Vec<u8>,
    /// Modification time of the image's files: its creation time.
    mtime: u64,
    tags: Vec<String>,
    layers: Vec<SaveLayer>,
}

/// What [`write_save`] will write: resolved before the first byte, so unknown images and
/// missing blobs are errors rather than broken archives.
pub struct SavePlan {
    images: Vec<SaveImage>,
}

impl SavePlan {
    /// The IDs of the images saved, in order.
    pub fn ids(&self) -> Vec<String> {
        self.images.iter().map(|i| i.id.clone()).collect()
    }
}

/// Whether `s` names a repository without a tag or digest (`busybox`, `reg:5000/app`).
fn is_name_only(s: &str) -> bool {
    !s.contains('@')
        && match s.rfind(':') {
            Some(i) => s[i + 1..].contains('/'),
            None => true,
        }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// The images `docker save NAME…` means, each with the tags the archive gives it, as dockerd
/// reads names: `name:tag` saves that tag, a bare name every tag of the repository, an ID or
/// a digest reference the image without tags.
fn images_named(
    store: &ImageStore,
    names: &[String],
) -> Result<Vec<(ImageRecord, Vec<String>)>, ArchiveError> {
    let mut out: Vec<(ImageRecord, Vec<String>)> = Vec::new();
    let mut add = |img: ImageRecord, tag: Option<String>| {
        let i = match out.iter().position(|(o, _)| o.id == img.id) {
            Some(i) => i,
            None => {
                out.push((img, Vec::new()));
                out.len() - 1
            }
        };
        if let Some(t) = tag {
            if !out[i].1.contains(&t) {
                out[i].1.push(t);
            }
        }
    };
    let missing = |n: &str| ArchiveError::NoSuchImage(n.to_string());
    for name in names {
        let by_id = name.starts_with("sha256:") || (name.len() == 64 && is_hex(name));
        if by_id {
            add(store.resolve(name).ok_or_else(|| missing(name))?, None);
            continue;
        }
        let r = Reference::parse(name).map_err(|e| ArchiveError::Invalid(e.to_string()))?;
        if is_name_only(name) {
            let repo = r.name();
            let mut tagged: Vec<(ImageRecord, String)> = Vec::new();
            for img in store.list() {
                for t in &img.repo_tags {
                    if Reference::parse(t).is_ok_and(|tr| tr.name() == repo) {
                        tagged.push((img.clone(), t.clone()));
                    }
                }
            }
            if tagged.is_empty() {
                // No such repository: perhaps a short ID.
                let img = is_hex(name)
                    .then(|| store.resolve(name))
                    .flatten()
                    .ok_or_else(|| missing(name))?;
                add(img, None);
            }
            tagged.sort_by(|a, b| a.1.cmp(&b.1));
            for (img, t) in tagged {
                add(img, Some(t));
            }
            continue;
        }
        let img = store.resolve(name).ok_or_else(|| missing(name))?;
        let tag = if r.digest.is_some() { None } else { r.tagged() };
        add(img, tag);
    }
    Ok(out)
}

/// Docker's chain IDs: the first diff ID, then sha256("<parent chain> <diff>") each.
fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => sha256_digest(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// The fields of a configuration a v1 image JSON has.
const V1_FIELDS: &[&str] = &[
    "architecture",
    "author",
    "comment",
    "config",
    "container",
    "container_config",
    "created",
    "docker_version",
    "os",
    "variant",
];

/// The `container_config` a pre-1.10 layer carries: every field empty.
fn empty_container_config() -> Value {
    json!({
        "Hostname": "", "Domainname": "", "User": "",
        "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
        "Tty": false, "OpenStdin": false, "StdinOnce": false,
        "Env": null, "Cmd": null, "Image": "", "Volumes": null, "WorkingDir": "",
        "Entrypoint": null, "OnBuild": null, "Labels": null,
    })
}

/// The v1 IDs and JSON of an image's layers, as dockerd derives them (the top layer carries
/// the image's own fields, lower ones only a zero creation time).
fn v1_layers(config: &Value, diff_ids: &[String]) -> Vec<(String, Vec<u8>)> {
    let chains = chain_ids(diff_ids);
    let mut parent: Option<String> = None;
    let mut out = Vec::with_capacity(chains.len());
    for (i, chain) in chains.iter().enumerate() {
        let mut base = Map::new();
        if i + 1 == chains.len() {
            for k in V1_FIELDS {
                if let Some(v) = config.get(*k) {
                    base.insert(k.to_string(), v.clone());
                }
            }
        } else {
            base.insert("created".into(), json!("1970-01-01T00:00:00Z"));
            base.insert("container_config".into(), empty_container_config());
        }
        let mut for_id = base.clone();
        for_id.insert("layer_id".into(), json!(chain));
        if let Some(p) = &parent {
            for_id.insert("parent".into(), json!(p));
        }
        let id = hex::encode(Sha256::digest(
            serde_json::to_vec(&for_id).unwrap_or_default(),
        ));
        let mut v1 = base;
        v1.insert("id".into(), json!(id));
        if let Some(p) = &parent {
            v1.insert("parent".into(), json!(hex_of(p)));
        }
        if let Some(os) = config.get("os") {
            v1.insert("os".into(), os.clone());
        }
        out.push((id.clone(), serde_json::to_vec(&v1).unwrap_or_default()));
        parent = Some(format!("sha256:{id}"));
    }
    out
}

fn unix_time(created: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(created)
        .map(|t| t.timestamp().max(0) as u64)
        .unwrap_or(0)
}

/// Resolves `names` into what [`write_save`] writes. Blocking: a layer whose uncompressed
/// size was never recorded is read once to measure it.
pub fn plan_save(store: &ImageStore, names: &[String]) -> Result<SavePlan, ArchiveError> {
    let mut images = Vec::new();
    for (img, tags) in images_named(store, names)? {
        if img.diff_ids.is_empty() || img.layers.len() != img.diff_ids.len() {
            return Err(ArchiveError::Invalid(
                "empty export - not implemented".into(),
            ));
        }
        // The configuration exactly as it was received: its digest is the image ID.
        let config = match fs::read(store.blob_path(&img.id)) {
            Ok(raw) if sha256_digest(&raw) == img.id => raw,
            _ => serde_json::to_vec(&img.config)
                .map_err(|e| io_err("encoding the image config")(io::Error::other(e)))?,
        };
        let v1 = v1_layers(&img.config, &img.diff_ids);
        let mut layers = Vec::with_capacity(img.layers.len());
        for (i, ((blob_digest, diff_id), (dir, json))) in
            img.layers.iter().zip(&img.diff_ids).zip(v1).enumerate()
        {
            let blob = store.blob_path(blob_digest);
            if !blob.exists() {
                return Err(ArchiveError::Io {
                    context: format!("layer {blob_digest} of {}", img.id),
                    source: io::Error::new(io::ErrorKind::NotFound, "blob missing from the store"),
                });
            }
            let size = match img.layer_sizes.get(i) {
                Some(s) if img.layer_sizes.len() == img.layers.len() => *s,
                _ => {
                    uncompressed_digest(&blob)
                        .map_err(io_err(format!("reading layer {blob_digest}")))?
                        .1
                }
            };
            layers.push(SaveLayer {
                dir,
                json,
                blob,
                diff_id: diff_id.clone(),
                size,
            });
        }
        images.push(SaveImage {
            mtime: unix_time(&img.created),
            id: img.id,
            config,
            tags,
            layers,
        });
    }
    Ok(SavePlan { images })
}

fn file_header(size: u64, mtime: u64, kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
    mtime: u64,
) -> io::Result<()> {
    let mut h = file_header(data.len() as u64, mtime, tar::EntryType::Regular, 0o644);
    tar.append_data(&mut h, path, data)
}

/// A layer's uncompressed stream, which must be exactly `left` bytes hashing to `diff_id`:
/// anything else is an error before the archive could hold a wrong layer.
struct CheckedLayer {
    inner: Hashing<Box<dyn Read>>,
    left: u64,
    diff_id: String,
}

impl Read for CheckedLayer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? != 0 {
                return Err(io::Error::other("the layer is longer than recorded"));
            }
            let actual = self.inner.digest();
            if actual != self.diff_id {
                return Err(io::Error::other(format!(
                    "layer has diff ID {actual}, expected {}",
                    self.diff_id
                )));
            }
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the layer is shorter than recorded",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Writes the archive of `plan` to `out` (blocking), uncompressed layers decompressed from
/// the store on the fly. An error midway leaves `out` with a truncated archive: stop there.
pub fn write_save(plan: &SavePlan, out: impl Write) -> Result<(), ArchiveError> {
    let w = |e: io::Error| io_err("writing the archive")(e);
    let mut tar = tar::Builder::new(out);
    let mut dirs_written: HashSet<String> = HashSet::new();
    let mut layer_paths: HashMap<String, String> = HashMap::new();
    let mut manifest = Vec::new();
    let mut repositories: Map<String, Value> = Map::new();
    for img in &plan.images {
        for l in &img.layers {
            if !dirs_written.insert(l.dir.clone()) {
                continue;
            }
            let mut h = file_header(0, img.mtime, tar::EntryType::Directory, 0o755);
            tar.append_data(&mut h, format!("{}/", l.dir), io::empty())
                .map_err(w)?;
            append_bytes(&mut tar, &format!("{}/VERSION", l.dir), b"1.0", img.mtime).map_err(w)?;
            append_bytes(&mut tar, &format!("{}/json", l.dir), &l.json, img.mtime).map_err(w)?;
            let path = format!("{}/layer.tar", l.dir);
            if let Some(first) = layer_paths.get(&l.diff_id) {
                // The same content under another v1 ID: a link, as dockerd writes it.
                let mut h = file_header(0, img.mtime, tar::EntryType::Symlink, 0o777);
                tar.append_link(&mut h, &path, format!("../{first}"))
                    .map_err(w)?;
                continue;
            }
            let reader = decompressed(&l.blob)
                .map_err(io_err(format!("reading layer {}", l.blob.display())))?;
            let mut checked = CheckedLayer {
                inner: Hashing::new(reader),
                left: l.size,
                diff_id: l.diff_id.clone(),
            };
            let mut h = file_header(l.size, img.mtime, tar::EntryType::Regular, 0o644);
            tar.append_data(&mut h, &path, &mut checked)
                .map_err(io_err(format!("saving layer {}", l.diff_id)))?;
            layer_paths.insert(l.diff_id.clone(), path);
        }
        let config_name = format!("{}.json", hex_of(&img.id));
        append_bytes(&mut tar, &config_name, &img.config, img.mtime).map_err(w)?;
        let top = img.layers.last().map(|l| l.dir.clone()).unwrap_or_default();
        for t in &img.tags {
            if let Ok(r) = Reference::parse(t) {
                let repo = repositories.entry(r.name()).or_insert_with(|| json!({}));
                repo[r.tag_or_latest()] = json!(top);
            }
        }
        manifest.push(json!({
            "Config": config_name,
            "RepoTags": if img.tags.is_empty() { Value::Null } else { json!(img.tags) },
            "Layers": img.layers.iter().map(|l| format!("{}/layer.tar", l.dir)).collect::<Vec<_>>(),
        }));
    }
    if !repositories.is_empty() {
        let mut raw = serde_json::to_vec(&repositories).unwrap_or_default();
        raw.push(b'\n');
        append_bytes(&mut tar, "repositories", &raw, 0).map_err(w)?;
    }
    let mut raw = serde_json::to_vec(&manifest).unwrap_or_default();
    raw.push(b'\n');
    append_bytes(&mut tar, "manifest.json", &raw, 0).map_err(w)?;
    tar.into_inner().map_err(w)?.flush().map_err(w)
}

// ───────────────────────────── load ─────────────────────────────

/// What a load reports as it goes (Docker's messages).
#[derive(Debug, Clone, PartialEq)]
pub enum LoadEvent {
    /// `Loading layer`: `current` of `total` bytes of the layer with `diff_id`.
    Layer {
        diff_id: String,
        current: u64,
        total: u64,
    },
    /// `The image TAG already exists, renaming the old one with ID OLD to empty string`.
    Renamed { tag: String, old_id: String },
    /// `Loaded image: TAG`.
    Tagged(String),
    /// `Loaded image ID: ID` (archives without tags).
    Untagged(String),
}

/// One image a load added (or found already there).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedImage {
    pub id: String,
    pub tags: Vec<String>,
}

struct FileInfo {
    digest: String,
    size: u64,
}

/// An archive unpacked under a work directory: its regular files and its links.
struct Extracted {
    dir: PathBuf,
    files: HashMap<String, FileInfo>,
    /// Link path → the root-relative path it points at.
    links: HashMap<String, String>,
}

/// `a/./b/../c` → `a/c`. A `..` above the root is `None`, or with `clamp` stays at the root
/// (as a symlink target is resolved inside the archive).
fn normalize(p: &str, clamp: bool) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() && !clamp {
                    return None;
                }
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

impl Extracted {
    /// Where `path` really is in the archive, following its links (inside the archive).
    fn resolve(&self, path: &str) -> Result<String, ArchiveError> {
        let mut cur = normalize(path, true).unwrap_or_default();
        for _ in 0..MAX_LINKS {
            let parts: Vec<&str> = cur.split('/').collect();
            let hit = (1..=parts.len()).find_map(|i| {
                self.links
                    .get(&parts[..i].join("/"))
                    .map(|t| (t.clone(), parts[i..].join("/")))
            });
            match hit {
                Some((target, rest)) => {
                    cur = normalize(&format!("{target}/{rest}"), true).unwrap_or_default()
                }
                None => return Ok(cur),
            }
        }
        Err(ArchiveError::Invalid(format!(
            "too many levels of symbolic links: {path}"
        )))
    }

    /// The file `path` names: its place on disk and what it holds.
    fn file(&self, path: &str) -> Result<(PathBuf, &FileInfo), ArchiveError> {
        let real = self.resolve(path)?;
        match self.files.get(&real) {
            Some(info) => Ok((self.dir.join(&real), info)),
            None => Err(ArchiveError::Invalid(format!(
                "open {path}: no such file or directory"
            ))),
        }
    }
}

/// Unpacks the archive's files under `dir` (blocking), then reads `input` to its end
/// whatever happened: the client is still sending it, and waits for the answer.
fn extract<R: Read>(mut input: R, dir: &Path) -> Result<Extracted, ArchiveError> {
    let result = extract_from(&mut input, dir);
    let _ = io::copy(&mut input, &mut io::sink());
    result
}

fn extract_from(input: &mut dyn Read, dir: &Path) -> Result<Extracted, ArchiveError> {
    fs::create_dir_all(dir).map_err(io_err("creating the work directory"))?;
    let mut raw = BufReader::with_capacity(256 * 1024, input);
    let head = raw.fill_buf().map_err(io_err("reading the archive"))?;
    let stream: Box<dyn Read + '_> = match sniff(head)? {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(raw)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(raw).map_err(io_err("reading the archive"))?,
        ),
    };
    let mut out = Extracted {
        dir: dir.to_path_buf(),
        files: HashMap::new(),
        links: HashMap::new(),
    };
    let mut archive = tar::Archive::new(stream);
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).to_string();
        let insecure =
            || ArchiveError::Invalid(format!("archive/tar: insecure file path {raw_path:?}"));
        let rel = normalize(&raw_path, false).ok_or_else(insecure)?;
        if rel.is_empty() {
            continue;
        }
        let kind = entry.header().entry_type();
        let dest = dir.join(&rel);
        if kind.is_dir() {
            fs::create_dir_all(&dest).map_err(io_err(format!("creating {rel}")))?;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(io_err(format!("creating {rel}")))?;
            }
            let _ = remove_any(&dest);
            let file = fs::File::create(&dest).map_err(io_err(format!("creating {rel}")))?;
            let mut w = HashWriter {
                inner: BufWriter::with_capacity(256 * 1024, file),
                hash: Sha256::new(),
                bytes: 0,
            };
            let want = entry.size();
            let n = io::copy(&mut entry, &mut w).map_err(tar_err)?;
            if n != want {
                return Err(ArchiveError::Invalid("unexpected EOF".into()));
            }
            w.flush().map_err(io_err(format!("writing {rel}")))?;
            let digest = format!("sha256:{}", hex::encode(w.hash.finalize()));
            out.links.remove(&rel);
            out.files.insert(rel, FileInfo { digest, size: n });
        } else if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).to_string())
                .unwrap_or_default();
            let from_root = if kind.is_hard_link() || target.starts_with('/') {
                target
            } else {
                let parent = rel.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                format!("{parent}/{target}")
            };
            let resolved = normalize(&from_root, true).unwrap_or_default();
            out.files.remove(&rel);
            out.links.insert(rel, resolved);
        }
    }
    // Trailing padding after the end-of-archive blocks.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(tar_err)?;
    Ok(out)
}

#[derive(Deserialize)]
struct ManifestItem {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// One image of an archive, checked and ready to be added.
struct Checked {
    id: String,
    config: Value,
    config_path: PathBuf,
    diff_ids: Vec<String>,
    /// Layer blob digest, where the file is, its size in the archive.
    layers: Vec<(String, PathBuf, u64)>,
    tags: Vec<Reference>,
}

/// Checks a layer file against its diff ID (decompressing it if it came compressed).
fn verify_layer(
    path: &Path,
    raw_digest: &str,
    diff_id: &str,
    i: usize,
) -> Result<(), ArchiveError> {
    let actual = if raw_digest == diff_id {
        return Ok(());
    } else if is_compressed(path).map_err(io_err(format!("reading layer {i}")))? {
        uncompressed_digest(path)
            .map_err(|e| ArchiveError::Invalid(format!("layer {i}: {e}")))?
            .0
    } else {
        raw_digest.to_string()
    };
    if actual == diff_id {
        Ok(())
    } else {
        Err(ArchiveError::Invalid(format!(
            "invalid diffID for layer {i}: expected {diff_id:?}, got {actual:?}"
        )))
    }
}

/// Checks one manifest entry: its configuration, its tags, every layer against its diff ID.
async fn check_item(
    store: &ImageStore,
    archive: &Extracted,
    item: &ManifestItem,
) -> Result<Checked, ArchiveError> {
    let (config_path, info) = archive.file(&item.config)?;
    let raw = fs::read(&config_path).map_err(io_err(format!("reading {}", item.config)))?;
    let config: Value = serde_json::from_slice(&raw)
        .map_err(|e| ArchiveError::Invalid(format!("invalid image JSON {}: {e}", item.config)))?;
    if config.get("rootfs").is_none() {
        return Err(ArchiveError::Invalid(
            "invalid image JSON, no RootFS key".into(),
        ));
    }
    let os = config.get("os").and_then(Value::as_str).unwrap_or("linux");
    if os != "linux" {
        return Err(ArchiveError::Invalid(format!(
            "cannot load {os} image on linux"
        )));
    }
    let diff_ids = diff_ids_of(&config);
    if item.layers.len() != diff_ids.len() {
        return Err(ArchiveError::Invalid(format!(
            "invalid manifest, layers length mismatch: expected {}, got {}",
            item.layers.len(),
            diff_ids.len()
        )));
    }
    let mut tags = Vec::new();
    for t in item.repo_tags.iter().flatten() {
        let r = Reference::parse(t).map_err(|e| ArchiveError::Invalid(e.to_string()))?;
        if is_name_only(t) || r.digest.is_some() {
            return Err(ArchiveError::Invalid(format!("invalid tag {t:?}")));
        }
        tags.push(r);
    }
    let mut layers = Vec::with_capacity(diff_ids.len());
    for (i, (path, diff_id)) in item.layers.iter().zip(&diff_ids).enumerate() {
        let (file, info) = archive.file(path)?;
        // A file an earlier image of this archive moved into the store is read there.
        let src = match store.blob_path(&info.digest) {
            p if p.exists() => p,
            _ => file.clone(),
        };
        let (raw_digest, diff) = (info.digest.clone(), diff_id.clone());
        tokio::task::spawn_blocking(move || verify_layer(&src, &raw_digest, &diff, i))
            .await
            .map_err(task_failed)??;
        layers.push((info.digest.clone(), file, info.size));
    }
    Ok(Checked {
        id: info.digest.clone(),
        config,
        config_path,
        diff_ids,
        layers,
        tags,
    })
}

/// `docker load`: adds the images of a docker-archive (plain, gzip or zstd) to the store,
/// each checked whole before any is added. Reads `input` to its end whatever happens.
pub async fn load<R: Read + Send + 'static>(
    store: &ImageStore,
    input: R,
    events: &(dyn Fn(LoadEvent) + Send + Sync),
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let tmp = store.temp_dir()?;
    let result = load_in(store, input, &tmp, events).await;
    let _ = tokio::task::spawn_blocking(move || remove_any(&tmp)).await;
    result
}

async fn load_in<R: Read + Send + 'static>(
    store: &ImageStore,
    input: R,
    tmp: &Path,
    events: &(dyn Fn(LoadEvent) + Send + Sync),
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let dir = tmp.join("archive");
    let d = dir.clone();
    let archive = tokio::task::spawn_blocking(move || extract(input, &d))
        .await
        .map_err(task_failed)??;
    let (manifest_path, _) = archive.file("manifest.json")?;
    let raw = fs::read(&manifest_path).map_err(io_err("reading manifest.json"))?;
    let items: Option<Vec<ManifestItem>> = serde_json::from_slice(&raw)
        .map_err(|e| ArchiveError::Invalid(format!("invalid manifest.json: {e}")))?;
    let items = items.ok_or_else(|| {
        ArchiveError::Invalid("invalid manifest, manifest cannot be null (but can be [])".into())
    })?;
    let mut checked = Vec::with_capacity(items.len());
    for item in &items {
        checked.push(check_item(store, &archive, item).await?);
    }
    let mut loaded = Vec::with_capacity(checked.len());
    let mut last_tagged = false;
    for c in checked {
        let tags: Vec<String> = c.tags.iter().filter_map(Reference::tagged).collect();
        for t in &tags {
            if let Some(old) = store.resolve(t) {
                if old.id != c.id && old.repo_tags.contains(t) {
                    events(LoadEvent::Renamed {
                        tag: t.clone(),
                        old_id: old.id.clone(),
                    });
                }
            }
        }
        if store.get(&c.id).is_some() {
            for r in &c.tags {
                store.tag(&c.id, r)?;
            }
        } else {
            let mut incoming = HashMap::new();
            incoming.insert(c.id.clone(), c.config_path.clone());
            for (digest, path, _) in &c.layers {
                incoming.insert(digest.clone(), path.clone());
            }
            let sizes: Vec<(String, u64)> = c
                .diff_ids
                .iter()
                .zip(&c.layers)
                .map(|(d, l)| (d.clone(), l.2))
                .collect();
            let new = NewImage {
                id: c.id.clone(),
                config: c.config,
                layers: c.layers.iter().map(|l| l.0.clone()).collect(),
                diff_ids: c.diff_ids,
                repo_tags: tags.clone(),
                repo_digests: Vec::new(),
                incoming,
            };
            build_image(store, new, &|i, applied| {
                let (diff_id, total) = sizes[i].clone();
                events(LoadEvent::Layer {
                    diff_id,
                    current: if applied.is_some() { total } else { 0 },
                    total,
                });
            })
            .await?;
        }
        for t in &tags {
            events(LoadEvent::Tagged(t.clone()));
        }
        last_tagged = !tags.is_empty();
        loaded.push(LoadedImage { id: c.id, tags });
    }
    if !last_tagged {
        for l in &loaded {
            events(LoadEvent::Untagged(l.id.clone()));
        }
    }
    Ok(loaded)
}

// ───────────────────────────── import ─────────────────────────────

/// What `docker import` asks besides the tarball.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The tag to give the image (`name:tag`).
    pub reference: Option<Reference>,
    /// `--message`: the image's comment.
    pub message: String,
    /// `--change` Dockerfile instructions.
    pub changes: Vec<String>,
    /// `--platform` (linux/amd64 when not given).
    pub platform: Option<Platform>,
}

/// The layer an import received: the blob as stored, its digest and its diff ID.
struct Received {
    path: PathBuf,
    digest: String,
    diff_id: String,
}

/// Checks the tar stream `r` entry by entry and reads it to its end; returns the digest of
/// everything read.
fn check_tar<R: Read>(r: R) -> Result<String, ArchiveError> {
    let mut archive = tar::Archive::new(Hashing::new(r));
    for entry in archive.entries().map_err(tar_err)? {
        entry.map_err(tar_err)?;
    }
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(tar_err)?;
    Ok(rest.digest())
}

/// Stores an imported root filesystem tarball as a layer blob under `dir` (blocking): kept
/// as it came (compressing it would make an import several times slower than dockerd's);
/// checked to be a tar on the way.
fn receive_layer<R: Read>(mut input: R, dir: &Path) -> Result<Received, ArchiveError> {
    let result = receive_layer_from(&mut input, dir);
    let _ = io::copy(&mut input, &mut io::sink());
    result
}

fn receive_layer_from(input: &mut dyn Read, dir: &Path) -> Result<Received, ArchiveError> {
    let mut raw = BufReader::with_capacity(256 * 1024, input);
    let head = raw.fill_buf().map_err(io_err("reading the tarball"))?;
    let kind = sniff(head)?;
    let path = dir.join("layer");
    let file = fs::File::create(&path).map_err(io_err("creating the layer"))?;
    let sink = HashWriter {
        inner: BufWriter::with_capacity(256 * 1024, file),
        hash: Sha256::new(),
        bytes: 0,
    };
    let (mut sink, diff_id) = match kind {
        Compression::None => {
            let mut tee = Tee {
                inner: raw,
                out: sink,
            };
            let diff = check_tar(&mut tee)?;
            (tee.out, diff)
        }
        Compression::Gzip => {
            let mut dec = flate2::read::MultiGzDecoder::new(Tee {
                inner: raw,
                out: sink,
            });
            let diff = check_tar(&mut dec)?;
            let mut tee = dec.into_inner();
            io::copy(&mut tee, &mut io::sink()).map_err(io_err("reading the tarball"))?;
            (tee.out, diff)
        }
        Compression::Zstd => {
            let mut dec = zstd::stream::read::Decoder::new(Tee {
                inner: raw,
                out: sink,
            })
            .map_err(io_err("reading the tarball"))?;
            let diff = check_tar(&mut dec)?;
            let mut tee = dec.finish().into_inner();
            io::copy(&mut tee, &mut io::sink()).map_err(io_err("reading the tarball"))?;
            (tee.out, diff)
        }
    };
    sink.flush().map_err(io_err("writing the layer"))?;
    let digest = format!("sha256:{}", hex::encode(sink.hash.clone().finalize()));
    sink.inner
        .into_inner()
        .map_err(|e| io_err("writing the layer")(e.into_error()))?
        .sync_all()
        .map_err(io_err("writing the layer"))?;
    Ok(Received {
        path,
        digest,
        diff_id,
    })
}

/// Checks `--change` instructions without importing anything (so a request can be refused
/// before its body is read).
pub fn check_changes(changes: &[String]) -> Result<(), ArchiveError> {
    container_config(changes).map(|_| ())
}

/// `docker import`: a one-layer image from a root filesystem tarball (plain, gzip or zstd).
/// Reads `input` to its end whatever happens.
pub async fn import<R: Read + Send + 'static>(
    store: &ImageStore,
    input: R,
    opts: &ImportOptions,
) -> Result<ImageRecord, ArchiveError> {
    let platform = opts.platform.clone().unwrap_or_default();
    let checked = container_config(&opts.changes).and_then(|c| {
        if platform.os == "linux" {
            Ok(c)
        } else {
            Err(ArchiveError::Invalid(
                "operating system is not supported".into(),
            ))
        }
    });
    let container = match checked {
        Ok(c) => c,
        Err(e) => {
            let mut input = input;
            let _ =
                tokio::task::spawn_blocking(move || io::copy(&mut input, &mut io::sink())).await;
            return Err(e);
        }
    };
    let tmp = store.temp_dir()?;
    let result = import_in(store, input, opts, &platform, container, &tmp).await;
    let _ = tokio::task::spawn_blocking(move || remove_any(&tmp)).await;
    result
}

async fn import_in<R: Read + Send + 'static>(
    store: &ImageStore,
    input: R,
    opts: &ImportOptions,
    platform: &Platform,
    container: Value,
    tmp: &Path,
) -> Result<ImageRecord, ArchiveError> {
    let dir = tmp.to_path_buf();
    let layer = tokio::task::spawn_blocking(move || receive_layer(input, &dir))
        .await
        .map_err(task_failed)??;
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut history = json!({ "created": created, "created_by": "" });
    let mut config = json!({
        "architecture": platform.architecture,
        "config": container,
        "created": created,
        "os": platform.os,
        "rootfs": { "type": "layers", "diff_ids": [layer.diff_id] },
    });
    if let Some(v) = &platform.variant {
        config["variant"] = json!(v);
    }
    if !opts.message.is_empty() {
        config["comment"] = json!(opts.message);
        history["comment"] = json!(opts.message);
    }
    config["history"] = json!([history]);
    let raw = serde_json::to_vec(&config)
        .map_err(|e| io_err("encoding the image config")(io::Error::other(e)))?;
    let id = sha256_digest(&raw);
    let config_path = tmp.join("config.json");
    fs::write(&config_path, &raw).map_err(io_err("writing the image config"))?;
    let tags: Vec<String> = opts
        .reference
        .iter()
        .filter_map(Reference::tagged)
        .collect();
    let mut incoming = HashMap::new();
    incoming.insert(id.clone(), config_path);
    incoming.insert(layer.digest.clone(), layer.path);
    let new = NewImage {
        id,
        config,
        layers: vec![layer.digest],
        diff_ids: vec![layer.diff_id],
        repo_tags: tags,
        repo_digests: Vec::new(),
        incoming,
    };
    Ok(build_image(store, new, &|_, _| {}).await?)
}

// ───────────────────────── --change instructions ─────────────────────────

/// Instructions `docker import --change` and `docker commit --change` accept.
const CHANGE_COMMANDS: &[&str] = &[
    "cmd",
    "entrypoint",
    "env",
    "expose",
    "label",
    "onbuild",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// Every other Dockerfile instruction (refused as a change rather than unknown).
const OTHER_COMMANDS: &[&str] = &[
    "add",
    "arg",
    "copy",
    "from",
    "healthcheck",
    "maintainer",
    "run",
    "shell",
];

/// `$NAME` or `${NAME}` (after the `$`), looked up in `env` (`KEY=value` entries).
fn expand(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, env: &[String]) -> String {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find_map(|e| e.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
            .map(str::to_string)
    };
    if chars.peek() == Some(&'{') {
        chars.next();
        let mut inner = String::new();
        for c in chars.by_ref() {
            if c == '}' {
                break;
            }
            inner.push(c);
        }
        return match inner.split_once(":-") {
            Some((name, default)) => lookup(name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string()),
            None => match inner.split_once(":+") {
                Some((name, alt)) => {
                    if lookup(name).is_some_and(|v| !v.is_empty()) {
                        alt.to_string()
                    } else {
                        String::new()
                    }
                }
                None => lookup(&inner).unwrap_or_default(),
            },
        };
    }
    let mut name = String::new();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_alphanumeric() || c == '_' {
            name.push(c);
            chars.next();
        } else {
            break;
        }
    }
    if name.is_empty() {
        return "$".into();
    }
    lookup(&name).unwrap_or_default()
}

/// A Dockerfile argument as its shell-like lexer reads it: quotes removed, backslash escapes
/// undone, `$VAR` replaced from `env`; split into words at unquoted blanks when `split`.
fn words(s: &str, env: &[String], split: bool) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if split && c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err(
                            "unexpected end of statement while looking for matching single-quote"
                                .into(),
                        ),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.peek() {
                            Some('"' | '\\' | '$') => cur.push(chars.next().unwrap_or('\\')),
                            _ => cur.push('\\'),
                        },
                        Some('$') => cur.push_str(&expand(&mut chars, env)),
                        Some(x) => cur.push(x),
                        None => return Err(
                            "unexpected end of statement while looking for matching double-quote"
                                .into(),
                        ),
                    }
                }
            }
            '$' => {
                in_word = true;
                cur.push_str(&expand(&mut chars, env));
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word || !split {
        out.push(cur);
    }
    Ok(out)
}

/// `["a", "b"]` (exec form), or `None` for the shell form.
fn json_form(rest: &str) -> Option<Vec<String>> {
    rest.trim_start()
        .starts_with('[')
        .then(|| serde_json::from_str::<Vec<String>>(rest).ok())
        .flatten()
}

/// `name=value …` pairs, or the legacy `name value` form.
fn name_values(cmd: &str, rest: &str, env: &[String]) -> Result<Vec<(String, String)>, String> {
    let first = rest.split_whitespace().next().unwrap_or("");
    if first.is_empty() {
        return Err(format!("{cmd} requires at least one argument"));
    }
    if !first.contains('=') {
        let (key, value) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("{cmd} names can not be blank"));
        }
        let value = words(value, env, false)?.concat();
        return Ok(vec![(key.to_string(), value)]);
    }
    let mut out = Vec::new();
    for w in words(rest, env, true)? {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
            ));
        };
        if k.is_empty() {
            return Err(format!("{cmd} names can not be blank"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// `a/../b` → `/b`: a clean absolute path.
fn clean_abs(p: &str) -> String {
    format!("/{}", normalize(p, true).unwrap_or_default())
}

/// Docker's `EXPOSE` specs (`80`, `53/udp`, `8000-8002/tcp`) → `port/proto` keys.
fn port_keys(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let bad = || format!("invalid containerPort: {ports}");
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = ports.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if hi < lo {
        return Err(format!(
            "invalid range specified for container port: {ports}"
        ));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// The container configuration an import starts from (every field empty), with `changes`
/// applied as dockerd applies them.
fn container_config(changes: &[String]) -> Result<Value, ArchiveError> {
    let mut c = empty_container_config();
    let mut cmd_set = false;
    // Docker joins the changes into one Dockerfile; a trailing backslash continues a line.
    let joined = changes.join("\n").replace("\\\n", " ");
    for line in joined.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        let cmd = word.to_ascii_lowercase();
        if !CHANGE_COMMANDS.contains(&cmd.as_str()) {
            return Err(ArchiveError::Change(
                if OTHER_COMMANDS.contains(&cmd.as_str()) {
                    format!("{cmd} is not a valid change command")
                } else {
                    format!("unknown instruction: {}", word.to_ascii_uppercase())
                },
            ));
        }
        apply_change(&mut c, &cmd, rest, &mut cmd_set).map_err(ArchiveError::Change)?;
    }
    Ok(c)
}

fn apply_change(c: &mut Value, cmd: &str, rest: &str, cmd_set: &mut bool) -> Result<(), String> {
    let upper = cmd.to_ascii_uppercase();
    let env: Vec<String> = c["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let one = |rest: &str| -> Result<String, String> {
        if rest.is_empty() {
            return Err(format!("{upper} requires exactly one argument"));
        }
        Ok(words(rest, &env, false)?.concat())
    };
    let exec_or_shell = |rest: &str| -> Vec<String> {
        json_form(rest).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
    };
    let set_in = |c: &mut Value, field: &str, key: String, v: Value| {
        if !c[field].is_object() {
            c[field] = json!({});
        }
        c[field][key] = v;
    };
    match cmd {
        "cmd" => {
            c["Cmd"] = json!(exec_or_shell(rest));
            *cmd_set = true;
        }
        "entrypoint" => {
            c["Entrypoint"] = json!(exec_or_shell(rest));
            // As in a Dockerfile: an ENTRYPOINT drops the CMD set before it elsewhere.
            if !*cmd_set {
                c["Cmd"] = Value::Null;
            }
        }
        "env" => {
            let mut env = env.clone();
            for (k, v) in name_values("ENV", rest, &env.clone())? {
                let entry = format!("{k}={v}");
                match env
                    .iter()
                    .position(|e| e.split_once('=').map(|p| p.0) == Some(&k))
                {
                    Some(i) => env[i] = entry,
                    None => env.push(entry),
                }
            }
            c["Env"] = json!(env);
        }
        "label" => {
            for (k, v) in name_values("LABEL", rest, &env)? {
                set_in(c, "Labels", k, json!(v));
            }
        }
        "expose" => {
            let specs = words(rest, &env, true)?;
            if specs.is_empty() {
                return Err("EXPOSE requires at least one argument".into());
            }
            for s in specs {
                for key in port_keys(&s)? {
                    set_in(c, "ExposedPorts", key, json!({}));
                }
            }
        }
        "volume" => {
            let vols = match json_form(rest) {
                Some(v) => v,
                None => words(rest, &env, true)?,
            };
            if vols.is_empty() {
                return Err("VOLUME requires at least one argument".into());
            }
            for v in vols {
                let v = v.trim().to_string();
                if v.is_empty() {
                    return Err("VOLUME specified can not be an empty string".into());
                }
                set_in(c, "Volumes", v, json!({}));
            }
        }
        "workdir" => {
            let dir = one(rest)?;
            let current = c["WorkingDir"].as_str().unwrap_or("").to_string();
            c["WorkingDir"] = json!(if dir.starts_with('/') {
                clean_abs(&dir)
            } else {
                clean_abs(&format!("{current}/{dir}"))
            });
        }
        "user" => c["User"] = json!(one(rest)?),
        "stopsignal" => {
            let sig = one(rest)?;
            let name = sig.trim_start_matches("SIG");
            if sig.is_empty()
                || !(sig.parse::<u32>().is_ok()
                    || name.chars().all(|ch| {
                        ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '+' || ch == '-'
                    }))
            {
                return Err(format!("Invalid signal: {sig}"));
            }
            c["StopSignal"] = json!(sig);
        }
        "onbuild" => {
            let inner = rest
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            match inner.as_str() {
                "" => return Err("ONBUILD requires at least one argument".into()),
                "ONBUILD" => {
                    return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into())
                }
                "FROM" | "MAINTAINER" => {
                    return Err(format!("{inner} isn't allowed as an ONBUILD trigger"))
                }
                _ => {}
            }
            let (_, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let trigger = format!("{inner} {}", args.trim()).trim().to_string();
            let mut list = c["OnBuild"].as_array().cloned().unwrap_or_default();
            list.push(json!(trigger));
            c["OnBuild"] = json!(list);
        }
        _ => return Err(format!("{cmd} is not a valid change command")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar of `(path, content)` files (directories when content is `None`).
    fn tar_of(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_mtime(1_700_000_000);
            h.set_uid(0);
            h.set_gid(0);
            match data {
                Some(d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, *d).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn rootfs_tar() -> Vec<u8> {
        tar_of(&[
            ("bin/", None),
            ("bin/hello", Some(b"#!/bin/sh\necho hello\n")),
            ("etc/", None),
            ("etc/motd", Some(b"welcome\n")),
        ])
    }

    fn opts(tag: &str, changes: &[&str]) -> ImportOptions {
        ImportOptions {
            reference: Some(Reference::parse(tag).unwrap()),
            message: "imported by a test".into(),
            changes: changes.iter().map(|s| s.to_string()).collect(),
            platform: None,
        }
    }

    fn tmp_is_empty(store_dir: &Path) -> bool {
        fs::read_dir(store_dir.join("tmp"))
            .unwrap()
            .next()
            .is_none()
    }

    fn blob_count(store_dir: &Path) -> usize {
        fs::read_dir(store_dir.join("blobs/sha256"))
            .unwrap()
            .count()
    }

    /// Entries of a tar: path → (type, bytes, link target).
    fn entries_of(tar: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>, Option<String>)> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().to_string();
                let kind = e.header().entry_type();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().to_string());
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (path, kind, data, link)
            })
            .collect()
    }

    #[test]
    fn changes_apply_as_dockerd_applies_them() {
        let c = container_config(&[
            r#"CMD ["/bin/echo","imported"]"#.into(),
            "ENV A=b".into(),
            "ENV B=\"two words\" C=$A-x".into(),
            "ENV LEGACY some value".into(),
            "ENV A=c".into(),
            "WORKDIR /srv".into(),
            "WORKDIR app/../data".into(),
            "USER nobody:nogroup".into(),
            "LABEL version=1.0 \"com.example.name\"=\"the app\"".into(),
            "EXPOSE 80 53/udp 8000-8001".into(),
            r#"VOLUME ["/data", "/logs"]"#.into(),
            "VOLUME /cache".into(),
            "STOPSIGNAL SIGTERM".into(),
            "onbuild run echo hi".into(),
        ])
        .unwrap();
        assert_eq!(c["Cmd"], json!(["/bin/echo", "imported"]));
        assert_eq!(
            c["Env"],
            json!(["A=c", "B=two words", "C=b-x", "LEGACY=some value"])
        );
        assert_eq!(c["WorkingDir"], "/srv/data");
        assert_eq!(c["User"], "nobody:nogroup");
        assert_eq!(c["Labels"]["version"], "1.0");
        assert_eq!(c["Labels"]["com.example.name"], "the app");
        assert_eq!(
            c["ExposedPorts"],
            json!({"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}})
        );
        assert_eq!(
            c["Volumes"],
            json!({"/data": {}, "/logs": {}, "/cache": {}})
        );
        assert_eq!(c["StopSignal"], "SIGTERM");
        assert_eq!(c["OnBuild"], json!(["RUN echo hi"]));

        let shell = container_config(&["CMD echo \"$HOME\" && ls".into()]).unwrap();
        assert_eq!(
            shell["Cmd"],
            json!(["/bin/sh", "-c", "echo \"$HOME\" && ls"]),
            "shell form is left to the shell"
        );
        let ep = container_config(&["CMD [\"x\"]".into(), "ENTRYPOINT top -b".into()]).unwrap();
        assert_eq!(ep["Entrypoint"], json!(["/bin/sh", "-c", "top -b"]));
        assert_eq!(ep["Cmd"], json!(["x"]), "a CMD given with it stays");
        let empty = container_config(&[]).unwrap();
        assert_eq!(empty["Cmd"], Value::Null);
        assert_eq!(empty["Env"], Value::Null);

        let err = |c: &str| container_config(&[c.to_string()]).unwrap_err().to_string();
        assert_eq!(err("RUN echo hi"), "run is not a valid change command");
        assert_eq!(err("FROM busybox"), "from is not a valid change command");
        assert_eq!(err("BOGUS x"), "unknown instruction: BOGUS");
        assert_eq!(err("ENV"), "ENV requires at least one argument");
        assert!(err("ENV A=b C").contains("can't find = in \"C\""));
        assert_eq!(err("EXPOSE http"), "invalid containerPort: http");
        assert_eq!(err("USER"), "USER requires exactly one argument");
        assert!(err("ENV A=\"open").contains("double-quote"));
    }

    #[tokio::test]
    async fn import_makes_a_one_layer_image_with_the_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let o = opts(
            "imported:v1",
            &[r#"CMD ["/bin/hello"]"#, "ENV A=b", "WORKDIR /etc"],
        );
        let img = import(&store, io::Cursor::new(rootfs_tar()), &o)
            .await
            .unwrap();
        assert_eq!(img.repo_tags, vec!["imported:v1"]);
        assert_eq!(img.layers.len(), 1);
        assert_eq!(img.diff_ids, vec![sha256_digest(&rootfs_tar())]);
        assert_eq!(
            img.layers[0], img.diff_ids[0],
            "a plain tarball is stored as it came"
        );
        assert_eq!(img.config["config"]["Cmd"], json!(["/bin/hello"]));
        assert_eq!(img.config["config"]["Env"], json!(["A=b"]));
        assert_eq!(img.config["config"]["WorkingDir"], "/etc");
        assert_eq!(img.config["architecture"], "amd64");
        assert_eq!(img.config["os"], "linux");
        assert_eq!(img.config["comment"], "imported by a test");
        assert_eq!(img.config["history"][0]["comment"], "imported by a test");
        assert_eq!(img.config["history"][0]["created_by"], "");
        assert_eq!(img.config["created"], img.config["history"][0]["created"]);
        let config_raw = fs::read(store.blob_path(&img.id)).unwrap();
        assert_eq!(
            sha256_digest(&config_raw),
            img.id,
            "the config blob is the ID"
        );
        assert!(store.blob_path(&img.layers[0]).exists());
        assert_eq!(
            fs::read(store.rootfs(&img.id).join("etc/motd")).unwrap(),
            b"welcome\n"
        );
        assert!(tmp_is_empty(dir.path()));

        // A gzip tarball is kept as it came.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&rootfs_tar()).unwrap();
        let gz = gz.finish().unwrap();
        let img2 = import(&store, io::Cursor::new(gz.clone()), &opts("gz:1", &[]))
            .await
            .unwrap();
        assert_eq!(img2.layers, vec![sha256_digest(&gz)]);
        assert_eq!(img2.diff_ids, img.diff_ids);

        // Refusals leave nothing.
        let before = blob_count(dir.path());
        let e = import(
            &store,
            io::Cursor::new(vec![7u8; 4096]),
            &opts("bad:1", &[]),
        )
        .await
        .unwrap_err();
        assert_eq!(e.to_string(), "archive/tar: invalid tar header");
        let e = import(
            &store,
            io::Cursor::new(b"short".to_vec()),
            &opts("bad:1", &[]),
        )
        .await
        .unwrap_err();
        assert_eq!(e.to_string(), "unexpected EOF");
        let e = import(
            &store,
            io::Cursor::new(rootfs_tar()),
            &opts("bad:1", &["RUN true"]),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, ArchiveError::Change(_)), "{e}");
        let mut truncated = rootfs_tar();
        truncated.truncate(700);
        let e = import(&store, io::Cursor::new(truncated), &opts("bad:1", &[]))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "unexpected EOF");
        assert_eq!(blob_count(dir.path()), before);
        assert_eq!(store.list().len(), 2);
        assert!(store.resolve("bad:1").is_none());
        assert!(tmp_is_empty(dir.path()));
    }

    #[tokio::test]
    async fn save_then_load_round_trips_and_shares_layers() {
        let a = tempfile::tempdir().unwrap();
        let src = ImageStore::open(a.path()).unwrap();
        let one = import(
            &src,
            io::Cursor::new(rootfs_tar()),
            &opts("app:one", &["CMD [\"one\"]"]),
        )
        .await
        .unwrap();
        let two = import(
            &src,
            io::Cursor::new(rootfs_tar()),
            &opts("app:two", &["CMD [\"two\"]"]),
        )
        .await
        .unwrap();
        assert_ne!(one.id, two.id);
        assert_eq!(one.diff_ids, two.diff_ids);

        let plan = plan_save(&src, &["app".to_string()]).unwrap();
        assert_eq!(plan.ids().len(), 2, "a bare name saves every tag");
        let mut out = Vec::new();
        write_save(&plan, &mut out).unwrap();
        let entries = entries_of(&out);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        let manifest: Value =
            serde_json::from_slice(&entries.iter().find(|e| e.0 == "manifest.json").unwrap().2)
                .unwrap();
        assert_eq!(manifest.as_array().unwrap().len(), 2);
        let tags: Vec<&Value> = manifest
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["RepoTags"])
            .collect();
        assert!(tags.contains(&&json!(["app:one"])) && tags.contains(&&json!(["app:two"])));
        for m in manifest.as_array().unwrap() {
            let config = m["Config"].as_str().unwrap();
            assert!(names.contains(&config));
            let config_raw = &entries.iter().find(|e| e.0 == config).unwrap().2;
            assert_eq!(
                format!("{}.json", hex::encode(Sha256::digest(config_raw))),
                config
            );
        }
        // One layer.tar with the content, its twin a symlink to it.
        let layers: Vec<_> = entries
            .iter()
            .filter(|e| e.0.ends_with("/layer.tar"))
            .collect();
        assert_eq!(layers.len(), 2);
        let regular: Vec<_> = layers
            .iter()
            .filter(|e| e.1 == tar::EntryType::Regular)
            .collect();
        assert_eq!(regular.len(), 1);
        assert_eq!(sha256_digest(&regular[0].2), one.diff_ids[0]);
        let link = layers
            .iter()
            .find(|e| e.1 == tar::EntryType::Symlink)
            .unwrap();
        assert_eq!(
            link.3.as_deref(),
            Some(format!("../{}", regular[0].0).as_str())
        );
        assert!(names.contains(&"repositories"));
        assert!(names.iter().any(|n| n.ends_with("/VERSION")));
        assert!(names.iter().any(|n| n.ends_with("/json")));

        // By ID: no tags.
        let by_id = plan_save(&src, std::slice::from_ref(&one.id)).unwrap();
        let mut out_id = Vec::new();
        write_save(&by_id, &mut out_id).unwrap();
        let m: Value = serde_json::from_slice(
            &entries_of(&out_id)
                .into_iter()
                .find(|e| e.0 == "manifest.json")
                .unwrap()
                .2,
        )
        .unwrap();
        assert_eq!(m[0]["RepoTags"], Value::Null);
        assert!(matches!(
            plan_save(&src, &["nosuch:latest".to_string()]),
            Err(ArchiveError::NoSuchImage(_))
        ));

        // Loaded elsewhere (gzip-compressed on the way): the same images, tags and files.
        let b = tempfile::tempdir().unwrap();
        let dst = ImageStore::open(b.path()).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&out).unwrap();
        let seen = std::sync::Mutex::new(Vec::new());
        let loaded = load(&dst, io::Cursor::new(gz.finish().unwrap()), &|e| {
            seen.lock().unwrap().push(e)
        })
        .await
        .unwrap();
        assert_eq!(loaded.len(), 2);
        for img in [&one, &two] {
            let got = dst.get(&img.id).unwrap();
            assert_eq!(got.repo_tags, img.repo_tags);
            assert_eq!(got.diff_ids, img.diff_ids);
            assert_eq!(got.config, img.config);
            assert_eq!(
                fs::read(dst.rootfs(&img.id).join("bin/hello")).unwrap(),
                b"#!/bin/sh\necho hello\n"
            );
        }
        let seen = seen.into_inner().unwrap();
        assert!(seen.contains(&LoadEvent::Tagged("app:one".into())));
        assert!(seen.contains(&LoadEvent::Tagged("app:two".into())));
        assert!(seen
            .iter()
            .any(|e| matches!(e, LoadEvent::Layer { current, total, .. } if current == total)));
        assert!(!seen.iter().any(|e| matches!(e, LoadEvent::Untagged(_))));
        assert!(tmp_is_empty(b.path()));

        // Loading it again changes nothing; a tag taken from another image is reported.
        dst.tag(&one.id, &Reference::parse("app:two").unwrap())
            .unwrap();
        let seen = std::sync::Mutex::new(Vec::new());
        load(&dst, io::Cursor::new(out.clone()), &|e| {
            seen.lock().unwrap().push(e)
        })
        .await
        .unwrap();
        assert!(seen.into_inner().unwrap().contains(&LoadEvent::Renamed {
            tag: "app:two".into(),
            old_id: one.id.clone()
        }));
        assert_eq!(dst.resolve("app:two").unwrap().id, two.id);
        assert_eq!(dst.list().len(), 2);

        // An untagged archive reports the ID.
        let c = tempfile::tempdir().unwrap();
        let third = ImageStore::open(c.path()).unwrap();
        let seen = std::sync::Mutex::new(Vec::new());
        load(&third, io::Cursor::new(out_id), &|e| {
            seen.lock().unwrap().push(e)
        })
        .await
        .unwrap();
        assert!(seen
            .into_inner()
            .unwrap()
            .contains(&LoadEvent::Untagged(one.id.clone())));
        assert!(third.get(&one.id).unwrap().repo_tags.is_empty());
    }

    /// A docker 25+ archive: OCI layout plus a manifest.json naming blobs.
    fn oci_variant(layer: &[u8], diff_id: &str, tag: &str) -> (Vec<u8>, String) {
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
            "config": { "Cmd": ["/bin/hello"] },
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        }))
        .unwrap();
        let config_hex = hex::encode(Sha256::digest(&config));
        let layer_hex = hex::encode(Sha256::digest(layer));
        let manifest = serde_json::to_vec(&json!([{
            "Config": format!("blobs/sha256/{config_hex}"),
            "RepoTags": [tag],
            "Layers": [format!("blobs/sha256/{layer_hex}")],
        }]))
        .unwrap();
        let tar = tar_of(&[
            ("blobs/", None),
            ("blobs/sha256/", None),
            (&format!("blobs/sha256/{config_hex}"), Some(&config)),
            (&format!("blobs/sha256/{layer_hex}"), Some(layer)),
            ("index.json", Some(b"{}")),
            ("oci-layout", Some(b"{\"imageLayoutVersion\":\"1.0.0\"}")),
            ("manifest.json", Some(&manifest)),
        ]);
        (tar, format!("sha256:{config_hex}"))
    }

    #[tokio::test]
    async fn load_reads_docker_25_archives_and_refuses_bad_ones_leaving_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let layer = rootfs_tar();
        let diff = sha256_digest(&layer);
        let (tar, id) = oci_variant(&layer, &diff, "oci:latest");
        let loaded = load(&store, io::Cursor::new(tar), &|_| {}).await.unwrap();
        assert_eq!(
            loaded,
            vec![LoadedImage {
                id: id.clone(),
                tags: vec!["oci:latest".into()]
            }]
        );
        let img = store.get(&id).unwrap();
        assert_eq!(img.layers, vec![diff.clone()], "stored as it came");
        assert!(store.rootfs(&id).join("etc/motd").exists());
        store.remove(&id).unwrap();
        assert_eq!(blob_count(dir.path()), 0);

        let refused = |tar: Vec<u8>| {
            let store = &store;
            async move {
                load(store, io::Cursor::new(tar), &|_| {})
                    .await
                    .unwrap_err()
                    .to_string()
            }
        };
        // The layer is not what the config says.
        let other = sha256_digest(b"something else");
        let (tar, _) = oci_variant(&layer, &other, "bad:latest");
        assert_eq!(
            refused(tar).await,
            format!("invalid diffID for layer 0: expected {other:?}, got {diff:?}")
        );
        // Not a tar, too short to be one, truncated, no manifest.json.
        assert_eq!(
            refused(vec![b'x'; 2048]).await,
            "archive/tar: invalid tar header"
        );
        assert_eq!(refused(b"not a tar\n".to_vec()).await, "unexpected EOF");
        let (mut tar, _) = oci_variant(&layer, &diff, "cut:latest");
        tar.truncate(1800);
        let msg = refused(tar).await;
        assert!(msg == "unexpected EOF" || msg.starts_with("open "), "{msg}");
        assert_eq!(
            refused(rootfs_tar()).await,
            "open manifest.json: no such file or directory"
        );
        // A manifest naming a file outside the archive.
        let evil = tar_of(&[(
            "manifest.json",
            Some(br#"[{"Config":"../../etc/passwd","RepoTags":null,"Layers":[]}]"#),
        )]);
        assert_eq!(
            refused(evil).await,
            "open ../../etc/passwd: no such file or directory"
        );
        assert!(store.list().is_empty());
        assert_eq!(blob_count(dir.path()), 0, "no blob left behind");
        assert!(tmp_is_empty(dir.path()));
        assert!(fs::read_dir(dir.path().join("images"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn names_resolve_as_dockerd_reads_them() {
        assert!(is_name_only("busybox"));
        assert!(is_name_only("127.0.0.1:5000/busybox"));
        assert!(!is_name_only("busybox:1"));
        assert!(!is_name_only("127.0.0.1:5000/busybox:1"));
        assert!(!is_name_only("busybox@sha256:abc"));
        let chains = chain_ids(&["sha256:a".into(), "sha256:b".into()]);
        assert_eq!(chains[0], "sha256:a");
        assert_eq!(chains[1], sha256_digest(b"sha256:a sha256:b"));
        let ex = Extracted {
            dir: PathBuf::from("/x"),
            files: HashMap::new(),
            links: [
                ("b/layer.tar".to_string(), "a/layer.tar".to_string()),
                ("loop".to_string(), "loop".to_string()),
            ]
            .into(),
        };
        assert_eq!(ex.resolve("b/layer.tar").unwrap(), "a/layer.tar");
        assert_eq!(ex.resolve("./b/../b/layer.tar").unwrap(), "a/layer.tar");
        assert_eq!(ex.resolve("../../c").unwrap(), "c");
        assert!(ex.resolve("loop").is_err());
    }
}
