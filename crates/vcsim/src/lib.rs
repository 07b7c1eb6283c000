//! vcsim for tests (the vim25 client's, vic-machine's, the vSphere backend's): govmomi's simulator started on 127.0.0.1 with a P-256 certificate made
//! here (its own is RSA-1024, which rustls refuses), stopped by its PID when dropped; and govc,
//! the second client every result is checked with.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "vic";
pub const PASSWORD: &str = "s3cret&<pw>";

pub struct Vcsim {
    child: Child,
    /// Where the stand-in docker keeps its guests' PIDs, when VMs get real guests.
    guests: Option<PathBuf>,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The DER of its certificate.
    pub cert_der: Vec<u8>,
    _dir: tempfile::TempDir,
}

fn tool(var: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} names the binary (make test sets it: scripts/vcsim.sh)"));
    assert!(path.exists(), "{var}={} does not exist", path.display());
    path
}

impl Vcsim {
    /// A vCenter (`esx` false: one datacenter DC0 with a host, a cluster, VMs) or an ESX host.
    pub fn start(esx: bool) -> Vcsim {
        Vcsim::start_inner(esx, false)
    }

    /// As [`Vcsim::start`], and a VM whose extraConfig has `RUN.container` gets a real guest
    /// when powered on: the stand-in `docker` (tests/fixtures/vcsim/docker) runs the command
    /// it names, with the VM's guestinfo in its environment; [`Vcsim::guest_launcher`] is the
    /// one that boots vic's bootstrap in a QEMU microvm.
    pub fn start_with_guests(esx: bool) -> Vcsim {
        Vcsim::start_inner(esx, true)
    }

    /// The command that boots a VM's guest (tests/fixtures/vcsim/guest).
    pub fn guest_launcher() -> PathBuf {
        fixtures().join("guest")
    }

    /// The last `lines` lines of each guest's output (the stand-in's `NAME.log`), for a
    /// failing test to show.
    pub fn guest_logs(&self, lines: usize) -> String {
        self.guests
            .as_ref()
            .map_or_else(String::new, |d| tails(d, lines))
    }

    /// [`Vcsim::guest_logs`] of the VMs destroyed since the simulator started (the stand-in
    /// keeps their output in `removed/`): why an appliance that a failed create removed ended.
    pub fn removed_guest_logs(&self, lines: usize) -> String {
        let removed = self.guests.as_ref().map(|d| d.join("removed"));
        removed.map_or_else(String::new, |d| tails(&d, lines))
    }

