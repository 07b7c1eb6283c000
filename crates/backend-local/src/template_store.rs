//! Templates kept in the VCH's state, so that the next appliance (a restart, a `configure`)
//! finds them instead of making them again: the RAM a template's guest touched (its memfd's
//! data, written sparse), its device state, and what it was made from.
//!
//! ```text
//!  root/templates/.saved/<shape>/meta.json   shape, MACs, kernel/initramfs/QEMU, machine
//!  root/templates/.saved/<shape>/ram         the memfd's pages with data (a sparse file)
//!  root/templates/.saved/<shape>/state       the device state
//! ```
//!
//! A saved template is used only if its kernel, initramfs and QEMU binary and the machine
//! (accelerator, TSC frequency) are the ones of this appliance; otherwise it is removed.
//! Written to a hidden directory and renamed, so a crash leaves a whole one or none.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::templates::{memfd, seal, FileId, Shape, Template, MAX_STATE};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    shape: Shape,
    macs: Vec<String>,
    made_from: Vec<FileId>,
    machine: String,
}

/// The saved templates of one VCH.
pub struct Store {
    dir: PathBuf,
    /// The accelerator and TSC frequency a saved template must have been made with.
    machine: String,
}

impl Store {
    pub fn new(dir: PathBuf, machine: String) -> Self {
        Self { dir, machine }
    }

    /// Writes `t` (replacing a saved template of its shape).
    pub fn save(&self, shape: Shape, t: &Template) -> std::io::Result<()> {
        let name = shape.name();
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        copy_data(t.ram_fd(), &File::create(tmp.join("ram"))?)?;
        copy_data(t.state_fd(), &File::create(tmp.join("state"))?)?;
        let meta = Meta {
            shape,
            macs: t.macs.clone(),
            made_from: t.made_from().to_vec(),
            machine: self.machine.clone(),
        };
        std::fs::write(tmp.join("meta.json"), serde_json::to_vec(&meta)?)?;
        File::open(&tmp)?.sync_all()?;
        let dest = self.dir.join(&name);
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&tmp, &dest)
    }

    /// Removes the saved template of `shape`, if any.
    pub fn remove(&self, shape: Shape) {
        let dir = self.dir.join(shape.name());
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => tracing::info!(template = shape.name(), "saved template removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("removing {}: {e}", dir.display()),
        }
    }

    /// The shapes of the saved templates made from `inputs` on this machine; the others
    /// (and half-written ones) are removed.
    pub fn usable(&self, inputs: &[FileId]) -> Vec<Shape> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut shapes = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            let meta = self.meta(&path).filter(|m| m.machine == self.machine);
            match meta {
                Some(m) if m.made_from == inputs && path.ends_with(m.shape.name()) => {
                    shapes.push(m.shape)
                }
                _ => {
                    tracing::info!(template = %path.display(), "removing a saved template this appliance cannot use");
                    let _ = std::fs::remove_dir_all(&path);
                }
            }
        }
        shapes
    }

    fn meta(&self, dir: &Path) -> Option<Meta> {
        let text = std::fs::read(dir.join("meta.json")).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Loads the saved template of `shape` into sealed memfds.
    pub fn load(&self, shape: Shape) -> std::io::Result<Template> {
        let dir = self.dir.join(shape.name());
        let bad = |why: &str| std::io::Error::other(format!("{}: {why}", dir.display()));
        let meta = self.meta(&dir).ok_or_else(|| bad("no meta.json"))?;
        let ram_len = u64::from(shape.memory_mib.max(64)) << 20;
        let ram_file = File::open(dir.join("ram"))?;
        let state_file = File::open(dir.join("state"))?;
        if ram_file.metadata()?.len() != ram_len {
            return Err(bad("its RAM is not the shape's size"));
        }
        let state_len = state_file.metadata()?.len();
        if state_len > MAX_STATE {
            return Err(bad("its state is too large"));
        }
        let to_io = |e: hypervisor::BackendError| std::io::Error::other(e.to_string());
        let ram = memfd(c"vic-template-ram", ram_len).map_err(to_io)?;
        let state = memfd(c"vic-template-state", state_len).map_err(to_io)?;
        copy_data(&ram_file, &File::from(ram.try_clone()?))?;
        copy_data(&state_file, &File::from(state.try_clone()?))?;
        seal(&ram).map_err(to_io)?;
        seal(&state).map_err(to_io)?;
        Ok(Template::new(ram, state, meta.macs, meta.made_from))
    }
}

