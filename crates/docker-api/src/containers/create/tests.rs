//! Create bodies as the docker 28 CLI sends them (`tests/fixtures/create/`, one per option)
//! against the policy: a plain `docker run` is accepted, each option vic does not apply is
//! refused naming its flag, a mistyped field is refused naming the field.

use std::path::PathBuf;

use axum::http::StatusCode;
use imagec::store::ImageRecord;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::{parse, plan, Plan};
use crate::ApiError;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/create")
}

pub(super) fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures().join(format!("{name}.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The image the create tests run: busybox with a `sh` command.
pub(super) fn image() -> ImageRecord {
    ImageRecord {
        id: "sha256:feed".into(),
        repo_tags: vec!["busybox:latest".into()],
        repo_digests: Vec::new(),
        config: json!({ "config": { "Cmd": ["sh"], "Env": ["PATH=/bin"] } }),
        created: String::new(),
        size: 0,
        architecture: "amd64".into(),
        os: "linux".into(),
        diff_ids: Vec::new(),
        layers: Vec::new(),
        layer_sizes: Vec::new(),
        parent: String::new(),
    }
}

pub(super) fn try_create(body: &[u8]) -> Result<Plan, ApiError> {
    plan(parse::body(body)?, "c".into(), &image())
}

pub(super) fn accepted(name: &str) -> Plan {
    try_create(&fixture(name)).unwrap_or_else(|e| panic!("{name}: refused: {}", e.message))
}

fn refused(name: &str) -> String {
    match try_create(&fixture(name)) {
        Ok(p) => panic!("{name}: accepted: {:?}", p.spec),
        Err(e) => {
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{name}: {}", e.message);
            e.message
        }
    }
}

/// Captured bodies vic applies in full (or discards with a warning, as dockerd does).
const ACCEPTED: &[&str] = &[
    "bind",
    "volume",
    "anon_volume",
    "mount",
    "volumes_from",
    "create",
    "ip",
    "net_alias",
    "link",
    "publish",
    "dockerpy_publish",
    "publish_all",
    "create_it",
    "run_rm",
    "run_d",
    "restart_no",
    "restart",
    "mem_dns",
    "mem_small",
    "memswap",
    "swappiness",
    "oom_kill",
    "kernel_mem",
    "cpus",
    "env_label",
    "expose",
    "no_healthcheck",
    "health",
    "cpuset",
    "cpu_shares",
    "mac",
    "cidfile",
    "platform",
    "log_json",
    "log_opt",
    "net_bridge",
    "isolation",
    "dockerpy_create",
    "cap_drop",
    "cap_add",
    "read_only",
    "hostname",
    "tmpfs",
    "ulimit",
    "shm",
    "add_host",
    "group_add",
    "sysctl",
    "device",
    "init",
    "pids",
    "privileged",
    "secopt",
];

/// Captured bodies vic refuses, and the flag the message names.
const REFUSED: &[(&str, &str)] = &[
    (
        "net_host",
        "--network host is not supported by vic: a container is its own VM with its own network stack",
    ),
    ("dev_rule", "--device-cgroup-rule is not supported by vic"),
    ("gpus", "--gpus is not supported by vic"),
    (
        "log_driver",
        "--log-driver syslog is not supported by vic: only the json-file and none log drivers are available",
    ),
    ("log_opt_other", "--log-opt tag is not supported by vic"),
    ("cpu_quota", "--cpu-quota is not supported by vic"),
    ("mem_res", "--memory-reservation is not supported by vic"),
    ("blkio", "--blkio-weight is not supported by vic"),
    ("cgroup_parent", "--cgroup-parent is not supported by vic"),
    ("oom_score", "--oom-score-adj is not supported by vic"),
    ("userns", "--userns host is not supported by vic"),
    ("pid", "--pid host is not supported by vic"),
    ("ipc", "--ipc host is not supported by vic"),
    ("uts", "--uts host is not supported by vic"),
    ("cgroupns", "--cgroupns host is not supported by vic"),
    ("runtime", "--runtime runc is not supported by vic"),
    ("storage_opt", "--storage-opt is not supported by vic"),
    ("annotation", "--annotation is not supported by vic"),
];

#[test]
fn every_captured_body_is_judged() {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .expect("fixtures")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    names.sort();
    for name in &names {
        let known = ACCEPTED.contains(&name.as_str()) || REFUSED.iter().any(|(n, _)| n == name);
        assert!(
            known,
            "fixture {name}.json is neither in ACCEPTED nor in REFUSED"
        );
    }
    assert_eq!(names.len(), ACCEPTED.len() + REFUSED.len());
}

#[test]
fn a_plain_docker_run_is_accepted_without_warnings() {
    for name in [
        "create",
        "create_it",
        "run_rm",
        "run_d",
        "restart_no",
        "net_bridge",
    ] {
        let p = accepted(name);
        assert!(p.warnings.is_empty(), "{name}: {:?}", p.warnings);
    }
    let p = accepted("run_rm");
    assert!(p.spec.auto_remove);
    assert_eq!(p.spec.process.argv, vec!["echo", "ok"]);
    assert_eq!((p.spec.memory_mib, p.spec.cpus), (256, 1));
    let p = accepted("create_it");
    assert!(p.spec.process.tty && p.spec.process.open_stdin);
}

#[test]
fn restart_policies_are_kept_and_checked_as_dockerd_checks_them() {
    use portlayer::container::RestartKind;
    let p = accepted("restart");
    assert_eq!(p.spec.restart.kind, RestartKind::Always);
    let mut body: Value = serde_json::from_slice(&fixture("run_d")).expect("json");
    body["HostConfig"]["RestartPolicy"] = json!({"Name": "on-failure", "MaximumRetryCount": 3});
    let p = try_create(body.to_string().as_bytes()).expect("on-failure:3");
    assert_eq!(
        (p.spec.restart.kind, p.spec.restart.max_retries),
        (RestartKind::OnFailure, 3)
    );
    for (policy, want) in [
        (json!({"Name": "sometimes"}), "unknown policy 'sometimes'"),
        (
            json!({"Name": "always", "MaximumRetryCount": 2}),
            "can only be used with 'on-failure'",
        ),
        (
            json!({"Name": "on-failure", "MaximumRetryCount": -1}),
            "cannot be negative",
        ),
    ] {
        body["HostConfig"]["RestartPolicy"] = policy;
        let m = try_create(body.to_string().as_bytes())
            .expect_err("refused")
            .message;
        assert!(m.contains(want), "{m}");
    }
    body["HostConfig"]["RestartPolicy"] = json!({"Name": "always"});
    body["HostConfig"]["AutoRemove"] = json!(true);
    let m = try_create(body.to_string().as_bytes())
        .expect_err("refused")
        .message;
    assert!(m.contains("AutoRemove"), "{m}");
}

#[test]
fn each_option_vic_does_not_apply_is_refused_naming_its_flag() {
    for (name, want) in REFUSED {
        let got = refused(name);
        assert!(got.contains(want), "{name}: {got:?} does not say {want:?}");
    }
}

#[test]
fn every_refused_option_is_named_at_once() {
    let mut body: Value = serde_json::from_slice(&fixture("run_d")).expect("json");
    body["HostConfig"]["NetworkMode"] = json!("container:db");
    body["HostConfig"]["OomScoreAdj"] = json!(100);
    let m = try_create(body.to_string().as_bytes())
        .expect_err("refused")
        .message;
    for flag in ["--network container:db", "--oom-score-adj"] {
        assert!(m.contains(flag), "{m}");
    }
}

#[test]
fn network_options_become_endpoint_requests_the_port_layer_judges() {
    let p = accepted("net_alias");
    assert_eq!(p.spec.networks, ["foo"]);
    assert_eq!(p.spec.endpoint_requests["foo"].aliases, ["foo"]);
    let p = accepted("ip");
    assert_eq!(p.spec.networks, ["bridge"]);
    assert_eq!(
        p.spec.endpoint_requests["bridge"].ip,
        Some("10.0.0.5".parse().unwrap())
    );
    let p = accepted("link");
    let link = &p.spec.endpoint_requests["bridge"].links[0];
    assert_eq!(
        (link.container.as_str(), link.alias.as_str()),
        ("other", "o")
    );
    let p = accepted("net_bridge");
    assert_eq!(p.spec.networks, ["bridge"]);
    assert!(p.spec.endpoint_requests.is_empty());
}

#[test]
fn applied_options_are_what_inspect_shows() {
    let p = accepted("mem_dns");
    assert_eq!(p.spec.memory_mib, 128);
    assert_eq!(p.spec.dns_servers, vec!["1.2.3.4"]);
    let hc = &p.spec.personality["HostConfig"];
    assert_eq!(hc["Memory"], json!(128 << 20));
    assert_eq!(hc["Dns"], json!(["1.2.3.4"]));
    assert_eq!(hc["PortBindings"], json!({}));
    assert_eq!(hc["RestartPolicy"]["Name"], json!("no"));
    assert_eq!(hc["CapDrop"], Value::Null);
    assert_eq!(super::host_config_of(&p.spec), *hc);
    let p = accepted("cpus");
    assert_eq!(p.spec.cpus, 2);
    assert_eq!(
        p.spec.personality["HostConfig"]["NanoCpus"],
        json!(2_000_000_000i64)
    );
    let p = accepted("expose");
    assert_eq!(
        p.spec.personality["Config"]["ExposedPorts"],
        json!({ "80/tcp": {} })
    );
    let p = accepted("env_label");
    let c = &p.spec.personality["Config"];
    assert_eq!(c["Entrypoint"], json!(["sh"]));
    assert_eq!(c["User"], json!("1000"));
    assert_eq!(p.spec.stop_signal.as_deref(), Some("SIGINT"));
}

#[test]
fn the_log_keeps_what_max_size_says_or_the_default_and_inspect_shows_what_was_given() {
    let p = accepted("log_opt");
    assert_eq!(
        p.spec.log.max_size,
        Some(10_000_000),
        "10m, decimal as moby"
    );
    assert_eq!(p.spec.log.max_file, 1);
    assert_eq!(
        p.spec.personality["HostConfig"]["LogConfig"],
        json!({ "Type": "json-file", "Config": { "max-size": "10m" } })
    );
    for name in ["create", "log_json"] {
        let p = accepted(name);
        assert_eq!(p.spec.log, portlayer::LogBounds::default(), "{name}");
        assert_eq!(
            p.spec.personality["HostConfig"]["LogConfig"],
            json!({ "Type": "json-file", "Config": {} })
        );
    }
    // `max-file` alone: bounded by the default `max-size`, shown as given.
    let mut b: Value = serde_json::from_slice(&fixture("log_opt")).unwrap();
    b["HostConfig"]["LogConfig"]["Config"] = json!({ "max-file": "100" });
    let p = try_create(&serde_json::to_vec(&b).unwrap()).unwrap();
    assert_eq!(p.spec.log.max_size, Some(portlayer::logs::DEFAULT_MAX_SIZE));
    assert_eq!(p.spec.log.max_file, 100);
    let shown = &p.spec.personality["HostConfig"]["LogConfig"];
    assert_eq!(
        shown,
        &json!({ "Type": "json-file", "Config": { "max-file": "100" } })
    );
}

#[test]
fn a_bad_log_opt_value_is_refused_in_mobys_words() {
    let body = |opts: Value| {
        let mut b: Value = serde_json::from_slice(&fixture("log_opt")).unwrap();
        b["HostConfig"]["LogConfig"]["Config"] = opts;
        serde_json::to_vec(&b).unwrap()
    };
    let message = |opts: Value| match try_create(&body(opts)) {
        Ok(_) => panic!("accepted"),
        Err(e) => {
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            e.message
        }
    };
    assert_eq!(
        message(json!({ "max-size": "1m", "max-file": "0" })),
        "max-file cannot be less than 1"
    );
    assert_eq!(
        message(json!({ "max-size": "1m", "colour": "x" })),
        "unknown log opt 'colour' for json-file log driver"
    );
}

#[test]
fn containers_of_earlier_versions_show_what_their_spec_applied() {
    // Earlier versions stored the request's HostConfig as sent, applied or not.
    let mut spec = accepted("mem_dns").spec;
    spec.personality = json!({
        "Config": spec.personality["Config"].clone(),
        "HostConfig": {
            "NetworkMode": "bridge", "Memory": 134217728, "Dns": ["1.2.3.4"],
            "PortBindings": { "80/tcp": [{ "HostPort": "8080" }] }, "CapDrop": ["ALL"],
        },
    });
    let hc = super::host_config_of(&spec);
    assert_eq!(hc["NetworkMode"], json!("bridge"));
    assert_eq!(hc["Memory"], json!(128 << 20));
    assert_eq!(hc["Dns"], json!(["1.2.3.4"]));
    assert_eq!(hc["PortBindings"], json!({}));
    assert_eq!(hc["CapDrop"], Value::Null);
    spec.personality = Value::Null;
    assert_eq!(
        super::host_config_of(&spec)["NetworkMode"],
        json!("default")
    );
}

#[test]
fn what_is_discarded_or_changed_is_said_in_warnings() {
    let w = |name: &str| accepted(name).warnings.join("\n");
    assert!(w("mem_small").contains("Memory raised from 8MiB to 64MiB"));
    assert_eq!(accepted("mem_small").spec.memory_mib, 64);
    assert!(w("swappiness").contains("Memory swappiness discarded"));
    assert!(w("memswap").contains("without swap"));
    assert!(w("oom_kill").contains("OomKillDisable discarded"));
    let mut body: Value = serde_json::from_slice(&fixture("run_d")).expect("json");
    body["HostConfig"]["NanoCpus"] = json!(1_500_000_000i64);
    let p = try_create(body.to_string().as_bytes()).expect("accepted");
    assert_eq!(p.spec.cpus, 2);
    assert!(
        p.warnings.join("").contains("--cpus 1.5 gives it 2"),
        "{:?}",
        p.warnings
    );
    body["HostConfig"]["Memory"] = json!(1024);
    let e = try_create(body.to_string().as_bytes()).expect_err("refused");
    assert_eq!(e.message, "Minimum memory limit allowed is 6MB");
}

#[test]
fn volumes_named_anonymous_and_the_images_become_mounts() {
    let mut img = image();
    img.config["config"]["Volumes"] = json!({ "/cache": {} });
    for (name, want) in [
        ("volume", vec![("data", "/db"), ("", "/cache")]),
        ("anon_volume", vec![("", "/db"), ("", "/cache")]),
        ("mount", vec![("data", "/db"), ("", "/cache")]),
    ] {
        let body = parse::body(&fixture(name)).expect("parsed");
        let p = plan(body, "c".into(), &img).expect("accepted");
        let got: Vec<(&str, &str)> = (p.spec.mounts.iter())
            .map(|m| (m.name.as_str(), m.target.as_str()))
            .collect();
        assert_eq!(got, want, "{name}");
        assert!(
            p.spec.mounts.iter().all(|m| m.copy && !m.readonly),
            "{name}"
        );
    }
}

#[test]
fn a_health_check_comes_from_the_image_unless_the_container_turns_it_off() {
    let mut img = image();
    img.config["config"]["Healthcheck"] = json!({ "Test": ["CMD", "true"] });
    let plan_of = |fixture_name: &str| {
        let body = parse::body(&fixture(fixture_name)).expect("parsed");
        plan(body, "c".into(), &img).expect("accepted")
    };
    let p = plan_of("run_d");
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let check = p.spec.healthcheck.expect("the image's check");
    assert_eq!(check.test, ["CMD", "true"]);
    assert!(plan_of("no_healthcheck").spec.healthcheck.is_none());
    let own = plan_of("health").spec.healthcheck.expect("--health-cmd");
    assert_eq!(own.test, ["CMD-SHELL", "true"]);
}

#[test]
fn a_mistyped_field_is_refused_naming_it() {
    let mut body: Value = serde_json::from_slice(&fixture("run_d")).expect("json");
    body["HostConfig"]["Memory"] = json!("128m");
    let e = try_create(body.to_string().as_bytes()).expect_err("refused");
    assert_eq!(e.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        e.message,
        "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.Memory of type int64"
    );
}

#[test]
fn unknown_fields_are_ignored() {
    let mut body: Value = serde_json::from_slice(&fixture("run_d")).expect("json");
    body["FromTheFuture"] = json!({ "x": [1, 2] });
    body["HostConfig"]["FromTheFuture"] = json!(true);
    body["NetworkingConfig"]["FromTheFuture"] = json!("x");
    let p = try_create(body.to_string().as_bytes()).expect("accepted");
    assert!(p.warnings.is_empty());
}

#[test]
fn nulls_are_defaults_as_docker_py_sends_them() {
    let body = json!({
        "Image": "busybox", "Cmd": null, "Env": null, "Labels": null, "ExposedPorts": null,
        "Volumes": null, "Healthcheck": null, "StopTimeout": null,
        "HostConfig": {
            "Binds": null, "PortBindings": null, "RestartPolicy": null, "LogConfig": null,
            "NetworkMode": null, "CapAdd": null, "Memory": null, "PidsLimit": null,
            "MemorySwappiness": null, "OomKillDisable": null, "Init": null, "ConsoleSize": null,
        },
        "NetworkingConfig": { "EndpointsConfig": null },
    });
    let p = try_create(body.to_string().as_bytes()).expect("accepted");
    assert_eq!(p.spec.process.argv, vec!["sh"]);
}

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-zA-Z0-9:/._-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[A-Za-z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Field names of the create body, so that random bodies hit them.
const KEYS: &[&str] = &[
    "Memory",
    "NanoCpus",
    "CpuCount",
    "Dns",
    "ConsoleSize",
    "AutoRemove",
    "PortBindings",
    "RestartPolicy",
    "LogConfig",
    "NetworkMode",
    "CapAdd",
    "Binds",
    "Mounts",
    "Tmpfs",
    "Ulimits",
    "PidsLimit",
    "MemorySwappiness",
    "BlkioWeight",
    "Devices",
    "Cmd",
    "Tty",
];

proptest! {
    #[test]
    fn arbitrary_bodies_never_panic(v in any_json()) {
        if let Err(e) = try_create(v.to_string().as_bytes()) {
            prop_assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn arbitrary_fields_never_panic(
        key in prop::sample::select(KEYS),
        v in any_json(),
        top in any::<bool>(),
    ) {
        let mut body: Value = serde_json::from_slice(&fixture("run_d")).expect("json");
        if top { body[key] = v } else { body["HostConfig"][key] = v }
        if let Err(e) = try_create(body.to_string().as_bytes()) {
            prop_assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }
}

#[test]
fn a_platform_the_image_is_not_for_is_not_found_so_the_cli_pulls_it() {
    let img = image();
    assert!(super::check_platform("linux/amd64", "busybox", &img).is_ok());
    assert!(super::check_platform("linux/x86_64", "busybox", &img).is_ok());
    assert!(super::check_platform("linux", "busybox", &img).is_ok());
    let e = super::check_platform("linux/arm64", "busybox", &img).expect_err("refused");
    assert_eq!(e.status, StatusCode::NOT_FOUND);
    assert_eq!(
        e.message,
        "image with reference busybox was found but does not match the specified platform: wanted linux/arm64, actual: linux/amd64"
    );
}

#[test]
fn published_ports_as_the_cli_and_docker_py_send_them_become_bindings() {
    for name in ["publish", "dockerpy_publish"] {
        let p = accepted(name);
        assert_eq!(p.spec.ports.len(), 1, "{name}");
        assert_eq!(p.spec.ports[0].container_port, 80);
        assert_eq!(p.spec.ports[0].host_port, 8080);
        assert_eq!(
            p.spec.personality["HostConfig"]["PortBindings"],
            json!({ "80/tcp": [{ "HostIp": "", "HostPort": "8080" }] }),
            "inspect shows them as given"
        );
    }
    // -P with nothing exposed publishes nothing, and says so in HostConfig.
    let p = accepted("publish_all");
    assert!(p.spec.ports.is_empty());
    assert_eq!(
        p.spec.personality["HostConfig"]["PublishAllPorts"],
        json!(true)
    );
}
