//! `vic-bench`: `docker run --rm busybox true` on a vic VCH and on dockerd, side by side.
//!
//! Prints the median and 99th percentile of N runs and their ratio to dockerd's: `run --rm`,
//! the time from `start -a` to the first byte of container output, a run printing a million
//! lines (output throughput), the resident memory of one container VM, what idle containers
//! cost (CPU and PSS per container, see `idle.rs`), 50 containers started at once
//! (`burst.rs`), and what QEMU's jail costs per start (the same runs on a second VCH whose
//! appliance runs QEMU unjailed). The VCH under test restores its container VMs from booted
//! templates (its default); a third VCH, `--container-start cold`, gives the cold-boot rows.
//! dockerd is started by the benchmark itself (its own data root and socket) when it is
//! installed; otherwise its column says so.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use bench::burst::Burst;
use bench::dockerd::{Dockerd, DEFAULT_DOCKERD};
use bench::idle::{qemu_pid_of, rss_kib, runc_pids_of, Idle};
use bench::vch::Vch;
use bench::{run_ok, stats, Stats};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "vic-bench")]
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
    /// Runs per measurement.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// dockerd binary for the peer column.
    #[arg(long, default_value = DEFAULT_DOCKERD)]
    dockerd: PathBuf,
    /// Measure vic alone (e.g. to compare two vic builds), without the dockerd column.
    #[arg(long)]
    no_peer: bool,
    /// Idle containers run at once for the idle CPU and memory rows.
    #[arg(long, default_value_t = 4)]
    idle: usize,
    /// Only the idle rows (CPU and memory of idle containers).
    #[arg(long)]
    idle_only: bool,
    /// Containers started at once for the burst rows (0: none).
    #[arg(long, default_value_t = 50)]
    burst: usize,
}

/// `docker run -d` of `args.burst` containers at once on `ep`.
fn burst(ep: &Endpoint, args: &Args, image: &str) -> anyhow::Result<Option<Burst>> {
    if args.burst == 0 {
        return Ok(None);
    }
    let docker = || ep.docker(&args.docker);
    bench::burst::run_parallel(&docker, image, args.burst).map(Some)
}

/// The burst rows: the whole burst, and each container's p50 and p99.
fn burst_rows(n: usize, vic: Option<&Burst>, peer: Option<&Burst>) {
    let one = |b: &Burst| Stats::one(b.total);
    row(
        &format!("run -d ×{n} at once: all running"),
        vic.map(one).as_ref(),
        peer.map(one).as_ref(),
        "s",
    );
    for p in [50.0, 99.0] {
        let at = |b: &Burst| Stats::one(b.percentile(p));
        row(
            &format!("  each run -d, p{p:.0}"),
            vic.map(at).as_ref(),
            peer.map(at).as_ref(),
            "s",
        );
    }
}

/// How long idle containers run before they are measured, and over how long.
const IDLE_SETTLE: Duration = Duration::from_secs(5);
const IDLE_WINDOW: Duration = Duration::from_secs(10);

fn idle(ep: &Endpoint, args: &Args, image: &str, vm: bool) -> anyhow::Result<Idle> {
    let docker = || ep.docker(&args.docker);
    let pids_of = |id: &str| match vm {
        true => qemu_pid_of(id).into_iter().collect(),
        false => runc_pids_of(&docker, id),
    };
    bench::idle::measure(
        &docker,
        image,
        args.idle,
        &pids_of,
        IDLE_SETTLE,
        IDLE_WINDOW,
    )
}

/// The peer: a dockerd of its own with `image` pulled (none with `--no-peer`, or when dockerd
/// is not installed).
fn peer(args: &Args, image: &str) -> anyhow::Result<Option<(Dockerd, Endpoint)>> {
    if args.no_peer {
        return Ok(None);
    }
    let Some(d) = Dockerd::start_peer(&args.dockerd, &[&args.registry], &args.docker) else {
        return Ok(None);
    };
    let ep = Endpoint {
        label: "dockerd",
        host: d.host().to_string(),
    };
    run_ok(
        ep.docker(&args.docker).args(["pull", image]),
        "pull on dockerd",
    )?;
    Ok(Some((d, ep)))
}

