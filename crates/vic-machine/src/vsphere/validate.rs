//! Validation of a vSphere target before anything is made: the datacenter, the compute
//! resource, the datastores and the networks the flags name are found, or every problem is
//! reported at once with the values that would do (VIC's "Suggested values for …").

use vim25::datastore::DatastorePath;
use vim25::{Client, MoRef};

/// What the flags ask for on the target.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// The VCH's name (a vCenter's bridge network is named so unless `--bridge-network`).
    pub vch_name: String,
    /// The datacenter's inventory path from `--target`.
    pub datacenter: Option<String>,
    /// `--compute-resource`: a cluster or host, optionally `/` a resource pool path in it.
    pub compute_resource: Option<String>,
    /// `--image-store DATASTORE[/path]`.
    pub image_store: Option<String>,
    /// `--volume-store DATASTORE/path:LABEL`, each.
    pub volume_stores: Vec<String>,
    pub bridge_network: Option<String>,
    /// Default "VM Network".
    pub public_network: Option<String>,
    /// The port groups of `--container-network PORTGROUP:ALIAS`, each.
    pub container_networks: Vec<String>,
}

/// Where the VCH goes, all of it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub datacenter: MoRef,
    /// The datacenter's inventory path (for `/folder` transfers and inventory paths).
    pub dc_path: String,
    pub vm_folder: MoRef,
    /// The pool the VCH's vApp or pool is made in.
    pub pool: MoRef,
    /// A vCenter (a vApp is made) or an ESX host (a resource pool).
    pub vcenter: bool,
    /// The image store: a datastore and a folder in it (the VCH's files go below).
    pub image_store: DatastorePath,
    pub volume_stores: Vec<(String, DatastorePath)>,
    pub bridge_network: Option<String>,
    pub public_network: String,
}

/// A problem with the flags, and the values that would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    /// `(flag, values)`: printed as "Suggested values for FLAG:" and the values.
    pub suggest: Option<(String, Vec<String>)>,
}

impl Problem {
    fn new(message: String) -> Problem {
        Problem {
            message,
            suggest: None,
        }
    }

    fn suggesting(message: String, flag: &str, values: Vec<String>) -> Problem {
        Problem {
            message,
            suggest: Some((flag.to_string(), values)),
        }
    }
}

/// The suggestion "flag" of datacenters, which VIC words its own way.
pub const DATACENTERS: &str = "datacenter in --target";

/// Names of the objects of `kind` below `container`, with their references.
async fn named(
    client: &Client,
    container: &MoRef,
    kind: &str,
) -> anyhow::Result<Vec<(String, MoRef)>> {
    let found = client.find_all(container, &[(kind, &["name"])]).await?;
    let mut out: Vec<(String, MoRef)> = found
        .into_iter()
        .filter_map(|o| Some((o.text("name")?.to_string(), o.obj)))
        .collect();
    out.sort();
    Ok(out)
}

/// The names of `datacenter`'s networks, and of those that are distributed port groups or
/// opaque networks, sorted.
pub async fn network_names(
    client: &Client,
    datacenter: &MoRef,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut networks: Vec<String> = Vec::new();
    let mut port_groups: Vec<String> = Vec::new();
    for kind in ["Network", "DistributedVirtualPortgroup", "OpaqueNetwork"] {
        for (name, _) in named(client, datacenter, kind).await? {
            if kind != "Network" && !port_groups.contains(&name) {
                port_groups.push(name.clone());
            }
            if !networks.contains(&name) {
                networks.push(name);
            }
        }
    }
    networks.sort();
    port_groups.sort();
    Ok((networks, port_groups))
}

/// `--volume-store` values (as written, `DATASTORE/path:LABEL`) read against `datacenter`'s
/// datastores: the stores' labels and directories, or the first problem in VIC's words.
pub async fn volume_stores(
    client: &Client,
    datacenter: &MoRef,
    given: &[String],
) -> anyhow::Result<Vec<(String, DatastorePath)>> {
    let datastores: Vec<String> = (named(client, datacenter, "Datastore").await?)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    given
        .iter()
        .map(|v| volume_store(v, &datastores).map_err(|p| anyhow::anyhow!("{}", p.message)))
        .collect()
}

