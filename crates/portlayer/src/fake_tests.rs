//! Lifecycle tests of [`Containers`] over a recording fake backend whose "VM" is an in-process
//! tether speaking the real protocol over a duplex pipe. The real QEMU path is covered by the
//! black-box tests; these pin the port layer's own logic.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use hypervisor::fake::{FakeBackend, FAKE_ROOT_DEVICE, FAKE_ROOT_FSTYPE};
use tether_proto::{Frame, FrameDecoder, FrameKind, GuestMsg, HostMsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::oneshot;

use crate::*;

pub(crate) const IMAGE: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000001";

struct FakeImages(PathBuf);
impl Images for FakeImages {
    fn rootfs_of(&self, image_id: &str) -> Option<PathBuf> {
        (image_id == IMAGE).then(|| self.0.clone())
    }
}

/// The fake backend, its VMs running [`fake_tether`].
pub(crate) fn fake_backend() -> FakeBackend {
    FakeBackend::new(Arc::new(|io, off| fake_tether(io, off).boxed()))
}

pub(crate) async fn send(io: &mut DuplexStream, frame: Frame) {
    io.write_all(&tether_proto::encode(&frame)).await.unwrap();
}

/// A tether in miniature. Commands: `echo ARGS…`, `exit N`, `nosuch`, `wait-signal`, `cat`,
/// `rogue`, which says Started twice, and `shut-down`, whose VM is asked to shut down once it
/// runs (then it waits for a signal).
async fn fake_tether(mut io: DuplexStream, off: oneshot::Sender<()>) {
    send(
        &mut io,
        Frame::control(&GuestMsg::Hello {
            version: tether_proto::SHUTDOWN_VERSION,
            kernel: "fake".into(),
            configured: false,
            running: vec![],
            main_exit: None,
            ended: vec![],
            identity: None,
        }),
    )
    .await;
    let mut dec = FrameDecoder::new();
    let mut buf = vec![0u8; 4096];
    let mut argv: Vec<String> = Vec::new();
    loop {
        let n = match io.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        dec.push(&buf[..n]);
        while let Some(f) = dec.next_frame().unwrap() {
            let out = |data: &str| Frame::data(FrameKind::Stdout, 0, data.as_bytes().to_vec());
            match f.kind {
                FrameKind::Control => match f.parse_control::<HostMsg>().unwrap() {
                    // The root disk is where the backend says it is.
                    HostMsg::Setup(setup)
                        if (setup.root_device.as_str(), setup.root_fstype.as_str())
                            == (FAKE_ROOT_DEVICE, FAKE_ROOT_FSTYPE) =>
                    {
                        send(&mut io, Frame::control(&GuestMsg::Ready)).await
                    }
                    HostMsg::Setup(setup) => {
                        let message = format!("no root disk at {}", setup.root_device);
                        send(&mut io, Frame::control(&GuestMsg::SetupFailed { message })).await
                    }
                    HostMsg::Spawn { process, .. } => {
                        argv = process.argv.clone();
                        if argv[0] == "nosuch" {
                            let msg = GuestMsg::SpawnFailed {
                                session: 0,
                                message: "exec: \"nosuch\": executable file not found in $PATH"
                                    .into(),
                                code: 127,
                            };
                            send(&mut io, Frame::control(&msg)).await;
                            continue;
                        }
                        send(
                            &mut io,
                            Frame::control(&GuestMsg::Started { session: 0, pid: 7 }),
                        )
                        .await;
                        match argv[0].as_str() {
                            "shut-down" => {
                                let by = "the power button".to_string();
                                let ask = GuestMsg::ShutdownAsked { by };
                                send(&mut io, Frame::control(&ask)).await;
                            }
                            "rogue" => {
                                let again = GuestMsg::Started { session: 0, pid: 8 };
                                send(&mut io, Frame::control(&again)).await;
                            }
                            "echo" => {
                                send(&mut io, out(&format!("{}\n", argv[1..].join(" ")))).await;
                                send(
                                    &mut io,
                                    Frame::control(&GuestMsg::Exited {
                                        session: 0,
                                        code: 0,
                                    }),
                                )
                                .await;
                            }
                            "exit" => {
                                let code = argv[1].parse().unwrap();
                                send(
                                    &mut io,
                                    Frame::control(&GuestMsg::Exited { session: 0, code }),
                                )
                                .await;
                            }
                            _ => {}
                        }
                    }
                    HostMsg::Signal { signal, .. }
                        if argv[0] == "wait-signal" || argv[0] == "shut-down" =>
                    {
                        send(&mut io, out(&format!("got {signal}\n"))).await;
                        let msg = GuestMsg::Exited {
                            session: 0,
                            code: 128 + signal,
                        };
                        send(&mut io, Frame::control(&msg)).await;
                    }
                    HostMsg::Shutdown => {
                        let _ = off.send(());
                        return;
                    }
                    _ => {}
                },
                FrameKind::Stdin => {
                    send(&mut io, Frame::data(FrameKind::Stdout, 0, f.payload)).await
                }
                FrameKind::StdinClosed => {
                    send(
                        &mut io,
                        Frame::control(&GuestMsg::Exited {
                            session: 0,
                            code: 0,
                        }),
                    )
                    .await;
                }
                _ => {}
            }
        }
    }
    let _ = off.send(());
}

pub(crate) async fn setup() -> (tempfile::TempDir, Containers, Arc<FakeBackend>) {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(fake_backend());
    let c = open(dir.path(), backend.clone()).await;
    (dir, c, backend)
}

pub(crate) async fn open(dir: &Path, backend: Arc<FakeBackend>) -> Containers {
    open_with(dir, backend, Limits::default()).await
}

async fn open_with(dir: &Path, backend: Arc<FakeBackend>, limits: Limits) -> Containers {
    Containers::open(
        ContainersConfig {
            networks: vec![Network::default_bridge()],
            network_pools: vec![crate::networks::Cidr::parse("172.17.0.0/16").unwrap()],
            state_dir: dir.join("containers"),
            limits,
            database: None,
            vch_name: "vch".into(),
            volume_stores: vec![crate::VolumeStore {
                label: "default".into(),
                dir: dir.join("volumes"),
            }],
            bind_paths: Vec::new(),
        },
        backend,
        Arc::new(FakeImages(dir.join("rootfs"))),
        Arc::new(EventBus::new()),
    )
    .await
    .unwrap()
}

pub(crate) fn spec(name: &str, argv: &[&str]) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image_ref: "busybox".into(),
        image_id: IMAGE.into(),
        process: ProcessSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
        memory_mib: 64,
        cpus: 1,
        ..Default::default()
    }
}

