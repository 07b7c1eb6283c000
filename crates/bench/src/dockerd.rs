//! A private dockerd for side-by-side figures and round-trip tests: its own data root, exec
//! root and socket under a temporary directory, and network and mount namespaces of its own,
//! so it cannot touch the host's interfaces (dockerd deletes a `docker0` it does not manage),
//! routes, firewall or mounts. Loopback registries it is given are forwarded into its
//! namespace at the same address ([`crate::netns`]). Stopped (by PID) and cleaned away on
//! drop, with the cgroups it made.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The Debian docker.io daemon.
pub const DEFAULT_DOCKERD: &str = "/usr/sbin/dockerd";

/// A dockerd this process started.
pub struct Dockerd {
    child: Child,
    root: PathBuf,
    host: String,
    cgroup_parent: String,
    _forwarder: Option<crate::netns::Forwarder>,
}

impl Dockerd {
    /// Starts dockerd (`bin`) trusting `insecure_registries` over plain HTTP and waits (60 s at
    /// most) until `docker version` through `docker` answers.
    pub fn start(
        bin: &Path,
        insecure_registries: &[&str],
        docker: &str,
    ) -> anyhow::Result<Dockerd> {
        Self::start_networked(bin, insecure_registries, docker, false)
    }

    /// [`Dockerd::start`]; with `bridged`, dockerd makes its default bridge, NAT and
    /// forwarding as it does on a host, all of it inside its own network namespace (a
    /// conformance run compares MAC addresses, published ports and network statistics).
    pub fn start_networked(
        bin: &Path,
        insecure_registries: &[&str],
        docker: &str,
        bridged: bool,
    ) -> anyhow::Result<Dockerd> {
        let root = std::env::temp_dir().join(format!(
            "vic-dockerd-{}-{:08x}",
            std::process::id(),
            rand_u32()
        ));
        std::fs::create_dir_all(&root)?;
        let sock = root.join("docker.sock");
        let log = std::fs::File::create(root.join("dockerd.log"))?;
        let cgroup_parent = format!("vic-peer-{}-{:08x}", std::process::id(), rand_u32());
        // Namespaces of its own: `unshare` execs the shell, which brings loopback up and
        // execs dockerd, so the child's PID is dockerd's.
        let mut cmd = Command::new("unshare");
        cmd.args(["--net", "--mount", "--", "sh", "-c"])
            .arg(r#"ip link set lo up && exec "$0" "$@""#)
            .arg(bin)
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg(format!("--cgroup-parent=/{cgroup_parent}"));
        if !bridged {
            cmd.args(["--iptables=false", "--ip-forward=false", "--bridge=none"]);
        }
        for r in insecure_registries {
            cmd.args(["--insecure-registry", r]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} under unshare", bin.display()))?;
        let mut d = Dockerd {
            child,
            root,
            host: format!("unix://{}", sock.display()),
            cgroup_parent,
            _forwarder: None,
        };
        crate::netns::wait_for_own_netns(d.pid())?;
        let loopback: Vec<std::net::SocketAddr> = insecure_registries
            .iter()
            .filter_map(|r| r.parse::<std::net::SocketAddr>().ok())
            .filter(|a| a.ip().is_loopback())
            .collect();
        d._forwarder = Some(crate::netns::Forwarder::start(d.pid(), &loopback)?);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !d
            .docker(docker)
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success()
        {
            if Instant::now() > deadline {
                bail!(
                    "dockerd did not answer within 60 s (log: {})",
                    d.root.join("dockerd.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(d)
    }

    /// [`Dockerd::start`] for a peer column: when dockerd is not installed or does not come
    /// up, says why on stderr and gives `None`, so the benchmark goes on without it.
    pub fn start_peer(bin: &Path, insecure_registries: &[&str], docker: &str) -> Option<Dockerd> {
        if !bin.exists() {
            eprintln!(
                "dockerd peer unavailable: {} not installed (Debian docker.io)",
                bin.display()
            );
            return None;
        }
        match Dockerd::start(bin, insecure_registries, docker) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("dockerd peer unavailable: {e:#}");
                None
            }
        }
    }

    /// `DOCKER_HOST` for this daemon.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The daemon's `--data-root`.
    pub fn data_root(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The daemon's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `docker` command aimed at this daemon.
    pub fn docker(&self, docker: &str) -> Command {
        let mut c = Command::new(docker);
        c.env("DOCKER_HOST", &self.host).stdin(Stdio::null());
        c
    }
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t ^ std::process::id().rotate_left(16)
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.root.join("data"))
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.root);
        remove_cgroups(&self.cgroup_parent);
    }
}

/// Removes the (empty, once dockerd and its containers are gone) cgroup `name` from every
/// hierarchy, v1 or v2.
fn remove_cgroups(name: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut dirs: Vec<PathBuf> = hierarchies.flatten().map(|h| h.path().join(name)).collect();
    dirs.push(Path::new("/sys/fs/cgroup").join(name));
    for d in dirs {
        // Children first (dockerd puts one per container under the parent).
        if let Ok(children) = std::fs::read_dir(&d) {
            for c in children.flatten() {
                if c.path().is_dir() {
                    let _ = std::fs::remove_dir(c.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&d);
    }
}
