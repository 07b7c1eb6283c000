//! The host bridges container networks join: which exist, in the host's network namespace or
//! in a named one under `/run/netns`. `create` and `configure` check each network's bridge
//! before they make or change anything, and name the bridges that do exist (as VIC names the
//! port groups it could use).
//!
//! The host is reached through [`HostBridges`]: [`IpBridges`] asks iproute2, a fake in the
//! tests answers from a table.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use vch_config::ContainerNetwork;

use crate::process::output_within;

/// How long `ip` may take to list the bridges.
const IP_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the bridges of a namespace could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// `/run/netns` has no such namespace.
    #[error("network namespace {0} does not exist")]
    NoNamespace(String),
    /// `ip` could not be run, failed, or printed what is not its JSON.
    #[error("listing the bridges in {place} failed: {cause}")]
    List { place: String, cause: String },
}

/// The bridges of a network namespace.
pub trait HostBridges {
    /// The names of the bridges in `netns` (`None`: the host's own namespace).
    fn bridges(&self, netns: Option<&str>) -> Result<Vec<String>, BridgeError>;
}

/// [`HostBridges`] from `ip -j [-n NETNS] link show type bridge`.
pub struct IpBridges {
    /// Where named network namespaces are (iproute2's `/run/netns`).
    pub netns_dir: PathBuf,
}

impl Default for IpBridges {
    fn default() -> Self {
        IpBridges {
            netns_dir: PathBuf::from("/run/netns"),
        }
    }
}

/// "the host's network namespace" or "network namespace NETNS".
fn place(netns: Option<&str>) -> String {
    match netns {
        None => "the host's network namespace".into(),
        Some(ns) => format!("network namespace {ns}"),
    }
}

impl HostBridges for IpBridges {
    fn bridges(&self, netns: Option<&str>) -> Result<Vec<String>, BridgeError> {
        let mut cmd = Command::new("ip");
        cmd.arg("-j");
        if let Some(ns) = netns {
            if !self.netns_dir.join(ns).exists() {
                return Err(BridgeError::NoNamespace(ns.into()));
            }
            cmd.args(["-n", ns]);
        }
        cmd.args(["link", "show", "type", "bridge"]);
        let failed = |cause: String| BridgeError::List {
            place: place(netns),
            cause,
        };
        let out = output_within(&mut cmd, IP_TIMEOUT).map_err(|e| failed(format!("ip: {e}")))?;
        if !out.status.success() {
            return Err(failed(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        bridge_names(&out.stdout).map_err(failed)
    }
}

/// The interface names in `ip -j link show` output (empty output: none).
fn bridge_names(json: &[u8]) -> Result<Vec<String>, String> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let links: Vec<serde_json::Value> =
        serde_json::from_slice(json).map_err(|e| format!("ip printed what is not JSON: {e}"))?;
    Ok(links
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect())
}

/// Checks that each network's bridge exists; the first that does not is refused, with the
/// bridges its namespace has.
pub fn check_bridges(host: &dyn HostBridges, nets: &[ContainerNetwork]) -> anyhow::Result<()> {
    for n in nets {
        let (netns, bridge) = n.bridge();
        let have = host
            .bridges(netns)
            .map_err(|e| anyhow::anyhow!("container network {}: {e}", n.name))?;
        if !have.iter().any(|b| b == bridge) {
            let list = if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            };
            anyhow::bail!(
                "container network {}: no bridge {bridge} in {} (bridges: {list})",
                n.name,
                place(netns)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Answers from a table of namespace → bridges, and records what it was asked.
    struct Fake {
        table: Vec<(Option<&'static str>, Vec<&'static str>)>,
        asked: RefCell<Vec<Option<String>>>,
    }

    impl HostBridges for Fake {
        fn bridges(&self, netns: Option<&str>) -> Result<Vec<String>, BridgeError> {
            self.asked.borrow_mut().push(netns.map(str::to_string));
            self.table
                .iter()
                .find(|(ns, _)| *ns == netns)
                .map(|(_, b)| b.iter().map(|s| s.to_string()).collect())
                .ok_or_else(|| BridgeError::NoNamespace(netns.unwrap_or("").into()))
        }
    }

    fn net(name: &str, source: &str) -> ContainerNetwork {
        ContainerNetwork {
            name: name.into(),
            source: source.into(),
            gateway: Some("10.9.0.1/24".into()),
            ip_range: None,
            dns: Vec::new(),
            firewall: Default::default(),
        }
    }

    #[test]
    fn a_missing_bridge_is_refused_with_the_bridges_that_exist() {
        let host = Fake {
            table: vec![(None, vec!["br0", "docker0"]), (Some("lab"), vec![])],
            asked: RefCell::default(),
        };
        assert!(check_bridges(&host, &[net("routable", "br0")]).is_ok());
        let err = check_bridges(&host, &[net("routable", "br0"), net("other", "br9")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "container network other: no bridge br9 in the host's network namespace (bridges: br0, docker0)"
        );
        let err = check_bridges(&host, &[net("lab", "lab/br1")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "container network lab: no bridge br1 in network namespace lab (bridges: none)"
        );
        assert_eq!(host.asked.borrow().last(), Some(&Some("lab".to_string())));
    }

    #[test]
    fn a_namespace_that_does_not_exist_is_named_before_ip_runs() {
        let dir = tempfile::tempdir().unwrap();
        let host = IpBridges {
            netns_dir: dir.path().to_path_buf(),
        };
        let err = check_bridges(&host, &[net("routable", "nosuchns/br0")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "container network routable: network namespace nosuchns does not exist"
        );
    }

    #[test]
    fn ips_json_gives_the_interface_names() {
        let json =
            br#"[{"ifindex":3,"ifname":"br0","flags":["UP"]},{"ifindex":4,"ifname":"docker0"}]"#;
        assert_eq!(bridge_names(json).unwrap(), ["br0", "docker0"]);
        assert!(bridge_names(b"[]").unwrap().is_empty());
        assert!(bridge_names(b"\n").unwrap().is_empty());
        assert!(bridge_names(b"Object \"link\" is unknown").is_err());
    }
}
