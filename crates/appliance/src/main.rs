//! `vic-appliance`: one process per VCH serving the Docker API over the port layer, with the
//! local QEMU backend. `vic-machine create` starts it; it is not meant to be run by hand.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use docker_api::{AppState, VchInfo};
use imagec::pull::{Puller, RegistryOptions};
use imagec::store::ImageStore;
use portlayer::{Containers, ContainersConfig, EventBus};

#[derive(Debug, Parser)]
#[command(
    name = "vic-appliance",
    version,
    about = "VCH appliance: Docker API personality and port layer"
)]
struct Args {
    /// Name of the VCH.
    #[arg(long)]
    name: String,
    /// Directory holding the VCH's state.
    #[arg(long)]
    state_dir: PathBuf,
    /// Address the Docker API listens on.
    #[arg(long, default_value = "127.0.0.1:2375")]
    listen: String,
    /// Image store directory (default: STATE_DIR/images).
    #[arg(long)]
    image_store: Option<PathBuf>,
    /// Write the image metadata the way earlier versions keep it (record.json files and
    /// repositories.json) and exit, serving nothing: done before a rollback to one of them.
    #[arg(long)]
    export_image_metadata: bool,
    /// Registries whose certificate is not checked, or reached over plain HTTP; repeatable.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// PEM file of certificate authorities registries' certificates may chain to; repeatable.
    #[arg(long = "registry-ca")]
    registry_cas: Vec<PathBuf>,
    /// When given, the only registries pulled from (plus the insecure ones); repeatable.
    #[arg(long = "whitelist-registry")]
    whitelist_registries: Vec<String>,
    /// Guest kernel of the container VMs.
    #[arg(long)]
    kernel: PathBuf,
    /// Initramfs holding tether.
    #[arg(long)]
    initrd: PathBuf,
    /// PEM server certificate (then its chain): serve the Docker API over TLS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM certificate authorities: clients must present a certificate that chains to one
    /// (tlsverify); repeatable. Without it any client may connect over TLS.
    #[arg(long = "tls-ca", requires = "tls_cert")]
    tls_cas: Vec<PathBuf>,
    #[command(flatten)]
    limits: LimitArgs,
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

/// What the VCH may use and how its container VMs are set up (`vic-machine create` /
/// `configure`); handed to the port layer as [`portlayer::Limits`].
#[derive(Debug, clap::Args)]
struct LimitArgs {
    /// Most containers that may exist at once (VIC's --containers).
    #[arg(long)]
    max_containers: Option<u32>,
    /// Total memory of running container VMs, in MiB.
    #[arg(long = "memory-limit")]
    memory_limit_mib: Option<u64>,
    /// Total vCPUs of running container VMs.
    #[arg(long)]
    cpu_limit: Option<u32>,
    /// Storage for images, containers and volumes, in GiB; 0 is unlimited. Pulls that would
    /// go past it, and creates once past it, are refused (VIC's --storage-quota).
    #[arg(long = "storage-quota")]
    storage_quota_gib: Option<u64>,
    /// DNS server for containers and for looking up registries; repeatable.
    #[arg(long = "dns-server")]
    dns_servers: Vec<std::net::IpAddr>,
    /// Volume store LABEL:DIR; repeatable. The directory is made if missing; the label shows
    /// in `docker info` and what the directory holds counts against the storage quota
    /// (volumes are not served yet).
    #[arg(long = "volume-store", value_parser = parse_volume_store)]
    volume_stores: Vec<(String, PathBuf)>,
    /// Display-name pattern of container VMs with {name} and/or {id}, e.g. vch-{name}-{id}.
    #[arg(long, value_parser = parse_name_convention)]
    container_name_convention: Option<String>,
}

fn parse_volume_store(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once(':') {
        Some((label, dir)) if !label.is_empty() && dir.starts_with('/') => {
            Ok((label.to_string(), PathBuf::from(dir)))
        }
        _ => Err(format!(
            "volume store {s:?} must be LABEL:DIR with an absolute DIR"
        )),
    }
}

fn parse_name_convention(s: &str) -> Result<String, String> {
    portlayer::limits::check_name_convention(s).map(|()| s.to_string())
}

impl LimitArgs {
    fn limits(&self) -> portlayer::Limits {
        portlayer::Limits {
            max_containers: self.max_containers,
            memory_mib: self.memory_limit_mib,
            cpus: self.cpu_limit,
            storage_quota_bytes: self.storage_quota_gib.filter(|g| *g > 0).map(|g| g << 30),
            dns_servers: self.dns_servers.iter().map(|ip| ip.to_string()).collect(),
            name_convention: self.container_name_convention.clone(),
        }
    }

