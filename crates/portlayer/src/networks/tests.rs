use std::net::Ipv4Addr;

use super::*;
use crate::container::{ContainerRecord, ContainerSpec, ContainerState, Status};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn addr(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

fn cidr(s: &str) -> Cidr {
    Cidr::parse(s).unwrap()
}

fn user(name: &str, subnet: &str) -> Network {
    plan(
        NetworkRequest {
            name: name.into(),
            subnet: Some(cidr(subnet)),
            ..Default::default()
        },
        &[],
        &[],
    )
    .unwrap()
}

#[test]
fn addresses_skip_the_network_gateway_broadcast_and_those_in_use() {
    let n = Network::default_bridge();
    assert_eq!(n.allocate(&[]), Some(ip("172.16.0.2")));
    let used = [ip("172.16.0.2"), ip("172.16.0.4")];
    assert_eq!(n.allocate(&used), Some(ip("172.16.0.3")));
    let tiny = user("t", "10.0.0.0/30");
    assert_eq!(tiny.allocate(&[]), Some(ip("10.0.0.2")));
    assert_eq!(tiny.allocate(&[ip("10.0.0.2")]), None, "full");
}

#[test]
fn ip_ranges_and_aux_addresses_bound_what_is_handed_out() {
    let mut n = user("r", "10.5.0.0/16");
    n.ip_range = Some(cidr("10.5.7.0/24"));
    n.aux_addresses.insert("router".into(), ip("10.5.7.1"));
    assert_eq!(n.allocate(&[]), Some(ip("10.5.7.2")));
}

#[test]
fn endpoints_carry_dockers_mac() {
    let e = Network::default_bridge().endpoint(ip("172.16.0.2"));
    assert_eq!(e.mac, "02:42:ac:10:00:02");
    assert_eq!(e.gateway, ip("172.16.0.1"));
    assert_eq!(e.prefix_len, 16);
}

#[test]
fn a_requested_address_is_checked_as_docker_checks_it() {
    let bridge = Network::default_bridge();
    let want = |s: &str| EndpointRequest {
        ip: Some(ip(s)),
        ..Default::default()
    };
    let err = endpoint(&bridge, &want("172.16.0.9"), &[]).unwrap_err();
    assert!(
        err.to_string().contains("user defined networks only"),
        "{err}"
    );
    let n = user("u", "10.9.0.0/24");
    assert_eq!(
        endpoint(&n, &want("10.9.0.9"), &[]).unwrap().ip,
        ip("10.9.0.9")
    );
    for bad in ["10.9.1.9", "10.9.0.1", "10.9.0.255", "10.9.0.0"] {
        let err = endpoint(&n, &want(bad), &[]).unwrap_err();
        assert!(
            err.to_string().contains("no configured subnet"),
            "{bad}: {err}"
        );
    }
    let taken = [n.endpoint(ip("10.9.0.9"))];
    assert_eq!(
        endpoint(&n, &want("10.9.0.9"), &taken),
        Err(NetworkError::AddressInUse)
    );
    // Not taken on another network of the same addresses.
    let mut other = taken[0].clone();
    other.network = "elsewhere".into();
    assert!(endpoint(&n, &want("10.9.0.9"), &[other]).is_ok());
    let mut auto = plan(
        NetworkRequest {
            name: "auto".into(),
            ..Default::default()
        },
        &[],
        &[cidr("172.17.0.0/16")],
    )
    .unwrap();
    let err = endpoint(&auto, &want("172.17.0.9"), &[]).unwrap_err();
    assert!(err.to_string().contains("user configured subnets"), "{err}");
    auto.user_subnet = true;
    assert!(endpoint(&auto, &want("172.17.0.9"), &[]).is_ok());
}

#[test]
fn aliases_belong_to_user_networks() {
    let req = EndpointRequest {
        aliases: vec!["db".into()],
        ..Default::default()
    };
    let err = endpoint(&Network::default_bridge(), &req, &[]).unwrap_err();
    assert!(err.to_string().contains("network-scoped alias"), "{err}");
    let e = endpoint(&user("u", "10.9.0.0/24"), &req, &[]).unwrap();
    assert_eq!(e.aliases, ["db"]);
}

#[test]
fn plans_take_the_next_free_pool_and_refuse_overlaps() {
    let pools = [
        cidr("172.16.0.0/16"),
        cidr("172.17.0.0/16"),
        cidr("172.18.0.0/16"),
    ];
    let existing = vec![Network::default_bridge(), user("a", "172.17.5.0/24")];
    let req = |name: &str| NetworkRequest {
        name: name.into(),
        ..Default::default()
    };
    let n = plan(req("b"), &existing, &pools).unwrap();
    assert_eq!(
        n.subnet,
        cidr("172.18.0.0/16"),
        "172.17 overlaps a's subnet"
    );
    assert_eq!(n.gateway, ip("172.18.0.1"));
    assert!(!n.user_subnet && !n.builtin && n.icc);
    assert_eq!(n.id.len(), 64);
    assert_ne!(
        n.backend_name(),
        plan(req("b"), &existing, &pools).unwrap().backend_name()
    );
    let mut all = existing.clone();
    all.push(n);
    let err = plan(req("c"), &all, &pools).unwrap_err();
    assert!(matches!(err, NetworkError::Forbidden(_)), "{err}");
    let mut over = req("d");
    over.subnet = Some(cidr("172.17.0.0/16"));
    assert!(err_text(plan(over, &all, &pools)).contains("Pool overlaps"));
    assert_eq!(
        plan(req("a"), &all, &pools),
        Err(NetworkError::Exists("a".into()))
    );
    assert_eq!(
        plan(req("none"), &all, &pools),
        Err(NetworkError::Exists("none".into()))
    );
}

fn err_text(r: Result<Network, NetworkError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn plans_check_subnet_gateway_range_and_options() {
    let with = |f: &dyn Fn(&mut NetworkRequest)| {
        let mut r = NetworkRequest {
            name: "n".into(),
            subnet: Some(cidr("10.1.0.0/16")),
            ..Default::default()
        };
        f(&mut r);
        plan(r, &[], &[])
    };
    assert!(err_text(with(&|r| r.subnet = Some(cidr("10.1.2.3/16"))))
        .contains("it should be 10.1.0.0/16"));
    assert!(err_text(with(&|r| r.gateway = Some(ip("10.2.0.1"))))
        .contains("no matching subnet for gateway"));
    assert!(err_text(with(&|r| r.gateway = Some(ip("10.1.255.255")))).contains("gateway"));
    assert_eq!(
        with(&|r| r.gateway = Some(ip("10.1.0.254")))
            .unwrap()
            .gateway,
        ip("10.1.0.254")
    );
    assert!(err_text(with(&|r| r.ip_range = Some(cidr("10.2.0.0/24"))))
        .contains("no matching subnet for range"));
    assert!(err_text(with(&|r| {
        r.aux_addresses.insert("x".into(), ip("10.9.0.1"));
    }))
    .contains("aux-address x=10.9.0.1"));
    for bad in ["  ", "a/b", "bell\u{7}", &"n".repeat(129)] {
        let e = err_text(with(&|r| r.name = bad.into()));
        assert!(e.contains("invalid network name"), "{bad:?}: {e}");
    }
    assert!(
        with(&|r| r.name = "test 01".into()).is_ok(),
        "a space, as dockerd"
    );
    assert!(err_text(with(&|r| {
        r.options
            .insert("com.docker.network.driver.mtu".into(), "1400".into());
    }))
    .contains("not supported by vic"));
    let closed = with(&|r| {
        r.options.insert(plan::ICC.into(), "false".into());
    })
    .unwrap();
    assert!(!closed.icc && closed.spec().isolated);
    assert!(closed.user_subnet);
}

#[test]
fn networks_are_found_by_name_id_or_unique_prefix() {
    let a = user("a", "10.1.0.0/16");
    let b = user("b", "10.2.0.0/16");
    let all = [a.clone(), b.clone()];
    assert_eq!(find(&all, "a").unwrap().id, a.id);
    assert_eq!(find(&all, &b.id).unwrap().name, "b");
    assert_eq!(find(&all, &a.id[..20]).unwrap().name, "a");
    assert_eq!(find(&all, "zz"), Err(NetworkError::NoSuch("zz".into())));
}

fn running(name: &str, id: &str, endpoints: Vec<Endpoint>) -> ContainerRecord {
    ContainerRecord {
        id: id.into(),
        created: chrono::Utc::now(),
        spec: ContainerSpec {
            name: name.into(),
            endpoints,
            ..Default::default()
        },
        state: ContainerState {
            status: Status::Running,
            ..Default::default()
        },
    }
}

#[test]
fn names_resolve_per_network_for_containers_on_it() {
    let net = user("app", "10.3.0.0/24");
    let other = user("other", "10.4.0.0/24");
    let mut web = net.endpoint(ip("10.3.0.2"));
    web.aliases = vec!["www".into()];
    // On a network with IPv6 too: its names answer with both addresses.
    web.ipv6 = Some(Endpoint6 {
        ip: "2001:db8::2".parse().unwrap(),
        prefix_len: 64,
        gateway: "2001:db8::1".parse().unwrap(),
    });
    let client = net.endpoint(ip("10.3.0.3"));
    let mut stopped = running(
        "stopped",
        "c".repeat(64).as_str(),
        vec![net.endpoint(ip("10.3.0.4"))],
    );
    stopped.state.status = Status::Exited;
    let records = [
        running("web", &"a".repeat(64), vec![web]),
        running("client", &"b".repeat(64), vec![client]),
        stopped,
        running("far", &"d".repeat(64), vec![other.endpoint(ip("10.4.0.2"))]),
    ];
    let nets = [net.clone(), other.clone()];
    let from = ip("10.3.0.3");
    assert_eq!(
        lookup(records.iter(), &nets, &net, from, "web"),
        Some(vec![addr("10.3.0.2"), addr("2001:db8::2")])
    );
    assert_eq!(
        lookup(records.iter(), &nets, &net, from, "www"),
        Some(vec![addr("10.3.0.2"), addr("2001:db8::2")])
    );
    assert_eq!(
        lookup(records.iter(), &nets, &net, from, "aaaaaaaaaaaa"),
        Some(vec![addr("10.3.0.2"), addr("2001:db8::2")])
    );
    assert_eq!(
        lookup(records.iter(), &nets, &net, from, "stopped"),
        None,
        "not running"
    );
    assert_eq!(
        lookup(records.iter(), &nets, &net, from, "far"),
        None,
        "another network"
    );
    assert_eq!(
        lookup(records.iter(), &nets, &net, ip("10.3.0.99"), "web"),
        None,
        "not a container here"
    );
    assert_eq!(
        lookup(records.iter(), &nets, &other, from, "far"),
        None,
        "asked from the wrong network"
    );
    assert_eq!(
        reverse(records.iter(), &net, ip("10.3.0.2")).as_deref(),
        Some("web")
    );
    assert_eq!(reverse(records.iter(), &net, ip("10.4.0.2")), None);
}

#[test]
fn links_resolve_for_the_linking_container_only_and_on_the_default_bridge() {
    let bridge = Network::default_bridge();
    let db = bridge.endpoint(ip("172.16.0.2"));
    let mut app = bridge.endpoint(ip("172.16.0.3"));
    app.links = vec![Link {
        container: "a".repeat(64),
        alias: "database".into(),
    }];
    let other = bridge.endpoint(ip("172.16.0.4"));
    let records = [
        running("db", &"a".repeat(64), vec![db]),
        running("app", &"b".repeat(64), vec![app]),
        running("other", &"c".repeat(64), vec![other]),
    ];
    let nets = [bridge.clone()];
    let want = Some(vec![addr("172.16.0.2")]);
    assert_eq!(
        lookup(records.iter(), &nets, &bridge, ip("172.16.0.3"), "database"),
        want
    );
    assert_eq!(
        lookup(records.iter(), &nets, &bridge, ip("172.16.0.3"), "db"),
        want
    );
    assert_eq!(
        lookup(records.iter(), &nets, &bridge, ip("172.16.0.4"), "database"),
        None
    );
    assert_eq!(
        lookup(records.iter(), &nets, &bridge, ip("172.16.0.4"), "db"),
        None,
        "bridge names do not resolve"
    );
    assert_eq!(reverse(records.iter(), &bridge, ip("172.16.0.2")), None);
}

#[test]
fn on_a_user_network_a_link_names_whichever_container_has_the_name_now() {
    let net = user("app", "10.7.0.0/24");
    let mut asking = net.endpoint(ip("10.7.0.3"));
    asking.links = vec![Link {
        container: "upstream".into(),
        alias: "bar".into(),
    }];
    let nets = [net.clone()];
    let alone = [running("client", &"b".repeat(64), vec![asking.clone()])];
    assert_eq!(
        lookup(alone.iter(), &nets, &net, ip("10.7.0.3"), "bar"),
        None,
        "no container has the name yet"
    );
    let records = [
        running("client", &"b".repeat(64), vec![asking]),
        running(
            "upstream",
            &"a".repeat(64),
            vec![net.endpoint(ip("10.7.0.9"))],
        ),
    ];
    assert_eq!(
        lookup(records.iter(), &nets, &net, ip("10.7.0.3"), "bar"),
        Some(vec![addr("10.7.0.9")])
    );
}

#[test]
fn a_container_that_left_the_network_it_asks_on_is_answered_for_its_others() {
    let back = user("back", "10.5.0.0/24");
    let front = user("front", "10.6.0.0/24");
    // Started on back (its DNS server is back's gateway), then moved to front only.
    let records = [
        running(
            "roamer",
            &"a".repeat(64),
            vec![front.endpoint(ip("10.6.0.2"))],
        ),
        running("api", &"b".repeat(64), vec![front.endpoint(ip("10.6.0.3"))]),
        running("db", &"c".repeat(64), vec![back.endpoint(ip("10.5.0.3"))]),
    ];
    let nets = [back.clone(), front.clone()];
    assert_eq!(
        lookup(records.iter(), &nets, &back, ip("10.6.0.2"), "api"),
        Some(vec![addr("10.6.0.3")])
    );
    assert_eq!(
        lookup(records.iter(), &nets, &back, ip("10.6.0.2"), "db"),
        None,
        "back's names are not its own any more"
    );
    assert_eq!(
        lookup(records.iter(), &nets, &back, ip("10.6.0.9"), "api"),
        None,
        "no container at that address"
    );
}

#[test]
fn a_container_on_two_networks_resolves_names_on_both_asking_on_its_first() {
    let back = user("back", "10.5.0.0/24");
    let front = user("front", "10.6.0.0/24");
    let both = vec![
        back.endpoint(ip("10.5.0.2")),
        front.endpoint(ip("10.6.0.2")),
    ];
    let records = [
        running("two", &"a".repeat(64), both),
        running("api", &"b".repeat(64), vec![front.endpoint(ip("10.6.0.3"))]),
        running(
            "store",
            &"c".repeat(64),
            vec![back.endpoint(ip("10.5.0.3"))],
        ),
    ];
    let nets = [back.clone(), front.clone()];
    let asked = |name: &str| lookup(records.iter(), &nets, &back, ip("10.5.0.2"), name);
    assert_eq!(
        asked("api"),
        Some(vec![addr("10.6.0.3")]),
        "on its second network"
    );
    assert_eq!(asked("store"), Some(vec![addr("10.5.0.3")]));
    // `api`, on front only, does not see `store` on back.
    let from_api = lookup(records.iter(), &nets, &front, ip("10.6.0.3"), "store");
    assert_eq!(from_api, None);
}

#[test]
fn a_vch_holds_a_bounded_number_of_networks() {
    let many: Vec<Network> = (0..plan::MAX_NETWORKS)
        .map(|i| {
            user(
                &format!("n{i}"),
                &format!("10.{}.{}.0/24", i / 256, i % 256),
            )
        })
        .collect();
    let req = NetworkRequest {
        name: "one-more".into(),
        subnet: Some(cidr("11.0.0.0/24")),
        ..Default::default()
    };
    let err = plan(req, &many, &[]).unwrap_err();
    assert!(err.to_string().contains("the most it holds"), "{err}");
}

#[test]
fn an_alias_shared_by_several_containers_answers_all_of_them() {
    let net = user("app", "10.3.0.0/24");
    let shared = |ip_: &str| {
        let mut e = net.endpoint(ip(ip_));
        e.aliases = vec!["api".into()];
        e
    };
    let records = [
        running("a1", &"a".repeat(64), vec![shared("10.3.0.2")]),
        running("a2", &"b".repeat(64), vec![shared("10.3.0.3")]),
        running(
            "client",
            &"c".repeat(64),
            vec![net.endpoint(ip("10.3.0.4"))],
        ),
    ];
    let nets = [net.clone()];
    let mut orders = std::collections::HashSet::new();
    for _ in 0..64 {
        let got = lookup(records.iter(), &nets, &net, ip("10.3.0.4"), "api").unwrap();
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, [ip("10.3.0.2"), ip("10.3.0.3")]);
        orders.insert(got);
    }
    assert_eq!(orders.len(), 2, "both orders come up in 64 answers");
}

#[test]
fn a_mac_address_asked_for_is_the_endpoints_and_no_other_takes_it() {
    let net = user("m", "10.8.0.0/24");
    let ask = EndpointRequest {
        mac: Some("02:42:0a:08:00:05".into()),
        ..Default::default()
    };
    let e = endpoint(&net, &ask, &[]).unwrap();
    assert_eq!(
        (e.mac.as_str(), e.ip),
        ("02:42:0a:08:00:05", ip("10.8.0.2"))
    );
    // Another endpoint may not have it, given or as Docker's MAC of its address.
    let again = endpoint(&net, &ask, std::slice::from_ref(&e)).unwrap_err();
    assert!(
        again.to_string().contains("is in use on network m"),
        "{again}"
    );
    let taken = [e];
    let mut used = Vec::new();
    for _ in 0..4 {
        let next = endpoint(
            &net,
            &EndpointRequest::default(),
            &[taken.as_slice(), &used].concat(),
        );
        used.push(next.unwrap());
    }
    let ips: Vec<Ipv4Addr> = used.iter().map(|e| e.ip).collect();
    assert_eq!(
        ips,
        [
            ip("10.8.0.3"),
            ip("10.8.0.4"),
            ip("10.8.0.6"),
            ip("10.8.0.7")
        ]
    );
}
