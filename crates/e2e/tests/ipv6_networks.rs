//! IPv6 on user networks, and link-local addresses, through the docker CLI: `network create --ipv6` with a subnet of
//! its own and without one (a unique local /64), containers reaching each other and their
//! gateway over IPv6 with `--ip6` and handed-out addresses, by name through the VCH's DNS
//! server (AAAA), inspect's IPv6 fields, and a running container connected to an IPv6
//! network.

mod common;

use std::time::Duration;

use common::*;

/// The IPv6 fields of container `name`'s endpoint on `net`.
fn ipv6_of(client: &Client, name: &str, net: &str) -> String {
    let format = format!(
        "{{{{with index .NetworkSettings.Networks \"{net}\"}}}}{{{{.GlobalIPv6Address}}}}/{{{{.GlobalIPv6PrefixLen}}}} via {{{{.IPv6Gateway}}}}{{{{end}}}}"
    );
    client
        .ok(&["inspect", "-f", &format, name])
        .trim()
        .to_string()
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn containers_reach_each_other_and_their_gateway_over_ipv6() {
    let vch = OwnVch::create("ipv6", &[]);
    let (client, image) = (&vch.client, vch.image.as_str());
    client.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "2001:db8:5::/64",
        "six",
    ]);
    let shown = client.ok(&[
        "network",
        "inspect",
        "-f",
        "{{.EnableIPv6}} {{range .IPAM.Config}}{{.Subnet}},{{.Gateway}} {{end}}",
        "six",
    ]);
    assert!(
        shown.starts_with("true ") && shown.contains("2001:db8:5::/64,2001:db8:5::1"),
        "{shown}"
    );
    // Its IPv4 side is there as on any network.
    assert!(shown.contains("172."), "{shown}");

    client.ok(&[
        "run",
        "-d",
        "--name",
        "target",
        "--network",
        "six",
        "--ip6",
        "2001:db8:5::10",
        "--link-local-ip",
        "169.254.8.8",
        "--link-local-ip",
        "fe80::8",
        image,
        "sleep",
        "600",
    ]);
    // Its link-local addresses beside (`--link-local-ip`), on its interface and in inspect.
    let addrs = client.ok(&["exec", "target", "ip", "addr", "show", "dev", "eth0"]);
    assert!(
        addrs.contains("inet 169.254.8.8/16") && addrs.contains("inet6 fe80::8/64"),
        "{addrs}"
    );
    let shown = client.ok(&[
        "inspect",
        "-f",
        "{{(index .NetworkSettings.Networks \"six\").IPAMConfig.LinkLocalIPs}}",
        "target",
    ]);
    assert_eq!(shown.trim(), "[169.254.8.8 fe80::8]");
    assert_eq!(
        ipv6_of(client, "target", "six"),
        "2001:db8:5::10/64 via 2001:db8:5::1"
    );
    let asked = client.ok(&[
        "inspect",
        "-f",
        "{{(index .NetworkSettings.Networks \"six\").IPAMConfig.IPv6Address}}",
        "target",
    ]);
    assert_eq!(asked.trim(), "2001:db8:5::10");

    // Another container gets the range's first free address, its IPv6 default route, and
    // reaches the first one and the gateway.
    let out = client.ok(&[
        "run",
        "--rm",
        "--network",
        "six",
        image,
        "sh",
        "-c",
        "ip -6 addr show dev eth0 scope global; ip -6 route show default; \
         ping -c 1 -W 5 2001:db8:5::10 >/dev/null && echo reached-target; \
         ping -c 1 -W 5 2001:db8:5::1 >/dev/null && echo reached-gateway; \
         nslookup -type=AAAA target; ping -6 -c 1 -W 5 target >/dev/null && echo reached-by-name",
    ]);
    eprintln!("a second container on the IPv6 network:\n{out}");
    assert!(out.contains("inet6 2001:db8:5::2/64"), "{out}");
    assert!(out.contains("default via 2001:db8:5::1"), "{out}");
    assert!(out.contains("reached-target"), "{out}");
    assert!(out.contains("reached-gateway"), "{out}");
    // The VCH's DNS server answers its name with its IPv6 address too (AAAA).
    assert!(out.contains("2001:db8:5::10"), "{out}");
    assert!(out.contains("reached-by-name"), "{out}");

    // An address outside the network, or on a network without IPv6, is refused.
    let o = client.run(&[
        "create",
        "--network",
        "six",
        "--ip6",
        "2001:db9::1",
        image,
        "true",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no configured subnet or ip-range contain the IP address 2001:db9::1"),
        "{}",
        stderr(&o)
    );

    // A network without a subnet of its own: a unique local /64. The running container
    // is connected to it and has an address there at once, and reaches its gateway.
    client.ok(&["network", "create", "--ipv6", "ula"]);
    let gw = client.ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Gateway}} {{end}}",
        "ula",
    ]);
    let gw = gw
        .split_whitespace()
        .find(|g| g.contains(':'))
        .unwrap_or_else(|| panic!("no IPv6 gateway: {gw}"))
        .to_string();
    assert!(gw.starts_with("fd"), "{gw}");
    client.ok(&["network", "connect", "ula", "target"]);
    let on_ula = ipv6_of(client, "target", "ula");
    assert!(
        on_ula.starts_with("fd") && on_ula.ends_with(&format!("/64 via {gw}")),
        "{on_ula}"
    );
    let ping = format!("ping -c 1 -W 5 {gw} >/dev/null && echo reached-ula-gateway");
    eventually(
        "the connected network answers",
        Duration::from_secs(20),
        || {
            let o = client.run(&["exec", "target", "sh", "-c", &ping]);
            stdout(&o).contains("reached-ula-gateway").then_some(())
        },
    );
    client.ok(&["rm", "-f", "target"]);
    vch.delete();
}
