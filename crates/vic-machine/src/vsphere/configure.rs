//! `vic-machine configure` and `debug` on vSphere: the settings of a VCH's document
//! (registries, DNS servers, limits, volume stores, the log level, …) changed in its appliance VM's guestinfo, then the appliance VM
//! restarted to read them. Container VMs are VMs of their own: they keep running, and the
//! restarted appliance takes them over when their serial ports dial it again.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use vch_config::guestinfo as gi;
use vch_config::{ApplianceConfig, ContainerNetwork, Sources, VolumeStore};
use vim25::Client;

use super::found::Found;
use crate::output::info;

const TASK: Duration = Duration::from_secs(120);

/// What a configure on vSphere changes.
pub enum Change<'a> {
    /// `configure`'s settings, and container networks to add (their port groups).
    Settings {
        settings: &'a crate::settings::SettingsArgs,
        networks: Vec<ContainerNetwork>,
    },
    /// `debug`'s log level.
    Debug(u8),
    /// `configure --rollback`: the configuration from before the last configure or debug.
    Rollback,
}

/// The appliance VM's key keeping the configuration a configure replaced, for `--rollback`.
pub(super) const PREVIOUS: &str = "vic.configure.previous";

/// Applies `change` to the VCH `found`, restarting its appliance; waits up to `timeout` for
/// its Docker API.
pub async fn configure(
    client: &Client,
    found: &Found,
    change: Change<'_>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let Some(doc) = &found.doc else {
        bail!(
            "the configuration of {} does not read: it cannot be changed",
            found.name
        );
    };
    let before = doc.clone();
    let mut doc = doc.clone();
    let mut nets = doc.networks.clone();
    let new = match change {
        Change::Rollback => {
            let extra = client.extra_config(&found.appliance).await?;
            let saved = (extra.into_iter())
                .find(|(k, v)| k == PREVIOUS && !v.is_empty())
                .map(|(_, v)| v);
            let Some(saved) = saved else {
                bail!(
                    "Configure failed: a VCH configuration from before the last configure could not be found: VCH {} has not been configured since it was created or upgraded, or that configuration was rolled back already",
                    found.name
                );
            };
            let saved = gi::decode_config(&saved).context("the saved configuration")?;
            info("Restoring the configuration from before the last configure");
            for change in crate::container_networks::changes(&doc.networks, &saved.networks) {
                info(change);
            }
            return apply(client, found, &before, &saved, timeout, "").await;
        }
        Change::Settings { settings, networks } => {
            if !networks.is_empty() {
                nets = add_networks(client, found, &doc, &networks).await?;
            }
            let stores = volume_stores(client, found, settings).await?;
            let mut applied = settings.apply(&vch_config::Settings {
                volume_stores: Vec::new(),
                ..doc.settings.clone()
            })?;
            applied.volume_stores = doc.settings.volume_stores.clone();
            crate::settings::add_volume_stores(&mut applied.volume_stores, &stores)
                .map_err(|e| anyhow::anyhow!("{e}: nothing was changed"))?;
            applied
        }
        Change::Debug(level) => {
            info(format!(
                "Debug level: {} -> {level} ({})",
                doc.settings.debug,
                crate::settings::debug_label(level)
            ));
            let mut new = doc.settings.clone();
            new.debug = level;
            new
        }
    };
    if new == doc.settings && nets == doc.networks {
        info("Nothing to change");
        return Ok(());
    }
    for change in crate::container_networks::changes(&doc.networks, &nets) {
        info(change);
    }
    doc.settings = new;
    doc.networks = nets;
    doc.check().context("the new configuration")?;
    apply(
        client,
        found,
        &before,
        &doc,
        timeout,
        &gi::encode_config(&before),
    )
    .await
}

