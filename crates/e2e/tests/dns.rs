//! DNS for containers: the VCH's `--dns-server` list, or a container's own `--dns`, becomes the
//! container's `/etc/resolv.conf`, as Docker writes it.

mod common;

use common::*;

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn containers_resolve_with_the_vchs_dns_servers_or_their_own() {
    let name = format!("dns-{}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    let host = create_vch_with(
        &name,
        &dir,
        &[
            "--insecure-registry",
            &registry(),
            "--dns-server",
            "10.0.0.53",
            "--dns-server",
            "10.0.0.54",
        ],
    );
    let client = Client::new(&host, dir.join("docker-config"));
    let image = format!("{}/busybox", registry());
    client.ok(&["pull", &image]);

    let vchs = client.ok(&["run", "--rm", &image, "cat", "/etc/resolv.conf"]);
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
        &image,
        "cat",
        "/etc/resolv.conf",
    ]);
    assert_eq!(
        own,
        "nameserver 192.0.2.1\nsearch corp.example\noptions ndots:2\n"
    );
    // Kept with the container, as docker inspect shows it.
    let id = client
        .ok(&["create", "--dns", "192.0.2.9", &image, "true"])
        .trim()
        .to_string();
    let dns = client.ok(&["inspect", "--format", "{{json .HostConfig.Dns}}", &id]);
    assert_eq!(dns.trim(), r#"["192.0.2.9"]"#);
    delete_vch(&name);
}
