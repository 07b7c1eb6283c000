//! `docker top`: the container's processes as the guest's `/proc` shows them. The tether
//! itself (PID 1) and kernel threads are not the container's and are left out; users are
//! named from the container's own `/etc/passwd`. Bounded: at most `MAX_PROCESSES`, each
//! command line at most `MAX_ARGS_BYTES`.

use std::collections::HashMap;
use std::path::Path;

use tether_proto::{GuestMsg, ProcessInfo, MAX_ARGS_BYTES, MAX_PROCESSES};

/// The answer to `ListProcesses { seq }`; `rootfs` is the container's root, once set up.
pub fn answer(seq: u64, rootfs: Option<&Path>) -> GuestMsg {
    let users = rootfs.map(users).unwrap_or_default();
    let mut processes = Vec::new();
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    for pid in pids {
        if processes.len() >= MAX_PROCESSES {
            break;
        }
        if let Some(p) = read(pid, &users).filter(|p| p.pid != 1 && p.pid != 2 && p.ppid != 2) {
            processes.push(p);
        }
    }
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let boot_unix = field_after(&stat, "btime").unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    // SAFETY: sysconf with a constant argument.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    GuestMsg::Processes {
        seq,
        processes,
        boot_unix,
        hz,
        memory_kib: field_after(&meminfo, "MemTotal:").unwrap_or(0),
    }
}

/// The number after the line that starts with `key`.
fn field_after(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Uid → name from the container's `/etc/passwd`.
fn users(rootfs: &Path) -> HashMap<u32, String> {
    let text = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    text.lines()
        .take(10_000)
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

/// Process `pid` as `/proc/PID/{stat,status,cmdline}` describe it.
fn read(pid: u32, users: &HashMap<u32, String>) -> Option<ProcessInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let f: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let uid = field_after(&status, "Uid:").unwrap_or(0) as u32;
    let mut raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.truncate(MAX_ARGS_BYTES);
    let args = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let tty_nr = num(4);
    let (major, minor) = (
        (tty_nr >> 8) & 0xfff,
        (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00),
    );
    let tty = match major {
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 => format!("tty{minor}"),
        _ => "?".to_string(),
    };
    Some(ProcessInfo {
        pid,
        ppid: num(1) as u32,
        uid,
        user: users.get(&uid).cloned().unwrap_or_else(|| uid.to_string()),
        state: f.first()?.to_string(),
        ticks: num(11) + num(12),
        start_ticks: num(19),
        rss_kib: num(21) * 4,
        vsize_kib: num(20) / 1024,
        tty,
        comm,
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_as_ps_would_show_it() {
        let me = std::process::id();
        let p = read(me, &HashMap::from([(0, "root".to_string())])).expect("our own /proc entry");
        assert_eq!(p.pid, me);
        assert_eq!(p.ppid, std::os::unix::process::parent_id());
        assert!(p.rss_kib > 0 && p.vsize_kib >= p.rss_kib, "{p:?}");
        assert!(!p.args.is_empty() && !p.comm.is_empty(), "{p:?}");
        assert_eq!(
            field_after("MemTotal:   2048 kB\n", "MemTotal:"),
            Some(2048)
        );
    }
}
