//! Where a VCH's VMs live: a resource pool (ESX, or a vCenter without vApps) or a vApp
//! (vCenter), with the VCH's limits as the pool's allocation.

use crate::xml::Request;
use crate::{Client, Error, MoRef};

/// Limits of a pool: what its VMs may use together, unlimited when `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allocation {
    pub cpu_limit_mhz: Option<u64>,
    pub memory_limit_mib: Option<u64>,
}

/// Writes a `ResourceConfigSpec` named `name` for `alloc`.
fn resource_spec(req: &mut Request, name: &str, alloc: Allocation) {
    let info = |req: &mut Request, field: &str, limit: Option<u64>| {
        let limit = limit.map_or("-1".to_string(), |l| l.to_string());
        req.open(field)
            .text("reservation", "0")
            .text("expandableReservation", "true")
            .text("limit", &limit)
            .open("shares")
            .text("shares", "0")
            .text("level", "normal")
            .close()
            .close();
    };
    req.open(name);
    info(req, "cpuAllocation", alloc.cpu_limit_mhz);
    info(req, "memoryAllocation", alloc.memory_limit_mib);
    req.close();
}

impl Client {
    /// Makes resource pool `name` in `parent` (a pool, or a cluster's or host's root pool).
    pub async fn create_resource_pool(
        &self,
        parent: &MoRef,
        name: &str,
        alloc: Allocation,
    ) -> Result<MoRef, Error> {
        let mut req = Request::new("CreateResourcePool", parent);
        req.text("name", name);
        resource_spec(&mut req, "spec", alloc);
        self.call_returning(&req)
            .await?
            .and_then(|n| n.moref())
            .ok_or_else(|| Error::Protocol("CreateResourcePool returned no pool".into()))
    }

    /// Makes vApp `name` in pool `parent`, its VMs in `folder` (vCenter only).
    pub async fn create_vapp(
        &self,
        parent: &MoRef,
        name: &str,
        folder: &MoRef,
        alloc: Allocation,
    ) -> Result<MoRef, Error> {
        let mut req = Request::new("CreateVApp", parent);
        req.text("name", name);
        resource_spec(&mut req, "resSpec", alloc);
        req.open("configSpec").close();
        req.moref("vmFolder", folder);
        self.call_returning(&req)
            .await?
            .and_then(|n| n.moref())
            .ok_or_else(|| Error::Protocol("CreateVApp returned no vApp".into()))
    }

    /// Changes the limits of a pool or vApp.
    pub async fn set_allocation(&self, pool: &MoRef, alloc: Allocation) -> Result<(), Error> {
        let mut req = Request::new("UpdateConfig", pool);
        resource_spec(&mut req, "config", alloc);
        self.call(&req).await.map(|_| ())
    }
}
