//! The log bundle an operator sends to support: a `.tar.gz` of the VCH's logs and its
//! configuration with the secrets taken out. The admin page streams it (`/logs.tar.gz`) and
//! `vic-machine debug --bundle FILE` writes the same from the VCH's directory, so it can be
//! had when the appliance is down.
//!
//! ```text
//!   manifest.txt                what is in it, when it was made, what was cut
//!   appliance.log  init.log     the last 8 MiB / 1 MiB
//!   appliance.json vch.json     configuration, every password, secret, token and hash
//!                               replaced by "[redacted]"
//!   containers/ID/console.log   each container VM's console, the last 1 MiB (at most 256)
//! ```

use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// How much of the appliance's log goes in.
pub const APPLIANCE_LOG_MAX: u64 = 8 << 20;
/// How much of vic-init's log and of each console goes in.
pub const OTHER_LOG_MAX: u64 = 1 << 20;
/// Container consoles in one bundle at most.
pub const MAX_CONSOLES: usize = 256;
/// What stands for a secret.
pub const REDACTED: &str = "[redacted]";

/// What goes in a bundle.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The VCH's directory: its logs and configuration documents.
    pub vch_dir: PathBuf,
    /// Each container VM's console log, by container ID.
    pub consoles: Vec<(String, PathBuf)>,
}

/// Writes the bundle of `sources` to `out` (gzip'd tar).
pub fn write(sources: &Sources, out: impl Write) -> std::io::Result<()> {
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut manifest = String::new();
    let _ = writeln!(
        manifest,
        "vic log bundle, made {} by {} {}",
        chrono::Utc::now().to_rfc3339(),
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION")
    );
    let dir = &sources.vch_dir;
    for (name, max) in [
        ("appliance.log", APPLIANCE_LOG_MAX),
        ("init.log", OTHER_LOG_MAX),
    ] {
        add_tail(&mut tar, &mut manifest, &dir.join(name), name, max)?;
    }
    for name in ["appliance.json", "vch.json"] {
        match std::fs::read(dir.join(name)) {
            Ok(raw) => {
                let data = redact_document(&raw);
                add(&mut tar, name, &data)?;
                let _ = writeln!(manifest, "{name}: secrets redacted");
            }
            Err(e) => {
                let _ = writeln!(manifest, "{name}: not included ({e})");
            }
        }
    }
    for (id, path) in sources.consoles.iter().take(MAX_CONSOLES) {
        let name = format!("containers/{id}/console.log");
        add_tail(&mut tar, &mut manifest, path, &name, OTHER_LOG_MAX)?;
    }
    if sources.consoles.len() > MAX_CONSOLES {
        let _ = writeln!(
            manifest,
            "{} more container consoles left out",
            sources.consoles.len() - MAX_CONSOLES
        );
    }
    add(&mut tar, "manifest.txt", manifest.as_bytes())?;
    tar.into_inner()?.finish()?.flush()
}

fn add<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o600);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
    );
    h.set_cksum();
    tar.append_data(&mut h, name, data)
}

/// Adds the last `max` bytes of `path` as `name`, saying in `manifest` what was cut.
fn add_tail<W: Write>(
    tar: &mut tar::Builder<W>,
    manifest: &mut String,
    path: &Path,
    name: &str,
    max: u64,
) -> std::io::Result<()> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(manifest, "{name}: not included ({e})");
            return Ok(());
        }
    };
    let len = f.metadata()?.len();
    let from = len.saturating_sub(max);
    f.seek(SeekFrom::Start(from))?;
    let mut data = Vec::new();
    f.take(max).read_to_end(&mut data)?;
    add(tar, name, &data)?;
    match from {
        0 => writeln!(manifest, "{name}: whole ({len} bytes)"),
        _ => writeln!(manifest, "{name}: the last {max} of {len} bytes"),
    }
    .map_err(std::io::Error::other)
}

/// A configuration document with the value of every key that names a password, secret,
/// token or hash replaced; a document that is not JSON is left out whole.
pub fn redact_document(raw: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(raw) {
        Ok(mut v) => {
            redact(&mut v);
            serde_json::to_vec_pretty(&v).unwrap_or_default()
        }
        Err(e) => format!("not JSON ({e}): left out\n").into_bytes(),
    }
}

fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let k = k.to_ascii_lowercase();
                if ["password", "secret", "token", "hash"]
                    .iter()
                    .any(|s| k.contains(s))
                    && !v.is_null()
                {
                    *v = serde_json::Value::String(REDACTED.into());
                } else {
                    redact(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(gz: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(gz));
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().display().to_string();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (name, data)
            })
            .collect()
    }

    #[test]
    fn a_bundle_has_the_logs_tails_and_no_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut big = b"dropped\n".to_vec();
        big.resize(APPLIANCE_LOG_MAX as usize + 100, b'a');
        std::fs::write(d.join("appliance.log"), &big).unwrap();
        std::fs::write(
            d.join("appliance.json"),
            br#"{"name":"v","admin":{"ops_password_hash":"pbkdf2$1$2$3"},"vsphere":[{"Password":"p","user":"u"}],"registry_token":null}"#,
        )
        .unwrap();
        std::fs::write(d.join("console-a"), b"guest says hi\n").unwrap();
        let sources = Sources {
            vch_dir: d.to_path_buf(),
            consoles: vec![("abc".into(), d.join("console-a"))],
        };
        let mut out = Vec::new();
        write(&sources, &mut out).unwrap();
        let e = entries(&out);
        let get = |n: &str| e.iter().find(|(name, _)| name == n).map(|(_, d)| d.clone());
        let log = get("appliance.log").unwrap();
        assert_eq!(log.len() as u64, APPLIANCE_LOG_MAX);
        assert!(!log.starts_with(b"dropped"));
        let conf = String::from_utf8(get("appliance.json").unwrap()).unwrap();
        assert!(
            !conf.contains("pbkdf2") && !conf.contains("\"p\""),
            "{conf}"
        );
        assert!(
            conf.contains("\"user\": \"u\"") && conf.contains(REDACTED),
            "{conf}"
        );
        assert_eq!(
            get("containers/abc/console.log").unwrap(),
            b"guest says hi\n"
        );
        let manifest = String::from_utf8(get("manifest.txt").unwrap()).unwrap();
        assert!(manifest.contains("init.log: not included"), "{manifest}");
        assert!(manifest.contains("appliance.log: the last"), "{manifest}");
        assert!(get("init.log").is_none());
    }
}
