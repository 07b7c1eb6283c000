//! Host side of the tether protocol for one powered-on VM: configures the guest, starts the
//! main process, forwards stdin/signals/resizes, and reports output and the exit.

use crate::guest::control::{Answer, Asked};
pub use crate::guest::control::{GuestControl, GuestProcess, Processes, Undelivered};
use crate::guest::exec::{ExecOutput, Routes};
pub use crate::guest::outcome::{SessionExit, StartFailure};
use crate::guest::protocol::Protocol;
use crate::guest::stdin::forward_stdin;
pub use crate::guest::stdin::{StdinMsg, STDIN_FRAMES, STDIN_QUEUE};
use crate::guest::transfer::Transfers;
use crate::guest::Launch;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hypervisor::PoweredOn;
use tether_proto::{
    Frame, FrameDecoder, FrameKind, GuestMsg, HostMsg, Process, Setup, DISKS_VERSION, MAIN_SESSION,
    RESUME_VERSION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::logs::LogStream;

/// How long the guest may take from power-on to a started process.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after the exit the VM may take to power itself off before it is forced.
pub const POWER_OFF_GRACE: Duration = Duration::from_secs(10);

/// Control frames (signals, resizes, the driver's own replies) waiting for the guest to read
/// them. The protocol lets the driver send each of its messages once, so only a guest that
/// stops reading while signals keep coming fills it; senders are then told so at once.
pub const CONTROL_QUEUE: usize = 64;

/// Where a session's output and exit go.
pub trait SessionSink: Send + 'static {
    fn output(&mut self, stream: LogStream, data: &[u8]);
}

/// How a session lost for a protocol violation says so (see `protocol.rs`).
const VIOLATION: &str = "tether protocol violation";

/// A running session.
pub struct Session {
    /// Signals and resizes for the main process.
    pub control: GuestControl,
    /// Resolves once, with the main process's exit.
    pub exit: oneshot::Receiver<SessionExit>,
    /// Resolves when the VM is off (after `exit`).
    pub vm_off: oneshot::Receiver<String>,
    /// Shutdowns asked of the VM from outside (how, in words), as the guest passes them on.
    pub shutdown_asked: mpsc::Receiver<String>,
}

/// How long a re-attached tether may take to say Hello.
pub const REATTACH_TIMEOUT: Duration = Duration::from_secs(15);

/// What the driver does when the tether says Hello.
enum Mode {
    /// A fresh VM: configure it and start the main process (with none, configure it only:
    /// a VM booted to copy files in or out of a stopped container).
    Start {
        setup: Box<Setup>,
        process: Option<Box<Process>>,
    },
    /// A VM that kept running while the appliance restarted: take over its main process.
    /// `stored` is how many bytes of its output this run's log already holds.
    Reattach { stored: u64 },
}

/// Drives the protocol until the main process has started, then keeps going in the
/// background. `stdin` is consumed while the session runs and left in place afterwards.
pub async fn start(
    powered: PoweredOn,
    launch: Launch,
    sink: impl SessionSink,
    stdin: Arc<Mutex<mpsc::Receiver<StdinMsg>>>,
) -> Result<Session, StartFailure> {
    drive(
        powered,
        Mode::Start {
            setup: Box::new(launch.setup),
            process: Some(Box::new(launch.process)),
        },
        sink,
        stdin,
        START_TIMEOUT,
    )
    .await
}

/// Configures a VM booted for its files alone: the container's root and volumes mounted,
/// no process run. Returns once the guest is ready; its [`Session::control`] copies files,
/// and `Shutdown` (see [`GuestControl::shutdown`]) powers it off.
pub async fn start_without_process(
    powered: PoweredOn,
    launch: Launch,
) -> Result<Session, StartFailure> {
    struct Nowhere;
    impl SessionSink for Nowhere {
        fn output(&mut self, _: LogStream, _: &[u8]) {}
    }
    let (_tx, rx) = mpsc::channel(1);
    drive(
        powered,
        Mode::Start {
            setup: Box::new(launch.setup),
            process: None,
        },
        Nowhere,
        Arc::new(Mutex::new(rx)),
        START_TIMEOUT,
    )
    .await
}