    /// The VCH's storage: the quota over the image store (counted by the store itself), the
    /// container directories under `state_dir` and the volume stores.
    fn storage(&self, state_dir: &std::path::Path) -> portlayer::Storage {
        portlayer::Storage::new(
            self.storage_quota_gib.map(|g| g << 30),
            vec![state_dir.join("vms"), state_dir.join("containers")],
            self.volume_stores
                .iter()
                .map(|(label, dir)| portlayer::VolumeStore {
                    label: label.clone(),
                    dir: dir.clone(),
                })
                .collect(),
        )
    }

    /// Makes each volume store's directory (so a bad one stops the appliance at start).
    fn prepare_volume_stores(&self) -> anyhow::Result<()> {
        for (label, dir) in &self.volume_stores {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating volume store {label} at {}", dir.display()))?;
            tracing::info!(label, dir = %dir.display(), "volume store");
        }
        Ok(())
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
    // Checked first: a bad certificate stops the appliance before it starts anything.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            docker_api::server_config(cert, key, &args.tls_cas)
                .context("setting up TLS for the Docker API")?,
        ),
        _ => None,
    };
    private_dir(&args.state_dir)?;
    // First, before anything is touched: a second appliance on this VCH stops here.
    let db = portlayer::open_database(&args.state_dir.join("containers"))
        .context("opening the VCH's state")?;
    if args.export_image_metadata {
        let root = args
            .image_store
            .clone()
            .unwrap_or_else(|| args.state_dir.join("images"));
        let store = ImageStore::open_in(db, &root)
            .with_context(|| format!("opening the image store {}", root.display()))?;
        let n = store
            .export_legacy()
            .context("writing the image metadata files")?;
        tracing::info!(images = n, "image metadata written for an earlier version");
        return Ok(());
    }
    args.limits.prepare_volume_stores()?;
    let limits = args.limits.limits();
    tracing::info!(
        max_containers = ?limits.max_containers,
        memory_mib = ?limits.memory_mib,
        cpus = ?limits.cpus,
        storage_quota_gib = ?args.limits.storage_quota_gib,
        dns_servers = ?limits.dns_servers,
        name_convention = ?limits.name_convention,
        "limits"
    );
    let image_root = args
        .image_store
        .clone()
        .unwrap_or_else(|| args.state_dir.join("images"));
    private_dir(&image_root)?;
    let storage = Arc::new(args.limits.storage(&args.state_dir));
    let images = Arc::new(
        ImageStore::open_in(db.clone(), &image_root)
            .with_context(|| format!("opening the image store {}", image_root.display()))?
            .with_budget(storage.clone()),
    );
    let backend = backend_local::LocalBackend::new(backend_local::LocalConfig {
        root: args.state_dir.join("vms"),
        kernel: args.kernel.clone(),
        initrd: args.initrd.clone(),
        cgroup_parent: std::path::Path::new("vic").join(&args.name),
        jail: !args.api.bench_no_vm_jail,
        ..backend_local::LocalConfig::default()
    })
    .context("starting the local backend")?;
    let backend: Arc<dyn hypervisor::Backend> = Arc::new(backend);
    tracing::info!(vch = %args.name, backend = %backend.describe(), "appliance starting");
    let events = Arc::new(EventBus::new());
    let containers = Containers::open(
        ContainersConfig {
            state_dir: args.state_dir.join("containers"),
            limits,
            database: Some(db),
        },
        backend,
        images.clone(),
        events,
    )
    .await?;
    let mut ca_pems = Vec::new();
    for f in &args.registry_cas {
        ca_pems.push(
            std::fs::read(f).with_context(|| format!("reading registry CA {}", f.display()))?,
        );
    }
    let puller = Arc::new(Puller::new(RegistryOptions {
        insecure: args.insecure_registries.clone(),
        ca_pems,
        whitelist: args.whitelist_registries.clone(),
        dns_servers: args.limits.dns_servers.clone(),
        timeouts: Default::default(),
    }));
    let state = AppState {
        containers: containers.clone(),
        images,
        puller,
        storage,
        info: Arc::new(VchInfo {
            name: args.name.clone(),
            insecure_registries: args.insecure_registries.clone(),
            whitelist_registries: args.whitelist_registries.clone(),
            root_dir: args.state_dir.display().to_string(),
        }),
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    write_atomically(
        &args.state_dir.join("appliance.pid"),
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
