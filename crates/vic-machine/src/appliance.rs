//! Starting and stopping a VCH's appliance: the one place that turns a [`VchConfig`] into
//! the `vic-init -- vic-appliance …` command line. `create` starts it; `configure`,
//! `upgrade` and `debug` change the record or the files and [`restart`] it.
//!
//! ```text
//!   vic-machine ──spawn, setsid──► vic-init --pid-file init.pid -- appliance/vic-appliance FLAGS
//!        │                              (VIC_LOG from the debug level)
//!        └── polls GET /_ping (over TLS when the VCH serves TLS) until it answers or the
//!            deadline passes
//! ```
//!
//! Stopping sends SIGTERM to vic-init, which passes it on and exits once the appliance has
//! stopped. Container VMs keep running; the next appliance takes them over.

use std::ffi::OsString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::settings::log_filter;
use crate::tls::{self, Readiness};
use crate::vch::{info, owned_pid, signal, wait_gone, Layout, VchConfig};

/// How long a stopping appliance may take before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the old appliance may take to come back after a failed change.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a started appliance is not serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The deadline passed before the Docker API answered.
    #[error("the Docker API did not answer in time")]
    TimedOut,
    /// vic-init gave up (the appliance kept failing) or could not run; the end of the log
    /// has been shown.
    #[error(
        "the appliance did not start: its supervisor gave up ({status}); the end of {log} is above"
    )]
    Exited { status: String, log: String },
    #[error("starting the appliance: {0:#}")]
    Spawn(anyhow::Error),
}

/// The appliance's flags for `config` (everything after the program).
pub fn appliance_args(layout: &Layout, config: &VchConfig) -> Vec<OsString> {
    let app_dir = layout.appliance_dir();
    let s = &config.settings;
    let mut a: Vec<OsString> = Vec::new();
    let mut flag = |name: &str, value: OsString| {
        a.push(name.into());
        a.push(value);
    };
    flag("--name", config.name.clone().into());
    flag("--state-dir", layout.dir.clone().into());
    flag("--listen", format!("127.0.0.1:{}", config.port).into());
    flag("--image-store", config.image_store.clone().into());
    flag("--kernel", app_dir.join("vmlinux").into());
    flag("--initrd", app_dir.join("initramfs.cpio").into());
    for r in &s.insecure_registries {
        flag("--insecure-registry", r.into());
    }
    for r in &s.whitelist_registries {
        flag("--whitelist-registry", r.into());
    }
    if let Some(ca) = &s.registry_ca {
        flag("--registry-ca", ca.clone().into());
    }
    // Only flags with a value: an appliance from before they existed (a rollback) still
    // starts when they are unset.
    if let Some(n) = s.containers {
        flag("--max-containers", n.to_string().into());
    }
    if let Some(m) = s.memory_mib {
        flag("--memory-limit", m.to_string().into());
    }
    if let Some(c) = s.cpus {
        flag("--cpu-limit", c.to_string().into());
    }
    if let Some(q) = s.storage_quota_gib {
        flag("--storage-quota", q.to_string().into());
    }
    for d in &s.dns_servers {
        flag("--dns-server", d.into());
    }
    for v in &s.volume_stores {
        flag("--volume-store", v.appliance_value().into());
    }
    if let Some(c) = &s.container_name_convention {
        flag("--container-name-convention", c.into());
    }
    a.extend(tls::appliance_args(config.tls.mode, &layout.certs_dir()));
    a
}

/// vic-init running the appliance as `config` says, detached from this process.
fn command(layout: &Layout, config: &VchConfig) -> anyhow::Result<Command> {
    let app_dir = layout.appliance_dir();
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(layout.log())?;
    let mut cmd = Command::new(app_dir.join("vic-init"));
    cmd.arg("--pid-file")
        .arg(layout.init_pid_file())
        .arg("--")
        .arg(app_dir.join("vic-appliance"))
        .args(appliance_args(layout, config))
        .env("VIC_LOG", log_filter(config.settings.debug))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the supervisor from our terminal and
    // process group so it outlives vic-machine.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    Ok(cmd)
}

