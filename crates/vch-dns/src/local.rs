//! Answers for the names of containers on the network, as [`Names`] knows them.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::message::response_to;
use crate::Names;

/// The most addresses one answer carries; more than fit in any DNS message anyway.
const MAX_ADDRESSES: usize = 4096;

/// Answers the questions about one network's container names.
pub(crate) struct Local {
    pub network: String,
    pub names: Arc<dyn Names>,
    pub ttl: u32,
    pub recursion_available: bool,
}

impl Local {
    /// The response to `query` from `client` when it asks about one of the network's names;
    /// None when the question is for the upstream servers.
    pub fn answer(&self, query: &Message, client: IpAddr) -> Option<Message> {
        let question = query.query()?;
        if question.query_class() != DNSClass::IN {
            return None;
        }
        let name = question.name();
        let answers = match question.query_type() {
            // Ours, but without an address of the family asked: no records rather than
            // NXDOMAIN, so resolvers go on to ask for the other.
            kind @ (RecordType::A | RecordType::AAAA | RecordType::ANY) => {
                self.addresses(name, client, kind)?
            }
            RecordType::PTR => vec![self.pointer(name)?],
            _ => return None,
        };
        let mut response = response_to(query, self.recursion_available);
        response.set_authoritative(true);
        response.add_answers(answers);
        Some(response)
    }

    /// The A or AAAA records (or both, for ANY) of `name` for `client`, if it is a
    /// container name here.
    fn addresses(&self, name: &Name, client: IpAddr, kind: RecordType) -> Option<Vec<Record>> {
        let key = lookup_key(name)?;
        let addresses = self.names.lookup(&self.network, client, &key)?;
        let records = addresses
            .into_iter()
            .filter_map(|address| match address {
                IpAddr::V4(v4) if kind != RecordType::AAAA => Some(RData::A(A(v4))),
                IpAddr::V6(v6) if kind != RecordType::A => Some(RData::AAAA(AAAA(v6))),
                _ => None,
            })
            .take(MAX_ADDRESSES)
            .map(|data| Record::from_rdata(name.clone(), self.ttl, data))
            .collect();
        Some(records)
    }

    /// The PTR record of a reverse name, if it is the address of a container here.
    fn pointer(&self, name: &Name) -> Option<Record> {
        let address = reverse_address(name)?;
        let target = self.names.reverse(&self.network, address)?;
        let mut target = match Name::from_ascii(&target) {
            Ok(target) => target,
            Err(error) => {
                tracing::warn!(network = %self.network, %address, %target, %error, "container name is no DNS name");
                return None;
            }
        };
        target.set_fqdn(true);
        Some(Record::from_rdata(
            name.clone(),
            self.ttl,
            RData::PTR(PTR(target)),
        ))
    }
}

/// `name` as [`Names::lookup`] takes it: lowercase, without the trailing dot. None for the root.
pub(crate) fn lookup_key(name: &Name) -> Option<String> {
    let ascii = name.to_lowercase().to_ascii();
    let key = ascii.strip_suffix('.').unwrap_or(&ascii);
    (!key.is_empty()).then(|| key.to_string())
}

/// The IPv4 address a reverse name such as `4.3.2.1.in-addr.arpa.` stands for.
pub(crate) fn reverse_address(name: &Name) -> Option<Ipv4Addr> {
    if name.num_labels() != 6 {
        return None;
    }
    let labels: Vec<&[u8]> = name.iter().collect();
    let (octets, suffix) = labels.split_at(4);
    let is_arpa =
        suffix[0].eq_ignore_ascii_case(b"in-addr") && suffix[1].eq_ignore_ascii_case(b"arpa");
    if !is_arpa {
        return None;
    }
    let mut address = [0u8; 4];
    for (slot, label) in address.iter_mut().rev().zip(octets) {
        *slot = octet(label)?;
    }
    Some(Ipv4Addr::from(address))
}

/// One decimal octet of a reverse name: one to three digits, at most 255.
fn octet(label: &[u8]) -> Option<u8> {
    if label.is_empty() || label.len() > 3 || !label.iter().all(u8::is_ascii_digit) {
        return None;
    }
    label
        .iter()
        .try_fold(0u16, |value, digit| {
            Some(value * 10 + u16::from(digit - b'0'))
        })
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    #[test]
    fn lookup_keys_are_lowercase_without_the_trailing_dot() {
        assert_eq!(lookup_key(&name("Web.")).as_deref(), Some("web"));
        assert_eq!(lookup_key(&name("web")).as_deref(), Some("web"));
        assert_eq!(lookup_key(&name("DB.Net1.")).as_deref(), Some("db.net1"));
        assert_eq!(lookup_key(&Name::root()), None);
    }

    #[test]
    fn reverse_names_read_backwards() {
        assert_eq!(
            reverse_address(&name("2.0.17.172.in-addr.arpa.")),
            Some(Ipv4Addr::new(172, 17, 0, 2))
        );
        assert_eq!(
            reverse_address(&name("255.0.0.10.IN-ADDR.ARPA.")),
            Some(Ipv4Addr::new(10, 0, 0, 255))
        );
    }

    #[test]
    fn reverse_names_that_are_no_address_are_not_ours() {
        for text in [
            "0.17.172.in-addr.arpa.",
            "1.2.0.17.172.in-addr.arpa.",
            "256.0.17.172.in-addr.arpa.",
            "+1.0.17.172.in-addr.arpa.",
            "1000.0.17.172.in-addr.arpa.",
            "2.0.17.172.ip6.arpa.",
            "a.0.17.172.in-addr.arpa.",
        ] {
            let raw = Name::from_labels(text.trim_end_matches('.').split('.').map(str::as_bytes))
                .unwrap();
            assert_eq!(reverse_address(&raw), None, "{text}");
        }
    }
}
