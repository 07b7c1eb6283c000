//! Every container VM's QEMU runs jailed: its own uid, seccomp, no capabilities, its own mount
//! namespace showing only its VM's files, and a cgroup `vic/<vch>/<vm>` with limits, removed
//! with the container and kept across an appliance restart.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

fn vch_dir(name: &str) -> PathBuf {
    PathBuf::from(std::env::var("VIC_STATE_ROOT").expect("VIC_STATE_ROOT"))
        .join("vch")
        .join(name)
}

fn status_field(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The cgroup (v1 hierarchy `ctrl`) of a process, as `/proc/PID/cgroup` names it.
fn cgroup_of(pid: u32, ctrl: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()?
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            (ctrls.split(',').any(|c| c == ctrl) || (ctrls.is_empty() && ctrl.is_empty()))
                .then(|| path.to_string())
        })
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        .trim()
        .to_string()
}

fn only_vm(id: &str) -> u32 {
    let pids = vm_processes(id);
    assert_eq!(pids.len(), 1, "one QEMU for {id}: {pids:?}");
    pids[0]
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn container_qemu_runs_jailed_in_its_cgroup() {
    let vch = OwnVch::create("jail", &[]);
    let (name, client, image) = (vch.name.clone(), &vch.client, vch.image.clone());
    let id = client
        .ok(&[
            "run",
            "-d",
            "-m",
            "128m",
            &image,
            "sh",
            "-c",
            "echo up; sleep 300",
        ])
        .trim()
        .to_string();
    let pid = only_vm(&id);

    let uid: u32 = status_field(pid, "Uid")
        .split_whitespace()
        .next()
        .and_then(|u| u.parse().ok())
        .expect("a uid");
    assert!(uid >= 900_000, "QEMU runs as uid {uid}");
    assert_eq!(status_field(pid, "Seccomp"), "2");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(status_field(pid, "CapEff"), "0000000000000000");
    assert_eq!(status_field(pid, "Groups"), "");
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap(),
        std::fs::read_link("/proc/self/ns/mnt").unwrap()
    );

    // Of the VCH's state it sees only its own VM and its image's base disk.
    let state = vch_dir(&name);
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    // (`appliance/` holds the guest kernel and initramfs, shown read-only, and nothing else.)
    assert_eq!(names(&inside(&state)), ["appliance", "vms"]);
    assert_eq!(
        names(&inside(&state.join("appliance"))),
        ["initramfs.cpio", "vmlinux"]
    );
    assert!(names(&state.join("appliance")).len() > 2);
    assert_eq!(names(&inside(&state.join("vms"))), ["images", "vms"]);
    let vms = names(&inside(&state.join("vms/vms")));
    assert_eq!(vms.len(), 1, "{vms:?}");
    assert!(!root.join("etc").exists());
    // Its uid is claimed host-wide, so that no QEMU of another VCH gets it.
    let claim = PathBuf::from(format!("/run/vic/uids/{uid}"));
    assert_eq!(
        read(claim.clone()),
        state.join("vms/vms").join(&vms[0]).display().to_string()
    );

    // Its cgroup, with the limits: memory = 128 MiB + QEMU's 256 MiB, one CPU, 256 tasks.
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").is_file();
    let ctrl_dir = |ctrl: &str| -> PathBuf {
        let path = cgroup_of(pid, if v2 { "" } else { ctrl }).expect("a cgroup");
        assert_eq!(
            path,
            format!("/vic/{name}/{}", vms[0]),
            "the VM's cgroup under its VCH"
        );
        let base = Path::new("/sys/fs/cgroup");
        let base = if v2 {
            base.to_path_buf()
        } else {
            base.join(ctrl)
        };
        base.join(path.trim_start_matches('/'))
    };
    if v2 {
        assert_eq!(
            read(ctrl_dir("").join("memory.max")),
            (384u64 << 20).to_string()
        );
        assert_eq!(read(ctrl_dir("").join("cpu.max")), "100000 100000");
    } else {
        assert_eq!(
            read(ctrl_dir("memory").join("memory.limit_in_bytes")),
            (384u64 << 20).to_string()
        );
        assert_eq!(read(ctrl_dir("cpu").join("cpu.cfs_quota_us")), "100000");
    }
    let pids_dir = ctrl_dir("pids");
    assert_eq!(read(pids_dir.join("pids.max")), "256");

    // Everything still works: run, logs, attach-run, stop, and the cgroup goes with rm.
    eventually("the log", Duration::from_secs(30), || {
        stdout(&client.run(&["logs", &id]))
            .contains("up")
            .then_some(())
    });
    assert_eq!(
        client.ok(&["run", "--rm", &image, "echo", "hi"]).trim(),
        "hi"
    );
    client.ok(&["stop", "-t", "1", &id]);
    eventually("the cgroup to go on stop", Duration::from_secs(10), || {
        (!pids_dir.exists()).then_some(())
    });
    client.ok(&["rm", &id]);
    assert!(!pids_dir.exists());
    assert!(!claim.exists(), "rm gives the uid back");

    // A running VM keeps its jail and cgroup across an appliance crash; rm removes both.
    let id = client
        .ok(&["run", "-d", &image, "sleep", "300"])
        .trim()
        .to_string();
    let pid = only_vm(&id);
    let cg = cgroup_of(pid, if v2 { "" } else { "pids" }).expect("a cgroup");
    let appliance: u32 = read(state.join("appliance.pid")).parse().unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-KILL", &appliance.to_string()])
        .status()
        .unwrap()
        .success());
    eventually(
        "the appliance to come back",
        Duration::from_secs(60),
        || {
            let now: u32 = std::fs::read_to_string(state.join("appliance.pid"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            (now != appliance && client.run(&["version"]).status.success()).then_some(())
        },
    );
    eventually("the VM to be taken over", Duration::from_secs(30), || {
        let ps = client.ok(&["ps", "--format", "{{.ID}} {{.Status}}"]);
        (ps.contains(&id[..12]) && ps.contains("Up")).then_some(())
    });
    assert_eq!(only_vm(&id), pid, "the same QEMU");
    assert_eq!(
        cgroup_of(pid, if v2 { "" } else { "pids" }).as_deref(),
        Some(&*cg)
    );
    client.ok(&["rm", "-f", &id]);
    let dir = Path::new("/sys/fs/cgroup")
        .join(if v2 { "" } else { "pids" })
        .join(cg.trim_start_matches('/'));
    eventually("the cgroup to go on rm -f", Duration::from_secs(10), || {
        (!dir.exists()).then_some(())
    });
    vch.delete();
    let vch_cg = dir.parent().expect("a parent");
    assert!(!vch_cg.exists(), "the VCH's cgroup goes with the VCH");
}

/// The CPU time (user and system, in clock ticks) of process `pid` and all its threads.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = read(PathBuf::from(format!("/proc/{pid}/stat")));
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the command: state is field 3, utime 14 and stime 15.
    field(11) + field(12)
}

