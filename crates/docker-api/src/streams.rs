//! The streaming endpoints: `wait` (headers at once, status at exit), `attach` (a hijacked
//! connection: raw for a TTY, 8-byte multiplexed frames otherwise) and `logs`.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, Utc};
use hyper_util::rt::TokioIo;
use portlayer::logs::{LineFilter, LogEntry, LogStream};
use portlayer::{Status, WaitCondition};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::query::{or_none, DockerQuery};
use crate::{ApiError, ApiResult, AppState};

const RAW: &str = "application/vnd.docker.raw-stream";
const MUX: &str = "application/vnd.docker.multiplexed-stream";

/// Refuses a request to hijack that does not ask for the connection upgrade (`what`: the
/// endpoint, for the message).
pub(crate) fn check_upgrade(req: &Request, what: &str) -> ApiResult<()> {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    if upgrade.as_deref() != Some("tcp") {
        return Err(ApiError::bad_request(format!(
            "{what} needs a connection upgrade (Upgrade: tcp)"
        )));
    }
    Ok(())
}

/// The response that hands the connection over: raw for a TTY, multiplexed otherwise.
pub(crate) fn switching(tty: bool) -> ApiResult<Response> {
    let ctype = if tty { RAW } else { MUX };
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONTENT_TYPE, ctype)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// The most of a container's log read into memory at once for `docker logs` (a record is at
/// most a frame, 1 MiB, so a chunk always holds one).
const LOG_CHUNK: u64 = 2 << 20;

/// What `POST /containers/{id}/wait` reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct WaitQuery {
    /// `not-running` (or empty), `next-exit` or `removed`.
    condition: Option<String>,
}

