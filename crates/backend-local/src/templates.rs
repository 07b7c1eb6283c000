//! Booted templates: a container VM is restored from a guest that has already booted, instead
//! of booting its own kernel.
//!
//! A template is made once per VM shape (memory, vCPUs, interfaces) the first time a VM of
//! that shape starts (that VM boots cold meanwhile): a VM is booted until its tether says
//! Hello, waiting for its configuration, and saved. Its RAM is a memfd the appliance holds,
//! sealed against writes once saved; its device state (some 70 KB) is a second one. A clone's
//! QEMU maps the RAM privately (copy on write: the pages no clone has written are in memory
//! once for all of them) and loads the device state (`-incoming`, `x-ignore-shared` so RAM is
//! not in the stream). What a clone must not share with the template or other clones is
//! renewed when it is set up: the clock, the RNG (host entropy, then a forced reseed), its
//! interfaces' MACs (see `hypervisor::Restored`), its hostname; nothing of a container is in
//! a template, which is saved before any setup.
//!
//! A template is also kept in the VCH's state (`template_store.rs`): the next appliance
//! loads it into memfds of its own instead of making it again. A template whose kernel,
//! initramfs or QEMU changed is made again. A VM with volumes or bind mounts boots cold:
//! their devices are not in templates.
//!
//! ```text
//!  root/templates/<shape>/     the template VM while it boots and is saved (removed after)
//!  root/templates/.saved/      the templates kept for the next appliance
//! ```

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hypervisor::BackendError;

use crate::vm::{failed, io_err};

/// The virtual size of a template's root disk, in GiB: its guest read that size when it
/// probed the disk and keeps it, so a clone's root file system must fit in it (its own disk
/// may be smaller: the guest reads only what the file system holds).
pub const ROOT_GIB: u64 = 64;

/// How long a template that failed is not tried again.
const RETRY_AFTER: Duration = Duration::from_secs(300);

/// The most templates a VCH holds at once (each keeps what its guest touched booting, some
/// 30 MiB, in the appliance's memfds): a new shape past it replaces the one least recently
/// used. Containers of many sizes cannot make the appliance hold many templates.
pub const MAX_TEMPLATES: usize = 8;

/// The most shapes remembered (failures included).
const MAX_SLOTS: usize = 64;

/// The most device state a template may save (QEMU's is some 70 KB).
pub const MAX_STATE: u64 = 16 << 20;

/// What a template is made for: VMs of one size and number of interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shape {
    pub memory_mib: u32,
    pub cpus: u32,
    /// Its interfaces, spares included (`LocalBackend::macs`).
    pub nics: usize,
}

impl Shape {
    /// The template directory's name.
    pub fn name(&self) -> String {
        format!("t-{}m-{}c-{}n", self.memory_mib, self.cpus, self.nics)
    }

    /// The MACs of a template's interfaces: fixed, each clone changes them to its own.
    pub fn macs(&self) -> Vec<String> {
        (0..self.nics)
            .map(|i| format!("02:76:69:63:{:02x}:{:02x}", i >> 8, i & 0xff))
            .collect()
    }
}

/// A saved template: its RAM and its device state, both sealed memfds.
#[derive(Debug)]
pub struct Template {
    ram: OwnedFd,
    state: OwnedFd,
    pub macs: Vec<String>,
    /// What it was made from (kernel, initramfs): a change makes it stale.
    made_from: Vec<FileId>,
}

impl Template {
    pub fn new(ram: OwnedFd, state: OwnedFd, macs: Vec<String>, made_from: Vec<FileId>) -> Self {
        Self {
            ram,
            state,
            macs,
            made_from,
        }
    }

    /// Its RAM, as the appliance holds it.
    pub fn ram_fd(&self) -> &OwnedFd {
        &self.ram
    }

    /// Its device state, as the appliance holds it.
    pub fn state_fd(&self) -> &OwnedFd {
        &self.state
    }

    /// What it was made from.
    pub fn made_from(&self) -> &[FileId] {
        &self.made_from
    }

    /// A descriptor of its RAM for a clone's QEMU.
    pub fn ram(&self) -> Result<OwnedFd, BackendError> {
        self.ram
            .try_clone()
            .map_err(io_err("passing a template's RAM".into()))
    }

