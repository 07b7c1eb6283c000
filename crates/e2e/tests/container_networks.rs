//! Container networks (`vic-machine create/configure --container-network`): containers joined
//! straight to an operator's bridge, at addresses from the configured range, without NAT,
//! behind the network's trust level. The operator's bridges live in a namespace of the
//! test's own ("the LAN"), with a server on the first one's gateway address.

mod common;
mod machine;

use std::process::{Child, Command};
use std::time::Duration;

use common::*;

/// The test's LAN: namespace `viccn-PID` with bridges `br0` (`10.77.N.1/24`, a server on
/// port 9000 that answers each connection with the address it came from) to `br4`
/// (`10.81.N.1/24`).
struct Lan {
    ns: String,
    n: u32,
    server: Option<Child>,
}

impl Lan {
    fn new() -> Lan {
        let pid = std::process::id();
        let (ns, n) = (format!("viccn-{pid}"), pid % 250);
        let _ = Command::new("ip").args(["netns", "delete", &ns]).output();
        ip(&["netns", "add", &ns]);
        ip(&["-n", &ns, "link", "set", "dev", "lo", "up"]);
        for (br, net) in [
            ("br0", 77),
            ("br1", 78),
            ("br2", 79),
            ("br3", 80),
            ("br4", 81),
        ] {
            ip(&["-n", &ns, "link", "add", br, "type", "bridge"]);
            let addr = format!("10.{net}.{n}.1/24");
            ip(&["-n", &ns, "addr", "add", &addr, "dev", br]);
            ip(&["-n", &ns, "link", "set", "dev", br, "up"]);
        }
        let script = format!(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(('10.77.{n}.1',9000))\ns.listen(16)\nwhile True:\n c,a=s.accept()\n \
             c.sendall(('from %s\\n'%a[0]).encode())\n c.close()\n"
        );
        let server = Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-c", &script])
            .spawn()
            .expect("python3");
        Lan {
            ns,
            n,
            server: Some(server),
        }
    }

    /// `10.77.N.last` (or 10.78 with `net` 78).
    fn addr(&self, net: u32, last: u32) -> String {
        format!("10.{net}.{}.{last}", self.n)
    }

