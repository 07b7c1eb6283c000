//! The vSphere backend against vcsim with real guests: a container's VM is made in the VCH's
//! pool, powered on, and its tether's channel reaches the backend over the one listener,
//! proven by the VM's token; its root disk is a child delta of its image's base disk on the
//! datastore; a restarted backend takes a running VM over; a power-off made with govc ends
//! the VM's run; destroy leaves nothing. Checked with govc.

use std::path::Path;
use std::time::{Duration, Instant};

use backend_vsphere::{Channels, VsphereBackend, VsphereConfig};
use hypervisor::{Backend, PowerState, VmConfig};
use tether_proto::{FrameDecoder, GuestMsg};
use tokio::io::AsyncReadExt;
use vcsim::Vcsim;
use vim25::datastore::DatastorePath;

async fn backend(sim: &Vcsim, channels: Channels, work: &Path) -> VsphereBackend {
    let client = vcsim::logged_in(sim).await;
    let (dc, folder, root) = vcsim::placement(&client).await;
    // The VCH's pool: made by the first backend, found by the next.
    let pool = match client
        .find_by_inventory_path("DC0/host/DC0_C0/Resources/vch")
        .await
    {
        Ok(Some(p)) => p,
        _ => {
            let alloc = vim25::pool::Allocation::default();
            let made = client.create_resource_pool(&root, "vch", alloc).await;
            made.unwrap()
        }
    };
    let cfg = VsphereConfig {
        client,
        folder,
        pool,
        datastore: "LocalDS_0".into(),
        datacenter: dc,
        datacenter_name: "DC0".into(),
        image_store: DatastorePath::new("LocalDS_0", "vch/images"),
        work_dir: work.to_path_buf(),
        mke2fs: "mke2fs".into(),
        bridge_network: Some("DC0_DVPG0".into()),
        simulator_guest: Some(Vcsim::guest_launcher().canonicalize().unwrap()),
        bootstrap_iso: None,
        boot_timeout: Duration::from_secs(60),
    };
    VsphereBackend::new(cfg, channels)
}

fn config(id: &str) -> VmConfig {
    VmConfig {
        id: id.into(),
        display_name: format!("web-{}", &id[..12]),
        image_id: "busybox".into(),
        memory_mib: 128,
        cpus: 1,
        nics: vec![],
        disks: vec![],
        shares: vec![],
        host_cpus: vec![],
        cpu_shares: None,
    }
}

/// The first message on a channel (its tether's Hello).
async fn first_message(ch: &mut Box<dyn hypervisor::TetherChannel>) -> GuestMsg {
    let mut dec = FrameDecoder::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(f) = dec.next_frame().unwrap() {
            return f.parse_control().unwrap();
        }
        let n = tokio::time::timeout(Duration::from_secs(30), ch.read(&mut buf))
            .await
            .expect("a Hello within 30 s")
            .unwrap();
        assert!(n > 0, "the channel closed");
        dec.push(&buf[..n]);
    }
}

