//! SIGKILL of the appliance in the middle of `docker cp`, into a running container and into a
//! stopped one (whose VM was booted for the copy), and of `docker commit`: afterwards the
//! running container runs on and copies again, the stopped one's VM is off, it starts, no
//! image came of the cut commit, and nothing else changed.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::crash::{check_invariants, crash, inspect_with};
use common::*;

/// `docker cp SRC DST` left running in the background.
fn cp_in_background(client: &Client, src: &str, dst: &str) -> Child {
    let mut c = docker_at(&client.host);
    c.env("DOCKER_CONFIG", &client.config)
        .args(["cp", src, dst])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.spawn().unwrap()
}

/// Waits for a background copy to end either way (its server went away under it).
fn reap(mut child: Child) -> std::process::ExitStatus {
    let done = eventually("the cut copy to end", Duration::from_secs(60), || {
        child.try_wait().unwrap()
    });
    eprintln!("the cut copy ended: {done}");
    done
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn crashes_during_copies_leave_containers_as_they_were() {
    let vch = OwnVch::create("cpcrash", &[]);
    let (client, image) = (&vch.client, vch.image.as_str());
    let w = std::env::temp_dir().join(format!("vic-cpcrash-{}", std::process::id()));
    std::fs::create_dir_all(&w).unwrap();
    let big = w.join("big");
    std::fs::write(&big, vec![7u8; 192 << 20]).unwrap();
    let small = w.join("small");
    std::fs::write(&small, "after the crash\n").unwrap();

    // Into a running container.
    let run = client.ok(&["run", "-d", "--name", "live", image, "sleep", "600"]);
    let run = run.trim().to_string();
    let started = inspect_with(client, &run)["State"]["StartedAt"].clone();
    let cp = cp_in_background(client, big.to_str().unwrap(), "live:/big");
    std::thread::sleep(Duration::from_millis(1500));
    crash(&vch.name, client);
    reap(cp);
    check_invariants(&vch.name, client, "after a crash during a copy in");
    let st = inspect_with(client, &run);
    assert_eq!(
        st["State"]["Status"], "running",
        "the container ran on: {}",
        st["State"]
    );
    assert_eq!(st["State"]["StartedAt"], started, "and was not restarted");
    client.ok(&["cp", small.to_str().unwrap(), "live:/tmp/"]);
    assert_eq!(
        client.ok(&["exec", "live", "cat", "/tmp/small"]),
        "after the crash\n"
    );

    // During a commit: no image, nothing half made in the store; a commit after it works.
    client.ok(&[
        "exec",
        "live",
        "dd",
        "if=/dev/zero",
        "of=/bigc",
        "bs=1M",
        "count=160",
    ]);
    let images_before = client.ok(&["images", "-aq"]);
    let mut c = docker_at(&client.host);
    c.env("DOCKER_CONFIG", &client.config)
        .args(["commit", "live", "cut-short"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let commit = c.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    crash(&vch.name, client);
    assert!(!reap(commit).success(), "the commit was cut short");
    check_invariants(&vch.name, client, "after a crash during a commit");
    assert_eq!(
        client.ok(&["images", "-aq"]),
        images_before,
        "no image came of it"
    );
    client.ok(&["commit", "live", "after-crash"]);
    let seen = client.ok(&["run", "--rm", "after-crash", "cat", "/tmp/small"]);
    assert_eq!(seen, "after the crash\n");

    // Into a stopped one: the VM booted for the copy goes with the appliance.
    let stopped = client.ok(&["create", "--name", "cold", image, "cat", "/tmp/small"]);
    let stopped = stopped.trim().to_string();
    let cp = cp_in_background(client, big.to_str().unwrap(), "cold:/big");
    eventually(
        "the VM for the copy to boot",
        Duration::from_secs(30),
        || (!vm_processes(&stopped).is_empty()).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(1000));
    crash(&vch.name, client);
    reap(cp);
    check_invariants(
        &vch.name,
        client,
        "after a crash during a copy into a stopped container",
    );
    assert_eq!(inspect_with(client, &stopped)["State"]["Status"], "created");
    client.ok(&["cp", small.to_str().unwrap(), "cold:/tmp/"]);
    let out = client.ok(&["start", "-a", "cold"]);
    assert_eq!(
        out, "after the crash\n",
        "the copy after the crash is there"
    );
    let _ = std::fs::remove_dir_all(&w);
    vch.delete();
}
