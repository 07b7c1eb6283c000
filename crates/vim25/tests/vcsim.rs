//! The client against vcsim, each result checked with govc (a second, independent client).

use std::collections::BTreeSet;
use std::time::Duration;

use vcsim::{logged_in, placement, Vcsim, PASSWORD, USER};
use vim25::datastore::DatastorePath;
use vim25::vm::{PowerState, VmSpec};
use vim25::{Client, Error, MoRef, Thumbprint, Trust};

const T: Duration = Duration::from_secs(30);

/// govc's `TYPE:ID` lines as references.
fn morefs(lines: &str) -> BTreeSet<MoRef> {
    lines
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| MoRef::new(k, v))
        .collect()
}

fn moref_arg(r: &MoRef) -> String {
    format!("{}:{}", r.kind, r.value)
}

#[tokio::test]
#[ignore = "needs vcsim and govc: make test runs it"]
async fn only_the_pinned_certificate_and_the_right_password_get_a_session() {
    let sim = Vcsim::start(false);
    let real = Thumbprint::sha1_of(&sim.cert_der);
    // Another thumbprint: refused, and the error shows the server's, as VIC does.
    let wrong: Thumbprint = "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33"
        .parse()
        .unwrap();
    match Client::connect(&sim.host, &Trust::Thumbprint(wrong)).await {
        Err(e @ Error::Untrusted { .. }) => {
            let msg = e.to_string();
            assert_eq!(
                msg,
                format!(
                    "Failed to verify certificate for target={} (thumbprint={real})",
                    sim.host
                )
            );
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a certificate that is not the pinned one was accepted"),
    }
    // A CA that did not sign it: refused too.
    let other = rcgen::KeyPair::generate().unwrap();
    let other = rcgen::CertificateParams::new(vec!["x".to_string()])
        .unwrap()
        .self_signed(&other)
        .unwrap();
    let ca = Trust::ca_pem(other.pem().as_bytes()).unwrap();
    assert!(matches!(
        Client::connect(&sim.host, &ca).await,
        Err(Error::Untrusted { .. })
    ));
    // Pinned: the service content, then a login.
    let c = Client::connect(&sim.host, &Trust::Thumbprint(real))
        .await
        .unwrap();
    assert!(c.content().is_vcenter());
    assert_eq!(c.content().api_version, "6.5");
    let e = c.login(USER, "wrong").await.unwrap_err();
    assert_eq!(e.fault(), Some("InvalidLogin"), "{e}");
    assert!(matches!(
        c.find_by_inventory_path("DC0").await,
        Err(Error::Fault { .. })
    ));
    c.login(USER, PASSWORD).await.unwrap();
    let now = c.current_time().await.unwrap();
    assert!((chrono::Utc::now() - now).num_seconds().abs() < 60);
    c.logout().await.unwrap();
    let e = c.find_by_inventory_path("DC0").await.unwrap_err();
    assert_eq!(e.fault(), Some("NotAuthenticated"), "{e}");
}

#[tokio::test]
#[ignore = "needs vcsim and govc: make test runs it"]
async fn the_inventory_reads_as_govc_reads_it() {
    let sim = Vcsim::start(false);
    let c = logged_in(&sim).await;
    let root = c.content().root_folder.clone();
    let vms = c
        .find_all(
            &root,
            &[("VirtualMachine", &["name", "runtime.powerState"])],
        )
        .await
        .unwrap();
    let ours: BTreeSet<MoRef> = vms.iter().map(|o| o.obj.clone()).collect();
    assert_eq!(ours, morefs(&sim.govc(&["find", "-i", "/", "-type", "m"])));
    assert_eq!(ours.len(), 4);
    for vm in &vms {
        let name = vm.text("name").unwrap();
        let state = sim.govc(&[
            "object.collect",
            "-s",
            &moref_arg(&vm.obj),
            "runtime.powerState",
        ]);
        assert_eq!(vm.text("runtime.powerState"), Some(state.trim()), "{name}");
        let path = format!("DC0/vm/{name}");
        assert_eq!(
            c.find_by_inventory_path(&path).await.unwrap(),
            Some(vm.obj.clone())
        );
    }
    assert_eq!(
        c.find_by_inventory_path("DC0/vm/nothing").await.unwrap(),
        None
    );
    // Several kinds at once.
    let all = c
        .find_all(
            &root,
            &[
                ("ClusterComputeResource", &["name"]),
                ("Datastore", &["name", "summary.freeSpace"]),
                ("Network", &["name"]),
            ],
        )
        .await
        .unwrap();
    let names: BTreeSet<&str> = all.iter().filter_map(|o| o.text("name")).collect();
    for expected in ["DC0_C0", "LocalDS_0", "VM Network"] {
        assert!(names.contains(expected), "{expected} not in {names:?}");
    }
    // An object that is gone: the server's fault, typed.
    let gone = MoRef::new("VirtualMachine", "vm-999999");
    let e = c.properties(&gone, &["name"]).await.unwrap_err();
    assert_eq!(e.fault(), Some("ManagedObjectNotFound"), "{e}");
}

#[tokio::test]
#[ignore = "needs vcsim and govc: make test runs it"]
async fn a_vm_is_created_configured_powered_and_destroyed() {
    let sim = Vcsim::start(false);
    let c = logged_in(&sim).await;
    let (_, folder, pool) = placement(&c).await;
    let spec = VmSpec {
        name: "vic-test-vm".into(),
        guest_id: "otherLinux64Guest".into(),
        files: "[LocalDS_0]".into(),
        memory_mib: 512,
        cpus: 2,
        cpu_shares: Some(3000),
        annotation: Some("made by the vim25 tests".into()),
        extra_config: vec![("guestinfo.vice./common/id".into(), "abc & <def>".into())],
        devices: Vec::new(),
    };
    let vm = c.create_vm(&folder, &pool, None, &spec, T).await.unwrap();
    let arg = moref_arg(&vm);
    assert_eq!(
        sim.govc(&["ls", "-i", "/DC0/vm/vic-test-vm"]).trim(),
        arg,
        "govc finds the VM by its name"
    );
    let hw = sim.govc(&["object.collect", "-s", &arg, "config.hardware.memoryMB"]);
    assert_eq!(hw.trim(), "512");
    let cpus = sim.govc(&["object.collect", "-s", &arg, "config.hardware.numCPU"]);
    assert_eq!(cpus.trim(), "2");
    // CPU shares: custom as made, read by govc and by us, then back to vSphere's normal.
    let shares = sim.govc(&[
        "object.collect",
        "-s",
        &arg,
        "config.cpuAllocation.shares.shares",
    ]);
    assert_eq!(shares.trim(), "3000");
    assert_eq!(c.cpus_and_shares(&vm).await.unwrap().1, Some(3000));
    c.set_cpu_shares(&vm, Some(500), T).await.unwrap();
    assert_eq!(c.cpus_and_shares(&vm).await.unwrap().1, Some(500));
    c.set_cpu_shares(&vm, None, T).await.unwrap();
    assert_eq!(c.cpus_and_shares(&vm).await.unwrap().1, None);
    // extraConfig as govc reads it, then changed and read back by both.
    let extra = |sim: &Vcsim| -> Vec<(String, String)> {
        let v = sim.govc_json(&["object.collect", "-json", &arg, "config.extraConfig"]);
        v[0]["Val"]["OptionValue"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let s = |k: &str| o[k].as_str().unwrap_or("").to_string();
                (s("Key"), s("Value"))
            })
            .collect()
    };
    let key = "guestinfo.vice./common/id".to_string();
    assert!(extra(&sim).contains(&(key.clone(), "abc & <def>".into())));
    c.set_extra_config(&vm, &[(key.clone(), "second".into())], T)
        .await
        .unwrap();
    let ours = c.extra_config(&vm).await.unwrap();
    assert_eq!(ours.iter().filter(|(k, _)| *k == key).count(), 1);
    assert!(ours.contains(&(key.clone(), "second".into())), "{ours:?}");
    assert_eq!(
        extra(&sim)
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|e| e.1.as_str()),
        Some("second")
    );
    // Power: on, on again (a task fault, typed), off.
    let state = |sim: &Vcsim| {
        let s = sim.govc(&["object.collect", "-s", &arg, "runtime.powerState"]);
        s.trim().to_string()
    };
    assert_eq!(c.power_state(&vm).await.unwrap(), PowerState::PoweredOff);
    c.power_on(&vm, T).await.unwrap();
    assert_eq!(state(&sim), "poweredOn");
    assert_eq!(c.power_state(&vm).await.unwrap(), PowerState::PoweredOn);
    let e = c.power_on(&vm, T).await.unwrap_err();
    assert_eq!(e.fault(), Some("InvalidPowerState"), "{e}");
    c.power_off(&vm, T).await.unwrap();
    assert_eq!(state(&sim), "poweredOff");
    c.destroy(&vm, T).await.unwrap();
    assert!(!sim.govc(&["find", "-i", "/", "-type", "m"]).contains(&arg));
    let e = c.power_state(&vm).await.unwrap_err();
    assert_eq!(e.fault(), Some("ManagedObjectNotFound"), "{e}");
}

