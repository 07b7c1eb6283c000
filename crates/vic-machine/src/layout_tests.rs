use super::*;

#[test]
fn long_names_are_refused_with_vics_message() {
    let long = "a".repeat(32);
    let err = validate_name(&long).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("Display name {long} exceeds the permitted 31 characters limit. Please use a shorter -name parameter")
    );
    assert!(validate_name(&"a".repeat(31)).is_ok());
    assert!(validate_name("bad/name").is_err());
}

#[test]
fn a_vch_json_from_before_settings_and_upgrades_still_loads() {
    let old = r#"{
        "name": "old", "target": "local", "docker_host": "tcp://127.0.0.1:1", "port": 1,
        "image_store": "/x/images", "external_image_store": false,
        "insecure_registries": ["r:5000"], "created": "2024-01-01T00:00:00Z",
        "version": "0.1.0"
    }"#;
    let c: VchConfig = serde_json::from_str(old).unwrap();
    assert_eq!(c.settings.insecure_registries, vec!["r:5000".to_string()]);
    assert_eq!(c.settings.debug, 0);
    assert_eq!(c.tls.mode, crate::tls::TlsMode::NoTls);
    assert_eq!(c.previous_version, None);
    assert!(c.container_networks.is_empty());
    // Written back flat, as before, and without container networks when there are none.
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["insecure_registries"][0], "r:5000");
    assert!(v.get("settings").is_none());
    assert!(v.get("container_networks").is_none());
}

#[test]
fn container_networks_are_recorded_and_read_back() {
    let mut c: VchConfig = serde_json::from_value(serde_json::json!({
        "name": "v", "target": "local", "docker_host": "tcp://127.0.0.1:1", "port": 1,
        "image_store": "/i", "external_image_store": false, "created": "", "version": "0.1.0"
    }))
    .unwrap();
    c.container_networks = vec![vch_config::ContainerNetwork {
        name: "routable".into(),
        source: "lab/br0".into(),
        gateway: Some("10.9.0.1/24".into()),
        ip_range: Some("10.9.0.100-10.9.0.120".into()),
        dns: vec!["10.9.0.53".parse().unwrap()],
        firewall: vch_config::Firewall::Open,
    }];
    let raw = serde_json::to_string(&c).unwrap();
    assert!(
        raw.contains(r#""container_networks":[{"name":"routable""#),
        "{raw}"
    );
    let back: VchConfig = serde_json::from_str(&raw).unwrap();
    assert_eq!(back, c);
}

#[test]
fn a_second_operation_on_a_vch_is_refused_while_one_runs() {
    let d = tempfile::tempdir().unwrap();
    let layout = Layout::new(Some(d.path().to_path_buf()), "x").unwrap();
    fs::create_dir_all(&layout.dir).unwrap();
    let held = layout.lock("Configure").unwrap();
    let err = layout.lock("Upgrade").err().unwrap().to_string();
    assert_eq!(
        err,
        "Upgrade failed: another upgrade/configure operation is in progress on VCH x"
    );
    drop(held);
    assert!(layout.lock("Upgrade").is_ok());
}
