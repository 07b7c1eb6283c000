//! The vSphere paths of vic-machine's commands: which flags apply there, and what is refused
//! before anything is made or changed.

use super::*;

impl CreateArgs {
    /// `create` on a vSphere target.
    pub(super) fn run_vsphere(self, target: &vsphere::Target) -> anyhow::Result<()> {
        let CreateArgs {
            common,
            image_store,
            settings,
            tls,
            timeout,
            port,
            bootstrap_dir,
            bridge_network_range,
            container_networks,
            vsphere,
        } = self;
        layout::validate_name(&common.name)?;
        let networks = container_networks.on_vsphere()?;
        let wanted = vsphere.wanted(
            &common.name,
            target,
            image_store.as_deref(),
            &settings,
            &networks,
        )?;
        let thumbprint = common.credentials.thumbprint.as_deref();
        let tls = TlsOptions::from(tls);
        tls.check()?;
        let not_yet = [
            ("--bind-path", !settings.bind_paths.is_empty()),
            ("--port", port.is_some()),
            // vSphere container VMs boot; instant clones are not made yet.
            (
                "--container-start template",
                settings.container_start.as_deref() == Some("template"),
            ),
            // Container disks and volumes on datastores are not counted yet.
            (
                "--storage-quota",
                settings.storage_quota.is_some_and(|q| q > 0),
            ),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect();
        let mut applied = settings.apply(&settings::Settings::default())?;
        applied.bridge_network_range = bridge_network_range;
        vsphere::appliance_memory_mib(&applied)?;
        let opts = vsphere::CreateOptions {
            settings: applied,
            tls: tls::plan(&tls, &common.name)?,
            timeout,
            not_yet,
            networks,
            bootstrap_dir,
            registry_ca: vsphere::registry_ca(&settings.registry_cas)?,
        };
        vsphere::create(target, thumbprint, &common.name, &wanted, &opts)
    }
}

impl ConfigureArgs {
    /// `configure` on a vSphere target: settings, container networks and certificates; what
    /// else configure changes is refused before anything is.
    pub(super) fn run_vsphere(self, target: &vsphere::Target) -> anyhow::Result<()> {
        let tls = TlsOptions::from(self.tls);
        let not_yet = [
            ("--bind-path", !self.settings.bind_paths.is_empty()),
            (
                "--container-start template",
                self.settings.container_start.as_deref() == Some("template"),
            ),
            (
                "--storage-quota",
                self.settings.storage_quota.is_some_and(|q| q > 0),
            ),
        ];
        if let Some((flag, _)) = not_yet.iter().find(|(_, given)| *given) {
            anyhow::bail!("{flag} on a vSphere target is not implemented yet: nothing was changed");
        }
        let thumbprint = self.common.credentials.thumbprint.as_deref();
        let changes = self.settings.any() || self.container_networks.any() || tls.any();
        alone(self.reset_progress, self.rollback, changes)?;
        if self.reset_progress {
            return vsphere::reset_progress(target, thumbprint, &self.common.name);
        }
        if self.rollback {
            let change = vsphere::Change::Rollback;
            return vsphere::configure(target, thumbprint, &self.common.name, change, self.timeout);
        }
        vsphere::configure(
            target,
            thumbprint,
            &self.common.name,
            vsphere::Change::Settings {
                settings: &self.settings,
                networks: self.container_networks.on_vsphere()?,
                tls: &tls,
            },
            self.timeout,
        )
    }
}
