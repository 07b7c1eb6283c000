//! "Upgrade/configure in progress" on vSphere, VIC's `UpdateInProgress` flag: a key in the
//! appliance VM's configuration (`vic.update_in_progress`), set when `configure`, `debug` or
//! `upgrade` starts and cleared when it ends (succeeded, or failed and put back). A run that
//! is killed leaves it set, and the VCH may be half changed: the next one is refused, in VIC's
//! words, until `--reset-progress` clears it. The VM's configuration is shared by every
//! vic-machine that reaches the target, so the flag also keeps two of them from changing a
//! VCH at once (between reading and setting it there is a window, as in VIC).

use std::time::Duration;

use anyhow::Context;
use vim25::{Client, MoRef};

use crate::output::info;

const KEY: &str = "vic.update_in_progress";
const TASK: Duration = Duration::from_secs(120);

/// Who set the flag, when: `OPERATION on HOST (pid PID) at TIME`.
async fn flag(client: &Client, vm: &MoRef) -> anyhow::Result<Option<String>> {
    let extra = client.extra_config(vm).await?;
    Ok((extra.into_iter())
        .find(|(k, _)| k == KEY)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty()))
}

async fn set(client: &Client, vm: &MoRef, value: &str) -> anyhow::Result<()> {
    client
        .set_extra_config(vm, &[(KEY.to_string(), value.to_string())], TASK)
        .await
        .context("setting the UpdateInProgress flag")
}

/// Sets the flag for `op` on the appliance VM `vm`, refused when it is set already.
pub async fn begin(client: &Client, vm: &MoRef, op: &str) -> anyhow::Result<()> {
    if let Some(by) = flag(client, vm).await? {
        anyhow::bail!(
            "{op} failed: another upgrade/configure operation is in progress\nIf no other upgrade/configure process is running, use --reset-progress to reset the VCH upgrade/configure status\n(the flag was set by vic-machine {by})"
        );
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let value = format!(
        "{op} on {} (pid {}) at {}",
        host.trim(),
        std::process::id(),
        chrono::Utc::now().to_rfc3339()
    );
    set(client, vm, &value).await
}

/// Clears the flag at the end of an operation; a failure to is said, not returned (the
/// operation's own result is what counts).
pub async fn end(client: &Client, vm: &MoRef) {
    if let Err(e) = set(client, vm, "").await {
        info(format!("Failed to reset UpdateInProgress: {e:#}"));
    }
}

/// `--reset-progress`: clears the flag an interrupted operation left.
pub async fn reset(client: &Client, vm: &MoRef) -> anyhow::Result<()> {
    match flag(client, vm).await? {
        Some(by) => {
            set(client, vm, "")
                .await
                .context("Failed to reset UpdateInProgress flag")?;
            info(format!("Cleared the flag set by vic-machine {by}"));
        }
        None => info("The UpdateInProgress flag was not set"),
    }
    info("Reset UpdateInProgress flag successfully");
    Ok(())
}
