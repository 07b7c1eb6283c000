//! `vic-conformance`: docker-py's own integration suite (the tests its 7.0.0 source release
//! ships, run unmodified, with only environment settings) against a VCH and against dockerd
//! in one run, on the same test list; the pass counts side by side, and every test that
//! passes on dockerd and not on vic, with what it said.
//!
//! ```text
//!   registry ── library/{alpine:3.10, alpine:latest, busybox:latest, hello-world:latest}
//!       │        (scripts/conformance.sh builds them from busybox-static and pushes them)
//!       ├─ pull + tag as the suite names them ─► VCH (vic-machine create, plain HTTP)
//!       └─ pull + tag ─────────────────────────► dockerd (own namespaces, own bridge)
//!   pytest tests/integration ─► junit XML per engine ─► table, report.md
//! ```
//!
//! Left out, for both, with the reason: swarm, services, secrets, configs, plugins and build
//! (not what a VCH does), the client-side credential and context tests, and a pull by a
//! Docker Hub digest (no network here). The suite's own pulls of `alpine`/`hello-world` go to
//! Docker Hub on both engines and fail alike. Then a Compose application's life on each
//! engine, step by step (`bench::compose`). With `--require-parity` (CI's representative
//! part) the run fails when a test or a step passes on dockerd and not on vic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench::dockerd::{Dockerd, DEFAULT_DOCKERD};
use bench::junit::{outcomes, Outcome};
use bench::run_ok;
use bench::vch::Vch;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "vic-conformance")]
struct Args {
    /// Directory with vic-machine and vic-appliance.
    #[arg(long)]
    bin_dir: PathBuf,
    /// Registry (host:port) holding library/alpine:3.10 and the others.
    #[arg(long)]
    registry: String,
    /// The docker CLI.
    #[arg(long, default_value = "docker")]
    docker: String,
    /// dockerd for the peer column.
    #[arg(long, default_value = DEFAULT_DOCKERD)]
    dockerd: PathBuf,
    /// The unpacked docker-py source release (docker-7.0.0).
    #[arg(long)]
    dockerpy: PathBuf,
    /// Where reports, logs and the suite's temporary files go.
    #[arg(long)]
    out: PathBuf,
    /// Only the tests pytest's `-k EXPR` selects.
    #[arg(long)]
    select: Option<String>,
    /// Fail when a test passes on dockerd and not on vic.
    #[arg(long)]
    require_parity: bool,
    /// Minutes one engine's run may take.
    #[arg(long, default_value_t = 60)]
    minutes: u64,
}

/// What the suite names, and where the registry keeps it.
const IMAGES: [(&str, &str); 4] = [
    ("alpine:3.10", "library/alpine:3.10"),
    ("alpine:latest", "library/alpine:latest"),
    ("busybox:latest", "library/busybox:latest"),
    ("hello-world:latest", "library/hello-world:latest"),
];

/// Test files left out, and why.
const IGNORED: [(&str, &str); 11] = [
    ("api_swarm_test.py", "swarm"),
    ("models_swarm_test.py", "swarm"),
    ("models_nodes_test.py", "swarm"),
    ("api_service_test.py", "services (swarm)"),
    ("models_services_test.py", "services (swarm)"),
    ("api_secret_test.py", "secrets (swarm)"),
    ("api_config_test.py", "configs (swarm)"),
    ("api_plugin_test.py", "plugins"),
    ("api_build_test.py", "build: a VCH does not build images"),
    ("context_api_test.py", "client side only (writes ~/.docker)"),
    ("credentials", "client side only (credential helpers)"),
];

/// Single tests left out, and why.
const DESELECTED: [(&str, &str); 9] = [
    (
        "api_network_test.py::TestNetworks::test_create_network_attachable",
        "swarm scope",
    ),
    (
        "api_network_test.py::TestNetworks::test_create_network_ingress",
        "swarm scope",
    ),
    (
        "api_network_test.py::TestNetworks::test_create_inspect_network_with_scope",
        "swarm scope",
    ),
    (
        "models_images_test.py::ImageCollectionTest::test_build",
        "build",
    ),
    (
        "models_images_test.py::ImageCollectionTest::test_build_with_error",
        "build",
    ),
    (
        "models_images_test.py::ImageCollectionTest::test_build_with_multiple_success",
        "build",
    ),
    (
        "models_images_test.py::ImageCollectionTest::test_build_with_success_build_output",
        "build",
    ),
    (
        "regression_test.py::TestRegressions::test_443_handle_nonchunked_response_in_stream",
        "build",
    ),
    (
        "models_images_test.py::ImageCollectionTest::test_pull_with_sha",
        "a Docker Hub digest: no network here",
    ),
];

