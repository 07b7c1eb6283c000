//! `vic-machine upgrade [--rollback]` on vSphere. What an appliance VM runs is a release:
//! its version (`vic.version`), its boot medium (the appliance ISO on its CD-ROM) and its
//! document (`guestinfo.vic.config`, which names the container VMs' bootstrap ISO). An
//! upgrade uploads this installation's media beside the VCH's, keeps the release it replaces
//! in the VM's `vic.previous.*` keys, and restarts the appliance VM on the new one; if the
//! Docker API does not answer in time, the old release is put back and started again.
//! `--rollback` swaps the two releases, so a second rollback undoes the first. Container VMs
//! keep running throughout and keep the bootstrap they booted (new ones get the new one); the
//! restarted appliance takes them over.
//!
//! ```text
//!   upload appliance-NEW.iso, bootstrap-NEW.iso     (while the old appliance still serves)
//!   power off the appliance VM
//!   CD-ROM → appliance-NEW.iso; config, version ← new; vic.previous.* ← old
//!   power on, wait for the Docker API   ── fails? ──► old release put back, powered on again
//! ```

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use vch_config::guestinfo as gi;
use vim25::datastore::DatastorePath;
use vim25::{Client, MoRef};

use super::found::{Found, VERSION};
use super::media;
use crate::output::{info, step};
use crate::parts::{upgrade_status, Parts, UpgradeStatus};

const TASK: Duration = Duration::from_secs(120);
const PREV_VERSION: &str = "vic.previous.version";
const PREV_APPLIANCE: &str = "vic.previous.appliance_iso";
const PREV_CONFIG: &str = "vic.previous.config";
const PREV_BESIDE: &str = "vic.previous.beside";

/// What an appliance VM runs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Release {
    version: String,
    appliance_iso: DatastorePath,
    /// The document, as guestinfo holds it.
    config: String,
    /// The guestinfo beside it (certificates, keys sealed, registry CAs) as JSON; empty for a
    /// release kept before they were (what the VM has then stays).
    beside: String,
}

/// `upgrade`'s options.
pub struct Options {
    pub force: bool,
    pub rollback: bool,
    pub timeout: Duration,
}

