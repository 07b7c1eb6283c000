//! The options applied inside the container VM: what the port layer is told to apply, what
//! inspect shows, and dockerd's refusals of bad values.

use axum::http::StatusCode;
use portlayer::guest::{capability_mask, Device, HostEntry, Tmpfs, DEFAULT_CAPABILITIES};
use portlayer::Rlimit;
use serde_json::{json, Value};

use super::tests::image;
use super::{parse, plan, Plan};

/// A plain `docker run` body with `host` merged into its HostConfig and `config` into the
/// container config.
fn body(host: Value, config: Value) -> Vec<u8> {
    let mut b = json!({ "Image": "busybox", "Cmd": ["true"], "HostConfig": {} });
    for (k, v) in host.as_object().into_iter().flatten() {
        b["HostConfig"][k] = v.clone();
    }
    for (k, v) in config.as_object().into_iter().flatten() {
        b[k] = v.clone();
    }
    b.to_string().into_bytes()
}

fn create(host: Value) -> Plan {
    let b = body(host, json!({}));
    let parsed = parse::body(&b).expect("parsed");
    plan(parsed, "c".into(), &image()).unwrap_or_else(|e| panic!("refused: {}", e.message))
}

fn refusal(host: Value) -> String {
    let b = body(host, json!({}));
    let parsed = parse::body(&b).expect("parsed");
    match plan(parsed, "c".into(), &image()) {
        Ok(p) => panic!("accepted: {:?}", p.spec),
        Err(e) => {
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{}", e.message);
            e.message
        }
    }
}

fn caps(p: &Plan) -> u64 {
    capability_mask(p.spec.process.privileges.capabilities.as_deref().unwrap()).unwrap()
}

#[test]
fn a_plain_run_gets_dockers_default_capabilities_and_confinement() {
    let p = create(json!({}));
    assert_eq!(caps(&p), 0xa804_25fb);
    let c = &p.spec.confinement;
    assert!(!c.privileged && !c.readonly_rootfs);
    assert_eq!(c.shm_size, 64 << 20);
    assert!(c.masked_paths.contains(&"/proc/kcore".to_string()));
    assert!(c.readonly_paths.contains(&"/proc/sys".to_string()));
    let hc = &p.spec.personality["HostConfig"];
    assert_eq!(hc["CapAdd"], Value::Null);
    assert_eq!(hc["ShmSize"], json!(64 << 20));
    assert_eq!(hc["PidsLimit"], Value::Null);
    assert_eq!(hc["MaskedPaths"].as_array().map(Vec::len), Some(12));
    assert!(hc.get("Init").is_none());
}

#[test]
fn cap_add_and_cap_drop_tweak_the_default_set_as_moby_does() {
    let p = create(json!({ "CapAdd": ["net_admin", "CAP_SYS_TIME"], "CapDrop": ["chown"] }));
    let want = capability_mask(&DEFAULT_CAPABILITIES).unwrap() & !1 | 1 << 12 | 1 << 25;
    assert_eq!(caps(&p), want);
    let hc = &p.spec.personality["HostConfig"];
    assert_eq!(hc["CapAdd"], json!(["CAP_NET_ADMIN", "CAP_SYS_TIME"]));
    assert_eq!(hc["CapDrop"], json!(["CAP_CHOWN"]));
    assert_eq!(caps(&create(json!({ "CapDrop": ["ALL"] }))), 0);
    let p = create(json!({ "CapDrop": ["ALL"], "CapAdd": ["KILL"] }));
    assert_eq!(caps(&p), 1 << 5);
    let p = create(json!({ "CapAdd": ["ALL"], "CapDrop": ["SYS_ADMIN"] }));
    assert_eq!(caps(&p), ((1u64 << 41) - 1) & !(1 << 21));
    assert_eq!(
        refusal(json!({ "CapAdd": ["CAP_FOO"] })),
        "unknown capability: \"CAP_FOO\""
    );
}

