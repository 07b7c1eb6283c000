use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::settings::{Settings, VolumeStore};
use crate::tls::{TlsMode, TlsRecord};

fn config(settings: Settings, tls: TlsMode) -> VchConfig {
    VchConfig {
        name: "v".into(),
        target: "local".into(),
        docker_host: "tcp://127.0.0.1:2376".into(),
        port: 2376,
        fixed_port: false,
        image_store: "/s/vch/v/images".into(),
        external_image_store: false,
        settings,
        tls: TlsRecord {
            mode: tls,
            ..TlsRecord::default()
        },
        created: String::new(),
        version: "0.1.0-x".into(),
        previous_version: None,
        upgraded: None,
        container_networks: Vec::new(),
    }
}

fn every_setting() -> Settings {
    Settings {
        insecure_registries: vec!["r:5000".into()],
        whitelist_registries: vec!["w:5000".into()],
        registry_ca: Some("/s/vch/v/registry-ca.pem".into()),
        dns_servers: vec!["10.0.0.53".into()],
        containers: Some(3),
        memory_mib: Some(2048),
        cpus: Some(2),
        storage_quota_gib: Some(20),
        endpoint_memory_mib: Some(4096),
        volume_stores: vec![VolumeStore {
            label: "default".into(),
            dir: "/vols".into(),
        }],
        bind_paths: vec![vch_config::BindPath {
            dir: "/srv".into(),
            readonly: true,
        }],
        container_name_convention: Some("vch-{name}-{id}".into()),
        debug: 3,
        bridge_network_range: Some("10.8.0.0/16".into()),
        cold_boot: true,
        admin_port: Some(2378),
        ops_user: Some("ops".into()),
        ops_password_hash: Some("pbkdf2-sha256$1$00$00".into()),
    }
}

fn strings(a: Vec<OsString>) -> Vec<String> {
    a.into_iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect()
}

/// A stand-in appliance binary: a script that prints `help`.
/// A stand-in `vic-appliance` printing `help`. Written by a child process: a file this test
/// process held open for writing could leak into a child another test forks meanwhile, and
/// running it would then fail with "Text file busy".
fn binary(dir: &Path, help: &str) -> PathBuf {
    let exe = dir.join("vic-appliance");
    let script = format!("#!/bin/sh\necho '{help}'\n");
    let written = std::process::Command::new("sh")
        .args([
            "-c",
            "printf '%s' \"$1\" > \"$2\" && chmod 755 \"$2\"",
            "sh",
        ])
        .arg(&script)
        .arg(&exe)
        .status()
        .unwrap();
    assert!(written.success());
    exe
}

#[test]
fn the_document_carries_every_setting_and_passes_its_own_checks() {
    let layout = Layout::new(Some("/s".into()), "v").unwrap();
    let doc = appliance_config(&layout, &config(every_setting(), TlsMode::Tlsverify));
    doc.check().unwrap();
    assert_eq!(doc.settings, every_setting());
    assert_eq!(doc.listen.to_string(), "127.0.0.1:2376");
    assert_eq!(doc.state_dir, PathBuf::from("/s/vch/v"));
    assert_eq!(
        doc.backend,
        BackendConfig::Local {
            kernel: "/s/vch/v/appliance/vmlinux".into(),
            initrd: "/s/vch/v/appliance/initramfs.cpio".into(),
        }
    );
    let tls = doc.tls.unwrap();
    assert_eq!(tls.cert, PathBuf::from("/s/vch/v/certs/server-cert.pem"));
    assert_eq!(
        tls.client_cas,
        vec![PathBuf::from("/s/vch/v/certs/client-ca.pem")]
    );
    let plain = appliance_config(&layout, &config(Settings::default(), TlsMode::NoTls));
    assert_eq!(plain.tls, None);
    assert!(plain.networks.is_empty());
}

