//! `vic-machine`: the operator's tool for Virtual Container Hosts (VCHs).
//!
//! A VCH on the `local` target is a directory of state plus one `vic-appliance` process that
//! serves the Docker API; every container it runs is a QEMU microvm. `create` lays out the
//! directory (with its own copy of the appliance and bootstrap, so a later upgrade can replace
//! them), starts the appliance detached and waits until it answers; `delete` stops it and its
//! VMs and removes the state.
//!
//! The Docker API is served over mutual TLS unless told otherwise (`tls.rs` has the three
//! modes and the files; `certs.rs` makes and checks the certificates).

mod certs;
mod tls;
mod vch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::tls::TlsOptions;
use crate::vch::{CreateOptions, Layout};

#[derive(Debug, Parser)]
#[command(
    name = "vic-machine",
    version,
    about = "Create and manage Virtual Container Hosts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Common {
    /// Where VCHs live: `local` (this host's QEMU). vSphere targets come later.
    #[arg(long, env = "VIC_MACHINE_TARGET")]
    target: Option<String>,
    /// Name of the VCH (at most 31 characters).
    #[arg(
        long,
        env = "VIC_MACHINE_NAME",
        default_value = "virtual-container-host"
    )]
    name: String,
    /// Directory holding every local VCH's state (default /var/lib/vic as root, else
    /// ~/.local/share/vic).
    #[arg(long, env = "VIC_STATE_ROOT")]
    state_root: Option<PathBuf>,
}

/// How the Docker API is secured. The default is mutual TLS (tlsverify): `create` makes a
/// CA, server and client certificates in the certificate directory.
#[derive(Debug, Args)]
struct TlsArgs {
    /// Serve the Docker API without TLS (plain HTTP: anyone who reaches the port is in).
    #[arg(long)]
    no_tls: bool,
    /// Serve TLS without client authentication (clients use `docker --tls`).
    #[arg(long = "no-tlsverify", visible_alias = "kv")]
    no_tlsverify: bool,
    /// Extra name (FQDN or IP) for the generated server certificate, which is always valid
    /// for 127.0.0.1 and localhost.
    #[arg(long)]
    tls_cname: Option<String>,
    /// PEM certificate authority that client certificates must chain to, instead of a
    /// generated one (no client certificate is generated then); repeatable.
    #[arg(long = "tls-ca")]
    tls_cas: Vec<PathBuf>,
    /// PEM server certificate to use instead of a generated one (with --tls-server-key).
    #[arg(long)]
    tls_server_cert: Option<PathBuf>,
    /// PEM private key of --tls-server-cert.
    #[arg(long)]
    tls_server_key: Option<PathBuf>,
    /// Directory for the certificates and NAME.env; certificates an earlier create left
    /// there are reused when still valid [default: ./NAME].
    #[arg(long)]
    tls_cert_path: Option<PathBuf>,
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

/// The options of `create`.
#[derive(Debug, Args)]
struct CreateArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    tls: TlsArgs,
    /// Registry whose certificate is not verified, or reached over plain HTTP
    /// (host[:port], *.domain or CIDR); repeatable.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// PEM file of a certificate authority for registries with private certificates;
    /// repeatable.
    #[arg(long = "registry-ca")]
    registry_cas: Vec<PathBuf>,
    /// Allow pulls only from these registries (host[:port], *.domain or CIDR; insecure
    /// registries are allowed too); repeatable.
    #[arg(long = "whitelist-registry")]
    whitelist_registries: Vec<String>,
    /// Directory for the VCH's images (default: inside its state directory).
    #[arg(long)]
    image_store: Option<PathBuf>,
    /// How long create may take before it gives up and removes what it made.
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    timeout: Duration,
    /// TCP port of the Docker API on 127.0.0.1 (default: a free one).
    #[arg(long)]
    port: Option<u16>,
    /// Directory with vmlinux and initramfs.cpio (default: next to this binary).
    #[arg(long, env = "VIC_BOOTSTRAP_DIR")]
    bootstrap_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Deploy a VCH.
    Create(Box<CreateArgs>),
    /// Delete a VCH, its container VMs and its state.
    Delete {
        #[command(flatten)]
        common: Common,
        /// Delete even when containers are running.
        #[arg(long)]
        force: bool,
        #[arg(long, default_value = "3m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// List VCHs.
    Ls {
        #[arg(long, env = "VIC_MACHINE_TARGET")]
        target: Option<String>,
        #[arg(long, env = "VIC_STATE_ROOT")]
        state_root: Option<PathBuf>,
    },
    /// Show the version.
    Version,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: use e.g. 90s, 3m, 1h"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("invalid duration {s:?}: use e.g. 90s, 3m, 1h")),
    }
}

fn check_target(target: &Option<String>) -> anyhow::Result<()> {
    match target.as_deref() {
        None => anyhow::bail!("--target is required (local)"),
        Some("local") => Ok(()),
        Some(other) => anyhow::bail!("target {other:?} is not supported yet: use --target local"),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Create(args) => {
            let CreateArgs {
                common,
                tls,
                insecure_registries,
                registry_cas,
                whitelist_registries,
                image_store,
                timeout,
                port,
                bootstrap_dir,
            } = *args;
            check_target(&common.target)?;
            vch::validate_name(&common.name)?;
            let tls = TlsOptions::from(tls);
            tls.check()?;
            let layout = Layout::new(common.state_root, &common.name)?;
            let opts = CreateOptions {
                insecure_registries,
                registry_cas,
                whitelist_registries,
                image_store,
                timeout,
                port,
                bootstrap_dir,
                tls,
            };
            vch::create(&layout, &opts)
        }
        Command::Delete {
            common,
            force,
            timeout,
        } => {
            check_target(&common.target)?;
            let layout = Layout::new(common.state_root, &common.name)?;
            vch::delete(&layout, force, timeout)
        }
        Command::Ls { target, state_root } => {
            check_target(&target)?;
            vch::list(state_root)
        }
        Command::Version => {
            println!("vic-machine version {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vic-machine: {e:#}");
            ExitCode::FAILURE
        }
    }
}
