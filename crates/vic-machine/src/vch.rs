//! Local VCHs: their on-disk layout and record (vch.json), and the create / delete / ls
//! operations.
//!
//! ```text
//!   <state_root>/vch/NAME/
//!     vch.json              VchConfig: every setting, the version, the TLS mode
//!     init.pid, appliance.pid, appliance.log, appliance.exit (vic-init: the last exit)
//!     appliance/            this VCH's vic-appliance, vic-init, vmlinux, initramfs.cpio
//!     appliance.prev/       the ones `upgrade` replaced (for `upgrade --rollback`)
//!     configure.prev.json   the configuration the last configure replaced (`configure --rollback`;
//!                           configure.pending.json while a configure runs)
//!     update-in-progress    set while configure, upgrade or debug run (progress.rs)
//!     certs/  images/  containers/  vms/  registry-ca.pem
//! ```

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

use crate::appliance::{self, StartError};
use crate::host;
use crate::parts::Parts;
use crate::settings::{self, Settings, SettingsArgs};
use crate::tls::{self, TlsOptions, TlsRecord};

/// VIC's limit on a VCH name.
pub const MAX_NAME_LEN: usize = 31;

/// What vic-machine records about a VCH. Fields added after the first release have
/// defaults, so every older vch.json still loads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VchConfig {
    pub name: String,
    pub target: String,
    pub docker_host: String,
    pub port: u16,
    /// Whether the port was given (--port) rather than picked.
    #[serde(default)]
    pub fixed_port: bool,
    pub image_store: PathBuf,
    /// Whether the image store is outside the state directory (given by --image-store).
    pub external_image_store: bool,
    #[serde(flatten)]
    pub settings: Settings,
    /// How the Docker API is served, and where the certificates are.
    #[serde(flatten)]
    pub tls: TlsRecord,
    pub created: String,
    /// The version of the files in appliance/ (see `parts.rs`).
    pub version: String,
    /// The version in appliance.prev/, which `upgrade --rollback` goes back to.
    #[serde(default)]
    pub previous_version: Option<String>,
    /// When the last upgrade or rollback happened.
    #[serde(default)]
    pub upgraded: Option<String>,
}

/// Where a VCH's files are.
pub struct Layout {
    pub root: PathBuf,
    pub name: String,
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(state_root: Option<PathBuf>, name: &str) -> anyhow::Result<Self> {
        let root = state_root.unwrap_or_else(default_state_root);
        Ok(Layout {
            dir: root.join("vch").join(name),
            root,
            name: name.to_string(),
        })
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("vch.json")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("appliance.pid")
    }
    /// The container VMs' backend state (the appliance's `--state-dir` + `vms`).
    pub fn backend_root(&self) -> PathBuf {
        self.dir.join("vms")
    }
    /// The supervisor's PID (vic-init), which restarts the appliance when it dies.
    pub fn init_pid_file(&self) -> PathBuf {
        self.dir.join("init.pid")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("appliance.log")
    }
    /// Where vic-init reports each exit of the appliance it did not ask for.
    pub fn exit_file(&self) -> PathBuf {
        self.dir.join("appliance.exit")
    }
    pub fn appliance_dir(&self) -> PathBuf {
        self.dir.join("appliance")
    }
    pub fn prev_appliance_dir(&self) -> PathBuf {
        self.dir.join("appliance.prev")
    }
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs")
    }

    /// The VCH's record; VIC's words when there is no such VCH.
    pub fn load(&self) -> anyhow::Result<VchConfig> {
        let path = self.config();
        let raw = match fs::read(&path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "Failed to get Virtual Container Host {}: VCH {} not found in {}",
                self.name,
                self.name,
                self.root.join("vch").display()
            ),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        serde_json::from_slice(&raw).with_context(|| format!("reading {}", path.display()))
    }

    /// Writes the record (whole or not at all).
    pub fn save(&self, config: &VchConfig) -> anyhow::Result<()> {
        let path = self.config();
        let tmp = self.dir.join("vch.json.tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(config)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// Holds off other vic-machine operations on this VCH until the returned guard is
    /// dropped (or the process ends). See also `progress.rs`.
    pub fn lock(&self, op: &str) -> anyhow::Result<OpLock> {
        let path = self.dir.join(".vic-machine.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a descriptor we own; it is released when the file is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            bail!(
                "{op} failed: another upgrade/configure operation is in progress on VCH {}",
                self.name
            );
        }
        Ok(OpLock(file))
    }
}

/// See [`Layout::lock`].
pub struct OpLock(#[allow(dead_code)] fs::File);

fn default_state_root() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/var/lib/vic")
    } else {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".local/share/vic")
    }
}

/// Checks a VCH name the way VIC does.
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    if name.chars().count() > MAX_NAME_LEN {
        bail!("Display name {name} exceeds the permitted 31 characters limit. Please use a shorter -name parameter");
    }
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bail!("--name contains unsupported characters: {name} Allowed characters are alphanumeric and - _ .");
    }
    Ok(())
}

