//! The appliance with a vSphere backend (its document's `backend.kind: vsphere`) against
//! vcsim, through the real docker CLI: it logs in by thumbprint, serves the Docker API, pulls
//! images, and refuses what the vSphere backend cannot do yet in words, leaving nothing on
//! the target.

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
async fn an_appliance_on_vcsim_serves_docker_and_refuses_what_vsphere_cannot_do_yet() {
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
        backend: BackendConfig::Vsphere(VsphereBackend {
            host: sim.host.clone(),
            thumbprint: Thumbprint::sha1_of(&sim.cert_der).to_string(),
            user: USER.into(),
            password_file,
            folder: format!("{}:{}", folder.kind, folder.value),
            pool: format!("{}:{}", pool.kind, pool.value),
            datastore: "LocalDS_0".into(),
            channel: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            simulator_guest: Some(Vcsim::guest_launcher().canonicalize().unwrap()),
        }),
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
    // What the backend cannot do yet is refused in words, and leaves no VM behind.
    for args in [
        vec!["run", "--rm", "--network", "none", &image, "true"],
        vec!["run", "--rm", &image, "true"],
    ] {
        let o = docker(&host, &args);
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = stderr(&o);
        eprintln!("docker {}: {}", args.join(" "), err.trim());
        assert!(
            err.contains("not implemented on the vSphere backend yet"),
            "{args:?}: {err}"
        );
    }
    let vms = sim.govc(&["find", "-i", "/DC0/host/DC0_C0/Resources/vs1", "-type", "m"]);
    assert_eq!(vms.trim(), "", "a VM was left in the VCH's pool");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("the bridge network is the VCH's bridge port group on vSphere"),
        "{log_text}"
    );
}
