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
