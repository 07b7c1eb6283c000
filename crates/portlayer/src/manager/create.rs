//! Creating a container: its record, its volumes and its VM with a copy-on-write root disk.

use chrono::Utc;
use hypervisor::VmConfig;

use super::error::io_err;
use super::live::Live;
use super::{new_id, valid_name, Containers, Error};
use crate::container::{ContainerRecord, ContainerSpec, ContainerState};

impl Containers {
    /// Creates a container: its record and its VM with a copy-on-write root disk. Nothing is
    /// left behind if any step fails.
    pub async fn create(&self, mut spec: ContainerSpec) -> Result<ContainerRecord, Error> {
        if spec.process.argv.is_empty() {
            return Err(Error::NoCommand);
        }
        let rootfs = self
            .inner
            .images
            .rootfs_of(&spec.image_id)
            .ok_or_else(|| Error::NoSuchImage(spec.image_ref.clone()))?;
        let image_id = spec.image_id.clone();
        let id = new_id();
        let mut rec = {
            let mut records = self.records();
            // Counted under the lock: a create under way holds its place in `records`.
            self.inner
                .admission
                .limits
                .check_count(records.len())
                .map_err(|e| Error::Start(e.to_string()))?;
            if spec.name.is_empty() {
                spec.name =
                    crate::names::random_name(|n| records.values().any(|r| r.spec.name == n));
            } else {
                spec.name = spec.name.trim_start_matches('/').to_string();
                if !valid_name(&spec.name) {
                    return Err(Error::InvalidName(spec.name.clone()));
                }
                if let Some(other) = records.values().find(|r| r.spec.name == spec.name) {
                    return Err(Error::NameConflict {
                        name: spec.name.clone(),
                        id: other.id.clone(),
                    });
                }
            }
            if spec.hostname.is_empty() {
                spec.hostname = id[..12].to_string();
            }
            self.allocate_endpoints(&mut spec, records.values())?;
            if !spec.process.env.iter().any(|e| e.starts_with("HOSTNAME=")) {
                spec.process.env.push(format!("HOSTNAME={}", spec.hostname));
            }
            let rec = ContainerRecord {
                id: id.clone(),
                created: Utc::now(),
                spec,
                state: ContainerState::default(),
            };
            // Reserve the name while the disks are made.
            records.insert(id.clone(), rec.clone());
            rec
        };
        let mut made_volumes = Vec::new();
        let made = async {
            let disks = self
                .attach_volumes(&mut rec, &rootfs, &mut made_volumes)
                .await?;
            let shares = self.attach_binds(&mut rec)?;
            self.inner.backend.prepare_image(&image_id, &rootfs).await?;
            let nics = self.nics_of(&rec);
            let vm = VmConfig {
                id: id.clone(),
                display_name: self
                    .inner
                    .admission
                    .limits
                    .display_name(&rec.spec.name, &id),
                image_id: image_id.clone(),
                memory_mib: rec.spec.memory_mib,
                cpus: rec.spec.cpus,
                nics,
                disks,
                shares,
                host_cpus: rec.spec.host_cpus.clone(),
                cpu_shares: rec.spec.cpu_shares,
            };
            self.inner.backend.create_vm(&vm).await?;
            self.inner
                .state
                .save(&rec)
                .map_err(io_err("saving a container record"))?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = made {
            self.records().remove(&id);
            let _ = self.inner.backend.destroy_vm(&id).await;
            let _ = self.inner.state.remove(&id);
            self.drop_volumes(&made_volumes).await;
            return Err(e);
        }
        self.inner
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), Live::new(0));
        self.publish("create", &rec, &[]);
        Ok(rec)
    }
}
