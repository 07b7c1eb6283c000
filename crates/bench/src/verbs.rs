//! `vic-bench-verbs`: the container verbs beyond `run`, on a vic VCH and on dockerd side by
//! side. `docker exec CTR true`: the whole round trip a user waits for (the CLI creates the
//! exec, starts it on a hijacked connection, reads its end and inspects its exit code), in a
//! container that keeps running. Volumes and bind mounts: 256 MiB written sequentially
//! (`dd … conv=fsync`) by one container and read back by the next, timed inside the
//! container from `/proc/uptime` (the container's start is not counted). A vic container's VM starts
//! with a cold page cache; the host's may hold the file on either side. `docker cp`: a 100 MB
//! file into and out of a running container, and a small file into a stopped one (on vic
//! its VM boots for the copy), timed around the CLI.

use std::path::{Path, PathBuf};
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
    /// Runs of each throughput measurement.
    #[arg(long, default_value_t = 3)]
    io_runs: usize,
}

/// MiB each throughput run moves.
const IO_MIB: u64 = 256;

/// Wraps `cmd` so that it prints how long it took, read from `/proc/uptime` before and after
/// (10 ms steps; busybox `dd` may be built without its timing line).
fn timed(cmd: &str) -> String {
    format!(
        "a=$(cut -d' ' -f1 /proc/uptime); {cmd}; b=$(cut -d' ' -f1 /proc/uptime); echo \"elapsed $a $b\""
    )
}

/// Seconds a [`timed`] script says it took.
fn elapsed_seconds(out: &str) -> Option<f64> {
    let line = out.lines().find_map(|l| l.strip_prefix("elapsed "))?;
    let mut t = line.split_whitespace().map(|v| v.parse::<f64>().ok());
    let (a, b) = (t.next()??, t.next()??);
    (b >= a).then_some(b - a)
}

/// MiB/s of writing then reading `IO_MIB` through the mount `-v mount`, `runs` times each.
fn io_runs(a: &Args, host: &str, image: &str, mount: &str) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let dd = |script: &str| -> anyhow::Result<f64> {
        let out = Command::new(&a.docker)
            .env("DOCKER_HOST", host)
            .args([
                "run",
                "--rm",
                "-v",
                mount,
                image,
                "sh",
                "-c",
                &timed(script),
            ])
            .stdin(Stdio::null())
            .output()?;
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(out.status.success(), "dd through {mount} failed: {text}");
        let secs = elapsed_seconds(&text)
            .filter(|s| *s > 0.0)
            .ok_or_else(|| anyhow::anyhow!("no timing in {text:?}"))?;
        Ok(IO_MIB as f64 / secs)
    };
    let (mut w, mut r) = (Vec::new(), Vec::new());
    for _ in 0..a.io_runs {
        w.push(dd(&format!(
            "dd if=/dev/zero of=/data/bench bs=1M count={IO_MIB} conv=fsync"
        ))?);
        r.push(dd("dd if=/data/bench of=/dev/null bs=1M; rm /data/bench")?);
    }
    Ok((w, r))
}

