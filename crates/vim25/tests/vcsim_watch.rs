//! Pools and vApps, VM devices, watches and events, settings and disks against vcsim,
//! checked with govc. Changes made by govc (another client, as an operator would) must reach
//! a watch and the event history.

use std::time::{Duration, Instant};

use vcsim::{logged_in, placement, Vcsim};
use vim25::datastore::DatastorePath;
use vim25::devices::{Device, DiskMode, NicBacking};
use vim25::events::{EventCollector, VM_EVENTS};
use vim25::pool::Allocation;
use vim25::updates::{UpdateKind, Watch};
use vim25::vm::VmSpec;
use vim25::MoRef;

const T: Duration = Duration::from_secs(30);

fn arg(r: &MoRef) -> String {
    format!("{}:{}", r.kind, r.value)
}

fn spec(name: &str, devices: Vec<Device>) -> VmSpec {
    VmSpec {
        name: name.into(),
        guest_id: "otherLinux64Guest".into(),
        files: "[LocalDS_0]".into(),
        memory_mib: 256,
        cpus: 1,
        cpu_shares: None,
        annotation: None,
        extra_config: Vec::new(),
        devices,
    }
}

#[tokio::test]
#[ignore = "needs vcsim and govc: make test runs it"]
async fn a_vapp_and_a_pool_hold_vms_with_the_devices_asked_for() {
    let sim = Vcsim::start(false);
    let c = logged_in(&sim).await;
    let (dc, folder, root_pool) = placement(&c).await;
    let limits = Allocation {
        cpu_limit_mhz: Some(2000),
        memory_limit_mib: Some(4096),
    };
    let vapp = c
        .create_vapp(&root_pool, "vch1", &folder, limits)
        .await
        .unwrap();
    assert_eq!(vapp.kind, "VirtualApp");
    let found = sim.govc(&["find", "-i", "/", "-type", "a", "-name", "vch1"]);
    assert_eq!(found.trim(), arg(&vapp));
    let mem = sim.govc(&[
        "object.collect",
        "-s",
        &arg(&vapp),
        "config.memoryAllocation.limit",
    ]);
    assert_eq!(mem.trim(), "4096");
    let pool = c
        .create_resource_pool(&root_pool, "vch2", Allocation::default())
        .await
        .unwrap();
    let cpu = sim.govc(&[
        "object.collect",
        "-s",
        &arg(&pool),
        "config.cpuAllocation.limit",
    ]);
    assert_eq!(cpu.trim(), "-1");
    c.set_allocation(&pool, limits).await.unwrap();
    let cpu = sim.govc(&[
        "object.collect",
        "-s",
        &arg(&pool),
        "config.cpuAllocation.limit",
    ]);
    assert_eq!(cpu.trim(), "2000");
    // An ISO for the CD-ROM, a disk made with the VM, a NIC with a set MAC, a serial port.
    let iso = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(iso.path(), b"an ISO image").unwrap();
    let iso_path = DatastorePath::new("LocalDS_0", "vch1/bootstrap.iso");
    c.make_directory(&dc, &DatastorePath::new("LocalDS_0", "vch1"))
        .await
        .unwrap();
    c.upload("DC0", iso.path(), &iso_path, T).await.unwrap();
    // A standard port group, and a distributed one (by its switch's UUID and its key).
    let standard = c.nic_backing("DC0", "VM Network").await.unwrap();
    assert_eq!(standard, NicBacking::Network("VM Network".into()));
    let distributed = c.nic_backing("DC0", "DC0_DVPG0").await.unwrap();
    let NicBacking::Distributed {
        switch_uuid,
        portgroup_key,
    } = &distributed
    else {
        panic!("DC0_DVPG0 is {distributed:?}");
    };
    let govc_key = sim.govc(&["object.collect", "-s", "/DC0/network/DC0_DVPG0", "key"]);
    assert_eq!(portgroup_key, govc_key.trim());
    let govc_uuid = sim.govc(&["object.collect", "-s", "/DC0/network/DVS0", "uuid"]);
    assert_eq!(switch_uuid, govc_uuid.trim());
    let e = c.nic_backing("DC0", "no such network").await.unwrap_err();
    assert!(
        e.to_string()
            .contains("network 'no such network' not found"),
        "{e}"
    );
    let devices = vec![
        Device::Nic {
            network: standard,
            mac: Some("00:50:56:aa:bb:01".into()),
        },
        Device::Nic {
            network: distributed.clone(),
            mac: Some("00:50:56:aa:bb:02".into()),
        },
        Device::SerialUri {
            uri: "tcp://127.0.0.1:2377".into(),
            client: true,
        },
        Device::Cdrom {
            iso: iso_path.clone(),
        },
        Device::Disk {
            path: DatastorePath::new("LocalDS_0", "vch1/c1.vmdk"),
            capacity_kib: 1 << 20,
            parent: None,
            create: true,
            mode: DiskMode::Persistent,
        },
        Device::Disk {
            path: DatastorePath::new("LocalDS_0", "vch1/c1-data.vmdk"),
            capacity_kib: 1 << 10,
            parent: None,
            create: true,
            mode: DiskMode::IndependentNonpersistent,
        },
    ];
    let vm = c
        .create_vm(&folder, &vapp, None, &spec("c1", devices), T)
        .await
        .unwrap();
    let listed = sim.govc(&["device.ls", "-vm", "/DC0/vm/c1"]);
    for expected in [
        "VirtualVmxnet3",
        "VM Network",
        "VirtualSerialPort",
        "VirtualCdrom",
        "ParaVirtualSCSIController",
        "VirtualDisk",
    ] {
        assert!(
            listed.contains(expected),
            "{expected} missing from\n{listed}"
        );
    }
    let ours = c.devices(&vm).await.unwrap();
    let mac = ours
        .iter()
        .find(|d| d.value_type() == "VirtualVmxnet3")
        .and_then(|d| d.text_at(&["macAddress"]));
    assert_eq!(mac, Some("00:50:56:aa:bb:01"));
    let on_dvpg = ours
        .iter()
        .filter(|d| d.value_type() == "VirtualVmxnet3")
        .find_map(|d| d.text_at(&["backing", "port", "portgroupKey"]));
    assert_eq!(on_dvpg, Some(portgroup_key.as_str()));
    let uri = ours
        .iter()
        .find(|d| d.value_type() == "VirtualSerialPort")
        .and_then(|d| d.text_at(&["backing", "serviceURI"]));
    assert_eq!(uri, Some("tcp://127.0.0.1:2377"));
    let modes: Vec<(&str, &str)> = (ours.iter())
        .filter(|d| d.value_type() == "VirtualDisk")
        .filter_map(|d| {
            Some((
                d.text_at(&["unitNumber"])?,
                d.text_at(&["backing", "diskMode"])?,
            ))
        })
        .collect();
    assert_eq!(
        modes,
        [("0", "persistent"), ("1", "independent_nonpersistent")]
    );
    // Its ISO changed for another, as an upgrade changes the appliance's boot medium.
    let other_iso = DatastorePath::new("LocalDS_0", "vch1/other.iso");
    c.change_cdrom(&vm, &iso_path, &other_iso, T).await.unwrap();
    let isos: Vec<String> = (c.devices(&vm).await.unwrap().iter())
        .filter(|d| d.value_type() == "VirtualCdrom")
        .filter_map(|d| d.text_at(&["backing", "fileName"]).map(str::to_string))
        .collect();
    assert_eq!(isos, [other_iso.to_string()]);
    let e = c
        .change_cdrom(&vm, &iso_path, &other_iso, T)
        .await
        .unwrap_err();
    assert_eq!(e.fault(), Some("NotFound"), "{e}");
    // Disks other than the root disk come off the VM, their files kept.
    assert_eq!(c.detach_data_disks(&vm, T).await.unwrap(), 1);
    let disks = (c.devices(&vm).await.unwrap().iter())
        .filter(|d| d.value_type() == "VirtualDisk")
        .count();
    assert_eq!(disks, 1);
    let files = sim.govc(&["datastore.ls", "-ds", "LocalDS_0", "vch1"]);
    assert!(files.contains("c1-data.vmdk"), "{files}");
    let parent = c.properties(&vm, &["resourcePool"]).await.unwrap();
    assert_eq!(
        parent.prop("resourcePool").and_then(|p| p.moref()),
        Some(vapp.clone())
    );
    // A disk on its own, then gone.
    let disk = DatastorePath::new("LocalDS_0", "vch1/vol.vmdk");
    c.create_virtual_disk(&dc, &disk, 1 << 20, T).await.unwrap();
    let files = sim.govc(&["datastore.ls", "-ds", "LocalDS_0", "vch1"]);
    assert!(files.contains("vol.vmdk"), "{files}");
    c.delete_virtual_disk(&dc, &disk, T).await.unwrap();
    let files = sim.govc(&["datastore.ls", "-ds", "LocalDS_0", "vch1"]);
    assert!(!files.contains("vol.vmdk"), "{files}");
    // Settings.
    c.update_options(&[("vic.test.key".into(), "v1".into())])
        .await
        .unwrap();
    assert_eq!(
        c.query_options("vic.test.").await.unwrap(),
        [("vic.test.key".to_string(), "v1".to_string())]
    );
    // The VM, then its vApp (vcsim moves what a vApp holds to its parent).
    c.destroy(&vm, T).await.unwrap();
    c.destroy(&vapp, T).await.unwrap();
    assert_eq!(
        sim.govc(&["find", "-i", "/", "-type", "a", "-name", "vch1"])
            .trim(),
        ""
    );
    assert!(!sim
        .govc(&["find", "-i", "/", "-type", "m"])
        .contains(&arg(&vm)));
}

