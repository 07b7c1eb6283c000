//! The registry lists of a VCH (`--insecure-registry`, `--whitelist-registry`): which
//! registries an entry names.

/// Whether `registry` (`host[:port]`) matches a whitelist or insecure-list entry: the same
/// `host:port`, a `host` alone (any port), `*.domain`, or an IPv4/IPv6 CIDR.
pub(crate) fn matches_entry(entry: &str, registry: &str) -> bool {
    let entry = entry
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    if entry.eq_ignore_ascii_case(registry) {
        return true;
    }
    let host = host_part(registry);
    if entry.eq_ignore_ascii_case(host) {
        return true;
    }
    if let Some(domain) = entry.strip_prefix("*.") {
        let domain = domain.to_ascii_lowercase();
        let h = host.to_ascii_lowercase();
        return h.ends_with(&format!(".{domain}"));
    }
    if let Some((net, bits)) = entry.split_once('/') {
        let ip = host.trim_start_matches('[').trim_end_matches(']');
        if let (Ok(net), Ok(bits), Ok(ip)) = (
            net.parse::<std::net::IpAddr>(),
            bits.parse::<u32>(),
            ip.parse::<std::net::IpAddr>(),
        ) {
            return in_cidr(ip, net, bits);
        }
    }
    false
}

fn in_cidr(ip: std::net::IpAddr, net: std::net::IpAddr, bits: u32) -> bool {
    use std::net::IpAddr;
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// `host` of `host[:port]` (IPv6 literals keep their brackets).
fn host_part(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry
            .split_once(']')
            .map(|(h, _)| &registry[..h.len() + 1])
            .unwrap_or(registry);
    }
    registry
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(registry)
}

/// Whether the whitelist admits `registry` (`host[:port]`): no whitelist admits all; else
/// a whitelisted or an insecure registry.
pub(crate) fn admitted(whitelist: &[String], insecure: &[String], registry: &str) -> bool {
    whitelist.is_empty()
        || whitelist.iter().any(|e| matches_entry(e, registry))
        || insecure.iter().any(|e| matches_entry(e, registry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_lists_match_hosts_ports_domains_and_networks() {
        assert!(matches_entry("reg.local:5000", "reg.local:5000"));
        assert!(matches_entry("reg.local", "reg.local:5000"), "any port");
        assert!(!matches_entry("reg.local:5000", "reg.local:5001"));
        assert!(matches_entry("*.corp.example", "harbor.corp.example:443"));
        assert!(!matches_entry("*.corp.example", "corp.example.evil.io"));
        assert!(matches_entry("10.0.0.0/8", "10.2.3.4:5000"));
        assert!(!matches_entry("10.0.0.0/8", "11.2.3.4"));
        assert!(matches_entry("https://quay.io/", "quay.io"));
        assert!(matches_entry("[::1]", "[::1]:5000"));
        assert!(!matches_entry("127.0.0.1:5000", "quay.io"));
    }
}