/// The release VM `vm` runs now, and the one before it (if it was upgraded).
async fn releases(client: &Client, vm: &MoRef) -> anyhow::Result<(Release, Option<Release>)> {
    let extra = client.extra_config(vm).await?;
    let get = |k: &str| {
        (extra.iter())
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let iso_of = |v: Option<String>| v.as_deref().and_then(DatastorePath::parse);
    let devices = client.devices(vm).await?;
    let current_iso = (devices.iter())
        .filter(|d| d.value_type() == "VirtualCdrom")
        .filter_map(|d| d.text_at(&["backing", "fileName"]))
        .find(|f| f.contains("/appliance-") && f.ends_with(".iso"))
        .map(str::to_string);
    let current = Release {
        version: get(VERSION).unwrap_or_default(),
        appliance_iso: iso_of(current_iso)
            .context("the appliance VM has no appliance ISO on a CD-ROM: it cannot be upgraded")?,
        config: get(gi::CONFIG).context("the appliance VM has no configuration")?,
        beside: serde_json::to_string(&super::configure::beside(&extra))?,
    };
    let previous = match (
        get(PREV_VERSION),
        iso_of(get(PREV_APPLIANCE)),
        get(PREV_CONFIG),
    ) {
        (Some(version), Some(appliance_iso), Some(config)) if !version.is_empty() => {
            Some(Release {
                version,
                appliance_iso,
                config,
                beside: get(PREV_BESIDE).unwrap_or_default(),
            })
        }
        _ => None,
    };
    Ok((current, previous))
}

/// Upgrades (or rolls back) the VCH `found` with this installation's `parts`.
pub async fn upgrade(
    client: &Client,
    found: &Found,
    parts: &Parts,
    opts: &Options,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + opts.timeout;
    let Some(doc) = &found.doc else {
        bail!(
            "the configuration of {} does not read: it cannot be upgraded",
            found.name
        );
    };
    let (current, previous) = releases(client, &found.appliance).await?;
    let previous_before = previous.clone();
    let (target, what) = match opts.rollback {
        true => {
            let Some(previous) = previous else {
                bail!(
                    "Rollback failed: VCH {} has no previous version to roll back to (it has not been upgraded)",
                    found.name
                );
            };
            info(format!(
                "Rolling back VCH {} from {} to {}",
                found.name, current.version, previous.version
            ));
            (previous, "Rollback")
        }
        false => {
            let installer = parts.version()?;
            info(format!("Installer version: {installer}"));
            info(format!("VCH version: {}", current.version));
            if !opts.force
                && upgrade_status(&installer, &current.version) != UpgradeStatus::Upgradeable
            {
                bail!(
                    "{:?} has same or newer version {} than installer version {}. No upgrade is available. (--force upgrades anyway)",
                    found.name,
                    current.version,
                    installer
                );
            }
            let dir = found
                .dir
                .as_ref()
                .context("the VCH has no directory on a datastore")?;
            let uploading = step("Uploading this installation's appliance and bootstrap media");
            let dc = super::found::inventory_path(client, &found.datacenter).await?;
            let uploaded = media::upload(client, dc.trim_start_matches('/'), parts, dir).await?;
            uploading.done();
            let mut new_doc = doc.clone();
            if let vch_config::BackendConfig::Vsphere(b) = &mut new_doc.backend {
                b.bootstrap_iso = Some(uploaded.bootstrap.to_string());
            }
            info(format!("Upgrading VCH {} to {installer}", found.name));
            let release = Release {
                version: installer,
                appliance_iso: uploaded.appliance,
                config: gi::encode_config(&new_doc),
                beside: current.beside.clone(),
            };
            (release, "Upgrade")
        }
    };
    let started = Instant::now();
    let outcome = run(
        client,
        found,
        (&current, &target),
        previous_before.as_ref(),
        opts,
        deadline,
    )
    .await;
    sweep(client, found).await;
    outcome.map_err(|e| anyhow::anyhow!("{what} failed: {e:#}"))?;
    let record = |r: &Release| -> Option<String> {
        let beside: Vec<(String, String)> = serde_json::from_str(&r.beside).ok()?;
        (beside.into_iter()).find_map(|(k, v)| (k == super::tls::RECORD).then_some(v))
    };
    if !target.beside.is_empty() && record(&target) != record(&current) {
        info(format!(
            "The Docker API's certificates are those {} had; the certificate directory on this machine is as the last configure left it: `configure` with the TLS flags makes them agree",
            target.version
        ));
    }
    info(format!(
        "VCH {} now runs {} (was {}); the Docker API was unavailable for {:.1}s, container VMs kept running",
        found.name,
        target.version,
        current.version,
        started.elapsed().as_secs_f64()
    ));
    info("Completed successfully");
    Ok(())
}

/// Removes the media no release of the VCH and no VM uses (a failed upgrade's, the release
/// before the previous one's); a failure here is reported, not the upgrade's.
async fn sweep(client: &Client, found: &Found) {
    let Some(dir) = &found.dir else { return };
    let swept = async {
        let (current, previous) = releases(client, &found.appliance).await?;
        let mut keep = Vec::new();
        for r in std::iter::once(&current).chain(previous.as_ref()) {
            keep.push(r.appliance_iso.to_string());
            let doc = gi::decode_config(&r.config).ok();
            if let Some(vch_config::BackendConfig::Vsphere(b)) = doc.map(|d| d.backend) {
                keep.extend(b.bootstrap_iso);
            }
        }
        let dc = super::found::inventory_path(client, &found.datacenter).await?;
        let dc = dc.trim_start_matches('/');
        media::sweep(client, dc, &found.datacenter, &found.pool, dir, &keep).await
    };
    match swept.await {
        Ok(gone) if !gone.is_empty() => {
            info(format!("Removed media no longer used: {}", gone.join(", ")))
        }
        Ok(_) => {}
        Err(e) => info(format!("Removing media no longer used failed: {e:#}")),
    }
}

/// Switches the appliance VM from release `from` to `to` (`previous` being the release
/// before `from`), and puts `from` back when `to` does not come up.
async fn run(
    client: &Client,
    found: &Found,
    (from, to): (&Release, &Release),
    previous: Option<&Release>,
    opts: &Options,
    deadline: Instant,
) -> anyhow::Result<()> {
    let vm = &found.appliance;
    let listen = (found.doc.as_ref())
        .map(|d| d.listen)
        .context("the VCH's configuration does not read")?;
    let result = switch(
        client,
        vm,
        &from.appliance_iso,
        to,
        Some(from),
        listen,
        deadline,
    )
    .await;
    if let Err(e) = result {
        info(format!(
            "{} did not come up ({e:#}): putting {} back",
            to.version, from.version
        ));
        let back = Instant::now() + opts.timeout;
        switch(client, vm, &to.appliance_iso, from, previous, listen, back)
            .await
            .context("putting the release back also failed")?;
        bail!("{e:#}; VCH {} runs {} again", found.name, from.version);
    }
    Ok(())
}

/// Restarts the appliance VM, whose CD-ROM holds `mounted`, on release `to`, recording `prev`
/// as the one before it (none: no rollback), and waits for the Docker API at `listen` until
/// `deadline`.
async fn switch(
    client: &Client,
    vm: &MoRef,
    mounted: &DatastorePath,
    to: &Release,
    prev: Option<&Release>,
    listen: std::net::SocketAddr,
    deadline: Instant,
) -> anyhow::Result<()> {
    let powering_off = step("Powering off the appliance VM");
    match client.power_off(vm, TASK).await {
        Ok(()) => {}
        Err(e) if e.fault() == Some("InvalidPowerState") => {}
        Err(e) => return Err(e).context("powering off the appliance VM"),
    }
    powering_off.done();
    if *mounted != to.appliance_iso {
        client
            .change_cdrom(vm, mounted, &to.appliance_iso, TASK)
            .await
            .context("changing the appliance VM's boot medium")?;
    }
    // An empty value removes a key.
    let prev_iso = prev
        .map(|p| p.appliance_iso.to_string())
        .unwrap_or_default();
    let doc = gi::decode_config(&to.config).context("the release's configuration")?;
    super::configure::fit_memory(client, vm, &doc).await?;
    let mut entries: Vec<(String, String)> = [
        (gi::CONFIG, to.config.as_str()),
        (VERSION, &to.version),
        (PREV_VERSION, prev.map_or("", |p| &p.version)),
        (PREV_APPLIANCE, &prev_iso),
        (PREV_CONFIG, prev.map_or("", |p| &p.config)),
        (PREV_BESIDE, prev.map_or("", |p| &p.beside)),
        // A configure's rollback does not reach across a release.
        (super::configure::PREVIOUS, ""),
        (super::configure::PREVIOUS_REGISTRY_CA, ""),
        (super::tls::PREVIOUS, ""),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    if !to.beside.is_empty() {
        let beside: Vec<(String, String)> =
            serde_json::from_str(&to.beside).context("the release's certificates")?;
        entries.extend(beside);
    }
    client
        .set_extra_config(vm, &entries, TASK)
        .await
        .context("writing the appliance VM's configuration")?;
    let powering_on = step("Powering on the appliance VM");
    client
        .power_on(vm, TASK)
        .await
        .context("powering on the appliance VM")?;
    powering_on.done();
    let waiting = step("Waiting for the Docker API to answer");
    let left = deadline.saturating_duration_since(Instant::now());
    super::configure::wait_listening(client, vm, listen, left).await?;
    waiting.done();
    Ok(())
}
