use super::*;

fn sample() -> ApplianceConfig {
    ApplianceConfig {
        schema: SCHEMA,
        name: "vch1".into(),
        state_dir: "/var/lib/vic/vch/vch1".into(),
        listen: "127.0.0.1:2376".parse().unwrap(),
        image_store: "/var/lib/vic/vch/vch1/images".into(),
        backend: BackendConfig::Local {
            kernel: "/var/lib/vic/vch/vch1/appliance/vmlinux".into(),
            initrd: "/var/lib/vic/vch/vch1/appliance/initramfs.cpio".into(),
        },
        tls: Some(TlsFiles {
            cert: "/c/server-cert.pem".into(),
            key: "/c/server-key.pem".into(),
            client_cas: vec!["/c/ca.pem".into()],
        }),
        settings: Settings {
            insecure_registries: vec!["127.0.0.1:5000".into()],
            dns_servers: vec!["10.0.0.2".into()],
            memory_mib: Some(2048),
            volume_stores: vec![VolumeStore {
                label: "default".into(),
                dir: "/v/default".into(),
            }],
            container_name_convention: Some("vch-{name}-{id}".into()),
            ..Settings::default()
        },
        networks: Vec::new(),
    }
}

fn doc(c: &ApplianceConfig) -> serde_json::Value {
    serde_json::to_value(c).unwrap()
}

fn load_value(v: &serde_json::Value) -> Result<ApplianceConfig, ConfigError> {
    load(&serde_json::to_vec(v).unwrap())
}

#[test]
fn a_document_round_trips_through_a_file() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("appliance.json");
    let c = sample();
    c.save(&path).unwrap();
    assert_eq!(load_file(&path).unwrap(), c);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the owner's alone");
    assert!(!path.with_extension("json.tmp").exists());
}

#[test]
fn the_backend_is_tagged_by_kind() {
    let v = doc(&sample());
    assert_eq!(v["backend"]["kind"], "local");
    let mut other = v.clone();
    other["backend"] = serde_json::json!({"kind": "hyperv", "url": "https://hv"});
    let err = load_value(&other).unwrap_err().to_string();
    assert!(err.contains("unknown variant `hyperv`"), "{err}");
    // A vSphere backend's fields are checked like every other's.
    other["backend"] = serde_json::json!({"kind": "vsphere", "url": "https://vc"});
    let err = load_value(&other).unwrap_err().to_string();
    assert!(err.contains("unknown field `url`"), "{err}");
    other["backend"] = serde_json::json!({
        "kind": "vsphere", "host": "vc:443", "thumbprint": "AB", "user": "u",
        "password_file": "pw", "folder": "Folder:f", "pool": "ResourcePool:p",
        "datacenter": "DC0", "datastore": "ds", "image_store": "[ds] vch/images",
        "channel": "10.0.0.2:2377",
    });
    let err = load_value(&other).unwrap_err().to_string();
    assert!(
        err.contains("backend.password_file must be an absolute path"),
        "{err}"
    );
    other["backend"]["password_file"] = "/run/vic/pw".into();
    other["settings"]["volume_stores"] = serde_json::json!([]);
    let config = load_value(&other).unwrap();
    assert!(matches!(config.backend, BackendConfig::Vsphere(ref b) if b.channel.port() == 2377));
    // Volume stores are datastore paths on vSphere, host directories locally.
    other["settings"]["volume_stores"] = serde_json::json!([{"label": "default", "dir": "/vols"}]);
    let err = load_value(&other).unwrap_err().to_string();
    assert!(
        err.contains("volume store default: /vols is not a datastore path ([DATASTORE] path) on a vSphere target"),
        "{err}"
    );
    other["settings"]["volume_stores"][0]["dir"] = "[ds] vch/vols".into();
    let config = load_value(&other).unwrap();
    assert_eq!(
        config.settings.volume_stores[0].flag_value(),
        "ds/vch/vols:default"
    );
    let mut local = doc(&sample());
    local["settings"]["volume_stores"][0]["dir"] = "[ds] vch/vols".into();
    let err = load_value(&local).unwrap_err().to_string();
    assert!(
        err.contains("volume store default: [ds] vch/vols is not a directory of the VCH's host"),
        "{err}"
    );
}