/// Finds everything `wanted` names; the problems when anything is missing.
pub async fn validate(
    client: &Client,
    wanted: &Wanted,
) -> anyhow::Result<Result<Placement, Vec<Problem>>> {
    let root = client.content().root_folder.clone();
    let dcs = named(client, &root, "Datacenter").await?;
    let (datacenter, dc_path) = match choose_datacenter(client, &dcs, wanted).await? {
        Ok(found) => found,
        Err(p) => return Ok(Err(vec![p])),
    };
    let dc_props = client
        .properties(&datacenter, &["vmFolder", "hostFolder"])
        .await?;
    let folder_of = |name: &str| dc_props.prop(name).and_then(|n| n.moref());
    let (Some(vm_folder), Some(host_folder)) = (folder_of("vmFolder"), folder_of("hostFolder"))
    else {
        anyhow::bail!("datacenter {dc_path} has no VM or host folder");
    };
    let mut problems = Vec::new();
    let pool = match choose_pool(client, &dc_path, &host_folder, wanted).await? {
        Ok(p) => Some(p),
        Err(p) => {
            problems.push(p);
            None
        }
    };
    let datastores: Vec<String> = named(client, &datacenter, "Datastore")
        .await?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let image_store = match (&wanted.image_store, datastores.as_slice()) {
        (None, [only]) => {
            crate::output::info(format!("Using default datastore: {only}"));
            Some(DatastorePath::new(only, ""))
        }
        (None, _) => {
            problems.push(Problem::suggesting(
                "datastore empty: --image-store must be specified".into(),
                "--image-store",
                datastores.clone(),
            ));
            None
        }
        (Some(s), _) => match datastore_path(s, &datastores) {
            Ok(p) => Some(p),
            Err(p) => {
                problems.push(p);
                None
            }
        },
    };
    let mut volume_stores = Vec::new();
    for v in &wanted.volume_stores {
        match volume_store(v, &datastores) {
            Ok(found) => volume_stores.push(found),
            Err(p) => problems.push(p),
        }
    }
    let (networks, port_groups) = network_names(client, &datacenter).await?;
    let vcenter = client.content().is_vcenter();
    let public = wanted
        .public_network
        .clone()
        .unwrap_or_else(|| "VM Network".to_string());
    check_network(&public, "--public-network", &networks, &mut problems);
    // On a vCenter the bridge network is a distributed port group (or opaque network) of
    // the VCH's own; VIC's default is the VCH's name.
    let bridge = match (&wanted.bridge_network, vcenter) {
        (Some(b), _) => Some(b.clone()),
        (None, true) => Some(wanted.vch_name.clone()),
        (None, false) => None,
    };
    if let Some(b) = &bridge {
        let why = if !networks.contains(b) {
            Some(format!("network '{b}' not found"))
        } else if vcenter && !port_groups.contains(b) {
            Some(format!(
                "{b:?} is not a Distributed Port Group or an Opaque Network"
            ))
        } else {
            None
        };
        match why {
            Some(why) if vcenter => problems.push(Problem::suggesting(
                format!("An existing distributed port group or opaque network must be specified for bridge network on vCenter: {why}"),
                "--bridge-network",
                port_groups.clone(),
            )),
            Some(_) => check_network(b, "--bridge-network", &networks, &mut problems),
            None => {}
        }
        if *b == public {
            problems.push(Problem::new(format!(
                "the bridge network must not be shared with another network role - public also uses {b:?}"
            )));
        }
    }
    for c in &wanted.container_networks {
        check_network(c, "--container-network", &networks, &mut problems);
        if bridge.as_ref() == Some(c) {
            problems.push(Problem::new(format!(
                "the bridge network must not be shared with another network role - container also uses {c:?}"
            )));
        }
    }
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    let (Some(pool), Some(image_store)) = (pool, image_store) else {
        unreachable!("a missing pool or image store is a problem")
    };
    Ok(Ok(Placement {
        datacenter,
        dc_path,
        vm_folder,
        pool,
        vcenter,
        image_store,
        volume_stores,
        bridge_network: bridge,
        public_network: public,
    }))
}

/// The datacenter `path` names, or the target's only one.
pub async fn datacenter(client: &Client, path: Option<&str>) -> anyhow::Result<MoRef> {
    let root = client.content().root_folder.clone();
    let dcs = named(client, &root, "Datacenter").await?;
    let wanted = Wanted {
        datacenter: path.map(str::to_string),
        ..Wanted::default()
    };
    match choose_datacenter(client, &dcs, &wanted).await? {
        Ok((dc, _)) => Ok(dc),
        Err(p) => anyhow::bail!("{}", p.message),
    }
}

async fn choose_datacenter(
    client: &Client,
    dcs: &[(String, MoRef)],
    wanted: &Wanted,
) -> anyhow::Result<Result<(MoRef, String), Problem>> {
    let names: Vec<String> = dcs.iter().map(|(n, _)| n.clone()).collect();
    match &wanted.datacenter {
        Some(path) => match client.find_by_inventory_path(path).await? {
            Some(dc) if dc.kind == "Datacenter" => Ok(Ok((dc, path.clone()))),
            _ => Ok(Err(Problem::suggesting(
                format!("Datacenter {path:?} in --target is not found"),
                DATACENTERS,
                names,
            ))),
        },
        None => match dcs {
            [(name, dc)] => Ok(Ok((dc.clone(), name.clone()))),
            [] => Ok(Err(Problem::new("the target has no datacenter".into()))),
            _ => Ok(Err(Problem::suggesting(
                "Datacenter must be specified in --target (e.g. https://addr/datacenter)".into(),
                DATACENTERS,
                names,
            ))),
        },
    }
}

