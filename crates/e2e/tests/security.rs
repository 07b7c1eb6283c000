//! What a VCH keeps on the host is root's alone: its state root, the VCH's directory and
//! everything under them (image roots with set-id files, container disks, logs, the state
//! database with containers' environments) cannot be reached by another user.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// A VCH under a state root of this test's own, in a directory every user can traverse, so
/// that what stops another user is the state's own modes and nothing above them.
struct PrivateVch {
    base: PathBuf,
    state_root: PathBuf,
    name: String,
}

impl PrivateVch {
    fn machine(&self) -> Command {
        let mut c = Command::new(build_dir().join("bin/vic-machine"));
        c.env("VIC_STATE_ROOT", &self.state_root);
        c
    }
}

impl Drop for PrivateVch {
    fn drop(&mut self) {
        let _ = self
            .machine()
            .args([
                "delete", "--target", "local", "--name", &self.name, "--force",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// Runs `args` as user nobody (uid and gid 65534, no supplementary groups).
fn as_nobody(args: &[&str]) -> std::process::Output {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(args);
    run_limited(
        c,
        None,
        Duration::from_secs(60),
        &format!("{args:?} as nobody"),
    )
}

/// Every path under `root` that a user other than its owner could reach: one whose every
/// directory from `root` down lets group or others in.
fn reachable_by_others(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let m = std::fs::symlink_metadata(&dir).expect("stat");
        if m.mode() & 0o077 == 0 && m.uid() == 0 {
            continue; // nobody but root passes here
        }
        out.push(dir.clone());
        if m.is_dir() {
            for e in std::fs::read_dir(&dir).expect("read_dir") {
                stack.push(e.expect("entry").path());
            }
        }
    }
    out
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn the_state_of_a_vch_is_readable_by_root_alone() {
    let base = std::env::temp_dir().join(format!("vic-private-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("base dir");
    std::fs::set_permissions(&base, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod base");
    let vch = PrivateVch {
        state_root: base.join("state"),
        name: format!("private-{}", std::process::id()),
        base: base.clone(),
    };
    let work = base.join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let out = vch
        .machine()
        .current_dir(&work)
        .args([
            "create", "--target", "local", "--name", &vch.name, "--no-tls",
        ])
        .args(["--insecure-registry", &registry()])
        .args([
            "--volume-store",
            &format!("{}:default", base.join("vols").display()),
        ])
        .output()
        .expect("vic-machine create");
    assert!(out.status.success(), "create: {}", stderr(&out));
    let host = stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("DOCKER_HOST="))
        .expect("DOCKER_HOST=")
        .to_string();
    let client = Client::new(&host, work.join("docker-config"));
    let image = format!("{}/busybox", registry());
    client.ok(&["pull", &image]);
    // A container with a secret in its environment, its log, its disk and its image root.
    client.ok(&[
        "run",
        "--name",
        "c1",
        "-e",
        "SECRET=s3cr3t",
        &image,
        "echo",
        "hi",
    ]);

    for dir in [
        vch.state_root.clone(),
        vch.state_root.join("vch"),
        vch.state_root.join("vch").join(&vch.name),
        base.join("vols"),
    ] {
        let mode = std::fs::metadata(&dir).expect("stat").mode() & 0o777;
        assert_eq!(mode, 0o700, "{} has mode {mode:o}", dir.display());
    }
    assert_eq!(
        reachable_by_others(&vch.state_root),
        Vec::<PathBuf>::new(),
        "paths another user can reach"
    );
    // The same seen by another user: the test's directory is open to it, the state is not.
    let seen = as_nobody(&["find", base.to_str().unwrap(), "-maxdepth", "1"]);
    assert!(
        stdout(&seen).contains(vch.state_root.to_str().unwrap()),
        "{}",
        stdout(&seen)
    );
    let state = as_nobody(&["find", vch.state_root.to_str().unwrap()]);
    assert_eq!(
        stdout(&state).trim(),
        vch.state_root.to_str().unwrap(),
        "nobody lists nothing below the state root: {}",
        stderr(&state)
    );
    assert!(
        stderr(&state).contains("Permission denied"),
        "{}",
        stderr(&state)
    );
    let grep = as_nobody(&["grep", "-rl", "s3cr3t", vch.state_root.to_str().unwrap()]);
    assert!(
        !grep.status.success() && stdout(&grep).is_empty(),
        "{}",
        stdout(&grep)
    );
    // Root still finds the secret there: the search above could have found it.
    let mut c = Command::new("grep");
    c.args(["-rl", "s3cr3t", vch.state_root.to_str().unwrap()]);
    let root_grep = run_limited(c, None, Duration::from_secs(60), "grep as root");
    assert!(
        !stdout(&root_grep).is_empty(),
        "the environment is kept in the state"
    );
}
