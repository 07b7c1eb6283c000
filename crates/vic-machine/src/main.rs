//! `vic-machine`: the operator's tool for Virtual Container Hosts (VCHs).
//!
//! A VCH on the `local` target is a directory of state plus one `vic-appliance` process
//! (supervised by `vic-init`) that serves the Docker API; every container it runs is a QEMU
//! microvm. The subcommands, as VIC has them:
//!
//! | command | does | module |
//! |---|---|---|
//! | `create` | lays out the directory (with its own copy of the appliance and bootstrap), starts the appliance, waits until it answers | `create.rs` |
//! | `delete` | stops it and its VMs, removes the state and what it left on the host | `delete.rs`, `host.rs` |
//! | `ls` | lists VCHs with state, version and upgrade status | `list.rs` |
//! | `inspect` / `inspect config` | reports one VCH / prints the create options that reproduce it | `inspect.rs` |
//! | `configure` / `debug` | change settings and certificates (or `--rollback` them) / the log level, restart the appliance | `configure.rs`, `snapshot.rs` |
//! | `upgrade [--rollback]` | swap in this build's appliance files (or the previous ones) | `upgrade.rs` |
//!
//! Shared by them: a VCH's directory, record and operation lock (`layout.rs`), the processes
//! vic-machine starts and watches (`process.rs`), and VIC's way of printing (`output.rs`).
//!
//! `configure`, `upgrade` and `debug` mark the VCH "update in progress" while they run
//! (`progress.rs`; `--reset-progress` clears a mark an interrupted run left).
//!
//! Every start of the appliance goes through `appliance.rs`, which builds its command line
//! from the record (vch.json, `layout::VchConfig`; the settings in `settings.rs`). Container VMs
//! do not depend on the appliance, so configure, debug and upgrade keep them running.
//!
//! The Docker API is served over mutual TLS unless told otherwise (`tls.rs` has the three
//! modes and the files; `certs.rs` makes and checks the certificates).

mod appliance;
mod bridges;
mod certs;
mod cli_tls;
mod configure;
mod container_networks;
mod create;
mod debug_cmd;
mod delete;
mod document;
mod host;
mod inspect;
mod layout;
mod list;
mod output;
mod parts;
mod process;
mod progress;
mod report;
mod settings;
mod snapshot;
mod tls;
mod upgrade;
mod vsphere;
mod vsphere_cli;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cli_tls::{ConfigureTlsArgs, TlsArgs};
use crate::container_networks::ContainerNetworkArgs;
use crate::create::CreateOptions;
use crate::layout::Layout;
use crate::settings::SettingsArgs;
use crate::tls::TlsOptions;

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
    /// Where VCHs live: `local` (this host's QEMU), or a vCenter or ESX host:
    /// `https://[USER[:PASSWORD]@]HOST[:PORT][/DATACENTER]` (so far `create` validates it).
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
    #[command(flatten)]
    credentials: Credentials,
}

/// How vic-machine logs in to a vSphere target (VIC's flags and environment variables). The
/// local target needs none: given anyway (e.g. from a shell set up for vSphere), they are
/// ignored with a warning.
#[derive(Debug, Args)]
struct Credentials {
    /// vSphere user.
    #[arg(long, env = "VIC_MACHINE_USER")]
    user: Option<String>,
    /// vSphere password.
    #[arg(long, env = "VIC_MACHINE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// SHA-1 thumbprint of the vSphere target's certificate.
    #[arg(long, env = "VIC_MACHINE_THUMBPRINT")]
    thumbprint: Option<String>,
}

/// The options of `create`.
#[derive(Debug, Args)]
struct CreateArgs {
    #[command(flatten)]
    common: Common,
    /// Directory for the VCH's images (default: inside its state directory).
    #[arg(long, short = 'i')]
    image_store: Option<PathBuf>,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    tls: TlsArgs,
    /// How long create may take before it gives up and removes what it made.
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    timeout: Duration,
    /// TCP port of the Docker API on 127.0.0.1 (default: a free one).
    #[arg(long)]
    port: Option<u16>,
    /// IPv4 range bridge networks are carved from, a /16 each, the first for the default
    /// `bridge` network (VIC's --bridge-network-range) [default: 172.16.0.0/12].
    #[arg(long, visible_alias = "bnr", value_parser = parse_bridge_range)]
    bridge_network_range: Option<String>,
    #[command(flatten)]
    container_networks: ContainerNetworkArgs,
    /// Directory with vmlinux and initramfs.cpio (default: next to this binary).
    #[arg(long, env = "VIC_BOOTSTRAP_DIR")]
    bootstrap_dir: Option<PathBuf>,
    #[command(flatten)]
    vsphere: vsphere::VsphereArgs,
}

