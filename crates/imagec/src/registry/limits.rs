//! What a registry may make a pull wait for or hold in memory: every body is read through
//! [`guarded`] (no progress within the stall window → an error naming what did not arrive;
//! past the deadline → an error) and, when held in memory, [`read_capped`] at a named bound.
//!
//! The bounds follow the registries' own and containers/image's (`iolimits`): a manifest
//! or index is at most 4 MiB, as Distribution accepts no larger; a token response or an
//! error body 1 MiB; a tag list and an image configuration 8 MiB.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

use crate::error::PullError;

/// The largest manifest or index read (Distribution refuses to store larger ones).
pub(crate) const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// The largest token-service answer read.
pub(crate) const MAX_TOKEN_BYTES: u64 = 1 << 20;
/// The most of an error body read (only its message is wanted).
pub(crate) const MAX_ERROR_BYTES: u64 = 1 << 20;
/// The largest tag list read.
pub(crate) const MAX_TAG_LIST_BYTES: u64 = 8 << 20;
/// The largest image configuration pulled (it is read whole to learn the layers).
pub(crate) const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// Deadlines of registry requests (the defaults suit real registries; tests shorten them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting (TCP and TLS) to a registry or token service.
    pub connect: Duration,
    /// The longest a registry may send nothing (no response headers, no body bytes); a blob
    /// download must also bring [`Timeouts::min_blob_bytes`] in each such window.
    pub stall: Duration,
    /// The whole of a request that is not a blob download: manifest, index, tag list, token,
    /// login (its authentication round trips included).
    pub request: Duration,
    /// The least a blob download must bring in every `stall` window.
    pub min_blob_bytes: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(15),
            stall: Duration::from_secs(30),
            request: Duration::from_secs(120),
            min_blob_bytes: 16 * 1024,
        }
    }
}

/// What a body is watched for.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    /// The request's URL (its `host:port` names the registry in errors).
    pub(crate) url: String,
    /// What the pull was doing, e.g. "downloading sha256:…".
    pub(crate) what: String,
    pub(crate) stall: Duration,
    /// Bytes due in every stall window (1: any progress).
    pub(crate) min_bytes: u64,
    /// When the whole request must be done, and the duration that was (for the message).
    pub(crate) deadline: Option<(Instant, Duration)>,
}

impl Guard {
    pub(crate) fn host(&self) -> String {
        crate::transfer::host_of(&self.url)
    }

    pub(crate) fn stalled(&self, got: u64) -> PullError {
        let secs = secs(self.stall);
        let detail = if got == 0 {
            format!("sent no data for {secs}")
        } else {
            format!("sent only {got} bytes in {secs}")
        };
        PullError::Stalled {
            host: self.host(),
            detail,
            what: self.what.clone(),
        }
    }

    pub(crate) fn late(&self, took: Duration) -> PullError {
        PullError::Deadline {
            host: self.host(),
            what: self.what.clone(),
            within: secs(took),
        }
    }

    pub(crate) fn too_large(&self, limit: u64) -> PullError {
        PullError::TooLarge {
            host: self.host(),
            what: self.what.clone(),
            limit,
        }
    }
}

/// `30 s`, `1.5 s`.
pub(crate) fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

/// The body of `resp`, chunk by chunk, failing when the guard's stall window passes with less
/// than its `min_bytes`, or its deadline passes.
pub(crate) fn guarded(
    resp: reqwest::Response,
    guard: Guard,
) -> impl Stream<Item = Result<Bytes, PullError>> + Send + Unpin {
    guard_stream(resp.bytes_stream(), guard)
}

/// [`guarded`] over any stream of chunks (the unit tests feed it their own).
pub(crate) fn guard_stream<S, E>(
    inner: S,
    guard: Guard,
) -> impl Stream<Item = Result<Bytes, PullError>> + Send + Unpin
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<ChunkError>,
{
    struct State<S> {
        inner: std::pin::Pin<Box<S>>,
        guard: Guard,
        window_start: Instant,
        in_window: u64,
    }
    let state = State {
        inner: Box::pin(inner),
        guard,
        window_start: Instant::now(),
        in_window: 0,
    };
    Box::pin(futures_util::stream::unfold(Some(state), |st| async move {
        let mut st = st?;
        loop {
            let window_end = st.window_start + st.guard.stall;
            let until = match st.guard.deadline {
                Some((d, _)) => window_end.min(d),
                None => window_end,
            };
            match tokio::time::timeout_at(until, st.inner.next()).await {
                Ok(Some(Ok(chunk))) => {
                    st.in_window += chunk.len() as u64;
                    return Some((Ok(chunk), Some(st)));
                }
                Ok(Some(Err(e))) => {
                    let err = e.into().into_pull_error(&st.guard.url);
                    return Some((Err(err), None));
                }
                Ok(None) => return None,
                Err(_) => {
                    if let Some((d, took)) = st.guard.deadline {
                        if Instant::now() >= d {
                            return Some((Err(st.guard.late(took)), None));
                        }
                    }
                    if st.in_window < st.guard.min_bytes {
                        let err = st.guard.stalled(st.in_window);
                        return Some((Err(err), None));
                    }
                    st.window_start = Instant::now();
                    st.in_window = 0;
                }
            }
        }
    }))
}

