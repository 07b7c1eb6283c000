//! A VCH's configuration as it was before a `configure`: the record and every file the
//! configure replaces (the appliance's certificates in `certs/`, the registry CA bundle, the
//! files it writes in the certificate directory, NAME.env). It puts a configure back when
//! the appliance does not come up with it, and is what `configure --rollback` restores.
//!
//! ```text
//!   configure:  capture ──► configure.pending.json ──► change, restart
//!                              │ came up: becomes configure.prev.json (the one kept)
//!                              │ did not: files put back from it, then dropped
//!                              └ vic-machine killed: stays; --rollback uses it first
//!   --rollback: configure.pending.json, else configure.prev.json ──► restore, restart
//!               ──► dropped (rolling back twice needs two configures)
//! ```
//!
//! Files are kept as text (they are PEM, and NAME.env); the snapshot holds keys, so it is
//! mode 0600.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::layout::{Layout, VchConfig};
use crate::settings::registry_ca_path;
use crate::tls::Writes;

const PENDING: &str = "configure.pending.json";
const PREVIOUS: &str = "configure.prev.json";

/// The configuration side of a VCH at one moment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub taken: String,
    /// The record (vch.json) then.
    pub record: VchConfig,
    /// Each file's contents then; None: it did not exist.
    files: BTreeMap<PathBuf, Option<String>>,
}

