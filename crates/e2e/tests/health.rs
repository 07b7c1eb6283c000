//! Health checks through the real docker CLI: `--health-*` and the image's `HEALTHCHECK`,
//! starting → unhealthy → healthy as the probe's result changes, timeouts, the start
//! period, `--no-healthcheck`, `ps --filter health=`, `health_status` events, and the
//! monitor going on after the appliance restarts.

mod common;

use std::time::Duration;

use common::crash::{crash, inspect_with};
use common::*;

fn health(client: &Client, ctr: &str) -> serde_json::Value {
    inspect_with(client, ctr)["State"]["Health"].clone()
}

fn becomes(client: &Client, ctr: &str, status: &str) -> serde_json::Value {
    eventually(
        &format!("{ctr} to be {status}"),
        Duration::from_secs(60),
        || {
            let h = health(client, ctr);
            (h["Status"] == status).then_some(h)
        },
    )
}

/// A docker-archive of one image, `checked:latest`: the root filesystem `layer` and a config
/// whose `HEALTHCHECK` is `CMD true` every second.
fn image_with_check(layer: &std::path::Path, out: &std::path::Path) {
    let sum = std::process::Command::new("sha256sum")
        .arg(layer)
        .output()
        .unwrap();
    let digest = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Cmd": ["sleep", "600"],
            "Healthcheck": { "Test": ["CMD", "true"], "Interval": 1_000_000_000u64 },
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{digest}")] },
    });
    let manifest = serde_json::json!([{
        "Config": "config.json",
        "RepoTags": ["checked:latest"],
        "Layers": ["layer.tar"],
    }]);
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    for (name, data) in [
        ("config.json", config.to_string().into_bytes()),
        ("manifest.json", manifest.to_string().into_bytes()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.append_path_with_name(layer, "layer.tar").unwrap();
    b.finish().unwrap();
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn health_checks_run_as_dockerd_runs_them() {
    let vch = OwnVch::create("health", &[]);
    let (client, image) = (&vch.client, vch.image.as_str());
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    client.ok(&[
        "run",
        "-d",
        "--name",
        "h",
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        "--health-timeout",
        "5s",
        image,
        "sleep",
        "600",
    ]);
    let ps = client.ok(&["ps", "--format", "{{.Status}}", "--filter", "name=h"]);
    assert!(ps.contains("(health: starting)"), "{ps}");
    let h = becomes(client, "h", "unhealthy");
    assert!(h["FailingStreak"].as_u64().unwrap() >= 2, "{h}");
    assert_eq!(h["Log"][0]["ExitCode"], 1, "{h}");
    let listed = client.ok(&["ps", "-q", "--filter", "health=unhealthy"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    client.ok(&["exec", "h", "touch", "/tmp/ok"]);
    let h = becomes(client, "h", "healthy");
    assert_eq!(h["FailingStreak"], 0);
    let ps = client.ok(&[
        "ps",
        "--format",
        "{{.Names}} {{.Status}}",
        "--filter",
        "health=healthy",
    ]);
    assert!(ps.starts_with("h Up") && ps.contains("(healthy)"), "{ps}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let now = now.to_string();
    let events = client.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &now,
        "--filter",
        "container=h",
    ]);
    assert!(
        events.contains("health_status: unhealthy") && events.contains("health_status: healthy"),
        "{events}"
    );

    // A probe that outlives its timeout is killed and fails; in the start period failures
    // do not count.
    client.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 30",
        "--health-interval",
        "1s",
        "--health-timeout",
        "1s",
        "--health-retries",
        "1",
        image,
        "sleep",
        "600",
    ]);
    let h = becomes(client, "slow", "unhealthy");
    assert_eq!(
        h["Log"][0]["Output"], "Health check exceeded timeout (1s)",
        "{h}"
    );
    assert_eq!(h["Log"][0]["ExitCode"], -1);
    client.ok(&[
        "run",
        "-d",
        "--name",
        "young",
        "--health-cmd",
        "false",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        "--health-start-period",
        "60s",
        "--health-start-interval",
        "1s",
        image,
        "sleep",
        "600",
    ]);
    let h = eventually("two probes", Duration::from_secs(30), || {
        let h = health(client, "young");
        (h["Log"].as_array().map_or(0, |l| l.len()) >= 2).then_some(h)
    });
    assert_eq!(
        (h["Status"].as_str(), h["FailingStreak"].as_u64()),
        (Some("starting"), Some(0))
    );

    // The image's HEALTHCHECK, and --no-healthcheck.
    let w = std::env::temp_dir().join(format!("vic-health-{}", std::process::id()));
    std::fs::create_dir_all(&w).unwrap();
    let tar = w.join("fs.tar");
    client.ok(&["export", "-o", tar.to_str().unwrap(), "h"]);
    let archive = w.join("checked.tar");
    image_with_check(&tar, &archive);
    client.ok(&["load", "-i", archive.to_str().unwrap()]);
    client.ok(&["run", "-d", "--name", "imaged", "checked"]);
    becomes(client, "imaged", "healthy");
    client.ok(&["run", "-d", "--name", "off", "--no-healthcheck", "checked"]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(health(client, "off").is_null(), "no check runs");
    let none = client.ok(&["ps", "--format", "{{.Names}}", "--filter", "health=none"]);
    assert_eq!(none.trim(), "off");

    // The monitor goes on under a restarted appliance.
    crash(&vch.name, client);
    client.ok(&["exec", "h", "rm", "/tmp/ok"]);
    becomes(client, "h", "unhealthy");
    client.ok(&["rm", "-f", "h", "slow", "young", "imaged", "off"]);
    let _ = std::fs::remove_dir_all(&w);
    vch.delete();
}
