//! Starting and stopping a VCH's appliance: the one place that runs
//! `vic-init -- vic-appliance --config appliance.json` for a [`VchConfig`] (the document is
//! `document.rs`'s). `create` starts it; `configure`,
//! `upgrade` and `debug` change the record or the files and [`restart`] it.
//!
//! ```text
//!   vic-machine ──spawn, setsid──► vic-init --pid-file init.pid -- appliance/vic-appliance FLAGS
//!        │                              (VIC_LOG from the debug level)
//!        ├── polls GET /_ping (over TLS when the VCH serves TLS) until it answers or the
//!        │   deadline passes
//!        └── polls appliance.exit, where vic-init writes each exit of the appliance: the
//!            first failed start ends the wait with the appliance's own error from its log
//! ```
//!
//! Stopping sends SIGTERM to vic-init, which passes it on and exits once the appliance has
//! stopped. Container VMs keep running; the next appliance takes them over.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::document;
use crate::layout::{Layout, VchConfig};
use crate::output::{info, step};
use crate::process::{owned_pid, signal, wait_gone};
use crate::settings::log_filter;
use crate::tls::Readiness;

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
    /// The appliance exited before it answered (vic-init said so); `message` is its own
    /// error, and the end of the log has been shown.
    #[error(
        "the appliance did not start: it exited ({status}): {message}; the end of {log} is above"
    )]
    Failed {
        status: String,
        message: String,
        log: String,
    },
    /// vic-init gave up (the appliance kept failing) or could not run; the end of the log
    /// has been shown.
    #[error(
        "the appliance did not start: its supervisor gave up ({status}); the end of {log} is above"
    )]
    Exited { status: String, log: String },
    #[error("starting the appliance: {0:#}")]
    Spawn(anyhow::Error),
}

/// Has the VCH's current (stopped) appliance write its image metadata the way earlier
/// versions keep it, before a rollback to one of them. An appliance from before that flag
/// keeps its metadata in those files already: nothing to do. Bounded by `limit`.
pub fn export_image_metadata(
    layout: &Layout,
    config: &VchConfig,
    limit: Duration,
) -> anyhow::Result<()> {
    let exe = layout.appliance_dir().join("vic-appliance");
    let mut child = Command::new(&exe)
        .args(document::command_line(&exe, layout, config)?)
        .arg("--export-image-metadata")
        .env("VIC_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("running {}: {e}", exe.display()))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "writing the image metadata for the previous version did not finish within {} s",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    if status.success() || err.contains("unexpected argument '--export-image-metadata'") {
        return Ok(());
    }
    anyhow::bail!(
        "writing the image metadata for the previous version failed ({status}): {}",
        err.trim()
    )
}