    /// Its device state, opened anew (a clone reads it from the start).
    pub fn state(&self) -> Result<OwnedFd, BackendError> {
        let path = format!("/proc/self/fd/{}", self.state.as_raw_fd());
        std::fs::File::open(path)
            .map(OwnedFd::from)
            .map_err(io_err("opening a template's device state".into()))
    }
}

/// A file as a template saw it: a change of any part is a new file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileId {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl FileId {
    pub fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(Self {
            len: m.len(),
            modified: m.modified().ok(),
            inode: m.ino(),
        })
    }
}

enum Slot {
    Building,
    /// Made, and when a clone last came from it.
    Ready(Arc<Template>, Instant),
    Failed {
        why: String,
        at: Instant,
    },
}

/// How a VM starts.
pub enum Pick {
    /// Restored from this template.
    Clone(Arc<Template>),
    /// Booted; whether a template for its shape is to be made now, and why it boots.
    Cold { build: Option<Shape>, why: String },
}

/// The templates of one VCH.
pub struct Templates {
    enabled: bool,
    /// The kernel and initramfs templates are made from.
    inputs: Vec<PathBuf>,
    slots: Mutex<HashMap<Shape, Slot>>,
    /// Templates dropped to make room, whose saved copies are to go too.
    evicted: Mutex<Vec<Shape>>,
}

