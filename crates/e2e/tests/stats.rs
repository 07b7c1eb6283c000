//! `docker stats` through the real docker CLI: a busy container's CPU, the memory the guest
//! sees against the VM's, its processes, traffic and disk writes; a stream that keeps
//! coming; a stopped container's zeros; `--cpuset-cpus` pinning the VM.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// Bytes of a CLI size (`236.4MiB`, `20.5MB`, `0B`).
fn bytes(s: &str) -> f64 {
    let s = s.trim();
    let at = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(at);
    let n: f64 = num.parse().unwrap_or_else(|_| panic!("a size: {s:?}"));
    let k = match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => panic!("unit {other:?} in {s:?}"),
    };
    n * k
}

/// `docker stats --no-stream` of `ctr` in `field` (a CLI template field).
fn stat(client: &Client, ctr: &str, field: &str) -> String {
    let f = format!("{{{{.{field}}}}}");
    client
        .ok(&["stats", "--no-stream", "--format", &f, ctr])
        .trim()
        .to_string()
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn stats_say_what_the_guest_sees() {
    let vch = OwnVch::create("stats", &[]);
    let (client, image) = (&vch.client, vch.image.as_str());
    client.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "--memory",
        "256m",
        image,
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    client.ok(&["run", "-d", "--name", "idle", image, "sleep", "600"]);

    let busy: f64 = stat(client, "busy", "CPUPerc")
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!(busy > 50.0, "a busy loop keeps its vCPU busy: {busy}%");
    let idle: f64 = stat(client, "idle", "CPUPerc")
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!(idle < 20.0, "sleep does not: {idle}%");

    // Memory: the limit is the memory the guest has, as its own /proc/meminfo says.
    let usage = stat(client, "busy", "MemUsage");
    let (used, limit) = usage.split_once(" / ").expect("USAGE / LIMIT");
    let total_kib = mem_total_kib(client, "busy") as f64;
    let limit = bytes(limit);
    assert!(
        (limit - total_kib * 1024.0).abs() < 0.1 * 1024.0 * 1024.0,
        "limit {limit} is the guest's MemTotal {total_kib} KiB"
    );
    assert!(limit > 200e6 && limit <= 256.0 * 1024.0 * 1024.0, "{usage}");
    assert!(bytes(used) > 1e6 && bytes(used) < limit, "{usage}");
    assert_eq!(stat(client, "busy", "PIDs"), "1", "sh alone");

    // Traffic and disk writes show.
    let gw = client.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.bridge.Gateway}}",
        "idle",
    ]);
    client.ok(&["exec", "idle", "ping", "-c", "3", "-W", "2", gw.trim()]);
    let net = stat(client, "idle", "NetIO");
    let (rx, tx) = net.split_once(" / ").expect("RX / TX");
    assert!(bytes(rx) >= 3.0 * 84.0 && bytes(tx) >= 3.0 * 84.0, "{net}");
    client.ok(&[
        "exec",
        "idle",
        "dd",
        "if=/dev/zero",
        "of=/written",
        "bs=1M",
        "count=20",
        "conv=fsync",
    ]);
    let io = stat(client, "idle", "BlockIO");
    let (_, written) = io.split_once(" / ").expect("READ / WRITE");
    assert!(bytes(written) >= 20.0 * 1024.0 * 1024.0, "{io}");

    // A stream keeps coming, once a second.
    let mut streaming = docker_at(&client.host);
    streaming
        .env("DOCKER_CONFIG", &client.config)
        .args(["stats", "--format", "{{.Name}} {{.CPUPerc}}", "idle"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = streaming.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(3500));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut seen = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut seen)
        .unwrap();
    assert!(seen.matches("idle ").count() >= 2, "{seen:?}");

    // --cpuset-cpus: the VM's QEMU runs on those host CPUs, with a vCPU for each.
    client.ok(&[
        "run",
        "-d",
        "--name",
        "pinned",
        "--cpuset-cpus",
        "1",
        image,
        "sleep",
        "600",
    ]);
    assert_eq!(client.ok(&["exec", "pinned", "nproc"]), "1\n");
    let pid = client.ok(&["inspect", "-f", "{{.State.Pid}}", "pinned"]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(str::trim);
    assert_eq!(allowed, Some("1"), "QEMU's affinity");
    let shown = client.ok(&["inspect", "-f", "{{.HostConfig.CpusetCpus}}", "pinned"]);
    assert_eq!(shown.trim(), "1");
    let o = client.run(&["run", "--rm", "--cpuset-cpus", "0-4095", image, "true"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Requested CPUs are not available - requested 0-4095"),
        "{}",
        stderr(&o)
    );
    client.ok(&["rm", "-f", "pinned"]);

    // Stopped: zeros.
    client.ok(&["stop", "-t", "1", "idle"]);
    assert_eq!(stat(client, "idle", "CPUPerc"), "0.00%");
    assert_eq!(stat(client, "idle", "MemUsage"), "0B / 0B");
    client.ok(&["rm", "-f", "busy", "idle"]);
    vch.delete();
}
