//! Volumes and the containers that mount them: made at container create (anonymous ones, and
//! named ones that do not exist yet, as Docker does), filled from the image on first use,
//! attached read-write to one running container at a time (a volume is a disk), kept or
//! removed with their container, and swept after a crash that left one without its
//! container.
//!
//! One lock orders every change to which volumes exist against the containers that refer to
//! them: a volume is never removed between a create that found it and the record that
//! names it.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use hypervisor::DataDisk;

use super::{Containers, Error};
use crate::container::{ContainerRecord, Status};
use crate::volumes::{Volume, VolumeError, VolumeSpec};

impl Containers {
    /// Makes or finds each volume `rec` asks for and names them in its record; returns the
    /// VM's data disks. Volumes made here are added to `made`, for the caller to drop if
    /// the create fails.
    pub(super) async fn attach_volumes(
        &self,
        rec: &mut ContainerRecord,
        rootfs: &Path,
        made: &mut Vec<String>,
    ) -> Result<Vec<DataDisk>, Error> {
        if rec.spec.mounts.is_empty() {
            return Ok(Vec::new());
        }
        let _order = self.inner.volume_lock.lock().await;
        let mut mounts = rec.spec.mounts.clone();
        let mut disks = Vec::new();
        for m in &mut mounts {
            let seed = match m.copy {
                true => seed_dir(rootfs, &m.target)?,
                false => None,
            };
            let existing = match m.name.is_empty() {
                true => None,
                false => self.inner.volumes.get(&m.name).ok(),
            };
            let vol = match existing {
                Some(v) => {
                    if let (false, Some(seed)) = (v.used, &seed) {
                        self.reseed(&v, seed).await?;
                    }
                    v
                }
                None => {
                    let spec = VolumeSpec::parse(&m.name, &m.driver, &m.options, &m.labels)?;
                    let spec = self.default_driver(spec);
                    let v = self
                        .make_volume(&spec, Some(&rec.id), seed.as_deref())
                        .await?;
                    made.push(v.name.clone());
                    v
                }
            };
            m.name = vol.name.clone();
            self.inner
                .volumes
                .update(&vol.name, |v| v.used = true)
                .await?;
            disks.push(DataDisk {
                path: vol.disk,
                readonly: m.readonly,
            });
        }
        rec.spec.mounts = mounts.clone();
        if let Some(r) = self.records().get_mut(&rec.id) {
            r.spec.mounts = mounts;
        }
        Ok(disks)
    }

    /// `spec` with the VCH's default driver when it names none: its backend's (`local` for
    /// files on this host, `vsphere` for disks on datastores, as VIC's).
    fn default_driver(&self, mut spec: VolumeSpec) -> VolumeSpec {
        if spec.driver.is_empty() {
            spec.driver = self.inner.backend.name().to_string();
        }
        spec
    }

    /// Makes a volume and its disk; `container` holds an anonymous one.
    async fn make_volume(
        &self,
        spec: &VolumeSpec,
        container: Option<&str>,
        seed: Option<&Path>,
    ) -> Result<Volume, Error> {
        let vols = &self.inner.volumes;
        let pending = vols.begin(spec, container).await?;
        let disk = pending.disk();
        if let Err(e) = (self.inner.backend)
            .create_disk(&disk, spec.capacity_mib, seed)
            .await
        {
            vols.abandon(pending).await;
            return Err(e.into());
        }
        match vols.commit(pending).await? {
            Some(v) => {
                self.volume_event("create", &v);
                Ok(v)
            }
            None => Ok(vols.get(&spec.name)?),
        }
    }

    /// Fills a volume no container has used with the image's content at its mount point: a
    /// new disk made beside the empty one, renamed over it.
    async fn reseed(&self, v: &Volume, seed: &Path) -> Result<(), Error> {
        let vols = &self.inner.volumes;
        vols.begin_fresh_disk(v).await?;
        (self.inner.backend)
            .create_disk(&vols.fresh_disk(v), v.capacity_mib, Some(seed))
            .await?;
        vols.replace_disk(&v.name).await?;
        Ok(())
    }

    /// Removes the volumes a failed create made.
    pub(super) async fn drop_volumes(&self, names: &[String]) {
        for name in names {
            if let Err(e) = self.inner.volumes.remove(name).await {
                tracing::warn!(volume = name, "removing a volume of a failed create: {e}");
            }
        }
    }

