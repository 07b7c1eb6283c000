//! The private dockerd that tests and benchmarks compare with leaves the host as it found it:
//! it runs in network and mount namespaces of its own, reaches the test registry through a
//! forwarder, and the host's interfaces, addresses, routes and forwarding switch are the same
//! while it runs and after it is gone.

mod common;

use std::path::Path;
use std::process::Command;

use bench::dockerd::{Dockerd, DEFAULT_DOCKERD};
use common::*;

/// What a daemon could change in the host's network namespace.
fn host_network() -> String {
    let mut out = String::new();
    for args in [
        &["-o", "link", "show"][..],
        &["-o", "addr", "show"],
        &["route", "show", "table", "all"],
    ] {
        let o = Command::new("ip").args(args).output().expect("ip");
        out.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    out.push_str(&std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default());
    out
}

#[test]
#[ignore = "needs dockerd, the test registry and the docker CLI: make test runs it"]
fn a_peer_dockerd_leaves_the_hosts_network_as_it_was() {
    let before = host_network();
    let docker = std::env::var("VIC_DOCKER").expect("VIC_DOCKER");
    let d = Dockerd::start(Path::new(DEFAULT_DOCKERD), &[&registry()], &docker)
        .expect("starting a private dockerd");
    let ours = std::fs::read_link("/proc/self/ns/net").expect("our namespace");
    let its = std::fs::read_link(format!("/proc/{}/ns/net", d.pid())).expect("its namespace");
    assert_ne!(ours, its, "dockerd runs in a network namespace of its own");
    // The registry on the host's loopback is still reached, at the same address.
    let image = format!("{}/busybox", registry());
    let o = d
        .docker(&docker)
        .args(["pull", &image])
        .output()
        .expect("docker pull");
    assert!(
        o.status.success(),
        "pull through the forwarder: {}",
        stderr(&o)
    );
    let o = d
        .docker(&docker)
        .args(["run", "--rm", &image, "echo", "peer-ok"])
        .output()
        .expect("docker run");
    assert_eq!(stdout(&o).trim(), "peer-ok", "{}", stderr(&o));
    assert_eq!(host_network(), before, "while dockerd runs");
    drop(d);
    assert_eq!(host_network(), before, "after dockerd is gone");
}
