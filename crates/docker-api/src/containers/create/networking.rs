//! The networks a create asks for: `--network` (`HostConfig.NetworkMode`) and the endpoints
//! of `NetworkingConfig`, each with what it asks (`--ip`, `--network-alias`, `--link`).
//! Which networks exist, and whether an address or alias fits one, the port layer decides
//! when it hands out the endpoints.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use portlayer::networks::{EndpointRequest, Link, BRIDGE};

use super::config::{EndpointSettings, NetworkingConfig};
use super::host_config::HostConfig;
use super::refusal::{Refusals, Refused};

const OWN_STACK: &str =
    "a container is its own VM with its own network stack, which it cannot share with the host or another container";

/// The networks of a new container, its first network first, and what it asks of each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networking {
    pub networks: Vec<String>,
    pub requests: BTreeMap<String, EndpointRequest>,
}

/// `--network` as given, `default` when empty.
pub fn mode(h: &HostConfig) -> String {
    match h.network_mode.as_deref().unwrap_or_default() {
        "" => "default".to_string(),
        m => m.to_string(),
    }
}

/// Options no network mode of vic can apply.
pub fn refusals(r: &mut Refusals, h: &HostConfig, n: &NetworkingConfig) {
    let mode = mode(h);
    let shared = mode == "host" || mode.starts_with("container:");
    r.check(shared, format!("--network {mode}"), OWN_STACK);
    for (name, ep) in n.endpoints_config.iter().flatten() {
        if let Some(ep) = ep {
            endpoint_refusals(r, name, ep);
        }
    }
}

/// What one endpoint asks that vic does not do.
fn endpoint_refusals(r: &mut Refusals, name: &str, ep: &EndpointSettings) {
    {
        let opts = ep.driver_opts.as_ref().is_some_and(|o| !o.is_empty());
        r.check(
            opts,
            format!("--network {name} driver-opt"),
            "bridge endpoints take no options",
        );
        r.check(
            ep.gw_priority.is_some_and(|p| p != 0),
            format!("--network {name} gw-priority"),
            "the first network carries the default route",
        );
        let names = ep.dns_names.as_ref().is_some_and(|d| !d.is_empty());
        r.check(
            names,
            "EndpointSettings.DNSNames",
            "it is set by the engine, not by a client",
        );
    }
}

fn s(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or_default()
}

/// What `docker network connect` asks of the endpoint on network `name`.
pub fn connect_request(
    name: &str,
    ep: Option<&EndpointSettings>,
) -> Result<EndpointRequest, Refused> {
    let mut r = Refusals::default();
    if let Some(ep) = ep {
        endpoint_refusals(&mut r, name, ep);
    }
    r.finish()?;
    request(ep)
}

/// The networks and endpoint requests of a create whose refusals were checked; `mac` is
/// the container's `--mac-address` (`Config.MacAddress`), its first network's.
pub fn plan(h: &HostConfig, n: &NetworkingConfig, mac: &str) -> Result<Networking, Refused> {
    let mode = mode(h);
    let first = match mode.as_str() {
        "default" => BRIDGE.to_string(),
        m => m.to_string(),
    };
    let endpoints = n.endpoints_config.clone().unwrap_or_default();
    let is_first = |name: &str| name == first || (first == BRIDGE && name == "default");
    if first == "none" {
        if !mac.is_empty() {
            return Err(Refused::Invalid(
                "conflicting options: mac-address and the network mode".into(),
            ));
        }
        if let Some(other) = endpoints.keys().find(|k| !is_first(k)) {
            return Err(Refused::Invalid(format!(
                "conflicting options: the container cannot be connected to network {other} and have no network (--network none)"
            )));
        }
        if !h.links.as_ref().is_none_or(Vec::is_empty) {
            return Err(Refused::Invalid(
                "conflicting options: --link and no network (--network none)".into(),
            ));
        }
        return Ok(Networking::default());
    }
    let mut out = Networking {
        networks: vec![first.clone()],
        requests: BTreeMap::new(),
    };
    let mut first_req = EndpointRequest::default();
    for (name, ep) in &endpoints {
        let req = request(ep.as_ref())?;
        if is_first(name) {
            first_req = req;
        } else {
            out.networks.push(name.clone());
            out.requests.insert(name.clone(), req);
        }
    }
    for l in h.links.iter().flatten() {
        first_req.links.push(link(l)?);
    }
    if !mac.is_empty() {
        first_req.mac = Some(mac_address(mac)?);
    }
    if first_req != EndpointRequest::default() {
        out.requests.insert(first, first_req);
    }
    Ok(out)
}

