//! VIC's container-network flags on `create` and `configure`, assembled into the
//! [`ContainerNetwork`]s vch.json records and the appliance's document carries.
//!
//! ```text
//!   --container-network      ns1/br0:routable    HOSTNET[:ALIAS]   split at the last ':'
//!   --container-network-gateway  ns1/br0:10.9.0.1/24  HOSTNET:VALUE  split at the first ':'
//!   --container-network-ip-range, -dns (repeatable), -firewall     likewise
//! ```
//!
//! A flag that describes a network names it by HOSTNET, which a `--container-network` of the
//! same command must give. `configure` adds networks; one the VCH already has may be given
//! again only exactly as it is (VIC cannot change them either).

use std::net::IpAddr;

use anyhow::bail;
use clap::Args;
use vch_config::{check_container_networks, ContainerNetwork, Firewall, Sources};

use crate::output::info;

/// `HOSTNET[:ALIAS]` of `--container-network`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNet {
    pub source: String,
    pub alias: String,
}

/// `HOSTNET:VALUE` of a flag that describes a container network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed<T> {
    pub hostnet: String,
    pub value: T,
}

fn parse_network(s: &str) -> Result<HostNet, String> {
    let (source, alias) = match s.rsplit_once(':') {
        Some((source, alias)) => (source, alias),
        None => (s, s.split_once('/').map_or(s, |(_, bridge)| bridge)),
    };
    Ok(HostNet {
        source: source.into(),
        alias: alias.into(),
    })
}

