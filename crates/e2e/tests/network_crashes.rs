//! SIGKILL of the appliance in the middle of network operations (`network create`, `network
//! rm`, `network connect` of a stopped and of a running container, `network disconnect` of a
//! running one, `run --network -p`) leaves nothing half done: no bridge without its network or network without its bridge, no
//! address held twice, no tap or published port left behind, no endpoint of a running
//! container that its guest does not have; names resolve again afterwards.

mod common;

use std::time::Duration;

use common::crash::*;
use common::*;

/// A TCP port of the host that is free now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
}

/// A port is bound exactly while a running container publishes it.
fn check_port(client: &Client, port: u16, when: &str) {
    eventually(
        &format!("{when}: port {port} bound only by a running container"),
        Duration::from_secs(15),
        || {
            let shown = client.ok(&["ps", "--format", "{{.Ports}}"]);
            let published = shown.contains(&format!(":{port}->"));
            (published != port_free(port)).then_some(())
        },
    );
}

/// A running container the record shows on `side` has that interface in its guest: it
/// disconnects without --force (the guest finds the interface by the endpoint's MAC); one the
/// record shows off `side` connects to it again and disconnects (its interface was freed).
fn check_live_endpoint(client: &Client, id: &str, when: &str) {
    let nets = client.ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        id,
    ]);
    if nets.starts_with("running") && nets.contains("side") {
        let o = client.run(&["network", "disconnect", "side", id]);
        assert!(o.status.success(), "{when}: {}", stderr(&o));
    } else if nets.starts_with("running") {
        // Off `side` by the record: the interface it had is free for a connect again.
        let o = client.run(&["network", "connect", "side", id]);
        assert!(o.status.success(), "{when}: {}", stderr(&o));
        let o = client.run(&["network", "disconnect", "side", id]);
        assert!(o.status.success(), "{when}: {}", stderr(&o));
    }
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn crashes_during_network_operations_leave_nothing_half_done() {
    let vch = OwnVch::create("netcrash", &[]);
    let (name, client, image) = (vch.name.clone(), &vch.client, vch.image.clone());
    client.ok(&["network", "create", "app"]);
    client.ok(&["network", "create", "side"]);
    let port = free_port();

    for delay_ms in [50u64, 400] {
        for op in [
            "network create",
            "network rm",
            "connect",
            "connect live",
            "disconnect live",
            "run -p",
        ] {
            let made = format!("made-{delay_ms}");
            let doomed = format!("doomed-{delay_ms}");
            let stopped = match op {
                "network rm" => {
                    client.ok(&["network", "create", &doomed]);
                    String::new()
                }
                "connect" => client
                    .ok(&["create", "--network", "app", &image, "true"])
                    .trim()
                    .to_string(),
                "connect live" => client
                    .ok(&["run", "-d", "--network", "app", &image, "sleep", "300"])
                    .trim()
                    .to_string(),
                "disconnect live" => {
                    let id = client
                        .ok(&["run", "-d", "--network", "app", &image, "sleep", "300"])
                        .trim()
                        .to_string();
                    client.ok(&["network", "connect", "side", &id]);
                    id
                }
                _ => String::new(),
            };
            let published = format!("{port}:8080");
            let args: Vec<&str> = match op {
                "network create" => vec!["network", "create", &made],
                "network rm" => vec!["network", "rm", &doomed],
                "connect" | "connect live" => vec!["network", "connect", "side", &stopped],
                "disconnect live" => vec!["network", "disconnect", "side", &stopped],
                _ => vec![
                    "run",
                    "-d",
                    "--network",
                    "app",
                    "-p",
                    &published,
                    &image,
                    "sleep",
                    "300",
                ],
            };
            let mut cmd = docker_at(&client.host);
            cmd.env("DOCKER_CONFIG", &client.config)
                .args(&args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let mut child = cmd.spawn().expect("docker");
            std::thread::sleep(Duration::from_millis(delay_ms));
            crash(&name, client);
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while child.try_wait().unwrap().is_none() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "docker {args:?} hung across the crash"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            let when = format!("{op} killed after {delay_ms} ms");
            check_invariants(&name, client, &when);
            check_port(client, port, &when);
            if op == "connect live" || op == "disconnect live" {
                check_live_endpoint(client, &stopped, &when);
            }
        }
        for id in client.ok(&["ps", "-a", "-q"]).lines() {
            client.ok(&["rm", "-f", id]);
        }
        for net in [format!("made-{delay_ms}"), format!("doomed-{delay_ms}")] {
            let _ = client.run(&["network", "rm", &net]);
        }
        check_invariants(&name, client, "after the round");
        check_port(client, port, "after the round");
        assert!(port_free(port), "no container: port {port} is free");
    }

    // Names still resolve on the network after all that.
    client.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "app",
        &image,
        "sh",
        "-c",
        "while true; do echo still-named | nc -l -p 8080; done",
    ]);
    let got = client.ok(&[
        "run",
        "--rm",
        "--network",
        "app",
        &image,
        "sh",
        "-c",
        "for i in $(seq 30); do nc web 8080 && exit 0; sleep 1; done; exit 1",
    ]);
    assert!(got.contains("still-named"), "{got}");
    vch.delete();
}
