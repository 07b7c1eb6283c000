//! DNS for containers: a container on a network asks the VCH's DNS server on its gateway,
//! which forwards what is no container name to the container's own `--dns` servers or the
//! VCH's `--dns-server` list; the registries are looked up with the VCH's list too.

mod common;

use common::*;

#[test]
#[ignore = "needs QEMU, the test registry, the docker CLI and root (DNS servers on port 53)"]
fn containers_ask_the_vchs_dns_server_which_forwards_to_the_vchs_servers_or_their_own() {
    // The VCH's upstream, and a container's own `--dns`: addresses of the loopback network
    // nothing else uses.
    let _vchs = serve_dns("127.0.0.78:53", &[("outside.vic.test", [192, 0, 2, 10])]);
    let _own = serve_dns("127.0.0.79:53", &[("outside.vic.test", [192, 0, 2, 20])]);
    let vch = OwnVch::create("dns", &["--dns-server", "127.0.0.78"]);
    let (client, image) = (&vch.client, vch.image.as_str());

    // On a network, the only nameserver is the VCH's DNS server on the network's gateway.
    let got = client.ok(&[
        "run",
        "--rm",
        image,
        "sh",
        "-c",
        "cat /etc/resolv.conf; nslookup outside.vic.test",
    ]);
    assert!(got.starts_with("nameserver 172.16.0.1\n"), "{got}");
    assert!(
        got.contains("Address: 192.0.2.10"),
        "the VCH's server answered: {got}"
    );

    let own = client.ok(&[
        "run",
        "--rm",
        "--dns",
        "127.0.0.79",
        "--dns-search",
        "corp.example",
        "--dns-option",
        "ndots:2",
        image,
        "sh",
        "-c",
        "cat /etc/resolv.conf; nslookup outside.vic.test",
    ]);
    assert!(
        own.starts_with("nameserver 172.16.0.1\nsearch corp.example\noptions ndots:2\n"),
        "{own}"
    );
    assert!(
        own.contains("Address: 192.0.2.20"),
        "its own server answered: {own}"
    );

    // Without a network there is no VCH DNS server to ask: the servers themselves.
    let none = client.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        image,
        "cat",
        "/etc/resolv.conf",
    ]);
    assert_eq!(none, "nameserver 127.0.0.78\n");

    // Kept with the container, as docker inspect shows it.
    let id = client
        .ok(&["create", "--dns", "192.0.2.9", image, "true"])
        .trim()
        .to_string();
    let dns = client.ok(&["inspect", "--format", "{{json .HostConfig.Dns}}", &id]);
    assert_eq!(dns.trim(), r#"["192.0.2.9"]"#);
    vch.delete();
}

/// A DNS server for the test: answers A queries for the names in `zone`, NXDOMAIN for
/// others, nothing (NOERROR, no answer) for other types. Runs until the socket is dropped
/// with the returned guard.
struct TestDns {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    queries: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn serve_dns(addr: &str, zone: &[(&str, [u8; 4])]) -> TestDns {
    let sock = std::net::UdpSocket::bind(addr)
        .unwrap_or_else(|e| panic!("binding the test DNS server to {addr} (needs root): {e}"));
    sock.set_read_timeout(Some(std::time::Duration::from_millis(100)))
        .unwrap();
    let zone: Vec<(String, [u8; 4])> = zone.iter().map(|(n, ip)| (n.to_string(), *ip)).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let queries = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (stopping, seen) = (stop.clone(), queries.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !stopping.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let q = &buf[..n];
            // Question: labels from byte 12, then type and class.
            let mut pos = 12;
            let mut labels = Vec::new();
            while pos < q.len() && q[pos] != 0 {
                let len = q[pos] as usize;
                labels.push(String::from_utf8_lossy(&q[pos + 1..pos + 1 + len]).to_string());
                pos += 1 + len;
            }
            let name = labels.join(".").to_ascii_lowercase();
            let qtype = u16::from_be_bytes([q[pos + 1], q[pos + 2]]);
            let question_end = pos + 5;
            seen.lock().unwrap().push(format!("{name} {qtype}"));
            let ip = zone.iter().find(|(n, _)| *n == name).map(|(_, ip)| *ip);
            let mut r = Vec::with_capacity(64);
            r.extend_from_slice(&q[..2]);
            let rcode = if ip.is_none() { 3 } else { 0 };
            r.extend_from_slice(&[0x81, 0x80 | rcode]);
            let answers = u16::from(ip.is_some() && qtype == 1);
            r.extend_from_slice(&[0, 1]);
            r.extend_from_slice(&answers.to_be_bytes());
            r.extend_from_slice(&[0, 0, 0, 0]);
            r.extend_from_slice(&q[12..question_end]);
            if let (Some(ip), 1) = (ip, answers) {
                r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                r.extend_from_slice(&ip);
            }
            let _ = sock.send_to(&r, peer);
        }
    });
    TestDns { stop, queries }
}

#[test]
#[ignore = "needs QEMU, the test registry, the docker CLI and root (a DNS server on port 53)"]
fn registry_names_are_looked_up_with_the_vchs_dns_servers() {
    // An address of the loopback network nothing else uses: the VCH's DNS server.
    let dns_ip = "127.0.0.77";
    let dns = serve_dns(
        &format!("{dns_ip}:53"),
        &[("registry.vic.test", [127, 0, 0, 1])],
    );
    let port = registry()
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .expect("REGISTRY is host:port");
    let by_name = format!("registry.vic.test:{port}");
    let name = format!("dnsreg-{}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    let host = create_vch_with(
        &name,
        &dir,
        &[
            "--insecure-registry",
            &by_name,
            "--insecure-registry",
            &format!("nosuch.vic.test:{port}"),
            "--dns-server",
            dns_ip,
        ],
    );
    let client = Client::new(&host, dir.join("docker-config"));
    // The host's resolver does not know the name; the VCH's DNS server does.
    client.ok(&["pull", &format!("{by_name}/busybox")]);
    let out = client.ok(&[
        "run",
        "--rm",
        &format!("{by_name}/busybox"),
        "echo",
        "via DNS",
    ]);
    assert_eq!(out, "via DNS\n");
    assert!(
        dns.queries
            .lock()
            .unwrap()
            .iter()
            .any(|q| q == "registry.vic.test 1"),
        "the appliance asked the VCH's DNS server: {:?}",
        dns.queries.lock().unwrap()
    );
    // A name it does not know fails in dockerd's words, naming the server asked.
    let o = client.run(&["pull", &format!("nosuch.vic.test:{port}/busybox")]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "lookup nosuch.vic.test on {dns_ip}:53: no such host"
        )),
        "{err}"
    );
    delete_vch(&name);
}
