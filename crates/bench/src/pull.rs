//! `vic-bench-pull`: cold-pull throughput of a big image on a vic VCH, on dockerd, and with
//! `skopeo copy` (download only), side by side.
//!
//! The image is `big:latest` of the big-image test registry (`tests/fixtures/registry.sh start
//! DIR --big`, started or reused here). Every run is cold: before each pull the image is
//! removed and the benchmark checks that the puller kept none of its blobs or layers, so the
//! whole image crosses the wire again. Runs are interleaved (vic, dockerd, skopeo, vic, …)
//! after one untimed `skopeo copy` that puts the registry's blobs in the page cache, and the
//! disks are synced before each timed run.
//!
//! CPU is the puller's own: user+system time of the `vic-appliance` process, of dockerd and
//! its descendants (its containerd), and of the skopeo process (from `wait4`), each including
//! the children they reaped during the run. The `docker` CLI's own CPU is not counted.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench::dockerd::{Dockerd, DEFAULT_DOCKERD};
use bench::procfs::{alive_with, cpu_seconds, loopback_bytes, run_with_rusage, sync_disks};
use bench::vch::Vch;
use bench::{run_ok, stats, Stats};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "vic-bench-pull",
    about = "Cold-pull throughput: vic vs dockerd vs skopeo copy"
)]
struct Args {
    /// Directory with vic-machine and vic-appliance.
    #[arg(long, default_value = "build/bin")]
    bin_dir: PathBuf,
    /// The registry fixture script.
    #[arg(long, default_value = "tests/fixtures/registry.sh")]
    registry_script: PathBuf,
    /// Directory of the big-image registry (started, or reused when it is running).
    #[arg(long, default_value = "build/registry-big")]
    registry_dir: PathBuf,
    /// Use this registry (host:port, holding big:latest) instead of starting one.
    #[arg(long)]
    registry: Option<String>,
    /// Leave a registry this program started running at the end.
    #[arg(long)]
    keep_registry: bool,
    /// Repository and tag pulled from the registry.
    #[arg(long, default_value = "big:latest")]
    image: String,
    /// Timed cold pulls per puller.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The docker CLI.
    #[arg(long, default_value = "docker")]
    docker: String,
    /// dockerd binary for the peer column.
    #[arg(long, default_value = DEFAULT_DOCKERD)]
    dockerd: PathBuf,
    /// skopeo binary for the download-only column.
    #[arg(long, default_value = "skopeo")]
    skopeo: String,
}

// ---------------------------------------------------------------------------------------------
// Small helpers

fn docker_cmd(docker: &str, host: &str) -> Command {
    let mut c = Command::new(docker);
    c.env("DOCKER_HOST", host).stdin(Stdio::null());
    c
}

// ---------------------------------------------------------------------------------------------
// The image

/// What the registry says about the image.
struct Image {
    reference: String,
    /// Layer digests, then the config digest.
    blobs: Vec<String>,
    layers: usize,
    /// Compressed layers plus the config, in bytes.
    compressed: u64,
}

fn inspect_image(skopeo: &str, reference: &str) -> anyhow::Result<Image> {
    let raw = run_ok(
        Command::new(skopeo).args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ]),
        "skopeo inspect --raw",
    )?;
    let m: serde_json::Value = serde_json::from_str(&raw).context("parsing the manifest")?;
    let layers = m["layers"]
        .as_array()
        .context("the manifest has no layers (an index?)")?;
    let mut blobs = Vec::new();
    let mut compressed = 0;
    for d in layers.iter().chain(std::iter::once(&m["config"])) {
        blobs.push(
            d["digest"]
                .as_str()
                .context("a descriptor without a digest")?
                .to_string(),
        );
        compressed += d["size"].as_u64().context("a descriptor without a size")?;
    }
    Ok(Image {
        reference: reference.to_string(),
        blobs,
        layers: layers.len(),
        compressed,
    })
}

// ---------------------------------------------------------------------------------------------
// The registry

struct Registry {
    addr: String,
    /// Stop it at the end (this program started it).
    stop: Option<(PathBuf, PathBuf)>,
}

