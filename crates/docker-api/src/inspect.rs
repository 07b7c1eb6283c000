//! Docker's JSON shapes for inspect and list output.

use chrono::{DateTime, Utc};
use imagec::store::ImageRecord;
use portlayer::health::{Health, HealthStatus};
use portlayer::{ContainerRecord, Status};
use serde_json::{json, Value};

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn rfc3339(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_else(|| ZERO_TIME.to_string())
}

fn created_unix(created: &str) -> i64 {
    DateTime::parse_from_rfc3339(created)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

/// `GET /images/json` entry.
pub fn image_summary(img: &ImageRecord, containers: usize) -> Value {
    json!({
        "Id": img.id,
        "ParentId": "",
        "RepoTags": img.repo_tags,
        "RepoDigests": img.repo_digests,
        "Created": created_unix(&img.created),
        "Size": img.size,
        "SharedSize": -1,
        "Labels": img.config.pointer("/config/Labels").cloned().unwrap_or(Value::Null),
        "Containers": containers,
    })
}

/// `GET /images/{name}/json`.
pub fn image_json(img: &ImageRecord) -> Value {
    json!({
        "Id": img.id,
        "RepoTags": img.repo_tags,
        "RepoDigests": img.repo_digests,
        "Parent": img.parent,
        "Comment": img.config.get("comment").cloned().unwrap_or(json!("")),
        "Created": img.created,
        // The container a commit made it from (the image config's `container`).
        "Container": img.config.get("container").cloned().unwrap_or(json!("")),
        // That container's configuration; an image from a registry that has none shows
        // moby's empty one.
        "ContainerConfig": img.config.get("container_config").cloned().unwrap_or_else(imagec::archive::empty_container_config),
        "DockerVersion": img.config.get("docker_version").cloned().unwrap_or(json!("")),
        "Author": img.config.get("author").cloned().unwrap_or(json!("")),
        "Config": img.config.get("config").cloned().unwrap_or(json!({})),
        "Architecture": img.architecture,
        "Variant": img.config.get("variant").cloned(),
        "Os": img.os,
        "Size": img.size,
        "GraphDriver": { "Name": "vic", "Data": null },
        "RootFS": { "Type": "layers", "Layers": img.diff_ids },
        "Metadata": { "LastTagTime": ZERO_TIME },
    })
}

/// Go-units' HumanDuration, which Docker uses in `docker ps`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h) = (s / 60, s / 3600);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        _ if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{} days", h / 24),
        _ if h < 24 * 30 * 2 => format!("{} weeks", h / 24 / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", h / 24 / 365),
    }
}

/// The `Status` column of `docker ps`.
pub fn status_text(c: &ContainerRecord, now: DateTime<Utc>) -> String {
    match c.state.status {
        Status::Created => "Created".into(),
        Status::Running => {
            let since = c.state.started_at.unwrap_or(c.created);
            let paused = if c.state.paused { " (Paused)" } else { "" };
            let health = match c.state.health.as_ref().map(|h| h.status) {
                Some(HealthStatus::Starting) => " (health: starting)",
                Some(HealthStatus::Healthy) => " (healthy)",
                Some(HealthStatus::Unhealthy) => " (unhealthy)",
                None => "",
            };
            let up = human_duration((now - since).num_seconds());
            format!("Up {up}{paused}{health}")
        }
        Status::Exited if c.state.restarting => {
            let since = c.state.finished_at.unwrap_or(c.created);
            format!(
                "Restarting ({}) {} ago",
                c.state.exit_code,
                human_duration((now - since).num_seconds())
            )
        }
        Status::Exited => match c.state.finished_at {
            Some(t) => format!(
                "Exited ({}) {} ago",
                c.state.exit_code,
                human_duration((now - t).num_seconds())
            ),
            None => format!("Exited ({})", c.state.exit_code),
        },
    }
}

/// `State.Health` as dockerd shows it.
fn health_json(h: &Health) -> Value {
    json!({
        "Status": h.status.word(),
        "FailingStreak": h.failing_streak,
        "Log": h.log.iter().map(|r| json!({
            "Start": rfc3339(Some(r.start)),
            "End": rfc3339(Some(r.end)),
            "ExitCode": r.exit_code,
            "Output": r.output,
        })).collect::<Vec<_>>(),
    })
}