/// Takes over the running main process of a VM whose tether has reconnected after an
/// appliance restart. `stored` is how many bytes of the run's output the log already holds:
/// the tether resends everything after it (output in flight when the previous appliance died
/// included), then live output follows; an exit that happened meanwhile resolves
/// [`Session::exit`] after that output.
pub async fn reattach(
    powered: PoweredOn,
    stored: u64,
    sink: impl SessionSink,
    stdin: Arc<Mutex<mpsc::Receiver<StdinMsg>>>,
) -> Result<Session, StartFailure> {
    drive(
        powered,
        Mode::Reattach { stored },
        sink,
        stdin,
        REATTACH_TIMEOUT,
    )
    .await
}

async fn drive(
    powered: PoweredOn,
    mode: Mode,
    mut sink: impl SessionSink,
    stdin: Arc<Mutex<mpsc::Receiver<StdinMsg>>>,
    limit: Duration,
) -> Result<Session, StartFailure> {
    let PoweredOn {
        channel,
        exited,
        restored,
        ..
    } = powered;
    let (mut reader, mut writer) = tokio::io::split(channel);
    let (control_tx, mut control_rx) = mpsc::channel::<Frame>(CONTROL_QUEUE);
    let (stdin_tx, mut stdin_rx) = mpsc::channel::<Frame>(STDIN_FRAMES);

    // Writer: the one task that writes to the guest, so frames never interleave; control
    // frames go ahead of stdin. Both queues are bounded: a guest that stops reading holds
    // up its own input, never the appliance's memory.
    tokio::spawn(async move {
        let mut buf = Vec::new();
        loop {
            let frame = tokio::select! {
                biased;
                Some(f) = control_rx.recv() => f,
                Some(f) = stdin_rx.recv() => f,
                else => break,
            };
            buf.clear();
            tether_proto::encode_into(&frame, &mut buf);
            if writer.write_all(&buf).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
    });

    let asked = Arc::new(Asked::default());
    let answers = asked.clone();
    let routes = Arc::new(Routes::default());
    let exec_routes = routes.clone();
    let transfers = Arc::new(Transfers::default());
    let guest_transfers = transfers.clone();
    let exec_stdin = stdin_tx.clone();
    let (started_tx, started_rx) = oneshot::channel::<Result<(), StartFailure>>();
    let (exit_tx, exit_rx) = oneshot::channel::<SessionExit>();
    let (off_tx, off_rx) = oneshot::channel::<String>();
    let (ask_tx, ask_rx) = mpsc::channel::<String>(1);
    let to_guest = control_tx.clone();
    let hello_seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Asked to say Hello: a re-attached tether that missed its line, a restored one always.
    let pace = match (&mode, &restored) {
        (Mode::Reattach { .. }, _) => Some(super::resync::REATTACHED),
        (Mode::Start { .. }, Some(_)) => Some(super::resync::RESTORED),
        (Mode::Start { .. }, None) => None,
    };
    if let Some(pace) = pace {
        tokio::spawn(super::resync::until_hello(
            control_tx.clone(),
            hello_seen.clone(),
            pace,
        ));
    }
    let restored = restored.map(super::resync::restored);

    tokio::spawn(async move {
        let mut started_tx = Some(started_tx);
        let mut decoder = FrameDecoder::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut stdin_task: Option<tokio::task::JoinHandle<()>> = None;
        // Taking over: nothing counts until the tether's Hello (what precedes it may be stale
        // or torn), and with a tether that resends, nothing until its replay has begun.
        let mut synced = matches!(mode, Mode::Start { .. });
        let mut before_hello = Vec::new();
        let mut replaying = false;
        // What the Hello said of the main process: running, or ended.
        let mut main_running = false;
        let mut said_hello = false;
        let mut protocol = Protocol::new(matches!(mode, Mode::Start { .. }));
        // Each of these is sent once per session (the protocol checker sees to it), so the
        // queue has room unless the guest has stopped reading; then the reaper ends it anyway.
        let send = |msg: HostMsg| {
            if to_guest.try_send(Frame::control(&msg)).is_err() {
                tracing::debug!("the guest does not read its channel: a control message dropped");
            }
        };
        let outcome: SessionExit = 'outer: loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) => break SessionExit::Lost("the tether channel closed".into()),
                Ok(n) => n,
                Err(e) => break SessionExit::Lost(format!("reading the tether channel: {e}")),
            };
            decoder.push(&buf[..n]);
            if !synced {
                synced = decoder.skip_to_hello(&mut before_hello);
                let excess = before_hello
                    .len()
                    .saturating_sub(tether_proto::REPLAY_WINDOW);
                before_hello.drain(..excess);
                if !synced {
                    continue;
                }
            }
            loop {
                let frame = match decoder.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        break 'outer SessionExit::Lost(format!("tether protocol error: {e}"))
                    }
                };
                if let Err(why) = protocol.frame(&frame) {
                    break 'outer SessionExit::Lost(format!("{VIOLATION}: {why}"));
                }
                let msg = match frame.kind {
                    FrameKind::Control => match frame.parse_control::<GuestMsg>() {
                        Ok(msg) => Some(msg),
                        Err(e) => {
                            let why = format!("a control message that does not parse: {e}");
                            break 'outer SessionExit::Lost(format!("{VIOLATION}: {why}"));
                        }
                    },
                    _ => None,
                };
                if let Some(Err(why)) = msg.as_ref().map(|m| protocol.accept(m)) {
                    break 'outer SessionExit::Lost(format!("{VIOLATION}: {why}"));
                }
                if frame.session != MAIN_SESSION
                    && frame.kind != FrameKind::Control
                    && guest_transfers.owns(frame.session)
                {
                    match guest_transfers.data(frame.session, frame.payload) {
                        Ok(_) => continue,
                        Err(why) => break 'outer SessionExit::Lost(format!("{VIOLATION}: {why}")),
                    }
                }
                if frame.session != MAIN_SESSION && frame.kind != FrameKind::Control {
                    let stream = match frame.kind {
                        FrameKind::Stderr => LogStream::Stderr,
                        _ => LogStream::Stdout,
                    };
                    match exec_routes.output(frame.session) {
                        Ok(Some(tx)) => {
                            let data = Bytes::from(frame.payload);
                            let _ = tx.send(ExecOutput { stream, data }).await;
                        }
                        Ok(None) => {}
                        Err(why) => break 'outer SessionExit::Lost(format!("{VIOLATION}: {why}")),
                    }
                    continue;
                }
                if let Some(m) = msg.as_ref().filter(|m| Transfers::is_transfer_msg(m)) {
                    match guest_transfers.message(m.clone()) {
                        Ok(()) => continue,
                        Err(why) => break 'outer SessionExit::Lost(format!("{VIOLATION}: {why}")),
                    }
                }
                if let Some(m) = msg.as_ref().filter(|m| super::exec::is_exec_msg(m)) {
                    match exec_routes.message(m) {
                        Ok(Some(ended)) => send(HostMsg::Forget { session: ended }),
                        Ok(None) => {}
                        Err(why) => break 'outer SessionExit::Lost(format!("{VIOLATION}: {why}")),
                    }
                    continue;
                }
                match frame.kind {
                    // Sent before the guest answered Resume: the replay repeats it.
                    FrameKind::Stdout | FrameKind::Stderr if replaying => {}
                    FrameKind::Stdout if frame.session == MAIN_SESSION => {
                        sink.output(LogStream::Stdout, &frame.payload)
                    }
                    FrameKind::Stderr if frame.session == MAIN_SESSION => {
                        sink.output(LogStream::Stderr, &frame.payload)
                    }
                    FrameKind::Control => match msg.ok_or(()) {
                        Ok(GuestMsg::Hello {
                            configured,
                            running,
                            ..
                        }) if said_hello => {
                            // Said again (its line came back, or it was asked to resync):
                            // what it reports is known, and nothing is asked twice.
                            tracing::debug!(configured, ?running, "tether hello again");
                            exec_routes.hello(&running, &[]);
                        }
                        Ok(GuestMsg::Hello {
                            version,
                            kernel,
                            configured,
                            running,
                            main_exit,
                            ended,
                            ..
                        }) => {
                            said_hello = true;
                            hello_seen.store(true, std::sync::atomic::Ordering::Relaxed);
                            tracing::debug!(version, kernel, configured, ?running, "tether hello");
                            answers.hello(version);
                            exec_routes.hello(&running, &ended);
                            for (session, _) in &ended {
                                send(HostMsg::Forget { session: *session });
                            }
                            match &mode {
                                Mode::Start { setup, .. }
                                    if version < DISKS_VERSION
                                        && !(setup.confinement.disks.is_empty()
                                            && setup.confinement.shares.is_empty()) =>
                                {
                                    if let Some(tx) = started_tx.take() {
                                        let _ = tx.send(Err(StartFailure::Other(format!(
                                            "the container VM's tether speaks protocol {version}, which cannot mount volumes: upgrade the VCH"
                                        ))));
                                    }
                                    continue;
                                }
                                Mode::Start { setup, .. } => {
                                    let mut setup = Launch::setup_now(setup);
                                    setup.restored = restored.clone();
                                    send(HostMsg::Setup(Box::new(setup)))
                                }
                                Mode::Reattach { stored } if version >= RESUME_VERSION => {
                                    if !configured
                                        || !(running.contains(&MAIN_SESSION) || main_exit.is_some())
                                    {
                                        if let Some(tx) = started_tx.take() {
                                            let _ = tx.send(Err(StartFailure::Other(
                                                "the container VM has no process to re-attach to"
                                                    .into(),
                                            )));
                                        }
                                        continue;
                                    }
                                    main_running = main_exit.is_none();
                                    replaying = true;
                                    send(HostMsg::Resume {
                                        session: MAIN_SESSION,
                                        from: *stored,
                                    });
                                }
                                Mode::Reattach { .. } => {
                                    // An older tether cannot resend: keep what whole frames
                                    // arrived before its Hello.
                                    for f in super::protocol::whole_frames(&std::mem::take(
                                        &mut before_hello,
                                    )) {
                                        match f.kind {
                                            FrameKind::Stdout if f.session == MAIN_SESSION => {
                                                sink.output(LogStream::Stdout, &f.payload)
                                            }
                                            FrameKind::Stderr if f.session == MAIN_SESSION => {
                                                sink.output(LogStream::Stderr, &f.payload)
                                            }
                                            _ => {}
                                        }
                                    }
                                    if let Some(code) = main_exit {
                                        if let Some(tx) = started_tx.take() {
                                            let _ = tx.send(Ok(()));
                                        }
                                        send(HostMsg::Shutdown);
                                        break 'outer SessionExit::Exited(code);
                                    }
                                    if configured && running.contains(&MAIN_SESSION) {
                                        if started_tx.is_some() {
                                            stdin_task = Some(tokio::spawn(forward_stdin(
                                                stdin.clone(),
                                                stdin_tx.clone(),
                                            )));
                                        }
                                        if let Some(tx) = started_tx.take() {
                                            let _ = tx.send(Ok(()));
                                        }
                                    } else if let Some(tx) = started_tx.take() {
                                        let _ = tx.send(Err(StartFailure::Other(
                                            "the container VM has no process to re-attach to"
                                                .into(),
                                        )));
                                    }
                                }
                            }
                        }
                        Ok(GuestMsg::Resumed {
                            session: MAIN_SESSION,
                            from,
                            lost,
                        }) if replaying => {
                            replaying = false;
                            if lost > 0 {
                                tracing::warn!(
                                    from,
                                    lost,
                                    "the tether no longer held {lost} bytes of output"
                                );
                            }
                            tracing::debug!(from, "output resumed");
                            if main_running {
                                stdin_task = Some(tokio::spawn(forward_stdin(
                                    stdin.clone(),
                                    stdin_tx.clone(),
                                )));
                                if let Some(tx) = started_tx.take() {
                                    let _ = tx.send(Ok(()));
                                }
                            }
                        }
                        // Said before the guest answered Resume: it says it again after the
                        // replay.
                        Ok(GuestMsg::Exited { .. }) if replaying => {}
                        Ok(GuestMsg::Processes {
                            seq,
                            processes,
                            boot_unix,
                            hz,
                            memory_kib,
                        }) => {
                            let answer = Answer::Processes(Processes {
                                list: processes.into_iter().map(Into::into).collect(),
                                boot_unix,
                                hz,
                                memory_kib,
                            });
                            if !answers.answer(seq, answer) {
                                let why = format!("Processes {seq}, which nobody asked for");
                                break 'outer SessionExit::Lost(format!("{VIOLATION}: {why}"));
                            }
                        }
                        Ok(GuestMsg::Stats { seq, stats }) => {
                            let answer = Answer::Stats(Box::new((*stats).into()));
                            if !answers.answer(seq, answer) {
                                let why = format!("Stats {seq}, which nobody asked for");
                                break 'outer SessionExit::Lost(format!("{VIOLATION}: {why}"));
                            }
                        }
                        Ok(GuestMsg::PathStat { seq, result }) => {
                            let answer =
                                Answer::PathStat(result.map(Into::into).map_err(Into::into));
                            if !answers.answer(seq, answer) {
                                let why = format!("PathStat {seq}, which nobody asked for");
                                break 'outer SessionExit::Lost(format!("{VIOLATION}: {why}"));
                            }
                        }
                        Ok(GuestMsg::InterfaceSet { seq, error }) => {
                            if !answers.answer(seq, Answer::Interface(error)) {
                                let why = format!("InterfaceSet {seq}, which nobody asked for");
                                break 'outer SessionExit::Lost(format!("{VIOLATION}: {why}"));
                            }
                        }
                        Ok(GuestMsg::Ready) => match &mode {
                            Mode::Start {
                                process: Some(process),
                                ..
                            } => send(HostMsg::Spawn {
                                session: MAIN_SESSION,
                                process: (**process).clone(),
                            }),
                            Mode::Start { process: None, .. } => {
                                if let Some(tx) = started_tx.take() {
                                    let _ = tx.send(Ok(()));
                                }
                            }
                            Mode::Reattach { .. } => {}
                        },
                        Ok(GuestMsg::SetupFailed { message }) => {
                            if let Some(tx) = started_tx.take() {
                                let _ = tx.send(Err(StartFailure::Other(format!(
                                    "container VM setup failed: {message}"
                                ))));
                            }
                            send(HostMsg::Shutdown);
                        }
                        Ok(GuestMsg::Started {
                            session: MAIN_SESSION,
                            pid,
                        }) => {
                            tracing::debug!(pid, "main process started");
                            stdin_task =
                                Some(tokio::spawn(forward_stdin(stdin.clone(), stdin_tx.clone())));
                            if let Some(tx) = started_tx.take() {
                                let _ = tx.send(Ok(()));
                            }
                        }
                        Ok(GuestMsg::SpawnFailed {
                            session: MAIN_SESSION,
                            message,
                            code,
                        }) => {
                            if let Some(tx) = started_tx.take() {
                                let _ = tx.send(Err(StartFailure::Spawn { message, code }));
                            }
                            send(HostMsg::Shutdown);
                        }
                        Ok(GuestMsg::Exited {
                            session: MAIN_SESSION,
                            code,
                        }) => {
                            if matches!(mode, Mode::Reattach { .. }) {
                                // Held while nobody listened: the take-over worked, and the
                                // process has ended.
                                if let Some(tx) = started_tx.take() {
                                    let _ = tx.send(Ok(()));
                                }
                            }
                            send(HostMsg::Shutdown);
                            break 'outer SessionExit::Exited(code);
                        }
                        Ok(GuestMsg::ShutdownAsked { by }) => {
                            // One at a time: asks while one is handled change nothing. What
                            // the guest says of it is logged: 80 characters at most.
                            let _ = ask_tx.try_send(by.chars().take(80).collect());
                        }
                        Ok(other) => tracing::debug!(?other, "tether message ignored"),
                        Err(()) => {}
                    },
                    _ => {}
                }
            }
        };
        if let Some(t) = stdin_task {
            t.abort();
        }
        exec_routes.close_all();
        guest_transfers.close_all();
        if let Some(tx) = started_tx.take() {
            let why = match &outcome {
                SessionExit::Lost(why) => why.clone(),
                SessionExit::Exited(code) => {
                    format!("the process exited with {code} before it was reported started")
                }
            };
            let failure = if why.starts_with(VIOLATION) {
                StartFailure::Violation(why)
            } else {
                StartFailure::Other(why)
            };
            let _ = tx.send(Err(failure));
        }
        let _ = exit_tx.send(outcome);
        let detail = match tokio::time::timeout(POWER_OFF_GRACE, exited).await {
            Ok(exit) => exit.detail,
            Err(_) => "the VM did not power off by itself".to_string(),
        };
        let _ = off_tx.send(detail);
    });

    match tokio::time::timeout(limit, started_rx).await {
        Ok(Ok(Ok(()))) => Ok(Session {
            control: GuestControl::new(control_tx, asked, routes, transfers, exec_stdin),
            exit: exit_rx,
            vm_off: off_rx,
            shutdown_asked: ask_rx,
        }),
        Ok(Ok(Err(failure))) => Err(failure),
        Ok(Err(_)) => Err(StartFailure::Other(
            "the session ended before the process started".into(),
        )),
        Err(_) => Err(StartFailure::Other(format!(
            "the container VM did not report its process within {} s",
            limit.as_secs()
        ))),
    }
}