/// One engine's run.
struct Run {
    name: &'static str,
    outcomes: BTreeMap<String, Outcome>,
    seconds: f64,
}

/// The signal that asked the run to stop (0: none): the pytest under way is ended and the
/// VCH and dockerd are removed on the way out, as at the end of a run.
static STOP: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    STOP.store(sig, std::sync::atomic::Ordering::SeqCst);
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    std::fs::create_dir_all(&a.out)?;
    let out = std::fs::canonicalize(&a.out)?;
    // The suite's temporary directories are bind-mounted into containers: the VCH allows
    // that one directory (--bind-path).
    let tmp = out.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    let tmp_flag = tmp.display().to_string();
    // Named volumes need a volume store, as on VIC.
    let store = format!("{}:default", out.join("volumes").display());
    let vch = Vch::create_with(
        &a.bin_dir,
        "conform",
        &a.registry,
        &["--bind-path", &tmp_flag, "--volume-store", &store],
        &[],
    )?;
    let dockerd = Dockerd::start_networked(&a.dockerd, &[&a.registry], &a.docker, true)?;
    let mut runs = Vec::new();
    let mut composed = Vec::new();
    for (name, host) in [("vic", vch.host.as_str()), ("dockerd", dockerd.host())] {
        provide_images(&a.docker, host, &a.registry)?;
        runs.push(run_suite(&a, &out, name, host)?);
        eprintln!("a Compose application on {name} …");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = out.join(format!("compose-{name}"));
        composed.push(bench::compose::run(&dir, host, "busybox:latest", port));
    }
    let mut report = report(&runs);
    let compose_gaps = compose_report(&mut report, &composed[0], &composed[1]);
    print!("{report}");
    std::fs::write(out.join("report.md"), &report)?;
    let missing = parity_gaps(&runs[0], &runs[1]);
    if a.require_parity && (!missing.is_empty() || compose_gaps > 0) {
        bail!(
            "{} tests and {compose_gaps} Compose steps pass on dockerd and not on vic",
            missing.len()
        );
    }
    Ok(())
}

/// Pulls the suite's images from `registry` into the engine at `host` and tags them as
/// the suite names them.
fn provide_images(docker: &str, host: &str, registry: &str) -> anyhow::Result<()> {
    for (name, path) in IMAGES {
        let from = format!("{registry}/{path}");
        let mut pull = Command::new(docker);
        pull.env("DOCKER_HOST", host).args(["pull", "-q", &from]);
        run_ok(&mut pull, &format!("docker pull {from}"))?;
        let mut tag = Command::new(docker);
        tag.env("DOCKER_HOST", host).args(["tag", &from, name]);
        run_ok(&mut tag, &format!("docker tag {from} {name}"))?;
    }
    Ok(())
}

