//! `configure`'s TLS flags on vSphere. What changes is decided as on the local target
//! ([`crate::tls::reconfigure`]); only where the appliance's side lives differs. Locally it is
//! files in the VCH's `certs/`; here it is the appliance VM's guestinfo: the server
//! certificate and the client authorities in clear, the server key sealed with the VCH's key
//! (its key image on the datastore), and the TLS record (`vic.tls`: mode, certificate
//! directory, cname) beside them. The certificate directory and NAME.env are on this machine,
//! where `create` left them.
//!
//! A configure keeps what it replaces on the appliance VM (`vic.configure.previous.tls`: the
//! guestinfo values as they were, and the certificate directory's replaced files, sealed as
//! they hold keys), so that an appliance that does not come up with the change, and
//! `configure --rollback`, put both back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use vch_config::guestinfo::{self as gi, Key};
use vch_config::{ApplianceConfig, BackendConfig, TlsFiles};
use vim25::datastore::DatastorePath;
use vim25::Client;

use super::found::Found;
use crate::tls::{self, TlsMode, TlsOptions, TlsRecord, TlsSetup, Writes};

/// The appliance VM's key holding its [`TlsRecord`] as JSON.
pub const RECORD: &str = "vic.tls";
/// The appliance VM's key keeping the TLS a configure replaced ([`Saved`]), for `--rollback`.
pub const PREVIOUS: &str = "vic.configure.previous.tls";
/// The guestinfo keys that make up the appliance's TLS.
const KEYS: [&str; 4] = [gi::TLS_CERT, gi::TLS_KEY, gi::TLS_CLIENT_CAS, RECORD];
/// The most read of the key image.
const KEY_IMAGE_MAX: usize = 64 * 1024;
const TASK: Duration = Duration::from_secs(120);

/// The appliance's TLS at one moment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    /// The values of [`KEYS`] (empty: the VM did not have it).
    pub guestinfo: Vec<(String, String)>,
    /// The certificate directory's files a change replaces (None: it did not exist), as
    /// JSON sealed with the VCH's key.
    files: String,
}

/// A TLS change, decided and not yet made.
pub struct Change {
    /// The new document's `tls`.
    pub doc_tls: Option<TlsFiles>,
    /// The guestinfo values of [`KEYS`] after the change.
    pub guestinfo: Vec<(String, String)>,
    /// The guestinfo values before it, and the files it replaces.
    pub saved: Saved,
    /// The certificate directory's files and NAME.env.
    pub files: Swap,
    /// How clients connect afterwards.
    pub setup: TlsSetup,
    /// One line per change, for the report.
    pub lines: Vec<String>,
}

/// Files on this machine a change writes, and what they held before it.
#[derive(Default)]
pub struct Swap {
    /// What each file becomes (None: removed).
    pub to: BTreeMap<PathBuf, Option<String>>,
    /// What it held (None: it did not exist).
    pub back: BTreeMap<PathBuf, Option<String>>,
}

impl Swap {
    /// `to` for the files of `to`, keeping what they hold now.
    pub fn of(to: BTreeMap<PathBuf, Option<String>>) -> anyhow::Result<Swap> {
        let back = current(to.keys().map(PathBuf::as_path))?;
        Ok(Swap { to, back })
    }

    pub fn apply(&self) -> anyhow::Result<()> {
        write(&self.to)
    }

    /// Puts the files back as they were before [`Swap::apply`].
    pub fn undo(&self) -> anyhow::Result<()> {
        write(&self.back)
    }
}

/// The TLS record create wrote, or for a VCH from before it was kept, what its document says
/// (the certificate directory then is `./NAME`, create's default).
pub fn record(extra: &[(String, String)], doc_tls: Option<&TlsFiles>) -> TlsRecord {
    let kept = (extra.iter())
        .find(|(k, v)| k == RECORD && !v.is_empty())
        .and_then(|(_, v)| serde_json::from_str(v).ok());
    kept.unwrap_or_else(|| TlsRecord {
        mode: match doc_tls {
            None => TlsMode::NoTls,
            Some(t) if t.client_cas.is_empty() => TlsMode::NoTlsverify,
            Some(_) => TlsMode::Tlsverify,
        },
        ..TlsRecord::default()
    })
}

