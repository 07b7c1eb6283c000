//! Egress: containers reach what the host reaches, through the VCH's uplink, masqueraded in
//! the VCH's namespace and again by the host; `--internal` networks do not get out; deleting
//! the VCH removes what it added to the host. "What the host reaches" is a namespace of the
//! test's own, with a server in it.

mod common;
mod machine;

use std::process::{Child, Command};

use common::*;

/// A namespace of the test's own, beside the host: `10.253.N.2` inside, `.1` on the host.
struct Outside {
    ns: String,
    host_if: String,
    server: Option<Child>,
    addr: String,
}

impl Outside {
    fn new() -> Outside {
        let pid = std::process::id();
        let n = pid % 250;
        let (ns, host_if) = (format!("vicout-{pid}"), format!("vo-{pid}"));
        let _ = Command::new("ip").args(["netns", "delete", &ns]).output();
        ip(&["netns", "add", &ns]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip(&["addr", "add", &format!("10.253.{n}.1/30"), "dev", &host_if]);
        ip(&["link", "set", "dev", &host_if, "up"]);
        let addr = format!("10.253.{n}.2");
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/30"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "dev", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "dev", "lo", "up"]);
        // Answers each connection on 9000 with the address it came from.
        let script = format!(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(('{addr}',9000))\ns.listen(16)\nwhile True:\n c,a=s.accept()\n \
             c.sendall(('from %s\\n'%a[0]).encode())\n c.close()\n"
        );
        let server = Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-c", &script])
            .spawn()
            .expect("python3");
        Outside {
            ns,
            host_if,
            server: Some(server),
            addr,
        }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "delete", "dev", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.ns])
            .output();
    }
}

fn host_rules() -> String {
    let mut all = String::new();
    for table in ["filter", "nat"] {
        let out = Command::new("iptables")
            .args(["-w", "-t", table, "-S"])
            .output()
            .expect("iptables");
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    all
}

#[test]
#[ignore = "needs QEMU, the test registry, the docker CLI and iptables: make test runs it"]
fn containers_get_out_through_the_vchs_uplink_unless_their_network_is_internal() {
    let outside = Outside::new();
    let vch = OwnVch::create("egress", &[]);
    let (client, image) = (&vch.client, vch.image.as_str());
    let ns = backend_local::net::namespace_name(&machine::vch_dir(&vch.name));
    let tag = format!("vic:{ns}");
    assert!(
        host_rules().contains(&tag),
        "the host masquerades the VCH: {}",
        host_rules()
    );

    let reach = format!(
        "for i in $(seq 20); do nc -w 3 {} 9000 && exit 0; sleep 1; done; exit 1",
        outside.addr
    );
    let got = client.ok(&["run", "--rm", image, "sh", "-c", &reach]);
    let seen_from = got.trim().trim_start_matches("from ");
    assert!(
        !seen_from.starts_with("172."),
        "masqueraded, not the container's own address: {got}"
    );
    assert!(
        seen_from.starts_with("10.253."),
        "the host's address toward the outside: {got}"
    );

    // The host, as the container reaches it: Docker's host-gateway is the uplink's host end.
    let gw = client.ok(&[
        "run",
        "--rm",
        "--add-host",
        "gw:host-gateway",
        image,
        "sh",
        "-c",
        "grep -w gw /etc/hosts; ping -c 1 -W 5 gw >/dev/null && echo answered",
    ]);
    assert!(gw.starts_with("169.254."), "{gw}");
    assert!(
        gw.trim_end().ends_with("answered"),
        "the host answers at host-gateway: {gw}"
    );

    client.ok(&["network", "create", "out"]);
    let got = client.ok(&["run", "--rm", "--network", "out", image, "sh", "-c", &reach]);
    assert!(got.starts_with("from 10.253."), "{got}");

    client.ok(&["network", "create", "--internal", "sealed"]);
    let sealed = client.run(&[
        "run",
        "--rm",
        "--network",
        "sealed",
        image,
        "sh",
        "-c",
        &format!("nc -w 3 {} 9000", outside.addr),
    ]);
    assert!(
        !sealed.status.success(),
        "an internal network has no way out: {}",
        stdout(&sealed)
    );

    vch.delete();
    assert!(
        !host_rules().contains(&tag),
        "delete removes the host's rules"
    );
    let end = backend_local::uplink::host_end(&ns);
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains(&end),
        "and the uplink's host end"
    );
}
