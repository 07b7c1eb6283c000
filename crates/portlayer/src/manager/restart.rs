//! Restart policies (`--restart no|always|unless-stopped|on-failure[:N]`), as Docker's
//! restart manager applies them: a container whose process ends (or whose VM dies out of
//! band) is started again after a delay of 100 ms that doubles with each restart, up to a
//! minute, and goes back to 100 ms once a run has lasted 10 s. `always` and
//! `unless-stopped` restart whatever the exit code, `on-failure` only after a non-zero one
//! and at most N times; a container the user stopped or killed is left alone. When the VCH
//! comes back (its appliance restarts), `always` containers start again even if the user had
//! stopped them, and `unless-stopped` ones unless the user had, as after a Docker daemon
//! restart. `RestartCount` counts the policy's starts since the user's last.

use std::time::Duration;

use super::Containers;
use crate::container::{ContainerRecord, RestartKind, Status};

/// The first delay before a restart.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest delay before a restart.
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run this long resets the delay.
const RESET_AFTER: Duration = Duration::from_secs(10);

/// Whether `rec`, whose run has ended, is to be started again by its policy.
pub(super) fn wants_restart(rec: &ContainerRecord) -> bool {
    let p = rec.spec.restart;
    if rec.spec.auto_remove || rec.state.manually_stopped {
        return false;
    }
    match p.kind {
        RestartKind::No => false,
        RestartKind::Always | RestartKind::UnlessStopped => true,
        RestartKind::OnFailure => {
            rec.state.exit_code != 0
                && (p.max_retries == 0 || rec.state.restart_count < p.max_retries)
        }
    }
}

/// The delay before the next restart, given the last one's and how long the run lasted.
pub(super) fn next_delay(last: Option<Duration>, ran: Duration) -> Duration {
    match last {
        Some(d) if ran < RESET_AFTER => (d * 2).min(MAX_DELAY),
        _ => FIRST_DELAY,
    }
}

impl Containers {
    /// After `rec`'s run has ended: a restart when its policy asks for one.
    pub(super) fn after_exit(&self, rec: &ContainerRecord) {
        if !wants_restart(rec) {
            return;
        }
        let ran = match (rec.state.started_at, rec.state.finished_at) {
            (Some(s), Some(f)) => (f - s).to_std().unwrap_or_default(),
            _ => Duration::ZERO,
        };
        let Some(live) = self.live(&rec.id) else {
            return;
        };
        let delay = {
            let mut last = live.restart_delay.lock().unwrap_or_else(|e| e.into_inner());
            let d = next_delay(*last, ran);
            *last = Some(d);
            d
        };
        self.schedule_restart(&rec.id, delay);
    }

    /// Starts container `id` by its policy after `delay`, unless meanwhile it was started,
    /// stopped by the user or removed; a start that fails is tried again later.
    pub(super) fn schedule_restart(&self, id: &str, delay: Duration) {
        if self.update(id, |r| r.state.restarting = true).is_err() {
            return;
        }
        let (me, id) = (self.clone(), id.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let Ok(rec) = me.get(&id) else { return };
            if rec.state.status == Status::Running
                || !rec.state.restarting
                || rec.state.manually_stopped
            {
                let _ = me.update(&id, |r| r.state.restarting = false);
                return;
            }
            match me.start_vm(&id).await {
                Ok(_) => {
                    let _ = me.update(&id, |r| r.state.restart_count += 1);
                    tracing::info!(%id, after = ?delay, "restarted by its policy");
                }
                // Another restart (or the user) was first.
                Err(super::Error::AlreadyRunning(_)) => {}
                Err(e) => {
                    tracing::warn!(%id, "a restart by the policy failed: {e}");
                    let Ok(rec) = me.get(&id) else { return };
                    let _ = me.update(&id, |r| r.state.restarting = false);
                    me.after_exit(&rec);
                }
            }
        });
    }

    /// When the VCH comes back: restarts what its policy restarts after a restart of the
    /// engine (see the module's doc), and what was due to restart when the appliance went.
    pub(super) fn restart_on_vch_start(&self) {
        for rec in self.list() {
            if rec.state.status != Status::Exited || rec.spec.auto_remove {
                continue;
            }
            let due = match rec.spec.restart.kind {
                RestartKind::No => false,
                RestartKind::Always => true,
                RestartKind::UnlessStopped => !rec.state.manually_stopped,
                RestartKind::OnFailure => rec.state.restarting && wants_restart(&rec),
            };
            if due {
                if rec.spec.restart.kind == RestartKind::Always {
                    let _ = self.update(&rec.id, |r| r.state.manually_stopped = false);
                }
                self.schedule_restart(&rec.id, FIRST_DELAY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::RestartPolicy;

    #[test]
    fn delays_double_to_a_minute_and_reset_after_a_long_run() {
        let short = Duration::from_secs(1);
        let mut d = next_delay(None, short);
        assert_eq!(d, FIRST_DELAY);
        d = next_delay(Some(d), short);
        assert_eq!(d, Duration::from_millis(200));
        for _ in 0..20 {
            d = next_delay(Some(d), short);
        }
        assert_eq!(d, MAX_DELAY);
        assert_eq!(next_delay(Some(d), Duration::from_secs(10)), FIRST_DELAY);
    }

    #[test]
    fn each_policy_decides_as_dockers_does() {
        let mut rec = ContainerRecord {
            id: "x".into(),
            created: chrono::Utc::now(),
            spec: Default::default(),
            state: Default::default(),
        };
        let set = |rec: &mut ContainerRecord, kind, max, code, count| {
            rec.spec.restart = RestartPolicy {
                kind,
                max_retries: max,
            };
            rec.state.exit_code = code;
            rec.state.restart_count = count;
        };
        set(&mut rec, RestartKind::No, 0, 1, 0);
        assert!(!wants_restart(&rec));
        set(&mut rec, RestartKind::Always, 0, 0, 50);
        assert!(wants_restart(&rec));
        set(&mut rec, RestartKind::OnFailure, 2, 0, 0);
        assert!(!wants_restart(&rec), "a clean exit");
        set(&mut rec, RestartKind::OnFailure, 2, 3, 1);
        assert!(wants_restart(&rec));
        set(&mut rec, RestartKind::OnFailure, 2, 3, 2);
        assert!(!wants_restart(&rec), "two restarts were allowed");
        set(&mut rec, RestartKind::UnlessStopped, 0, 0, 0);
        rec.state.manually_stopped = true;
        assert!(!wants_restart(&rec), "the user stopped it");
    }
}
