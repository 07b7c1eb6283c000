//! The host's end of a VM's tether channel: the Unix socket QEMU's chardev connects to,
//! bound before QEMU starts and accepted within the boot's deadline.

use std::path::Path;
use std::time::Duration;

use futures_util::FutureExt;
use hypervisor::{BackendError, PoweredOn, VmExit};
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::qemu::{CONSOLE_LOG, TETHER_SOCK};
use crate::vm::{failed, io_err, kill, tail, QEMU_LOG};

/// Waits for QEMU to connect the tether socket; `kill_on_failure` ends a VM that never
/// connects (a fresh boot), otherwise it is left for the caller to decide.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn connect(
    id: &str,
    dir: &Path,
    listener: &UnixListener,
    rx: watch::Receiver<Option<VmExit>>,
    pid: u32,
    limit: Duration,
    started: std::time::Instant,
    kill_on_failure: bool,
) -> Result<PoweredOn, BackendError> {
    let sock = dir.join(TETHER_SOCK);
    let log = dir.join(QEMU_LOG);
    let mut early_exit = rx.clone();
    let accepted = tokio::select! {
        a = tokio::time::timeout(limit, listener.accept()) => a,
        _ = early_exit.wait_for(Option::is_some) => {
            let _ = std::fs::remove_file(&sock);
            return Err(failed(format!(
                "QEMU for VM {id} exited before its tether connected: {}",
                tail(&log, 3)
            )));
        }
    };
    let _ = std::fs::remove_file(&sock);
    let stream = match accepted {
        Ok(Ok((stream, _))) => stream,
        Ok(Err(e)) => {
            if kill_on_failure {
                kill(pid);
            }
            return Err(io_err(format!("accepting the tether of VM {id}"))(e));
        }
        Err(_) => {
            if kill_on_failure {
                kill(pid);
            }
            return Err(BackendError::BootTimeout {
                id: id.to_string(),
                secs: limit.as_secs(),
                log: dir.join(CONSOLE_LOG).display().to_string(),
            });
        }
    };
    tracing::debug!(vm = id, pid, elapsed = ?started.elapsed(), "tether connected");
    let mut exit = rx;
    let exited = async move {
        match exit.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or_else(|| VmExit {
                detail: "qemu exited".into(),
            }),
            Err(_) => VmExit {
                detail: "qemu exit status lost".into(),
            },
        }
    }
    .boxed();
    Ok(PoweredOn {
        channel: Box::new(stream),
        pid: Some(pid),
        exited,
        restored: None,
    })
}

/// Binds a socket of a VM's directory (its tether's, its monitor's). Unix socket paths are limited to 108 bytes, so a long state
/// directory is reached through `/proc/self/fd/N` of an open handle on it.
pub(crate) fn bind(dir: &Path, sock: &Path) -> Result<UnixListener, BackendError> {
    let context = || format!("listening on {}", sock.display());
    if sock.as_os_str().len() < 100 {
        return UnixListener::bind(sock).map_err(io_err(context()));
    }
    let handle = std::fs::File::open(dir).map_err(io_err(format!("opening {}", dir.display())))?;
    use std::os::fd::AsRawFd;
    let name = sock.file_name().unwrap_or(TETHER_SOCK.as_ref());
    let short = format!(
        "/proc/self/fd/{}/{}",
        handle.as_raw_fd(),
        name.to_string_lossy()
    );
    let listener = UnixListener::bind(&short).map_err(io_err(context()))?;
    drop(handle);
    Ok(listener)
}
