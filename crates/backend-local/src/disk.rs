//! Disks: the read-only ext4 base disk of an image (built once by [`ext4_image::build`]) and
//! the qcow2 copy-on-write root disk of each VM (O(1) in the image size).

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use ext4_image::{build as build_base, create_volume, run};

use hypervisor::BackendError;
use tokio::process::Command;

/// Removes base disks a crash left half built (`base.ext4.tmp-PID`) under `images`.
pub fn sweep_partial_bases(images: &Path) {
    let Ok(dirs) = std::fs::read_dir(images) else {
        return;
    };
    for dir in dirs.flatten() {
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for f in files.flatten() {
            if f.file_name().to_string_lossy().contains(".ext4.tmp-") {
                tracing::info!(file = %f.path().display(), "removing a base disk a crash left half built");
                if let Err(e) = std::fs::remove_file(f.path()) {
                    tracing::warn!(file = %f.path().display(), "removing it failed: {e}");
                }
            }
        }
    }
}

/// What a VM's root disk is made of.
pub enum Root<'a> {
    /// A copy-on-write child of its image's base disk.
    Overlay(&'a Path),
    /// Empty, of this many GiB (a template's: its guest never mounts it).
    Blank { gib: u64 },
}

/// Creates the VM's root disk.
pub async fn create_root(qemu_img: &Path, root: Root<'_>, disk: &Path) -> Result<(), BackendError> {
    let mut cmd = Command::new(qemu_img);
    cmd.args(["create", "-q", "-f", "qcow2"]);
    match root {
        Root::Overlay(base) => cmd.args(["-F", "raw", "-b"]).arg(base).arg(disk),
        Root::Blank { gib } => cmd.arg(disk).arg(format!("{gib}G")),
    };
    run(&mut cmd, "qemu-img create", Duration::from_secs(30)).await
}

/// Opens the VM's data disks for QEMU, never through a symlink: read-write then read-only
/// for a disk written to, read-only for one that is not (see `qemu::disk_fds`).
pub fn open_disks(
    disks: &[hypervisor::DataDisk],
) -> Result<Vec<std::os::fd::OwnedFd>, BackendError> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = |path: &Path, write: bool| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map(std::os::fd::OwnedFd::from)
            .map_err(|source| BackendError::Io {
                context: format!("opening the volume disk {}", path.display()),
                source,
            })
    };
    let mut fds = Vec::new();
    for d in disks {
        if !d.readonly {
            fds.push(open(&d.path, true)?);
        }
        fds.push(open(&d.path, false)?);
    }
    Ok(fds)
}

/// Paths of one image's files under the backend root.
pub fn base_path(root: &Path, image_id: &str) -> PathBuf {
    root.join("images").join(image_id).join("base.ext4")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_built_base_disks_are_swept_and_built_ones_kept() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("sha256:ab");
        std::fs::create_dir_all(&img).unwrap();
        std::fs::write(img.join("base.ext4"), b"built").unwrap();
        std::fs::write(img.join("base.ext4.tmp-4242"), b"half").unwrap();
        sweep_partial_bases(t.path());
        assert!(img.join("base.ext4").exists());
        assert!(!img.join("base.ext4.tmp-4242").exists());
    }
}
