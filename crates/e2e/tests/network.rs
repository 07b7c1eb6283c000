//! The default bridge network: each container VM gets a NIC on the VCH's bridge, inside the
//! VCH's own network namespace, with an address of its own; containers reach each other; a
//! container on `--network none` has no NIC; taps go with their VMs and the namespace
//! with the VCH.

mod common;
mod machine;

use std::process::Command;
use std::time::Duration;

use common::*;

fn namespaces() -> String {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn containers_on_the_bridge_reach_each_other_and_none_has_no_nic() {
    let vch = OwnVch::create("net", &[]);
    let (client, image) = (&vch.client, vch.image.as_str());
    let ns = backend_local::net::namespace_name(&machine::vch_dir(&vch.name));
    assert!(
        namespaces().contains(&ns),
        "the VCH's namespace {ns} exists"
    );
    assert_eq!(netns_links(&ns), ["lo", "uplink", "vic-bridge"]);

    // A server: answers one connection on 8080, then exits.
    let srv = client
        .ok(&[
            "run",
            "-d",
            "--name",
            "srv",
            image,
            "sh",
            "-c",
            "echo hello-over-the-bridge | nc -l -p 8080",
        ])
        .trim()
        .to_string();
    let ip = eventually("the server has an address", Duration::from_secs(60), || {
        let ip = client.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &srv]);
        Some(ip.trim().to_string()).filter(|ip| !ip.is_empty())
    });
    assert_eq!(ip, "172.16.0.2");
    let net = client.ok(&[
        "inspect",
        "-f",
        "{{json .NetworkSettings.Networks.bridge}}",
        &srv,
    ]);
    let net: serde_json::Value = serde_json::from_str(&net).expect("JSON");
    assert_eq!(net["Gateway"], "172.16.0.1");
    assert_eq!(net["IPPrefixLen"], 16);
    assert_eq!(net["MacAddress"], "02:42:ac:10:00:02");
    assert!(
        netns_links(&ns).iter().any(|l| l.starts_with("t0-")),
        "the server's tap is in the VCH's namespace: {:?}",
        netns_links(&ns)
    );

    // The networks as the docker CLI shows them.
    let ls = client.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert_eq!(ls, "bridge bridge\nnone null\n");
    let on = client.ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.Name}} {{.IPv4Address}}{{end}}",
        "bridge",
    ]);
    assert_eq!(on.trim(), "srv 172.16.0.2/16");
    // A client on the same bridge: its own address, route, /etc/hosts, and the server's port.
    let got = client.ok(&[
        "run",
        "--rm",
        "--hostname",
        "cli",
        image,
        "sh",
        "-c",
        "ip -o -4 addr show eth0; ip route; grep cli /etc/hosts; \
         for i in 1 2 3 4 5 6 7 8 9 10; do nc 172.16.0.2 8080 && exit 0; sleep 1; done; exit 1",
    ]);
    assert!(got.contains("inet 172.16.0.3/16"), "{got}");
    assert!(got.contains("default via 172.16.0.1 dev eth0"), "{got}");
    assert!(got.contains("172.16.0.3\tcli"), "{got}");
    assert!(got.contains("hello-over-the-bridge"), "{got}");

    // --network none: no NIC (loopback, and the kernel's own sit0 tunnel device, only).
    let none = client.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        image,
        "sh",
        "-c",
        "ip -o link | cut -d: -f2",
    ]);
    let names: Vec<&str> = none.split_whitespace().collect();
    assert_eq!(names, ["lo", "sit0@NONE"], "{none}");

    // Every VM has exited: no tap is left, the bridge stays.
    client.ok(&["wait", &srv]);
    eventually("the taps are gone", Duration::from_secs(20), || {
        (netns_links(&ns) == ["lo", "uplink", "vic-bridge"]).then_some(())
    });
    let stopped = client.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &srv]);
    assert_eq!(stopped.trim(), "", "an exited container shows no address");
    // Joining and leaving the network are events, as dockerd reports them.
    let events = client.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &format!(
            "{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 1
        ),
        "--filter",
        "type=network",
        "--filter",
        &format!("container={srv}"),
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    assert_eq!(events, "connect bridge\ndisconnect bridge\n");

    vch.delete();
    assert!(
        !namespaces().contains(&ns),
        "delete removes the VCH's namespace"
    );
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn the_bridge_network_comes_from_the_vchs_bridge_network_range() {
    let bad = machine::machine_err(&[
        "create",
        "--target",
        "local",
        "--name",
        "bnr-bad",
        "--no-tls",
        "--bridge-network-range",
        "10.8.0.0/24",
    ]);
    assert!(
        bad.contains("Invalid bridge network range 10.8.0.0/24"),
        "{bad}"
    );
    let vch = OwnVch::create("bnr", &["--bridge-network-range", "10.8.0.0/16"]);
    let got = vch.client.ok(&[
        "run",
        "--rm",
        &vch.image,
        "sh",
        "-c",
        "ip -o -4 addr show eth0; ip route",
    ]);
    assert!(got.contains("inet 10.8.0.2/16"), "{got}");
    assert!(got.contains("default via 10.8.0.1 dev eth0"), "{got}");
    let subnet = vch.client.ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}",
        "bridge",
    ]);
    assert_eq!(subnet.trim(), "10.8.0.0/16 10.8.0.1");
    let shown = machine::machine_ok(&["inspect", "--target", "local", "--name", &vch.name]);
    assert!(
        shown.contains("Bridge network range: 10.8.0.0/16"),
        "{shown}"
    );
    vch.delete();
}

