//! `vic-machine delete`: a VCH and everything it made, on the host too.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::appliance;
use crate::host;
use crate::layout::Layout;
use crate::output::{info, step};

/// Kills container VM processes the appliance left behind (it was killed, or crashed).
pub(crate) fn kill_vms(layout: &Layout) {
    for pid in backend_local::inventory::kill_all(&layout.backend_root(), Duration::from_secs(5)) {
        info(format!(
            "stopped container VM process {pid}, left by the appliance"
        ));
    }
}

/// How many of the VCH's container VMs are powered on, as the hypervisor sees it: the
/// records are in the appliance's database, which the appliance holds open.
pub fn running_containers(layout: &Layout) -> usize {
    backend_local::inventory::running(&layout.backend_root()).len()
}

pub fn delete(layout: &Layout, force: bool, timeout: Duration) -> anyhow::Result<()> {
    let config = layout.load()?;
    let _lock = layout.lock("Delete")?;
    // Container VMs run whether or not the appliance does: count what the hypervisor shows.
    let running = running_containers(layout);
    if running > 0 && !force {
        bail!(
            "Delete failed: VCH {} has {running} running container(s); stop them or use --force",
            layout.name
        );
    }
    info(format!("### Removing VCH {} ####", layout.name));
    let stopping = step("Stopping the appliance and the container VMs");
    appliance::stop(layout, timeout);
    kill_vms(layout);
    stopping.done();
    host::remove_cgroups(Path::new("/sys/fs/cgroup"), &layout.name);
    host::release_uid_claims(Path::new(host::UID_CLAIMS), &layout.dir);
    let netns = backend_local::net::namespace_name(&layout.dir);
    backend_local::net::delete_namespace(&netns)
        .with_context(|| format!("removing the VCH's network namespace {netns}"))?;
    let removing = step(format!("Removing {}", layout.dir.display()));
    fs::remove_dir_all(&layout.dir)
        .with_context(|| format!("removing {}", layout.dir.display()))?;
    if config.external_image_store {
        let _ = fs::remove_dir_all(&config.image_store);
    }
    removing.done();
    info("Completed successfully");
    Ok(())
}
