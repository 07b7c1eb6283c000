//! The vSphere target: `--target https://[USER[:PASSWORD]@]HOST[/DATACENTER]`, a vCenter or an
//! ESX host, reached with the `vim25` client.
//!
//! What is here: the target and its credentials (`target.rs`), trust by thumbprint as VIC
//! does it, the validation `create` runs first (`validate.rs`: the datacenter, compute
//! resource, datastores and networks the flags name, each problem reported with the values
//! that would do, nothing made on the target), the deployment of the VCH (`deploy.rs`) and its
//! removal (`remove.rs`).

mod answer;
mod bundle;
mod configure;
mod deploy;
mod found;
mod list;
mod media;
mod progress;
mod remove;
mod target;
mod tls;
mod upgrade;
mod validate;

use std::time::Duration;

use anyhow::{bail, Context};
use vim25::datastore::DatastorePath;
use vim25::{Client, Thumbprint, Trust};

use crate::output::info;
pub use bundle::bundle;
pub use configure::Change;
pub use deploy::appliance_memory_mib;
pub use target::Target;
pub use upgrade::Options as UpgradeOptions;
pub use validate::{Problem, Wanted};

/// The flags of `create` that only a vSphere target takes.
#[derive(Debug, clap::Args)]
pub struct VsphereArgs {
    /// vSphere: the cluster or host (and resource pool in it, CLUSTER/POOL) the VCH goes in
    /// [default: the only one].
    #[arg(long, short = 'r')]
    compute_resource: Option<String>,
    /// vSphere: the port group of the VCH's containers' bridge network (required on vCenter).
    #[arg(long, short = 'b')]
    bridge_network: Option<String>,
    /// vSphere: the port group the VCH's appliance reaches the world on [default: VM Network].
    #[arg(long)]
    public_network: Option<String>,
}

impl VsphereArgs {
    fn given(&self) -> Vec<&'static str> {
        [
            ("--compute-resource", self.compute_resource.is_some()),
            ("--bridge-network", self.bridge_network.is_some()),
            ("--public-network", self.public_network.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect()
    }

    /// Refuses the flags on the local target, where they mean nothing.
    pub fn refuse_on_local(&self) -> anyhow::Result<()> {
        match self.given().as_slice() {
            [] => Ok(()),
            flags => bail!(
                "{} {} only to a vSphere target (--target https://HOST)",
                flags.join(", "),
                if flags.len() == 1 { "applies" } else { "apply" }
            ),
        }
    }

    /// What the flags ask of `target`: `image_store` and the volume stores are datastore paths
    /// there (`DATASTORE[/path]`), read as they were written.
    pub fn wanted(
        &self,
        name: &str,
        target: &Target,
        image_store: Option<&std::path::Path>,
        settings: &crate::settings::SettingsArgs,
        networks: &[vch_config::ContainerNetwork],
    ) -> anyhow::Result<Wanted> {
        let volume_stores = written_volume_stores(settings)?;
        Ok(Wanted {
            vch_name: name.to_string(),
            datacenter: target.datacenter.clone(),
            compute_resource: self.compute_resource.clone(),
            image_store: image_store.map(|p| p.display().to_string()),
            volume_stores,
            bridge_network: self.bridge_network.clone(),
            public_network: self.public_network.clone(),
            container_networks: networks.iter().map(|n| n.source.clone()).collect(),
        })
    }
}

/// How long connecting and logging in may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `f` on a runtime of its own: vic-machine is synchronous, vim25 is not.
pub fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the vSphere client's runtime")?
        .block_on(f)
}