impl Registry {
    fn start(args: &Args) -> anyhow::Result<Registry> {
        if let Some(addr) = &args.registry {
            return Ok(Registry {
                addr: addr.clone(),
                stop: None,
            });
        }
        let config = std::fs::canonicalize(&args.registry_dir)
            .unwrap_or_else(|_| args.registry_dir.clone())
            .join("config.yml");
        let was_running = alive_with(
            &args.registry_dir.join("registry.pid"),
            &config.display().to_string(),
        )
        .is_some();
        eprintln!(
            "registry: {} {} --big",
            args.registry_script.display(),
            args.registry_dir.display()
        );
        let out = run_ok(
            Command::new("bash")
                .arg(&args.registry_script)
                .arg("start")
                .arg(&args.registry_dir)
                .arg("--big"),
            "registry.sh start --big",
        )?;
        let addr = out
            .lines()
            .find_map(|l| l.strip_prefix("REGISTRY="))
            .context("registry.sh printed no REGISTRY=")?
            .trim()
            .to_string();
        Ok(Registry {
            addr,
            stop: (!was_running && !args.keep_registry)
                .then(|| (args.registry_script.clone(), args.registry_dir.clone())),
        })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some((script, dir)) = &self.stop {
            let _ = Command::new("bash")
                .arg(script)
                .arg("stop")
                .arg(dir)
                .stdin(Stdio::null())
                .status();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The VCH (bench::vch::Vch)

fn appliance_pid(vch: &Vch) -> anyhow::Result<u32> {
    alive_with(&vch.dir().join("appliance.pid"), "vic-appliance")
        .context("no live vic-appliance behind appliance.pid")
}

fn blob_dir(vch: &Vch) -> PathBuf {
    vch.dir().join("images/blobs/sha256")
}

// ---------------------------------------------------------------------------------------------
// The pullers

#[derive(Default)]
struct Runs {
    secs: Vec<f64>,
    cpu: Vec<f64>,
    /// Loopback bytes during the run.
    wire: Vec<f64>,
}

/// One timed run: seconds, CPU seconds, loopback bytes.
struct Run {
    secs: f64,
    cpu: f64,
    wire: u64,
}

impl Runs {
    fn push(&mut self, r: &Run) {
        self.secs.push(r.secs);
        self.cpu.push(r.cpu);
        self.wire.push(r.wire as f64);
    }
}

/// Fails when a pull's output shows it reused something.
fn check_cold(out: &str, image: &Image, who: &str) -> anyhow::Result<()> {
    if out.contains("Already exists") {
        bail!("{who}: the pull was not cold (a layer \"Already exists\"):\n{out}");
    }
    let complete = out.matches("Pull complete").count();
    if complete != image.layers {
        eprintln!(
            "warning: {who}: {complete} \"Pull complete\" lines for {} layers",
            image.layers
        );
    }
    Ok(())
}

fn wait_until(what: &str, mut ok: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok()? {
        if Instant::now() > deadline {
            bail!("{what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn vic_pull(vch: &Vch, docker: &str, image: &Image) -> anyhow::Result<Run> {
    let _ = docker_cmd(docker, &vch.host)
        .args(["rmi", "-f", &image.reference])
        .output();
    let blobs = blob_dir(vch);
    wait_until(
        &format!(
            "vic kept blobs of {} in {} after rmi -f",
            image.reference,
            blobs.display()
        ),
        || {
            Ok(image.blobs.iter().all(|d| {
                let hex = d.strip_prefix("sha256:").unwrap_or(d);
                !blobs.join(hex).exists() && !blobs.join(format!("{hex}.partial")).exists()
            }))
        },
    )?;
    sync_disks();
    let pid = appliance_pid(vch)?;
    let cpu0 = cpu_seconds(pid, false)?;
    let lo0 = loopback_bytes();
    let t = Instant::now();
    let out = run_ok(
        docker_cmd(docker, &vch.host).args(["pull", &image.reference]),
        "docker pull on vic",
    )?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid, false)? - cpu0;
    let wire = loopback_bytes().saturating_sub(lo0);
    check_cold(&out, image, "vic")?;
    Ok(Run { secs, cpu, wire })
}

/// The layers dockerd keeps (`image/DRIVER/layerdb/sha256/*`).
fn dockerd_layers(d: &Dockerd) -> usize {
    let Ok(drivers) = std::fs::read_dir(d.data_root().join("image")) else {
        return 0;
    };
    drivers
        .flatten()
        .filter_map(|e| std::fs::read_dir(e.path().join("layerdb/sha256")).ok())
        .map(|r| r.count())
        .sum()
}

fn dockerd_pull(d: &Dockerd, docker: &str, image: &Image) -> anyhow::Result<Run> {
    let _ = d.docker(docker).args(["rmi", &image.reference]).output();
    wait_until(
        &format!(
            "dockerd kept layers in {} after rmi",
            d.data_root().display()
        ),
        || Ok(dockerd_layers(d) == 0),
    )?;
    sync_disks();
    let cpu0 = cpu_seconds(d.pid(), true)?;
    let lo0 = loopback_bytes();
    let t = Instant::now();
    let out = run_ok(
        d.docker(docker).args(["pull", &image.reference]),
        "docker pull on dockerd",
    )?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds(d.pid(), true)? - cpu0;
    let wire = loopback_bytes().saturating_sub(lo0);
    check_cold(&out, image, "dockerd")?;
    Ok(Run { secs, cpu, wire })
}

fn skopeo_copy(skopeo: &str, image: &Image) -> anyhow::Result<Run> {
    let dest = tempfile::Builder::new()
        .prefix("vic-bench-pull-skopeo-")
        .tempdir()?;
    let log_path = dest.path().join("skopeo.log");
    let log = std::fs::File::create(&log_path)?;
    let blobs = dest.path().join("image");
    sync_disks();
    let lo0 = loopback_bytes();
    let t = Instant::now();
    let (ok, cpu) = run_with_rusage(
        Command::new(skopeo)
            .args([
                "copy",
                "--src-tls-verify=false",
                &format!("docker://{}", image.reference),
            ])
            .arg(format!("dir:{}", blobs.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log),
    )?;
    let secs = t.elapsed().as_secs_f64();
    let wire = loopback_bytes().saturating_sub(lo0);
    if !ok {
        bail!(
            "skopeo copy failed: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }
    // Every blob, compressed, must be there.
    for d in &image.blobs {
        let hex = d.strip_prefix("sha256:").unwrap_or(d);
        if !blobs.join(hex).exists() {
            bail!("skopeo copy left no blob {d} in {}", blobs.display());
        }
    }
    Ok(Run { secs, cpu, wire })
}

// ---------------------------------------------------------------------------------------------
// The table

const W0: usize = 30;
const W: usize = 24;

fn print_row(name: &str, cells: &[String]) {
    print!("{name:<W0$}");
    for c in cells {
        print!(" | {c:<W$}");
    }
    println!();
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let registry = Registry::start(&args)?;
    let reference = format!("{}/{}", registry.addr, args.image);
    let image = inspect_image(&args.skopeo, &reference)?;
    eprintln!(
        "image {reference}: {} layers, {:.1} MB compressed (layers + config)",
        image.layers,
        image.compressed as f64 / 1e6
    );

    eprintln!("warm-up: one untimed skopeo copy (registry blobs into the page cache)");
    skopeo_copy(&args.skopeo, &image)?;

    eprintln!("creating VCH (vic-machine create)…");
    let vch = Vch::create(&args.bin_dir, "bench-pull", &registry.addr)?;
    let dockerd = Dockerd::start_peer(&args.dockerd, &[&registry.addr], &args.docker);
    let driver = dockerd.as_ref().and_then(|d| {
        run_ok(
            d.docker(&args.docker)
                .args(["info", "--format", "{{.Driver}}"]),
            "docker info",
        )
        .ok()
        .map(|s| s.trim().to_string())
    });
    let dockerd_version = dockerd.as_ref().and_then(|d| {
        run_ok(
            d.docker(&args.docker)
                .args(["version", "--format", "{{.Server.Version}}"]),
            "docker version",
        )
        .ok()
        .map(|s| s.trim().to_string())
    });

    let (mut vic, mut peer, mut sko) = (Runs::default(), Runs::default(), Runs::default());
    let report = |i: usize, who: &str, r: &Run| {
        eprintln!(
            "run {i}/{}: {who:<8} {:7.2} s  cpu {:6.2} s  loopback {:7.1} MB",
            args.runs,
            r.secs,
            r.cpu,
            r.wire as f64 / 1e6
        );
        if r.wire < image.compressed {
            eprintln!("warning: {who}: less than the image crossed loopback: not a full download?");
        }
    };
    for i in 1..=args.runs {
        let r = vic_pull(&vch, &args.docker, &image)?;
        report(i, "vic", &r);
        vic.push(&r);
        if let Some(d) = &dockerd {
            let r = dockerd_pull(d, &args.docker, &image)?;
            report(i, "dockerd", &r);
            peer.push(&r);
        }
        let r = skopeo_copy(&args.skopeo, &image)?;
        report(i, "skopeo", &r);
        sko.push(&r);
    }

    let size_of = |host: &str| -> Option<u64> {
        run_ok(
            docker_cmd(&args.docker, host).args([
                "image",
                "inspect",
                "--format",
                "{{.Size}}",
                &reference,
            ]),
            "docker image inspect",
        )
        .ok()?
        .trim()
        .parse()
        .ok()
    };
    let unpacked_peer = dockerd.as_ref().and_then(|d| size_of(d.host()));
    let unpacked_vic = size_of(&vch.host);
    // Leave nothing behind in either store.
    let _ = docker_cmd(&args.docker, &vch.host)
        .args(["rmi", "-f", &reference])
        .output();
    drop(dockerd);
    drop(vch);

    // ---- report ----
    let mb = |b: u64| b as f64 / 1e6;
    let gb = image.compressed as f64 / 1e9;
    println!();
    println!(
        "Cold pull of {reference}, {} runs each (interleaved)",
        args.runs
    );
    println!(
        "image: {} layers; {:.1} MB compressed (layers + config, from the manifest); unpacked {} (dockerd .Size), {} (vic .Size)",
        image.layers,
        mb(image.compressed),
        unpacked_peer.map_or("n/a".into(), |b| format!("{:.1} MB", mb(b))),
        unpacked_vic.map_or("n/a".into(), |b| format!("{:.1} MB", mb(b))),
    );
    println!(
        "registry: {} on loopback, plain HTTP, blobs in the page cache (one untimed skopeo copy first)",
        registry.addr
    );
    println!();
    let cols: [(&str, &Runs); 3] = [
        ("vic", &vic),
        ("dockerd", &peer),
        ("skopeo copy (no unpack)", &sko),
    ];
    print_row(
        "",
        &cols.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>(),
    );
    println!(
        "{}",
        "-".repeat(W0) + &format!("-+-{}", "-".repeat(W)).repeat(cols.len())
    );
    let t: Vec<Option<Stats>> = cols.iter().map(|(_, r)| stats(&r.secs)).collect();
    let cpu_per_gb: Vec<Option<Stats>> = cols
        .iter()
        .map(|(_, r)| stats(&r.cpu.iter().map(|c| c / gb).collect::<Vec<_>>()))
        .collect();
    let cpu_share: Vec<Option<Stats>> = cols
        .iter()
        .map(|(_, r)| {
            stats(
                &r.cpu
                    .iter()
                    .zip(&r.secs)
                    .map(|(c, s)| 100.0 * c / s)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let na = || "n/a".to_string();
    print_row(
        "time, s: median (min–max)",
        &t.iter()
            .map(|s| {
                s.as_ref().map_or_else(na, |s| {
                    format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max)
                })
            })
            .collect::<Vec<_>>(),
    );
    print_row(
        "MB/s (compressed / median)",
        &t.iter()
            .map(|s| {
                s.as_ref()
                    .map_or_else(na, |s| format!("{:.1}", mb(image.compressed) / s.median))
            })
            .collect::<Vec<_>>(),
    );
    let peer_median = t[1].as_ref().map(|s| s.median);
    print_row(
        "time vs dockerd",
        &t.iter()
            .map(|s| match (s, peer_median) {
                (Some(s), Some(p)) if p > 0.0 => format!("{:.2}x", s.median / p),
                _ => na(),
            })
            .collect::<Vec<_>>(),
    );
    print_row(
        "CPU s per GB compressed",
        &cpu_per_gb
            .iter()
            .map(|s| {
                s.as_ref().map_or_else(na, |s| {
                    format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max)
                })
            })
            .collect::<Vec<_>>(),
    );
    print_row(
        "loopback MB per run (median)",
        &cols
            .iter()
            .map(|(_, r)| stats(&r.wire).map_or_else(na, |s| format!("{:.1}", s.median / 1e6)))
            .collect::<Vec<_>>(),
    );
    print_row(
        "CPU, % of one core (median)",
        &cpu_share
            .iter()
            .map(|s| s.as_ref().map_or_else(na, |s| format!("{:.0}%", s.median)))
            .collect::<Vec<_>>(),
    );
    println!();
    println!("What each column includes:");
    println!(
        "  vic      docker CLI → vic-appliance (imagec): manifest, download + sha256 of every blob into the"
    );
    println!(
        "           blob store, then gunzip + untar each layer into the image rootfs. CPU: the vic-appliance"
    );
    println!("           process (utime+stime from /proc, plus children it reaped).");
    println!(
        "  dockerd  docker CLI → private dockerd {} (storage driver {}): the same work into its layer store.",
        dockerd_version.as_deref().unwrap_or("?"),
        driver.as_deref().unwrap_or("?")
    );
    println!(
        "           CPU: dockerd and its descendants (its containerd), plus children they reaped."
    );
    println!(
        "  skopeo   skopeo copy docker://… dir:NEW_TMPDIR: download + sha256 of every blob, written"
    );
    println!("           compressed; no unpacking. CPU: the skopeo process (wait4 rusage).");
    println!(
        "  Each run starts cold: rmi first, and the benchmark checks the puller kept no blob or layer."
    );
    println!("  The docker CLI's own CPU is not counted; MB = 10^6 bytes, GB = 10^9 bytes.");
    println!(
        "  loopback MB: bytes received on lo during the run (the download, plus the API stream and any"
    );
    println!(
        "  other loopback traffic on the host): a check that the whole image crossed the wire."
    );
    drop(registry);
    Ok(())
}
