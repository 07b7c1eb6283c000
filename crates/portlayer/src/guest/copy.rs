//! `docker cp` through a running guest: what is at a path, a tar stream out, a tar stream in
//! (see `transfer.rs` for the checks and `tether_proto::archive` for the conversation).
//! Every wait is bounded: the guest's answer, each piece of data, each grant of credit.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tether_proto::archive::{TRANSFER_FRAME, TRANSFER_WINDOW};
use tether_proto::{Frame, FrameKind, GetMode, HostMsg, PutRequest, ARCHIVE_VERSION};
use tokio::sync::{mpsc, oneshot};

use super::control::{Answer, GuestControl};
use super::transfer::{ContainerPath, CopyError};

/// How long a guest may take to begin a copy (walking to a path under load, in TCG).
const BEGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a copy may go without data or credit moving.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// What a copy out of the container sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyMode {
    /// A tar stream of the path, as `docker cp` names its entries.
    Copy,
    /// `docker export`: a tar stream of the root filesystem alone (the path is `/`).
    Export,
    /// One JSON [`tether_proto::ManifestEntry`] a line for everything on the root filesystem
    /// alone (the path is `/`): what `docker diff` compares.
    Manifest,
    /// `docker commit`: a tar stream of these paths of the root filesystem (each alone),
    /// the container's processes stopped meanwhile with `pause`.
    Layer { paths: Vec<String>, pause: bool },
}

/// What a copy into the container asks for.
#[derive(Debug, Clone, Default)]
pub struct CopyIn {
    /// The directory extracted into.
    pub path: String,
    pub no_overwrite_dir_non_dir: bool,
    /// The container's user, who owns what is extracted (`docker cp -a`); `None` keeps
    /// the archive's owners.
    pub owner: Option<String>,
}

fn failed(e: impl std::fmt::Display) -> CopyError {
    CopyError::Failed(e.to_string())
}

impl GuestControl {
    fn check_copies(&self) -> Result<(), CopyError> {
        let version = self.version();
        if version < ARCHIVE_VERSION {
            return Err(CopyError::Failed(format!(
                "the container's tether (protocol version {version}) cannot copy files: restart the container first"
            )));
        }
        Ok(())
    }

    /// What `lstat` says of `path` in the container.
    pub async fn stat_path(&self, path: &str) -> Result<ContainerPath, CopyError> {
        self.check_copies()?;
        let path = path.to_string();
        match self
            .ask(|seq| HostMsg::StatPath { seq, path })
            .await
            .map_err(CopyError::Failed)?
        {
            Answer::PathStat(r) => r,
            _ => Err(failed("the guest answered another question")),
        }
    }

    /// Starts a tar stream of `path` out of the container.
    /// What comes out is `mode`'s (see [`CopyMode`]).
    pub async fn copy_out(
        &self,
        path: &str,
        mode: CopyMode,
    ) -> Result<(ContainerPath, CopyOut), CopyError> {
        self.check_copies()?;
        let session = self.routes.number();
        let began = self.transfers.open(session, true);
        let (mode, paths, pause) = match mode {
            CopyMode::Copy => (GetMode::Copy, Vec::new(), false),
            CopyMode::Export => (GetMode::Export, Vec::new(), false),
            CopyMode::Manifest => (GetMode::Manifest, Vec::new(), false),
            CopyMode::Layer { paths, pause } => (GetMode::Layer, paths, pause),
        };
        let msg = HostMsg::ArchiveGet {
            session,
            path: path.to_string(),
            window: TRANSFER_WINDOW,
            mode,
            paths,
            pause,
        };
        let mut out = CopyOut {
            control: self.clone(),
            session,
            data: began.data,
            done: Some(began.done),
            owed: 0,
            finished: false,
        };
        self.send(&msg)
            .map_err(|e| failed(format!("the guest cannot be told: {e:?}")))?;
        let (stat, _) = begun(began.stat).await?;
        out.finished = false;
        Ok((stat, out))
    }

