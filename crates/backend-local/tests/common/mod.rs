//! What the boot tests share: a busybox image, the host side of the tether protocol, and
//! booting a VM to a configured guest (restored from a template or not).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use backend_local::LocalBackend;
use hypervisor::{Backend, PowerState, PoweredOn, TetherChannel, VmConfig};
use tether_proto::{encode, Frame, FrameDecoder, FrameKind, GuestMsg, HostMsg, Process, Setup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const IMAGE: &str = "busybox-test";
pub const WAIT: Duration = Duration::from_secs(30);

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn from_env(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(default))
}

/// A root filesystem made of Debian's busybox-static, with users root and vic (1000).
pub fn busybox_rootfs(dir: &Path) -> Result<()> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        bail!("/bin/busybox is missing; apt-get install busybox-static");
    }
    for d in ["bin", "etc", "root", "home/vic", "tmp"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    std::fs::copy(busybox, dir.join("bin/busybox"))?;
    let list = std::process::Command::new(busybox).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet))?;
        }
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nvic:x:1000:1000:vic:/home/vic:/bin/sh\n",
    )?;
    std::fs::write(dir.join("etc/group"), "root:x:0:\nvic:x:1000:\n")?;
    Ok(())
}

/// The host side of the tether protocol, as the port layer would speak it.
pub struct Guest {
    pub ch: Box<dyn TetherChannel>,
    pub dec: FrameDecoder,
    pub buf: Vec<u8>,
}

/// What a session produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub code: Option<i32>,
    pub spawn_failed: Option<(i32, String)>,
    pub first_output: Option<Duration>,
}

impl Guest {
    pub async fn send(&mut self, f: &Frame) -> Result<()> {
        self.ch.write_all(&encode(f)).await?;
        Ok(())
    }

    pub async fn ctl(&mut self, m: &HostMsg) -> Result<()> {
        self.send(&Frame::control(m)).await
    }

    pub async fn next(&mut self) -> Result<Frame> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(f) = self.dec.next_frame()? {
                return Ok(f);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.ch.read(&mut self.buf))
                .await
                .context("no frame from the guest within 30 s")??;
            if n == 0 {
                bail!("the guest closed the channel");
            }
            self.dec.push(&self.buf[..n]);
        }
    }

    pub async fn msg(&mut self) -> Result<GuestMsg> {
        let f = self.next().await?;
        Ok(f.parse_control()?)
    }

    pub async fn spawn(&mut self, session: u32, process: Process) -> Result<()> {
        self.ctl(&HostMsg::Spawn { session, process }).await
    }

    /// Collects a session's output until it exits or fails to start.
    pub async fn collect(&mut self, session: u32, started: Instant) -> Result<Outcome> {
        let mut o = Outcome::default();
        loop {
            let f = self.next().await?;
            if f.session != session && f.kind != FrameKind::Control {
                continue;
            }
            match f.kind {
                FrameKind::Stdout | FrameKind::Stderr => {
                    o.first_output.get_or_insert(started.elapsed());
                    let text = String::from_utf8_lossy(&f.payload).to_string();
                    if f.kind == FrameKind::Stdout {
                        o.stdout += &text;
                    } else {
                        o.stderr += &text;
                    }
                }
                FrameKind::Control => match f.parse_control::<GuestMsg>()? {
                    GuestMsg::Started { .. } => {}
                    GuestMsg::Exited { session: s, code } if s == session => {
                        o.code = Some(code);
                        return Ok(o);
                    }
                    GuestMsg::SpawnFailed {
                        session: s,
                        code,
                        message,
                    } if s == session => {
                        o.spawn_failed = Some((code, message));
                        return Ok(o);
                    }
                    other => bail!("unexpected message while running session {session}: {other:?}"),
                },
                _ => {}
            }
        }
    }

    pub async fn run(&mut self, session: u32, process: Process) -> Result<Outcome> {
        let t = Instant::now();
        self.spawn(session, process).await?;
        self.collect(session, t).await
    }
}

pub fn cmd(argv: &[&str]) -> Process {
    Process {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..Process::default()
    }
}

