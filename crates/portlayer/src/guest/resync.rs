//! Asking a re-attached tether to say Hello: one that did not see its line go and come back
//! (the new host connected before its reader ran) says nothing of its own, and a restored
//! guest is never told its new host connected.

use std::sync::Arc;
use std::time::Duration;

use tether_proto::{Frame, HostMsg};
use tokio::sync::mpsc;

use super::session::REATTACH_TIMEOUT;

/// How often a tether that has not said Hello is sent `Resync`.
const RESYNC_EVERY: Duration = Duration::from_secs(1);

/// Sends `Resync` every [`RESYNC_EVERY`] until the tether's Hello has come, the channel has
/// gone, or [`REATTACH_TIMEOUT`] has passed.
pub(super) async fn until_hello(
    to_guest: mpsc::Sender<Frame>,
    hello: Arc<std::sync::atomic::AtomicBool>,
) {
    let deadline = tokio::time::Instant::now() + REATTACH_TIMEOUT;
    loop {
        tokio::time::sleep(RESYNC_EVERY).await;
        if hello.load(std::sync::atomic::Ordering::Relaxed)
            || tokio::time::Instant::now() >= deadline
            || to_guest.is_closed()
        {
            return;
        }
        tracing::debug!("no Hello from the re-attached tether yet: asking it to resync");
        let _ = to_guest.try_send(Frame::control(&HostMsg::Resync));
    }
}
