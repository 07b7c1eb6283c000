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
use crate::output::{info, step};
use crate::tls::TlsOptions;

const TASK: Duration = Duration::from_secs(120);

/// What a configure on vSphere changes.
pub enum Change<'a> {
    /// `configure`'s settings, container networks to add (their port groups), and TLS flags.
    Settings {
        settings: &'a crate::settings::SettingsArgs,
        networks: Vec<ContainerNetwork>,
        tls: &'a TlsOptions,
    },
    /// `debug`'s log level.
    Debug(u8),
    /// `configure --rollback`: the configuration from before the last configure or debug.
    Rollback,
}

/// The appliance VM's key keeping the configuration a configure replaced, for `--rollback`.
pub(super) const PREVIOUS: &str = "vic.configure.previous";

/// The appliance VM's key keeping the registry CA bundle a configure replaced (with
/// [`PREVIOUS`]; empty: there was none).
pub(super) const PREVIOUS_REGISTRY_CA: &str = "vic.configure.previous.registry_ca";

/// One side of a configure: a document and the guestinfo beside it that goes with it (keys
/// not named keep what the VM has).
struct Side<'a> {
    doc: &'a ApplianceConfig,
    beside: Vec<(String, String)>,
}

/// The value of `key` in `extra` (empty: none).
fn value_of(extra: &[(String, String)], key: &str) -> String {
    (extra.iter().rev())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

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
    let extra = client.extra_config(&found.appliance).await?;
    let before = doc.clone();
    let mut doc = doc.clone();
    let mut nets = doc.networks.clone();
    let mut tls_change = None;
    let registry_ca = value_of(&extra, gi::REGISTRY_CA);
    let mut new_registry_ca = registry_ca.clone();
    let new = match change {
        Change::Rollback => return rollback(client, found, &before, &extra, timeout).await,
        Change::Settings {
            settings,
            networks,
            tls,
        } => {
            if !networks.is_empty() {
                nets = add_networks(client, found, &doc, &networks).await?;
            }
            let stores = volume_stores(client, found, settings).await?;
            let mut applied = settings.apply(&vch_config::Settings {
                volume_stores: Vec::new(),
                ..doc.settings.clone()
            })?;
            applied.volume_stores = doc.settings.volume_stores.clone();
            // A new operator password: its hash sealed, as create seals it.
            if applied.ops_password_hash != doc.settings.ops_password_hash {
                if let Some(hash) = &applied.ops_password_hash {
                    let key = super::tls::key(client, found).await?;
                    let sealed = key.seal(gi::OPS_PASSWORD_HASH, hash.as_bytes());
                    applied.ops_password_hash = Some(sealed);
                }
            }
            crate::settings::add_volume_stores(&mut applied.volume_stores, &stores)
                .map_err(|e| anyhow::anyhow!("{e}: nothing was changed"))?;
            if let Some(bundle) = super::registry_ca(&settings.registry_cas)? {
                applied.registry_ca = Some(super::deploy::registry_ca_path());
                if bundle != registry_ca {
                    info("Registry CA: replaced by --registry-ca");
                    new_registry_ca = bundle;
                }
            }
            if tls.any() {
                let key = super::tls::key(client, found).await?;
                tls_change = super::tls::decide(found, &doc, &extra, &key, tls)?;
            }
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
    if new == doc.settings
        && nets == doc.networks
        && tls_change.is_none()
        && new_registry_ca == registry_ca
    {
        info("Nothing to change");
        return Ok(());
    }
    for change in crate::container_networks::changes(&doc.networks, &nets) {
        info(change);
    }
    doc.settings = new;
    doc.networks = nets;
    let mut keep = vec![
        (PREVIOUS.to_string(), gi::encode_config(&before)),
        (PREVIOUS_REGISTRY_CA.to_string(), registry_ca.clone()),
    ];
    let ca = |v: &str| (gi::REGISTRY_CA.to_string(), v.to_string());
    let mut before = Side {
        doc: &before,
        beside: vec![ca(&registry_ca)],
    };
    let mut after_beside = vec![ca(&new_registry_ca)];
    let files = match &tls_change {
        Some(t) => {
            t.lines.iter().for_each(info);
            doc.tls = t.doc_tls.clone();
            let saved = serde_json::to_string(&t.saved).context("keeping the TLS before")?;
            keep.push((super::tls::PREVIOUS.to_string(), saved));
            before.beside.extend(t.saved.guestinfo.iter().cloned());
            after_beside.extend(t.guestinfo.iter().cloned());
            Some(&t.files)
        }
        // A rollback after this configure leaves TLS as it is.
        None => {
            keep.push((super::tls::PREVIOUS.to_string(), String::new()));
            None
        }
    };
    doc.check().context("the new configuration")?;
    super::deploy::appliance_memory_mib(&doc.settings)
        .map_err(|e| anyhow::anyhow!("{e}: nothing was changed"))?;
    let after = Side {
        doc: &doc,
        beside: after_beside,
    };
    apply(client, found, before, after, files, timeout, &keep).await?;
    if let Some(t) = &tls_change {
        let host = format!("tcp://{}", doc.listen);
        t.setup.print_connect(&found.name, &host, doc.listen.port());
    }
    info("Completed successfully");
    Ok(())
}

/// `configure --rollback`: the document (and TLS, with its files) a configure kept.
async fn rollback(
    client: &Client,
    found: &Found,
    now: &ApplianceConfig,
    extra: &[(String, String)],
    timeout: Duration,
) -> anyhow::Result<()> {
    let saved = (extra.iter())
        .find(|(k, v)| k == PREVIOUS && !v.is_empty())
        .map(|(_, v)| v);
    let Some(saved) = saved else {
        bail!(
            "Configure failed: a VCH configuration from before the last configure could not be found: VCH {} has not been configured since it was created or upgraded, or that configuration was rolled back already",
            found.name
        );
    };
    let saved = gi::decode_config(saved).context("the saved configuration")?;
    info("Restoring the configuration from before the last configure");
    for change in crate::container_networks::changes(&now.networks, &saved.networks) {
        info(change);
    }
    let tls = super::tls::saved(extra)?;
    let current = super::tls::values(extra);
    let files = match &tls {
        Some(t) => {
            let key = super::tls::key(client, found).await?;
            info("Restoring the TLS configuration and certificate files from before it");
            let (from, to) = (
                super::tls::record(extra, now.tls.as_ref()),
                super::tls::saved_record(t),
            );
            if let Some(to) = to.filter(|to| to.mode != from.mode) {
                info(format!(
                    "Docker API TLS: {} -> {}",
                    from.mode.label(),
                    to.mode.label()
                ));
            }
            Some(super::tls::Swap::of(t.files(&key)?)?)
        }
        None => None,
    };
    let ca = |v: String| (gi::REGISTRY_CA.to_string(), v);
    let mut before = Side {
        doc: now,
        beside: vec![ca(value_of(extra, gi::REGISTRY_CA))],
    };
    let mut after = Side {
        doc: &saved,
        beside: vec![ca(value_of(extra, PREVIOUS_REGISTRY_CA))],
    };
    if let Some(t) = &tls {
        before.beside.extend(current);
        after.beside.extend(t.guestinfo.iter().cloned());
    }
    let keep = [PREVIOUS, PREVIOUS_REGISTRY_CA, super::tls::PREVIOUS]
        .map(|k| (k.to_string(), String::new()));
    apply(client, found, before, after, files.as_ref(), timeout, &keep).await?;
    if let Some(record) = tls.as_ref().and_then(super::tls::saved_record) {
        let host = format!("tcp://{}", saved.listen);
        (record.described(&found.name)).print_connect(&found.name, &host, saved.listen.port());
    }
    info("Completed successfully");
    Ok(())
}

/// Restarts the appliance VM as `after` (its files written first) and then sets `keep`;
/// if the appliance does not come up, puts `before` back (the files too) and restarts it.
async fn apply(
    client: &Client,
    found: &Found,
    before: Side<'_>,
    after: Side<'_>,
    files: Option<&super::tls::Swap>,
    timeout: Duration,
    keep: &[(String, String)],
) -> anyhow::Result<()> {
    let vm = &found.appliance;
    if let Some(f) = files {
        if let Err(e) = f.apply() {
            let _ = f.undo();
            bail!("Configure failed: {e:#}: nothing was changed on the VCH");
        }
    }
    if let Err(e) = restart_with(client, vm, &after, timeout).await {
        info(format!(
            "The appliance did not come up with the new configuration ({e:#}): putting the one before back"
        ));
        if let Some(f) = files {
            f.undo().context("putting the certificate files back")?;
        }
        restart_with(client, vm, &before, timeout)
            .await
            .context("putting the configuration back also failed")?;
        bail!(
            "Configure failed: {e:#}; VCH {} runs with the configuration from before again",
            found.name
        );
    }
    client
        .set_extra_config(vm, keep, TASK)
        .await
        .context("keeping the configuration before for --rollback")?;
    Ok(())
}

/// Writes `side` to the appliance VM's guestinfo, restarts the VM, and waits for the Docker
/// API.
async fn restart_with(
    client: &Client,
    vm: &vim25::MoRef,
    side: &Side<'_>,
    timeout: Duration,
) -> anyhow::Result<()> {
    info("Updating the appliance VM's configuration");
    let mut config = vec![(gi::CONFIG.to_string(), gi::encode_config(side.doc))];
    config.extend(side.beside.iter().cloned());
    client
        .set_extra_config(vm, &config, TASK)
        .await
        .context("writing the appliance VM's guestinfo")?;
    let restarting = step("Restarting the appliance VM");
    match client.power_off(vm, TASK).await {
        Ok(()) => {}
        Err(e) if e.fault() == Some("InvalidPowerState") => {}
        Err(e) => return Err(e).context("powering off the appliance VM"),
    }
    fit_memory(client, vm, side.doc).await?;
    client
        .power_on(vm, TASK)
        .await
        .context("powering on the appliance VM")?;
    restarting.done();
    let waiting = step("Waiting for the Docker API to answer");
    wait_listening(client, vm, side.doc.listen, timeout).await?;
    waiting.done();
    Ok(())
}

/// Gives the powered-off appliance VM `vm` the memory document `doc` asks for.
pub(super) async fn fit_memory(
    client: &Client,
    vm: &vim25::MoRef,
    doc: &ApplianceConfig,
) -> anyhow::Result<()> {
    let memory = super::deploy::appliance_memory_mib(&doc.settings)?;
    let (now, cpus) = client.size(vm).await?;
    if now != memory {
        info(format!("Appliance VM memory: {now} -> {memory} MiB"));
        client
            .set_size(vm, memory, cpus, TASK)
            .await
            .context("changing the appliance VM's memory")?;
    }
    Ok(())
}

/// The guestinfo beside the document that goes with it: the TLS keys and the registry CAs.
pub(super) fn beside(extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = super::tls::values(extra);
    out.push((
        gi::REGISTRY_CA.to_string(),
        value_of(extra, gi::REGISTRY_CA),
    ));
    out
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
pub(super) async fn wait_listening(
    client: &Client,
    vm: &vim25::MoRef,
    listen: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<()> {
    if !listen.ip().is_loopback() {
        bail!(
            "the appliance VM is on again, but reaching its Docker API needs its address from VMware Tools, which vic-machine does not read yet"
        );
    }
    let listening = || TcpStream::connect_timeout(&listen, Duration::from_secs(1)).is_ok();
    let late = || {
        anyhow::anyhow!(
            "the appliance did not answer on {listen} within {}",
            crate::output::go_duration(timeout)
        )
    };
    super::answer::wait(client, vm, Instant::now() + timeout, listening, late).await
}
