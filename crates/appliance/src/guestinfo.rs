//! `vic-appliance --guestinfo KEY_IMAGE`: the configuration of an appliance VM on vSphere,
//! from its guestinfo ([`vch_config::guestinfo`]). Secrets are opened with the key on the VM's
//! CD-ROM (`KEY_IMAGE`) and written as files only the appliance reads, which the document
//! then names, so the rest of the appliance reads its configuration as on every target.
//!
//! A guestinfo key is read from the environment as `VMX_GUESTINFO_<KEY>` (how vcsim, and
//! cloud-init's guestinfo source, hand it to a guest) or else asked of VMware Tools with
//! `vmware-rpctool "info-get guestinfo.<key>"`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use vch_config::guestinfo::{self as gi, Key};
use vch_config::{ApplianceConfig, BackendConfig};

/// The longest guestinfo value read (the document with its certificates is a few KiB); it is
/// also the most that `backend_local::cmd` reads of a command's output.
const MAX_VALUE: usize = 1 << 20;
/// How long VMware Tools may take to answer.
const RPCTOOL_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

fn env_name(key: &str) -> String {
    format!("VMX_{}", key.to_ascii_uppercase().replace('.', "_"))
}

/// The value of guestinfo `key`, if the VM has one (vSphere removes a key set to nothing).
fn get(key: &str) -> anyhow::Result<Option<String>> {
    Ok(read(key)?.filter(|v| !v.is_empty()))
}

fn read(key: &str) -> anyhow::Result<Option<String>> {
    if let Some(v) = std::env::var_os(env_name(key)) {
        let v = v
            .into_string()
            .map_err(|_| anyhow::anyhow!("{key} is not UTF-8"))?;
        if v.len() > MAX_VALUE {
            bail!("{key} is longer than {MAX_VALUE} bytes");
        }
        return Ok(Some(v));
    }
    // Bounded as every command the appliance runs: in time, and in what is read of it (a
    // value as long as the bound is taken as cut off).
    let mut rpctool = std::process::Command::new("vmware-rpctool");
    rpctool.arg(format!("info-get {key}"));
    let out = match backend_local::cmd::output_within(&mut rpctool, RPCTOOL_LIMIT) {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("running vmware-rpctool"),
    };
    if out.stdout.len() >= MAX_VALUE {
        bail!("{key} is {MAX_VALUE} bytes or longer");
    }
    if !out.status.success() {
        return Ok(None);
    }
    Ok(Some(
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

fn required(key: &str) -> anyhow::Result<String> {
    get(key)?.with_context(|| format!("the VM's guestinfo has no {key}"))
}

/// The key from the first sector of `image` (the CD-ROM, or its file).
fn read_key(image: &Path) -> anyhow::Result<Key> {
    let mut buf = vec![0u8; gi::KEY_IMAGE_LEN];
    let mut f =
        std::fs::File::open(image).with_context(|| format!("opening {}", image.display()))?;
    let mut n = 0;
    while n < buf.len() {
        match f
            .read(&mut buf[n..])
            .with_context(|| format!("reading {}", image.display()))?
        {
            0 => break,
            k => n += k,
        }
    }
    Key::from_image(&buf[..n]).with_context(|| format!("reading the key in {}", image.display()))
}

/// Writes a secret or certificate the document will name, readable by the appliance alone.
fn put(dir: &Path, name: &str, data: &[u8]) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The configuration from guestinfo; `state_dir`, when given, replaces the document's state
/// and image directories (a guest whose disk is mounted elsewhere).
pub fn load(key_image: &Path, state_dir: Option<&Path>) -> anyhow::Result<ApplianceConfig> {
    let key = read_key(key_image)?;
    let mut config = gi::decode_config(&required(gi::CONFIG)?)?;
    if let Some(dir) = state_dir {
        config.state_dir = dir.to_path_buf();
        config.image_store = dir.join("images");
    }
    let dir = config.state_dir.join("guestinfo");
    crate::private_dir(&config.state_dir)?;
    crate::private_dir(&dir)?;
    if let BackendConfig::Vsphere(v) = &mut config.backend {
        let password = key.open(gi::PASSWORD, &required(gi::PASSWORD)?)?;
        v.password_file = put(&dir, "password", &password)?;
    }
    config.settings.registry_ca = match get(gi::REGISTRY_CA)? {
        Some(v) => Some(put(
            &dir,
            "registry-ca.pem",
            &gi::decode(gi::REGISTRY_CA, &v)?,
        )?),
        None => None,
    };
    if let Some(tls) = &mut config.tls {
        let cert = gi::decode(gi::TLS_CERT, &required(gi::TLS_CERT)?)?;
        tls.cert = put(&dir, "server-cert.pem", &cert)?;
        let pem = key.open(gi::TLS_KEY, &required(gi::TLS_KEY)?)?;
        tls.key = put(&dir, "server-key.pem", &pem)?;
        tls.client_cas = match get(gi::TLS_CLIENT_CAS)? {
            Some(v) => vec![put(
                &dir,
                "client-cas.pem",
                &gi::decode(gi::TLS_CLIENT_CAS, &v)?,
            )?],
            None => Vec::new(),
        };
    }
    if let Some(sealed) = &config.settings.ops_password_hash {
        let hash = key.open(gi::OPS_PASSWORD_HASH, sealed)?;
        let hash = String::from_utf8(hash).context("the operator's password hash")?;
        config.settings.ops_password_hash = Some(hash);
    }
    config.check().context("the configuration in guestinfo")?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guestinfo_keys_are_read_under_vmware_tools_environment_names() {
        assert_eq!(env_name(gi::CONFIG), "VMX_GUESTINFO_VIC_CONFIG");
        assert_eq!(env_name(gi::TLS_KEY), "VMX_GUESTINFO_VIC_SECRET_TLS_KEY");
    }

    #[test]
    fn a_key_image_that_is_not_vics_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("cdrom");
        std::fs::write(&img, vec![0u8; 2048]).unwrap();
        assert!(read_key(&img).is_err());
        let key = Key::random();
        std::fs::write(&img, key.key_image()).unwrap();
        let sealed = key.seal(gi::PASSWORD, b"pw");
        assert_eq!(
            read_key(&img).unwrap().open(gi::PASSWORD, &sealed).unwrap(),
            b"pw"
        );
    }
}