/// Copies the data of `from` (not its holes) to the same offsets of `to`, and gives `to`
/// the length of `from`.
fn copy_data(from: &impl AsRawFd, to: &File) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let fd = from.as_raw_fd();
    // SAFETY: fstat fills the struct we own on a descriptor we hold.
    let len = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        st.st_size as u64
    };
    to.set_len(len)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos: u64 = 0;
    while pos < len {
        // SAFETY: lseek on a descriptor we hold; ENXIO means no data after `pos`.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break;
            }
            return Err(e);
        }
        // SAFETY: as above; there is always a hole at the end of the file.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let (mut at, end) = (data as u64, (hole as u64).min(len));
        while at < end {
            let n = ((end - at) as usize).min(buf.len());
            // SAFETY: pread into our buffer of at least `n` bytes.
            let got = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), n, at as libc::off_t) };
            if got <= 0 {
                return Err(std::io::Error::last_os_error());
            }
            to.write_all_at(&buf[..got as usize], at)?;
            at += got as u64;
        }
        pos = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;
    use std::os::unix::fs::FileExt;

    fn as_file(fd: &OwnedFd) -> std::io::Result<File> {
        Ok(File::from(fd.try_clone()?))
    }

    #[test]
    fn a_saved_template_loads_with_its_data_and_holes_and_only_for_its_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let shape = Shape {
            memory_mib: 64,
            cpus: 1,
            nics: 1,
        };
        let ram = memfd(c"ram", 64 << 20).unwrap();
        as_file(&ram)
            .unwrap()
            .write_all_at(b"page", 8 << 20)
            .unwrap();
        let state = memfd(c"state", 0).unwrap();
        as_file(&state)
            .unwrap()
            .write_all_at(b"devices", 0)
            .unwrap();
        let kernel = dir.path().join("vmlinux");
        std::fs::write(&kernel, b"k").unwrap();
        let inputs = vec![FileId::of(&kernel).unwrap()];
        let t = Template::new(ram, state, shape.macs(), inputs.clone());
        let store = Store::new(dir.path().join("saved"), "tcg".into());
        store.save(shape, &t).unwrap();
        let saved =
            std::fs::metadata(dir.path().join("saved").join(shape.name()).join("ram")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert!(
            saved.blocks() * 512 < 1 << 20,
            "written sparse: {} blocks",
            saved.blocks()
        );

        assert_eq!(store.usable(&inputs), [shape]);
        store.save(shape, &t).unwrap();
        assert_eq!(store.usable(&inputs), [shape], "saved again over itself");
        let back = store.load(shape).unwrap();
        let mut b = [0u8; 4];
        as_file(back.ram_fd())
            .unwrap()
            .read_exact_at(&mut b, 8 << 20)
            .unwrap();
        assert_eq!(&b, b"page");
        assert_eq!(back.macs, shape.macs());
        assert!(
            as_file(back.ram_fd())
                .unwrap()
                .write_all_at(b"x", 0)
                .is_err(),
            "not sealed"
        );

        // Another machine, or another kernel: removed.
        assert!(Store::new(dir.path().join("saved"), "kvm".into())
            .usable(&inputs)
            .is_empty());
        assert!(store.usable(&inputs).is_empty());
        assert!(!dir.path().join("saved").join(shape.name()).exists());
    }
}
