//! `vic-init`: the VCH's supervisor, in the spirit of VIC's vic-init. It starts the appliance,
//! restarts it whenever it dies (crash, OOM kill, SIGKILL) with a growing back-off, and on
//! SIGTERM/SIGINT passes the signal on and exits once the appliance has stopped. It needs
//! no systemd: `vic-machine create` starts it detached.
//!
//! ```text
//!   vic-init --pid-file DIR/init.pid -- vic-appliance ARGS…
//! ```
//!
//! A restarted appliance takes over the container VMs that kept running (see the port
//! layer's recovery), so a restart loses nothing.
//!
//! With `VIC_INIT_LOG` set, vic-init's own lines also go to that file (the admin pages show
//! it as vic-init's log; the appliance's log keeps them too).
//!
//! With `VIC_INIT_STATUS_FILE` set, every exit of the appliance that vic-init did not ask for
//! is written there (one line, replacing the last: `exit status 1 after 0.1 s`), so
//! `vic-machine` notices a start that failed at once instead of when vic-init gives up. (An
//! environment variable, not a flag, so an older vic-init, after an upgrade rollback, still
//! starts.)

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// The signal that asked us to stop (0: none yet).
static STOP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    STOP.store(sig, Ordering::SeqCst);
}

/// First wait after a crash; doubled per failed start (error exit) up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run this long counts as healthy: the back-off starts over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// An error exit sooner than this after starting is a failed start; this many in a row and
/// vic-init gives up (the appliance cannot start: a bad flag, a port in use), exiting 1.
const QUICK_CRASH: Duration = Duration::from_secs(10);
const MAX_QUICK_CRASHES: u32 = 5;
/// How long the appliance may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// Where vic-init's own lines also go (the admin pages' vic-init log), besides stderr.
const LOG_FILE: &str = "VIC_INIT_LOG";

fn log(msg: &str) {
    let line = format!(
        "{} vic-init: {msg}",
        chrono_like_now().unwrap_or_else(|| "-".into())
    );
    eprintln!("{line}");
    if let Some(path) = std::env::var_os(LOG_FILE) {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(mut f) = file {
            let _ = std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes());
        }
    }
}

/// An RFC 3339 UTC timestamp, like the appliance's log lines, without a date crate.
fn chrono_like_now() -> Option<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let secs = now.as_secs() as libc::time_t;
    // SAFETY: gmtime_r writes into the tm we own; `secs` is a valid time_t.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::gmtime_r(&secs, &mut tm) }.is_null() {
        return None;
    }
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        now.subsec_micros()
    ))
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (_, Some(s)) => format!("signal {s}"),
        _ => status.to_string(),
    }
}

struct Args {
    pid_file: Option<PathBuf>,
    program: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut pid_file = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--pid-file" => pid_file = Some(PathBuf::from(args.next().ok_or("--pid-file FILE")?)),
            "--" => break,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let program: Vec<String> = args.collect();
    if program.is_empty() {
        return Err("usage: vic-init [--pid-file FILE] -- PROGRAM [ARGS…]".into());
    }
    Ok(Args { pid_file, program })
}

fn spawn(program: &[String]) -> std::io::Result<Child> {
    Command::new(&program[0])
        .args(&program[1..])
        .env_remove(STATUS_FILE)
        .env_remove(LOG_FILE)
        .spawn()
}

/// Where the appliance's unrequested exits are reported (see the crate docs).
const STATUS_FILE: &str = "VIC_INIT_STATUS_FILE";

/// Replaces the status file's line with `line` (written aside and renamed, so a reader sees
/// the old line or the new one).
fn report(line: &str) {
    let Some(path) = std::env::var_os(STATUS_FILE).map(PathBuf::from) else {
        return;
    };
    let tmp = path.with_extension("tmp");
    let res = std::fs::write(&tmp, format!("{line}\n")).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = res {
        log(&format!("writing {} failed: {e}", path.display()));
    }
}

/// Waits for the child to exit; returns None if a stop signal came first.
fn wait(child: &mut Child) -> Option<ExitStatus> {
    loop {
        if STOP.load(Ordering::SeqCst) != 0 {
            return None;
        }
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                log(&format!("waiting for the appliance failed: {e}"));
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Sleeps `d`, cut short by a stop signal (returns false then).
fn pause(d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if STOP.load(Ordering::SeqCst) != 0 {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

fn stop(child: &mut Child, sig: i32) {
    log(&format!(
        "signal {sig}: stopping the appliance (pid {})",
        child.id()
    ));
    // SAFETY: kill(2) on our own child's PID.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    let end = Instant::now() + STOP_GRACE;
    while Instant::now() < end {
        if let Ok(Some(s)) = child.try_wait() {
            log(&format!("the appliance stopped ({})", describe(s)));
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    log(&format!(
        "the appliance did not stop within {STOP_GRACE:?}; killing it"
    ));
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    // SAFETY: umask only sets this process's file mode creation mask; it cannot fail.
    unsafe { libc::umask(0o077) };
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("vic-init: {e}");
            std::process::exit(2);
        }
    };
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    if let Some(p) = &args.pid_file {
        if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
            log(&format!("writing {} failed: {e}", p.display()));
        }
    }
    let mut backoff = FIRST_BACKOFF;
    let mut restarts = 0u64;
    let mut quick = 0u32;
    let mut code = 0;
    loop {
        let started = Instant::now();
        let mut child = match spawn(&args.program) {
            Ok(c) => c,
            Err(e) => {
                log(&format!("starting {} failed: {e}", args.program[0]));
                report(&format!("could not start {}: {e}", args.program[0]));
                if !pause(backoff) {
                    break;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        match restarts {
            0 => log(&format!("appliance started (pid {})", child.id())),
            n => log(&format!(
                "appliance restarted (pid {}, restart {n})",
                child.id()
            )),
        }
        let Some(status) = wait(&mut child) else {
            stop(&mut child, STOP.load(Ordering::SeqCst));
            break;
        };
        report(&format!(
            "{} after {:.1} s",
            describe(status),
            started.elapsed().as_secs_f64()
        ));
        if status.success() {
            log("the appliance exited cleanly; not restarting it");
            break;
        }
        // A healthy run, or a kill from outside, starts the back-off over: only failing
        // starts slow the restarts down.
        if started.elapsed() >= HEALTHY_RUN || status.code().is_none() {
            backoff = FIRST_BACKOFF;
        }
        // An appliance that exits with an error right after starting cannot start (a bad
        // flag, a port in use); one killed by a signal (OOM, an operator) is restarted always.
        if status.code().is_some() && started.elapsed() < QUICK_CRASH {
            quick += 1;
        } else {
            quick = 0;
        }
        if quick >= MAX_QUICK_CRASHES {
            log(&format!(
                "the appliance died {quick} times within {QUICK_CRASH:?} of starting ({}); giving up",
                describe(status)
            ));
            code = 1;
            break;
        }
        log(&format!(
            "the appliance died ({}) after {:.1} s; restarting it in {:.1} s",
            describe(status),
            started.elapsed().as_secs_f64(),
            backoff.as_secs_f64()
        ));
        if !pause(backoff) {
            break;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        restarts += 1;
    }
    if let Some(p) = &args.pid_file {
        let _ = std::fs::remove_file(p);
    }
    std::process::exit(code);
}