#[test]
fn unknown_fields_are_refused_at_every_level() {
    for (at, key) in [
        ("", "portz"),
        ("/settings", "max_containerz"),
        ("/backend", "bios"),
        ("/tls", "ciphers"),
    ] {
        let mut v = doc(&sample());
        v.pointer_mut(if at.is_empty() { "" } else { at })
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert(key.into(), serde_json::json!(1));
        let err = load_value(&v).unwrap_err().to_string();
        assert!(err.contains(key), "{at}/{key}: {err}");
    }
}

#[test]
fn schemas_other_than_this_one_are_refused_with_what_to_do() {
    let mut v = doc(&sample());
    v["schema"] = 2.into();
    let err = load_value(&v).unwrap_err().to_string();
    assert!(
        err.contains("schema 2, newer than this appliance reads (1)"),
        "{err}"
    );
    v["schema"] = 0.into();
    assert!(matches!(load_value(&v), Err(ConfigError::Unknown(0))));
    v.as_object_mut().unwrap().remove("schema");
    assert!(matches!(load_value(&v), Err(ConfigError::NoSchema)));
    assert!(matches!(load(b"{not json"), Err(ConfigError::Parse(_))));
}

#[test]
fn settings_are_checked_as_their_flags_are() {
    type Spoil = fn(&mut ApplianceConfig);
    let bad: [(Spoil, &str); 7] = [
        (
            |c| c.settings.dns_servers = vec!["8.8.8.x".into()],
            "Invalid DNS server specified: 8.8.8.x",
        ),
        (
            |c| c.settings.container_name_convention = Some("fixed".into()),
            "must include {id} or {name} token",
        ),
        (
            |c| c.settings.volume_stores[0].dir = "relative".into(),
            "volume store default: the directory relative is not absolute",
        ),
        (
            |c| {
                let again = c.settings.volume_stores[0].clone();
                c.settings.volume_stores.push(again)
            },
            "volume store default is given twice",
        ),
        (|c| c.settings.debug = 4, "debug level 4 is out of range"),
        (
            |c| c.image_store = "images".into(),
            "image_store must be an absolute path",
        ),
        (|c| c.name.clear(), "the VCH has no name"),
    ];
    for (spoil, want) in bad {
        let mut c = sample();
        spoil(&mut c);
        let err = load_value(&doc(&c)).unwrap_err().to_string();
        assert!(err.contains(want), "want {want:?}, got {err}");
    }
}

#[test]
fn networks_default_to_none_and_round_trip() {
    let mut v = doc(&sample());
    v.as_object_mut().unwrap().remove("networks");
    assert!(load_value(&v).unwrap().networks.is_empty());
    let mut c = sample();
    c.networks.push(ContainerNetwork {
        name: "public".into(),
        source: "br0".into(),
        gateway: Some("10.1.0.1/24".into()),
        ip_range: None,
        dns: vec!["10.1.0.53".parse().unwrap()],
        firewall: Firewall::Outbound,
    });
    assert_eq!(load_value(&doc(&c)).unwrap(), c);
}

fn cn(source: &str, gateway: Option<&str>, range: Option<&str>) -> ContainerNetwork {
    ContainerNetwork {
        name: "routable".into(),
        source: source.into(),
        gateway: gateway.map(Into::into),
        ip_range: range.map(Into::into),
        dns: Vec::new(),
        firewall: Firewall::default(),
    }
}

