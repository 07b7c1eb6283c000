//! `POST /networks/create`'s body (`docker network create`), read into the port layer's
//! request. What vic's bridge networks do not do is refused naming the flag: IPv6-only
//! networks, other drivers and IPAM drivers, swarm's ingress and config-only networks, more
//! than one subnet of a family. `--ipv6`, or an IPv6 subnet, gives the network an IPv6 side.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use portlayer::networks::{Cidr, Cidr6, Ipv6Request, NetworkRequest};
use serde::Deserialize;

use crate::ApiError;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    #[serde(deserialize_with = "crate::query::null_default")]
    name: String,
    #[serde(deserialize_with = "crate::query::null_default")]
    driver: String,
    #[serde(deserialize_with = "crate::query::null_default")]
    scope: String,
    #[serde(rename = "EnableIPv4")]
    enable_ipv4: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
    #[serde(deserialize_with = "crate::query::null_default")]
    internal: bool,
    #[serde(deserialize_with = "crate::query::null_default")]
    attachable: bool,
    #[serde(deserialize_with = "crate::query::null_default")]
    ingress: bool,
    #[serde(deserialize_with = "crate::query::null_default")]
    config_only: bool,
    config_from: Option<ConfigFrom>,
    options: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
    /// Deprecated; dockerd always checks.
    check_duplicate: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Ipam {
    #[serde(deserialize_with = "crate::query::null_default")]
    driver: String,
    config: Option<Vec<IpamConfig>>,
    options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfig {
    #[serde(deserialize_with = "crate::query::null_default")]
    subnet: String,
    #[serde(rename = "IPRange")]
    #[serde(deserialize_with = "crate::query::null_default")]
    ip_range: String,
    #[serde(deserialize_with = "crate::query::null_default")]
    gateway: String,
    auxiliary_addresses: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ConfigFrom {
    #[serde(deserialize_with = "crate::query::null_default")]
    network: String,
}

fn unsupported(flag: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!("{flag} is not supported by vic: {why}"))
}

/// Parses and checks the body.
pub fn request(bytes: &[u8]) -> Result<NetworkRequest, ApiError> {
    let body: CreateBody = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let _ = body.check_duplicate;
    if body.name.is_empty() {
        return Err(ApiError::bad_request("network name is empty"));
    }
    match body.driver.as_str() {
        "" | "bridge" => {}
        d => return Err(ApiError::not_found(format!("plugin \"{d}\" not found"))),
    }
    if !matches!(body.scope.as_str(), "" | "local") {
        return Err(unsupported(
            &format!("--scope {}", body.scope),
            "a VCH's networks are its own",
        ));
    }
    if body.enable_ipv4 == Some(false) {
        return Err(unsupported(
            "--ipv4=false",
            "every container network has IPv4 (the VCH's DNS server answers on it)",
        ));
    }
    if body.ingress {
        return Err(unsupported("--ingress", "it is a swarm option"));
    }
    let from = body
        .config_from
        .as_ref()
        .is_some_and(|c| !c.network.is_empty());
    if body.config_only || from {
        return Err(unsupported(
            "--config-only/--config-from",
            "networks are made from their own options",
        ));
    }
    let mut req = NetworkRequest {
        name: body.name,
        internal: body.internal,
        attachable: body.attachable,
        labels: body.labels.unwrap_or_default(),
        options: body.options.unwrap_or_default(),
        ..Default::default()
    };
    if let Some(ipam) = body.ipam {
        ipam_into(ipam, &mut req)?;
    }
    match body.enable_ipv6 {
        Some(true) => {
            req.ipv6.get_or_insert_with(Ipv6Request::default);
        }
        Some(false) if req.ipv6.is_some() => {
            return Err(ApiError::bad_request(
                "an IPv6 subnet was given to a network created with --ipv6=false",
            ))
        }
        _ => {}
    }
    Ok(req)
}

/// Whether an IPAM config is of IPv6 (its subnet, range or gateway says so).
fn is_ipv6(c: &IpamConfig) -> bool {
    [&c.subnet, &c.ip_range, &c.gateway]
        .into_iter()
        .find(|s| !s.is_empty())
        .is_some_and(|s| s.contains(':'))
}

/// An IPv6 IPAM config as the port layer's request.
fn ipv6_request(c: &IpamConfig) -> Result<Ipv6Request, ApiError> {
    if c.subnet.is_empty() {
        return Err(ApiError::bad_request(
            "gateway and ip-range need a subnet: give --subnet too",
        ));
    }
    if c.auxiliary_addresses
        .as_ref()
        .is_some_and(|a| !a.is_empty())
    {
        return Err(unsupported(
            "--aux-address in an IPv6 subnet",
            "IPv6 addresses are handed out from the range's first",
        ));
    }
    let cidr = |s: &str| {
        Cidr6::parse(s).ok_or_else(|| ApiError::bad_request(format!("invalid CIDR address: {s}")))
    };
    let gateway = match c.gateway.as_str() {
        "" => None,
        g => Some(
            g.parse::<Ipv6Addr>()
                .map_err(|_| ApiError::bad_request(format!("invalid gateway address: {g}")))?,
        ),
    };
    Ok(Ipv6Request {
        subnet: Some(cidr(&c.subnet)?),
        gateway,
        ip_range: match c.ip_range.as_str() {
            "" => None,
            r => Some(cidr(r)?),
        },
    })
}

fn ipam_into(ipam: Ipam, req: &mut NetworkRequest) -> Result<(), ApiError> {
    if !matches!(ipam.driver.as_str(), "" | "default") {
        return Err(unsupported(
            &format!("--ipam-driver {}", ipam.driver),
            "the VCH hands out addresses itself",
        ));
    }
    if ipam.options.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(unsupported("--ipam-opt", "the VCH's IPAM takes no options"));
    }
    req.ipam_options = ipam.options.is_some();
    let configs = ipam.config.unwrap_or_default();
    let (v6, v4): (Vec<&IpamConfig>, Vec<&IpamConfig>) = configs.iter().partition(|c| is_ipv6(c));
    if v6.len() > 1 {
        return Err(unsupported(
            "more than one IPv6 --subnet",
            "a vic network has one IPv6 subnet",
        ));
    }
    if let Some(c) = v6.first() {
        req.ipv6 = Some(ipv6_request(c)?);
    }
    let [c] = v4.as_slice() else {
        if v4.is_empty() {
            return Ok(());
        }
        return Err(unsupported(
            "more than one --subnet",
            "a vic network has one IPv4 subnet",
        ));
    };
    if c.subnet.is_empty() && (!c.gateway.is_empty() || !c.ip_range.is_empty()) {
        return Err(ApiError::bad_request(
            "gateway and ip-range need a subnet: give --subnet too",
        ));
    }
    let cidr = |s: &str| {
        Cidr::parse(s).ok_or_else(|| ApiError::bad_request(format!("invalid CIDR address: {s}")))
    };
    let addr = |what: &str, s: &str| {
        s.parse::<Ipv4Addr>()
            .map_err(|_| ApiError::bad_request(format!("invalid {what} address: {s}")))
    };
    if !c.subnet.is_empty() {
        req.subnet = Some(cidr(&c.subnet)?);
    }
    if !c.ip_range.is_empty() {
        req.ip_range = Some(cidr(&c.ip_range)?);
    }
    if !c.gateway.is_empty() {
        req.gateway = Some(addr("gateway", &c.gateway)?);
    }
    for (k, v) in c.auxiliary_addresses.iter().flatten() {
        req.aux_addresses.insert(k.clone(), addr("auxiliary", v)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: serde_json::Value) -> Result<NetworkRequest, String> {
        request(v.to_string().as_bytes()).map_err(|e| e.message)
    }

    #[test]
    fn nulls_are_defaults_as_for_dockerd() {
        // As docker-py sends a network with one IPAM pool and nothing else given.
        let r = req(serde_json::json!({
            "Name": "py", "Driver": null, "Options": null, "Internal": false,
            "IPAM": { "Driver": "default", "Config": [{ "Subnet": "10.9.0.0/16",
                "IPRange": null, "Gateway": null, "AuxiliaryAddresses": null }], "Options": null },
            "CheckDuplicate": null, "Labels": null, "Attachable": null, "Scope": null,
        }));
        assert!(!r.unwrap().ipam_options, "null: inspect says null");
    }

    #[test]
    fn the_clis_body_reads_into_a_request() {
        // As `docker network create --subnet 10.7.0.0/16 --gateway 10.7.0.254
        // --ip-range 10.7.1.0/24 --aux-address r=10.7.0.2 --internal --label a=b
        // -o com.docker.network.bridge.enable_icc=false app` sends it.
        let r = req(serde_json::json!({
            "Name": "app", "Driver": "bridge", "Scope": "", "EnableIPv6": null,
            "IPAM": { "Driver": "default", "Options": {}, "Config": [{
                "Subnet": "10.7.0.0/16", "IPRange": "10.7.1.0/24", "Gateway": "10.7.0.254",
                "AuxiliaryAddresses": { "r": "10.7.0.2" } }] },
            "Internal": true, "Attachable": false, "Ingress": false, "ConfigOnly": false,
            "ConfigFrom": null,
            "Options": { "com.docker.network.bridge.enable_icc": "false" },
            "Labels": { "a": "b" },
        }))
        .unwrap();
        assert_eq!(r.name, "app");
        assert!(r.ipam_options, "{{}}: inspect says {{}}");
        assert_eq!(r.subnet.unwrap().to_string(), "10.7.0.0/16");
        assert_eq!(r.ip_range.unwrap().to_string(), "10.7.1.0/24");
        assert_eq!(r.gateway.unwrap().to_string(), "10.7.0.254");
        assert_eq!(r.aux_addresses["r"].to_string(), "10.7.0.2");
        assert!(r.internal);
        assert_eq!(r.labels["a"], "b");
        assert_eq!(r.options.len(), 1);
    }

    #[test]
    fn ipv6_is_asked_by_the_flag_or_by_an_ipv6_subnet() {
        let r = req(serde_json::json!({"Name": "n", "EnableIPv6": true})).unwrap();
        assert_eq!(r.ipv6, Some(Ipv6Request::default()));
        assert_eq!(r.subnet, None);
        // As docker-py sends `IPAMPool(subnet=…, iprange=…, gateway=…)` without enable_ipv6,
        // beside an IPv4 pool.
        let r = req(serde_json::json!({"Name": "n", "IPAM": {"Config": [
            {"Subnet": "2001:389::/64", "IPRange": "2001:389::/96", "Gateway": "2001:389::ffff"},
            {"Subnet": "10.9.0.0/16"},
        ]}}))
        .unwrap();
        let v6 = r.ipv6.unwrap();
        assert_eq!(v6.subnet.unwrap().to_string(), "2001:389::/64");
        assert_eq!(v6.ip_range.unwrap().to_string(), "2001:389::/96");
        assert_eq!(v6.gateway.unwrap().to_string(), "2001:389::ffff");
        assert_eq!(r.subnet.unwrap().to_string(), "10.9.0.0/16");
        let r = req(serde_json::json!({"Name": "n", "EnableIPv6": null})).unwrap();
        assert_eq!(r.ipv6, None);
    }

    #[test]
    fn what_bridge_networks_do_not_do_is_refused_by_flag() {
        let cases = [
            (
                serde_json::json!({"Name": "n", "Driver": "overlay"}),
                "plugin \"overlay\" not found",
            ),
            (
                serde_json::json!({"Name": "n", "EnableIPv4": false, "EnableIPv6": true}),
                "--ipv4=false is not supported",
            ),
            (
                serde_json::json!({"Name": "n", "EnableIPv6": false, "IPAM": {"Config": [{"Subnet": "fd01::/64"}]}}),
                "--ipv6=false",
            ),
            (
                serde_json::json!({"Name": "n", "IPAM": {"Config": [{"Subnet": "fd01::/64"}, {"Subnet": "fd02::/64"}]}}),
                "more than one IPv6 --subnet",
            ),
            (
                serde_json::json!({"Name": "n", "IPAM": {"Config": [{"Subnet": "fd01::/64", "Gateway": "10.1.0.1"}]}}),
                "invalid gateway address: 10.1.0.1",
            ),
            (
                serde_json::json!({"Name": "n", "IPAM": {"Config": [{"Subnet": "fd01::/64", "AuxiliaryAddresses": {"a": "fd01::9"}}]}}),
                "--aux-address in an IPv6 subnet",
            ),
            (
                serde_json::json!({"Name": "n", "Ingress": true}),
                "--ingress",
            ),
            (
                serde_json::json!({"Name": "n", "Scope": "swarm"}),
                "--scope swarm",
            ),
            (
                serde_json::json!({"Name": "n", "ConfigOnly": true}),
                "--config-only",
            ),
            (
                serde_json::json!({"Name": "n", "IPAM": {"Driver": "x"}}),
                "--ipam-driver x",
            ),
            (
                serde_json::json!({"Name": "n", "IPAM": {"Options": {"a": "b"}}}),
                "--ipam-opt",
            ),
            (
                serde_json::json!({"Name": "n", "IPAM": {"Config": [{"Subnet": "10.1.0.0/16"}, {"Subnet": "10.2.0.0/16"}]}}),
                "more than one --subnet",
            ),
            (
                serde_json::json!({"Name": "n", "IPAM": {"Config": [{"Subnet": "10.1.0.0"}]}}),
                "invalid CIDR address: 10.1.0.0",
            ),
            (
                serde_json::json!({"Name": "n", "IPAM": {"Config": [{"Gateway": "10.1.0.1"}]}}),
                "need a subnet",
            ),
            (serde_json::json!({"Name": ""}), "network name is empty"),
        ];
        for (body, want) in cases {
            let got = req(body.clone()).unwrap_err();
            assert!(got.contains(want), "{body}: {got}");
        }
    }
}
