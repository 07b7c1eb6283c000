//! `docker cp` and the archive API: what is at a path in a container, a tar stream of it,
//! and a tar stream extracted into it.
//!
//! A running container's guest does it (`guest/copy.rs`), seeing what its processes see:
//! its volumes, bind mounts and tmpfs included. A stopped container's files are reached the
//! same way: its VM boots with its root disk and volumes and no process, serves the copy and
//! powers off. The host never mounts or parses a filesystem a guest has written (its kernel
//! would be the guest's attack surface); the container's own kernel does, in its own VM.
//! While such a VM runs the container cannot be started, nor removed: the copy holds the
//! container's operation lock until the VM is off.

use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::OwnedMutexGuard;

use super::{io_err, Containers, Error};
use crate::changes::{self, Change, ManifestReader};
use crate::container::{ContainerRecord, Status};
use crate::guest::copy::{CopyIn, CopyMode, CopyOut};
use crate::guest::session::{self, GuestControl, StartFailure};
use crate::guest::transfer::{ContainerPath, CopyError};
use crate::guest::Launch;

/// How long a VM booted for a copy has to power off by itself once told to.
const OFF_GRACE: Duration = Duration::from_secs(10);

/// A tar stream out of a container, and, for a stopped one, the VM booted to serve it (off
/// once the stream is dropped).
pub struct CopyStream {
    out: CopyOut,
    _vm: Option<FilesVm>,
}

impl CopyStream {
    /// The next piece of the tar stream; `None` at its end.
    pub async fn next(&mut self) -> Option<Result<Bytes, Error>> {
        self.out.next().await.map(|r| r.map_err(Error::Copy))
    }
}

/// A stopped container's VM, booted for its files: told to power off when dropped, and
/// holding the container's operation lock until it is off.
pub(super) struct FilesVm {
    control: GuestControl,
    id: String,
    containers: Containers,
    vm_off: Option<tokio::sync::oneshot::Receiver<String>>,
    op: Option<OwnedMutexGuard<()>>,
}

impl Drop for FilesVm {
    fn drop(&mut self) {
        let _ = self.control.shutdown();
        let (id, me, off, op) = (
            self.id.clone(),
            self.containers.clone(),
            self.vm_off.take(),
            self.op.take(),
        );
        tokio::spawn(async move {
            let _op = op;
            if let Some(off) = off {
                let _ = tokio::time::timeout(OFF_GRACE, off).await;
            }
            if me.inner.backend.power_state(&id).await == hypervisor::PowerState::On {
                tracing::warn!(%id, "the VM booted for a copy did not power off: powering it off");
                let _ = me.inner.backend.power_off(&id, Duration::ZERO).await;
            }
        });
    }
}

/// The port layer's copy error in Docker's words, for container `key`.
fn copy_err(e: CopyError, key: &str) -> Error {
    match e {
        CopyError::NotFound(m) if !key.is_empty() => {
            Error::Copy(CopyError::NotFound(format!("{m} in container {key}")))
        }
        other => Error::Copy(other),
    }
}

impl Containers {
    /// What `lstat` says of `path` in container `key`.
    pub async fn stat_path(&self, key: &str, path: &str) -> Result<ContainerPath, Error> {
        let (control, _vm) = self.files_of(key).await?;
        control.stat_path(path).await.map_err(|e| copy_err(e, key))
    }

    /// A tar stream of `path` in container `key`, with what `lstat` says of it.
    pub async fn copy_out(
        &self,
        key: &str,
        path: &str,
    ) -> Result<(ContainerPath, CopyStream), Error> {
        let (control, vm) = self.files_of(key).await?;
        let (stat, out) =
            (control.copy_out(path, CopyMode::Copy).await).map_err(|e| copy_err(e, key))?;
        Ok((stat, CopyStream { out, _vm: vm }))
    }

    /// What container `key` changed in its root filesystem from its image (`docker diff`),
    /// sorted by path.
    pub async fn changes(&self, key: &str) -> Result<Vec<Change>, Error> {
        let rec = self.get(key)?;
        let (control, _vm) = self.files_of(key).await?;
        self.changes_in(key, &rec, &control).await
    }

