//! Signals to a running container: `kill` and `stop`. A guest's own report of the exit ends a
//! run; one that does not come in time (the guest stopped reading its channel, or ignores the
//! host) is not waited for: the VM is powered off, as a SIGKILL promises.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::live::Live;
use super::{Containers, Error};
use crate::container::Status;
use crate::guest::session::Undelivered;
use crate::signals::parse_signal;

/// How long a guest has to report its process's exit after SIGKILL before its VM is powered
/// off.
const KILL_WAIT: Duration = Duration::from_secs(3);
/// How long a powered-off VM's run may take to be recorded as ended.
const POWER_OFF_WAIT: Duration = Duration::from_secs(20);

/// Whether the run that was current when `before` exits had been counted ends within `d`.
async fn ended(exits: &watch::Receiver<(u64, i32)>, before: u64, d: Duration) -> bool {
    let mut exits = exits.clone();
    let ended = tokio::time::timeout(d, exits.wait_for(|(n, _)| *n > before))
        .await
        .is_ok();
    ended
}

impl Containers {
    /// Sends a signal to the container's main process. SIGKILL returns once the run has
    /// ended, the VM powered off if the guest does not report the exit within [`KILL_WAIT`];
    /// another signal to a guest that has stopped reading is refused.
    pub async fn kill(&self, key: &str, signal_name: &str) -> Result<(), Error> {
        let sig = if signal_name.is_empty() {
            9
        } else {
            parse_signal(signal_name)
                .ok_or_else(|| Error::InvalidSignal(signal_name.to_string()))?
        };
        let rec = self.get(key)?;
        let live = self
            .live(&rec.id)
            .ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        if rec.state.status != Status::Running {
            return Err(Error::NotRunning(rec.id));
        }
        // The user ended it: its restart policy leaves it alone.
        self.update(&rec.id, |r| r.state.manually_stopped = true)?;
        self.continue_vm(&rec).await?;
        let exits = live.exits.subscribe();
        let before = exits.borrow().0;
        if sig != 9 {
            match live.control().and_then(|c| c.signal(sig)) {
                Ok(()) => {}
                Err(Undelivered::NotRunning) => return Err(Error::NotRunning(rec.id)),
                Err(Undelivered::NotReading) => return Err(Error::NotReading(rec.id)),
            }
        }
        let r = self.get(&rec.id)?;
        self.publish("kill", &r, &[("signal", sig.to_string())]);
        if sig == 9 {
            self.end_run(&rec.id, &live, &exits, before).await?;
        }
        Ok(())
    }

    /// Stops the container: its stop signal, then SIGKILL after `timeout`, then a hard power
    /// off. Returns `Ok(false)` when it was not running. As dockerd, `docker events` shows a
    /// `kill` for each signal, the run's `die`, then `stop`.
    pub async fn stop(
        &self,
        key: &str,
        timeout: Option<i64>,
        signal_name: Option<&str>,
    ) -> Result<bool, Error> {
        let rec = self.get(key)?;
        // The user stops it: its restart policy leaves it alone (a restart due is called off).
        let rec = self.update(&rec.id, |r| r.state.manually_stopped = true)?;
        if rec.state.status != Status::Running {
            return Ok(false);
        }
        let live = self
            .live(&rec.id)
            .ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        let sig_name = signal_name
            .map(str::to_string)
            .or_else(|| rec.spec.stop_signal.clone())
            .unwrap_or_else(|| "SIGTERM".into());
        let sig = parse_signal(&sig_name).ok_or_else(|| Error::InvalidSignal(sig_name.clone()))?;
        let secs = timeout.or(rec.spec.stop_timeout).unwrap_or(10);
        self.continue_vm(&rec).await?;
        let exits = live.exits.subscribe();
        let before = exits.borrow().0;
        // A guest that does not read its channel gets no grace.
        if live.control().and_then(|c| c.signal(sig)).is_ok() {
            self.publish("kill", &rec, &[("signal", sig.to_string())]);
            let grace = if secs < 0 {
                Duration::from_secs(3600 * 24)
            } else {
                Duration::from_secs(secs as u64)
            };
            if ended(&exits, before, grace).await {
                self.publish_stopped(&rec.id);
                return Ok(true);
            }
            tracing::info!(id = %rec.id, "container did not stop within {secs} s of {sig_name}: killing it");
        }
        self.publish("kill", &rec, &[("signal", "9".into())]);
        self.end_run(&rec.id, &live, &exits, before).await?;
        self.publish_stopped(&rec.id);
        Ok(true)
    }

    fn publish_stopped(&self, id: &str) {
        if let Ok(rec) = self.get(id) {
            self.publish("stop", &rec, &[]);
        }
    }

    /// Follows the shutdowns a container's guest passes on (its VM's power button, VMware
    /// Tools' halt, asked from vSphere): each stops the container as `docker stop` does, as
    /// the user's stop, until the session ends.
    pub(super) fn follow_shutdown_asks(&self, id: &str, mut asks: mpsc::Receiver<String>) {
        let (me, id) = (self.clone(), id.to_string());
        tokio::spawn(async move {
            while let Some(by) = asks.recv().await {
                tracing::info!(%id, "the container VM was asked to shut down ({by}): stopping the container");
                if let Err(e) = me.stop(&id, None, None).await {
                    tracing::warn!(%id, "stopping it failed: {e}");
                }
            }
        });
    }

    /// SIGKILL, and the run has ended when this returns: a guest that does not report the
    /// exit within [`KILL_WAIT`] has its VM powered off.
    async fn end_run(
        &self,
        id: &str,
        live: &Live,
        exits: &watch::Receiver<(u64, i32)>,
        before: u64,
    ) -> Result<(), Error> {
        let queued = live.control().and_then(|c| c.signal(9)).is_ok();
        if queued && ended(exits, before, KILL_WAIT).await {
            return Ok(());
        }
        tracing::warn!(%id, "the guest did not report an exit within {} s of SIGKILL: powering its VM off", KILL_WAIT.as_secs());
        self.inner.backend.power_off(id, Duration::ZERO).await?;
        if ended(exits, before, POWER_OFF_WAIT).await {
            Ok(())
        } else {
            Err(Error::Start(format!(
                "container {id} did not stop after its VM was powered off"
            )))
        }
    }
}