/// POST /containers/{id}/wait?condition=
pub async fn wait(
    State(st): State<AppState>,
    Path(id): Path<String>,
    DockerQuery(q): DockerQuery<WaitQuery>,
) -> ApiResult<Response> {
    let condition = match q.condition.as_deref() {
        None | Some("") | Some("not-running") => WaitCondition::NotRunning,
        Some("next-exit") => WaitCondition::NextExit,
        Some("removed") => WaitCondition::Removed,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid condition: \"{other}\""
            )))
        }
    };
    let c = st.containers.get(&id)?;
    let containers = st.containers.clone();
    let body = futures_util::stream::once(async move {
        let v = match containers.wait(&c.id, condition).await {
            Ok(code) => json!({ "StatusCode": code, "Error": null }),
            Err(e) => json!({ "StatusCode": -1, "Error": { "Message": e.to_string() } }),
        };
        let mut line = serde_json::to_vec(&v).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::io::Error>(Bytes::from(line))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

/// Encodes one entry for the client: raw for a TTY, else with the 8-byte stream header.
/// An entry as the client reads it; with `timestamps`, a line is stamped at its first piece.
pub(crate) fn frame(entry: &LogEntry, tty: bool, timestamps: bool) -> Bytes {
    let ts = (timestamps && !entry.continues).then(|| {
        format!(
            "{} ",
            entry
                .time
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        )
    });
    let len = entry.data.len() + ts.as_ref().map_or(0, String::len);
    let mut out = BytesMut::with_capacity(len + 8);
    if !tty {
        out.put_u8(match entry.stream {
            LogStream::Stdout => 1,
            LogStream::Stderr => 2,
        });
        out.put_bytes(0, 3);
        out.put_u32(len as u32);
    }
    if let Some(ts) = ts {
        out.put_slice(ts.as_bytes());
    }
    out.put_slice(&entry.data);
    out.freeze()
}

/// How many bytes of ready output go to a client in one write.
pub(crate) const BATCH: usize = 64 * 1024;

fn wanted(entry: &LogEntry, stdout: bool, stderr: bool) -> bool {
    wanted_stream(entry.stream, stdout, stderr)
}

fn wanted_stream(stream: LogStream, stdout: bool, stderr: bool) -> bool {
    match stream {
        LogStream::Stdout => stdout,
        LogStream::Stderr => stderr,
    }
}

/// What `POST /containers/{id}/attach` reads: the streams wanted; with `stream`, the live
/// streams (a replay of the log before them, `logs` with `stream`, is not made yet); without
/// it, the log (`logs`) and nothing more, as Docker answers.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AttachQuery {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    stream: bool,
    logs: bool,
    /// The sequence that detaches the client (`--detach-keys`, the config file's
    /// `detachKeys`); Docker's `ctrl-p,ctrl-q` when none.
    #[serde(rename = "detachKeys")]
    detach_keys: Option<String>,
}

/// POST /containers/{id}/attach?stream=&stdin=&stdout=&stderr=
pub async fn attach(
    State(st): State<AppState>,
    Path(id): Path<String>,
    DockerQuery(q): DockerQuery<AttachQuery>,
    mut req: Request,
) -> ApiResult<Response> {
    let (want_stdout, want_stderr) = (q.stdout, q.stderr);
    if !q.stream {
        return attach_log(st, &id, q, req);
    }
    let keys = q.detach_keys.as_deref().filter(|k| !k.is_empty());
    let keys = crate::detach::parse(keys.unwrap_or(crate::detach::DEFAULT))
        .map_err(ApiError::bad_request)?;
    let (rec, streams) = st.containers.attach(&id, q.stdin)?;
    check_upgrade(&req, "attach")?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let tty = streams.tty;
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(id = %rec.id, "attach upgrade failed: {e}");
                return;
            }
        };
        let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
        // The detach sequence ends the attach: the output stops and the connection closes;
        // the container runs on, its stdin open.
        let detached = tokio_util::sync::CancellationToken::new();
        let detach = detached.clone();
        let stdin_task = streams.stdin.map(|tx| {
            let once = streams.stdin_once;
            let mut scanner = crate::detach::Scanner::new(keys);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    let n = match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let (data, detach_now) = scanner.feed(&buf[..n]);
                    // Bounded: a container that does not read holds back this client.
                    if !data.is_empty()
                        && tx
                            .send(portlayer::StdinMsg::Data(Bytes::from(data)))
                            .await
                            .is_err()
                    {
                        return;
                    }
                    if detach_now {
                        detach.cancel();
                        return;
                    }
                }
                // The client's input ended: a terminal's attach ends there, as dockerd
                // ends it, the container running on (the docker CLI over TCP ends its `-it`
                // session with ctrl-p ctrl-q this way: it keeps the keys and closes its
                // side); a container that reads its input once (`docker run -i`) has it
                // closed; another keeps its input open and its output coming.
                if tty {
                    detach.cancel();
                } else if once {
                    let _ = tx.send(portlayer::StdinMsg::Close).await;
                }
            })
        });
        let mut output = streams.output;
        let mut buf = BytesMut::new();
        loop {
            let entry = tokio::select! {
                e = output.next() => e,
                _ = detached.cancelled() => {
                    tracing::debug!(id = %rec.id, "attach detached by its key sequence");
                    break;
                }
            };
            let Some(entry) = entry else { break };
            // What is ready goes out in one write: one system call per line would make
            // the client, not the container, set the pace.
            let mut next = Some(entry);
            while let Some(e) = next {
                if wanted(&e, want_stdout, want_stderr) {
                    buf.extend_from_slice(&frame(&e, tty, false));
                }
                next = if buf.len() < BATCH {
                    output.try_next()
                } else {
                    None
                };
            }
            if !buf.is_empty() && wr.write_all(&buf.split()).await.is_err() {
                break;
            }
        }
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
        if let Some(t) = stdin_task {
            t.abort();
        }
    });
    switching(tty)
}

/// A container made with `--log-driver none` has no log to read back, as dockerd answers.
fn readable(rec: &portlayer::ContainerRecord) -> ApiResult<()> {
    if rec.spec.no_log {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "configured logging driver does not support reading",
        ));
    }
    Ok(())
}

