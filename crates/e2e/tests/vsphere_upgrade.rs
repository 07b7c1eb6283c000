//! `vic-machine upgrade` and `--rollback` on vSphere (vcsim, the vCenter model, with real
//! guests): create uploads this installation's boot media, an upgrade from another build
//! uploads its own beside them and restarts the appliance VM on its appliance ISO (the
//! stand-in VM runs the program on it), an upgrade whose appliance does not come up is put
//! back, and a rollback returns to the release before. A container keeps running throughout.
//! Checked with govc.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::vsphere::{create_args, docker, inspect, inventory, machine_of};
use common::{another_build, registry, stderr, stdout};
use vcsim::Vcsim;

/// `vic-machine COMMAND` of the installation whose vic-machine is `exe`, against `sim`.
fn machine(sim: &Vcsim, exe: &Path, command: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(exe);
    cmd.env("VIC_STATE_ROOT", std::env::var("VIC_STATE_ROOT").unwrap());
    machine_of(sim, cmd, "up1", "/DC0", command, args)
}

/// The appliance VM's version and the ISO on its CD-ROM, as govc reads them.
fn release(sim: &Vcsim) -> (String, String) {
    let vm = "/DC0/vm/up1";
    let info = sim.govc_json(&["vm.info", "-json", "-e", vm]);
    let extra = info["VirtualMachines"][0]["Config"]["ExtraConfig"]
        .as_array()
        .unwrap()
        .clone();
    let version = (extra.iter().rev())
        .find(|o| o["Key"] == "vic.version")
        .and_then(|o| o["Value"].as_str())
        .unwrap_or_default()
        .to_string();
    let devices = sim.govc_json(&["device.info", "-json", "-vm", vm]);
    let iso = (devices["Devices"].as_array().unwrap().iter())
        .filter_map(|d| d["Backing"]["FileName"].as_str())
        .find(|f| f.ends_with(".iso"))
        .unwrap_or_default()
        .to_string();
    (version, iso)
}

