//! The main process's standard input: what a client writes, queued for a run and forwarded
//! to the guest as stdin frames.

use std::sync::Arc;

use bytes::Bytes;
use tether_proto::{Frame, FrameKind, MAIN_SESSION, MAX_PAYLOAD};
use tokio::sync::{mpsc, Mutex};

/// Stdin frames waiting for the guest to read them (at most [`MAX_PAYLOAD`] each; attach
/// reads 32 KiB at a time). A full queue holds back the client that writes stdin.
pub const STDIN_FRAMES: usize = 16;
/// Stdin messages waiting for a run to forward them: what a client may write ahead of the
/// process (attach reads 32 KiB at a time, so about 2 MiB).
pub const STDIN_QUEUE: usize = 64;

/// Data for the main process's standard input.
#[derive(Debug)]
pub enum StdinMsg {
    Data(Bytes),
    Close,
}

/// Forwards what the client writes to the guest, in frames of at most [`MAX_PAYLOAD`], until
/// either side goes.
pub(super) async fn forward_stdin(
    stdin: Arc<Mutex<mpsc::Receiver<StdinMsg>>>,
    to_guest: mpsc::Sender<Frame>,
) {
    let mut rx = stdin.lock().await;
    while let Some(msg) = rx.recv().await {
        let frame = match msg {
            StdinMsg::Data(data) => {
                for chunk in data.chunks(MAX_PAYLOAD) {
                    if to_guest
                        .send(Frame::data(FrameKind::Stdin, MAIN_SESSION, chunk.to_vec()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                continue;
            }
            StdinMsg::Close => Frame::data(FrameKind::StdinClosed, MAIN_SESSION, Vec::new()),
        };
        if to_guest.send(frame).await.is_err() {
            return;
        }
    }
}
