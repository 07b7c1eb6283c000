//! The Compose part of `make conformance`: Debian's docker-compose brings up, scales, reads
//! the logs of, execs into and tears down a two-service application on an engine, each step
//! checked, so that a VCH and dockerd can be compared step by step.
//!
//! ```text
//!   web     busybox httpd serving a page it writes into the named volume `site`, port 80
//!           published on the host
//!   worker  fetches http://web/ (the service's name) every second and prints it
//! ```

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One step: what it checks, and what was seen when it did not hold.
pub struct Step {
    pub name: &'static str,
    pub result: Result<(), String>,
}

const PAGE: &str = "served-from-the-volume";

/// The steps between `up` and `down`, in order.
const MIDDLE: [&str; 5] = [
    "ps: both services up",
    "logs: the worker reached web by its name, read the volume's page",
    "exec -T web cat: the volume's file",
    "port web 80: published",
    "up --scale worker=2: two workers",
];

fn compose_file(image: &str, port: u16) -> String {
    format!(
        r#"version: "3.8"
services:
  web:
    image: {image}
    command: ["sh", "-c", "echo {PAGE} > /data/index.html && exec httpd -f -p 80 -h /data"]
    ports: ["{port}:80"]
    volumes: ["site:/data"]
  worker:
    image: {image}
    depends_on: [web]
    command: ["sh", "-c", "while true; do wget -q -O - http://web/index.html; sleep 1; done"]
volumes:
  site: {{}}
"#
    )
}

/// `docker-compose ARGS` in `dir` against `host`, bounded to two minutes.
fn compose(dir: &Path, host: &str, args: &[&str]) -> Result<String, String> {
    let mut child = Command::new("docker-compose")
        .current_dir(dir)
        .env("DOCKER_HOST", host)
        .env("COMPOSE_HTTP_TIMEOUT", "120")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .args(["-p", "conform"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("docker-compose: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("docker-compose {args:?} took over 2 minutes"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out: Output = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.success() {
        true => Ok(text),
        false => Err(format!(
            "docker-compose {args:?}: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// Runs `f` until it holds, for up to `limit`; its last error otherwise.
fn within(limit: Duration, mut f: impl FnMut() -> Result<(), String>) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

fn expect(text: String, want: &str) -> Result<(), String> {
    match text.contains(want) {
        true => Ok(()),
        false => Err(format!("no {want:?} in: {}", text.trim())),
    }
}

/// The application's whole life on the engine at `host`, in `dir`, with `image` (a
/// busybox) and host port `port`; each step's outcome.
pub fn run(dir: &Path, host: &str, image: &str, port: u16) -> Vec<Step> {
    let _ = std::fs::create_dir_all(dir);
    let file = dir.join("docker-compose.yml");
    let mut steps = Vec::new();
    let mut step = |name: &'static str, result: Result<(), String>| {
        steps.push(Step { name, result });
    };
    if let Err(e) = std::fs::write(&file, compose_file(image, port)) {
        step("write docker-compose.yml", Err(e.to_string()));
        return steps;
    }
    let up = compose(dir, host, &["up", "-d"]).map(drop);
    let went_up = up.is_ok();
    step(
        "up -d: web with a published port and a named volume, worker",
        up,
    );
    if !went_up {
        for name in MIDDLE {
            step(name, Err("not run: up -d failed".into()));
        }
    } else {
        let ps = compose(dir, host, &["ps"]).and_then(|t| {
            let up = t.lines().filter(|l| l.contains(" Up ")).count();
            match up {
                2 => Ok(()),
                n => Err(format!("{n} services up: {t}")),
            }
        });
        step(MIDDLE[0], ps);
        let found = within(Duration::from_secs(60), || {
            compose(dir, host, &["logs", "worker"]).and_then(|t| expect(t, PAGE))
        });
        step(MIDDLE[1], found);
        let exec = compose(dir, host, &["exec", "-T", "web", "cat", "/data/index.html"]);
        step(MIDDLE[2], exec.and_then(|t| expect(t, PAGE)));
        let published = compose(dir, host, &["port", "web", "80"]);
        step(
            MIDDLE[3],
            published.and_then(|t| expect(t, &format!(":{port}"))),
        );
        let scaled = compose(dir, host, &["up", "-d", "--scale", "worker=2"]).and_then(|_| {
            let ids = compose(dir, host, &["ps", "-q", "worker"])?;
            match ids.lines().filter(|l| !l.trim().is_empty()).count() {
                2 => Ok(()),
                n => Err(format!("{n} workers: {ids}")),
            }
        });
        step(MIDDLE[4], scaled);
    }
    let down = compose(dir, host, &["down", "-v"]).and_then(|_| {
        let left = compose(dir, host, &["ps", "-q"])?;
        match left.trim().is_empty() {
            true => Ok(()),
            false => Err(format!("containers left: {left}")),
        }
    });
    step("down -v: containers, network and volume gone", down);
    steps
}
