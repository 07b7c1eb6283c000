//! Host-wide claims on the VM uids, so that no two QEMUs on this host share a uid, whichever
//! VCH (and whichever state root) they belong to: two QEMUs with one uid could signal or
//! trace each other, and a guest that broke out of one would reach the other.
//!
//! ```text
//!   /run/vic/uids/.lock        flock'd while a claim is made or taken back
//!   /run/vic/uids/<uid>        "<VM directory>\n": the VM that holds the uid
//! ```
//!
//! A claim is stale, and may be taken, once its VM directory is gone (the VM or its whole VCH
//! was deleted, even by hand) or its `vm.json` names another uid. A directory without
//! `vm.json` is a VM being created: its claim holds. The directory is on tmpfs: no VM
//! outlives a reboot, and neither do claims.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where the claims live unless configured otherwise.
pub const DEFAULT_DIR: &str = "/run/vic/uids";

/// The claims directory of this host.
#[derive(Debug, Clone)]
pub struct Claims {
    dir: PathBuf,
}

/// The claims directory, locked until dropped.
struct Locked(File);

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: flock on a descriptor this value owns; unlocking cannot fail harmfully.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl Claims {
    pub fn new(dir: PathBuf) -> Claims {
        Claims { dir }
    }

    fn lock(&self) -> io::Result<Locked> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.dir.join(".lock"))?;
        // SAFETY: flock on a descriptor `f` owns; it blocks only while another appliance
        // writes a claim (microseconds).
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Locked(f))
    }

    /// Claims the first of `candidates` that no other VM on this host holds, for the VM in
    /// directory `vm`; a uid `vm` holds already is kept.
    pub fn claim(
        &self,
        vm: &Path,
        candidates: impl IntoIterator<Item = u32>,
    ) -> io::Result<Option<u32>> {
        let _locked = self.lock()?;
        for uid in candidates {
            let path = self.dir.join(uid.to_string());
            match fs::read_to_string(&path) {
                Ok(owner) if Path::new(owner.trim_end()) == vm => return Ok(Some(uid)),
                Ok(owner) if holds(Path::new(owner.trim_end()), uid) => continue,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            write_claim(&path, vm)?;
            return Ok(Some(uid));
        }
        Ok(None)
    }

    /// Gives back `uid` if `vm` holds it.
    pub fn release(&self, vm: &Path, uid: u32) -> io::Result<()> {
        let _locked = self.lock()?;
        let path = self.dir.join(uid.to_string());
        match fs::read_to_string(&path) {
            Ok(owner) if Path::new(owner.trim_end()) == vm => fs::remove_file(&path),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Whether the VM in directory `owner` still holds `uid`.
fn holds(owner: &Path, uid: u32) -> bool {
    if !owner.is_dir() {
        return false;
    }
    match fs::read(owner.join("vm.json")) {
        Ok(json) => serde_json::from_slice::<serde_json::Value>(&json)
            .ok()
            .and_then(|v| v.get("uid")?.as_u64())
            .is_none_or(|recorded| recorded == u64::from(uid)),
        // Being created: vm.json comes right after the claim.
        Err(_) => true,
    }
}

fn write_claim(path: &Path, vm: &Path) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(format!("{}\n", vm.display()).as_bytes())?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm_dir(root: &Path, name: &str, uid: Option<u32>) -> PathBuf {
        let d = root.join(name);
        fs::create_dir_all(&d).unwrap();
        if let Some(uid) = uid {
            fs::write(
                d.join("vm.json"),
                format!(r#"{{"id":"{name}","uid":{uid}}}"#),
            )
            .unwrap();
        }
        d
    }

    #[test]
    fn two_vchs_never_share_a_uid() {
        let t = tempfile::tempdir().unwrap();
        let claims = Claims::new(t.path().join("uids"));
        // Two VCHs, two state roots: their own bookkeeping would give both 900005.
        let a = vm_dir(&t.path().join("vch-a"), "x", None);
        let b = vm_dir(&t.path().join("vch-b"), "x", None);
        assert_eq!(claims.claim(&a, [900_005, 900_006]).unwrap(), Some(900_005));
        fs::write(a.join("vm.json"), r#"{"uid":900005}"#).unwrap();
        assert_eq!(claims.claim(&b, [900_005, 900_006]).unwrap(), Some(900_006));
        assert_eq!(
            claims.claim(&a, [900_005]).unwrap(),
            Some(900_005),
            "a claim is kept by its holder"
        );
        assert_eq!(claims.claim(&b, [900_005]).unwrap(), None, "held");
    }

    #[test]
    fn stale_claims_are_taken_and_releases_only_touch_ones_own() {
        let t = tempfile::tempdir().unwrap();
        let claims = Claims::new(t.path().join("uids"));
        let gone = vm_dir(t.path(), "gone", Some(900_001));
        let moved = vm_dir(t.path(), "moved", Some(900_002));
        let me = vm_dir(t.path(), "me", None);
        assert_eq!(claims.claim(&gone, [900_001]).unwrap(), Some(900_001));
        assert_eq!(claims.claim(&moved, [900_002]).unwrap(), Some(900_002));
        fs::remove_dir_all(&gone).unwrap(); // its VCH deleted by hand
        fs::write(moved.join("vm.json"), r#"{"uid":900009}"#).unwrap();
        assert_eq!(claims.claim(&me, [900_001]).unwrap(), Some(900_001));
        assert_eq!(claims.claim(&me, [900_002]).unwrap(), Some(900_002));
        claims.release(&moved, 900_002).unwrap();
        assert!(
            t.path().join("uids/900002").exists(),
            "not moved's any more"
        );
        claims.release(&me, 900_002).unwrap();
        assert!(!t.path().join("uids/900002").exists());
        let mode = fs::metadata(t.path().join("uids")).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o700
        );
    }
}
