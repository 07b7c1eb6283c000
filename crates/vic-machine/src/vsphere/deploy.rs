//! `vic-machine create` on vSphere, once the target validated: the VCH's vApp (vCenter) or
//! resource pool (ESX), its directory on the image datastore, and the appliance VM whose
//! guestinfo carries its configuration ([`vch_config::guestinfo`]: secrets sealed, the key on
//! the VM's CD-ROM, uploaded beside it). The VM is powered on and create waits for the
//! Docker API; whatever failed is undone, in reverse, so a failed create leaves nothing.
//!
//! ```text
//!   [ds] <image store path>/<name>/<name>.vmx        the appliance VM
//!   [ds] <image store path>/<name>/appliance-key.img  its CD-ROM: the key of its secrets
//!   [ds] <image store path>/<name>/images/            images' base disks (the appliance's)
//! ```
//!
//! On vcsim, whose VMs have no guests of their own, the appliance VM and the container VMs
//! are given the launchers in `VIC_MACHINE_SIMULATOR_GUESTS` (vcsim's `RUN.container`), and
//! the appliance, a process on this machine then, listens on 127.0.0.1 on a free port (both
//! said in log lines).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use vch_config::guestinfo::{self as gi, Key};
use vch_config::{ApplianceConfig, BackendConfig, Settings, VsphereBackend, SCHEMA};
use vim25::datastore::DatastorePath;
use vim25::devices::Device;
use vim25::pool::Allocation;
use vim25::vm::VmSpec;
use vim25::{Client, MoRef};

use super::validate::Placement;
use super::Target;
use crate::output::{info, step};
use crate::tls::{self, TlsMode};

/// How long one vSphere task of create may take.
const TASK: Duration = Duration::from_secs(120);
/// The port of a VCH's admin pages on its appliance VM (VIC's vicadmin port).
const ADMIN_PORT: u16 = 2378;
/// The environment variable naming the directory of the guest launchers on vcsim.
pub const SIMULATOR_GUESTS: &str = "VIC_MACHINE_SIMULATOR_GUESTS";
/// Where the appliance VM keeps its state (its disk) and the placeholder paths the
/// appliance replaces with the secrets it opens from guestinfo.
const STATE_DIR: &str = "/var/lib/vic";
pub(super) const PLACEHOLDER: &str = "/run/vic/from-guestinfo";
/// The appliance VM's size.
/// The appliance VM's memory unless `--endpoint-memory` says otherwise (VIC's default), and
/// the least it may be given.
const APPLIANCE_MEMORY_MIB: u32 = 2048;
const APPLIANCE_MEMORY_MIN_MIB: u64 = 512;
const APPLIANCE_CPUS: u32 = 1;

/// What create asks for beside the placement.
pub struct Request<'a> {
    /// Where this installation's bootstrap is (`--bootstrap-dir`).
    pub bootstrap_dir: Option<&'a std::path::Path>,
    pub name: &'a str,
    pub target: &'a Target,
    /// The thumbprint the target was trusted by (the appliance trusts it by the same).
    pub thumbprint: &'a str,
    pub settings: Settings,
    pub tls: &'a tls::TlsPlan,
    pub timeout: Duration,
    /// Container networks: port groups container VMs join directly.
    pub networks: Vec<vch_config::ContainerNetwork>,
    /// `--registry-ca`'s bundle, as guestinfo holds it.
    pub registry_ca: Option<String>,
}

/// The appliance VM's memory for `settings` (`--endpoint-memory`, or VIC's default).
pub fn appliance_memory_mib(settings: &Settings) -> anyhow::Result<u32> {
    let mib = (settings.endpoint_memory_mib).unwrap_or(APPLIANCE_MEMORY_MIB.into());
    if mib < APPLIANCE_MEMORY_MIN_MIB {
        bail!("--endpoint-memory {mib}: the appliance VM needs at least {APPLIANCE_MEMORY_MIN_MIB} MiB");
    }
    u32::try_from(mib)
        .map_err(|_| anyhow::anyhow!("--endpoint-memory {mib}: more than a VM can have"))
}

/// The path the document names the registry CA bundle by; the appliance writes the bundle
/// there from guestinfo.
pub(super) fn registry_ca_path() -> PathBuf {
    PathBuf::from(PLACEHOLDER).join("registry-ca.pem")
}

/// What create made so far, undone in reverse when it fails.
#[derive(Default)]
struct Made {
    /// The host's network system, with the virtual switch and port group made on it.
    bridge: Option<MoRef>,
    pool: Option<MoRef>,
    dir: Option<DatastorePath>,
    vm: Option<MoRef>,
}

