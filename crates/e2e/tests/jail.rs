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
