//! `configure` (change a VCH's settings and certificates and add container networks, or
//! `--rollback` to the configuration before the last configure) and `debug` (change its log level). Each restarts the appliance
//! through [`appliance::restart`]: container VMs keep running, and if the appliance does not
//! come up with the change, the previous record and files are put back.
//!
//! ```text
//!   read and check every flag and file; decide every file (tls::reconfigure)  ── bad input:
//!   UpdateInProgress set (progress.rs)                                            nothing changed
//!   snapshot of what is replaced ─► configure.pending.json (snapshot.rs)
//!   stop appliance ─► write files, vch.json ─► start, wait ── fails: snapshot put back, old started
//!   pending becomes configure.prev.json (for --rollback); the flag is cleared
//! ```

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::appliance::{self, Change, RestartError};
use crate::bridges::{check_bridges, IpBridges};
use crate::container_networks::{self, ContainerNetworkArgs};
use crate::layout::{Layout, VchConfig};
use crate::output::info;
use crate::progress;
use crate::settings::{self, debug_label, SettingsArgs};
use crate::snapshot::Snapshot;
use crate::tls::{self, TlsOptions, TlsRecord, Writes};

/// What `configure` was asked.
pub struct ConfigureOptions<'a> {
    pub settings: &'a SettingsArgs,
    pub tls: &'a TlsOptions,
    /// Networks to add.
    pub networks: &'a ContainerNetworkArgs,
    pub timeout: Duration,
}

/// `vic-machine configure`.
pub fn configure(layout: &Layout, opts: &ConfigureOptions<'_>) -> anyhow::Result<()> {
    let deadline = Instant::now() + opts.timeout;
    info("### Configuring VCH ####");
    let old = layout.load()?;
    if !opts.settings.any() && !opts.tls.any() && !opts.networks.any() {
        bail!("Nothing to configure: give at least one setting to change (vic-machine configure --help lists them)");
    }
    let given = opts.networks.networks()?;
    let _progress = progress::begin(layout, "Configure", "configure")?;
    let mut new = old.clone();
    new.settings = opts.settings.apply(&old.settings)?;
    new.container_networks = container_networks::add(
        &old.container_networks,
        &given,
        vch_config::Sources::HostBridges,
    )?;
    let added = &new.container_networks[old.container_networks.len()..];
    check_bridges(&IpBridges::default(), added)?;
    let mut writes = Writes::default();
    let registry_ca_changed = registry_bundle(layout, opts.settings, &mut new, &mut writes)?;
    let tls = tls::reconfigure(
        &old.tls,
        &layout.name,
        &old.docker_host,
        &layout.certs_dir(),
        opts.tls,
    )?;
    if let Some(t) = &tls {
        new.tls = t.record.clone();
        writes.extend(t.writes.clone());
    }
    if new == old && !registry_ca_changed && tls.is_none() && appliance::alive(layout) {
        info(format!(
            "VCH {} already has these settings: nothing changed",
            layout.name
        ));
        info("Completed successfully");
        return Ok(());
    }
    settings::prepare_volume_stores(&new.settings.volume_stores)?;
    report_changes(&old, &new, registry_ca_changed);
    for line in tls.iter().flat_map(|t| &t.changes) {
        info(line);
    }

    let before = Snapshot::capture(layout, &old, writes.paths())?;
    before.save_pending(layout)?;
    let result = appliance::restart(
        layout,
        &old,
        &new,
        Change {
            apply: &mut || writes.apply(),
            undo: &mut || before.restore_files(),
        },
        deadline,
        "Configuring",
        opts.timeout,
    );
    let down = match result {
        Ok(down) => {
            if let Err(e) = Snapshot::promote_pending(layout) {
                info(format!(
                    "The configuration before this configure could not be kept for --rollback: {e:#}"
                ));
            }
            down
        }
        // Neither came up: the snapshot stays for `configure --rollback`.
        Err(e @ RestartError::RollbackFailed { .. }) => bail!("Configure failed: {e}"),
        Err(e) => {
            Snapshot::discard_pending(layout);
            bail!("Configure failed: {e}");
        }
    };
    info(format!(
        "Appliance restarted with the new settings; the Docker API was unavailable for {:.1}s",
        down.as_secs_f64()
    ));
    if let Some(t) = tls.as_ref().filter(|_| new.tls != old.tls) {
        t.setup.print_connect(&new.name, &new.docker_host, new.port);
    }
    info("Completed successfully");
    Ok(())
}

