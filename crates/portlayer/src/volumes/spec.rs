//! What a volume is asked to be: `docker volume create`'s name, driver, options and labels,
//! checked as VIC checked them.

use std::collections::BTreeMap;

use super::VolumeError;

/// The store a volume goes to when none is named.
pub const DEFAULT_STORE: &str = "default";
/// A volume's size when none is given (VIC's default).
pub const DEFAULT_CAPACITY_MIB: u64 = 1024;
const MIN_CAPACITY_MIB: u64 = 16;
const MAX_CAPACITY_MIB: u64 = 62 << 20;
const MAX_NAME_LEN: usize = 128;

/// A volume to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    /// Empty for an anonymous volume.
    pub name: String,
    pub driver: String,
    pub store: String,
    pub capacity_mib: u64,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

impl VolumeSpec {
    /// An anonymous volume with the defaults.
    pub fn anonymous() -> VolumeSpec {
        VolumeSpec {
            name: String::new(),
            driver: "vsphere".into(),
            store: DEFAULT_STORE.into(),
            capacity_mib: DEFAULT_CAPACITY_MIB,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
        }
    }

    /// The volume `docker volume create` (or a container's `--mount`) asks for: the
    /// `vsphere` or `local` driver (the same disk either way; none given: the VCH's default,
    /// its backend's, filled in when it is made), options `Capacity` (MB unless a unit is
    /// given) and `VolumeStore`; anything else is refused in words.
    pub fn parse(
        name: &str,
        driver: &str,
        options: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
    ) -> Result<VolumeSpec, VolumeError> {
        if !name.is_empty() {
            check_name(name)?;
        }
        let driver = match driver {
            "" => "",
            "vsphere" => "vsphere",
            "local" => "local",
            other => return Err(VolumeError::NoPlugin(other.to_string())),
        };
        let mut spec = VolumeSpec {
            name: name.to_string(),
            driver: driver.to_string(),
            labels: labels.clone(),
            options: options.clone(),
            ..VolumeSpec::anonymous()
        };
        for (k, v) in options {
            match k.to_ascii_lowercase().as_str() {
                "capacity" => spec.capacity_mib = parse_capacity(v)?,
                "volumestore" => {
                    if v.is_empty() {
                        return Err(VolumeError::Invalid(
                            "VolumeStore must name a volume store".into(),
                        ));
                    }
                    spec.store = v.clone()
                }
                _ => {
                    return Err(VolumeError::Invalid(format!(
                        "invalid volume option {k}: vic's volumes take Capacity and VolumeStore"
                    )))
                }
            }
        }
        Ok(spec)
    }
}

/// Docker's rule for volume names (which also keeps them plain file names on the store).
fn check_name(name: &str) -> Result<(), VolumeError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || name.len() < 2 {
        return Err(VolumeError::Invalid(format!(
            "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(VolumeError::Invalid(format!(
            "create {name}: a volume name is at most {MAX_NAME_LEN} characters"
        )));
    }
    Ok(())
}

/// A capacity as VIC read it: a number of MB, or a number with a unit (`KB`, `MB`, `GB`,
/// `TB`, with or without the `B`, any case; binary multiples as VIC used them), in MiB.
pub fn parse_capacity(s: &str) -> Result<u64, VolumeError> {
    let bad = || {
        VolumeError::Invalid(format!(
            "invalid Capacity {s:?}: give a size such as 512MB or 2GB, between {MIN_CAPACITY_MIB}MB and {}TB",
            MAX_CAPACITY_MIB >> 20
        ))
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit
        .strip_suffix("IB")
        .or(unit.strip_suffix('B'))
        .unwrap_or(&unit);
    let mib = match unit {
        "K" => n.div_ceil(1024),
        "" | "M" => n,
        "G" => n.checked_mul(1024).ok_or_else(bad)?,
        "T" => n.checked_mul(1 << 20).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if !(MIN_CAPACITY_MIB..=MAX_CAPACITY_MIB).contains(&mib) {
        return Err(bad());
    }
    Ok(mib)
}