#[test]
fn privileged_gets_every_capability_and_device_and_no_masked_paths() {
    let p = create(json!({ "Privileged": true, "CapDrop": ["ALL"] }));
    assert_eq!(caps(&p), (1u64 << 41) - 1);
    assert!(p.spec.confinement.privileged);
    assert!(p.spec.confinement.masked_paths.is_empty());
    let hc = &p.spec.personality["HostConfig"];
    assert_eq!(hc["Privileged"], json!(true));
    assert_eq!(hc["MaskedPaths"], Value::Null);
    assert_eq!(hc["ReadonlyPaths"], Value::Null);
}

#[test]
fn mounts_limits_and_kernel_settings_reach_the_port_layer() {
    let p = create(json!({
        "ReadonlyRootfs": true,
        "Tmpfs": { "/run": "size=1m,exec", "/scratch": "" },
        "ShmSize": 8 << 20,
        "Ulimits": [{ "Name": "nofile", "Soft": 100, "Hard": 200 }, { "Name": "core", "Soft": -1, "Hard": -1 }],
        "ExtraHosts": ["db:10.0.0.5", "v6:[::1]"],
        "GroupAdd": ["wheel", "4242"],
        "Sysctls": { "kernel.shmmax": "1000000", "net.ipv4.ip_forward": "1" },
        "Devices": [{ "PathOnHost": "/dev/net/tun", "PathInContainer": "", "CgroupPermissions": "rwm" }],
        "Init": true,
        "PidsLimit": 50,
        "SecurityOpt": ["no-new-privileges"],
    }));
    let c = &p.spec.confinement;
    assert!(c.readonly_rootfs);
    assert_eq!(
        c.tmpfs,
        vec![
            Tmpfs {
                path: "/run".into(),
                options: ["nosuid", "nodev", "size=1m", "exec"]
                    .map(String::from)
                    .to_vec(),
            },
            Tmpfs {
                path: "/scratch".into(),
                options: ["noexec", "nosuid", "nodev"].map(String::from).to_vec(),
            },
        ]
    );
    assert_eq!(c.shm_size, 8 << 20);
    assert_eq!(
        c.extra_hosts[1],
        HostEntry {
            name: "v6".into(),
            ip: "::1".into()
        }
    );
    assert_eq!(c.sysctls.len(), 2);
    assert_eq!(
        c.devices,
        vec![Device {
            guest_path: "/dev/net/tun".into(),
            container_path: "/dev/net/tun".into()
        }]
    );
    assert_eq!(c.pids_limit, 50);
    let pr = &p.spec.process.privileges;
    assert_eq!(pr.groups, vec!["wheel", "4242"]);
    assert_eq!(
        pr.rlimits[1],
        Rlimit {
            name: "core".into(),
            soft: u64::MAX,
            hard: u64::MAX
        }
    );
    assert!(pr.no_new_privileges);
    let hc = &p.spec.personality["HostConfig"];
    assert_eq!(hc["Init"], json!(true));
    assert_eq!(hc["PidsLimit"], json!(50));
    assert_eq!(hc["ReadonlyRootfs"], json!(true));
    assert_eq!(hc["Tmpfs"]["/run"], json!("size=1m,exec"));
    assert_eq!(
        hc["Ulimits"][1],
        json!({ "Name": "core", "Hard": -1, "Soft": -1 })
    );
    assert_eq!(hc["Devices"][0]["PathInContainer"], json!("/dev/net/tun"));
    assert_eq!(hc["SecurityOpt"], json!(["no-new-privileges"]));
    assert_eq!(super::host_config_of(&p.spec), *hc);
}

#[test]
fn the_domain_name_is_applied_and_shown() {
    let b = body(json!({}), json!({ "Domainname": "example.com" }));
    let p = plan(parse::body(&b).unwrap(), "c".into(), &image()).expect("accepted");
    assert_eq!(p.spec.confinement.domainname, "example.com");
    assert_eq!(
        p.spec.personality["Config"]["Domainname"],
        json!("example.com")
    );
}

