//! Shared parts of the benchmarks (and of tests that need a peer daemon).

use std::process::{Command, Stdio};

use anyhow::{bail, Context};

pub mod burst;
pub mod compose;
pub mod dockerd;
pub mod idle;
pub mod junit;
pub mod netns;
pub mod procfs;
pub mod vch;

/// Median, minimum, maximum and 99th percentile (nearest rank) of a set of measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub p99: f64,
}

impl Stats {
    /// One figure as a [`Stats`].
    pub fn one(v: f64) -> Self {
        Self {
            median: v,
            min: v,
            max: v,
            p99: v,
        }
    }
}

/// The [`Stats`] of `v`; `None` when there is nothing to summarise.
pub fn stats(v: &[f64]) -> Option<Stats> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let rank = ((n as f64) * 0.99).ceil() as usize;
    Some(Stats {
        median,
        min: v[0],
        max: v[n - 1],
        p99: v[rank.clamp(1, n) - 1],
    })
}

/// Runs `cmd` (stdin closed) and returns its stdout, or an error naming `what` with its
/// output when it fails.
pub fn run_ok(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !o.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).to_string())
}

/// Prints one measurement, vic's and the peer's side by side, with their ratio.
pub fn row(name: &str, vic: Option<Stats>, peer: Option<Stats>, unit: &str) {
    let cell = |s: Option<Stats>| match s {
        Some(s) => format!("{:.2} {unit} ({:.2}–{:.2})", s.median, s.min, s.max),
        None => "n/a".to_string(),
    };
    let ratio = match (vic, peer) {
        (Some(v), Some(p)) if p.median > 0.0 => format!("{:.2}x", v.median / p.median),
        _ => "n/a".into(),
    };
    println!("{name:<40} {:<30} {:<30} {ratio}", cell(vic), cell(peer));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_sets() {
        assert_eq!(stats(&[]), None);
        let s = stats(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(stats(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(stats(&hundred).unwrap().p99, 99.0);
        assert_eq!(stats(&hundred[..20]).unwrap().p99, 20.0);
        assert_eq!(stats(&[5.0]).unwrap().p99, 5.0);
    }
}
