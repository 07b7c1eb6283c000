//! Running a container's health check, as dockerd's health monitor does: from its start, a
//! probe every interval (every start interval during the start period), run as an exec in
//! the container's guest, bounded by the timeout (a probe that outlives it is killed and
//! counts as a failure); a success makes the container healthy, `retries` failures in a row
//! outside the start period unhealthy. Each status change is a `health_status: …` event; the
//! latest results are kept on the record. The monitor belongs to one run: it ends when the
//! container stops or starts again, and a restarted appliance starts it again for the runs
//! it takes over.

use std::time::Duration;

use chrono::Utc;

use super::{Containers, Error};
use crate::container::{ContainerRecord, Status};
use crate::guest::exec::ExecConfig;
use crate::guest::session::GuestControl;
use crate::guest::Launch;
use crate::health::{HealthCheck, HealthResult, MAX_OUTPUT};

/// How long a guest may take to say a probe started.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// What kills a probe that ran out of time.
const SIGKILL: i32 = 9;

fn nanos(ns: i64) -> Duration {
    Duration::from_nanos(ns.max(1_000_000) as u64)
}

impl Containers {
    /// Starts the health monitor of `rec`'s current run, if it has a check.
    pub(super) fn monitor_health(&self, rec: &ContainerRecord) {
        let Some(check) = rec.spec.healthcheck.clone() else {
            return;
        };
        let (me, id, run) = (self.clone(), rec.id.clone(), rec.state.start_count);
        let started = rec.state.started_at.unwrap_or_else(Utc::now);
        tokio::spawn(async move {
            let start_period = chrono::Duration::nanoseconds(check.start_period_ns.max(0));
            loop {
                let in_start = Utc::now() < started + start_period;
                let wait = match in_start {
                    true => check.start_interval_ns,
                    false => check.interval_ns,
                };
                tokio::time::sleep(nanos(wait)).await;
                let Ok(rec) = me.get(&id) else { return };
                if rec.state.status != Status::Running || rec.state.start_count != run {
                    return;
                }
                if rec.state.paused {
                    continue;
                }
                let result = me.probe(&rec, &check).await;
                let counts = result.start >= started + start_period;
                if let Err(e) = me.record_health(&id, run, result, counts, check.retries) {
                    tracing::debug!(%id, "recording a health result failed: {e}");
                }
            }
        });
    }

    /// Keeps a probe's result on run `run` of container `id`, and says a change of status.
    fn record_health(
        &self,
        id: &str,
        run: u64,
        result: HealthResult,
        counts: bool,
        retries: i64,
    ) -> Result<(), Error> {
        let mut changed = false;
        let rec = self.update(id, |r| {
            if r.state.start_count == run && r.state.status == Status::Running {
                let health = r.state.health.get_or_insert_with(Default::default);
                changed = health.record(result, counts, retries);
            }
        })?;
        if let (true, Some(h)) = (changed, &rec.state.health) {
            self.publish(&format!("health_status: {}", h.status.word()), &rec, &[]);
        }
        Ok(())
    }

    /// Runs `check`'s probe once in `rec`'s guest.
    async fn probe(&self, rec: &ContainerRecord, check: &HealthCheck) -> HealthResult {
        let start = Utc::now();
        let outcome = match self.live(&rec.id).map(|l| l.control()) {
            Some(Ok(control)) => run_probe(&control, rec, check).await,
            _ => Err("the container is not running".to_string()),
        };
        let (exit_code, output) = outcome.unwrap_or_else(|why| (-1, why));
        HealthResult {
            start,
            end: Utc::now(),
            exit_code,
            output,
        }
    }
}

/// The probe's exit code and output (at most [`MAX_OUTPUT`] bytes), or why it did not run.
async fn run_probe(
    control: &GuestControl,
    rec: &ContainerRecord,
    check: &HealthCheck,
) -> Result<(i64, String), String> {
    let config = ExecConfig {
        cmd: check.argv()?,
        ..Default::default()
    };
    let process = Launch::exec(&rec.spec, &config)?;
    let mut handle = control.spawn(process)?;
    let session = handle.session;
    match tokio::time::timeout(START_TIMEOUT, &mut handle.started).await {
        Ok(Ok(Ok(_pid))) => {}
        Ok(Ok(Err((message, code)))) => return Ok((i64::from(code), message)),
        _ => return Err("the probe did not start".into()),
    }
    let timeout = nanos(check.timeout_ns);
    let mut output = Vec::new();
    let ran = tokio::time::timeout(timeout, async {
        while let Some(piece) = handle.output.recv().await {
            let room = MAX_OUTPUT.saturating_sub(output.len());
            output.extend_from_slice(&piece.data[..piece.data.len().min(room)]);
        }
        (&mut handle.exit).await
    })
    .await;
    let _ = control.forget(session);
    match ran {
        Ok(Ok(code)) => Ok((
            i64::from(code),
            String::from_utf8_lossy(&output).into_owned(),
        )),
        Ok(Err(_)) => Err("the container stopped during the probe".into()),
        Err(_) => {
            let _ = control.signal_session(session, SIGKILL);
            Err(format!(
                "Health check exceeded timeout ({})",
                humantime(timeout)
            ))
        }
    }
}

/// Go's way of writing a duration, for the few Docker shows here (`30s`, `1.5s`, `500ms`).
fn humantime(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}
