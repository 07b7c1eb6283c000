//! `docker exec`: `POST /containers/{id}/exec`, `POST /exec/{id}/start` (a hijacked
//! connection, as attach's, or nothing with `Detach`), `POST /exec/{id}/resize` and
//! `GET /exec/{id}/json`.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::{Bytes, BytesMut};
use hyper_util::rt::TokioIo;
use portlayer::logs::{LogEntry, LogStream};
use portlayer::ExecConfig;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::query::DockerQuery;
use crate::streams::{check_upgrade, frame, switching, BATCH};
use crate::{ApiError, ApiResult, AppState};

/// Docker's exec create body. Every field the CLI sends is applied; others are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
struct CreateBody {
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    /// `detachKeys` is how docker-py sends the config file's.
    #[serde(alias = "detachKeys")]
    detach_keys: Option<String>,
    tty: bool,
    console_size: Option<[u16; 2]>,
    env: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    privileged: bool,
    user: Option<String>,
    working_dir: Option<String>,
    /// Sent by older clients; what start says wins.
    detach: bool,
    /// Sent by docker-py: the container the path names (another one is refused).
    container: Option<String>,
}

/// Docker's exec start body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
struct StartBody {
    detach: bool,
    tty: bool,
    console_size: Option<[u16; 2]>,
}

fn body<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

/// POST /containers/{id}/exec
pub async fn create(
    State(st): State<AppState>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let b: CreateBody = body(&bytes)?;
    if let Some(env) = b
        .env
        .iter()
        .flatten()
        .find(|e| !e.contains('=') || e.starts_with('='))
    {
        return Err(ApiError::bad_request(format!(
            "invalid environment variable: {env}"
        )));
    }
    let config = ExecConfig {
        cmd: b.cmd.unwrap_or_default(),
        env: b.env.unwrap_or_default(),
        user: b.user.unwrap_or_default(),
        working_dir: b.working_dir.unwrap_or_default(),
        tty: b.tty,
        attach_stdin: b.attach_stdin,
        attach_stdout: b.attach_stdout,
        attach_stderr: b.attach_stderr,
        privileged: b.privileged,
        console_size: b.console_size.map_or((0, 0), |[h, w]| (h, w)),
        detach_keys: b.detach_keys.unwrap_or_default(),
    };
    // `Detach` at create is what older clients send; whether the exec detaches is start's.
    let _ = b.detach;
    if let Some(other) = b.container.filter(|c| c != &id) {
        if st.containers.get(&other)?.id != st.containers.get(&id)?.id {
            return Err(ApiError::bad_request(format!(
                "the body names container {other}, the path container {id}"
            )));
        }
    }
    keys(&config.detach_keys)?;
    let exec = st.containers.create_exec(&id, config)?;
    Ok((StatusCode::CREATED, Json(json!({ "Id": exec }))).into_response())
}

