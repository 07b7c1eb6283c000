//! `docker pause` and `unpause`: the container's whole VM stopped, its memory and state
//! kept, and continued where it stood (the backend stops every vCPU and device; locally,
//! QEMU is sent SIGSTOP and SIGCONT). The record says so, so a restarted appliance knows a
//! paused container; stopping or killing one continues it first, so that its guest can
//! hear the signal.

use super::{Containers, Error};
use crate::container::{ContainerRecord, Status};

impl Containers {
    /// Pauses running container `key`.
    pub async fn pause(&self, key: &str) -> Result<(), Error> {
        let rec = self.get(key)?;
        let live = self
            .live(&rec.id)
            .ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        let _op = live.op.lock().await;
        let rec = self.get(&rec.id)?;
        if rec.state.status != Status::Running {
            return Err(Error::NotRunning(rec.id));
        }
        if rec.state.paused {
            return Err(Error::Paused(rec.id));
        }
        self.inner.backend.pause(&rec.id).await?;
        let rec = self.update(&rec.id, |r| r.state.paused = true)?;
        self.publish("pause", &rec, &[]);
        Ok(())
    }

    /// Continues paused container `key`.
    pub async fn unpause(&self, key: &str) -> Result<(), Error> {
        let rec = self.get(key)?;
        let live = self
            .live(&rec.id)
            .ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        let _op = live.op.lock().await;
        let rec = self.get(&rec.id)?;
        if !rec.state.paused || rec.state.status != Status::Running {
            return Err(Error::NotPaused(rec.id));
        }
        self.continue_vm(&rec).await
    }

    /// Continues `rec`'s VM if it is paused (before it is stopped or killed).
    pub(super) async fn continue_vm(&self, rec: &ContainerRecord) -> Result<(), Error> {
        if !rec.state.paused {
            return Ok(());
        }
        self.inner.backend.resume(&rec.id).await?;
        let rec = self.update(&rec.id, |r| r.state.paused = false)?;
        self.publish("unpause", &rec, &[]);
        Ok(())
    }

    /// Refuses what a paused container cannot do (`what`: e.g. `exec`).
    pub(super) fn refuse_paused(&self, rec: &ContainerRecord, what: &str) -> Result<(), Error> {
        if rec.state.paused {
            return Err(Error::PausedFor {
                id: rec.id.clone(),
                what: what.to_string(),
            });
        }
        Ok(())
    }
}
