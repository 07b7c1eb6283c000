//! The host side of one session over an in-process guest that speaks the real protocol:
//! re-attaching (what a reconnected tether says decides whether the take-over works) and the
//! bounds on what the host queues for a guest that stops reading.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use futures_util::FutureExt;
use hypervisor::PoweredOn;
use tether_proto::{Frame, FrameDecoder, FrameKind, GuestMsg, HostMsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::fake_tests::send;
use crate::guest::session::{self, SessionExit, SessionSink};
use crate::logs::LogStream;
use crate::StdinMsg;

#[derive(Clone, Default)]
struct Collect(Arc<StdMutex<Vec<u8>>>);
impl SessionSink for Collect {
    fn output(&mut self, _stream: LogStream, data: &[u8]) {
        self.0.lock().unwrap().extend_from_slice(data);
    }
}

fn hello(configured: bool, running: Vec<u32>, main_exit: Option<i32>) -> Frame {
    Frame::control(&GuestMsg::Hello {
        version: 1,
        kernel: "fake".into(),
        configured,
        running,
        main_exit,
        ended: vec![],
        identity: None,
    })
}

/// A "VM" on the host end of a pipe, never exiting by itself.
fn powered(host: DuplexStream) -> PoweredOn {
    PoweredOn {
        channel: Box::new(host),
        pid: Some(99),
        exited: futures_util::future::pending().boxed(),
        restored: None,
    }
}

/// The control messages a fake guest reads from the host, one at a time.
#[derive(Default)]
struct HostSays {
    dec: FrameDecoder,
    buf: Vec<u8>,
}

impl HostSays {
    /// The next control message, or None once the host hangs up or is silent for 2 s.
    async fn next(&mut self, guest: &mut DuplexStream) -> Option<HostMsg> {
        loop {
            while let Some(f) = self.dec.next_frame().unwrap() {
                if f.kind == FrameKind::Control {
                    return Some(f.parse_control::<HostMsg>().unwrap());
                }
            }
            self.buf.resize(4096, 0);
            match tokio::time::timeout(Duration::from_secs(2), guest.read(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.dec.push(&self.buf[..n]),
            }
        }
    }
}

/// A "VM" whose tether sends `frames` and then keeps the channel open until `off`.
fn vm(frames: Vec<Frame>) -> (PoweredOn, tokio::task::JoinHandle<Vec<HostMsg>>) {
    let (host, mut guest) = tokio::io::duplex(1 << 16);
    let task = tokio::spawn(async move {
        for f in frames {
            send(&mut guest, f).await;
        }
        // Collect what the host says until it shuts the VM down.
        let mut host = HostSays::default();
        let mut said = Vec::new();
        while let Some(m) = host.next(&mut guest).await {
            let done = matches!(m, HostMsg::Shutdown);
            said.push(m);
            if done {
                break;
            }
        }
        said
    });
    (powered(host), task)
}

fn stdin() -> Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<StdinMsg>>> {
    Arc::new(tokio::sync::Mutex::new(tokio::sync::mpsc::channel(1).1))
}

#[tokio::test]
async fn a_running_process_is_taken_over_and_its_exit_reported() {
    let out = Collect::default();
    let (powered, guest) = vm(vec![
        hello(true, vec![0], None),
        Frame::data(FrameKind::Stdout, 0, b"still here\n".to_vec()),
        Frame::control(&GuestMsg::Exited {
            session: 0,
            code: 3,
        }),
    ]);
    let s = session::reattach(powered, 0, out.clone(), stdin())
        .await
        .expect("re-attached");
    assert_eq!(s.exit.await.unwrap(), SessionExit::Exited(3));
    assert_eq!(out.0.lock().unwrap().as_slice(), b"still here\n");
    let said = guest.await.unwrap();
    assert!(
        !said
            .iter()
            .any(|m| matches!(m, HostMsg::Setup(_) | HostMsg::Spawn { .. })),
        "nothing is set up or started again: {said:?}"
    );
    assert!(matches!(said.last(), Some(HostMsg::Shutdown)), "{said:?}");
}

#[tokio::test]
async fn a_tether_that_missed_the_reconnection_is_asked_to_say_hello() {
    // The new host connected before the tether saw its line go: it says nothing until
    // asked.
    let (host, mut guest) = tokio::io::duplex(1 << 16);
    let task = tokio::spawn(async move {
        let mut host = HostSays::default();
        let first = host.next(&mut guest).await;
        send(&mut guest, hello(true, vec![0], None)).await;
        send(
            &mut guest,
            Frame::control(&GuestMsg::Exited {
                session: 0,
                code: 5,
            }),
        )
        .await;
        first
    });
    let s = session::reattach(powered(host), 0, Collect::default(), stdin())
        .await
        .expect("re-attached once asked");
    assert_eq!(task.await.unwrap(), Some(HostMsg::Resync));
    assert_eq!(s.exit.await.unwrap(), SessionExit::Exited(5));
}

#[tokio::test]
async fn a_restored_vm_is_asked_to_say_hello_and_told_its_macs() {
    // A guest restored from a template waits for its old host: it says nothing until asked,
    // and its setup says which MACs it kept.
    let (host, mut guest) = tokio::io::duplex(1 << 16);
    let task = tokio::spawn(async move {
        let mut host = HostSays::default();
        let first = host.next(&mut guest).await;
        send(&mut guest, hello(false, vec![], None)).await;
        let setup = loop {
            match host.next(&mut guest).await {
                Some(HostMsg::Resync) => continue,
                other => break other,
            }
        };
        send(&mut guest, Frame::control(&GuestMsg::Ready)).await;
        assert!(matches!(
            host.next(&mut guest).await,
            Some(HostMsg::Spawn { .. })
        ));
        let started = GuestMsg::Started { session: 0, pid: 7 };
        send(&mut guest, Frame::control(&started)).await;
        (first, setup)
    });
    let mut powered = powered(host);
    powered.restored = Some(hypervisor::Restored {
        macs: vec![("02:00:00:00:00:00".into(), "02:42:ac:10:00:02".into())],
    });
    let _s = session::start(powered, Default::default(), Collect::default(), stdin())
        .await
        .expect("started once asked");
    let (first, setup) = task.await.unwrap();
    assert_eq!(first, Some(HostMsg::Resync));
    let Some(HostMsg::Setup(setup)) = setup else {
        panic!("{setup:?}")
    };
    assert_eq!(
        setup.restored.unwrap().macs,
        [tether_proto::MacChange {
            from: "02:00:00:00:00:00".into(),
            to: "02:42:ac:10:00:02".into()
        }]
    );
}

#[tokio::test]
async fn output_and_exit_held_while_away_arrive_before_hello() {
    let out = Collect::default();
    let (powered, _guest) = vm(vec![
        Frame::data(FrameKind::Stdout, 0, b"bye\n".to_vec()),
        Frame::control(&GuestMsg::Exited {
            session: 0,
            code: 7,
        }),
        hello(true, vec![], Some(7)),
    ]);
    let s = session::reattach(powered, 0, out.clone(), stdin())
        .await
        .expect("re-attached");
    assert_eq!(s.exit.await.unwrap(), SessionExit::Exited(7));
    assert_eq!(out.0.lock().unwrap().as_slice(), b"bye\n");
}

#[tokio::test]
async fn an_exit_told_in_hello_is_kept() {
    let (powered, _guest) = vm(vec![hello(true, vec![], Some(9))]);
    let s = session::reattach(powered, 0, Collect::default(), stdin())
        .await
        .expect("re-attached");
    assert_eq!(s.exit.await.unwrap(), SessionExit::Exited(9));
}

/// A version-2 tether that has sent `output` (all of it stdout) and maybe ended with
/// `exit`: the new host first reads `stale` bytes (the tail of a frame torn when the old
/// host died), then Hello and one live frame sent before the Resume arrived; the Resume is
/// answered from the output as the tether would, followed by `after` live frames.
fn vm_v2(
    stale: &[u8],
    output: &'static [u8],
    exit: Option<i32>,
    after: Vec<Frame>,
) -> (PoweredOn, tokio::task::JoinHandle<Vec<HostMsg>>) {
    let (host, mut guest) = tokio::io::duplex(1 << 16);
    let stale = stale.to_vec();
    let task = tokio::spawn(async move {
        guest.write_all(&stale).await.unwrap();
        send(
            &mut guest,
            Frame::control(&GuestMsg::Hello {
                version: tether_proto::RESUME_VERSION,
                kernel: "fake".into(),
                configured: true,
                running: if exit.is_some() { vec![] } else { vec![0] },
                main_exit: exit,
                ended: vec![],
                identity: None,
            }),
        )
        .await;
        let tail = output.len().saturating_sub(4);
        send(
            &mut guest,
            Frame::data(FrameKind::Stdout, 0, output[tail..].to_vec()),
        )
        .await;
        let mut host = HostSays::default();
        let mut said = Vec::new();
        while let Some(m) = host.next(&mut guest).await {
            said.push(m.clone());
            match m {
                HostMsg::Resume { session: 0, from } => {
                    let from = (from as usize).min(output.len());
                    send(
                        &mut guest,
                        Frame::control(&GuestMsg::Resumed {
                            session: 0,
                            from: from as u64,
                            lost: 0,
                        }),
                    )
                    .await;
                    // Resent in two frames, the way a window holds them.
                    let mid = from + (output.len() - from) / 2;
                    for part in [&output[from..mid], &output[mid..]] {
                        send(&mut guest, Frame::data(FrameKind::Stdout, 0, part.to_vec())).await;
                    }
                    if let Some(code) = exit {
                        send(
                            &mut guest,
                            Frame::control(&GuestMsg::Exited { session: 0, code }),
                        )
                        .await;
                    }
                    for f in after.clone() {
                        send(&mut guest, f).await;
                    }
                }
                HostMsg::Shutdown => return said,
                _ => {}
            }
        }
        said
    });
    (powered(host), task)
}

#[tokio::test]
async fn output_lost_in_flight_is_resent_from_what_the_log_holds() {
    let out = Collect::default();
    // The log holds "line1"; the rest was in flight when the appliance died. A torn
    // frame's tail, even one that looks like a Hello, comes first and is skipped.
    let (powered, guest) = vm_v2(
        br#"xx{"type":"hello" torn"#,
        b"line1\nline2\nline3\n",
        Some(4),
        vec![],
    );
    let s = session::reattach(powered, 5, out.clone(), stdin())
        .await
        .expect("re-attached");
    assert_eq!(s.exit.await.unwrap(), SessionExit::Exited(4));
    assert_eq!(out.0.lock().unwrap().as_slice(), b"\nline2\nline3\n");
    let said = guest.await.unwrap();
    assert_eq!(
        said.first(),
        Some(&HostMsg::Resume {
            session: 0,
            from: 5
        }),
        "{said:?}"
    );
    assert!(matches!(said.last(), Some(HostMsg::Shutdown)), "{said:?}");
}

#[tokio::test]
async fn a_running_process_resumes_then_streams_live() {
    let out = Collect::default();
    let (powered, _guest) = vm_v2(
        b"",
        b"abc\n",
        None,
        vec![
            Frame::data(FrameKind::Stdout, 0, b"live\n".to_vec()),
            Frame::control(&GuestMsg::Exited {
                session: 0,
                code: 0,
            }),
        ],
    );
    let s = session::reattach(powered, 0, out.clone(), stdin())
        .await
        .expect("re-attached");
    assert_eq!(s.exit.await.unwrap(), SessionExit::Exited(0));
    assert_eq!(out.0.lock().unwrap().as_slice(), b"abc\nlive\n");
}

#[tokio::test]
async fn a_vm_that_was_never_set_up_cannot_be_taken_over() {
    let (powered, _guest) = vm(vec![hello(false, vec![], None)]);
    let err = session::reattach(powered, 0, Collect::default(), stdin())
        .await
        .err()
        .expect("refused");
    match err {
        session::StartFailure::Other(m) => assert!(m.contains("no process"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// A guest that starts its process, then reads nothing more until `resume` fires; it then
/// reads everything and returns the stdin bytes and signals it got.
fn stalled_guest(
    resume: tokio::sync::oneshot::Receiver<()>,
) -> (PoweredOn, tokio::task::JoinHandle<(usize, usize)>) {
    let (host, mut guest) = tokio::io::duplex(1 << 16);
    let task = tokio::spawn(async move {
        let mut host = HostSays::default();
        send(&mut guest, hello(false, vec![], None)).await;
        assert!(matches!(
            host.next(&mut guest).await,
            Some(HostMsg::Setup(_))
        ));
        send(&mut guest, Frame::control(&GuestMsg::Ready)).await;
        assert!(matches!(
            host.next(&mut guest).await,
            Some(HostMsg::Spawn { .. })
        ));
        let started = GuestMsg::Started { session: 0, pid: 7 };
        send(&mut guest, Frame::control(&started)).await;
        let _ = resume.await;
        let (mut stdin, mut signals) = (0, 0);
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(2), guest.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
            host.dec.push(&buf[..n]);
            while let Some(f) = host.dec.next_frame().unwrap() {
                match f.kind {
                    FrameKind::Stdin => stdin += f.payload.len(),
                    FrameKind::Control => {
                        if let HostMsg::Signal { .. } = f.parse_control::<HostMsg>().unwrap() {
                            signals += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
        (stdin, signals)
    });
    (powered(host), task)
}

#[tokio::test]
async fn a_guest_that_stops_reading_holds_back_its_writers_not_the_hosts_memory() {
    const CHUNK: usize = 32 * 1024;
    let (resume, resumed) = tokio::sync::oneshot::channel();
    let (powered, guest) = stalled_guest(resumed);
    let (stdin_tx, stdin_rx) = tokio::sync::mpsc::channel(session::STDIN_QUEUE);
    let stdin = Arc::new(tokio::sync::Mutex::new(stdin_rx));
    let s = session::start(powered, Default::default(), Collect::default(), stdin)
        .await
        .expect("started");

    // Stdin: a client writing 32 MiB is held back once the queues and the pipe are full.
    let mut accepted = 0;
    for _ in 0..1024 {
        let msg = StdinMsg::Data(vec![b'x'; CHUNK].into());
        match tokio::time::timeout(Duration::from_millis(300), stdin_tx.send(msg)).await {
            Ok(sent) => sent.expect("the session holds stdin"),
            Err(_) => break,
        }
        accepted += 1;
    }
    let bound = session::STDIN_QUEUE + session::STDIN_FRAMES + (1 << 16) / CHUNK + 2;
    assert!(
        accepted < bound,
        "{accepted} chunks of 32 KiB queued for a guest that reads nothing (bound {bound})"
    );

    // Control: refused at once when full, never waited for.
    let mut queued = 0;
    while s.control.signal(15).is_ok() {
        queued += 1;
        assert!(
            queued <= session::CONTROL_QUEUE,
            "the control queue is unbounded"
        );
    }
    assert_eq!(
        s.control.resize(24, 80),
        Err(session::Undelivered::NotReading)
    );
    assert_eq!(queued, session::CONTROL_QUEUE);

    // Once the guest reads again, everything queued arrives: held back, never dropped.
    resume.send(()).unwrap();
    let (stdin_bytes, signals) = guest.await.unwrap();
    assert_eq!(stdin_bytes, accepted * CHUNK);
    assert_eq!(signals, session::CONTROL_QUEUE);
}
