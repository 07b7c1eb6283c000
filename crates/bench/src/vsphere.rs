//! `vic-bench-vsphere`: a VCH on vSphere (vcsim, the vCenter model, with real guests: the
//! appliance a process on this machine, each container VM a QEMU microvm started by the
//! stand-in docker) beside a local VCH, through the docker CLI: `vic-machine create`,
//! `docker create`, `docker start` (to running), `docker stop`, `docker rm` and
//! `docker run --rm busybox true`, each timed around the CLI. What the vSphere column adds
//! is vic's work against the vSphere API (tasks, property reads, the power-state watch) and
//! the stand-in's; vcsim answers in microseconds where a vCenter takes tens of milliseconds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use bench::vch::Vch;
use bench::{run_ok, stats, Stats};
use clap::Parser;
use vcsim::{Vcsim, PASSWORD, USER};

#[derive(Debug, Parser)]
#[command(name = "vic-bench-vsphere")]
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
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

/// A VCH as the benchmark drives it: its Docker host.
struct Target<'a> {
    docker: &'a str,
    host: String,
}

impl Target<'_> {
    fn docker(&self, args: &[&str]) -> anyhow::Result<String> {
        run_ok(
            Command::new(self.docker)
                .env("DOCKER_HOST", &self.host)
                .args(args),
            &format!("docker {}", args.join(" ")),
        )
    }

    /// Milliseconds `docker ARGS` takes.
    fn timed(&self, args: &[&str]) -> anyhow::Result<f64> {
        let t = Instant::now();
        self.docker(args)?;
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    }
}

/// The verbs' times on `t`: create, start, stop, rm, run --rm, each `runs` times.
fn verbs(t: &Target, image: &str, runs: usize) -> anyhow::Result<Vec<Vec<f64>>> {
    t.docker(&["pull", image])?;
    let mut times = vec![Vec::new(); 5];
    for i in 0..runs {
        let name = format!("bench-{}-{i}", std::process::id());
        times[0].push(t.timed(&["create", "--name", &name, image, "sleep", "600"])?);
        times[1].push(t.timed(&["start", &name])?);
        times[2].push(t.timed(&["stop", "-t", "10", &name])?);
        times[3].push(t.timed(&["rm", &name])?);
        times[4].push(t.timed(&["run", "--rm", image, "true"])?);
    }
    Ok(times)
}

/// The volume verbs' times on `t`: `volume create` (256 MiB), a run with it mounted, and
/// `volume rm`, each `runs` times.
fn volume_verbs(t: &Target, image: &str, runs: usize) -> anyhow::Result<Vec<Vec<f64>>> {
    let mut times = vec![Vec::new(); 3];
    for i in 0..runs {
        let name = format!("benchvol-{}-{i}", std::process::id());
        let create = ["volume", "create", "--opt", "Capacity=256M", &name];
        times[0].push(t.timed(&create)?);
        let mount = format!("{name}:/data");
        times[1].push(t.timed(&["run", "--rm", "-v", &mount, image, "true"])?);
        times[2].push(t.timed(&["volume", "rm", &name])?);
    }
    Ok(times)
}

fn cell(s: Option<Stats>) -> String {
    match s {
        Some(s) => format!("{:.0} ms ({:.0}–{:.0})", s.median, s.min, s.max),
        None => "n/a".into(),
    }
}

fn print_row(name: &str, vs: &[f64], local: &[f64]) {
    let (a, b) = (stats(vs), stats(local));
    let ratio = match (a, b) {
        (Some(a), Some(b)) if b.median > 0.0 => format!("{:.2}x", a.median / b.median),
        _ => "n/a".into(),
    };
    println!("{name:<28} {:<26} {:<26} {ratio}", cell(a), cell(b));
}

