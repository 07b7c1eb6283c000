//! Helpers of the vSphere tests: vic-machine against a vcsim, the docker CLI against the VCH
//! it made, what the simulator holds.
#![allow(dead_code)]

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use vcsim::{Vcsim, PASSWORD, USER};
use vim25::Thumbprint;

use super::{run_bounded, run_limited, stderr, stdout, vic_machine};

/// How long a command of a test may take: longer than vic-machine's own `--timeout` (3m by
/// default), so that its own error and undo are seen rather than cut off.
pub const LIMIT: Duration = Duration::from_secs(240);

pub fn fixtures() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vcsim");
    dir.canonicalize().unwrap().display().to_string()
}

/// `vic-machine COMMAND --target https://HOST{path} [--name VCH] ARGS` against `sim`
/// (`ls` takes no name).
pub fn machine_at(sim: &Vcsim, vch: &str, path: &str, command: &str, args: &[&str]) -> Output {
    machine_of(sim, vic_machine(), vch, path, command, args)
}

/// [`machine_at`] with another installation's vic-machine (`exe`).
pub fn machine_of(
    sim: &Vcsim,
    mut cmd: std::process::Command,
    vch: &str,
    path: &str,
    command: &str,
    args: &[&str],
) -> Output {
    cmd.arg(command);
    if command != "ls" {
        cmd.args(["--name", vch]);
    }
    cmd.arg("--target")
        .arg(format!("https://{}{path}", sim.host))
        .args(["--user", USER, "--password", PASSWORD, "--thumbprint"])
        .arg(Thumbprint::sha1_of(&sim.cert_der).to_string())
        .args(args)
        .env("VIC_MACHINE_SIMULATOR_GUESTS", fixtures());
    let (out, timed_out) = run_bounded(cmd, None, LIMIT);
    eprintln!("{}{}", stdout(&out), stderr(&out));
    // What the simulator's guests said (the appliance's own log, its containers'), shown
    // with the output of a test that fails.
    if timed_out || !out.status.success() {
        eprintln!(
            "the guests' logs:\n{}\nthose of the VMs removed:\n{}",
            sim.guest_logs(40),
            sim.removed_guest_logs(40)
        );
    }
    assert!(
        !timed_out,
        "vic-machine {command} did not finish within {LIMIT:?}"
    );
    out
}

/// The simulator's inventory and the files of its first datastore.
pub fn inventory(sim: &Vcsim) -> String {
    let objects = sim.govc(&["find", "-i", "/"]);
    let files = sim.govc(&["datastore.ls", "-ds", "LocalDS_0", "-R"]);
    format!("{objects}\n{files}")
}

/// The docker CLI with the environment of a VCH's env file.
pub fn docker(env_file: &Path, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(super::docker_cmd().get_program());
    for line in std::fs::read_to_string(env_file).unwrap().lines() {
        let (k, v) = line.split_once('=').unwrap();
        cmd.env(k, v);
    }
    cmd.args(args);
    run_limited(cmd, None, LIMIT, "docker")
}

/// Waits up to `limit` for `docker inspect` to say container `name` is `status`; how long
/// that took.
pub fn wait_status(env: &Path, name: &str, status: &str, limit: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let o = docker(env, &["inspect", "-f", "{{.State.Status}}", name]);
        if stdout(&o).trim() == status {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < limit,
            "docker inspect still says {}",
            stdout(&o)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `docker inspect -f FORMAT NAME`, which must succeed.
pub fn inspect(env: &Path, name: &str, format: &str) -> String {
    let o = docker(env, &["inspect", "-f", format, name]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().to_string()
}

/// `create`'s flags for a VCH on vcsim's vCenter model: its cluster, the first datastore, the
/// distributed port group as the bridge network, the test registry, certificates in
/// `cert_path`; then `extra`.
pub fn create_args(reg: &str, cert_path: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--compute-resource",
        "DC0_C0",
        "--image-store",
        "LocalDS_0",
        "--bridge-network",
        "DC0_DVPG0",
        "--insecure-registry",
        reg,
        "--tls-cert-path",
    ]
    .map(str::to_string)
    .into();
    args.push(cert_path.display().to_string());
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// The actions `docker events` reports for container `name` since `since` (unix seconds).
pub fn actions(env: &Path, name: &str, since: &str) -> Vec<String> {
    let until = (chrono::Utc::now().timestamp() + 1).to_string();
    let filter = format!("container={name}");
    let args = [
        "events",
        "--since",
        since,
        "--until",
        &until,
        "--filter",
        &filter,
        "--format",
        "{{.Action}}",
    ];
    let o = docker(env, &args);
    stdout(&o).lines().map(str::to_string).collect()
}

/// The name of container `id`'s VM, among the VMs pyvmomi saw.
pub fn vm_name_of(vms: &[serde_json::Value], id: &str) -> String {
    (vms.iter())
        .find(|v| v["guestinfo"]["guestinfo.vic.id"] == id)
        .and_then(|v| v["name"].as_str())
        .unwrap_or_else(|| panic!("no VM of {id}"))
        .to_string()
}
