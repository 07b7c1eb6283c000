//! `docker stats`: the guest's counters of its VM (`tether_proto::GuestStats`), in the port
//! layer's terms.

use tether_proto::{HostMsg, ARCHIVE_VERSION};

use super::control::{Answer, GuestControl};

/// What a container's guest counts of its VM: CPU time in nanoseconds over every vCPU,
/// memory in bytes, the container's processes, traffic per interface and I/O per disk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerStats {
    pub online_cpus: u32,
    /// All CPU time, idle included.
    pub cpu_total_ns: u64,
    pub cpu_busy_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub per_cpu_busy_ns: Vec<u64>,
    pub mem_total: u64,
    pub mem_free: u64,
    pub mem_available: u64,
    pub mem_cached: u64,
    pub mem_inactive_file: u64,
    pub pids: u64,
    pub networks: Vec<NetStats>,
    pub disks: Vec<DiskStats>,
}

/// One interface's traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetStats {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// One disk's I/O.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub major: u32,
    pub minor: u32,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

impl From<tether_proto::GuestStats> for ContainerStats {
    fn from(s: tether_proto::GuestStats) -> ContainerStats {
        let hz = s.hz.max(1);
        let ns = |ticks: u64| ticks.saturating_mul(1_000_000_000 / hz);
        ContainerStats {
            online_cpus: s.online_cpus,
            cpu_total_ns: ns(s.cpu_total),
            cpu_busy_ns: ns(s.cpu_busy),
            cpu_user_ns: ns(s.cpu_user),
            cpu_system_ns: ns(s.cpu_system),
            per_cpu_busy_ns: s.per_cpu_busy.into_iter().map(ns).collect(),
            mem_total: s.mem_total_kib.saturating_mul(1024),
            mem_free: s.mem_free_kib.saturating_mul(1024),
            mem_available: s.mem_available_kib.saturating_mul(1024),
            mem_cached: s.mem_cached_kib.saturating_mul(1024),
            mem_inactive_file: s.mem_inactive_file_kib.saturating_mul(1024),
            pids: s.pids,
            networks: (s.networks.into_iter())
                .map(|n| NetStats {
                    name: n.name,
                    rx_bytes: n.rx_bytes,
                    rx_packets: n.rx_packets,
                    rx_errors: n.rx_errors,
                    rx_dropped: n.rx_dropped,
                    tx_bytes: n.tx_bytes,
                    tx_packets: n.tx_packets,
                    tx_errors: n.tx_errors,
                    tx_dropped: n.tx_dropped,
                })
                .collect(),
            disks: (s.disks.into_iter())
                .map(|d| DiskStats {
                    major: d.major,
                    minor: d.minor,
                    read_bytes: d.read_bytes,
                    write_bytes: d.write_bytes,
                    reads: d.reads,
                    writes: d.writes,
                })
                .collect(),
        }
    }
}

impl GuestControl {
    /// The guest's counters of its VM now.
    pub async fn stats(&self) -> Result<ContainerStats, String> {
        let version = self.version();
        if version < ARCHIVE_VERSION {
            return Err(format!(
                "the container's tether (protocol version {version}) does not count for docker stats: restart the container first"
            ));
        }
        match self.ask(|seq| HostMsg::Stats { seq }).await? {
            Answer::Stats(s) => Ok(*s),
            _ => Err("the guest answered another question".into()),
        }
    }
}
