use clap::Parser;

use super::*;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    nets: ContainerNetworkArgs,
}

fn args(flags: &[&str]) -> ContainerNetworkArgs {
    let argv = std::iter::once("vic-machine").chain(flags.iter().copied());
    Cli::try_parse_from(argv).unwrap().nets
}

fn nets(flags: &[&str]) -> anyhow::Result<Vec<ContainerNetwork>> {
    args(flags).networks()
}

fn routable() -> ContainerNetwork {
    ContainerNetwork {
        name: "routable".into(),
        source: "br0".into(),
        gateway: Some("10.9.0.1/24".into()),
        ip_range: None,
        dns: Vec::new(),
        firewall: Firewall::Published,
    }
}

#[test]
fn the_alias_defaults_to_the_bridge_and_is_split_off_at_the_last_colon() {
    let a = args(&[
        "--cn",
        "br0",
        "--container-network",
        "lab/br1",
        "--cn",
        "lab/br2:routable",
    ]);
    let got: Vec<(&str, &str)> = a
        .networks
        .iter()
        .map(|h| (h.source.as_str(), h.alias.as_str()))
        .collect();
    assert_eq!(
        got,
        [("br0", "br0"), ("lab/br1", "br1"), ("lab/br2", "routable")]
    );
    assert_eq!(
        parse_network("a:b:c").unwrap(),
        HostNet {
            source: "a:b".into(),
            alias: "c".into()
        }
    );
}

#[test]
fn the_other_flags_split_at_the_first_colon() {
    let a = args(&[
        "--cng",
        "lab/br1:10.9.0.1/24",
        "--container-network-ip-range",
        "lab/br1:10.9.0.100-10.9.0.120",
        "--cnd",
        "br0:2001:db8::1",
        "--cnf",
        "br0:open",
    ]);
    assert_eq!(a.gateways[0].hostnet, "lab/br1");
    assert_eq!(a.gateways[0].value, "10.9.0.1/24");
    assert_eq!(a.ip_ranges[0].value, "10.9.0.100-10.9.0.120");
    assert_eq!(a.dns[0].hostnet, "br0");
    assert_eq!(a.dns[0].value, "2001:db8::1".parse::<IpAddr>().unwrap());
    assert_eq!(a.firewalls[0].value, Firewall::Open);
    assert!(a.any());
    assert!(!args(&[]).any());
}

#[test]
fn values_without_a_hostnet_or_with_a_bad_level_are_refused_by_the_parser() {
    let err = Cli::try_parse_from(["vic-machine", "--cng", "10.9.0.1/24"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"10.9.0.1/24\" is not HOSTNET:GATEWAY/PREFIX"),
        "{err}"
    );
    let err = Cli::try_parse_from(["vic-machine", "--cnf", "br0:wide"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown trust level \"wide\""), "{err}");
    let err = Cli::try_parse_from(["vic-machine", "--cnd", "br0:x"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("Invalid DNS server specified: x"), "{err}");
}

#[test]
fn the_flags_of_one_network_are_assembled_into_it() {
    let got = nets(&[
        "--cn",
        "lab/br1:routable",
        "--cng",
        "lab/br1:10.9.0.1/24",
        "--cnr",
        "lab/br1:10.9.0.100-10.9.0.120",
        "--cnd",
        "lab/br1:10.9.0.53",
        "--cnd",
        "lab/br1:10.9.0.54",
        "--cnf",
        "lab/br1:peers",
        "--cn",
        "br0",
        "--cng",
        "br0:10.8.0.1/16",
    ])
    .unwrap();
    assert_eq!(
        got[0],
        ContainerNetwork {
            name: "routable".into(),
            source: "lab/br1".into(),
            gateway: Some("10.9.0.1/24".into()),
            ip_range: Some("10.9.0.100-10.9.0.120".into()),
            dns: vec!["10.9.0.53".parse().unwrap(), "10.9.0.54".parse().unwrap()],
            firewall: Firewall::Peers,
        }
    );
    assert_eq!(got[1].name, "br0");
    assert_eq!(got[1].gateway.as_deref(), Some("10.8.0.1/16"));
    assert_eq!(got[1].firewall, Firewall::Published, "VIC's default");
}

#[test]
fn a_flag_naming_a_network_no_container_network_gives_is_refused() {
    let err = nets(&[
        "--cn",
        "br0",
        "--cng",
        "br0:10.9.0.1/24",
        "--cng",
        "br9:10.8.0.1/24",
    ])
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "--container-network-gateway names br9, which no --container-network gives"
    );
    let err = nets(&["--cnf", "lab/br1:open"]).unwrap_err().to_string();
    assert_eq!(
        err,
        "--container-network-firewall names lab/br1, which no --container-network gives"
    );
    let err = nets(&[
        "--cn",
        "br0",
        "--cng",
        "br0:10.9.0.1/24",
        "--cng",
        "br0:10.9.0.1/16",
    ])
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "--container-network-gateway names br0 twice: give one value a network"
    );
}