impl Snapshot {
    /// The record and the files a change would touch: `paths`, everything in the VCH's
    /// `certs/`, and its registry CA bundle.
    pub fn capture<'a>(
        layout: &Layout,
        record: &VchConfig,
        paths: impl IntoIterator<Item = &'a Path>,
    ) -> anyhow::Result<Snapshot> {
        let mut wanted: Vec<PathBuf> = paths.into_iter().map(Path::to_path_buf).collect();
        wanted.push(registry_ca_path(&layout.dir));
        if let Ok(entries) = fs::read_dir(layout.certs_dir()) {
            wanted.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
        let mut files = BTreeMap::new();
        for path in wanted {
            let contents = match fs::read(&path) {
                Ok(raw) => Some(String::from_utf8(raw).map_err(|_| {
                    anyhow::anyhow!(
                        "{} is not a text file: configure keeps PEM files only",
                        path.display()
                    )
                })?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            files.insert(path, contents);
        }
        Ok(Snapshot {
            taken: chrono::Utc::now().to_rfc3339(),
            record: record.clone(),
            files,
        })
    }

    /// The paths it holds.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.keys().map(PathBuf::as_path)
    }

    /// What `path` held (None: it is not in the snapshot; Some(None): it did not exist).
    pub fn file(&self, path: &Path) -> Option<Option<&str>> {
        self.files.get(path).map(|c| c.as_deref())
    }

    /// Puts every file back as it was (a file that did not exist is removed).
    pub fn restore_files(&self) -> anyhow::Result<()> {
        let mut writes = Writes::default();
        for (path, contents) in &self.files {
            match contents {
                Some(text) => writes.put(path.clone(), text.clone()),
                None => writes.remove(path.clone()),
            }
        }
        writes.apply()
    }

    /// Keeps it as the configuration a configure in progress replaces.
    pub fn save_pending(&self, layout: &Layout) -> anyhow::Result<()> {
        let path = layout.dir.join(PENDING);
        let tmp = layout.dir.join(format!("{PENDING}.tmp"));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec(self)?)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// The configure came up: its snapshot becomes the one `--rollback` returns to.
    pub fn promote_pending(layout: &Layout) -> anyhow::Result<()> {
        let (from, to) = (layout.dir.join(PENDING), layout.dir.join(PREVIOUS));
        fs::rename(&from, &to).with_context(|| format!("keeping {}", to.display()))
    }

    /// The configure was put back: its snapshot is not needed.
    pub fn discard_pending(layout: &Layout) {
        let _ = fs::remove_file(layout.dir.join(PENDING));
    }

    /// What `--rollback` restores: the snapshot of an interrupted configure, else the one
    /// of the last configure that came up; with the file it came from.
    pub fn for_rollback(layout: &Layout) -> anyhow::Result<Option<(Snapshot, PathBuf)>> {
        for name in [PENDING, PREVIOUS] {
            let path = layout.dir.join(name);
            match fs::read(&path) {
                Ok(raw) => {
                    let snap = serde_json::from_slice(&raw)
                        .with_context(|| format!("reading {}", path.display()))?;
                    return Ok(Some((snap, path)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            }
        }
        Ok(None)
    }

    /// `current` with this snapshot's configuration (settings, TLS, container networks); what
    /// identifies the VCH and its version (an upgrade since) stays as it is now.
    pub fn configuration_over(&self, current: &VchConfig) -> anyhow::Result<VchConfig> {
        if self.record.name != current.name || self.record.port != current.port {
            bail!(
                "the saved configuration is of another VCH ({}, port {})",
                self.record.name,
                self.record.port
            );
        }
        let mut c = current.clone();
        c.settings = self.record.settings.clone();
        c.tls = self.record.tls.clone();
        c.container_networks = self.record.container_networks.clone();
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::TlsMode;

    fn record(name: &str) -> VchConfig {
        serde_json::from_value(serde_json::json!({
            "name": name, "target": "local", "docker_host": "tcp://127.0.0.1:1", "port": 1,
            "image_store": "/i", "external_image_store": false,
            "created": "", "version": "0.1.0-a", "tls": "tlsverify"
        }))
        .unwrap()
    }

    #[test]
    fn files_come_back_as_they_were_and_new_ones_go() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(Some(d.path().to_path_buf()), "v").unwrap();
        fs::create_dir_all(layout.certs_dir()).unwrap();
        let server = layout.certs_dir().join("server-cert.pem");
        let env = d.path().join("certs/v.env");
        fs::write(&server, "old server").unwrap();
        let snap = Snapshot::capture(&layout, &record("v"), [env.as_path()]).unwrap();
        // What a configure then does.
        fs::write(&server, "new server").unwrap();
        fs::write(layout.certs_dir().join("client-ca.pem"), "new").unwrap();
        fs::create_dir_all(env.parent().unwrap()).unwrap();
        fs::write(&env, "DOCKER_HOST=x").unwrap();
        // Put back.
        snap.save_pending(&layout).unwrap();
        let (again, from) = Snapshot::for_rollback(&layout).unwrap().unwrap();
        assert_eq!(from, layout.dir.join(PENDING));
        let paths: Vec<_> = again.paths().collect();
        assert!(paths.contains(&env.as_path()));
        again.restore_files().unwrap();
        assert_eq!(fs::read_to_string(&server).unwrap(), "old server");
        assert!(!env.exists(), "a file that was not there is removed");
        // client-ca.pem was written after the capture and is not the snapshot's business.
        assert!(layout.certs_dir().join("client-ca.pem").exists());
        assert!(!layout.dir.join("registry-ca.pem").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&from).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "it holds keys");
        Snapshot::promote_pending(&layout).unwrap();
        let (_, from) = Snapshot::for_rollback(&layout).unwrap().unwrap();
        assert_eq!(from, layout.dir.join(PREVIOUS));
    }

    #[test]
    fn a_rollback_restores_the_configuration_and_keeps_the_version() {
        let mut before = record("v");
        before.settings.containers = Some(3);
        let snap = Snapshot {
            taken: String::new(),
            record: before,
            files: BTreeMap::new(),
        };
        let mut now = record("v");
        now.settings.containers = Some(9);
        now.tls.mode = TlsMode::NoTlsverify;
        now.version = "0.2.0-b".into();
        now.container_networks = vec![vch_config::ContainerNetwork {
            name: "routable".into(),
            source: "br0".into(),
            gateway: Some("10.9.0.1/24".into()),
            ip_range: None,
            dns: Vec::new(),
            firewall: Default::default(),
        }];
        let c = snap.configuration_over(&now).unwrap();
        assert_eq!(c.settings.containers, Some(3));
        assert!(
            c.container_networks.is_empty(),
            "a network the configure added goes"
        );
        assert_eq!(c.tls.mode, TlsMode::Tlsverify);
        assert_eq!(c.version, "0.2.0-b", "an upgrade since is kept");
        assert!(snap.configuration_over(&record("w")).is_err());
    }
}
