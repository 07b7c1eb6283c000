//! What a container that does nothing costs the host: the CPU its processes use while it
//! idles, and their memory as PSS (`/proc/PID/smaps_rollup`: a page shared by several
//! processes counts its share in each, so the sum over processes counts it once).

use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::procfs::cpu_seconds;
use crate::run_ok;

/// Per idle container: CPU (percent of one host CPU) and PSS (MiB).
pub struct Idle {
    pub cpu_percent: Vec<f64>,
    pub pss_mib: Vec<f64>,
}

/// Proportional set size of `pid`, in KiB.
pub fn pss_kib(pid: u32) -> Option<u64> {
    proc_kib(pid, "smaps_rollup", "Pss:")
}

/// Resident set size of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    proc_kib(pid, "status", "VmRSS:")
}

/// The KiB figure of line `field` in `/proc/PID/file`.
fn proc_kib(pid: u32, file: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The QEMU process whose command line names container `id` (its first 12 characters do).
pub fn qemu_pid_of(id: &str) -> Option<u32> {
    let id = &id[..12.min(id.len())];
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_string_lossy().parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        (cmd.split('\0').next()?.contains("qemu-system") && cmd.contains(id)).then_some(pid)
    })
}

/// Runs `n` containers of `image` that sleep, through `docker()`; once they have run for
/// `settle`, measures each one's processes (`pids_of(id)`: those that are the container on
/// the host) over `window`; removes them.
pub fn measure(
    docker: &dyn Fn() -> Command,
    image: &str,
    n: usize,
    pids_of: &dyn Fn(&str) -> Vec<u32>,
    settle: Duration,
    window: Duration,
) -> anyhow::Result<Idle> {
    let mut ids = Vec::new();
    let result = (|| {
        for _ in 0..n {
            let id = run_ok(
                docker().args(["run", "-d", image, "sleep", "3600"]),
                "docker run -d",
            )?;
            ids.push(id.trim().to_string());
        }
        std::thread::sleep(settle);
        let pids: Vec<Vec<u32>> = ids.iter().map(|id| pids_of(id)).collect();
        if let Some(i) = pids.iter().position(Vec::is_empty) {
            anyhow::bail!("no host process found for container {}", ids[i]);
        }
        let cpu = |p: &[u32]| -> anyhow::Result<f64> {
            p.iter().map(|pid| cpu_seconds(*pid, false)).sum()
        };
        let before: Vec<f64> = pids.iter().map(|p| cpu(p)).collect::<Result<_, _>>()?;
        std::thread::sleep(window);
        let after: Vec<f64> = pids.iter().map(|p| cpu(p)).collect::<Result<_, _>>()?;
        let cpu_percent = (before.iter().zip(&after))
            .map(|(b, a)| (a - b) / window.as_secs_f64() * 100.0)
            .collect();
        let pss_mib = (pids.iter())
            .map(|p| p.iter().filter_map(|pid| pss_kib(*pid)).sum::<u64>() as f64 / 1024.0)
            .collect();
        Ok(Idle {
            cpu_percent,
            pss_mib,
        })
    })();
    if !ids.is_empty() {
        let mut rm = docker();
        rm.args(["rm", "-f"]).args(&ids);
        run_ok(&mut rm, "docker rm -f").context("removing the idle containers")?;
    }
    result
}

/// A runc container's processes on the host: the shim that is its init's parent, and its
/// init.
pub fn runc_pids_of(docker: &dyn Fn() -> Command, id: &str) -> Vec<u32> {
    let pid = run_ok(
        docker().args(["inspect", "-f", "{{.State.Pid}}", id]),
        "docker inspect",
    );
    let Some(pid) = pid.ok().and_then(|p| p.trim().parse::<u32>().ok()) else {
        return Vec::new();
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let ppid = (stat.rfind(')'))
        .and_then(|i| stat[i + 1..].split_whitespace().nth(1)?.parse::<u32>().ok());
    match ppid {
        Some(shim) if shim > 1 => vec![shim, pid],
        _ => vec![pid],
    }
}
