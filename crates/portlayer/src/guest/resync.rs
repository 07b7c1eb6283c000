//! Asking a re-attached tether to say Hello: one that did not see its line go and come back
//! (the new host connected before its reader ran) says nothing of its own, and a restored
//! guest is never told its new host connected.

use std::sync::Arc;
use std::time::Duration;

use tether_proto::{Frame, HostMsg};
use tokio::sync::mpsc;

use super::session::REATTACH_TIMEOUT;

/// When a tether that has not said Hello is first sent `Resync`, and how often after that.
pub(super) struct Pace {
    first: Duration,
    every: Duration,
}

/// A re-attached tether usually says Hello by itself: it is asked after a second.
pub(super) const REATTACHED: Pace = Pace {
    first: Duration::from_secs(1),
    every: Duration::from_secs(1),
};

/// A restored tether never does: it is asked at once, and again while its VM resumes.
pub(super) const RESTORED: Pace = Pace {
    first: Duration::ZERO,
    every: Duration::from_millis(250),
};

/// Sends `Resync` at `pace` until the tether's Hello has come, the channel has gone, or
/// [`REATTACH_TIMEOUT`] has passed.
pub(super) async fn until_hello(
    to_guest: mpsc::Sender<Frame>,
    hello: Arc<std::sync::atomic::AtomicBool>,
    pace: Pace,
) {
    let deadline = tokio::time::Instant::now() + REATTACH_TIMEOUT;
    let mut wait = pace.first;
    loop {
        tokio::time::sleep(wait).await;
        wait = pace.every;
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

/// What a restored guest is told to change, in the tether's terms.
pub(super) fn restored(r: hypervisor::Restored) -> tether_proto::Restored {
    tether_proto::Restored {
        macs: r
            .macs
            .into_iter()
            .map(|(from, to)| tether_proto::MacChange { from, to })
            .collect(),
    }
}
