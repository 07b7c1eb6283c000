//! Unpacking an image whose blobs are at hand and committing it (pull, load, import).

use super::*;

/// The uncompressed layer digests (`rootfs.diff_ids`) an image configuration lists.
pub(crate) fn diff_ids_of(config: &serde_json::Value) -> Vec<String> {
    config
        .pointer("/rootfs/diff_ids")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// An image whose configuration and layer blobs are at hand, ready to be unpacked and
/// recorded: by a pull, a `docker load` or a `docker import`.
pub(crate) struct NewImage {
    /// The digest of the configuration: the image ID.
    pub id: String,
    pub config: serde_json::Value,
    /// Layer blob digests, bottom first.
    pub layers: Vec<String>,
    /// Uncompressed layer digests, bottom first.
    pub diff_ids: Vec<String>,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// The local image it was made from (a commit's); empty for one from elsewhere.
    pub parent: String,
    /// Blobs not in the store yet (digest → verified file under the store's `tmp/`): layers
    /// are applied from there, and the files are moved into the store once every layer
    /// applied, before the record is written.
    pub incoming: HashMap<String, std::path::PathBuf>,
}

/// Unpacks `img`'s layers in order into a fresh root filesystem (each checked against its
/// diff ID) and commits the image. `on_layer(i, None)` is called before layer `i` is
/// applied, `on_layer(i, Some(uncompressed size))` after. On failure nothing is left.
pub(crate) async fn build_image(
    store: &ImageStore,
    img: NewImage,
    on_layer: &(dyn Fn(usize, Option<u64>) + Send + Sync),
) -> Result<ImageRecord, PullError> {
    build_image_gated(store, img, on_layer, None).await
}

/// Says when each layer's blob is in the store: `Some(true)` downloaded, `Some(false)` (or
/// the sender gone) failed.
pub(crate) struct LayerGate(Vec<tokio::sync::watch::Receiver<Option<bool>>>);

impl LayerGate {
    pub(super) fn new(n: usize) -> (Vec<tokio::sync::watch::Sender<Option<bool>>>, LayerGate) {
        let (tx, rx): (Vec<_>, Vec<_>) = (0..n).map(|_| tokio::sync::watch::channel(None)).unzip();
        (tx, LayerGate(rx))
    }

    /// Waits until layer `i` is in, or fails if its download did.
    async fn ready(&self, i: usize) -> Result<(), PullError> {
        let Some(rx) = self.0.get(i) else {
            return Ok(());
        };
        let mut rx = rx.clone();
        let ok = matches!(
            rx.wait_for(Option::is_some).await.map(|v| *v),
            Ok(Some(true))
        );
        if ok {
            Ok(())
        } else {
            Err(PullError::Invalid(format!(
                "layer {} was not downloaded",
                i + 1
            )))
        }
    }
}

/// [`build_image`], applying layer `i` only once `gate` says it is in.
pub(crate) async fn build_image_gated(
    store: &ImageStore,
    img: NewImage,
    on_layer: &(dyn Fn(usize, Option<u64>) + Send + Sync),
    gate: Option<&LayerGate>,
) -> Result<ImageRecord, PullError> {
    let tmp = store.temp_dir()?;
    let built = build_in(store, img, &tmp, on_layer, gate).await;
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&tmp)).await;
    built
}

/// [`build_image`]'s work, in the work directory `tmp`.
async fn build_in(
    store: &ImageStore,
    img: NewImage,
    tmp: &Path,
    on_layer: &(dyn Fn(usize, Option<u64>) + Send + Sync),
    gate: Option<&LayerGate>,
) -> Result<ImageRecord, PullError> {
    let rootfs = tmp.join("rootfs");
    std::fs::create_dir_all(&rootfs).map_err(io_err("creating the root filesystem"))?;
    let mut layer_sizes = Vec::with_capacity(img.layers.len());
    for (i, (digest, diff)) in img.layers.iter().zip(&img.diff_ids).enumerate() {
        if let Some(g) = gate {
            g.ready(i).await?;
        }
        on_layer(i, None);
        let stored = store.blob_file(digest)?;
        let blob = match img.incoming.get(digest) {
            Some(p) if !stored.exists() => p.clone(),
            _ => stored,
        };
        let (root, diff) = (rootfs.clone(), diff.clone());
        let size = tokio::task::spawn_blocking(move || apply_layer(&blob, &root, &diff))
            .await
            .map_err(|e| PullError::Invalid(format!("layer extraction task failed: {e}")))??;
        layer_sizes.push(size);
        on_layer(i, Some(size));
    }
    for (digest, path) in &img.incoming {
        let dest = store.blob_file(digest)?;
        if !dest.exists() {
            std::fs::rename(path, &dest).map_err(io_err(format!("storing blob {digest}")))?;
        }
    }
    let str_at = |p: &str| {
        img.config
            .pointer(p)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let record = ImageRecord {
        id: img.id.clone(),
        repo_tags: img.repo_tags,
        repo_digests: img.repo_digests,
        created: str_at("/created"),
        size: layer_sizes.iter().sum(),
        architecture: str_at("/architecture"),
        os: str_at("/os"),
        diff_ids: img.diff_ids,
        layers: img.layers,
        layer_sizes,
        config: img.config,
        parent: img.parent,
    };
    Ok(store.commit(record, &rootfs)?)
}