#[test]
fn the_document_carries_the_container_networks() {
    let layout = Layout::new(Some("/s".into()), "v").unwrap();
    let mut c = config(Settings::default(), TlsMode::NoTls);
    c.container_networks = vec![vch_config::ContainerNetwork {
        name: "routable".into(),
        source: "br0".into(),
        gateway: Some("10.9.0.1/24".into()),
        ip_range: None,
        dns: vec!["10.9.0.53".parse().unwrap()],
        firewall: vch_config::Firewall::Peers,
    }];
    let doc = appliance_config(&layout, &c);
    doc.check().unwrap();
    assert_eq!(doc.networks, c.container_networks);
}

#[test]
fn an_appliance_that_reads_the_document_gets_it_in_a_file() {
    let d = tempfile::tempdir().unwrap();
    let layout = Layout::new(Some(d.path().to_path_buf()), "v").unwrap();
    std::fs::create_dir_all(&layout.dir).unwrap();
    let exe = binary(d.path(), "Usage: vic-appliance [OPTIONS] --config <CONFIG>");
    let c = config(every_setting(), TlsMode::NoTlsverify);
    let args = strings(command_line(&exe, &layout, &c).unwrap());
    let file = layout.appliance_config();
    assert_eq!(args, ["--config", file.to_str().unwrap()]);
    let written = vch_config::load_file(&file).unwrap();
    assert_eq!(written, appliance_config(&layout, &c));
}

#[test]
fn an_appliance_from_before_the_document_gets_flags() {
    let d = tempfile::tempdir().unwrap();
    let layout = Layout::new(Some("/s".into()), "v").unwrap();
    let exe = binary(d.path(), "Usage: vic-appliance [OPTIONS] --name <NAME>");
    let a =
        strings(command_line(&exe, &layout, &config(Settings::default(), TlsMode::NoTls)).unwrap());
    assert_eq!(
        a,
        [
            "--name",
            "v",
            "--state-dir",
            "/s/vch/v",
            "--listen",
            "127.0.0.1:2376",
            "--image-store",
            "/s/vch/v/images",
            "--kernel",
            "/s/vch/v/appliance/vmlinux",
            "--initrd",
            "/s/vch/v/appliance/initramfs.cpio"
        ]
    );
    assert!(!layout.appliance_config().exists());
}

#[test]
fn every_setting_becomes_a_flag_of_an_older_appliance() {
    let layout = Layout::new(Some("/s".into()), "v").unwrap();
    let doc = appliance_config(&layout, &config(every_setting(), TlsMode::Tlsverify));
    let a = strings(legacy_args(&doc)).join(" ");
    for want in [
        "--insecure-registry r:5000",
        "--whitelist-registry w:5000",
        "--registry-ca /s/vch/v/registry-ca.pem",
        "--max-containers 3",
        "--memory-limit 2048",
        "--cpu-limit 2",
        "--storage-quota 20",
        "--dns-server 10.0.0.53",
        "--volume-store default:/vols",
        "--container-name-convention vch-{name}-{id}",
        "--tls-cert /s/vch/v/certs/server-cert.pem --tls-key /s/vch/v/certs/server-key.pem --tls-ca /s/vch/v/certs/client-ca.pem",
    ] {
        assert!(a.contains(want), "{want} missing from {a}");
    }
    assert!(
        !a.contains("4096"),
        "endpoint memory is not an appliance flag"
    );
}

#[test]
fn a_binary_that_does_not_answer_is_given_up_on() {
    let d = tempfile::tempdir().unwrap();
    let exe = d.path().join("vic-appliance");
    std::fs::write(&exe, "#!/bin/sh\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A file just written may not run at once: another test thread that forks meanwhile
    // holds its descriptor until its own exec (ETXTBSY, "Text file busy").
    let mut err = String::new();
    for _ in 0..50 {
        err = format!(
            "{:#}",
            takes_config(&exe, Duration::from_millis(300)).unwrap_err()
        );
        if !err.contains("Text file busy") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(err.contains("did not print its help within 0.3 s"), "{err}");
}
