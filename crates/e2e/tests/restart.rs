//! Restart without loss: the appliance is killed (SIGKILL) while containers run and started
//! again; running container VMs are taken over, what happened meanwhile is recorded, nothing
//! is forgotten. And a container VM killed from outside shows as exited.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

fn vch_dir(name: &str) -> PathBuf {
    PathBuf::from(std::env::var("VIC_STATE_ROOT").expect("VIC_STATE_ROOT"))
        .join("vch")
        .join(name)
}

fn appliance_pid(name: &str) -> u32 {
    std::fs::read_to_string(vch_dir(name).join("appliance.pid"))
        .expect("appliance.pid")
        .trim()
        .parse()
        .expect("a PID")
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Kills the appliance with SIGKILL, keeps it down for `down`, and starts it again with the
/// command line it had (what a supervisor does).
fn crash_and_restart(name: &str, client: &Client, down: Duration) {
    let pid = appliance_pid(name);
    let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .expect("the appliance's command line")
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).to_string())
        .collect();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    eventually("the appliance to die", Duration::from_secs(10), || {
        (!alive(pid)).then_some(())
    });
    std::thread::sleep(down);
    // Started through a shell that exits at once, so the appliance is nobody's child here
    // (as under a supervisor) and its exit is reaped.
    let log = vch_dir(name).join("appliance.log");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"log=$1; shift; setsid "$@" </dev/null >>"$log" 2>&1 & echo $!"#)
        .arg("sh")
        .arg(&log)
        .args(&argv)
        .output()
        .expect("restarting the appliance");
    let new_pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(new_pid.parse::<u32>().is_ok(), "{out:?}");
    std::fs::write(vch_dir(name).join("appliance.pid"), new_pid).unwrap();
    eventually(
        "the restarted appliance to answer",
        Duration::from_secs(60),
        || client.run(&["version"]).status.success().then_some(()),
    );
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn running_containers_survive_an_appliance_crash() {
    let t0 = std::time::Instant::now();
    let step = |what: &str| eprintln!("[{:>6.1}s] {what}", t0.elapsed().as_secs_f64());
    let name = format!("restart-{}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    let host = create_vch_with(&name, &dir, &["--insecure-registry", &registry()]);
    let client = Client::new(&host, dir.join("docker-config"));
    let image = format!("{}/busybox", registry());
    client.ok(&["pull", &image]);

    let ticker = client
        .ok(&[
            "run",
            "-d",
            &image,
            "sh",
            "-c",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
        ])
        .trim()
        .to_string();
    let quitter = client
        .ok(&["run", "-d", &image, "sh", "-c", "sleep 2; echo bye; exit 7"])
        .trim()
        .to_string();
    let created = client
        .ok(&["create", "--name", "idle", &image, "true"])
        .trim()
        .to_string();
    eventually("ticks in the log", Duration::from_secs(30), || {
        stdout(&client.run(&["logs", &ticker]))
            .contains("tick 3")
            .then_some(())
    });
    step("step 1");
    let vm_before = vm_processes(&ticker[..12]);
    assert_eq!(vm_before.len(), 1, "one VM for the ticker");

    // Down for 4 s: the quitter exits meanwhile, its exit held by its tether.
    step("step 2");
    crash_and_restart(&name, &client, Duration::from_secs(4));

    step("step 3");
    let ps = client.ok(&["ps", "--format", "{{.ID}} {{.Status}}"]);
    assert!(
        ps.contains(&ticker[..12]) && ps.contains("Up"),
        "the ticker still runs: {ps}"
    );
    assert_eq!(
        vm_processes(&ticker[..12]),
        vm_before,
        "the same VM, not a new one"
    );
    step("step 4");
    let quit = inspect_with(&client, &quitter);
    assert_eq!(quit["State"]["Status"], "exited", "{quit}");
    assert_eq!(quit["State"]["ExitCode"], 7, "the exit while down is kept");
    assert!(stdout(&client.run(&["logs", &quitter])).contains("bye"));
    let idle = inspect_with(&client, &created);
    assert_eq!(idle["State"]["Status"], "created");
    assert!(
        client.ok(&["images", "-q"]).trim().len() >= 12,
        "images kept"
    );

    step("step 5");
    // Output flows again, and the log has no gap: tick numbers are consecutive.
    let before = stdout(&client.run(&["logs", &ticker])).lines().count();
    eventually(
        "new ticks after the restart",
        Duration::from_secs(30),
        || (stdout(&client.run(&["logs", &ticker])).lines().count() > before + 3).then_some(()),
    );
    step("step 6");
    let logs = stdout(&client.run(&["logs", &ticker]));
    let numbers: Vec<u64> = logs
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.trim().parse().ok())
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "no tick lost or repeated across the restart: {numbers:?}"
    );

    step("step 7");
    // Stop and wait work on the taken-over container.
    client.ok(&["stop", "-t", "2", &ticker]);
    let st = inspect_with(&client, &ticker);
    assert_eq!(st["State"]["Status"], "exited", "{st}");
    step("step 8");
    eventually("the VM to go", Duration::from_secs(20), || {
        vm_processes(&ticker[..12]).is_empty().then_some(())
    });
    step("step 9");
    delete_vch(&name);
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn a_vm_killed_from_outside_shows_as_exited() {
    let image = busybox();
    let id = ok(&["run", "-d", &image, "sleep", "600"])
        .trim()
        .to_string();
    let pids = vm_processes(&id[..12]);
    assert_eq!(pids.len(), 1, "one VM");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pids[0].to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let state = eventually(
        "the container to show as exited",
        Duration::from_secs(20),
        || {
            let st = inspect(&id);
            (st["State"]["Status"] == "exited").then_some(st)
        },
    );
    assert_eq!(state["State"]["ExitCode"], 137, "{state}");
    assert!(
        state["State"]["Error"]
            .as_str()
            .unwrap_or("")
            .contains("stopped unexpectedly"),
        "{state}"
    );
    let ps = ok(&["ps", "-q"]);
    assert!(!ps.contains(&id[..12]), "not listed as running: {ps}");
    // It can be started again: the VM's disk is intact.
    ok(&["start", &id]);
    ok(&["rm", "-f", &id]);
}

fn inspect_with(client: &Client, id: &str) -> serde_json::Value {
    let out = client.ok(&["inspect", id]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0].clone()
}
