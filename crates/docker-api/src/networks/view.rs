//! Networks as Docker shows them (`GET /networks`, `GET /networks/{id}`): the port layer's
//! networks, and Docker's `none`, which vic has too (a container with loopback only).

use portlayer::{ContainerRecord, Network, Status};
use serde_json::{json, Value};

/// Docker's `none` network: no interface but loopback.
pub const NONE: &str = "none";

fn created(n: &Network) -> String {
    n.created
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
}

/// One network as `GET /networks/{id}` shows it; `containers` are the VCH's, of which those
/// running with an endpoint on it are listed.
pub fn network_json(n: &Network, containers: &[ContainerRecord]) -> Value {
    let mut attached = serde_json::Map::new();
    for c in containers
        .iter()
        .filter(|c| c.state.status == Status::Running)
    {
        for e in c.spec.endpoints.iter().filter(|e| e.network == n.name) {
            attached.insert(
                c.id.clone(),
                json!({
                    "Name": c.spec.name,
                    "EndpointID": c.id,
                    "MacAddress": e.mac,
                    "IPv4Address": format!("{}/{}", e.ip, e.prefix_len),
                    "IPv6Address": e.ipv6.map(|v| format!("{}/{}", v.ip, v.prefix_len)).unwrap_or_default(),
                }),
            );
        }
    }
    let mut config = json!({
        "Subnet": n.subnet.to_string(),
        "Gateway": n.gateway.to_string(),
    });
    if let Some(r) = n.ip_range {
        config["IPRange"] = json!(r.to_string());
    }
    if let Some((first, last)) = n.ip_span {
        config["IPRange"] = json!(format!("{first}-{last}"));
    }
    if !n.aux_addresses.is_empty() {
        config["AuxiliaryAddresses"] = json!(n.aux_addresses);
    }
    let mut configs = vec![config];
    if let Some(v6) = &n.ipv6 {
        let mut c = json!({ "Subnet": v6.subnet.to_string(), "Gateway": v6.gateway.to_string() });
        if let Some(r) = v6.ip_range {
            c["IPRange"] = json!(r.to_string());
        }
        configs.push(c);
    }
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": created(n),
        "Scope": "local",
        // VIC shows container networks as `external`; their options say what they are.
        "Driver": if n.external.is_some() { "external" } else { "bridge" },
        "EnableIPv4": true,
        "EnableIPv6": n.ipv6.is_some(),
        "IPAM": {
            "Driver": "default",
            "Options": if n.ipam_options { json!({}) } else { Value::Null },
            "Config": configs,
        },
        "Internal": n.internal,
        "Attachable": n.attachable,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": attached,
        "Options": options(n),
        "Labels": n.labels,
    })
}

/// The network's driver options; a container network's are its host network, firewall and
/// DNS servers.
fn options(n: &Network) -> Value {
    let mut o = json!(n.options);
    if let Some(ext) = &n.external {
        o["vic.container-network"] = json!(ext.source);
        o["vic.container-network-firewall"] = json!(ext.trust);
        let dns: Vec<String> = n.dns.iter().map(|d| d.to_string()).collect();
        if !dns.is_empty() {
            o["vic.container-network-dns"] = json!(dns.join(","));
        }
    }
    o
}

pub fn none_json() -> Value {
    json!({
        "Name": NONE,
        "Id": portlayer::networks::predefined_id(NONE),
        "Created": "0001-01-01T00:00:00Z",
        "Scope": "local",
        "Driver": "null",
        "EnableIPv4": false,
        "EnableIPv6": false,
        "IPAM": { "Driver": "default", "Options": null, "Config": [] },
        "Internal": false,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": {},
        "Options": {},
        "Labels": {},
    })
}
