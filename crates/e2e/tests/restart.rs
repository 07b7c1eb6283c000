//! Restart without loss: the appliance is killed (SIGKILL) while containers run and started
//! again; running container VMs are taken over, what happened meanwhile is recorded, nothing
//! is forgotten. And a container VM killed from outside shows as exited.

mod common;

use std::time::Duration;

use common::crash::*;
use common::*;

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn running_containers_survive_an_appliance_crash() {
    let vch = OwnVch::create("restart", &[]);
    let (name, client, image) = (vch.name.clone(), &vch.client, vch.image.clone());

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
    let created = client
        .ok(&["create", "--name", "idle", &image, "true"])
        .trim()
        .to_string();
    eventually("ticks in the log", Duration::from_secs(30), || {
        stdout(&client.run(&["logs", &ticker]))
            .contains("tick 3")
            .then_some(())
    });
    let vm_before = vm_processes(&ticker[..12]);
    assert_eq!(vm_before.len(), 1, "one VM for the ticker");

    // It ends about when the appliance is down: its exit is held by its tether meanwhile.
    let quitter = client
        .ok(&["run", "-d", &image, "sh", "-c", "sleep 1; echo bye; exit 7"])
        .trim()
        .to_string();

    crash(&name, client);

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
    // On a loaded machine its `sleep 1` may outlast the restart: then the exit comes to the
    // new appliance, which must record it all the same.
    let quit = eventually("the quitter to end", Duration::from_secs(30), || {
        let q = inspect_with(client, &quitter);
        (q["State"]["Status"] == "exited").then_some(q)
    });
    assert_eq!(quit["State"]["ExitCode"], 7, "the exit while down is kept");
    assert!(stdout(&client.run(&["logs", &quitter])).contains("bye"));
    let idle = inspect_with(client, &created);
    assert_eq!(idle["State"]["Status"], "created");
    // The ticker keeps its address and stays reachable on the bridge; a new container gets
    // an address of its own (the created and the exited one still hold theirs).
    let ip = inspect_with(client, &ticker)["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        ip, "172.16.0.2",
        "the ticker's address, as before the crash"
    );
    let seen = client.ok(&[
        "run",
        "--rm",
        &image,
        "sh",
        "-c",
        "ip -o -4 addr show eth0; ping -c 1 -W 5 172.16.0.2 >/dev/null && echo reached",
    ]);
    assert!(seen.contains("inet 172.16.0.5/16"), "{seen}");
    assert!(seen.contains("reached"), "{seen}");
    assert!(
        client.ok(&["images", "-q"]).trim().len() >= 12,
        "images kept"
    );

    // Output flows again, and the log has no gap: tick numbers are consecutive.
    let before = stdout(&client.run(&["logs", &ticker])).lines().count();
    eventually(
        "new ticks after the restart",
        Duration::from_secs(30),
        || (stdout(&client.run(&["logs", &ticker])).lines().count() > before + 3).then_some(()),
    );
    let logs = stdout(&client.run(&["logs", &ticker]));
    let numbers: Vec<u64> = logs
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.trim().parse().ok())
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "no tick lost or repeated across the restart: {numbers:?}"
    );

    // attach, logs -f, wait and stop work on the taken-over container: the follower sees new
    // ticks and ends when the container does; wait returns its exit code.
    let spawn = |args: &[&str]| {
        let mut c = docker_at(&client.host);
        c.env("DOCKER_CONFIG", &client.config)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c.spawn().expect("docker")
    };
    // attach to the taken-over container streams its new output.
    let mut attached = spawn(&["attach", "--no-stdin", "--sig-proxy=false", &ticker]);
    let out = attached.stdout.take().expect("attach stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("attach printed nothing within 20 s");
    assert!(line.starts_with("tick "), "attach streamed {line:?}");
    let _ = attached.kill();
    let _ = attached.wait();
    let follower = spawn(&["logs", "-f", "--tail", "1", &ticker]);
    let waiter = spawn(&["wait", &ticker]);
    std::thread::sleep(Duration::from_secs(2));
    client.ok(&["stop", "-t", "2", &ticker]);
    let st = inspect_with(client, &ticker);
    assert_eq!(st["State"]["Status"], "exited", "{st}");
    let code = st["State"]["ExitCode"].to_string();
    let waited = waiter.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&waited.stdout).trim(), code);
    let followed = follower.wait_with_output().unwrap();
    let followed = String::from_utf8_lossy(&followed.stdout).to_string();
    assert!(
        followed.lines().filter(|l| l.starts_with("tick ")).count() >= 3,
        "logs -f streamed after the restart: {followed}"
    );
    eventually("the VM to go", Duration::from_secs(20), || {
        vm_processes(&ticker[..12]).is_empty().then_some(())
    });
    vch.delete();
}

