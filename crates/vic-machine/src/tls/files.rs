//! Certificate files: [`Writes`], the files `create` and `configure` decide to write (or
//! remove) before they touch anything, and the reuse of a CA and client certificate from an
//! earlier create.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{CA_CERT, CA_KEY, CLIENT_CERT, CLIENT_KEY};
use crate::certs::{self, Ca, PemPair};
use crate::output::info;

/// Files to write whole (or remove, `None`), in order. Keys (`*key.pem`) get mode 0600.
#[derive(Debug, Default, Clone)]
pub struct Writes(Vec<(PathBuf, Option<String>)>);

impl Writes {
    /// Writes `contents` to `path` (a later entry for the same path replaces an earlier one).
    pub fn put(&mut self, path: PathBuf, contents: impl Into<String>) {
        self.set(path, Some(contents.into()));
    }

    /// Removes `path` if it exists.
    pub fn remove(&mut self, path: PathBuf) {
        self.set(path, None);
    }

    fn set(&mut self, path: PathBuf, contents: Option<String>) {
        self.0.retain(|(p, _)| *p != path);
        self.0.push((path, contents));
    }

    /// The paths written or removed.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.0.iter().map(|(p, _)| p.as_path())
    }

    /// Each path and what it will hold (None: removed), in order.
    pub fn entries(&self) -> impl Iterator<Item = (&Path, Option<&str>)> {
        self.0.iter().map(|(p, c)| (p.as_path(), c.as_deref()))
    }

    /// What `path` will hold: None when it is not touched, Some(None) when it is removed.
    pub fn pending(&self, path: &Path) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, c)| c.as_deref())
    }

    pub fn extend(&mut self, other: Writes) {
        for (p, c) in other.0 {
            self.set(p, c);
        }
    }

    /// Writes and removes the files, making missing directories (mode 0700).
    pub fn apply(&self) -> anyhow::Result<()> {
        for (path, contents) in &self.0 {
            match contents {
                Some(text) => {
                    if let Some(dir) = path.parent() {
                        make_dir(dir)?;
                    }
                    write(path, text)?;
                }
                None => match fs::remove_file(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(e).with_context(|| format!("removing {}", path.display()))
                    }
                    _ => {}
                },
            }
        }
        Ok(())
    }
}

/// Whether a certificate file holds a private key (all of them are named `*key.pem`).
pub fn is_secret(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with("key.pem"))
}

/// Writes `contents` to `path` through a temporary file renamed into place, so the file is
/// whole or as before; keys get mode 0600 from the start.
pub fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    let secret = is_secret(path);
    if secret {
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    if secret {
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", tmp.display()))?;
    }
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

pub fn make_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Reads a pair of files from an earlier create: None when neither exists.
fn read_pair(dir: &Path, cert: &str, key: &str) -> Result<Option<PemPair>, String> {
    let (c, k) = (dir.join(cert), dir.join(key));
    if !c.exists() && !k.exists() {
        return Ok(None);
    }
    let read = |p: &Path| fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    Ok(Some(PemPair {
        cert: read(&c)?,
        key: read(&k)?,
    }))
}

/// Where certificates are reused from and where they go (the same directory, but for a
/// configure that moves the certificate directory).
#[derive(Debug, Clone, Copy)]
pub struct Dirs<'a> {
    pub from: &'a Path,
    pub to: &'a Path,
}

/// The CA from `dirs.from` when it can be reused, else a new one; either way written to
/// `dirs.to` when not already there. The bool says whether it was reused.
pub fn ca_for(dirs: Dirs<'_>, writes: &mut Writes) -> anyhow::Result<(Ca, bool)> {
    let old = read_pair(dirs.from, CA_CERT, CA_KEY)
        .and_then(|p| p.map(|p| Ca::load(&p.cert, &p.key)).transpose());
    match old {
        Ok(Some(ca)) => {
            info(format!(
                "Loaded CA from {}",
                dirs.from.join(CA_CERT).display()
            ));
            if dirs.from != dirs.to {
                writes.put(dirs.to.join(CA_CERT), ca.pem.cert.clone());
                writes.put(dirs.to.join(CA_KEY), ca.pem.key.clone());
            }
            return Ok((ca, true));
        }
        Ok(None) => {}
        Err(why) => info(format!(
            "Not reusing the CA in {} ({why}): generating a new one",
            dirs.from.display()
        )),
    }
    let ca = Ca::generate().context("generating a CA")?;
    info(format!(
        "Generating CA certificate/key pair - private key in {}",
        dirs.to.join(CA_KEY).display()
    ));
    writes.put(dirs.to.join(CA_CERT), ca.pem.cert.clone());
    writes.put(dirs.to.join(CA_KEY), ca.pem.key.clone());
    Ok((ca, false))
}

