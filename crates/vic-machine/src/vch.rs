//! Local VCHs: their on-disk layout and the create / delete / ls operations.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::tls::{self, TlsMode, TlsOptions, TlsPlan};

/// VIC's limit on a VCH name.
pub const MAX_NAME_LEN: usize = 31;

/// What `create` records about a VCH.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VchConfig {
    pub name: String,
    pub target: String,
    pub docker_host: String,
    pub port: u16,
    pub image_store: PathBuf,
    /// Whether the image store is outside the state directory (given by --image-store).
    pub external_image_store: bool,
    pub insecure_registries: Vec<String>,
    #[serde(default)]
    pub whitelist_registries: Vec<String>,
    /// The registry CA bundle kept in the VCH's directory, if any.
    #[serde(default)]
    pub registry_ca: Option<PathBuf>,
    /// How the Docker API is served (VCHs from before TLS: plain).
    #[serde(default)]
    pub tls: TlsMode,
    /// The certificate directory (holding NAME.env), absolute.
    #[serde(default)]
    pub cert_path: Option<PathBuf>,
    pub created: String,
    pub version: String,
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
    fn config(&self) -> PathBuf {
        self.dir.join("vch.json")
    }
    fn pid_file(&self) -> PathBuf {
        self.dir.join("appliance.pid")
    }
    /// The supervisor's PID (vic-init), which restarts the appliance when it dies.
    fn init_pid_file(&self) -> PathBuf {
        self.dir.join("init.pid")
    }
    fn log(&self) -> PathBuf {
        self.dir.join("appliance.log")
    }
    fn appliance_dir(&self) -> PathBuf {
        self.dir.join("appliance")
    }
}

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

pub struct CreateOptions {
    pub insecure_registries: Vec<String>,
    pub registry_cas: Vec<PathBuf>,
    pub whitelist_registries: Vec<String>,
    pub image_store: Option<PathBuf>,
    pub timeout: Duration,
    pub port: Option<u16>,
    pub bootstrap_dir: Option<PathBuf>,
    pub tls: TlsOptions,
}

/// Copies the `--registry-ca` files into one bundle in the VCH's directory (so the VCH does
/// not depend on files the operator may move), after checking each holds a certificate.
fn registry_ca_bundle(layout: &Layout, files: &[PathBuf]) -> anyhow::Result<Option<PathBuf>> {
    if files.is_empty() {
        return Ok(None);
    }
    let mut bundle = Vec::new();
    for f in files {
        let pem = fs::read(f)
            .with_context(|| format!("Failed to load registry CA from {}", f.display()))?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            bail!(
                "Failed to load registry CA from {}: no PEM certificate in it",
                f.display()
            );
        }
        bundle.extend_from_slice(&pem);
        if !bundle.ends_with(b"\n") {
            bundle.push(b'\n');
        }
    }
    let path = layout.dir.join("registry-ca.pem");
    fs::write(&path, bundle).with_context(|| format!("writing {}", path.display()))?;
    info(format!(
        "Registry CA bundle: {} certificate file(s)",
        files.len()
    ));
    Ok(Some(path))
}

pub(crate) fn info(msg: impl AsRef<str>) {
    println!("INFO  {}", msg.as_ref());
}

/// The directory holding this build's vic-appliance (and vic-init beside it), and the
/// bootstrap directory.
fn find_parts(bootstrap_dir: Option<&Path>) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let exe = std::env::current_exe().context("locating vic-machine")?;
    let bin_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let appliance = bin_dir.join("vic-appliance");
    for part in [&appliance, &bin_dir.join("vic-init")] {
        if !part.is_file() {
            bail!(
                "{} not found next to vic-machine: run `make`",
                part.display()
            );
        }
    }
    let boot = match bootstrap_dir {
        Some(d) => d.to_path_buf(),
        None => bin_dir
            .parent()
            .map(|p| p.join("bootstrap"))
            .unwrap_or_default(),
    };
    let kernel = boot.join("vmlinux");
    let initrd = boot.join("initramfs.cpio");
    for f in [&kernel, &initrd] {
        if !f.is_file() {
            bail!(
                "bootstrap file {} is missing: run `make` (or pass --bootstrap-dir)",
                f.display()
            );
        }
    }
    Ok((appliance, kernel, initrd))
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

