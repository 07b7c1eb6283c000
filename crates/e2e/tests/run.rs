//! `docker pull` / `run` / `logs` / `stop` / `rm` … with the real docker CLI against a VCH
//! made by vic-machine: the acceptance of the vertical slice.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn pull_lists_the_image_in_every_manifest_form() {
    let reg = registry();
    for repo in ["busybox", "busybox-oci", "busybox-multi"] {
        let image = format!("{reg}/{repo}");
        let out = ok(&["pull", &image]);
        assert!(out.contains("Digest: sha256:"), "{out}");
        assert!(out.contains(&format!("{image}:latest")), "{out}");
    }
    let listed = ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    for repo in ["busybox", "busybox-oci", "busybox-multi"] {
        assert!(
            listed.lines().any(|l| l == format!("{reg}/{repo}:latest")),
            "{repo} not in:\n{listed}"
        );
    }
    // The index resolves to the amd64 image, which has no /etc/arch.
    let o = docker(&[
        "run",
        "--rm",
        &format!("{reg}/busybox-multi"),
        "cat",
        "/etc/arch",
    ]);
    assert_ne!(
        o.status.code(),
        Some(0),
        "amd64 image has no /etc/arch: {}",
        stdout(&o)
    );
    let again = ok(&["pull", &format!("{reg}/busybox")]);
    assert!(again.contains("Image is up to date"), "{again}");
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn run_prints_exactly_the_output() {
    let o = docker(&["run", "--rm", &busybox(), "echo", "hello"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hello\n");
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn attach_and_logs_deliver_every_byte_of_a_flood() {
    // A million lines (6.9 MB) as fast as the guest prints them: far more entries than the
    // live channel holds, so a client that reads slower than the container writes must get
    // the rest from the log, not lose it.
    let n = 1_000_000;
    let want: String = (1..=n).map(|i| format!("{i}\n")).collect();
    let o = docker(&[
        "run",
        "--name",
        "flood",
        &busybox(),
        "seq",
        "1",
        &n.to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = stdout(&o);
    assert!(
        got == want,
        "attach delivered {} of {} bytes",
        got.len(),
        want.len()
    );
    assert!(ok(&["logs", "flood"]) == want, "the log holds every line");
    ok(&["rm", "flood"]);
    // With --rm the container and its log go as soon as the process ends, while the client
    // may still be reading: it still gets every byte.
    let o = docker(&["run", "--rm", &busybox(), "seq", "1", &n.to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = stdout(&o);
    assert!(
        got == want,
        "attach of an --rm container delivered {} of {} bytes",
        got.len(),
        want.len()
    );
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn run_returns_the_exit_code() {
    let o = docker(&["run", "--name", "exit3", &busybox(), "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let c = inspect("exit3");
    assert_eq!(c["State"]["ExitCode"], 3);
    assert_eq!(c["State"]["Status"], "exited");
    ok(&["rm", "exit3"]);
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn container_is_its_own_vm_with_its_own_kernel() {
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let guest = ok(&["run", "--rm", &busybox(), "uname", "-r"]);
    assert!(!guest.trim().is_empty());
    assert_ne!(
        guest.trim(),
        host_kernel.trim(),
        "uname -r shows the host kernel"
    );

    let id = ok(&["run", "-d", &busybox(), "sleep", "60"])
        .trim()
        .to_string();
    let vms = eventually(
        "the container's VM process",
        Duration::from_secs(30),
        || {
            let p = vm_processes(&id);
            (!p.is_empty()).then_some(p)
        },
    );
    assert_eq!(vms.len(), 1, "one VM process for one container: {vms:?}");
    ok(&["rm", "-f", &id]);
    eventually("the VM process to go", Duration::from_secs(30), || {
        vm_processes(&id).is_empty().then_some(())
    });
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn stdin_reaches_the_process() {
    let mut child = docker_cmd()
        .args([
            "run",
            "-i",
            "--rm",
            &busybox(),
            "sh",
            "-c",
            "tr a-z A-Z; echo done",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello stdin\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO STDIN\ndone\n");
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn config_reaches_the_process() {
    let out = ok(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hi there",
        "-w",
        "/tmp/work",
        "-u",
        "vic",
        "-h",
        "myhost",
        &busybox(),
        "sh",
        "-c",
        "echo \"$GREETING\"; pwd; id -u; hostname; echo \"$HOME\"",
    ]);
    assert_eq!(out, "hi there\n/tmp/work\n1000\nmyhost\n/home/vic\n");
    let out = ok(&["run", "--rm", "-u", "1000:50", &busybox(), "id"]);
    assert!(out.starts_with("uid=1000(vic) gid=50(staff)"), "{out}");
    let out = ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "echo",
        &busybox(),
        "from",
        "entrypoint",
    ]);
    assert_eq!(out, "from entrypoint\n");
    let o = docker(&[
        "run",
        "--rm",
        &busybox(),
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn detached_container_logs_stop_and_remove() {
    let script = "trap \"echo bye; exit 0\" TERM; while :; do echo tick; sleep 1; done";
    ok(&["run", "-d", "--name", "web", &busybox(), "sh", "-c", script]);
    eventually("ticks in docker logs", Duration::from_secs(30), || {
        let o = docker(&["logs", "web"]);
        (stdout(&o).matches("tick").count() >= 2).then_some(())
    });

    // logs -f follows: new lines keep arriving.
    let mut follow = docker_cmd()
        .args(["logs", "-f", "--tail", "0", "web"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let line = lines.next().expect("a followed line").unwrap();
        assert_eq!(line, "tick");
    }

    let t0 = Instant::now();
    ok(&["stop", "web"]);
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        t0.elapsed()
    );
    // The follower ends when the container stops, after its last line.
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(rest.last().map(String::as_str), Some("bye"), "{rest:?}");
    let _ = follow.wait();

    let logs = ok(&["logs", "web"]);
    assert!(logs.ends_with("bye\n"), "{logs}");
    let tail = ok(&["logs", "--tail", "1", "web"]);
    assert_eq!(tail, "bye\n");
    let ts = ok(&["logs", "-t", "--tail", "1", "web"]);
    assert!(
        ts.contains('T') && ts.trim_end().ends_with("Z bye") || ts.contains("Z bye"),
        "{ts}"
    );

    let ps = ok(&[
        "ps",
        "-a",
        "--filter",
        "name=web",
        "--format",
        "{{.Names}} {{.Status}}",
    ]);
    assert!(ps.starts_with("web Exited (0)"), "{ps}");
    ok(&["rm", "web"]);
    let o = docker(&["inspect", "web"]);
    assert!(!o.status.success());
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn kill_wait_inspect_and_force_remove() {
    // "ready" once the trap is set: a signal sent before would end the shell instead.
    let script = "trap \"echo got usr1\" USR1; echo ready; while :; do sleep 1; done";
    let id = ok(&[
        "run",
        "-d",
        "--name",
        "killme",
        "--label",
        "team=vic",
        &busybox(),
        "sh",
        "-c",
        script,
    ])
    .trim()
    .to_string();
    assert_eq!(id.len(), 64);
    let c = inspect("killme");
    assert_eq!(c["Id"], id.as_str());
    assert_eq!(c["Name"], "/killme");
    assert_eq!(c["State"]["Running"], true);
    assert_eq!(c["State"]["Status"], "running");
    assert_eq!(c["Config"]["Labels"]["team"], "vic");
    assert_eq!(c["Config"]["Cmd"], serde_json::json!(["sh", "-c", script]));
    assert!(c["Image"].as_str().unwrap().starts_with("sha256:"));

    eventually("the trap to be set", Duration::from_secs(20), || {
        ok(&["logs", "killme"]).contains("ready").then_some(())
    });
    ok(&["kill", "-s", "USR1", "killme"]);
    eventually("the USR1 trap to run", Duration::from_secs(20), || {
        ok(&["logs", "killme"]).contains("got usr1").then_some(())
    });

    // docker wait returns the exit code once the container stops.
    let waiter = docker_cmd()
        .args(["wait", "killme"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    ok(&["kill", "killme"]);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "137");
    assert_eq!(inspect("killme")["State"]["ExitCode"], 137);

    ok(&["start", "killme"]);
    assert_eq!(inspect("killme")["State"]["Running"], true);
    ok(&["rm", "-f", "killme"]);
    let o = docker(&["inspect", "killme"]);
    assert!(
        stderr(&o).contains("No such object: killme") || stderr(&o).contains("No such container"),
        "{}",
        stderr(&o)
    );
    eventually("the VM process to go", Duration::from_secs(30), || {
        vm_processes(&id).is_empty().then_some(())
    });
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn errors_use_dockers_words_and_leave_nothing_behind() {
    // No filter is ignored: an unknown one is refused as dockerd refuses it, one vic does
    // not apply yet names itself.
    for (args, want) in [
        (
            &["ps", "--filter", "colour=red"][..],
            "invalid filter 'colour'",
        ),
        (
            &["ps", "--filter", "publish=80"][..],
            "--filter publish is not supported by vic",
        ),
        (
            &["images", "--filter", "colour=red"][..],
            "invalid filter 'colour'",
        ),
        (
            &["events", "--filter", "colour=red"][..],
            "invalid filter 'colour'",
        ),
    ] {
        let o = docker_timeout(args, std::time::Duration::from_secs(30));
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }

    let o = docker(&["start", "nosuch"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("No such container: nosuch"),
        "{}",
        stderr(&o)
    );

    let missing = format!("{}/nosuch", registry());
    let o = docker(&["run", "--rm", "--name", "never", &missing, "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Unable to find image"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("nosuch"), "{}", stderr(&o));
    assert!(
        !docker(&["inspect", "never"]).status.success(),
        "a container was left behind"
    );
    assert_eq!(
        ok(&["images", "-q", &missing]),
        "",
        "an image was left behind"
    );

    let o = docker(&[
        "run",
        "--rm",
        "--name",
        "failstart",
        &busybox(),
        "nosuchcommand",
    ]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("executable file not found"),
        "{}",
        stderr(&o)
    );
    assert!(
        !docker(&["inspect", "failstart"]).status.success(),
        "--rm removes a container that failed to start"
    );
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn restart_runs_the_process_again() {
    ok(&[
        "run",
        "-d",
        "--name",
        "again",
        &busybox(),
        "sh",
        "-c",
        "echo run; sleep 60",
    ]);
    eventually("first run output", Duration::from_secs(30), || {
        (ok(&["logs", "again"]) == "run\n").then_some(())
    });
    ok(&["restart", "-t", "1", "again"]);
    eventually("second run output", Duration::from_secs(30), || {
        (ok(&["logs", "again"]) == "run\nrun\n").then_some(())
    });
    ok(&["rm", "-f", "again"]);
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn version_and_info_describe_the_vch() {
    let v = ok(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Server.Os}}",
    ]);
    assert_eq!(v.trim(), "1.50 linux");
    let name = ok(&["info", "--format", "{{.Name}}"]);
    assert_eq!(name.trim(), vch().name);
    let o = docker(&["info"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Containers:"), "{}", stdout(&o));
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn image_inspect_and_remove() {
    let reg = registry();
    // The same image under a second tag, so that removing one tag only untags it.
    let latest = busybox();
    let image = format!("{reg}/busybox:1.0");
    ok(&["pull", &image]);
    let out = ok(&["image", "inspect", &image]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let img = &v[0];
    assert!(img["Id"].as_str().unwrap().starts_with("sha256:"));
    assert!(img["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == image.as_str()));
    assert!(img["RepoDigests"][0]
        .as_str()
        .unwrap()
        .starts_with(&format!("{reg}/busybox@sha256:")));
    assert_eq!(img["Architecture"], "amd64");
    assert_eq!(img["Os"], "linux");
    assert_eq!(img["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(img["RootFS"]["Layers"].as_array().unwrap().len(), 2);

    // Removing one tag of an image that has others only untags it.
    let out = ok(&["rmi", &image]);
    assert_eq!(out.trim(), format!("Untagged: {image}"));
    assert!(!docker(&["image", "inspect", &image]).status.success());
    assert!(
        docker(&["image", "inspect", &latest]).status.success(),
        "the image itself stays"
    );
    let o = docker(&["rmi", &format!("{reg}/nosuch:1")]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("No such image"), "{}", stderr(&o));
}