/// Starts the VCH's supervisor and appliance and waits until `ready` says the Docker API
/// answers, the supervisor gives up, or `deadline` passes (the appliance is left running
/// then: the caller decides).
pub fn start(
    layout: &Layout,
    config: &VchConfig,
    ready: &dyn Fn(u16) -> bool,
    deadline: Instant,
) -> Result<(), StartError> {
    let mut child = command(layout, config)
        .and_then(|mut c| Ok(c.spawn()?))
        .map_err(StartError::Spawn)?;
    // vic-init writes it too; written here at once so a stop right after finds it.
    let _ = fs::write(layout.init_pid_file(), child.id().to_string());
    loop {
        if ready(config.port) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            info(format!("The end of {}:", layout.log().display()));
            println!("{}", log_tail(&layout.log()));
            return Err(StartError::Exited {
                status: status.to_string(),
                log: layout.log().display().to_string(),
            });
        }
        if Instant::now() >= deadline {
            return Err(StartError::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Whether the VCH's appliance (or its supervisor) runs.
pub fn alive(layout: &Layout) -> bool {
    let marker = layout.dir.display().to_string();
    owned_pid(&layout.init_pid_file(), &marker).is_some()
        || owned_pid(&layout.pid_file(), &marker).is_some()
}

/// Stops the appliance; SIGKILL after `timeout`. Its container VMs keep running.
pub fn stop(layout: &Layout, timeout: Duration) {
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

/// A change a restart applies, and how to take it back.
pub struct Change<'a> {
    /// Run with the appliance stopped, before the new record is written (e.g. swap the
    /// appliance files).
    pub apply: &'a mut dyn FnMut() -> anyhow::Result<()>,
    /// Undoes `apply` when the new appliance does not come up.
    pub undo: &'a mut dyn FnMut() -> anyhow::Result<()>,
}

/// What went wrong in [`restart`].
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    /// The change did not come up; the VCH runs as before.
    #[error("{cause}; rolled back: the VCH runs as before")]
    RolledBack { cause: String },
    /// Neither the change nor the old state came up.
    #[error("{cause}; rolling back failed too: {rollback}")]
    RollbackFailed { cause: String, rollback: String },
}

/// Restarts the VCH's appliance as `new` describes: stops it, runs `change.apply`, writes
/// `new`, starts it and waits for the Docker API until `deadline`. If it does not come up,
/// puts `old` and the files back, starts that and reports what happened. On success returns
/// how long the Docker API was down.
pub fn restart(
    layout: &Layout,
    old: &VchConfig,
    new: &VchConfig,
    change: Change<'_>,
    deadline: Instant,
    what: &str,
    timeout: Duration,
) -> Result<Duration, RestartError> {
    let down = Instant::now();
    info("Stopping the appliance (container VMs keep running)");
    stop(layout, STOP_TIMEOUT);
    let attempt = (|| -> Result<(), String> {
        (change.apply)().map_err(|e| format!("{e:#}"))?;
        layout.save(new).map_err(|e| format!("{e:#}"))?;
        let ready = Readiness::for_mode(new.tls.mode).map_err(|e| format!("{e:#}"))?;
        info("Starting the appliance");
        start(layout, new, &|p| ready.ping(p), deadline).map_err(|e| match e {
            StartError::TimedOut => format!(
                "{what} VCH exceeded time limit of {}. Please increase the timeout using --timeout to accommodate for a busy host",
                crate::vch::go_duration(timeout)
            ),
            other => other.to_string(),
        })
    })();
    let cause = match attempt {
        Ok(()) => return Ok(down.elapsed()),
        Err(cause) => cause,
    };
    info(format!("The appliance did not come up: {cause}"));
    info("Rolling back to the previous state");
    stop(layout, STOP_TIMEOUT);
    let back = (|| -> anyhow::Result<()> {
        (change.undo)()?;
        layout.save(old)?;
        let ready = Readiness::for_mode(old.tls.mode)?;
        start(
            layout,
            old,
            &|p| ready.ping(p),
            Instant::now() + ROLLBACK_TIMEOUT,
        )?;
        Ok(())
    })();
    match back {
        Ok(()) => Err(RestartError::RolledBack { cause }),
        Err(e) => Err(RestartError::RollbackFailed {
            cause,
            rollback: format!("{e:#}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Settings, VolumeStore};
    use crate::tls::{TlsMode, TlsRecord};

    fn config(settings: Settings, tls: TlsMode) -> VchConfig {
        VchConfig {
            name: "v".into(),
            target: "local".into(),
            docker_host: "tcp://127.0.0.1:2376".into(),
            port: 2376,
            fixed_port: false,
            image_store: "/s/vch/v/images".into(),
            external_image_store: false,
            settings,
            tls: TlsRecord {
                mode: tls,
                ..TlsRecord::default()
            },
            created: String::new(),
            version: "0.1.0-x".into(),
            previous_version: None,
            upgraded: None,
        }
    }

    fn strings(a: Vec<OsString>) -> Vec<String> {
        a.into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_plain_vch_gets_only_the_basic_flags() {
        let layout = Layout::new(Some("/s".into()), "v").unwrap();
        let a = strings(appliance_args(
            &layout,
            &config(Settings::default(), TlsMode::NoTls),
        ));
        assert_eq!(
            a,
            [
                "--name",
                "v",
                "--state-dir",
                "/s/vch/v",
                "--listen",
                "127.0.0.1:2376",
                "--image-store",
                "/s/vch/v/images",
                "--kernel",
                "/s/vch/v/appliance/vmlinux",
                "--initrd",
                "/s/vch/v/appliance/initramfs.cpio"
            ]
        );
    }

    #[test]
    fn every_setting_becomes_an_appliance_flag() {
        let layout = Layout::new(Some("/s".into()), "v").unwrap();
        let settings = Settings {
            insecure_registries: vec!["r:5000".into()],
            whitelist_registries: vec!["w:5000".into()],
            registry_ca: Some("/s/vch/v/registry-ca.pem".into()),
            dns_servers: vec!["10.0.0.53".into()],
            containers: Some(3),
            memory_mib: Some(2048),
            cpus: Some(2),
            storage_quota_gib: Some(20),
            endpoint_memory_mib: Some(4096),
            volume_stores: vec![VolumeStore {
                label: "default".into(),
                dir: "/vols".into(),
            }],
            container_name_convention: Some("vch-{name}-{id}".into()),
            debug: 3,
        };
        let a = strings(appliance_args(
            &layout,
            &config(settings, TlsMode::Tlsverify),
        ))
        .join(" ");
        for want in [
            "--insecure-registry r:5000",
            "--whitelist-registry w:5000",
            "--registry-ca /s/vch/v/registry-ca.pem",
            "--max-containers 3",
            "--memory-limit 2048",
            "--cpu-limit 2",
            "--storage-quota 20",
            "--dns-server 10.0.0.53",
            "--volume-store default:/vols",
            "--container-name-convention vch-{name}-{id}",
            "--tls-cert /s/vch/v/certs/server-cert.pem --tls-key /s/vch/v/certs/server-key.pem --tls-ca /s/vch/v/certs/client-ca.pem",
        ] {
            assert!(a.contains(want), "{want} missing from {a}");
        }
        assert!(
            !a.contains("4096"),
            "endpoint memory is not an appliance flag"
        );
    }
}
