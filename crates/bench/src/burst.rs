//! Many containers started at once: `docker run -d` of N containers in parallel, each one
//! timed from its command's start to its return (the container running), and the whole
//! burst until the last has returned.

use std::process::Command;
use std::time::Instant;

use anyhow::Context;

use crate::run_ok;

/// A burst's times, in seconds.
pub struct Burst {
    pub total: f64,
    /// Each container's `docker run -d`, sorted.
    pub each: Vec<f64>,
}

impl Burst {
    /// The `p`th percentile (0–100) of the containers' times, nearest rank.
    pub fn percentile(&self, p: f64) -> f64 {
        percentile(&self.each, p)
    }
}

/// The `p`th percentile of `sorted` by nearest rank (0 for none).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs `n` containers of `image` that sleep, all at once, through `docker()`; removes them.
pub fn run_parallel(
    docker: &(dyn Fn() -> Command + Sync),
    image: &str,
    n: usize,
) -> anyhow::Result<Burst> {
    let started = Instant::now();
    let results: Vec<anyhow::Result<(String, f64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(move || {
                    let t = Instant::now();
                    let id = run_ok(
                        docker().args(["run", "-d", image, "sleep", "600"]),
                        "docker run -d",
                    )?;
                    Ok((id.trim().to_string(), t.elapsed().as_secs_f64()))
                })
            })
            .collect();
        (handles.into_iter())
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a run panicked")))
            })
            .collect()
    });
    let total = started.elapsed().as_secs_f64();
    let ids: Vec<&str> = (results.iter())
        .filter_map(|r| r.as_ref().ok().map(|(id, _)| id.as_str()))
        .collect();
    if !ids.is_empty() {
        let mut rm = docker();
        rm.args(["rm", "-f"]).args(&ids);
        run_ok(&mut rm, "docker rm -f").context("removing the burst's containers")?;
    }
    let mut each = Vec::new();
    for r in results {
        each.push(r?.1);
    }
    each.sort_by(f64::total_cmp);
    Ok(Burst { total, each })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 10.0);
        assert_eq!(percentile(&v, 99.0), 20.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
