//! `docker cp` through the real docker CLI: files, directories, symbolic links, modes and
//! owners both ways; running containers through their guest, stopped ones through a VM
//! booted for their files; the same tar streams dockerd makes; large copies beside a
//! container's output; paths and archives that try to leave the container.

mod common;

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bench::dockerd::{Dockerd, DEFAULT_DOCKERD};
use common::*;

fn work_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vic-cp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fails_with(client: &Client, args: &[&str], want: &str) {
    let o = client.run(args);
    assert!(!o.status.success(), "docker {args:?} succeeded");
    assert!(stderr(&o).contains(want), "docker {args:?}: {}", stderr(&o));
}

/// `docker ARGS` with the file `input` on stdin.
fn with_stdin(docker: Command, args: &[&str], input: &Path) -> Output {
    let mut c = docker;
    c.args(args)
        .stdin(std::fs::File::open(input).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.output().unwrap()
}

fn client_cmd(client: &Client) -> Command {
    let mut c = docker_at(&client.host);
    c.env("DOCKER_CONFIG", &client.config);
    c
}

/// A tar archive of one entry named exactly `name` (a client can send any).
fn raw_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

/// What a tar stream holds, as `tar tv` would list it without times: kind, mode, owner,
/// size, name and link target of each entry.
fn listing(tar_bytes: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(tar_bytes);
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.display().to_string())
                .unwrap_or_default();
            format!(
                "{:?} {:o} {}:{} {} {} {link}",
                h.entry_type(),
                h.mode().unwrap() & 0o7777,
                h.uid().unwrap(),
                h.gid().unwrap(),
                if h.entry_type().is_dir() {
                    0
                } else {
                    h.size().unwrap()
                },
                String::from_utf8_lossy(&e.path_bytes()).trim_end_matches('/'),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn cp_copies_both_ways_in_running_and_stopped_containers() {
    let w = work_dir("both");
    let store = format!("{}:default", w.join("store").display());
    let vch = OwnVch::create("cp", &["--volume-store", &store]);
    let (client, image) = (&vch.client, vch.image.as_str());
    let src = w.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("file.txt"), "hello\n").unwrap();
    std::fs::set_permissions(src.join("file.txt"), PermissionsExt::from_mode(0o640)).unwrap();
    std::fs::write(src.join("sub/deep.txt"), "deep\n").unwrap();
    std::os::unix::fs::symlink("file.txt", src.join("link")).unwrap();
    std::os::unix::fs::chown(src.join("sub/deep.txt"), Some(1234), Some(4321)).unwrap();

    let id = client.ok(&[
        "run",
        "-d",
        "--name",
        "cp1",
        "-v",
        "cpvol:/data",
        image,
        "sleep",
        "600",
    ]);
    let id = id.trim();
    let cp_in = format!("{}", src.display());
    client.ok(&["cp", &cp_in, "cp1:/tmp/"]);
    let seen = client.ok(&[
        "exec", "cp1", "sh", "-c",
        "cat /tmp/src/file.txt; stat -c '%a %u:%g' /tmp/src/file.txt /tmp/src/sub/deep.txt; readlink /tmp/src/link",
    ]);
    assert_eq!(
        seen, "hello\n640 0:0\n644 1234:4321\nfile.txt\n",
        "modes and the archive's owners kept"
    );

    // Out again: a directory, a symbolic link as a link and (-L) as its file, a directory's
    // contents.
    let out = w.join("out");
    client.ok(&["cp", "cp1:/tmp/src", out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(out.join("sub/deep.txt")).unwrap(),
        "deep\n"
    );
    let meta = std::fs::metadata(out.join("file.txt")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o640);
    assert_eq!(
        std::fs::read_link(out.join("link")).unwrap(),
        Path::new("file.txt")
    );
    let followed = w.join("followed");
    client.ok(&["cp", "-L", "cp1:/tmp/src/link", followed.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&followed).unwrap(), "hello\n");
    assert!(!std::fs::symlink_metadata(&followed)
        .unwrap()
        .file_type()
        .is_symlink());
    let contents = w.join("contents");
    std::fs::create_dir_all(&contents).unwrap();
    client.ok(&["cp", "cp1:/tmp/src/.", &format!("{}/", contents.display())]);
    assert!(contents.join("sub/deep.txt").exists() && !contents.join("src").exists());

    // Into a volume: the copy lands on the volume's disk, which another container sees.
    client.ok(&["cp", src.join("file.txt").to_str().unwrap(), "cp1:/data/"]);

    // Export: the root filesystem, not what is mounted on it; importable as an image.
    let exported = w.join("export.tar");
    client.ok(&["export", "-o", exported.to_str().unwrap(), "cp1"]);
    let names = listing(&std::fs::read(&exported).unwrap());
    let has = |n: &str| names.iter().any(|l| l.split_whitespace().nth(4) == Some(n));
    assert!(
        has("bin/busybox") && has("tmp/src/file.txt") && has("data"),
        "{names:?}"
    );
    assert!(
        !has("data/file.txt"),
        "a volume's files are not the container's"
    );
    assert!(!names.iter().any(|l| l.contains(" proc/")), "nor /proc's");
    client.ok(&["import", exported.to_str().unwrap(), "exported-cp1"]);
    let again = client.ok(&["run", "--rm", "exported-cp1", "cat", "/tmp/src/file.txt"]);
    assert_eq!(again, "hello\n");

    // Paths are the container's: `..` stops at its root.
    let name_file = w.join("hostname");
    client.ok(&[
        "cp",
        "cp1:/../../../etc/hostname",
        name_file.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(&name_file).unwrap().trim(),
        &id[..12]
    );
    fails_with(
        client,
        &["cp", "cp1:/nope", w.join("x").to_str().unwrap()],
        "Could not find the file /nope in container cp1",
    );
    // An archive naming a path outside the destination is refused and leaves nothing.
    let evil = w.join("evil.tar");
    std::fs::write(&evil, raw_tar("../../escaped", b"x")).unwrap();
    let o = with_stdin(client_cmd(client), &["cp", "-", "cp1:/tmp/src"], &evil);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is outside of"), "{}", stderr(&o));
    let o = client.run(&["exec", "cp1", "ls", "/escaped", "/tmp/escaped"]);
    assert!(!o.status.success(), "nothing escaped: {}", stdout(&o));

    // Stopped: the container's VM boots for its files, and it stays stopped and startable.
    client.ok(&["stop", "-t", "1", "cp1"]);
    std::fs::write(w.join("late"), "while stopped\n").unwrap();
    client.ok(&["cp", w.join("late").to_str().unwrap(), "cp1:/tmp/"]);
    let back = w.join("back.txt");
    client.ok(&["cp", "cp1:/tmp/src/file.txt", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "hello\n");
    let state = client.ok(&["inspect", "-f", "{{.State.Status}}", "cp1"]);
    assert_eq!(state.trim(), "exited");
    eventually(
        "the VM booted for the copies to power off",
        Duration::from_secs(20),
        || vm_processes(id).is_empty().then_some(()),
    );
    client.ok(&["start", "cp1"]);
    assert_eq!(
        client.ok(&["exec", "cp1", "cat", "/tmp/late"]),
        "while stopped\n"
    );
    client.ok(&["rm", "-f", "cp1"]);
    let on_volume = client.ok(&[
        "run",
        "--rm",
        "-v",
        "cpvol:/data",
        image,
        "cat",
        "/data/file.txt",
    ]);
    assert_eq!(on_volume, "hello\n");

    // -a: what is copied in is owned by the container's user.
    client.ok(&[
        "run",
        "-d",
        "--name",
        "cp2",
        "--user",
        "1000:1000",
        image,
        "sleep",
        "600",
    ]);
    client.ok(&[
        "cp",
        "-a",
        src.join("file.txt").to_str().unwrap(),
        "cp2:/tmp/",
    ]);
    assert_eq!(
        client.ok(&["exec", "cp2", "stat", "-c", "%u:%g", "/tmp/file.txt"]),
        "1000:1000\n"
    );
    client.ok(&["rm", "-f", "cp2"]);
    let _ = std::fs::remove_dir_all(&w);
    vch.delete();
}

/// The same container contents on vic and on dockerd give the same tar streams.
#[test]
#[ignore = "needs QEMU, dockerd, the test registry and the docker CLI: make test runs it"]
fn cp_streams_match_dockerd() {
    let vch = OwnVch::create("cpsame", &[]);
    let d = Dockerd::start(Path::new(DEFAULT_DOCKERD), &[&registry()], &docker_bin())
        .expect("starting a private dockerd");
    let image = vch.image.clone();
    let script = "mkdir -p /t/sub/inner && echo one > /t/a && echo two > /t/sub/b && \
                  chmod 751 /t/sub && ln -s a /t/l && ln -s /nowhere /t/dangling && \
                  ln /t/a /t/hard && chown 5:6 /t/sub/b && mkfifo /t/fifo && sleep 600";
    let run = [
        "run",
        "-d",
        "--name",
        "same",
        image.as_str(),
        "sh",
        "-c",
        script,
    ];
    vch.client.ok(&run);
    let mut on_d = d.docker(&docker_bin());
    on_d.args(["pull", "-q", &image]);
    assert!(on_d.output().unwrap().status.success());
    let mut on_d = d.docker(&docker_bin());
    on_d.args(run);
    assert!(on_d.output().unwrap().status.success());
    let w = work_dir("same");
    let ours = |args: &[&str]| {
        let mut c = client_cmd(&vch.client);
        c.args(args);
        c.output().unwrap()
    };
    let theirs = |args: &[&str]| {
        let mut c = d.docker(&docker_bin());
        c.args(args);
        c.output().unwrap()
    };
    eventually("the script to have run", Duration::from_secs(30), || {
        let a = ours(&["exec", "same", "ls", "/t/fifo"]).status.success();
        let b = theirs(&["exec", "same", "ls", "/t/fifo"]).status.success();
        (a && b).then_some(())
    });
    for path in [
        "/t",
        "/t/",
        "/t/.",
        "/t/sub",
        "/t/a",
        "/t/l",
        "/t/dangling",
        "/t/sub/..",
    ] {
        let src = format!("same:{path}");
        let (a, b) = (ours(&["cp", &src, "-"]), theirs(&["cp", &src, "-"]));
        assert!(
            a.status.success() && b.status.success(),
            "{path}: {} / {}",
            stderr(&a),
            stderr(&b)
        );
        assert_eq!(
            listing(&a.stdout),
            listing(&b.stdout),
            "docker cp same:{path} -"
        );
    }
    // In: one archive extracted by both, then listed by both.
    let archive = theirs(&["cp", "same:/t", "-"]).stdout;
    let file = w.join("t.tar");
    std::fs::write(&file, &archive).unwrap();
    for (cmd, what) in [
        (client_cmd(&vch.client), "vic"),
        (d.docker(&docker_bin()), "dockerd"),
    ] {
        let o = with_stdin(cmd, &["cp", "-", "same:/tmp"], &file);
        assert!(o.status.success(), "{what}: {}", stderr(&o));
    }
    let (a, b) = (
        ours(&["cp", "same:/tmp/t", "-"]),
        theirs(&["cp", "same:/tmp/t", "-"]),
    );
    assert_eq!(listing(&a.stdout), listing(&b.stdout), "extracted alike");
    let _ = theirs(&["rm", "-f", "same"]);
    drop(d);
    let _ = std::fs::remove_dir_all(&w);
    vch.delete();
}

fn docker_bin() -> String {
    std::env::var("VIC_DOCKER").expect("VIC_DOCKER is not set: run these tests with `make test`")
}

/// Seconds into the day of a `docker logs -t` line's timestamp.
fn log_seconds(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?.split('T').nth(1)?;
    let t = t.trim_end_matches('Z');
    let mut parts = t.split(':');
    let (h, m, s): (f64, f64, f64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    Some(h * 3600.0 + m * 60.0 + s)
}

/// 256 MiB each way, checked byte for byte, while the container's output keeps coming.
#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn a_large_copy_leaves_the_containers_output_flowing() {
    let vch = OwnVch::create("cpbig", &[]);
    let (client, image) = (&vch.client, vch.image.as_str());
    let w = work_dir("big");
    let big = w.join("big");
    let mut data = vec![0u8; 256 << 20];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut data[..1 << 20])
        .unwrap();
    for i in 1..256 {
        let (head, tail) = data.split_at_mut(i << 20);
        tail[..1 << 20].copy_from_slice(&head[..1 << 20]);
        tail[0] = i as u8;
    }
    std::fs::write(&big, &data).unwrap();
    client.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        image,
        "sh",
        "-c",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
    ]);
    let copy = |args: &[&str]| {
        let t = Instant::now();
        client.ok(args);
        t.elapsed()
    };
    let took_in = copy(&["cp", big.to_str().unwrap(), "ticker:/big"]);
    let back = w.join("back");
    let took_out = copy(&["cp", "ticker:/big", back.to_str().unwrap()]);
    assert!(
        std::fs::read(&back).unwrap() == data,
        "256 MiB came back whole"
    );
    eprintln!("docker cp of 256 MiB: in {took_in:?}, out {took_out:?}");
    let logs = client.ok(&["logs", "-t", "ticker"]);
    let times: Vec<f64> = logs.lines().filter_map(log_seconds).collect();
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|p| (p[1] - p[0]).rem_euclid(86400.0))
        .collect();
    let worst = gaps.iter().cloned().fold(0.0, f64::max);
    let copying = (took_in + took_out).as_secs_f64();
    assert!(
        copying > 3.0 * 1.5,
        "the copies ({copying:.1} s) are long enough for a stall to show"
    );
    assert!(
        worst < 1.5,
        "the container's output stalled {worst:.2} s during {copying:.1} s of copies"
    );
    client.ok(&["rm", "-f", "ticker"]);
    let _ = std::fs::remove_dir_all(&w);
    vch.delete();
}