/// A transport error of a body chunk.
pub(crate) enum ChunkError {
    Http(reqwest::Error),
    Pull(PullError),
}

impl ChunkError {
    fn into_pull_error(self, url: &str) -> PullError {
        match self {
            ChunkError::Http(e) => super::unreachable(url, &e),
            ChunkError::Pull(e) => e,
        }
    }
}

impl From<reqwest::Error> for ChunkError {
    fn from(e: reqwest::Error) -> Self {
        ChunkError::Http(e)
    }
}

impl From<PullError> for ChunkError {
    fn from(e: PullError) -> Self {
        ChunkError::Pull(e)
    }
}

/// The whole body of `resp`, refused past `cap` bytes (at once when its `Content-Length`
/// says so), read under `guard`.
pub(crate) async fn read_capped(
    resp: reqwest::Response,
    cap: u64,
    guard: Guard,
) -> Result<Vec<u8>, PullError> {
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(guard.too_large(cap));
    }
    collect_capped(guarded(resp, guard.clone()), cap, &guard).await
}

/// Collects a guarded body, refused past `cap` bytes.
pub(crate) async fn collect_capped(
    mut body: impl Stream<Item = Result<Bytes, PullError>> + Unpin,
    cap: u64,
    guard: &Guard,
) -> Result<Vec<u8>, PullError> {
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if buf.len() as u64 + chunk.len() as u64 > cap {
            return Err(guard.too_large(cap));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(stall_ms: u64, min_bytes: u64, deadline_ms: Option<u64>) -> Guard {
        Guard {
            url: "http://127.0.0.1:5000/v2/x/blobs/y".into(),
            what: "downloading sha256:abc".into(),
            stall: Duration::from_millis(stall_ms),
            min_bytes,
            deadline: deadline_ms.map(|ms| {
                let d = Duration::from_millis(ms);
                (Instant::now() + d, d)
            }),
        }
    }

    /// Chunks of `n` bytes, one every `every`, forever.
    fn trickle(
        n: usize,
        every: Duration,
    ) -> impl Stream<Item = Result<Bytes, PullError>> + Send + 'static {
        futures_util::stream::unfold((), move |()| async move {
            tokio::time::sleep(every).await;
            Some((Ok(Bytes::from(vec![b'x'; n])), ()))
        })
    }

    #[tokio::test]
    async fn silence_for_a_stall_window_fails_naming_what_did_not_arrive() {
        let g = guard(200, 1, None);
        let never = futures_util::stream::pending::<Result<Bytes, PullError>>();
        let err = collect_capped(guard_stream(never, g.clone()), 100, &g)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "registry 127.0.0.1:5000 sent no data for 0.2 s while downloading sha256:abc"
        );
    }

    #[tokio::test]
    async fn a_trickle_under_the_minimum_rate_fails() {
        let g = guard(300, 1024, None);
        let body = guard_stream(trickle(1, Duration::from_millis(30)), g.clone());
        let err = collect_capped(body, u64::MAX, &g)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("registry 127.0.0.1:5000 sent only ")
                && err.ends_with(" bytes in 0.3 s while downloading sha256:abc"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_steady_body_passes_windows_until_the_deadline() {
        let g = guard(200, 1, Some(700));
        let body = guard_stream(trickle(1, Duration::from_millis(20)), g.clone());
        let err = collect_capped(body, u64::MAX, &g).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "registry 127.0.0.1:5000 did not finish downloading sha256:abc within 0.7 s"
        );
    }

    #[tokio::test]
    async fn a_body_past_its_cap_is_cut_off() {
        let g = guard(1_000, 1, None);
        let body = guard_stream(trickle(1000, Duration::from_millis(1)), g.clone());
        let err = collect_capped(body, 4096, &g).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "registry 127.0.0.1:5000 sent more than 4096 bytes while downloading sha256:abc"
        );
    }

    #[tokio::test]
    async fn a_body_within_its_cap_is_read_whole() {
        let g = guard(1_000, 1, Some(1_000));
        let parts: Vec<Result<Bytes, PullError>> =
            vec![Ok(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"cd"))];
        let body = guard_stream(futures_util::stream::iter(parts), g.clone());
        assert_eq!(collect_capped(body, 4, &g).await.unwrap(), b"abcd");
    }
}
