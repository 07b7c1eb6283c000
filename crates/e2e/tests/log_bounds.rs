//! A container's log is bounded on disk as Docker's json-file driver bounds it: with
//! `--log-opt max-size=100k --log-opt max-file=3`, a container that writes several times
//! that keeps at most 3 files of at most 100 kB under the VCH's state directory, while
//! `docker logs` (`--tail`, `--since`, `--until`, `-t`) reads the kept output across the
//! files as one contiguous suffix, and `docker logs -f` and the attached `docker run` see
//! it through to the last line as the files rotate under them. Without options the default
//! cap is in effect, and `docker info` says which (inspect shows the options as given).

mod common;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

const MAX_SIZE: u64 = 100_000;
const MAX_FILE: usize = 3;
/// Lines of 101 bytes (114 in the log with their record header): ~20 times the bound.
const LINES: u32 = 20_000;

fn containers_dir(vch: &str) -> PathBuf {
    PathBuf::from(std::env::var("VIC_STATE_ROOT").expect("VIC_STATE_ROOT"))
        .join("vch")
        .join(vch)
        .join("containers")
}

/// The log files of container `id`, with their sizes.
fn log_files(vch: &str, id: &str) -> Vec<(String, u64)> {
    let dir = containers_dir(vch).join(id);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let len = e.metadata().ok()?.len();
            name.starts_with("container.log").then_some((name, len))
        })
        .collect();
    out.sort();
    out
}

/// The number of a flood line (`line-000123-xxx…`), if it is one.
fn number(line: &str) -> Option<u32> {
    line.strip_prefix("line-")?.get(..6)?.parse().ok()
}

/// The flood's lines from `text` (without timestamps), asserting they are consecutive and
/// followed by `last-line` alone; returns the first number and how many there are.
fn contiguous_suffix(what: &str, text: &str) -> (u32, usize) {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.last(),
        Some(&"last-line"),
        "{what}: ends {:?}",
        lines.last()
    );
    let numbers: Vec<u32> = lines[..lines.len() - 1]
        .iter()
        .map(|l| number(l).unwrap_or_else(|| panic!("{what}: not a flood line: {l:?}")))
        .collect();
    let first = *numbers
        .first()
        .unwrap_or_else(|| panic!("{what}: no lines"));
    let expected: Vec<u32> = (first..LINES).collect();
    assert!(
        numbers == expected,
        "{what}: not the consecutive lines {first}..{LINES} ({} lines from {first})",
        numbers.len()
    );
    (first, numbers.len())
}

/// A docker command of `vch`'s client, started with its stdout piped.
fn spawn(vch: &OwnVch, args: &[&str]) -> Child {
    let mut cmd = docker_at(&vch.client.host);
    cmd.env("DOCKER_CONFIG", &vch.client.config)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("docker")
}

/// A started docker command whose output is read as it comes (a full pipe would stall it).
struct Running {
    pid: u32,
    done: std::sync::mpsc::Receiver<std::process::Output>,
}

fn read_on(child: Child) -> Running {
    let pid = child.id();
    let (tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok(out) = child.wait_with_output() {
            let _ = tx.send(out);
        }
    });
    Running { pid, done }
}

/// Waits for `r` (at most 5 minutes) and returns its stdout.
fn finish(r: Running, what: &str) -> String {
    let Ok(out) = r.done.recv_timeout(Duration::from_secs(300)) else {
        let _ = std::process::Command::new("kill")
            .arg(r.pid.to_string())
            .status();
        panic!("{what} did not finish");
    };
    assert!(out.status.success(), "{what}: {}", stderr(&out));
    stdout(&out)
}

fn log_config(vch: &OwnVch, name: &str) -> serde_json::Value {
    let json = vch
        .client
        .ok(&["inspect", "-f", "{{json .HostConfig.LogConfig}}", name]);
    serde_json::from_str(json.trim()).expect("LogConfig JSON")
}

fn refused_with(vch: &OwnVch, opt: &str, message: &str) {
    let o = vch
        .client
        .run(&["create", "--log-opt", opt, &vch.image, "true"]);
    assert!(!o.status.success(), "--log-opt {opt} was accepted");
    assert!(
        stderr(&o).contains(message),
        "--log-opt {opt}: {}",
        stderr(&o)
    );
}

fn check_files_within_bounds(vch: &str, id: &str) {
    let files = log_files(vch, id);
    eprintln!("log files: {files:?}");
    assert!(
        files.len() <= MAX_FILE,
        "more than {MAX_FILE} files: {files:?}"
    );
    assert!(files.len() >= 2, "the log never rotated: {files:?}");
    for (name, len) in &files {
        assert!(*len <= MAX_SIZE, "{name} is {len} bytes");
    }
}

