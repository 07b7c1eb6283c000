//! `vic-appliance`: one process per VCH serving the Docker API over the port layer. It reads
//! the VCH's configuration document (`--config`, crate vch-config), which `vic-machine`
//! writes before each start; it is not meant to be run by hand.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use docker_api::{AppState, VchInfo};
use imagec::pull::Puller;
use imagec::store::ImageStore;
use portlayer::{Containers, ContainersConfig, EventBus, ImageService};

mod admin;
mod guestinfo;
mod setup;
mod vsphere;

#[derive(Debug, Parser)]
#[command(
    name = "vic-appliance",
    version,
    about = "VCH appliance: Docker API personality and port layer"
)]
struct Args {
    /// The VCH's configuration document (vch-config's ApplianceConfig, JSON), which
    /// vic-machine writes before each start.
    #[arg(
        long,
        required_unless_present = "guestinfo",
        conflicts_with = "guestinfo"
    )]
    config: Option<PathBuf>,
    /// On vSphere: read the configuration from the VM's guestinfo, opening its secrets with
    /// the key on this image (the VM's CD-ROM).
    #[arg(long, value_name = "KEY_IMAGE")]
    guestinfo: Option<PathBuf>,
    /// With --guestinfo: keep the state and the images here rather than where the document
    /// says (a guest whose disk is mounted elsewhere).
    #[arg(long, requires = "guestinfo")]
    state_dir: Option<PathBuf>,
    /// Write the image metadata the way earlier versions keep it (record.json files and
    /// repositories.json) and exit, serving nothing: done before a rollback to one of them.
    #[arg(long)]
    export_image_metadata: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// Bounds of the Docker API's listener. vic-machine leaves them at their defaults; tests
/// lower them (through the environment, which vic-init hands on) to reach them cheaply.
#[derive(Debug, clap::Args)]
struct ApiArgs {
    /// Connections served at once; past it new ones are closed at once.
    #[arg(long, env = "VIC_API_MAX_CONNECTIONS", default_value_t = docker_api::MAX_CONNECTIONS as u32,
          value_parser = clap::value_parser!(u32).range(1..), hide = true)]
    api_max_connections: u32,
    /// Seconds a client may take to send a request's head, or stay idle between requests.
    #[arg(long, env = "VIC_API_HEADER_TIMEOUT", default_value_t = docker_api::HEADER_READ_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..), hide = true)]
    api_header_timeout: u64,
    /// Runs QEMU without its jail: only for measuring what the jail costs (`make bench`).
    #[arg(long, env = "VIC_BENCH_NO_VM_JAIL", hide = true)]
    bench_no_vm_jail: bool,
}

impl ApiArgs {
    fn limits(&self) -> docker_api::ServerLimits {
        docker_api::ServerLimits {
            max_connections: self.api_max_connections as usize,
            header_read_timeout: std::time::Duration::from_secs(self.api_header_timeout),
        }
    }
}

/// Makes `dir` if missing and leaves it to its owner alone (also a VCH's directory made
/// before state was private).
fn private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))
}

