//! SIGKILL of the appliance in the middle of volume operations (create, rm, a run that makes
//! an anonymous volume, rm -v): afterwards every volume is whole or absent, none is left
//! without the container it was made for, nothing half made stays on the store, and the
//! data of a volume no operation touched is intact.

mod common;
mod machine;

use std::path::Path;
use std::time::Duration;

use common::crash::{check_invariants, crash};
use common::*;

/// What must hold for the volumes after any crash.
fn check_volumes(client: &Client, store: &Path, when: &str) {
    let names: Vec<String> = client
        .ok(&["volume", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect();
    let root = store.join("volumes");
    for e in std::fs::read_dir(&root).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        assert!(!n.starts_with('.'), "{when}: {n} is left on the store");
        assert!(
            names.contains(&n),
            "{when}: {n} is on the store but not listed ({names:?})"
        );
    }
    let mut mounted = Vec::new();
    for id in client.ok(&["ps", "-aq", "--no-trunc"]).lines() {
        let m = client.ok(&["inspect", "-f", "{{range .Mounts}}{{.Name}} {{end}}", id]);
        mounted.extend(m.split_whitespace().map(str::to_string));
    }
    for n in &names {
        assert!(
            root.join(n).join("disk.img").is_file(),
            "{when}: {n} has its disk"
        );
        if n.len() == 64 {
            assert!(
                mounted.contains(n),
                "{when}: anonymous volume {n} has no container"
            );
        }
    }
    for n in &mounted {
        assert!(
            names.contains(n),
            "{when}: a container mounts {n}, which is gone"
        );
    }
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn crashes_during_volume_operations_leave_volumes_whole_or_absent() {
    let store = std::env::temp_dir().join(format!("vic-volcrash-{}", std::process::id()));
    let vs = format!("{}:default", store.display());
    let vch = OwnVch::create("volcrash", &["--volume-store", &vs]);
    let (name, client, image) = (vch.name.clone(), &vch.client, vch.image.clone());
    client.ok(&[
        "run",
        "--rm",
        "-v",
        "precious:/p",
        &image,
        "sh",
        "-c",
        "echo intact > /p/data",
    ]);

    for delay_ms in [30u64, 300] {
        for op in ["volume create", "volume rm", "run -v", "rm -v"] {
            let made = format!("made-{delay_ms}");
            let doomed = format!("doomed-{delay_ms}");
            let victim = match op {
                "volume rm" => {
                    client.ok(&["volume", "create", &doomed]);
                    String::new()
                }
                "rm -v" => client
                    .ok(&["create", "-v", "/scratch", &image, "true"])
                    .trim()
                    .to_string(),
                _ => String::new(),
            };
            let args: Vec<&str> = match op {
                "volume create" => vec!["volume", "create", "--opt", "Capacity=2G", &made],
                "volume rm" => vec!["volume", "rm", &doomed],
                "run -v" => vec![
                    "run", "-d", "-v", "/anon", "-v", &made, &image, "sleep", "300",
                ],
                _ => vec!["rm", "-v", &victim],
            };
            let made_target;
            let args: Vec<&str> = if op == "run -v" {
                made_target = format!("{made}:/made");
                args.into_iter()
                    .map(|a| if a == made { made_target.as_str() } else { a })
                    .collect()
            } else {
                args
            };
            let mut child = docker_at(&client.host)
                .env("DOCKER_CONFIG", &client.config)
                .args(&args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("docker");
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
            check_volumes(client, &store, &when);
            // A volume that made it is usable.
            if client.run(&["volume", "inspect", &made]).status.success() {
                client.ok(&[
                    "run",
                    "--rm",
                    "-v",
                    &format!("{made}:/m"),
                    &image,
                    "touch",
                    "/m/ok",
                ]);
            }
        }
        for id in client.ok(&["ps", "-aq"]).lines() {
            client.ok(&["rm", "-fv", id]);
        }
        for v in [format!("made-{delay_ms}"), format!("doomed-{delay_ms}")] {
            let _ = client.run(&["volume", "rm", &v]);
        }
        check_volumes(client, &store, "after the round");
    }
    let data = client.ok(&["run", "--rm", "-v", "precious:/p", &image, "cat", "/p/data"]);
    assert_eq!(data.trim(), "intact");
    client.ok(&["volume", "rm", "precious"]);
    vch.delete();
    let _ = std::fs::remove_dir_all(&store);
}