/// The client certificate: the one in `dirs.from` when it verifies against a reused CA,
/// else a new one; written to `dirs.to` when not already there.
pub fn client_for(
    dirs: Dirs<'_>,
    ca: &Ca,
    ca_reused: bool,
    writes: &mut Writes,
) -> anyhow::Result<PemPair> {
    if ca_reused {
        let old = read_pair(dirs.from, CLIENT_CERT, CLIENT_KEY).and_then(|p| match p {
            None => Ok(None),
            Some(p) => {
                ca.verify_client(&p.cert)?;
                certs::keys_match(certs::certificates(&p.cert)?, &p.key)?;
                Ok(Some(p))
            }
        });
        match old {
            Ok(Some(pair)) => {
                info(format!(
                    "Loaded client certificate from {}",
                    dirs.from.join(CLIENT_CERT).display()
                ));
                if dirs.from != dirs.to {
                    writes.put(dirs.to.join(CLIENT_CERT), pair.cert.clone());
                    writes.put(dirs.to.join(CLIENT_KEY), pair.key.clone());
                }
                return Ok(pair);
            }
            Ok(None) => {}
            Err(why) => info(format!(
                "Not reusing the client certificate in {} ({why}): generating a new one",
                dirs.from.display()
            )),
        }
    }
    let pair = ca.client().context("generating a client certificate")?;
    info(format!(
        "Generating client certificate/key pair - private key in {}",
        dirs.to.join(CLIENT_KEY).display()
    ));
    writes.put(dirs.to.join(CLIENT_CERT), pair.cert.clone());
    writes.put(dirs.to.join(CLIENT_KEY), pair.key.clone());
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_replace_whole_files_keep_keys_private_and_remove() {
        let d = tempfile::tempdir().unwrap();
        let (cert, key) = (d.path().join("a/cert.pem"), d.path().join("a/key.pem"));
        let mut w = Writes::default();
        w.put(cert.clone(), "first");
        w.put(cert.clone(), "second");
        w.put(key.clone(), "secret");
        assert_eq!(w.pending(&cert), Some(Some("second")));
        assert_eq!(w.paths().count(), 2);
        w.apply().unwrap();
        assert_eq!(fs::read_to_string(&cert).unwrap(), "second");
        assert_eq!(mode_of(&key), 0o600);
        assert_eq!(mode_of(d.path().join("a").as_path()), 0o700);
        let mut w = Writes::default();
        w.remove(cert.clone());
        w.remove(d.path().join("a/never-there.pem"));
        w.apply().unwrap();
        assert!(!cert.exists());
        assert!(fs::read_dir(d.path().join("a"))
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".tmp")));
    }

    #[test]
    fn a_reused_ca_and_client_are_copied_to_a_new_directory() {
        let d = tempfile::tempdir().unwrap();
        let (from, to) = (d.path().join("old"), d.path().join("new"));
        let mut w = Writes::default();
        let dirs = Dirs {
            from: &from,
            to: &from,
        };
        let (ca, reused) = ca_for(dirs, &mut w).unwrap();
        assert!(!reused);
        client_for(dirs, &ca, reused, &mut w).unwrap();
        w.apply().unwrap();

        let mut w = Writes::default();
        let dirs = Dirs {
            from: &from,
            to: &to,
        };
        let (again, reused) = ca_for(dirs, &mut w).unwrap();
        assert!(reused);
        assert_eq!(again.pem.cert, ca.pem.cert);
        let client = client_for(dirs, &again, reused, &mut w).unwrap();
        assert_eq!(
            w.pending(&to.join(CLIENT_CERT)),
            Some(Some(client.cert.as_str()))
        );
        assert_eq!(
            w.pending(&to.join(CA_CERT)),
            Some(Some(ca.pem.cert.as_str()))
        );
    }
}