    /// Extracts the tar stream `body` into the container as `req` says.
    pub async fn copy_in<S, E>(&self, req: CopyIn, mut body: S) -> Result<(), CopyError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.check_copies()?;
        let session = self.routes.number();
        let began = self.transfers.open(session, false);
        let msg = HostMsg::ArchivePut {
            session,
            request: Box::new(PutRequest {
                path: req.path,
                no_overwrite_dir_non_dir: req.no_overwrite_dir_non_dir,
                owner: req.owner,
            }),
        };
        let cancel = |me: &GuestControl| {
            me.transfers.close(session);
            let _ = me.send(&HostMsg::Cancel { session });
        };
        if let Err(e) = self.send(&msg) {
            self.transfers.close(session);
            return Err(failed(format!("the guest cannot be told: {e:?}")));
        }
        begun(began.stat).await?;
        let mut done = began.done;
        let sent = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| failed(format!("reading the archive: {e}")))?;
                for piece in chunk.chunks(TRANSFER_FRAME) {
                    let permits = tokio::time::timeout(
                        STALL_TIMEOUT,
                        began.credit.acquire_many(piece.len() as u32),
                    )
                    .await
                    .map_err(|_| failed("the container took no data for 120 s"))?
                    .map_err(failed)?;
                    permits.forget();
                    let frame = Frame::data(FrameKind::Stdin, session, piece.to_vec());
                    self.stdin
                        .send(frame)
                        .await
                        .map_err(|_| failed("the container stopped during the copy"))?;
                }
            }
            let end = Frame::data(FrameKind::StdinClosed, session, Vec::new());
            self.stdin
                .send(end)
                .await
                .map_err(|_| failed("the container stopped during the copy"))
        };
        // The guest may end the copy early (an entry it refuses): its word wins.
        let outcome = tokio::select! {
            r = sent => r.map(|()| None),
            d = &mut done => Ok(Some(d)),
        };
        let end = match outcome {
            Ok(Some(d)) => d,
            Ok(None) => match tokio::time::timeout(STALL_TIMEOUT, &mut done).await {
                Ok(d) => d,
                Err(_) => {
                    cancel(self);
                    return Err(failed("the container did not finish the copy within 120 s"));
                }
            },
            Err(e) => {
                cancel(self);
                return Err(e);
            }
        };
        match end {
            Ok(None) => Ok(()),
            Ok(Some(why)) => Err(CopyError::Failed(why)),
            Err(_) => Err(failed("the container's VM went away during the copy")),
        }
    }
}

/// Waits for the guest's `Transfer`.
async fn begun(
    stat: oneshot::Receiver<Result<(ContainerPath, u64), CopyError>>,
) -> Result<(ContainerPath, u64), CopyError> {
    match tokio::time::timeout(BEGIN_TIMEOUT, stat).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(failed("the container's VM went away before the copy began")),
        Err(_) => Err(failed(format!(
            "the guest did not begin the copy within {} s",
            BEGIN_TIMEOUT.as_secs()
        ))),
    }
}

/// A tar stream coming out of the container. Reading it grants the guest credit for more;
/// dropping it before its end cancels the copy.
pub struct CopyOut {
    control: GuestControl,
    session: u32,
    data: mpsc::Receiver<Bytes>,
    done: Option<oneshot::Receiver<Option<String>>>,
    /// Bytes read and not yet granted back.
    owed: u64,
    finished: bool,
}

impl CopyOut {
    /// The next piece of the stream; `None` at its end.
    pub async fn next(&mut self) -> Option<Result<Bytes, CopyError>> {
        if self.finished {
            return None;
        }
        match tokio::time::timeout(STALL_TIMEOUT, self.data.recv()).await {
            Ok(Some(bytes)) => {
                self.owed += bytes.len() as u64;
                if self.owed >= TRANSFER_WINDOW / 4 {
                    self.grant().await;
                }
                Some(Ok(bytes))
            }
            Ok(None) => {
                self.finished = true;
                let done = self.done.take()?;
                match done.await {
                    Ok(None) => None,
                    Ok(Some(why)) => Some(Err(CopyError::Failed(why))),
                    Err(_) => Some(Err(failed("the container's VM went away during the copy"))),
                }
            }
            Err(_) => {
                self.cancel();
                Some(Err(failed("the container sent no data for 120 s")))
            }
        }
    }

    async fn grant(&mut self) {
        let bytes = std::mem::take(&mut self.owed);
        self.control.transfers.granted(self.session, bytes);
        let frame = Frame::control(&HostMsg::Credit {
            session: self.session,
            bytes,
        });
        let _ = self.control.tx.send(frame).await;
    }

    fn cancel(&mut self) {
        if !self.finished {
            self.finished = true;
            self.control.transfers.close(self.session);
            let _ = self.control.send(&HostMsg::Cancel {
                session: self.session,
            });
        }
    }
}

impl Drop for CopyOut {
    fn drop(&mut self) {
        self.cancel();
    }
}