fn vm_of(sim: &Vcsim, name: &str) -> String {
    sim.govc(&["ls", "-i", &format!("/DC0/vm/{name}")])
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs vcsim, govc and QEMU: make test runs it"]
async fn a_container_vm_runs_on_vcsim_and_its_channel_proves_whose_it_is() {
    let sim = Vcsim::start_with_guests(false);
    let channels = Channels::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = channels.addr();
    let work = tempfile::tempdir().unwrap();
    let b = backend(&sim, channels, work.path()).await;
    assert_eq!(b.name(), "vsphere");
    let id = "3f9c2a7be1d04c5aa1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718";
    // No base disk yet: the VM is refused, and nothing is made.
    let e = b.create_vm(&config(id)).await.unwrap_err().to_string();
    assert!(e.contains("has no base disk on the datastore"), "{e}");
    assert!(b.list_vms().await.unwrap().is_empty());
    // The image's base disk: built from its tree and uploaded, descriptor and extent.
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("etc")).unwrap();
    std::fs::write(tree.path().join("etc/motd"), "from the base disk\n").unwrap();
    let started = Instant::now();
    b.prepare_image("busybox", tree.path()).await.unwrap();
    eprintln!("base disk built and uploaded in {:?}", started.elapsed());
    let files = sim.govc(&["datastore.ls", "-ds", "LocalDS_0", "vch/images/busybox"]);
    let mut files: Vec<&str> = files.lines().collect();
    files.sort();
    assert_eq!(files, ["busybox-flat.vmdk", "busybox.vmdk"]);
    assert_eq!(
        std::fs::read_dir(work.path()).unwrap().count(),
        0,
        "the local copy was kept"
    );
    b.prepare_image("busybox", tree.path()).await.unwrap();
    let weighed = VmConfig {
        cpu_shares: Some(512),
        ..config(id)
    };
    b.create_vm(&weighed).await.unwrap();
    let vm = vm_of(&sim, "web-3f9c2a7be1d0");
    assert!(vm.starts_with("VirtualMachine:"), "{vm}");
    // `--cpu-shares 512` of a one-vCPU VM: half of vSphere's normal 1000 shares.
    let shares = |sim: &Vcsim| {
        let path = "config.cpuAllocation.shares";
        let level = sim.govc(&["object.collect", "-s", &vm, &format!("{path}.level")]);
        let count = sim.govc(&["object.collect", "-s", &vm, &format!("{path}.shares")]);
        format!("{} {}", level.trim(), count.trim())
    };
    assert_eq!(shares(&sim), "custom 500");
    let extra = sim.govc_json(&["object.collect", "-json", &vm, "config.extraConfig"]);
    let extra = extra[0]["Val"]["OptionValue"].as_array().unwrap().clone();
    let value = |k: &str| {
        extra
            .iter()
            .rev()
            .find(|o| o["Key"] == k)
            .and_then(|o| o["Value"].as_str())
            .map(str::to_string)
    };
    assert_eq!(value("guestinfo.vic.id").as_deref(), Some(id));
    assert_eq!(
        value("guestinfo.vic.channel"),
        Some(format!("tcp://{addr}"))
    );
    assert_eq!(value("guestinfo.vic.token").map(|t| t.len()), Some(64));
    let serial = sim.govc(&[
        "device.info",
        "-vm",
        "/DC0/vm/web-3f9c2a7be1d0",
        "serialport-*",
    ]);
    assert!(serial.contains(&format!("tcp://{addr}")), "{serial}");
    // The root disk: in the VM's directory, a child of the image's base disk.
    let disks = sim.govc_json(&[
        "device.info",
        "-json",
        "-vm",
        "/DC0/vm/web-3f9c2a7be1d0",
        "disk-*",
    ]);
    let disks = disks["Devices"].as_array().unwrap();
    assert_eq!(disks.len(), 1, "{disks:?}");
    let backing = &disks[0]["Backing"];
    assert_eq!(
        backing["FileName"],
        "[LocalDS_0] web-3f9c2a7be1d0/web-3f9c2a7be1d0.vmdk"
    );
    assert_eq!(
        backing["Parent"]["FileName"],
        "[LocalDS_0] vch/images/busybox/busybox.vmdk"
    );
    assert!(
        disks[0]["CapacityInKB"].as_u64().unwrap() >= 1 << 20,
        "{disks:?}"
    );
    // An image a VM uses stays.
    let e = b.remove_image("busybox").await.unwrap_err().to_string();
    assert!(e.contains("in use by VM"), "{e}");
    assert_eq!(b.list_vms().await.unwrap(), [id.to_string()]);
    assert_eq!(b.power_state(id).await, PowerState::Off);
    // Power on: the guest boots and its channel, proven by its token, reaches the backend.
    let started = Instant::now();
    let mut on = b.power_on(id).await.unwrap();
    eprintln!(
        "power_on returned the channel after {:?}",
        started.elapsed()
    );
    match first_message(&mut on.channel).await {
        GuestMsg::Hello {
            identity,
            configured,
            ..
        } => {
            assert_eq!(identity.map(|i| i.id).as_deref(), Some(id));
            assert!(!configured);
        }
        other => panic!("first message {other:?}"),
    }
    assert_eq!(b.power_state(id).await, PowerState::On);
    // A running VM takes new shares at once (`docker update --cpu-shares`).
    b.set_cpu_shares(id, Some(2048)).await.unwrap();
    assert_eq!(shares(&sim), "custom 2000");
    // The appliance restarts: a new backend on the same address takes the running VM over
    // (QEMU's serial connection dials again; the tether says Hello again).
    drop(on);
    drop(b);
    // The old listener goes when its task is cancelled, at the runtime's next turn.
    let started = Instant::now();
    let channels = loop {
        match Channels::bind(addr).await {
            Ok(c) => break c,
            Err(e) if started.elapsed() < Duration::from_secs(5) => {
                eprintln!("binding {addr} again: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("binding {addr} again: {e}"),
        }
    };
    let b = backend(&sim, channels, work.path()).await;
    assert_eq!(b.list_vms().await.unwrap(), [id.to_string()]);
    let started = Instant::now();
    let mut again = b.reattach(id).await.unwrap();
    eprintln!(
        "reattach returned the channel after {:?}",
        started.elapsed()
    );
    assert!(matches!(
        first_message(&mut again.channel).await,
        GuestMsg::Hello { .. }
    ));
    // Powered off with govc, as an operator would: the run ends.
    sim.govc(&["vm.power", "-off", "/DC0/vm/web-3f9c2a7be1d0"]);
    let asked = Instant::now();
    let exit = tokio::time::timeout(Duration::from_secs(10), again.exited)
        .await
        .expect("the power-off was seen within 10 s");
    eprintln!(
        "power-off by govc seen {:?} after govc returned",
        asked.elapsed()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    assert!(exit.detail.contains("poweredOff"), "{}", exit.detail);
    assert_eq!(b.power_state(id).await, PowerState::Off);
    assert!(sim.guest_pids().is_empty(), "the guest outlived power-off");
    // Destroyed: gone from vSphere and from the backend's inventory.
    b.destroy_vm(id).await.unwrap();
    assert_eq!(b.power_state(id).await, PowerState::Absent);
    assert!(b.list_vms().await.unwrap().is_empty());
    let all = sim.govc(&["find", "-i", "/", "-type", "m"]);
    assert!(!all.contains(&vm), "{all}");
    // The image's base disk goes when no VM uses it.
    b.remove_image("busybox").await.unwrap();
    let left = sim.govc(&["datastore.ls", "-ds", "LocalDS_0", "vch/images"]);
    assert_eq!(left.trim(), "", "{left}");
    // What is not there yet says so.
    let net = hypervisor::NetworkSpec {
        name: "n1".into(),
        label: "mynet".into(),
        gateway: "172.20.0.1".parse().unwrap(),
        prefix_len: 16,
        isolated: false,
        internal: false,
        external: None,
        ipv6: None,
    };
    let e = b.ensure_network(&net).await.unwrap_err().to_string();
    assert!(
        e.contains("network mynet is not implemented on the vSphere backend yet"),
        "{e}"
    );
}
