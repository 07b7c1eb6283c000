//! User networks through the docker CLI: `network create/ls/inspect/rm/prune`, containers
//! reaching each other by name, alias and link through the VCH's DNS server, fixed
//! addresses, isolation between networks and inside `enable_icc=false` ones, and a stopped
//! container connected to a second network.

mod common;
mod machine;

use std::time::Duration;

use common::*;

/// A shell loop (in a subshell of its own) that tries `cmd` for up to 20 s (a VM boots
/// meanwhile); it fails the script when `cmd` never succeeds.
fn retry(cmd: &str) -> String {
    format!("(for i in $(seq 20); do {cmd} && exit 0; sleep 1; done; exit 1) || exit 1")
}

/// Runs a server in a container: answers every connection on 8080 with `reply`.
fn server(client: &Client, image: &str, name: &str, net_args: &[&str], reply: &str) -> String {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(net_args);
    let script = format!("while true; do echo {reply} | nc -l -p 8080; done");
    args.extend_from_slice(&[image, "sh", "-c", &script]);
    let id = client.ok(&args).trim().to_string();
    eventually("the server runs", Duration::from_secs(60), || {
        let ip = client.ok(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &id,
        ]);
        Some(ip.trim().to_string()).filter(|ip| !ip.is_empty())
    });
    id
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn a_two_service_application_reaches_its_server_by_name_and_alias() {
    let vch = OwnVch::create("unet", &[]);
    let (client, image) = (&vch.client, vch.image.as_str());
    let ns = backend_local::net::namespace_name(&machine::vch_dir(&vch.name));
    let id = client
        .ok(&["network", "create", "--label", "app=demo", "app"])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    let ls = client.ok(&[
        "network",
        "ls",
        "--filter",
        "type=custom",
        "--format",
        "{{.Name}} {{.Driver}}",
    ]);
    assert_eq!(ls, "app bridge\n");
    let subnet = client.ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}} {{.Labels.app}}",
        "app",
    ]);
    assert_eq!(subnet.trim(), "172.17.0.0/16 172.17.0.1 demo");
    let bridge = format!("vic-n{}", &id[..10]);
    assert!(netns_links(&ns).contains(&bridge), "{:?}", netns_links(&ns));

    let shown = machine::machine_ok(&["inspect", "--target", "local", "--name", &vch.name]);
    assert!(
        shown.contains(&format!("  app: 172.17.0.1/16 on {bridge}")),
        "vic-machine inspect lists the network: {shown}"
    );
    assert!(
        shown.contains("  bridge: 172.16.0.1/16 on vic-bridge"),
        "{shown}"
    );
    assert!(shown.contains("  uplink: 169.254."), "{shown}");
    server(
        client,
        image,
        "web",
        &["--network", "app", "--network-alias", "www"],
        "hello-from-web",
    );
    let on_app = client.ok(&["ps", "--filter", "network=app", "--format", "{{.Names}}"]);
    assert_eq!(on_app, "web\n");
    let got = client.ok(&[
        "run",
        "--rm",
        "--network",
        "app",
        image,
        "sh",
        "-c",
        &format!(
            "cat /etc/resolv.conf; nslookup web; {}; {}",
            retry("nc web 8080"),
            retry("nc www 8080")
        ),
    ]);
    assert!(got.contains("nameserver 172.17.0.1"), "{got}");
    assert!(
        got.contains("Address: 172.17.0.2"),
        "nslookup answers the server's address: {got}"
    );
    assert_eq!(
        got.matches("hello-from-web").count(),
        2,
        "by name and by alias: {got}"
    );

    // On the default bridge, names do not resolve (as in Docker) but links do.
    let linked = client.ok(&[
        "run",
        "--rm",
        image,
        "sh",
        "-c",
        "nslookup web >/dev/null 2>&1 && echo resolved || echo unresolved",
    ]);
    assert_eq!(linked.trim(), "unresolved");

    let busy = client.run(&["network", "rm", "app"]);
    assert!(!busy.status.success());
    assert!(
        stderr(&busy).contains("has active endpoints"),
        "{}",
        stderr(&busy)
    );
    client.ok(&["rm", "-f", "web"]);
    client.ok(&["network", "rm", "app"]);
    assert!(
        !netns_links(&ns).contains(&bridge),
        "the bridge goes with the network"
    );
    let events = client.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &now_plus(1),
        "--filter",
        "type=network",
        "--filter",
        "network=app",
        "--format",
        "{{.Action}}",
    ]);
    // The server and the client each joined and left.
    assert_eq!(
        events,
        "create\nconnect\nconnect\ndisconnect\ndisconnect\ndestroy\n"
    );
    vch.delete();
}