fn check_reads(vch: &OwnVch, attached: &str, followed: &str) {
    let all = vch.client.ok(&["logs", "flood"]);
    let (first, kept) = contiguous_suffix("docker logs", &all);
    eprintln!(
        "docker logs: {kept} lines from line {first}; logs -f saw {} lines, run {} lines",
        followed.lines().count(),
        attached.lines().count()
    );
    assert!(first > 0, "nothing was rotated away");
    // Two full files of ~876 records at least.
    assert!(kept >= 1700, "only {kept} lines kept");
    let tail = vch.client.ok(&["logs", "--tail", "3", "flood"]);
    let tail: Vec<&str> = tail.lines().collect();
    assert_eq!(tail.len(), 3, "{tail:?}");
    assert_eq!(number(tail[0]), Some(LINES - 2), "{tail:?}");
    assert_eq!(number(tail[1]), Some(LINES - 1), "{tail:?}");
    assert_eq!(tail[2], "last-line");
    // Timestamps, and --since/--until from a line in the oldest file.
    let stamped = vch.client.ok(&["logs", "-t", "flood"]);
    let stamped: Vec<&str> = stamped.lines().collect();
    assert_eq!(stamped.len(), kept + 1);
    let (stamp, line) = stamped[50].split_once(' ').expect("timestamp");
    assert_eq!(number(line), Some(first + 50));
    let since = vch.client.ok(&["logs", "--since", stamp, "flood"]);
    let (from, _) = contiguous_suffix("logs --since", &since);
    assert!(
        from <= first + 50 && from >= first,
        "--since starts at {from}"
    );
    let until = vch.client.ok(&["logs", "--until", stamp, "flood"]);
    let until: Vec<u32> = until
        .lines()
        .map(|l| number(l).expect("flood line"))
        .collect();
    assert_eq!(
        until.first(),
        Some(&first),
        "--until starts with the oldest kept"
    );
    assert!(until.contains(&(first + 50)) && until.windows(2).all(|w| w[1] == w[0] + 1));
    // Live readers saw the flood through the rotations, to the end.
    let (_, seen) = contiguous_suffix("docker logs -f", followed);
    assert!(seen > kept, "logs -f saw {seen} lines");
    let (run_first, _) = contiguous_suffix("docker run (attached)", attached);
    assert_eq!(run_first, 0, "the attached run saw every line");
}

