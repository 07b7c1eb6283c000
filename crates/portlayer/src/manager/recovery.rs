//! Recovery after the appliance restarts: records and the hypervisor's inventory are made to
//! agree, and running container VMs are taken over.

use std::time::Duration;

use chrono::Utc;
use hypervisor::PowerState;

use super::live::Live;
use super::{Containers, Output};
use crate::container::Status;
use crate::guest::session::{self, StartFailure};

impl Containers {
    /// Makes records and VMs agree after a restart: running containers whose VM still runs
    /// are taken over (their output, stdin, signals and exit flow again), those whose VM is
    /// gone are marked exited, and VMs running for containers not recorded as running (a start
    /// cut short) are powered off.
    pub(super) async fn recover(&self) {
        // A create cut short leaves a VM without a record: it goes. A VM whose record is in
        // quarantine has one (this version cannot read it): it stays as it is.
        let mut known: std::collections::HashSet<String> =
            self.list().into_iter().map(|r| r.id).collect();
        known.extend(self.quarantined().into_iter().map(|q| q.id));
        let inventory = self.inner.backend.list_vms().await.unwrap_or_else(|e| {
            tracing::warn!("the backend's inventory cannot be read ({e}): VMs without a record are left for the next start");
            Vec::new()
        });
        for vm in inventory {
            if !known.contains(&vm) {
                tracing::info!(vm = %vm, "removing a VM whose container was never recorded");
                if let Err(e) = self.inner.backend.destroy_vm(&vm).await {
                    tracing::warn!(vm = %vm, "removing it failed: {e}");
                }
            }
        }
        let recs = self.list();
        let work = recs.into_iter().map(|rec| async move {
            let state = self.inner.backend.power_state(&rec.id).await;
            match (rec.state.status == Status::Running, state) {
                (true, PowerState::On) => {
                    if let Err(why) = self.reattach(&rec.id).await {
                        tracing::warn!(id = %rec.id, "re-attaching failed: {why}");
                        let _ = self
                            .inner
                            .backend
                            .power_off(&rec.id, Duration::from_secs(2))
                            .await;
                        self.mark_lost(
                            &rec.id,
                            format!("re-attaching after a restart failed: {why}"),
                        );
                    }
                }
                // The VM is gone altogether: a removal cut short (or the VM deleted from
                // the hypervisor's inventory); finish the removal.
                (_, PowerState::Absent) => self.forget(&rec.id),
                (true, _) => self.mark_lost(
                    &rec.id,
                    "the container VM stopped while the appliance was down".into(),
                ),
                (false, PowerState::On) => {
                    // Rolled back at once: nobody was told this start happened.
                    tracing::info!(id = %rec.id, "powering off a VM whose start or copy was cut short");
                    let _ = self.inner.backend.power_off(&rec.id, Duration::ZERO).await;
                }
                (false, _) => {}
            }
        });
        futures_util::future::join_all(work).await;
        self.end_orphaned_execs();
        self.restart_on_vch_start();
    }

    /// Takes over the running VM of container `id`.
    async fn reattach(&self, id: &str) -> Result<(), String> {
        let live = self.live(id).ok_or("no runtime state")?;
        // A paused VM's tether cannot answer: it runs while it is taken over, then pauses.
        let paused = self.get(id).is_ok_and(|r| r.state.paused);
        if paused {
            let resumed = self.inner.backend.resume(id).await;
            resumed.map_err(|e| format!("continuing the paused VM: {e}"))?;
        }
        self.take_over(id, &live).await?;
        if paused {
            let paused_again = self.inner.backend.pause(id).await;
            paused_again.map_err(|e| format!("pausing the VM again: {e}"))?;
        }
        Ok(())
    }