/// The extraConfig key naming the port group (and virtual switch) create made for the VCH's
/// bridge network, which delete removes.
pub const MADE_BRIDGE: &str = "vic.made.bridge";

/// The launchers of the guests on vcsim: `appliance` and `guest`.
fn simulator_guests(client: &Client) -> anyhow::Result<Option<PathBuf>> {
    if !client.content().is_simulator() {
        return Ok(None);
    }
    let Some(dir) = std::env::var_os(SIMULATOR_GUESTS).map(PathBuf::from) else {
        bail!(
            "the target is vcsim, whose VMs have no guests: {SIMULATOR_GUESTS} must name the directory of the guests' launchers (tests/fixtures/vcsim)"
        );
    };
    let dir = std::fs::canonicalize(&dir)
        .with_context(|| format!("{SIMULATOR_GUESTS}={}", dir.display()))?;
    for f in ["appliance", "guest"] {
        if !dir.join(f).is_file() {
            bail!("{SIMULATOR_GUESTS}: {} has no {f}", dir.display());
        }
    }
    info(format!(
        "vcsim: the appliance VM and the container VMs get their guests from {}",
        dir.display()
    ));
    Ok(Some(dir))
}

/// The VCH's directory on the image datastore.
pub fn vch_dir(placement: &Placement, name: &str) -> DatastorePath {
    let store = &placement.image_store;
    let path = match store.path.trim_matches('/') {
        "" => name.to_string(),
        p => format!("{p}/{name}"),
    };
    DatastorePath::new(&store.datastore, &path)
}

fn at(dir: &DatastorePath, file: &str) -> DatastorePath {
    DatastorePath::new(&dir.datastore, &format!("{}/{file}", dir.path))
}

/// Deploys the VCH; on failure removes what it made. Returns the Docker API's address.
pub async fn deploy(
    client: &Client,
    placement: &Placement,
    req: &Request<'_>,
) -> anyhow::Result<String> {
    let guests = simulator_guests(client)?;
    let mut made = Made::default();
    let result = deploy_inner(client, placement, req, guests.as_ref(), &mut made).await;
    if let Err(e) = &result {
        info(format!("Create failed: {e:#}"));
        info("Removing what create made");
        undo(client, placement, &made, req.name).await;
    }
    result
}

async fn undo(client: &Client, placement: &Placement, made: &Made, name: &str) {
    if let Some(vm) = &made.vm {
        let _ = client.power_off(vm, TASK).await;
        if let Err(e) = client.destroy(vm, TASK).await {
            info(format!("Removing the appliance VM {}: {e}", vm.value));
        }
    }
    if let Some(pool) = &made.pool {
        if let Err(e) = super::remove::empty_and_destroy(client, pool).await {
            info(format!("Removing the VCH's pool {}: {e:#}", pool.value));
        }
    }
    if let Some(dir) = &made.dir {
        if let Err(e) = client
            .delete_datastore_file(&placement.datacenter, dir, TASK)
            .await
        {
            info(format!("Removing {dir}: {e}"));
        }
    }
    if let Some(ns) = &made.bridge {
        if let Err(e) = remove_bridge(client, ns, name).await {
            info(format!("Removing the bridge port group {name}: {e:#}"));
        }
    }
}

/// On an ESX host not given `--bridge-network`: a virtual switch of the VCH's name, without
/// uplinks, and a port group of that name on it, as VIC makes.
async fn make_bridge(client: &Client, placement: &Placement, name: &str) -> anyhow::Result<MoRef> {
    let hosts = client
        .find_all(&placement.datacenter, &[("HostSystem", &["name"])])
        .await?;
    let [host] = hosts.as_slice() else {
        bail!(
            "the target has {} hosts: give --bridge-network",
            hosts.len()
        );
    };
    let ns = client.network_system(&host.obj).await?;
    info(format!(
        "Creating virtual switch and port group {name:?} for the bridge network"
    ));
    client
        .add_virtual_switch(&ns, name, 1024)
        .await
        .context("creating the bridge network's virtual switch")?;
    if let Err(e) = client.add_port_group(&ns, name, name).await {
        let _ = client.remove_virtual_switch(&ns, name).await;
        return Err(e).context("creating the bridge network's port group");
    }
    Ok(ns)
}

