//! The container verbs beyond run, through the real docker CLI: `rename` (names on networks
//! follow) and `pause`/`unpause` (the whole VM stopped: its QEMU, its output, across an
//! appliance crash).

mod common;
mod machine;

use std::time::Duration;

use common::crash::crash;
use common::*;

/// The state letter of process `pid` (`T`: stopped).
fn proc_state(pid: &str) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .and_then(|rest| rest.trim_start().chars().next())
        .unwrap_or('?')
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn rename_and_pause_work_as_docker_does() {
    let vch = OwnVch::create("verbs", &[]);
    let (client, image) = (&vch.client, vch.image.as_str());

    // rename: the new name answers on the container's network, the old one no longer does.
    client.ok(&["network", "create", "app"]);
    client.ok(&[
        "run",
        "-d",
        "--name",
        "old",
        "--network",
        "app",
        image,
        "sh",
        "-c",
        "while true; do echo served | nc -l -p 8080; done",
    ]);
    client.ok(&["rename", "old", "new"]);
    let names = client.ok(&["ps", "--format", "{{.Names}}"]);
    assert_eq!(names.trim(), "new");
    let reach = |name: &str| {
        let script =
            format!("for i in $(seq 10); do nc -w 2 {name} 8080 && exit 0; sleep 1; done; exit 1");
        client.run(&[
            "run",
            "--rm",
            "--network",
            "app",
            image,
            "sh",
            "-c",
            &script,
        ])
    };
    assert_eq!(stdout(&reach("new")).trim(), "served");
    let lookup = client.run(&["run", "--rm", "--network", "app", image, "nslookup", "old"]);
    assert!(
        !lookup.status.success(),
        "the old name is gone: {}",
        stdout(&lookup)
    );
    client.ok(&["create", "--name", "other", image, "true"]);
    let taken = client.run(&["rename", "new", "other"]);
    assert!(
        stderr(&taken).contains("is already in use"),
        "{}",
        stderr(&taken)
    );
    let same = client.run(&["rename", "new", "new"]);
    assert!(
        stderr(&same).contains("Renaming a container with the same name as its current name"),
        "{}",
        stderr(&same)
    );
    let bad = client.run(&["rename", "new", "bad name"]);
    assert!(
        stderr(&bad).contains("Invalid container name"),
        "{}",
        stderr(&bad)
    );

    // pause: the VM stops as a whole; nothing it prints arrives until it is continued.
    let ticker = client
        .ok(&[
            "run",
            "-d",
            "--name",
            "ticker",
            image,
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i; sleep 0.2; done",
        ])
        .trim()
        .to_string();
    let lines = || client.ok(&["logs", &ticker]).lines().count();
    eventually("the ticker to tick", Duration::from_secs(20), || {
        (lines() > 2).then_some(())
    });
    client.ok(&["pause", &ticker]);
    let pid = client.ok(&["inspect", "-f", "{{.State.Pid}}", &ticker]);
    assert_eq!(proc_state(pid.trim()), 'T', "QEMU is stopped");
    let state = client.ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.Paused}}",
        &ticker,
    ]);
    assert_eq!(state.trim(), "paused true");
    let ps = client.ok(&[
        "ps",
        "--filter",
        "status=paused",
        "--format",
        "{{.Names}} {{.Status}}",
    ]);
    assert!(
        ps.starts_with("ticker Up") && ps.trim().ends_with("(Paused)"),
        "{ps}"
    );
    let exec = client.run(&["exec", &ticker, "true"]);
    assert!(
        stderr(&exec).contains("is paused, unpause the container before exec"),
        "{}",
        stderr(&exec)
    );
    let again = client.run(&["pause", &ticker]);
    assert!(
        stderr(&again).contains("is already paused"),
        "{}",
        stderr(&again)
    );
    let before = lines();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lines(), before, "a paused container prints nothing");

    // Across an appliance crash it stays paused, then continues.
    crash(&vch.name, client);
    let state = client.ok(&["inspect", "-f", "{{.State.Status}}", &ticker]);
    assert_eq!(state.trim(), "paused");
    assert_eq!(
        proc_state(pid.trim()),
        'T',
        "paused again after the take-over"
    );
    client.ok(&["unpause", &ticker]);
    let before = lines();
    eventually("the ticker to tick again", Duration::from_secs(20), || {
        (lines() > before + 2).then_some(())
    });
    let not = client.run(&["unpause", &ticker]);
    assert!(stderr(&not).contains("is not paused"), "{}", stderr(&not));

    // A paused container stops.
    client.ok(&["pause", &ticker]);
    client.ok(&["stop", "-t", "1", &ticker]);
    let state = client.ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.Paused}}",
        &ticker,
    ]);
    assert_eq!(state.trim(), "exited false");
    vch.delete();
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn restart_policies_start_containers_again_as_docker_does() {
    let vch = OwnVch::create("restart", &[]);
    let (client, image) = (&vch.client, vch.image.as_str());
    let state = |c: &str| {
        client
            .ok(&["inspect", "-f", "{{.State.Status}} {{.RestartCount}}", c])
            .trim()
            .to_string()
    };
    let bogus = client.run(&["create", "--restart", "sometimes", image, "true"]);
    assert!(
        stderr(&bogus).contains("unknown policy 'sometimes'"),
        "{}",
        stderr(&bogus)
    );

    // on-failure:2: two restarts after a failing exit, then it stays exited.
    let failing = client
        .ok(&[
            "run",
            "-d",
            "--restart",
            "on-failure:2",
            image,
            "sh",
            "-c",
            "exit 3",
        ])
        .trim()
        .to_string();
    eventually("two restarts", Duration::from_secs(60), || {
        (state(&failing) == "exited 2").then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(state(&failing), "exited 2", "no third restart");
    let policy = client.ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}",
        &failing,
    ]);
    assert_eq!(policy.trim(), "on-failure:2");

    // always: after every exit, until the user stops it.
    let always = client
        .ok(&[
            "run",
            "-d",
            "--restart",
            "always",
            image,
            "sh",
            "-c",
            "sleep 1",
        ])
        .trim()
        .to_string();
    eventually("always to restart twice", Duration::from_secs(60), || {
        let s = state(&always);
        let count: u32 = s.split(' ').nth(1)?.parse().ok()?;
        (count >= 2).then_some(())
    });
    client.ok(&["stop", "-t", "1", &always]);
    let stopped = state(&always);
    assert!(stopped.starts_with("exited"), "{stopped}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(state(&always), stopped, "a stopped container stays stopped");

    // unless-stopped: back after its VM dies out of band; left alone once the user kills it.
    let kept = client
        .ok(&[
            "run",
            "-d",
            "--restart",
            "unless-stopped",
            image,
            "sleep",
            "600",
        ])
        .trim()
        .to_string();
    let pid = client.ok(&["inspect", "-f", "{{.State.Pid}}", &kept]);
    let killed = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());
    eventually(
        "the VM's death to be answered by a restart",
        Duration::from_secs(60),
        || (state(&kept) == "running 1").then_some(()),
    );
    client.ok(&["kill", &kept]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(state(&kept).starts_with("exited"), "{}", state(&kept));

    // The VCH comes back: `always` starts again although it was stopped, `unless-stopped`
    // does not, as after a restart of dockerd.
    crash(&vch.name, client);
    eventually("always to be back", Duration::from_secs(60), || {
        state(&always).starts_with("running").then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(state(&kept).starts_with("exited"), "{}", state(&kept));
    client.ok(&["rm", "-f", &always]);
    vch.delete();
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn update_changes_the_policy_at_once_and_the_vms_size_at_its_next_start() {
    let vch = OwnVch::create("update", &[]);
    let (client, image) = (&vch.client, vch.image.as_str());
    let shown = |format: &str| {
        client
            .ok(&["inspect", "-f", format, "upd"])
            .trim()
            .to_string()
    };
    client.ok(&[
        "run",
        "-d",
        "--name",
        "upd",
        "--restart",
        "always",
        "-m",
        "256m",
        image,
        "sleep",
        "600",
    ]);
    // The restart policy, while it runs.
    client.ok(&["update", "--restart", "on-failure:42", "upd"]);
    assert_eq!(
        shown("{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"),
        "on-failure:42"
    );
    // Memory and vCPUs: refused while its VM runs, saying why; nothing changes.
    let refused = client.run(&["update", "-m", "300m", "upd"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("cannot change"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(shown("{{.HostConfig.Memory}}"), (256u64 << 20).to_string());
    // Stopped: taken, shown at once, and the VM has them at its next start.
    client.ok(&["stop", "-t", "1", "upd"]);
    client.ok(&["update", "-m", "300m", "--cpus", "2", "upd"]);
    assert_eq!(
        shown("{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}"),
        format!("{} 2000000000", 300u64 << 20)
    );
    client.ok(&["start", "upd"]);
    assert_eq!(client.ok(&["exec", "upd", "nproc"]).trim(), "2");
    let total_kib = mem_total_kib(client, "upd");
    // The guest's kernel keeps some of the VM's memory for itself: more than 256 MiB's worth
    // shows that the new size was taken.
    assert!(
        total_kib > 256 * 1024 && total_kib <= 300 * 1024,
        "MemTotal {total_kib} KiB"
    );
    vch.delete();
}