/// pytest on the suite against `host`; its outcomes from the JUnit report.
fn run_suite(a: &Args, out: &Path, name: &'static str, host: &str) -> anyhow::Result<Run> {
    let xml = out.join(format!("{name}.xml"));
    let _ = std::fs::remove_file(&xml);
    let log = std::fs::File::create(out.join(format!("{name}.log")))?;
    let home = out.join(format!("home-{name}"));
    std::fs::create_dir_all(&home)?;
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.current_dir(&a.dockerpy)
        .args([
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-rfExXs",
            // dockerd's slowest test takes 15 s; one that waits for what vic never does
            // (a detach key sequence) must not hold the run for long.
            "--timeout",
            "90",
        ])
        .arg(format!("--junitxml={}", xml.display()));
    for (file, _) in IGNORED {
        cmd.arg(format!("--ignore=tests/integration/{file}"));
    }
    for (test, _) in DESELECTED {
        cmd.arg(format!("--deselect=tests/integration/{test}"));
    }
    if let Some(k) = &a.select {
        cmd.args(["-k", k]);
    }
    cmd.arg("tests/integration")
        .env("DOCKER_HOST", host)
        .env("DOCKER_TEST_API_VERSION", "1.41")
        .env("HOME", &home)
        .env("TMPDIR", out.join("tmp"))
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    eprintln!("docker-py's integration suite against {name} ({host}) …");
    let started = Instant::now();
    let mut child = cmd.spawn().context("running pytest (python3-pytest)")?;
    let limit = Duration::from_secs(a.minutes * 60);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the suite against {name} took over {} minutes", a.minutes);
        }
        let sig = STOP.load(std::sync::atomic::Ordering::SeqCst);
        if sig != 0 {
            let _ = child.kill();
            let _ = child.wait();
            bail!("stopped by signal {sig}");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    // pytest exits 1 when a test failed: that is a result, not the harness failing.
    let text = std::fs::read_to_string(&xml).with_context(|| {
        format!("pytest against {name} ({status}) wrote no report; see {name}.log")
    })?;
    Ok(Run {
        name,
        outcomes: outcomes(&text),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Adds the Compose steps side by side to `r`; how many held on dockerd and not on vic.
fn compose_report(
    r: &mut String,
    vic: &[bench::compose::Step],
    peer: &[bench::compose::Step],
) -> usize {
    let word = |s: Option<&bench::compose::Step>| match s.map(|s| &s.result) {
        Some(Ok(())) => "ok",
        Some(Err(_)) => "failed",
        None => "not run",
    };
    let _ = writeln!(
        r,
        "\n## Compose (Debian's docker-compose)\n\n| step | vic | dockerd |\n|---|---|---|"
    );
    let mut gaps = 0;
    for (i, s) in vic.iter().enumerate() {
        let p = peer.get(i);
        let _ = writeln!(r, "| {} | {} | {} |", s.name, word(Some(s)), word(p));
        if s.result.is_err() && p.is_some_and(|p| p.result.is_ok()) {
            gaps += 1;
        }
    }
    for (engine, steps) in [("vic", vic), ("dockerd", peer)] {
        for s in steps {
            if let Err(e) = &s.result {
                let first = e.lines().next().unwrap_or_default();
                let _ = writeln!(r, "\n- {engine}, {}: {first}", s.name);
            }
        }
    }
    gaps
}

/// The tests that pass on `peer` and not on `vic`.
fn parity_gaps<'a>(vic: &'a Run, peer: &Run) -> Vec<(&'a String, &'a Outcome)> {
    (vic.outcomes.iter())
        .filter(|(t, o)| **o != Outcome::Passed && peer.outcomes.get(*t) == Some(&Outcome::Passed))
        .collect()
}

fn count(run: &Run, word: &str) -> usize {
    run.outcomes.values().filter(|o| o.word() == word).count()
}

/// The side-by-side table and the differences, as Markdown.
fn report(runs: &[Run]) -> String {
    let (vic, peer) = (&runs[0], &runs[1]);
    let mut r = String::new();
    let _ = writeln!(
        r,
        "## docker-py 7.0.0 integration suite: vic and dockerd\n\n| | {} | {} |\n|---|---|---|",
        vic.name, peer.name
    );
    for word in ["passed", "failed", "error", "skipped", "xfailed"] {
        let _ = writeln!(
            r,
            "| {word} | {} | {} |",
            count(vic, word),
            count(peer, word)
        );
    }
    let _ = writeln!(
        r,
        "| tests | {} | {} |\n| time | {:.0} s | {:.0} s |",
        vic.outcomes.len(),
        peer.outcomes.len(),
        vic.seconds,
        peer.seconds
    );
    let gaps = parity_gaps(vic, peer);
    let _ = writeln!(r, "\n### Passing on dockerd, not on vic: {}\n", gaps.len());
    for (test, o) in &gaps {
        let _ = writeln!(r, "- `{test}`: {} — {}", o.word(), o.message());
    }
    let better: Vec<_> = (peer.outcomes.iter())
        .filter(|(t, o)| **o != Outcome::Passed && vic.outcomes.get(*t) == Some(&Outcome::Passed))
        .collect();
    let _ = writeln!(
        r,
        "\n### Passing on vic, not on dockerd: {}\n",
        better.len()
    );
    for (test, o) in &better {
        let _ = writeln!(r, "- `{test}`: dockerd {} — {}", o.word(), o.message());
    }
    let _ = writeln!(r, "\n### Left out of both runs\n");
    for (what, why) in IGNORED.iter().chain(DESELECTED.iter()) {
        let _ = writeln!(r, "- `{what}`: {why}");
    }
    r
}
