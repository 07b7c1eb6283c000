//! Container networks on the local target: a bridge outside the VCH (VIC's port group) that
//! container VMs join directly, without NAT, behind the firewall of the network's trust level.
//!
//! ```text
//!   VCH namespace                                        │ outside: the host's namespace,
//!   tap ─┐                                               │ or /run/netns/NETNS
//!   tap ─┼─ vic-c<digits> (no address) ─ cx<digits> ══ veth ══ vx<hash> ─ BRIDGE (the operator's)
//!        └── FORWARD: bridged frames pass iptables (br_netfilter) → chain VIC-<digits>
//! ```
//!
//! The VCH holds no address on the network, so neither the host nor its containers on other
//! networks can reach it through the VCH. Frames between the taps and the outside cross the
//! VCH's own bridge, where the trust level is enforced, outside the guest (root in a guest
//! cannot lift it):
//!
//! | trust     | let through                                                          |
//! |-----------|----------------------------------------------------------------------|
//! | closed    | nothing                                                              |
//! | outbound  | what a container sends out, and the replies                          |
//! | peers     | frames between the network's containers; nothing to or from outside |
//! | published | outbound, and inbound to each container's published ports (`VIC-P…`) |
//! | open      | everything                                                           |
//!
//! IPv6 is dropped on all but `open` networks (containers have IPv4 addresses only). The veth
//! goes when the VCH's namespace goes (deleting either end deletes both), so `vic-machine
//! delete` leaves nothing on the operator's bridge.

use crate::cmd::run;
use hypervisor::{BackendError, ExternalNet, NetworkSpec, OpenPort, Trust};

fn failed(msg: String) -> BackendError {
    BackendError::Failed(msg)
}

/// `ip` in namespace `ns` (`None`: this process's).
fn ip_in(ns: Option<&str>, args: &[&str]) -> Result<String, BackendError> {
    let mut all: Vec<&str> = ns.map(|n| vec!["-n", n]).unwrap_or_default();
    all.extend_from_slice(args);
    run("ip", &all)
}

/// An iptables program (`iptables`, `ip6tables`) inside the VCH's namespace.
fn tables(ns: &str, prog: &str, args: &[&str]) -> Result<String, BackendError> {
    let all = [&["netns", "exec", ns, prog, "-w"][..], args].concat();
    run("ip", &all)
}

/// The digits that name network `name` (`c0123456789`) in device and chain names.
fn digits(name: &str) -> &str {
    name.trim_start_matches('c')
}

/// The VCH's end of the veth to the outside bridge.
fn inner_end(name: &str) -> String {
    format!("cx{}", digits(name))
}