    /// Refuses to start `rec` while a volume it mounts is attached to another running
    /// container, unless both mount it read-only.
    pub(super) fn check_volumes_free(&self, rec: &ContainerRecord) -> Result<(), Error> {
        let records = self.records();
        for m in &rec.spec.mounts {
            let other = records.values().find(|o| {
                o.id != rec.id
                    && o.state.status == Status::Running
                    && (o.spec.mounts.iter())
                        .any(|om| om.name == m.name && !(om.readonly && m.readonly))
            });
            if let Some(o) = other {
                return Err(Error::Start(format!(
                    "volume {} is in use by running container {}: a volume is a disk, attached read-write to one running container at a time",
                    m.name, o.spec.name
                )));
            }
        }
        Ok(())
    }

    /// Waits until no other container's VM holds a disk `rec` mounts: a container that has
    /// just stopped powers its VM off moments later, and until then its QEMU holds the disk.
    pub(super) async fn wait_volumes_released(&self, rec: &ContainerRecord) -> Result<(), Error> {
        let holders: Vec<ContainerRecord> = (self.records().values())
            .filter(|o| o.id != rec.id && o.state.status != Status::Running)
            .filter(|o| {
                (o.spec.mounts.iter()).any(|om| rec.spec.mounts.iter().any(|m| m.name == om.name))
            })
            .cloned()
            .collect();
        let deadline = tokio::time::Instant::now() + crate::guest::session::POWER_OFF_GRACE * 2;
        for o in holders {
            while self.inner.backend.power_state(&o.id).await == hypervisor::PowerState::On {
                if tokio::time::Instant::now() >= deadline {
                    return Err(Error::Start(format!(
                        "the VM of container {}, which shares a volume with this one, has not powered off",
                        o.spec.name
                    )));
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// The containers (IDs) that mount volume `name`, `except` one.
    fn users_of(&self, name: &str, except: Option<&str>) -> Vec<String> {
        let mut ids: Vec<String> = (self.records().values())
            .filter(|r| Some(r.id.as_str()) != except)
            .filter(|r| r.spec.mounts.iter().any(|m| m.name == name))
            .map(|r| r.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Before `rec`'s record goes: its anonymous volumes that stay (not `removing`, or used
    /// by another container) are no longer held by it.
    pub(super) async fn release_volumes(
        &self,
        rec: &ContainerRecord,
        removing: bool,
    ) -> Result<(), Error> {
        for m in &rec.spec.mounts {
            let Ok(v) = self.inner.volumes.get(&m.name) else {
                continue;
            };
            let held = v.container.as_deref() == Some(rec.id.as_str());
            if held && (!removing || !self.users_of(&m.name, Some(&rec.id)).is_empty()) {
                (self.inner.volumes)
                    .update(&m.name, |v| v.container = None)
                    .await?;
            }
        }
        Ok(())
    }

    /// After `rec`'s record went with `docker rm -v` or `--rm`: its anonymous volumes that no
    /// other container uses.
    pub(super) async fn remove_anonymous_volumes(&self, rec: &ContainerRecord) {
        let _order = self.inner.volume_lock.lock().await;
        for m in &rec.spec.mounts {
            let anonymous = self.inner.volumes.get(&m.name).is_ok_and(|v| v.anonymous);
            if anonymous && self.users_of(&m.name, None).is_empty() {
                match self.inner.volumes.remove(&m.name).await {
                    Ok(v) => self.volume_event("destroy", &v),
                    Err(e) => tracing::warn!(volume = m.name, "removing the volume: {e}"),
                }
            }
        }
    }

    /// At open: anonymous volumes this VCH made for a container that was never stored, or
    /// whose removal a crash cut short.
    pub(super) async fn sweep_volumes(&self) {
        let vch = self.inner.vch_name.clone();
        for v in self.inner.volumes.list() {
            let Some(owner) = &v.container else { continue };
            let orphan = v.anonymous
                && v.vch == vch
                && !self.records().contains_key(owner)
                && self.users_of(&v.name, None).is_empty();
            if orphan {
                tracing::info!(
                    volume = v.name,
                    container = owner,
                    "removing an anonymous volume whose container is gone"
                );
                if let Err(e) = self.inner.volumes.remove(&v.name).await {
                    tracing::warn!(volume = v.name, "removing it failed: {e}");
                }
            }
        }
    }

    fn volume_event(&self, action: &str, v: &Volume) {
        let attrs = BTreeMap::from([("driver".to_string(), v.driver.clone())]);
        self.inner.events.publish("volume", action, &v.name, attrs);
    }

    /// `docker volume create`: a volume of that name already there is the answer, as in
    /// Docker, unless it has another driver.
    pub async fn create_volume(&self, spec: &VolumeSpec) -> Result<Volume, Error> {
        let spec = &self.default_driver(spec.clone());
        let _order = self.inner.volume_lock.lock().await;
        if let Ok(v) = self.inner.volumes.get(&spec.name) {
            if v.driver != spec.driver {
                return Err(VolumeError::Invalid(format!(
                    "a volume named {} already exists with the \"{}\" driver; choose a different volume name",
                    v.name, v.driver
                ))
                .into());
            }
            return Ok(v);
        }
        self.make_volume(spec, None, None).await
    }

    /// A volume and the containers that mount it.
    pub fn volume(&self, name: &str) -> Result<(Volume, Vec<String>), Error> {
        let v = self.inner.volumes.get(name)?;
        let users = self.users_of(name, None);
        Ok((v, users))
    }

    /// Bytes volume `v`'s disk holds on its store (0 where the store cannot say).
    pub async fn volume_bytes(&self, v: &Volume) -> u64 {
        self.inner.volumes.disk_bytes(v).await
    }

    /// Every volume, with the containers that mount it.
    pub fn volumes(&self) -> Vec<(Volume, Vec<String>)> {
        (self.inner.volumes.list().into_iter())
            .map(|v| {
                let users = self.users_of(&v.name, None);
                (v, users)
            })
            .collect()
    }

    /// `docker volume rm`: refused while a container mounts it; `force` only makes a missing
    /// volume no error.
    pub async fn remove_volume(&self, name: &str, force: bool) -> Result<(), Error> {
        let _order = self.inner.volume_lock.lock().await;
        if self.inner.volumes.get(name).is_err() && force {
            return Ok(());
        }
        let users = self.users_of(name, None);
        if !users.is_empty() {
            return Err(VolumeError::InUse {
                name: name.to_string(),
                ids: users,
            }
            .into());
        }
        let v = self.inner.volumes.remove(name).await?;
        self.volume_event("destroy", &v);
        Ok(())
    }

    /// `docker volume prune`: the volumes no container mounts that `keep` does not keep;
    /// returns each one's name and the bytes its disk held.
    pub async fn prune_volumes(&self, keep: impl Fn(&Volume) -> bool) -> Vec<(String, u64)> {
        let _order = self.inner.volume_lock.lock().await;
        let mut gone = Vec::new();
        for v in self.inner.volumes.list() {
            if keep(&v) || !self.users_of(&v.name, None).is_empty() {
                continue;
            }
            let bytes = self.inner.volumes.disk_bytes(&v).await;
            match self.inner.volumes.remove(&v.name).await {
                Ok(v) => {
                    self.volume_event("destroy", &v);
                    gone.push((v.name, bytes));
                }
                Err(e) => tracing::warn!(volume = v.name, "pruning it failed: {e}"),
            }
        }
        gone
    }
}

/// The image's directory at `target`, when it holds something to copy into a new volume.
/// The image's path is walked without following symlinks: a volume is mounted on a plain
/// directory (the guest refuses a symlinked path too).
fn seed_dir(rootfs: &Path, target: &str) -> Result<Option<PathBuf>, Error> {
    let invalid = |why: &str| {
        Error::Volume(VolumeError::Invalid(format!(
            "invalid mount path {target}: {why}"
        )))
    };
    let mut path = rootfs.to_path_buf();
    for c in Path::new(target).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => {
                path.push(name);
                match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.file_type().is_symlink() => {
                        return Err(invalid(
                            "it is a symlink in the image; vic mounts volumes on plain directories",
                        ))
                    }
                    Ok(_) => {}
                    Err(_) => return Ok(None),
                }
            }
            _ => return Err(invalid("it must be a plain absolute path")),
        }
    }
    if !path.is_dir() {
        return Err(invalid("it is not a directory in the image"));
    }
    let empty = std::fs::read_dir(&path)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true);
    Ok((!empty).then_some(path))
}