/// The VCH's sealing key, from its key image on the datastore.
pub async fn key(client: &Client, found: &Found) -> anyhow::Result<Key> {
    let (Some(dir), Some(dc)) = (&found.dir, datacenter(found)) else {
        bail!("the VCH's directory on the datastore is not known: its key cannot be read");
    };
    let image = DatastorePath::new(&dir.datastore, &format!("{}/appliance-key.img", dir.path));
    let bytes = client
        .download(dc, &image, KEY_IMAGE_MAX, TASK)
        .await
        .with_context(|| format!("reading the VCH's key image {image}"))?;
    Key::from_image(&bytes).with_context(|| format!("reading the key in {image}"))
}

fn datacenter(found: &Found) -> Option<&str> {
    match &found.doc.as_ref()?.backend {
        BackendConfig::Vsphere(v) => Some(&v.datacenter),
        BackendConfig::Local { .. } => None,
    }
}

/// Decides the change `opts` asks of the VCH `found` (None: no TLS flag given).
pub fn decide(
    found: &Found,
    doc: &ApplianceConfig,
    extra: &[(String, String)],
    key: &Key,
    opts: &TlsOptions,
) -> anyhow::Result<Option<Change>> {
    let old = record(extra, doc.tls.as_ref());
    let value = |k: &str| {
        (extra.iter())
            .find(|(key, v)| key == k && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    // The appliance's side as the local target keeps it, for the decision to read.
    let state = tempfile::tempdir().context("making a directory for the certificates")?;
    for (k, file) in [
        (gi::TLS_CERT, tls::SERVER_CERT),
        (gi::TLS_CLIENT_CAS, tls::CLIENT_CA),
    ] {
        if let Some(v) = value(k) {
            std::fs::write(state.path().join(file), gi::decode(k, v)?)
                .context("writing a certificate")?;
        }
    }
    let docker_host = format!("tcp://{}", doc.listen);
    let Some(r) = tls::reconfigure(&old, &found.name, &docker_host, state.path(), opts)? else {
        return Ok(None);
    };
    let mut guestinfo = values(extra);
    let mut set = |k: &str, v: String| {
        if let Some(e) = guestinfo.iter_mut().find(|(key, _)| key == k) {
            e.1 = v;
        }
    };
    let mut files = BTreeMap::new();
    for (path, contents) in r.writes.entries() {
        let Ok(name) = path.strip_prefix(state.path()) else {
            files.insert(path.to_path_buf(), contents.map(str::to_string));
            continue;
        };
        let text = contents.unwrap_or_default().as_bytes();
        match name.to_str() {
            Some(tls::SERVER_CERT) => set(gi::TLS_CERT, gi::encode(text)),
            Some(tls::SERVER_KEY) => set(gi::TLS_KEY, key.seal(gi::TLS_KEY, text)),
            Some(tls::CLIENT_CA) if contents.is_some() => set(gi::TLS_CLIENT_CAS, gi::encode(text)),
            Some(tls::CLIENT_CA) => set(gi::TLS_CLIENT_CAS, String::new()),
            // The CA stays on this machine: the appliance does not sign anything.
            _ => {}
        }
    }
    let record = serde_json::to_string(&r.record).context("writing the TLS record")?;
    set(RECORD, record);
    let files = Swap::of(files)?;
    let saved = Saved {
        guestinfo: values(extra),
        files: seal_files(key, &files.back)?,
    };
    Ok(Some(Change {
        doc_tls: doc_tls(r.record.mode),
        guestinfo,
        saved,
        files,
        setup: r.setup,
        lines: r.changes,
    }))
}

/// The values of the TLS keys in `extra` (empty: the VM has none).
pub fn values(extra: &[(String, String)]) -> Vec<(String, String)> {
    (KEYS.iter())
        .map(|k| {
            let v = extra
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone());
            (k.to_string(), v.unwrap_or_default())
        })
        .collect()
}

/// The document's `tls` for `mode`: the appliance fills in the files from guestinfo.
pub fn doc_tls(mode: TlsMode) -> Option<TlsFiles> {
    let at = PathBuf::from(super::deploy::PLACEHOLDER);
    tls::appliance_files(mode, &at)
}

impl Saved {
    /// The replaced files, opened with the VCH's key.
    pub fn files(&self, key: &Key) -> anyhow::Result<BTreeMap<PathBuf, Option<String>>> {
        let json = key
            .open(PREVIOUS, &self.files)
            .context("opening the saved certificate files")?;
        serde_json::from_slice(&json).context("reading the saved certificate files")
    }
}

/// What `paths` hold now (None: absent).
fn current<'a>(
    paths: impl IntoIterator<Item = &'a Path>,
) -> anyhow::Result<BTreeMap<PathBuf, Option<String>>> {
    let mut out = BTreeMap::new();
    for p in paths {
        let contents = match std::fs::read_to_string(p) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
        };
        out.insert(p.to_path_buf(), contents);
    }
    Ok(out)
}

