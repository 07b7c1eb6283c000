//! Shared harness: one VCH a test binary, the docker CLI, the registry address.
#![allow(dead_code)]

pub mod crash;
pub mod vsphere;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const WHY: &str = "needs QEMU, the test registry and the docker CLI: make test runs it";

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run these tests with `make test`"))
}

pub fn build_dir() -> PathBuf {
    PathBuf::from(env("VIC_BUILD_DIR"))
}

pub fn registry() -> String {
    env("VIC_TEST_REGISTRY")
}

pub fn vic_machine() -> Command {
    let mut c = Command::new(build_dir().join("bin/vic-machine"));
    c.env("VIC_STATE_ROOT", env("VIC_STATE_ROOT"));
    c
}

/// A VCH created for this test binary.
pub struct Vch {
    pub name: String,
    pub docker_host: String,
}

static VCH: OnceLock<Vch> = OnceLock::new();

/// Creates a VCH with vic-machine (working directory `workdir`), checks what create prints
/// and writes, and returns its DOCKER_HOST. The test registry is an insecure registry.
pub fn create_vch(name: &str, workdir: &std::path::Path) -> String {
    create_vch_with(name, workdir, &["--insecure-registry", &registry()])
}

/// [`create_vch`] with other options than the insecure test registry.
pub fn create_vch_with(name: &str, workdir: &std::path::Path, extra: &[&str]) -> String {
    create_vch_with_env(name, workdir, extra, &[])
}

/// [`create_vch_with`], vic-machine (and so the appliance it starts) running with `env` set.
pub fn create_vch_with_env(
    name: &str,
    workdir: &std::path::Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> String {
    std::fs::create_dir_all(workdir).expect("temp dir");
    let out = vic_machine()
        .envs(env.iter().copied())
        .current_dir(workdir)
        .args(["create", "--target", "local", "--name", name, "--no-tls"])
        .args(extra)
        .output()
        .expect("running vic-machine create");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "vic-machine create failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Installer completed successfully"),
        "{stdout}"
    );
    for line in stdout.lines() {
        assert!(
            vic_log_line(line).is_some() || line.starts_with("DOCKER_HOST="),
            "not a log line as VIC prints them: {line:?} in\n{stdout}"
        );
    }
    let docker_host = stdout
        .lines()
        .find_map(|l| l.strip_prefix("DOCKER_HOST="))
        .expect("create prints DOCKER_HOST=")
        .to_string();
    let env_file = std::fs::read_to_string(workdir.join(name).join(format!("{name}.env")))
        .expect("NAME/NAME.env");
    assert_eq!(env_file.trim(), format!("DOCKER_HOST={docker_host}"));
    docker_host
}

/// The level and message of a line of vic-machine's log, as VIC printed them: Go's
/// `Jan _2 2006 15:04:05.000Z07:00` stamp, the level in five columns, the message
/// (`Dec  5 2026 05:23:33.123Z INFO  Installer completed successfully`).
pub fn vic_log_line(line: &str) -> Option<(&str, &str)> {
    let (date, rest) = (line.get(..11)?, line.get(11..)?);
    let months = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec";
    let mut d = date.split_whitespace();
    let month = d.next()?;
    let month_ok = months.split(' ').any(|m| m == month);
    let day_ok = d.next()?.parse::<u8>().is_ok_and(|n| (1..=31).contains(&n));
    let year_ok = d.next()?.len() == 4;
    let (time, rest) = rest.strip_prefix(' ')?.split_once(' ')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let clock = time.get(..12)?;
    let clock_ok = clock.split([':', '.']).map(digits).filter(|ok| *ok).count() == 4;
    let zone = time.get(12..)?;
    let zone_ok =
        zone == "Z" || (zone.len() == 6 && (zone.starts_with('+') || zone.starts_with('-')));
    let level = ["INFO  ", "WARN  ", "ERROR "]
        .into_iter()
        .find(|l| rest.starts_with(l))?;
    (month_ok && day_ok && year_ok && clock_ok && zone_ok)
        .then(|| (level.trim_end(), &rest[level.len()..]))
}

/// The memory the guest of running container `ctr` has, in KiB (its `/proc/meminfo`).
pub fn mem_total_kib(client: &Client, ctr: &str) -> u64 {
    let meminfo = client.ok(&["exec", ctr, "cat", "/proc/meminfo"]);
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("MemTotal")
}

