//! `docker run` options applied inside the container VM, seen from inside the container and
//! in `docker inspect`: capabilities (Docker's default set without flags), `--privileged`,
//! `--read-only`, `--tmpfs`, `--shm-size`, `--ulimit`, `--group-add`, `--add-host`,
//! `--domainname`, `--sysctl`, `--device`, `--pids-limit`, `--init`, `--security-opt
//! no-new-privileges`. One VCH, four container VMs.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The value of `field` in a `/proc/self/status` dump.
fn status(out: &str, field: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in:\n{out}"))
        .trim()
        .to_string()
}

fn inspect_at(vch: &OwnVch, id: &str) -> serde_json::Value {
    let out = vch.client.ok(&["inspect", id]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0].clone()
}

/// A plain container: Docker's default capabilities, a /dev without the VM's disks, Docker's
/// masked and read-only paths; with `--init`, its process is not PID 1, orphans are reaped
/// and SIGTERM ends it at once.
fn defaults_and_init(vch: &OwnVch) {
    let script = "grep Cap /proc/self/status; echo pid=$$; ls /dev | tr '\\n' ' '; echo; \
        su -s /bin/sh vic -c 'grep CapEff /proc/self/status' | sed 's/^/vic-/'; \
        unshare -m true 2>/dev/null || echo no-sys-admin; \
        mount; echo 1 > /proc/sys/net/ipv4/ip_forward && echo sysctl-written; \
        ls /proc/1/root >/dev/null 2>&1 || echo init-root-hidden; \
        (sleep 0.2 &); sleep 1; ps -o stat,comm | grep -c '^Z' ; echo READY; exec sleep 300";
    let id = vch
        .client
        .ok(&["run", "-d", "--init", &vch.image, "sh", "-c", script])
        .trim()
        .to_string();
    let out = eventually(
        "the container to print READY",
        Duration::from_secs(60),
        || {
            let o = vch.client.run(&["logs", &id]);
            let all = format!("{}{}", stdout(&o), stderr(&o));
            all.contains("READY").then_some(all)
        },
    );
    assert_eq!(status(&out, "CapEff"), "00000000a80425fb", "{out}");
    assert_eq!(status(&out, "CapPrm"), "00000000a80425fb");
    assert_eq!(status(&out, "CapBnd"), "00000000a80425fb");
    assert_eq!(status(&out, "CapInh"), "0000000000000000");
    assert_eq!(status(&out, "CapAmb"), "0000000000000000");
    assert_eq!(
        status(&out, "vic-CapEff"),
        "0000000000000000",
        "a user other than root ends with no capabilities, as under Docker"
    );
    assert!(
        out.contains("no-sys-admin"),
        "unshare -m needs CAP_SYS_ADMIN: {out}"
    );
    let pid_line = out.lines().find(|l| l.starts_with("pid=")).expect("pid");
    assert_ne!(
        pid_line, "pid=1",
        "--init: the container's process is not PID 1"
    );
    let dev = out.lines().find(|l| l.contains("null ")).expect("ls /dev");
    for node in [
        "null", "zero", "full", "random", "urandom", "tty", "shm", "pts", "ptmx",
    ] {
        assert!(
            dev.split_whitespace().any(|n| n == node),
            "no /dev/{node}: {dev}"
        );
    }
    for hidden in ["vda", "kmsg", "mem", "port", "console"] {
        assert!(
            !dev.split_whitespace().any(|n| n == hidden),
            "/dev/{hidden} is visible: {dev}"
        );
    }
    assert!(out.contains("proc on /proc/sys type proc (ro,"), "{out}");
    assert!(out.contains("sysfs on /sys type sysfs (ro,"), "{out}");
    assert!(
        out.contains("shm on /dev/shm type tmpfs (rw,nosuid,nodev,noexec,relatime,size=65536k)"),
        "{out}"
    );
    assert!(
        !out.contains("sysctl-written"),
        "/proc/sys is read-only: {out}"
    );
    assert!(out.contains("init-root-hidden"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let ready = lines.iter().position(|l| *l == "READY").expect("READY");
    let zombies = lines[ready.saturating_sub(1)];
    assert_eq!(zombies, "0", "an orphan was left a zombie: {out}");
    let t = Instant::now();
    vch.client.ok(&["stop", "-t", "30", &id]);
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "SIGTERM ended the process: stop took {took:?}"
    );
    let c = inspect_at(vch, &id);
    assert_eq!(c["State"]["ExitCode"], 143);
    assert_eq!(c["HostConfig"]["Init"], true);
    assert_eq!(c["HostConfig"]["CapAdd"], serde_json::Value::Null);
    assert_eq!(c["HostConfig"]["ShmSize"], 64 << 20);
    assert_eq!(
        c["HostConfig"]["MaskedPaths"].as_array().map(Vec::len),
        Some(12)
    );
    println!("stop of a --init container: {took:?}");
    vch.client.ok(&["rm", &id]);
}

/// Most options at once, then what inspect says of them.
fn many_options(vch: &OwnVch) {
    let script = "grep -E 'Cap|NoNewPrivs' /proc/self/status; echo cwd=$(pwd); \
        touch /x 2>/dev/null || echo root-read-only; \
        touch /run/x /scratch/y /dev/shm/z && echo tmpfs-writable; \
        mount | grep -E ' on /(run|scratch|dev/shm) '; df -k /dev/shm /run; \
        echo nofile=$(ulimit -n)/$(ulimit -Hn); id; cat /etc/hosts; hostname; \
        echo domain=$(cat /proc/sys/kernel/domainname); \
        echo shmmax=$(cat /proc/sys/kernel/shmmax) fwd=$(cat /proc/sys/net/ipv4/ip_forward); \
        ls -l /dev/net/tun; \
        i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); echo started=$i; done";
    let name = format!("guest-opts-{}", std::process::id());
    vch.client.ok(&[
        "create",
        "--name",
        &name,
        "--read-only",
        "-w",
        "/work/deep",
        "--tmpfs",
        "/run:size=1m,exec",
        "--tmpfs",
        "/scratch",
        "--shm-size",
        "8m",
        "--ulimit",
        "nofile=100:200",
        "--group-add",
        "10",
        "--group-add",
        "staff",
        "--add-host",
        "db:10.1.2.3",
        "--domainname",
        "example.com",
        "-h",
        "box",
        "--sysctl",
        "kernel.shmmax=1000000",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "--device",
        "/dev/net/tun",
        "--pids-limit",
        "20",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_ADMIN",
        "--cap-add",
        "kill",
        "--security-opt",
        "no-new-privileges",
        &vch.image,
        "sh",
        "-c",
        script,
    ]);
    let o = vch.client.run(&["start", "-a", &name]);
    let out = stdout(&o);
    let err = stderr(&o);
    assert_eq!(status(&out, "CapEff"), "0000000000001020", "{out}");
    assert_eq!(status(&out, "CapBnd"), "0000000000001020");
    assert_eq!(status(&out, "NoNewPrivs"), "1");
    assert!(out.contains("root-read-only"), "{out}");
    assert!(
        out.contains("cwd=/work/deep"),
        "a missing working directory is created: {out}"
    );
    assert!(out.contains("tmpfs-writable"), "{out}{err}");
    assert!(
        out.contains("tmpfs on /run type tmpfs (rw,nosuid,nodev,relatime,size=1024k)"),
        "{out}"
    );
    assert!(
        out.contains("tmpfs on /scratch type tmpfs (rw,nosuid,nodev,noexec,relatime)"),
        "{out}"
    );
    assert!(out.contains("size=8192k"), "{out}");
    assert!(out.contains("nofile=100/200"), "{out}");
    assert!(out.contains("groups=0(root),10,50(staff)"), "{out}");
    assert!(out.contains("\n10.1.2.3\tdb\n"), "{out}");
    assert!(out.contains("\nbox\n"), "{out}");
    assert!(out.contains("domain=example.com"), "{out}");
    assert!(out.contains("shmmax=1000000 fwd=1"), "{out}");
    assert!(
        out.contains(" 10, 200 ") && out.contains("/dev/net/tun"),
        "{out}"
    );
    let started: u32 = out
        .lines()
        .filter_map(|l| l.strip_prefix("started=")?.parse().ok())
        .next_back()
        .expect("some processes started");
    assert!(
        err.contains("can't fork"),
        "--pids-limit 20 stops a fork: {err}"
    );
    assert!(
        (10..20).contains(&started),
        "{started} sleeps under --pids-limit 20"
    );
    println!("--pids-limit 20: {started} background processes started before fork failed");
    let c = inspect_at(vch, &name);
    let hc = &c["HostConfig"];
    assert_eq!(
        hc["CapAdd"],
        serde_json::json!(["CAP_KILL", "CAP_NET_ADMIN"])
    );
    assert_eq!(hc["CapDrop"], serde_json::json!(["ALL"]));
    assert_eq!(hc["ReadonlyRootfs"], true);
    assert_eq!(hc["Tmpfs"]["/run"], "size=1m,exec");
    assert_eq!(hc["ShmSize"], 8 << 20);
    assert_eq!(
        hc["Ulimits"][0],
        serde_json::json!({ "Name": "nofile", "Hard": 200, "Soft": 100 })
    );
    assert_eq!(hc["GroupAdd"], serde_json::json!(["10", "staff"]));
    assert_eq!(hc["ExtraHosts"], serde_json::json!(["db:10.1.2.3"]));
    assert_eq!(hc["Sysctls"]["kernel.shmmax"], "1000000");
    assert_eq!(hc["Devices"][0]["PathOnHost"], "/dev/net/tun");
    assert_eq!(hc["PidsLimit"], 20);
    assert_eq!(hc["SecurityOpt"], serde_json::json!(["no-new-privileges"]));
    assert_eq!(c["Config"]["Domainname"], "example.com");
    vch.client.ok(&["rm", &name]);
}

/// `--privileged`: every capability, every guest device, no masked or read-only paths.
fn privileged(vch: &OwnVch) {
    let out = vch.client.ok(&[
        "run",
        "--rm",
        "--privileged",
        &vch.image,
        "sh",
        "-c",
        "grep Cap /proc/self/status; ls /dev | tr '\\n' ' '; echo; mount; \
         unshare -m true && echo sys-admin",
    ]);
    assert_eq!(status(&out, "CapEff"), "000001ffffffffff", "{out}");
    assert_eq!(status(&out, "CapBnd"), "000001ffffffffff");
    assert!(out.contains(" vda "), "the VM's disk is visible: {out}");
    assert!(out.contains("sysfs on /sys type sysfs (rw,"), "{out}");
    assert!(out.contains("proc on /proc type proc (rw,"), "{out}");
    assert!(!out.contains("/proc/sys type"), "{out}");
    assert!(
        out.lines().any(|l| l == "sys-admin"),
        "unshare -m works with CAP_SYS_ADMIN: {out}"
    );
}

/// What a create or start refuses, in Docker's words, leaving nothing behind.
fn refusals(vch: &OwnVch) {
    let before = vch.client.ok(&["ps", "-a", "-q"]);
    let cases: &[(&[&str], &str)] = &[
        (&["--cap-add", "FOO"], "unknown capability: \"CAP_FOO\""),
        (&["--tmpfs", "/run:colour=red"], "invalid tmpfs option [\"colour\" \"red\"]"),
        (&["--security-opt", "label=disable"], "--security-opt label is not supported by vic"),
        (&["--sysctl", "kernel.hostname=x"], "sysctl 'kernel.hostname=x' is not allowed"),
        (
            &["--device", "/dev/loop-control"],
            "error gathering device information while adding custom device \"/dev/loop-control\": no such file or directory",
        ),
    ];
    for (opts, message) in cases {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[&vch.image, "true"]);
        let o = vch.client.run(&args);
        assert!(!o.status.success(), "docker {args:?} succeeded");
        assert!(
            stderr(&o).contains(message),
            "docker {args:?}: {}",
            stderr(&o)
        );
    }
    assert_eq!(
        vch.client.ok(&["ps", "-a", "-q"]),
        before,
        "a refused run left a container"
    );
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn guest_options_are_applied_inside_the_container_vm() {
    let vch = OwnVch::create("guestopts", &[]);
    defaults_and_init(&vch);
    many_options(&vch);
    privileged(&vch);
    refusals(&vch);
    vch.delete();
}
