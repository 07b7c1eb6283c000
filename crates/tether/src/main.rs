//! tether: PID 1 inside every container VM.
//!
//! It mounts the initramfs' API filesystems, finds the virtio-serial port named
//! [`tether_proto::PORT_NAME`] (or opens the serial line `vic.channel=` names: `uart.rs`), says
//! `Hello`, and then serves the host: `Setup` mounts the
//! container's root disk and confines it (`confine.rs`: /dev, tmpfs, masked paths, read-only
//! root, sysctls, pids cgroup), `Spawn` runs processes in it (own mount namespace and root,
//! user, groups, capabilities, rlimits, cwd, env, pty or pipes),
//! stdio flows as frames, and when the main process exits everything else is killed, its exit
//! is reported, and on `Shutdown` (or 10 s later) the VM powers off.
//!
//! ```text
//!  main thread: port reader ──► dispatch ──► Sessions (spawn/stdin/signal/resize)
//!  reaper thread: waitpid(-1) ──► per-session waiter ──► Exited
//!  output threads: pipe/pty ──► Writer (one lock) ──► port
//! ```
//! PID 1 must never die: errors are logged to the console (`tether:` lines in console.log).
//!
//! Every touch of the host made while setting up and running the container goes through
//! [`syscall::Syscall`]; `main` makes the real one ([`syscall::LinuxSyscall`]) and tests a
//! recording fake.

mod archive;
mod confine;
mod disks;
mod exec;
mod launch;
mod log;
mod mounts;
mod netif;
mod netif6;
mod plan;
mod port;
mod power_button;
mod privs;
mod process;
mod procs;
mod reaper;
mod setup;
mod stats;
mod stdio;
mod sys;
mod syscall;
mod tarball;
mod uart;
mod user;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_proto::{FrameKind, GuestMsg, HostMsg, Identity, MAIN_SESSION, PROTOCOL_VERSION};

use crate::archive::Transfers;
use crate::mounts::Mounted;
use crate::port::{Event, Writer};
use crate::process::Sessions;
use crate::reaper::Reaper;
use crate::syscall::{LinuxSyscall, Syscall};

/// How long to wait for `Shutdown` after the main process has exited.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

static POWERING_OFF: AtomicBool = AtomicBool::new(false);

/// Powers off once, whoever asks first (the host's `Shutdown` or the timeout).
fn power_off(sys: &dyn Syscall, mounted: &Mutex<Option<Arc<Mounted>>>) {
    if POWERING_OFF.swap(true, Ordering::SeqCst) {
        return;
    }
    let m = mounted.lock().ok().and_then(|m| m.clone());
    setup::power_off(sys, m.as_deref())
}

