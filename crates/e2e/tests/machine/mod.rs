//! Harness for the tests of vic-machine itself (`vic_machine*.rs`, `tls*.rs`): running
//! vic-machine, a VCH made for one test and deleted when it ends ([`TestVch`], also when the
//! test fails), a docker client for it, and the checks that a container survived a restart
//! of the appliance. `certs.rs` has a CA of the test's own and openssl's view of a server.
#![allow(dead_code)]

pub mod certs;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::*;

pub fn state_root() -> PathBuf {
    PathBuf::from(std::env::var("VIC_STATE_ROOT").expect("VIC_STATE_ROOT"))
}

pub fn vch_dir(name: &str) -> PathBuf {
    state_root().join("vch").join(name)
}

/// A VCH name unique to this test run (at most 31 characters).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}

/// A working directory for vic-machine (certificates, volume stores), removed when dropped.
pub struct Workdir(pub PathBuf);

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

pub fn workdir(name: &str) -> Workdir {
    let d = std::env::temp_dir().join(format!("vm-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Workdir(d)
}

/// Runs build/bin/vic-machine (or `exe`) with a deadline.
pub fn machine_with(exe: Option<&Path>, args: &[&str]) -> Output {
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

pub fn machine(args: &[&str]) -> Output {
    machine_with(None, args)
}

/// Runs vic-machine, asserts success and returns stdout.
pub fn machine_ok(args: &[&str]) -> String {
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
pub fn machine_err(args: &[&str]) -> String {
    let o = machine(args);
    assert!(
        !o.status.success(),
        "vic-machine {args:?} succeeded:\n{}",
        stdout(&o)
    );
    stderr(&o)
}

/// The VCH's vch.json.
pub fn record(name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(vch_dir(name).join("vch.json")).expect("vch.json"))
        .expect("vch.json is JSON")
}

/// The `vic-machine ls` line of a VCH.
pub fn ls_line(name: &str) -> String {
    let ls = machine_ok(&["ls", "--target", "local"]);
    ls.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not in ls: {ls}"))
        .to_string()
}

/// The docker CLI on a plain-HTTP `host`.
pub fn on(host: &str, args: &[&str]) -> Output {
    let mut c = docker_at(host);
    c.args(args);
    run_limited(
        c,
        None,
        Duration::from_secs(180),
        &format!("docker {args:?}"),
    )
}

pub fn on_ok(host: &str, args: &[&str]) -> String {
    let o = on(host, args);
    assert!(
        o.status.success(),
        "docker {args:?} on {host} failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

pub fn assert_ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}): {}{}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

pub fn assert_refused(o: &Output, what: &str, expect: &str) {
    assert!(!o.status.success(), "{what} was let in: {}", stdout(o));
    assert!(
        stderr(o).contains(expect),
        "{what}: expected {expect:?} in: {}",
        stderr(o)
    );
}

/// A VCH made for one test with `vic-machine create` in a working directory of its own;
/// deleted (with its containers) when dropped, also when the test fails.
pub struct TestVch {
    pub name: String,
    /// The working directory create ran in (the default certificate directory is in it).
    pub work: Workdir,
    pub port: u16,
    /// What create printed.
    pub stdout: String,
    deleted: bool,
}

impl TestVch {
    /// The name and (fresh) working directory of a VCH for `prefix`, for flags that name
    /// files in it; then [`TestVch::plain_in`] or [`TestVch::create_in`].
    pub fn prepare(prefix: &str) -> (String, Workdir) {
        let name = unique(prefix);
        let work = workdir(&name);
        (name, work)
    }

    /// A VCH serving plain HTTP (`--no-tls`), made by [`create_vch_with`] with `args`.
    pub fn plain(prefix: &str, args: &[&str]) -> TestVch {
        let (name, work) = Self::prepare(prefix);
        Self::plain_in(&name, work, args)
    }

    pub fn plain_in(name: &str, work: Workdir, args: &[&str]) -> TestVch {
        let host = create_vch_with(name, &work, args);
        let port = host.rsplit(':').next().unwrap().parse().unwrap();
        TestVch {
            name: name.to_string(),
            work,
            port,
            stdout: String::new(),
            deleted: false,
        }
    }

    /// A VCH made with `args` (TLS by default: mutual TLS); panics unless create succeeds.
    pub fn create(prefix: &str, args: &[&str]) -> TestVch {
        let (name, work) = Self::prepare(prefix);
        Self::create_in(&name, work, args)
    }

    /// [`TestVch::create`] under `name` in `work` (certificates found there are reused).
    pub fn create_in(name: &str, work: Workdir, args: &[&str]) -> TestVch {
        let out = run_limited(
            {
                let mut c = vic_machine();
                c.current_dir(&work)
                    .args(["create", "--target", "local", "--name", name])
                    .args(args);
                c
            },
            None,
            Duration::from_secs(180),
            "vic-machine create",
        );
        let mut vch = TestVch {
            name: name.to_string(),
            work,
            port: 0,
            stdout: stdout(&out),
            deleted: false,
        };
        assert!(
            out.status.success(),
            "vic-machine create failed:\n{}\n{}",
            vch.stdout,
            stderr(&out)
        );
        let port = vch
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("DOCKER_HOST=tcp://127.0.0.1:"))
            .expect("create prints DOCKER_HOST=");
        vch.port = port.trim().parse().expect("a port");
        vch
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// DOCKER_HOST.
    pub fn host(&self) -> String {
        format!("tcp://{}", self.addr())
    }

    /// docker on it when it serves plain HTTP.
    pub fn on(&self, args: &[&str]) -> Output {
        on(&self.host(), args)
    }

    pub fn on_ok(&self, args: &[&str]) -> String {
        on_ok(&self.host(), args)
    }

    /// The certificate directory create uses by default: `./NAME`.
    pub fn dir(&self) -> PathBuf {
        self.work.join(&self.name)
    }

    pub fn file(&self, f: &str) -> String {
        self.dir().join(f).display().to_string()
    }

    pub fn record(&self) -> serde_json::Value {
        record(&self.name)
    }

    /// The VCH's NAME.env in `dir` as (key, value) pairs.
    pub fn env_file(&self, dir: &Path) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(dir.join(format!("{}.env", self.name)))
            .expect("NAME.env is written");
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// `vic-machine CMD --target local --name NAME ARGS…`, run in the working directory.
    pub fn machine(&self, cmd: &str, args: &[&str]) -> Output {
        let mut c = vic_machine();
        c.current_dir(&self.work)
            .args([cmd, "--target", "local", "--name", &self.name])
            .args(args);
        run_limited(
            c,
            None,
            Duration::from_secs(300),
            &format!("vic-machine {cmd} {args:?}"),
        )
    }

    /// [`TestVch::machine`], asserting success; returns stdout.
    pub fn machine_ok(&self, cmd: &str, args: &[&str]) -> String {
        let o = self.machine(cmd, args);
        assert!(
            o.status.success(),
            "vic-machine {cmd} {args:?} failed:\n{}{}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    /// [`TestVch::machine`], asserting failure; returns stdout and stderr.
    pub fn machine_err(&self, cmd: &str, args: &[&str]) -> String {
        let o = self.machine(cmd, args);
        assert!(
            !o.status.success(),
            "vic-machine {cmd} {args:?} succeeded:\n{}",
            stdout(&o)
        );
        format!("{}{}", stdout(&o), stderr(&o))
    }

    /// The docker CLI with nothing from the environment or ~/.docker (an empty config dir,
    /// which is also where it looks for default certificates).
    fn docker_clean(&self) -> Command {
        let mut c = docker_at("");
        c.env_remove("DOCKER_HOST");
        let config = self.work.join("docker-config");
        std::fs::create_dir_all(&config).unwrap();
        c.env("DOCKER_CONFIG", config);
        c
    }

    fn run(mut cmd: Command, args: &[&str]) -> Output {
        cmd.args(args);
        run_limited(
            cmd,
            None,
            Duration::from_secs(180),
            &format!("docker {args:?}"),
        )
    }

    /// `docker -H ADDR FLAGS… ARGS…`.
    pub fn docker(&self, flags: &[&str], args: &[&str]) -> Output {
        let mut c = self.docker_clean();
        c.arg("-H").arg(self.addr()).args(flags);
        Self::run(c, args)
    }

    /// docker with the variables of the env file in `env_dir` (as `source NAME.env` gives them).
    pub fn docker_env(&self, env_dir: &Path, flags: &[&str], args: &[&str]) -> Output {
        let mut c = self.docker_clean();
        for (k, v) in self.env_file(env_dir) {
            c.env(k, v);
        }
        c.args(flags);
        Self::run(c, args)
    }

    /// docker over mutual TLS with these files.
    pub fn docker_tls(&self, ca: &str, cert: &str, key: &str, args: &[&str]) -> Output {
        let flags = [
            "--tlsverify",
            "--tlscacert",
            ca,
            "--tlscert",
            cert,
            "--tlskey",
            key,
        ];
        self.docker(&flags, args)
    }

    /// Deletes it now (to check what delete does); dropping it then does nothing.
    pub fn delete(&mut self) {
        delete_vch(&self.name);
        self.deleted = true;
    }
}

impl Drop for TestVch {
    fn drop(&mut self) {
        if !self.deleted {
            delete_vch_quietly(&self.name);
        }
    }
}

/// Deletes the VCH of that name when dropped (for VCHs a test makes another way).
pub struct DeleteOnDrop(pub String);

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        delete_vch_quietly(&self.0);
    }
}

/// A command that prints a line every 200 ms, for a container that should keep running.
pub const TICKER: &str = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done";

/// Runs a ticker container on a plain-HTTP VCH; returns its ID.
pub fn ticker(host: &str) -> String {
    let image = format!("{}/busybox", registry());
    on_ok(host, &["pull", &image]);
    on_ok(host, &["run", "-d", &image, "sh", "-c", TICKER])
        .trim()
        .to_string()
}

pub fn log_lines(host: &str, id: &str) -> usize {
    on_ok(host, &["logs", id]).lines().count()
}

/// [`ticker`] through any docker client (e.g. one over TLS); returns its ID and its QEMU.
pub fn ticker_with(docker: &dyn Fn(&[&str]) -> Output) -> (String, Vec<u32>) {
    let image = format!("{}/busybox", registry());
    assert_ok(&docker(&["pull", &image]), "pull");
    let id = assert_ok(&docker(&["run", "-d", &image, "sh", "-c", TICKER]), "run")
        .trim()
        .to_string();
    let qemu = vm_processes(&id);
    assert_eq!(qemu.len(), 1, "one QEMU for the container");
    (id, qemu)
}

/// [`log_lines`] through any docker client.
pub fn log_lines_with(docker: &dyn Fn(&[&str]) -> Output, id: &str) -> usize {
    assert_ok(&docker(&["logs", id]), "logs").lines().count()
}

/// The container is still the same VM, still shown Up, and still writing (on a plain-HTTP
/// VCH).
pub fn assert_survived(host: &str, id: &str, qemu: &[u32], lines_before: usize, when: &str) {
    assert_survived_with(
        &|args: &[&str]| on(host, args),
        id,
        qemu,
        lines_before,
        when,
    );
}

/// [`assert_survived`] through any docker client.
pub fn assert_survived_with(
    docker: &dyn Fn(&[&str]) -> Output,
    id: &str,
    qemu: &[u32],
    lines_before: usize,
    when: &str,
) {
    assert_eq!(
        vm_processes(id),
        qemu,
        "{when}: the container's QEMU changed"
    );
    let ps = assert_ok(&docker(&["ps", "--filter", &format!("id={id}")]), "ps");
    assert!(
        ps.lines()
            .any(|l| l.contains(&id[..12]) && l.contains(" Up ")),
        "{when}: docker ps does not show it Up:\n{ps}"
    );
    eventually(
        &format!("{when}: its log to keep growing"),
        Duration::from_secs(30),
        || {
            let logs = assert_ok(&docker(&["logs", id]), "logs");
            (logs.lines().count() > lines_before).then_some(())
        },
    );
}

/// Polls the Docker API every 20 ms from another thread; `stop` returns the longest time it
/// did not answer.
pub struct DowntimeProbe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Duration>,
}

impl DowntimeProbe {
    pub fn start(host: &str) -> DowntimeProbe {
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

    pub fn stop(self) -> Duration {
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