fn pid_alive(pid: i32) -> bool {
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

/// Whether the VCH's appliance (or its supervisor) runs.
fn appliance_alive(layout: &Layout) -> bool {
    let marker = layout.dir.display().to_string();
    owned_pid(&layout.init_pid_file(), &marker).is_some()
        || owned_pid(&layout.pid_file(), &marker).is_some()
}

/// The PID in `file` if that process still runs and its command line mentions `marker`.
fn owned_pid(file: &Path, marker: &str) -> Option<i32> {
    let pid: i32 = fs::read_to_string(file).ok()?.trim().parse().ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    (pid_alive(pid) && cmdline.contains(marker)).then_some(pid)
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) on a PID we verified belongs to this VCH.
    unsafe {
        libc::kill(pid, sig);
    }
}

fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    !pid_alive(pid)
}

fn copy_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
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
    let (appliance, kernel, initrd) = find_parts(opts.bootstrap_dir.as_deref())?;
    // Every file the TLS flags name is read and checked before anything is made.
    let tls = tls::plan(&opts.tls, &layout.name)?;
    let parts = Parts {
        appliance: &appliance,
        kernel: &kernel,
        initrd: &initrd,
        tls: &tls,
    };
    let result = create_inner(layout, opts, &parts, started);
    if let Err(e) = &result {
        info(format!("Create failed: {e:#}"));
        info("Removing what create made");
        stop_appliance(layout, Duration::from_secs(10));
        kill_vms(layout);
        let _ = fs::remove_dir_all(&layout.dir);
        if let Some(store) = &opts.image_store {
            let _ = fs::remove_dir_all(store);
        }
    }
    result
}

/// What `create` starts from: this build's files and the checked TLS inputs.
struct Parts<'a> {
    appliance: &'a Path,
    kernel: &'a Path,
    initrd: &'a Path,
    tls: &'a TlsPlan,
}

