//! The vSphere backend of a VCH whose document says `backend.kind: vsphere`: a session with the
//! vCenter or ESX host (trusted by thumbprint, kept alive), and the listener its container
//! VMs' serial ports dial.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use backend_vsphere::{Channels, VsphereBackend, VsphereConfig};
use vch_config::VsphereBackend as Doc;
use vim25::datastore::DatastorePath;
use vim25::{Client, MoRef, Thumbprint, Trust};

/// How often the session is kept alive.
const KEEPALIVE: Duration = Duration::from_secs(300);
/// How long a container VM may take from power-on to its tether's Hello.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// `Type:value`, as the document writes a managed object.
fn moref(what: &str, s: &str) -> anyhow::Result<MoRef> {
    let (kind, value) = s
        .split_once(':')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .with_context(|| format!("backend.{what} {s:?} is not TYPE:ID"))?;
    Ok(MoRef::new(kind, value))
}

pub async fn backend(doc: &Doc, state_dir: &Path) -> anyhow::Result<Arc<dyn hypervisor::Backend>> {
    let thumbprint: Thumbprint = doc
        .thumbprint
        .parse()
        .map_err(|e: String| anyhow::anyhow!("backend.thumbprint: {e}"))?;
    let password = std::fs::read_to_string(&doc.password_file)
        .with_context(|| format!("reading {}", doc.password_file.display()))?;
    let client = Client::connect(&doc.host, &Trust::Thumbprint(thumbprint))
        .await
        .with_context(|| format!("connecting to {}", doc.host))?;
    client
        .login(&doc.user, password.trim_end_matches('\n'))
        .await
        .with_context(|| format!("logging in to {} as {}", doc.host, doc.user))?;
    client.keep_alive(KEEPALIVE);
    let channels = Channels::bind(doc.channel)
        .await
        .with_context(|| format!("listening for container VMs on {}", doc.channel))?;
    let datacenter = client
        .find_by_inventory_path(&doc.datacenter)
        .await
        .with_context(|| format!("finding the datacenter {}", doc.datacenter))?
        .with_context(|| format!("the datacenter {} does not exist", doc.datacenter))?;
    let image_store = DatastorePath::parse(&doc.image_store).with_context(|| {
        format!(
            "backend.image_store {:?} is not [DATASTORE] path",
            doc.image_store
        )
    })?;
    let bootstrap_iso =
        match &doc.bootstrap_iso {
            Some(iso) => Some(DatastorePath::parse(iso).with_context(|| {
                format!("backend.bootstrap_iso {iso:?} is not [DATASTORE] path")
            })?),
            None => None,
        };
    let cfg = VsphereConfig {
        client,
        folder: moref("folder", &doc.folder)?,
        pool: moref("pool", &doc.pool)?,
        datastore: doc.datastore.clone(),
        datacenter,
        datacenter_name: doc.datacenter.clone(),
        image_store,
        work_dir: state_dir.join("vsphere-disks"),
        mke2fs: "mke2fs".into(),
        bridge_network: doc.bridge_network.clone(),
        simulator_guest: doc.simulator_guest.clone(),
        bootstrap_iso,
        boot_timeout: BOOT_TIMEOUT,
    };
    Ok(Arc::new(VsphereBackend::new(cfg, channels)))
}
