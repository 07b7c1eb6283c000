//! `docker commit`: a new image of a container's image with one more layer, the changes the
//! container made (a tar stream with whiteouts for what it removed), and the container's
//! configuration with the `--change` instructions applied.

use super::changes::apply_changes;
use super::import::receive_layer;
use super::*;

/// What a commit records besides the layer.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// The tag to give the image (`name:tag`).
    pub reference: Option<Reference>,
    /// `--message`.
    pub comment: String,
    /// `--author`.
    pub author: String,
    /// `--change` Dockerfile instructions.
    pub changes: Vec<String>,
    /// The container's configuration (Docker's `Config`), which the image's becomes.
    pub config: Value,
    /// The container's ID.
    pub container: String,
    /// The container's command, for the history entry.
    pub created_by: String,
}

/// Checks `--change` instructions for a commit without committing anything.
pub fn check_commit_changes(opts: &CommitOptions) -> Result<(), ArchiveError> {
    apply_changes(opts.config.clone(), &opts.changes).map(|_| ())
}

/// Commits `layer` (an uncompressed tar stream, read to its end whatever happens) on top of
/// `parent` as a new image.
pub async fn commit<R: Read + Send + 'static>(
    store: &ImageStore,
    parent: &ImageRecord,
    layer: R,
    opts: &CommitOptions,
) -> Result<ImageRecord, ArchiveError> {
    let container = match apply_changes(opts.config.clone(), &opts.changes) {
        Ok(c) => c,
        Err(e) => {
            let mut layer = layer;
            let _ =
                tokio::task::spawn_blocking(move || io::copy(&mut layer, &mut io::sink())).await;
            return Err(e);
        }
    };
    let tmp = store.temp_dir()?;
    let result = commit_in(store, parent, layer, opts, container, &tmp).await;
    let _ = tokio::task::spawn_blocking(move || remove_any(&tmp)).await;
    result
}

async fn commit_in<R: Read + Send + 'static>(
    store: &ImageStore,
    parent: &ImageRecord,
    layer: R,
    opts: &CommitOptions,
    container: Value,
    tmp: &Path,
) -> Result<ImageRecord, ArchiveError> {
    let dir = tmp.to_path_buf();
    let layer = tokio::task::spawn_blocking(move || receive_layer(layer, &dir))
        .await
        .map_err(task_failed)??;
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut config = parent.config.clone();
    config["config"] = container;
    config["container"] = json!(opts.container);
    // The container's own configuration, before `--change`, as moby keeps it.
    config["container_config"] = opts.config.clone();
    config["created"] = json!(created);
    let mut history = json!({ "created": created, "created_by": opts.created_by });
    for (key, value) in [("author", &opts.author), ("comment", &opts.comment)] {
        if value.is_empty() {
            if let Some(o) = config.as_object_mut() {
                o.remove(key);
            }
        } else {
            config[key] = json!(value);
            history[key] = json!(value);
        }
    }
    let mut diff_ids = parent.diff_ids.clone();
    diff_ids.push(layer.diff_id.clone());
    config["rootfs"] = json!({ "type": "layers", "diff_ids": diff_ids });
    match config.get_mut("history").and_then(Value::as_array_mut) {
        Some(h) => h.push(history),
        None => config["history"] = json!([history]),
    }
    let raw = serde_json::to_vec(&config)
        .map_err(|e| io_err("encoding the image config")(io::Error::other(e)))?;
    let id = sha256_digest(&raw);
    let config_path = tmp.join("config.json");
    fs::write(&config_path, &raw).map_err(io_err("writing the image config"))?;
    let mut layers = parent.layers.clone();
    layers.push(layer.digest.clone());
    let mut incoming = HashMap::new();
    incoming.insert(id.clone(), config_path);
    incoming.insert(layer.digest.clone(), layer.path.clone());
    let new = NewImage {
        id,
        config,
        layers,
        diff_ids,
        repo_tags: opts
            .reference
            .iter()
            .filter_map(Reference::tagged)
            .collect(),
        repo_digests: Vec::new(),
        parent: parent.id.clone(),
        incoming,
    };
    Ok(build_image(store, new, &|_, _| {}).await?)
}
