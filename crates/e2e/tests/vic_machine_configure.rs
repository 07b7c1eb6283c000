//! `vic-machine configure`: settings changed while a container keeps running, `--rollback`,
//! and the UpdateInProgress flag an interrupted configure leaves (`--reset-progress`).
//! Certificates through configure are in `tls_configure.rs`.

mod common;
mod machine;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use machine::*;

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn configure_changes_registries_and_limits_while_a_container_keeps_running() {
    let reg = registry();
    let port = reg.rsplit(':').next().unwrap().to_string();
    // The same registry by another name: not insecure yet.
    let other = format!("localhost:{port}");
    let vch = TestVch::plain("conf", &["--insecure-registry", &reg]);
    let (name, host, dir) = (vch.name.clone(), vch.host(), vch.work.0.clone());
    let id = ticker(&host);
    let qemu = vm_processes(&id);
    assert_eq!(qemu.len(), 1);
    let o = on(&host, &["pull", &format!("{other}/busybox")]);
    assert!(
        !o.status.success(),
        "{other} is not an insecure registry yet"
    );

    let err = vch.machine_err("configure", &[]);
    assert!(err.contains("Nothing to configure"), "{err}");
    let err = vch.machine_err("configure", &["--rollback"]);
    assert!(
        err.contains(&format!("Configure failed: a VCH configuration from before the last configure could not be found: VCH {name} has not been configured since it was created")),
        "{err}"
    );

    let lines = log_lines(&host, &id);
    let out = vch.machine_ok(
        "configure",
        &[
            "--insecure-registry",
            &reg,
            "--insecure-registry",
            &other,
            "--dns-server",
            "10.0.0.53",
            "--containers",
            "5",
            "--memory",
            "4096",
            "--cpu",
            "4",
            "--volume-store",
            &format!("{}:extra", dir.join("extra").display()),
        ],
    );
    assert!(out.contains("Container limit: unlimited -> 5"), "{out}");
    assert!(
        out.contains("No certificate regeneration requested. No new certificates provided. Certificates left unchanged."),
        "{out}"
    );
    assert!(out.contains("Completed successfully"), "{out}");
    // A registry added by configure works.
    on_ok(&host, &["pull", &format!("{other}/busybox")]);
    assert_survived(&host, &id, &qemu, lines, "after configure");
    let r = record(&name);
    assert_eq!(r["insecure_registries"], serde_json::json!([reg, other]));
    assert_eq!(r["dns_servers"], serde_json::json!(["10.0.0.53"]));
    assert_eq!(r["containers"], 5);
    assert_eq!(r["memory_mib"], 4096);
    assert_eq!(r["cpus"], 4);
    assert_eq!(r["volume_stores"][0]["label"], "extra");
    assert!(dir.join("extra").is_dir());

    // The same again changes nothing and does not restart.
    let pid = std::fs::read_to_string(vch_dir(&name).join("appliance.pid")).unwrap();
    let out = vch.machine_ok("configure", &["--containers", "5"]);
    assert!(
        out.contains("already has these settings: nothing changed"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(vch_dir(&name).join("appliance.pid")).unwrap(),
        pid
    );
    // 0 is unlimited, as in VIC.
    vch.machine_ok("configure", &["--memory", "0"]);
    assert_eq!(record(&name)["memory_mib"], serde_json::Value::Null);

    // --rollback: back to the configuration before the last configure, once.
    let lines = log_lines(&host, &id);
    let out = vch.machine_ok("configure", &["--rollback"]);
    assert!(
        out.contains("Memory limit (MiB): unlimited -> 4096"),
        "{out}"
    );
    assert_eq!(record(&name)["memory_mib"], 4096);
    assert_eq!(
        record(&name)["containers"],
        5,
        "the earlier configure stays"
    );
    assert_survived(&host, &id, &qemu, lines, "after rollback");
    let err = vch.machine_err("configure", &["--rollback"]);
    assert!(err.contains("could not be found"), "{err}");
    let err = vch.machine_err("configure", &["--rollback", "--containers", "2"]);
    assert!(err.contains("give it without settings to change"), "{err}");
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn an_interrupted_configure_is_refused_in_vics_words_until_reset_progress() {
    let vch = TestVch::plain("intr", &["--insecure-registry", &registry()]);
    let (name, host) = (vch.name.clone(), vch.host());
    let id = ticker(&host);
    let qemu = vm_processes(&id);
    let lines = log_lines(&host, &id);
    let state = vch_dir(&name);

    // Kill configure while it restarts the appliance: once it has set the flag and kept
    // the configuration it replaces.
    let mut run = vic_machine()
        .args(["configure", "--target", "local", "--name", &name])
        .args(["--containers", "7"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !state.join("configure.pending.json").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "configure did not start"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    run.kill().unwrap();
    run.wait().unwrap();
    assert!(
        state.join("update-in-progress").exists(),
        "a killed configure leaves the flag"
    );

    let err = vch.machine_err("configure", &["--containers", "8"]);
    assert!(
        err.contains("Configure failed: another upgrade/configure operation is in progress\nIf no other upgrade/configure process is running, use --reset-progress to reset the VCH upgrade/configure status"),
        "{err}"
    );
    assert!(
        err.contains(&format!("set by vic-machine configure, pid {}", run.id())),
        "{err}"
    );
    let err = vch.machine_err("upgrade", &["--force"]);
    assert!(
        err.contains("Upgrade failed: another upgrade/configure operation is in progress"),
        "{err}"
    );
    let err = vch.machine_err("debug", &["-v", "2"]);
    assert!(
        err.contains("another upgrade/configure operation is in progress"),
        "{err}"
    );
    assert!(
        ls_line(&name).contains("Upgrade/configure in progress"),
        "{}",
        ls_line(&name)
    );
    let out = vch.machine_ok("inspect", &[]);
    assert!(out.contains("Upgrade/configure in progress"), "{out}");

    let out = vch.machine_ok("configure", &["--reset-progress"]);
    assert!(
        out.contains("Reset UpdateInProgress flag successfully"),
        "{out}"
    );
    assert!(!state.join("update-in-progress").exists());
    // The configuration from before the interrupted configure comes back, and the VCH runs.
    vch.machine_ok("configure", &["--rollback"]);
    assert_eq!(record(&name)["containers"], serde_json::Value::Null);
    assert_survived(&host, &id, &qemu, lines, "after the interrupted configure");
    // And configure works again.
    let out = vch.machine_ok("configure", &["--containers", "8"]);
    assert!(out.contains("Completed successfully"), "{out}");
    assert_eq!(record(&name)["containers"], 8);
    on_ok(&host, &["info"]);
    assert!(ls_line(&name).contains("Up to date"), "{}", ls_line(&name));
    // Nothing to reset: says so, and succeeds (as VIC's does).
    for cmd in ["upgrade", "debug"] {
        let out = vch.machine_ok(cmd, &["--reset-progress"]);
        assert!(
            out.contains("The UpdateInProgress flag was not set"),
            "{cmd}: {out}"
        );
    }
}

#[test]
#[ignore = "needs the built binaries: make test runs it"]
fn configure_and_debug_restart_a_tlsverify_vch() {
    let vch = TestVch::create("tlsconf", &[]);
    let name = vch.name.clone();
    let tls_docker = |args: &[&str]| vch.docker_env(&vch.dir(), &[], args);
    assert!(tls_docker(&["info"]).status.success());
    // The default TLS mode needs no flag to be reproduced.
    let raw = machine_ok(&[
        "inspect", "config", "--target", "local", "--name", &name, "--format", "raw",
    ]);
    assert_eq!(raw.trim(), format!("--target=local --name={name}"));
    let out = vch.machine_ok("debug", &["--debug", "2"]);
    assert!(out.contains("Completed successfully"), "{out}");
    vch.machine_ok("configure", &["--containers", "9"]);
    let o = tls_docker(&["info"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = vch.machine_ok("inspect", &[]);
    assert!(out.contains("Docker API TLS: tlsverify"), "{out}");
    assert!(out.contains("--tlsverify --tlscacert="), "{out}");
}
