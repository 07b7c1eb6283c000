//! `docker update`: the restart policy and the VM's CPU shares at any time (a running VM
//! takes its shares at once), its memory and vCPUs while it is stopped (taken at its next
//! start; a running microvm can change neither).

use super::{Containers, Error};
use crate::container::{ContainerRecord, RestartKind, RestartPolicy, Status};

/// The sizes `docker update` changes; each left alone when `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resize {
    /// Memory in MiB.
    pub memory_mib: Option<u32>,
    pub cpus: Option<u32>,
    /// The VM's CPU weight (`--cpu-shares`).
    pub cpu_shares: Option<u32>,
}

impl Containers {
    /// Changes what is given of container `key`'s sizes and restart policy.
    pub async fn update_settings(
        &self,
        key: &str,
        resize: Resize,
        restart: Option<RestartPolicy>,
    ) -> Result<ContainerRecord, Error> {
        let rec = self.get(key)?;
        let live = self
            .live(&rec.id)
            .ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        // Not while it starts: a start reads the sizes and weight it powers the VM on with.
        let _op = live.op.lock().await;
        let rec = self.get(&rec.id)?;
        let sizes = resize.memory_mib.is_some() || resize.cpus.is_some();
        if sizes && rec.state.status == Status::Running {
            return Err(Error::Update(format!(
                "Cannot update container {}: a running container VM's memory and vCPUs cannot change (it has no memory balloon or CPU hotplug): stop it, update it, start it",
                rec.id
            )));
        }
        if restart.is_some_and(|r| r.kind != RestartKind::No) && rec.spec.auto_remove {
            return Err(Error::Update(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
                    .into(),
            ));
        }
        // The VM first: a weight it refuses leaves the record as it was.
        if let Some(shares) = resize.cpu_shares {
            let backend = &self.inner.backend;
            backend.set_cpu_shares(&rec.id, Some(shares)).await?;
        }
        let rec = self.update(&rec.id, |r| {
            if let Some(m) = resize.memory_mib {
                r.spec.memory_mib = m;
            }
            if let Some(c) = resize.cpus {
                r.spec.cpus = c;
            }
            if let Some(s) = resize.cpu_shares {
                r.spec.cpu_shares = Some(s);
            }
            if let Some(p) = restart {
                r.spec.restart = p;
            }
        })?;
        self.publish("update", &rec, &[]);
        Ok(rec)
    }
}