/// Docker's word for the container's state: `paused` for a paused running one,
/// `restarting` for one its policy is about to start again.
pub fn state_word(c: &ContainerRecord) -> &'static str {
    match c.state.status {
        Status::Running if c.state.paused => "paused",
        Status::Exited if c.state.restarting => "restarting",
        s => s.as_str(),
    }
}

fn personality<'a>(c: &'a ContainerRecord, key: &str) -> Option<&'a Value> {
    c.spec.personality.get(key)
}

/// The command as `docker ps` shows it: argv joined by spaces, unquoted, as Docker does.
fn command_line(c: &ContainerRecord) -> String {
    c.spec.process.argv.join(" ")
}

/// `GET /containers/json` entry.
pub fn container_summary(c: &ContainerRecord, now: DateTime<Utc>) -> Value {
    json!({
        "Id": c.id,
        "Names": [format!("/{}", c.spec.name)],
        "Image": c.spec.image_ref,
        "ImageID": c.spec.image_id,
        "Command": command_line(c),
        "Created": c.created.timestamp(),
        "Ports": running_ports(c).iter().map(|p| json!({
            "IP": p.host_ip.to_string(),
            "PrivatePort": p.container_port,
            "PublicPort": p.host_port,
            "Type": p.proto.as_str(),
        })).collect::<Vec<_>>(),
        "Labels": c.spec.labels,
        "State": state_word(c),
        "Status": status_text(c, now),
        "HostConfig": { "NetworkMode": "default" },
        "NetworkSettings": { "Networks": networks(c) },
        "Mounts": [],
    })
}

/// The container's endpoints as Docker shows them: every network it is on, with what it
/// asked of it, and its address while it runs (Docker clears them when a container stops).
fn networks(c: &ContainerRecord) -> Value {
    let running = c.state.status == Status::Running;
    let mut out = serde_json::Map::new();
    for e in &c.spec.endpoints {
        let asked = c.spec.endpoint_requests.get(&e.network);
        // A MAC the user gave shows while the container does not run too, as dockerd's.
        let (ip, prefix, gw, mac) = if running {
            (
                e.ip.to_string(),
                e.prefix_len,
                e.gateway.to_string(),
                e.mac.clone(),
            )
        } else {
            let mac = asked.and_then(|r| r.mac.clone()).unwrap_or_default();
            (String::new(), 0, String::new(), mac)
        };
        let (ip6, prefix6, gw6) = match e.ipv6.filter(|_| running) {
            Some(v) => (v.ip.to_string(), v.prefix_len, v.gateway.to_string()),
            None => Default::default(),
        };
        let ipam = asked.and_then(ipam_config);
        // As given (`name:alias`) on a user network; the default bridge's are legacy links,
        // which inspect shows in `HostConfig.Links`.
        let links: Vec<String> = match e.network.as_str() {
            portlayer::networks::BRIDGE => Vec::new(),
            _ => (e.links.iter())
                .map(|l| format!("{}:{}", l.container, l.alias))
                .collect(),
        };
        let id = match e.network_id.as_str() {
            "" => portlayer::networks::predefined_id(&e.network),
            id => id.to_string(),
        };
        let mut dns_names = vec![c.spec.name.clone(), c.id[..12.min(c.id.len())].to_string()];
        dns_names.extend(e.aliases.iter().cloned());
        out.insert(
            e.network.clone(),
            json!({
                "IPAMConfig": ipam,
                "NetworkID": id,
                "EndpointID": if running { c.id.as_str() } else { "" },
                "Gateway": gw,
                "IPAddress": ip,
                "IPPrefixLen": prefix,
                "IPv6Gateway": gw6,
                "GlobalIPv6Address": ip6,
                "GlobalIPv6PrefixLen": prefix6,
                "MacAddress": mac,
                "Aliases": if e.aliases.is_empty() { Value::Null } else { json!(e.aliases) },
                "Links": if links.is_empty() { Value::Null } else { json!(links) },
                // Endpoint driver options are refused at create and connect: none are set.
                "DriverOpts": Value::Null,
                "DNSNames": if running { json!(dns_names) } else { Value::Null },
            }),
        );
    }
    Value::Object(out)
}

