//! TLS for a VCH's Docker API, in VIC's three modes:
//!
//! | mode        | flag             | the appliance serves | clients need |
//! |-------------|------------------|----------------------|--------------|
//! | `tlsverify` | (default)        | HTTPS                | a certificate chaining to the generated CA, or to `--tls-ca` |
//! | `tls`       | `--no-tlsverify` | HTTPS                | nothing (`docker --tls`) |
//! | `none`      | `--no-tls`       | plain HTTP           | nothing |
//!
//! Files in the certificate directory (`./NAME/`, or `--tls-cert-path`), as VIC names them:
//! `ca.pem` + `ca-key.pem` (the generated CA), `cert.pem` + `key.pem` (a client certificate,
//! tlsverify only), `server-cert.pem` + `server-key.pem`, and `NAME.env`. Keys are mode 0600.
//! The appliance gets its own copies in `<state>/vch/NAME/certs/`.
//!
//! Reuse: when the directory holds a CA from an earlier `create` (both files, the key matching,
//! still valid, made by vic-machine) it is kept, and so is a client certificate that still
//! verifies against it; the server certificate is always made anew. Anything else in the
//! way is replaced, with one line saying why.
//!
//! The modules, in the order a `create` or `configure` uses them:
//!
//! ```text
//!   plan.rs         flags → TlsPlan (every file read and checked; nothing written)
//!   setup.rs        create:    TlsPlan → Writes → files, and TlsSetup (env file, docker line)
//!   reconfigure.rs  configure: record + TlsPlan → Writes (applied with the appliance stopped)
//!   files.rs        Writes: the files to write or remove; CA and client certificate reuse
//!   ping.rs         the readiness ping over TLS
//! ```

mod files;
mod ping;
mod plan;
mod reconfigure;
mod setup;

use std::path::PathBuf;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::certs;

pub use files::Writes;
pub use ping::Readiness;
pub use plan::{plan, TlsPlan};
pub use reconfigure::reconfigure;
pub use setup::{appliance_files, setup, TlsSetup};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const CLIENT_CERT: &str = "cert.pem";
pub const CLIENT_KEY: &str = "key.pem";
pub const SERVER_CERT: &str = "server-cert.pem";
pub const SERVER_KEY: &str = "server-key.pem";
/// In the state directory only: the authorities the appliance checks clients against.
pub const CLIENT_CA: &str = "client-ca.pem";

/// How the Docker API is served; recorded in vch.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain HTTP (`--no-tls`); what a vch.json from before TLS means.
    #[default]
    NoTls,
    /// HTTPS, any client may connect (`--no-tlsverify`).
    NoTlsverify,
    /// HTTPS, clients must present a certificate (the default).
    Tlsverify,
}

impl TlsMode {
    /// The word `ls` shows.
    pub fn label(self) -> &'static str {
        match self {
            TlsMode::NoTls => "none",
            TlsMode::NoTlsverify => "tls",
            TlsMode::Tlsverify => "tlsverify",
        }
    }
}

/// A VCH's TLS as vch.json records it (flattened into the record, so the field names are
/// those of the first release; every field has a default, so older files still load).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TlsRecord {
    /// How the Docker API is served (VCHs from before TLS: plain).
    #[serde(rename = "tls", default)]
    pub mode: TlsMode,
    /// The certificate directory (holding NAME.env), absolute.
    #[serde(default)]
    pub cert_path: Option<PathBuf>,
    /// `--tls-cname`, if given.
    #[serde(default)]
    pub tls_cname: Option<String>,
    /// Whether client certificates chain to the user's `--tls-ca` (no client certificate
    /// was generated).
    #[serde(default)]
    pub tls_user_client_cas: bool,
    /// Whether the server certificate is the user's `--tls-server-cert`.
    #[serde(default)]
    pub tls_own_server_cert: bool,
}

impl TlsRecord {
    /// What `create` made: `plan` carried out as `setup`.
    pub fn created(plan: &TlsPlan, setup: &TlsSetup) -> TlsRecord {
        TlsRecord {
            mode: setup.mode,
            cert_path: Some(setup.dir.clone()),
            tls_cname: plan.cname().map(str::to_string),
            tls_user_client_cas: plan.user_client_cas(),
            tls_own_server_cert: plan.own_server_cert(),
        }
    }

    /// The certificate directory (`./NAME` for records from before it was kept).
    pub fn dir(&self, name: &str) -> PathBuf {
        self.cert_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(name))
    }

    /// How the reports describe it: the env file and the docker command line.
    pub fn described(&self, name: &str) -> TlsSetup {
        let dir = self.dir(name);
        let client_in_dir = self.mode == TlsMode::Tlsverify
            && !self.tls_user_client_cas
            && dir.join(CLIENT_CERT).is_file();
        TlsSetup::described(self.mode, dir, client_in_dir, self.tls_own_server_cert)
    }
}