#[test]
fn container_networks_take_vics_forms_and_refuse_what_cannot_work() {
    let ip = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap();
    let whole = cn("br0", Some("10.9.0.1/24"), None);
    assert_eq!(whole.ip_span().unwrap(), (ip("10.9.0.1"), ip("10.9.0.254")));
    assert_eq!(whole.bridge(), (None, "br0"));
    let dashed = cn(
        "testns/br0",
        Some("10.9.0.1/24"),
        Some("10.9.0.100-10.9.0.120"),
    );
    assert_eq!(
        dashed.ip_span().unwrap(),
        (ip("10.9.0.100"), ip("10.9.0.120"))
    );
    assert_eq!(dashed.bridge(), (Some("testns"), "br0"));
    let cidr = cn("br0", Some("10.9.0.1/24"), Some("10.9.0.128/25"));
    assert_eq!(
        cidr.ip_span().unwrap(),
        (ip("10.9.0.128"), ip("10.9.0.254"))
    );
    assert_eq!(Firewall::default(), Firewall::Published, "VIC's default");
    assert_eq!("peers".parse::<Firewall>().unwrap(), Firewall::Peers);
    assert!("wide".parse::<Firewall>().is_err());

    let no_gateway = cn("br0", None, None)
        .check(Sources::HostBridges)
        .unwrap_err()
        .to_string();
    assert!(
        no_gateway.contains("--container-network-gateway br0:GATEWAY/PREFIX is required"),
        "{no_gateway}"
    );
    let outside =
        cn("br0", Some("10.9.0.1/24"), Some("10.9.1.1-10.9.1.9")).check(Sources::HostBridges);
    assert!(outside
        .unwrap_err()
        .to_string()
        .contains("not inside the gateway's subnet"));
    for bad in ["", "a/b/c", "way-too-long-bridge-name", "br 0"] {
        assert!(
            cn(bad, Some("10.9.0.1/24"), None)
                .check(Sources::HostBridges)
                .is_err(),
            "{bad:?}"
        );
    }
    let mut named = whole.clone();
    named.name = "bridge".into();
    assert!(
        named.check(Sources::HostBridges).is_err(),
        "Docker's own names are taken"
    );
    let twice = check_container_networks(&[whole.clone(), whole], Sources::HostBridges);
    assert!(twice
        .unwrap_err()
        .to_string()
        .contains("share a name or a host network"));
}

#[test]
fn volume_stores_take_vics_dir_colon_label_form() {
    let cwd = std::path::Path::new("/work");
    let vs = parse_volume_store("/data/vols:default", cwd).unwrap();
    assert_eq!(vs.label, "default");
    assert_eq!(vs.dir, PathBuf::from("/data/vols"));
    assert_eq!(vs.flag_value(), "/data/vols:default");
    for bad in ["/data/vols", "/data/vols:", ":x", "/d:bad label"] {
        assert_eq!(
            parse_volume_store(bad, cwd),
            Err(SettingError::VolumeStoreFormat),
            "{bad}"
        );
    }
    assert_eq!(
        parse_volume_store("rel:lbl", cwd).unwrap().dir,
        PathBuf::from("/work/rel")
    );
}

#[test]
fn name_conventions_are_checked_with_vics_words() {
    assert_eq!(
        check_name_convention("fixed").unwrap_err().to_string(),
        "Container name convention must include {id} or {name} token"
    );
    assert!(check_name_convention("a,b-{id}").is_err());
    assert_eq!(
        check_name_convention(&format!("{}{{id}}", "x".repeat(70)))
            .unwrap_err()
            .to_string(),
        "Container name convention exceeds maximum length (68, discounting tokens)"
    );
    assert!(check_name_convention("vch-{name}-{id}").is_ok());
    assert_eq!(sample().settings.storage_quota_bytes(), None);
    let q = Settings {
        storage_quota_gib: Some(2),
        ..Settings::default()
    };
    assert_eq!(q.storage_quota_bytes(), Some(2 << 30));
}

#[test]
fn bridge_ranges_are_ipv4_networks_of_slash_16_or_larger() {
    let r = Settings::default().bridge_range().unwrap();
    assert_eq!(
        r.subnet(0),
        Some("172.16.0.0".parse().unwrap()),
        "VIC's default"
    );
    assert_eq!(r.subnet(15), Some("172.31.0.0".parse().unwrap()));
    assert_eq!(r.subnet(16), None);
    let r = parse_bridge_range("10.8.0.0/16").unwrap();
    assert_eq!(r.subnet(0), Some("10.8.0.0".parse().unwrap()));
    assert_eq!(r.subnet(1), None);
    for bad in [
        "10.8.0.0/24",
        "10.8.1.0/16",
        "10.8.0.0",
        "fd00::/8",
        "10.8.0.0/x",
        "10.8.0.0/0",
    ] {
        assert_eq!(
            parse_bridge_range(bad),
            Err(SettingError::BridgeRange(bad.into())),
            "{bad}"
        );
    }
    let mut c = sample();
    c.settings.bridge_network_range = Some("192.168.0.0/24".into());
    let err = load_value(&doc(&c)).unwrap_err().to_string();
    assert!(
        err.contains("Invalid bridge network range 192.168.0.0/24"),
        "{err}"
    );
}