/// Connects to the target and logs in. Without `thumbprint` the server is not trusted:
/// the error shows its thumbprint, for the operator to check and pass, as VIC does.
pub async fn connect(target: &Target, thumbprint: Option<&str>) -> anyhow::Result<Client> {
    let trust = match thumbprint {
        Some(t) => Trust::Thumbprint(
            t.parse::<Thumbprint>()
                .map_err(|e| anyhow::anyhow!("--thumbprint: {e}"))?,
        ),
        None => Trust::Nothing,
    };
    let client = tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(&target.host, &trust))
        .await
        .map_err(|_| anyhow::anyhow!("{}: no answer within {CONNECT_TIMEOUT:?}", target.host))?
        .map_err(|e| match (&e, thumbprint) {
            (vim25::Error::Untrusted { .. }, None) => anyhow::anyhow!(
                "{e}\nIf the thumbprint is the target's, run again with --thumbprint={}",
                untrusted_thumbprint(&e)
            ),
            (vim25::Error::Untrusted { host, thumbprint: seen }, Some(given)) => anyhow::anyhow!(
                "Failed to connect to {host}: Host {host:?} thumbprint does not match {given:?} (the host's is {seen})"
            ),
            _ => anyhow::Error::new(e),
        })?;
    let (Some(user), Some(password)) = (&target.user, &target.password) else {
        bail!("the target needs a user and a password: give --user and --password (VIC_MACHINE_USER, VIC_MACHINE_PASSWORD) or put them in --target");
    };
    client
        .login(user, password)
        .await
        .map_err(|e| match e.fault() {
            Some("InvalidLogin") => anyhow::anyhow!(
                "Failed to log in to {} as {user}: the user name or password is wrong",
                target.host
            ),
            _ => anyhow::Error::new(e),
        })?;
    let about = client.content();
    info(format!(
        "Connected to {} ({}, API {})",
        target.host, about.full_name, about.api_version
    ));
    Ok(client)
}

fn untrusted_thumbprint(e: &vim25::Error) -> String {
    match e {
        vim25::Error::Untrusted { thumbprint, .. } => thumbprint.to_string(),
        _ => String::new(),
    }
}

/// Prints the problems validation found as VIC does (each, then the values that would do)
/// and fails.
pub fn report(problems: &[Problem]) -> anyhow::Error {
    crate::output::error("--------------------");
    for p in problems {
        crate::output::error(&p.message);
        match &p.suggest {
            Some((flag, values)) if flag == validate::DATACENTERS => {
                info("Suggesting valid values for datacenter in --target");
                if values.is_empty() {
                    info("No datacenters found");
                } else {
                    info("Suggested datacenters:");
                }
                values.iter().for_each(|v| info(format!("  {v:?}")));
            }
            Some((flag, values)) => {
                if values.is_empty() {
                    info(format!("No values found for {flag}"));
                } else {
                    info(format!("Suggested values for {flag}:"));
                }
                values.iter().for_each(|v| info(format!("  {v:?}")));
            }
            None => {}
        }
    }
    crate::output::error("Create cannot continue: configuration validation failed");
    anyhow::anyhow!("validation of configuration failed")
}

/// What `create` takes beside the placement.
pub struct CreateOptions {
    pub settings: vch_config::Settings,
    pub tls: crate::tls::TlsPlan,
    pub timeout: Duration,
    /// Flags given that a vSphere VCH does not take yet, refused before anything is made.
    pub not_yet: Vec<&'static str>,
    /// `--container-network`s: their port groups, which validation found.
    pub networks: Vec<vch_config::ContainerNetwork>,
    /// Where the bootstrap is (`--bootstrap-dir`; default: beside this installation).
    pub bootstrap_dir: Option<std::path::PathBuf>,
    /// `--registry-ca`'s bundle, as guestinfo holds it.
    pub registry_ca: Option<String>,
}

/// The `--registry-ca` files as one bundle, as guestinfo holds it (None: none given).
pub fn registry_ca(files: &[std::path::PathBuf]) -> anyhow::Result<Option<String>> {
    if files.is_empty() {
        return Ok(None);
    }
    let bundle = crate::settings::registry_ca_bundle(files)?;
    Ok(Some(vch_config::guestinfo::encode(&bundle)))
}

