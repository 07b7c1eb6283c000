//! This build's appliance files and versions.
//!
//! A VCH runs its own copies of four files, kept in `<vch>/appliance/`:
//! `vic-appliance`, `vic-init`, `vmlinux` and `initramfs.cpio` (VIC's appliance and bootstrap
//! ISOs). `create` copies them from this build; `upgrade` replaces them and keeps the ones
//! it replaced in `appliance.prev/` for `upgrade --rollback`.
//!
//! A version is `SEMVER-BUILD`, BUILD being the first 8 hex digits of a SHA-256 over the
//! four files: two builds of the same release differ, and `inspect`/`upgrade` can tell
//! whether a VCH runs exactly this build.

use std::cmp::Ordering;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

/// The four files, by the names a VCH's appliance directory gives them.
pub const FILES: [&str; 4] = ["vic-appliance", "vic-init", "vmlinux", "initramfs.cpio"];

/// Where this build's files are.
pub struct Parts {
    paths: [PathBuf; 4],
}

impl Parts {
    /// This build's files: the binaries next to vic-machine and the bootstrap in
    /// `bootstrap_dir` (default `../bootstrap` from vic-machine's directory).
    pub fn find(bootstrap_dir: Option<&Path>) -> anyhow::Result<Parts> {
        let exe = std::env::current_exe().context("locating vic-machine")?;
        let bin_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
        let boot = match bootstrap_dir {
            Some(d) => d.to_path_buf(),
            None => bin_dir
                .parent()
                .map(|p| p.join("bootstrap"))
                .unwrap_or_default(),
        };
        let parts = Parts {
            paths: [
                bin_dir.join(FILES[0]),
                bin_dir.join(FILES[1]),
                boot.join(FILES[2]),
                boot.join(FILES[3]),
            ],
        };
        for (i, p) in parts.paths.iter().enumerate() {
            if !p.is_file() {
                if i < 2 {
                    bail!("{} not found next to vic-machine: run `make`", p.display());
                }
                bail!(
                    "bootstrap file {} is missing: run `make` (or pass --bootstrap-dir)",
                    p.display()
                );
            }
        }
        Ok(parts)
    }

    /// The files of a VCH's appliance directory.
    pub fn in_dir(dir: &Path) -> Parts {
        Parts {
            paths: FILES.map(|f| dir.join(f)),
        }
    }

    /// Each file, by its name in a VCH's appliance directory.
    pub fn files(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        FILES
            .into_iter()
            .zip(self.paths.iter().map(PathBuf::as_path))
    }

    /// Copies the four files into `dir` (made if missing).
    pub fn install(&self, dir: &Path) -> anyhow::Result<()> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (from, name) in self.paths.iter().zip(FILES) {
            let to = dir.join(name);
            fs::copy(from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        }
        Ok(())
    }

    /// `SEMVER-BUILD` of these files.
    pub fn version(&self) -> anyhow::Result<String> {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        for (p, name) in self.paths.iter().zip(FILES) {
            h.update(name.as_bytes());
            let mut f = fs::File::open(p).with_context(|| format!("reading {}", p.display()))?;
            loop {
                let n = f
                    .read(&mut buf)
                    .with_context(|| format!("reading {}", p.display()))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        }
        let digest = h.finalize();
        Ok(format!(
            "{}-{}",
            env!("CARGO_PKG_VERSION"),
            &hex::encode(digest)[..8]
        ))
    }
}

/// This build's version, or the bare release when its files cannot be found.
pub fn installer_version() -> String {
    Parts::find(None)
        .and_then(|p| p.version())
        .unwrap_or_else(|_| env!("CARGO_PKG_VERSION").to_string())
}

/// How a VCH's version stands to this installer's (VIC's upgrade statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeStatus {
    UpToDate,
    Upgradeable,
    /// The VCH runs a newer release than this installer.
    Newer,
}

fn release(v: &str) -> Vec<u64> {
    v.split('-')
        .next()
        .unwrap_or("")
        .split('.')
        .map(|n| n.parse().unwrap_or(0))
        .collect()
}

/// Compares versions: same string → up to date; else by release; a different build of the
/// same release is an upgrade (this build is the one at hand).
pub fn upgrade_status(installer: &str, vch: &str) -> UpgradeStatus {
    if installer == vch {
        return UpgradeStatus::UpToDate;
    }
    match release(installer).cmp(&release(vch)) {
        Ordering::Less => UpgradeStatus::Newer,
        _ => UpgradeStatus::Upgradeable,
    }
}

/// VIC's long upgrade status lines (`inspect`).
pub fn upgrade_status_lines(installer: &str, vch: &str) -> Vec<String> {
    match upgrade_status(installer, vch) {
        UpgradeStatus::UpToDate => vec![
            "Installer has same version as VCH".into(),
            "No upgrade available with this installer version".into(),
        ],
        UpgradeStatus::Upgradeable => vec![
            "Upgrade available".into(),
            format!(
                "Installer has newer version: vic-machine upgrade brings the VCH to {installer}"
            ),
        ],
        UpgradeStatus::Newer => vec![
            "Installer has older version than VCH".into(),
            "No upgrade available with this installer version".into(),
        ],
    }
}

/// VIC's short status (`ls`).
pub fn upgrade_status_short(installer: &str, vch: &str) -> String {
    match upgrade_status(installer, vch) {
        UpgradeStatus::UpToDate => "Up to date".into(),
        UpgradeStatus::Upgradeable => format!("Upgradeable to {installer}"),
        UpgradeStatus::Newer => "VCH has newer version".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_compare_releases_and_builds() {
        use UpgradeStatus::*;
        assert_eq!(upgrade_status("0.1.0-aaaa", "0.1.0-aaaa"), UpToDate);
        assert_eq!(upgrade_status("0.1.0-aaaa", "0.1.0-bbbb"), Upgradeable);
        assert_eq!(upgrade_status("0.1.0-aaaa", "0.1.0"), Upgradeable);
        assert_eq!(upgrade_status("0.2.0-aaaa", "0.1.9-bbbb"), Upgradeable);
        assert_eq!(upgrade_status("0.1.0-aaaa", "0.10.0-bbbb"), Newer);
        assert_eq!(
            upgrade_status_short("0.1.0-aaaa", "0.1.0-aaaa"),
            "Up to date"
        );
    }

    #[test]
    fn the_version_changes_with_any_file() {
        let d = tempfile::tempdir().unwrap();
        for f in FILES {
            fs::write(d.path().join(f), f).unwrap();
        }
        let parts = Parts::in_dir(d.path());
        let v1 = parts.version().unwrap();
        assert!(
            v1.starts_with(concat!(env!("CARGO_PKG_VERSION"), "-")),
            "{v1}"
        );
        assert_eq!(parts.version().unwrap(), v1);
        fs::write(d.path().join("vmlinux"), "other").unwrap();
        assert_ne!(parts.version().unwrap(), v1);
        let copy = d.path().join("copy");
        parts.install(&copy).unwrap();
        assert_eq!(
            Parts::in_dir(&copy).version().unwrap(),
            parts.version().unwrap()
        );
    }
}