fn kernel_release(sys: &dyn Syscall) -> String {
    sys.read_to_string(std::path::Path::new("/proc/sys/kernel/osrelease"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The VM's identity, where its channel shares a listener with others (vSphere): `vic.id=`
/// and `vic.token=` on the kernel command line, as the VM's configuration puts them there.
fn identity(sys: &dyn Syscall) -> Option<Identity> {
    let cmdline = sys
        .read_to_string(std::path::Path::new("/proc/cmdline"))
        .unwrap_or_default();
    let value = |key: &str| {
        cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(str::to_string)
    };
    Some(Identity {
        id: value("vic.id=")?,
        token: value("vic.token=")?,
    })
}

fn hello(
    sys: &dyn Syscall,
    out: &Writer,
    sessions: &Sessions,
    mounted: &Mutex<Option<Arc<Mounted>>>,
) {
    let configured = match mounted.lock() {
        Ok(m) => m.is_some(),
        Err(p) => p.into_inner().is_some(),
    };
    out.msg(&GuestMsg::Hello {
        version: PROTOCOL_VERSION,
        kernel: kernel_release(sys),
        configured,
        running: sessions.running(),
        main_exit: sessions.main_exit(),
        ended: out.ended(),
        identity: identity(sys),
    });
}

fn main() {
    std::panic::set_hook(Box::new(|info| log!("panic: {info}")));
    let sys: Arc<dyn Syscall> = Arc::new(LinuxSyscall);
    setup::early_mounts(&*sys);
    crate::sys::ensure_std_fds(c"/dev/console");
    if std::process::id() != 1 {
        log!("not running as PID 1; orphans will not be reaped here");
    }
    let cmdline = sys
        .read_to_string(std::path::Path::new("/proc/cmdline"))
        .unwrap_or_default();
    let uart = uart::from_cmdline(&cmdline);
    let path = match &uart {
        Some(p) => {
            log!("the channel is the serial line {}", p.display());
            p.clone()
        }
        None => loop {
            match port::find(Duration::from_secs(10)) {
                Ok(p) => break p,
                Err(e) => log!("{e}; still looking"),
            }
        },
    };
    let (mut reader, out) = loop {
        match port::connect(&path, uart.is_some()) {
            Ok(c) => break c,
            Err(e) => {
                log!("opening {} failed: {e}", path.display());
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    };
    let reaper = Reaper::new();
    {
        let r = reaper.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || r.run())
        {
            log!("starting the reaper failed: {e}");
        }
    }
    let mounted: Arc<Mutex<Option<Arc<Mounted>>>> = Arc::default();
    let on_main_exit = {
        let (sys, mounted) = (sys.clone(), mounted.clone());
        Box::new(move || {
            let (sys, mounted) = (sys.clone(), mounted.clone());
            let _ = std::thread::Builder::new()
                .name("shutdown-timer".into())
                .spawn(move || {
                    std::thread::sleep(SHUTDOWN_WAIT);
                    log!("no Shutdown within {SHUTDOWN_WAIT:?} of the exit; powering off");
                    power_off(&*sys, &mounted);
                });
        })
    };
    let sessions = Sessions::new(sys.clone(), reaper, out.clone(), on_main_exit);
    let transfers = Transfers::new(out.clone());
    watch_power_button(&sys, &out, &sessions, &mounted);
    hello(&*sys, &out, &sessions, &mounted);
    loop {
        let frame = match reader.next() {
            Event::Frame(f) => f,
            Event::Reconnected => {
                transfers.cancel_all();
                hello(&*sys, &out, &sessions, &mounted);
                continue;
            }
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match frame.kind {
            FrameKind::Control => match frame.parse_control::<HostMsg>() {
                Ok(msg) => handle(&*sys, msg, &out, &sessions, &transfers, &mounted),
                Err(e) => log!("ignoring control frame: {e}"),
            },
            FrameKind::Stdin if transfers.has(frame.session) => {
                transfers.data(frame.session, frame.payload)
            }
            FrameKind::StdinClosed if transfers.has(frame.session) => {
                transfers.close(frame.session)
            }
            FrameKind::Stdin => sessions.stdin(frame.session, frame.payload),
            FrameKind::StdinClosed => sessions.close_stdin(frame.session),
            FrameKind::Stdout | FrameKind::Stderr => log!("ignoring output frame from the host"),
        }));
        if result.is_err() {
            log!("recovered from a panic while handling a frame");
        }
    }
}

/// Passes each press of the VM's power button on to the host, which stops the container;
/// with no process running, powers the VM off, as any system does.
fn watch_power_button(
    sys: &Arc<dyn Syscall>,
    out: &Writer,
    sessions: &Arc<Sessions>,
    mounted: &Arc<Mutex<Option<Arc<Mounted>>>>,
) {
    let (sys, out, sessions, mounted) =
        (sys.clone(), out.clone(), sessions.clone(), mounted.clone());
    let watcher = move || {
        let pressed = || {
            if sessions.running().contains(&MAIN_SESSION) {
                log!("the power button was pressed: asking the host to stop the container");
                let by = "the VM's power button (ACPI)".to_string();
                out.msg(&GuestMsg::ShutdownAsked { by });
            } else {
                log!("the power button was pressed while no process runs: powering off");
                power_off(&*sys, &mounted);
            }
        };
        if let Err(e) = power_button::watch(pressed) {
            log!("the power button is not watched: {e}");
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("power-button".into())
        .spawn(watcher)
    {
        log!("starting the power button's watcher failed: {e}");
    }
}

fn handle(
    sys: &dyn Syscall,
    msg: HostMsg,
    out: &Writer,
    sessions: &Arc<Sessions>,
    transfers: &Arc<Transfers>,
    mounted: &Mutex<Option<Arc<Mounted>>>,
) {
    let rootfs = || {
        mounted
            .lock()
            .ok()
            .and_then(|m| m.as_ref().map(|m| m.rootfs.clone()))
    };
    match msg {
        HostMsg::Resync => {
            // A new host on a line without hang-ups: as after a reconnection.
            transfers.cancel_all();
            hello(sys, out, sessions, mounted)
        }
        HostMsg::Setup(s) => {
            let mut m = match mounted.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            if m.is_some() {
                // A reconnected host repeats Setup: it is already done.
                out.msg(&GuestMsg::Ready);
                return;
            }
            match setup::apply(sys, &s) {
                Ok(done) => {
                    *m = Some(Arc::new(done));
                    out.msg(&GuestMsg::Ready);
                }
                Err(message) => {
                    log!("setup failed: {message}");
                    out.msg(&GuestMsg::SetupFailed { message });
                }
            }
        }
        HostMsg::Spawn { session, process } => {
            let m = mounted.lock().ok().and_then(|m| m.clone());
            sessions.spawn(session, process, m.as_deref());
        }
        HostMsg::Signal { session, signal } => sessions.signal(session, signal),
        HostMsg::Resize {
            session,
            rows,
            cols,
        } => sessions.resize(session, rows, cols),
        HostMsg::Ping { seq } => out.msg(&GuestMsg::Pong { seq }),
        HostMsg::Shutdown => power_off(sys, mounted),
        HostMsg::Resume { session, from } => out.resume(session, from),
        HostMsg::Forget { session } => out.forget(session),
        HostMsg::ListProcesses { seq } => {
            let m = mounted.lock().ok().and_then(|m| m.clone());
            out.msg(&procs::answer(
                seq,
                m.as_deref().map(|m| m.rootfs.as_path()),
            ));
        }
        HostMsg::SetInterface {
            seq,
            find,
            mac,
            address,
            gateway,
            ipv6,
            link_local,
        } => {
            let done = netif::find_by_mac(&find).and_then(|name| {
                netif::set(&name, &mac, address)?;
                gateway.map_or(Ok(()), netif::replace_default_route)?;
                if address.is_none() {
                    return Ok(());
                }
                if let Some(v6) = ipv6 {
                    netif6::configure(&name, &v6)?;
                }
                netif::add_link_local(&name, &link_local)
            });
            out.msg(&GuestMsg::InterfaceSet {
                seq,
                error: done.err().map(|e| e.to_string()),
            });
        }
        HostMsg::StatPath { seq, path } => transfers.stat(seq, rootfs(), path),
        HostMsg::ArchiveGet {
            session,
            path,
            window,
            mode,
            paths,
            pause,
        } => {
            let get = archive::Get {
                path,
                window,
                mode,
                paths,
                pause,
            };
            transfers.get(session, rootfs(), get)
        }
        HostMsg::ArchivePut { session, request } => transfers.put(session, rootfs(), *request),
        HostMsg::Credit { session, bytes } => transfers.credit(session, bytes),
        HostMsg::Cancel { session } => transfers.cancel(session),
        HostMsg::Stats { seq } => out.msg(&stats::answer(seq)),
    }
}
