//! The TLS flags of `create` and `configure`, as clap reads them, and what they become.

use std::path::PathBuf;

use clap::Args;

use crate::tls::TlsOptions;

/// How the Docker API is secured. The default is mutual TLS (tlsverify): `create` makes a
/// CA, server and client certificates in the certificate directory.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Serve the Docker API without TLS (plain HTTP: anyone who reaches the port is in).
    #[arg(long)]
    pub no_tls: bool,
    /// Serve TLS without client authentication (clients use `docker --tls`).
    #[arg(long = "no-tlsverify", visible_alias = "kv")]
    pub no_tlsverify: bool,
    /// Extra name (FQDN or IP) for the generated server certificate, which is always valid
    /// for 127.0.0.1 and localhost.
    #[arg(long)]
    pub tls_cname: Option<String>,
    /// PEM certificate authority that client certificates must chain to, instead of a
    /// generated one (no client certificate is generated then); repeatable.
    #[arg(long = "tls-ca")]
    pub tls_cas: Vec<PathBuf>,
    /// PEM server certificate to use instead of a generated one (with --tls-server-key).
    #[arg(long)]
    pub tls_server_cert: Option<PathBuf>,
    /// PEM private key of --tls-server-cert.
    #[arg(long)]
    pub tls_server_key: Option<PathBuf>,
    /// Directory for the certificates and NAME.env; certificates an earlier create left
    /// there are reused when still valid [default: ./NAME].
    #[arg(long)]
    pub tls_cert_path: Option<PathBuf>,
}

impl From<TlsArgs> for TlsOptions {
    fn from(a: TlsArgs) -> Self {
        TlsOptions {
            no_tls: a.no_tls,
            no_tlsverify: a.no_tlsverify,
            cname: a.tls_cname,
            client_cas: a.tls_cas,
            server_cert: a.tls_server_cert,
            server_key: a.tls_server_key,
            cert_path: a.tls_cert_path,
        }
    }
}

/// The TLS flags of `configure`: each changes only what it names (see `tls/reconfigure.rs`).
#[derive(Debug, Args)]
pub struct ConfigureTlsArgs {
    /// PEM server certificate to serve from now on (with --tls-server-key).
    #[arg(long)]
    pub tls_server_cert: Option<PathBuf>,
    /// PEM private key of --tls-server-cert.
    #[arg(long)]
    pub tls_server_key: Option<PathBuf>,
    /// Generate a new server certificate from the VCH's CA, valid for 127.0.0.1, localhost
    /// and this name (FQDN, IP or *.domain).
    #[arg(long)]
    pub tls_cname: Option<String>,
    /// Stop checking client certificates: any client may connect over TLS.
    #[arg(long = "no-tlsverify", visible_alias = "kv")]
    pub no_tlsverify: bool,
    /// PEM certificate authority that client certificates must chain to from now on,
    /// replacing the current ones; repeatable.
    #[arg(long = "tls-ca")]
    pub tls_cas: Vec<PathBuf>,
    /// New directory (absent or empty) for the certificates and NAME.env; the VCH's files
    /// are copied there.
    #[arg(long)]
    pub tls_cert_path: Option<PathBuf>,
}

impl From<ConfigureTlsArgs> for TlsOptions {
    fn from(a: ConfigureTlsArgs) -> Self {
        TlsOptions {
            no_tls: false,
            no_tlsverify: a.no_tlsverify,
            cname: a.tls_cname,
            client_cas: a.tls_cas,
            server_cert: a.tls_server_cert,
            server_key: a.tls_server_key,
            cert_path: a.tls_cert_path,
        }
    }
}