/// The options of `configure`.
#[derive(Debug, Args)]
struct ConfigureArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    tls: ConfigureTlsArgs,
    #[command(flatten)]
    container_networks: ContainerNetworkArgs,
    /// Roll back the VCH's configuration (settings, container networks and certificates) to
    /// before the last configure, or one that was interrupted.
    #[arg(long)]
    rollback: bool,
    /// Reset the UpdateInProgress flag. Warning: do not reset it while another
    /// upgrade/configure runs; use it when one was interrupted.
    #[arg(long)]
    reset_progress: bool,
    /// How long the appliance may take to come back with the new settings.
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    timeout: Duration,
}

/// configure's `--reset-progress` and `--rollback` each come alone.
fn alone(reset_progress: bool, rollback: bool, changes: bool) -> anyhow::Result<()> {
    if reset_progress && (changes || rollback) {
        anyhow::bail!("--reset-progress only resets the UpdateInProgress flag: run configure again, without it, for the other changes");
    }
    if rollback && changes {
        anyhow::bail!("--rollback restores the configuration from before the last configure: give it without settings to change");
    }
    Ok(())
}

impl ConfigureArgs {
    fn run(self) -> anyhow::Result<()> {
        if let Place::Vsphere(t) = place(&self.common.target, &self.common.credentials)? {
            return self.run_vsphere(&t);
        }
        let layout = layout(self.common)?;
        let tls = TlsOptions::from(self.tls);
        let changes = self.settings.any() || tls.any() || self.container_networks.any();
        alone(self.reset_progress, self.rollback, changes)?;
        if self.reset_progress {
            return progress::reset(&layout, "Configure");
        }
        if self.rollback {
            return configure::rollback(&layout, self.timeout);
        }
        configure::configure(
            &layout,
            &configure::ConfigureOptions {
                settings: &self.settings,
                tls: &tls,
                networks: &self.container_networks,
                timeout: self.timeout,
            },
        )
    }
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct InspectArgs {
    #[command(subcommand)]
    command: Option<InspectCommand>,
    #[command(flatten)]
    common: Common,
    /// text (VIC's report) or json.
    #[arg(long, value_enum, default_value = "text")]
    output: report::Output,
}

#[derive(Debug, Subcommand)]
enum InspectCommand {
    /// Print the `vic-machine create` options that make a VCH like this one.
    Config {
        #[command(flatten)]
        common: Common,
        /// raw: the options on one line; verbose: one a line, then the create command.
        #[arg(long, value_enum, default_value = "verbose")]
        format: inspect::Format,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Deploy a VCH.
    #[command(
        after_help = "Examples:\n  vic-machine create --target local --name vch1 --insecure-registry 127.0.0.1:5000\n  vic-machine create --target local --name vch1 --no-tls --ops-user ops --ops-password SECRET\n  vic-machine create --target local --name vch1 --volume-store /srv/volumes:default --memory 8192"
    )]
    Create(Box<CreateArgs>),
    /// Delete a VCH, its container VMs and its state.
    #[command(
        after_help = "Examples:\n  vic-machine delete --target local --name vch1\n  vic-machine delete --target local --name vch1 --force"
    )]
    Delete {
        #[command(flatten)]
        common: Common,
        /// Delete even when containers are running.
        #[arg(long, short = 'f')]
        force: bool,
        #[arg(long, default_value = "3m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// List VCHs.
    #[command(
        after_help = "Examples:\n  vic-machine ls --target local\n  vic-machine ls --target local --output json"
    )]
    Ls {
        #[arg(long, env = "VIC_MACHINE_TARGET")]
        target: Option<String>,
        #[command(flatten)]
        credentials: Credentials,
        #[arg(long, env = "VIC_STATE_ROOT")]
        state_root: Option<PathBuf>,
        /// text (VIC's table) or json.
        #[arg(long, value_enum, default_value = "text")]
        output: report::Output,
    },
    /// Print a shell completion script: `source <(vic-machine completion bash)`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Show a VCH: state, versions, how to connect, settings (`inspect config`: the create
    /// command that reproduces it).
    #[command(
        after_help = "Examples:\n  vic-machine inspect --target local --name vch1\n  vic-machine inspect --target local --name vch1 --output json\n  vic-machine inspect config --target local --name vch1 --format raw"
    )]
    Inspect(InspectArgs),
    /// Change a running VCH's settings and certificates: registries, DNS servers, limits,
    /// volume stores, debug level, TLS; add container networks (--rollback: back to the
    /// configuration before the last configure). The appliance restarts; containers keep running.
    #[command(
        after_help = "Examples:\n  vic-machine configure --target local --name vch1 --insecure-registry 127.0.0.1:5000\n  vic-machine configure --target local --name vch1 --ops-user ops --ops-password SECRET\n  vic-machine configure --target local --name vch1 --rollback"
    )]
    Configure(Box<ConfigureArgs>),
    /// Replace a VCH's appliance and bootstrap with this build's, keeping its containers,
    /// images and volumes (--rollback: back to the previous version).
    #[command(
        after_help = "Examples:\n  vic-machine upgrade --target local --name vch1\n  vic-machine upgrade --target local --name vch1 --rollback"
    )]
    Upgrade {
        #[command(flatten)]
        common: Common,
        /// Upgrade even when the VCH already runs this version.
        #[arg(long, short = 'f')]
        force: bool,
        /// Roll back to the version before the last upgrade.
        #[arg(long)]
        rollback: bool,
        /// Reset the UpdateInProgress flag. Warning: do not reset it while another
        /// upgrade/configure runs; use it when one was interrupted.
        #[arg(long)]
        reset_progress: bool,
        /// How long the new appliance may take to answer.
        #[arg(long, default_value = "3m", value_parser = parse_duration)]
        timeout: Duration,
        /// Directory with vmlinux and initramfs.cpio (default: next to this binary).
        #[arg(long, env = "VIC_BOOTSTRAP_DIR")]
        bootstrap_dir: Option<PathBuf>,
    },
    /// Set the appliance's log level (VIC: enable debug mode), or write the VCH's log bundle.
    #[command(
        after_help = "Examples:\n  vic-machine debug --target local --name vch1 --debug 2\n  vic-machine debug --target local --name vch1 --bundle vch1-logs.tar.gz"
    )]
    Debug {
        #[command(flatten)]
        common: Common,
        /// 0 info, 1 debug (vic's own components), 2 debug (everything), 3 trace; 1 when
        /// neither this nor --bundle is given.
        #[arg(long, short = 'v', value_parser = clap::value_parser!(u8).range(0..=3))]
        debug: Option<u8>,
        /// Write the VCH's log bundle (what its admin page's log bundle holds: logs and the
        /// configuration, secrets redacted) to FILE, .tar.gz; the appliance need not run.
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
        /// Reset the UpdateInProgress flag an interrupted upgrade/configure/debug left.
        #[arg(long)]
        reset_progress: bool,
        #[arg(long, default_value = "3m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Show the version.
    Version,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: use e.g. 500ms, 90s, 3m, 1h"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!(
            "invalid duration {s:?}: use e.g. 500ms, 90s, 3m, 1h"
        )),
    }
}

