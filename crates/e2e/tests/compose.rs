//! Docker Compose (Debian's docker-compose) against a VCH: a two-service application, a web
//! server and a client that reaches it by its service name on the project's network, brought
//! up and down as Compose users do.

mod common;
mod machine;

use std::process::Command;
use std::time::Duration;

use common::*;

/// `docker-compose ARGS` in `dir` against the VCH at `host`.
fn compose(dir: &std::path::Path, host: &str, args: &[&str]) -> std::process::Output {
    let mut c = Command::new("docker-compose");
    c.current_dir(dir)
        .env("DOCKER_HOST", host)
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .env("COMPOSE_HTTP_TIMEOUT", "120")
        .args(args);
    run_limited(
        c,
        None,
        Duration::from_secs(300),
        &format!("docker-compose {args:?}"),
    )
}

#[test]
#[ignore = "needs QEMU, the test registry, the docker CLI and docker-compose: make test runs it"]
fn a_web_server_and_a_client_that_finds_it_by_name_come_up_and_go() {
    let vch = OwnVch::create("compose", &[]);
    let (client, image) = (&vch.client, vch.image.as_str());
    let dir = std::env::temp_dir().join(format!("vic-compose-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let project = "shop";
    std::fs::write(
        dir.join("docker-compose.yml"),
        format!(
            r#"version: "3.8"
services:
  web:
    image: {image}
    command: ["httpd", "-f", "-p", "80", "-h", "/etc"]
  client:
    image: {image}
    depends_on: [web]
    command: ["sh", "-c", "for i in $$(seq 1 60); do wget -q -O - http://web/vic-release && exit 0; sleep 1; done; exit 1"]
"#
        ),
    )
    .unwrap();

    let up = compose(
        &dir,
        &vch.client.host,
        &["-p", project, "up", "--exit-code-from", "client"],
    );
    let text = format!("{}{}", stdout(&up), stderr(&up));
    assert!(up.status.success(), "docker-compose up: {text}");
    assert!(
        text.contains("vic test image"),
        "the client read the web page: {text}"
    );

    // Compose's network and containers, as docker shows them.
    let nets = client.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(nets.lines().any(|n| n == "shop_default"), "{nets}");
    let ps = client.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(
        ps.contains("shop_web_1") && ps.contains("shop_client_1"),
        "{ps}"
    );

    let down = compose(&dir, &vch.client.host, &["-p", project, "down"]);
    assert!(
        down.status.success(),
        "docker-compose down: {}",
        stderr(&down)
    );
    let ps = client.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(ps.trim().is_empty(), "down removes the containers: {ps}");
    let nets = client.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!nets.lines().any(|n| n == "shop_default"), "{nets}");
    let _ = std::fs::remove_dir_all(&dir);
    vch.delete();
}

/// The application `make conformance` runs on vic and on dockerd (`bench::compose`): a web
/// server with a published port and a named volume and a worker that reaches it by its
/// service name; up, ps, logs, exec, port, scale, down -v.
#[test]
#[ignore = "needs QEMU, the test registry, the docker CLI and docker-compose: make test runs it"]
fn the_conformance_application_lives_its_whole_life() {
    let dir = std::env::temp_dir().join(format!("vic-compose-life-{}", std::process::id()));
    // Named volumes need a volume store, as on VIC.
    let store = format!("{}:default", dir.join("volumes").display());
    let vch = OwnVch::create("compose-life", &["--volume-store", &store]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let steps = bench::compose::run(&dir, &vch.client.host, &vch.image, port);
    let failed: Vec<String> = (steps.iter())
        .filter_map(|s| s.result.as_ref().err().map(|e| format!("{}: {e}", s.name)))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(steps.len(), 7);
    let volumes = vch.client.ok(&["volume", "ls", "-q"]);
    assert!(!volumes.contains("conform_site"), "down -v: {volumes}");
    let _ = std::fs::remove_dir_all(&dir);
    vch.delete();
}
