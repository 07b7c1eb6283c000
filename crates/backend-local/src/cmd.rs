//! Host commands the backend runs (iproute2, iptables, sysctl), each bounded in time: a
//! command that does not end within its limit is killed and said to have hung, so that a
//! stuck tool never hangs the appliance.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long one host command may take.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Runs `cmd` to its end (at most [`LIMIT`]) and returns what it printed.
pub fn output(cmd: &mut Command) -> std::io::Result<Output> {
    output_within(cmd, LIMIT)
}

/// Runs `prog args` (bounded); its standard output, or its own error.
pub(crate) fn run(prog: &str, args: &[&str]) -> Result<String, hypervisor::BackendError> {
    let failed = hypervisor::BackendError::Failed;
    let out = output(Command::new(prog).args(args))
        .map_err(|e| failed(format!("running {prog} {}: {e}", args.join(" "))))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(failed(format!(
        "{prog} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// The most a command's output or error stream is read (the rest is left unread).
const MAX_OUTPUT: u64 = 1 << 20;

/// Runs `cmd` to its end and returns what it printed (at most [`MAX_OUTPUT`] bytes of each
/// stream); a command still running after `limit` is killed and reported as hung.
pub fn output_within(cmd: &mut Command, limit: Duration) -> std::io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Read on threads so that a full pipe cannot stall the command while it is waited for.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(r) = r {
                let _ = r.take(MAX_OUTPUT).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("it did not end within {} s and was killed", limit.as_secs()),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_read_to_its_end_and_one_that_hangs_is_killed() {
        let out = output_within(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status.code(), Some(3));
        let started = Instant::now();
        let err = output_within(
            Command::new("sh").args(["-c", "exec sleep 30"]),
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
