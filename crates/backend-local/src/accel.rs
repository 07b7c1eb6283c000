//! Choosing the accelerator (KVM or TCG) and the facts TCG needs (host TSC frequency).

use std::fmt;
use std::path::Path;

/// How QEMU runs guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// The `-accel` value.
    pub fn as_qemu(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// Parses `kvm` / `tcg` (the `VIC_ACCEL` values).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "kvm" => Some(Accel::Kvm),
            "tcg" => Some(Accel::Tcg),
            _ => None,
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG",
        })
    }
}

/// The accelerator this host supports, and why.
pub fn detect() -> (Accel, String) {
    if Path::new("/sys/module/kvm_pvm").exists() {
        return (
            Accel::Tcg,
            "/dev/kvm is kvm_pvm, which does not boot a stock kernel".into(),
        );
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => (Accel::Kvm, "/dev/kvm is usable".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Accel::Tcg, "no /dev/kvm".into()),
        Err(e) => (Accel::Tcg, format!("/dev/kvm is not usable: {e}")),
    }
}

/// The host TSC frequency in kHz, from `/sys/devices/system/cpu/cpu0/tsc_freq_khz` when the
/// kernel exports it, else the "cpu MHz" of /proc/cpuinfo.
pub fn tsc_khz() -> Option<u64> {
    if let Ok(s) = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/tsc_freq_khz") {
        if let Ok(k) = s.trim().parse() {
            return Some(k);
        }
    }
    cpuinfo_khz(&std::fs::read_to_string("/proc/cpuinfo").ok()?)
}

/// The first "cpu MHz" of a /proc/cpuinfo text, in kHz.
pub fn cpuinfo_khz(cpuinfo: &str) -> Option<u64> {
    let line = cpuinfo.lines().find(|l| l.starts_with("cpu MHz"))?;
    let mhz: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
    (mhz > 0.0).then(|| (mhz * 1000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_mhz_becomes_khz() {
        let text = "processor\t: 0\nmodel name\t: X\ncpu MHz\t\t: 2596.152\ncache size\t: 1 KB\n";
        assert_eq!(cpuinfo_khz(text), Some(2_596_152));
        assert_eq!(cpuinfo_khz("processor : 0\n"), None);
        assert_eq!(cpuinfo_khz("cpu MHz : junk\n"), None);
    }

    #[test]
    fn accel_names_parse() {
        assert_eq!(Accel::parse("KVM"), Some(Accel::Kvm));
        assert_eq!(Accel::parse(" tcg "), Some(Accel::Tcg));
        assert_eq!(Accel::parse("hvf"), None);
    }
}
