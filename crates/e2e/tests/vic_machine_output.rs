//! How vic-machine shows its work on a terminal: a live line for the step under way, kept
//! below the log and never mixed into it. (Without a terminal every line is stamped:
//! `common::create_vch_with_env` checks that of every create.)

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// Erases the terminal's row: what the live line is cleared with.
const CLEAR: &str = "\r\x1b[2K";

/// Runs vic-machine with `args` on a pseudo-terminal of 100 columns (util-linux `script`),
/// in the working directory `dir`.
fn on_a_terminal(dir: &Path, args: &[&str]) -> Output {
    let bin = build_dir().join("bin/vic-machine");
    let mut line = format!("stty cols 100 rows 40; exec {}", bin.display());
    for a in args {
        line.push_str(&format!(" '{a}'"));
    }
    Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("VIC_STATE_ROOT", std::env::var("VIC_STATE_ROOT").unwrap())
        .env("TERM", "xterm")
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running script(1)")
}

/// The log as it reads once the terminal has drawn it: each row is what follows its last
/// erase. Rows left empty (the live line's, erased at the end) are dropped.
fn rows(screen: &str) -> Vec<String> {
    (screen.split('\n'))
        .map(|row| {
            row.rsplit(CLEAR)
                .next()
                .unwrap_or("")
                .trim_end_matches('\r')
        })
        .filter(|row| !row.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "needs QEMU and the built binaries: make test runs it"]
fn on_a_terminal_create_and_delete_show_the_step_under_way_and_an_intact_log() {
    let name = format!("tty-{}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let reg = registry();
    let create = [
        "create",
        "--target",
        "local",
        "--name",
        &name,
        "--no-tls",
        "--insecure-registry",
        &reg,
    ];
    let o = on_a_terminal(&dir, &create);
    let screen = String::from_utf8_lossy(&o.stdout).to_string();
    if !o.status.success() {
        delete_vch_quietly(&name);
        panic!("create on a terminal failed:\n{screen}");
    }
    // The live line: spinner, the step, its seconds, then erased.
    assert!(
        screen.contains("⠋ Waiting for the Docker API to answer 0s"),
        "{screen:?}"
    );
    assert!(screen.contains(CLEAR), "{screen:?}");
    // Once drawn, the log is the same lines a file gets: stamped, never mixed with a live
    // line, and none left on the screen at the end.
    let log = rows(&screen);
    for row in &log {
        assert!(
            vic_log_line(row).is_some() || row.starts_with("DOCKER_HOST="),
            "{row:?} in\n{}",
            log.join("\n")
        );
    }
    assert!(
        log.last()
            .is_some_and(|l| l.ends_with("INFO  Installer completed successfully")),
        "{log:#?}"
    );

    let o = on_a_terminal(
        &dir,
        &["delete", "--target", "local", "--name", &name, "--force"],
    );
    let screen = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{screen}");
    assert!(
        screen.contains("⠋ Stopping the appliance and the container VMs 0s"),
        "{screen:?}"
    );
    let log = rows(&screen);
    assert!(log.iter().all(|r| vic_log_line(r).is_some()), "{log:#?}");
    assert!(
        log.last()
            .is_some_and(|l| l.ends_with("INFO  Completed successfully")),
        "{log:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