/// A container without options that writes 120 MB keeps at most 5 files of 20 MB.
/// `--log-driver none`: the attached client gets all of the flood through a buffer of two
/// megabytes on disk, and no log is read back, as dockerd answers.
fn check_no_log(vch: &OwnVch, flood: &str) {
    let run = read_on(spawn(
        vch,
        &[
            "run",
            "--name",
            "quiet",
            "--log-driver",
            "none",
            &vch.image,
            "sh",
            "-c",
            flood,
        ],
    ));
    let attached = finish(run, "docker run quiet");
    assert_eq!(
        contiguous_suffix("attached, no log", &attached),
        (0, LINES as usize)
    );
    let id = vch.client.ok(&["inspect", "-f", "{{.Id}}", "quiet"]);
    let files = log_files(&vch.name, id.trim());
    let held: u64 = files.iter().map(|(_, len)| len).sum();
    assert!(
        held <= 3 << 20,
        "without a log {held} bytes are held: {files:?}"
    );
    let o = vch.client.run(&["logs", "quiet"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("configured logging driver does not support reading"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        log_config(vch, "quiet"),
        serde_json::json!({ "Type": "none", "Config": {} })
    );
}

fn check_default_cap(vch: &OwnVch) {
    let started = Instant::now();
    let script =
        "dd if=/dev/zero bs=60000 count=2000 2>/dev/null | tr '\\0' x; echo; echo last-line";
    vch.client
        .ok(&["run", "--name", "plain", &vch.image, "sh", "-c", script]);
    eprintln!("120 MB written in {:?}", started.elapsed());
    let id = vch.client.ok(&["inspect", "-f", "{{.Id}}", "plain"]);
    let files = log_files(&vch.name, id.trim());
    eprintln!("default-cap log files: {files:?}");
    assert_eq!(files.len(), 5, "{files:?}");
    for (name, len) in &files {
        assert!(*len <= 20_000_000, "{name} is {len} bytes");
    }
    let tail = vch.client.ok(&["logs", "--tail", "1", "plain"]);
    assert_eq!(tail, "last-line\n");
    // Inspect shows the options as given (none), as dockerd does; the bound is the VCH's.
    assert_eq!(
        log_config(vch, "plain"),
        serde_json::json!({ "Type": "json-file", "Config": {} })
    );
}

fn appliance_pid(vch: &str) -> u32 {
    let path = containers_dir(vch).with_file_name("appliance.pid");
    std::fs::read_to_string(path)
        .expect("appliance.pid")
        .trim()
        .parse()
        .expect("a PID")
}

/// Kills the appliance (SIGKILL) and waits for vic-init to start it again and for the API.
fn crash(vch: &OwnVch) {
    let pid = appliance_pid(&vch.name);
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    eventually("the appliance restarted", Duration::from_secs(60), || {
        (appliance_pid(&vch.name) != pid).then_some(())
    });
    eventually("the API answers", Duration::from_secs(60), || {
        vch.client.run(&["version"]).status.success().then_some(())
    });
}

/// The appliance is killed twice while a container's log rotates many times a second; the
/// log stays within its bound and reads as one contiguous suffix, without a line lost or
/// repeated at the restarts (the tether resends from the output count the files carry).
fn check_crash_while_rotating(vch: &OwnVch) {
    let lines = 30_000;
    let script = format!(
        "sleep 3; awk 'BEGIN {{ for (i = 0; i < {lines}; i++) {{ printf \"line-%06d-%s\\n\", i, \"{}\"; fflush() }} }}'; echo last-line",
        "x".repeat(88)
    );
    vch.client.ok(&[
        "run",
        "-d",
        "--name",
        "crashy",
        "--log-opt",
        "max-size=20k",
        "--log-opt",
        "max-file=2",
        &vch.image,
        "sh",
        "-c",
        &script,
    ]);
    let id = vch.client.ok(&["inspect", "-f", "{{.Id}}", "crashy"]);
    for _ in 0..2 {
        eventually("the flood rotates the log", Duration::from_secs(60), || {
            let names = log_files(&vch.name, id.trim());
            names
                .iter()
                .any(|(n, _)| n == "container.log.1")
                .then_some(())
        });
        let running = vch
            .client
            .ok(&["inspect", "-f", "{{.State.Running}}", "crashy"]);
        assert_eq!(running.trim(), "true", "the flood ended before the crash");
        crash(vch);
    }
    let code = vch.client.ok(&["wait", "crashy"]);
    assert_eq!(code.trim(), "0");
    let files = log_files(&vch.name, id.trim());
    eprintln!("after two crashes: {files:?}");
    assert!(files.len() <= 2, "{files:?}");
    assert!(files.iter().all(|(_, len)| *len <= 20_000), "{files:?}");
    let all = vch.client.ok(&["logs", "crashy"]);
    let numbers: Vec<u32> = all.lines().filter_map(number).collect();
    assert_eq!(all.lines().last(), Some("last-line"));
    let first = numbers[0];
    assert_eq!(
        numbers,
        (first..lines).collect::<Vec<_>>(),
        "a contiguous suffix from {first}"
    );
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn a_flood_keeps_within_max_size_times_max_file_and_reads_as_one_log() {
    let vch = OwnVch::create("logbounds", &[]);
    let started = Instant::now();
    let script = format!(
        "sleep 4; awk 'BEGIN {{ for (i = 0; i < {LINES}; i++) printf \"line-%06d-%s\\n\", i, \"{}\" }}'; echo last-line",
        "x".repeat(88)
    );
    let max_size = format!("max-size={}k", MAX_SIZE / 1000);
    let max_file = format!("max-file={MAX_FILE}");
    let run = read_on(spawn(
        &vch,
        &[
            "run",
            "--name",
            "flood",
            "--log-opt",
            &max_size,
            "--log-opt",
            &max_file,
            &vch.image,
            "sh",
            "-c",
            &script,
        ],
    ));
    eventually("the flood container runs", Duration::from_secs(60), || {
        let o = vch
            .client
            .run(&["inspect", "-f", "{{.State.Running}}", "flood"]);
        (stdout(&o).trim() == "true").then_some(())
    });
    let follow = read_on(spawn(&vch, &["logs", "-f", "flood"]));
    let attached = finish(run, "docker run flood");
    let followed = finish(follow, "docker logs -f flood");
    eprintln!("flood of {LINES} lines done in {:?}", started.elapsed());
    let id = vch.client.ok(&["inspect", "-f", "{{.Id}}", "flood"]);
    check_files_within_bounds(&vch.name, id.trim());
    check_reads(&vch, &attached, &followed);
    assert_eq!(
        log_config(&vch, "flood"),
        serde_json::json!({ "Type": "json-file", "Config": { "max-size": "100k", "max-file": "3" } })
    );
    // Without options the default cap applies; inspect shows none given, as dockerd.
    check_default_cap(&vch);
    check_no_log(&vch, &script);
    check_crash_while_rotating(&vch);
    refused_with(&vch, "max-file=0", "max-file cannot be less than 1");
    refused_with(&vch, "max-size=1x", "invalid suffix: 'x'");
    refused_with(
        &vch,
        "colour=blue",
        "unknown log opt 'colour' for json-file log driver",
    );
    refused_with(&vch, "labels=a", "--log-opt labels is not supported by vic");
    vch.delete();
}