/// Where a command works: this host, or a vSphere target.
enum Place {
    Local,
    Vsphere(vsphere::Target),
}

fn place(target: &Option<String>, credentials: &Credentials) -> anyhow::Result<Place> {
    match target.as_deref() {
        Some("local") | None => check_target(target, credentials).map(|_| Place::Local),
        Some(t) => vsphere::Target::parse(
            t,
            credentials.user.as_deref(),
            credentials.password.as_deref(),
        )
        .map(Place::Vsphere),
    }
}

fn check_target(target: &Option<String>, credentials: &Credentials) -> anyhow::Result<()> {
    match target.as_deref() {
        None => anyhow::bail!("--target is required (local, or https://HOST for vSphere)"),
        Some("local") => {
            let given: Vec<&str> = [
                ("--user", credentials.user.is_some()),
                ("--password", credentials.password.is_some()),
                ("--thumbprint", credentials.thumbprint.is_some()),
            ]
            .into_iter()
            .filter_map(|(flag, set)| set.then_some(flag))
            .collect();
            if !given.is_empty() {
                output::warn(format!(
                    "{} (or VIC_MACHINE_USER/PASSWORD/THUMBPRINT) do not apply to the local target: ignored",
                    given.join(", ")
                ));
            }
            Ok(())
        }
        Some(other) => {
            anyhow::bail!(
                "{other}: on a vSphere target only `create`, `delete`, `ls`, `inspect`, `configure` and `debug` work so far"
            )
        }
    }
}

