//! The TLS flags turned into a [`TlsPlan`]: every file they name read and checked, before
//! `create` or `configure` changes anything.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{TlsMode, TlsOptions};
use crate::certs::{self, PemPair};
use crate::output::info;

/// What the flags point at, read and checked.
pub struct TlsPlan {
    pub mode: TlsMode,
    /// The certificate directory (also where NAME.env goes).
    pub dir: PathBuf,
    pub(super) cname: Option<String>,
    /// The `--tls-ca` files, as one PEM bundle.
    pub(super) client_cas: Option<String>,
    /// `--tls-server-cert` and `--tls-server-key`.
    pub(super) server: Option<PemPair>,
}

impl TlsPlan {
    /// Whether client certificates are checked against the user's `--tls-ca`.
    pub fn user_client_cas(&self) -> bool {
        self.client_cas.is_some()
    }
    /// Whether the server certificate is the user's `--tls-server-cert`.
    pub fn own_server_cert(&self) -> bool {
        self.server.is_some()
    }
    pub fn cname(&self) -> Option<&str> {
        self.cname.as_deref()
    }
}

fn read_text(path: &Path, what: &str) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("Failed to load {what} {}", path.display()))
}

/// Checks the flags and reads the files they name. The certificate directory is
/// `--tls-cert-path`, else `./NAME`.
pub fn plan(opts: &TlsOptions, name: &str) -> anyhow::Result<TlsPlan> {
    opts.check()?;
    let mut client_cas = None;
    if !opts.client_cas.is_empty() {
        let mut bundle = String::new();
        for f in &opts.client_cas {
            let pem = read_text(f, "authority from file")?;
            let n = certs::check_authorities(&pem).map_err(|e| {
                anyhow::anyhow!("Failed to load authority from file {}: {e}", f.display())
            })?;
            info(format!("Loaded {n} CA certificate(s) from {}", f.display()));
            bundle.push_str(&pem);
            if !bundle.ends_with('\n') {
                bundle.push('\n');
            }
        }
        client_cas = Some(bundle);
    }
    let server = match (&opts.server_cert, &opts.server_key) {
        (Some(cert), Some(key)) => {
            let pair = PemPair {
                cert: read_text(cert, "--tls-server-cert")?,
                key: read_text(key, "--tls-server-key")?,
            };
            let chain = certs::certificates(&pair.cert).map_err(|e| {
                anyhow::anyhow!("Failed to load --tls-server-cert {}: {e}", cert.display())
            })?;
            certs::private_key(&pair.key).map_err(|e| {
                anyhow::anyhow!("Failed to load --tls-server-key {}: {e}", key.display())
            })?;
            certs::keys_match(chain, &pair.key).map_err(|e| {
                anyhow::anyhow!(
                    "--tls-server-key {} does not go with --tls-server-cert {}: {e}",
                    key.display(),
                    cert.display()
                )
            })?;
            info(format!("Loaded server certificate {}", cert.display()));
            Some(pair)
        }
        _ => None,
    };
    Ok(TlsPlan {
        mode: opts.mode(),
        dir: opts
            .cert_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(name)),
        cname: opts.cname.clone(),
        client_cas,
        server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::Ca;

    #[test]
    fn a_server_key_of_another_certificate_is_refused_before_anything_is_made() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let ca = Ca::generate().unwrap();
        let (a, b) = (ca.server(None).unwrap(), ca.server(None).unwrap());
        fs::write(root.join("a.pem"), &a.cert).unwrap();
        fs::write(root.join("b-key.pem"), &b.key).unwrap();
        let o = TlsOptions {
            server_cert: Some(root.join("a.pem")),
            server_key: Some(root.join("b-key.pem")),
            cert_path: Some(root.join("certs")),
            ..TlsOptions::default()
        };
        let err = plan(&o, "x").err().unwrap().to_string();
        assert!(err.contains("does not go with --tls-server-cert"), "{err}");
        let o = TlsOptions {
            server_cert: Some(root.join("missing.pem")),
            ..o
        };
        let err = format!("{:#}", plan(&o, "x").err().unwrap());
        assert!(err.starts_with("Failed to load --tls-server-cert"), "{err}");
        assert!(!root.join("certs").exists());
    }
}