/// `vic-machine create` of a VCH on `sim` (no TLS); its Docker host and how long it took.
fn create_on_vcsim(
    a: &Args,
    sim: &Vcsim,
    fixtures: &Path,
    work: &Path,
) -> anyhow::Result<(String, f64)> {
    let thumbprint = vim25::Thumbprint::sha1_of(&sim.cert_der).to_string();
    let target = format!("https://{}/DC0", sim.host);
    let t = Instant::now();
    let out = run_ok(
        Command::new(a.bin_dir.join("vic-machine"))
            .current_dir(work)
            .env("VIC_MACHINE_SIMULATOR_GUESTS", fixtures)
            .args(["create", "--name", "bench", "--target", &target])
            .args([
                "--user",
                USER,
                "--password",
                PASSWORD,
                "--thumbprint",
                &thumbprint,
            ])
            .args(["--compute-resource", "DC0_C0", "--image-store", "LocalDS_0"])
            .args(["--bridge-network", "DC0_DVPG0", "--no-tls"])
            .args(["--volume-store", "LocalDS_0/bench-volumes:default"])
            .args(["--insecure-registry", &a.registry]),
        "vic-machine create on vcsim",
    )?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let host = out
        .lines()
        .find_map(|l| l.strip_prefix("DOCKER_HOST="))
        .context("vic-machine create printed no DOCKER_HOST")?;
    Ok((host.trim().to_string(), ms))
}

fn main() -> anyhow::Result<()> {
    let mut a = Args::parse();
    a.bin_dir = std::fs::canonicalize(&a.bin_dir)
        .with_context(|| format!("no bin dir {}", a.bin_dir.display()))?;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vcsim");
    let fixtures = std::fs::canonicalize(&fixtures).context("tests/fixtures/vcsim")?;
    let image = format!("{}/busybox", a.registry);
    let work = tempfile::tempdir()?;
    let sim = Vcsim::start_with_guests(false);
    let (host, create_vs) = create_on_vcsim(&a, &sim, &fixtures, work.path())?;
    let vs = Target {
        docker: &a.docker,
        host,
    };
    let vs_times = verbs(&vs, &image, a.runs)?;
    let vs_volumes = volume_verbs(&vs, &image, a.runs)?;
    let t = Instant::now();
    let store = format!("{}:default", work.path().join("volumes").display());
    let extra = ["--volume-store", store.as_str()];
    let local_vch = Vch::create_with(&a.bin_dir, "bench-local", &a.registry, &extra, &[])?;
    let create_local = t.elapsed().as_secs_f64() * 1000.0;
    let local = Target {
        docker: &a.docker,
        host: local_vch.host.clone(),
    };
    let local_times = verbs(&local, &image, a.runs)?;
    let local_volumes = volume_verbs(&local, &image, a.runs)?;
    println!(
        "vic on vSphere (vcsim 0.24.2, real guests) beside vic local, medians of {} (min–max)",
        a.runs
    );
    println!("{:<28} {:<26} {:<26} ratio", "", "vSphere (vcsim)", "local");
    print_row("vic-machine create (1 run)", &[create_vs], &[create_local]);
    let names = [
        "docker create",
        "docker start (to running)",
        "docker stop -t 10",
        "docker rm",
        "docker run --rm busybox true",
    ];
    for (i, name) in names.iter().enumerate() {
        print_row(name, &vs_times[i], &local_times[i]);
    }
    let names = [
        "docker volume create (256M)",
        "docker run --rm -v VOL true",
        "docker volume rm",
    ];
    for (i, name) in names.iter().enumerate() {
        print_row(name, &vs_volumes[i], &local_volumes[i]);
    }
    drop(local_vch);
    run_ok(
        Command::new(a.bin_dir.join("vic-machine"))
            .args(["delete", "--name", "bench", "--force", "--target"])
            .arg(format!("https://{}/DC0", sim.host))
            .args(["--user", USER, "--password", PASSWORD, "--thumbprint"])
            .arg(vim25::Thumbprint::sha1_of(&sim.cert_der).to_string()),
        "vic-machine delete on vcsim",
    )?;
    Ok(())
}