#[test]
#[ignore = "needs vcsim, govc, QEMU, the test registry and the docker CLI: make test runs it"]
fn upgrade_and_rollback_swap_the_appliance_media_and_keep_containers() {
    let sim = Vcsim::start_with_guests(false);
    let before = inventory(&sim);
    let builds = tempfile::tempdir().unwrap();
    let this = common::build_dir().join("bin/vic-machine");
    let certs = tempfile::tempdir().unwrap();
    let cert_path = certs.path().join("up1");
    let reg = registry();
    let args = create_args(&reg, &cert_path, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = machine(&sim, &this, "create", &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let (v1, iso1) = release(&sim);
    let build1 = v1.rsplit('-').next().unwrap().to_string();
    assert_eq!(iso1, format!("[LocalDS_0] up1/appliance-{build1}.iso"));
    let env = cert_path.join("up1.env");
    let image = format!("{reg}/busybox");
    let o = docker(
        &env,
        &["run", "-d", "--name", "keeper", &image, "sleep", "600"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let keeper = stdout(&o).trim().to_string();
    // Nothing to upgrade to from this installation.
    let o = machine(&sim, &this, "upgrade", &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("No upgrade is available"),
        "{}",
        stderr(&o)
    );
    // A build whose appliance does not start: the upgrade is put back, the VCH runs as before.
    let broken = another_build(&builds.path().join("broken"), true);
    let o = machine(&sim, &broken, "upgrade", &["--timeout", "12s"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Upgrade failed") && stderr(&o).contains(&format!("runs {v1} again")),
        "{}",
        stderr(&o)
    );
    assert_eq!(release(&sim), (v1.clone(), iso1.clone()));
    // The failed upgrade's media are removed again; only this release's are left.
    let isos = |sim: &Vcsim| {
        let files = sim.govc(&["datastore.ls", "-ds", "LocalDS_0", "up1"]);
        let mut isos: Vec<String> = (files.lines())
            .filter(|f| f.ends_with(".iso"))
            .map(str::to_string)
            .collect();
        isos.sort();
        isos
    };
    assert_eq!(
        isos(&sim),
        [
            format!("appliance-{build1}.iso"),
            format!("bootstrap-{build1}.iso")
        ]
    );
    assert!(
        sim.guest_logs(100_000)
            .contains("vic-appliance: this build is broken"),
        "the stand-in ran the broken build's appliance from its ISO"
    );
    assert_eq!(inspect(&env, "keeper", "{{.State.Status}}"), "running");
    // Another working build: its media beside the first, the appliance restarted on them.
    let build2 = another_build(&builds.path().join("build2"), false);
    let o = machine(&sim, &build2, "upgrade", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (v2, iso2) = release(&sim);
    assert_ne!(v2, v1);
    let b2 = v2.rsplit('-').next().unwrap();
    assert_eq!(iso2, format!("[LocalDS_0] up1/appliance-{b2}.iso"));
    let mut want = [
        format!("appliance-{build1}.iso"),
        format!("bootstrap-{build1}.iso"),
        format!("appliance-{b2}.iso"),
        format!("bootstrap-{b2}.iso"),
    ];
    want.sort();
    assert_eq!(isos(&sim), want, "both releases' media");
    assert_eq!(inspect(&env, "keeper", "{{.State.Status}}"), "running");
    let o = docker(&env, &["exec", "keeper", "echo", "still here"]);
    assert_eq!(stdout(&o), "still here\n", "{}", stderr(&o));
    // A new container's VM has the new bootstrap, and boots it; the one from before keeps its.
    let o = docker(
        &env,
        &["run", "-d", "--name", "fresh", &image, "sleep", "600"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let fresh = stdout(&o).trim().to_string();
    let seen = sim.pyvmomi("up1");
    let iso_of = |id: &str| {
        (seen["vms"].as_array().unwrap().iter())
            .find(|v| v["guestinfo"]["guestinfo.vic.id"] == id)
            .map(|v| v["cdroms"][0].as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no VM of {id}: {seen}"))
    };
    assert_eq!(
        iso_of(&fresh),
        format!("[LocalDS_0] up1/bootstrap-{b2}.iso")
    );
    assert_eq!(
        iso_of(&keeper),
        format!("[LocalDS_0] up1/bootstrap-{build1}.iso")
    );
    let logs = sim.guest_logs(100_000);
    assert!(
        logs.contains(&format!("guest: booting from bootstrap-{b2}.iso")),
        "{logs}"
    );
    let o = docker(&env, &["rm", "-f", "fresh"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A configure under the second release: another certificate, another memory. The
    // rollback returns to the first release as it was, both included.
    let vm = || {
        let cert = sim.govc(&["vm.info", "-e", "/DC0/vm/up1"]);
        let memory = sim.govc(&[
            "object.collect",
            "-s",
            "/DC0/vm/up1",
            "config.hardware.memoryMB",
        ]);
        // vcsim keeps every value a key was set to: the last one is the key's.
        let line = (cert.lines().rev())
            .find(|l| l.contains("guestinfo.vic.tls.cert"))
            .map(str::to_string);
        (line, memory.trim().to_string())
    };
    let before_configure = vm();
    let o = machine(
        &sim,
        &this,
        "configure",
        &[
            "--tls-cname",
            "up.example.test",
            "--endpoint-memory",
            "1024",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let configured = vm();
    assert_ne!(configured.0, before_configure.0, "a new certificate");
    assert_eq!(configured.1, "1024");
    // Rollback: the first release again; a second rollback would return to the second.
    let o = machine(&sim, &this, "upgrade", &["--rollback"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        vm(),
        before_configure,
        "the first release's certificate and memory"
    );
    assert!(
        stdout(&o).contains(&format!("The Docker API's certificates are those {v1} had")),
        "{}",
        stdout(&o)
    );
    assert_eq!(release(&sim), (v1.clone(), iso1));
    assert_eq!(inspect(&env, "keeper", "{{.State.Status}}"), "running");
    let o = machine(&sim, &this, "inspect", &[]);
    assert!(
        stdout(&o).contains(&format!("VCH version: {v1}")),
        "{}",
        stdout(&o)
    );
    // An operation that was cut short leaves the UpdateInProgress flag: refused until reset.
    let flag = "vic.update_in_progress=Upgrade on elsewhere (pid 7) at 2026-12-04T00:00:00Z";
    sim.govc(&["vm.change", "-vm", "/DC0/vm/up1", "-e", flag]);
    let o = machine(&sim, &this, "upgrade", &["--rollback"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("Rollback failed: another upgrade/configure operation is in progress")
            && err.contains("use --reset-progress")
            && err.contains("set by vic-machine Upgrade on elsewhere (pid 7)"),
        "{err}"
    );
    assert_eq!(release(&sim).0, v1, "nothing changed");
    let o = machine(&sim, &this, "upgrade", &["--reset-progress"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Cleared the flag set by vic-machine Upgrade on elsewhere"));
    let o = machine(&sim, &this, "debug", &["--debug", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = machine(&sim, &this, "delete", &["--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(inventory(&sim), before, "delete left something");
}