/// Writes `path` whole or not at all (a temporary file renamed over it): a reader, such as
/// vic-machine looking for the appliance's PID, never sees it empty or half written.
fn write_atomically(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    // SAFETY: umask only sets this process's file mode creation mask; it cannot fail.
    // What the appliance writes (state, logs, disks, image roots' directories) is root's alone.
    unsafe { libc::umask(0o077) };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIC_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    tracing::debug!(?args, "appliance flags");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = match (&args.config, &args.guestinfo) {
        (Some(file), _) => vch_config::load_file(file)?,
        (None, Some(key)) => guestinfo::load(key, args.state_dir.as_deref())?,
        (None, None) => anyhow::bail!("--config or --guestinfo is required"),
    };
    // Checked first: a bad certificate stops the appliance before it starts anything.
    let tls = match &config.tls {
        Some(t) => Some(
            docker_api::server_config(&t.cert, &t.key, &t.client_cas)
                .context("setting up TLS for the Docker API")?,
        ),
        None => None,
    };
    private_dir(&config.state_dir)?;
    // First, before anything is touched: a second appliance on this VCH stops here.
    let db = portlayer::open_database(&config.state_dir.join("containers"))
        .context("opening the VCH's state")?;
    if args.export_image_metadata {
        let store = ImageStore::open_in(db, &config.image_store)
            .with_context(|| format!("opening the image store {}", config.image_store.display()))?;
        let n = store
            .export_legacy()
            .context("writing the image metadata files")?;
        tracing::info!(images = n, "image metadata written for an earlier version");
        return Ok(());
    }
    let limits = setup::limits(&config)?;
    tracing::info!(
        max_containers = ?limits.max_containers,
        memory_mib = ?limits.memory_mib,
        cpus = ?limits.cpus,
        storage_quota_gib = ?config.settings.storage_quota_gib,
        dns_servers = ?limits.dns_servers,
        name_convention = ?limits.name_convention,
        "limits"
    );
    private_dir(&config.image_store)?;
    let storage = Arc::new(setup::storage(&config));
    let images = Arc::new(
        ImageStore::open_in(db.clone(), &config.image_store)
            .with_context(|| format!("opening the image store {}", config.image_store.display()))?
            .with_budget(storage.clone()),
    );
    let backend = setup::backend(&config, !args.api.bench_no_vm_jail).await?;
    setup::prepare_volume_stores(&config, backend.store_files().as_ref()).await?;
    tracing::info!(vch = %config.name, backend = %backend.describe(), "appliance starting");
    let events = Arc::new(EventBus::new());
    let (networks, network_pools) = setup::networks(&config)?;
    let containers = Containers::open(
        ContainersConfig {
            state_dir: config.state_dir.join("containers"),
            limits,
            database: Some(db),
            networks,
            network_pools,
            vch_name: config.name.clone(),
            volume_stores: storage.volume_stores().to_vec(),
            bind_paths: (config.settings.bind_paths.iter())
                .map(|b| portlayer::binds::BindPath {
                    dir: b.dir.clone(),
                    readonly: b.readonly,
                })
                .collect(),
        },
        backend,
        images.clone(),
        events,
    )
    .await?;
    let puller = Arc::new(Puller::new(setup::registry_options(&config)?));
    let image_service = ImageService::new(images, containers.clone(), storage);
    admin::start(&config, containers.clone(), image_service.clone()).await?;
    let state = AppState {
        containers: containers.clone(),
        images: image_service,
        puller,
        info: Arc::new(VchInfo {
            name: config.name.clone(),
            insecure_registries: config.settings.insecure_registries.clone(),
            whitelist_registries: config.settings.whitelist_registries.clone(),
            root_dir: config.state_dir.display().to_string(),
        }),
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    write_atomically(
        &config.state_dir.join("appliance.pid"),
        std::process::id().to_string().as_bytes(),
    )?;
    let api_limits = args.api.limits();
    let server = match tls {
        Some(tls) => tokio::spawn(docker_api::serve_tls(
            listener,
            tls,
            state,
            api_limits,
            std::future::pending(),
        )),
        None => tokio::spawn(docker_api::serve(
            listener,
            state,
            api_limits,
            std::future::pending(),
        )),
    };
    tokio::select! {
        _ = shutdown_signal() => {}
        res = server => {
            res.context("the API server task failed")?.context("the API server failed")?;
            return Ok(());
        }
    }
    // Container VMs do not depend on this process: they keep running, and the next start
    // (a restart, `vic-machine configure` or `upgrade`) takes them over. `vic-machine
    // delete` removes them itself.
    let running = containers
        .list()
        .iter()
        .filter(|c| c.state.status == portlayer::Status::Running)
        .count();
    tracing::info!(
        running,
        "appliance stopped; running container VMs keep running for the next start"
    );
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; the appliance stops only when killed");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