/// `--idle-only`: the idle rows alone.
fn idle_alone(args: &Args, vic: &Endpoint, image: &str) -> anyhow::Result<()> {
    time_runs(vic, &args.docker, image, 0, true)?;
    template_ready(vic, &args.docker)?;
    let v_idle = idle(vic, args, image, true)?;
    let p_idle = match peer(args, image)? {
        Some((_dockerd, ep)) => Some(idle(&ep, args, image, false)?),
        None => None,
    };
    println!(
        "\n{:<34} {:<28} {:<28} ratio",
        "metric", vic.label, "dockerd"
    );
    idle_rows("", args.idle, Some(&v_idle), p_idle.as_ref());
    Ok(())
}

/// The idle rows: CPU and PSS per container, and how many such containers 16 GiB holds.
fn idle_rows(what: &str, n: usize, vic: Option<&Idle>, peer: Option<&Idle>) {
    let cpu = |i: Option<&Idle>| i.and_then(|i| stats(&i.cpu_percent));
    let pss = |i: Option<&Idle>| i.and_then(|i| stats(&i.pss_mib));
    row(
        &format!("{what}idle container CPU (%) ×{n}"),
        cpu(vic).as_ref(),
        cpu(peer).as_ref(),
        "%",
    );
    row(
        &format!("{what}idle container PSS (MiB) ×{n}"),
        pss(vic).as_ref(),
        pss(peer).as_ref(),
        "",
    );
    let fit = |i: Option<&Idle>| {
        pss(i).map_or("n/a".to_string(), |s| format!("{:.0}", 16384.0 / s.median))
    };
    println!(
        "{:<34} {:<28} {:<28} (PSS alone)",
        format!("  {what}idle containers in 16 GiB"),
        fit(vic),
        fit(peer)
    );
}

/// A docker endpoint under test.
struct Endpoint {
    label: &'static str,
    host: String,
}

impl Endpoint {
    fn docker(&self, docker: &str) -> Command {
        let mut c = Command::new(docker);
        c.env("DOCKER_HOST", &self.host).stdin(Stdio::null());
        c
    }
}

fn time_runs(
    ep: &Endpoint,
    docker: &str,
    image: &str,
    runs: usize,
    warm_up: bool,
) -> anyhow::Result<Vec<f64>> {
    // One warm-up run (first use of the image builds caches on both sides).
    if warm_up {
        run_ok(
            ep.docker(docker).args(["run", "--rm", image, "true"]),
            "warm-up run",
        )?;
    }
    let mut out = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        run_ok(
            ep.docker(docker).args(["run", "--rm", image, "true"]),
            "docker run --rm true",
        )?;
        out.push(t.elapsed().as_secs_f64());
    }
    Ok(out)
}

/// Time from `docker start -a` to the first byte of the container's output.
fn first_output(ep: &Endpoint, docker: &str, image: &str, runs: usize) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::new();
    for _ in 0..runs {
        let id = run_ok(
            ep.docker(docker).args(["create", image, "echo", "x"]),
            "docker create",
        )?;
        let id = id.trim().to_string();
        let t = Instant::now();
        let mut child = ep
            .docker(docker)
            .args(["start", "-a", &id])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut byte = [0u8; 1];
        let got = child
            .stdout
            .as_mut()
            .map(|s| s.read(&mut byte))
            .transpose()?;
        let elapsed = t.elapsed().as_secs_f64();
        let _ = child.wait();
        run_ok(ep.docker(docker).args(["rm", "-f", &id]), "docker rm")?;
        if got == Some(1) {
            out.push(elapsed);
        }
    }
    Ok(out)
}

/// Lines `seq` prints in the output benchmark, and the bytes they make.
const SEQ_LINES: u64 = 1_000_000;

fn seq_bytes(n: u64) -> u64 {
    // Each number's digits plus a newline.
    (1..=n).map(|i| i.to_string().len() as u64 + 1).sum()
}

