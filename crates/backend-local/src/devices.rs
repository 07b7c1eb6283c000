//! What a VM's QEMU is handed at power-on besides its own files: the taps of its
//! interfaces (attached to their networks), its data disks as descriptors, and its host
//! shares' daemons.

use std::os::fd::OwnedFd;

use hypervisor::BackendError;

use crate::vm::VmSpec;
use crate::{disk, external, net, shares, LocalBackend};

impl LocalBackend {
    /// Opens VM `id`'s taps then its disks (QEMU's descriptors 3, 4, …) and starts its
    /// shares' daemons.
    pub(crate) async fn devices(
        &self,
        id: &str,
        spec: &VmSpec,
    ) -> Result<Vec<OwnedFd>, BackendError> {
        let mut fds = self.open_taps(id, &spec.nics)?;
        fds.extend(disk::open_disks(&spec.disks)?);
        if !spec.shares.is_empty() {
            let uid = self.vms.jailed_uid(spec);
            shares::start(&self.cfg.virtiofsd, &self.vms.dir(id), &spec.shares, uid).await?;
        }
        Ok(fds)
    }

    /// Opens the tap of each of VM `id`'s interfaces, attached to its network's bridge, and
    /// of its spares (on no network); none for a VM without interfaces.
    fn open_taps(&self, id: &str, nics: &[hypervisor::Nic]) -> Result<Vec<OwnedFd>, BackendError> {
        if nics.is_empty() {
            return Ok(Vec::new());
        }
        let net = self.net()?;
        let mut fds = Vec::new();
        for i in 0..nics.len() + hypervisor::SPARE_NICS {
            fds.push(net.open_tap(&net::tap_of(id, i), None, false)?);
            if let Some(nic) = nics.get(i) {
                self.attach_tap(id, i, nic)?;
            }
        }
        Ok(fds)
    }

    /// Puts VM `id`'s tap `index` on `nic`'s network: an isolated port on an isolated
    /// network, with the ports it publishes let in on a container network.
    pub(crate) fn attach_tap(
        &self,
        id: &str,
        index: usize,
        nic: &hypervisor::Nic,
    ) -> Result<(), BackendError> {
        let spec = self
            .specs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&nic.network)
            .cloned();
        let net = self.net()?;
        let tap = net::tap_of(id, index);
        net.attach(
            &tap,
            &nic.network,
            spec.as_ref().is_some_and(|s| s.isolated),
        )?;
        if spec.is_some_and(|s| s.external.is_some()) {
            external::open_ports(net.name(), &nic.network, &tap, &nic.open_ports)?;
        }
        Ok(())
    }

    /// The MACs QEMU gives VM `id`'s interfaces: its networks', then its spares'.
    pub(crate) fn macs(id: &str, nics: &[hypervisor::Nic]) -> Vec<String> {
        let mut macs: Vec<String> = nics.iter().map(|n| n.mac.clone()).collect();
        if !nics.is_empty() {
            macs.extend(
                (nics.len()..nics.len() + hypervisor::SPARE_NICS)
                    .map(|i| hypervisor::spare_mac(id, i)),
            );
        }
        macs
    }
}

impl LocalBackend {
    /// Restores VM `spec` from its shape's template when there is one; `None` when it is to
    /// boot cold (one log line says why), with `fds` (its taps) ready for that boot. A clone
    /// that fails to restore drops its template and boots cold.
    pub(crate) async fn restore(
        &self,
        spec: &VmSpec,
        base: &std::path::Path,
        macs: &[String],
        fds: &mut Vec<OwnedFd>,
    ) -> Result<Option<hypervisor::PoweredOn>, BackendError> {
        let id = spec.id.as_str();
        let shape = crate::templates::shape_of(spec, macs.len(), base);
        let template = match self.maker.templates.pick(shape.clone()) {
            crate::templates::Pick::Clone(t) => t,
            crate::templates::Pick::Cold { build, why } => {
                tracing::info!(vm = id, "boots cold: {why}");
                if let Some(shape) = build {
                    tokio::spawn(self.maker.clone().make(shape));
                }
                return Ok(None);
            }
        };
        let taps = std::mem::take(fds);
        let maker = &self.maker;
        match maker
            .restore(&self.vms, spec.clone(), &template, taps, macs, base)
            .await
        {
            Ok(p) => Ok(Some(p)),
            Err(e) => {
                tracing::warn!(
                    vm = id,
                    "restoring it from its template failed ({e}): it boots cold"
                );
                if let Ok(shape) = shape {
                    maker.discard(shape, &e);
                }
                *fds = self.devices(id, spec).await?;
                Ok(None)
            }
        }
    }
}
