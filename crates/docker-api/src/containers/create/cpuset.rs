//! `--cpuset-cpus`: the host CPUs a container VM's vCPUs run on (its QEMU is pinned to them),
//! and, unless `--cpus` says otherwise, as many vCPUs as it names. Written and checked as
//! dockerd writes and checks it (`0-3,5`; CPUs the host does not have are refused).

use super::refusal::Refused;

/// The CPUs `spec` names, sorted, without duplicates.
pub fn parse(spec: &str) -> Result<Vec<u32>, Refused> {
    let invalid = || Refused::Invalid(format!("Invalid value {spec} for cpuset cpus"));
    let mut out = Vec::new();
    for part in spec.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let lo: u32 = lo.trim().parse().map_err(|_| invalid())?;
        let hi: u32 = hi.trim().parse().map_err(|_| invalid())?;
        if lo > hi || hi >= 4096 {
            return Err(invalid());
        }
        out.extend(lo..=hi);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// `cpus` as dockerd writes a set (`0-2,5`).
pub fn format(cpus: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        while i + 1 < cpus.len() && cpus[i + 1] == cpus[i] + 1 {
            i += 1;
        }
        parts.push(match cpus[i] {
            end if end == start => start.to_string(),
            end => format!("{start}-{end}"),
        });
        i += 1;
    }
    parts.join(",")
}

/// The CPUs this host lets the appliance run on.
pub fn host_cpus() -> Vec<u32> {
    // SAFETY: an all-zero cpu_set_t is valid; sched_getaffinity writes only into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: as above.
    if unsafe { libc::sched_getaffinity(0, size, &mut set) } != 0 {
        return Vec::new();
    }
    (0..(size * 8) as u32)
        // SAFETY: CPU_ISSET bounds-checks against the set's size.
        .filter(|c| unsafe { libc::CPU_ISSET(*c as usize, &set) })
        .collect()
}

/// The CPUs `spec` names, each one the host has (dockerd's words when not).
pub fn resolve(spec: &str, host: &[u32]) -> Result<Vec<u32>, Refused> {
    let cpus = parse(spec)?;
    if cpus.iter().any(|c| !host.contains(c)) {
        return Err(Refused::Invalid(format!(
            "Requested CPUs are not available - requested {spec}, available: {}",
            format(host)
        )));
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_read_and_write_as_dockerds() {
        assert_eq!(parse("0-2,5,1").unwrap(), [0, 1, 2, 5]);
        assert_eq!(format(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(
            parse("1-x").unwrap_err().to_string(),
            "Invalid value 1-x for cpuset cpus"
        );
        assert!(parse("3-1").is_err() && parse("").is_err());
        assert_eq!(
            resolve("0-9", &[0, 1]).unwrap_err().to_string(),
            "Requested CPUs are not available - requested 0-9, available: 0-1"
        );
        assert_eq!(resolve("1", &[0, 1]).unwrap(), [1]);
        assert!(!host_cpus().is_empty());
    }
}