/// A duration as VIC (Go) prints one: `3m0s`, `90s` → `1m30s`, `500ms`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let frac = d.subsec_millis();
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        format!("{}s", format!("{s}.{frac:03}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

pub struct CreateOptions {
    pub settings: SettingsArgs,
    pub image_store: Option<PathBuf>,
    pub timeout: Duration,
    pub port: Option<u16>,
    pub bootstrap_dir: Option<PathBuf>,
    pub tls: TlsOptions,
}

pub(crate) fn info(msg: impl AsRef<str>) {
    println!("INFO  {}", msg.as_ref());
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// One `GET /_ping` over plain HTTP; true when the appliance answers OK.
pub(crate) fn ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.starts_with("HTTP/1.") && resp.contains(" 200 ") && resp.ends_with("OK")
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
    let parts = Parts::find(opts.bootstrap_dir.as_deref())?;
    // Every file the flags name is read and checked before anything is made.
    let tls = tls::plan(&opts.tls, &layout.name)?;
    let settings = opts.settings.apply(&Settings::default())?;
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

/// Makes `dir` (and what is missing above it) and leaves it readable by its owner alone: a
/// VCH's state holds image roots with set-id files, container disks, logs and environments.
pub(crate) fn private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))
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
    info(format!("Creating appliance in {}", layout.dir.display()));
    parts.install(&layout.appliance_dir())?;
    let version = Parts::in_dir(&layout.appliance_dir()).version()?;
    let port = match opts.port {
        Some(p) => p,
        None => free_port()?,
    };
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
        tls: TlsRecord {
            mode: tls.mode,
            cert_path: Some(tls.dir.clone()),
            tls_cname: tls_plan.cname().map(str::to_string),
            tls_user_client_cas: tls_plan.user_client_cas(),
            tls_own_server_cert: tls_plan.own_server_cert(),
        },
        created: chrono::Utc::now().to_rfc3339(),
        version,
        previous_version: None,
        upgraded: None,
    };
    layout.save(&config)?;
    info("Starting the appliance");
    info("Waiting for the Docker API to answer");
    appliance::start(layout, &config, &|p| tls.ping(p), deadline).map_err(|e| match e {
        StartError::TimedOut => anyhow!(
            "Creating VCH exceeded time limit of {}. Please increase the timeout using --timeout to accommodate for a busy host",
            go_duration(opts.timeout)
        ),
        other => anyhow!(other),
    })?;
    let env = tls.env(&config.docker_host);
    let env_file = tls.dir.join(format!("{}.env", layout.name));
    fs::write(&env_file, env.join("\n") + "\n")
        .with_context(|| format!("writing {}", env_file.display()))?;
    info("Initialization of appliance successful");
    info("Docker environment variables:");
    for line in &env {
        println!("{line}");
    }
    info(format!("Environment saved in {}", env_file.display()));
    info("Connect to docker:");
    for line in tls.docker_lines(port) {
        info(line);
    }
    info("Installer completed successfully");
    Ok(())
}

pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let exists = pid > 0 && unsafe { libc::kill(pid, 0) } == 0;
    // A zombie (exited, not yet reaped by its parent) is gone for our purposes.
    let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false);
    exists && !zombie
}

/// The PID in `file` if that process still runs and its command line mentions `marker`.
pub fn owned_pid(file: &Path, marker: &str) -> Option<i32> {
    let pid: i32 = fs::read_to_string(file).ok()?.trim().parse().ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    (pid_alive(pid) && cmdline.contains(marker)).then_some(pid)
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) on a PID we verified belongs to this VCH.
    unsafe {
        libc::kill(pid, sig);
    }
}

pub fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !pid_alive(pid)
}

/// Kills container VM processes the appliance left behind (it was killed, or crashed).
fn kill_vms(layout: &Layout) {
    for pid in backend_local::inventory::kill_all(&layout.backend_root(), Duration::from_secs(5)) {
        info(format!(
            "stopped container VM process {pid}, left by the appliance"
        ));
    }
}

/// How many of the VCH's container VMs are powered on, as the hypervisor sees it: the
/// records are in the appliance's database, which the appliance holds open.
pub fn running_containers(layout: &Layout) -> usize {
    backend_local::inventory::running(&layout.backend_root()).len()
}

pub fn delete(layout: &Layout, force: bool, timeout: Duration) -> anyhow::Result<()> {
    let config = layout.load()?;
    let _lock = layout.lock("Delete")?;
    // Container VMs run whether or not the appliance does: count what the hypervisor shows.
    let running = running_containers(layout);
    if running > 0 && !force {
        bail!(
            "Delete failed: VCH {} has {running} running container(s); stop them or use --force",
            layout.name
        );
    }
    info(format!("### Removing VCH {} ####", layout.name));
    appliance::stop(layout, timeout);
    kill_vms(layout);
    host::remove_cgroups(Path::new("/sys/fs/cgroup"), &layout.name);
    host::release_uid_claims(Path::new(host::UID_CLAIMS), &layout.dir);
    fs::remove_dir_all(&layout.dir)
        .with_context(|| format!("removing {}", layout.dir.display()))?;
    if config.external_image_store {
        let _ = fs::remove_dir_all(&config.image_store);
    }
    info("Completed successfully");
    Ok(())
}

pub fn list(state_root: Option<PathBuf>) -> anyhow::Result<()> {
    let root = state_root.unwrap_or_else(default_state_root);
    let installer = crate::parts::installer_version();
    println!(
        "{:<32} {:<28} {:<10} {:<10} {:<18} UPGRADE STATUS",
        "NAME", "DOCKER_HOST", "TLS", "STATE", "VERSION"
    );
    let Ok(entries) = fs::read_dir(root.join("vch")) else {
        return Ok(());
    };
    let mut names: Vec<_> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    for name in names {
        let layout = Layout::new(Some(root.clone()), &name)?;
        let Ok(cfg) = layout.load() else {
            continue;
        };
        let state = if appliance::alive(&layout) {
            "running"
        } else {
            "stopped"
        };
        println!(
            "{:<32} {:<28} {:<10} {:<10} {:<18} {}",
            cfg.name,
            cfg.docker_host,
            cfg.tls.mode.label(),
            state,
            cfg.version,
            if crate::progress::marker(&layout).is_some() {
                "Upgrade/configure in progress".to_string()
            } else {
                crate::parts::upgrade_status_short(&installer, &cfg.version)
            }
        );
    }
    Ok(())
}

#[cfg(test)]
#[path = "vch_tests.rs"]
mod tests;
