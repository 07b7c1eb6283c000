//! Volumes and mounts of a create: `-v NAME:/path[:ro|rw|nocopy]` (`HostConfig.Binds`),
//! `-v /path` (`Config.Volumes`), the image's `VOLUME`s, `--mount type=volume|tmpfs`
//! (`HostConfig.Mounts`) and `--volumes-from`, read as dockerd reads them. Each volume
//! becomes a disk of the container's VM; a `--mount type=tmpfs` joins `--tmpfs`'s mounts.
//!
//! A host path (`-v /host:/ctr`, `--mount type=bind`) is a bind mount: shared into the VM
//! from under the VCH's bind paths (the port layer's `binds.rs` decides which).

use std::collections::BTreeMap;

use portlayer::guest::Tmpfs;
use portlayer::{BindMount, VolumeMount};
use serde_json::Value;

use super::config::{ContainerConfig, Options};
use super::host_config::{HostConfig, Mount};
use super::tmpfs;

const PROPAGATION: &str =
    "a host path is shared into a VM, which sees no mount made on the host later";

/// What the create's mounts come to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Mounts {
    pub volumes: Vec<VolumeMount>,
    pub binds: Vec<BindMount>,
    pub tmpfs: Vec<Tmpfs>,
}

/// A bind's propagation: a VM's view is private to it.
fn propagation(mode: &str) -> Result<(), String> {
    match mode {
        "" | "private" | "rprivate" => Ok(()),
        "shared" | "rshared" | "slave" | "rslave" => Err(format!(
            "bind propagation {mode} is not supported by vic: {PROPAGATION}"
        )),
        other => Err(format!("invalid mode: {other}")),
    }
}

/// One `-v /host:/ctr[:MODES]`.
fn host_bind(spec: &str, src: &str, target: &str, modes: &str) -> Result<BindMount, String> {
    check_target(target, spec)?;
    let mut b = BindMount {
        source: src.to_string(),
        target: target.trim_end_matches('/').to_string(),
        readonly: false,
        create: true,
    };
    for mode in modes.split(',').filter(|m| !m.is_empty()) {
        match mode {
            "ro" => b.readonly = true,
            "rw" => b.readonly = false,
            "z" | "Z" => {
                return Err(format!(
                    "-v {spec}: SELinux relabelling ({mode}) is not supported by vic: a container VM has no SELinux label"
                ))
            }
            m => propagation(m)?,
        }
    }
    Ok(b)
}

fn invalid(msg: String) -> String {
    format!("invalid mount config: {msg}")
}

/// A container path a volume can be mounted on: absolute, clean, not `/`.
fn check_target(target: &str, spec: &str) -> Result<(), String> {
    let clean = target.starts_with('/')
        && target != "/"
        && !target.split('/').any(|p| p == ".." || p == ".");
    if clean {
        Ok(())
    } else {
        Err(format!(
            "invalid volume specification: '{spec}': invalid mount config for type \"volume\": invalid mount path: '{target}' mount path must be absolute"
        ))
    }
}

/// One `-v` entry: `NAME:/path[:MODES]`, `/host:/path[:MODES]` or `/path`.
fn bind(spec: &str) -> Result<Result<VolumeMount, BindMount>, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, target, modes) = match parts.as_slice() {
        [t] => ("", *t, ""),
        [s, t] => (*s, *t, ""),
        [s, t, m] => (*s, *t, *m),
        _ => return Err(format!("invalid volume specification: '{spec}'")),
    };
    if src.starts_with('/') {
        return host_bind(spec, src, target, modes).map(Err);
    }
    if src.starts_with('.') || src.starts_with('~') {
        return Err(format!(
            "-v {spec}: a relative host path is not a volume name: give an absolute path"
        ));
    }
    check_target(target, spec)?;
    let mut m = VolumeMount {
        name: src.to_string(),
        target: target.trim_end_matches('/').to_string(),
        copy: true,
        ..VolumeMount::default()
    };
    for mode in modes.split(',').filter(|m| !m.is_empty()) {
        match mode {
            "ro" => m.readonly = true,
            "rw" => m.readonly = false,
            "nocopy" => m.copy = false,
            "z" | "Z" => {
                return Err(format!(
                    "-v {spec}: SELinux relabelling ({mode}) does not apply to a volume on its own disk"
                ))
            }
            _ => return Err(format!("invalid mode: {mode}")),
        }
    }
    Ok(Ok(m))
}

