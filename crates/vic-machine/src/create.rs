//! `vic-machine create`: a new local VCH, and the removal of whatever a failed create made.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use vch_config::ContainerNetwork;

use crate::appliance::{self, StartError};
use crate::bridges::{check_bridges, IpBridges};
use crate::delete::kill_vms;
use crate::host;
use crate::layout::{private_dir, Layout, VchConfig};
use crate::output::{go_duration, info, step};
use crate::parts::Parts;
use crate::process::free_ports;
use crate::settings::{self, Settings, SettingsArgs};
use crate::tls::{self, TlsOptions, TlsRecord};

pub struct CreateOptions {
    pub settings: SettingsArgs,
    pub image_store: Option<PathBuf>,
    pub timeout: Duration,
    pub port: Option<u16>,
    pub bootstrap_dir: Option<PathBuf>,
    pub tls: TlsOptions,
    pub bridge_network_range: Option<String>,
    /// Checked one by one and together (`ContainerNetworkArgs::networks`).
    pub container_networks: Vec<ContainerNetwork>,
}

/// What create made, so that a failed create removes exactly that.
#[derive(Default)]
struct Made {
    cert_dir: Option<PathBuf>,
    volume_dirs: Vec<PathBuf>,
}

pub fn create(layout: &Layout, opts: &CreateOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    info("### Installing VCH ####");
    if layout.config().exists() {
        bail!(
            "VCH {} already exists: delete it first (vic-machine delete --target local --name {})",
            layout.name,
            layout.name
        );
    }
    check_bridges(&IpBridges::default(), &opts.container_networks)?;
    let parts = Parts::find(opts.bootstrap_dir.as_deref())?;
    // Every file the flags name is read and checked before anything is made.
    let tls = tls::plan(&opts.tls, &layout.name)?;
    let mut settings = opts.settings.apply(&Settings::default())?;
    settings.bridge_network_range = opts.bridge_network_range.clone();
    let registry_ca = if opts.settings.registry_cas.is_empty() {
        None
    } else {
        Some(settings::registry_ca_bundle(&opts.settings.registry_cas)?)
    };
    let mut made = Made::default();
    if !tls.dir.exists() {
        made.cert_dir = Some(tls.dir.clone());
    }
    made.volume_dirs = settings
        .volume_stores
        .iter()
        .filter(|v| !v.dir.exists())
        .map(|v| v.dir.clone())
        .collect();
    let result = create_inner(
        layout,
        opts,
        &parts,
        &tls,
        settings,
        registry_ca,
        started + opts.timeout,
    );
    if let Err(e) = &result {
        info(format!("Create failed: {e:#}"));
        info("Removing what create made");
        appliance::stop(layout, Duration::from_secs(10));
        kill_vms(layout);
        host::remove_cgroups(Path::new("/sys/fs/cgroup"), &layout.name);
        host::release_uid_claims(Path::new(host::UID_CLAIMS), &layout.dir);
        let _ =
            backend_local::net::delete_namespace(&backend_local::net::namespace_name(&layout.dir));
        let _ = fs::remove_dir_all(&layout.dir);
        if let Some(store) = &opts.image_store {
            let _ = fs::remove_dir_all(store);
        }
        if let Some(dir) = &made.cert_dir {
            let _ = fs::remove_dir_all(dir);
        }
        for dir in &made.volume_dirs {
            // Only while still empty: nothing of the user's goes.
            let _ = fs::remove_dir(dir);
        }
    }
    result
}

fn create_inner(
    layout: &Layout,
    opts: &CreateOptions,
    parts: &Parts,
    tls_plan: &tls::TlsPlan,
    mut settings: Settings,
    registry_ca: Option<Vec<u8>>,
    deadline: Instant,
) -> anyhow::Result<()> {
    for dir in [&layout.root, &layout.root.join("vch"), &layout.dir] {
        private_dir(dir)?;
    }
    let copying = step(format!("Creating appliance in {}", layout.dir.display()));
    parts.install(&layout.appliance_dir())?;
    copying.done();
    let version = Parts::in_dir(&layout.appliance_dir()).version()?;
    let [port, admin_port] = match opts.port {
        Some(p) => [p, free_ports::<1>()?[0]],
        None => free_ports()?,
    };
    if admin_port == port {
        anyhow::bail!("no free port for the admin pages besides {port}: try again");
    }
    settings.admin_port = Some(admin_port);
    if let Some(bundle) = registry_ca {
        let path = settings::registry_ca_path(&layout.dir);
        fs::write(&path, bundle).with_context(|| format!("writing {}", path.display()))?;
        info(format!(
            "Registry CA bundle: {} certificate file(s)",
            opts.settings.registry_cas.len()
        ));
        settings.registry_ca = Some(path);
    }
    settings::prepare_volume_stores(&settings.volume_stores)?;
    let tls = tls::setup(tls_plan, &layout.certs_dir())?;
    let (image_store, external) = match &opts.image_store {
        Some(dir) => (dir.clone(), true),
        None => (layout.dir.join("images"), false),
    };
    let config = VchConfig {
        name: layout.name.clone(),
        target: "local".into(),
        docker_host: format!("tcp://127.0.0.1:{port}"),
        port,
        fixed_port: opts.port.is_some(),
        image_store,
        external_image_store: external,
        settings,
        tls: TlsRecord::created(tls_plan, &tls),
        created: chrono::Utc::now().to_rfc3339(),
        version,
        previous_version: None,
        upgraded: None,
        container_networks: opts.container_networks.clone(),
    };
    layout.save(&config)?;
    info("Starting the appliance");
    let waiting = step("Waiting for the Docker API to answer");
    appliance::start(layout, &config, &|p| tls.ping(p), deadline).map_err(|e| match e {
        StartError::TimedOut => time_limit_exceeded(opts.timeout),
        other => anyhow!(other),
    })?;
    waiting.done();
    tls.save_env(&layout.name, &config.docker_host)?;
    crate::inspect::admin_portal(&config.settings);
    info("Connect to docker:");
    for line in tls.docker_lines(port) {
        info(line);
    }
    info("Installer completed successfully");
    Ok(())
}

/// VIC's words for a create that ran out of `--timeout`.
pub fn time_limit_exceeded(timeout: Duration) -> anyhow::Error {
    anyhow!(
        "Creating VCH exceeded time limit of {}. Please increase the timeout using --timeout to accommodate for a busy host",
        go_duration(timeout)
    )
}
