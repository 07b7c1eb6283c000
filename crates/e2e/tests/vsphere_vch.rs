//! A VCH on vSphere made and removed by `vic-machine` (vcsim, the vCenter model, with real
//! guests): create makes the vApp, the VCH's directory and the appliance VM, whose guest (the
//! real appliance) reads its configuration from guestinfo with its secrets sealed; the docker
//! CLI runs containers through it over mutual TLS; a failed create and delete leave nothing.
//! Every result is checked with govc.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use base64::Engine;
use common::vsphere::{self, actions, docker, inspect, inventory, vm_name_of, wait_status};
use common::{registry, stderr, stdout};
use vcsim::{Vcsim, PASSWORD};

/// `vic-machine COMMAND --target https://HOST/DC0 --name vch1 ARGS` against `sim`.
fn machine(sim: &Vcsim, command: &str, args: &[&str]) -> Output {
    machine_at(sim, "/DC0", command, args)
}

/// `vic-machine COMMAND --target https://HOST{path} --name vch1 ARGS` against `sim`.
fn machine_at(sim: &Vcsim, path: &str, command: &str, args: &[&str]) -> Output {
    vsphere::machine_at(sim, "vch1", path, command, args)
}

/// On an ESX host: the VCH is a resource pool, and its containers' NICs are on a standard
/// port group, the one given or one made for the VCH (and removed with it).
#[test]
#[ignore = "needs vcsim, govc, QEMU, the test registry and the docker CLI: make test runs it"]
fn an_esx_host_gets_a_vch_in_a_resource_pool() {
    let sim = Vcsim::start_with_guests(true);
    sim.govc(&["host.portgroup.add", "-vswitch", "vSwitch0", "vch-bridge"]);
    let before = inventory(&sim);
    let reg = registry();
    for bridge in [Some("vch-bridge"), None] {
        let certs = tempfile::tempdir().unwrap();
        let cert_path = certs.path().join("vch1");
        let mut args = vec![
            "--image-store",
            "LocalDS_0",
            "--volume-store",
            "LocalDS_0/esx-vols:default",
            "--no-tlsverify",
            "--insecure-registry",
            &reg,
            "--tls-cert-path",
            cert_path.to_str().unwrap(),
        ];
        if let Some(b) = bridge {
            args.extend(["--bridge-network", b]);
        }
        let o = machine_at(&sim, "", "create", &args);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        assert!(out.contains("Creating resource pool \"vch1\""), "{out}");
        let pool = sim.govc(&[
            "find",
            "-i",
            "/ha-datacenter/host",
            "-type",
            "p",
            "-name",
            "vch1",
        ]);
        assert!(pool.trim().starts_with("ResourcePool:"), "{pool}");
        let expected = bridge.unwrap_or("vch1");
        if bridge.is_none() {
            assert!(
                out.contains("Creating virtual switch and port group \"vch1\""),
                "{out}"
            );
            let groups = sim.govc(&["host.portgroup.info"]);
            assert!(groups.contains("vch1"), "{groups}");
        }
        let env = cert_path.join("vch1.env");
        let image = format!("{reg}/busybox");
        let o = docker(
            &env,
            &["--tls", "run", "-d", "--name", "c1", &image, "sleep", "600"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let id = stdout(&o).trim().to_string();
        let seen = sim.pyvmomi("vch1");
        let vm = (seen["vms"].as_array().unwrap().iter())
            .find(|v| v["guestinfo"]["guestinfo.vic.id"] == id.as_str())
            .unwrap_or_else(|| panic!("no VM of {id}: {seen}"))
            .clone();
        assert_eq!(vm["power"], "poweredOn", "{vm}");
        assert_eq!(vm["nics"][0]["network"], expected, "{vm}");
        if bridge.is_some() {
            esx_lifecycle(&sim, &env, &image);
        }
        let o = machine_at(&sim, "", "delete", &["--force"]);
        assert!(o.status.success(), "{}", stderr(&o));
        sim.govc(&["datastore.rm", "-ds", "LocalDS_0", "esx-vols"]);
        assert_eq!(inventory(&sim), before, "delete left something");
    }
}

/// On the ESX model too: a volume on the store, `ls`, `inspect`, `debug` (configure's path),
/// `upgrade --force` and `--rollback`, the container running throughout.
fn esx_lifecycle(sim: &Vcsim, env: &Path, image: &str) {
    let o = docker(
        env,
        &["--tls", "volume", "create", "--opt", "Capacity=32M", "v1"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let script = "echo on-esx > /d/f && cat /d/f";
    let o = docker(
        env,
        &[
            "--tls", "run", "--rm", "-v", "v1:/d", image, "sh", "-c", script,
        ],
    );
    assert_eq!(stdout(&o), "on-esx\n", "{}", stderr(&o));
    let o = machine_at(sim, "", "ls", &[]);
    assert!(stdout(&o).contains("vch1"), "{}", stdout(&o));
    let o = machine_at(sim, "", "inspect", &[]);
    assert!(
        stdout(&o).contains("Volume stores: default ([LocalDS_0] esx-vols)"),
        "{}",
        stdout(&o)
    );
    for args in [
        &["debug", "--debug", "1"][..],
        &["upgrade", "--force"],
        &["upgrade", "--rollback"],
    ] {
        let o = machine_at(sim, "", args[0], &args[1..]);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let o = docker(env, &["--tls", "inspect", "-f", "{{.State.Status}}", "c1"]);
        assert_eq!(
            stdout(&o).trim(),
            "running",
            "after {args:?}: {}",
            stderr(&o)
        );
    }
}

/// A container on the container network: its VM's NIC on the network's port group, its
/// address from the network's range.
fn container_network(sim: &Vcsim, env: &Path, image: &str) {
    let o = docker(env, &["network", "ls", "--format", "{{.Name}}"]);
    assert!(stdout(&o).lines().any(|l| l == "public"), "{}", stdout(&o));
    let args = [
        "run", "-d", "--name", "pub", "--net", "public", image, "sleep", "600",
    ];
    let o = docker(env, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    let o = docker(env, &["exec", "pub", "ip", "-4", "-o", "addr"]);
    assert!(
        stdout(&o).contains("inet 10.9.0.100/24"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let key = sim.govc(&["object.collect", "-s", "/DC0/network/routable", "key"]);
    let seen = sim.pyvmomi("vch1");
    let vm = (seen["vms"].as_array().unwrap().iter())
        .find(|v| v["guestinfo"]["guestinfo.vic.id"] == id.as_str())
        .unwrap_or_else(|| panic!("no VM of {id}: {seen}"));
    assert_eq!(
        vm["nics"][0]["portgroup_key"].as_str(),
        Some(key.trim()),
        "{vm}"
    );
}

/// A guest shutdown asked from vSphere (the vSphere client's "Shut Down Guest OS") gives the
/// trapper's process its STOPSIGNAL, as the user's stop: `always` leaves it stopped. A reset
/// from vSphere runs the sleeper again on its VM.
fn guest_shutdown_and_reset(sim: &Vcsim, env: &Path, trapper_vm: &str, sleeper_vm: &str) {
    let since = chrono::Utc::now().timestamp().to_string();
    let t = Instant::now();
    sim.govc(&["vm.power", "-s", &format!("/DC0/vm/{trapper_vm}")]);
    let call = t.elapsed();
    let took = wait_status(env, "trapper", "exited", Duration::from_secs(20));
    eprintln!("a guest shutdown from vSphere: govc returned after {call:?} (vcsim waits for the stand-in's stop), docker inspect said exited {took:?} later");
    assert_eq!(inspect(env, "trapper", "{{.State.ExitCode}}"), "42");
    let o = docker(env, &["logs", "trapper"]);
    assert!(stdout(&o).contains("got USR1"), "{}", stdout(&o));
    let seen = actions(env, "trapper", &since);
    let stop: Vec<&str> = (seen.iter().map(String::as_str))
        .filter(|a| ["kill", "die", "stop"].contains(a))
        .collect();
    assert_eq!(stop, ["kill", "die", "stop"], "docker events: {seen:?}");
    std::thread::sleep(Duration::from_secs(3));
    let state = inspect(env, "trapper", "{{.State.Status}} {{.RestartCount}}");
    assert_eq!(state, "exited 0", "a stop of the user's is not restarted");
    let before = inspect(env, "sleeper", "{{.State.StartedAt}}");
    sim.govc(&["vm.power", "-reset", &format!("/DC0/vm/{sleeper_vm}")]);
    let t = Instant::now();
    while inspect(env, "sleeper", "{{.State.Status}} {{.State.StartedAt}}")
        == format!("running {before}")
        || inspect(env, "sleeper", "{{.State.Status}}") != "running"
    {
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "the reset did not run it again: {}",
            sim.guest_logs(60)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "a reset from vSphere ran the container again after {:?}",
        t.elapsed()
    );
}

#[test]
#[ignore = "needs vcsim, govc, QEMU, the test registry and the docker CLI: make test runs it"]
fn vic_machine_makes_a_vch_on_vcsim_that_runs_containers_and_removes_it_whole() {
    let sim = Vcsim::start_with_guests(false);
    // The operator's port groups for container networks.
    sim.govc(&["dvs.portgroup.add", "-dvs", "DVS0", "routable"]);
    sim.govc(&["dvs.portgroup.add", "-dvs", "DVS0", "labs"]);
    let before = inventory(&sim);
    let certs = tempfile::tempdir().unwrap();
    let cert_path = certs.path().join("vch1");
    let reg = registry();
    let create = |extra: &[&str]| {
        let mut args = vec![
            "--container-network",
            "routable:public",
            "--container-network-gateway",
            "routable:10.9.0.1/24",
            "--container-network-ip-range",
            "routable:10.9.0.100-10.9.0.110",
        ];
        args.extend_from_slice(extra);
        let args = vsphere::create_args(&reg, &cert_path, &args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        machine(&sim, "create", &args)
    };
    // A create that cannot finish in time is undone whole.
    let o = create(&["--timeout", "1ms"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("exceeded time limit"), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Removing what create made"),
        "{}",
        stdout(&o)
    );
    assert_eq!(inventory(&sim), before, "the failed create left something");
    // The VCH: a vApp holding the appliance VM, the VCH's directory.
    let started = Instant::now();
    let o = create(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    eprintln!("vic-machine create on vcsim: {:?}", started.elapsed());
    assert!(
        stdout(&o).contains("Container network public (routable) is open"),
        "{}",
        stdout(&o)
    );
    let vapp = sim.govc(&["find", "-i", "/DC0", "-type", "a", "-name", "vch1"]);
    assert!(vapp.trim().starts_with("VirtualApp:"), "{vapp}");
    let vm = sim.govc(&["find", "-i", "/DC0", "-type", "m", "-name", "vch1"]);
    let vm = vm.trim().to_string();
    assert!(vm.starts_with("VirtualMachine:"), "{vm}");
    let pool = sim.govc(&["object.collect", "-s", &vm, "resourcePool"]);
    assert_eq!(pool.trim(), vapp.trim());
    let files = sim.govc(&["datastore.ls", "-ds", "LocalDS_0", "vch1"]);
    assert!(files.lines().any(|f| f == "appliance-key.img"), "{files}");
    // Its guestinfo: the document in clear, no secret readable without the key.
    let extra = sim.govc_json(&["object.collect", "-json", &vm, "config.extraConfig"]);
    let extra = extra[0]["Val"]["OptionValue"].as_array().unwrap().clone();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut keys = Vec::new();
    for opt in &extra {
        let (k, v) = (opt["Key"].as_str().unwrap(), opt["Value"].as_str().unwrap());
        keys.push(k.to_string());
        let decoded = String::from_utf8_lossy(&b64.decode(v).unwrap_or_default()).to_string();
        for text in [v, decoded.as_str()] {
            assert!(!text.contains(PASSWORD), "{k} holds the password");
            assert!(!text.contains("PRIVATE KEY"), "{k} holds a private key");
        }
        if k == "guestinfo.vic.config" {
            assert!(decoded.contains("\"kind\":\"vsphere\""), "{decoded}");
        }
    }
    for k in [
        "guestinfo.vic.config",
        "guestinfo.vic.secret.password",
        "guestinfo.vic.secret.tls_key",
    ] {
        assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
    }
    // The docker CLI, over mutual TLS, runs containers as VMs in the VCH's vApp.
    let env = cert_path.join("vch1.env");
    let env_text = std::fs::read_to_string(&env).unwrap();
    assert!(env_text.contains("DOCKER_TLS_VERIFY=1"), "{env_text}");
    let image = format!("{reg}/busybox");
    let o = docker(&env, &["run", "--rm", &image, "echo", "hello from vSphere"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hello from vSphere\n");
    let mut ids = Vec::new();
    let o = docker(
        &env,
        &["run", "-d", "--name", "sleeper", &image, "sleep", "600"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    ids.push(stdout(&o).trim().to_string());
    // One that says what its STOPSIGNAL did, and that `always` would start again after a crash.
    let trap = "trap 'echo got USR1; exit 42' USR1; while :; do sleep 0.2; done";
    let o = docker(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "trapper",
            "--stop-signal",
            "SIGUSR1",
            "--restart",
            "always",
            &image,
            "sh",
            "-c",
            trap,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    ids.push(stdout(&o).trim().to_string());
    let vms = sim.govc_json(&["object.collect", "-json", vapp.trim(), "vm"]);
    let vms = vms[0]["Val"]["ManagedObjectReference"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(vms, 3, "the appliance and the containers in the vApp");
    // pyvmomi, a second client, sees the VCH as vic made it: the appliance VM with its
    // document and its key's CD-ROM, each container's VM on, its root disk a child of the
    // image's disk, its NIC on the bridge port group, its identity in guestinfo.
    let seen = sim.pyvmomi("vch1");
    let vms = seen["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 3, "{seen}");
    let appliance = vms
        .iter()
        .find(|v| v["name"] == "vch1")
        .expect("the appliance VM");
    assert_eq!(appliance["power"], "poweredOn");
    assert!(
        appliance["guestinfo"]["guestinfo.vic.config"].is_string(),
        "{appliance}"
    );
    assert_eq!(appliance["cdroms"][0], "[LocalDS_0] vch1/appliance-key.img");
    // The boot media create uploaded: the appliance's on its VM, the bootstrap on each
    // container's; the stand-in VMs run what is on them.
    let appliance_iso = appliance["cdroms"][1].as_str().unwrap_or_default();
    assert!(
        appliance_iso.starts_with("[LocalDS_0] vch1/appliance-") && appliance_iso.ends_with(".iso"),
        "{appliance}"
    );
    let logs = sim.guest_logs(100_000);
    assert!(
        logs.contains("appliance: vic-appliance from appliance-"),
        "{logs}"
    );
    assert!(logs.contains("guest: booting from bootstrap-"), "{logs}");
    let dvpg = sim.govc(&["object.collect", "-s", "/DC0/network/DC0_DVPG0", "key"]);
    for id in &ids {
        let vm = (vms.iter())
            .find(|v| v["guestinfo"]["guestinfo.vic.id"] == id.as_str())
            .unwrap_or_else(|| panic!("no VM of {id}: {seen}"));
        assert_eq!(vm["power"], "poweredOn", "{vm}");
        let parent = vm["disks"][0]["parent"].as_str().unwrap_or_default();
        assert!(parent.starts_with("[LocalDS_0] vch1/images/"), "{vm}");
        let iso = vm["cdroms"][0].as_str().unwrap_or_default();
        assert!(iso.starts_with("[LocalDS_0] vch1/bootstrap-"), "{vm}");
        assert_eq!(
            vm["nics"][0]["portgroup_key"].as_str(),
            Some(dvpg.trim()),
            "{vm}"
        );
    }
    // Powered off with govc, as an operator would: docker sees the container exit.
    let vm_name = vm_name_of(vms, &ids[0]);
    let since = chrono::Utc::now().timestamp().to_string();
    sim.govc(&["vm.power", "-off", "-force", &format!("/DC0/vm/{vm_name}")]);
    let took = wait_status(&env, "sleeper", "exited", Duration::from_secs(10));
    eprintln!("a govc power-off seen by docker inspect after {took:?}");
    let seen = actions(&env, "sleeper", &since);
    assert!(seen.iter().any(|a| a == "die"), "docker events: {seen:?}");
    // Powered on again with govc: the container starts on its VM, as `docker start` would.
    let since = chrono::Utc::now().timestamp().to_string();
    sim.govc(&["vm.power", "-on", &format!("/DC0/vm/{vm_name}")]);
    let took = wait_status(&env, "sleeper", "running", Duration::from_secs(30));
    eprintln!("a govc power-on ran the container again after {took:?}");
    let o = docker(&env, &["top", "sleeper"]);
    assert!(
        stdout(&o).contains("sleep 600"),
        "docker top: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let seen = actions(&env, "sleeper", &since);
    assert!(seen.iter().any(|a| a == "start"), "docker events: {seen:?}");
    guest_shutdown_and_reset(&sim, &env, &vm_name_of(vms, &ids[1]), &vm_name);
    container_network(&sim, &env, &image);
    // ls and inspect find it by its appliance VM.
    let o = machine(&sim, "ls", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let listed = stdout(&o);
    let row = (listed.lines())
        .find(|l| l.split_whitespace().nth(2) == Some("vch1"))
        .unwrap_or_else(|| panic!("vch1 not listed:\n{listed}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(format!("VirtualMachine:{}", cols[0]), vm, "{row}");
    assert_eq!(cols[1], "/DC0/host/DC0_C0/Resources", "{row}");
    assert!(row.ends_with("Up to date"), "{row}");
    let o = machine(&sim, "inspect", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = stdout(&o);
    for line in [
        "VCH name: vch1",
        "Appliance VM: poweredOn",
        "Running containers: 2",
        "VCH upgrade status: Up to date",
        "VCH directory: [LocalDS_0] vch1",
        "(TLS with client verification (tlsverify))",
        "Bridge network: DC0_DVPG0",
        "Container network: public = routable (",
    ] {
        assert!(report.contains(line), "{line:?} missing from\n{report}");
    }
    assert!(
        report.contains("Appliance VM: poweredOn (2048 MiB, 1 vCPU)"),
        "{report}"
    );
    // configure: the new settings reach the appliance (restarted) and its VM, the
    // containers' VMs keep running, and the restarted appliance takes them over.
    let o = machine(&sim, "configure", &["--endpoint-memory", "256"]);
    assert!(
        stderr(&o).contains("the appliance VM needs at least 512 MiB: nothing was changed"),
        "{}",
        stderr(&o)
    );
    let o = machine(
        &sim,
        "configure",
        &[
            "--insecure-registry",
            "registry.example:5000",
            "--endpoint-memory",
            "1024",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Appliance VM memory: 2048 -> 1024 MiB"),
        "{}",
        stdout(&o)
    );
    let memory = sim.govc(&["object.collect", "-s", &vm, "config.hardware.memoryMB"]);
    assert_eq!(memory.trim(), "1024");
    let o = docker(
        &env,
        &["info", "--format", "{{json .RegistryConfig.IndexConfigs}}"],
    );
    assert!(
        stdout(&o).contains("registry.example:5000"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let o = docker(&env, &["inspect", "-f", "{{.State.Status}}", "sleeper"]);
    assert_eq!(stdout(&o).trim(), "running", "{}", stderr(&o));
    // Right after the restart the guest may say Hello twice (its line came back, and it was
    // asked to resync), which once orphaned an exec started in between.
    let o = docker(&env, &["exec", "sleeper", "echo", "still here"]);
    assert_eq!(
        stdout(&o),
        "still here\n",
        "{}{}",
        stderr(&o),
        sim.guest_logs(60)
    );
    // configure adds a container network on an existing port group, and refuses one that is
    // not there, changing nothing.
    let o = machine(
        &sim,
        "configure",
        &[
            "--container-network",
            "labs:lab",
            "--container-network-gateway",
            "labs:10.10.0.1/24",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = docker(&env, &["network", "ls", "--format", "{{.Name}}"]);
    assert!(stdout(&o).lines().any(|l| l == "lab"), "{}", stdout(&o));
    let o = machine(
        &sim,
        "configure",
        &[
            "--container-network",
            "nowhere:x",
            "--container-network-gateway",
            "nowhere:10.11.0.1/24",
        ],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("network 'nowhere' not found: nothing was changed"),
        "{}",
        stderr(&o)
    );
    // debug: the log level, changed as configure changes settings.
    let o = machine(&sim, "debug", &["--debug", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Debug level: 0 -> 2"), "{}", stdout(&o));
    let o = machine(&sim, "inspect", &[]);
    assert!(stdout(&o).contains("Debug level: 2 ("), "{}", stdout(&o));
    // configure --rollback: the configuration from before the last change, once.
    let o = machine(&sim, "configure", &["--rollback"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = machine(&sim, "inspect", &[]);
    assert!(stdout(&o).contains("Debug level: 0 ("), "{}", stdout(&o));
    // The rollback undid the debug level only: the memory stays.
    assert!(stdout(&o).contains("(1024 MiB, 1 vCPU)"), "{}", stdout(&o));
    let o = machine(&sim, "configure", &["--rollback"]);
    assert!(
        stderr(&o).contains("could not be found") && !o.status.success(),
        "{}",
        stderr(&o)
    );
    let o = docker(&env, &["inspect", "-f", "{{.State.Status}}", "sleeper"]);
    assert_eq!(stdout(&o).trim(), "running", "{}", stderr(&o));
    let o = machine(&sim, "configure", &["--bind-path", "/tmp"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--bind-path on a vSphere target is not implemented yet"),
        "{}",
        stderr(&o)
    );
    let o = machine(&sim, "configure", &["--storage-quota", "10"]);
    assert!(
        stderr(&o).contains(
            "--storage-quota on a vSphere target is not implemented yet: nothing was changed"
        ),
        "{}",
        stderr(&o)
    );
    // A second VCH of the name is refused, and nothing changes.
    let during = inventory(&sim);
    let o = create(&[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("VCH vch1 already exists"),
        "{}",
        stderr(&o)
    );
    assert_eq!(inventory(&sim), during);
    // Delete: refused while a container runs, then forced; nothing is left.
    let o = machine(&sim, "delete", &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("running container VMs, please use --force"),
        "{}",
        stderr(&o)
    );
    let o = machine(&sim, "delete", &["--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(inventory(&sim), before, "delete left something");
    assert!(sim.guest_pids().is_empty(), "a guest outlived its VM");
    let o = machine(&sim, "delete", &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("VCH vch1 was not found"),
        "{}",
        stderr(&o)
    );
}