#[test]
fn the_checks_of_vch_config_are_shown_as_they_are() {
    let err = nets(&["--cn", "br0:routable"]).unwrap_err();
    let check = check_container_networks(
        &[ContainerNetwork {
            gateway: None,
            ..routable()
        }],
        Sources::HostBridges,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), check.to_string());
    let err = nets(&[
        "--cn",
        "br0",
        "--cng",
        "br0:10.9.0.1/24",
        "--cnd",
        "br0:2001:db8::1",
    ])
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "container network br0: DNS server 2001:db8::1 is not IPv4"
    );
}

#[test]
fn configure_keeps_a_network_given_as_it_is_and_adds_a_new_one() {
    let has = vec![routable()];
    assert_eq!(
        add(&has, &[routable()], Sources::HostBridges).unwrap(),
        has,
        "identical: no change"
    );
    let lab = ContainerNetwork {
        name: "lab".into(),
        source: "lab/br1".into(),
        ..routable()
    };
    assert_eq!(
        add(&has, &[routable(), lab.clone()], Sources::HostBridges).unwrap(),
        [routable(), lab]
    );
}

#[test]
fn configure_refuses_to_change_a_network_the_vch_has() {
    let has = vec![routable()];
    let want =
        "container network routable (br0) cannot change: remove and re-create the VCH to change it";
    let other_firewall = ContainerNetwork {
        firewall: Firewall::Open,
        ..routable()
    };
    let other_alias = ContainerNetwork {
        name: "public".into(),
        ..routable()
    };
    let other_bridge = ContainerNetwork {
        source: "br1".into(),
        ..routable()
    };
    for given in [other_firewall, other_alias, other_bridge] {
        assert_eq!(
            add(&has, &[given], Sources::HostBridges)
                .unwrap_err()
                .to_string(),
            want
        );
    }
}

#[test]
fn configure_reports_each_network_it_adds_and_a_rollback_each_it_removes() {
    assert_eq!(
        changes(&[], &[routable()]),
        ["Container network routable added (br0, gateway 10.9.0.1/24, firewall published)"]
    );
    assert_eq!(
        changes(&[routable()], &[]),
        ["Container network routable removed (br0, gateway 10.9.0.1/24, firewall published)"]
    );
    assert!(changes(&[routable()], &[routable()]).is_empty());
}

#[test]
fn inspect_describes_a_network_and_prints_the_flags_that_give_it() {
    let full = ContainerNetwork {
        ip_range: Some("10.9.0.100-10.9.0.120".into()),
        dns: vec!["10.9.0.53".parse().unwrap()],
        firewall: Firewall::Open,
        ..routable()
    };
    assert_eq!(
        describe(&full),
        "routable = br0 (gateway 10.9.0.1/24, range 10.9.0.100-10.9.0.120, dns 10.9.0.53, firewall open)"
    );
    let f: Vec<String> = flags(&[full, routable()])
        .into_iter()
        .map(|(f, v)| format!("--{f}={v}"))
        .collect();
    assert_eq!(
        f,
        [
            "--container-network=br0:routable",
            "--container-network-gateway=br0:10.9.0.1/24",
            "--container-network-ip-range=br0:10.9.0.100-10.9.0.120",
            "--container-network-dns=br0:10.9.0.53",
            "--container-network-firewall=br0:open",
            "--container-network=br0:routable",
            "--container-network-gateway=br0:10.9.0.1/24",
        ]
    );
}

#[test]
fn the_flags_inspect_config_prints_give_the_same_networks() {
    let before = vec![
        ContainerNetwork {
            source: "lab/br1".into(),
            dns: vec!["10.9.0.53".parse().unwrap(), "10.9.0.54".parse().unwrap()],
            firewall: Firewall::Closed,
            ip_range: Some("10.9.0.0/25".into()),
            ..routable()
        },
        ContainerNetwork {
            name: "br0".into(),
            gateway: Some("10.8.0.1/16".into()),
            ..routable()
        },
    ];
    let argv: Vec<String> = flags(&before)
        .into_iter()
        .map(|(f, v)| format!("--{f}={v}"))
        .collect();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    assert_eq!(nets(&argv).unwrap(), before);
}

#[test]
fn on_vsphere_a_network_is_open_and_another_firewall_is_refused() {
    let base = [
        "--container-network",
        "VM Network:public",
        "--container-network-gateway",
        "VM Network:10.9.0.1/24",
    ];
    let open = args(&base).on_vsphere().unwrap();
    assert_eq!(open[0].firewall, Firewall::Open);
    assert_eq!(open[0].source, "VM Network");
    let mut given = base.to_vec();
    given.extend(["--container-network-firewall", "VM Network:open"]);
    assert_eq!(args(&given).on_vsphere().unwrap(), open);
    let mut closed = base.to_vec();
    closed.extend(["--container-network-firewall", "VM Network:closed"]);
    let err = args(&closed).on_vsphere().unwrap_err().to_string();
    assert!(
        err.contains("--container-network-firewall VM Network:closed on a vSphere target is not implemented yet"),
        "{err}"
    );
}