/// Reads what a connection to 127.0.0.1:`port` gets, trying for up to 30 s while the
/// container's server comes up.
fn read_published(port: u16) -> String {
    use std::io::Read;
    eventually(
        "an answer on the published port",
        Duration::from_secs(30),
        || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            let mut got = String::new();
            s.read_to_string(&mut got).ok()?;
            Some(got).filter(|g| !g.is_empty())
        },
    )
}

/// Sends `word` from a new socket to 127.0.0.1:`port` and returns the reply, trying for up to
/// 30 s while the container's server comes up.
fn ask_udp(port: u16, word: &str) -> String {
    eventually(
        "a reply on the published UDP port",
        Duration::from_secs(30),
        || {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            s.send_to(word.as_bytes(), ("127.0.0.1", port)).ok()?;
            let mut buf = [0u8; 256];
            let n = s.recv(&mut buf).ok()?;
            Some(String::from_utf8_lossy(&buf[..n]).into_owned())
        },
    )
}

/// The host port `docker port CTR` maps `key` (`53/udp`) to on 127.0.0.1.
fn mapped(client: &Client, ctr: &str, key: &str) -> u16 {
    let mapping = client.ok(&["port", ctr, key]);
    mapping
        .trim()
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("docker port {key}: {mapping}"))
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn published_ports_carry_connections_and_close_when_the_container_stops() {
    let vch = OwnVch::create("ports", &[]);
    let (client, image) = (&vch.client, vch.image.as_str());
    let web = client
        .ok(&[
            "run",
            "-d",
            "-p",
            "127.0.0.1::8080",
            image,
            "sh",
            "-c",
            "while true; do echo hello-published | nc -l -p 8080; done",
        ])
        .trim()
        .to_string();
    let mapping = client.ok(&["port", &web]);
    let port: u16 = mapping
        .trim()
        .strip_prefix("8080/tcp -> 127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("docker port: {mapping}"));
    assert_eq!(read_published(port).trim(), "hello-published");
    let ps = client.ok(&[
        "ps",
        "--format",
        "{{.Ports}}",
        "--filter",
        &format!("id={web}"),
    ]);
    assert_eq!(ps.trim(), format!("127.0.0.1:{port}->8080/tcp"));

    // UDP: an echo server (Debian's socat) behind a published UDP port; two clients each get
    // their own replies.
    let socat = format!("{}/socat", registry());
    let echo = client
        .ok(&[
            "run",
            "-d",
            "-p",
            "127.0.0.1::53/udp",
            &socat,
            "socat",
            "-T2",
            "UDP4-RECVFROM:53,fork",
            "EXEC:cat",
        ])
        .trim()
        .to_string();
    let udp = mapped(client, &echo, "53/udp");
    assert_eq!(ask_udp(udp, "ping-a"), "ping-a");
    assert_eq!(ask_udp(udp, "ping-b"), "ping-b");
    let ps = client.ok(&[
        "ps",
        "--format",
        "{{.Ports}}",
        "--filter",
        &format!("id={echo}"),
    ]);
    assert_eq!(ps.trim(), format!("127.0.0.1:{udp}->53/udp"));

    // A port that is taken fails the start in dockerd's words; the container is not running.
    let taken = client.run(&[
        "run",
        "-d",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        image,
        "true",
    ]);
    assert!(!taken.status.success());
    assert!(
        stderr(&taken).contains(&format!(
            "Bind for 127.0.0.1:{port} failed: port is already allocated"
        )),
        "{}",
        stderr(&taken)
    );
    // What cannot be carried is refused before anything is made.
    let range = client.run(&["create", "-p", "8000-8010:80", image]);
    assert!(
        stderr(&range).contains("host port ranges are not supported for port bindings"),
        "{}",
        stderr(&range)
    );
    let none = client.run(&["create", "--network", "none", "-p", "1:1", image]);
    assert!(
        stderr(&none)
            .contains("conflicting options: port publishing and the container type network mode"),
        "{}",
        stderr(&none)
    );

    // The appliance dies: the container keeps running and its port is served again.
    let pid = appliance_pid(&vch.name);
    let killed = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    assert!(killed.success());
    eventually("the appliance to be back", Duration::from_secs(60), || {
        (appliance_pid(&vch.name) != pid && client.run(&["version"]).status.success()).then_some(())
    });
    assert_eq!(read_published(port).trim(), "hello-published");
    assert_eq!(mapped(client, &echo, "53/udp"), udp, "the same host port");
    assert_eq!(ask_udp(udp, "ping-again"), "ping-again");

    // Stopped, the port is closed and the mapping gone.
    client.ok(&["stop", "-t", "1", &echo]);
    assert!(
        std::net::UdpSocket::bind(("127.0.0.1", udp)).is_ok(),
        "the UDP port is free once the container stops"
    );
    client.ok(&["stop", "-t", "1", &web]);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the port closes with the container"
    );
    assert_eq!(client.ok(&["port", &web]).trim(), "");
    vch.delete();
}
