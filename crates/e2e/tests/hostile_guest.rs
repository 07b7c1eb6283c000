//! A guest that breaks the tether protocol gets nowhere. The containers of these tests boot
//! an initramfs whose PID 1 is `crates/hostile-guest` instead of the tether: it picks how to
//! misbehave from the container's hostname (`docker run --hostname MODE`). What a user sees:
//! the run fails (a violation before the process started) or dies with 137 and a `die` event
//! (after), `docker inspect` names the violation, the QEMU process is gone at once (the host
//! powers the VM off; the guest never does), a guest that lingers after its exit is powered
//! off after the 10 s grace, one that stops reading still ends on `docker stop` and
//! `docker kill`, and the appliance answers on with its memory where it was. The `ok` mode
//! behaves, so the same checks can tell a good guest from a bad one.

mod common;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

/// How much the appliance's resident set may grow while guests flood it (it grows a little
/// as it runs VMs at all).
const RSS_SLACK_KIB: u64 = 8 * 1024;

/// A VCH whose container VMs boot the hostile guest.
struct HostileVch {
    vch: OwnVch,
    appliance_pid: String,
    _boot: BootDir,
}

/// The bootstrap directory given to `vic-machine create`, removed when dropped.
struct BootDir(PathBuf);

impl Drop for BootDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl HostileVch {
    fn create(prefix: &str) -> HostileVch {
        let initrd = std::env::var("VIC_HOSTILE_INITRD").expect(
            "VIC_HOSTILE_INITRD is not set: run these tests with `make test` \
             (`make initramfs` builds build/bootstrap/hostile-initramfs.cpio)",
        );
        let kernel = std::env::var("VIC_KERNEL").expect("VIC_KERNEL is not set");
        let boot =
            BootDir(std::env::temp_dir().join(format!("{prefix}-boot-{}", std::process::id())));
        std::fs::create_dir_all(&boot.0).expect("bootstrap dir");
        std::fs::copy(&kernel, boot.0.join("vmlinux")).expect("copying the kernel");
        std::fs::copy(&initrd, boot.0.join("initramfs.cpio")).expect("copying the initramfs");
        let dir = boot.0.to_string_lossy().to_string();
        let vch = OwnVch::create(prefix, &["--bootstrap-dir", &dir]);
        let appliance_pid = appliance_pid(&vch.name);
        HostileVch {
            vch,
            appliance_pid,
            _boot: boot,
        }
    }

    fn client(&self) -> &Client {
        &self.vch.client
    }

    /// `docker run --name MODE --hostname MODE IMAGE true`, and the container's ID.
    fn run(&self, mode: &str) -> (std::process::Output, String) {
        let out = self.client().run(&[
            "run",
            "--name",
            mode,
            "--hostname",
            mode,
            &self.vch.image,
            "true",
        ]);
        let id = self.client().ok(&["inspect", "-f", "{{.Id}}", mode]);
        (out, id.trim().to_string())
    }