/// One `--mount` of type `bind`.
fn bind_mount(mt: &Mount, target: &str) -> Result<BindMount, String> {
    check_target(target, target)?;
    let o = &mt.bind_options;
    if let Some(p) = option(o, "Propagation").and_then(Value::as_str) {
        propagation(p)?;
    }
    for key in [
        "NonRecursive",
        "ReadOnlyNonRecursive",
        "ReadOnlyForceRecursive",
    ] {
        if option(o, key).and_then(Value::as_bool) == Some(true) {
            return Err(invalid(format!(
                "bind option {key} is not supported by vic"
            )));
        }
    }
    Ok(BindMount {
        source: mt.source.clone().unwrap_or_default(),
        target: target.trim_end_matches('/').to_string(),
        readonly: mt.read_only == Some(true),
        create: option(o, "CreateMountpoint").and_then(Value::as_bool) == Some(true),
    })
}

fn strings(o: Option<&Value>) -> BTreeMap<String, String> {
    let Some(map) = o.and_then(Value::as_object) else {
        return BTreeMap::new();
    };
    map.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            )
        })
        .collect()
}

fn option<'a>(o: &'a Option<Options>, key: &str) -> Option<&'a Value> {
    o.as_ref().and_then(|o| o.get(key)).filter(|v| !v.is_null())
}

/// One `--mount` of type `volume`.
fn volume_mount(mt: &Mount, target: &str) -> Result<VolumeMount, String> {
    let o = &mt.volume_options;
    if option(o, "Subpath")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Err(invalid("volume-subpath is not supported by vic".into()));
    }
    let driver = option(o, "DriverConfig");
    Ok(VolumeMount {
        name: mt.source.clone().unwrap_or_default(),
        target: target.trim_end_matches('/').to_string(),
        readonly: mt.read_only == Some(true),
        copy: option(o, "NoCopy").and_then(Value::as_bool) != Some(true),
        driver: driver
            .and_then(|d| d.get("Name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        options: strings(driver.and_then(|d| d.get("Options"))),
        labels: strings(option(o, "Labels")),
    })
}

/// One `--mount` of type `tmpfs`, as `--tmpfs` would have it.
fn tmpfs_mount(mt: &Mount, target: &str) -> Result<Tmpfs, String> {
    let o = &mt.tmpfs_options;
    let mut opts = Vec::new();
    if let Some(size) = option(o, "SizeBytes")
        .and_then(Value::as_i64)
        .filter(|s| *s > 0)
    {
        opts.push(format!("size={size}"));
    }
    if let Some(mode) = option(o, "Mode").and_then(Value::as_u64) {
        opts.push(format!("mode={:o}", mode & 0o7777));
    }
    if mt.read_only == Some(true) {
        opts.push("ro".into());
    }
    if option(o, "Options").is_some() {
        return Err(invalid("tmpfs-option is not supported by vic".into()));
    }
    tmpfs::parse(target, &opts.join(","))
}

/// The create's volumes and `--mount` tmpfs mounts; `image` is the image's config (its
/// `Volumes`). A path given twice is refused as dockerd refuses it.
pub fn plan(c: &ContainerConfig, h: &HostConfig, image: &Value) -> Result<Mounts, String> {
    let mut out = Mounts::default();
    for spec in h.binds.iter().flatten() {
        match bind(spec)? {
            Ok(v) => out.volumes.push(v),
            Err(b) => out.binds.push(b),
        }
    }
    for mt in h.mounts.iter().flatten() {
        let target = mt.target.clone().unwrap_or_default();
        let kind = mt.kind.as_deref().unwrap_or_default();
        if mt
            .consistency
            .as_deref()
            .is_some_and(|c| !c.is_empty() && c != "default")
        {
            return Err(invalid("consistency is a macOS option".into()));
        }
        match kind {
            "volume" => {
                check_target(&target, &target)?;
                out.volumes.push(volume_mount(mt, &target)?)
            }
            "tmpfs" => out.tmpfs.push(tmpfs_mount(mt, &target)?),
            "bind" => out.binds.push(bind_mount(mt, &target)?),
            other => {
                return Err(invalid(format!(
                    "mount type \"{other}\" is not supported by vic (volume and tmpfs are)"
                )))
            }
        }
    }
    let mut seen: Vec<&str> = Vec::new();
    for t in out
        .volumes
        .iter()
        .map(|v| v.target.as_str())
        .chain(out.tmpfs.iter().map(|t| t.path.as_str()))
    {
        if seen.contains(&t) {
            return Err(format!("Duplicate mount point: {t}"));
        }
        seen.push(t);
    }
    // `--volume-driver`: the driver of the volumes `-v` makes.
    let driver = h.volume_driver.clone().unwrap_or_default();
    for v in out.volumes.iter_mut().filter(|v| v.driver.is_empty()) {
        v.driver = driver.clone();
    }
    // `-v /path` and the image's VOLUMEs: anonymous volumes where nothing else is mounted.
    let anonymous = (c.volumes.iter().flatten().map(|(k, _)| k.clone()))
        .chain(
            image
                .get("Volumes")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone()),
        )
        .collect::<Vec<String>>();
    for path in anonymous {
        let target = path.trim_end_matches('/').to_string();
        let taken = out.volumes.iter().any(|v| v.target == target)
            || out.binds.iter().any(|b| b.target == target)
            || out.tmpfs.iter().any(|t| t.path == target);
        if !taken {
            check_target(&target, &path)?;
            out.volumes.push(VolumeMount {
                target,
                copy: true,
                driver: driver.clone(),
                ..VolumeMount::default()
            });
        }
    }
    Ok(out)
}

