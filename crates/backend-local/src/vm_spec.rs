//! `vm.json`: what a VM of this backend is made of, as its directory records it.

use serde::{Deserialize, Serialize};

/// What `vm.json` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    pub id: String,
    pub display_name: String,
    pub image_id: String,
    pub memory_mib: u32,
    pub cpus: u32,
    /// The uid and gid its QEMU runs as (see `jail.rs`); absent in files of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Its network interfaces (none in files of older versions).
    #[serde(default)]
    pub nics: Vec<hypervisor::Nic>,
    /// Its data disks (volumes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<hypervisor::DataDisk>,
    /// Its host shares (bind mounts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<hypervisor::Share>,
    /// The host CPUs its QEMU runs on; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_cpus: Vec<u32>,
    /// Its CPU weight against the VCH's other VMs (`--cpu-shares`); none: the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u32>,
}