impl Templates {
    pub fn new(enabled: bool, inputs: Vec<PathBuf>) -> Self {
        Self {
            enabled,
            inputs,
            slots: Mutex::default(),
            evicted: Mutex::default(),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<Shape, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the kernel and initramfs are now.
    pub fn inputs(&self) -> Vec<FileId> {
        self.inputs.iter().filter_map(|p| FileId::of(p)).collect()
    }

    /// How a VM of `shape` starts (`Err`: why it cannot be restored whatever templates
    /// there are). A missing, stale or retryable template is marked as being made, and the
    /// caller makes it.
    pub fn pick(&self, shape: Result<Shape, String>) -> Pick {
        if !self.enabled {
            return Pick::Cold {
                build: None,
                why: "templates are off for this VCH".into(),
            };
        }
        let shape = match shape {
            Ok(s) => s,
            Err(why) => return Pick::Cold { build: None, why },
        };
        let inputs = self.inputs();
        let mut slots = self.slots();
        let why = match slots.get_mut(&shape) {
            Some(Slot::Ready(t, used)) if t.made_from == inputs => {
                *used = Instant::now();
                return Pick::Clone(t.clone());
            }
            Some(Slot::Ready(..)) => "its template is stale (the kernel or initramfs changed)",
            Some(Slot::Building) => {
                return Pick::Cold {
                    build: None,
                    why: "its template is being made".into(),
                }
            }
            Some(Slot::Failed { why, at }) if at.elapsed() < RETRY_AFTER => {
                return Pick::Cold {
                    build: None,
                    why: format!("its template failed: {why}"),
                }
            }
            Some(Slot::Failed { .. }) => "its template failed a while ago: trying again",
            None => "no template for its shape yet",
        };
        match make_room(&mut slots, shape) {
            None => {
                return Pick::Cold {
                    build: None,
                    why: format!("{MAX_TEMPLATES} templates are being made"),
                }
            }
            Some(Some(dropped)) => self
                .evicted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(dropped),
            Some(None) => {}
        }
        slots.insert(shape, Slot::Building);
        Pick::Cold {
            build: Some(shape),
            why: format!("{why} (making one)"),
        }
    }

    /// Records a template made, or why it could not be.
    pub fn made(&self, shape: Shape, made: Result<Arc<Template>, BackendError>) {
        let slot = match made {
            Ok(t) => Slot::Ready(t, Instant::now()),
            Err(e) => Slot::Failed {
                why: e.to_string(),
                at: Instant::now(),
            },
        };
        self.slots().insert(shape, slot);
    }

    /// The templates dropped to make room since the last call.
    pub fn take_evicted(&self) -> Vec<Shape> {
        std::mem::take(&mut *self.evicted.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Marks `shape`'s template as being made (loaded from the VCH's state).
    pub fn loading(&self, shape: Shape) {
        self.slots().insert(shape, Slot::Building);
    }

    /// Forgets `shape`: the next VM of it makes its template.
    pub fn forget(&self, shape: Shape) {
        self.slots().remove(&shape);
    }

    /// Drops a template a clone could not be restored from; VMs of its shape boot cold
    /// until it is made again.
    pub fn discard(&self, shape: Shape, why: &BackendError) {
        self.slots().insert(
            shape,
            Slot::Failed {
                why: format!("a clone could not be restored: {why}"),
                at: Instant::now(),
            },
        );
    }

    /// For `docker info`: the start path and how many templates are ready.
    pub fn describe(&self) -> String {
        if !self.enabled {
            return "cold boot (templates are off)".into();
        }
        let slots = self.slots();
        let ready = slots
            .values()
            .filter(|s| matches!(s, Slot::Ready(..)))
            .count();
        let failed = slots.values().find_map(|s| match s {
            Slot::Failed { why, .. } => Some(why.as_str()),
            _ => None,
        });
        match failed {
            Some(why) => format!(
                "restored from booted templates ({ready} ready; cold boot until one is; one failed: {why})"
            ),
            None => format!("restored from booted templates ({ready} ready; cold boot until one is)"),
        }
    }
}

/// Makes room for `shape`'s template: past [`MAX_TEMPLATES`] the least recently used one is
/// dropped (its clones keep their mappings) and returned; `None` when every one is still
/// being made.
fn make_room(slots: &mut HashMap<Shape, Slot>, shape: Shape) -> Option<Option<Shape>> {
    if slots.len() >= MAX_SLOTS {
        slots.retain(|_, s| !matches!(s, Slot::Failed { .. }));
    }
    let held = |s: &Slot| matches!(s, Slot::Ready(..) | Slot::Building);
    let others = slots
        .iter()
        .filter(|(k, s)| **k != shape && held(s))
        .count();
    if others < MAX_TEMPLATES {
        return Some(None);
    }
    let lru = slots
        .iter()
        .filter_map(|(k, s)| match s {
            Slot::Ready(_, used) if *k != shape => Some((*k, *used)),
            _ => None,
        })
        .min_by_key(|(_, used)| *used)
        .map(|(k, _)| k);
    match lru {
        Some(k) => {
            tracing::info!(
                template = k.name(),
                "dropping the template least recently used: {MAX_TEMPLATES} are the most kept"
            );
            slots.remove(&k);
            Some(Some(k))
        }
        None => None,
    }
}

/// The shape of a VM that can be restored from a template, or why it cannot; `base` is its
/// image's base disk.
pub fn shape_of(spec: &crate::vm::VmSpec, nics: usize, base: &Path) -> Result<Shape, String> {
    let len = std::fs::metadata(base).map(|m| m.len()).unwrap_or(u64::MAX);
    if len > ROOT_GIB << 30 {
        return Err(format!("its image's disk is over {ROOT_GIB} GiB"));
    }
    if !spec.disks.is_empty() {
        return Err("it has volumes (their disks are not in templates)".into());
    }
    if !spec.shares.is_empty() {
        return Err("it has bind mounts (their devices are not in templates)".into());
    }
    Ok(Shape {
        memory_mib: spec.memory_mib,
        cpus: spec.cpus,
        nics,
    })
}

/// A sealed-to-be memfd of `len` bytes named `name`.
pub fn memfd(name: &std::ffi::CStr, len: u64) -> Result<OwnedFd, BackendError> {
    use std::os::fd::FromRawFd;
    // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new descriptor
    // or -1.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io_err("creating a memfd".into())(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let file = std::fs::File::from(fd);
    file.set_len(len).map_err(io_err("sizing a memfd".into()))?;
    Ok(OwnedFd::from(file))
}

/// Seals a memfd: no write, no resize, no new seal, for anyone it is passed to.
pub fn seal(fd: &OwnedFd) -> Result<(), BackendError> {
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS takes an int argument on a descriptor we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(failed(format!(
            "sealing a template's memory: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape {
            memory_mib: 256,
            cpus: 1,
            nics: 2,
        }
    }

    fn template(t: &Templates) -> Template {
        let ram = memfd(c"ram", 4096).unwrap();
        let state = memfd(c"state", 0).unwrap();
        Template::new(ram, state, shape().macs(), t.inputs())
    }

    #[test]
    fn a_shape_is_made_once_then_cloned_until_its_inputs_change() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("vmlinux");
        std::fs::write(&kernel, b"one").unwrap();
        let t = Templates::new(true, vec![kernel.clone()]);
        let Pick::Cold { build: Some(s), .. } = t.pick(Ok(shape())) else {
            panic!("the first VM of a shape makes its template")
        };
        assert!(matches!(
            t.pick(Ok(shape())),
            Pick::Cold { build: None, .. }
        ));
        t.made(s, Ok(Arc::new(template(&t))));
        assert!(matches!(t.pick(Ok(shape())), Pick::Clone(_)));
        std::fs::write(&kernel, b"a new kernel").unwrap();
        match t.pick(Ok(shape())) {
            Pick::Cold {
                build: Some(_),
                why,
            } => assert!(why.contains("stale"), "{why}"),
            _ => panic!("a stale template is made again"),
        }
    }

    #[test]
    fn a_failed_template_is_not_retried_at_once_and_off_means_off() {
        let t = Templates::new(true, vec![]);
        let _ = t.pick(Ok(shape()));
        t.made(shape(), Err(failed("no procfs".into())));
        match t.pick(Ok(shape())) {
            Pick::Cold { build: None, why } => assert!(why.contains("no procfs"), "{why}"),
            _ => panic!("retried at once"),
        }
        match t.pick(Err("it has volumes".into())) {
            Pick::Cold { build: None, why } => assert_eq!(why, "it has volumes"),
            _ => panic!(),
        }
        let off = Templates::new(false, vec![]);
        assert!(matches!(
            off.pick(Ok(shape())),
            Pick::Cold { build: None, .. }
        ));
        assert!(off.describe().contains("off"));
    }

    #[test]
    fn many_shapes_keep_at_most_the_templates_last_used() {
        let t = Templates::new(true, vec![]);
        let shape = |m: u32| Shape {
            memory_mib: m,
            cpus: 1,
            nics: 0,
        };
        for m in 0..MAX_TEMPLATES as u32 {
            assert!(matches!(
                t.pick(Ok(shape(m))),
                Pick::Cold { build: Some(_), .. }
            ));
        }
        // All being made: a new shape boots and makes none.
        assert!(matches!(
            t.pick(Ok(shape(99))),
            Pick::Cold { build: None, .. }
        ));
        for m in 0..MAX_TEMPLATES as u32 {
            t.made(shape(m), Ok(Arc::new(template(&t))));
        }
        std::thread::sleep(Duration::from_millis(2));
        for m in 1..MAX_TEMPLATES as u32 {
            assert!(matches!(t.pick(Ok(shape(m))), Pick::Clone(_)));
        }
        // Shape 0 was used least recently: it goes for the new one.
        assert!(matches!(
            t.pick(Ok(shape(99))),
            Pick::Cold { build: Some(_), .. }
        ));
        assert_eq!(t.take_evicted(), [shape(0)]);
        assert!(t.take_evicted().is_empty());
        let last = MAX_TEMPLATES as u32 - 1;
        assert!(matches!(t.pick(Ok(shape(last))), Pick::Clone(_)));
        assert_eq!(
            t.slots()
                .values()
                .filter(|s| !matches!(s, Slot::Failed { .. }))
                .count(),
            MAX_TEMPLATES
        );
    }

    #[test]
    fn sealed_memory_cannot_be_written_and_each_reader_starts_at_zero() {
        use std::io::{Read, Write};
        let fd = memfd(c"state", 0).unwrap();
        std::fs::File::from(fd.try_clone().unwrap())
            .write_all(b"saved")
            .unwrap();
        seal(&fd).unwrap();
        let t = Template::new(memfd(c"ram", 8).unwrap(), fd, vec![], vec![]);
        let mut w = std::fs::File::from(t.state.try_clone().unwrap());
        assert!(w.write_all(b"x").is_err(), "a sealed memfd took a write");
        for _ in 0..2 {
            let mut s = String::new();
            std::fs::File::from(t.state().unwrap())
                .read_to_string(&mut s)
                .unwrap();
            assert_eq!(s, "saved");
        }
        assert_eq!(shape().macs(), ["02:76:69:63:00:00", "02:76:69:63:00:01"]);
    }
}
