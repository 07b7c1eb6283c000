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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Restrictions;
    use crate::syscall::fake::{Call, RecordingSyscall};
    use crate::user::Identity;

    /// Docker's default set (`00000000a80425fb`).
    const DEFAULT_CAPS: u64 = 0xa804_25fb;

    fn plan(restrict: Restrictions) -> ChildPlan {
        let ident = Identity {
            uid: 1000,
            gid: 1000,
            groups: vec![1000, 10, 29],
            home: "/home/vic".into(),
        };
        let argv = ["sh".to_string()];
        ChildPlan::new(
            &argv,
            &[],
            &[],
            "/root-fs",
            "/",
            &ident,
            [0, 1, 2],
            false,
            restrict,
        )
        .unwrap()
    }

    fn dropped(calls: &[Call]) -> Vec<u32> {
        (calls.iter())
            .filter_map(|c| match c {
                Call::DropBounding(cap) => Some(*cap),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn bounding_set_then_groups_gid_uid_then_capabilities_then_no_new_privs() {
        let sys = RecordingSyscall::new();
        let restrict = Restrictions {
            capabilities: Some(DEFAULT_CAPS),
            last_cap: 40,
            no_new_privs: true,
            ..Restrictions::default()
        };
        drop_privileges(&sys, &plan(restrict)).unwrap();
        let calls = sys.calls();
        let bounding = dropped(&calls);
        // Every known capability outside Docker's set goes, in order, and none of the set.
        let expected: Vec<u32> = (0..=40).filter(|c| DEFAULT_CAPS & (1 << c) == 0).collect();
        assert_eq!(bounding, expected);
        assert!(!bounding.contains(&8), "CAP_SETPCAP is in the default set");
        assert_eq!(
            calls[bounding.len()..],
            [
                Call::KeepCaps,
                Call::Setgroups(vec![1000, 10, 29]),
                Call::Setgid(1000),
                Call::Setuid(1000),
                Call::Capset(DEFAULT_CAPS),
                Call::ClearAmbientCaps,
                Call::NoNewPrivs,
            ]
        );
    }

    #[test]
    fn without_a_capability_set_only_the_credentials_change() {
        let sys = RecordingSyscall::new();
        drop_privileges(&sys, &plan(Restrictions::default())).unwrap();
        assert_eq!(
            sys.calls(),
            [
                Call::Setgroups(vec![1000, 10, 29]),
                Call::Setgid(1000),
                Call::Setuid(1000),
            ]
        );
    }

    #[test]
    fn capabilities_the_kernel_does_not_know_are_neither_dropped_nor_set() {
        let sys = RecordingSyscall::new();
        let restrict = Restrictions {
            capabilities: Some(u64::MAX),
            last_cap: 37,
            ..Restrictions::default()
        };
        drop_privileges(&sys, &plan(restrict)).unwrap();
        let calls = sys.calls();
        assert!(dropped(&calls).is_empty());
        assert!(calls.contains(&Call::Capset((1 << 38) - 1)));
    }

    #[test]
    fn a_refused_setgid_stops_before_setuid_as_a_credentials_failure() {
        let sys = RecordingSyscall::new();
        sys.fail(libc::EPERM, |c| matches!(c, Call::Setgid(_)));
        let restrict = Restrictions {
            capabilities: Some(DEFAULT_CAPS),
            last_cap: 40,
            no_new_privs: true,
            ..Restrictions::default()
        };
        let err = drop_privileges(&sys, &plan(restrict)).unwrap_err();
        assert_eq!(err, (Stage::Credentials, libc::EPERM));
        assert_eq!(sys.calls().last(), Some(&Call::Setgid(1000)));
    }
}
