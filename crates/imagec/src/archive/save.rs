//! `docker save`: records to a streamed docker-archive tar, in dockerd 20.10's layout.

use super::*;

/// One layer directory of a saved archive.
pub(super) struct SaveLayer {
    /// The v1 layer ID (the directory's name).
    dir: String,
    /// The v1 compatibility JSON (`<dir>/json`).
    json: Vec<u8>,
    blob: PathBuf,
    diff_id: String,
    /// Uncompressed size: the size of `layer.tar`.
    size: u64,
}

pub(super) struct SaveImage {
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
pub(super) fn is_name_only(s: &str) -> bool {
    !s.contains('@')
        && match s.rfind(':') {
            Some(i) => s[i + 1..].contains('/'),
            None => true,
        }
}

pub(super) fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// The images `docker save NAME…` means, each with the tags the archive gives it, as dockerd
/// reads names: `name:tag` saves that tag, a bare name every tag of the repository, an ID or
/// a digest reference the image without tags.
pub(super) fn images_named(
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
pub(super) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
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
pub(super) const V1_FIELDS: &[&str] = &[
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

/// moby's `container.Config` with every field empty: the `container_config` a pre-1.10
/// layer carries, and image inspect's `ContainerConfig` of an image that has none.
pub fn empty_container_config() -> Value {
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
pub(super) fn v1_layers(config: &Value, diff_ids: &[String]) -> Vec<(String, Vec<u8>)> {
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

pub(super) fn unix_time(created: &str) -> u64 {
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
        let config = match fs::read(store.blob_file(&img.id)?) {
            Ok(raw) if sha256_digest(&raw) == img.id => raw,
            _ => serde_json::to_vec(&img.config)
                .map_err(|e| io_err("encoding the image config")(io::Error::other(e)))?,
        };
        let v1 = v1_layers(&img.config, &img.diff_ids);
        let mut layers = Vec::with_capacity(img.layers.len());
        for (i, ((blob_digest, diff_id), (dir, json))) in
            img.layers.iter().zip(&img.diff_ids).zip(v1).enumerate()
        {
            let blob = store.blob_file(blob_digest)?;
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

pub(super) fn file_header(size: u64, mtime: u64, kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h
}

pub(super) fn append_bytes<W: Write>(
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
pub(super) struct CheckedLayer {
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