/// `docker run --rm busybox seq 1 N` with the output read by the client: the whole path from
/// the container's process through the VM's channel, the appliance (which also logs every
/// line) and the attach stream. Every run must deliver every byte.
fn output_runs(ep: &Endpoint, docker: &str, image: &str, runs: usize) -> anyhow::Result<Vec<f64>> {
    let want = seq_bytes(SEQ_LINES);
    let mut out = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let mut child = ep
            .docker(docker)
            .args(["run", "--rm", image, "seq", "1", &SEQ_LINES.to_string()])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut got = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        let mut stdout = child.stdout.take().context("stdout")?;
        loop {
            let n = stdout.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        let status = child.wait()?;
        let elapsed = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            status.success() && got == want,
            "{}: seq delivered {got} of {want} bytes ({status})",
            ep.label
        );
        out.push(elapsed);
    }
    Ok(out)
}

fn vm_rss(ep: &Endpoint, docker: &str, image: &str) -> anyhow::Result<Option<u64>> {
    let id = run_ok(
        ep.docker(docker).args(["run", "-d", image, "sleep", "60"]),
        "docker run -d",
    )?;
    let id = id.trim().to_string();
    std::thread::sleep(Duration::from_secs(2));
    let rss = qemu_pid_of(&id).and_then(rss_kib);
    run_ok(ep.docker(docker).args(["rm", "-f", &id]), "docker rm -f")?;
    Ok(rss)
}

fn row(name: &str, vic: Option<&Stats>, peer: Option<&Stats>, unit: &str) {
    let cell = |s: Option<&Stats>| match s {
        Some(s) => format!("{:.3}{unit} (p99 {:.3})", s.median, s.p99),
        None => "n/a".to_string(),
    };
    let ratio = match (vic, peer) {
        (Some(v), Some(p)) if p.median > 0.0 => format!("{:.2}x", v.median / p.median),
        _ => "n/a".into(),
    };
    println!("{name:<34} {:<28} {:<28} {ratio}", cell(vic), cell(peer));
}

/// The jail's cost per start: `docker run --rm busybox true` alternately on the VCH under
/// test and on a VCH of its own whose appliance runs QEMU without its jail, so that both see
/// the same load on the machine. Returns (jailed, unjailed) times.
fn jail_pairs(args: &Args, vic: &Endpoint, image: &str) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let no_jail = [("VIC_BENCH_NO_VM_JAIL", "true")];
    let (_vch, unjailed) = side_vch(args, image, "bench-nojail", &[], &no_jail)?;
    let (mut jailed_times, mut unjailed_times) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        jailed_times.extend(time_runs(vic, &args.docker, image, 1, false)?);
        unjailed_times.extend(time_runs(&unjailed, &args.docker, image, 1, false)?);
    }
    Ok((jailed_times, unjailed_times))
}