async fn collect(mut output: crate::follow::Follower) -> String {
    let mut s = String::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(5), output.next()).await {
        s.push_str(&String::from_utf8_lossy(&e.data));
    }
    s
}

#[tokio::test]
async fn run_streams_output_records_exit_and_keeps_logs() {
    let (_d, c, backend) = setup().await;
    let rec = c.create(spec("hello", &["echo", "hello"])).await.unwrap();
    let (_, streams) = c.attach("hello", false).unwrap();
    c.start(&rec.id).await.unwrap();
    assert_eq!(collect(streams.output).await, "hello\n");
    assert_eq!(c.wait("hello", WaitCondition::NotRunning).await.unwrap(), 0);
    let rec = c.get(&rec.id[..8]).unwrap();
    assert_eq!(rec.state.status, Status::Exited);
    let (entries, _) = logs::read_all(&c.log_path(&rec.id)).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(&entries[0].data[..], b"hello\n");
    assert!(rec
        .spec
        .process
        .env
        .iter()
        .any(|e| e == &format!("HOSTNAME={}", &rec.id[..12])));
    let calls = backend.calls();
    assert_eq!(
        calls[..2],
        ["ensure_network bridge", "listen 172.16.0.1:53"],
        "the networks are made at open, each with its DNS server on its gateway"
    );
    let calls = &calls[2..];
    assert_eq!(
        calls[0], "list_vms ",
        "recovery reads the inventory at open"
    );
    assert_eq!(calls[1], format!("prepare_image {IMAGE}"));
    let short = &rec.id[..12];
    let on = calls.iter().position(|c| *c == format!("power_on {short}"));
    let nics = calls
        .iter()
        .position(|c| c.starts_with(&format!("set_nics {short}")));
    assert!(
        nics.is_some() && nics < on,
        "the interfaces are set from the record first: {calls:?}"
    );
}

