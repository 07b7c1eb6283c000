//! A container VM does not outlive its process. When the tether reports the main process's
//! exit, the host asks the guest to power off; a guest that does not within the grace (root
//! inside may ignore the request) is powered off from outside, so it cannot go on running
//! beyond the VCH's limits, which count running containers only. A session lost for a
//! protocol violation powers the VM off at once: that guest is not trusted to do anything.

use std::time::Duration;

use hypervisor::PowerState;

use super::Containers;
use crate::container::Status;
use crate::guest::session::POWER_OFF_GRACE;

impl Containers {
    /// Powers off container `id`'s VM once its run `run` (its start count) has ended: after
    /// `grace` if the guest has not done so itself, unless the container was started again
    /// meanwhile (a VM powered on from vSphere and taken as a start is the next run's, even
    /// if that run has ended too: its own reaper sees to it). It waits for the container's
    /// operations (a start, a VM booted to copy files): a VM they power on is theirs, not the
    /// ended run's.
    pub(super) async fn reap_vm(&self, id: &str, grace: Duration, run: u64) {
        if !grace.is_zero() {
            tokio::time::sleep(grace).await;
        }
        let Some(live) = self.live(id) else { return };
        let _op = live.op.lock().await;
        let Ok(rec) = self.get(id) else { return };
        if rec.state.status == Status::Running || rec.state.start_count != run {
            return; // a new run has the VM
        }
        if self.inner.backend.power_state(id).await != PowerState::On {
            return;
        }
        tracing::warn!(%id, "the container VM is still on after its process ended: powering it off");
        if let Err(e) = self.inner.backend.power_off(id, Duration::ZERO).await {
            tracing::warn!(%id, "powering it off failed: {e}");
        }
    }
}

/// How long a guest has to power off by itself after its process ended.
pub(super) fn grace_after(lost: bool) -> Duration {
    if lost {
        Duration::ZERO
    } else {
        POWER_OFF_GRACE
    }
}