/// Removes what [`make_bridge`] made.
pub async fn remove_bridge(client: &Client, ns: &MoRef, name: &str) -> anyhow::Result<()> {
    client.remove_port_group(ns, name).await?;
    client.remove_virtual_switch(ns, name).await?;
    Ok(())
}

async fn deploy_inner(
    client: &Client,
    placement: &Placement,
    req: &Request<'_>,
    guests: Option<&PathBuf>,
    made: &mut Made,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + req.timeout;
    let name = req.name;
    // The bridge network: the one given, or one made for the VCH (ESX; a vCenter's was
    // required by validation).
    let mut placement = placement.clone();
    if placement.bridge_network.is_none() {
        made.bridge = Some(make_bridge(client, &placement, name).await?);
        placement.bridge_network = Some(name.to_string());
    }
    let placement = &placement;
    // The VCH's pool.
    let alloc = Allocation::default();
    let pool = if placement.vcenter {
        info(format!("Creating virtual app {name:?}"));
        client
            .create_vapp(&placement.pool, name, &placement.vm_folder, alloc)
            .await
    } else {
        info(format!("Creating resource pool {name:?}"));
        client
            .create_resource_pool(&placement.pool, name, alloc)
            .await
    }
    .map_err(|e| match e.fault() {
        Some("DuplicateName") => anyhow::anyhow!("VCH {name} already exists on the target"),
        _ => anyhow::Error::new(e).context("creating the VCH's pool"),
    })?;
    made.pool = Some(pool.clone());
    // Its directory, and the key of the appliance's secrets in it.
    let dir = vch_dir(placement, name);
    client
        .make_directory(&placement.datacenter, &dir)
        .await
        .with_context(|| format!("making {dir}"))?;
    made.dir = Some(dir.clone());
    let key = Key::random();
    let key_file = tempfile::NamedTempFile::new().context("writing the key image")?;
    std::fs::write(key_file.path(), key.key_image()).context("writing the key image")?;
    let key_image = at(&dir, "appliance-key.img");
    client
        .upload(&placement.dc_path, key_file.path(), &key_image, TASK)
        .await
        .context("uploading the key image")?;
    // The boot media: this installation's appliance and bootstrap.
    let parts = crate::parts::Parts::find(req.bootstrap_dir)?;
    let uploading = step("Uploading the appliance and bootstrap media");
    let media = super::media::upload(client, &placement.dc_path, &parts, &dir).await?;
    uploading.done();
    // The appliance's configuration.
    let certs = tempfile::tempdir().context("making a directory for the certificates")?;
    let tls = tls::setup(req.tls, certs.path())?;
    // The Docker API's port, the admin pages' (VIC's vicadmin port) and the one the container
    // VMs' serial lines dial; on vcsim, where the appliance runs on this machine, three free ones.
    let [port, admin_port, channel_port] = match (guests, tls.mode) {
        (Some(_), _) => crate::process::free_ports()?,
        (None, TlsMode::NoTls) => [2375, ADMIN_PORT, 2377],
        (None, _) => [2376, ADMIN_PORT, 2377],
    };
    let listen: std::net::SocketAddr = match guests {
        Some(_) => {
            info(format!(
                "vcsim: the appliance runs on this machine and listens on 127.0.0.1:{port}"
            ));
            (std::net::Ipv4Addr::LOCALHOST, port).into()
        }
        None => (std::net::Ipv4Addr::UNSPECIFIED, port).into(),
    };
    let channel: std::net::SocketAddr = match guests {
        Some(_) => (std::net::Ipv4Addr::LOCALHOST, channel_port).into(),
        None => (std::net::Ipv4Addr::UNSPECIFIED, channel_port).into(),
    };
    let doc = ApplianceConfig {
        schema: SCHEMA,
        name: name.to_string(),
        state_dir: STATE_DIR.into(),
        listen,
        image_store: PathBuf::from(STATE_DIR).join("images"),
        backend: BackendConfig::Vsphere(Box::new(VsphereBackend {
            host: req.target.host.clone(),
            thumbprint: req.thumbprint.to_string(),
            user: req.target.user.clone().unwrap_or_default(),
            password_file: PathBuf::from(PLACEHOLDER).join("password"),
            folder: format!("{}:{}", placement.vm_folder.kind, placement.vm_folder.value),
            pool: format!("{}:{}", pool.kind, pool.value),
            datacenter: placement.dc_path.clone(),
            datastore: dir.datastore.clone(),
            image_store: at(&dir, "images").to_string(),
            bridge_network: placement.bridge_network.clone(),
            channel,
            simulator_guest: guests.map(|g| g.join("guest")),
            bootstrap_iso: Some(media.bootstrap.to_string()),
        })),
        tls: super::tls::doc_tls(tls.mode),
        settings: Settings {
            registry_ca: req.registry_ca.as_ref().map(|_| registry_ca_path()),
            admin_port: Some(admin_port),
            // Sealed: guestinfo is read by whoever may read the VM's configuration.
            ops_password_hash: (req.settings.ops_password_hash.as_ref())
                .map(|h| key.seal(gi::OPS_PASSWORD_HASH, h.as_bytes())),
            ..req.settings.clone()
        },
        networks: req.networks.clone(),
    };
    doc.check().context("the appliance's configuration")?;
    let mut extra = vec![
        (gi::CONFIG.to_string(), gi::encode_config(&doc)),
        (super::found::VERSION.into(), parts.version()?),
    ];
    if made.bridge.is_some() {
        extra.push((MADE_BRIDGE.into(), name.to_string()));
    }
    if let Some(bundle) = &req.registry_ca {
        extra.push((gi::REGISTRY_CA.into(), bundle.clone()));
    }
    let record = crate::tls::TlsRecord::created(req.tls, &tls);
    extra.push((
        super::tls::RECORD.into(),
        serde_json::to_string(&record).context("writing the TLS record")?,
    ));
    let password = req.target.password.clone().unwrap_or_default();
    extra.push((
        gi::PASSWORD.into(),
        key.seal(gi::PASSWORD, password.as_bytes()),
    ));
    if let Some(files) = tls::appliance_files(tls.mode, certs.path()) {
        let read = |p: &std::path::Path| {
            std::fs::read(p).with_context(|| format!("reading {}", p.display()))
        };
        extra.push((gi::TLS_CERT.into(), gi::encode(&read(&files.cert)?)));
        extra.push((
            gi::TLS_KEY.into(),
            key.seal(gi::TLS_KEY, &read(&files.key)?),
        ));
        if let Some(cas) = files.client_cas.first() {
            extra.push((gi::TLS_CLIENT_CAS.into(), gi::encode(&read(cas)?)));
        }
    }
    if let Some(g) = guests {
        let run = format!("[{:?}]", g.join("appliance").display().to_string());
        extra.push(("RUN.container".into(), run));
    }
    // The appliance VM.
    let mut devices = Vec::new();
    let public = client
        .nic_backing(&placement.dc_path, &placement.public_network)
        .await
        .context("finding the public network")?;
    devices.push(Device::Nic {
        network: public,
        mac: None,
    });
    if let Some(bridge) = &placement.bridge_network {
        let backing = (client.nic_backing(&placement.dc_path, bridge).await)
            .context("finding the bridge network")?;
        devices.push(Device::Nic {
            network: backing,
            mac: None,
        });
    }
    devices.push(Device::Cdrom { iso: key_image });
    devices.push(Device::Cdrom {
        iso: media.appliance,
    });
    let spec = VmSpec {
        name: name.to_string(),
        guest_id: "otherLinux64Guest".into(),
        files: at(&dir, &format!("{name}.vmx")).to_string(),
        memory_mib: appliance_memory_mib(&req.settings)?,
        cpus: APPLIANCE_CPUS,
        cpu_shares: None,
        annotation: Some(format!("vic VCH {name}")),
        extra_config: extra,
        devices,
    };
    let creating = step("Creating the appliance VM");
    let vm = client
        .create_vm(&placement.vm_folder, &pool, None, &spec, TASK)
        .await
        .context("creating the appliance VM")?;
    made.vm = Some(vm.clone());
    creating.done();
    let powering = step("Powering on the appliance VM");
    client
        .power_on(&vm, TASK)
        .await
        .context("powering on the appliance VM")?;
    powering.done();
    let waiting = step("Waiting for the Docker API to answer");
    let host = match guests {
        Some(_) => "127.0.0.1".to_string(),
        None => bail!(
            "the appliance VM is on, but reaching its Docker API needs its address from VMware Tools, which vic-machine does not read yet"
        ),
    };
    let late = || crate::create::time_limit_exceeded(req.timeout);
    super::answer::wait(client, &vm, deadline, || tls.ping(port), late).await?;
    waiting.done();
    crate::inspect::admin_portal(&doc.settings);
    tls.save_env(name, &format!("tcp://{host}:{port}"))?;
    drop(certs);
    Ok(format!("{host}:{port}"))
}
