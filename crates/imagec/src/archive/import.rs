//! `docker import`: a root filesystem tar becomes a one-layer image.

use super::*;

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
pub(super) struct Received {
    pub(super) path: PathBuf,
    pub(super) digest: String,
    pub(super) diff_id: String,
}

/// Checks the tar stream `r` entry by entry and reads it to its end; returns the digest of
/// everything read.
pub(super) fn check_tar<R: Read>(r: R) -> Result<String, ArchiveError> {
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
pub(super) fn receive_layer<R: Read>(mut input: R, dir: &Path) -> Result<Received, ArchiveError> {
    let result = receive_layer_from(&mut input, dir);
    let _ = io::copy(&mut input, &mut io::sink());
    result
}

pub(super) fn receive_layer_from(
    input: &mut dyn Read,
    dir: &Path,
) -> Result<Received, ArchiveError> {
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

pub(super) async fn import_in<R: Read + Send + 'static>(
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
        parent: String::new(),
        incoming,
    };
    Ok(build_image(store, new, &|_, _| {}).await?)
}