/// POST /exec/{id}/start
pub async fn start(
    State(st): State<AppState>,
    Path(id): Path<String>,
    mut req: Request,
) -> ApiResult<Response> {
    let bytes = axum::body::to_bytes(std::mem::take(req.body_mut()), crate::MAX_JSON_BODY)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
    let b: StartBody = body(&bytes)?;
    let info = st.containers.exec_info(&id)?;
    // Whether the process has a terminal was set at create; start's `Tty` says how the
    // stream is framed, as dockerd frames it: raw, or multiplexed (docker-py starts a
    // terminal exec with `false` and reads the frames).
    let framed_raw = b.tty;
    if b.detach {
        st.containers.start_exec(&id, true).await?;
        return Ok(StatusCode::OK.into_response());
    }
    check_upgrade(&req, "exec start")?;
    // Refused here with its status; run once the stream is switched (see `claim_exec`).
    let claim = st.containers.claim_exec(&id)?;
    let (want_out, want_err) = (info.config.attach_stdout, info.config.attach_stderr);
    let detach_keys = keys(&info.config.detach_keys)?;
    let tty = framed_raw;
    let process_tty = info.config.tty;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            // As dockerd, whose exec runs once started whether its client stays or not: it
            // runs detached, its output not kept, its input closed.
            tracing::warn!(exec = %id, "the client left before its exec's stream was switched: the exec runs detached");
            if let Err(e) = st.containers.run_exec(claim, true).await {
                tracing::warn!(exec = %id, "the exec did not start: {e}");
            }
            return;
        };
        // Until the first output is written: when it may be (see SETTLE).
        let mut settled = Some(tokio::time::Instant::now() + SETTLE);
        let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
        let streams = match st.containers.run_exec(claim, false).await {
            Ok(s) => s,
            Err(e) => {
                let entry = entry(LogStream::Stderr, Bytes::from(format!("{e}\r\n")));
                let _ = wr.write_all(&frame(&entry, tty, false)).await;
                let _ = wr.shutdown().await;
                return;
            }
        };
        if let Some([h, w]) = b.console_size.filter(|_| info.config.tty) {
            let _ = st.containers.resize_exec(&id, h, w);
        }
        if let Some(why) = streams.failed {
            let entry = entry(LogStream::Stdout, Bytes::from(format!("{why}\r\n")));
            let _ = wr.write_all(&frame(&entry, tty, false)).await;
            let _ = wr.shutdown().await;
            return;
        }
        // The detach sequence ends the client's attach; the process runs on.
        let detached = tokio_util::sync::CancellationToken::new();
        let detach = detached.clone();
        let stdin_task = streams.stdin.map(|stdin| {
            let mut scanner = crate::detach::Scanner::new(detach_keys);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    let n = match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let (data, detach_now) = scanner.feed(&buf[..n]);
                    if !data.is_empty() && !stdin.send(Bytes::from(data)).await {
                        return;
                    }
                    if detach_now {
                        detach.cancel();
                        return;
                    }
                }
                // The client's input ended, as dockerd takes it: without a terminal the
                // process's input is closed; with one the client's attach ends there, the
                // process running on (how the docker CLI over TCP leaves with ctrl-p ctrl-q:
                // it keeps the keys and closes its side).
                if process_tty {
                    detach.cancel();
                } else {
                    stdin.close().await;
                }
            })
        });
        let mut output = streams.output;
        let mut buf = BytesMut::new();
        loop {
            let first = tokio::select! {
                o = output.recv() => o,
                _ = detached.cancelled() => break,
            };
            let Some(first) = first else { break };
            let mut next = Some(first);
            while let Some(o) = next {
                let wanted = match o.stream {
                    LogStream::Stdout => want_out,
                    LogStream::Stderr => want_err,
                };
                if wanted {
                    buf.extend_from_slice(&frame(&entry(o.stream, o.data), tty, false));
                }
                next = if buf.len() < BATCH {
                    output.try_recv().ok()
                } else {
                    None
                };
            }
            if let Some(at) = settled.take() {
                tokio::time::sleep_until(at).await;
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

/// How long after the switch to a raw stream an exec's first output is held. docker-py
/// reads the switch's answer through a buffer and then reads the bare socket, so output that
/// arrives with the answer is lost to it; on a busy machine the guest's first output did
/// arrive with it (5 of 60 `echo` execs under two CPU hogs). dockerd's own exec takes tens
/// of milliseconds to start after its answer; this gap is of that order, and only output
/// waits for it.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(30);

/// The detach sequence of an exec (`DetachKeys` at create; Docker's default when none).
fn keys(given: &str) -> ApiResult<Vec<u8>> {
    let given = Some(given).filter(|k| !k.is_empty());
    crate::detach::parse(given.unwrap_or(crate::detach::DEFAULT)).map_err(ApiError::bad_request)
}

fn entry(stream: LogStream, data: Bytes) -> LogEntry {
    LogEntry::now(stream, data)
}

/// What `POST /exec/{id}/resize` reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResizeQuery {
    h: u16,
    w: u16,
}

/// POST /exec/{id}/resize?h=&w=
pub async fn resize(
    State(st): State<AppState>,
    Path(id): Path<String>,
    DockerQuery(q): DockerQuery<ResizeQuery>,
) -> ApiResult<StatusCode> {
    st.containers.resize_exec(&id, q.h, q.w)?;
    Ok(StatusCode::OK)
}

/// GET /exec/{id}/json
pub async fn inspect(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let e = st.containers.exec_info(&id)?;
    let c = &e.config;
    let (entrypoint, arguments) = c
        .cmd
        .split_first()
        .map_or((String::new(), &[][..]), |(a, r)| (a.clone(), r));
    Ok(Json(json!({
        "ID": e.id,
        "Running": e.running,
        "ExitCode": e.exit_code,
        "ProcessConfig": {
            "tty": c.tty,
            "entrypoint": entrypoint,
            "arguments": arguments,
            "privileged": c.privileged,
            "user": c.user,
        },
        "OpenStdin": c.attach_stdin,
        "OpenStderr": c.attach_stderr,
        "OpenStdout": c.attach_stdout,
        "CanRemove": false,
        "ContainerID": e.container_id,
        "DetachKeys": c.detach_keys,
        "Pid": e.pid,
    })))
}