/// Throughput on a named volume and on a bind mount of `bind_dir`.
fn mounts(
    a: &Args,
    host: &str,
    image: &str,
    bind_dir: &std::path::Path,
) -> anyhow::Result<Vec<Vec<f64>>> {
    let (vw, vr) = io_runs(a, host, image, "bench-volume:/data")?;
    let (bw, br) = io_runs(a, host, image, &format!("{}:/data", bind_dir.display()))?;
    let _ = run_ok(
        docker(&a.docker, host).args(["volume", "rm", "bench-volume"]),
        "volume rm",
    );
    Ok(vec![vw, vr, bw, br])
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

/// Bytes of the file `docker cp` moves.
const CP_BYTES: usize = 100_000_000;

/// Seconds of `docker cp` of a 100 MB file into and out of a running container, and of a
/// small file into a stopped one, `io_runs` times each.
fn cp_runs(a: &Args, host: &str, image: &str, dir: &Path) -> anyhow::Result<Vec<Vec<f64>>> {
    std::fs::create_dir_all(dir)?;
    let big = dir.join("big");
    let data: Vec<u8> = (0..CP_BYTES).map(|i| (i * 7 + i / 4096) as u8).collect();
    std::fs::write(&big, &data)?;
    let small = dir.join("small");
    std::fs::write(&small, b"small\n")?;
    let timed = |args: &[&str], what: &str| -> anyhow::Result<f64> {
        let t = Instant::now();
        run_ok(docker(&a.docker, host).args(args), what)?;
        Ok(t.elapsed().as_secs_f64())
    };
    let id = run_ok(
        docker(&a.docker, host).args(["run", "-d", image, "sleep", "600"]),
        "docker run -d",
    )?;
    let id = id.trim().to_string();
    let stopped = run_ok(
        docker(&a.docker, host).args(["create", image, "true"]),
        "docker create",
    )?;
    let stopped = stopped.trim().to_string();
    let result = (|| {
        let (mut cp_in, mut cp_out, mut cold) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..a.io_runs {
            let to = format!("{id}:/big");
            cp_in.push(timed(
                &["cp", big.to_str().unwrap_or_default(), &to],
                "cp in",
            )?);
            let back = dir.join(format!("back{i}"));
            cp_out.push(timed(
                &["cp", &to, back.to_str().unwrap_or_default()],
                "cp out",
            )?);
            anyhow::ensure!(std::fs::read(&back)? == data, "the copy came back whole");
            std::fs::remove_file(&back)?;
            let into = format!("{stopped}:/tmp/");
            cold.push(timed(
                &["cp", small.to_str().unwrap_or_default(), &into],
                "cp stopped",
            )?);
        }
        Ok(vec![cp_in, cp_out, cold])
    })();
    run_ok(
        docker(&a.docker, host).args(["rm", "-f", &id, &stopped]),
        "docker rm -f",
    )?;
    result
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let image = format!("{}/busybox", a.registry);
    let scratch = tempfile::Builder::new()
        .prefix("vic-bench-verbs-")
        .tempdir()?;
    let (stores, binds) = (scratch.path().join("volumes"), scratch.path().join("binds"));
    std::fs::create_dir_all(&binds)?;
    let store = format!("{}:default", stores.display());
    let bind = binds.display().to_string();
    let extra = [
        "--volume-store",
        store.as_str(),
        "--bind-path",
        bind.as_str(),
    ];
    let vch = Vch::create_with(&a.bin_dir, "bench-verbs", &a.registry, &extra, &[])?;
    let v = exec_runs(&a, &vch.host, &image)?;
    let v_io = mounts(&a, &vch.host, &image, &binds.join("vic"))?;
    let v_cp = cp_runs(&a, &vch.host, &image, &scratch.path().join("cp"))?;
    drop(vch);
    let (p, p_io, p_cp) = match Dockerd::start_peer(&a.dockerd, &[&a.registry], &a.docker) {
        Some(d) => (
            Some(exec_runs(&a, d.host(), &image)?),
            Some(mounts(&a, d.host(), &image, &binds.join("dockerd"))?),
            Some(cp_runs(&a, d.host(), &image, &scratch.path().join("cp"))?),
        ),
        None => (None, None, None),
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
    let names = [
        "write 256 MiB to a volume",
        "read 256 MiB from a volume",
        "write 256 MiB to a bind mount",
        "read 256 MiB from a bind mount",
    ];
    for (i, name) in names.iter().enumerate() {
        let peer = p_io.as_ref().and_then(|p| stats(&p[i]));
        row(
            &format!("{name} ×{}", a.io_runs),
            stats(&v_io[i]),
            peer,
            "MiB/s",
        );
    }
    let names = [
        "docker cp 100 MB into a running ctr",
        "docker cp 100 MB out of a running ctr",
        "docker cp 6 B into a stopped ctr",
    ];
    for (i, name) in names.iter().enumerate() {
        let ms = |v: &[f64]| v.iter().map(|s| s * 1000.0).collect::<Vec<_>>();
        let peer = p_cp.as_ref().and_then(|p| stats(&ms(&p[i])));
        row(
            &format!("{name} ×{}", a.io_runs),
            stats(&ms(&v_cp[i])),
            peer,
            "ms",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_timed_script_says_how_long_it_took() {
        let out = "256+0 records in\n256+0 records out\nelapsed 103.25 105.60\n";
        let secs = super::elapsed_seconds(out).unwrap();
        assert!((secs - 2.35).abs() < 1e-9, "{secs}");
        assert_eq!(super::elapsed_seconds("dd: can't open"), None);
        assert_eq!(super::elapsed_seconds("elapsed 5.00 4.00"), None);
        assert!(super::timed("true").ends_with("echo \"elapsed $a $b\""));
    }
}