fn now_plus(secs: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (now + secs).to_string()
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn networks_are_isolated_addresses_fixed_links_resolved_and_stopped_containers_connected() {
    let vch = OwnVch::create("unet2", &[]);
    let (client, image) = (&vch.client, vch.image.as_str());
    client.ok(&[
        "network",
        "create",
        "--subnet",
        "10.9.0.0/24",
        "--gateway",
        "10.9.0.254",
        "front",
    ]);
    client.ok(&["network", "create", "back"]);
    client.ok(&[
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "closed",
    ]);
    let bad = client.run(&[
        "network",
        "create",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "mtu",
    ]);
    assert!(
        stderr(&bad)
            .contains("network option com.docker.network.driver.mtu is not supported by vic"),
        "{}",
        stderr(&bad)
    );

    server(
        client,
        image,
        "api",
        &["--network", "front", "--ip", "10.9.0.50"],
        "hello-from-api",
    );
    // Another network reaches neither the name nor the address.
    let other = client.ok(&[
        "run", "--rm", "--network", "back", image, "sh", "-c",
        "nslookup api >/dev/null 2>&1 && echo resolved; nc -w 2 10.9.0.50 8080 && echo reached; echo done",
    ]);
    assert_eq!(other.trim(), "done", "{other}");
    // The fixed address, and the gateway the network was given.
    let front = client.ok(&[
        "run",
        "--rm",
        "--network",
        "front",
        image,
        "sh",
        "-c",
        &format!("ip route; {}", retry("nc 10.9.0.50 8080")),
    ]);
    assert!(front.contains("default via 10.9.0.254"), "{front}");
    assert!(front.contains("hello-from-api"), "{front}");

    // A link on the default bridge: the linking container alone knows the name.
    let db_args = ["--expose", "8080", "-e", "ROLE=db"];
    server(client, image, "db", &db_args, "hello-from-db");
    let linked = client.ok(&[
        "run",
        "--rm",
        "--link",
        "db:database",
        image,
        "sh",
        "-c",
        &retry("nc database 8080"),
    ]);
    assert!(linked.contains("hello-from-db"), "{linked}");
    // moby's link variables, made at the start from the linked container as it runs.
    let env = client.ok(&["run", "--rm", "--link", "db:database", image, "env"]);
    let db_ip = client.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "db"]);
    let db_ip = db_ip.trim();
    for want in [
        format!("DATABASE_PORT=tcp://{db_ip}:8080"),
        format!("DATABASE_PORT_8080_TCP_ADDR={db_ip}"),
        "DATABASE_PORT_8080_TCP_PROTO=tcp".to_string(),
        "DATABASE_ENV_ROLE=db".to_string(),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} missing from\n{env}");
    }
    assert!(env.contains("DATABASE_NAME=/"), "{env}");
    // Inspect shows the link; `rm --link` takes it away and removes no container (a name
    // without its parent is refused, as dockerd refuses it, not taken for the container).
    client.ok(&[
        "create",
        "--name",
        "app",
        "--link",
        "db:database",
        image,
        "true",
    ]);
    let links = || client.ok(&["inspect", "-f", "{{json .HostConfig.Links}}", "app"]);
    assert_eq!(links().trim(), r#"["/db:/app/database"]"#);
    let refused = client.run(&["rm", "--link", "app"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("Conflict, cannot remove the default link name of the container"),
        "{}",
        stderr(&refused)
    );
    client.ok(&["rm", "--link", "app/database"]);
    assert_eq!(links().trim(), "null");
    client.ok(&["inspect", "-f", "{{.Id}}", "db"]);
    client.ok(&["rm", "app"]);
    // A link to a container that does not run fails the start, as dockerd fails it; the
    // container stays, created.
    client.ok(&["create", "--name", "idle-db", image, "true"]);
    let o = client.run(&[
        "run",
        "--name",
        "linker",
        "--link",
        "idle-db:x",
        image,
        "true",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Cannot link to a non running container: /idle-db AS /linker/x"),
        "{}",
        stderr(&o)
    );
    let state = client.ok(&["inspect", "-f", "{{.State.Status}}", "linker"]);
    assert_eq!(state.trim(), "created");
    client.ok(&["rm", "linker", "idle-db"]);

    // enable_icc=false: containers on the network do not reach each other.
    server(
        client,
        image,
        "lonely",
        &["--network", "closed"],
        "hello-from-lonely",
    );
    let closed = client.ok(&[
        "run", "--rm", "--network", "closed", image, "sh", "-c",
        "nslookup lonely >/dev/null && echo resolved; nc -w 2 lonely 8080 && echo reached; echo done",
    ]);
    assert_eq!(closed.trim(), "resolved\ndone", "{closed}");

    // A stopped container connected to a second network has an interface on it when it starts.
    let two = client
        .ok(&[
            "create",
            "--network",
            "back",
            image,
            "sh",
            "-c",
            &format!("ip -o -4 addr show eth1; {}", retry("nc api 8080")),
        ])
        .trim()
        .to_string();
    client.ok(&["network", "connect", "--alias", "second", "front", &two]);

    client.ok(&["start", &two]);
    assert_eq!(
        client.ok(&["wait", &two]).trim(),
        "0",
        "{}",
        client.ok(&["logs", &two])
    );
    let out = client.ok(&["logs", &two]);
    assert!(out.contains("inet 10.9.0."), "{out}");
    assert!(out.contains("hello-from-api"), "{out}");
    client.ok(&["network", "disconnect", "front", &two]);
    let nets = client.ok(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        &two,
    ]);
    assert_eq!(nets.trim(), "back");
    vch.delete();
}

/// The last line a container printed.
fn last_line(client: &Client, id: &str) -> String {
    client.ok(&["logs", "--tail", "1", id]).trim().to_string()
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn a_running_container_is_connected_and_disconnected_without_a_restart() {
    let vch = OwnVch::create("unet3", &[]);
    let (client, image) = (&vch.client, vch.image.as_str());
    client.ok(&["network", "create", "front"]);
    client.ok(&["network", "create", "back"]);
    server(
        client,
        image,
        "api",
        &["--network", "front"],
        "hello-from-api",
    );
    // Says every half second whether it reaches `api` by name (a connection the disconnect
    // cuts in the middle would wait for the server for ever: `timeout` ends it).
    let roamer = client
        .ok(&[
            "run", "-d", "--network", "back", image, "sh", "-c",
            "while true; do if timeout 2 nc -w 1 api 8080 >/dev/null 2>&1; then echo up; else echo down; fi; sleep 0.5; done",
        ])
        .trim()
        .to_string();
    eventually("the roamer runs, cut off", Duration::from_secs(60), || {
        (last_line(client, &roamer) == "down").then_some(())
    });
    let t = std::time::Instant::now();
    client.ok(&[
        "network", "connect", "--alias", "wanderer", "front", &roamer,
    ]);
    let took = t.elapsed();
    eventually("the roamer reaches api", Duration::from_secs(15), || {
        (last_line(client, &roamer) == "up").then_some(())
    });
    eprintln!("network connect of a running container took {took:?}");
    let nets = client.ok(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}",
        &roamer,
    ]);
    assert!(
        nets.contains("back=172.") && nets.contains("front=172."),
        "{nets}"
    );
    // Its alias on front resolves for the others there.
    let by_alias = client.ok(&[
        "run",
        "--rm",
        "--network",
        "front",
        image,
        "sh",
        "-c",
        "nslookup wanderer >/dev/null && echo resolved",
    ]);
    assert_eq!(by_alias.trim(), "resolved");
    let gateway = |net: &str| {
        let g = client.ok(&[
            "network",
            "inspect",
            "-f",
            "{{(index .IPAM.Config 0).Gateway}}",
            net,
        ]);
        g.trim().to_string()
    };
    let route = || client.ok(&["exec", &roamer, "ip", "route", "show", "default"]);
    assert!(
        route().contains(&format!("via {}", gateway("back"))),
        "{}",
        route()
    );
    // Its first network, which carries its default route: the route moves to front, as
    // Docker moves it, and api is still reached.
    client.ok(&["network", "disconnect", "back", &roamer]);
    assert!(
        route().contains(&format!("via {}", gateway("front"))),
        "{}",
        route()
    );
    // By name: it asks the DNS server it started with, on back's gateway, still answered.
    let reaches_api = || {
        let o = client.run(&[
            "exec", &roamer, "timeout", "3", "nc", "-w", "1", "api", "8080",
        ]);
        stdout(&o).contains("hello-from-api").then_some(())
    };
    eventually(
        "the roamer reaches api through front",
        Duration::from_secs(15),
        reaches_api,
    );
    // Its only network: no route out, nothing reached.
    client.ok(&["network", "disconnect", "front", &roamer]);
    assert_eq!(route().trim(), "");
    eventually(
        "the roamer is cut off again",
        Duration::from_secs(15),
        || (last_line(client, &roamer) == "down").then_some(()),
    );
    // The freed interface is taken again, with the default route.
    client.ok(&["network", "connect", "front", &roamer]);
    assert!(
        route().contains(&format!("via {}", gateway("front"))),
        "{}",
        route()
    );
    eventually(
        "the roamer reaches api again",
        Duration::from_secs(15),
        || (last_line(client, &roamer) == "up").then_some(()),
    );
    let events = client.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &now_plus(1),
        "--filter",
        "type=network",
        "--filter",
        &format!("container={roamer}"),
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    assert_eq!(
        events,
        "connect back\nconnect front\ndisconnect back\ndisconnect front\nconnect front\n"
    );
    vch.delete();
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn a_mac_address_given_is_the_vms_interface_and_it_talks_with_it() {
    let vch = OwnVch::create("unetmac", &[]);
    let (client, image) = (&vch.client, vch.image.as_str());
    let out = client.ok(&[
        "run",
        "--rm",
        "--mac-address",
        "02:42:ac:11:00:0a",
        image,
        "sh",
        "-c",
        "cat /sys/class/net/eth0/address; ping -c 1 -W 5 172.16.0.1 >/dev/null && echo reached",
    ]);
    assert!(out.starts_with("02:42:ac:11:00:0a\n"), "{out}");
    assert!(out.contains("reached"), "{out}");
    client.ok(&[
        "create",
        "--name",
        "later",
        "--mac-address",
        "02:42:ac:11:00:0b",
        image,
        "sleep",
        "60",
    ]);
    let shown = |what: &str| {
        let f = format!("{{{{.NetworkSettings.Networks.bridge.MacAddress}}}} {what}");
        client
            .ok(&["inspect", "-f", &f, "later"])
            .trim()
            .to_string()
    };
    assert_eq!(shown("created"), "02:42:ac:11:00:0b created");
    client.ok(&["start", "later"]);
    assert_eq!(shown("running"), "02:42:ac:11:00:0b running");
    let top = client.ok(&["inspect", "-f", "{{.NetworkSettings.MacAddress}}", "later"]);
    assert_eq!(top.trim(), "02:42:ac:11:00:0b");
    let o = client.run(&[
        "run",
        "--rm",
        "--mac-address",
        "01:00:5e:00:00:01",
        image,
        "true",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("multicast"), "{}", stderr(&o));
    client.ok(&["rm", "-f", "later"]);
    vch.delete();
}