/// What one endpoint of `NetworkingConfig` asks.
fn request(ep: Option<&EndpointSettings>) -> Result<EndpointRequest, Refused> {
    let Some(ep) = ep else {
        return Ok(EndpointRequest::default());
    };
    let ip = match ep.ipam_config.as_ref().map(|i| s(&i.ipv4_address)) {
        None | Some("") => None,
        Some(ip) => Some(
            ip.parse::<Ipv4Addr>()
                .map_err(|_| Refused::Invalid(format!("invalid IPv4 address: {ip}")))?,
        ),
    };
    let mac = match s(&ep.mac_address) {
        "" => None,
        m => Some(mac_address(m)?),
    };
    let ipv6 = match ep.ipam_config.as_ref().map(|i| s(&i.ipv6_address)) {
        None | Some("") => None,
        Some(ip) => Some(
            ip.parse::<std::net::Ipv6Addr>()
                .map_err(|_| Refused::Invalid(format!("invalid IPv6 address: {ip}")))?,
        ),
    };
    let link_local = (ep.ipam_config.as_ref())
        .and_then(|i| i.link_local_ips.as_deref())
        .unwrap_or_default();
    Ok(EndpointRequest {
        ip,
        ipv6,
        mac,
        link_local: link_local_ips(link_local)?,
        aliases: ep.aliases.clone().unwrap_or_default(),
        links: ep
            .links
            .iter()
            .flatten()
            .map(|l| link(l))
            .collect::<Result<_, _>>()?,
    })
}

/// `--mac-address` checked and written as the VM's interface takes it (lowercase): six
/// bytes, a unicast address, none of the VCH's own spare interfaces' (`02:fe:…`).
fn mac_address(m: &str) -> Result<String, Refused> {
    let invalid = || Refused::Invalid(format!("invalid MAC address: {m}"));
    let bytes: Vec<u8> = m
        .split(':')
        .map(|b| {
            (b.len() == 2)
                .then(|| u8::from_str_radix(b, 16).ok())
                .flatten()
        })
        .collect::<Option<_>>()
        .ok_or_else(invalid)?;
    match bytes.as_slice() {
        [b0, ..] if bytes.len() == 6 && b0 & 1 == 1 => Err(Refused::Invalid(format!(
            "invalid MAC address: {m} is a multicast address"
        ))),
        [0x02, 0xfe, ..] => Err(Refused::Invalid(format!(
            "invalid MAC address: {m}: 02:fe:… are the VCH's own"
        ))),
        _ if bytes.len() == 6 => Ok(m.to_ascii_lowercase()),
        _ => Err(invalid()),
    }
}

/// The most `--link-local-ip`s an endpoint takes.
const MAX_LINK_LOCAL: usize = 16;

/// `--link-local-ip`s: addresses in `169.254.0.0/16` or `fe80::/10`, at most
/// [`MAX_LINK_LOCAL`].
fn link_local_ips(given: &[String]) -> Result<Vec<std::net::IpAddr>, Refused> {
    if given.len() > MAX_LINK_LOCAL {
        return Err(Refused::Invalid(format!(
            "{} link-local IPs given: an endpoint takes at most {MAX_LINK_LOCAL}",
            given.len()
        )));
    }
    given
        .iter()
        .map(|a| match a.parse::<std::net::IpAddr>() {
            Ok(ip @ std::net::IpAddr::V4(v4)) if v4.is_link_local() => Ok(ip),
            Ok(ip @ std::net::IpAddr::V6(v6)) if v6.is_unicast_link_local() => Ok(ip),
            _ => Err(Refused::Invalid(format!(
                "invalid link-local IP address: {a} (one of 169.254.0.0/16 or fe80::/10)"
            ))),
        })
        .collect()
}