    /// What a TCP connection from the LAN to `addr:port` reads (empty when it cannot connect
    /// within 3 s).
    fn read(&self, addr: &str, port: u16) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "busybox", "nc", "-w", "3"])
            .args([addr, &port.to_string()])
            .output()
            .expect("busybox nc");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The LAN's devices.
    fn links(&self) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.ns, "-o", "link", "show"])
            .output()
            .expect("ip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.ns])
            .output();
    }
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn containers_join_the_operators_bridge_directly_behind_its_trust_level() {
    let lan = Lan::new();
    let br0 = format!("{}/br0", lan.ns);
    let flag = |v: &str| format!("{br0}:{v}");
    let gw = format!("{}/24", lan.addr(77, 1));
    let range = format!("{}-{}", lan.addr(77, 100), lan.addr(77, 110));
    let missing = machine::machine_err(&[
        "create",
        "--target",
        "local",
        "--name",
        &format!("cn-missing-{}", std::process::id()),
        "--container-network",
        &format!("{}/br9:nowhere", lan.ns),
        "--container-network-gateway",
        &format!("{}/br9:{gw}", lan.ns),
    ]);
    assert!(missing.contains("no bridge br9"), "{missing}");

    let vch = OwnVch::create(
        "cn",
        &[
            "--container-network",
            &flag("routable"),
            "--container-network-gateway",
            &flag(&gw),
            "--container-network-ip-range",
            &flag(&range),
            "--container-network-firewall",
            &flag("published"),
            // Three more, one per trust level, on br2 (10.79), br3 (10.80) and br4 (10.81).
            "--cn",
            &format!("{}/br2:out", lan.ns),
            "--cng",
            &format!("{}/br2:{}/24", lan.ns, lan.addr(79, 1)),
            "--cnf",
            &format!("{}/br2:outbound", lan.ns),
            "--cn",
            &format!("{}/br3:peers", lan.ns),
            "--cng",
            &format!("{}/br3:{}/24", lan.ns, lan.addr(80, 1)),
            "--cnf",
            &format!("{}/br3:peers", lan.ns),
            "--cn",
            &format!("{}/br4:open", lan.ns),
            "--cng",
            &format!("{}/br4:{}/24", lan.ns, lan.addr(81, 1)),
            "--cnf",
            &format!("{}/br4:open", lan.ns),
        ],
    );
    let (client, image) = (&vch.client, vch.image.as_str());
    let ls = client.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert!(ls.lines().any(|l| l == "routable external"), "{ls}");

    // A server on a published port and one on a port it does not publish.
    let web = client
        .ok(&[
            "run",
            "-d",
            "--net",
            "routable",
            "-p",
            "8080",
            image,
            "sh",
            "-c",
            "(while true; do echo hidden | nc -l -p 8081; done) & \
             while true; do echo hello-lan | nc -l -p 8080; done",
        ])
        .trim()
        .to_string();
    let addr = client.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.routable.IPAddress}}",
        &web,
    ]);
    assert_eq!(addr.trim(), lan.addr(77, 100), "the range's first address");
    let port = client.ok(&["port", &web]);
    assert_eq!(
        port.trim(),
        format!("8080/tcp -> {}:8080", lan.addr(77, 100))
    );
    let got = eventually(
        "the published port from the LAN",
        Duration::from_secs(30),
        || Some(lan.read(&lan.addr(77, 100), 8080)).filter(|g| !g.is_empty()),
    );
    assert_eq!(got, "hello-lan");
    assert_eq!(
        lan.read(&lan.addr(77, 100), 8081),
        "",
        "a port the container does not publish is closed to the LAN"
    );

    // Outbound, without NAT: the LAN's server sees the container's own address.
    let seen = client.ok(&[
        "run",
        "--rm",
        "--net",
        "routable",
        image,
        "nc",
        "-w",
        "5",
        &lan.addr(77, 1),
        "9000",
    ]);
    assert_eq!(seen.trim(), format!("from {}", lan.addr(77, 101)));

    // One listening container per other trust level, on a port none publishes.
    let serve = |net: &str| {
        let id = client
            .ok(&[
                "run",
                "-d",
                "--net",
                net,
                image,
                "sh",
                "-c",
                "while true; do echo inside | nc -l -p 8081; done",
            ])
            .trim()
            .to_string();
        let f = format!("{{{{.NetworkSettings.Networks.{net}.IPAddress}}}}");
        client.ok(&["inspect", "-f", &f, &id]).trim().to_string()
    };
    // Whether one ping from a container on `net` to `to` is answered; the container must
    // have run either way (busybox prints its packet loss).
    let ping = |net: &str, to: &str| {
        let o = client.run(&[
            "run", "--rm", "--net", net, image, "ping", "-c", "1", "-W", "3", to,
        ]);
        let text = stdout(&o);
        assert!(text.contains("packet loss"), "{text}{}", stderr(&o));
        text.contains(" 0% packet loss")
    };
    let (out, peers, open) = (serve("out"), serve("peers"), serve("open"));
    let got = eventually(
        "the open network's server from the LAN",
        Duration::from_secs(30),
        || Some(lan.read(&open, 8081)).filter(|g| !g.is_empty()),
    );
    assert_eq!(got, "inside", "open lets the LAN in to any port");
    assert_eq!(lan.read(&out, 8081), "", "outbound lets nothing in");
    assert!(
        ping("out", &lan.addr(79, 1)),
        "outbound lets a container out"
    );
    assert_eq!(lan.read(&peers, 8081), "", "peers keeps the LAN out");
    assert!(
        !ping("peers", &lan.addr(80, 1)),
        "peers keeps containers in"
    );
    let peer = client.ok(&[
        "run", "--rm", "--net", "peers", image, "nc", "-w", "5", &peers, "8081",
    ]);
    assert_eq!(peer.trim(), "inside", "peers reach each other");

    // What a container network cannot do is refused in words.
    let remap = client.run(&["create", "--net", "routable", "-p", "9090:80", image]);
    assert!(
        stderr(&remap).contains("cannot be published on a container network"),
        "{}",
        stderr(&remap)
    );
    let rm = client.run(&["network", "rm", "routable"]);
    assert!(
        stderr(&rm).contains("container network of the VCH"),
        "{}",
        stderr(&rm)
    );

    // configure adds a closed network: nothing gets through it.
    let br1 = format!("{}/br1", lan.ns);
    let out = machine::machine_ok(&[
        "configure",
        "--target",
        "local",
        "--name",
        &vch.name,
        "--container-network",
        &format!("{br1}:sealed"),
        "--container-network-gateway",
        &format!("{br1}:{}/24", lan.addr(78, 1)),
        "--container-network-firewall",
        &format!("{br1}:closed"),
    ]);
    assert!(out.contains("sealed"), "{out}");
    let ls = client.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(ls.lines().any(|l| l == "sealed"), "{ls}");
    // Whether one ping from a container on `net` to `to` is answered; the container must
    // have run either way (busybox prints its packet loss).
    let ping = |net: &str, to: &str| {
        let o = client.run(&[
            "run", "--rm", "--net", net, image, "ping", "-c", "1", "-W", "3", to,
        ]);
        let text = stdout(&o);
        assert!(text.contains("packet loss"), "{text}{}", stderr(&o));
        text.contains(" 0% packet loss")
    };
    assert!(
        ping("routable", &lan.addr(77, 1)),
        "published lets a container out"
    );
    assert!(!ping("sealed", &lan.addr(78, 1)), "closed lets nothing out");

    // The VCH goes, and nothing of it stays on the operator's bridges.
    assert!(lan.links().contains("vx"), "{}", lan.links());
    vch.delete();
    let links = lan.links();
    assert!(!links.contains("vx"), "{links}");
}