#[tokio::test]
#[ignore = "needs vcsim and govc: make test runs it"]
async fn power_changes_made_by_another_client_reach_a_watch_and_the_event_history() {
    let sim = Vcsim::start(false);
    let c = logged_in(&sim).await;
    let (dc, folder, pool) = placement(&c).await;
    let vapp = c
        .create_vapp(&pool, "vch", &folder, Allocation::default())
        .await
        .unwrap();
    // The datacenter's events: vcsim does not match a VM's event to the vApp holding it.
    let mut events = EventCollector::new(&c, &dc, VM_EVENTS).await.unwrap();
    let vm = c
        .create_vm(&folder, &vapp, None, &spec("w1", Vec::new()), T)
        .await
        .unwrap();
    let mut watch = Watch::below(&c, &vapp, "VirtualMachine", &["runtime.powerState"])
        .await
        .unwrap();
    let first = watch.next(Duration::from_secs(1)).await.unwrap();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].obj, vm);
    assert_eq!(first[0].kind, UpdateKind::Enter);
    let state = |u: &[vim25::updates::ObjectUpdate]| {
        u.iter()
            .flat_map(|o| o.changes.iter())
            .find(|ch| ch.name == "runtime.powerState")
            .and_then(|ch| ch.val.as_ref().map(|v| v.text.clone()))
    };
    assert_eq!(state(&first).as_deref(), Some("poweredOff"));
    // govc powers it on: the watch sees it within a second.
    sim.govc(&["vm.power", "-on", "/DC0/vm/w1"]);
    let asked = Instant::now();
    let mut seen = None;
    while seen.is_none() && asked.elapsed() < Duration::from_secs(10) {
        seen = state(&watch.next(Duration::from_secs(2)).await.unwrap());
    }
    eprintln!("power-on seen {:?} after govc returned", asked.elapsed());
    assert_eq!(seen.as_deref(), Some("poweredOn"));
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    watch.close().await;
    // A watch over the VM folder's tree sees a VM made later come in (vcsim's views follow
    // the folder tree, not a vApp's members).
    let mut tree = Watch::below(&c, &folder, "VirtualMachine", &["name"])
        .await
        .unwrap();
    let now = tree.next(Duration::from_secs(1)).await.unwrap();
    assert!(now.iter().any(|u| u.obj == vm), "{now:?}");
    let vm2 = c
        .create_vm(&folder, &vapp, None, &spec("w2", Vec::new()), T)
        .await
        .unwrap();
    let next = tree.next(Duration::from_secs(5)).await.unwrap();
    assert!(
        next.iter()
            .any(|u| u.obj == vm2 && u.kind == UpdateKind::Enter),
        "{next:?}"
    );
    // A wait cancelled from elsewhere ends at once.
    let canceller = tree.canceller();
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let r = tree.next(Duration::from_secs(20)).await;
        tree.close().await;
        (r, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    canceller.cancel().await.unwrap();
    let (r, took) = waiting.await.unwrap();
    assert_eq!(r.unwrap_err().fault(), Some("RequestCanceled"));
    assert!(took < Duration::from_secs(5), "{took:?}");
    sim.govc(&["vm.power", "-off", "/DC0/vm/w1"]);
    // The history, oldest first: w1 on, then off.
    let got = events.read_next(100).await.unwrap();
    let kinds: Vec<(&str, Option<&MoRef>)> = got
        .iter()
        .map(|e| (e.kind.as_str(), e.vm.as_ref()))
        .collect();
    let on = kinds
        .iter()
        .position(|k| *k == ("VmPoweredOnEvent", Some(&vm)));
    let off = kinds
        .iter()
        .position(|k| *k == ("VmPoweredOffEvent", Some(&vm)));
    assert!(on.is_some() && off.is_some() && on < off, "{kinds:?}");
    assert!(
        got.iter().all(|e| VM_EVENTS.contains(&e.kind.as_str())),
        "{kinds:?}"
    );
    assert!(
        events.read_next(100).await.unwrap().is_empty(),
        "read twice"
    );
    events.close().await;
}
