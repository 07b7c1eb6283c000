//! [`Storage`]: what a VCH's storage holds, and its quota (`--storage-quota`).
//!
//! VIC's quota covers the VCH's whole storage; here that is three parts, measured so that a
//! check costs a directory walk of a few files per container, not a walk of every image:
//!
//! | part       | measured as |
//! |------------|-------------|
//! | images     | the image store's own count ([`imagec::store::ImageStore::usage`]): each image's unpacked size, plus every blob kept |
//! | containers | blocks allocated under the container directories: the backend's disks (each VM's copy-on-write disk and the base disks they share), records and logs |
//! | volumes    | blocks allocated under the volume stores' directories |
//!
//! When it is checked, and what is refused (VIC's words, from its engine backends):
//!
//! | operation | refused when | message |
//! |-----------|--------------|---------|
//! | pull, load, import | usage is over the quota already; the manifest's blob sizes, or the unpacked image, would take it over | `Storage quota exceeds. Storage quota: 1GB, image storage usage: …GB, container storage usage: …GB[, storage reservation: …GB]` |
//! | `docker create` | usage is over the quota | the same, without the reservation |
//!
//! The reservation is what the refused operation would have added. Volume usage, which VIC
//! did not count, is named in the message only when there is some.

use std::io;
use std::path::{Path, PathBuf};

const GIB: f64 = (1u64 << 30) as f64;

/// A volume store: a label (what `docker volume create --opt VolumeStore=` names) and the
/// directory that holds its volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeStore {
    pub label: String,
    pub dir: PathBuf,
}

/// Bytes each part of the VCH's storage holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub images: u64,
    pub containers: u64,
    pub volumes: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.images + self.containers + self.volumes
    }
}

/// The quota refuses an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// Storage quota exceeds (VIC's words).
    #[error(
        "Storage quota exceeds. Storage quota: {}GB, image storage usage: {:.3}GB, container storage usage: {:.3}GB{}{}",
        quota >> 30,
        gb(usage.images),
        gb(usage.containers),
        match usage.volumes {
            0 => String::new(),
            v => format!(", volume storage usage: {:.3}GB", gb(v)),
        },
        match reservation {
            0 => String::new(),
            r => format!(", storage reservation: {:.3}GB", gb(*r)),
        }
    )]
    Exceeded {
        quota: u64,
        usage: Usage,
        reservation: u64,
    },
}

fn gb(bytes: u64) -> f64 {
    bytes as f64 / GIB
}

/// The VCH's storage: where container and volume data live, and the quota over all of it.
#[derive(Debug, Clone, Default)]
pub struct Storage {
    /// Bytes; `None` is unlimited.
    quota: Option<u64>,
    /// Directories holding container data (disks, records, logs).
    container_dirs: Vec<PathBuf>,
    volume_stores: Vec<VolumeStore>,
}

impl Storage {
    /// A quota of 0 bytes means unlimited, as in VIC.
    pub fn new(
        quota_bytes: Option<u64>,
        container_dirs: Vec<PathBuf>,
        volume_stores: Vec<VolumeStore>,
    ) -> Storage {
        Storage {
            quota: quota_bytes.filter(|q| *q > 0),
            container_dirs,
            volume_stores,
        }
    }

    /// The quota in bytes, if there is one.
    pub fn quota(&self) -> Option<u64> {
        self.quota
    }

    pub fn volume_stores(&self) -> &[VolumeStore] {
        &self.volume_stores
    }

    /// What each part holds now, given what the image store holds (`images`).
    pub fn usage(&self, images: u64) -> Usage {
        let sum = |dirs: &mut dyn Iterator<Item = &Path>| dirs.map(allocated).sum();
        Usage {
            images,
            containers: sum(&mut self.container_dirs.iter().map(PathBuf::as_path)),
            volumes: sum(&mut self.volume_stores.iter().map(|v| v.dir.as_path())),
        }
    }

