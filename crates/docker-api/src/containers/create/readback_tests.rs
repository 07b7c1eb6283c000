//! What inspect reads back of a create: the values as given, and what `docker update`
//! changed since.

use serde_json::{json, Value};

use super::tests::{accepted, fixture, try_create};

#[test]
fn inspect_shows_what_docker_update_changed_since_create() {
    let mut spec = accepted("create").spec;
    spec.memory_mib = 300;
    spec.cpus = 2;
    spec.cpu_shares = Some(3);
    spec.restart = portlayer::container::RestartPolicy {
        kind: portlayer::container::RestartKind::OnFailure,
        max_retries: 42,
    };
    let hc = super::host_config_of(&spec);
    assert_eq!(hc["Memory"], json!(300 << 20));
    assert_eq!(hc["NanoCpus"], json!(2_000_000_000_i64));
    assert_eq!(hc["CpuShares"], json!(3));
    assert_eq!(
        hc["RestartPolicy"],
        json!({ "Name": "on-failure", "MaximumRetryCount": 42 })
    );
}

#[test]
fn cpuset_cpus_is_read_back_as_given() {
    let mut b: Value = serde_json::from_slice(&fixture("cpuset")).unwrap();
    b["HostConfig"]["CpusetCpus"] = json!("0-0");
    let p = try_create(&serde_json::to_vec(&b).unwrap()).unwrap();
    assert_eq!(p.spec.host_cpus, [0]);
    assert_eq!(p.spec.personality["HostConfig"]["CpusetCpus"], json!("0-0"));
}

#[test]
fn cpu_shares_weigh_the_vm_and_are_read_back_as_given() {
    let p = accepted("cpu_shares");
    let given = p.spec.personality["HostConfig"]["CpuShares"].clone();
    assert_eq!(p.spec.cpu_shares.map(|s| json!(s)), Some(given));
    assert_eq!(accepted("create").spec.cpu_shares, None);
    let mut b: Value = serde_json::from_slice(&fixture("cpu_shares")).unwrap();
    b["HostConfig"]["CpuShares"] = json!(2);
    let p = try_create(&serde_json::to_vec(&b).unwrap()).unwrap();
    assert_eq!(p.spec.cpu_shares, Some(2));
    assert_eq!(p.spec.personality["HostConfig"]["CpuShares"], json!(2));
    b["HostConfig"]["CpuShares"] = json!(-1);
    let refused = try_create(&serde_json::to_vec(&b).unwrap()).unwrap_err();
    assert!(
        refused.message.contains("shares: invalid argument"),
        "{}",
        refused.message
    );
}

#[test]
fn isolation_is_read_back_as_given() {
    let hc = |name: &str| accepted(name).spec.personality["HostConfig"]["Isolation"].clone();
    assert_eq!(hc("isolation"), json!("default"));
    assert_eq!(hc("create"), json!(""));
    let mut spec = accepted("isolation").spec;
    spec.personality.as_object_mut().unwrap().remove("Applied");
    assert_eq!(super::host_config_of(&spec)["Isolation"], json!("default"));
}

#[test]
fn the_none_log_driver_keeps_no_log_and_takes_no_options() {
    let mut b: Value = serde_json::from_slice(&fixture("log_json")).unwrap();
    b["HostConfig"]["LogConfig"] = json!({ "Type": "none", "Config": {} });
    let p = try_create(&serde_json::to_vec(&b).unwrap()).unwrap();
    assert!(p.spec.no_log);
    assert_eq!(p.spec.log, portlayer::LogBounds::PASS_THROUGH);
    let shown = json!({ "Type": "none", "Config": {} });
    assert_eq!(p.spec.personality["HostConfig"]["LogConfig"], shown);
    assert_eq!(super::host_config_of(&p.spec)["LogConfig"], shown);
    b["HostConfig"]["LogConfig"]["Config"] = json!({ "max-size": "1m" });
    let refused = try_create(&serde_json::to_vec(&b).unwrap()).unwrap_err();
    assert_eq!(
        refused.message,
        "--log-opt max-size is not supported by vic: the none log driver keeps no log"
    );
}