    fn state(&self, id: &str) -> serde_json::Value {
        let out = self.client().ok(&["inspect", id]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
        v[0]["State"].clone()
    }

    /// The container's `die` events since `since` (Unix seconds), as "die EXITCODE" lines.
    fn die_events(&self, id: &str, since: u64) -> String {
        self.client().ok(&[
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &(now() + 1).to_string(),
            "--filter",
            &format!("container={id}"),
            "--filter",
            "event=die",
            "--format",
            "{{.Status}} {{.Actor.Attributes.exitCode}}",
        ])
    }

    fn rss_kib(&self) -> u64 {
        rss_kib(&self.appliance_pid)
    }

    /// The appliance still serves: `docker ps` answers.
    fn answers(&self) {
        self.client().ok(&["ps", "-a"]);
    }

    fn delete(self) {
        self.vch.delete();
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A process's resident set in KiB.
fn rss_kib(pid: &str) -> u64 {
    read_rss_kib(pid).expect("the appliance's VmRSS")
}

fn read_rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Samples `pid`'s resident set every 10 ms until dropped; [`RssPeak::peak`] is the largest.
struct RssPeak {
    peak: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

impl RssPeak {
    fn start(pid: &str) -> RssPeak {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
        let done = Arc::new(AtomicBool::new(false));
        let (p, d, pid) = (peak.clone(), done.clone(), pid.to_string());
        std::thread::spawn(move || {
            while !d.load(Ordering::SeqCst) {
                p.fetch_max(read_rss_kib(&pid).unwrap_or(0), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        RssPeak { peak, done }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::SeqCst)
    }
}

impl Drop for RssPeak {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

/// How long after `since` the container's QEMU was seen gone; panics after `limit`.
fn qemu_gone(id: &str, since: Instant, limit: Duration) -> Duration {
    loop {
        if vm_processes(id).is_empty() {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "the QEMU of container {id} still runs {limit:?} on: {:?}",
            vm_processes(id)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn a_guest_that_breaks_the_protocol_is_powered_off_at_once() {
    let h = HostileVch::create("hostile");
    let since = now().saturating_sub(1);

    // The control case: a guest that behaves runs, exits 0 and powers itself off.
    let (out, id) = h.run("ok");
    let ran = Instant::now();
    assert!(out.status.success(), "ok: {}", stderr(&out));
    assert_eq!(stdout(&out), "hostile-guest: ok\n");
    let state = h.state(&id);
    assert_eq!(state["ExitCode"], 0, "{state}");
    assert_eq!(state["Error"], "", "{state}");
    let gone = qemu_gone(&id, ran, Duration::from_secs(5));
    eprintln!("ok: QEMU gone {gone:?} after docker run returned");
    assert_eq!(h.die_events(&id, since).trim(), "die 0");

    let before = h.rss_kib();
    let sampler = RssPeak::start(&h.appliance_pid);

    // Violations after the process was reported started: the run dies with 137.
    let cases = [
        (
            "started-flood",
            "tether protocol violation: Started where the protocol does not allow it \
             (after Started)",
        ),
        (
            "foreign-session",
            "tether protocol violation: output for session 7, which does not exist",
        ),
        (
            "garbage",
            "tether protocol error: frame payload of 1048577 bytes exceeds the limit",
        ),
    ];
    for (mode, why) in cases {
        let started = Instant::now();
        let (out, id) = h.run(mode);
        let ran = Instant::now();
        assert_eq!(out.status.code(), Some(137), "{mode}: {}", stderr(&out));
        let state = h.state(&id);
        assert_eq!(state["Status"], "exited", "{mode}: {state}");
        assert_eq!(state["ExitCode"], 137, "{mode}: {state}");
        assert_eq!(
            state["Error"],
            format!("container VM stopped unexpectedly: {why}"),
            "{mode}"
        );
        let gone = qemu_gone(&id, ran, Duration::from_secs(3));
        eprintln!(
            "{mode}: docker run took {:?}; QEMU gone {gone:?} after it returned",
            ran - started
        );
        assert_eq!(h.die_events(&id, since).trim(), "die 137", "{mode}");
        // Nothing the guest sent past the violation (nor for another session) is logged.
        let logs = h.client().run(&["logs", mode]);
        assert!(logs.status.success(), "{mode}: {}", stderr(&logs));
        assert_eq!(
            (stdout(&logs), stderr(&logs)),
            (String::new(), String::new())
        );
        h.answers();
    }

    // A violation before the process started: the start fails, naming it.
    let started = Instant::now();
    let (out, id) = h.run("hello-flood");
    let ran = Instant::now();
    let why = "tether protocol violation: Hello, said again and again, where the protocol does not allow it (after Hello)";
    assert!(!out.status.success(), "hello-flood: the run succeeded");
    assert!(
        stderr(&out).contains(why),
        "hello-flood: docker run said {:?}",
        stderr(&out)
    );
    let state = h.state(&id);
    assert_eq!(state["Error"], why, "hello-flood");
    // A container whose start failed stays created, with exit code 128.
    assert_eq!(state["Status"], "created", "{state}");
    assert_eq!(state["ExitCode"], 128, "{state}");
    // The start powers the VM off at once before it answers, not after the start timeout.
    assert!(
        ran - started < Duration::from_secs(20),
        "hello-flood: the failed start took {:?}",
        ran - started
    );
    let gone = qemu_gone(&id, ran, Duration::from_secs(3));
    // The guest ran and was ended for what it did: `docker events` says so, as for a
    // violation after the start.
    assert_eq!(h.die_events(&id, since).trim(), "die 128", "hello-flood");
    eprintln!(
        "hello-flood: docker run took {:?}; QEMU gone {gone:?} after it returned",
        ran - started
    );
    h.answers();

    let peak = sampler.peak();
    drop(sampler);
    eprintln!(
        "appliance RSS {before} KiB before the floods, {peak} KiB at most, {} KiB after",
        h.rss_kib()
    );
    assert!(
        peak.saturating_sub(before) < RSS_SLACK_KIB,
        "the appliance grew from {before} KiB to {peak} KiB while guests flooded it"
    );
    h.delete();
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn a_guest_that_lingers_after_its_exit_is_powered_off_after_the_grace() {
    let h = HostileVch::create("linger");
    let (out, id) = h.run("linger");
    let ran = Instant::now();
    // To the user it is an ordinary exit.
    assert!(out.status.success(), "linger: {}", stderr(&out));
    let state = h.state(&id);
    assert_eq!(state["ExitCode"], 0, "{state}");
    assert_eq!(state["Error"], "", "{state}");
    assert!(
        !vm_processes(&id).is_empty(),
        "the lingering guest's QEMU should still run right after its exit"
    );
    let gone = qemu_gone(&id, ran, Duration::from_secs(16));
    eprintln!("linger: QEMU gone {gone:?} after docker run returned");
    h.answers();
    h.delete();
}

/// Writes `total` bytes to `child`'s stdin from a thread; the count written so far is
/// shared (a host that pushes back blocks the writer, which then never finishes).
fn push_stdin(child: &mut Child, total: usize) -> Arc<AtomicU64> {
    let mut stdin = child.stdin.take().expect("stdin");
    let written = Arc::new(AtomicU64::new(0));
    let w = written.clone();
    std::thread::spawn(move || {
        use std::io::Write;
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            if stdin.write_all(&chunk).is_err() {
                return;
            }
            sent += chunk.len();
            w.store(sent as u64, Ordering::SeqCst);
        }
    });
    written
}

/// Waits until container `name` of `h` runs; its ID.
fn running_id(h: &HostileVch, name: &str) -> String {
    eventually(
        &format!("container {name} to run"),
        Duration::from_secs(60),
        || {
            let o = h
                .client()
                .run(&["inspect", "-f", "{{.State.Running}} {{.Id}}", name]);
            let s = stdout(&o);
            s.strip_prefix("true ").map(|id| id.trim().to_string())
        },
    )
}

/// Waits until `written` stops growing for 3 s or reaches `total`; what it reached.
fn until_stalled(written: &AtomicU64, total: usize) -> u64 {
    let mut last = (0, Instant::now());
    while (written.load(Ordering::SeqCst) as usize) < total
        && last.1.elapsed() < Duration::from_secs(3)
    {
        let now = written.load(Ordering::SeqCst);
        if now != last.0 {
            last = (now, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    written.load(Ordering::SeqCst)
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn a_guest_that_stops_reading_cannot_grow_the_appliance_and_docker_stop_ends_it() {
    let h = HostileVch::create("mute");
    let before = h.rss_kib();
    let sampler = RssPeak::start(&h.appliance_pid);
    let mut cmd = docker_at(&h.client().host);
    cmd.env("DOCKER_CONFIG", &h.client().config)
        .args([
            "run",
            "-i",
            "--name",
            "mute",
            "--hostname",
            "mute",
            &h.vch.image,
            "cat",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("docker run -i");
    let id = running_id(&h, "mute");
    let total = 64 << 20;
    let pushed = until_stalled(&push_stdin(&mut child, total), total);
    let peak = sampler.peak();
    drop(sampler);
    eprintln!(
        "mute: {} KiB of stdin taken; appliance RSS {before} KiB before, {peak} KiB at most",
        pushed >> 10
    );
    h.answers();
    assert!(
        peak.saturating_sub(before) < RSS_SLACK_KIB,
        "the appliance grew from {before} KiB to {peak} KiB while {} MiB of stdin went to a \
         guest that reads nothing",
        pushed >> 20
    );
    // Neither the stop signal nor SIGKILL reaches it: docker stop ends in a power-off.
    let stopping = Instant::now();
    h.client().ok(&["stop", "-t", "1", "mute"]);
    let stopped = stopping.elapsed();
    let state = h.state(&id);
    assert_eq!(state["Running"], false, "{state}");
    let gone = qemu_gone(&id, stopping, Duration::from_secs(30));
    eprintln!("mute: docker stop -t 1 took {stopped:?}; QEMU gone after {gone:?}");
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("mute: appliance RSS {} KiB at the end", h.rss_kib());
    h.answers();
    h.delete();
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn docker_kill_ends_a_guest_that_stops_reading() {
    let h = HostileVch::create("mutekill");
    h.client().ok(&[
        "run",
        "-d",
        "--name",
        "mute",
        "--hostname",
        "mute",
        &h.vch.image,
        "cat",
    ]);
    let id = running_id(&h, "mute");
    // SIGKILL cannot reach it; docker kill promises the container ends all the same.
    let killing = Instant::now();
    h.client().ok(&["kill", "mute"]);
    let killed = killing.elapsed();
    eventually(
        "docker kill to end a guest that stops reading",
        Duration::from_secs(15),
        || (h.state(&id)["Running"] == false).then_some(()),
    );
    let gone = qemu_gone(&id, killing, Duration::from_secs(15));
    eprintln!("mute: docker kill took {killed:?}; QEMU gone after {gone:?}");
    h.answers();
    h.delete();
}