/// The host CPU time two QEMUs get over the same ten seconds.
fn cpu_split(a: u32, b: u32) -> (u64, u64) {
    let (a0, b0) = (cpu_ticks(a), cpu_ticks(b));
    std::thread::sleep(Duration::from_secs(10));
    (cpu_ticks(a) - a0, cpu_ticks(b) - b0)
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn cpu_shares_weigh_a_vchs_vms_against_each_other() {
    let vch = OwnVch::create("shares", &[]);
    let (name, client, image) = (vch.name.clone(), &vch.client, vch.image.clone());
    // Two busy VMs on one host CPU, weighed 256 and 1024.
    let hog = |shares: &str| {
        let args = [
            "run",
            "-d",
            "--cpuset-cpus",
            "0",
            "--cpu-shares",
            shares,
            &image,
            "sh",
            "-c",
            "while :; do :; done",
        ];
        client.ok(&args).trim().to_string()
    };
    let (light, heavy) = (hog("256"), hog("1024"));
    let (light_pid, heavy_pid) = (only_vm(&light), only_vm(&heavy));
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").is_file();
    let weight = |id: &str| {
        let (dir, file) = if v2 {
            ("", "cpu.weight")
        } else {
            ("cpu", "cpu.shares")
        };
        let base = Path::new("/sys/fs/cgroup").join(dir);
        read(base.join(format!("vic/{name}/{id}")).join(file))
    };
    let (w256, w1024, w4096) = if v2 {
        ("10", "39", "157")
    } else {
        ("256", "1024", "4096")
    };
    assert_eq!(
        (weight(&light).as_str(), weight(&heavy).as_str()),
        (w256, w1024)
    );
    let (l, h) = cpu_split(light_pid, heavy_pid);
    eprintln!("over 10 s on one host CPU: 256 shares {l} ticks, 1024 shares {h} ticks");
    assert!(
        h > 2 * l,
        "the VM weighed 1024 got {h} ticks, the one weighed 256 {l}: about four times as many expected"
    );

    // Changed while both run: the VM's cgroup has it at once, inspect shows it.
    client.ok(&["update", "--cpu-shares", "4096", &light]);
    assert_eq!(weight(&light), w4096);
    let shown = client.ok(&["inspect", "-f", "{{.HostConfig.CpuShares}}", &light]);
    assert_eq!(shown.trim(), "4096");
    let (l, h) = cpu_split(light_pid, heavy_pid);
    eprintln!("over 10 s on one host CPU: 4096 shares {l} ticks, 1024 shares {h} ticks");
    assert!(
        l > 2 * h,
        "the VM weighed 4096 got {l} ticks, the one weighed 1024 {h}: about four times as many expected"
    );

    // Kept for the next start.
    client.ok(&["stop", "-t", "0", &light]);
    client.ok(&["start", &light]);
    only_vm(&light);
    assert_eq!(weight(&light), w4096);
    client.ok(&["rm", "-f", &light, &heavy]);
    vch.delete();
}
