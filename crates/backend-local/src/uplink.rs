//! The VCH's way out: a veth pair from its network namespace to the host's, and NAT on both
//! sides, so that containers reach what the host reaches while the host side sees one
//! address per VCH.
//!
//! ```text
//!   container ─► vic-<net> ─┐ VCH namespace: forwarded to `uplink` unless the network is
//!                           │ internal, masqueraded as the uplink's address; networks are
//!                           │ never forwarded to each other (FORWARD policy DROP; frames
//!                           │ within one bridge are let through, see `set_forwarding`)
//!               uplink 169.254.N.2/30 ══ veth ══ vh-<hash> 169.254.N.1/30 (host namespace)
//!                                                  │ forwarded and masqueraded by the host,
//!                                                  ▼ out of whichever interface routes it
//! ```
//!
//! The link net is a /30 of 169.254.0.0/16 (link-local: never routed beyond the host) that no
//! host interface holds. The host's rules carry the comment `vic:<namespace>` and go with the
//! namespace ([`remove`]); the host's IP forwarding is switched on when it is off, said in a
//! log line. Without iptables the VCH has no egress, said once; containers still reach each
//! other and their published ports.

use crate::cmd::run;
use hypervisor::BackendError;

/// The uplink's name inside the VCH's namespace.
pub const UPLINK: &str = "uplink";

fn failed(msg: String) -> BackendError {
    BackendError::Failed(msg)
}

/// The host end of namespace `ns`'s uplink (`vic-` + 12 digits → `vh-` + the digits).
pub fn host_end(ns: &str) -> String {
    let mut name = format!("vh-{}", ns.trim_start_matches("vic-"));
    name.truncate(15);
    name
}

/// The comment the host's rules for namespace `ns` carry.
fn tag(ns: &str) -> String {
    format!("vic:{ns}")
}

/// The /30 link nets to try for namespace `ns`, starting at one its name picks; the
/// 169.254.169.0/24 block (cloud metadata services) is left out.
fn candidates(ns: &str) -> impl Iterator<Item = [u8; 4]> {
    let start = ns
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 16384;
    (0..16384u32)
        .map(move |i| (start + i) % 16384)
        .map(|n| [169, 254, (n >> 6) as u8, ((n & 63) << 2) as u8])
        .filter(|a| a[2] != 169)
}