/// An attach without `stream`: the container's log so far when `logs` asks for it (all of
/// it, a chunk at a time), then the connection closes.
fn attach_log(st: AppState, id: &str, q: AttachQuery, mut req: Request) -> ApiResult<Response> {
    let rec = st.containers.get(id)?;
    check_upgrade(&req, "attach")?;
    let log = match q.logs {
        true => {
            readable(&rec)?;
            Some(std::sync::Arc::new(st.containers.open_log(&rec.id)?))
        }
        false => None,
    };
    let tty = rec.spec.process.tty;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut io = TokioIo::new(upgraded);
        if let Some(log) = log {
            let l = log.clone();
            let end = tokio::task::spawn_blocking(move || l.scan(l.start(), |_| {})).await;
            let Ok(Ok(end)) = end else {
                let _ = io.shutdown().await;
                return;
            };
            let mut pos = log.start();
            while pos < end {
                let (l, to) = (log.clone(), end.min(pos + LOG_CHUNK));
                let read = tokio::task::spawn_blocking(move || l.read_range(pos, to)).await;
                let Ok(Ok(chunk)) = read else { break };
                if chunk.next <= pos {
                    break;
                }
                let mut buf = BytesMut::new();
                for (e, _) in chunk
                    .entries
                    .iter()
                    .filter(|(e, _)| wanted(e, q.stdout, q.stderr))
                {
                    buf.extend_from_slice(&frame(e, tty, false));
                }
                if io.write_all(&buf).await.is_err() {
                    return;
                }
                pos = chunk.next;
            }
        }
        let _ = io.shutdown().await;
    });
    switching(tty)
}

/// `since`/`until` as the CLI sends them, `SECONDS[.NANOSECONDS]`, read exactly (through an
/// f64 a nanosecond timestamp is off by up to ~200 ns, enough to miss its own entry).
fn parse_time(v: Option<&str>) -> Option<DateTime<Utc>> {
    let v = v.filter(|s| !s.is_empty() && *s != "0")?;
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = match digits.len() {
        0 => 0,
        n => digits.parse::<u32>().ok()? * 10u32.pow(9 - n as u32),
    };
    DateTime::from_timestamp(secs, nanos)
}

/// What `GET /containers/{id}/logs` reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LogsQuery {
    stdout: bool,
    stderr: bool,
    follow: bool,
    timestamps: bool,
    /// `SECONDS[.NANOSECONDS]`; anything else (or `0`) is no bound.
    since: Option<String>,
    until: Option<String>,
    /// The last this many entries (`all`, or anything not a number, is every one).
    #[serde(deserialize_with = "or_none")]
    tail: Option<i64>,
}

