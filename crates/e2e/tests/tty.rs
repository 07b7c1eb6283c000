//! `docker run -it` under a real terminal (tmux).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let o = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("running tmux");
        String::from_utf8_lossy(&o.stdout).to_string()
    }
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "tty"])
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn interactive_terminal_session() {
    let image = busybox();
    let status_file = std::env::temp_dir().join(format!("vic-tty-{}", std::process::id()));
    let _ = std::fs::remove_file(&status_file);
    let docker = std::env::var("VIC_DOCKER").unwrap();
    let shell = format!(
        "DOCKER_HOST={} {docker} run -it --rm {image} sh; echo EXIT=$? > {}; sleep 60",
        vch().docker_host,
        status_file.display()
    );
    let tmux = Tmux {
        socket: format!("vic-e2e-{}", std::process::id()),
    };
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "tty",
        "-x",
        "100",
        "-y",
        "30",
        &shell,
    ]);
    eventually("the shell prompt", Duration::from_secs(60), || {
        tmux.screen().contains("/ #").then_some(())
    });
    tmux.run(&[
        "send-keys",
        "-t",
        "tty",
        "stty size; tty; echo hi; exit 5",
        "Enter",
    ]);
    let status = eventually("the container to exit", Duration::from_secs(60), || {
        std::fs::read_to_string(&status_file).ok()
    });
    assert_eq!(status.trim(), "EXIT=5");
    let screen = tmux.screen();
    let lines: Vec<&str> = screen.lines().map(str::trim_end).collect();
    assert!(lines.contains(&"hi"), "no 'hi' line on screen:\n{screen}");
    assert!(
        lines.contains(&"30 100"),
        "terminal size not passed to the container:\n{screen}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("/dev/pts/")),
        "no pty in the container:\n{screen}"
    );
    let _ = std::fs::remove_file(&status_file);
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn the_console_size_given_at_create_is_the_terminals_from_the_start() {
    // What the docker CLI sends at create (API 1.42+): the terminal has this size before any
    // resize, so a process that asks at once gets it.
    let url = vch().docker_host.replace("tcp://", "http://");
    let body = serde_json::json!({
        "Image": busybox(),
        "Cmd": ["stty", "size"],
        "Tty": true,
        "HostConfig": { "ConsoleSize": [12, 34] },
    });
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail-with-body", "-X", "POST"])
        .args([
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
        ])
        .arg(format!("{url}/containers/create"))
        .output()
        .expect("curl");
    assert!(out.status.success(), "{}", stderr(&out));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = created["Id"].as_str().expect("an Id").to_string();
    ok(&["start", &id]);
    assert_eq!(ok(&["wait", &id]).trim(), "0");
    assert_eq!(ok(&["logs", &id]).trim(), "12 34");
    ok(&["rm", &id]);
}

/// Docker's detach keys on an attach with stdin: the sequence (`ctrl-p,ctrl-q`, or the
/// request's `detachKeys`) closes the connection, never reaches the container, and the
/// container runs on.
#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn detach_keys_end_an_attach_and_the_container_runs_on() {
    use std::io::{Read, Write};
    let image = busybox();
    let id = docker(&["run", "-d", "-i", "-t", &image, "sh"]);
    let id = String::from_utf8_lossy(&id.stdout).trim().to_string();
    let addr = vch().docker_host.trim_start_matches("tcp://").to_string();
    for (query, keys) in [("", &b"\x10\x11"[..]), ("&detachKeys=ctrl-x", &b"\x18"[..])] {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let req = format!(
            "POST /containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1{query} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        s.write_all(b"echo attached-$((40+2))\n").unwrap();
        while !String::from_utf8_lossy(&seen).contains("attached-42") {
            let n = s.read(&mut buf).expect("the shell answers");
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        s.write_all(keys).unwrap();
        // The connection closes: reads end (what was on its way may come first).
        let closed = (0..100).any(|_| matches!(s.read(&mut buf), Ok(0) | Err(_)));
        assert!(closed, "detach keys {keys:?} did not end the attach");
        let running = docker(&["inspect", "-f", "{{.State.Running}}", &id]);
        assert_eq!(String::from_utf8_lossy(&running.stdout).trim(), "true");
    }
    // A client that closes its side of a terminal's attach has left, as dockerd takes it
    // (the docker CLI over plain TCP ends `-it` with ctrl-p ctrl-q this way): the output
    // ends, the shell keeps its terminal and runs on.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = format!(
        "POST /containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("the attach ends");
    let running = docker(&["inspect", "-f", "{{.State.Running}}", &id]);
    assert_eq!(String::from_utf8_lossy(&running.stdout).trim(), "true");
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = format!(
        "POST /containers/{id}/attach?stream=1&stdin=1&detachKeys=ctrl-1 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 400")
            && answer.contains("Invalid detach keys (ctrl-1) provided"),
        "{answer}"
    );
    docker(&["rm", "-f", &id]);
}