/// vic-init running the appliance as `config` says, detached from this process.
fn command(layout: &Layout, config: &VchConfig) -> anyhow::Result<Command> {
    let app_dir = layout.appliance_dir();
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(layout.log())?;
    let appliance = app_dir.join("vic-appliance");
    let args = document::command_line(&appliance, layout, config)?;
    let mut cmd = Command::new(app_dir.join("vic-init"));
    cmd.arg("--pid-file")
        .arg(layout.init_pid_file())
        .arg("--")
        .arg(appliance)
        .args(args)
        .env("VIC_LOG", log_filter(config.settings.debug))
        .env("VIC_INIT_STATUS_FILE", layout.exit_file())
        .env("VIC_INIT_LOG", layout.init_log())
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
    let _ = fs::remove_file(layout.exit_file());
    // The appliance writes its PID once it listens; until then the port may be another
    // program's, which is not to be pinged.
    let _ = fs::remove_file(layout.pid_file());
    let marker = layout.dir.display().to_string();
    // What this start writes to the log begins here.
    let from = fs::metadata(layout.log()).map(|m| m.len()).unwrap_or(0);
    let mut child = command(layout, config)
        .and_then(|mut c| Ok(c.spawn()?))
        .map_err(StartError::Spawn)?;
    // vic-init writes it too; written here at once so a stop right after finds it.
    let _ = fs::write(layout.init_pid_file(), child.id().to_string());
    let log = layout.log().display().to_string();
    loop {
        if let Ok(status) = fs::read_to_string(layout.exit_file()) {
            // The appliance exited: vic-init would try again and back off, but a start
            // that fails once here fails for good (a bad flag or file, a port in use).
            stop(layout, Duration::from_secs(10));
            let text = log_since(&layout.log(), from);
            info(format!("The end of {log}:"));
            crate::output::raw(tail(&text, 20));
            return Err(StartError::Failed {
                status: status.trim().to_string(),
                message: appliance_error(&text)
                    .unwrap_or_else(|| "it wrote no error to its log".into()),
                log,
            });
        }
        if owned_pid(&layout.pid_file(), &marker).is_some() && ready(config.port) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            info(format!("The end of {log}:"));
            crate::output::raw(tail(&log_since(&layout.log(), from), 20));
            return Err(StartError::Exited {
                status: status.to_string(),
                log,
            });
        }
        if Instant::now() >= deadline {
            return Err(StartError::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The log from byte `from` on.
fn log_since(path: &Path, from: u64) -> String {
    let mut text = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let _ = f.read_to_end(&mut text);
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The appliance's own words for why it stopped, from what it logged: its `Error: …`
/// report with the causes (not the backtrace), else a panic message, else its last error
/// line, else its last line. vic-init's lines in the same log are skipped.
fn appliance_error(log: &str) -> Option<String> {
    let lines: Vec<&str> = log.lines().filter(|l| !l.contains(" vic-init: ")).collect();
    if let Some(i) = lines.iter().rposition(|l| l.starts_with("Error: ")) {
        let mut parts = vec![lines[i]["Error: ".len()..].trim()];
        for l in &lines[i + 1..] {
            let l = l.trim();
            if l.starts_with("Stack backtrace:") {
                break;
            }
            if l.is_empty() || l == "Caused by:" {
                continue;
            }
            // Several causes are numbered "0: …".
            let cause = l
                .split_once(": ")
                .filter(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
                .map_or(l, |(_, rest)| rest);
            parts.push(cause);
        }
        return Some(parts.join(": "));
    }
    if let Some(i) = lines.iter().rposition(|l| l.contains("panicked at")) {
        let what = lines.get(i + 1).map(|l| l.trim()).unwrap_or_default();
        return Some(format!("{} {what}", lines[i].trim()).trim().to_string());
    }
    let last = |pred: &dyn Fn(&str) -> bool| {
        lines
            .iter()
            .rev()
            .map(|l| l.trim())
            .find(|l| !l.is_empty() && pred(l))
            .map(str::to_string)
    };
    last(&|l| l.contains(" ERROR ")).or_else(|| last(&|_| true))
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
    let stopping = step("Stopping the appliance (container VMs keep running)");
    stop(layout, STOP_TIMEOUT);
    stopping.done();
    let attempt = (|| -> Result<(), String> {
        (change.apply)().map_err(|e| format!("{e:#}"))?;
        layout.save(new).map_err(|e| format!("{e:#}"))?;
        let ready = Readiness::for_mode(new.tls.mode).map_err(|e| format!("{e:#}"))?;
        let starting = step("Starting the appliance and waiting for the Docker API");
        start(layout, new, &|p| ready.ping(p), deadline).map_err(|e| match e {
            StartError::TimedOut => format!(
                "{what} VCH exceeded time limit of {}. Please increase the timeout using --timeout to accommodate for a busy host",
                crate::output::go_duration(timeout)
            ),
            other => other.to_string(),
        })?;
        starting.done();
        Ok(())
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

    #[test]
    fn the_appliances_own_error_is_found_in_its_log() {
        let log = "2026-01-01T00:00:00Z  INFO vic_appliance: appliance starting
Error: listening on 127.0.0.1:5000

Caused by:
    Address already in use (os error 98)

Stack backtrace:
   0: anyhow::error
2026-01-01T00:00:01Z vic-init: the appliance died (exit status 1) after 0.1 s; restarting it in 0.5 s
";
        assert_eq!(
            appliance_error(log).as_deref(),
            Some("listening on 127.0.0.1:5000: Address already in use (os error 98)")
        );
        let two = "Error: opening the image store /x\n\nCaused by:\n    0: reading /x/index\n    1: Permission denied (os error 13)\n";
        assert_eq!(
            appliance_error(two).as_deref(),
            Some("opening the image store /x: reading /x/index: Permission denied (os error 13)")
        );
        let panic = "thread 'main' panicked at src/main.rs:3:5:\nno kernel\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            appliance_error(panic).as_deref(),
            Some("thread 'main' panicked at src/main.rs:3:5: no kernel")
        );
        assert_eq!(
            appliance_error("vic-appliance: this build is broken\n").as_deref(),
            Some("vic-appliance: this build is broken")
        );
        assert_eq!(appliance_error(""), None);
    }
}
