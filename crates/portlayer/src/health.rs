//! Health checks (`HEALTHCHECK`, `docker run --health-*`): what a container's check is, and
//! what its runs said, as Docker keeps them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Results a container's health keeps (Docker's).
pub const MAX_LOG: usize = 5;
/// Bytes of a probe's output a result keeps (Docker's).
pub const MAX_OUTPUT: usize = 4096;

/// Docker's defaults, in nanoseconds.
pub const DEFAULT_INTERVAL_NS: i64 = 30_000_000_000;
pub const DEFAULT_TIMEOUT_NS: i64 = 30_000_000_000;
pub const DEFAULT_START_INTERVAL_NS: i64 = 5_000_000_000;
pub const DEFAULT_RETRIES: i64 = 3;

/// A container's health check, its values resolved (the image's, then the container's,
/// then Docker's defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// `["CMD", argv…]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    pub interval_ns: i64,
    pub timeout_ns: i64,
    pub start_period_ns: i64,
    pub start_interval_ns: i64,
    pub retries: i64,
}

impl HealthCheck {
    /// The probe's command line.
    pub fn argv(&self) -> Result<Vec<String>, String> {
        match self.test.split_first() {
            Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Ok(rest.to_vec()),
            Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
                Ok(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
            }
            Some((kind, _)) => Err(format!(
                "Unknown healthcheck type '{kind}' (expected 'CMD') in Healthcheck.Test"
            )),
            None => Err("no test in Healthcheck.Test".into()),
        }
    }
}

/// Where a container's health stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    #[default]
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn word(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// One run of a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResult {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// 0 healthy; -1 when it could not run or ran out of time.
    pub exit_code: i64,
    pub output: String,
}

/// A running container's health.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    pub failing_streak: u32,
    /// The latest [`MAX_LOG`] results, oldest first.
    pub log: Vec<HealthResult>,
}

impl Health {
    /// Takes in `result`; `counts`: a failure counts against the retries (not during the
    /// start period). Returns whether the status changed.
    pub fn record(&mut self, result: HealthResult, counts: bool, retries: i64) -> bool {
        let before = self.status;
        if result.exit_code == 0 {
            self.status = HealthStatus::Healthy;
            self.failing_streak = 0;
        } else if counts {
            self.failing_streak += 1;
            if i64::from(self.failing_streak) >= retries.max(1) {
                self.status = HealthStatus::Unhealthy;
            }
        }
        self.log.push(result);
        let excess = self.log.len().saturating_sub(MAX_LOG);
        self.log.drain(..excess);
        self.status != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(code: i64) -> HealthResult {
        HealthResult {
            start: Utc::now(),
            end: Utc::now(),
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn health_goes_as_dockers_does() {
        let mut h = Health::default();
        assert!(
            !h.record(result(1), false, 2),
            "a failure in the start period"
        );
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 0));
        assert!(h.record(result(0), false, 2));
        assert_eq!(h.status, HealthStatus::Healthy);
        assert!(!h.record(result(1), true, 2));
        assert_eq!(h.failing_streak, 1);
        assert!(h.record(result(1), true, 2), "the second of two retries");
        assert_eq!(h.status, HealthStatus::Unhealthy);
        for _ in 0..10 {
            h.record(result(1), true, 2);
        }
        assert_eq!(h.log.len(), MAX_LOG);
        assert!(h.record(result(0), true, 2));
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
    }

    #[test]
    fn a_test_is_a_command_or_a_shell_line() {
        let check = |test: &[&str]| HealthCheck {
            test: test.iter().map(|s| s.to_string()).collect(),
            interval_ns: 1,
            timeout_ns: 1,
            start_period_ns: 0,
            start_interval_ns: 1,
            retries: 1,
        };
        assert_eq!(check(&["CMD", "true", "x"]).argv().unwrap(), ["true", "x"]);
        assert_eq!(
            check(&["CMD-SHELL", "test -f /ok"]).argv().unwrap(),
            ["/bin/sh", "-c", "test -f /ok"]
        );
        assert_eq!(
            check(&["FOO", "x"]).argv().unwrap_err(),
            "Unknown healthcheck type 'FOO' (expected 'CMD') in Healthcheck.Test"
        );
    }
}