fn keyed<T>(
    s: &str,
    what: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Keyed<T>, String> {
    let (hostnet, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not HOSTNET:{what}"))?;
    Ok(Keyed {
        hostnet: hostnet.into(),
        value: parse(value)?,
    })
}

fn parse_gateway(s: &str) -> Result<Keyed<String>, String> {
    keyed(s, "GATEWAY/PREFIX", |v| Ok(v.into()))
}

fn parse_ip_range(s: &str) -> Result<Keyed<String>, String> {
    keyed(s, "RANGE", |v| Ok(v.into()))
}

fn parse_dns(s: &str) -> Result<Keyed<IpAddr>, String> {
    keyed(s, "IP", |v| {
        vch_config::parse_dns_server(v).map_err(|e| e.to_string())
    })
}

fn parse_firewall(s: &str) -> Result<Keyed<Firewall>, String> {
    keyed(s, "LEVEL", |v| {
        v.parse()
            .map_err(|e: vch_config::SettingError| e.to_string())
    })
}

/// The container-network flags, shared by `create` and `configure` (which adds networks).
#[derive(Debug, Args, Default)]
pub struct ContainerNetworkArgs {
    /// A network outside the VCH that containers join directly (docker run --net ALIAS):
    /// HOSTNET is a Linux bridge, BRIDGE in the host's network namespace or NETNS/BRIDGE in
    /// one of /run/netns; ALIAS defaults to the bridge's name. Repeatable. configure adds
    /// networks; one the VCH has cannot change.
    #[arg(long = "container-network", visible_alias = "cn", value_name = "HOSTNET[:ALIAS]", value_parser = parse_network)]
    pub networks: Vec<HostNet>,
    /// A container network's gateway and subnet (required: the local target hands out the
    /// addresses itself).
    #[arg(long = "container-network-gateway", visible_alias = "cng", value_name = "HOSTNET:GW/PREFIX", value_parser = parse_gateway)]
    pub gateways: Vec<Keyed<String>>,
    /// The addresses containers get on a container network: FIRST-LAST or a CIDR [default:
    /// the gateway's subnet].
    #[arg(long = "container-network-ip-range", visible_alias = "cnr", value_name = "HOSTNET:RANGE", value_parser = parse_ip_range)]
    pub ip_ranges: Vec<Keyed<String>>,
    /// A DNS server of a container network; repeatable per network.
    #[arg(long = "container-network-dns", visible_alias = "cnd", value_name = "HOSTNET:IP", value_parser = parse_dns)]
    pub dns: Vec<Keyed<IpAddr>>,
    /// What a container network's firewall lets through: closed, outbound, peers, published
    /// or open [default: published].
    #[arg(long = "container-network-firewall", visible_alias = "cnf", value_name = "HOSTNET:LEVEL", value_parser = parse_firewall)]
    pub firewalls: Vec<Keyed<Firewall>>,
}

/// Where in `nets` the network of `hostnet` is, which `flag` names.
fn index(nets: &[ContainerNetwork], flag: &str, hostnet: &str) -> anyhow::Result<usize> {
    match nets.iter().position(|n| n.source == hostnet) {
        Some(i) => Ok(i),
        None => bail!("--{flag} names {hostnet}, which no --container-network gives"),
    }
}

fn twice(flag: &str, hostnet: &str) -> anyhow::Error {
    anyhow::anyhow!("--{flag} names {hostnet} twice: give one value a network")
}

impl ContainerNetworkArgs {
    /// Whether any container-network flag was given.
    pub fn any(&self) -> bool {
        !self.networks.is_empty()
            || !self.gateways.is_empty()
            || !self.ip_ranges.is_empty()
            || !self.dns.is_empty()
            || !self.firewalls.is_empty()
    }

    /// The networks the flags describe, checked one by one and together, their sources
    /// bridges on the VCH's host.
    pub fn networks(&self) -> anyhow::Result<Vec<ContainerNetwork>> {
        self.parsed(Sources::HostBridges)
    }

    fn parsed(&self, sources: Sources) -> anyhow::Result<Vec<ContainerNetwork>> {
        let mut nets: Vec<ContainerNetwork> = self
            .networks
            .iter()
            .map(|h| ContainerNetwork {
                name: h.alias.clone(),
                source: h.source.clone(),
                gateway: None,
                ip_range: None,
                dns: Vec::new(),
                firewall: Firewall::default(),
            })
            .collect();
        for g in &self.gateways {
            let flag = "container-network-gateway";
            let i = index(&nets, flag, &g.hostnet)?;
            if nets[i].gateway.replace(g.value.clone()).is_some() {
                return Err(twice(flag, &g.hostnet));
            }
        }
        for r in &self.ip_ranges {
            let flag = "container-network-ip-range";
            let i = index(&nets, flag, &r.hostnet)?;
            if nets[i].ip_range.replace(r.value.clone()).is_some() {
                return Err(twice(flag, &r.hostnet));
            }
        }
        for d in &self.dns {
            let i = index(&nets, "container-network-dns", &d.hostnet)?;
            nets[i].dns.push(d.value);
        }
        let mut firewall_given = vec![false; nets.len()];
        for f in &self.firewalls {
            let flag = "container-network-firewall";
            let i = index(&nets, flag, &f.hostnet)?;
            if std::mem::replace(&mut firewall_given[i], true) {
                return Err(twice(flag, &f.hostnet));
            }
            nets[i].firewall = f.value;
        }
        check_container_networks(&nets, sources)?;
        Ok(nets)
    }
}

impl ContainerNetworkArgs {
    /// The networks the flags describe, for a vSphere target, whose sources are port groups.
    /// Their firewalls are not made there yet: a network is open (said in one line), and a
    /// `--container-network-firewall` other than `open` is refused.
    pub fn on_vsphere(&self) -> anyhow::Result<Vec<ContainerNetwork>> {
        let mut nets = self.parsed(Sources::PortGroups)?;
        if let Some(f) = self.firewalls.iter().find(|f| f.value != Firewall::Open) {
            anyhow::bail!(
                "--container-network-firewall {}:{} on a vSphere target is not implemented yet (container VMs join port groups directly; only open is): nothing was made",
                f.hostnet,
                f.value.as_str()
            );
        }
        for n in &mut nets {
            if n.firewall != Firewall::Open {
                info(format!(
                    "Container network {} ({}) is open: a firewall for container networks is not implemented on vSphere yet",
                    n.name, n.source
                ));
            }
            n.firewall = Firewall::Open;
        }
        Ok(nets)
    }
}

/// The VCH's networks once `configure` adds `given` to those it `has`: those first, as they
/// are, then the new ones. A network given again must be exactly as the VCH has it.
pub fn add(
    has: &[ContainerNetwork],
    given: &[ContainerNetwork],
    sources: Sources,
) -> anyhow::Result<Vec<ContainerNetwork>> {
    let mut all = has.to_vec();
    for g in given {
        match has
            .iter()
            .find(|h| h.source == g.source || h.name == g.name)
        {
            Some(h) if h == g => {}
            Some(h) => bail!(
                "container network {} ({}) cannot change: remove and re-create the VCH to change it",
                h.name,
                h.source
            ),
            None => all.push(g.clone()),
        }
    }
    check_container_networks(&all, sources)?;
    Ok(all)
}

/// What is set besides the host network: "gateway 10.9.0.1/24", …, "firewall published".
fn details(n: &ContainerNetwork) -> Vec<String> {
    let mut d = Vec::new();
    if let Some(g) = &n.gateway {
        d.push(format!("gateway {g}"));
    }
    if let Some(r) = &n.ip_range {
        d.push(format!("range {r}"));
    }
    if !n.dns.is_empty() {
        let dns: Vec<String> = n.dns.iter().map(IpAddr::to_string).collect();
        d.push(format!("dns {}", dns.join(" ")));
    }
    d.push(format!("firewall {}", n.firewall.as_str()));
    d
}

/// `routable = br0 (gateway 10.9.0.1/24, firewall published)`, as `inspect` shows one.
pub fn describe(n: &ContainerNetwork) -> String {
    format!("{} = {} ({})", n.name, n.source, details(n).join(", "))
}

/// One line per network added or removed between `old` and `new` (configure adds; a
/// rollback of it removes).
pub fn changes(old: &[ContainerNetwork], new: &[ContainerNetwork]) -> Vec<String> {
    let line = |n: &ContainerNetwork, what: &str| {
        let mut d = vec![n.source.clone()];
        d.extend(details(n));
        format!("Container network {} {what} ({})", n.name, d.join(", "))
    };
    let removed = old.iter().filter(|o| !new.contains(o));
    let added = new.iter().filter(|n| !old.contains(n));
    removed
        .map(|n| line(n, "removed"))
        .chain(added.map(|n| line(n, "added")))
        .collect()
}

/// The `create` flags that give `nets`, as (flag, value) pairs in VIC's form.
pub fn flags(nets: &[ContainerNetwork]) -> Vec<(&'static str, String)> {
    let mut f = Vec::new();
    for n in nets {
        let s = &n.source;
        f.push(("container-network", format!("{s}:{}", n.name)));
        if let Some(g) = &n.gateway {
            f.push(("container-network-gateway", format!("{s}:{g}")));
        }
        if let Some(r) = &n.ip_range {
            f.push(("container-network-ip-range", format!("{s}:{r}")));
        }
        for d in &n.dns {
            f.push(("container-network-dns", format!("{s}:{d}")));
        }
        if n.firewall != Firewall::default() {
            f.push((
                "container-network-firewall",
                format!("{s}:{}", n.firewall.as_str()),
            ));
        }
    }
    f
}

#[cfg(test)]
#[path = "container_networks_tests.rs"]
mod tests;
