//! Nothing silently ignored: a `docker run` option vic does not apply fails the run, naming
//! the option, and leaves no container; what vic applies is what `docker inspect` shows.

mod common;

use common::*;

/// IDs of every container of the VCH `client` talks to.
fn all_containers(client: &Client) -> String {
    client.ok(&["ps", "-a", "-q", "--no-trunc"])
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn options_vic_does_not_apply_fail_the_run_and_leave_nothing() {
    // A VCH of its own: no other test's container comes and goes while this one counts.
    let vch = OwnVch::create("strict", &[]);
    let image = vch.image.clone();
    let before = all_containers(&vch.client);
    let cases: &[(&[&str], &str)] = &[
        (
            &["-p", "127.0.0.1:8000-8010:80"],
            "host port ranges are not supported for port bindings",
        ),
        (
            &["-v", "/x:/y"],
            "bind mounts of host paths are not enabled on this VCH (mounting /x)",
        ),
        (
            &["--restart", "sometimes"],
            "invalid restart policy: unknown policy 'sometimes'",
        ),
        (
            &["--oom-score-adj", "100"],
            "--oom-score-adj is not supported by vic: OOM score adjustment is not applied yet",
        ),
        (
            &["--security-opt", "label=disable"],
            "--security-opt label is not supported by vic",
        ),
        (
            &["--network", "host"],
            "--network host is not supported by vic",
        ),
    ];
    for (opts, message) in cases {
        let mut args = vec!["run"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[&image, "true"]);
        let o = vch.client.run(&args);
        assert!(!o.status.success(), "docker {args:?} succeeded");
        assert_eq!(
            o.status.code(),
            Some(125),
            "docker {args:?}: {}",
            stderr(&o)
        );
        assert!(
            stderr(&o).contains(message),
            "docker {args:?}: stderr does not say {message:?}:\n{}",
            stderr(&o)
        );
        assert_eq!(
            all_containers(&vch.client),
            before,
            "docker {args:?} left a container"
        );
    }
    vch.delete();
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn a_plain_run_still_works() {
    assert_eq!(ok(&["run", "--rm", &busybox(), "echo", "ok"]), "ok\n");
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn inspect_shows_what_was_applied_and_nothing_else() {
    let id = ok(&[
        "create",
        "-m",
        "128m",
        "--dns",
        "1.2.3.4",
        &busybox(),
        "true",
    ])
    .trim()
    .to_string();
    let c = inspect(&id);
    let hc = &c["HostConfig"];
    assert_eq!(hc["Memory"], 128 << 20, "{hc}");
    assert_eq!(hc["Dns"], serde_json::json!(["1.2.3.4"]), "{hc}");
    assert_eq!(hc["NanoCpus"], 1_000_000_000i64, "one vCPU: {hc}");
    assert_eq!(hc["PortBindings"], serde_json::json!({}), "{hc}");
    assert_eq!(hc["RestartPolicy"]["Name"], "no", "{hc}");
    assert_eq!(hc["LogConfig"]["Type"], "json-file", "{hc}");
    for none in [
        "Binds",
        "CapAdd",
        "CapDrop",
        "ExtraHosts",
        "Tmpfs",
        "SecurityOpt",
    ] {
        assert!(hc[none].is_null(), "{none}: {hc}");
    }
    assert_eq!(hc["ReadonlyRootfs"], false, "{hc}");
    assert_eq!(hc["Privileged"], false, "{hc}");
    ok(&["rm", &id]);

    // The memory is the VM's: the guest kernel sees (a little less than) 128 MiB.
    let meminfo = ok(&[
        "run",
        "--rm",
        "-m",
        "128m",
        &busybox(),
        "head",
        "-1",
        "/proc/meminfo",
    ]);
    let kib: u64 = meminfo
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{meminfo}"));
    assert!((64 * 1024..=128 * 1024).contains(&kib), "{meminfo}");
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn what_vic_changes_is_a_warning() {
    let o = docker(&["create", "-m", "16m", &busybox(), "true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Memory raised from 16MiB to 64MiB"),
        "{}",
        stderr(&o)
    );
    let id = stdout(&o).trim().to_string();
    assert_eq!(inspect(&id)["HostConfig"]["Memory"], 64 << 20);
    ok(&["rm", &id]);
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn a_mistyped_field_is_named_and_creates_nothing() {
    let mark = format!("vic.test.mistyped={}", std::process::id());
    let url = vch().docker_host.replace("tcp://", "http://");
    let body = serde_json::json!({
        "Image": busybox(),
        "Cmd": ["true"],
        "Labels": { "vic.test.mistyped": std::process::id().to_string() },
        "HostConfig": { "Memory": "128m", "AutoRemove": true },
    });
    let out = std::process::Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "-X", "POST"])
        .args(["-H", "Content-Type: application/json"])
        .args(["-d", &body.to_string()])
        .arg(format!("{url}/v1.50/containers/create"))
        .output()
        .expect("curl");
    let text = stdout(&out);
    assert!(text.ends_with("\n400"), "{text}");
    assert!(
        text.contains(
            "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.Memory of type int64"
        ),
        "{text}"
    );
    let made = ok(&["ps", "-a", "-q", "--filter", &format!("label={mark}")]);
    assert_eq!(made, "", "a container was created");
}
