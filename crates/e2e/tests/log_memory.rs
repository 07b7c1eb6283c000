//! A container's log can be far larger than the appliance's memory should ever be: reading
//! it back (`docker logs`, `--tail`) streams it, and the appliance's resident memory stays
//! within a bound of what it was (96 MiB, well under the log's 256 MiB), whatever the
//! log's size. The log is bounded at 64m × 5 so that all of it is kept, across five files
//! (the default cap, 20m × 5, would keep the last 100 MB).

mod common;

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// The appliance's resident set in KiB.
fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("appliance status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// The largest resident set seen while `f` runs (sampled every 10 ms).
fn peak_rss_during(pid: &str, f: impl FnOnce()) -> u64 {
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (done, pid) = (done.clone(), pid.to_string());
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::SeqCst) {
                peak = peak.max(rss_kib(&pid));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    };
    f();
    done.store(true, Ordering::SeqCst);
    sampler.join().expect("sampler")
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn reading_a_256_mib_log_does_not_grow_the_appliance() {
    let vch = OwnVch::create("logmem", &[]);
    let pid = appliance_pid(&vch.name);
    // 256 MiB of output, with a short last line to find.
    let script =
        "dd if=/dev/zero bs=65536 count=4096 2>/dev/null | tr '\\0' x; echo; echo last-line";
    vch.client.ok(&[
        "run",
        "--name",
        "big",
        "--log-opt",
        "max-size=64m",
        "--log-opt",
        "max-file=5",
        &vch.image,
        "sh",
        "-c",
        script,
    ]);
    let before = rss_kib(&pid);
    let tail = vch.client.ok(&["logs", "--tail", "1", "big"]);
    assert_eq!(tail.trim(), "last-line");
    let mut bytes = 0u64;
    let peak = peak_rss_during(&pid, || {
        let mut cmd = docker_at(&vch.client.host);
        cmd.env("DOCKER_CONFIG", &vch.client.config)
            .args(["logs", "big"])
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("docker logs");
        let mut out = child.stdout.take().expect("stdout");
        bytes = std::io::copy(&mut out, &mut std::io::sink()).expect("reading logs");
        assert!(child.wait().expect("wait").success());
    });
    assert_eq!(bytes, 256 * 1024 * 1024 + 1 + "last-line\n".len() as u64);
    let grew_mib = peak.saturating_sub(before) / 1024;
    eprintln!("appliance RSS {before} KiB before, {peak} KiB at most while serving {bytes} bytes");
    assert!(
        grew_mib < 96,
        "the appliance grew by {grew_mib} MiB (from {before} KiB to {peak} KiB) serving a 256 MiB log"
    );
    vch.delete();
}