/// A VCH of one test's own (plain HTTP, `--insecure-registry` for the test registry plus
/// `extra`), a docker client for it, and the test registry's busybox pulled into it. Deleted
/// with [`OwnVch::delete`]; if the test fails first, when dropped.
pub struct OwnVch {
    pub name: String,
    pub client: Client,
    /// `REG/busybox`.
    pub image: String,
    dir: PathBuf,
    deleted: bool,
}

impl OwnVch {
    pub fn create(prefix: &str, extra: &[&str]) -> OwnVch {
        Self::create_with_env(prefix, extra, &[])
    }

    /// [`OwnVch::create`], the appliance running with `env` set (e.g. lowered API limits).
    pub fn create_with_env(prefix: &str, extra: &[&str], env: &[(&str, &str)]) -> OwnVch {
        let name = format!("{prefix}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        let reg = registry();
        let mut args = vec!["--insecure-registry", reg.as_str()];
        args.extend_from_slice(extra);
        let host = create_vch_with_env(&name, &dir, &args, env);
        let client = Client::new(&host, dir.join("docker-config"));
        let image = format!("{reg}/busybox");
        let me = OwnVch {
            name,
            client,
            image,
            dir,
            deleted: false,
        };
        me.client.ok(&["pull", &me.image]);
        me
    }

    /// Deletes the VCH (asserting that works) and its work directory.
    pub fn delete(mut self) {
        self.deleted = true;
        delete_vch(&self.name);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for OwnVch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test failed: what the appliance said is gone with the VCH, so show its end.
            let log = Path::new(&env("VIC_STATE_ROOT"))
                .join("vch")
                .join(&self.name)
                .join("appliance.log");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(80)..].join("\n");
            eprintln!("--- the last lines of {} ---\n{tail}", log.display());
        }
        if !self.deleted {
            let _ = vic_machine()
                .args([
                    "delete", "--target", "local", "--name", &self.name, "--force",
                ])
                .output();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The PID (as written) of VCH `name`'s appliance, from its state directory.
pub fn appliance_pid(name: &str) -> String {
    let path = Path::new(&env("VIC_STATE_ROOT"))
        .join("vch")
        .join(name)
        .join("appliance.pid");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The test binary's VCH, created on first use and deleted once the binary has ended.
pub fn vch() -> &'static Vch {
    VCH.get_or_init(|| {
        let name = format!("e2e-{}", std::process::id());
        let docker_host = create_vch(&name, &std::env::temp_dir().join(&name));
        delete_when_done(&name);
        Vch { name, docker_host }
    })
}

/// Deletes VCH `name` once this test process has ended, however it ended (the harness has no
/// teardown): a shell that waits for the process, then runs `vic-machine delete --force`.
fn delete_when_done(name: &str) {
    let mut delete = vic_machine();
    delete.args(["delete", "--target", "local", "--name", name, "--force"]);
    let mut reaper = Command::new("sh");
    reaper
        .args([
            "-c",
            r#"while kill -0 "$0" 2>/dev/null; do sleep 1; done; exec "$@""#,
        ])
        .arg(std::process::id().to_string())
        .arg(delete.get_program())
        .args(delete.get_args())
        .envs(delete.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Err(e) = reaper.spawn() {
        eprintln!("VCH {name} will not be deleted after the tests: {e}");
    }
}

pub fn docker_cmd() -> Command {
    docker_at(&vch().docker_host)
}

/// The docker CLI aimed at `host`, with no TLS settings or context from the environment.
pub fn docker_at(host: &str) -> Command {
    let mut c = Command::new(env("VIC_DOCKER"));
    c.env("DOCKER_HOST", host);
    c.env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .env_remove("DOCKER_CONTEXT");
    c.stdin(Stdio::null());
    c
}

/// Runs docker with a deadline; panics if it does not finish.
pub fn docker(args: &[&str]) -> Output {
    docker_timeout(args, Duration::from_secs(180))
}

pub fn docker_timeout(args: &[&str], limit: Duration) -> Output {
    let mut cmd = docker_cmd();
    cmd.args(args);
    run_limited(cmd, None, limit, &format!("docker {args:?}"))
}

/// Deletes a VCH made by [`create_vch_with`] (with its containers).
/// Deletes a VCH when nothing can be asserted any more (a test's clean-up while it fails).
pub fn delete_vch_quietly(name: &str) {
    let _ = vic_machine()
        .args(["delete", "--target", "local", "--name", name, "--force"])
        .output();
}

pub fn delete_vch(name: &str) {
    let out = vic_machine()
        .args(["delete", "--target", "local", "--name", name, "--force"])
        .output()
        .expect("running vic-machine delete");
    assert!(
        out.status.success(),
        "vic-machine delete {name}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A docker CLI aimed at another VCH, with a config directory of its own (its credentials).
pub struct Client {
    pub host: String,
    pub config: PathBuf,
}

impl Client {
    pub fn new(host: &str, config: PathBuf) -> Client {
        std::fs::create_dir_all(&config).expect("client config dir");
        Client {
            host: host.to_string(),
            config,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = docker_at(&self.host);
        c.env("DOCKER_CONFIG", &self.config).args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        run_limited(
            self.cmd(args),
            None,
            Duration::from_secs(180),
            &format!("docker {args:?}"),
        )
    }

    /// Runs docker with `input` on its stdin (`login --password-stdin`).
    pub fn run_input(&self, args: &[&str], input: &str) -> Output {
        run_limited(
            self.cmd(args),
            Some(input),
            Duration::from_secs(180),
            &format!("docker {args:?}"),
        )
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "docker {args:?} failed ({}): {}{}",
            o.status,
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }
}

/// Runs `cmd` (stdin `input`), killing it and panicking if it outlives `limit`.
pub fn run_limited(cmd: Command, input: Option<&str>, limit: Duration, what: &str) -> Output {
    let (output, timed_out) = run_bounded(cmd, input, limit);
    if timed_out {
        panic!(
            "{what} did not finish within {limit:?}; stdout: {} stderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// Runs `cmd` (stdin `input`), killing it if it outlives `limit`; its output and whether it
/// was killed.
pub fn run_bounded(mut cmd: Command, input: Option<&str>, limit: Duration) -> (Output, bool) {
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning docker");
    if let Some(text) = input {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("writing stdin");
    }
    // Drained while it runs: a command with more output than a pipe holds must not stall.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().expect("waiting for docker") {
            break (status, false);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            break (child.wait().expect("docker status"), true);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    (output, timed_out)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Runs docker and asserts success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(
        o.status.success(),
        "docker {args:?} failed ({}): {}{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// `REG/busybox` (pulled once).
pub fn busybox() -> String {
    static PULLED: OnceLock<String> = OnceLock::new();
    PULLED
        .get_or_init(|| {
            let image = format!("{}/busybox", registry());
            ok(&["pull", &image]);
            image
        })
        .clone()
}

/// Polls `f` until it returns Some, or panics with `what` after `limit`.
pub fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > limit {
            panic!("{what} did not happen within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Host processes whose command line contains `needle`.
pub fn processes_matching(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmd).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// QEMU processes of a container (its VM is named `name-<short id>`, as VIC names them).
pub fn vm_processes(container_id: &str) -> Vec<u32> {
    processes_matching(&container_id[..12])
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .split('\0')
                        .next()
                        .unwrap_or("")
                        .contains("qemu-system")
                })
                .unwrap_or(false)
        })
        .collect()
}

pub fn inspect(id: &str) -> serde_json::Value {
    let out = ok(&["inspect", id]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0].clone()
}

/// The links of network namespace `ns` (a VCH's), one name each.
#[allow(dead_code)]
pub fn netns_links(ns: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show"])
        .output()
        .expect("ip");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .collect()
}

/// Runs `ip ARGS` (iproute2), asserting that it works.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A copy of this build whose appliance binary differs by trailing bytes: a real, working
/// build with another version. Returns its vic-machine.
pub fn another_build(dir: &Path, broken: bool) -> PathBuf {
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

/// `curl -s ARGS URL` → (HTTP status, body); the status is 0 when no answer came.
pub fn curl(args: &[&str], url: &str) -> (u32, String) {
    let o = std::process::Command::new("curl")
        .args(["-s", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}
