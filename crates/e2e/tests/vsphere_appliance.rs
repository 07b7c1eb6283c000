//! The appliance with a vSphere backend (its document's `backend.kind: vsphere`) against
//! vcsim with real guests, through the real docker CLI: it logs in by thumbprint, serves the
//! Docker API, pulls images, runs containers as VMs whose root disks are child deltas of their
//! image's base disk on the datastore, and refuses what the vSphere backend cannot do yet in
//! words, leaving nothing on the target.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{build_dir, docker_at, registry, run_limited, stderr, stdout};
use vch_config::{ApplianceConfig, BackendConfig, Settings, VsphereBackend, SCHEMA};
use vcsim::{Vcsim, PASSWORD, USER};
use vim25::Thumbprint;

const LIMIT: Duration = Duration::from_secs(120);

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The appliance, stopped by its PID when dropped.
struct Appliance(Child);

impl Drop for Appliance {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn docker(host: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = docker_at(host);
    cmd.args(args);
    run_limited(cmd, None, LIMIT, "docker")
}

fn start(config: &Path, log: &Path) -> Appliance {
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new(build_dir().join("bin/vic-appliance"))
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting vic-appliance");
    Appliance(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs vcsim, govc, the test registry and the docker CLI: make test runs it"]
async fn an_appliance_on_vcsim_runs_containers_as_vms_and_refuses_what_vsphere_cannot_do_yet() {
    let sim = Vcsim::start_with_guests(false);
    let client = vcsim::logged_in(&sim).await;
    let (_, folder, root) = vcsim::placement(&client).await;
    let alloc = vim25::pool::Allocation::default();
    let pool = client
        .create_resource_pool(&root, "vs1", alloc)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, PASSWORD).unwrap();
    let port = free_port();
    let host = format!("tcp://127.0.0.1:{port}");
    let reg = registry();
    let config = ApplianceConfig {
        schema: SCHEMA,
        name: "vs1".into(),
        state_dir: dir.path().join("state"),
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        image_store: dir.path().join("images"),
        backend: BackendConfig::Vsphere(Box::new(VsphereBackend {
            host: sim.host.clone(),
            thumbprint: Thumbprint::sha1_of(&sim.cert_der).to_string(),
            user: USER.into(),
            password_file,
            folder: format!("{}:{}", folder.kind, folder.value),
            pool: format!("{}:{}", pool.kind, pool.value),
            datacenter: "DC0".into(),
            datastore: "LocalDS_0".into(),
            image_store: "[LocalDS_0] vs1/images".into(),
            bridge_network: Some("DC0_DVPG0".into()),
            channel: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            simulator_guest: Some(Vcsim::guest_launcher().canonicalize().unwrap()),
            // The guests boot this build's kernel (the stand-in's VIC_KERNEL): no ISO here.
            bootstrap_iso: None,
        })),
        tls: None,
        settings: Settings {
            insecure_registries: vec![reg.clone()],
            ..Settings::default()
        },
        networks: vec![],
    };
    let doc = dir.path().join("appliance.json");
    config.save(&doc).unwrap();
    let log = dir.path().join("appliance.log");
    let _appliance = start(&doc, &log);
    let started = Instant::now();
    loop {
        let o = docker(&host, &["version", "--format", "{{.Server.Version}}"]);
        if o.status.success() {
            break;
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the appliance did not answer within 30 s: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "the appliance answered {:?} after its start",
        started.elapsed()
    );
    let info = stdout(&docker(&host, &["info", "--format", "{{.Driver}}"]));
    assert_eq!(info.trim(), "vic-vsphere");
    let ps = stdout(&docker(&host, &["ps", "-a", "-q"]));
    assert_eq!(ps.trim(), "");
    let image = format!("{reg}/busybox");
    let pull = docker(&host, &["pull", &image]);
    assert!(pull.status.success(), "{}", stderr(&pull));
    // A container VM on vSphere: its root disk, a child of the image's base disk on the
    // datastore, is the guest's /dev/sda.
    let started = Instant::now();
    let o = docker(
        &host,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            &image,
            "sh",
            "-c",
            "echo hello; grep ' / ' /proc/mounts",
        ],
    );
    eprintln!("docker run --rm on vcsim: {:?}", started.elapsed());
    assert!(o.status.success(), "{}{}", stderr(&o), sim.guest_logs(40));
    let out = stdout(&o);
    assert!(out.starts_with("hello\n/dev/sda / ext4 "), "{out}");
    let base = sim.govc(&["datastore.ls", "-ds", "LocalDS_0", "vs1/images"]);
    assert_eq!(base.lines().count(), 1, "one image's disk: {base}");
    // On the bridge network, the VM's NIC is on the bridge port group with the container's
    // MAC; what a container writes stays on its root disk across a stop and a start.
    let script =
        "cat /kept 2>/dev/null || echo none; echo kept > /kept; cat /sys/class/net/eth0/address";
    let o = docker(
        &host,
        &["run", "--name", "keep", &image, "sh", "-c", script],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let (first, mac) = out.split_once('\n').unwrap_or_default();
    assert_eq!(first, "none", "{out}");
    let mac = mac.trim().to_string();
    assert!(mac.starts_with("02:42:"), "the guest's eth0: {out}");
    let vm = sim.govc(&["find", "-i", "/DC0/host/DC0_C0/Resources/vs1", "-type", "m"]);
    assert!(vm.trim().starts_with("VirtualMachine:"), "{vm}");
    let devices = sim.govc_json(&[
        "object.collect",
        "-json",
        vm.trim(),
        "config.hardware.device",
    ]);
    let devices = devices[0]["Val"]["VirtualDevice"]
        .as_array()
        .unwrap()
        .clone();
    let parents: Vec<&str> = (devices.iter())
        .filter_map(|d| d["Backing"]["Parent"]["FileName"].as_str())
        .collect();
    assert_eq!(parents.len(), 1, "{devices:?}");
    assert!(
        parents[0].starts_with("[LocalDS_0] vs1/images/"),
        "{parents:?}"
    );
    let nics: Vec<_> = (devices.iter())
        .filter(|d| d["MacAddress"].is_string())
        .collect();
    assert_eq!(nics.len(), 1, "{devices:?}");
    assert_eq!(nics[0]["MacAddress"].as_str(), Some(mac.trim()));
    let key = sim.govc(&["object.collect", "-s", "/DC0/network/DC0_DVPG0", "key"]);
    assert_eq!(
        nics[0]["Backing"]["Port"]["PortgroupKey"].as_str(),
        Some(key.trim())
    );
    let o = docker(&host, &["start", "-a", "keep"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("kept\n{mac}\n"));
    let o = docker(&host, &["rm", "keep"]);
    assert!(o.status.success(), "{}", stderr(&o));
    verbs(&host, &image);
    // What the backend cannot do yet is refused in words, and leaves no VM behind.
    let args = ["network", "create", "mynet"];
    let o = docker(&host, &args);
    assert!(!o.status.success(), "{args:?} succeeded");
    let err = stderr(&o);
    eprintln!("docker {}: {}", args.join(" "), err.trim());
    assert!(
        err.contains("not implemented on the vSphere backend yet"),
        "{args:?}: {err}"
    );
    let vms = sim.govc(&["find", "-i", "/DC0/host/DC0_C0/Resources/vs1", "-type", "m"]);
    assert_eq!(vms.trim(), "", "a VM was left in the VCH's pool");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("the bridge network is the VCH's bridge port group on vSphere"),
        "{log_text}"
    );
}

/// `kill` with a signal, `wait` for the exit code, `logs`, and `attach` to a running
/// container's streams, on container VMs.
fn verbs(host: &str, image: &str) {
    let trap = "trap 'echo got usr1; exit 3' USR1; echo ready; while :; do sleep 0.1; done";
    let o = docker(host, &["run", "-d", "--name", "w", image, "sh", "-c", trap]);
    assert!(o.status.success(), "{}", stderr(&o));
    let deadline = Instant::now() + LIMIT;
    while !stdout(&docker(host, &["logs", "w"])).contains("ready") {
        assert!(Instant::now() < deadline, "the container never said ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = docker(host, &["kill", "-s", "USR1", "w"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = docker(host, &["wait", "w"]);
    assert_eq!(stdout(&o).trim(), "3", "{}", stderr(&o));
    let o = docker(host, &["logs", "w"]);
    assert_eq!(stdout(&o), "ready\ngot usr1\n");
    // attach: what is written to its stdin reaches it, what it says comes back, and its end
    // is ours.
    let script = "read line; echo \"got: $line\"";
    let o = docker(
        host,
        &["run", "-d", "-i", "--name", "a", image, "sh", "-c", script],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut cmd = docker_at(host);
    cmd.args(["attach", "a"]);
    let o = run_limited(cmd, Some("through the VM\n"), LIMIT, "docker attach");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "got: through the VM\n");
    let o = docker(
        host,
        &[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "a",
        ],
    );
    assert_eq!(stdout(&o).trim(), "exited 0", "{}", stderr(&o));
    let o = docker(host, &["rm", "w", "a"]);
    assert!(o.status.success(), "{}", stderr(&o));
}
