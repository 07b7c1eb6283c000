//! Blob downloads: one at a time per digest, resumed, capped at the declared size.

use super::*;

impl Puller {
    /// Downloads a blob into the store, checking its digest while streaming.
    pub(super) async fn fetch_blob(
        &self,
        store: &ImageStore,
        r: &Reference,
        desc: &Descriptor,
        access: Access<'_>,
        progress: &(dyn Fn(Progress) + Send + Sync),
        report: bool,
    ) -> Result<(), PullError> {
        let lock = {
            let mut locks = self.blob_locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(desc.digest.clone()).or_default().clone()
        };
        let held = lock.lock().await;
        let result = self
            .download_blob(store, r, desc, access, progress, report)
            .await;
        drop(held);
        let mut locks = self.blob_locks.lock().unwrap_or_else(|e| e.into_inner());
        // Only the map and this call hold it: nobody waits, so forget it.
        if Arc::strong_count(&lock) == 2 {
            locks.remove(&desc.digest);
        }
        result
    }

    /// [`Self::fetch_blob`]'s work, under the blob's lock.
    async fn download_blob(
        &self,
        store: &ImageStore,
        r: &Reference,
        desc: &Descriptor,
        access: Access<'_>,
        progress: &(dyn Fn(Progress) + Send + Sync),
        report: bool,
    ) -> Result<(), PullError> {
        let dest = store.blob_path(&desc.digest);
        if dest.exists() {
            if report {
                progress(Progress::layer(desc.digest.as_str(), "Already exists"));
            }
            return Ok(());
        }
        let url = format!("{}/blobs/{}", self.registry.base(r).await, desc.digest);
        let had_partial = crate::transfer::partial_path(&dest).exists();
        match self
            .download_once(&url, desc, &dest, access, progress, report, true)
            .await
        {
            // A partial download that was not a prefix of the blob: start again, once.
            Err(PullError::DigestMismatch { .. } | PullError::TooLarge { .. }) if had_partial => {
                tracing::warn!(blob = %desc.digest, "a resumed download did not verify; restarting it");
                self.download_once(&url, desc, &dest, access, progress, report, false)
                    .await?
            }
            other => other?,
        }
        if report {
            progress(Progress::layer(desc.digest.as_str(), "Verifying Checksum"));
            progress(Progress::layer(desc.digest.as_str(), "Download complete"));
        }
        Ok(())
    }

    /// One GET of a blob into the store: from the start, or (`resume`) after the bytes an
    /// interrupted download left, when the registry honours `Range`.
    #[allow(clippy::too_many_arguments)]
    async fn download_once(
        &self,
        url: &str,
        desc: &Descriptor,
        dest: &Path,
        access: Access<'_>,
        progress: &(dyn Fn(Progress) + Send + Sync),
        report: bool,
        resume: bool,
    ) -> Result<(), PullError> {
        let url = url.to_string();
        let mut resume = if resume {
            open_partial(dest).await
        } else {
            None
        };
        // What an earlier, interrupted pull received is asked for no more.
        if resume.as_ref().is_some_and(|p| p.len >= desc.size) {
            // All there (or too much): the digest check at the end decides; restart if bad.
            resume = None;
        }
        let offset = resume.as_ref().map_or(0, |p| p.len);
        let resp = self
            .registry
            .send(&url, access, |c| {
                let req = c.get(&url);
                if offset > 0 {
                    req.header(RANGE, format!("bytes={offset}-"))
                } else {
                    req
                }
            })
            .await?;
        if !resp.status().is_success() {
            return Err(PullError::Registry {
                status: resp.status().as_u16(),
                url,
            });
        }
        let resumed = offset > 0 && resp.status() == StatusCode::PARTIAL_CONTENT;
        if offset > 0 {
            tracing::info!(
                blob = %desc.digest,
                offset,
                resumed,
                "continuing an interrupted download"
            );
        }
        let resume = if resumed { resume } else { None };
        let already = if resumed { offset } else { 0 };
        let total = desc.size;
        if resp
            .content_length()
            .is_some_and(|n| n.saturating_add(already) > total)
        {
            return Err(PullError::TooLarge {
                host: crate::transfer::host_of(&url),
                what: format!(
                    "downloading {} (its manifest declares {total} bytes)",
                    desc.digest
                ),
                limit: total,
            });
        }
        let stream = guarded(resp, self.registry.blob_guard(&url, &desc.digest));
        let mut last_report: u64 = 0;
        let on_chunk = |done: u64| {
            if report && (done - last_report >= 512 * 1024 || done == total) {
                last_report = done;
                progress(Progress {
                    current: Some(done),
                    total: Some(total),
                    ..Progress::layer(desc.digest.as_str(), "Downloading")
                });
            }
        };
        write_verified(stream, dest, &desc.digest, total, &url, resume, on_chunk).await
    }
}