/// `vic-machine create` on a vSphere target: validates the target and the flags, then
/// deploys the VCH.
pub fn create(
    target: &Target,
    thumbprint: Option<&str>,
    name: &str,
    wanted: &Wanted,
    opts: &CreateOptions,
) -> anyhow::Result<()> {
    block_on(async {
        info("### Installing VCH ####");
        let client = connect(target, thumbprint).await?;
        let placement = match validate::validate(&client, wanted).await? {
            Ok(p) => p,
            Err(problems) => {
                let _ = client.logout().await;
                return Err(report(&problems));
            }
        };
        info(format!(
            "Validated {}: datacenter {}, {} in {}, image store {}, public network {:?}{}",
            target.display(),
            placement.dc_path,
            if placement.vcenter {
                "a vApp"
            } else {
                "a resource pool"
            },
            placement.pool.value,
            placement.image_store,
            placement.public_network,
            placement
                .bridge_network
                .as_ref()
                .map(|b| format!(", bridge network {b:?}"))
                .unwrap_or_default()
        ));
        if let Some(flag) = opts.not_yet.first() {
            let _ = client.logout().await;
            bail!(
                "VCH {name} was not created: {flag} on a vSphere target is not implemented yet (the target and the flags validated; nothing was made on the target)"
            );
        }
        let vch_dir = deploy::vch_dir(&placement, name);
        if let Some((label, dir)) = store_inside(&vch_dir, &placement.volume_stores) {
            let _ = client.logout().await;
            bail!(
                "VCH {name} was not created: volume store {label} ({dir}) is inside the VCH's directory {vch_dir}, which goes with the VCH (and with its appliance VM): give the store a path of its own"
            );
        }
        let mut settings = opts.settings.clone();
        // The stores validation found on the target's datastores.
        settings.volume_stores = (placement.volume_stores.iter())
            .map(|(label, dir)| vch_config::VolumeStore {
                label: label.clone(),
                dir: dir.to_string().into(),
            })
            .collect();
        let req = deploy::Request {
            name,
            target,
            bootstrap_dir: opts.bootstrap_dir.as_deref(),
            thumbprint: thumbprint.context("--thumbprint")?,
            settings,
            tls: &opts.tls,
            timeout: opts.timeout,
            networks: opts.networks.clone(),
            registry_ca: opts.registry_ca.clone(),
        };
        let result = deploy::deploy(&client, &placement, &req).await;
        let _ = client.logout().await;
        let api = result?;
        info(format!("VCH {name} is at {api}"));
        info("Installer completed successfully");
        Ok(())
    })
}

/// The `--volume-store` values as they were written (`DATASTORE/path:LABEL`): the flag's
/// parser made each directory absolute (the local target's reading), so the working
/// directory is taken back off.
pub fn written_volume_stores(
    settings: &crate::settings::SettingsArgs,
) -> anyhow::Result<Vec<String>> {
    let cwd = std::env::current_dir().context("reading the working directory")?;
    Ok((settings.volume_stores.iter())
        .map(|v| {
            let written = v.dir.strip_prefix(&cwd).unwrap_or(&v.dir);
            format!("{}:{}", written.display(), v.label)
        })
        .collect())
}

/// The volume store of `stores` inside `vch_dir` (which goes with the VCH), if one is.
pub fn store_inside<'a>(
    vch_dir: &DatastorePath,
    stores: &'a [(String, DatastorePath)],
) -> Option<&'a (String, DatastorePath)> {
    stores.iter().find(|(_, d)| holds(vch_dir, d))
}

/// `inner` is `dir` or lies under it.
fn holds(dir: &DatastorePath, inner: &DatastorePath) -> bool {
    let (d, i) = (dir.path.trim_matches('/'), inner.path.trim_matches('/'));
    dir.datastore == inner.datastore && (i == d || i.starts_with(&format!("{d}/")))
}

/// The VCH `name` in the target's datacenter, or an error saying it is not there.
async fn find_vch(client: &Client, target: &Target, name: &str) -> anyhow::Result<found::Found> {
    let dc = validate::datacenter(client, target.datacenter.as_deref()).await?;
    match found::find(client, &dc, name).await? {
        Some(f) => Ok(f),
        None => bail!("VCH {name} was not found on {}", target.display()),
    }
}