/// The TLS flags of `create` and `configure`.
#[derive(Debug, Default, Clone)]
pub struct TlsOptions {
    pub no_tls: bool,
    pub no_tlsverify: bool,
    pub cname: Option<String>,
    pub client_cas: Vec<PathBuf>,
    pub server_cert: Option<PathBuf>,
    pub server_key: Option<PathBuf>,
    pub cert_path: Option<PathBuf>,
}

impl TlsOptions {
    pub fn mode(&self) -> TlsMode {
        if self.no_tls {
            TlsMode::NoTls
        } else if self.no_tlsverify {
            TlsMode::NoTlsverify
        } else {
            TlsMode::Tlsverify
        }
    }

    /// Whether any TLS flag was given (for `configure`, which changes only what is asked).
    pub fn any(&self) -> bool {
        self.no_tls
            || self.no_tlsverify
            || self.cname.is_some()
            || !self.client_cas.is_empty()
            || self.server_cert.is_some()
            || self.server_key.is_some()
            || self.cert_path.is_some()
    }

    /// Refuses flags that contradict each other.
    pub fn check(&self) -> anyhow::Result<()> {
        let server_files = self.server_cert.is_some() || self.server_key.is_some();
        if self.no_tls {
            if !self.client_cas.is_empty() {
                bail!("--tls-ca conflicts with --no-tls: client certificates need TLS");
            }
            if server_files {
                bail!("--tls-server-cert/--tls-server-key conflict with --no-tls: drop --no-tls to serve TLS");
            }
            if self.cname.is_some() {
                bail!("--tls-cname conflicts with --no-tls: there is no server certificate");
            }
        }
        if self.no_tlsverify && !self.client_cas.is_empty() {
            bail!("--tls-ca conflicts with --no-tlsverify: --no-tlsverify lets clients in without a certificate");
        }
        if self.server_cert.is_some() != self.server_key.is_some() {
            bail!("--tls-server-cert and --tls-server-key must be given together");
        }
        if self.cname.is_some() && server_files {
            bail!("--tls-cname names the generated server certificate: it conflicts with --tls-server-cert");
        }
        if let Some(c) = &self.cname {
            certs::cname_san(c).map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> TlsOptions {
        TlsOptions::default()
    }

    #[test]
    fn the_default_is_tlsverify() {
        assert_eq!(opts().mode(), TlsMode::Tlsverify);
        let o = TlsOptions {
            no_tlsverify: true,
            ..opts()
        };
        assert_eq!(o.mode(), TlsMode::NoTlsverify);
        let o = TlsOptions {
            no_tls: true,
            no_tlsverify: true,
            ..opts()
        };
        assert_eq!(o.mode(), TlsMode::NoTls);
    }

    #[test]
    fn contradicting_flags_are_refused_with_the_flags_named() {
        let err = |o: TlsOptions| o.check().unwrap_err().to_string();
        let e = err(TlsOptions {
            no_tls: true,
            client_cas: vec!["ca.pem".into()],
            ..opts()
        });
        assert_eq!(
            e,
            "--tls-ca conflicts with --no-tls: client certificates need TLS"
        );
        let e = err(TlsOptions {
            no_tlsverify: true,
            client_cas: vec!["ca.pem".into()],
            ..opts()
        });
        assert!(
            e.starts_with("--tls-ca conflicts with --no-tlsverify"),
            "{e}"
        );
        let e = err(TlsOptions {
            server_cert: Some("c.pem".into()),
            ..opts()
        });
        assert_eq!(
            e,
            "--tls-server-cert and --tls-server-key must be given together"
        );
        let e = err(TlsOptions {
            cname: Some("bad name".into()),
            ..opts()
        });
        assert!(e.contains("neither an IP address nor a DNS name"), "{e}");
        assert!(TlsOptions {
            no_tls: true,
            no_tlsverify: true,
            ..opts()
        }
        .check()
        .is_ok());
    }

    #[test]
    fn old_vch_json_without_a_mode_means_plain_http() {
        let old: TlsRecord = serde_json::from_str("{}").unwrap();
        assert_eq!(old.mode, TlsMode::NoTls);
        assert_eq!(old.dir("v"), PathBuf::from("v"));
        assert_eq!(
            serde_json::to_string(&TlsMode::NoTlsverify).unwrap(),
            "\"no-tlsverify\""
        );
        let v = serde_json::to_value(TlsRecord {
            mode: TlsMode::Tlsverify,
            ..TlsRecord::default()
        })
        .unwrap();
        assert_eq!(v["tls"], "tlsverify", "the first release's field name");
    }
}