/// What an endpoint asked of its addresses, as moby's `EndpointIPAMConfig` shows it (empty
/// fields left out; `null` when nothing was asked).
fn ipam_config(r: &portlayer::networks::EndpointRequest) -> Option<Value> {
    let mut m = serde_json::Map::new();
    if let Some(ip) = r.ip {
        m.insert("IPv4Address".into(), json!(ip.to_string()));
    }
    if let Some(ip) = r.ipv6 {
        m.insert("IPv6Address".into(), json!(ip.to_string()));
    }
    if !r.link_local.is_empty() {
        let ips: Vec<String> = r.link_local.iter().map(|a| a.to_string()).collect();
        m.insert("LinkLocalIPs".into(), json!(ips));
    }
    (!m.is_empty()).then_some(Value::Object(m))
}

/// The published ports of the current run; none when the container is not running (a
/// record whose VM ended while no appliance ran may still list them).
fn running_ports(c: &ContainerRecord) -> &[portlayer::ports::PortBinding] {
    if c.state.status == Status::Running {
        &c.state.ports
    } else {
        &[]
    }
}

/// The published ports of the current run, as `NetworkSettings.Ports` (and `docker port`)
/// show them.
fn published(c: &ContainerRecord) -> Value {
    let mut out = serde_json::Map::new();
    for p in running_ports(c) {
        let entry = out
            .entry(format!("{}/{}", p.container_port, p.proto.as_str()))
            .or_insert_with(|| json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(
                json!({ "HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string() }),
            );
        }
    }
    Value::Object(out)
}

/// `NetworkSettings` of inspect: the default bridge's endpoint at the top level, as Docker
/// puts it, and every network under `Networks`.
fn network_settings(c: &ContainerRecord) -> Value {
    let nets = networks(c);
    let bridge = &nets[portlayer::networks::BRIDGE];
    let field = |k: &str| bridge.get(k).cloned().unwrap_or(json!(""));
    json!({
        "Bridge": "",
        "SandboxID": "",
        "Ports": published(c),
        "SandboxKey": "",
        "Gateway": field("Gateway"),
        "IPAddress": field("IPAddress"),
        "IPPrefixLen": bridge.get("IPPrefixLen").cloned().unwrap_or(json!(0)),
        "IPv6Gateway": field("IPv6Gateway"),
        "GlobalIPv6Address": field("GlobalIPv6Address"),
        "GlobalIPv6PrefixLen": bridge.get("GlobalIPv6PrefixLen").cloned().unwrap_or(json!(0)),
        "MacAddress": field("MacAddress"),
        "Networks": nets,
    })
}

/// `GET /containers/{id}/json`, with the `HostConfig` the container's spec makes and the path
/// of its log.
pub fn container_json(c: &ContainerRecord, host_config: Value, log_path: &str) -> Value {
    let argv = &c.spec.process.argv;
    let running = c.state.status == Status::Running;
    let mut config = personality(c, "Config")
        .cloned()
        .unwrap_or_else(|| json!({}));
    config["Hostname"] = json!(c.spec.hostname);
    config["Image"] = json!(c.spec.image_ref);
    json!({
        "Id": c.id,
        "Created": rfc3339(Some(c.created)),
        "Path": argv.first().cloned().unwrap_or_default(),
        "Args": argv.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": state_word(c),
            "Running": running,
            "Paused": c.state.paused,
            "Restarting": c.state.restarting && c.state.status == Status::Exited,
            "OOMKilled": false,
            "Dead": false,
            "Pid": c.state.pid,
            "ExitCode": c.state.exit_code,
            "Error": c.state.error,
            "StartedAt": rfc3339(c.state.started_at),
            "FinishedAt": rfc3339(c.state.finished_at),
            "Health": c.state.health.as_ref().map(health_json),
        },
        "Image": c.spec.image_id,
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": log_path,
        "Name": format!("/{}", c.spec.name),
        "RestartCount": c.state.restart_count,
        "Driver": "vic",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": host_config,
        "GraphDriver": { "Name": "vic", "Data": null },
        "Mounts": [],
        "Config": config,
        "NetworkSettings": network_settings(c),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(61), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3700), "About an hour");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }
}
