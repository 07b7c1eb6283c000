use super::*;

#[test]
fn vm_json_round_trips_and_rejects_unknown_fields() {
    let spec = VmSpec {
        id: "c1".into(),
        display_name: "web-c1".into(),
        image_id: "img".into(),
        memory_mib: 256,
        cpus: 1,
        uid: Some(900_001),
        nics: vec![hypervisor::Nic {
            network: "bridge".into(),
            mac: "02:42:ac:10:00:02".into(),
            open_ports: Vec::new(),
        }],
        disks: vec![hypervisor::DataDisk {
            path: "/v/volumes/data/disk.img".into(),
            readonly: true,
        }],
        shares: vec![hypervisor::Share {
            source: "/srv/site".into(),
            readonly: false,
        }],
        host_cpus: vec![1],
        cpu_shares: Some(512),
    };
    let text = serde_json::to_string(&spec).unwrap();
    assert_eq!(serde_json::from_str::<VmSpec>(&text).unwrap(), spec);
    let extra = text.replace("\"cpus\":1", "\"cpus\":1,\"x\":2");
    assert!(serde_json::from_str::<VmSpec>(&extra).is_err());
    let old = text.replace(",\"uid\":900001", "");
    assert_eq!(serde_json::from_str::<VmSpec>(&old).unwrap().uid, None);
}

#[tokio::test]
async fn long_state_dirs_still_get_a_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("x".repeat(100));
    std::fs::create_dir(&dir).unwrap();
    let sock = dir.join(TETHER_SOCK);
    let _l = bind(&dir, &sock).unwrap();
    assert!(sock.exists());
}

#[test]
fn state_of_unknown_vm_is_absent_and_dead_pid_file_is_off() {
    let tmp = tempfile::tempdir().unwrap();
    let vms = Vms::new(
        tmp.path().to_path_buf(),
        Claims::new(tmp.path().join("uids")),
        None,
    );
    assert_eq!(vms.state("nope"), PowerState::Absent);
    let dir = vms.dir("c1");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(VM_JSON), "{}").unwrap();
    // PID 1 is alive but is not a QEMU running in this directory.
    std::fs::write(dir.join(PID_FILE), "1\n").unwrap();
    assert_eq!(vms.state("c1"), PowerState::Off);
}
