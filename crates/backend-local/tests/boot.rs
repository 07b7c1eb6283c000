//! Boots real QEMU microvm VMs with the real guest kernel and tether, and speaks the tether
//! protocol to them. `make test` runs it (`cargo test -p backend-local -- --include-ignored`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use backend_local::{LocalBackend, LocalConfig};
use hypervisor::{Backend, PowerState};
use tether_proto::{Frame, FrameKind, GuestMsg, HostMsg};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "boots real QEMU VMs; make test runs it"]
async fn container_vms_run_processes_like_docker() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let _reaper = Reaper(tmp.path().to_path_buf());
    let rootfs = tmp.path().join("rootfs");
    busybox_rootfs(&rootfs)?;
    let backend = LocalBackend::new(LocalConfig {
        root: tmp.path().join("state"),
        kernel: from_env("VIC_KERNEL", "build/vmlinux"),
        initrd: from_env("VIC_INITRD", "build/initramfs.cpio"),
        ..LocalConfig::default()
    })?;
    eprintln!("backend: {}", backend.describe());
    let t = Instant::now();
    backend.prepare_image(IMAGE, &rootfs).await?;
    eprintln!("prepare_image: {:?}", t.elapsed());
    let t = Instant::now();
    backend.prepare_image(IMAGE, &rootfs).await?;
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "second prepare is a no-op"
    );

    // VM "a": the main process is `sleep 100`; exec sessions exercise everything else.
    let mut a = boot(&backend, "a").await?;
    eprintln!("[a] power_on → Hello: {:?}", a.boot_to_hello);
    assert_eq!(backend.power_state("a").await, PowerState::On);
    let g = &mut a.guest;
    let t = Instant::now();
    g.spawn(0, cmd(&["sleep", "100"])).await?;
    match g.msg().await? {
        GuestMsg::Started { session: 0, pid } => assert!(pid > 1),
        other => bail!("expected Started, got {other:?}"),
    }
    eprintln!("[a] spawn → Started: {:?}", t.elapsed());

    let o = g.run(1, cmd(&["echo", "hello"])).await?;
    assert_eq!((o.stdout.as_str(), o.code), ("hello\n", Some(0)));
    eprintln!(
        "[a] spawn echo → first output {:?}",
        o.first_output.unwrap_or_default()
    );

    let o = g.run(2, sh("exit 3")).await?;
    assert_eq!(o.code, Some(3));

    let o = g.run(3, cmd(&["uname", "-r"])).await?;
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    assert_eq!(o.code, Some(0));
    assert!(!o.stdout.trim().is_empty());
    assert_ne!(
        o.stdout.trim(),
        host_kernel.trim(),
        "the guest runs its own kernel"
    );

    let o = g.run(4, sh("echo out; echo err >&2")).await?;
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("out\n", "err\n"));

    let mut p = sh("id -u; id -g; echo $HOME");
    p.user = "vic".into();
    let o = g.run(5, p).await?;
    assert_eq!(o.stdout, "1000\n1000\n/home/vic\n");

    let mut p = cmd(&["pwd"]);
    p.cwd = "/work/made/here".into();
    let o = g.run(6, p).await?;
    assert_eq!(
        o.stdout, "/work/made/here\n",
        "a missing WorkingDir is created"
    );

    let mut p = sh("echo $FOO; echo $PATH; hostname; date +%s");
    p.env = vec!["FOO=bar baz".into()];
    let o = g.run(7, p).await?;
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[0], "bar baz");
    assert_eq!(
        lines[1],
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    assert_eq!(lines[2], "host-a");
    let guest_now: u64 = lines[3].parse()?;
    let host_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    assert!(host_now.abs_diff(guest_now) <= 5, "clock set from Setup");

    let o = g.run(8, cmd(&["nosuch"])).await?;
    assert_eq!(
        o.spawn_failed,
        Some((
            127,
            "exec: \"nosuch\": executable file not found in $PATH".into()
        ))
    );
    let o = g.run(9, cmd(&["/etc/passwd"])).await?;
    assert_eq!(o.spawn_failed.map(|f| f.0), Some(126));

    // A terminal: tty names a pts, the initial size applies, and Resize changes it.
    let mut p = sh("tty; stty size; read x; stty size");
    p.tty = true;
    p.stdin = true;
    p.rows = 24;
    p.cols = 80;
    let t = Instant::now();
    g.spawn(10, p).await?;
    let mut seen = String::new();
    while !seen.contains("24 80") {
        let f = g.next().await?;
        if f.kind == FrameKind::Stdout {
            seen += &String::from_utf8_lossy(&f.payload);
        }
    }
    g.ctl(&HostMsg::Resize {
        session: 10,
        rows: 50,
        cols: 132,
    })
    .await?;
    g.send(&Frame::data(FrameKind::Stdin, 10, b"go\r".to_vec()))
        .await?;
    let o = g.collect(10, t).await?;
    let all = seen + &o.stdout;
    assert!(all.starts_with("/dev/pts/"), "{all:?}");
    assert!(all.contains("50 132"), "{all:?}");
    assert!(o.stderr.is_empty(), "a terminal has no separate stderr");
    assert_eq!(o.code, Some(0));

    // Standard input reaches the process, and StdinClosed ends it.
    let mut p = cmd(&["cat"]);
    p.stdin = true;
    let t = Instant::now();
    g.spawn(11, p).await?;
    g.send(&Frame::data(FrameKind::Stdin, 11, b"abc\n".to_vec()))
        .await?;
    g.send(&Frame::data(FrameKind::Stdin, 11, b"def".to_vec()))
        .await?;
    g.send(&Frame::data(FrameKind::StdinClosed, 11, Vec::new()))
        .await?;
    let o = g.collect(11, t).await?;
    assert_eq!((o.stdout.as_str(), o.code), ("abc\ndef", Some(0)));

    g.ctl(&HostMsg::Ping { seq: 42 }).await?;
    assert_eq!(g.msg().await?, GuestMsg::Pong { seq: 42 });

    let rss = rss_kib(a.pid);
    eprintln!("[a] QEMU RSS after 12 sessions: {} MiB", rss / 1024);

    // SIGTERM to the main process: 128 + 15.
    g.ctl(&HostMsg::Signal {
        session: 0,
        signal: libc::SIGTERM,
    })
    .await?;
    let o = g.collect(0, Instant::now()).await?;
    assert_eq!(o.code, Some(143));
    shutdown_and_check_gone(&backend, "a", a).await?;

    // VM "b" from the same image: the main process itself says hello and exits.
    let mut b = boot(&backend, "b").await?;
    eprintln!("[b] power_on → Hello: {:?}", b.boot_to_hello);
    let o = b.guest.run(0, cmd(&["echo", "hello"])).await?;
    assert_eq!((o.stdout.as_str(), o.code), ("hello\n", Some(0)));
    eprintln!(
        "[b] spawn → first output {:?}",
        o.first_output.unwrap_or_default()
    );
    shutdown_and_check_gone(&backend, "b", b).await?;

    // The image is in use until its VMs are destroyed.
    let err = backend.remove_image(IMAGE).await.unwrap_err().to_string();
    assert!(err.contains("in use"), "{err}");
    backend.destroy_vm("a").await?;
    backend.destroy_vm("b").await?;
    assert_eq!(backend.power_state("a").await, PowerState::Absent);
    backend.remove_image(IMAGE).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "boots real QEMU VMs; make test runs it"]
