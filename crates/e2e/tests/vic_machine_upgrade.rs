//! `vic-machine upgrade` (and `--rollback`) keeping a container running, an upgrade whose
//! appliance does not come up, and `vic-machine debug`.

mod common;
mod machine;

use std::path::Path;
use std::time::Instant;

use common::*;
use machine::*;

fn ends_with_marker(p: &Path) -> bool {
    std::fs::read(p).unwrap().ends_with(b"vic e2e: build 2\n")
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn upgrade_and_rollback_keep_the_container_running() {
    let vch = TestVch::plain("upg", &["--insecure-registry", &registry()]);
    let (name, host, dir) = (vch.name.clone(), vch.host(), vch.work.0.clone());
    let v1 = record(&name)["version"].as_str().unwrap().to_string();
    let id = ticker(&host);
    let qemu = vm_processes(&id);
    assert_eq!(qemu.len(), 1);

    // This build is what the VCH runs: nothing to upgrade, nothing to roll back.
    let err = machine_err(&["upgrade", "--target", "local", "--name", &name]);
    assert!(
        err.contains(&format!(
            "\"{name}\" has same or newer version {v1} than installer version {v1}. No upgrade is available."
        )),
        "{err}"
    );
    let err = machine_err(&[
        "upgrade",
        "--target",
        "local",
        "--name",
        &name,
        "--rollback",
    ]);
    assert!(
        err.contains("has no previous version to roll back to"),
        "{err}"
    );

    let new_machine = another_build(&dir.join("build2"), false);
    let v2 = stdout(&machine_with(Some(&new_machine), &["version"]))
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    assert_ne!(v1, v2);
    let images = |h: &str| {
        let out = on_ok(
            h,
            &[
                "images",
                "--digests",
                "--format",
                "{{.Repository}}:{{.Tag}} {{.Digest}} {{.ID}}",
            ],
        );
        let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    let images_before = images(&host);
    assert!(!images_before.is_empty());
    let lines = log_lines(&host, &id);
    let probe = DowntimeProbe::start(&host);
    let o = machine_with(
        Some(&new_machine),
        &["upgrade", "--target", "local", "--name", &name],
    );
    let down = probe.stop();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    eprintln!("upgrade: the Docker API did not answer for {down:?} (seen from a client polling every 20 ms)");
    let r = record(&name);
    assert_eq!(r["version"], v2.as_str());
    assert_eq!(r["previous_version"], v1.as_str());
    let app = vch_dir(&name).join("appliance");
    let prev = vch_dir(&name).join("appliance.prev");
    assert!(ends_with_marker(&app.join("vic-appliance")));
    assert!(!ends_with_marker(&prev.join("vic-appliance")));
    assert_survived(&host, &id, &qemu, lines, "after upgrade");
    assert_eq!(images(&host), images_before, "images kept by the upgrade");
    // An image pulled after the upgrade is kept by the rollback too.
    on_ok(&host, &["pull", &format!("{}/busybox-oci", registry())]);
    let images_after = images(&host);
    assert_eq!(images_after.len(), images_before.len() + 1);
    let out = machine_ok(&["inspect", "--target", "local", "--name", &name]);
    assert!(out.contains(&format!("VCH version: {v2}")), "{out}");
    assert!(
        out.contains(&format!("Previous VCH version: {v1}")),
        "{out}"
    );
    // The new build does not upgrade to itself without --force.
    let o = machine_with(
        Some(&new_machine),
        &["upgrade", "--target", "local", "--name", &name],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("No upgrade is available"),
        "{}",
        stderr(&o)
    );

    let lines = log_lines(&host, &id);
    let probe = DowntimeProbe::start(&host);
    machine_ok(&[
        "upgrade",
        "--target",
        "local",
        "--name",
        &name,
        "--rollback",
    ]);
    let down = probe.stop();
    eprintln!("rollback: the Docker API did not answer for {down:?}");
    let r = record(&name);
    assert_eq!(r["version"], v1.as_str());
    assert_eq!(r["previous_version"], v2.as_str());
    assert!(!ends_with_marker(&app.join("vic-appliance")));
    assert!(ends_with_marker(&prev.join("vic-appliance")));
    assert_survived(&host, &id, &qemu, lines, "after rollback");
    assert_eq!(images(&host), images_after, "images kept by the rollback");
    // --force upgrades to the same version; a VCH recorded without admin pages (made
    // before them) gets them.
    let path = vch_dir(&name).join("vch.json");
    let mut r = record(&name);
    r.as_object_mut().unwrap().remove("admin_port");
    std::fs::write(&path, serde_json::to_vec_pretty(&r).unwrap()).unwrap();
    let out = machine_ok(&["upgrade", "--target", "local", "--name", &name, "--force"]);
    assert_eq!(record(&name)["previous_version"], v1.as_str());
    let port = record(&name)["admin_port"].as_u64().expect("an admin port");
    let url = format!("https://127.0.0.1:{port}/authentication");
    assert!(
        out.contains(&format!(
            "INFO  {}",
            url.trim_end_matches("/authentication")
        )),
        "{out}"
    );
    let page = std::process::Command::new("curl")
        .args(["-sk", "--max-time", "20", &url])
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(
        page.contains("Log in"),
        "the admin pages answer after the upgrade: {page}"
    );
}

#[test]
#[ignore = "needs QEMU and the built binaries: make test runs it"]
fn an_upgrade_that_does_not_come_up_is_rolled_back() {
    let vch = TestVch::plain("upgbad", &[]);
    let (name, host, dir) = (vch.name.clone(), vch.host(), vch.work.0.clone());
    let before = record(&name);
    let broken = another_build(&dir.join("broken"), true);
    let started = Instant::now();
    let o = machine_with(
        Some(&broken),
        &[
            "upgrade",
            "--target",
            "local",
            "--name",
            &name,
            "--timeout",
            "60s",
        ],
    );
    let took = started.elapsed();
    eprintln!("an upgrade whose appliance exits at once failed, rolled back, after {took:?}");
    assert!(!o.status.success());
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(
        out.contains("this build is broken"),
        "the log is shown:\n{out}"
    );
    assert!(out.contains("Rolling back to the previous state"), "{out}");
    assert!(err.contains("Upgrade failed:"), "{err}");
    assert!(
        err.contains("the appliance did not start: it exited (exit status 1 after")
            && err.contains("vic-appliance: this build is broken"),
        "the appliance's own error is reported: {err}"
    );
    assert!(err.contains("rolled back: the VCH runs as before"), "{err}");
    // Noticed at the first exit, not when vic-init gives up (after 7.5 s of back-off).
    assert!(!err.contains("gave up"), "{err}");
    assert_eq!(record(&name), before, "vch.json is as before");
    assert!(!vch_dir(&name).join("appliance.prev").exists());
    let app = std::fs::read(vch_dir(&name).join("appliance/vic-appliance")).unwrap();
    assert!(app.starts_with(b"\x7fELF"), "the real appliance is back");
    on_ok(&host, &["info"]);
}

#[test]
#[ignore = "needs QEMU and the built binaries: make test runs it"]
fn debug_turns_on_debug_logging() {
    let vch = TestVch::plain("dbg", &[]);
    let (name, host) = (vch.name.clone(), vch.host());
    let log = vch_dir(&name).join("appliance.log");
    let debug_lines = || {
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .filter(|l| l.contains(" DEBUG "))
            .count()
    };
    on_ok(&host, &["ps"]);
    assert_eq!(debug_lines(), 0, "level 0 logs no DEBUG lines");
    let out = machine_ok(&["debug", "--target", "local", "--name", &name]);
    assert!(out.contains("Debug level: 0 -> 1"), "{out}");
    assert_eq!(record(&name)["debug"], 1);
    let o = on(&host, &["inspect", "no-such-container"]);
    assert!(!o.status.success());
    assert!(debug_lines() > 0, "no DEBUG lines after debug");
    let out = machine_ok(&["inspect", "--target", "local", "--name", &name]);
    assert!(out.contains("Debug level: 1"), "{out}");
    machine_ok(&[
        "debug", "--target", "local", "--name", &name, "--debug", "0",
    ]);
    assert_eq!(record(&name)["debug"], 0);
    let err = machine_err(&[
        "debug", "--target", "local", "--name", &name, "--debug", "9",
    ]);
    assert!(err.contains("9"), "{err}");
}
