//! `vic-bench-net`: networking on a vic VCH and on dockerd, side by side.
//!
//! - TCP throughput through a published port: a client on the host's loopback sends 64 MiB
//!   to `nc -l` in a container (`-p PORT:5001`), timed to the server's close;
//! - connection rate through a published port: sequential connections to `nc -ll -e echo`
//!   (`-p PORT:5002`), each read to its end;
//! - container-to-container round trip on a user network: `ping` from one container to
//!   another by name.
//!
//! dockerd runs in a network namespace of its own ([`bench::dockerd`]), so its published
//! ports are on that namespace's loopback: the client enters the namespace (a thread of its
//! own, with `setns`) and measures the same way.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench::dockerd::{Dockerd, DEFAULT_DOCKERD};
use bench::vch::Vch;
use bench::{row, run_ok, stats};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "vic-bench-net")]
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
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// dockerd binary for the peer column.
    #[arg(long, default_value = DEFAULT_DOCKERD)]
    dockerd: PathBuf,
}

const SEND_MIB: usize = 64;
const CONNECTIONS: usize = 100;
const PINGS: usize = 20;

/// One engine under test: how to run docker against it, and the network namespace its
/// published ports are in (`None`: the host's).
struct Engine {
    host: String,
    netns_pid: Option<u32>,
}

impl Engine {
    fn docker(&self, docker: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut c = Command::new(docker);
        c.env("DOCKER_HOST", &self.host).args(args);
        run_ok(&mut c, &format!("docker {}", args.join(" ")))
    }

    /// Runs `f` where the engine's published ports are.
    fn in_netns<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let Some(pid) = self.netns_pid else {
            return f();
        };
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
        std::thread::spawn(move || {
            // SAFETY: setns on a descriptor we own; it moves this thread alone.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!(
                    "entering the peer's namespace: {}",
                    std::io::Error::last_os_error()
                );
            }
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the client thread panicked"))?
    }
}

/// Connects to 127.0.0.1:`port`, trying for 60 s (a VM boots meanwhile).
fn connect(port: u16) -> anyhow::Result<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > deadline => bail!("connecting to port {port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// MiB/s of one 64 MiB send to a server that reads to the end, then closes.
fn throughput(port: u16) -> anyhow::Result<f64> {
    let chunk = vec![0x5au8; 1 << 20];
    let mut s = connect(port)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let t = Instant::now();
    for _ in 0..SEND_MIB {
        s.write_all(&chunk)?;
    }
    s.shutdown(Shutdown::Write)?;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .context("waiting for the server to close")?;
    Ok(SEND_MIB as f64 / t.elapsed().as_secs_f64())
}

/// Connections a second, each connected, read to its end and closed, one after another.
fn rate(port: u16) -> anyhow::Result<f64> {
    drop(connect(port)?);
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    for _ in 0..CONNECTIONS {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut got = Vec::new();
        s.read_to_end(&mut got)?;
        if got != b"\n" {
            bail!("the echo server sent {got:?}");
        }
    }
    Ok(CONNECTIONS as f64 / t.elapsed().as_secs_f64())
}

/// A free TCP port in the engine's namespace.
fn free_port(e: &Engine) -> anyhow::Result<u16> {
    e.in_netns(|| {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    })
}

/// What one engine measured, every run.
struct Figures {
    /// Published-port throughput, MiB/s.
    mib: Vec<f64>,
    /// Published-port connections a second.
    conns: Vec<f64>,
    /// Container-to-container round trip, ms.
    rtt: Vec<f64>,
}

fn measure(e: &Engine, a: &Args, image: &str) -> anyhow::Result<Figures> {
    let d = |args: &[&str]| e.docker(&a.docker, args);
    d(&["pull", image])?;
    d(&["network", "create", "benchnet"])?;
    let (tp, rp) = (free_port(e)?, free_port(e)?);
    let sink = format!("127.0.0.1:{tp}:5001");
    let echo = format!("127.0.0.1:{rp}:5002");
    let net = ["--network", "benchnet"];
    d(&[
        &["run", "-d", "--name", "sink", "-p", &sink][..],
        &net,
        &[
            image,
            "sh",
            "-c",
            "while :; do nc -l -p 5001 >/dev/null; done",
        ],
    ]
    .concat())?;
    d(&[
        &["run", "-d", "--name", "echo", "-p", &echo][..],
        &net,
        &[image, "nc", "-ll", "-p", "5002", "-e", "echo"],
    ]
    .concat())?;
    let (mut mib, mut conns) = (Vec::new(), Vec::new());
    for _ in 0..a.runs {
        mib.push(e.in_netns(move || throughput(tp))?);
        conns.push(e.in_netns(move || rate(rp))?);
    }
    d(&[
        &["run", "-d", "--name", "peer"][..],
        &net,
        &[image, "sleep", "600"],
    ]
    .concat())?;
    let mut rtt = Vec::new();
    for _ in 0..a.runs {
        let out = d(&[
            &["run", "--rm"][..],
            &net,
            &[
                image,
                "ping",
                "-q",
                "-c",
                &PINGS.to_string(),
                "-i",
                "0.2",
                "peer",
            ],
        ]
        .concat())?;
        // "round-trip min/avg/max = 0.089/0.127/0.218 ms"
        let avg = out
            .lines()
            .find_map(|l| l.split(" = ").nth(1))
            .and_then(|v| v.split('/').nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("no round trip in ping's output: {out}"))?;
        rtt.push(avg);
    }
    let _ = d(&["rm", "-f", "sink", "echo", "peer"]);
    let _ = d(&["network", "rm", "benchnet"]);
    Ok(Figures { mib, conns, rtt })
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let image = format!("{}/busybox", a.registry);
    let vch = Vch::create(&a.bin_dir, "bench-net", &a.registry)?;
    let vic = Engine {
        host: vch.host.clone(),
        netns_pid: None,
    };
    let v = measure(&vic, &a, &image)?;
    drop(vch);
    let p = match Dockerd::start_peer(&a.dockerd, &[&a.registry], &a.docker) {
        Some(d) => {
            let peer = Engine {
                host: d.host().to_string(),
                netns_pid: Some(d.pid()),
            };
            Some(measure(&peer, &a, &image)?)
        }
        None => None,
    };
    let pick = |f: fn(&Figures) -> &[f64]| (stats(f(&v)), p.as_ref().and_then(|p| stats(f(p))));
    println!(
        "\n{:<40} {:<30} {:<30} ratio",
        "metric (median (min–max))", "vic", "dockerd"
    );
    let (tv, tp) = pick(|m| &m.mib);
    row(
        &format!("published port, {SEND_MIB} MiB host → container"),
        tv,
        tp,
        "MiB/s",
    );
    let (rv, rp) = pick(|m| &m.conns);
    row(
        &format!("published port, {CONNECTIONS} connections"),
        rv,
        rp,
        "conn/s",
    );
    let (pv, pp) = pick(|m| &m.rtt);
    row(
        &format!("container → container ping ×{PINGS}"),
        pv,
        pp,
        "ms",
    );
    Ok(())
}
