//! ext4 disk images made from directories with e2fsprogs (`mke2fs -d`), for every backend:
//! an image's read-only base disk and a volume's disk. Each is built beside its final name
//! and renamed when complete, so a crash never leaves half a disk under that name.

use std::path::Path;
use std::time::Duration;

use hypervisor::BackendError;
use tokio::process::Command;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// What a directory tree holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TreeSize {
    /// Bytes, each file rounded up to a 4 KiB block.
    pub bytes: u64,
    /// Files, directories and links.
    pub inodes: u64,
}

/// Walks `dir` without following symlinks.
pub fn tree_size(dir: &Path) -> std::io::Result<TreeSize> {
    let mut total = TreeSize::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            total.inodes += 1;
            total.bytes += meta.len().div_ceil(4096) * 4096;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(total)
}

/// The base disk's size and inode count for content of `size`: room to grow (the VM's writes
/// land in its overlay, but they still need free space in the filesystem).
pub fn base_geometry(size: TreeSize) -> (u64, u64) {
    let bytes = (size.bytes * 2).max(size.bytes + GIB);
    let bytes = bytes.div_ceil(MIB) * MIB;
    let inodes = (bytes / 16384).max(size.inodes * 2 + 16384);
    (bytes, inodes)
}

/// Runs a helper program to completion within `timeout`; errors carry its stderr.
pub async fn run(cmd: &mut Command, what: &str, timeout: Duration) -> Result<(), BackendError> {
    cmd.kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().map_err(|e| BackendError::Io {
        context: format!("starting {what}"),
        source: e,
    })?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| BackendError::Failed(format!("{what} did not finish within {timeout:?}")))?
        .map_err(|e| BackendError::Io {
            context: format!("waiting for {what}"),
            source: e,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(BackendError::Failed(format!(
        "{what} failed ({}): {}",
        out.status,
        stderr.trim()
    )))
}

/// Builds `base` from `rootfs` with mke2fs: into a temporary file first, renamed when complete,
/// so a crash never leaves a half-built base disk behind.
pub async fn build(mke2fs: &Path, rootfs: &Path, base: &Path) -> Result<(), BackendError> {
    let root = rootfs.to_path_buf();
    let size = tokio::task::spawn_blocking(move || tree_size(&root))
        .await
        .map_err(|e| BackendError::Failed(format!("measuring the image tree failed: {e}")))?
        .map_err(|e| BackendError::Io {
            context: format!("measuring {}", rootfs.display()),
            source: e,
        })?;
    let (bytes, inodes) = base_geometry(size);
    let tmp = base.with_extension(format!("ext4.tmp-{}", std::process::id()));
    let io = |context: String| move |source| BackendError::Io { context, source };
    let file = std::fs::File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    file.set_len(bytes)
        .map_err(io(format!("sizing {}", tmp.display())))?;
    drop(file);
    let result = run(
        Command::new(mke2fs)
            .args(["-q", "-F", "-t", "ext4", "-m", "0", "-E", "root_owner=0:0"])
            .arg("-N")
            .arg(inodes.to_string())
            .arg("-d")
            .arg(rootfs)
            .arg(&tmp),
        "mke2fs",
        Duration::from_secs(600),
    )
    .await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // On disk before it is named: a crash never leaves a base disk with lost blocks.
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("syncing {}", tmp.display())))?;
    std::fs::rename(&tmp, base).map_err(io(format!("renaming {}", tmp.display())))?;
    if let Some(dir) = base.parent() {
        sync_dir(dir).map_err(io(format!("syncing {}", dir.display())))?;
    }
    Ok(())
}

/// Makes the entries of `dir` (a rename into it) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Makes a volume's disk at `path`: a sparse raw file of `capacity_mib` formatted ext4,
/// holding a copy of `seed` when given; built beside `path` and renamed when complete.
pub async fn create_volume(
    mke2fs: &Path,
    path: &Path,
    capacity_mib: u64,
    seed: Option<&Path>,
) -> Result<(), BackendError> {
    let io = |context: String| move |source| BackendError::Io { context, source };
    if path.exists() {
        return Err(BackendError::Failed(format!(
            "{} exists already",
            path.display()
        )));
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let file = std::fs::File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    file.set_len(capacity_mib * MIB)
        .map_err(io(format!("sizing {}", tmp.display())))?;
    drop(file);
    let mut cmd = Command::new(mke2fs);
    cmd.args(["-q", "-F", "-t", "ext4", "-m", "0", "-E", "root_owner=0:0"]);
    if let Some(seed) = seed {
        cmd.arg("-d").arg(seed);
    }
    let result = run(cmd.arg(&tmp), "mke2fs", Duration::from_secs(600))
        .await
        .map_err(|e| match (e, seed) {
            (BackendError::Failed(m), Some(seed)) if m.contains("Could not allocate") => {
                BackendError::Failed(format!(
                    "the image's content at {} does not fit in {capacity_mib} MiB",
                    seed.display()
                ))
            }
            (e, _) => e,
        });
    // An empty volume is empty, as Docker's are: no `lost+found` for a database's init
    // to trip over (e2fsck makes one again when it needs it).
    let debugfs = mke2fs.with_file_name("debugfs");
    let result = match result {
        Ok(()) if seed.is_none_or(|s| !s.join("lost+found").exists()) => {
            run(
                Command::new(&debugfs)
                    .args(["-w", "-R", "rmdir lost+found"])
                    .arg(&tmp),
                "debugfs",
                Duration::from_secs(60),
            )
            .await
        }
        other => other,
    };
    let result = result.and_then(|()| {
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(format!("syncing {}", tmp.display())))?;
        std::fs::rename(&tmp, path).map_err(io(format!("renaming {}", tmp.display())))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_leaves_room_and_inodes() {
        let (bytes, inodes) = base_geometry(TreeSize {
            bytes: 10 * MIB,
            inodes: 500,
        });
        assert_eq!(bytes, 10 * MIB + GIB);
        assert_eq!(inodes, (10 * MIB + GIB) / 16384);
        let (bytes, inodes) = base_geometry(TreeSize {
            bytes: 3 * GIB,
            inodes: 1_000_000,
        });
        assert_eq!(bytes, 6 * GIB);
        assert_eq!(inodes, 2_016_384);
    }

    #[test]
    fn tree_size_counts_files_in_blocks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), b"x").unwrap();
        std::fs::write(dir.path().join("b"), vec![0u8; 5000]).unwrap();
        std::os::unix::fs::symlink("/nowhere", dir.path().join("link")).unwrap();
        let s = tree_size(dir.path()).unwrap();
        assert_eq!(s.inodes, 4);
        assert!(s.bytes >= 4096 + 8192, "{s:?}");
    }
}
