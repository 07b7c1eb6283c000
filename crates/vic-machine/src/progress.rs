//! "Upgrade/configure in progress", VIC's `UpdateInProgress` flag. `configure`, `upgrade`
//! and `debug` hold two things while they change a VCH:
//!
//! ```text
//!   .vic-machine.lock   flock, released by the kernel when vic-machine exits or dies:
//!                       two operations never run at once
//!   update-in-progress  a marker file, written durably when the operation starts and
//!                       removed when it ends (succeeded or failed and put back)
//! ```
//!
//! A run that is killed leaves the marker behind, and the VCH may be half changed: the next
//! configure or upgrade is refused, in VIC's words, until `--reset-progress` clears it (after
//! which `configure --rollback` can put back the configuration from before the interrupted
//! configure).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::layout::{Layout, OpLock};
use crate::output::info;

/// What the marker file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The vic-machine command that set it (`configure`, `upgrade`, …).
    pub operation: String,
    pub pid: u32,
    pub started: String,
}

/// Why an operation may not start.
#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    /// Another vic-machine is changing the VCH right now.
    #[error("{op} failed: another upgrade/configure operation is in progress on VCH {name}")]
    Running { op: String, name: String },
    /// An earlier operation did not finish; its marker stays until `--reset-progress`.
    #[error("{op} failed: another upgrade/configure operation is in progress\nIf no other upgrade/configure process is running, use --reset-progress to reset the VCH upgrade/configure status\n(the flag was set by vic-machine {by}, pid {pid}, at {started}; that process has ended)")]
    Interrupted {
        op: String,
        by: String,
        pid: u32,
        started: String,
    },
    #[error("{op} failed: setting the UpdateInProgress flag: {source:#}")]
    Io { op: String, source: anyhow::Error },
}

fn marker_path(layout: &Layout) -> PathBuf {
    layout.dir.join("update-in-progress")
}

/// The marker, if an operation is running or was interrupted.
pub fn marker(layout: &Layout) -> Option<Marker> {
    let raw = fs::read(marker_path(layout)).ok()?;
    Some(serde_json::from_slice(&raw).unwrap_or(Marker {
        operation: "unknown".into(),
        pid: 0,
        started: "unknown".into(),
    }))
}

/// Held while an operation changes the VCH; dropping it clears the marker. A process that
/// is killed never drops it, which is the point.
pub struct InProgress {
    _lock: OpLock,
    path: PathBuf,
}

impl Drop for InProgress {
    fn drop(&mut self) {
        if let Err(e) = remove_durably(&self.path) {
            info(format!(
                "Failed to reset UpdateInProgress: removing {}: {e:#}",
                self.path.display()
            ));
        }
    }
}

/// Starts operation `op` (VIC's capitalised word, "Configure", "Upgrade") of the command
/// `command` on the VCH: refused while another runs or an interrupted one left its marker.
pub fn begin(layout: &Layout, op: &str, command: &str) -> Result<InProgress, ProgressError> {
    let lock = layout.lock(op).map_err(|_| ProgressError::Running {
        op: op.into(),
        name: layout.name.clone(),
    })?;
    let path = marker_path(layout);
    if let Some(m) = marker(layout) {
        return Err(ProgressError::Interrupted {
            op: op.into(),
            by: m.operation,
            pid: m.pid,
            started: m.started,
        });
    }
    let m = Marker {
        operation: command.into(),
        pid: std::process::id(),
        started: chrono::Utc::now().to_rfc3339(),
    };
    write_durably(&path, &serde_json::to_vec(&m).unwrap_or_default()).map_err(|source| {
        ProgressError::Io {
            op: op.into(),
            source,
        }
    })?;
    Ok(InProgress { _lock: lock, path })
}

/// `--reset-progress`: clears the marker an interrupted operation left. Refused while a
/// vic-machine is actually working on the VCH.
pub fn reset(layout: &Layout, op: &str) -> anyhow::Result<()> {
    if !layout.config().exists() {
        layout.load()?;
    }
    let _lock = layout.lock(op).map_err(|_| {
        anyhow::anyhow!(
            "Failed to reset UpdateInProgress flag: a vic-machine operation is running on VCH {} now; let it finish",
            layout.name
        )
    })?;
    let path = marker_path(layout);
    match marker(layout) {
        Some(m) => {
            remove_durably(&path).context("Failed to reset UpdateInProgress flag")?;
            info(format!(
                "Cleared the flag set by vic-machine {} (pid {}) at {}",
                m.operation, m.pid, m.started
            ));
        }
        None => info("The UpdateInProgress flag was not set"),
    }
    info("Reset UpdateInProgress flag successfully");
    Ok(())
}

/// Writes `path` so that after a crash it is either absent or whole: a temporary file,
/// synced, renamed into place, and the directory synced.
fn write_durably(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    sync_dir(path)
}

fn remove_durably(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

fn sync_dir(path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vch() -> (tempfile::TempDir, Layout) {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(Some(d.path().to_path_buf()), "x").unwrap();
        fs::create_dir_all(&layout.dir).unwrap();
        (d, layout)
    }

    #[test]
    fn the_marker_lives_as_long_as_the_operation() {
        let (_d, layout) = vch();
        let op = begin(&layout, "Configure", "configure").unwrap();
        let m = marker(&layout).unwrap();
        assert_eq!(m.operation, "configure");
        assert_eq!(m.pid, std::process::id());
        // A second operation meanwhile: another one is running.
        let err = begin(&layout, "Upgrade", "upgrade")
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "Upgrade failed: another upgrade/configure operation is in progress on VCH x"
        );
        drop(op);
        assert!(marker(&layout).is_none());
        assert!(begin(&layout, "Upgrade", "upgrade").is_ok());
    }

    #[test]
    fn an_interrupted_operation_is_refused_in_vics_words() {
        let (_d, layout) = vch();
        // What a killed run leaves: the marker, and no lock (the kernel dropped it).
        write_durably(
            &marker_path(&layout),
            br#"{"operation":"configure","pid":4242,"started":"T"}"#,
        )
        .unwrap();
        let err = begin(&layout, "Upgrade", "upgrade")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("Upgrade failed: another upgrade/configure operation is in progress\nIf no other upgrade/configure process is running, use --reset-progress to reset the VCH upgrade/configure status"),
            "{err}"
        );
        assert!(err.contains("vic-machine configure, pid 4242"), "{err}");
        assert!(marker(&layout).is_some(), "a refused operation leaves it");
    }

    #[test]
    fn reset_clears_a_stale_marker_and_only_then() {
        let (_d, layout) = vch();
        fs::write(layout.config(), "{}").unwrap(); // only its existence matters here
        write_durably(
            &marker_path(&layout),
            br#"{"operation":"upgrade","pid":4242,"started":"T"}"#,
        )
        .unwrap();
        assert!(begin(&layout, "Configure", "configure").is_err());
        reset(&layout, "Configure").unwrap();
        assert!(marker(&layout).is_none());
        let op = begin(&layout, "Configure", "configure").unwrap();
        let err = reset(&layout, "Configure").unwrap_err().to_string();
        assert!(err.contains("running on VCH x now"), "{err}");
        drop(op);
    }
}
