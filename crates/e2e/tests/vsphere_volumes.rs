//! Volumes on vSphere (vcsim, the vCenter model, with real guests): a VCH made with a volume
//! store on a datastore keeps each volume there as a directory holding its disk and its
//! description; the docker CLI makes, mounts (read-write, read-only), lists and removes them;
//! a container's VM has the volume's disk beside its root disk; the store outlives the VCH
//! and a new VCH given it finds its volumes. Checked with govc and pyvmomi.

mod common;

use std::process::Output;

use common::vsphere::{create_args, docker, inventory, machine_at};
use common::{registry, stderr, stdout};
use vcsim::Vcsim;

const STORE: &str = "vol1-vols";

fn machine(sim: &Vcsim, command: &str, args: &[&str]) -> Output {
    machine_at(sim, "vol1", "/DC0", command, args)
}

fn store_files(sim: &Vcsim, under: &str) -> Vec<String> {
    let dir = format!("{STORE}/volumes/{under}");
    let dir = dir.trim_end_matches('/');
    let listed = sim.govc(&["datastore.ls", "-ds", "LocalDS_0", dir]);
    let mut names: Vec<String> = listed.lines().map(str::to_string).collect();
    names.sort();
    names
}

#[test]
#[ignore = "needs vcsim, govc, QEMU, the test registry and the docker CLI: make test runs it"]
fn volumes_live_on_a_datastore_and_outlive_their_vch() {
    let sim = Vcsim::start_with_guests(false);
    let before = inventory(&sim);
    let certs = tempfile::tempdir().unwrap();
    let cert_path = certs.path().join("vol1");
    let reg = registry();
    let create_with = |store: &str| {
        let args = create_args(&reg, &cert_path, &["--volume-store", store]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        machine(&sim, "create", &args)
    };
    let create = || {
        let o = create_with(&format!("LocalDS_0/{STORE}:default"));
        assert!(o.status.success(), "{}", stderr(&o));
    };
    // A store inside the VCH's own directory would go with the VCH: refused, nothing made.
    let o = create_with("LocalDS_0/vol1/vols:default");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("volume store default ([LocalDS_0] vol1/vols) is inside the VCH's directory [LocalDS_0] vol1"),
        "{}",
        stderr(&o)
    );
    assert_eq!(inventory(&sim), before);
    create();
    let env = cert_path.join("vol1.env");
    // configure adds a store; a store's label cannot move, nor a store go inside the VCH's
    // directory: both refused with nothing changed.
    let o = machine(
        &sim,
        "configure",
        &["--volume-store", "LocalDS_0/vol1-fast:fast"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for (store, refused) in [
        (
            "LocalDS_0/elsewhere:fast",
            "volume store fast is already at [LocalDS_0] vol1-fast: a volume store cannot move",
        ),
        (
            "LocalDS_0/vol1/x:x",
            "volume store x ([LocalDS_0] vol1/x) is inside the VCH's directory",
        ),
    ] {
        let o = machine(&sim, "configure", &["--volume-store", store]);
        assert!(
            !o.status.success() && stderr(&o).contains(refused),
            "{}",
            stderr(&o)
        );
    }
    let o = machine(&sim, "inspect", &[]);
    assert!(
        stdout(&o).contains(
            "Volume stores: default ([LocalDS_0] vol1-vols), fast ([LocalDS_0] vol1-fast)"
        ),
        "{}",
        stdout(&o)
    );
    let opts = [
        "volume",
        "create",
        "--opt",
        "VolumeStore=fast",
        "--opt",
        "Capacity=32M",
        "quick",
    ];
    let o = docker(&env, &opts);
    assert!(o.status.success(), "{}", stderr(&o));
    let quick = sim.govc(&["datastore.ls", "-ds", "LocalDS_0", "vol1-fast/volumes"]);
    assert_eq!(quick.trim(), "quick");
    let o = docker(&env, &["volume", "rm", "quick"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let image = format!("{reg}/busybox");
    // A named volume: its directory on the datastore, its disk a flat VMDK.
    let t = std::time::Instant::now();
    let o = docker(&env, &["volume", "create", "--opt", "Capacity=64M", "data"]);
    assert!(o.status.success(), "{}", stderr(&o));
    eprintln!("docker volume create (64 MiB) on vcsim: {:?}", t.elapsed());
    let files = store_files(&sim, "data");
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files[0].starts_with("disk-") && files[0].ends_with("-flat.vmdk"));
    assert_eq!(&files[1], "disk.vmdk");
    assert_eq!(&files[2], "volume.json");
    // Written by one container, read by the next; a read-only mount refuses writes.
    let write = "echo kept > /data/f && sync";
    let o = docker(
        &env,
        &["run", "--rm", "-v", "data:/data", &image, "sh", "-c", write],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = docker(
        &env,
        &[
            "run",
            "--rm",
            "-v",
            "data:/data:ro",
            &image,
            "cat",
            "/data/f",
        ],
    );
    assert_eq!(stdout(&o), "kept\n", "{}", stderr(&o));
    let scribble = "echo x > /data/g";
    let o = docker(
        &env,
        &[
            "run",
            "--rm",
            "-v",
            "data:/data:ro",
            &image,
            "sh",
            "-c",
            scribble,
        ],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    // A running container's VM holds the disk beside its root disk (pyvmomi's view).
    let o = docker(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "holder",
            "-v",
            "data:/data",
            &image,
            "sleep",
            "600",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    let seen = sim.pyvmomi("vol1");
    let vm = (seen["vms"].as_array().unwrap().iter())
        .find(|v| v["guestinfo"]["guestinfo.vic.id"] == id.as_str())
        .unwrap_or_else(|| panic!("no VM of {id}: {seen}"))
        .clone();
    let disks = vm["disks"].as_array().unwrap();
    assert_eq!(disks.len(), 2, "{vm}");
    assert_eq!(disks[1]["unit"], 1, "{vm}");
    assert_eq!(disks[1]["mode"], "independent_persistent", "{vm}");
    assert_eq!(
        disks[1]["file"],
        format!("[LocalDS_0] {STORE}/volumes/data/disk.vmdk"),
        "{vm}"
    );
    let o = docker(&env, &["volume", "rm", "data"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("volume is in use"), "{}", stderr(&o));
    let o = docker(&env, &["rm", "-f", "holder"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        store_files(&sim, "data").len(),
        3,
        "the VM's removal took the volume's disk"
    );
    // An anonymous volume goes with its container (`--rm`).
    let t = std::time::Instant::now();
    let o = docker(
        &env,
        &[
            "run",
            "--rm",
            "-v",
            "/scratch",
            &image,
            "sh",
            "-c",
            "df -m /scratch | tail -1",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    eprintln!(
        "docker run --rm -v /scratch (a 1 GiB volume) on vcsim: {:?}",
        t.elapsed()
    );
    assert!(stdout(&o).contains("/scratch"), "{}", stdout(&o));
    assert_eq!(store_files(&sim, ""), ["data"]);
    // The store outlives the VCH (delete keeps it), and a new VCH finds the volume there.
    let o = machine(&sim, "delete", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Volume store default ([LocalDS_0] vol1-vols) is kept"),
        "{}",
        stdout(&o)
    );
    assert_eq!(store_files(&sim, ""), ["data"]);
    create();
    let o = docker(&env, &["volume", "ls", "--format", "{{.Name}}"]);
    assert_eq!(stdout(&o), "data\n", "{}", stderr(&o));
    let o = docker(
        &env,
        &["run", "--rm", "-v", "data:/data", &image, "cat", "/data/f"],
    );
    assert_eq!(stdout(&o), "kept\n", "{}", stderr(&o));
    let o = docker(&env, &["volume", "rm", "data"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(store_files(&sim, "").is_empty());
    // delete --force takes the stores' volumes too: only the stores' directories are left.
    let o = docker(&env, &["volume", "create", "--opt", "Capacity=64M", "more"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = machine(&sim, "delete", &["--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let left = sim.govc(&["datastore.ls", "-ds", "LocalDS_0", "-R", STORE]);
    assert_eq!(left.trim(), "", "{left}");
    // (The second VCH was not given the store `fast`: that one is the operator's to remove.)
    for store in [STORE, "vol1-fast"] {
        sim.govc(&["datastore.rm", "-ds", "LocalDS_0", store]);
    }
    assert_eq!(inventory(&sim), before, "delete --force left something");
}