fn create_inner(
    layout: &Layout,
    opts: &CreateOptions,
    parts: &Parts<'_>,
    started: Instant,
) -> anyhow::Result<()> {
    let (appliance, kernel, initrd) = (parts.appliance, parts.kernel, parts.initrd);
    let app_dir = layout.appliance_dir();
    fs::create_dir_all(&app_dir).with_context(|| format!("creating {}", app_dir.display()))?;
    info(format!("Creating appliance in {}", layout.dir.display()));
    let app_bin = app_dir.join("vic-appliance");
    copy_file(appliance, &app_bin)?;
    let init_bin = app_dir.join("vic-init");
    copy_file(&appliance.with_file_name("vic-init"), &init_bin)?;
    copy_file(kernel, &app_dir.join("vmlinux"))?;
    copy_file(initrd, &app_dir.join("initramfs.cpio"))?;
    let port = match opts.port {
        Some(p) => p,
        None => free_port()?,
    };
    let registry_ca = registry_ca_bundle(layout, &opts.registry_cas)?;
    let tls = tls::setup(parts.tls, &layout.dir.join("certs"))?;
    let (image_store, external) = match &opts.image_store {
        Some(dir) => (dir.clone(), true),
        None => (layout.dir.join("images"), false),
    };
    let config = VchConfig {
        name: layout.name.clone(),
        target: "local".into(),
        docker_host: format!("tcp://127.0.0.1:{port}"),
        port,
        image_store: image_store.clone(),
        external_image_store: external,
        insecure_registries: opts.insecure_registries.clone(),
        whitelist_registries: opts.whitelist_registries.clone(),
        registry_ca: registry_ca.clone(),
        tls: tls.mode,
        cert_path: Some(tls.dir.clone()),
        created: chrono::Utc::now().to_rfc3339(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    fs::write(layout.config(), serde_json::to_vec_pretty(&config)?)?;
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(layout.log())?;
    // vic-init supervises the appliance: it restarts it if it dies.
    let mut cmd = Command::new(&init_bin);
    cmd.arg("--pid-file")
        .arg(layout.init_pid_file())
        .arg("--")
        .arg(&app_bin)
        .arg("--name")
        .arg(&layout.name)
        .arg("--state-dir")
        .arg(&layout.dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--image-store")
        .arg(&image_store)
        .arg("--kernel")
        .arg(app_dir.join("vmlinux"))
        .arg("--initrd")
        .arg(app_dir.join("initramfs.cpio"));
    for r in &opts.insecure_registries {
        cmd.arg("--insecure-registry").arg(r);
    }
    for r in &opts.whitelist_registries {
        cmd.arg("--whitelist-registry").arg(r);
    }
    if let Some(ca) = &registry_ca {
        cmd.arg("--registry-ca").arg(ca);
    }
    cmd.args(tls.appliance_args());
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the appliance from our terminal and
    // process group so it outlives vic-machine.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    info("Starting the appliance");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", app_bin.display()))?;
    fs::write(layout.init_pid_file(), child.id().to_string())?;
    info("Waiting for the Docker API to answer");
    let deadline = started + opts.timeout;
    loop {
        if tls.ping(port) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "the appliance exited ({status}) before it answered; its log:\n{}",
                log_tail(&layout.log())
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "Creating VCH exceeded time limit of {}s",
                opts.timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Stops the appliance (it powers its container VMs off); SIGKILL after `timeout`.
fn stop_appliance(layout: &Layout, timeout: Duration) {
    let marker = layout.dir.display().to_string();
    // The supervisor first (so it does not restart what we stop; it passes SIGTERM on),
    // then the appliance itself if it is still there (older VCHs have no supervisor).
    for (file, what) in [
        (layout.init_pid_file(), "supervisor"),
        (layout.pid_file(), "appliance"),
    ] {
        if let Some(pid) = owned_pid(&file, &marker) {
            signal(pid, libc::SIGTERM);
            if !wait_gone(pid, timeout) {
                info(format!(
                    "The {what} did not stop within {}s: killing it",
                    timeout.as_secs()
                ));
                signal(pid, libc::SIGKILL);
                wait_gone(pid, Duration::from_secs(5));
            }
        }
    }
}

/// Kills container VM processes the appliance left behind (it was killed, or crashed).
fn kill_vms(layout: &Layout) {
    let mut stack = vec![layout.dir.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "qemu.pid") {
                let marker = dir.display().to_string();
                if let Some(pid) = owned_pid(&p, &marker) {
                    signal(pid, libc::SIGKILL);
                    wait_gone(pid, Duration::from_secs(5));
                }
            }
        }
    }
}

fn running_containers(layout: &Layout) -> usize {
    let Ok(entries) = fs::read_dir(layout.dir.join("containers")) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| fs::read(e.path().join("container.json")).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter(|v| v.pointer("/state/status").and_then(|s| s.as_str()) == Some("running"))
        .count()
}

pub fn delete(layout: &Layout, force: bool, timeout: Duration) -> anyhow::Result<()> {
    let Ok(raw) = fs::read(layout.config()) else {
        bail!(
            "Failed to get Virtual Container Host {}: no such VCH in {}",
            layout.name,
            layout.root.display()
        );
    };
    let config: VchConfig =
        serde_json::from_slice(&raw).context("reading the VCH configuration")?;
    let alive = appliance_alive(layout);
    let running = running_containers(layout);
    if alive && running > 0 && !force {
        bail!(
            "Delete failed: VCH {} has {running} running container(s); stop them or use --force",
            layout.name
        );
    }
    info(format!("### Removing VCH {} ####", layout.name));
    stop_appliance(layout, timeout);
    kill_vms(layout);
    fs::remove_dir_all(&layout.dir)
        .with_context(|| format!("removing {}", layout.dir.display()))?;
    if config.external_image_store {
        let _ = fs::remove_dir_all(&config.image_store);
    }
    info("Completed successfully");
    Ok(())
}

pub fn list(state_root: Option<PathBuf>) -> anyhow::Result<()> {
    let root = state_root.unwrap_or_else(default_state_root).join("vch");
    println!(
        "{:<32} {:<28} {:<10} {:<10} VERSION",
        "NAME", "DOCKER_HOST", "TLS", "STATE"
    );
    let Ok(entries) = fs::read_dir(&root) else {
        return Ok(());
    };
    let mut names: Vec<_> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    for name in names {
        let layout = Layout::new(
            Some(root.parent().map(Path::to_path_buf).unwrap_or_default()),
            &name,
        )?;
        let Ok(raw) = fs::read(layout.config()) else {
            continue;
        };
        let Ok(cfg) = serde_json::from_slice::<VchConfig>(&raw) else {
            continue;
        };
        let state = if appliance_alive(&layout) {
            "running"
        } else {
            "stopped"
        };
        println!(
            "{:<32} {:<28} {:<10} {:<10} {}",
            cfg.name,
            cfg.docker_host,
            cfg.tls.label(),
            state,
            cfg.version
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_refused_with_vics_message() {
        let long = "a".repeat(32);
        let err = validate_name(&long).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("Display name {long} exceeds the permitted 31 characters limit. Please use a shorter -name parameter")
        );
        assert!(validate_name(&"a".repeat(31)).is_ok());
        assert!(validate_name("bad/name").is_err());
    }
}