/// Decides the registry CA bundle's file (configure replaces the bundle); true when its
/// contents change.
fn registry_bundle(
    layout: &Layout,
    args: &SettingsArgs,
    new: &mut VchConfig,
    writes: &mut Writes,
) -> anyhow::Result<bool> {
    if args.registry_cas.is_empty() {
        return Ok(false);
    }
    let bundle = String::from_utf8(settings::registry_ca_bundle(&args.registry_cas)?)
        .map_err(|_| anyhow!("Failed to load registry CA: the files are not PEM text"))?;
    let path = settings::registry_ca_path(&layout.dir);
    let changed = fs::read_to_string(&path).ok().as_deref() != Some(bundle.as_str());
    if changed {
        writes.put(path.clone(), bundle);
    }
    new.settings.registry_ca = Some(path);
    Ok(changed)
}

/// `vic-machine configure --rollback`: back to the configuration from before the last
/// configure (or one that was interrupted), certificates included.
pub fn rollback(layout: &Layout, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    info("### Rolling back VCH configuration ####");
    let current = layout.load()?;
    let _progress = progress::begin(layout, "Configure", "configure --rollback")?;
    let Some((saved, source)) = Snapshot::for_rollback(layout)? else {
        bail!(
            "Configure failed: a VCH configuration from before the last configure could not be found: VCH {} has not been configured since it was created, or that configuration was rolled back already",
            layout.name
        );
    };
    let new = saved
        .configuration_over(&current)
        .map_err(|e| anyhow!("Configure failed: {e}"))?;
    info(format!(
        "Restoring the configuration saved at {} by the configure that followed it",
        saved.taken
    ));
    let bundle = settings::registry_ca_path(&layout.dir);
    let registry_ca_changed = new.settings.registry_ca != current.settings.registry_ca
        || saved
            .file(&bundle)
            .is_some_and(|then| then.map(str::to_string) != fs::read_to_string(&bundle).ok());
    report_changes(&current, &new, registry_ca_changed);
    report_tls(&current.tls, &new.tls);
    let now = Snapshot::capture(layout, &current, saved.paths())?;
    let down = appliance::restart(
        layout,
        &current,
        &new,
        Change {
            apply: &mut || saved.restore_files(),
            undo: &mut || now.restore_files(),
        },
        deadline,
        "Rolling back",
        timeout,
    )
    .map_err(|e| anyhow!("Configure failed: {e}"))?;
    let _ = fs::remove_file(&source);
    info(format!(
        "Rolled back VCH {}; the Docker API was unavailable for {:.1}s",
        layout.name,
        down.as_secs_f64()
    ));
    if new.tls != current.tls {
        (new.tls.described(&new.name)).print_connect(&new.name, &new.docker_host, new.port);
    }
    info("Completed successfully");
    Ok(())
}

/// One line per TLS change a rollback makes.
fn report_tls(old: &TlsRecord, new: &TlsRecord) {
    if old.mode != new.mode {
        info(format!(
            "Docker API TLS: {} -> {}",
            old.mode.label(),
            new.mode.label()
        ));
    }
    if old.cert_path != new.cert_path {
        let show = |p: &Option<std::path::PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        info(format!(
            "Certificate directory: {} -> {}",
            show(&old.cert_path),
            show(&new.cert_path)
        ));
    }
    if old != new {
        info("Certificates: those from before the last configure");
    }
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
    line(
        "Container start",
        crate::inspect::container_start(o).into(),
        crate::inspect::container_start(n).into(),
    );
    line(
        "Operations user",
        o.ops_user.clone().unwrap_or_else(|| "none".into()),
        n.ops_user.clone().unwrap_or_else(|| "none".into()),
    );
    if o.ops_password_hash.is_some() && o.ops_password_hash != n.ops_password_hash {
        info("Operations password: changed");
    }
    if ca_changed {
        info("Registry CA bundle: replaced");
    }
    for change in container_networks::changes(&old.container_networks, &new.container_networks) {
        info(change);
    }
}

/// `vic-machine debug --bundle FILE`: the VCH's log bundle, as its admin pages give it,
/// made from its directory (so also when the appliance is down).
pub fn bundle(layout: &Layout, file: &std::path::Path) -> anyhow::Result<()> {
    layout.load()?;
    let sources = vicadmin::bundle::Sources {
        vch_dir: layout.dir.clone(),
        consoles: backend_local::inventory::console_logs(&layout.backend_root()),
    };
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("creating {}", file.display()))?;
    let mut out = std::io::BufWriter::new(out);
    vicadmin::bundle::write(&sources, &mut out)
        .and_then(|()| std::io::Write::flush(&mut out))
        .with_context(|| format!("writing the log bundle to {}", file.display()))?;
    let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or_default();
    info(format!(
        "Log bundle of VCH {} written to {} ({len} bytes, {} container consoles)",
        layout.name,
        file.display(),
        sources.consoles.len().min(vicadmin::bundle::MAX_CONSOLES)
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
    .map_err(|e| anyhow!("Debug failed: {e}"))?;
    info(format!(
        "Appliance restarted; the Docker API was unavailable for {:.1}s. Its log: {}",
        down.as_secs_f64(),
        layout.log().display()
    ));
    info("Completed successfully");
    Ok(())
}