#[tokio::test]
async fn exit_codes_and_next_exit_waits() {
    let (_d, c, _) = setup().await;
    let rec = c.create(spec("three", &["exit", "3"])).await.unwrap();
    let waiter = {
        let c = c.clone();
        let id = rec.id.clone();
        tokio::spawn(async move { c.wait(&id, WaitCondition::NextExit).await })
    };
    tokio::task::yield_now().await;
    c.start("three").await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), 3);
    assert_eq!(c.get("three").unwrap().state.exit_code, 3);
}

#[tokio::test]
async fn spawn_failure_is_reported_and_leaves_the_container_created() {
    let (_d, c, _) = setup().await;
    c.create(spec("bad", &["nosuch"])).await.unwrap();
    match c.start("bad").await {
        Err(Error::Spawn { code, message }) => {
            assert_eq!(code, 127);
            assert!(message.contains("executable file not found"));
        }
        other => panic!("expected a spawn failure, got {other:?}"),
    }
    let rec = c.get("bad").unwrap();
    assert_eq!(rec.state.status, Status::Created);
    assert!(rec.state.error.contains("executable file not found"));
}

#[tokio::test]
async fn stop_sends_the_stop_signal_and_kill_needs_a_running_container() {
    let (_d, c, _) = setup().await;
    let mut s = spec("sig", &["wait-signal"]);
    s.stop_signal = Some("SIGUSR1".into());
    c.create(s).await.unwrap();
    assert!(matches!(
        c.kill("sig", "TERM").await,
        Err(Error::NotRunning(_))
    ));
    c.start("sig").await.unwrap();
    assert!(matches!(
        c.start("sig").await,
        Err(Error::AlreadyRunning(_))
    ));
    let mut events = c.events().subscribe();
    assert!(c.stop("sig", Some(5), None).await.unwrap());
    assert_eq!(c.get("sig").unwrap().state.exit_code, 128 + 10);
    // As dockerd says it: the signal, the run's end, the stop.
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e.action);
    }
    assert_eq!(seen, ["kill", "die", "stop"]);
    assert!(
        !c.stop("sig", Some(5), None).await.unwrap(),
        "stopping a stopped container is a no-op"
    );
    assert!(matches!(
        c.kill("sig", "NOPE").await,
        Err(Error::InvalidSignal(_))
    ));
}

#[tokio::test]
async fn stdin_reaches_the_guest_and_close_ends_it() {
    let (_d, c, _) = setup().await;
    let mut s = spec("cat", &["cat"]);
    s.process.open_stdin = true;
    s.process.stdin_once = true;
    c.create(s).await.unwrap();
    let (_, streams) = c.attach("cat", true).unwrap();
    let stdin = streams.stdin.clone().expect("stdin offered");
    stdin
        .send(StdinMsg::Data("typed before start\n".into()))
        .await
        .unwrap();
    stdin.send(StdinMsg::Close).await.unwrap();
    c.start("cat").await.unwrap();
    assert_eq!(collect(streams.output).await, "typed before start\n");
    assert_eq!(c.wait("cat", WaitCondition::NotRunning).await.unwrap(), 0);
}

#[tokio::test]
async fn auto_remove_removes_after_exit() {
    let (_d, c, backend) = setup().await;
    let mut s = spec("gone", &["exit", "4"]);
    s.auto_remove = true;
    let rec = c.create(s).await.unwrap();
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move { c.wait("gone", WaitCondition::Removed).await })
    };
    tokio::task::yield_now().await;
    c.start("gone").await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), 4);
    assert!(matches!(c.get("gone"), Err(Error::NoSuchContainer(_))));
    assert!(backend
        .calls()
        .contains(&format!("destroy_vm {}", &rec.id[..12])));
    assert!(!c.container_dir(&rec.id).exists());
}

