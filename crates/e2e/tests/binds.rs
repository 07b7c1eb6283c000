//! Bind mounts through the real docker CLI: host files and directories under the VCH's bind
//! paths shared into container VMs over virtio-fs, read and written as the container's user,
//! read-only enforced on the host, nothing outside the bind paths reachable.

mod common;
mod machine;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::crash::{inspect_with, vch_dir};
use common::*;

fn fails_with(client: &Client, args: &[&str], want: &str) {
    let o = client.run(args);
    assert!(
        !o.status.success(),
        "docker {args:?} succeeded: {}",
        stdout(&o)
    );
    assert!(stderr(&o).contains(want), "docker {args:?}: {}", stderr(&o));
}

/// virtiofsd processes working in the VCH's directory.
fn daemons_of(vch: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        if comm.trim() == "virtiofsd" && cwd.starts_with(vch) {
            out.push(pid);
        }
    }
    out
}

#[test]
#[ignore = "needs QEMU, virtiofsd, the test registry and the docker CLI: make test runs it"]
fn bind_mounts_share_host_paths_under_the_bind_paths_only() {
    let root = std::env::temp_dir().join(format!("vic-binds-{}", std::process::id()));
    let (share, ro, outside) = (root.join("share"), root.join("ro"), root.join("outside"));
    for d in [&share.join("site"), &ro, &outside] {
        std::fs::create_dir_all(d).unwrap();
    }
    let secret = share.join("site/index.html");
    std::fs::write(&secret, "from the host\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(ro.join("config"), "read only\n").unwrap();
    std::fs::write(outside.join("secret"), "never\n").unwrap();
    std::os::unix::fs::symlink(&outside, share.join("escape")).unwrap();
    let bind = share.display().to_string();
    let bind_ro = format!("{}:ro", ro.display());
    let vch = OwnVch::create("binds", &["--bind-path", &bind, "--bind-path", &bind_ro]);
    let (client, image) = (&vch.client, vch.image.as_str());
    let site = format!("{}:/www", share.join("site").display());

    // Read and written in place, as the container's user: a root-only host file is readable,
    // what root writes is root's on the host, what uid 1000 writes is 1000's.
    let out = client.ok(&[
        "run",
        "--rm",
        "-v",
        &site,
        image,
        "sh",
        "-c",
        "cat /www/index.html; echo guest > /www/by-root",
    ]);
    assert_eq!(out.trim(), "from the host");
    let made = share.join("site/by-root");
    assert_eq!(std::fs::read_to_string(&made).unwrap(), "guest\n");
    assert_eq!(std::fs::metadata(&made).unwrap().uid(), 0);
    let c = client.run(&["run", "--rm", "-v", &site, image, "chmod", "1777", "/www"]);
    assert!(c.status.success(), "{}", stderr(&c));
    client.ok(&[
        "run",
        "--rm",
        "-v",
        &site,
        "-u",
        "1000",
        image,
        "sh",
        "-c",
        "echo x > /www/by-1000",
    ]);
    assert_eq!(
        std::fs::metadata(share.join("site/by-1000")).unwrap().uid(),
        1000
    );

    // One file; read-only by `:ro`, and by the bind path's `:ro`, whatever a privileged
    // container remounts.
    let file = format!("{}:/etc/app.conf:ro", ro.join("config").display());
    let script = "cat /etc/app.conf; mount -o remount,rw /etc/app.conf; echo changed > /etc/app.conf; echo written=$?";
    let o = client.run(&[
        "run",
        "--rm",
        "--privileged",
        "-v",
        &file,
        image,
        "sh",
        "-c",
        script,
    ]);
    assert!(stdout(&o).starts_with("read only"), "{}", stdout(&o));
    let dir_ro = format!("{}:/conf", ro.display());
    client.run(&[
        "run",
        "--rm",
        "--privileged",
        "-v",
        &dir_ro,
        image,
        "sh",
        "-c",
        "mount -o remount,rw /conf; echo changed > /conf/config",
    ]);
    assert_eq!(
        std::fs::read_to_string(ro.join("config")).unwrap(),
        "read only\n"
    );
    let inspect_ro = client.ok(&["create", "-v", &dir_ro, image, "true"]);
    let mounts = inspect_with(client, inspect_ro.trim())["Mounts"].clone();
    assert_eq!(mounts[0]["Type"], "bind");
    assert_eq!(mounts[0]["RW"], false, "the bind path's :ro shows");
    client.ok(&["rm", inspect_ro.trim()]);

    // `-v` makes a missing directory (0755, as dockerd); `--mount` refuses one, in Docker's words.
    let new = share.join("new/dir");
    client.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/n", new.display()),
        image,
        "touch",
        "/n/f",
    ]);
    assert!(new.join("f").is_file());
    assert_eq!(
        std::fs::metadata(&new).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let missing = format!("type=bind,src={},dst=/m", share.join("missing").display());
    fails_with(
        client,
        &["run", "--rm", "--mount", &missing, image, "true"],
        "bind source path does not exist",
    );

    // Nothing outside the bind paths: not by name, not through `..`, not through a symlink.
    for escape in [
        "/etc".to_string(),
        format!("{}/../outside", share.display()),
        share.join("escape").display().to_string(),
    ] {
        let arg = format!("{escape}:/x");
        fails_with(
            client,
            &["run", "--rm", "-v", &arg, image, "true"],
            "is not under a host path this VCH shares",
        );
    }

    // Two containers with bind mounts at once: each share's daemon keeps its PID file in a
    // directory of its own, none on the host's /run/virtiofsd.
    let started = std::time::SystemTime::now();
    let a = client.ok(&["run", "-d", "-v", &site, image, "sleep", "600"]);
    let b = client.ok(&["run", "-d", "-v", &site, image, "sleep", "600"]);
    for c in [a.trim(), b.trim()] {
        let seen = client.ok(&["exec", c, "cat", "/www/index.html"]);
        assert_eq!(seen.trim(), "from the host");
    }
    client.ok(&["rm", "-f", a.trim(), b.trim()]);
    let host_pid_files: Vec<_> = std::fs::read_dir("/run/virtiofsd")
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    for f in host_pid_files {
        let modified = f.metadata().unwrap().modified().unwrap();
        assert!(
            modified < started,
            "{} written on the host",
            f.path().display()
        );
    }

    // The daemons end with their containers; vic-machine inspect names the bind paths.
    let dir = vch_dir(&vch.name);
    let pids = daemons_of(&dir);
    assert!(pids.is_empty(), "virtiofsd left running: {pids:?}");
    let inspect = vic_machine()
        .args(["inspect", "--target", "local", "--name", &vch.name])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout).to_string()
        + &String::from_utf8_lossy(&inspect.stderr);
    assert!(
        text.contains(&format!("Bind paths: {bind}, {bind_ro}")),
        "{text}"
    );
    vch.delete();
    let _ = std::fs::remove_dir_all(&root);
}
