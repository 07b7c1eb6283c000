//! `vic-machine configure`: settings changed while a container keeps running, and a
//! tlsverify VCH restarted by configure and debug.

mod common;
mod machine;

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
