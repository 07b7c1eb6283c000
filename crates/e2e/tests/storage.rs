//! The VCH's storage: the state (containers and images in one database) stays one
//! appliance's.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

fn vch_dir(name: &str) -> PathBuf {
    PathBuf::from(std::env::var("VIC_STATE_ROOT").expect("VIC_STATE_ROOT"))
        .join("vch")
        .join(name)
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
