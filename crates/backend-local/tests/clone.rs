//! Container VMs restored from a booted template: made on first need, restored instead of
//! booted, each its own machine (boot ID, RNG, clock, hostname), jailed like any VM, and made
//! again when the kernel changes; a clone that fails to restore boots instead, and the
//! backend says why. `make test` runs it.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use backend_local::{LocalBackend, LocalConfig};
use hypervisor::Backend;

mod common;
use common::*;

/// Waits until the backend says `n` templates are ready.
async fn templates_ready(backend: &LocalBackend, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let want = format!("({n} ready");
    while !backend.start_path().contains(&want) {
        if Instant::now() >= deadline {
            bail!("no template after 90 s: {}", backend.start_path());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// What tells one machine from another, and its clock, as the guest sees them.
async fn identity(b: &mut Booted) -> Result<Vec<String>> {
    let o = b
        .guest
        .run(
            1,
            sh("cat /proc/sys/kernel/random/boot_id; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; hostname; date +%s"),
        )
        .await?;
    assert_eq!(o.code, Some(0), "{o:?}");
    Ok(o.stdout.lines().map(str::to_string).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "boots real QEMU VMs; make test runs it"]
async fn clones_of_a_booted_template_are_machines_of_their_own() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let _reaper = Reaper(tmp.path().to_path_buf());
    let rootfs = tmp.path().join("rootfs");
    busybox_rootfs(&rootfs)?;
    // A kernel of its own, so the test can change it.
    let kernel = tmp.path().join("vmlinux");
    std::fs::copy(from_env("VIC_KERNEL", "build/vmlinux"), &kernel)?;
    let backend = LocalBackend::new(LocalConfig {
        root: tmp.path().join("state"),
        kernel: kernel.clone(),
        initrd: from_env("VIC_INITRD", "build/initramfs.cpio"),
        ..LocalConfig::default()
    })?;
    backend.prepare_image(IMAGE, &rootfs).await?;
    assert!(
        backend.start_path().contains("0 ready"),
        "{}",
        backend.start_path()
    );

    // The first VM of its shape boots, and its template is made meanwhile.
    let cold = boot(&backend, "cold1").await?;
    assert!(!cold.restored, "no template yet: it boots");
    templates_ready(&backend, 1).await?;
    let templates = tmp.path().join("state/templates");
    let left: Vec<_> = std::fs::read_dir(&templates)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(left, [".saved"], "the template VM is gone once saved");
    let saved = templates.join(".saved/t-256m-1c-0n");
    for f in ["meta.json", "ram", "state"] {
        assert!(saved.join(f).is_file(), "{f} of the saved template");
    }

    let mut a = boot(&backend, "clone1").await?;
    let mut b = boot(&backend, "clone2").await?;
    assert!(
        a.restored && b.restored,
        "restored from the template: {}",
        backend.start_path()
    );
    eprintln!(
        "cold boot → Hello {:?}; clones {:?} and {:?}",
        cold.boot_to_hello, a.boot_to_hello, b.boot_to_hello
    );
    let (ia, ib) = (identity(&mut a).await?, identity(&mut b).await?);
    eprintln!("clone1 {ia:?}\nclone2 {ib:?}");
    assert_eq!(ia.len(), 4, "{ia:?}");
    assert_ne!(ia[0], ib[0], "the same boot_id");
    assert_ne!(ia[1], ib[1], "the same /dev/urandom bytes");
    assert_eq!(
        (ia[2].as_str(), ib[2].as_str()),
        ("host-clone1", "host-clone2")
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    for clock in [&ia[3], &ib[3]] {
        let secs: u64 = clock.parse()?;
        assert!(
            secs.abs_diff(now.as_secs()) <= 5,
            "clock {secs}, host {now:?}"
        );
    }
    // A clone runs jailed like a booted VM: its QEMU's own uid, its procfs shows only it.
    let uid = |pid: u32| -> String {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap_or("")
            .to_string()
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_ne!(uid(a.pid), uid(b.pid), "clones share a uid");
        assert!(!uid(a.pid).contains("\t0\t"), "{}", uid(a.pid));
    }
    // Writes in one clone are its own.
    let w = a
        .guest
        .run(2, sh("echo mine > /tmp/x && cat /tmp/x"))
        .await?;
    assert_eq!(w.stdout, "mine\n");
    let r = b.guest.run(2, sh("cat /tmp/x 2>&1; true")).await?;
    assert!(r.stdout.contains("No such file"), "{r:?}");

    // The next appliance finds the template in the VCH's state: its first VM is restored.
    let next = LocalBackend::new(LocalConfig {
        root: tmp.path().join("state"),
        kernel: kernel.clone(),
        initrd: from_env("VIC_INITRD", "build/initramfs.cpio"),
        ..LocalConfig::default()
    })?;
    templates_ready(&next, 1).await?;
    let after_restart = boot(&next, "clone4").await?;
    assert!(after_restart.restored, "the saved template was not used");
    shutdown_and_check_gone(&next, "clone4", after_restart).await?;
    drop(next);

    // A new kernel makes the template stale: the next VM boots, and a new one is made.
    std::fs::write(
        &kernel,
        std::fs::read(from_env("VIC_KERNEL", "build/vmlinux"))?,
    )?;
    let after = boot(&backend, "cold2").await?;
    assert!(!after.restored, "restored from a stale template");
    templates_ready(&backend, 1).await?;
    let again = boot(&backend, "clone3").await?;
    assert!(again.restored);

    for (id, vm) in [
        ("cold1", cold),
        ("clone1", a),
        ("clone2", b),
        ("cold2", after),
        ("clone3", again),
    ] {
        shutdown_and_check_gone(&backend, id, vm).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "boots real QEMU VMs; make test runs it"]
async fn a_clone_that_fails_to_restore_boots_and_says_why() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let _reaper = Reaper(tmp.path().to_path_buf());
    let rootfs = tmp.path().join("rootfs");
    busybox_rootfs(&rootfs)?;
    // QEMU as a script that, once told to, fails every restore (a QEMU that dies at start).
    let broken = tmp.path().join("broken");
    let qemu = tmp.path().join("qemu");
    std::fs::write(
        &qemu,
        format!(
            "#!/bin/sh\ncase \" $* \" in *' -incoming '*) [ -e {} ] && exit 1;; esac\nexec qemu-system-x86_64 \"$@\"\n",
            broken.display()
        ),
    )?;
    std::fs::set_permissions(&qemu, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let backend = LocalBackend::new(LocalConfig {
        root: tmp.path().join("state"),
        kernel: from_env("VIC_KERNEL", "build/vmlinux"),
        initrd: from_env("VIC_INITRD", "build/initramfs.cpio"),
        qemu: qemu.clone(),
        // A script outside /usr cannot be run in the jail (its files are shown noexec).
        jail: false,
        ..LocalConfig::default()
    })?;
    backend.prepare_image(IMAGE, &rootfs).await?;
    let first = boot(&backend, "first").await?;
    templates_ready(&backend, 1).await?;
    std::fs::write(&broken, b"")?;
    let fell_back = boot(&backend, "fallback").await?;
    assert!(!fell_back.restored, "restored by a QEMU that exits");
    let said = backend.start_path();
    assert!(
        said.contains("one failed: a clone could not be restored"),
        "{said}"
    );
    let saved = tmp.path().join("state/templates/.saved/t-256m-1c-0n");
    assert!(
        !saved.exists(),
        "a template that failed is kept for the next appliance"
    );
    // It runs like any booted VM, and its shape boots until the template is made again.
    let mut fell_back = fell_back;
    let o = fell_back.guest.run(1, sh("echo up")).await?;
    assert_eq!(o.stdout, "up\n");
    std::fs::remove_file(&broken)?;
    let next = boot(&backend, "next").await?;
    assert!(
        !next.restored,
        "a failed template is not used again at once"
    );
    for (id, vm) in [("first", first), ("fallback", fell_back), ("next", next)] {
        shutdown_and_check_gone(&backend, id, vm).await?;
    }
    Ok(())
}