/// The VCH a command names, after checking the target and the name.
fn layout(common: Common) -> anyhow::Result<Layout> {
    check_target(&common.target, &common.credentials)?;
    layout::validate_name(&common.name)?;
    Layout::new(common.state_root, &common.name)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Create(args) => {
            if let Place::Vsphere(target) = place(&args.common.target, &args.common.credentials)? {
                return args.run_vsphere(&target);
            }
            let CreateArgs {
                common,
                image_store,
                settings,
                tls,
                timeout,
                port,
                bootstrap_dir,
                bridge_network_range,
                container_networks,
                vsphere,
            } = *args;
            vsphere.refuse_on_local()?;
            let layout = layout(common)?;
            let tls = TlsOptions::from(tls);
            tls.check()?;
            let opts = CreateOptions {
                bridge_network_range,
                container_networks: container_networks.networks()?,
                settings,
                image_store,
                timeout,
                port,
                bootstrap_dir,
                tls,
            };
            create::create(&layout, &opts)
        }
        Command::Delete {
            common,
            force,
            timeout,
        } => {
            if let Place::Vsphere(target) = place(&common.target, &common.credentials)? {
                let thumbprint = common.credentials.thumbprint.as_deref();
                return vsphere::delete(&target, thumbprint, &common.name, force);
            }
            delete::delete(&layout(common)?, force, timeout)
        }
        Command::Ls {
            target,
            state_root,
            credentials,
            output,
        } => {
            if let Place::Vsphere(t) = place(&target, &credentials)? {
                if output == report::Output::Json {
                    anyhow::bail!("--output json on a vSphere target is not implemented yet");
                }
                return vsphere::ls(&t, credentials.thumbprint.as_deref());
            }
            check_target(&target, &credentials)?;
            list::list(state_root, output)
        }
        Command::Completion { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "vic-machine", &mut std::io::stdout());
            Ok(())
        }
        Command::Inspect(args) => match args.command {
            None => {
                let common = args.common;
                if let Place::Vsphere(t) = place(&common.target, &common.credentials)? {
                    if args.output == report::Output::Json {
                        anyhow::bail!("--output json on a vSphere target is not implemented yet");
                    }
                    let thumbprint = common.credentials.thumbprint.as_deref();
                    return vsphere::inspect(&t, thumbprint, &common.name);
                }
                match args.output {
                    report::Output::Json => report::print(&report::report(&layout(common)?)?),
                    report::Output::Text => inspect::inspect(&layout(common)?),
                }
            }
            Some(InspectCommand::Config { common, format }) => {
                inspect::config(&layout(common)?, format)
            }
        },
        Command::Configure(args) => args.run(),
        Command::Upgrade {
            common,
            force,
            rollback,
            reset_progress,
            timeout,
            bootstrap_dir,
        } => {
            if let Place::Vsphere(target) = place(&common.target, &common.credentials)? {
                let thumbprint = common.credentials.thumbprint.as_deref();
                if reset_progress {
                    return vsphere::reset_progress(&target, thumbprint, &common.name);
                }
                let opts = vsphere::UpgradeOptions {
                    force,
                    rollback,
                    timeout,
                };
                return vsphere::upgrade(
                    &target,
                    thumbprint,
                    &common.name,
                    bootstrap_dir.as_deref(),
                    &opts,
                );
            }
            let layout = layout(common)?;
            if reset_progress {
                return progress::reset(&layout, "Upgrade");
            }
            upgrade::upgrade(
                &layout,
                &upgrade::UpgradeOptions {
                    force,
                    rollback,
                    timeout,
                    bootstrap_dir,
                },
            )
        }
        Command::Debug {
            common,
            debug,
            bundle,
            reset_progress,
            timeout,
        } => debug_cmd::run(common, debug, bundle.as_deref(), reset_progress, timeout),
        Command::Version => {
            println!("vic-machine version {}", parts::installer_version());
            Ok(())
        }
    }
}

fn parse_bridge_range(s: &str) -> Result<String, String> {
    vch_config::parse_bridge_range(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    private_umask();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vic-machine: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What vic-machine writes (VCH state, certificates, keys) is for root alone.
fn private_umask() {
    // SAFETY: umask only sets this process's file mode creation mask; it cannot fail.
    unsafe { libc::umask(0o077) };
}

#[cfg(test)]
#[path = "main_tests.rs"]
mod tests;