/// Writes (or removes) each of `files`.
fn write(files: &BTreeMap<PathBuf, Option<String>>) -> anyhow::Result<()> {
    let mut writes = Writes::default();
    for (p, contents) in files {
        match contents {
            Some(text) => writes.put(p.clone(), text.clone()),
            None => writes.remove(p.clone()),
        }
    }
    writes.apply()
}

fn seal_files(key: &Key, files: &BTreeMap<PathBuf, Option<String>>) -> anyhow::Result<String> {
    let json = serde_json::to_vec(files).context("keeping the replaced files")?;
    Ok(key.seal(PREVIOUS, &json))
}

/// The saved TLS of the last configure, if it kept one.
pub fn saved(extra: &[(String, String)]) -> anyhow::Result<Option<Saved>> {
    match (extra.iter()).find(|(k, v)| k == PREVIOUS && !v.is_empty()) {
        Some((_, v)) => Ok(Some(
            serde_json::from_str(v).context("reading the saved TLS configuration")?,
        )),
        None => Ok(None),
    }
}

/// The record a [`Saved`] holds, for the report of a rollback.
pub fn saved_record(saved: &Saved) -> Option<TlsRecord> {
    (saved.guestinfo.iter())
        .find(|(k, v)| k == RECORD && !v.is_empty())
        .and_then(|(_, v)| serde_json::from_str(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_sealed_open_with_the_same_key_only() {
        let key = Key::random();
        let mut files = BTreeMap::new();
        files.insert(PathBuf::from("/d/key.pem"), Some("secret".to_string()));
        files.insert(PathBuf::from("/d/v.env"), None);
        let saved = Saved {
            guestinfo: vec![],
            files: seal_files(&key, &files).unwrap(),
        };
        assert!(!saved.files.contains("secret"));
        assert_eq!(saved.files(&key).unwrap(), files);
        assert!(saved.files(&Key::random()).is_err());
    }

    #[test]
    fn a_vch_without_a_record_is_read_from_its_document() {
        let r = record(&[], doc_tls(TlsMode::NoTlsverify).as_ref());
        assert_eq!(r.mode, TlsMode::NoTlsverify);
        assert_eq!(r.dir("v"), PathBuf::from("v"));
        assert_eq!(record(&[], None).mode, TlsMode::NoTls);
        let kept = TlsRecord {
            mode: TlsMode::Tlsverify,
            cert_path: Some("/certs".into()),
            ..TlsRecord::default()
        };
        let extra = vec![(RECORD.into(), serde_json::to_string(&kept).unwrap())];
        assert_eq!(record(&extra, doc_tls(TlsMode::Tlsverify).as_ref()), kept);
    }
}