#[tokio::test]
#[ignore = "needs vcsim and govc: make test runs it"]
async fn files_go_to_a_datastore_and_come_back() {
    let sim = Vcsim::start(false);
    let c = logged_in(&sim).await;
    let (dc, _, _) = placement(&c).await;
    let dir = DatastorePath::new("LocalDS_0", "vic-test/sub dir");
    c.make_directory(&dc, &dir).await.unwrap();
    let local = tempfile::NamedTempFile::new().unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(local.path(), &data).unwrap();
    let file = DatastorePath::new("LocalDS_0", "vic-test/sub dir/blob.bin");
    c.upload("DC0", local.path(), &file, T).await.unwrap();
    let listed = sim.govc(&["datastore.ls", "-ds", "LocalDS_0", "-l", "vic-test/sub dir"]);
    assert!(listed.contains("blob.bin"), "{listed}");
    assert!(
        listed.contains("2.9MB") || listed.contains("3.0MB"),
        "{listed}"
    );
    assert_eq!(c.download("DC0", &file, 8 << 20, T).await.unwrap(), data);
    // A download larger than the caller allows is cut off with an error, not read whole.
    assert!(matches!(
        c.download("DC0", &file, 1 << 20, T).await,
        Err(Error::Protocol(_))
    ));
    // A directory moves whole under another name, never over one that exists.
    let moved = DatastorePath::new("LocalDS_0", "vic-test/moved");
    c.move_datastore_file(&dc, &dir, &moved, T).await.unwrap();
    let listed = sim.govc(&["datastore.ls", "-ds", "LocalDS_0", "vic-test/moved"]);
    assert_eq!(listed.trim(), "blob.bin");
    c.make_directory(&dc, &dir).await.unwrap();
    let e = (c.move_datastore_file(&dc, &moved, &dir, T).await).unwrap_err();
    assert_eq!(e.fault(), Some("FileAlreadyExists"), "{e}");
    // A directory lists as govc lists it; one that is not there is FileNotFound.
    let browser = c.datastore_browser("DC0", "LocalDS_0").await.unwrap();
    let top = DatastorePath::new("LocalDS_0", "vic-test");
    let mut names = c.list_directory(&browser, &top, T).await.unwrap();
    names.sort();
    assert_eq!(names, ["moved", "sub dir"]);
    let listed = sim.govc(&["datastore.ls", "-ds", "LocalDS_0", "vic-test"]);
    assert_eq!(
        listed.lines().collect::<BTreeSet<_>>(),
        names.iter().map(String::as_str).collect()
    );
    let none = DatastorePath::new("LocalDS_0", "vic-test/none");
    let e = c.list_directory(&browser, &none, T).await.unwrap_err();
    assert_eq!(e.fault(), Some("FileNotFound"), "{e}");
    let file = DatastorePath::new("LocalDS_0", "vic-test/moved/blob.bin");
    assert_eq!(c.download("DC0", &file, 8 << 20, T).await.unwrap(), data);
    c.delete_datastore_file(&dc, &DatastorePath::new("LocalDS_0", "vic-test"), T)
        .await
        .unwrap();
    let gone = c.download("DC0", &file, 8 << 20, T).await.unwrap_err();
    assert_eq!(gone.fault(), Some("FileNotFound"), "{gone}");
    let root = sim.govc(&["datastore.ls", "-ds", "LocalDS_0"]);
    assert!(!root.contains("vic-test"), "{root}");
}

#[tokio::test]
#[ignore = "needs vcsim and govc: make test runs it"]
async fn an_esx_host_is_told_apart_from_a_vcenter() {
    let sim = Vcsim::start(true);
    let c = logged_in(&sim).await;
    assert!(!c.content().is_vcenter());
    assert_eq!(c.content().api_type, "HostAgent");
    let dc = c.find_by_inventory_path("ha-datacenter").await.unwrap();
    assert!(dc.is_some());
    let root = c.content().root_folder.clone();
    let hosts = c
        .find_all(&root, &[("HostSystem", &["name"])])
        .await
        .unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(
        morefs(&sim.govc(&["find", "-i", "/", "-type", "h"])),
        hosts.iter().map(|h| h.obj.clone()).collect()
    );
}
