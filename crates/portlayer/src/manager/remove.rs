//! Removing containers, and powering them all off when the appliance stops.

use std::time::Duration;

use super::error::io_err;
use super::{Containers, Error, Output};
use crate::container::Status;

impl Containers {
    /// Removes the container, killing it first when `force`; with `volumes`, its anonymous
    /// volumes too (`docker rm -v`) unless another container uses them.
    pub async fn remove(&self, key: &str, force: bool, volumes: bool) -> Result<(), Error> {
        let rec = self.get(key)?;
        let id = rec.id.clone();
        let live = self
            .live(&id)
            .ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        if rec.state.status == Status::Running {
            if !force {
                return Err(Error::RemoveRunning(id));
            }
            let _ = self.stop(&id, Some(0), Some("SIGKILL")).await;
        } else if rec.state.restarting {
            // Exited, its policy about to start it again.
            if !force {
                return Err(Error::RemoveRestarting(id));
            }
            let _ = self.update(&id, |r| r.state.restarting = false);
        }
        let _op = live.op.lock().await;
        if self.get(&id).is_err() {
            return Ok(()); // removed meanwhile (auto-remove)
        }
        // Its guest powers off in order (sync, unmount) for the disks that outlive it; with
        // none (no volume, no bind mount: the root disk goes now), it need not be waited for.
        if !rec.spec.mounts.is_empty() || !rec.spec.binds.is_empty() {
            live.wait_vm_off().await;
        }
        self.inner.backend.destroy_vm(&id).await?;
        // Kept volumes are released first: a crash after the record goes leaves none that
        // the next start would take for a crash's leftover.
        self.release_volumes(&rec, volumes).await?;
        self.inner
            .state
            .remove(&id)
            .map_err(io_err("removing the container state"))?;
        let rec = self.records().remove(&id);
        self.inner
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        self.forget_execs(&id);
        let code = rec.as_ref().map(|r| r.state.exit_code).unwrap_or(0);
        let _ = live.output.send(Output::Eof);
        live.removed.send_replace(Some(code));
        if let Some(rec) = rec {
            self.publish("destroy", &rec, &[]);
            if volumes {
                self.remove_anonymous_volumes(&rec).await;
            }
        }
        Ok(())
    }

    /// Powers off every running container VM (appliance shutdown).
    pub async fn shutdown(&self, grace: Duration) {
        let running: Vec<_> = self
            .list()
            .into_iter()
            .filter(|r| r.state.status == Status::Running)
            .collect();
        for rec in running {
            if let Err(e) = self.stop(&rec.id, Some(grace.as_secs() as i64), None).await {
                tracing::warn!(id = %rec.id, "stopping at shutdown: {e}");
            }
        }
    }
}
