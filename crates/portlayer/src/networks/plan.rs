//! `docker network create`: a request checked against the VCH's networks and turned into a
//! [`Network`], or refused in Docker's words. Subnets never overlap; a network without a
//! subnet of its own takes the next free /16 of the VCH's bridge range.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use chrono::Utc;

use super::{Cidr, Ipv6Request, Network, NetworkError};

/// The most networks a VCH holds (each is a bridge, a DNS server and its sockets).
pub const MAX_NETWORKS: usize = 256;

/// The driver options vic applies; any other is refused.
pub const ICC: &str = "com.docker.network.bridge.enable_icc";

/// What the user asks of a new network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkRequest {
    pub name: String,
    pub subnet: Option<Cidr>,
    pub gateway: Option<Ipv4Addr>,
    pub ip_range: Option<Cidr>,
    pub aux_addresses: BTreeMap<String, Ipv4Addr>,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// IPAM options were given (an empty set; see [`Network::ipam_options`]).
    pub ipam_options: bool,
    /// An IPv6 side (`--ipv6`, or an IPv6 subnet given).
    pub ipv6: Option<Ipv6Request>,
}

/// The network `req` describes, given the `existing` ones and the /16s user networks may
/// take (`pools`, in order).
pub fn plan(
    req: NetworkRequest,
    existing: &[Network],
    pools: &[Cidr],
) -> Result<Network, NetworkError> {
    if !valid_name(&req.name) {
        return Err(NetworkError::Invalid(format!(
            "invalid network name \"{}\": a network's name must not be blank, longer than 128 bytes, or hold a slash or a control character",
            req.name
        )));
    }
    if matches!(req.name.as_str(), "none" | "host") || existing.iter().any(|n| n.name == req.name) {
        return Err(NetworkError::Exists(req.name));
    }
    if existing.len() >= MAX_NETWORKS {
        return Err(NetworkError::Forbidden(format!(
            "the VCH has {} networks, the most it holds: remove one first",
            existing.len()
        )));
    }
    let icc = options(&req.options)?;
    let subnet = subnet(&req, existing, pools)?;
    let gateway = match req.gateway {
        Some(gw) if !subnet.contains(gw) || gw == subnet.network() || gw == subnet.broadcast() => {
            return Err(NetworkError::Invalid(format!(
                "no matching subnet for gateway {gw}"
            )))
        }
        Some(gw) => gw,
        None if subnet.prefix_len > 30 => {
            return Err(NetworkError::Invalid(format!(
            "subnet {subnet} is too small: it holds no address for a container beside its gateway"
        )))
        }
        None => Ipv4Addr::from(u32::from(subnet.network()) + 1),
    };
    if let Some(range) = req.ip_range {
        if range != range.canonical() || !range.within(&subnet) {
            return Err(NetworkError::Invalid(format!(
                "no matching subnet for range {range}"
            )));
        }
    }
    if let Some((name, ip)) = req
        .aux_addresses
        .iter()
        .find(|(_, ip)| !subnet.contains(**ip))
    {
        return Err(NetworkError::Invalid(format!(
            "no matching subnet for aux-address {name}={ip}"
        )));
    }
    let id = hex::encode(rand::random::<[u8; 32]>());
    let ipv6 = (req.ipv6.as_ref())
        .map(|v6| super::ipv6::plan(v6, &id, existing))
        .transpose()?;
    Ok(Network {
        id,
        name: req.name,
        subnet,
        gateway,
        ip_range: req.ip_range,
        aux_addresses: req.aux_addresses,
        internal: req.internal,
        attachable: req.attachable,
        user_subnet: req.subnet.is_some(),
        icc,
        labels: req.labels,
        options: req.options,
        created: Some(Utc::now()),
        builtin: false,
        external: None,
        ip_span: None,
        dns: Vec::new(),
        ipam_options: req.ipam_options,
        ipv6,
    })
}

/// The subnet asked for, or the first pool no network overlaps.
fn subnet(
    req: &NetworkRequest,
    existing: &[Network],
    pools: &[Cidr],
) -> Result<Cidr, NetworkError> {
    let Some(s) = req.subnet else {
        return pools
            .iter()
            .find(|p| !existing.iter().any(|n| n.subnet.overlaps(p)))
            .copied()
            .ok_or_else(|| {
                NetworkError::Forbidden(
                    "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into(),
                )
            });
    };
    if s != s.canonical() {
        return Err(NetworkError::Invalid(format!(
            "invalid subnet {s}: it should be {}",
            s.canonical()
        )));
    }
    if s.prefix_len < 8 {
        return Err(NetworkError::Invalid(format!(
            "invalid subnet {s}: vic hands out networks of /8 or smaller"
        )));
    }
    if existing.iter().any(|n| n.subnet.overlaps(&s)) {
        return Err(NetworkError::Forbidden(
            "invalid pool request: Pool overlaps with other one on this address space".into(),
        ));
    }
    Ok(s)
}

/// Whether containers may reach each other, from the driver options; unknown ones refused.
fn options(opts: &BTreeMap<String, String>) -> Result<bool, NetworkError> {
    let mut icc = true;
    for (k, v) in opts {
        match (k.as_str(), v.as_str()) {
            (ICC, "true") => icc = true,
            (ICC, "false") => icc = false,
            (ICC, v) => {
                return Err(NetworkError::Invalid(format!(
                    "invalid value {v:?} for option {ICC}: it is true or false"
                )))
            }
            _ => {
                return Err(NetworkError::Invalid(format!(
                    "network option {k} is not supported by vic (supported: {ICC})"
                )))
            }
        }
    }
    Ok(icc)
}

/// libnetwork's rule for network names (not blank: `test 01` is a name), bounded: a name
/// is a path segment of the API (no slash) and is shown in logs and pages (no control
/// characters).
fn valid_name(name: &str) -> bool {
    !name.trim().is_empty()
        && name.len() <= 128
        && !name.chars().any(|c| c == '/' || c.is_control())
}
