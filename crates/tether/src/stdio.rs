//! A process's standard streams: the descriptors the child gets (pipes, or a terminal from the
//! container's devpts) and the threads that copy its output into frames and host input into it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

use tether_proto::{FrameKind, Process};

use crate::port::Writer;
use crate::syscall::Syscall;
use crate::user::Identity;

/// The group that owns terminals (`tty` in the images Docker runs).
const TTY_GID: u32 = 5;

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: freshly created descriptors, each owned once.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The parent's ends of a child's stdio.
pub struct Stdio {
    /// Descriptors the child gets as 0, 1, 2 (closed in the parent after the fork).
    pub child: Vec<OwnedFd>,
    pub child_raw: [i32; 3],
    pub stdin: Option<File>,
    pub stdout: File,
    pub stderr: Option<File>,
    pub tty: Option<Arc<OwnedFd>>,
}

/// Pipes for the process's stdio, or a terminal of the container's devpts (`rootfs`) owned by
/// the process's user.
pub fn make(
    sys: &dyn Syscall,
    p: &Process,
    rootfs: &Path,
    ident: &Identity,
) -> std::io::Result<Stdio> {
    if p.tty {
        let pty = sys.open_pty(&rootfs.join("dev/pts/ptmx"))?;
        if p.rows > 0 && p.cols > 0 {
            sys.set_winsize(pty.master.as_raw_fd(), p.rows, p.cols)?;
        }
        let _ = sys.fchown(pty.slave.as_raw_fd(), ident.uid, TTY_GID);
        let raw = pty.slave.as_raw_fd();
        let master = Arc::new(pty.master);
        let stdin = if p.stdin {
            Some(File::from(master.try_clone()?))
        } else {
            None
        };
        return Ok(Stdio {
            child: vec![pty.slave],
            child_raw: [raw; 3],
            stdin,
            stdout: File::from(master.try_clone()?),
            stderr: None,
            tty: Some(master),
        });
    }
    let (in_child, stdin) = if p.stdin {
        let (r, w) = pipe()?;
        (r, Some(File::from(w)))
    } else {
        (OwnedFd::from(File::open("/dev/null")?), None)
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let child_raw = [in_child.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
    Ok(Stdio {
        child: vec![in_child, out_w, err_w],
        child_raw,
        stdin,
        stdout: File::from(out_r),
        stderr: Some(File::from(err_r)),
        tty: None,
    })
}

pub fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(256 * 1024)
        .spawn(f)
    {
        crate::log!("starting a {name} thread failed: {e}");
    }
}

/// Copies one output stream into frames until EOF (a terminal master reports EIO instead).
pub fn forward(
    mut f: File,
    kind: FrameKind,
    session: u32,
    out: &Writer,
    closed: &AtomicBool,
    done: Sender<()>,
) {
    // One frame stays within one virtio-serial write (the driver takes at most 32 KiB per
    // write), so a host that dies loses whole frames, never half of one.
    let mut buf = vec![0u8; 32 * 1024 - tether_proto::HEADER_LEN];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if !out.send_output(closed, kind, session, &buf[..n]) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = done.send(());
}

pub fn write_stdin(mut f: File, rx: Receiver<Vec<u8>>) {
    let mut broken = false;
    for data in rx {
        // Once the process has closed its input, keep draining so the host never blocks.
        if !broken && f.write_all(&data).is_err() {
            broken = true;
        }
    }
}
