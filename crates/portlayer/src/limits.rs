//! [`Limits`]: what a VCH may use, as `vic-machine create` / `configure` set it.
//!
//! The appliance reads them from the VCH's configuration document and hands them to [`crate::Containers`] in
//! [`crate::ContainersConfig`]. The port layer enforces two of them:
//!
//! | limit            | checked when            | refused with |
//! |------------------|-------------------------|--------------|
//! | `max_containers` | a container is created  | `Container count exceeds limit N. containers: M` (VIC's words) |
//! | `memory_mib`, `cpus` | a container is started | `Insufficient resources: …` |
//!
//! Memory and vCPUs are VM sizes: the sum over running containers (plus starts under way)
//! and the new one must fit. `storage_quota_bytes` is enforced by [`crate::Storage`] (pulls
//! through the image store's budget, creates by the Docker personality); `dns_servers` is
//! carried for container networking, which does not use it yet.
//! `name_convention` is VIC's `--container-name-convention`: the pattern of a container VM's
//! display name (QEMU's `-name` locally), with `{name}` and/or `{id}` replaced.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use vch_config::{check_name_convention, MAX_VM_NAME_LEN, SHORT_ID_LEN};

/// The display name when no convention is set (VIC's default pattern).
pub const DEFAULT_NAME_CONVENTION: &str = "{name}-{id}";

/// A VCH's resource limits and container settings; `None` or empty means unlimited / unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// How many containers may exist (created, running or exited).
    pub max_containers: Option<u32>,
    /// Total memory of running container VMs, in MiB.
    pub memory_mib: Option<u64>,
    /// Total vCPUs of running container VMs.
    pub cpus: Option<u32>,
    /// Storage for images, containers and volumes, in bytes (see [`crate::Storage`]).
    pub storage_quota_bytes: Option<u64>,
    /// DNS servers for containers (not used yet).
    pub dns_servers: Vec<String>,
    /// Display-name pattern of container VMs, e.g. `vch-{name}-{id}`.
    pub name_convention: Option<String>,
}

/// A limit that refuses an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Container count exceeds limit {limit}. containers: {count}
    #[error("Container count exceeds limit {limit}. containers: {count}")]
    Containers { limit: u32, count: usize },
    /// Insufficient resources: memory.
    #[error("Insufficient resources: the container needs {need} MiB of memory, running containers use {used} MiB of the VCH's {limit} MiB")]
    Memory { need: u64, used: u64, limit: u64 },
    /// Insufficient resources: vCPUs.
    #[error("Insufficient resources: the container needs {need} vCPU(s), running containers use {used} of the VCH's {limit}")]
    Cpus { need: u32, used: u32, limit: u32 },
}

impl Limits {
    /// The display name of a container VM: the convention with `{id}` (the short ID) and
    /// `{name}` put in, truncated to VIC's 80 characters (the name gives way first).
    pub fn display_name(&self, name: &str, id: &str) -> String {
        let pattern = match self.name_convention.as_deref() {
            Some(p) if check_name_convention(p).is_ok() => p,
            _ => DEFAULT_NAME_CONVENTION,
        };
        let short = &id[..SHORT_ID_LEN.min(id.len())];
        let fixed = pattern.replacen("{id}", "", 1).replacen("{name}", "", 1);
        let mut room = MAX_VM_NAME_LEN.saturating_sub(fixed.len());
        let mut out = pattern.to_string();
        for (token, value) in [("{id}", short), ("{name}", name)] {
            if out.contains(token) {
                let v: String = value.chars().take(room).collect();
                room -= v.len();
                out = out.replacen(token, &v, 1);
            }
        }
        out
    }

    /// Refuses one more container when `existing` already reach `max_containers`.
    pub fn check_count(&self, existing: usize) -> Result<(), LimitError> {
        match self.max_containers {
            Some(limit) if existing >= limit as usize => Err(LimitError::Containers {
                limit,
                count: existing,
            }),
            _ => Ok(()),
        }
    }

    /// Refuses a VM of `need` (MiB, vCPUs) when `used` plus it exceed the limits.
    pub fn check_resources(&self, used: (u64, u32), need: (u64, u32)) -> Result<(), LimitError> {
        if let Some(limit) = self.memory_mib {
            if used.0 + need.0 > limit {
                return Err(LimitError::Memory {
                    need: need.0,
                    used: used.0,
                    limit,
                });
            }
        }
        if let Some(limit) = self.cpus {
            if used.1 + need.1 > limit {
                return Err(LimitError::Cpus {
                    need: need.1,
                    used: used.1,
                    limit,
                });
            }
        }
        Ok(())
    }
}

