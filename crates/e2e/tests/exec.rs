//! `docker exec`: further processes in a running container VM, through the real docker CLI:
//! output and exit codes (126 for one that cannot be started, as dockerd), `-e`, `-w`, `-u`, `--privileged`, `-i`,
//! `-t`, `-d`, several at once, exec inspect, and an appliance crash while one runs.

mod common;
mod machine;

use std::time::Duration;

use common::crash::crash;
use common::*;

/// `GET /exec/{id}/json` of the VCH at `host` (`tcp://127.0.0.1:PORT`).
fn exec_json(host: &str, id: &str) -> serde_json::Value {
    let url = format!("{}/exec/{id}/json", host.replace("tcp://", "http://"));
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10", &url])
        .output()
        .expect("curl");
    serde_json::from_slice(&out.stdout).expect("exec inspect is JSON")
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn exec_runs_processes_beside_the_main_one_as_docker_does() {
    let vch = OwnVch::create("exec", &[]);
    let (client, image) = (&vch.client, vch.image.as_str());
    let code = |args: &[&str]| client.run(args).status.code();
    client.ok(&[
        "run", "-d", "--name", "box", "-e", "FOO=bar", "-w", "/tmp", image, "sleep", "600",
    ]);

    assert_eq!(client.ok(&["exec", "box", "echo", "hi"]), "hi\n");
    assert_eq!(code(&["exec", "box", "sh", "-c", "exit 3"]), Some(3));
    // dockerd's code for an exec it could not start, found or not (`run` says 127).
    let missing = client.run(&["exec", "box", "no-such-program"]);
    assert_eq!(missing.status.code(), Some(126));
    assert!(
        stdout(&missing).contains("not found"),
        "{}",
        stdout(&missing)
    );
    assert_eq!(code(&["exec", "box", "/etc"]), Some(126), "not executable");

    // The container's environment, directory and user unless the exec says otherwise.
    let shell = ["sh", "-c", "echo $FOO $PWD $(id -u)"];
    let mine = [&["exec", "box"][..], &shell].concat();
    assert_eq!(client.ok(&mine), "bar /tmp 0\n");
    let theirs = [
        &["exec", "-e", "FOO=baz", "-w", "/etc", "-u", "1000", "box"][..],
        &shell,
    ]
    .concat();
    assert_eq!(client.ok(&theirs), "baz /etc 1000\n");
    let caps = |privileged: bool| {
        let mut args = vec!["exec"];
        if privileged {
            args.push("--privileged");
        }
        args.extend(["box", "grep", "CapEff", "/proc/self/status"]);
        client.ok(&args)
    };
    assert_eq!(
        caps(false).trim(),
        "CapEff:\t00000000a80425fb",
        "Docker's default set"
    );
    assert_eq!(
        caps(true).trim(),
        "CapEff:\t000001ffffffffff",
        "every capability"
    );

    // Standard input, a terminal, and a detached exec.
    let piped = client.run_input(&["exec", "-i", "box", "cat"], "through stdin\n");
    assert_eq!(stdout(&piped), "through stdin\n");
    assert_eq!(
        client.ok(&["exec", "-t", "box", "tty"]).trim(),
        "/dev/pts/0"
    );
    client.ok(&[
        "exec",
        "-d",
        "box",
        "sh",
        "-c",
        // Written aside and moved: a `cat` between the file's creation and its write would
        // read it empty.
        "sleep 1; echo later > /tmp/d.new; mv /tmp/d.new /tmp/d",
    ]);
    let later = eventually("the detached exec's file", Duration::from_secs(20), || {
        let o = client.run(&["exec", "box", "cat", "/tmp/d"]);
        o.status.success().then(|| stdout(&o))
    });
    assert_eq!(later, "later\n");

    // Several at once, each with its own output.
    let many: Vec<_> = (0..4)
        .map(|i| {
            let (host, config) = (client.host.clone(), client.config.clone());
            std::thread::spawn(move || {
                let c = Client::new(&host, config);
                c.ok(&["exec", "box", "sh", "-c", &format!("sleep 1; echo n{i}")])
            })
        })
        .collect();
    for (i, t) in many.into_iter().enumerate() {
        assert_eq!(t.join().unwrap(), format!("n{i}\n"));
    }

    // Exec inspect: every exec is listed on the container, and each says how it ended.
    let ids = client.ok(&["inspect", "-f", "{{range .ExecIDs}}{{.}} {{end}}", "box"]);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    assert!(ids.len() >= 14, "{ids:?}");
    let failed = exec_json(&client.host, ids[2]);
    assert_eq!(failed["ExitCode"], 126, "{failed}");
    assert_eq!(failed["Running"], false);
    assert_eq!(failed["ProcessConfig"]["entrypoint"], "no-such-program");

    // Refused as Docker refuses.
    client.ok(&["create", "--name", "idle", image, "true"]);
    let stopped = client.run(&["exec", "idle", "true"]);
    assert!(
        stderr(&stopped).contains("is not running"),
        "{}",
        stderr(&stopped)
    );

    // The appliance dies while an exec runs: the container and the exec's process go on,
    // and the restarted appliance knows the exec and records how it ends.
    let long = {
        let (host, config) = (client.host.clone(), client.config.clone());
        std::thread::spawn(move || {
            let c = Client::new(&host, config);
            c.run(&[
                "exec",
                "box",
                "sh",
                "-c",
                "sleep 4; touch /tmp/outlived; exit 7",
            ])
        })
    };
    let long_id = eventually("the long exec to run", Duration::from_secs(20), || {
        let ids = client.ok(&["inspect", "-f", "{{range .ExecIDs}}{{.}} {{end}}", "box"]);
        let last = ids.split_whitespace().last()?.to_string();
        (exec_json(&client.host, &last)["Running"] == true).then_some(last)
    });
    crash(&vch.name, client);
    let _ = long.join();
    let after = exec_json(&client.host, &long_id);
    assert_eq!(
        after["Running"], true,
        "still running after the crash: {after}"
    );
    let ended = eventually("the adopted exec to end", Duration::from_secs(30), || {
        let v = exec_json(&client.host, &long_id);
        (v["Running"] == false).then_some(v)
    });
    assert_eq!(ended["ExitCode"], 7, "{ended}");
    client.ok(&["exec", "box", "ls", "/tmp/outlived"]);
    let status = client.ok(&["inspect", "-f", "{{.State.Status}}", "box"]);
    assert_eq!(status.trim(), "running");
    vch.delete();
}