    /// The PIDs of the guests running now.
    pub fn guest_pids(&self) -> Vec<i32> {
        let Some(dir) = &self.guests else {
            return Vec::new();
        };
        let mut pids = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "pid") {
                let pid = std::fs::read_to_string(e.path()).unwrap_or_default();
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    if unsafe { libc::kill(pid, 0) } == 0 {
                        pids.push(pid);
                    }
                }
            }
        }
        pids
    }

    fn start_inner(esx: bool, guests: bool) -> Vcsim {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let mut cmd = Command::new(tool("VIC_VCSIM"));
        cmd.args([
            "-l",
            "127.0.0.1:0",
            "-username",
            USER,
            "-password",
            PASSWORD,
        ])
        .arg("-tlscert")
        .arg(&cert_path)
        .arg("-tlskey")
        .arg(&key_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        if esx {
            cmd.arg("-esx");
        }
        let guests = guests.then(|| {
            let guests = dir.path().join("guests");
            std::fs::create_dir(&guests).unwrap();
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut paths = vec![fixtures()];
            paths.extend(std::env::split_paths(&path));
            cmd.env("PATH", std::env::join_paths(paths).unwrap())
                .env("VCSIM_GUESTS", &guests);
            guests
        });
        let mut child = cmd.spawn().expect("starting vcsim");
        let mut first = String::new();
        let stdout = child.stdout.take().unwrap();
        let started = Instant::now();
        BufReader::new(stdout).read_line(&mut first).unwrap();
        // export GOVC_URL=https://user:pass@127.0.0.1:PORT/sdk GOVC_SIM_PID=…
        let host = first
            .split('@')
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or_else(|| panic!("vcsim said {first:?}"))
            .to_string();
        eprintln!("vcsim on {host} in {:?}", started.elapsed());
        if let Some(guests) = &guests {
            // For the guest launcher's vm-devices, which reads a VM's devices with govc.
            let env = format!(
                "GOVC_URL=https://{host}/sdk\nGOVC_USERNAME={USER}\nGOVC_PASSWORD='{PASSWORD}'\nGOVC_INSECURE=1\n"
            );
            std::fs::write(guests.join("govc.env"), env).unwrap();
        }
        Vcsim {
            child,
            guests,
            host,
            cert_der: cert.der().to_vec(),
            _dir: dir,
        }
    }

    /// Runs govc with `args` against this simulator; its stdout, failing on an error.
    pub fn govc(&self, args: &[&str]) -> String {
        let out = Command::new(tool("VIC_GOVC"))
            .args(args)
            .env("GOVC_URL", format!("https://{}/sdk", self.host))
            .env("GOVC_USERNAME", USER)
            .env("GOVC_PASSWORD", PASSWORD)
            .env("GOVC_INSECURE", "1")
            .output()
            .expect("running govc");
        assert!(
            out.status.success(),
            "govc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// What pyvmomi, VMware's Python SDK (the second client), reads of the VMs in the
    /// resource pool or vApp named `pool` (tests/fixtures/vcsim/pyvmomi-check).
    pub fn pyvmomi(&self, pool: &str) -> serde_json::Value {
        use std::io::Write;
        let mut child = Command::new(tool("VIC_PYVMOMI"))
            .arg(fixtures().join("pyvmomi-check"))
            .args([self.host.as_str(), USER, pool])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running pyvmomi-check");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(PASSWORD.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "pyvmomi-check: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// govc's JSON answer.
    pub fn govc_json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.govc(args)).unwrap()
    }
}

impl Drop for Vcsim {
    fn drop(&mut self) {
        // The guests the stand-in started, by the PIDs it recorded.
        for pid in self.guest_pids() {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // SIGTERM lets vcsim remove its temporary datastores.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tests/fixtures/vcsim: the stand-in docker and the guest launcher.
fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vcsim")
}

/// A client of `sim`, trusting its certificate by thumbprint, logged in.
pub async fn logged_in(sim: &Vcsim) -> vim25::Client {
    let trust = vim25::Trust::Thumbprint(vim25::Thumbprint::sha1_of(&sim.cert_der));
    let c = vim25::Client::connect(&sim.host, &trust).await.unwrap();
    c.login(USER, PASSWORD).await.unwrap();
    c
}

/// Where the vCenter model puts things: its datacenter DC0, DC0's VM folder, and the root
/// resource pool of its cluster DC0_C0.
pub async fn placement(c: &vim25::Client) -> (vim25::MoRef, vim25::MoRef, vim25::MoRef) {
    let dc = c.find_by_inventory_path("DC0").await.unwrap().unwrap();
    let props = c.properties(&dc, &["vmFolder"]).await.unwrap();
    let folder = props.prop("vmFolder").unwrap().moref().unwrap();
    let cluster = c.find_by_inventory_path("DC0/host/DC0_C0").await;
    let cluster = cluster.unwrap().unwrap();
    let props = c.properties(&cluster, &["resourcePool"]).await.unwrap();
    let pool = props.prop("resourcePool").unwrap().moref().unwrap();
    (dc, folder, pool)
}

/// The last `lines` lines of each `*.log` in `dir`, each under its path.
fn tails(dir: &std::path::Path, lines: usize) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let tail = all[all.len().saturating_sub(lines)..].join("\n");
            out += &format!("--- {} ---\n{tail}\n", path.display());
        }
    }
    out
}