#[test]
fn bad_values_are_refused_in_dockers_words() {
    let cases = [
        (
            json!({ "Ulimits": [{ "Name": "files", "Soft": 1, "Hard": 1 }] }),
            "invalid ulimit type: files",
        ),
        (
            json!({ "Ulimits": [{ "Name": "nofile", "Soft": 10, "Hard": 5 }] }),
            "ulimit soft limit must be less than or equal to hard limit: 10 > 5",
        ),
        (
            json!({ "Sysctls": { "kernel.domainname": "x" } }),
            "sysctl 'kernel.domainname=x' is not allowed",
        ),
        (json!({ "Sysctls": { "net.../x": "1" } }), "is not allowed"),
        (
            json!({ "ExtraHosts": ["db:notanip"] }),
            "invalid IP address in add-host: \"notanip\"",
        ),
        (
            json!({ "ExtraHosts": ["justaname"] }),
            "bad format for add-host: \"justaname\"",
        ),
        (
            json!({ "Tmpfs": { "/run": "colour=red" } }),
            "invalid tmpfs option [\"colour\" \"red\"]",
        ),
        (
            json!({ "Tmpfs": { "run": "" } }),
            "mount path must be absolute",
        ),
        (json!({ "ShmSize": -1 }), "SHM size can not be less than 0"),
        (
            json!({ "Devices": [{ "PathOnHost": "/etc/passwd", "PathInContainer": "/dev/x", "CgroupPermissions": "rwm" }] }),
            "invalid device path \"/etc/passwd\"",
        ),
    ];
    for (host, want) in cases {
        let got = refusal(host.clone());
        assert!(got.contains(want), "{host}: {got:?} does not say {want:?}");
    }
}

#[test]
fn what_is_still_not_applied_is_refused_naming_its_flag() {
    let cases = [
        (
            json!({ "SecurityOpt": ["seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}"] }),
            "--security-opt seccomp is not supported by vic",
        ),
        (
            json!({ "SecurityOpt": ["apparmor=docker-default"] }),
            "--security-opt apparmor is not supported by vic",
        ),
        (
            json!({ "Devices": [{ "PathOnHost": "/dev/net/tun", "PathInContainer": "/dev/net/tun", "CgroupPermissions": "r" }] }),
            "--device /dev/net/tun:r is not supported by vic",
        ),
        (
            json!({ "MaskedPaths": ["/proc/x"] }),
            "HostConfig.MaskedPaths is not supported by vic",
        ),
        (
            json!({ "OomScoreAdj": 10 }),
            "--oom-score-adj is not supported by vic",
        ),
    ];
    for (host, want) in cases {
        let got = refusal(host.clone());
        assert!(got.contains(want), "{host}: {got:?} does not say {want:?}");
    }
    let p = create(json!({ "SecurityOpt": ["seccomp=unconfined", "apparmor=unconfined"] }));
    assert!(!p.spec.process.privileges.no_new_privileges);
}

#[test]
fn a_container_recorded_before_these_options_gets_dockers_defaults() {
    // A spec as earlier versions stored it: no confinement, no privileges.
    let mut old = serde_json::to_value(create(json!({})).spec).expect("spec");
    old.as_object_mut().expect("object").remove("confinement");
    old["process"]
        .as_object_mut()
        .expect("process")
        .remove("privileges");
    old["personality"] = Value::Null;
    let spec: portlayer::ContainerSpec = serde_json::from_value(old).expect("old spec reads");
    // No capabilities recorded: the guest gets Docker's default set (see portlayer's launch).
    assert_eq!(spec.process.privileges.capabilities, None);
    assert!(!spec.confinement.privileged);
    let hc = super::host_config_of(&spec);
    assert_eq!(hc["ShmSize"], json!(64 << 20));
    assert_eq!(hc["CapAdd"], Value::Null);
    assert_eq!(hc["MaskedPaths"], Value::Null, "none were applied to it");
}