    /// [`Containers::changes`] of `rec` (named `key`), whose files `control` serves.
    pub(super) async fn changes_in(
        &self,
        key: &str,
        rec: &ContainerRecord,
        control: &GuestControl,
    ) -> Result<Vec<Change>, Error> {
        let rootfs = (self.inner.images.rootfs_of(&rec.spec.image_id))
            .ok_or_else(|| Error::NoSuchImage(rec.spec.image_id.clone()))?;
        let (_, mut out) =
            (control.copy_out("/", CopyMode::Manifest).await).map_err(|e| copy_err(e, key))?;
        let mut reader = ManifestReader::default();
        while let Some(piece) = out.next().await {
            let piece = piece.map_err(|e| copy_err(e, key))?;
            reader
                .push(&piece)
                .map_err(|e| Error::Copy(CopyError::Failed(e)))?;
        }
        let image = tokio::task::spawn_blocking(move || changes::list_dir(&rootfs))
            .await
            .map_err(|e| Error::Copy(CopyError::Failed(e.to_string())))?
            .map_err(io_err("listing the image's files"))?;
        Ok(changes::compare(&image, &reader.listing))
    }

    /// A tar stream of container `key`'s root filesystem (`docker export`): what its image
    /// and its processes put there, not its volumes, bind mounts or tmpfs.
    pub async fn export(&self, key: &str) -> Result<CopyStream, Error> {
        let (control, vm) = self.files_of(key).await?;
        let (_, out) =
            (control.copy_out("/", CopyMode::Export).await).map_err(|e| copy_err(e, key))?;
        Ok(CopyStream { out, _vm: vm })
    }

    /// Extracts the tar stream `body` into directory `req.path` of container `key`. With
    /// `copy_uid_gid` (`docker cp -a`), what is extracted is owned by the container's user,
    /// as dockerd does it; otherwise by the owners the archive names.
    pub async fn copy_in<S, E>(
        &self,
        key: &str,
        mut req: CopyIn,
        copy_uid_gid: bool,
        body: S,
    ) -> Result<(), Error>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let rec = self.get(key)?;
        let user = &rec.spec.process.user;
        req.owner = (copy_uid_gid && !user.is_empty()).then(|| user.clone());
        let (control, _vm) = self.files_of(key).await?;
        control
            .copy_in(req, body)
            .await
            .map_err(|e| copy_err(e, key))
    }

    /// The guest that serves copies of container `key`: its running one, or a VM booted for
    /// its files.
    pub(super) async fn files_of(
        &self,
        key: &str,
    ) -> Result<(GuestControl, Option<FilesVm>), Error> {
        let rec = self.get(key)?;
        let live = self
            .live(&rec.id)
            .ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        if let Ok(control) = live.control() {
            self.refuse_paused(&self.get(&rec.id)?, "copying files")?;
            return Ok((control, None));
        }
        let op = live.op.clone().lock_owned().await;
        let rec = self.get(&rec.id)?;
        if rec.state.status == Status::Running {
            // Started while this waited for the lock.
            drop(op);
            let control = live
                .control()
                .map_err(|_| Error::NotRunning(rec.id.clone()))?;
            return Ok((control, None));
        }
        let vm = self.boot_for_files(&rec, op).await?;
        Ok((vm.control.clone(), Some(vm)))
    }

    /// Boots stopped container `rec`'s VM with its disks and no process or network.
    async fn boot_for_files(
        &self,
        rec: &ContainerRecord,
        op: OwnedMutexGuard<()>,
    ) -> Result<FilesVm, Error> {
        let live = self
            .live(&rec.id)
            .ok_or_else(|| Error::NoSuchContainer(rec.id.clone()))?;
        let admitted = self.admit_start(rec)?;
        self.check_volumes_free(rec)?;
        let launch = Launch::of(
            &rec.spec,
            self.inner.backend.root_disk(),
            &self.limits().dns_servers,
            self.inner.backend.host_gateway(),
        )
        .map_err(Error::Start)?
        .without_network();
        live.wait_vm_off().await;
        self.wait_volumes_released(rec).await?;
        let id = rec.id.clone();
        let backend = &self.inner.backend;
        backend.set_nics(&id, &[]).await?;
        backend
            .set_size(&id, rec.spec.memory_mib, rec.spec.cpus)
            .await?;
        let powered = backend.power_on(&id).await?;
        tracing::info!(%id, "booted the stopped container's VM to copy files");
        let started = session::start_without_process(powered, launch).await;
        drop(admitted);
        match started {
            Ok(s) => Ok(FilesVm {
                control: s.control,
                id,
                containers: self.clone(),
                vm_off: Some(s.vm_off),
                op: Some(op),
            }),
            Err(failure) => {
                let _ = backend.power_off(&id, Duration::ZERO).await;
                let why = match failure {
                    StartFailure::Spawn { message, .. } => message,
                    StartFailure::Violation(m) | StartFailure::Other(m) => m,
                };
                Err(Error::Start(format!(
                    "booting the container's VM to copy files failed: {why}"
                )))
            }
        }
    }
}