/// The numbers in `logs`, which must be 1, 2, 3, … without a gap, a repeat or a torn line
/// (the last line may be cut short by the stop).
fn check_consecutive(logs: &str) -> u64 {
    let lines: Vec<&str> = logs.lines().collect();
    let whole = &lines[..lines.len().saturating_sub(1)];
    for (i, line) in whole.iter().enumerate() {
        let want = i as u64 + 1;
        assert_eq!(
            line.trim().parse::<u64>().ok(),
            Some(want),
            "line {want} of the log is {line:?} (lines around it: {:?})",
            &whole[i.saturating_sub(3)..(i + 3).min(whole.len())]
        );
    }
    whole.len() as u64
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn output_in_flight_when_the_appliance_dies_is_not_lost() {
    let vch = OwnVch::create("flood", &[]);
    let (name, client, image) = (vch.name.clone(), &vch.client, vch.image.clone());
    // As fast as the guest can print: the socket between QEMU and the appliance is full of
    // output when the appliance is killed.
    let id = client
        .ok(&["run", "-d", &image, "seq", "1", "1000000000"])
        .trim()
        .to_string();
    let count = |client: &Client| {
        let out = client.run(&["logs", "--tail", "1", &id]);
        stdout(&out).trim().parse::<u64>().unwrap_or(0)
    };
    let mut last = 0;
    for round in 1..=3 {
        last = eventually(
            &format!("the log to grow before crash {round}"),
            Duration::from_secs(60),
            || {
                let now = count(client);
                (now > last + 10_000).then_some(now)
            },
        );
        crash(&name, client);
    }
    eventually(
        "the log to grow after the last crash",
        Duration::from_secs(60),
        || (count(client) > last + 10_000).then_some(()),
    );
    client.ok(&["stop", "-t", "1", &id]);
    let logs = stdout(&client.run(&["logs", &id]));
    let lines = check_consecutive(&logs);
    assert!(lines > last, "{lines} lines, {last} before the last crash");
    eprintln!("{lines} consecutive lines across 3 appliance crashes");
    vch.delete();
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
    // And it said so on the event stream, as a `die` with the exit code.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let events = ok(&[
        "events",
        "--since",
        &(now - 120).to_string(),
        "--until",
        &(now + 1).to_string(),
        "--filter",
        &format!("container={id}"),
        "--filter",
        "event=die",
        "--format",
        "{{.Status}} {{.Actor.Attributes.exitCode}}",
    ]);
    assert_eq!(events.trim(), "die 137", "{events}");
    // It can be started again: the VM's disk is intact.
    ok(&["start", &id]);
    ok(&["rm", "-f", &id]);
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn crashes_in_the_middle_of_operations_leave_nothing_half_done() {
    let vch = OwnVch::create("crashes", &[]);
    let (name, client, image) = (vch.name.clone(), &vch.client, vch.image.clone());
    let other = format!("{}/busybox-oci", registry());

    for delay_ms in [50u64, 300, 900] {
        for op in ["create", "run", "start", "rm", "pull"] {
            // What the operation works on, made before the crash.
            let target = match op {
                "start" => client
                    .ok(&["create", &image, "sleep", "300"])
                    .trim()
                    .to_string(),
                "rm" => client
                    .ok(&["run", "-d", &image, "sleep", "300"])
                    .trim()
                    .to_string(),
                "pull" => {
                    let _ = client.run(&["rmi", "-f", &other]);
                    String::new()
                }
                _ => String::new(),
            };
            let args: Vec<&str> = match op {
                "create" => vec!["create", &image, "true"],
                "run" => vec!["run", "-d", &image, "sleep", "300"],
                "start" => vec!["start", &target],
                "rm" => vec!["rm", "-f", &target],
                _ => vec!["pull", &other],
            };
            let mut cmd = docker_at(&client.host);
            cmd.env("DOCKER_CONFIG", &client.config)
                .args(&args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let mut child = cmd.spawn().expect("docker");
            std::thread::sleep(Duration::from_millis(delay_ms));
            crash(&name, client);
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while child.try_wait().unwrap().is_none() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "docker {args:?} hung across the crash"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            check_invariants(&name, client, &format!("{op} killed after {delay_ms} ms"));
        }
        // Clean slate for the next round; the VCH still works.
        let all = client.ok(&["ps", "-a", "-q"]);
        for id in all.lines() {
            client.ok(&["rm", "-f", id]);
        }
    }
    let out = client.ok(&["run", "--rm", &image, "echo", "still fine"]);
    assert_eq!(out.trim(), "still fine");
    vch.delete();
}
