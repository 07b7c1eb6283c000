//! `upgrade`: replace a VCH's appliance files with this build's and restart it, keeping its
//! containers (their VMs keep running and the new appliance takes them over), images and
//! volumes. The files replaced go to `appliance.prev/` (one previous version is kept, its
//! version in vch.json); `upgrade --rollback` swaps the two back. If the new appliance does
//! not come up, the old files and record are put back and the old appliance started.
//!
//! ```text
//!   this build ──copy──► appliance.new/      (while the old appliance still serves)
//!   stop appliance
//!   appliance.prev/ ──► appliance.old-prev/  (dropped once the upgrade has come up)
//!   appliance/      ──► appliance.prev/
//!   appliance.new/  ──► appliance/
//!   start, wait for the Docker API   ── fails? ──► every rename undone, old appliance started
//! ```

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::appliance::{self, Change};
use crate::layout::Layout;
use crate::output::{info, step};
use crate::parts::{upgrade_status, Parts, UpgradeStatus};
use crate::progress;

pub struct UpgradeOptions {
    pub force: bool,
    pub rollback: bool,
    pub timeout: Duration,
    pub bootstrap_dir: Option<PathBuf>,
}

fn rename(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::rename(from, to).with_context(|| format!("moving {} to {}", from.display(), to.display()))
}

/// Directory renames that can be undone, last first.
#[derive(Default)]
struct Moves(RefCell<Vec<(PathBuf, PathBuf)>>);

