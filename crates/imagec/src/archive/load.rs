//! `docker load`: a docker-archive (classic or docker 25's OCI layout; plain, gzip or zstd)
//! checked whole, then stored.

use super::*;
use crate::registry::limits::{MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};

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

pub(super) struct FileInfo {
    digest: Digest,
    size: u64,
}

/// An archive unpacked under a work directory: its regular files and its links.
pub(super) struct Extracted {
    pub(super) dir: PathBuf,
    pub(super) files: HashMap<String, FileInfo>,
    /// Link path → the root-relative path it points at.
    pub(super) links: HashMap<String, String>,
}

/// `a/./b/../c` → `a/c`. A `..` above the root is `None`, or with `clamp` stays at the root
/// (as a symlink target is resolved inside the archive).
pub(super) fn normalize(p: &str, clamp: bool) -> Option<String> {
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
    pub(super) fn resolve(&self, path: &str) -> Result<String, ArchiveError> {
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
pub(super) fn extract<R: Read>(mut input: R, dir: &Path) -> Result<Extracted, ArchiveError> {
    let result = extract_from(&mut input, dir);
    let _ = io::copy(&mut input, &mut io::sink());
    result
}

pub(super) fn extract_from(input: &mut dyn Read, dir: &Path) -> Result<Extracted, ArchiveError> {
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
            let digest = Digest::from_sha256(w.hash.finalize().into());
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
pub(super) struct ManifestItem {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// One image of an archive, checked and ready to be added.
pub(super) struct Checked {
    id: String,
    config: Value,
    config_path: PathBuf,
    diff_ids: Vec<String>,
    /// Layer blob digest, where the file is, its size in the archive.
    layers: Vec<(String, PathBuf, u64)>,
    tags: Vec<Reference>,
}

/// Checks a layer file against its diff ID (decompressing it if it came compressed).
pub(super) fn verify_layer(
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

/// Reads a JSON file of the archive whole, refusing one larger than `limit` (its size was
/// counted while the archive was unpacked).
fn read_bounded(
    path: &Path,
    info: &FileInfo,
    limit: u64,
    name: &str,
) -> Result<Vec<u8>, ArchiveError> {
    if info.size > limit {
        return Err(ArchiveError::Invalid(format!(
            "{name} is {} bytes, more than the {limit} bytes allowed",
            info.size
        )));
    }
    let mut raw = Vec::new();
    fs::File::open(path)
        .and_then(|f| io::Read::read_to_end(&mut io::Read::take(f, limit + 1), &mut raw))
        .map_err(io_err(format!("reading {name}")))?;
    if raw.len() as u64 > limit {
        return Err(ArchiveError::Invalid(format!(
            "{name} is more than the {limit} bytes allowed"
        )));
    }
    Ok(raw)
}

/// Checks one manifest entry: its configuration, its tags, every layer against its diff ID.
pub(super) async fn check_item(
    store: &ImageStore,
    archive: &Extracted,
    item: &ManifestItem,
) -> Result<Checked, ArchiveError> {
    let (config_path, info) = archive.file(&item.config)?;
    let raw = read_bounded(&config_path, info, MAX_CONFIG_BYTES, &item.config)?;
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
    for d in &diff_ids {
        Digest::parse(d)
            .map_err(|e| ArchiveError::Invalid(format!("invalid diffID {d:?}: {e}")))?;
    }
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
        let (raw_digest, diff) = (info.digest.to_string(), diff_id.clone());
        tokio::task::spawn_blocking(move || verify_layer(&src, &raw_digest, &diff, i))
            .await
            .map_err(task_failed)??;
        layers.push((info.digest.to_string(), file, info.size));
    }
    Ok(Checked {
        id: info.digest.to_string(),
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

pub(super) async fn load_in<R: Read + Send + 'static>(
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
    let (manifest_path, info) = archive.file("manifest.json")?;
    let raw = read_bounded(&manifest_path, info, MAX_MANIFEST_BYTES, "manifest.json")?;
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
                parent: String::new(),
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
