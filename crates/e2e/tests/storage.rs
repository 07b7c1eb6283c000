//! The VCH's storage: `--storage-quota` refuses pulls and creates in VIC's words and leaves
//! nothing half made, `docker info` shows the quota, what is used and the volume stores, and
//! the state (containers and images in one database) stays one appliance's.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const GIB: u64 = 1 << 30;

fn vch_dir(name: &str) -> PathBuf {
    PathBuf::from(std::env::var("VIC_STATE_ROOT").expect("VIC_STATE_ROOT"))
        .join("vch")
        .join(name)
}

/// `docker info`'s SystemStatus pairs.
fn system_status(client: &Client) -> Vec<(String, String)> {
    let out = client.ok(&["info", "--format", "{{json .SystemStatus}}"]);
    let pairs: Vec<(String, String)> = serde_json::from_str(out.trim()).expect("SystemStatus");
    pairs
}

fn status_value(status: &[(String, String)], key: &str) -> Option<String> {
    status
        .iter()
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.clone())
}

/// Bytes of a size as Docker's units write it (`3.281MiB`).
fn parse_size(s: &str) -> u64 {
    let split = s.find(|c: char| c.is_ascii_alphabetic()).expect("a unit");
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().expect("a number");
    let scale = match unit {
        "B" => 1u64,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => panic!("unit {other}"),
    };
    (n * scale as f64) as u64
}

/// Allocates `bytes` of real blocks at `path` (what a volume's data would take).
fn fill(path: &Path, bytes: u64) {
    let status = std::process::Command::new("fallocate")
        .args(["-l", &bytes.to_string()])
        .arg(path)
        .status()
        .expect("running fallocate");
    assert!(status.success(), "fallocate {}", path.display());
}

/// Every path under the image store, so that a refused pull can be shown to change nothing.
fn store_files(name: &str) -> Vec<String> {
    let root = vch_dir(name).join("images");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("image store").flatten() {
            let p = e.path();
            out.push(p.strip_prefix(&root).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fn refused(o: &std::process::Output, what: &str) -> String {
    assert!(!o.status.success(), "{what} succeeded: {}", stdout(o));
    let err = stderr(o);
    assert!(
        err.contains("Storage quota exceeds. Storage quota: 1GB, image storage usage: "),
        "{what}: {err}"
    );
    err
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn the_storage_quota_refuses_pulls_and_creates_in_vics_words() {
    let name = format!("quota-{}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    let (vols, backup) = (dir.join("vols"), dir.join("backup"));
    let host = create_vch_with(
        &name,
        &dir,
        &[
            "--insecure-registry",
            &registry(),
            "--storage-quota",
            "1",
            "--volume-store",
            &format!("{}:default", vols.display()),
            "--volume-store",
            &format!("{}:backup", backup.display()),
        ],
    );
    let client = Client::new(&host, dir.join("docker-config"));
    let image = format!("{}/busybox", registry());

    // What `docker info` prints: the volume stores, the quota, what is used.
    let info = client.ok(&["info"]);
    for line in [
        " VolumeStores: default backup\n",
        "  VCH storage limit: 1GiB\n",
        "  VCH storage usage: ",
        "  VCH containers storage usage: ",
    ] {
        assert!(info.contains(line), "no {line:?} in:\n{info}");
    }
    let status = system_status(&client);
    let used = parse_size(&status_value(&status, "VCH storage usage").unwrap());
    assert!(used < 64 << 20, "a new VCH uses little: {status:?}");

    // A pull whose blobs would not fit is refused before it downloads anything.
    let filler = vols.join("filler");
    fill(&filler, GIB - used - (256 << 10));
    let before = store_files(&name);
    let err = refused(&client.run(&["pull", &image]), "a pull that does not fit");
    assert!(
        err.contains("image storage usage: 0.000GB, container storage usage: 0.0")
            && err.contains(", volume storage usage: 0.99")
            && err.contains(", storage reservation: 0.00"),
        "{err}"
    );
    assert_eq!(store_files(&name), before, "the image store is unchanged");
    assert_eq!(client.ok(&["images", "-q"]), "");

    // With room, the same pull goes through and counts as image storage.
    std::fs::remove_file(&filler).unwrap();
    client.ok(&["pull", &image]);
    let status = system_status(&client);
    let images = parse_size(&status_value(&status, "VCH images storage usage").unwrap());
    assert!(images > 1 << 20, "busybox takes a few MiB: {status:?}");

    // Over the quota: every pull (even of an image held already) and every create is refused.
    fill(&filler, GIB);
    let status = system_status(&client);
    assert_eq!(
        status_value(&status, "VCH volumes storage usage").as_deref(),
        Some("1GiB")
    );
    let before = store_files(&name);
    let tagged = format!("{}/busybox:1.0", registry());
    let err = refused(&client.run(&["pull", &tagged]), "a pull when over");
    assert!(
        err.contains(", volume storage usage: 1.000GB") && !err.contains("reservation"),
        "{err}"
    );
    assert_eq!(store_files(&name), before, "the image store is unchanged");
    assert!(
        !client.run(&["image", "inspect", &tagged]).status.success(),
        "not tagged"
    );
    refused(
        &client.run(&["create", &image, "true"]),
        "a create when over",
    );
    refused(
        &client.run(&["run", "--rm", &image, "true"]),
        "a run when over",
    );
    assert_eq!(client.ok(&["ps", "-a", "-q"]), "", "no container was made");

    // Space freed: creates work again.
    std::fs::remove_file(&filler).unwrap();
    let id = client.ok(&["create", &image, "true"]);
    client.ok(&["rm", id.trim()]);
    delete_vch(&name);
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn a_vch_without_volume_stores_or_quota_says_so() {
    let info = ok(&["info"]);
    assert!(info.contains(" VolumeStores: \n"), "{info}");
    assert!(!info.contains("VCH storage limit"), "{info}");
    assert!(info.contains("  VCH storage usage: "), "{info}");
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn a_second_appliance_on_the_same_state_is_refused() {
    let name = format!("second-{}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    let host = create_vch_with(&name, &dir, &["--insecure-registry", &registry()]);
    let client = Client::new(&host, dir.join("docker-config"));
    client.ok(&["pull", &format!("{}/busybox", registry())]);
    let pid = std::fs::read_to_string(vch_dir(&name).join("appliance.pid"))
        .expect("appliance.pid")
        .trim()
        .to_string();
    // The running appliance's own command line, started a second time.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("its command line");
    let argv: Vec<String> = String::from_utf8_lossy(&cmdline)
        .split('\0')
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    let mut second = std::process::Command::new(&argv[0]);
    second.args(&argv[1..]).env("VIC_LOG", "warn");
    let o = run_limited(second, None, Duration::from_secs(30), "a second appliance");
    assert!(!o.status.success(), "a second appliance started");
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "the state of this VCH is in use by another appliance (pid {pid})"
        )),
        "{err}"
    );
    // The first one still serves, its images intact.
    assert_eq!(client.ok(&["images", "-q"]).lines().count(), 1);
    delete_vch(&name);
}
