//! The privileges a forked child gives up before it execs, in the only order that works: the
//! bounding set while it still holds CAP_SETPCAP (keeping its permitted set across the uid
//! change), then groups, gid and uid, then the permitted and effective sets (inheritable and
//! ambient emptied, as Docker does), then no_new_privs. Called from `exec::run_child`, after
//! the child has entered the container's root.

use crate::plan::{ChildFailure, ChildPlan, Stage};
use crate::syscall::ChildSyscall;

/// Drops the child's privileges to what `plan` allows.
pub fn drop_privileges(sys: &dyn ChildSyscall, plan: &ChildPlan) -> Result<(), ChildFailure> {
    let r = &plan.restrict;
    if let Some(caps) = r.capabilities {
        drop_bounding(sys, caps, r.last_cap)
            .and_then(|()| sys.keep_caps())
            .map_err(Stage::Capabilities.failed())?;
    }
    sys.setgroups(&plan.groups)
        .and_then(|()| sys.setgid(plan.gid))
        .and_then(|()| sys.setuid(plan.uid))
        .map_err(Stage::Credentials.failed())?;
    if let Some(caps) = r.capabilities {
        sys.capset(known(caps, r.last_cap))
            .and_then(|()| sys.clear_ambient_caps())
            .map_err(Stage::Capabilities.failed())?;
    }
    if r.no_new_privs {
        sys.set_no_new_privs()
            .map_err(Stage::Capabilities.failed())?;
    }
    Ok(())
}

/// Drops from the bounding set every capability the kernel knows that is not in `caps`.
fn drop_bounding(sys: &dyn ChildSyscall, caps: u64, last_cap: u32) -> std::io::Result<()> {
    for cap in 0..=last_cap.min(63) {
        if caps & (1 << cap) == 0 {
            sys.drop_bounding(cap)?;
        }
    }
    Ok(())
}

/// `caps` without the capabilities above `last_cap`, which capset refuses.
fn known(caps: u64, last_cap: u32) -> u64 {
    let known = if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    };
    caps & known
}
