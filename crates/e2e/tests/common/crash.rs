//! Crashes of the appliance on purpose (SIGKILL, then vic-init starts it again) and what
//! must hold after any of them.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use super::*;

pub fn vch_dir(name: &str) -> PathBuf {
    PathBuf::from(std::env::var("VIC_STATE_ROOT").expect("VIC_STATE_ROOT"))
        .join("vch")
        .join(name)
}

pub fn appliance_pid_of(name: &str) -> u32 {
    std::fs::read_to_string(vch_dir(name).join("appliance.pid"))
        .expect("appliance.pid")
        .trim()
        .parse()
        .expect("a PID")
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Kills the appliance with SIGKILL and waits for its supervisor (vic-init) to start it
/// again and for the Docker API to answer.
pub fn crash(name: &str, client: &Client) {
    let pid = appliance_pid_of(name);
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let new = eventually(
        "vic-init to restart the appliance",
        Duration::from_secs(30),
        || {
            let now = appliance_pid_of(name);
            (now != pid && alive(now)).then_some(now)
        },
    );
    assert!(!alive(pid), "the old appliance is gone");
    eventually(
        "the restarted appliance to answer",
        Duration::from_secs(60),
        || client.run(&["version"]).status.success().then_some(()),
    );
    let log = std::fs::read_to_string(vch_dir(name).join("appliance.log")).unwrap();
    assert!(
        log.contains(&format!("appliance restarted (pid {new}")),
        "vic-init says what it did"
    );
}

pub fn inspect_with(client: &Client, id: &str) -> serde_json::Value {
    let out = client.ok(&["inspect", id]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0].clone()
}

/// Checks what must hold after any crash: records and VMs agree, running means a VM process
/// and not running means none, each running container has its own address on each of its
/// networks and one tap in the VCH's network namespace (no tap is left by anything else),
/// each network has its bridge and no bridge is left over, every image listed is whole, no
/// work is left in the store.
pub fn check_invariants(name: &str, client: &Client, when: &str) {
    let ids: Vec<String> = client
        .ok(&["ps", "-a", "-q", "--no-trunc"])
        .lines()
        .map(str::to_string)
        .collect();
    let vms: Vec<String> = std::fs::read_dir(vch_dir(name).join("vms/vms"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    for vm in &vms {
        assert!(
            ids.contains(vm),
            "{when}: VM {vm} has no container ({ids:?})"
        );
    }
    for id in &ids {
        assert!(
            vms.contains(id),
            "{when}: container {id} has no VM ({vms:?})"
        );
        // Running means a VM process; anything else means none, once a VM that is powering
        // itself off (its process just exited) is done.
        eventually(
            &format!("{when}: container {id}'s VM to match its state"),
            Duration::from_secs(15),
            || {
                let st = inspect_with(client, id);
                let running = st["State"]["Status"] == "running";
                (running != vm_processes(&id[..12]).is_empty()).then_some(())
            },
        );
    }
    let ns = backend_local::net::namespace_name(&vch_dir(name));
    eventually(
        &format!("{when}: one tap per running container"),
        Duration::from_secs(15),
        || {
            let running: Vec<String> = client
                .ok(&["ps", "-q"])
                .lines()
                .map(|id| format!("t0-{id}"))
                .collect();
            let mut taps: Vec<String> = netns_links(&ns)
                .into_iter()
                .filter(|l| l.starts_with("t0-"))
                .collect();
            taps.sort();
            let mut want = running.clone();
            want.sort();
            (taps == want).then_some(())
        },
    );
    let mut args = vec![
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}",
    ];
    args.extend(ids.iter().map(String::as_str));
    let addresses = if ids.is_empty() {
        String::new()
    } else {
        client.ok(&args)
    };
    let mut held: Vec<&str> = addresses
        .split_whitespace()
        .filter(|a| !a.ends_with('='))
        .collect();
    let n = held.len();
    held.sort();
    held.dedup();
    assert_eq!(
        held.len(),
        n,
        "{when}: an address is held twice: {addresses}"
    );
    check_networks(name, client, when);
    for img in client.ok(&["images", "-q", "--no-trunc"]).lines() {
        client.ok(&["image", "inspect", img]);
    }
    let tmp = vch_dir(name).join("images/tmp");
    let left = std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "{when}: work left in {}", tmp.display());
}

/// Every network listed has its bridge in the VCH's namespace, and no other bridge is there.
pub fn check_networks(name: &str, client: &Client, when: &str) {
    let ns = backend_local::net::namespace_name(&vch_dir(name));
    let mut want: Vec<String> = client
        .ok(&[
            "network",
            "ls",
            "--filter",
            "type=custom",
            "-q",
            "--no-trunc",
        ])
        .lines()
        .map(|id| format!("vic-n{}", &id[..10]))
        .collect();
    want.push("vic-bridge".to_string());
    want.sort();
    let mut have: Vec<String> = netns_links(&ns)
        .into_iter()
        .filter(|l| l.starts_with("vic-"))
        .collect();
    have.sort();
    assert_eq!(have, want, "{when}: the bridges are the networks'");
}