/// Waits until the VCH says it has a template (made by the first container of a shape).
fn template_ready(ep: &Endpoint, docker: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let info = run_ok(
            ep.docker(docker)
                .args(["info", "--format", "{{json .DriverStatus}}"]),
            "docker info",
        )?;
        if info.contains("ready") && !info.contains("(0 ready") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("no template after 120 s: {info}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every container VM boots on this VCH (`--container-start cold`): the rows templates are
/// measured against.
struct Cold {
    run: Option<Stats>,
    first: Option<Stats>,
    idle: Idle,
}

/// A VCH beside the one under test (`extra` create flags, `env` for its appliance), with
/// `image` pulled and, unless it boots cold, its first template made.
fn side_vch(
    args: &Args,
    image: &str,
    prefix: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<(Vch, Endpoint)> {
    let vch = Vch::create_with(&args.bin_dir, prefix, &args.registry, extra, env)?;
    let ep = Endpoint {
        label: "vic",
        host: vch.host.clone(),
    };
    run_ok(ep.docker(&args.docker).args(["pull", image]), "pull")?;
    time_runs(&ep, &args.docker, image, 0, true)?;
    if !extra.contains(&"cold") {
        template_ready(&ep, &args.docker)?;
    }
    Ok((vch, ep))
}

fn cold(args: &Args, image: &str) -> anyhow::Result<Cold> {
    let (_vch, ep) = side_vch(
        args,
        image,
        "bench-cold",
        &["--container-start", "cold"],
        &[],
    )?;
    Ok(Cold {
        run: stats(&time_runs(&ep, &args.docker, image, args.runs, false)?),
        first: stats(&first_output(&ep, &args.docker, image, args.runs)?),
        idle: idle(&ep, args, image, true)?,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let image = format!("{}/busybox", args.registry);
    let vch = Vch::create(&args.bin_dir, "bench", &args.registry)?;
    let vic = Endpoint {
        label: "vic",
        host: vch.host.clone(),
    };
    let result = (|| -> anyhow::Result<()> {
        run_ok(
            vic.docker(&args.docker).args(["pull", &image]),
            "pull on vic",
        )?;
        if args.idle_only {
            return idle_alone(&args, &vic, &image);
        }
        // The first container boots and makes the template the others are restored from.
        time_runs(&vic, &args.docker, &image, 0, true)?;
        template_ready(&vic, &args.docker)?;
        let v_run = stats(&time_runs(&vic, &args.docker, &image, args.runs, false)?);
        let v_first = stats(&first_output(&vic, &args.docker, &image, args.runs)?);
        let v_rss = vm_rss(&vic, &args.docker, &image)?;
        let v_out = stats(&output_runs(&vic, &args.docker, &image, args.runs.min(5))?);
        let (jailed, unjailed) = jail_pairs(&args, &vic, &image)?;
        let v_idle = idle(&vic, &args, &image, true)?;
        let v_burst = burst(&vic, &args, &image)?;
        let (jailed, unjailed) = (stats(&jailed), stats(&unjailed));
        let cold = cold(&args, &image)?;

        let peer = match peer(&args, &image)? {
            Some((d, ep)) => {
                let run = stats(&time_runs(&ep, &args.docker, &image, args.runs, true)?);
                let first = stats(&first_output(&ep, &args.docker, &image, args.runs)?);
                let out = stats(&output_runs(&ep, &args.docker, &image, args.runs.min(5))?);
                let idle = idle(&ep, &args, &image, false)?;
                let burst = burst(&ep, &args, &image)?;
                drop(d);
                Some((run, first, out, idle, burst))
            }
            None => None,
        };
        let (p_run, p_first, p_out, p_idle, p_burst) = match peer {
            Some((run, first, out, idle, burst)) => (run, first, out, Some(idle), burst),
            None => (None, None, None, None, None),
        };
        println!(
            "\n{:<34} {:<28} {:<28} ratio",
            "metric (seconds; median (p99))", "vic (templates)", "dockerd"
        );
        row(
            &format!("docker run --rm busybox true ×{}", args.runs),
            v_run.as_ref(),
            p_run.as_ref(),
            "s",
        );
        row("  cold boot", cold.run.as_ref(), p_run.as_ref(), "s");
        row(
            &format!("start -a → first output byte ×{}", args.runs),
            v_first.as_ref(),
            p_first.as_ref(),
            "s",
        );
        row("  cold boot", cold.first.as_ref(), p_first.as_ref(), "s");
        row(
            &format!(
                "run seq 1 {SEQ_LINES} ({:.1} MB)",
                seq_bytes(SEQ_LINES) as f64 / 1e6
            ),
            v_out.as_ref(),
            p_out.as_ref(),
            "s",
        );
        row(
            &format!("  jailed, alternating ×{}", args.runs),
            jailed.as_ref(),
            None,
            "s",
        );
        row(
            &format!("  QEMU not jailed, alternating ×{}", args.runs),
            unjailed.as_ref(),
            None,
            "s",
        );
        if let (Some(j), Some(u)) = (jailed.as_ref(), unjailed.as_ref()) {
            println!(
                "{:<34} {:+.3}s per start (median jailed − median unjailed)",
                "  QEMU jail cost",
                j.median - u.median
            );
        }
        idle_rows("", args.idle, Some(&v_idle), p_idle.as_ref());
        idle_rows("cold boot: ", args.idle, Some(&cold.idle), p_idle.as_ref());
        burst_rows(args.burst, v_burst.as_ref(), p_burst.as_ref());
        match v_rss {
            Some(kib) => println!(
                "{:<34} {:<28} {:<28}",
                "container VM RSS (QEMU)",
                format!("{:.1} MiB", kib as f64 / 1024.0),
                "n/a (no VM)"
            ),
            None => println!(
                "{:<34} could not read the VM's RSS",
                "container VM RSS (QEMU)"
            ),
        }
        Ok(())
    })();
    drop(vch);
    result
}