#[tokio::test]
async fn names_are_unique_and_records_survive_a_restart() {
    let (d, c, backend) = setup().await;
    let rec = c.create(spec("web", &["echo", "x"])).await.unwrap();
    let err = c.create(spec("web", &["echo", "y"])).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Conflict. The container name \"/web\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.", rec.id)
    );
    assert!(matches!(
        c.create(spec("bad name", &["x"])).await,
        Err(Error::InvalidName(_))
    ));
    let mut missing = spec("noimg", &["x"]);
    missing.image_id = "sha256:ffff".into();
    assert!(matches!(
        c.create(missing).await,
        Err(Error::NoSuchImage(_))
    ));
    assert!(matches!(c.get("nosuch"), Err(Error::NoSuchContainer(_))));
    drop(c);
    let again = open(d.path(), backend).await;
    assert_eq!(again.list().len(), 1);
    assert_eq!(again.get("web").unwrap().id, rec.id);
    again.remove("web", false, false).await.unwrap();
    assert!(again.list().is_empty());
}

#[tokio::test]
async fn a_guest_that_breaks_the_protocol_is_powered_off_with_the_reason_recorded() {
    let (_d, c, backend) = setup().await;
    backend.report_on(true);
    let rec = c.create(spec("rogue", &["rogue"])).await.unwrap();
    c.start("rogue").await.unwrap();
    assert_eq!(
        c.wait("rogue", WaitCondition::NotRunning).await.unwrap(),
        137
    );
    let error = c.get("rogue").unwrap().state.error;
    assert!(
        error.contains("tether protocol violation: Started where the protocol does not allow it"),
        "{error}"
    );
    let off = format!("power_off {}", &rec.id[..12]);
    for _ in 0..100 {
        if backend.calls().contains(&off) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the VM was not powered off: {:?}", backend.calls());
}

#[tokio::test]
async fn a_vm_whose_record_cannot_be_read_is_left_alone_and_one_without_a_record_goes() {
    let (d, c, backend) = setup().await;
    let rec = c.create(spec("later", &["true"])).await.unwrap();
    drop(c);
    // The record as a version with another layout wrote it; a VM of a create cut short.
    let db = crate::state::open_database(&d.path().join("containers")).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut t = tx
            .open_table(redb::TableDefinition::<&str, &[u8]>::new("containers"))
            .unwrap();
        t.insert(rec.id.as_str(), br#"{"id":"x","spec":[]}"#.as_slice())
            .unwrap();
    }
    tx.commit().unwrap();
    drop(db);
    let stray = format!("{:064x}", 7);
    backend.set_inventory(vec![rec.id.clone(), stray.clone()]);
    let again = open(d.path(), backend.clone()).await;
    assert!(again.list().is_empty());
    assert_eq!(again.quarantined().len(), 1);
    assert_eq!(again.quarantined()[0].id, rec.id);
    let calls = backend.calls();
    assert!(
        calls.contains(&format!("destroy_vm {}", &stray[..12])),
        "{calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.contains(&rec.id[..12]) && c != &format!("create_vm {}", &rec.id[..12])),
        "nothing but its create touched the quarantined container's VM: {calls:?}"
    );
}

#[tokio::test]
async fn the_container_limit_refuses_one_more_create_with_vics_words_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(fake_backend());
    let limits = Limits {
        max_containers: Some(1),
        ..Limits::default()
    };
    let c = open_with(dir.path(), backend.clone(), limits).await;
    let first = c.create(spec("one", &["echo", "1"])).await.unwrap();
    let err = c.create(spec("two", &["echo", "2"])).await.unwrap_err();
    assert!(matches!(err, Error::Start(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "Container count exceeds limit 1. containers: 1"
    );
    assert_eq!(c.list().len(), 1);
    assert_eq!(
        backend
            .calls()
            .iter()
            .filter(|call| call.starts_with("create_vm"))
            .count(),
        1
    );
    // Removing one makes room again.
    c.remove(&first.id, true, false).await.unwrap();
    c.create(spec("two", &["echo", "2"])).await.unwrap();
}

#[tokio::test]
async fn memory_and_vcpu_limits_count_running_containers_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(fake_backend());
    let limits = Limits {
        memory_mib: Some(100),
        cpus: Some(2),
        ..Limits::default()
    };
    let c = open_with(dir.path(), backend.clone(), limits).await;
    // Created containers use nothing: both fit until they run.
    let a = c.create(spec("a", &["wait-signal"])).await.unwrap();
    let b = c.create(spec("b", &["wait-signal"])).await.unwrap();
    c.start(&a.id).await.unwrap();
    let err = c.start(&b.id).await.unwrap_err().to_string();
    assert_eq!(
        err,
        "Insufficient resources: the container needs 64 MiB of memory, running containers use 64 MiB of the VCH's 100 MiB"
    );
    assert_eq!(c.get(&b.id).unwrap().state.status, Status::Created);
    assert!(!backend
        .calls()
        .contains(&format!("power_on {}", &b.id[..12])));
    // Once `a` has exited, `b` fits.
    c.kill(&a.id, "TERM").await.unwrap();
    assert_eq!(c.wait(&a.id, WaitCondition::NotRunning).await.unwrap(), 143);
    c.start(&b.id).await.unwrap();
    c.kill(&b.id, "TERM").await.unwrap();
    c.wait(&b.id, WaitCondition::NotRunning).await.unwrap();
}

#[tokio::test]
async fn backend_failures_leave_nothing_half_made_and_are_recorded() {
    let (_d, c, backend) = setup().await;
    backend.fail_next("create_vm", "the datastore is full");
    let err = c.create(spec("nope", &["exit", "0"])).await.unwrap_err();
    assert!(err.to_string().contains("the datastore is full"), "{err}");
    assert!(c.get("nope").is_err(), "no record is left");
    assert!(
        backend.calls().iter().any(|l| l.starts_with("destroy_vm ")),
        "what create made is removed: {:?}",
        backend.calls()
    );

    let rec = c.create(spec("cold", &["exit", "0"])).await.unwrap();
    backend.fail_next("power_on", "no host can run it");
    let err = c.start("cold").await.unwrap_err();
    assert!(err.to_string().contains("no host can run it"), "{err}");
    let after = c.get(&rec.id).unwrap();
    assert_eq!(after.state.status, Status::Created);
    assert!(after.state.error.contains("no host can run it"));
    // The next start works: the failure was the backend's, once.
    c.start("cold").await.unwrap();
    assert_eq!(c.wait("cold", WaitCondition::NotRunning).await.unwrap(), 0);
}

#[tokio::test]
async fn endpoints_get_addresses_no_other_record_holds_and_free_them_with_the_record() {
    let (dir, c, backend) = setup().await;
    assert_eq!(backend.calls()[0], "ensure_network bridge");
    let on_bridge = |name: &str| ContainerSpec {
        networks: vec!["bridge".into()],
        ..spec(name, &["true"])
    };
    let a = c.create(on_bridge("a")).await.unwrap();
    let b = c.create(on_bridge("b")).await.unwrap();
    let ip = |r: &ContainerRecord| r.spec.endpoints[0].ip.to_string();
    assert_eq!(
        (ip(&a).as_str(), ip(&b).as_str()),
        ("172.16.0.2", "172.16.0.3")
    );
    assert_eq!(a.spec.endpoints[0].mac, "02:42:ac:10:00:02");
    let none = c.create(spec("none", &["true"])).await.unwrap();
    assert!(
        none.spec.endpoints.is_empty(),
        "no network asked for: none given"
    );
    let err = c
        .create(ContainerSpec {
            networks: vec!["nosuch".into()],
            ..spec("x", &["true"])
        })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "network nosuch not found");
    // The address is the record's: it survives a reopen, and goes with the record.
    drop(c);
    let c = open(dir.path(), backend.clone()).await;
    let c2 = c.create(on_bridge("c")).await.unwrap();
    assert_eq!(ip(&c2), "172.16.0.4");
    c.remove(&a.id, true, false).await.unwrap();
    let d = c.create(on_bridge("d")).await.unwrap();
    assert_eq!(ip(&d), "172.16.0.2", "a's address is free again");
}
