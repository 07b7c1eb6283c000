//! `docker update`: the restart policy at any time, the VM's memory and vCPUs while it is
//! stopped (taken at its next start; a running microvm can change neither).

use super::{Containers, Error};
use crate::container::{ContainerRecord, RestartKind, RestartPolicy, Status};

impl Containers {
    /// Changes what is given of container `key`'s memory (MiB), vCPUs and restart policy.
    pub fn update_settings(
        &self,
        key: &str,
        memory_mib: Option<u32>,
        cpus: Option<u32>,
        restart: Option<RestartPolicy>,
    ) -> Result<ContainerRecord, Error> {
        let rec = self.get(key)?;
        let sizes = memory_mib.is_some() || cpus.is_some();
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
        let rec = self.update(&rec.id, |r| {
            if let Some(m) = memory_mib {
                r.spec.memory_mib = m;
            }
            if let Some(c) = cpus {
                r.spec.cpus = c;
            }
            if let Some(p) = restart {
                r.spec.restart = p;
            }
        })?;
        self.publish("update", &rec, &[]);
        Ok(rec)
    }
}