/// `docker diff` names what the container changed, as dockerd does, running or stopped.
#[test]
#[ignore = "needs QEMU, dockerd, the test registry and the docker CLI: make test runs it"]
fn diff_names_what_the_container_changed_as_dockerd_does() {
    let vch = OwnVch::create("cpdiff", &[]);
    let d = Dockerd::start(Path::new(DEFAULT_DOCKERD), &[&registry()], &docker_bin())
        .expect("starting a private dockerd");
    let image = vch.image.clone();
    let script = "mkdir -p /tmp/made/deep && echo x > /tmp/made/deep/f && \
                  echo more >> /etc/passwd && rm -rf /home && rm /bin/true && \
                  chmod 700 /root && touch /ready && sleep 600";
    let run = [
        "run",
        "-d",
        "--name",
        "changed",
        image.as_str(),
        "sh",
        "-c",
        script,
    ];
    let theirs = |args: &[&str]| {
        let mut c = d.docker(&docker_bin());
        c.args(args);
        c.output().unwrap()
    };
    assert!(theirs(&["pull", "-q", &image]).status.success());
    assert!(theirs(&run).status.success());
    vch.client.ok(&run);
    eventually("the script to have run", Duration::from_secs(30), || {
        let a = vch
            .client
            .run(&["exec", "changed", "ls", "/ready"])
            .status
            .success();
        let b = theirs(&["exec", "changed", "ls", "/ready"])
            .status
            .success();
        (a && b).then_some(())
    });
    let ours = vch.client.ok(&["diff", "changed"]);
    let dockerd = String::from_utf8_lossy(&theirs(&["diff", "changed"]).stdout).to_string();
    // dockerd also lists what it mounts into every container's root.
    let own_mounts = [
        "/etc/hostname",
        "/etc/hosts",
        "/etc/resolv.conf",
        "/.dockerenv",
    ];
    let mut dockerd: Vec<&str> = dockerd
        .lines()
        .filter(|l| !own_mounts.iter().any(|m| l.ends_with(m)))
        .collect();
    dockerd.sort_unstable_by_key(|l| l.get(2..).unwrap_or_default().to_string());
    // dockerd lists in its filesystem's order, vic by path.
    assert_eq!(ours.lines().collect::<Vec<_>>(), dockerd, "docker diff");
    assert!(
        ours.contains("A /tmp/made/deep/f") && ours.contains("D /home"),
        "{ours}"
    );
    // Stopped, the same.
    vch.client.ok(&["stop", "-t", "1", "changed"]);
    assert_eq!(vch.client.ok(&["diff", "changed"]), ours);
    let fresh = vch.client.ok(&["create", &image, "true"]);
    assert_eq!(
        vch.client.ok(&["diff", fresh.trim()]),
        "",
        "a new container changed nothing"
    );
    let _ = theirs(&["rm", "-f", "changed"]);
    drop(d);
    vch.delete();
}