impl Moves {
    fn mv(&self, from: &Path, to: &Path) -> anyhow::Result<()> {
        rename(from, to)?;
        self.0
            .borrow_mut()
            .push((from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    fn undo(&self) -> anyhow::Result<()> {
        loop {
            let last = self.0.borrow_mut().pop();
            let Some((from, to)) = last else {
                return Ok(());
            };
            rename(&to, &from)?;
        }
    }
}

/// `vic-machine upgrade`.
pub fn upgrade(layout: &Layout, opts: &UpgradeOptions) -> anyhow::Result<()> {
    if opts.rollback {
        return rollback(layout, opts);
    }
    let deadline = Instant::now() + opts.timeout;
    info("### Upgrading VCH ####");
    let old = layout.load()?;
    let _progress = progress::begin(layout, "Upgrade", "upgrade")?;
    let parts = Parts::find(opts.bootstrap_dir.as_deref())?;
    let installer = parts.version()?;
    info("");
    info(format!("Installer version: {installer}"));
    info(format!("VCH version: {}", old.version));
    info("");
    if !opts.force && upgrade_status(&installer, &old.version) != UpgradeStatus::Upgradeable {
        bail!(
            "{:?} has same or newer version {} than installer version {}. No upgrade is available. (--force upgrades anyway)",
            old.name,
            old.version,
            installer
        );
    }
    let (cur, prev) = (layout.appliance_dir(), layout.prev_appliance_dir());
    let staged = layout.dir.join("appliance.new");
    let old_prev = layout.dir.join("appliance.old-prev");
    let _ = fs::remove_dir_all(&staged);
    let _ = fs::remove_dir_all(&old_prev);
    let copying = step("Copying this build's appliance and bootstrap into the VCH");
    parts.install(&staged)?;
    copying.done();
    let mut new = old.clone();
    new.previous_version = Some(old.version.clone());
    new.version = installer.clone();
    new.upgraded = Some(chrono::Utc::now().to_rfc3339());
    // A VCH made before the admin pages gets them with the build that serves them.
    if new.settings.admin_port.is_none() {
        let [a, b] = crate::process::free_ports()?;
        new.settings.admin_port = Some(if a == new.port { b } else { a });
    }
    let moves = Moves::default();
    let mut apply = || -> anyhow::Result<()> {
        if prev.exists() {
            moves.mv(&prev, &old_prev)?;
        }
        moves.mv(&cur, &prev)?;
        moves.mv(&staged, &cur)
    };
    let mut undo = || moves.undo();
    info(format!("Upgrading VCH {} to {installer}", old.name));
    let result = appliance::restart(
        layout,
        &old,
        &new,
        Change {
            apply: &mut apply,
            undo: &mut undo,
        },
        deadline,
        "Upgrading",
        opts.timeout,
    );
    let _ = fs::remove_dir_all(&staged);
    let down = result.map_err(|e| anyhow::anyhow!("Upgrade failed: {e}"))?;
    let _ = fs::remove_dir_all(&old_prev);
    info(format!(
        "Upgraded VCH {} from {} to {installer}; the Docker API was unavailable for {:.1}s, container VMs kept running",
        old.name,
        old.version,
        down.as_secs_f64()
    ));
    if old.settings.admin_port.is_none() {
        crate::inspect::admin_portal(&new.settings);
    }
    info("Completed successfully");
    Ok(())
}

/// `vic-machine upgrade --rollback`: back to the version in appliance.prev/ (which then
/// holds the version rolled back from, so a second rollback undoes the first).
fn rollback(layout: &Layout, opts: &UpgradeOptions) -> anyhow::Result<()> {
    let deadline = Instant::now() + opts.timeout;
    info("### Rolling back VCH ####");
    let old = layout.load()?;
    let _progress = progress::begin(layout, "Rollback", "upgrade --rollback")?;
    let (cur, prev) = (layout.appliance_dir(), layout.prev_appliance_dir());
    let Some(previous) = old.previous_version.clone().filter(|_| prev.is_dir()) else {
        bail!(
            "Rollback failed: VCH {} has no previous version to roll back to (it has not been upgraded)",
            old.name
        );
    };
    let mut new = old.clone();
    new.version = previous.clone();
    new.previous_version = Some(old.version.clone());
    new.upgraded = Some(chrono::Utc::now().to_rfc3339());
    let swap = layout.dir.join("appliance.swap");
    let _ = fs::remove_dir_all(&swap);
    let moves = Moves::default();
    let mut swap_dirs = || -> anyhow::Result<()> {
        // The previous version may keep image metadata in files, not in the database.
        appliance::export_image_metadata(layout, &old, Duration::from_secs(60))?;
        moves.mv(&cur, &swap)?;
        moves.mv(&prev, &cur)?;
        moves.mv(&swap, &prev)
    };
    let mut swap_back = || moves.undo();
    info(format!(
        "Rolling back VCH {} from {} to {previous}",
        old.name, old.version
    ));
    let down = appliance::restart(
        layout,
        &old,
        &new,
        Change {
            apply: &mut swap_dirs,
            undo: &mut swap_back,
        },
        deadline,
        "Rolling back",
        opts.timeout,
    )
    .map_err(|e| anyhow::anyhow!("Rollback failed: {e}"))?;
    info(format!(
        "Rolled back VCH {} to {previous}; the Docker API was unavailable for {:.1}s",
        old.name,
        down.as_secs_f64()
    ));
    info("Completed successfully");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_are_undone_last_first() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
        fs::create_dir(&a).unwrap();
        fs::write(a.join("f"), "A").unwrap();
        fs::create_dir(&b).unwrap();
        fs::write(b.join("f"), "B").unwrap();
        // Swap a and b through c, as rollback does.
        let m = Moves::default();
        m.mv(&a, &c).unwrap();
        m.mv(&b, &a).unwrap();
        m.mv(&c, &b).unwrap();
        assert_eq!(fs::read_to_string(a.join("f")).unwrap(), "B");
        m.undo().unwrap();
        assert_eq!(fs::read_to_string(a.join("f")).unwrap(), "A");
        assert_eq!(fs::read_to_string(b.join("f")).unwrap(), "B");
        assert!(!c.exists());
        // A move that failed is not undone.
        let m = Moves::default();
        m.mv(&a, &c).unwrap();
        assert!(m.mv(&d.path().join("missing"), &a).is_err());
        m.undo().unwrap();
        assert!(a.exists() && !c.exists());
    }
}