pub fn sh(script: &str) -> Process {
    cmd(&["sh", "-c", script])
}

pub struct Booted {
    pub guest: Guest,
    pub pid: u32,
    pub exited: futures_util::future::BoxFuture<'static, hypervisor::VmExit>,
    pub boot_to_hello: Duration,
    /// Restored from a template rather than booted.
    pub restored: bool,
}

pub async fn boot(backend: &LocalBackend, id: &str) -> Result<Booted> {
    backend
        .create_vm(&VmConfig {
            id: id.into(),
            display_name: format!("test-{id}"),
            image_id: IMAGE.into(),
            memory_mib: 256,
            cpus: 1,
            nics: Vec::new(),
            disks: Vec::new(),
            shares: Vec::new(),
            host_cpus: Vec::new(),
            cpu_shares: None,
        })
        .await?;
    let t = Instant::now();
    let PoweredOn {
        channel,
        pid,
        exited,
        restored,
    } = backend.power_on(id).await?;
    let mut guest = Guest {
        ch: channel,
        dec: FrameDecoder::new(),
        buf: vec![0; 64 * 1024],
    };
    // A restored guest waits for its template's host: it is asked to say Hello.
    if restored.is_some() {
        guest.ctl(&HostMsg::Resync).await?;
    }
    let hello = guest.msg().await?;
    let boot_to_hello = t.elapsed();
    assert!(
        matches!(
            hello,
            GuestMsg::Hello {
                version: tether_proto::PROTOCOL_VERSION,
                ..
            }
        ),
        "{hello:?}"
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    guest
        .ctl(&HostMsg::Setup(Box::new(Setup {
            hostname: format!("host-{id}"),
            root_device: "/dev/vda".into(),
            root_fstype: "ext4".into(),
            clock_unix_nanos: now.as_nanos() as u64,
            entropy: (0..64).map(|_| rand_byte()).collect(),
            restored: restored.as_ref().map(|r| tether_proto::Restored {
                macs: r
                    .macs
                    .iter()
                    .map(|(from, to)| tether_proto::MacChange {
                        from: from.clone(),
                        to: to.clone(),
                    })
                    .collect(),
            }),
            ..Default::default()
        })))
        .await?;
    let ready = guest.msg().await?;
    assert_eq!(ready, GuestMsg::Ready);
    Ok(Booted {
        guest,
        pid: pid.context("local VMs have a QEMU pid")?,
        exited,
        boot_to_hello,
        restored: restored.is_some(),
    })
}

/// A byte of host entropy, as the port layer sends (clones must not share their RNG).
fn rand_byte() -> u8 {
    use std::io::Read;
    let mut b = [0u8; 1];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("reading /dev/urandom");
    b[0]
}

pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub async fn shutdown_and_check_gone(backend: &LocalBackend, id: &str, b: Booted) -> Result<()> {
    let mut g = b.guest;
    let t = Instant::now();
    g.ctl(&HostMsg::Shutdown).await?;
    let exit = tokio::time::timeout(Duration::from_secs(10), b.exited)
        .await
        .context("QEMU did not exit within 10 s of Shutdown")?;
    eprintln!(
        "[{id}] Shutdown → QEMU gone in {:?} ({})",
        t.elapsed(),
        exit.detail
    );
    assert!(exit.detail.contains("exited"), "{}", exit.detail);
    assert_eq!(backend.power_state(id).await, PowerState::Off);
    assert!(!Path::new(&format!("/proc/{}", b.pid)).exists() || rss_kib(b.pid) == 0);
    Ok(())
}

/// Kills, when dropped, every process working in `dir` (the QEMUs of a test's VMs): container
/// VMs outlive their backend by design, so a test that fails half-way would leave them.
pub struct Reaper(pub PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        let dir = std::fs::canonicalize(&self.0).unwrap_or_else(|_| self.0.clone());
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for p in procs.flatten() {
            let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let inside =
                std::fs::read_link(p.path().join("cwd")).is_ok_and(|c| c.starts_with(&dir));
            if inside && pid as u32 != std::process::id() {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}
