//! A VM on vcsim with a real guest: powered on through the vSphere API, it boots vic's
//! bootstrap (kernel and tether) in a QEMU microvm whose serial line dials a listener here
//! over TCP, as a container VM's network serial port dials the appliance; asked with
//! `Resync`, as a host on a serial line asks, its tether says Hello. Powered off, the
//! guest goes and the channel closes; powered on again, it boots again; destroyed, nothing of
//! it is left.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tether_proto::{Frame, FrameDecoder, FrameKind, GuestMsg, HostMsg, PROTOCOL_VERSION};
use vcsim::Vcsim;
use vim25::vm::VmSpec;
use vim25::MoRef;

const T: Duration = Duration::from_secs(30);

/// Accepts the guest's connection and, sending `Resync` every second, reads until its tether
/// says Hello; the stream, and how long that took.
fn hello(listener: &TcpListener, limit: Duration) -> (TcpStream, GuestMsg, Duration) {
    let started = Instant::now();
    listener.set_nonblocking(true).unwrap();
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    started.elapsed() < limit,
                    "no guest connected within {limit:?}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut dec = FrameDecoder::new();
    let mut buf = [0u8; 4096];
    let mut reader = stream.try_clone().unwrap();
    let resync = tether_proto::encode(&Frame::control(&HostMsg::Resync));
    loop {
        assert!(started.elapsed() < limit, "no Hello within {limit:?}");
        (&stream).write_all(&resync).unwrap();
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => panic!("reading the guest's channel: {e}"),
        };
        assert!(n > 0, "the guest closed its channel before saying Hello");
        dec.push(&buf[..n]);
        // What a serial line carried before the tether set it raw is not a frame (its echo
        // of bytes the host sent early): as the appliance does, read from the Hello on.
        if !dec.skip_to_hello(&mut Vec::new()) {
            continue;
        }
        while let Some(frame) = dec.next_frame().expect("a frame") {
            if frame.kind == FrameKind::Control {
                let msg: GuestMsg = frame.parse_control().expect("a guest message");
                if matches!(msg, GuestMsg::Hello { .. }) {
                    return (stream, msg, started.elapsed());
                }
            }
        }
    }
}

/// Whether the guest's side of `stream` is closed within `limit`.
fn closes(mut stream: TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs vcsim, govc and QEMU: make test runs it"]
async fn a_vcsim_vm_boots_the_tether_whose_channel_dials_the_host() {
    let sim = Vcsim::start_with_guests(false);
    let c = vcsim::logged_in(&sim).await;
    let (_, folder, pool) = vcsim::placement(&c).await;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let channel = format!("tcp://{}", listener.local_addr().unwrap());
    let launcher = Vcsim::guest_launcher().canonicalize().unwrap();
    let run = serde_json::to_string(&[launcher.to_string_lossy()]).unwrap();
    let spec = VmSpec {
        name: "g1".into(),
        guest_id: "otherLinux64Guest".into(),
        files: "[LocalDS_0]".into(),
        memory_mib: 128,
        cpus: 1,
        cpu_shares: None,
        annotation: None,
        extra_config: vec![
            ("RUN.container".into(), run),
            ("guestinfo.vic.channel".into(), channel),
        ],
        devices: Vec::new(),
    };
    let vm: MoRef = c.create_vm(&folder, &pool, None, &spec, T).await.unwrap();
    let arg = format!("{}:{}", vm.kind, vm.value);
    // Powered on: the guest boots and its tether says Hello over the channel.
    c.power_on(&vm, T).await.unwrap();
    let listener2 = listener.try_clone().unwrap();
    let (stream, msg, took) =
        tokio::task::spawn_blocking(move || hello(&listener2, Duration::from_secs(60)))
            .await
            .unwrap();
    eprintln!("tether Hello {took:?} after power-on: {msg:?}");
    let GuestMsg::Hello {
        version,
        kernel,
        configured,
        ..
    } = msg
    else {
        unreachable!()
    };
    assert_eq!(version, PROTOCOL_VERSION);
    assert!(kernel.starts_with("6."), "{kernel}");
    assert!(!configured);
    let pids = sim.guest_pids();
    assert_eq!(pids.len(), 1);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pids[0])).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline.contains("qemu-system-x86_64 -M microvm"),
        "the guest is {cmdline}"
    );
    let state = sim.govc(&["object.collect", "-s", &arg, "runtime.powerState"]);
    assert_eq!(state.trim(), "poweredOn");
    let ip = sim.govc(&["object.collect", "-s", &arg, "guest.ipAddress"]);
    assert_eq!(
        ip.trim(),
        "127.0.0.1",
        "the guest's address, as vcsim reports it"
    );
    // Powered off from vSphere: the guest goes and the channel closes.
    c.power_off(&vm, T).await.unwrap();
    let closed = tokio::task::spawn_blocking(move || closes(stream, Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(closed, "the channel stayed open after power-off");
    assert!(sim.guest_pids().is_empty(), "the guest outlived power-off");
    // On again: a new boot, a new Hello.
    c.power_on(&vm, T).await.unwrap();
    let listener3 = listener.try_clone().unwrap();
    let (stream, _, took) =
        tokio::task::spawn_blocking(move || hello(&listener3, Duration::from_secs(60)))
            .await
            .unwrap();
    eprintln!("tether Hello {took:?} after the second power-on");
    // Destroyed (off first): nothing left running.
    c.power_off(&vm, T).await.unwrap();
    c.destroy(&vm, T).await.unwrap();
    drop(stream);
    assert!(sim.guest_pids().is_empty());
    assert!(!sim.govc(&["find", "-i", "/", "-type", "m"]).contains(&arg));
}
