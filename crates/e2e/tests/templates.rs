//! Container VMs restored from booted templates, through the docker CLI: the first container
//! of a shape boots while its template is made, the next ones are restored from it, each a
//! machine of its own (boot ID, RNG, MAC, hostname) on its networks; they are taken over
//! when the appliance dies, and the next appliance restores from the template kept in the
//! VCH's state; a container with a volume boots; `--container-start cold` turns templates
//! off.

mod common;

use std::time::Duration;

use common::crash::*;
use common::*;

/// Whether the container's QEMU was restored rather than booted (`-incoming`).
fn restored(id: &str) -> bool {
    let pids = vm_processes(id);
    assert_eq!(pids.len(), 1, "one VM for {id}");
    let cmd = std::fs::read(format!("/proc/{}/cmdline", pids[0])).unwrap_or_default();
    String::from_utf8_lossy(&cmd)
        .split('\0')
        .any(|a| a == "-incoming")
}

/// `docker info`'s line on how containers start.
fn start_path(client: &Client) -> String {
    client.ok(&["info", "--format", "{{json .DriverStatus}}"])
}

/// What tells one machine from another, as the container sees it.
fn identity(client: &Client, id: &str) -> Vec<String> {
    let script = "cat /proc/sys/kernel/random/boot_id; \
                  head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; \
                  cat /sys/class/net/eth0/address; hostname";
    let out = client.ok(&["exec", id, "sh", "-c", script]);
    out.lines().map(str::to_string).collect()
}

fn run_d(client: &Client, args: &[&str]) -> String {
    let mut all = vec!["run", "-d"];
    all.extend_from_slice(args);
    client.ok(&all).trim().to_string()
}

#[test]
#[ignore = "needs the built binaries, QEMU and the test registry; make test runs it"]
fn containers_are_restored_from_a_booted_template_each_a_machine_of_its_own() {
    let store = std::env::temp_dir().join(format!("vic-tmpl-store-{}", std::process::id()));
    let default = format!("{}:default", store.display());
    let vch = OwnVch::create("tmpl", &["--volume-store", &default]);
    let (client, image) = (&vch.client, vch.image.clone());
    let info = start_path(client);
    assert!(
        info.contains("restored from booted templates (0 ready"),
        "{info}"
    );

    // The first container of its shape boots; its template is made meanwhile.
    let first = run_d(client, &[&image, "sleep", "600"]);
    assert!(!restored(&first), "no template yet: it boots");
    eventually("a template", Duration::from_secs(120), || {
        start_path(client).contains("(1 ready").then_some(())
    });

    let a = run_d(client, &["--name", "a", &image, "sleep", "600"]);
    let b = run_d(client, &["--name", "b", &image, "sleep", "600"]);
    assert!(restored(&a) && restored(&b), "restored from the template");
    // A clone's jail has a procfs of its own to open the template's memory: processes only,
    // none of the kernel's files.
    let proc = std::path::PathBuf::from(format!("/proc/{}/root/proc", vm_processes(&a)[0]));
    assert!(proc.join("self").exists(), "no procfs in the clone's jail");
    for hidden in ["sys", "kcore", "meminfo", "cmdline"] {
        assert!(
            !proc.join(hidden).exists(),
            "/proc/{hidden} in the clone's jail"
        );
    }
    let (ia, ib) = (identity(client, &a), identity(client, &b));
    assert_eq!(ia.len(), 4, "{ia:?}");
    assert_ne!(ia[0], ib[0], "two clones with one boot_id");
    assert_ne!(
        ia[1], ib[1],
        "two clones reading the same /dev/urandom bytes"
    );
    for (id, seen) in [(&a, &ia), (&b, &ib)] {
        let v = inspect_with(client, id);
        assert_eq!(seen[2], v["NetworkSettings"]["MacAddress"], "{id}'s MAC");
        assert_eq!(seen[3], id[..12], "{id}'s hostname");
    }
    assert_ne!(ia[2], ib[2]);
    // Clones reach each other on the bridge, by address and by name on a user network.
    let ip_a = inspect_with(client, &a)["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    client.ok(&["exec", &b, "ping", "-c", "1", "-W", "5", &ip_a]);
    client.ok(&["network", "create", "tnet"]);
    let c = run_d(
        client,
        &["--network", "tnet", "--name", "c", &image, "sleep", "600"],
    );
    let d = run_d(client, &["--network", "tnet", &image, "sleep", "600"]);
    assert!(
        restored(&c) && restored(&d),
        "one NIC on any network: the same shape"
    );
    client.ok(&["exec", &d, "ping", "-c", "1", "-W", "5", "c"]);
    // Output, exit codes and stdin as from a booted container.
    let out = client.run_input(
        &["run", "--rm", "-i", &image, "sh", "-c", "cat; exit 3"],
        "in\n",
    );
    assert_eq!(
        (stdout(&out).as_str(), out.status.code()),
        ("in\n", Some(3))
    );

    // Taken over when the appliance dies: the same VMs answer the next appliance.
    let before = vm_processes(&a);
    crash(&vch.name, client);
    assert_eq!(vm_processes(&a), before, "the same VM, not a new one");
    assert_eq!(
        identity(client, &a)[0],
        ia[0],
        "the same machine after the take-over"
    );
    // The new appliance finds the template in the VCH's state: its first container is
    // restored.
    eventually("the saved template", Duration::from_secs(60), || {
        start_path(client).contains("(1 ready").then_some(())
    });
    let f = run_d(client, &[&image, "sleep", "600"]);
    assert!(restored(&f), "the saved template was not used");
    let saved = vch_dir(&vch.name).join("vms/templates/.saved");
    assert!(
        saved.join("t-256m-1c-3n/ram").is_file(),
        "{}",
        saved.display()
    );

    // Stopped and started again: restored again.
    client.ok(&["stop", "-t", "1", &a]);
    client.ok(&["start", &a]);
    assert!(restored(&a));
    assert_ne!(
        identity(client, &a)[0],
        ia[0],
        "a new machine after a restart"
    );

    // A volume's disk is not in a template: that container boots, and works.
    let v = run_d(
        client,
        &[
            "-v",
            "data:/data",
            &image,
            "sh",
            "-c",
            "echo kept > /data/f; sleep 600",
        ],
    );
    assert!(!restored(&v));
    eventually("the volume written", Duration::from_secs(30), || {
        (client.ok(&["exec", &v, "cat", "/data/f"]).trim() == "kept").then_some(())
    });

    // Off: every container boots, and docker info says so.
    let out = vic_machine()
        .args(["configure", "--target", "local", "--name", &vch.name])
        .args(["--container-start", "cold"])
        .output()
        .expect("vic-machine configure");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Container start: template -> cold"),
        "{}",
        stdout(&out)
    );
    let info = start_path(client);
    assert!(info.contains("cold boot (templates are off)"), "{info}");
    let g = run_d(client, &[&image, "sleep", "600"]);
    assert!(!restored(&g), "restored with templates off");
    let inspected = vic_machine()
        .args(["inspect", "--target", "local", "--name", &vch.name])
        .output()
        .expect("vic-machine inspect");
    assert!(
        stdout(&inspected).contains("Container start: cold"),
        "{}",
        stdout(&inspected)
    );
    vch.delete();
    let _ = std::fs::remove_dir_all(&store);
}
