//! Blobs streamed to disk under digest check, resumable: an interrupted download leaves
//! `DEST.partial`, which the next pull hashes and continues with a `Range` request.

use std::path::Path;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::pull::{io_err, PullError};

/// What an interrupted download of a blob left on disk: its bytes, already hashed, and the
/// file open for appending the rest.
pub(crate) struct Partial {
    file: tokio::fs::File,
    hash: Sha256,
    pub(crate) len: u64,
}

/// The partial download of `dest` (`dest.partial`), hashed so far, if there is one.
pub(crate) async fn open_partial(dest: &Path) -> Option<Partial> {
    let path = dest.with_extension("partial");
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
/// hashes to `expected`. A broken transfer keeps the partial file for the next pull to
/// resume; a digest mismatch removes it.
pub(crate) async fn write_verified<S, B>(
    mut chunks: S,
    dest: &Path,
    expected: &str,
    url: &str,
    resume: Option<Partial>,
    mut on_chunk: impl FnMut(u64),
) -> Result<(), PullError>
where
    S: futures_util::Stream<Item = Result<B, PullError>> + Unpin,
    B: AsRef<[u8]>,
{
    let partial = dest.with_extension("partial");
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
            hash.update(chunk.as_ref());
            file.write_all(chunk.as_ref())
                .await
                .map_err(io_err("writing a blob"))?;
            done += chunk.as_ref().len() as u64;
            on_chunk(done);
        }
        file.sync_all().await.map_err(io_err("syncing a blob"))?;
        let actual = format!("sha256:{}", hex::encode(hash.finalize()));
        if actual != expected {
            return Err(PullError::DigestMismatch {
                what: format!("blob {url}"),
                expected: expected.to_string(),
                actual,
            });
        }
        tokio::fs::rename(&partial, dest)
            .await
            .map_err(io_err("storing a blob"))
    }
    .await;
    match &written {
        Err(PullError::DigestMismatch { .. }) => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::sha256_hex;
    use crate::store::hex_of;

    fn chunks(
        parts: &[&'static [u8]],
    ) -> impl futures_util::Stream<Item = Result<&'static [u8], PullError>> + Unpin {
        futures_util::stream::iter(parts.iter().map(|p| Ok(*p)).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn a_blob_is_kept_only_when_its_digest_matches() {
        let dir = tempfile::tempdir().unwrap();
        let good = sha256_hex(b"hello world");
        let dest = dir.path().join(hex_of(&good));
        let mut seen = Vec::new();
        write_verified(
            chunks(&[b"hello ", b"world"]),
            &dest,
            &good,
            "u",
            None,
            |n| seen.push(n),
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello world");
        assert_eq!(seen, vec![6, 11]);
        assert!(!dest.with_extension("partial").exists());

        let bad_dest = dir.path().join("bad");
        let err = write_verified(chunks(&[b"tampered"]), &bad_dest, &good, "u", None, |_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, PullError::DigestMismatch { .. }), "{err}");
        assert!(err.to_string().contains(&good), "{err}");
        assert!(!bad_dest.exists(), "a mismatching blob is not stored");
        assert!(
            !bad_dest.with_extension("partial").exists(),
            "nor left behind"
        );
    }

    #[tokio::test]
    async fn a_broken_transfer_resumes_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let good = sha256_hex(b"hello world");
        let dest = dir.path().join(hex_of(&good));
        let broken = futures_util::stream::iter(vec![
            Ok(&b"hello "[..]),
            Err(PullError::Invalid("connection reset".into())),
        ]);
        let err = write_verified(broken, &dest, &good, "u", None, |_| {})
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
        write_verified(chunks(&[b"world"]), &dest, &good, "u", Some(resume), |n| {
            seen.push(n)
        })
        .await
        .unwrap();
        assert_eq!(seen, vec![11], "progress counts the resumed bytes");
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello world");
        assert!(!dest.with_extension("partial").exists());
        assert!(open_partial(&dest).await.is_none());
    }
}
