//! `configure` (change a VCH's settings) and `debug` (change its log level). Both write the
//! new settings to vch.json and restart the appliance through [`appliance::restart`]:
//! container VMs keep running, and if the appliance does not come up with the new settings
//! the old ones are put back.

use std::fs;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::appliance::{self, Change};
use crate::progress;
use crate::settings::{self, debug_label, SettingsArgs};
use crate::vch::{info, Layout, VchConfig};

/// `vic-machine configure`.
pub fn configure(layout: &Layout, args: &SettingsArgs, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    info("### Configuring VCH ####");
    let old = layout.load()?;
    if !args.any() {
        bail!("Nothing to configure: give at least one setting to change (vic-machine configure --help lists them)");
    }
    let _progress = progress::begin(layout, "Configure", "configure")?;
    let mut new = old.clone();
    new.settings = args.apply(&old.settings)?;
    // A new registry CA bundle is written beside the old one and swapped in with the
    // restart, so a failed configure leaves the old bundle.
    let bundle = if args.registry_cas.is_empty() {
        None
    } else {
        Some(settings::registry_ca_bundle(&args.registry_cas)?)
    };
    let ca_path = settings::registry_ca_path(&layout.dir);
    let old_bundle = fs::read(&ca_path).ok();
    let ca_changed = bundle.is_some() && bundle != old_bundle;
    if bundle.is_some() {
        new.settings.registry_ca = Some(ca_path.clone());
    }
    if new == old && !ca_changed {
        info(format!(
            "VCH {} already has these settings: nothing changed",
            layout.name
        ));
        info("Completed successfully");
        return Ok(());
    }
    settings::prepare_volume_stores(&new.settings.volume_stores)?;
    report_changes(&old, &new, ca_changed);
    apply(layout, &old, &new, bundle, old_bundle, deadline, timeout)?;
    info("Completed successfully");
    Ok(())
}

/// One line per changed setting.
fn report_changes(old: &VchConfig, new: &VchConfig, ca_changed: bool) {
    let (o, n) = (&old.settings, &new.settings);
    let line = |what: &str, a: String, b: String| {
        if a != b {
            info(format!("{what}: {a} -> {b}"));
        }
    };
    let list = |v: &[String]| format!("[{}]", v.join(", "));
    let opt = |v: Option<String>| v.unwrap_or_else(|| "unlimited".into());
    line(
        "Insecure registries",
        list(&o.insecure_registries),
        list(&n.insecure_registries),
    );
    line(
        "Whitelist registries",
        list(&o.whitelist_registries),
        list(&n.whitelist_registries),
    );
    line("DNS servers", list(&o.dns_servers), list(&n.dns_servers));
    line(
        "Memory limit (MiB)",
        opt(o.memory_mib.map(|v| v.to_string())),
        opt(n.memory_mib.map(|v| v.to_string())),
    );
    line(
        "vCPU limit",
        opt(o.cpus.map(|v| v.to_string())),
        opt(n.cpus.map(|v| v.to_string())),
    );
    line(
        "Container limit",
        opt(o.containers.map(|v| v.to_string())),
        opt(n.containers.map(|v| v.to_string())),
    );
    line(
        "Storage quota (GiB)",
        opt(o.storage_quota_gib.map(|v| v.to_string())),
        opt(n.storage_quota_gib.map(|v| v.to_string())),
    );
    line(
        "Endpoint memory (MiB, not applied locally)",
        opt(o.endpoint_memory_mib.map(|v| v.to_string())),
        opt(n.endpoint_memory_mib.map(|v| v.to_string())),
    );
    let stores = |s: &crate::settings::Settings| {
        s.volume_stores
            .iter()
            .map(|v| v.flag_value())
            .collect::<Vec<_>>()
    };
    line("Volume stores", list(&stores(o)), list(&stores(n)));
    line(
        "Container name convention",
        o.container_name_convention.clone().unwrap_or_default(),
        n.container_name_convention.clone().unwrap_or_default(),
    );
    line("Debug level", o.debug.to_string(), n.debug.to_string());
    if ca_changed {
        info("Registry CA bundle: replaced");
    }
}

/// Restarts the appliance with `new`, swapping in the registry CA `bundle` if one was given.
fn apply(
    layout: &Layout,
    old: &VchConfig,
    new: &VchConfig,
    bundle: Option<Vec<u8>>,
    old_bundle: Option<Vec<u8>>,
    deadline: Instant,
    timeout: Duration,
) -> anyhow::Result<()> {
    let ca_path = settings::registry_ca_path(&layout.dir);
    let mut put = || -> anyhow::Result<()> {
        if let Some(b) = &bundle {
            fs::write(&ca_path, b)?;
        }
        Ok(())
    };
    let mut undo = || -> anyhow::Result<()> {
        match &old_bundle {
            Some(b) if bundle.is_some() => fs::write(&ca_path, b)?,
            None if bundle.is_some() => {
                let _ = fs::remove_file(&ca_path);
            }
            _ => {}
        }
        Ok(())
    };
    let down = appliance::restart(
        layout,
        old,
        new,
        Change {
            apply: &mut put,
            undo: &mut undo,
        },
        deadline,
        "Configuring",
        timeout,
    )
    .map_err(|e| anyhow::anyhow!("Configure failed: {e}"))?;
    info(format!(
        "Appliance restarted with the new settings; the Docker API was unavailable for {:.1}s",
        down.as_secs_f64()
    ));
    Ok(())
}

/// `vic-machine debug`: sets the appliance's log level (VIC's `debug` enables debug mode).
pub fn debug(layout: &Layout, level: u8, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    info("### Configuring VCH for debug ####");
    let old = layout.load()?;
    let _progress = progress::begin(layout, "Debug", "debug")?;
    if old.settings.debug == level && appliance::alive(layout) {
        info(format!(
            "VCH {} already logs at debug level {level} ({}): nothing changed",
            layout.name,
            debug_label(level)
        ));
        info("Completed successfully");
        return Ok(());
    }
    let mut new = old.clone();
    new.settings.debug = level;
    info(format!(
        "Debug level: {} -> {level} ({})",
        old.settings.debug,
        debug_label(level)
    ));
    let down = appliance::restart(
        layout,
        &old,
        &new,
        Change {
            apply: &mut || Ok(()),
            undo: &mut || Ok(()),
        },
        deadline,
        "Configuring",
        timeout,
    )
    .map_err(|e| anyhow::anyhow!("Debug failed: {e}"))?;
    info(format!(
        "Appliance restarted; the Docker API was unavailable for {:.1}s. Its log: {}",
        down.as_secs_f64(),
        layout.log().display()
    ));
    info("Completed successfully");
    Ok(())
}
