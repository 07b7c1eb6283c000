//! `-p`/`--publish` and `-P`/`--publish-all`: Docker's `HostConfig.PortBindings` and
//! `PublishAllPorts` turned into the port layer's TCP and UDP bindings, or refused in
//! Docker's or VIC's words. Host port ranges are refused as VIC refuses them; SCTP and IPv6
//! host addresses are refused until they are carried.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use portlayer::ports::{PortBinding, Proto};
use serde_json::Value;

use super::config::ContainerConfig;
use super::host_config::HostConfig;
use crate::ApiError;

/// `PORT` or `PORT/PROTO` as Docker keys ports; TCP and UDP are carried.
fn container_port(key: &str) -> Result<(u16, Proto), ApiError> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let proto = match proto.to_ascii_lowercase().as_str() {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        "sctp" => {
            return Err(ApiError::bad_request(
                "publishing sctp ports is not supported by vic yet: only tcp and udp",
            ))
        }
        _ => return Err(ApiError::bad_request(format!("invalid proto: {proto}"))),
    };
    if port.contains('-') {
        return Err(ApiError::bad_request(
            "host port ranges are not supported for port bindings",
        ));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid containerPort: {port}")))?;
    Ok((port, proto))
}

fn host_port(s: &str) -> Result<u16, ApiError> {
    if s.is_empty() {
        return Ok(0);
    }
    if s.contains('-') {
        return Err(ApiError::bad_request(
            "host port ranges are not supported for port bindings",
        ));
    }
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid hostPort: {s}")))
}

fn host_ip(s: &str) -> Result<Ipv4Addr, ApiError> {
    if s.is_empty() {
        return Ok(Ipv4Addr::UNSPECIFIED);
    }
    s.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "invalid host IP {s}: vic publishes ports on IPv4 addresses only"
        ))
    })
}

/// The ports the image and the create body expose (`-P` publishes each).
fn exposed(c: &ContainerConfig, image_config: &Value) -> Vec<String> {
    let mut keys: BTreeSet<String> = c
        .exposed_ports
        .iter()
        .flat_map(|m| m.keys().cloned())
        .collect();
    if let Some(m) = image_config.get("ExposedPorts").and_then(Value::as_object) {
        keys.extend(m.keys().cloned());
    }
    keys.into_iter().collect()
}

/// `HostConfig.PortBindings` as the client sent it, in Docker's JSON.
pub fn as_given(h: &HostConfig) -> Value {
    let mut out = serde_json::Map::new();
    for (key, list) in h.port_bindings.iter().flatten() {
        let list: Vec<Value> = list
            .iter()
            .flatten()
            .map(|b| {
                serde_json::json!({
                    "HostIp": b.host_ip.clone().unwrap_or_default(),
                    "HostPort": b.host_port.clone().unwrap_or_default(),
                })
            })
            .collect();
        out.insert(key.clone(), Value::Array(list));
    }
    Value::Object(out)
}

