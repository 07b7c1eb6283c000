//! vic-machine's own behaviour: names, create and delete, ls, inspect (and inspect config),
//! limits, several VCHs, timeouts, a failed appliance start, unknown names. Configure is in
//! `vic_machine_configure.rs`, upgrade and debug in `vic_machine_upgrade.rs`, TLS in `tls*.rs`.

mod common;
mod machine;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use machine::*;

#[test]
#[ignore = "needs the built binaries: make test runs it"]
fn long_names_are_refused_and_nothing_is_made() {
    let name = "a-name-that-is-longer-than-31-chars";
    let o = vic_machine()
        .args(["create", "--target", "local", "--name", name, "--no-tls"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("Display name {name} exceeds the permitted 31 characters limit. Please use a shorter -name parameter")),
        "{err}"
    );
    let root = std::path::PathBuf::from(std::env::var("VIC_STATE_ROOT").unwrap());
    assert!(!root.join("vch").join(name).exists());
}

#[test]
#[ignore = "needs QEMU and the built binaries: make test runs it"]
fn create_then_delete_removes_the_vch_and_its_vms() {
    let name = format!("del-{}", std::process::id());
    let host = create_vch(&name, &std::env::temp_dir().join(&name));

    let docker = std::env::var("VIC_DOCKER").unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(&docker)
            .env("DOCKER_HOST", &host)
            .args(args)
            .output()
            .unwrap()
    };
    let image = format!("{}/busybox", registry());
    assert!(run(&["pull", &image]).status.success());
    let o = run(&["run", "-d", &image, "sleep", "300"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(vm_processes(&id).len(), 1);

    let ls = vic_machine()
        .args(["ls", "--target", "local"])
        .output()
        .unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout).to_string();
    assert!(
        ls.lines()
            .any(|l| l.starts_with(&name) && l.contains("running")),
        "{ls}"
    );

    // A running container blocks delete unless --force.
    let o = vic_machine()
        .args(["delete", "--target", "local", "--name", &name])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("running container"));

    let o = vic_machine()
        .args(["delete", "--target", "local", "--name", &name, "--force"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(vm_processes(&id).is_empty(), "container VM survived delete");
    let root = std::path::PathBuf::from(std::env::var("VIC_STATE_ROOT").unwrap());
    assert!(!root.join("vch").join(&name).exists());
    assert!(
        !run(&["info"]).status.success(),
        "the Docker API still answers after delete"
    );
}

#[test]
#[ignore = "needs QEMU and the built binaries: make test runs it"]
fn inspect_reports_state_versions_connection_and_settings() {
    let (name, dir) = TestVch::prepare("insp");
    let vols = dir.join("vols");
    let mut vch = TestVch::plain_in(
        &name,
        dir,
        &[
            "--insecure-registry",
            &registry(),
            "--containers",
            "3",
            "--memory",
            "2048",
            "--cpu",
            "2",
            "--storage-quota",
            "5",
            "--endpoint-memory",
            "1024",
            "--dns-server",
            "10.0.0.53",
            "--volume-store",
            &format!("{}:default", vols.display()),
        ],
    );
    let (dir, host) = (vch.work.0.clone(), vch.host());
    assert!(vols.is_dir(), "the volume store directory is made");
    let out = machine_ok(&["inspect", "--target", "local", "--name", &name]);
    let version = record(&name)["version"].as_str().unwrap().to_string();
    let installer = machine_ok(&["version"]);
    assert!(
        installer.trim().ends_with(&version),
        "{installer} vs {version}"
    );
    let port = host.rsplit(':').next().unwrap();
    for want in [
        format!("VCH name: {name}"),
        "VCH state: running".to_string(),
        format!("Installer version: {version}"),
        format!("VCH version: {version}"),
        "VCH upgrade status:".to_string(),
        "Installer has same version as VCH".to_string(),
        "Docker API TLS: none (plain HTTP)".to_string(),
        format!("DOCKER_HOST={host}"),
        format!("docker -H 127.0.0.1:{port} info"),
        format!(
            "Environment saved in {}",
            dir.join(&name).join(format!("{name}.env")).display()
        ),
        format!("insecure: {}", registry()),
        "memory: 2048 MiB".to_string(),
        "vCPUs: 2".to_string(),
        "containers: 3".to_string(),
        "storage quota: 5 GiB".to_string(),
        "endpoint memory: 1024 MiB (recorded; does not apply to the local target".to_string(),
        "DNS servers: 10.0.0.53".to_string(),
        format!("Volume stores: default ({})", vols.display()),
        "Debug level: 0 (info)".to_string(),
        "Completed successfully".to_string(),
    ] {
        assert!(out.contains(&want), "inspect lacks {want:?}:\n{out}");
    }
    vch.delete();
    let out = machine_err(&["inspect", "--target", "local", "--name", &name]);
    assert!(out.contains("not found"), "{out}");
}

#[test]
#[ignore = "needs QEMU and the built binaries: make test runs it"]
fn inspect_config_prints_a_create_command_that_reproduces_the_vch() {
    let (name, dir) = TestVch::prepare("orig");
    let copy = unique("copy");
    // A registry CA: any valid certificate will do.
    let ca = certs::openssl_ca(&dir, "vic-test-registry-ca");
    let vols = dir.join("vols");
    let _orig = TestVch::plain_in(
        &name,
        dir,
        &[
            "--insecure-registry",
            &registry(),
            "--whitelist-registry",
            &registry(),
            "--registry-ca",
            ca.to_str().unwrap(),
            "--containers",
            "4",
            "--memory",
            "1024",
            "--cpu",
            "3",
            "--storage-quota",
            "7",
            "--dns-server",
            "10.0.0.53",
            "--dns-server",
            "10.0.0.54",
            "--volume-store",
            &format!("{}:default", vols.display()),
            "--container-name-convention",
            "vch-{name}-{id}",
            "--debug",
            "1",
        ],
    );
    let raw = machine_ok(&[
        "inspect", "config", "--target", "local", "--name", &name, "--format", "raw",
    ]);
    let raw = raw.trim();
    assert!(
        raw.starts_with(&format!("--target=local --name={name} ")),
        "{raw}"
    );
    // VIC's order: container, volume, dns, memory, cpu, quota, count, TLS, registries.
    let order = [
        "--container-name-convention",
        "--volume-store",
        "--dns-server",
        "--memory",
        "--cpu",
        "--storage-quota",
        "--containers",
        "--no-tls",
        "--registry-ca",
        "--insecure-registry",
        "--whitelist-registry",
        "--debug",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|f| raw.find(f).unwrap_or_else(|| panic!("{f} missing: {raw}")))
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "not in VIC's order: {raw}"
    );
    let verbose = machine_ok(&["inspect", "config", "--target", "local", "--name", &name]);
    assert!(
        verbose.contains("The target VCH is configured with the following options:"),
        "{verbose}"
    );
    assert!(
        verbose.contains(&format!("vic-machine create {raw}")),
        "{verbose}"
    );

    // Run what it printed, through a shell as a user would, under another name.
    let cmd = raw.replace(&format!("--name={name}"), &format!("--name={copy}"));
    let copy_dir = workdir(&copy);
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{} create {cmd}",
            build_dir().join("bin/vic-machine").display()
        ))
        .current_dir(&copy_dir)
        .env("VIC_STATE_ROOT", state_root())
        .output()
        .unwrap();
    let _copy = DeleteOnDrop(copy.clone());
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let (a, b) = (record(&name), record(&copy));
    for key in [
        "insecure_registries",
        "whitelist_registries",
        "dns_servers",
        "containers",
        "memory_mib",
        "cpus",
        "storage_quota_gib",
        "endpoint_memory_mib",
        "volume_stores",
        "container_name_convention",
        "debug",
        "tls",
        "external_image_store",
        "version",
    ] {
        assert_eq!(a[key], b[key], "{key} differs");
    }
    let ca_of = |v: &serde_json::Value| std::fs::read(v["registry_ca"].as_str().unwrap()).unwrap();
    assert_eq!(ca_of(&a), ca_of(&b), "the registry CA bundle differs");
    assert_ne!(a["port"], b["port"]);
    // And printing the copy's config gives the same command, but for the name.
    let raw2 = machine_ok(&[
        "inspect", "config", "--target", "local", "--name", &copy, "--format", "raw",
    ]);
    assert_eq!(
        raw2.trim()
            .replace(&format!("--name={copy}"), "NAME")
            .replace(&vch_dir(&copy).display().to_string(), "DIR"),
        raw.replace(&format!("--name={name}"), "NAME")
            .replace(&vch_dir(&name).display().to_string(), "DIR")
    );

    // The name convention names the container VMs (QEMU's -name).
    let host = b["docker_host"].as_str().unwrap().to_string();
    let image = format!("{}/busybox", registry());
    on_ok(&host, &["pull", &image]);
    let id = on_ok(
        &host,
        &["run", "-d", "--name", "web", &image, "sleep", "60"],
    )
    .trim()
    .to_string();
    let qemu = vm_processes(&id);
    assert_eq!(qemu.len(), 1);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", qemu[0])).unwrap();
    let args: Vec<String> = String::from_utf8_lossy(&cmdline)
        .split('\0')
        .map(str::to_string)
        .collect();
    let i = args.iter().position(|a| a == "-name").expect("-name");
    assert_eq!(args[i + 1], format!("vch-web-{}", &id[..12]));
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn the_containers_and_memory_limits_refuse_with_vics_words() {
    let image = format!("{}/busybox", registry());
    let vch = TestVch::plain(
        "lim",
        &[
            "--insecure-registry",
            &registry(),
            "--containers",
            "1",
            "--memory",
            "300",
        ],
    );
    let (name, host) = (vch.name.clone(), vch.host());
    on_ok(&host, &["pull", &image]);
    on_ok(&host, &["create", &image, "true"]);
    let o = on(&host, &["create", &image, "true"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Container count exceeds limit 1. containers: 1"),
        "{}",
        stderr(&o)
    );
    // Room for more containers, but not for two 256 MiB VMs running at once.
    machine_ok(&[
        "configure",
        "--target",
        "local",
        "--name",
        &name,
        "--containers",
        "3",
    ]);
    let first = on_ok(&host, &["run", "-d", &image, "sleep", "60"]);
    let o = on(&host, &["run", "-d", &image, "sleep", "60"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(
            "Insufficient resources: the container needs 256 MiB of memory, running containers use 256 MiB of the VCH's 300 MiB"
        ),
        "{}",
        stderr(&o)
    );
    on_ok(&host, &["rm", "-f", first.trim()]);
}

#[test]
#[ignore = "needs QEMU and the built binaries: make test runs it"]
fn several_vchs_are_listed_and_deleted_independently() {
    let mut vchs: Vec<TestVch> = ["many-a", "many-b", "many-c"]
        .iter()
        .map(|p| TestVch::plain(p, &[]))
        .collect();
    let names: Vec<String> = vchs.iter().map(|v| v.name.clone()).collect();
    let hosts: Vec<String> = vchs.iter().map(|v| v.host()).collect();
    let ls = machine_ok(&["ls", "--target", "local"]);
    for (n, h) in names.iter().zip(&hosts) {
        let line = ls
            .lines()
            .find(|l| l.starts_with(&format!("{n} ")))
            .unwrap_or_else(|| panic!("{n} not in ls:\n{ls}"));
        assert!(
            line.contains(h.as_str()) && line.contains("running") && line.contains("Up to date"),
            "{line}"
        );
        on_ok(h, &["info"]);
    }
    vchs[1].delete();
    let ls = machine_ok(&["ls", "--target", "local"]);
    assert!(!ls.contains(&names[1]), "{ls}");
    for (n, h) in [(&names[0], &hosts[0]), (&names[2], &hosts[2])] {
        assert!(
            ls.lines()
                .any(|l| l.starts_with(&format!("{n} ")) && l.contains("running")),
            "{ls}"
        );
        on_ok(h, &["info"]);
    }
    // VIC_MACHINE_TARGET and VIC_MACHINE_NAME stand in for --target and --name.
    let o = run_limited(
        {
            let mut c = vic_machine();
            c.env("VIC_MACHINE_TARGET", "local")
                .env("VIC_MACHINE_NAME", &names[0])
                .arg("inspect");
            c
        },
        None,
        Duration::from_secs(60),
        "vic-machine inspect",
    );
    assert!(
        stdout(&o).contains(&format!("VCH name: {}", names[0])),
        "{}",
        stderr(&o)
    );
    // A shell set up for vSphere (VIC_MACHINE_USER/PASSWORD/THUMBPRINT) still works here,
    // with a warning that they do not apply; the password is never printed.
    let o = run_limited(
        {
            let mut c = vic_machine();
            c.env("VIC_MACHINE_TARGET", "local")
                .env("VIC_MACHINE_USER", "administrator@vsphere.local")
                .env("VIC_MACHINE_PASSWORD", "s3cret-pw")
                .env("VIC_MACHINE_THUMBPRINT", "AA:BB")
                .arg("ls");
            c
        },
        None,
        Duration::from_secs(60),
        "vic-machine ls",
    );
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.contains(
            "WARN  --user, --password, --thumbprint (or VIC_MACHINE_USER/PASSWORD/THUMBPRINT) do not apply to the local target: ignored"
        ),
        "{out}"
    );
    assert!(out.contains(&names[0]), "{out}");
    assert!(!out.contains("s3cret-pw") && !stderr(&o).contains("s3cret-pw"));
}

#[test]
#[ignore = "needs the built binaries: make test runs it"]
fn a_create_that_exceeds_its_timeout_leaves_nothing_behind() {
    let name = unique("tmo");
    let dir = workdir(&name);
    let o = run_limited(
        {
            let mut c = vic_machine();
            c.current_dir(&dir).args([
                "create",
                "--target",
                "local",
                "--name",
                &name,
                "--no-tls",
                "--timeout",
                "1ms",
                "--volume-store",
            ]);
            c.arg(format!("{}:default", dir.join("vols").display()));
            c
        },
        None,
        Duration::from_secs(60),
        "vic-machine create",
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(
            "Creating VCH exceeded time limit of 1ms. Please increase the timeout using --timeout"
        ),
        "{}",
        stderr(&o)
    );
    assert!(
        stdout(&o).contains("Removing what create made"),
        "{}",
        stdout(&o)
    );
    assert_create_left_nothing(&name, &dir);
    assert!(
        !dir.join("vols").exists(),
        "the volume store directory is left"
    );
}

#[test]
#[ignore = "needs the built binaries: make test runs it"]
fn a_create_whose_appliance_cannot_start_reports_its_error_at_once_and_leaves_nothing() {
    let (name, dir) = TestVch::prepare("nostart");
    // The port is taken: the appliance fails to listen, every time vic-init tries.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let started = Instant::now();
    let o = run_limited(
        {
            let mut c = vic_machine();
            c.current_dir(&dir).args([
                "create", "--target", "local", "--name", &name, "--no-tls", "--port", &port,
            ]);
            c
        },
        None,
        Duration::from_secs(120),
        "vic-machine create",
    );
    let took = started.elapsed();
    eprintln!("create with a taken port failed after {took:?}");
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("the appliance did not start: it exited (exit status 1 after")
            && err.contains(&format!(
                "listening on 127.0.0.1:{port}: Address already in use (os error 98)"
            )),
        "the appliance's own error is reported: {err}"
    );
    // vic-init backs off 0.5 + 1 + 2 + 4 s before it gives up: the first exit ended it.
    assert!(!err.contains("gave up"), "{err}");
    assert!(
        stdout(&o).contains("Removing what create made"),
        "{}",
        stdout(&o)
    );
    assert_create_left_nothing(&name, &dir);
}

/// What a failed create of `name` (run in `dir`) must not leave: its state directory, its
/// certificate directory, processes.
fn assert_create_left_nothing(name: &str, dir: &std::path::Path) {
    assert!(!vch_dir(name).exists(), "the state directory is left");
    assert!(
        !dir.join(name).exists(),
        "the certificate directory is left"
    );
    assert!(
        processes_matching(&vch_dir(name).display().to_string()).is_empty(),
        "processes of the VCH are left"
    );
}

#[test]
#[ignore = "needs the built binaries: make test runs it"]
fn commands_on_an_unknown_vch_say_it_is_not_found() {
    let name = unique("nosuch");
    let want = format!("Failed to get Virtual Container Host {name}: VCH {name} not found");
    for args in [
        vec!["inspect"],
        vec!["inspect", "config"],
        vec!["configure", "--containers", "3"],
        vec!["upgrade"],
        vec!["upgrade", "--rollback"],
        vec!["debug"],
        vec!["delete"],
    ] {
        let mut a = args.clone();
        a.extend(["--target", "local", "--name", &name]);
        let err = machine_err(&a);
        assert!(err.contains(&want), "{args:?}: {err}");
    }
}