    /// Takes over the running VM of container `id`, whose runtime state is `live`.
    async fn take_over(&self, id: &str, live: &Live) -> Result<(), String> {
        let powered = self
            .inner
            .backend
            .reattach(id)
            .await
            .map_err(|e| e.to_string())?;
        let pid = powered.pid.unwrap_or(0);
        let bounds = self.get(id).map(|r| r.spec.log).unwrap_or_default();
        let (sink, held) = live
            .open_sink(&self.inner.state.log_path(id), bounds, id)
            .map_err(|e| format!("opening the container log: {e}"))?;
        // What this run wrote before the appliance went down: the tether resends the rest.
        let base = self.get(id).map(|r| r.state.log_base).unwrap_or(0);
        let stored = held.saturating_sub(base);
        let session = session::reattach(powered, stored, sink, live.stdin_rx.clone())
            .await
            .map_err(|f| match f {
                StartFailure::Spawn { message, .. }
                | StartFailure::Violation(message)
                | StartFailure::Other(message) => message,
            })?;
        *live.control.lock().unwrap_or_else(|e| e.into_inner()) = Some(session.control.clone());
        *live.vm_off.lock().await = Some(session.vm_off);
        if pid != 0 {
            let _ = self.update(id, |r| r.state.pid = pid);
        }
        if let Ok(rec) = self.get(id) {
            self.republish(live, &rec).await;
            self.heal_endpoints(live, &rec).await;
            self.monitor_health(&rec);
        }
        self.adopt_execs(id, &session.control);
        self.follow_shutdown_asks(id, session.shutdown_asked);
        tracing::info!(%id, pid, "re-attached to a running container VM");
        let me = self.clone();
        let exit = session.exit;
        let id = id.to_string();
        tokio::spawn(async move { me.on_exit(id, exit).await });
        Ok(())
    }

    /// Drops the record of a container whose VM no longer exists.
    fn forget(&self, id: &str) {
        tracing::info!(%id, "removing the record of a container whose VM is gone");
        if let Err(e) = self.inner.state.remove(id) {
            tracing::warn!(%id, "removing its state failed: {e}");
            return;
        }
        let rec = self.records().remove(id);
        if let Some(live) = self
            .inner
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
        {
            let code = rec.as_ref().map(|r| r.state.exit_code).unwrap_or(0);
            let _ = live.output.send(Output::Eof);
            live.removed.send_replace(Some(code));
        }
        if let Some(rec) = rec {
            self.publish("destroy", &rec, &[]);
        }
    }

    /// Records that a running container's VM is gone without a reported exit.
    pub(super) fn mark_lost(&self, id: &str, why: String) {
        tracing::warn!(%id, "{why}");
        let rec = self.update(id, |r| {
            r.state.status = Status::Exited;
            r.state.paused = false;
            r.state.exit_code = 137;
            r.state.pid = 0;
            r.state.ports.clear();
            r.state.finished_at = Some(Utc::now());
            r.state.error = why;
        });
        if let Some(live) = self.live(id) {
            live.exits.send_modify(|(n, c)| {
                *n += 1;
                *c = 137;
            });
        }
        if let Ok(rec) = rec {
            self.publish("die", &rec, &[("exitCode", "137".to_string())]);
            self.after_exit(&rec);
        }
    }
}

impl Containers {
    /// Starts, for as long as the backend runs, each container whose VM is powered on from
    /// outside vic (the hypervisor's own client), as `docker start` would: vSphere's
    /// operators restart a container by powering its VM on.
    pub(super) fn follow_outside_starts(&self) {
        // Weak: the containers' state is not kept open by this watch once they are dropped.
        let weak = std::sync::Arc::downgrade(&self.inner);
        let backend = self.inner.backend.clone();
        tokio::spawn(async move {
            while let Some(id) = backend.started_outside().await {
                let Some(inner) = weak.upgrade() else { return };
                let me = Containers { inner };
                match me.get(&id) {
                    Ok(rec) if rec.state.status == Status::Running => {
                        tracing::info!(%id, "its VM dialled in again while it runs: left as it is");
                        continue;
                    }
                    Ok(_) => {}
                    Err(_) => continue,
                }
                match me.start(&id).await {
                    Ok(_) => tracing::info!(%id, "started: its VM was powered on from outside"),
                    Err(e) => {
                        tracing::warn!(%id, "starting it on its VM powered on from outside: {e}")
                    }
                }
            }
        });
    }
}