/// Namespace `ns`'s uplink, made with its NAT if it is not there yet; the host's address at
/// its other end. Its own error when the host lacks what it needs (iptables).
pub fn ensure(ns: &str) -> Result<std::net::Ipv4Addr, BackendError> {
    if run("ip", &["-n", ns, "link", "show", "dev", UPLINK]).is_ok() {
        return gateway(ns);
    }
    let held = run("ip", &["-4", "-o", "addr", "show"])?;
    let net = candidates(ns)
        .find(|a| !held.contains(&format!(" {}.{}.{}.", a[0], a[1], a[2])))
        .ok_or_else(|| failed("every 169.254.0.0/16 link net is in use".into()))?;
    let addr = |host: u8| format!("{}.{}.{}.{}", net[0], net[1], net[2], net[3] + host);
    let host = host_end(ns);
    let (gw, own) = (addr(1), addr(2));
    run(
        "ip",
        &[
            "link", "add", &host, "type", "veth", "peer", "name", UPLINK, "netns", ns,
        ],
    )?;
    run("ip", &["addr", "add", &format!("{gw}/30"), "dev", &host])?;
    run("ip", &["link", "set", "dev", &host, "up"])?;
    run(
        "ip",
        &["-n", ns, "addr", "add", &format!("{own}/30"), "dev", UPLINK],
    )?;
    run("ip", &["-n", ns, "link", "set", "dev", UPLINK, "up"])?;
    run("ip", &["-n", ns, "route", "replace", "default", "via", &gw])?;
    inside(ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    inside(ns, &["iptables", "-w", "-P", "FORWARD", "DROP"])?;
    inside(
        ns,
        &[
            "iptables",
            "-w",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            UPLINK,
            "-j",
            "MASQUERADE",
        ],
    )?;
    inside(
        ns,
        &[
            "iptables",
            "-w",
            "-A",
            "FORWARD",
            "-i",
            UPLINK,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ],
    )?;
    host_forwarding()?;
    let tag = tag(ns);
    let src = format!("{own}/32");
    let c = ["-m", "comment", "--comment", tag.as_str()];
    let nat = [
        &[
            "-w",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            &src,
            "!",
            "-o",
            &host,
        ][..],
        &c,
        &["-j", "MASQUERADE"],
    ]
    .concat();
    run("iptables", &nat)?;
    let out = [
        &["-w", "-I", "FORWARD", "-i", &host][..],
        &c,
        &["-j", "ACCEPT"],
    ]
    .concat();
    run("iptables", &out)?;
    let back = [
        &[
            "-w",
            "-I",
            "FORWARD",
            "-o",
            &host,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
        ][..],
        &c,
        &["-j", "ACCEPT"],
    ]
    .concat();
    run("iptables", &back)?;
    tracing::info!(namespace = ns, uplink = %own, host = %gw, "egress through {host}, masqueraded by the host");
    gateway(ns)
}

/// The default route's gateway in namespace `ns`: the uplink's host end.
fn gateway(ns: &str) -> Result<std::net::Ipv4Addr, BackendError> {
    let out = run("ip", &["-n", ns, "-4", "route", "show", "default"])?;
    // "default via 169.254.1.1 dev uplink"
    out.split_whitespace()
        .skip_while(|w| *w != "via")
        .nth(1)
        .and_then(|g| g.parse().ok())
        .ok_or_else(|| {
            failed(format!(
                "no default route through the uplink in {ns}: {out:?}"
            ))
        })
}

/// Runs `cmd` inside namespace `ns`.
fn inside(ns: &str, cmd: &[&str]) -> Result<String, BackendError> {
    let args = [&["netns", "exec", ns][..], cmd].concat();
    run("ip", &args)
}

/// Switches the host's IPv4 forwarding on, if it is off.
fn host_forwarding() -> Result<(), BackendError> {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    let on = std::fs::read_to_string(PATH).map_err(|e| failed(format!("reading {PATH}: {e}")))?;
    if on.trim() != "1" {
        std::fs::write(PATH, "1").map_err(|e| failed(format!("writing {PATH}: {e}")))?;
        tracing::info!("the host's IPv4 forwarding was off: switched on for the VCH's egress");
    }
    Ok(())
}

/// Sets what the namespace forwards for network bridge `bridge`: frames within the bridge
/// (they pass the FORWARD chain when the host has br_netfilter) while the network is
/// `present`, and packets out through the uplink when it is also not internal (`out`).
/// Idempotent.
pub fn set_forwarding(
    ns: &str,
    bridge: &str,
    present: bool,
    out: bool,
) -> Result<(), BackendError> {
    rule(ns, &["-i", bridge, "-o", bridge, "-j", "ACCEPT"], present)?;
    rule(
        ns,
        &["-i", bridge, "-o", UPLINK, "-j", "ACCEPT"],
        present && out,
    )
}

/// Makes the namespace's FORWARD chain hold `rule` (`want`) or not.
fn rule(ns: &str, rule: &[&str], want: bool) -> Result<(), BackendError> {
    let op = |op: &str| inside(ns, &[&["iptables", "-w", op, "FORWARD"][..], rule].concat());
    match (want, op("-C").is_ok()) {
        (true, false) => op("-A").map(|_| ()),
        (false, true) => op("-D").map(|_| ()),
        _ => Ok(()),
    }
}

/// Removes the host's rules and end of namespace `ns`'s uplink (the namespace's own end and
/// rules go with the namespace).
pub fn remove(ns: &str) -> Result<(), BackendError> {
    let tag = tag(ns);
    for table in ["filter", "nat"] {
        let Ok(rules) = run("iptables", &["-w", "-t", table, "-S"]) else {
            continue;
        };
        for rule in rules
            .lines()
            .filter(|l| l.contains(&tag) && l.starts_with("-A "))
        {
            // `-S` quotes the comment; the tag has no space, so the quotes just go.
            let mut args = vec!["-w", "-t", table, "-D"];
            args.extend(rule.split_whitespace().skip(1).map(|t| t.trim_matches('"')));
            run("iptables", &args)?;
        }
    }
    let host = host_end(ns);
    if run("ip", &["link", "show", "dev", &host]).is_ok() {
        run("ip", &["link", "delete", "dev", &host])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ends_fit_linux_names() {
        assert_eq!(host_end("vic-0123456789ab"), "vh-0123456789ab");
        assert!(host_end("vic-0123456789abcdef").len() <= 15);
    }

    #[test]
    fn link_nets_are_link_local_slash_30s_away_from_metadata() {
        let all: Vec<[u8; 4]> = candidates("vic-0123456789ab").collect();
        assert_eq!(
            all.len(),
            16384 - 64,
            "every /30 of 169.254/16 but 169.254.169/24"
        );
        assert!(all
            .iter()
            .all(|a| a[0] == 169 && a[1] == 254 && a[3] % 4 == 0 && a[2] != 169));
        assert_ne!(candidates("vic-a").next(), candidates("vic-b").next());
    }
}