/// GET /containers/{id}/logs?stdout=&stderr=&follow=&tail=&timestamps=&since=&until=
pub async fn logs(
    State(st): State<AppState>,
    Path(id): Path<String>,
    DockerQuery(q): DockerQuery<LogsQuery>,
) -> ApiResult<Response> {
    let (stdout, stderr) = (q.stdout, q.stderr);
    if !stdout && !stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let (follow, timestamps) = (q.follow, q.timestamps);
    let since = parse_time(q.since.as_deref());
    let until = parse_time(q.until.as_deref());
    let tail: Option<usize> = q.tail.filter(|t| *t >= 0).map(|t| t as usize);
    let c = st.containers.get(&id)?;
    readable(&c)?;
    // Follow before reading the file, so nothing falls between the two.
    let live = if follow {
        Some(st.containers.follow(&c.id)?)
    } else {
        None
    };
    let running = st.containers.get(&c.id)?.state.status == Status::Running;
    let tty = c.spec.process.tty;
    let log = st.containers.open_log(&c.id)?;
    let keep_at = move |stream: LogStream, time: DateTime<Utc>| {
        wanted_stream(stream, stdout, stderr)
            && since.is_none_or(|s| time >= s)
            && until.is_none_or(|u| time <= u)
    };
    // Where to start and where the log ends now, from the records' headers alone, across
    // its segments (the view opened above stays whole whatever rotation does meanwhile).
    // `--tail` counts lines: the starts of the last ones wanted.
    let (log, start, log_end) = tokio::task::spawn_blocking(move || {
        let mut last = std::collections::VecDeque::new();
        let mut lines = LineFilter::new(keep_at);
        let end = log.scan(log.start(), |h| {
            let starts_line = !h.continues;
            if let Some(n) = tail.filter(|_| lines.wants(h.stream, h.continues, h.time)) {
                if starts_line {
                    last.push_back(h.start);
                }
                if last.len() > n {
                    last.pop_front();
                }
            }
        })?;
        let start = match tail {
            Some(_) => last.front().copied().unwrap_or(end),
            None => log.start(),
        };
        Ok((std::sync::Arc::new(log), start, end))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e: std::io::Error| ApiError::internal(format!("reading the container log: {e}")))?;
    let lines = std::sync::Arc::new(std::sync::Mutex::new(match tail {
        Some(_) => LineFilter::from_line_start(keep_at),
        None => LineFilter::new(keep_at),
    }));
    let keep = move |lines: &std::sync::Mutex<LineFilter<_>>, e: &LogEntry| {
        let mut lines = lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.wants(e.stream, e.continues, e.time)
    };
    let live_lines = lines.clone();
    // The log up to `log_end`, read and sent a chunk at a time.
    let head = futures_util::stream::unfold(start, move |pos| {
        let log = log.clone();
        let lines = lines.clone();
        async move {
            if pos >= log_end {
                return None;
            }
            let to = log_end.min(pos + LOG_CHUNK);
            let chunk = tokio::task::spawn_blocking(move || log.read_range(pos, to))
                .await
                .ok()?
                .ok()?;
            if chunk.next <= pos {
                return None;
            }
            let mut buf = BytesMut::new();
            for (e, _) in chunk.entries.iter().filter(|(e, _)| keep(&lines, e)) {
                buf.extend_from_slice(&frame(e, tty, timestamps));
            }
            Some((Ok::<_, std::io::Error>(buf.freeze()), chunk.next))
        }
    });
    let ctype = if tty { RAW } else { MUX };
    let body = match live.filter(|_| running && until.is_none()) {
        None => Body::from_stream(head),
        Some(mut follower) => {
            follower.start_at(log_end);
            let rest = futures_util::stream::unfold(follower, move |mut f| {
                let lines = live_lines.clone();
                async move {
                    let mut buf = BytesMut::new();
                    while let Some(e) = f.next().await {
                        let mut next = Some(e);
                        while let Some(e) = next {
                            if keep(&lines, &e) {
                                buf.extend_from_slice(&frame(&e, tty, timestamps));
                            }
                            next = if buf.len() < BATCH {
                                f.try_next()
                            } else {
                                None
                            };
                        }
                        if !buf.is_empty() {
                            return Some((Ok::<_, std::io::Error>(buf.freeze()), f));
                        }
                    }
                    None
                }
            });
            Body::from_stream(futures_util::StreamExt::chain(head, rest))
        }
    };
    Ok(([(header::CONTENT_TYPE, ctype)], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn since_and_until_are_read_to_the_nanosecond() {
        let t = parse_time(Some("1764750000.123456789")).unwrap();
        assert_eq!(
            (t.timestamp(), t.timestamp_subsec_nanos()),
            (1764750000, 123456789)
        );
        let t = parse_time(Some("12.5")).unwrap();
        assert_eq!(
            (t.timestamp(), t.timestamp_subsec_nanos()),
            (12, 500_000_000)
        );
        assert!(parse_time(Some("0")).is_none());
        assert!(parse_time(Some("soon")).is_none());
    }
}