/// The bindings a create asks for; `network_mode` `none` cannot publish.
pub fn bindings(
    h: &HostConfig,
    c: &ContainerConfig,
    image_config: &Value,
    network_mode: &str,
) -> Result<Vec<PortBinding>, ApiError> {
    let mut out = Vec::new();
    for (key, list) in h.port_bindings.iter().flatten() {
        let (container_port, proto) = container_port(key)?;
        for b in list.iter().flatten() {
            out.push(PortBinding {
                container_port,
                proto,
                host_ip: host_ip(b.host_ip.as_deref().unwrap_or(""))?,
                host_port: host_port(b.host_port.as_deref().unwrap_or(""))?,
            });
        }
        if list.as_ref().is_none_or(|l| l.is_empty()) {
            out.push(PortBinding {
                container_port,
                proto,
                host_ip: Ipv4Addr::UNSPECIFIED,
                host_port: 0,
            });
        }
    }
    if h.publish_all_ports == Some(true) {
        for key in exposed(c, image_config) {
            if key.ends_with("/sctp") {
                continue; // -P publishes what it can carry, as dockerd skips what it cannot
            }
            let (port, proto) = container_port(&key)?;
            if !out
                .iter()
                .any(|b| b.container_port == port && b.proto == proto)
            {
                out.push(PortBinding {
                    container_port: port,
                    proto,
                    host_ip: Ipv4Addr::UNSPECIFIED,
                    host_port: 0,
                });
            }
        }
    }
    if !out.is_empty() && network_mode == "none" {
        return Err(ApiError::bad_request(
            "conflicting options: port publishing and the container type network mode",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hc(v: Value) -> HostConfig {
        serde_json::from_value(v).unwrap()
    }

    fn err(v: Value, mode: &str) -> String {
        let c = ContainerConfig::default();
        bindings(&hc(v), &c, &json!({}), mode).unwrap_err().message
    }

    #[test]
    fn each_form_of_dash_p_becomes_a_binding() {
        let c = ContainerConfig::default();
        let h = hc(json!({ "PortBindings": {
            "80/tcp": [{ "HostIp": "127.0.0.1", "HostPort": "8080" }, { "HostPort": "" }],
            "443": [{}],
            "53/udp": [{ "HostPort": "5353" }]
        }}));
        let b = bindings(&h, &c, &json!({}), "default").unwrap();
        assert_eq!(
            b,
            [
                PortBinding {
                    container_port: 443,
                    proto: Proto::Tcp,
                    host_ip: Ipv4Addr::UNSPECIFIED,
                    host_port: 0
                },
                PortBinding {
                    container_port: 53,
                    proto: Proto::Udp,
                    host_ip: Ipv4Addr::UNSPECIFIED,
                    host_port: 5353
                },
                PortBinding {
                    container_port: 80,
                    proto: Proto::Tcp,
                    host_ip: Ipv4Addr::LOCALHOST,
                    host_port: 8080
                },
                PortBinding {
                    container_port: 80,
                    proto: Proto::Tcp,
                    host_ip: Ipv4Addr::UNSPECIFIED,
                    host_port: 0
                },
            ]
        );
    }

    #[test]
    fn publish_all_takes_the_images_and_the_bodys_ports() {
        let c: ContainerConfig =
            serde_json::from_value(json!({ "ExposedPorts": { "9000/tcp": {} } })).unwrap();
        let h = hc(json!({ "PublishAllPorts": true }));
        let image = json!({ "ExposedPorts": { "80/tcp": {}, "53/udp": {}, "7/sctp": {} } });
        let b = bindings(&h, &c, &image, "bridge").unwrap();
        let ports: Vec<(u16, Proto)> = b.iter().map(|b| (b.container_port, b.proto)).collect();
        assert_eq!(
            ports,
            [(53, Proto::Udp), (80, Proto::Tcp), (9000, Proto::Tcp)]
        );
        assert!(b.iter().all(|b| b.host_port == 0));
    }

    #[test]
    fn what_cannot_be_carried_is_refused_in_dockers_or_vics_words() {
        let range = json!({ "PortBindings": { "80/tcp": [{ "HostPort": "8000-8010" }] } });
        assert_eq!(
            err(range, "default"),
            "host port ranges are not supported for port bindings"
        );
        let sctp = json!({ "PortBindings": { "7/sctp": [{ "HostPort": "7" }] } });
        assert!(err(sctp, "default").contains("publishing sctp ports is not supported"));
        let v6 = json!({ "PortBindings": { "80/tcp": [{ "HostIp": "::", "HostPort": "1" }] } });
        assert!(err(v6, "default").contains("IPv4 addresses only"));
        let bad = json!({ "PortBindings": { "80/tcp": [{ "HostPort": "http" }] } });
        assert_eq!(err(bad, "default"), "invalid hostPort: http");
        let none = json!({ "PortBindings": { "80/tcp": [{ "HostPort": "1" }] } });
        assert_eq!(
            err(none, "none"),
            "conflicting options: port publishing and the container type network mode"
        );
    }
}
