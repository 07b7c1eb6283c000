//! vic-machine's own behaviour: names, create and delete.

mod common;

use common::*;

#[test]
#[ignore = "needs the built binaries: make test runs it"]
fn long_names_are_refused_and_nothing_is_made() {
    let name = "a-name-that-is-longer-than-31-chars";
    let o = vic_machine()
        .args(["create", "--target", "local", "--name", name, "--no-tls"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("Display name {name} exceeds the permitted 31 characters limit. Please use a shorter -name parameter")),
        "{err}"
    );
    let root = std::path::PathBuf::from(std::env::var("VIC_STATE_ROOT").unwrap());
    assert!(!root.join("vch").join(name).exists());
}

#[test]
#[ignore = "needs QEMU and the built binaries: make test runs it"]
fn create_then_delete_removes_the_vch_and_its_vms() {
    let name = format!("del-{}", std::process::id());
    let host = create_vch(&name, &std::env::temp_dir().join(&name));

    let docker = std::env::var("VIC_DOCKER").unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(&docker)
            .env("DOCKER_HOST", &host)
            .args(args)
            .output()
            .unwrap()
    };
    let image = format!("{}/busybox", registry());
    assert!(run(&["pull", &image]).status.success());
    let o = run(&["run", "-d", &image, "sleep", "300"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(vm_processes(&id).len(), 1);

    let ls = vic_machine()
        .args(["ls", "--target", "local"])
        .output()
        .unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout).to_string();
    assert!(
        ls.lines()
            .any(|l| l.starts_with(&name) && l.contains("running")),
        "{ls}"
    );

    // A running container blocks delete unless --force.
    let o = vic_machine()
        .args(["delete", "--target", "local", "--name", &name])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("running container"));

    let o = vic_machine()
        .args(["delete", "--target", "local", "--name", &name, "--force"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(vm_processes(&id).is_empty(), "container VM survived delete");
    let root = std::path::PathBuf::from(std::env::var("VIC_STATE_ROOT").unwrap());
    assert!(!root.join("vch").join(&name).exists());
    assert!(
        !run(&["info"]).status.success(),
        "the Docker API still answers after delete"
    );
}
