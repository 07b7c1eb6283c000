//! `vic-bench-verbs`: the container verbs beyond `run`, on a vic VCH and on dockerd side by
//! side. `docker exec CTR true`: the whole round trip a user waits for (the CLI creates the
//! exec, starts it on a hijacked connection, reads its end and inspects its exit code), in a
//! container that keeps running.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use bench::dockerd::{Dockerd, DEFAULT_DOCKERD};
use bench::vch::Vch;
use bench::{row, run_ok, stats};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "vic-bench-verbs")]
struct Args {
    /// Directory with vic-machine and vic-appliance.
    #[arg(long)]
    bin_dir: PathBuf,
    /// Registry (host:port) holding busybox.
    #[arg(long)]
    registry: String,
    /// The docker CLI.
    #[arg(long, default_value = "docker")]
    docker: String,
    /// Runs of each measurement.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// dockerd binary for the peer column.
    #[arg(long, default_value = DEFAULT_DOCKERD)]
    dockerd: PathBuf,
}

fn docker(bin: &str, host: &str) -> Command {
    let mut c = Command::new(bin);
    c.env("DOCKER_HOST", host).stdin(Stdio::null());
    c
}

/// Seconds each `docker exec CTR true` takes, after one warm-up.
fn exec_runs(a: &Args, host: &str, image: &str) -> anyhow::Result<Vec<f64>> {
    run_ok(docker(&a.docker, host).args(["pull", image]), "pull")?;
    let id = run_ok(
        docker(&a.docker, host).args(["run", "-d", image, "sleep", "600"]),
        "docker run -d",
    )?;
    let id = id.trim().to_string();
    let result = (|| {
        run_ok(
            docker(&a.docker, host).args(["exec", &id, "true"]),
            "warm-up exec",
        )?;
        let mut out = Vec::new();
        for _ in 0..a.runs {
            let t = Instant::now();
            run_ok(
                docker(&a.docker, host).args(["exec", &id, "true"]),
                "docker exec",
            )?;
            out.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(out)
    })();
    run_ok(
        docker(&a.docker, host).args(["rm", "-f", &id]),
        "docker rm -f",
    )?;
    result
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let image = format!("{}/busybox", a.registry);
    let vch = Vch::create(&a.bin_dir, "bench-verbs", &a.registry)?;
    let v = exec_runs(&a, &vch.host, &image)?;
    drop(vch);
    let p = match Dockerd::start_peer(&a.dockerd, &[&a.registry], &a.docker) {
        Some(d) => Some(exec_runs(&a, d.host(), &image)?),
        None => None,
    };
    println!(
        "\n{:<40} {:<30} {:<30} ratio",
        "metric (median (min–max))", "vic", "dockerd"
    );
    row(
        &format!("docker exec CTR true ×{}", a.runs),
        stats(&v),
        p.as_deref().and_then(stats),
        "ms",
    );
    Ok(())
}