/// The limits plus the starts under way, so that two starts at once cannot both take the
/// last memory.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    pub(crate) limits: Limits,
    /// Container ID → (MiB, vCPUs) of starts that have passed the check and not finished.
    starting: Mutex<HashMap<String, (u64, u32)>>,
}

/// A start admitted by [`Admission::admit_start`]; counted until dropped.
pub(crate) struct StartTicket<'a> {
    admission: &'a Admission,
    id: String,
}

impl Drop for StartTicket<'_> {
    fn drop(&mut self) {
        self.admission
            .starting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl Admission {
    pub(crate) fn new(limits: Limits) -> Self {
        Admission {
            limits,
            starting: Mutex::new(HashMap::new()),
        }
    }

    /// Admits starting container `id` with `need` when it fits beside `running` (ID, MiB,
    /// vCPUs of running containers) and the other starts under way.
    pub(crate) fn admit_start(
        &self,
        id: &str,
        need: (u64, u32),
        running: impl IntoIterator<Item = (String, u64, u32)>,
    ) -> Result<StartTicket<'_>, LimitError> {
        let mut starting = self.starting.lock().unwrap_or_else(|e| e.into_inner());
        if self.limits.memory_mib.is_some() || self.limits.cpus.is_some() {
            let mut seen = HashSet::new();
            let mut used = (0u64, 0u32);
            let pending = starting.iter().map(|(i, (m, c))| (i.clone(), *m, *c));
            for (other, mem, cpus) in running.into_iter().chain(pending) {
                if other != id && seen.insert(other) {
                    used.0 += mem;
                    used.1 += cpus;
                }
            }
            self.limits.check_resources(used, need)?;
        }
        starting.insert(id.to_string(), need);
        Ok(StartTicket {
            admission: self,
            id: id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn the_display_name_follows_the_convention_and_defaults_to_name_dash_id() {
        let l = Limits::default();
        assert_eq!(l.display_name("web", ID), "web-0123456789ab");
        let l = Limits {
            name_convention: Some("vch-{name}-{id}".into()),
            ..Limits::default()
        };
        assert_eq!(l.display_name("web", ID), "vch-web-0123456789ab");
        let l = Limits {
            name_convention: Some("ctr-{id}".into()),
            ..Limits::default()
        };
        assert_eq!(l.display_name("web", ID), "ctr-0123456789ab");
        // Long names are cut so that the whole fits VIC's 80 characters, the ID kept whole.
        let l = Limits {
            name_convention: Some("{id}-{name}".into()),
            ..Limits::default()
        };
        let long = "n".repeat(100);
        let dn = l.display_name(&long, ID);
        assert_eq!(dn.len(), 80);
        assert!(dn.starts_with("0123456789ab-nnn"), "{dn}");
    }

    #[test]
    fn the_count_limit_refuses_the_one_over_with_vics_words() {
        let l = Limits {
            max_containers: Some(2),
            ..Limits::default()
        };
        assert!(l.check_count(1).is_ok());
        assert_eq!(
            l.check_count(2).unwrap_err().to_string(),
            "Container count exceeds limit 2. containers: 2"
        );
        assert!(Limits::default().check_count(10_000).is_ok());
    }

    #[test]
    fn starts_under_way_count_against_memory_until_they_finish() {
        let a = Admission::new(Limits {
            memory_mib: Some(1024),
            cpus: Some(4),
            ..Limits::default()
        });
        let running = || vec![("r".to_string(), 512u64, 1u32)];
        let t1 = a.admit_start("a", (256, 1), running()).unwrap();
        let err = a.admit_start("b", (512, 1), running()).err().unwrap();
        assert_eq!(
            err,
            LimitError::Memory {
                need: 512,
                used: 768,
                limit: 1024
            }
        );
        assert!(err.to_string().starts_with("Insufficient resources: "));
        drop(t1);
        // "a" finished starting and now runs: it is counted once, as running.
        let running2 = vec![("r".to_string(), 512, 1), ("a".to_string(), 256, 1)];
        assert!(a.admit_start("b", (512, 1), running2.clone()).is_err());
        assert!(a.admit_start("b", (256, 1), running2).is_ok());
        let err = a
            .admit_start("c", (64, 4), running())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("vCPU"), "{err}");
    }
}