/// The outside end: named from the namespace and the network, so two VCHs on one outside
/// bridge never collide.
fn outer_end(ns: &str, name: &str) -> String {
    let h = format!("{ns}/{name}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("vx{:012x}", h & 0xffff_ffff_ffff)
}

/// The chain holding the network's trust level.
fn chain(name: &str) -> String {
    format!("VIC-{}", digits(name))
}

/// The chain holding the published ports of the network's containers.
fn ports_chain(name: &str) -> String {
    format!("VIC-P{}", digits(name))
}

/// The outside bridge of `ext`, and its namespace.
fn outside(ext: &ExternalNet) -> (Option<&str>, &str) {
    match ext.source.split_once('/') {
        Some((ns, br)) => (Some(ns), br),
        None => (None, ext.source.as_str()),
    }
}

/// Makes container network `net` in VCH namespace `ns`: its bridge, the veth onto the outside
/// bridge, and its firewall (idempotent; the firewall is rebuilt, published ports kept).
pub fn ensure(ns: &str, net: &NetworkSpec, ext: &ExternalNet) -> Result<(), BackendError> {
    let (out_ns, out_br) = outside(ext);
    let where_ = out_ns.map_or("the host's network namespace".to_string(), |n| {
        format!("network namespace {n}")
    });
    let shown = ip_in(out_ns, &["link", "show", "dev", out_br, "type", "bridge"]);
    if shown.as_deref().map_or(true, |s| s.trim().is_empty()) {
        return Err(failed(format!(
            "container network {}: no bridge {out_br} in {where_}",
            net.label
        )));
    }
    let bridge = crate::net::bridge_of(&net.name);
    let (inner, outer) = (inner_end(&net.name), outer_end(ns, &net.name));
    if ip_in(Some(ns), &["link", "show", "dev", &bridge]).is_err() {
        ip_in(
            Some(ns),
            &["link", "add", "name", &bridge, "type", "bridge"],
        )?;
    }
    ip_in(
        Some(ns),
        &["link", "set", "dev", &bridge, "alias", &net.label],
    )?;
    ip_in(Some(ns), &["link", "set", "dev", &bridge, "up"])?;
    if ip_in(Some(ns), &["link", "show", "dev", &inner]).is_err() {
        ip_in(
            out_ns,
            &[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", ns,
            ],
        )?;
    }
    ip_in(
        out_ns,
        &["link", "set", "dev", &outer, "master", out_br, "up"],
    )?;
    ip_in(
        Some(ns),
        &["link", "set", "dev", &inner, "master", &bridge, "up"],
    )?;
    firewall(ns, net, ext.trust)
}

/// (Re)writes network `net`'s chain for `trust`, and hooks it into FORWARD.
fn firewall(ns: &str, net: &NetworkSpec, trust: Trust) -> Result<(), BackendError> {
    let (chain, ports) = (chain(&net.name), ports_chain(&net.name));
    for c in [&chain, &ports] {
        if tables(ns, "iptables", &["-S", c]).is_err() {
            tables(ns, "iptables", &["-N", c])?;
        }
    }
    tables(ns, "iptables", &["-F", &chain])?;
    let ext = inner_end(&net.name);
    let rule = |r: &[&str]| -> Result<(), BackendError> {
        tables(ns, "iptables", &[&["-A", chain.as_str()][..], r].concat()).map(|_| ())
    };
    let replies = [
        "-m",
        "conntrack",
        "--ctstate",
        "RELATED,ESTABLISHED",
        "-j",
        "ACCEPT",
    ];
    let going_out = [
        "-m",
        "physdev",
        "--physdev-out",
        ext.as_str(),
        "-j",
        "ACCEPT",
    ];
    match trust {
        Trust::Closed => rule(&["-j", "DROP"])?,
        Trust::Open => rule(&["-j", "ACCEPT"])?,
        Trust::Outbound => {
            rule(&replies)?;
            rule(&going_out)?;
            rule(&["-j", "DROP"])?;
        }
        Trust::Peers => {
            rule(&["-m", "physdev", "--physdev-in", &ext, "-j", "DROP"])?;
            rule(&["-m", "physdev", "--physdev-out", &ext, "-j", "DROP"])?;
            rule(&["-j", "ACCEPT"])?;
        }
        Trust::Published => {
            rule(&replies)?;
            rule(&going_out)?;
            rule(&["-j", &ports])?;
            rule(&["-j", "DROP"])?;
        }
    }
    let bridge = crate::net::bridge_of(&net.name);
    let hook = [
        "-i",
        bridge.as_str(),
        "-o",
        bridge.as_str(),
        "-j",
        chain.as_str(),
    ];
    ensure_rule(ns, "iptables", &hook, true)?;
    let v6 = ["-i", bridge.as_str(), "-o", bridge.as_str(), "-j", "DROP"];
    ensure_rule(ns, "ip6tables", &v6, trust != Trust::Open)
}

/// Makes FORWARD hold `rule` (`want`) or not.
fn ensure_rule(ns: &str, prog: &str, rule: &[&str], want: bool) -> Result<(), BackendError> {
    let op = |op: &str| tables(ns, prog, &[&[op, "FORWARD"][..], rule].concat());
    match (want, op("-C").is_ok()) {
        (true, false) => op("-A").map(|_| ()),
        (false, true) => op("-D").map(|_| ()),
        _ => Ok(()),
    }
}

/// Lets `ports` in to `tap` on container network `name`, in place of what it let in before.
pub fn open_ports(ns: &str, name: &str, tap: &str, ports: &[OpenPort]) -> Result<(), BackendError> {
    forget(ns, |t| t == tap)?;
    let chain = ports_chain(name);
    for p in ports {
        let port = p.port.to_string();
        let proto = if p.udp { "udp" } else { "tcp" };
        let args = [
            "-A",
            &chain,
            "-m",
            "physdev",
            "--physdev-out",
            tap,
            "-p",
            proto,
            "--dport",
            &port,
            "-m",
            "comment",
            "--comment",
            tap,
            "-j",
            "ACCEPT",
        ];
        tables(ns, "iptables", &args)?;
    }
    Ok(())
}

/// Removes the published-port rules of the taps `which` picks by name.
pub fn forget(ns: &str, which: impl Fn(&str) -> bool) -> Result<(), BackendError> {
    let Ok(rules) = tables(ns, "iptables", &["-S"]) else {
        return Ok(()); // no iptables: no rules were made
    };
    let tap_of = |l: &str| {
        let mut words = l.split_whitespace().skip_while(|w| *w != "--comment");
        words.nth(1).map(|t| t.trim_matches('"').to_string())
    };
    for rule in rules
        .lines()
        .filter(|l| l.starts_with("-A VIC-P") && tap_of(l).is_some_and(|t| which(&t)))
    {
        let mut args = vec!["-D"];
        args.extend(rule.split_whitespace().skip(1).map(|t| t.trim_matches('"')));
        tables(ns, "iptables", &args)?;
    }
    Ok(())
}

/// Removes container network `name` from namespace `ns`: its hooks, chains, veth and bridge.
pub fn remove(ns: &str, name: &str) -> Result<(), BackendError> {
    let bridge = crate::net::bridge_of(name);
    let (chain, ports) = (chain(name), ports_chain(name));
    ensure_rule(
        ns,
        "iptables",
        &["-i", &bridge, "-o", &bridge, "-j", &chain],
        false,
    )?;
    ensure_rule(
        ns,
        "ip6tables",
        &["-i", &bridge, "-o", &bridge, "-j", "DROP"],
        false,
    )?;
    for c in [&chain, &ports] {
        if tables(ns, "iptables", &["-S", c]).is_ok() {
            tables(ns, "iptables", &["-F", c])?;
            tables(ns, "iptables", &["-X", c])?;
        }
    }
    for dev in [inner_end(name), bridge] {
        if ip_in(Some(ns), &["link", "show", "dev", &dev]).is_ok() {
            ip_in(Some(ns), &["link", "delete", "dev", &dev])?;
        }
    }
    Ok(())
}

/// Deletes the veths of every container network in namespace `ns` (each takes its outside
/// end with it).
pub fn remove_veths(ns: &str) -> Result<(), BackendError> {
    let links = ip_in(Some(ns), &["-o", "link", "show"])?;
    // "7: cx0123456789@if6: <…"
    for dev in links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|d| d.split('@').next().unwrap_or(d))
        .filter(|d| d.starts_with("cx"))
    {
        ip_in(Some(ns), &["link", "delete", "dev", dev])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_linux_and_iptables_and_differ_per_vch() {
        let name = "c0123456789";
        assert_eq!(crate::net::bridge_of(name), "vic-c0123456789");
        assert_eq!(inner_end(name), "cx0123456789");
        let (a, b) = (outer_end("vic-aaa", name), outer_end("vic-bbb", name));
        assert_ne!(a, b, "two VCHs on one outside bridge");
        assert!(a.len() <= 15 && b.len() <= 15);
        assert_eq!(chain(name), "VIC-0123456789");
        assert_eq!(ports_chain(name), "VIC-P0123456789");
        let ext = ExternalNet {
            source: "testns/br0".into(),
            trust: Trust::Open,
        };
        assert_eq!(outside(&ext), (Some("testns"), "br0"));
    }
}