/// `vic-machine delete` on a vSphere target.
pub fn delete(
    target: &Target,
    thumbprint: Option<&str>,
    name: &str,
    force: bool,
) -> anyhow::Result<()> {
    block_on(async {
        info("### Removing VCH ####");
        let client = connect(target, thumbprint).await?;
        let result = async {
            let found = find_vch(&client, target, name).await?;
            remove::remove(&client, &found, force).await
        }
        .await;
        let _ = client.logout().await;
        result?;
        info("Completed successfully");
        Ok(())
    })
}

/// `vic-machine ls` on a vSphere target: the VCHs of its datacenter.
pub fn ls(target: &Target, thumbprint: Option<&str>) -> anyhow::Result<()> {
    block_on(async {
        let client = connect(target, thumbprint).await?;
        let result = async {
            let dc = validate::datacenter(&client, target.datacenter.as_deref()).await?;
            list::ls(&client, &dc).await
        }
        .await;
        let _ = client.logout().await;
        result
    })
}

/// `vic-machine inspect` on a vSphere target.
pub fn inspect(target: &Target, thumbprint: Option<&str>, name: &str) -> anyhow::Result<()> {
    block_on(async {
        let client = connect(target, thumbprint).await?;
        let result = async {
            let found = find_vch(&client, target, name).await?;
            list::inspect(&client, &found).await
        }
        .await;
        let _ = client.logout().await;
        result
    })
}

/// `vic-machine configure` on a vSphere target: settings only, so far.
pub fn configure(
    target: &Target,
    thumbprint: Option<&str>,
    name: &str,
    change: configure::Change<'_>,
    timeout: Duration,
) -> anyhow::Result<()> {
    block_on(async {
        info(match change {
            configure::Change::Settings { .. } => "### Configuring VCH ####",
            configure::Change::Debug(_) => "### Configuring VCH for debug ####",
            configure::Change::Rollback => "### Rolling back VCH configuration ####",
        });
        let client = connect(target, thumbprint).await?;
        let op = match change {
            configure::Change::Settings { .. } => "Configure",
            configure::Change::Debug(_) => "Debug",
            configure::Change::Rollback => "Configure",
        };
        let result = async {
            let found = find_vch(&client, target, name).await?;
            progress::begin(&client, &found.appliance, op).await?;
            let r = configure::configure(&client, &found, change, timeout).await;
            progress::end(&client, &found.appliance).await;
            r
        }
        .await;
        let _ = client.logout().await;
        result
    })
}

/// `--reset-progress` of configure, debug or upgrade on a vSphere target.
pub fn reset_progress(target: &Target, thumbprint: Option<&str>, name: &str) -> anyhow::Result<()> {
    block_on(async {
        let client = connect(target, thumbprint).await?;
        let result = async {
            let found = find_vch(&client, target, name).await?;
            progress::reset(&client, &found.appliance).await
        }
        .await;
        let _ = client.logout().await;
        result
    })
}

/// `vic-machine upgrade [--rollback]` on a vSphere target.
pub fn upgrade(
    target: &Target,
    thumbprint: Option<&str>,
    name: &str,
    bootstrap_dir: Option<&std::path::Path>,
    opts: &upgrade::Options,
) -> anyhow::Result<()> {
    let parts = crate::parts::Parts::find(bootstrap_dir)?;
    block_on(async {
        info(match opts.rollback {
            true => "### Rolling back VCH ####",
            false => "### Upgrading VCH ####",
        });
        let client = connect(target, thumbprint).await?;
        let op = if opts.rollback { "Rollback" } else { "Upgrade" };
        let result = async {
            let found = find_vch(&client, target, name).await?;
            progress::begin(&client, &found.appliance, op).await?;
            let r = upgrade::upgrade(&client, &found, &parts, opts).await;
            progress::end(&client, &found.appliance).await;
            r
        }
        .await;
        let _ = client.logout().await;
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_held_by_the_directories_above_it_only() {
        let dir = DatastorePath::new("ds", "vch1");
        assert!(holds(&dir, &DatastorePath::new("ds", "vch1/vols")));
        assert!(holds(&dir, &dir));
        assert!(!holds(&dir, &DatastorePath::new("ds", "vch10/vols")));
        assert!(!holds(&dir, &DatastorePath::new("other", "vch1/vols")));
    }
}
