//! Blobs streamed to disk under digest check, resumable: an interrupted download leaves
//! `DEST.partial`, which the next pull hashes and continues with a `Range` request. A blob is
//! written only to the file its validated digest names, and no further than the size its
//! descriptor declares.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use crate::digest::Digest;
use crate::error::{io_err, PullError};

/// Where the download of `dest` goes until it verifies.
pub(crate) fn partial_path(dest: &Path) -> PathBuf {
    dest.with_extension("partial")
}

/// What an interrupted download of a blob left on disk: its bytes, already hashed, and the
/// file open for appending the rest.
pub(crate) struct Partial {
    file: tokio::fs::File,
    hash: Sha256,
    pub(crate) len: u64,
}

/// The partial download of `dest` (`dest.partial`), hashed so far, if there is one.
pub(crate) async fn open_partial(dest: &Path) -> Option<Partial> {
    let path = partial_path(dest);
    let mut file = tokio::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .open(&path)
        .await
        .ok()?;
    let mut hash = Sha256::new();
    let mut len = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        use tokio::io::AsyncReadExt;
        match file.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                hash.update(&buf[..n]);
                len += n as u64;
            }
            Err(_) => return None,
        }
    }
    (len > 0).then_some(Partial { file, hash, len })
}

/// Streams `chunks` into `dest` by way of `dest.partial` (after the bytes of `resume`, when
/// the registry sent only the rest), hashing on the way; the blob takes its place only if it
/// is `size` bytes and hashes to `expected`. Bytes past `size` cut the transfer off. A broken
/// transfer keeps the partial file for the next pull to resume; a digest or size mismatch
/// removes it. `dest` must be the file `expected` names (the store's blob path).
pub(crate) async fn write_verified<S, B>(
    mut chunks: S,
    dest: &Path,
    expected: &Digest,
    size: u64,
    url: &str,
    resume: Option<Partial>,
    mut on_chunk: impl FnMut(u64),
) -> Result<(), PullError>
where
    S: futures_util::Stream<Item = Result<B, PullError>> + Unpin,
    B: AsRef<[u8]>,
{
    if dest.file_name().and_then(|n| n.to_str()) != Some(expected.hex()) {
        return Err(PullError::Invalid(format!(
            "refusing to store blob {expected} as {}",
            dest.display()
        )));
    }
    let partial = partial_path(dest);
    let (mut file, mut hash, mut done) = match resume {
        Some(p) => (p.file, p.hash, p.len),
        None => (
            tokio::fs::File::create(&partial)
                .await
                .map_err(io_err(format!("creating {}", partial.display())))?,
            Sha256::new(),
            0,
        ),
    };
    let written: Result<(), PullError> = async {
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if done + chunk.as_ref().len() as u64 > size {
                return Err(PullError::TooLarge {
                    host: host_of(url),
                    what: format!("downloading {expected} (its manifest declares {size} bytes)"),
                    limit: size,
                });
            }
            hash.update(chunk.as_ref());
            file.write_all(chunk.as_ref())
                .await
                .map_err(io_err("writing a blob"))?;
            done += chunk.as_ref().len() as u64;
            on_chunk(done);
        }
        file.sync_all().await.map_err(io_err("syncing a blob"))?;
        let actual = Digest::from_sha256(hash.finalize().into());
        if &actual != expected {
            return Err(PullError::DigestMismatch {
                what: format!("blob {url}"),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        if done != size {
            return Err(PullError::SizeMismatch {
                what: format!("blob {expected}"),
                declared: size,
                actual: done,
            });
        }
        tokio::fs::rename(&partial, dest)
            .await
            .map_err(io_err("storing a blob"))
    }
    .await;
    match &written {
        Err(
            PullError::DigestMismatch { .. }
            | PullError::TooLarge { .. }
            | PullError::SizeMismatch { .. },
        ) => {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        Err(_) => {
            // Kept for resuming: what is there came from the registry, and the digest is
            // checked over the whole blob at the end.
            let _ = file.flush().await;
        }
        Ok(()) => {}
    }
    written
}

/// `host:port` of a URL, as errors name a registry.
pub(crate) fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .map(|u| {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}{port}", u.host_str().unwrap_or(""))
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(
        parts: &[&'static [u8]],
    ) -> impl futures_util::Stream<Item = Result<&'static [u8], PullError>> + Unpin {
        futures_util::stream::iter(parts.iter().map(|p| Ok(*p)).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn a_blob_is_kept_only_when_its_digest_matches() {
        let dir = tempfile::tempdir().unwrap();
        let good = Digest::of(b"hello world");
        let dest = dir.path().join(good.hex());
        let mut seen = Vec::new();
        write_verified(
            chunks(&[b"hello ", b"world"]),
            &dest,
            &good,
            11,
            "u",
            None,
            |n| seen.push(n),
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello world");
        assert_eq!(seen, vec![6, 11]);
        assert!(!dest.with_extension("partial").exists());

        let other = tempfile::tempdir().unwrap();
        let bad_dest = other.path().join(good.hex());
        let err = write_verified(
            chunks(&[b"tampered!!!"]),
            &bad_dest,
            &good,
            11,
            "u",
            None,
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(matches!(err, PullError::DigestMismatch { .. }), "{err}");
        assert!(err.to_string().contains(good.as_str()), "{err}");
        assert!(!bad_dest.exists(), "a mismatching blob is not stored");
        assert!(
            !bad_dest.with_extension("partial").exists(),
            "nor left behind"
        );
    }

    #[tokio::test]
    async fn a_broken_transfer_resumes_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let good = Digest::of(b"hello world");
        let dest = dir.path().join(good.hex());
        let broken = futures_util::stream::iter(vec![
            Ok(&b"hello "[..]),
            Err(PullError::Invalid("connection reset".into())),
        ]);
        let err = write_verified(broken, &dest, &good, 11, "u", None, |_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, PullError::Invalid(_)), "{err}");
        assert!(!dest.exists());
        assert_eq!(
            std::fs::read(dest.with_extension("partial")).unwrap(),
            b"hello ",
            "the bytes received are kept"
        );
        let resume = open_partial(&dest).await.expect("a partial to resume");
        assert_eq!(resume.len, 6);
        let mut seen = Vec::new();
        write_verified(
            chunks(&[b"world"]),
            &dest,
            &good,
            11,
            "u",
            Some(resume),
            |n| seen.push(n),
        )
        .await
        .unwrap();
        assert_eq!(seen, vec![11], "progress counts the resumed bytes");
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello world");
        assert!(!dest.with_extension("partial").exists());
        assert!(open_partial(&dest).await.is_none());
    }

    #[tokio::test]
    async fn a_blob_is_cut_off_past_its_declared_size_and_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let good = Digest::of(b"hello world");
        let dest = dir.path().join(good.hex());
        let err = write_verified(
            chunks(&[b"hello ", b"world", b"and more"]),
            &dest,
            &good,
            11,
            "http://127.0.0.1:5000/v2/x/blobs/y",
            None,
            |_| {},
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("registry 127.0.0.1:5000 sent more than 11 bytes while downloading {good} (its manifest declares 11 bytes)")
        );
        assert!(!dest.exists() && !partial_path(&dest).exists());
    }

    #[tokio::test]
    async fn a_blob_shorter_than_declared_fails() {
        let dir = tempfile::tempdir().unwrap();
        let good = Digest::of(b"hello world");
        let dest = dir.path().join(good.hex());
        let err = write_verified(
            chunks(&[b"hello world"]),
            &dest,
            &good,
            12,
            "u",
            None,
            |_| {},
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("blob {good} is 11 bytes, the manifest declares 12")
        );
        assert!(!dest.exists() && !partial_path(&dest).exists());
    }

    #[tokio::test]
    async fn a_blob_is_written_only_where_its_digest_says() {
        let dir = tempfile::tempdir().unwrap();
        let good = Digest::of(b"hello world");
        let elsewhere = dir.path().join("passwd");
        let err = write_verified(
            chunks(&[b"hello world"]),
            &elsewhere,
            &good,
            11,
            "u",
            None,
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().starts_with("refusing to store blob"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