/// Restarts the appliance VM with configuration `after` and keeps `saved` for `--rollback`
/// (empty: none); if the appliance does not come up with it, restarts it with `before`.
async fn apply(
    client: &Client,
    found: &Found,
    before: &ApplianceConfig,
    after: &ApplianceConfig,
    timeout: Duration,
    saved: &str,
) -> anyhow::Result<()> {
    let vm = &found.appliance;
    if let Err(e) = restart_with(client, vm, after, timeout).await {
        info(format!(
            "The appliance did not come up with the new configuration ({e:#}): putting the one before back"
        ));
        restart_with(client, vm, before, timeout)
            .await
            .context("putting the configuration back also failed")?;
        bail!(
            "Configure failed: {e:#}; VCH {} runs with the configuration from before again",
            found.name
        );
    }
    client
        .set_extra_config(vm, &[(PREVIOUS.to_string(), saved.to_string())], TASK)
        .await
        .context("keeping the configuration before for --rollback")?;
    info("Completed successfully");
    Ok(())
}

/// Writes `doc` to the appliance VM's guestinfo, restarts the VM, and waits for the Docker API.
async fn restart_with(
    client: &Client,
    vm: &vim25::MoRef,
    doc: &ApplianceConfig,
    timeout: Duration,
) -> anyhow::Result<()> {
    info("Updating the appliance VM's configuration");
    let config = [(gi::CONFIG.to_string(), gi::encode_config(doc))];
    client
        .set_extra_config(vm, &config, TASK)
        .await
        .context("writing the appliance VM's guestinfo")?;
    info("Restarting the appliance VM");
    match client.power_off(vm, TASK).await {
        Ok(()) => {}
        Err(e) if e.fault() == Some("InvalidPowerState") => {}
        Err(e) => return Err(e).context("powering off the appliance VM"),
    }
    client
        .power_on(vm, TASK)
        .await
        .context("powering on the appliance VM")?;
    info("Waiting for the Docker API to answer");
    wait_listening(doc.listen, timeout).await
}

/// The `--volume-store`s of `settings` found on the target's datastores, none inside the
/// VCH's directory.
async fn volume_stores(
    client: &Client,
    found: &Found,
    settings: &crate::settings::SettingsArgs,
) -> anyhow::Result<Vec<VolumeStore>> {
    let written = super::written_volume_stores(settings)?;
    if written.is_empty() {
        return Ok(Vec::new());
    }
    let stores = super::validate::volume_stores(client, &found.datacenter, &written)
        .await
        .map_err(|e| anyhow::anyhow!("{e}: nothing was changed"))?;
    if let Some((label, dir)) = (found.dir.as_ref()).and_then(|d| super::store_inside(d, &stores)) {
        bail!("volume store {label} ({dir}) is inside the VCH's directory, which goes with the VCH: nothing was changed");
    }
    Ok((stores.into_iter())
        .map(|(label, dir)| VolumeStore {
            label,
            dir: dir.to_string().into(),
        })
        .collect())
}

/// The VCH's container networks with `given` added, their port groups found on the target
/// and none of them the bridge network.
async fn add_networks(
    client: &Client,
    found: &Found,
    doc: &vch_config::ApplianceConfig,
    given: &[ContainerNetwork],
) -> anyhow::Result<Vec<ContainerNetwork>> {
    let all = crate::container_networks::add(&doc.networks, given, Sources::PortGroups)?;
    let (networks, _) = super::validate::network_names(client, &found.datacenter).await?;
    let bridge = match &doc.backend {
        vch_config::BackendConfig::Vsphere(b) => b.bridge_network.clone(),
        vch_config::BackendConfig::Local { .. } => None,
    };
    for n in given {
        if !networks.contains(&n.source) {
            bail!(
                "Error checking network for --container-network: network '{}' not found: nothing was changed",
                n.source
            );
        }
        if bridge.as_ref() == Some(&n.source) {
            bail!(
                "the bridge network must not be shared with another network role - container also uses {:?}: nothing was changed",
                n.source
            );
        }
    }
    Ok(all)
}

/// Waits until the Docker API's port takes connections (on vcsim the appliance is on this
/// machine at 127.0.0.1; a real appliance's address needs VMware Tools, not read yet).
pub(super) async fn wait_listening(listen: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    if !listen.ip().is_loopback() {
        bail!(
            "the appliance VM is on again, but reaching its Docker API needs its address from VMware Tools, which vic-machine does not read yet"
        );
    }
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&listen, Duration::from_secs(1)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the appliance did not answer on {listen} within {}",
                crate::output::go_duration(timeout)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