async fn power_off_kills_a_vm_that_does_not_stop() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let _reaper = Reaper(tmp.path().to_path_buf());
    let rootfs = tmp.path().join("rootfs");
    busybox_rootfs(&rootfs)?;
    let backend = LocalBackend::new(LocalConfig {
        root: tmp.path().join("state"),
        kernel: from_env("VIC_KERNEL", "build/vmlinux"),
        initrd: from_env("VIC_INITRD", "build/initramfs.cpio"),
        ..LocalConfig::default()
    })?;
    backend.prepare_image(IMAGE, &rootfs).await?;
    let b = boot(&backend, "k").await?;
    let t = Instant::now();
    backend.power_off("k", Duration::from_millis(200)).await?;
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(backend.power_state("k").await, PowerState::Off);
    let exit = tokio::time::timeout(Duration::from_secs(5), b.exited).await?;
    assert!(exit.detail.contains("signal"), "{}", exit.detail);
    backend.destroy_vm("k").await?;
    Ok(())
}

/// The value of a `Key:` line of `/proc/PID/status`.
fn status_field(pid: u32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "boots real QEMU VMs; make test runs it"]
async fn qemu_runs_jailed_with_its_own_uid_namespace_and_cgroup() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let _reaper = Reaper(tmp.path().to_path_buf());
    let rootfs = tmp.path().join("rootfs");
    busybox_rootfs(&rootfs)?;
    let state = tmp.path().join("state");
    let parent = format!("vic/boot-test-{}", std::process::id());
    let backend = LocalBackend::new(LocalConfig {
        root: state.clone(),
        kernel: from_env("VIC_KERNEL", "build/vmlinux"),
        initrd: from_env("VIC_INITRD", "build/initramfs.cpio"),
        cgroup_parent: parent.clone().into(),
        ..LocalConfig::default()
    })?;
    backend.prepare_image(IMAGE, &rootfs).await?;
    let mut b = boot(&backend, "j").await?;
    let pid = b.pid;

    let uid: Vec<u32> = status_field(pid, "Uid")
        .split_whitespace()
        .map(|u| u.parse().unwrap_or(0))
        .collect();
    assert_eq!(uid.len(), 4);
    assert!(
        uid.iter()
            .all(|&u| u == uid[0] && (backend_local::UID_BASE..).contains(&u)),
        "{uid:?}"
    );
    assert_eq!(status_field(pid, "Groups"), "");
    assert_eq!(status_field(pid, "Seccomp"), "2");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(status_field(pid, "CapEff"), "0000000000000000");
    assert_eq!(status_field(pid, "CapPrm"), "0000000000000000");
    assert_eq!(status_field(pid, "CapBnd"), "0000000000000000");
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/mnt"))?,
        std::fs::read_link("/proc/self/ns/mnt")?
    );

    // Its root shows only what it needs, each at its host path.
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    assert_eq!(names(&inside(&state)), ["images", "vms"]);
    assert_eq!(names(&inside(&state.join("vms"))), ["j"]);
    assert_eq!(names(&inside(&state.join("images"))), [IMAGE]);
    assert!(names(&inside(tmp.path())).iter().all(|n| n != "rootfs"));
    assert!(!root.join("etc").exists() && !root.join("root").exists());
    assert_eq!(names(&root.join("dev")), ["null", "urandom", "zero"]);

    // The cgroup holds it, with the limits written.
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").is_file();
    let cg = |ctrl: &str, file: &str| -> PathBuf {
        let base = Path::new("/sys/fs/cgroup");
        let base = if v2 {
            base.to_path_buf()
        } else {
            base.join(ctrl)
        };
        base.join(&parent).join("j").join(file)
    };
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let memory = ((256 + backend_local::QEMU_OVERHEAD_MIB) << 20).to_string();
    if v2 {
        assert_eq!(read(cg("", "memory.max")), memory);
        assert_eq!(read(cg("", "cpu.max")), "100000 100000");
    } else {
        assert_eq!(read(cg("memory", "memory.limit_in_bytes")), memory);
        assert_eq!(read(cg("cpu", "cpu.cfs_quota_us")), "100000");
    }
    assert_eq!(read(cg("pids", "pids.max")), "256");
    let procs = read(cg("pids", "cgroup.procs"));
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");

    // The guest still works, and the cgroup goes with the VM.
    let out = b.guest.run(1, sh("echo jailed")).await?;
    assert_eq!(out.stdout.trim(), "jailed");
    shutdown_and_check_gone(&backend, "j", b).await?;
    assert!(!cg("pids", "").exists(), "cgroup left after power off");
    backend.destroy_vm("j").await?;
    let vch = cg("pids", "");
    assert!(!vch.parent().is_some_and(|p| p.exists()), "VCH cgroup left");
    Ok(())
}