    /// Refuses adding `adding` bytes to `usage` when that goes over the quota (with nothing
    /// to add: when `usage` is over it already).
    pub fn check(&self, usage: Usage, adding: u64) -> Result<(), QuotaError> {
        match self.quota {
            Some(quota) if usage.total().saturating_add(adding) > quota => {
                Err(QuotaError::Exceeded {
                    quota,
                    usage,
                    reservation: adding,
                })
            }
            _ => Ok(()),
        }
    }
}

impl imagec::store::Budget for Storage {
    fn admit(&self, held: u64, adding: u64) -> Result<(), String> {
        if self.quota.is_none() {
            return Ok(());
        }
        self.check(self.usage(held), adding)
            .map_err(|e| e.to_string())
    }
}

/// Bytes allocated to files and directories under `dir` (as `du` counts them: sparse
/// disks by what they hold); 0 when it does not exist. Symlinks are not followed.
fn allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::debug!(dir = %d.display(), "not counted: {e}");
                continue;
            }
        };
        // Files may go while they are counted (a container removed): skip those.
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use imagec::store::Budget;

    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn refusals_use_vics_words() {
        let s = Storage::new(Some(GIB), vec![], vec![]);
        let usage = Usage {
            images: 3 * MIB,
            containers: GIB - 4 * MIB,
            volumes: 0,
        };
        assert!(s.check(usage, 0).is_ok());
        assert!(s.check(usage, MIB).is_ok(), "exactly the quota is not over");
        assert_eq!(
            s.check(usage, 2 * MIB).unwrap_err().to_string(),
            "Storage quota exceeds. Storage quota: 1GB, image storage usage: 0.003GB, container storage usage: 0.996GB, storage reservation: 0.002GB"
        );
        let over = Usage {
            volumes: 512 * MIB,
            ..usage
        };
        assert_eq!(
            s.check(over, 0).unwrap_err().to_string(),
            "Storage quota exceeds. Storage quota: 1GB, image storage usage: 0.003GB, container storage usage: 0.996GB, volume storage usage: 0.500GB"
        );
    }

    #[test]
    fn no_quota_or_zero_means_unlimited() {
        let big = Usage {
            images: u64::MAX / 2,
            ..Usage::default()
        };
        for s in [
            Storage::new(None, vec![], vec![]),
            Storage::new(Some(0), vec![], vec![]),
        ] {
            assert_eq!(s.quota(), None);
            assert!(s.check(big, u64::MAX / 2).is_ok());
            assert!(s.admit(u64::MAX / 2, 1).is_ok());
        }
    }

    #[test]
    fn usage_counts_allocated_blocks_not_sparse_sizes() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let (containers, volumes) = (d.path().join("vms"), d.path().join("vol"));
        std::fs::create_dir_all(containers.join("vms/c1")).unwrap();
        std::fs::create_dir_all(&volumes).unwrap();
        // A sparse disk of 1 GiB holding 1 MiB.
        let disk = std::fs::File::create(containers.join("vms/c1/disk.qcow2")).unwrap();
        disk.set_len(GIB).unwrap();
        (&disk).write_all(&vec![1u8; MIB as usize]).unwrap();
        disk.sync_all().unwrap();
        std::fs::write(volumes.join("data"), vec![2u8; 3 * MIB as usize]).unwrap();
        let s = Storage::new(
            Some(GIB),
            vec![containers, d.path().join("missing")],
            vec![VolumeStore {
                label: "default".into(),
                dir: volumes,
            }],
        );
        let u = s.usage(7);
        assert_eq!(u.images, 7);
        assert!(
            (MIB..2 * MIB).contains(&u.containers),
            "the disk's blocks, not its size: {u:?}"
        );
        assert!((3 * MIB..4 * MIB).contains(&u.volumes), "{u:?}");
        // As the image store's budget: what it holds plus what the rest holds.
        assert!(s.admit(GIB - 5 * MIB, 0).is_ok());
        let err = s.admit(GIB - MIB, 0).unwrap_err();
        assert!(err.starts_with("Storage quota exceeds. Storage quota: 1GB, image storage usage: 0.999GB, container storage usage: 0.001GB, volume storage usage: 0.003GB"), "{err}");
    }
}
