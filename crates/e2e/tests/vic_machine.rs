//! vic-machine's own behaviour: names, create and delete, ls, inspect (and inspect config),
//! configure, upgrade and rollback, debug, limits, timeouts, unknown names.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

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

// --- inspect, configure, upgrade, debug, limits, several VCHs, timeouts --------------------

fn state_root() -> PathBuf {
    PathBuf::from(std::env::var("VIC_STATE_ROOT").expect("VIC_STATE_ROOT"))
}

fn vch_dir(name: &str) -> PathBuf {
    state_root().join("vch").join(name)
}

/// A VCH name unique to this test run (at most 31 characters).
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}

/// A working directory for vic-machine (certificates, volume stores), removed when dropped.
struct Workdir(PathBuf);

impl std::ops::Deref for Workdir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Workdir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn workdir(name: &str) -> Workdir {
    let d = std::env::temp_dir().join(format!("vm-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Workdir(d)
}

/// Runs build/bin/vic-machine (or `exe`) with a deadline.
fn machine_with(exe: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = match exe {
        Some(p) => {
            let mut c = Command::new(p);
            c.env("VIC_STATE_ROOT", state_root());
            c
        }
        None => vic_machine(),
    };
    cmd.args(args);
    run_limited(
        cmd,
        None,
        Duration::from_secs(300),
        &format!("vic-machine {args:?}"),
    )
}

fn machine(args: &[&str]) -> Output {
    machine_with(None, args)
}

/// Runs vic-machine, asserts success and returns stdout.
fn machine_ok(args: &[&str]) -> String {
    let o = machine(args);
    assert!(
        o.status.success(),
        "vic-machine {args:?} failed:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs vic-machine, asserts failure and returns stderr.
fn machine_err(args: &[&str]) -> String {
    let o = machine(args);
    assert!(
        !o.status.success(),
        "vic-machine {args:?} succeeded:\n{}",
        stdout(&o)
    );
    stderr(&o)
}

fn record(name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(vch_dir(name).join("vch.json")).expect("vch.json"))
        .expect("vch.json is JSON")
}

fn on(host: &str, args: &[&str]) -> Output {
    let mut c = docker_at(host);
    c.args(args);
    run_limited(
        c,
        None,
        Duration::from_secs(180),
        &format!("docker {args:?}"),
    )
}

fn on_ok(host: &str, args: &[&str]) -> String {
    let o = on(host, args);
    assert!(
        o.status.success(),
        "docker {args:?} on {host} failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs a container that prints a line every 200 ms; returns its ID.
fn ticker(host: &str) -> String {
    let image = format!("{}/busybox", registry());
    on_ok(host, &["pull", &image]);
    on_ok(
        host,
        &[
            "run",
            "-d",
            &image,
            "sh",
            "-c",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
        ],
    )
    .trim()
    .to_string()
}

fn log_lines(host: &str, id: &str) -> usize {
    on_ok(host, &["logs", id]).lines().count()
}

/// The container is still the same VM, still shown Up, and still writing.
fn assert_survived(host: &str, id: &str, qemu: &[u32], lines_before: usize, when: &str) {
    assert_eq!(
        vm_processes(id),
        qemu,
        "{when}: the container's QEMU changed"
    );
    let ps = on_ok(host, &["ps", "--filter", &format!("id={id}")]);
    assert!(
        ps.lines()
            .any(|l| l.contains(&id[..12]) && l.contains(" Up ")),
        "{when}: docker ps does not show it Up:\n{ps}"
    );
    eventually(
        &format!("{when}: its log to keep growing"),
        Duration::from_secs(30),
        || (log_lines(host, id) > lines_before).then_some(()),
    );
}

/// Polls the Docker API every 20 ms from another thread; `stop` returns the longest time it
/// did not answer.
struct DowntimeProbe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Duration>,
}

impl DowntimeProbe {
    fn start(host: &str) -> DowntimeProbe {
        let addr: std::net::SocketAddr = host.trim_start_matches("tcp://").parse().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut longest = Duration::ZERO;
            let mut down_since: Option<std::time::Instant> = None;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                let up = ping(addr);
                match (up, down_since) {
                    (false, None) => down_since = Some(std::time::Instant::now()),
                    (true, Some(t)) => {
                        longest = longest.max(t.elapsed());
                        down_since = None;
                    }
                    _ => {}
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            longest
        });
        DowntimeProbe { stop, thread }
    }

    fn stop(self) -> Duration {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

fn ping(addr: std::net::SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    r.contains(" 200 ")
}

#[test]
#[ignore = "needs QEMU and the built binaries: make test runs it"]
fn inspect_reports_state_versions_connection_and_settings() {
    let name = unique("insp");
    let dir = workdir(&name);
    let vols = dir.join("vols");
    let host = create_vch_with(
        &name,
        &dir,
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
    delete_vch(&name);
    let out = machine_err(&["inspect", "--target", "local", "--name", &name]);
    assert!(out.contains("not found"), "{out}");
}

#[test]
#[ignore = "needs QEMU and the built binaries: make test runs it"]
fn inspect_config_prints_a_create_command_that_reproduces_the_vch() {
    let name = unique("orig");
    let copy = unique("copy");
    let dir = workdir(&name);
    // A registry CA: any valid certificate will do.
    let ca = dir.join("reg-ca.pem");
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=vic-test-registry-ca",
            "-keyout",
        ])
        .arg(dir.join("reg-ca-key.pem"))
        .arg("-out")
        .arg(&ca)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success());
    create_vch_with(
        &name,
        &dir,
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
            &format!("{}:default", dir.join("vols").display()),
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
    delete_vch(&copy);
    delete_vch(&name);
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn configure_changes_registries_and_limits_while_a_container_keeps_running() {
    let name = unique("conf");
    let dir = workdir(&name);
    let reg = registry();
    let port = reg.rsplit(':').next().unwrap().to_string();
    // The same registry by another name: not insecure yet.
    let other = format!("localhost:{port}");
    let host = create_vch_with(&name, &dir, &["--insecure-registry", &reg]);
    let id = ticker(&host);
    let qemu = vm_processes(&id);
    assert_eq!(qemu.len(), 1);
    let o = on(&host, &["pull", &format!("{other}/busybox")]);
    assert!(
        !o.status.success(),
        "{other} is not an insecure registry yet"
    );

    let err = machine_err(&["configure", "--target", "local", "--name", &name]);
    assert!(err.contains("Nothing to configure"), "{err}");

    let lines = log_lines(&host, &id);
    let out = machine_ok(&[
        "configure",
        "--target",
        "local",
        "--name",
        &name,
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
    ]);
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
    let out = machine_ok(&[
        "configure",
        "--target",
        "local",
        "--name",
        &name,
        "--containers",
        "5",
    ]);
    assert!(
        out.contains("already has these settings: nothing changed"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(vch_dir(&name).join("appliance.pid")).unwrap(),
        pid
    );
    // 0 is unlimited, as in VIC.
    machine_ok(&[
        "configure",
        "--target",
        "local",
        "--name",
        &name,
        "--memory",
        "0",
    ]);
    assert_eq!(record(&name)["memory_mib"], serde_json::Value::Null);
    delete_vch(&name);
}

/// A copy of this build whose appliance binary differs by trailing bytes: a real, working
/// build with another version. Returns its vic-machine.
fn another_build(dir: &Path, broken: bool) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for f in ["vic-machine", "vic-appliance", "vic-init"] {
        std::fs::copy(build_dir().join("bin").join(f), bin.join(f)).unwrap();
    }
    let appliance = bin.join("vic-appliance");
    if broken {
        std::fs::write(
            &appliance,
            "#!/bin/sh\necho 'vic-appliance: this build is broken' >&2\nexit 1\n",
        )
        .unwrap();
    } else {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&appliance)
            .unwrap();
        f.write_all(b"\nvic e2e: build 2\n").unwrap();
    }
    let _ = std::fs::remove_file(dir.join("bootstrap"));
    std::os::unix::fs::symlink(build_dir().join("bootstrap"), dir.join("bootstrap")).unwrap();
    bin.join("vic-machine")
}

fn ends_with_marker(p: &Path) -> bool {
    std::fs::read(p).unwrap().ends_with(b"vic e2e: build 2\n")
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn upgrade_and_rollback_keep_the_container_running() {
    let name = unique("upg");
    let dir = workdir(&name);
    let host = create_vch_with(&name, &dir, &["--insecure-registry", &registry()]);
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
    // --force upgrades to the same version.
    machine_ok(&["upgrade", "--target", "local", "--name", &name, "--force"]);
    assert_eq!(record(&name)["previous_version"], v1.as_str());
    delete_vch(&name);
}

#[test]
#[ignore = "needs QEMU and the built binaries: make test runs it"]
fn an_upgrade_that_does_not_come_up_is_rolled_back() {
    let name = unique("upgbad");
    let dir = workdir(&name);
    let host = create_vch_with(&name, &dir, &[]);
    let before = record(&name);
    let broken = another_build(&dir.join("broken"), true);
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
    assert!(!o.status.success());
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(
        out.contains("this build is broken"),
        "the log is shown:\n{out}"
    );
    assert!(out.contains("Rolling back to the previous state"), "{out}");
    assert!(err.contains("Upgrade failed:"), "{err}");
    assert!(err.contains("rolled back: the VCH runs as before"), "{err}");
    assert_eq!(record(&name), before, "vch.json is as before");
    assert!(!vch_dir(&name).join("appliance.prev").exists());
    let app = std::fs::read(vch_dir(&name).join("appliance/vic-appliance")).unwrap();
    assert!(app.starts_with(b"\x7fELF"), "the real appliance is back");
    on_ok(&host, &["info"]);
    delete_vch(&name);
}

#[test]
#[ignore = "needs QEMU and the built binaries: make test runs it"]
fn debug_turns_on_debug_logging() {
    let name = unique("dbg");
    let dir = workdir(&name);
    let host = create_vch_with(&name, &dir, &[]);
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
    delete_vch(&name);
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn the_containers_and_memory_limits_refuse_with_vics_words() {
    let name = unique("lim");
    let dir = workdir(&name);
    let image = format!("{}/busybox", registry());
    let host = create_vch_with(
        &name,
        &dir,
        &[
            "--insecure-registry",
            &registry(),
            "--containers",
            "1",
            "--memory",
            "300",
        ],
    );
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
    delete_vch(&name);
}

#[test]
#[ignore = "needs QEMU and the built binaries: make test runs it"]
fn several_vchs_are_listed_and_deleted_independently() {
    let names = [unique("many-a"), unique("many-b"), unique("many-c")];
    let dirs: Vec<Workdir> = names.iter().map(|n| workdir(n)).collect();
    let hosts: Vec<String> = names
        .iter()
        .zip(&dirs)
        .map(|(n, d)| create_vch_with(n, d, &[]))
        .collect();
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
    delete_vch(&names[1]);
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
    delete_vch(&names[0]);
    delete_vch(&names[2]);
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
    assert!(!vch_dir(&name).exists(), "the state directory is left");
    assert!(
        !dir.join(&name).exists(),
        "the certificate directory is left"
    );
    assert!(
        !dir.join("vols").exists(),
        "the volume store directory is left"
    );
    let marker = vch_dir(&name).display().to_string();
    assert!(
        processes_matching(&marker).is_empty(),
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

#[test]
#[ignore = "needs the built binaries: make test runs it"]
fn configure_and_debug_restart_a_tlsverify_vch() {
    let name = unique("tlsconf");
    let dir = workdir(&name);
    let o = run_limited(
        {
            let mut c = vic_machine();
            c.current_dir(&dir)
                .args(["create", "--target", "local", "--name", &name]);
            c
        },
        None,
        Duration::from_secs(120),
        "vic-machine create",
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let certs = dir.join(&name);
    let host = record(&name)["docker_host"].as_str().unwrap().to_string();
    let tls_docker = |args: &[&str]| {
        let mut c = docker_at(&host);
        c.env("DOCKER_TLS_VERIFY", "1")
            .env("DOCKER_CERT_PATH", &certs)
            .args(args);
        run_limited(c, None, Duration::from_secs(60), "docker over TLS")
    };
    assert!(tls_docker(&["info"]).status.success());
    // The default TLS mode needs no flag to be reproduced.
    let raw = machine_ok(&[
        "inspect", "config", "--target", "local", "--name", &name, "--format", "raw",
    ]);
    assert_eq!(raw.trim(), format!("--target=local --name={name}"));
    let out = machine_ok(&[
        "debug", "--target", "local", "--name", &name, "--debug", "2",
    ]);
    assert!(out.contains("Completed successfully"), "{out}");
    machine_ok(&[
        "configure",
        "--target",
        "local",
        "--name",
        &name,
        "--containers",
        "9",
    ]);
    let o = tls_docker(&["info"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = machine_ok(&["inspect", "--target", "local", "--name", &name]);
    assert!(out.contains("Docker API TLS: tlsverify"), "{out}");
    assert!(out.contains("--tlsverify --tlscacert="), "{out}");
    delete_vch(&name);
}