/// `--volumes-from CONTAINER[:ro|rw]`: that container's volumes and bind mounts, where the
/// create mounts nothing else; `mounts_of` finds a container's.
pub fn volumes_from(
    mounts: &mut Vec<VolumeMount>,
    binds: &mut Vec<BindMount>,
    from: &[String],
    mounts_of: impl Fn(&str) -> Result<(Vec<VolumeMount>, Vec<BindMount>), String>,
) -> Result<(), String> {
    for spec in from {
        let (name, mode) = match spec.rsplit_once(':') {
            Some((n, m @ ("ro" | "rw"))) => (n, Some(m)),
            Some(_) => return Err(format!("invalid mode for volumes-from: {spec}")),
            None => (spec.as_str(), None),
        };
        let (theirs, their_binds) = mounts_of(name)?;
        let taken = |t: &str, m: &[VolumeMount], b: &[BindMount]| {
            m.iter().any(|v| v.target == t) || b.iter().any(|v| v.target == t)
        };
        for mut m in theirs {
            if taken(&m.target, mounts, binds) {
                continue;
            }
            if let Some(mode) = mode {
                m.readonly = mode == "ro";
            }
            m.copy = false;
            mounts.push(m);
        }
        for mut b in their_binds {
            if taken(&b.target, mounts, binds) {
                continue;
            }
            if let Some(mode) = mode {
                b.readonly = mode == "ro";
            }
            b.create = false;
            binds.push(b);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn host(v: Value) -> HostConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn binds_name_volumes_or_host_paths_with_their_modes() {
        let h = host(json!({"Binds": ["data:/srv/data:ro,nocopy", "logs:/logs"]}));
        let m = plan(&ContainerConfig::default(), &h, &json!({})).unwrap();
        assert_eq!(m.volumes.len(), 2);
        let h = host(json!({"Binds": ["/srv/site:/usr/share/html:ro,rprivate"]}));
        let b = &plan(&ContainerConfig::default(), &h, &json!({}))
            .unwrap()
            .binds[0];
        assert_eq!(
            (b.source.as_str(), b.target.as_str(), b.readonly, b.create),
            ("/srv/site", "/usr/share/html", true, true)
        );
        let v = &m.volumes[0];
        assert_eq!(
            (v.name.as_str(), v.target.as_str(), v.readonly, v.copy),
            ("data", "/srv/data", true, false)
        );
        assert!(m.volumes[1].copy && !m.volumes[1].readonly);
        let h = host(json!({"Binds": ["/srv/site:/usr/share/html:ro,rprivate"]}));
        let b = &plan(&ContainerConfig::default(), &h, &json!({}))
            .unwrap()
            .binds[0];
        assert_eq!(
            (b.source.as_str(), b.target.as_str(), b.readonly, b.create),
            ("/srv/site", "/usr/share/html", true, true)
        );
        for (bad, want) in [
            (
                "/etc:/x:rshared",
                "bind propagation rshared is not supported by vic",
            ),
            ("./rel:/x", "a relative host path is not a volume name"),
            ("data:relative", "mount path must be absolute"),
            ("data:/", "mount path must be absolute"),
            ("data:/x:zz", "invalid mode: zz"),
            ("data:/x:Z", "SELinux relabelling"),
        ] {
            let h = host(json!({ "Binds": [bad] }));
            let e = plan(&ContainerConfig::default(), &h, &json!({})).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn anonymous_volumes_come_from_the_create_and_the_image_unless_mounted_over() {
        let c: ContainerConfig =
            serde_json::from_value(json!({"Volumes": {"/cache": {}}})).unwrap();
        let h = host(json!({"Binds": ["named:/data"]}));
        let image = json!({"Volumes": {"/data": {}, "/var/lib/x/": {}}});
        let m = plan(&c, &h, &image).unwrap();
        let shown: Vec<(&str, &str)> = m
            .volumes
            .iter()
            .map(|v| (v.name.as_str(), v.target.as_str()))
            .collect();
        assert_eq!(
            shown,
            [("named", "/data"), ("", "/cache"), ("", "/var/lib/x")]
        );
    }

    #[test]
    fn mounts_of_type_volume_bind_and_tmpfs_are_read_and_others_refused() {
        let h = host(json!({"Mounts": [
            {"Type": "volume", "Source": "v1", "Target": "/a", "ReadOnly": true,
             "VolumeOptions": {"NoCopy": true, "Labels": {"k": "v"},
                               "DriverConfig": {"Name": "vsphere", "Options": {"Capacity": "2G"}}}},
            {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 448}}
        ]}));
        let m = plan(&ContainerConfig::default(), &h, &json!({})).unwrap();
        let v = &m.volumes[0];
        assert!(v.readonly && !v.copy);
        assert_eq!(v.driver, "vsphere");
        assert_eq!(v.options["Capacity"], "2G");
        assert_eq!(v.labels["k"], "v");
        assert_eq!(m.tmpfs[0].path, "/t");
        assert!(
            m.tmpfs[0].options.contains(&"size=1048576".to_string()),
            "{:?}",
            m.tmpfs[0]
        );
        assert!(
            m.tmpfs[0].options.contains(&"mode=700".to_string()),
            "{:?}",
            m.tmpfs[0]
        );
        let h = host(json!({"Mounts": [
            {"Type": "bind", "Source": "/etc", "Target": "/x", "ReadOnly": true}
        ]}));
        let b = &plan(&ContainerConfig::default(), &h, &json!({}))
            .unwrap()
            .binds[0];
        assert!(b.readonly && !b.create && b.source == "/etc");
        let h = host(json!({"Mounts": [
            {"Type": "bind", "Source": "/etc", "Target": "/x", "BindOptions": {"NonRecursive": true}}
        ]}));
        let e = plan(&ContainerConfig::default(), &h, &json!({})).unwrap_err();
        assert!(e.contains("NonRecursive"), "{e}");
        let h = host(
            json!({"Binds": ["a:/x"], "Mounts": [{"Type": "volume", "Source": "b", "Target": "/x"}]}),
        );
        assert_eq!(
            plan(&ContainerConfig::default(), &h, &json!({})).unwrap_err(),
            "Duplicate mount point: /x"
        );
    }

    #[test]
    fn volumes_from_copies_mounts_with_the_mode_given_and_never_over_one() {
        let theirs = vec![
            VolumeMount {
                name: "a".into(),
                target: "/a".into(),
                copy: true,
                ..Default::default()
            },
            VolumeMount {
                name: "b".into(),
                target: "/b".into(),
                ..Default::default()
            },
        ];
        let mut mine = vec![VolumeMount {
            name: "mine".into(),
            target: "/b".into(),
            ..Default::default()
        }];
        let mut binds = Vec::new();
        let bind = BindMount {
            source: "/srv".into(),
            target: "/srv".into(),
            ..Default::default()
        };
        volumes_from(&mut mine, &mut binds, &["c1:ro".into()], |n| {
            assert_eq!(n, "c1");
            Ok((theirs.clone(), vec![bind.clone()]))
        })
        .unwrap();
        assert!(binds[0].readonly && binds[0].source == "/srv");
        assert_eq!(mine.len(), 2);
        assert!(mine[1].readonly && !mine[1].copy && mine[1].name == "a");
        let e = volumes_from(&mut mine, &mut binds, &["c1:zz".into()], |_| {
            Ok((vec![], vec![]))
        })
        .unwrap_err();
        assert_eq!(e, "invalid mode for volumes-from: c1:zz");
    }
}
