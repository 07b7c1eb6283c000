//! `docker stats`: what the guest's kernel counts of the VM, read from its `/proc`: CPU time
//! over every vCPU, memory, the container's processes, each interface's traffic (loopback
//! left out) and each virtio disk's I/O. Bounded: at most `MAX_STAT_DEVICES` interfaces and
//! disks.

use std::path::Path;

use tether_proto::{DiskCounters, GuestMsg, GuestStats, NetCounters, MAX_STAT_DEVICES};

/// The answer to `Stats { seq }`.
pub fn answer(seq: u64) -> GuestMsg {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let mut stats = GuestStats {
        // SAFETY: sysconf with a constant argument.
        hz: unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64,
        ..GuestStats::default()
    };
    cpu(&read("/proc/stat"), &mut stats);
    memory(&read("/proc/meminfo"), &mut stats);
    stats.pids = container_pids(Path::new("/proc"));
    stats.networks = networks(&read("/proc/net/dev"));
    stats.disks = disks(&read("/proc/diskstats"));
    GuestMsg::Stats {
        seq,
        stats: Box::new(stats),
    }
}

/// Busy and total ticks of a `/proc/stat` `cpu` line's numbers, with user and system.
fn times(nums: &[u64]) -> (u64, u64, u64, u64) {
    let n = |i: usize| nums.get(i).copied().unwrap_or(0);
    let (user, nice, system, idle, iowait) = (n(0), n(1), n(2), n(3), n(4));
    let busy = user + nice + system + n(5) + n(6) + n(7);
    (busy, busy + idle + iowait, user + nice, system)
}

fn cpu(text: &str, out: &mut GuestStats) {
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(name) = f.next() else { continue };
        if !name.starts_with("cpu") {
            continue;
        }
        let nums: Vec<u64> = f.filter_map(|v| v.parse().ok()).collect();
        let (busy, total, user, system) = times(&nums);
        if name == "cpu" {
            (out.cpu_busy, out.cpu_total) = (busy, total);
            (out.cpu_user, out.cpu_system) = (user, system);
        } else if out.per_cpu_busy.len() < 4096 {
            out.per_cpu_busy.push(busy);
        }
    }
    out.online_cpus = out.per_cpu_busy.len().max(1) as u32;
}

fn memory(text: &str, out: &mut GuestStats) {
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    out.mem_total_kib = kib("MemTotal:");
    out.mem_free_kib = kib("MemFree:");
    out.mem_available_kib = kib("MemAvailable:");
    out.mem_cached_kib = kib("Cached:") + kib("Buffers:");
    out.mem_inactive_file_kib = kib("Inactive(file):");
}

/// Stops every process of the container (SIGSTOP): `docker commit`'s pause, while the guest
/// copies its files. Returns them, for [`continue_container`].
pub fn stop_container() -> Vec<u32> {
    let pids = container_pid_list(Path::new("/proc"));
    for pid in &pids {
        let _ = crate::sys::kill(*pid as i32, libc::SIGSTOP);
    }
    pids
}

/// Continues the processes [`stop_container`] stopped.
pub fn continue_container(pids: &[u32]) {
    for pid in pids {
        let _ = crate::sys::kill(*pid as i32, libc::SIGCONT);
    }
}

fn container_pids(proc_dir: &Path) -> u64 {
    container_pid_list(proc_dir).len() as u64
}

/// The container's processes: every PID but the tether's (1) and kernel threads (kthreadd,
/// 2, and its children).
fn container_pid_list(proc_dir: &Path) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(proc_dir) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid > 2)
        .filter(|pid| {
            let stat = std::fs::read_to_string(proc_dir.join(format!("{pid}/stat")));
            let ppid = stat.ok().and_then(|s| {
                let after = s.get(s.rfind(')')? + 1..)?.to_string();
                after.split_whitespace().nth(1)?.parse::<u32>().ok()
            });
            matches!(ppid, Some(p) if p != 2)
        })
        .collect()
}

fn networks(text: &str) -> Vec<NetCounters> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let n: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            let at = |i: usize| n.get(i).copied().unwrap_or(0);
            Some(NetCounters {
                name: name.to_string(),
                rx_bytes: at(0),
                rx_packets: at(1),
                rx_errors: at(2),
                rx_dropped: at(3),
                tx_bytes: at(8),
                tx_packets: at(9),
                tx_errors: at(10),
                tx_dropped: at(11),
            })
        })
        .take(MAX_STAT_DEVICES)
        .collect()
}

/// The virtio disks (`vda`, `vdb`, … not their partitions), in bytes of 512-byte sectors.
fn disks(text: &str) -> Vec<DiskCounters> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let name = *f.get(2)?;
            let whole = name.starts_with("vd") && !name.ends_with(|c: char| c.is_ascii_digit());
            if !whole {
                return None;
            }
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            Some(DiskCounters {
                name: name.to_string(),
                major: n(0) as u32,
                minor: n(1) as u32,
                reads: n(3),
                read_bytes: n(5) * 512,
                writes: n(7),
                write_bytes: n(9) * 512,
            })
        })
        .take(MAX_STAT_DEVICES)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_counters_read_as_docker_stats_needs_them() {
        let mut s = GuestStats::default();
        cpu(
            "cpu  100 10 50 800 40 1 2 3 0 0\ncpu0 60 5 30 400 20 1 1 2 0 0\ncpu1 40 5 20 400 20 0 1 1 0 0\nintr 5\n",
            &mut s,
        );
        assert_eq!((s.cpu_busy, s.cpu_total), (166, 1006));
        assert_eq!((s.cpu_user, s.cpu_system), (110, 50));
        assert_eq!(s.per_cpu_busy, [99, 67]);
        assert_eq!(s.online_cpus, 2);
        memory(
            "MemTotal:  262144 kB\nMemFree: 100000 kB\nMemAvailable: 200000 kB\nBuffers: 10 kB\nCached: 1000 kB\nInactive(file): 500 kB\n",
            &mut s,
        );
        assert_eq!(
            (s.mem_total_kib, s.mem_free_kib, s.mem_available_kib),
            (262144, 100000, 200000)
        );
        assert_eq!((s.mem_cached_kib, s.mem_inactive_file_kib), (1010, 500));
        let net = networks(
            "Inter-|   Receive\n face |bytes\n    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n  eth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0\n",
        );
        assert_eq!(net.len(), 1);
        assert_eq!(
            (
                net[0].name.as_str(),
                net[0].rx_bytes,
                net[0].tx_bytes,
                net[0].tx_dropped
            ),
            ("eth0", 1000, 2000, 4)
        );
        let d = disks(" 254 0 vda 10 0 80 5 20 0 160 7 0 0 0\n 254 1 vda1 1 0 8 0 0 0 0 0 0 0 0\n 7 0 loop0 1 0 2 0 0 0 0 0 0 0 0\n");
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].read_bytes, d[0].write_bytes), (80 * 512, 160 * 512));
        assert_eq!(
            (d[0].major, d[0].minor, d[0].reads, d[0].writes),
            (254, 0, 10, 20)
        );
    }

    #[test]
    fn this_machines_proc_gives_counters() {
        let GuestMsg::Stats { seq, stats } = answer(7) else {
            panic!("not a Stats answer");
        };
        assert_eq!(seq, 7);
        assert!(stats.cpu_total > stats.cpu_busy && stats.mem_total_kib > 0);
        assert!(stats.pids >= 1, "this test process at least");
    }
}