/// The resource pool `--compute-resource` names (a cluster's or host's root pool, or a
/// pool in it), or the only compute resource's when there is one.
async fn choose_pool(
    client: &Client,
    dc_path: &str,
    host_folder: &MoRef,
    wanted: &Wanted,
) -> anyhow::Result<Result<MoRef, Problem>> {
    let mut computes = named(client, host_folder, "ComputeResource").await?;
    computes.dedup();
    let names: Vec<String> = computes.iter().map(|(n, _)| n.clone()).collect();
    let root_pool = |c: MoRef| async move {
        let props = client.properties(&c, &["resourcePool"]).await?;
        props
            .prop("resourcePool")
            .and_then(|n| n.moref())
            .ok_or_else(|| anyhow::anyhow!("{c} has no resource pool"))
    };
    let Some(path) = wanted.compute_resource.as_deref() else {
        return Ok(match computes.as_slice() {
            [(_, only)] => Ok(root_pool(only.clone()).await?),            _ => Err(Problem::suggesting(
                "No unambiguous default compute resource available: --compute-resource must be specified".into(),
                "--compute-resource",
                names,
            )),
        });
    };
    let path = path.trim_matches('/');
    let (compute, rest) = path.split_once('/').unwrap_or((path, ""));
    let found = client
        .find_by_inventory_path(&format!("{dc_path}/host/{compute}"))
        .await?;
    let missing = |what: &str| {
        Err(Problem::suggesting(
            format!("{what} '{path}' not found"),
            "--compute-resource",
            names.clone(),
        ))
    };
    let Some(c) = found.filter(|c| c.kind.ends_with("ComputeResource")) else {
        return Ok(missing("compute resource"));
    };
    let root = root_pool(c).await?;
    if rest.is_empty() {
        return Ok(Ok(root));
    }
    let p = format!("{dc_path}/host/{compute}/Resources/{rest}");
    Ok(match client.find_by_inventory_path(&p).await? {
        Some(pool) if pool.kind == "ResourcePool" || pool.kind == "VirtualApp" => Ok(pool),
        _ => missing("resource pool"),
    })
}

/// `DATASTORE[/path]` on one of `datastores`.
fn datastore_path(s: &str, datastores: &[String]) -> Result<DatastorePath, Problem> {
    let s = s.strip_prefix("ds://").unwrap_or(s);
    let (ds, path) = s.split_once('/').unwrap_or((s, ""));
    if datastores.iter().any(|d| d == ds) {
        Ok(DatastorePath::new(ds, path.trim_matches('/')))
    } else {
        Err(Problem::suggesting(
            format!("datastore '{ds}' not found"),
            "--image-store",
            datastores.to_vec(),
        ))
    }
}

/// `DATASTORE/path:LABEL`.
fn volume_store(s: &str, datastores: &[String]) -> Result<(String, DatastorePath), Problem> {
    let Some((store, label)) = s.rsplit_once(':').filter(|(_, l)| !l.is_empty()) else {
        return Err(Problem::new(format!(
            "--volume-store {s:?}: use DATASTORE/path:LABEL (a label is required)"
        )));
    };
    let mut path = datastore_path(store, datastores).map_err(|mut p| {
        if let Some(s) = &mut p.suggest {
            s.0 = "--volume-store".into();
        }
        p
    })?;
    if path.path.is_empty() {
        // VIC's folder for a store given as a datastore alone.
        path.path = "VIC".into();
    }
    Ok((label.to_string(), path))
}

fn check_network(name: &str, flag: &str, networks: &[String], problems: &mut Vec<Problem>) {
    if !networks.iter().any(|n| n == name) {
        problems.push(Problem::suggesting(
            format!("Error checking network for {flag}: network '{name}' not found"),
            flag,
            networks.to_vec(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_name_a_datastore_and_a_path() {
        let ds = ["LocalDS_0".to_string(), "shared".to_string()];
        assert_eq!(
            datastore_path("shared/vic/images", &ds).unwrap(),
            DatastorePath::new("shared", "vic/images")
        );
        assert_eq!(
            datastore_path("ds://LocalDS_0", &ds).unwrap(),
            DatastorePath::new("LocalDS_0", "")
        );
        let p = datastore_path("nope/x", &ds).unwrap_err();
        assert_eq!(p.message, "datastore 'nope' not found");
        assert_eq!(p.suggest.unwrap().1, ds);
        let (label, path) = volume_store("shared/vols:default", &ds).unwrap();
        assert_eq!(
            (label.as_str(), path.to_string().as_str()),
            ("default", "[shared] vols")
        );
        assert_eq!(volume_store("shared:fast", &ds).unwrap().1.path, "VIC");
        assert!(volume_store("shared/vols", &ds).is_err());
        let p = volume_store("nope/v:x", &ds).unwrap_err();
        assert_eq!(p.suggest.unwrap().0, "--volume-store");
    }
}
