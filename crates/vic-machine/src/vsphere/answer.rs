//! Waiting for a powered-on appliance VM to answer, as create, configure and upgrade do.

use std::time::{Duration, Instant};

use anyhow::bail;
use vim25::vm::PowerState;
use vim25::{Client, MoRef};

/// How often the VM's power state is read while its appliance does not answer yet.
const POWER_CHECK: Duration = Duration::from_secs(2);

/// Waits until `answers` says the appliance VM `vm` answers, until `deadline`. A VM that is
/// powered off meanwhile (its guest ended, or someone turned it off) fails the wait at once:
/// no wait would change that. `late` is the error when the deadline passes.
pub(super) async fn wait(
    client: &Client,
    vm: &MoRef,
    deadline: Instant,
    mut answers: impl FnMut() -> bool,
    late: impl FnOnce() -> anyhow::Error,
) -> anyhow::Result<()> {
    let mut checked = Instant::now();
    loop {
        if answers() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(late());
        }
        if checked.elapsed() >= POWER_CHECK {
            checked = Instant::now();
            // A read that fails is not a verdict: the wait goes on until its deadline.
            if let Ok(PowerState::PoweredOff) = client.power_state(vm).await {
                bail!(
                    "the appliance VM {vm} powered off before its Docker API answered: its guest stopped (the VM's log says why)"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