/// `NAME[:ALIAS]` as `--link` gives it.
fn link(l: &str) -> Result<Link, Refused> {
    let (name, alias) = l.split_once(':').unwrap_or((l, l));
    let name = name.trim_start_matches('/');
    let alias = alias.trim_start_matches('/');
    if name.is_empty() || alias.is_empty() {
        return Err(Refused::Invalid(format!("invalid link format: {l}")));
    }
    Ok(Link {
        container: name.to_string(),
        alias: alias.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: serde_json::Value) -> (HostConfig, NetworkingConfig) {
        let h = serde_json::from_value(v["HostConfig"].clone()).unwrap_or_default();
        let n = serde_json::from_value(v["NetworkingConfig"].clone()).unwrap_or_default();
        (h, n)
    }

    #[test]
    fn the_default_network_is_bridge_with_its_links() {
        let (h, n) = body(serde_json::json!({
            "HostConfig": { "NetworkMode": "default", "Links": ["db:database", "cache"] },
            "NetworkingConfig": { "EndpointsConfig": { "default": {} } },
        }));
        let p = plan(&h, &n, "").unwrap();
        assert_eq!(p.networks, ["bridge"]);
        let links = &p.requests["bridge"].links;
        assert_eq!(
            links[0],
            Link {
                container: "db".into(),
                alias: "database".into()
            }
        );
        assert_eq!(
            links[1],
            Link {
                container: "cache".into(),
                alias: "cache".into()
            }
        );
    }

    #[test]
    fn user_networks_carry_address_aliases_and_come_first_when_named_by_mode() {
        let (h, n) = body(serde_json::json!({
            "HostConfig": { "NetworkMode": "front" },
            "NetworkingConfig": { "EndpointsConfig": {
                "back": { "Aliases": ["api"] },
                "front": { "IPAMConfig": { "IPv4Address": "10.7.0.9" }, "Aliases": ["web"] },
            } },
        }));
        let p = plan(&h, &n, "").unwrap();
        assert_eq!(p.networks, ["front", "back"]);
        assert_eq!(p.requests["front"].ip, Some("10.7.0.9".parse().unwrap()));
        assert_eq!(p.requests["front"].aliases, ["web"]);
        assert_eq!(p.requests["back"].aliases, ["api"]);
    }

    #[test]
    fn a_mac_address_is_its_networks_or_the_first_ones_and_is_checked() {
        let (h, n) = body(serde_json::json!({
            "HostConfig": { "NetworkMode": "front" },
            "NetworkingConfig": { "EndpointsConfig": {
                "back": { "MacAddress": "02:42:0A:00:00:09" },
            } },
        }));
        let p = plan(&h, &n, "02:42:ac:11:00:0a").unwrap();
        assert_eq!(
            p.requests["front"].mac.as_deref(),
            Some("02:42:ac:11:00:0a")
        );
        assert_eq!(p.requests["back"].mac.as_deref(), Some("02:42:0a:00:00:09"));
        for (bad, why) in [
            ("01:00:5e:00:00:01", "multicast"),
            ("02:fe:00:00:00:01", "the VCH's own"),
            ("02:42:ac:11:00", "invalid MAC address"),
            ("02:42:ac:11:00:0g", "invalid MAC address"),
        ] {
            let e = plan(&h, &n, bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let (h, n) = body(serde_json::json!({ "HostConfig": { "NetworkMode": "none" } }));
        let e = plan(&h, &n, "02:42:ac:11:00:0a").unwrap_err().to_string();
        assert!(e.contains("mac-address and the network mode"), "{e}");
    }

    #[test]
    fn link_local_ips_are_link_local_and_bounded() {
        let ep = |ips: serde_json::Value| {
            let (h, n) = body(serde_json::json!({
                "HostConfig": { "NetworkMode": "front" },
                "NetworkingConfig": { "EndpointsConfig": { "front": {
                    "IPAMConfig": { "LinkLocalIPs": ips } } } },
            }));
            plan(&h, &n, "").map_err(|e| e.to_string())
        };
        let p = ep(serde_json::json!(["169.254.8.8", "fe80::8"])).unwrap();
        let want: Vec<std::net::IpAddr> =
            vec!["169.254.8.8".parse().unwrap(), "fe80::8".parse().unwrap()];
        assert_eq!(p.requests["front"].link_local, want);
        for bad in ["10.0.0.1", "2001:db8::1", "x"] {
            let e = ep(serde_json::json!([bad])).unwrap_err();
            assert!(e.contains("invalid link-local IP address"), "{bad}: {e}");
        }
        let many: Vec<String> = (1..=17).map(|i| format!("169.254.0.{i}")).collect();
        assert!(ep(serde_json::json!(many))
            .unwrap_err()
            .contains("at most 16"));
    }

    #[test]
    fn none_is_no_network_and_takes_no_other() {
        let (h, n) = body(serde_json::json!({ "HostConfig": { "NetworkMode": "none" } }));
        assert_eq!(plan(&h, &n, "").unwrap(), Networking::default());
        let (h, n) = body(serde_json::json!({
            "HostConfig": { "NetworkMode": "none" },
            "NetworkingConfig": { "EndpointsConfig": { "front": {} } },
        }));
        assert!(plan(&h, &n, "")
            .unwrap_err()
            .to_string()
            .contains("network front"));
    }

    #[test]
    fn bad_addresses_and_links_are_refused_and_shared_stacks_named() {
        let (h, n) = body(serde_json::json!({
            "HostConfig": { "NetworkMode": "front" },
            "NetworkingConfig": { "EndpointsConfig": { "front": { "IPAMConfig": { "IPv4Address": "10.7.0" } } } },
        }));
        assert_eq!(
            plan(&h, &n, "").unwrap_err().to_string(),
            "invalid IPv4 address: 10.7.0"
        );
        let (h, n) = body(serde_json::json!({ "HostConfig": { "Links": [":x"] } }));
        assert!(plan(&h, &n, "")
            .unwrap_err()
            .to_string()
            .contains("invalid link format"));
        for mode in ["host", "container:web"] {
            let (h, n) = body(serde_json::json!({ "HostConfig": { "NetworkMode": mode } }));
            let mut r = Refusals::default();
            refusals(&mut r, &h, &n);
            let msg = r.finish().unwrap_err().to_string();
            assert!(
                msg.starts_with(&format!("--network {mode} is not supported by vic")),
                "{msg}"
            );
        }
    }
}
