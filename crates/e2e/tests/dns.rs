//! DNS for containers: the VCH's `--dns-server` list, or a container's own `--dns`, becomes the
//! container's `/etc/resolv.conf`, as Docker writes it.

mod common;

use common::*;

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn containers_resolve_with_the_vchs_dns_servers_or_their_own() {
    let vch = OwnVch::create(
        "dns",
        &["--dns-server", "10.0.0.53", "--dns-server", "10.0.0.54"],
    );
    let (client, image) = (&vch.client, vch.image.as_str());

    let vchs = client.ok(&["run", "--rm", image, "cat", "/etc/resolv.conf"]);
    assert_eq!(vchs, "nameserver 10.0.0.53\nnameserver 10.0.0.54\n");

    let own = client.ok(&[
        "run",
        "--rm",
        "--dns",
        "192.0.2.1",
        "--dns-search",
        "corp.example",
        "--dns-option",
        "ndots:2",
        image,
        "cat",
        "/etc/resolv.conf",
    ]);
    assert_eq!(
        own,
        "nameserver 192.0.2.1\nsearch corp.example\noptions ndots:2\n"
    );
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
