//! What the benchmarks read of processes and the machine: CPU time from `/proc` (of a
//! process and its descendants), loopback traffic, command lines, and a child's own CPU from
//! `wait4`.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use anyhow::Context;

pub fn sync_disks() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// `/proc/PID/stat` fields after the command name: (ppid, utime+stime+cutime+cstime ticks).
fn proc_stat(pid: u32) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17.
    let ppid = f.get(1)?.parse().ok()?;
    let mut ticks = 0u64;
    for i in 11..=14 {
        ticks += f.get(i)?.parse::<u64>().ok()?;
    }
    Some((ppid, ticks))
}

/// CPU seconds used so far by `pid` and (with `descendants`) every live process under it,
/// each including the children it has reaped.
pub fn cpu_seconds(pid: u32, descendants: bool) -> anyhow::Result<f64> {
    let (_, own) = proc_stat(pid).with_context(|| format!("reading /proc/{pid}/stat"))?;
    let mut ticks = own;
    if descendants {
        let all: Vec<(u32, u32, u64)> = std::fs::read_dir("/proc")?
            .flatten()
            .filter_map(|e| {
                let p: u32 = e.file_name().to_str()?.parse().ok()?;
                let (ppid, t) = proc_stat(p)?;
                Some((p, ppid, t))
            })
            .collect();
        let mut tree: HashSet<u32> = HashSet::from([pid]);
        loop {
            let before = tree.len();
            for (p, ppid, _) in &all {
                if tree.contains(ppid) {
                    tree.insert(*p);
                }
            }
            if tree.len() == before {
                break;
            }
        }
        ticks += all
            .iter()
            .filter(|(p, _, _)| *p != pid && tree.contains(p))
            .map(|(_, _, t)| t)
            .sum::<u64>();
    }
    Ok(ticks as f64 / clk_tck())
}

/// Bytes received on the loopback interface so far (every pull here crosses it once; other
/// loopback traffic on the host only adds, so a run's delta bounds its download from above).
pub fn loopback_bytes() -> u64 {
    std::fs::read_to_string("/proc/net/dev")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.trim_start()
                    .strip_prefix("lo:")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

pub fn alive_with(pid_file: &Path, needle: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    cmdline(pid).contains(needle).then_some(pid)
}

/// Runs `cmd` to its end; returns (status ok, CPU seconds of it and its reaped children).
pub fn run_with_rusage(cmd: &mut Command) -> anyhow::Result<(bool, f64)> {
    let child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and ru are valid for writes; pid is our unreaped child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("wait4");
        }
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Ok((ok, tv(ru.ru_utime) + tv(ru.ru_stime)))
}
